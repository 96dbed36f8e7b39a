//! AVX-512 VNNI int8 candidate pass (`avx512-vnni-i8`): centroids stored once as int8 codes
//! with one f32 scale per centroid, queries as uint8 codes with one scale per query, integer
//! dot products with `vpdpbusd` (64 multiply-adds per instruction, 4× an f32 FMA; a quarter of
//! the f32 bytes to read), rescaled to f32 scores and folded into each query's candidate
//! threshold, then the exact f64 re-rank of `candidates.rs`. The 256-bit engine
//! `avx-vnni-i8` (for AVX-VNNI CPUs without AVX-512) shares the quantisation,
//! both packings and the margin of this module; only its kernel differs ([`I8Kernel`],
//! `vnni/kernel.rs`, which writes every width's kernel from one macro).
//!
//! ## Quantisation and its rigorous error bound
//!
//! A vector v (a centroid, or a query) with `m = max_l |v_l|` gets the scale `s = fl(m / 127)`
//! and codes `q_l = clamp(round(v_l / s), −127, 127)` (to nearest, ties to even); its
//! rounding is `v̂ = s·q` (exact in f64: 24 × 7 significant bits) and its residual `r = v − v̂`
//! (measured in f64, so nothing is assumed about how well the rounding went). A vector with `m < 1e-30` gets `q = 0`, `v̂ = 0`,
//! `r = v`. For a query x and a centroid c, exactly
//!
//! ```text
//! x·c = x̂·ĉ + r_x·c + x̂·r_c        (expand x̂·ĉ + (x − x̂)·c + x̂·(c − ĉ))
//! |x·c − x̂·ĉ| ≤ ‖r_x‖·‖c‖ + ‖x̂‖·‖r_c‖    (Cauchy–Schwarz)
//! ```
//!
//! `x̂·ĉ = s_x·s_c·(q_x·q_c)`, and the integer dot `q_x·q_c` is computed exactly: the query
//! codes enter `vpdpbusd` as unsigned bytes `u = q_x + 128 ∈ [1, 255]`, the centroid's
//! `128·Σ q_c` is subtracted afterwards, and every int32 partial sum is bounded by
//! `D · 255 · 127 < 2³¹` for `D ≤ MAX_DIM` (an index refuses larger D; `auto` picks another
//! engine). This holds for either kernel width: an int32 lane of any accumulator (512- or
//! 256-bit, one of several accumulators over a panel's quads, or their sum) adds the products
//! `u·q_c` of one centroid over a subset of its D dimensions, each `|u·q_c| ≤ 255·127`. The
//! kernel then computes `fma(f32(dot), fl(s_c · (−2·s_x)), ‖c‖²_f32)`: `−2·s_x` is exact, the
//! int → f32 conversion and the scale product round once each (relative u each), so the
//! rescaled dot is within `γ_2·|x̂·ĉ| ≤ γ_2·‖x̂‖·‖ĉ‖` of `−2·x̂·ĉ / −2`; the bound uses γ_3.
//! (Should `s_c · s_x` underflow, its absolute error times `|dot| < 2³¹` is below 2⁻¹¹⁸, under
//! the margin's 1e-30 absolute slack.) Hence the dot-product error bound
//!
//! ```text
//! E_dot(x) = ‖r_x‖·max‖c‖ + ‖x̂‖·max‖r_c‖ + γ_3·‖x̂‖·max‖ĉ‖      (margin::dot_error_int8)
//! ```
//!
//! and `margin::score_margin` adds the stored `‖c‖²` rounding and the final FMA rounding, as for
//! the other engines. With `|v_j − (‖c_j‖² − 2x·c_j)| ≤ E(x)` for every j, the candidate
//! thresholds of `candidates.rs` keep every centroid of the true top-k, ties included.
//!
//! Layout: panels of 16 centroids (one zmm lane each, or a lane of one of two ymm halves);
//! panel p holds, per quad q of dimensions, 16 u32 words of 4 int8 codes `c[4q..4q+4]`
//! (64 bytes, aligned), plus per lane `‖c‖²` (f32), `s_c` (f32) and `128·Σ q_c` (i32).
//! Queries of a micro-group of MR rows are packed as `[q][r]` u32 words of 4 uint8 codes and
//! broadcast. The kernels of every width (`vnni/kernel.rs`) read both.

#[cfg(target_arch = "x86_64")]
use super::bf16::by_chunk_and_group;
use super::bf16::{variant, Row16, LANES};
use super::candidates::{ExactData, QueryState};
use super::margin::{dot_error_int8, score_margin, RoundedNorms};

#[cfg(target_arch = "x86_64")]
mod kernel;

/// Largest D whose int32 dot products cannot overflow (`D · 255 · 127 < 2³¹`).
pub const MAX_DIM: usize = 65_536;
/// Below this max-abs a vector is rounded to zero (all of it is residual).
const TINY: f32 = 1e-30;

/// The int8 kernel a packing is scanned with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I8Kernel {
    /// `avx512-vnni-i8`: `_mm512_dpbusd_epi32` (AVX-512F + VNNI), one zmm per panel row.
    Avx512,
    /// `avx-vnni-i8` on AVX-VNNI (`_mm256_dpbusd_avx_epi32`, VEX), two ymm per panel row.
    Avx256Vex,
    /// `avx-vnni-i8` on AVX-512 VNNI + VL without AVX-VNNI (`_mm256_dpbusd_epi32`, EVEX):
    /// the same instruction, the same results.
    Avx256Evex,
}

impl I8Kernel {
    /// The 256-bit kernel this CPU runs (VEX where it has AVX-VNNI), if any.
    pub fn avx256() -> Option<Self> {
        [Self::Avx256Vex, Self::Avx256Evex]
            .into_iter()
            .find(|k| k.available())
    }

    /// True when this CPU runs the kernel.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Self::Avx512 => has!("avx512f") && has!("avx512vnni"),
                Self::Avx256Vex => has!("avx2") && has!("fma") && has!("avxvnni"),
                Self::Avx256Evex => {
                    has!("avx2") && has!("fma") && has!("avx512vnni") && has!("avx512vl")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = self;
            false
        }
    }
}

/// Per-vector int8 codes of `v` into `out` (same length): returns `(s, ‖v̂‖, ‖v − v̂‖)`, the
/// scale and the f64 norms of the rounding and of its residual (see the module docs).
/// Compiled with AVX-512 where the CPU has it (a query block is quantised on every call).
pub fn quantize(v: &[f32], out: &mut [i8]) -> (f32, f64, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the features were just detected.
            return unsafe { quantize_avx512(v, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was just detected.
            return unsafe { quantize_avx2(v, out) };
        }
    }
    quantize_impl(v, out)
}

/// [`quantize_impl`] compiled with AVX2 (the 256-bit engine's CPUs may lack AVX-512).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(v: &[f32], out: &mut [i8]) -> (f32, f64, f64) {
    quantize_impl(v, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_avx512(v: &[f32], out: &mut [i8]) -> (f32, f64, f64) {
    quantize_impl(v, out)
}

/// Lanes of the vectorisable loops of [`quantize_impl`].
const QLANES: usize = 16;

#[inline(always)]
fn quantize_impl(v: &[f32], out: &mut [i8]) -> (f32, f64, f64) {
    let mut lanes = [0.0f32; QLANES];
    let mut chunks = v.chunks_exact(QLANES);
    for c in &mut chunks {
        for l in 0..QLANES {
            let a = c[l].abs();
            lanes[l] = if a > lanes[l] { a } else { lanes[l] };
        }
    }
    let m = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(0.0f32, |m, &a| if a.abs() > m { a.abs() } else { m });
    if m < TINY {
        out.fill(0);
        let res = v.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
        return (1.0, 0.0, res);
    }
    let s = m / 127.0;
    // Round to nearest (ties to even: one instruction; any rounding is valid, the residual is
    // measured), then the f64 norms of the rounding and of the residual.
    // (Selects rather than `clamp`, and no NaN case: they vectorise; `v` is finite.)
    let code = |a: f32| {
        let q = (a / s).round_ties_even();
        let q = if q > 127.0 { 127.0 } else { q };
        if q < -127.0 {
            -127.0
        } else {
            q
        }
    };
    let (mut hat, mut res) = ([0.0f64; QLANES], [0.0f64; QLANES]);
    let full = v.len() / QLANES * QLANES;
    for (vc, oc) in v[..full]
        .chunks_exact(QLANES)
        .zip(out[..full].chunks_exact_mut(QLANES))
    {
        for l in 0..QLANES {
            let q = code(vc[l]);
            // SAFETY: q is an integer in [-127, 127].
            oc[l] = unsafe { q.to_int_unchecked::<i32>() } as i8;
            let h = f64::from(s) * f64::from(q);
            let r = f64::from(vc[l]) - h;
            hat[l] += h * h;
            res[l] += r * r;
        }
    }
    for (l, (&a, o)) in v[full..].iter().zip(&mut out[full..]).enumerate() {
        let q = code(a);
        *o = q as i8;
        let h = f64::from(s) * f64::from(q);
        let r = f64::from(a) - h;
        hat[l] += h * h;
        res[l] += r * r;
    }
    (
        s,
        hat.iter().sum::<f64>().sqrt(),
        res.iter().sum::<f64>().sqrt(),
    )
}

/// The centroids packed for the int8 pass (built once per index).
pub struct I8Centroids {
    /// The kernel that scans them (the panels are the same for every kernel).
    pub kernel: I8Kernel,
    /// Number of dimension quads, `ceil(D / 4)`.
    pub quads: usize,
    /// `num_panels * quads` rows of 16 words of 4 int8 codes.
    pub panels: Vec<Row16>,
    /// Per panel: `‖c_j‖²` rounded to f32 (bits; +inf in padding lanes), `s_c` (f32 bits),
    /// `128·Σ q_c` (i32 bits).
    pub norms: Vec<Row16>,
    pub scales: Vec<Row16>,
    pub offsets: Vec<Row16>,
    pub c_hat_max: f64,
    pub c_residual_max: f64,
}

impl I8Centroids {
    /// Packs row-major f32 centroids `(K, D)` with their exact squared norms, for `kernel`.
    pub fn pack(kernel: I8Kernel, rows: &[f32], num: usize, dim: usize, norms_sq: &[f64]) -> Self {
        let quads = dim.div_ceil(4);
        let num_panels = num.div_ceil(LANES);
        let mut panels = vec![Row16::default(); num_panels * quads];
        let mut norms = vec![Row16([f32::INFINITY.to_bits(); LANES]); num_panels];
        let mut scales = vec![Row16([0.0f32.to_bits(); LANES]); num_panels];
        let mut offsets = vec![Row16::default(); num_panels];
        let (mut c_hat_max, mut c_residual_max) = (0.0f64, 0.0f64);
        let mut codes = vec![0i8; 4 * quads];
        for j in 0..num {
            let (p, lane) = (j / LANES, j % LANES);
            let (s, h, r) = quantize(&rows[j * dim..(j + 1) * dim], &mut codes[..dim]);
            for q in 0..quads {
                let word: [u8; 4] = std::array::from_fn(|i| codes[4 * q + i] as u8);
                panels[p * quads + q].0[lane] = u32::from_le_bytes(word);
            }
            let sum: i32 = codes[..dim].iter().map(|&c| i32::from(c)).sum();
            norms[p].0[lane] = (norms_sq[j] as f32).to_bits();
            scales[p].0[lane] = s.to_bits();
            offsets[p].0[lane] = (128 * sum) as u32;
            c_hat_max = c_hat_max.max(h);
            c_residual_max = c_residual_max.max(r);
        }
        Self {
            kernel,
            quads,
            panels,
            norms,
            scales,
            offsets,
            c_hat_max,
            c_residual_max,
        }
    }

    /// Bytes of the int8 panels (what a search streams).
    pub fn nbytes(&self) -> usize {
        self.panels.len() * std::mem::size_of::<Row16>()
    }

    pub fn num_panels(&self) -> usize {
        self.norms.len()
    }
}

/// A block of queries packed for the int8 pass (once per call, shared by its tasks).
pub struct QueryPack {
    /// `(first row in the block, live rows, MR variant, packed words)` per micro-group.
    groups: Vec<(usize, usize, usize, Vec<u32>)>,
    /// `−2·s_x` of each row of the block.
    minus_two_scales: Vec<f32>,
    /// `E(x)` of each row of the block.
    margins: Vec<f64>,
}

/// Packs queries `q0..q1` of `data.x`; `x_norms_sq[i]` is the exact `‖x_i‖²`.
pub fn pack_queries(
    packed: &I8Centroids,
    data: &ExactData<'_>,
    c_norm_max: f64,
    x_norms_sq: &[f64],
    q0: usize,
    q1: usize,
) -> QueryPack {
    let (d, quads) = (data.dim, packed.quads);
    let mut codes = vec![0i8; 4 * quads];
    let mut margins = Vec::with_capacity(q1 - q0);
    let mut minus_two_scales = Vec::with_capacity(q1 - q0);
    let mut groups = Vec::new();
    let mut start = q0;
    while start < q1 {
        let len = (q1 - start).min(12);
        let mr = variant(len);
        // Padding rows and dimensions: code 0, i.e. byte 128.
        let mut words = vec![0x8080_8080u32; quads * mr];
        for r in 0..len {
            let row = start + r;
            let (s, x_hat, x_residual) = quantize(&data.x[row * d..(row + 1) * d], &mut codes[..d]);
            // Four codes per word, each offset by 128 (flipping the sign bit of the byte).
            for (q, c) in codes.chunks_exact(4).enumerate() {
                let word = u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]);
                words[q * mr + r] = word ^ 0x8080_8080;
            }
            let n = RoundedNorms {
                x_hat,
                x_residual,
                c_max: c_norm_max,
                c_hat_max: packed.c_hat_max,
                c_residual_max: packed.c_residual_max,
            };
            margins.push(score_margin(
                dot_error_int8(&n),
                x_norms_sq[row].sqrt(),
                c_norm_max,
            ));
            minus_two_scales.push(-2.0 * s);
        }
        groups.push((start - q0, len, mr, words));
        start += len;
    }
    QueryPack {
        groups,
        minus_two_scales,
        margins,
    }
}

/// Scans centroid panels `p0..p1` for the queries of `pack` (`states[i]` is row i of the
/// block), evaluating exactly every candidate under each query's threshold.
pub fn scan(
    packed: &I8Centroids,
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
        type RunGroup = unsafe fn(
            &I8Centroids,
            &ExactData<'_>,
            usize,
            &[u32],
            &[f32],
            &mut [QueryState],
            usize,
            usize,
        );
        let run: RunGroup = match packed.kernel {
            I8Kernel::Avx512 => kernel::avx512::run_group,
            I8Kernel::Avx256Vex => kernel::vex::run_group,
            I8Kernel::Avx256Evex => kernel::evex::run_group,
        };
        let groups = &pack.groups;
        by_chunk_and_group(packed.quads, groups, states, (p0, p1), |g, st, c0, c1| {
            let m2s = &pack.minus_two_scales[g.0..g.0 + g.1];
            // SAFETY: the index chose its engine only where `Engine::is_supported`, i.e. the
            // CPU has the kernel's features (`I8Kernel::available`).
            unsafe { run(packed, data, g.2, &g.3, m2s, st, c0, c1) }
        });
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (packed, pack, data, states, p0, p1);
        unreachable!("the int8 engine is only selected on x86_64");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_measures_its_residual_exactly() {
        for (n, scale) in [
            (1usize, 1.0f32),
            (5, 1e-3),
            (17, 3e4),
            (64, 1.0),
            (3, 1e-35),
            (100, 2.5),
            (515, 0.3),
        ] {
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.0137 * scale)
                .collect();
            let mut out = vec![0i8; n];
            let (s, hat, res) = quantize(&v, &mut out);
            // The AVX-512 copy (where it runs) and the plain one agree bit for bit.
            let mut plain = vec![0i8; n];
            assert_eq!(quantize_impl(&v, &mut plain), (s, hat, res));
            assert_eq!(plain, out);
            // So does the AVX2 copy (what an AVX-VNNI CPU without AVX-512 runs).
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut avx2 = vec![0i8; n];
                // SAFETY: AVX2 was just detected.
                assert_eq!(unsafe { quantize_avx2(&v, &mut avx2) }, (s, hat, res));
                assert_eq!(avx2, out);
            }
            let want_hat: f64 = out
                .iter()
                .map(|&q| (f64::from(s) * f64::from(q)).powi(2))
                .sum::<f64>()
                .sqrt();
            let want_res: f64 = v
                .iter()
                .zip(&out)
                .map(|(&a, &q)| (f64::from(a) - f64::from(s) * f64::from(q)).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(out.iter().all(|&q| (-127..=127).contains(&q)));
            assert!((hat - want_hat).abs() <= 1e-12 * want_hat.max(1e-300));
            assert!((res - want_res).abs() <= 1e-12 * want_res.max(1e-300));
            let norm = v.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
            if scale > 1e-30 && norm > 0.0 {
                // Per-vector int8: the residual is at most half a step per component.
                assert!(res <= 0.5 * f64::from(s) * (n as f64).sqrt() * (1.0 + 1e-6));
            }
        }
    }
}
