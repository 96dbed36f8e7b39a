//! f32 candidate passes on x86 SIMD: `avx2-f32` (AVX2+FMA, panels of 8 centroids) and
//! `avx512-f32` (AVX-512F, panels of 16). Centroids are packed once as f32 panels (one vector
//! lane per centroid, one row per dimension); an MR × NP register tile of dot products (MR
//! queries broadcast, NP panels) is folded straight into each query's candidate threshold.
//! One macro writes both kernels from the same code; only the vector width and the intrinsics
//! differ. The margin is the f32 one (`margin::dot_error_f32`, `candidates::set_f32_margins`).

use super::candidates::{set_f32_margins, ExactData, QueryState};

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
        Self {
            isa,
            dim,
            num_panels,
            panels,
            norms,
        }
    }

    pub fn isa(&self) -> Isa {
        self.isa
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
    set_f32_margins(states, x_norms_sq, data.dim, c_norm_max);
    let lanes = packed.isa.lanes();
    let (p0, p1) = (j0 / lanes, j1.div_ceil(lanes).min(packed.num_panels));
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the index chose this engine only after `Isa::available()`.
        unsafe {
            match packed.isa {
                Isa::Avx2 => avx2::scan(packed, data, states, p0, p1),
                Isa::Avx512 => avx512::scan(packed, data, states, p0, p1),
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
/// (`zero`, `load`, `bcast`, `fma`, `le_mask`, `store`, type `V`).
#[cfg(target_arch = "x86_64")]
macro_rules! f32_kernel {
    ($name:ident, $feat:literal, $lanes:expr, $group:expr, [$np1:expr, $np2:expr, $np4:expr, $npg:expr], $ops:item) => {
        mod $name {
            use super::super::candidates::{ExactData, QueryState};
            use super::F32Centroids;

            $ops

            use ops::*;

            const LANES: usize = $lanes;
            /// Rows per micro-group.
            const GROUP: usize = $group;
            /// Panels per cache chunk (~256 KiB at any D).
            const CHUNK_BYTES: usize = 256 << 10;

            #[target_feature(enable = $feat)]
            #[inline]
            #[allow(clippy::too_many_arguments)]
            unsafe fn micro<const MR: usize, const NP: usize>(
                xg: *const f32,
                panels: *const f32,
                norms: *const f32,
                dim: usize,
                first_centroid: usize,
                states: &mut [QueryState],
                data: &ExactData<'_>,
            ) {
                let mut acc = [[zero(); NP]; MR];
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
                let minus_two = bcast(-2.0);
                for (row, st) in acc.iter().zip(states.iter_mut()) {
                    for (p, dots) in row.iter().enumerate() {
                        let v = fma(*dots, minus_two, load(norms.add(p * LANES)));
                        let mask = le_mask(v, bcast(st.t));
                        if mask != 0 {
                            let mut vals = [0.0f32; LANES];
                            store(vals.as_mut_ptr(), v);
                            st.offer_lanes(first_centroid + p * LANES, &vals, mask, data);
                        }
                    }
                }
            }

            #[target_feature(enable = $feat)]
            unsafe fn group<const MR: usize, const NP: usize>(
                packed: &F32Centroids,
                xg: &[f32],
                states: &mut [QueryState],
                data: &ExactData<'_>,
                p0: usize,
                p1: usize,
            ) {
                let dim = packed.dim;
                let base = packed.panels.as_ptr().cast::<f32>();
                let norms = packed.norms.as_ptr().cast::<f32>();
                let mut p = p0;
                while p + NP <= p1 {
                    micro::<MR, NP>(
                        xg.as_ptr(),
                        base.add(p * dim * LANES),
                        norms.add(p * LANES),
                        dim,
                        p * LANES,
                        states,
                        data,
                    );
                    p += NP;
                }
                while p < p1 {
                    micro::<MR, 1>(
                        xg.as_ptr(),
                        base.add(p * dim * LANES),
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
            pub(super) unsafe fn scan(
                packed: &F32Centroids,
                data: &ExactData<'_>,
                states: &mut [QueryState],
                p0: usize,
                p1: usize,
            ) {
                let d = data.dim;
                // Queries of each micro-group packed as [l][r] (padding rows zero).
                let groups: Vec<(usize, usize, Vec<f32>)> = (0..states.len())
                    .step_by(GROUP)
                    .map(|start| {
                        let len = (states.len() - start).min(GROUP);
                        let mr = match len {
                            1 => 1,
                            2 => 2,
                            3..=4 => 4,
                            _ => GROUP,
                        };
                        let mut words = vec![0.0f32; d * mr];
                        for r in 0..len {
                            let row = states[start + r].row;
                            for (l, &v) in data.x[row * d..(row + 1) * d].iter().enumerate() {
                                words[l * mr + r] = v;
                            }
                        }
                        (start, len, words)
                    })
                    .collect();
                let chunk = (CHUNK_BYTES / (d * 4 * LANES)).max(1);
                let mut c0 = p0;
                while c0 < p1 {
                    let c1 = (c0 + chunk).min(p1);
                    for (start, len, words) in &groups {
                        let st = &mut states[*start..*start + *len];
                        match words.len() / d {
                            1 => group::<1, $np1>(packed, words, st, data, c0, c1),
                            2 => group::<2, $np2>(packed, words, st, data, c0, c1),
                            4 => group::<4, $np4>(packed, words, st, data, c0, c1),
                            _ => group::<GROUP, $npg>(packed, words, st, data, c0, c1),
                        }
                    }
                    c0 = c1;
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
f32_kernel!(
    avx2,
    "avx2,fma",
    8,
    6,
    [4, 4, 3, 2],
    mod ops {
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
    }
);

#[cfg(target_arch = "x86_64")]
f32_kernel!(
    avx512,
    "avx512f",
    16,
    12,
    [8, 8, 6, 2],
    mod ops {
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
    }
);
