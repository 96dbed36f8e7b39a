//! Portable f32 candidate pass (any CPU): tiles of dot products `x·c_j` from the `gemm`
//! crate's sgemm (its maintainers' AVX2/FMA and NEON kernels, chosen at run time; plain loops
//! elsewhere) over the row-major centroids, which it reads in place (the queries are the
//! tile's rows, the centroids its columns: a column-major tile makes each centroid row one of
//! the micro-kernel's sequential broadcast streams, so they are neither copied nor packed);
//! fewer queries are scanned with plain dot-product loops. The threshold test and the exact
//! re-rank are those of the other engines. The f32 margin (`margin::dot_error_f32`, `γ_{D+2}·‖x‖·max‖c‖`)
//! holds for any summation order and with or without FMA, so it covers the crate's blocking.

use super::candidates::{set_f32_margins, ExactData, QueryState};

/// Centroids per tile (the dot products of a query block with them are buffered).
const CHUNK: usize = 256;
/// Blocks of fewer queries are scanned with plain dot-product loops, which read each
/// centroid row once for all of them at about the same rate (one Zen 4 core, D = 512, 1e4
/// centroids out of cache: sgemm 11 GFLOP/s for 2 queries, 29 for 6, 48 for 8, 81 for 16;
/// the loops about 30 whatever the count).
const GEMM_MIN_ROWS: usize = 8;
/// sgemm's row group on x86_64 (two AVX2 vectors of f32): query blocks of a multiple of it
/// fill its micro-kernel (36 queries ran at 70 GFLOP/s, 32 at 76 and 48 at 83).
pub const ROW_GROUP: usize = 16;

/// Independent f32 partial sums per dot product (vectorisable).
const LANES: usize = 16;

#[inline(always)]
fn dot_f32(x: &[f32], c: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut xs = x.chunks_exact(LANES);
    let mut cs = c.chunks_exact(LANES);
    for (xc, cc) in (&mut xs).zip(&mut cs) {
        for l in 0..LANES {
            acc[l] += xc[l] * cc[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (&a, &b) in xs.remainder().iter().zip(cs.remainder()) {
        s += a * b;
    }
    s
}

#[inline(always)]
fn scan_rows_impl(
    data: &ExactData<'_>,
    norms_f32: &[f32],
    states: &mut [QueryState],
    j0: usize,
    j1: usize,
) {
    let d = data.dim;
    let mut c0 = j0;
    while c0 < j1 {
        let c1 = (c0 + CHUNK).min(j1);
        for st in states.iter_mut() {
            let x = &data.x[st.row * d..(st.row + 1) * d];
            for (j, &norm) in norms_f32.iter().enumerate().take(c1).skip(c0) {
                let dot = dot_f32(x, &data.centroids[j * d..(j + 1) * d]);
                // 2·dot is exact; one rounding for the subtraction (covered by the margin).
                let v = norm - 2.0 * dot;
                if v <= st.t {
                    st.offer(j, v, data);
                }
            }
        }
        c0 = c1;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scan_rows_avx2(
    data: &ExactData<'_>,
    norms_f32: &[f32],
    states: &mut [QueryState],
    j0: usize,
    j1: usize,
) {
    scan_rows_impl(data, norms_f32, states, j0, j1)
}

/// Scans centroids `j0..j1` for `states`; `norms_f32[j]` is `‖c_j‖²` rounded to f32.
pub fn scan(
    data: &ExactData<'_>,
    norms_f32: &[f32],
    c_norm_max: f64,
    states: &mut [QueryState],
    x_norms_sq: &[f64],
    j0: usize,
    j1: usize,
) {
    set_f32_margins(states, x_norms_sq, data.dim, c_norm_max);
    let (d, m) = (data.dim, states.len());
    if m < GEMM_MIN_ROWS {
        scan_rows(data, norms_f32, states, j0, j1);
        return;
    }
    // The block's query rows, contiguous `(m, d)`.
    let mut xs = Vec::with_capacity(m * d);
    for st in states.iter() {
        xs.extend_from_slice(&data.x[st.row * d..(st.row + 1) * d]);
    }
    let mut dots = vec![0.0f32; m * CHUNK];
    let mut c0 = j0;
    while c0 < j1 {
        let n = (j1 - c0).min(CHUNK);
        // dots (m, n) column-major (column stride m, row stride 1) = xs (m, d) · Cᵀ (d, n):
        // xs row-major (1, d), C[c0..c0+n] read in place as the columns of Cᵀ (1, d).
        // SAFETY: every pointer/stride pair addresses memory inside its slice: xs is m × d,
        // the centroid rows c0..c0+n exist, dots holds m × CHUNK >= m × n; `read_dst` is
        // false, so dots is only written (alpha is then ignored).
        unsafe {
            gemm::gemm(
                m,
                n,
                d,
                dots.as_mut_ptr(),
                m as isize,
                1,
                false,
                xs.as_ptr(),
                1,
                d as isize,
                data.centroids.as_ptr().add(c0 * d),
                d as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for (jj, (col, &norm)) in dots
            .chunks_exact(m)
            .take(n)
            .zip(&norms_f32[c0..c0 + n])
            .enumerate()
        {
            for (st, &dot) in states.iter_mut().zip(col) {
                // 2·dot is exact; one rounding for the subtraction (covered by the margin).
                let v = norm - 2.0 * dot;
                if v <= st.t {
                    st.offer(c0 + jj, v, data);
                }
            }
        }
        c0 += n;
    }
}

/// The plain-loop scan (compiled twice: plain and with AVX2+FMA enabled).
fn scan_rows(
    data: &ExactData<'_>,
    norms_f32: &[f32],
    states: &mut [QueryState],
    j0: usize,
    j1: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were just detected.
            unsafe { scan_rows_avx2(data, norms_f32, states, j0, j1) };
            return;
        }
    }
    scan_rows_impl(data, norms_f32, states, j0, j1)
}

/// Exact scan of every centroid `j0..j1` (no candidate pass): used when norms are so large
/// that the f32 GEMM form could overflow.
pub fn scan_exact(data: &ExactData<'_>, states: &mut [QueryState], j0: usize, j1: usize) {
    for st in states.iter_mut() {
        for j in j0..j1 {
            st.evaluate(j, data);
        }
    }
}
