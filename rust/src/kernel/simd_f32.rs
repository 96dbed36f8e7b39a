//! f32 candidate passes on x86 SIMD: `avx2-f32` (AVX2+FMA, panels of 8 centroids) and
//! `avx512-f32` (AVX-512F, panels of 16). Centroids are packed once as f32 panels (one vector
//! lane per centroid, one row per dimension); an MR × NP register tile of dot products (MR
//! queries broadcast, NP panels) is folded straight into each query's candidate threshold.
//! One macro writes both kernels from the same code; only the vector width and the intrinsics
//! differ. The margin is the f32 one (`margin::dot_error_f32`, `candidates::set_f32_margins`).
//!
//! Few-query calls (at most [`BF16_STORAGE_MAX_ROWS`] queries per block) are bound by reading
//! the panels, not by the FMAs: they read a second copy of the panels stored as bf16 (half the
//! bytes). Each 32-bit word of that copy holds one centroid's dimensions 2m (low half) and
//! 2m + 1 (high half), so one load gives two f32 vectors by a 16-bit shift and a mask (no
//! shuffle, no BF16 instruction). A single query sums its even and its odd dimensions in two
//! accumulators (twice the independent FMA chains), added at the end. The queries stay f32, so
//! the margin adds only the centroids' storage rounding:
//! `‖x‖·max‖c − ĉ‖ + γ_{D+2}·‖x‖·max‖ĉ‖` (`margin::dot_error_bf16` with no query residual; two
//! partial sums of at most ⌈D/2⌉ terms and their sum round within `γ_{D+2}`).

use super::bf16::round_with_norms;
use super::candidates::{set_f32_margins, ExactData, QueryState};
use super::margin::{dot_error_bf16, score_margin, RoundedNorms};

/// Query blocks of at most this many rows read the bf16 copy of the panels.
pub const BF16_STORAGE_MAX_ROWS: usize = 4;

/// The instruction set of an f32 pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX2 + FMA, 8 lanes.
    Avx2,
    /// AVX-512F, 16 lanes.
    Avx512,
}

impl Isa {
    /// Centroids per panel (lanes of one vector register).
    pub fn lanes(self) -> usize {
        match self {
            Self::Avx2 => 8,
            Self::Avx512 => 16,
        }
    }

    /// True when this CPU runs the pass.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Self::Avx2 => {
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                }
                Self::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = self;
            false
        }
    }
}

/// One 64-byte aligned block of panel storage (16 f32).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct Block(pub [f32; 16]);

/// One 64-byte aligned block of bf16 panel storage (32 values).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct HalfBlock(pub [u16; 32]);

/// The centroids packed for an f32 pass (built once per index).
pub struct F32Centroids {
    isa: Isa,
    dim: usize,
    num_panels: usize,
    /// Panel p, dimension l, lane i at f32 offset `(p * dim + l) * lanes + i` (rows are
    /// vector-aligned: 32 or 64 bytes).
    panels: Vec<Block>,
    /// `‖c_j‖²` rounded to f32 at offset `p * lanes + i`; +inf in padding lanes.
    norms: Vec<Block>,
    /// The centroids rounded to bf16, two dimensions per 32-bit word: panel p, dimension pair
    /// m (dimensions 2m, 2m + 1; a zero above an odd D), lane i at word offset
    /// `(p * ⌈D/2⌉ + m) * lanes + i`, dimension 2m in the low 16 bits.
    panels_bf16: Vec<HalfBlock>,
    /// `max_j ‖ĉ_j‖` and `max_j ‖c_j − ĉ_j‖` of the bf16 copy.
    c_hat_max: f64,
    c_residual_max: f64,
}

impl F32Centroids {
    /// Packs row-major f32 centroids `(K, D)` with their exact squared norms.
    pub fn pack(isa: Isa, rows: &[f32], num: usize, dim: usize, norms_sq: &[f64]) -> Self {
        let lanes = isa.lanes();
        let num_panels = num.div_ceil(lanes);
        let mut panels = vec![Block::default(); (num_panels * dim * lanes).div_ceil(16)];
        let mut norms = vec![Block([f32::INFINITY; 16]); (num_panels * lanes).div_ceil(16)];
        {
            let flat = as_flat_mut(&mut panels);
            for j in 0..num {
                let (p, lane) = (j / lanes, j % lanes);
                for (l, &v) in rows[j * dim..(j + 1) * dim].iter().enumerate() {
                    flat[(p * dim + l) * lanes + lane] = v;
                }
            }
        }
        let flat_norms = as_flat_mut(&mut norms);
        for (j, &n) in norms_sq.iter().enumerate().take(num) {
            flat_norms[j] = n as f32;
        }
        let pairs = dim.div_ceil(2);
        let mut panels_bf16 = vec![HalfBlock::default(); (num_panels * pairs * lanes).div_ceil(16)];
        let (mut c_hat_max, mut c_residual_max) = (0.0f64, 0.0f64);
        {
            // SAFETY: `HalfBlock` is `repr(C, align(64))` over `[u16; 32]` with no padding (64
            // bytes, 16 aligned u32 words).
            let words: &mut [u32] = unsafe {
                std::slice::from_raw_parts_mut(
                    panels_bf16.as_mut_ptr().cast(),
                    panels_bf16.len() * 16,
                )
            };
            let mut hat = vec![0u16; 2 * pairs];
            for j in 0..num {
                let (p, lane) = (j / lanes, j % lanes);
                let (h, r) = round_with_norms(&rows[j * dim..(j + 1) * dim], &mut hat[..dim]);
                for (m, pair) in hat.chunks_exact(2).enumerate() {
                    words[(p * pairs + m) * lanes + lane] =
                        u32::from(pair[0]) | (u32::from(pair[1]) << 16);
                }
                c_hat_max = c_hat_max.max(h);
                c_residual_max = c_residual_max.max(r);
            }
        }
        Self {
            isa,
            dim,
            num_panels,
            panels,
            norms,
            panels_bf16,
            c_hat_max,
            c_residual_max,
        }
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Bytes of the panels a search of `queries` rows streams: the bf16 copy for at most
    /// [`BF16_STORAGE_MAX_ROWS`], else the f32 panels.
    pub fn nbytes(&self, queries: usize) -> usize {
        if queries <= BF16_STORAGE_MAX_ROWS {
            self.panels_bf16.len() * std::mem::size_of::<HalfBlock>()
        } else {
            self.panels.len() * std::mem::size_of::<Block>()
        }
    }

    pub fn num_panels(&self) -> usize {
        self.num_panels
    }
}

fn as_flat_mut(blocks: &mut [Block]) -> &mut [f32] {
    // SAFETY: `Block` is `repr(C)` over `[f32; 16]` with no padding (64 bytes).
    unsafe { std::slice::from_raw_parts_mut(blocks.as_mut_ptr().cast(), blocks.len() * 16) }
}

/// Scans centroids `j0..j1` (multiples of the panel width except at K) for `states`.
pub fn scan(
    packed: &F32Centroids,
    data: &ExactData<'_>,
    c_norm_max: f64,
    states: &mut [QueryState],
    x_norms_sq: &[f64],
    j0: usize,
    j1: usize,
) {
    let half = states.len() <= BF16_STORAGE_MAX_ROWS;
    if half {
        for st in states.iter_mut() {
            let x_norm = x_norms_sq[st.row].sqrt();
            let n = RoundedNorms {
                x_hat: x_norm,
                x_residual: 0.0,
                c_max: c_norm_max,
                c_hat_max: packed.c_hat_max,
                c_residual_max: packed.c_residual_max,
            };
            st.set_margin(score_margin(
                dot_error_bf16(data.dim, &n),
                x_norm,
                c_norm_max,
            ));
        }
    } else {
        set_f32_margins(states, x_norms_sq, data.dim, c_norm_max);
    }
    let lanes = packed.isa.lanes();
    let (p0, p1) = (j0 / lanes, j1.div_ceil(lanes).min(packed.num_panels));
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the index chose this engine only after `Isa::available()`.
        unsafe {
            match (packed.isa, half) {
                (Isa::Avx2, false) => avx2::scan::<false>(packed, data, states, p0, p1),
                (Isa::Avx2, true) => avx2::scan::<true>(packed, data, states, p0, p1),
                (Isa::Avx512, false) => avx512::scan::<false>(packed, data, states, p0, p1),
                (Isa::Avx512, true) => avx512::scan::<true>(packed, data, states, p0, p1),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (data, states, p0, p1);
        unreachable!("the SIMD f32 engines are only selected on x86_64");
    }
}

/// Writes the kernel module `$name` for one instruction set: `$feat` its target features,
/// `$lanes` its vector width, `$group` the rows per micro-group and `$tiles` the NP used
/// for each MR variant (MR ∈ {1, 2, 4, $group}); `$ops` a module of `#[inline]` vector ops
/// (`zero`, `load`, `load_bf16_pair`, `bcast`, `fma`, `add`, `le_mask`, `store`, type `V`: [`avx2_ops`],
/// [`avx512_ops`]).
#[cfg(target_arch = "x86_64")]
macro_rules! f32_kernel {
    ($name:ident, $feat:literal, $lanes:expr, $group:expr, [$np1:expr, $np2:expr, $np4:expr, $npg:expr], $ops:ident) => {
        mod $name {
            use super::super::candidates::{ExactData, QueryState};
            use super::F32Centroids;

            use super::$ops::*;

            const LANES: usize = $lanes;
            /// Rows per micro-group.
            const GROUP: usize = $group;
            /// Panels per cache chunk (~256 KiB at any D).
            const CHUNK_BYTES: usize = 256 << 10;

            #[target_feature(enable = $feat)]
            #[inline]
            #[allow(clippy::too_many_arguments)]
            unsafe fn micro<const MR: usize, const NP: usize, const HALF: bool>(
                xg: *const f32,
                panels: *const f32,
                panels_bf16: *const u32,
                norms: *const f32,
                dim: usize,
                first_centroid: usize,
                states: &mut [QueryState],
                data: &ExactData<'_>,
            ) {
                let mut acc = [[zero(); NP]; MR];
                if HALF {
                    // Dimension pairs: even dimensions into `acc`, odd ones into `odd` for a
                    // single query (more independent chains), into `acc` too otherwise.
                    let mut odd = [[zero(); NP]; MR];
                    let pairs = dim.div_ceil(2);
                    for m in 0..pairs {
                        let mut even_v = [zero(); NP];
                        let mut odd_v = [zero(); NP];
                        for p in 0..NP {
                            (even_v[p], odd_v[p]) =
                                load_bf16_pair(panels_bf16.add((p * pairs + m) * LANES));
                        }
                        let xl = xg.add(2 * m * MR);
                        for (r, (row, odd_row)) in acc.iter_mut().zip(odd.iter_mut()).enumerate() {
                            let (xe, xo) = (bcast(*xl.add(r)), bcast(*xl.add(MR + r)));
                            for p in 0..NP {
                                row[p] = fma(xe, even_v[p], row[p]);
                                if MR == 1 {
                                    odd_row[p] = fma(xo, odd_v[p], odd_row[p]);
                                } else {
                                    row[p] = fma(xo, odd_v[p], row[p]);
                                }
                            }
                        }
                    }
                    if MR == 1 {
                        for p in 0..NP {
                            acc[0][p] = add(acc[0][p], odd[0][p]);
                        }
                    }
                } else {
                    for l in 0..dim {
                        let mut cv = [zero(); NP];
                        for (p, c) in cv.iter_mut().enumerate() {
                            *c = load(panels.add((p * dim + l) * LANES));
                        }
                        let xl = xg.add(l * MR);
                        for (r, row) in acc.iter_mut().enumerate() {
                            let xb = bcast(*xl.add(r));
                            for (a, c) in row.iter_mut().zip(cv.iter()) {
                                *a = fma(xb, *c, *a);
                            }
                        }
                    }
                }
                let minus_two = bcast(-2.0);
                for (row, st) in acc.iter().zip(states.iter_mut()) {
                    for (p, dots) in row.iter().enumerate() {
                        let v = fma(*dots, minus_two, load(norms.add(p * LANES)));
                        let mask = le_mask(v, bcast(st.t));
                        if mask != 0 {
                            let mut vals = [0.0f32; LANES];
                            store(vals.as_mut_ptr(), v);
                            st.offer_lanes(first_centroid + p * LANES, &vals, data);
                        }
                    }
                }
            }

            #[target_feature(enable = $feat)]
            unsafe fn group<const MR: usize, const NP: usize, const HALF: bool>(
                packed: &F32Centroids,
                xg: &[f32],
                states: &mut [QueryState],
                data: &ExactData<'_>,
                p0: usize,
                p1: usize,
            ) {
                let dim = packed.dim;
                let base = packed.panels.as_ptr().cast::<f32>();
                let base_bf16 = packed.panels_bf16.as_ptr().cast::<u32>();
                let pairs = dim.div_ceil(2);
                let norms = packed.norms.as_ptr().cast::<f32>();
                let mut p = p0;
                while p + NP <= p1 {
                    micro::<MR, NP, HALF>(
                        xg.as_ptr(),
                        base.add(p * dim * LANES),
                        base_bf16.add(p * pairs * LANES),
                        norms.add(p * LANES),
                        dim,
                        p * LANES,
                        states,
                        data,
                    );
                    p += NP;
                }
                while p < p1 {
                    micro::<MR, 1, HALF>(
                        xg.as_ptr(),
                        base.add(p * dim * LANES),
                        base_bf16.add(p * pairs * LANES),
                        norms.add(p * LANES),
                        dim,
                        p * LANES,
                        states,
                        data,
                    );
                    p += 1;
                }
            }

            /// # Safety
            /// The CPU must have `$feat`.
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn scan<const HALF: bool>(
                packed: &F32Centroids,
                data: &ExactData<'_>,
                states: &mut [QueryState],
                p0: usize,
                p1: usize,
            ) {
                let d = data.dim;
                // Queries of each micro-group packed as [l][r] (padding rows zero).
                let groups: Vec<(usize, usize, usize, Vec<f32>)> = (0..states.len())
                    .step_by(GROUP)
                    .map(|start| {
                        let len = (states.len() - start).min(GROUP);
                        let mr = match len {
                            1 => 1,
                            2 => 2,
                            3..=4 => 4,
                            _ => GROUP,
                        };
                        // an even number of dimension rows: the bf16 pass reads them in pairs
                        let mut words = vec![0.0f32; d.next_multiple_of(2) * mr];
                        for r in 0..len {
                            let row = states[start + r].row;
                            for (l, &v) in data.x[row * d..(row + 1) * d].iter().enumerate() {
                                words[l * mr + r] = v;
                            }
                        }
                        (start, len, mr, words)
                    })
                    .collect();
                let bytes = if HALF { 2 } else { 4 };
                let chunk = (CHUNK_BYTES / (d * bytes * LANES)).max(1);
                let mut c0 = p0;
                while c0 < p1 {
                    let c1 = (c0 + chunk).min(p1);
                    for (start, len, mr, words) in &groups {
                        let st = &mut states[*start..*start + *len];
                        match mr {
                            1 => group::<1, $np1, HALF>(packed, words, st, data, c0, c1),
                            2 => group::<2, $np2, HALF>(packed, words, st, data, c0, c1),
                            4 => group::<4, $np4, HALF>(packed, words, st, data, c0, c1),
                            _ => group::<GROUP, $npg, HALF>(packed, words, st, data, c0, c1),
                        }
                    }
                    c0 = c1;
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
f32_kernel!(avx2, "avx2,fma", 8, 6, [4, 4, 3, 2], avx2_ops);

#[cfg(target_arch = "x86_64")]
f32_kernel!(avx512, "avx512f", 16, 12, [8, 8, 6, 2], avx512_ops);

/// The AVX2+FMA (8 lanes) vector ops of the f32 kernels (`simd_f32`, `dense`).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2_ops {
    use std::arch::x86_64::*;
    pub type V = __m256;
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn zero() -> V {
        _mm256_setzero_ps()
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn load(p: *const f32) -> V {
        _mm256_load_ps(p)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn bcast(v: f32) -> V {
        _mm256_set1_ps(v)
    }
    /// 8 words of two bf16 values each, widened to f32: (low halves by a 16-bit shift, high
    /// halves by a mask).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn load_bf16_pair(p: *const u32) -> (V, V) {
        let w = _mm256_load_si256(p.cast());
        let low = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w));
        let high = _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(-65536)));
        (low, high)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn fma(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn le_mask(v: V, t: V) -> u32 {
        _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(v, t)) as u32
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn store(p: *mut f32, v: V) {
        _mm256_storeu_ps(p, v)
    }
    /// An unaligned load.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn loadu(p: *const f32) -> V {
        _mm256_loadu_ps(p)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn add(a: V, b: V) -> V {
        _mm256_add_ps(a, b)
    }
    /// Asks for the cache line at `p` into L2 (a hint: any address is allowed).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn prefetch(p: *const f32) {
        _mm_prefetch::<_MM_HINT_T1>(p.cast())
    }
}

/// The AVX-512F (16 lanes) vector ops of the f32 kernels (`simd_f32`, `dense`).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512_ops {
    use std::arch::x86_64::*;
    pub type V = __m512;
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn zero() -> V {
        _mm512_setzero_ps()
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn load(p: *const f32) -> V {
        _mm512_load_ps(p)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn bcast(v: f32) -> V {
        _mm512_set1_ps(v)
    }
    /// 16 words of two bf16 values each, widened to f32: (low halves by a 16-bit shift, high
    /// halves by a mask).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn load_bf16_pair(p: *const u32) -> (V, V) {
        let w = _mm512_load_si512(p.cast());
        let low = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w));
        let high = _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32(-65536)));
        (low, high)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn fma(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn le_mask(v: V, t: V) -> u32 {
        u32::from(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, t))
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn store(p: *mut f32, v: V) {
        _mm512_storeu_ps(p, v)
    }
    /// An unaligned load.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn loadu(p: *const f32) -> V {
        _mm512_loadu_ps(p)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn add(a: V, b: V) -> V {
        _mm512_add_ps(a, b)
    }
    /// Asks for the cache line at `p` into L2 (a hint: any address is allowed).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn prefetch(p: *const f32) {
        _mm_prefetch::<_MM_HINT_T1>(p.cast())
    }
}
