//! AVX-512 BF16 candidate pass: centroids stored once as bf16 panels, dot products with
//! `vdpbf16ps` (two bf16 products per f32 lane per instruction, twice the f32 FMA rate and
//! half the memory traffic), folded straight into each query's candidate threshold.
//!
//! Layout: centroids in panels of 16 (one zmm lane per centroid). Panel p holds, for each pair
//! q of dimensions, 16 u32 words `bf16(c[2q]) | bf16(c[2q+1]) << 16` (64 bytes, aligned).
//! Queries of a micro-group of MR rows are packed as `[q][r]` u32 pairs and broadcast.
//! The exactness argument (margins on the approximate score) is in `margin.rs`.

use super::candidates::{ExactData, QueryState};
use super::margin::{dot_error_bf16, score_margin, RoundedNorms};

/// Centroids per panel (lanes of a zmm register).
pub const LANES: usize = 16;

/// 64 bytes of a panel row: 16 lanes of u32 bf16 pairs (or 16 f32 norms).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct Row16(pub [u32; LANES]);

/// bf16 with round-to-nearest-even; values below the smallest normal f32 become (signed)
/// zero (the hardware treats bf16 denormals as zero, so the residual accounts for them).
/// Branch-free so that loops over slices vectorise.
#[inline(always)]
pub fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    let signed_zero = (bits >> 16) & 0x8000;
    (if bits & 0x7fff_ffff < 0x0080_0000 {
        signed_zero
    } else {
        rounded
    }) as u16
}

/// The f32 value of a bf16.
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Rounds `v` to bf16 into `out` (same length) and returns `(‖v̂‖, ‖v − v̂‖)` in f64.
pub fn round_with_norms(v: &[f32], out: &mut [u16]) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the features were just detected.
            return unsafe { round_with_norms_avx512(v, out) };
        }
    }
    round_with_norms_impl(v, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn round_with_norms_avx512(v: &[f32], out: &mut [u16]) -> (f64, f64) {
    round_with_norms_impl(v, out)
}

#[inline(always)]
fn round_with_norms_impl(v: &[f32], out: &mut [u16]) -> (f64, f64) {
    const L: usize = 16;
    let (mut hat, mut res) = ([0.0f64; L], [0.0f64; L]);
    let full = v.len() / L * L;
    for (vc, oc) in v[..full]
        .chunks_exact(L)
        .zip(out[..full].chunks_exact_mut(L))
    {
        for l in 0..L {
            let h = to_bf16(vc[l]);
            oc[l] = h;
            let hf = from_bf16(h);
            // v − v̂ is exact in f32 (same exponent range, coarser significand).
            let r = f64::from(vc[l] - hf);
            let hf = f64::from(hf);
            hat[l] += hf * hf;
            res[l] += r * r;
        }
    }
    for (l, (&a, o)) in v[full..]
        .iter()
        .zip(out[full..v.len()].iter_mut())
        .enumerate()
    {
        let h = to_bf16(a);
        *o = h;
        let hf = from_bf16(h);
        let r = f64::from(a - hf);
        hat[l] += f64::from(hf) * f64::from(hf);
        res[l] += r * r;
    }
    (
        hat.iter().sum::<f64>().sqrt(),
        res.iter().sum::<f64>().sqrt(),
    )
}

/// `(‖v̂‖, ‖v − v̂‖)` for the bf16 rounding v̂ of `v`, in f64.
pub fn bf16_norms(v: &[f32]) -> (f64, f64) {
    let mut tmp = vec![0u16; v.len()];
    round_with_norms(v, &mut tmp)
}

/// True when this CPU runs the AVX-512 BF16 kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The centroids packed for the bf16 pass (built once per index).
pub struct Bf16Centroids {
    /// Number of dimension pairs, `ceil(D / 2)`.
    pub pairs: usize,
    /// `num_panels * pairs` rows; panel p is rows `p*pairs .. (p+1)*pairs`.
    pub panels: Vec<Row16>,
    /// Per panel: `‖c_j‖²` rounded to f32 (as bits); +inf in padding lanes.
    pub norms: Vec<Row16>,
    pub c_hat_max: f64,
    pub c_residual_max: f64,
}

impl Bf16Centroids {
    /// Packs row-major f32 centroids `(K, D)` with their exact squared norms.
    pub fn pack(rows: &[f32], num: usize, dim: usize, norms_sq: &[f64]) -> Self {
        let pairs = dim.div_ceil(2);
        let num_panels = num.div_ceil(LANES);
        let mut panels = vec![Row16::default(); num_panels * pairs];
        let mut norms = vec![Row16([f32::INFINITY.to_bits(); LANES]); num_panels];
        let (mut c_hat_max, mut c_residual_max) = (0.0f64, 0.0f64);
        let mut hat = vec![0u16; 2 * pairs];
        for j in 0..num {
            let (p, lane) = (j / LANES, j % LANES);
            let (h, r) = round_with_norms(&rows[j * dim..(j + 1) * dim], &mut hat[..dim]);
            for q in 0..pairs {
                panels[p * pairs + q].0[lane] =
                    u32::from(hat[2 * q]) | (u32::from(hat[2 * q + 1]) << 16);
            }
            norms[p].0[lane] = (norms_sq[j] as f32).to_bits();
            c_hat_max = c_hat_max.max(h);
            c_residual_max = c_residual_max.max(r);
        }
        Self {
            pairs,
            panels,
            norms,
            c_hat_max,
            c_residual_max,
        }
    }

    /// Bytes of the bf16 panels (what a search streams).
    pub fn nbytes(&self) -> usize {
        self.panels.len() * std::mem::size_of::<Row16>()
    }

    pub fn num_panels(&self) -> usize {
        self.norms.len()
    }
}

/// Panels per cache chunk: about 384 KiB of bf16 data (fits the L2 with the query block).
pub(crate) fn chunk_panels(pairs: usize) -> usize {
    let bytes = pairs * 64;
    let n = (384 << 10) / bytes.max(1);
    if n >= 24 {
        n / 24 * 24
    } else {
        n.max(1)
    }
}

/// Scans panels `p0..p1` in cache chunks of [`chunk_panels`]`(rows)` panels (`rows` 64-byte
/// rows per panel), each chunk for every micro-group of a packed query block in turn:
/// `run(group, its states, c0, c1)`, a group being `(first row in the block, live rows, MR
/// variant, packed words)` (the bf16 and int8 query packings).
#[cfg(target_arch = "x86_64")]
pub(crate) fn by_chunk_and_group(
    rows: usize,
    groups: &[(usize, usize, usize, Vec<u32>)],
    states: &mut [QueryState],
    (p0, p1): (usize, usize),
    mut run: impl FnMut(&(usize, usize, usize, Vec<u32>), &mut [QueryState], usize, usize),
) {
    let chunk = chunk_panels(rows);
    let mut c0 = p0;
    while c0 < p1 {
        let c1 = (c0 + chunk).min(p1);
        for g in groups {
            run(g, &mut states[g.0..g.0 + g.1], c0, c1);
        }
        c0 = c1;
    }
}

/// A block of queries packed for the bf16 pass (once per call, shared by its tasks):
/// micro-groups of up to 12 rows as `[q][r]` bf16 pairs, and each row's margin.
pub struct QueryPack {
    /// `(first row in the block, live rows, MR variant, packed words)` per micro-group.
    groups: Vec<(usize, usize, usize, Vec<u32>)>,
    /// `E(x)` of each row of the block (see `margin.rs`).
    margins: Vec<f64>,
}

/// The MR variant used for a micro-group of `rows` live queries.
pub(crate) fn variant(rows: usize) -> usize {
    match rows {
        1 => 1,
        2 => 2,
        3..=4 => 4,
        5..=8 => 8,
        _ => 12,
    }
}

/// Packs queries `q0..q1` of `data.x`; `x_norms_sq[i]` is the exact `‖x_i‖²`,
/// `c_norm_max` is `max_j ‖c_j‖`.
pub fn pack_queries(
    packed: &Bf16Centroids,
    data: &ExactData<'_>,
    c_norm_max: f64,
    x_norms_sq: &[f64],
    q0: usize,
    q1: usize,
) -> QueryPack {
    let (d, pairs) = (data.dim, packed.pairs);
    let mut hat = vec![0u16; 2 * pairs];
    let mut margins = Vec::with_capacity(q1 - q0);
    let mut groups = Vec::new();
    let mut start = q0;
    while start < q1 {
        let len = (q1 - start).min(12);
        let mr = variant(len);
        let mut words = vec![0u32; pairs * mr];
        for r in 0..len {
            let row = start + r;
            let (x_hat, x_residual) =
                round_with_norms(&data.x[row * d..(row + 1) * d], &mut hat[..d]);
            for q in 0..pairs {
                words[q * mr + r] = u32::from(hat[2 * q]) | (u32::from(hat[2 * q + 1]) << 16);
            }
            let n = RoundedNorms {
                x_hat,
                x_residual,
                c_max: c_norm_max,
                c_hat_max: packed.c_hat_max,
                c_residual_max: packed.c_residual_max,
            };
            let x_norm = x_norms_sq[row].sqrt();
            margins.push(score_margin(
                dot_error_bf16(2 * pairs, &n),
                x_norm,
                c_norm_max,
            ));
        }
        groups.push((start - q0, len, mr, words));
        start += len;
    }
    QueryPack { groups, margins }
}

/// Scans centroid panels `p0..p1` for the queries of `pack` (`states[i]` is row i of the
/// block), evaluating exactly every candidate under each query's threshold.
pub fn scan(
    packed: &Bf16Centroids,
    pack: &QueryPack,
    data: &ExactData<'_>,
    states: &mut [QueryState],
    p0: usize,
    p1: usize,
) {
    for (st, &m) in states.iter_mut().zip(&pack.margins) {
        st.set_margin(m);
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `available()` was checked when the index chose this engine.
        unsafe { avx512::scan(packed, pack, data, states, p0, p1) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (packed, pack, data, states, p0, p1);
        unreachable!("the bf16 engine is only selected on x86_64");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::candidates::{ExactData, QueryState};
    use super::{by_chunk_and_group, Bf16Centroids, QueryPack, Row16, LANES};

    #[inline(always)]
    unsafe fn as_bh(v: __m512i) -> __m512bh {
        std::mem::transmute::<__m512i, __m512bh>(v)
    }

    /// Dot products of MR packed queries with NP consecutive panels, then the threshold test.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn micro<const MR: usize, const NP: usize>(
        xg: *const u32,
        panels: *const Row16,
        norms: *const Row16,
        pairs: usize,
        first_centroid: usize,
        states: &mut [QueryState],
        data: &ExactData<'_>,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NP]; MR];
        for q in 0..pairs {
            let mut cv = [_mm512_setzero_si512(); NP];
            for (p, c) in cv.iter_mut().enumerate() {
                *c = _mm512_load_si512(panels.add(p * pairs + q).cast());
            }
            let xq = xg.add(q * MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let xb = as_bh(_mm512_set1_epi32(*xq.add(r) as i32));
                for (a, c) in row.iter_mut().zip(cv.iter()) {
                    *a = _mm512_dpbf16_ps(*a, as_bh(*c), xb);
                }
            }
        }
        let minus_two = _mm512_set1_ps(-2.0);
        for (row, st) in acc.iter().zip(states.iter_mut()) {
            for (p, dots) in row.iter().enumerate() {
                let cn = _mm512_load_ps((*norms.add(p)).0.as_ptr().cast());
                let v = _mm512_fmadd_ps(*dots, minus_two, cn);
                let mask = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, _mm512_set1_ps(st.t));
                if mask != 0 {
                    let mut vals = [0.0f32; LANES];
                    _mm512_storeu_ps(vals.as_mut_ptr(), v);
                    st.offer_lanes(first_centroid + p * LANES, &vals, data);
                }
            }
        }
    }

    /// Runs one micro-group (MR rows) over panels `p0..p1`, NP at a time, then one by one.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn group<const MR: usize, const NP: usize>(
        packed: &Bf16Centroids,
        xg: &[u32],
        states: &mut [QueryState],
        data: &ExactData<'_>,
        p0: usize,
        p1: usize,
    ) {
        let pairs = packed.pairs;
        let base = packed.panels.as_ptr();
        let norms = packed.norms.as_ptr();
        let mut p = p0;
        while p + NP <= p1 {
            micro::<MR, NP>(
                xg.as_ptr(),
                base.add(p * pairs),
                norms.add(p),
                pairs,
                p * LANES,
                states,
                data,
            );
            p += NP;
        }
        while p < p1 {
            micro::<MR, 1>(
                xg.as_ptr(),
                base.add(p * pairs),
                norms.add(p),
                pairs,
                p * LANES,
                states,
                data,
            );
            p += 1;
        }
    }

    pub(super) unsafe fn scan(
        packed: &Bf16Centroids,
        pack: &QueryPack,
        data: &ExactData<'_>,
        states: &mut [QueryState],
        p0: usize,
        p1: usize,
    ) {
        let groups = &pack.groups;
        by_chunk_and_group(packed.pairs, groups, states, (p0, p1), |g, st, c0, c1| {
            let words = &g.3;
            match g.2 {
                1 => group::<1, 8>(packed, words, st, data, c0, c1),
                2 => group::<2, 8>(packed, words, st, data, c0, c1),
                4 => group::<4, 6>(packed, words, st, data, c0, c1),
                8 => group::<8, 3>(packed, words, st, data, c0, c1),
                _ => group::<12, 2>(packed, words, st, data, c0, c1),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_is_nearest_even_and_flushes_denormals() {
        assert_eq!(from_bf16(to_bf16(1.0)), 1.0);
        // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert_eq!(from_bf16(to_bf16(-2.5e-39)), 0.0);
        for v in [0.1f32, -3.7, 25.0, 1e-20, 123456.0] {
            assert!(((from_bf16(to_bf16(v)) - v) / v).abs() <= 1.0 / 256.0);
        }
    }

    #[test]
    fn rounding_norms_match_a_scalar_computation() {
        for n in [1usize, 15, 16, 17, 100] {
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.0137 + 1e-39 * (i % 3) as f32)
                .collect();
            let mut out = vec![0u16; n];
            let (hat, res) = round_with_norms(&v, &mut out);
            let want_hat: f64 = out
                .iter()
                .map(|&h| f64::from(from_bf16(h)).powi(2))
                .sum::<f64>()
                .sqrt();
            let want_res: f64 = v
                .iter()
                .zip(&out)
                .map(|(&a, &h)| (f64::from(a) - f64::from(from_bf16(h))).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(out.iter().zip(&v).all(|(&h, &a)| h == to_bf16(a)));
            assert!((hat - want_hat).abs() <= 1e-12 * want_hat.max(1e-30));
            assert!((res - want_res).abs() <= 1e-12 * want_res.max(1e-30));
        }
    }
}
