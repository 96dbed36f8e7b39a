//! Portable f32 candidate pass (any CPU): row-major centroids, f32 dot products, the same
//! threshold test as the bf16 pass. Compiled twice: plain and with AVX2+FMA enabled.

use super::candidates::{set_f32_margins, ExactData, QueryState};

/// Independent f32 partial sums per dot product (vectorisable).
const LANES: usize = 16;
/// Centroids scanned per cache chunk.
const CHUNK: usize = 256;

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
fn scan_impl(
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
unsafe fn scan_avx2(
    data: &ExactData<'_>,
    norms_f32: &[f32],
    states: &mut [QueryState],
    j0: usize,
    j1: usize,
) {
    scan_impl(data, norms_f32, states, j0, j1)
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
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were just detected.
            unsafe { scan_avx2(data, norms_f32, states, j0, j1) };
            return;
        }
    }
    scan_impl(data, norms_f32, states, j0, j1)
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
