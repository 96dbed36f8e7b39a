//! AVX2+FMA f32 candidate pass (CPUs without AVX-512 BF16): centroids packed once as f32
//! panels of 8 (one ymm lane per centroid, one 32-byte row per dimension), a 6 × 16 register
//! tile of dot products, folded straight into each query's candidate threshold.
//! The margin is the f32 one (`margin::dot_error_f32`).

use super::candidates::{set_f32_margins, ExactData, QueryState};

/// Centroids per panel (lanes of a ymm register).
pub const LANES: usize = 8;

/// 32 bytes of a panel row: 8 f32 lanes.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
pub struct Row8(pub [f32; LANES]);

/// True when this CPU runs the AVX2+FMA kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The centroids packed for the AVX2 pass (built once per index).
pub struct F32Centroids {
    dim: usize,
    /// `num_panels * dim` rows; panel p is rows `p*dim .. (p+1)*dim`.
    panels: Vec<Row8>,
    /// Per panel: `‖c_j‖²` rounded to f32; +inf in padding lanes.
    norms: Vec<Row8>,
}

impl F32Centroids {
    /// Packs row-major f32 centroids `(K, D)` with their exact squared norms.
    pub fn pack(rows: &[f32], num: usize, dim: usize, norms_sq: &[f64]) -> Self {
        let num_panels = num.div_ceil(LANES);
        let mut panels = vec![Row8::default(); num_panels * dim];
        let mut norms = vec![Row8([f32::INFINITY; LANES]); num_panels];
        for j in 0..num {
            let (p, lane) = (j / LANES, j % LANES);
            for (l, &v) in rows[j * dim..(j + 1) * dim].iter().enumerate() {
                panels[p * dim + l].0[lane] = v;
            }
            norms[p].0[lane] = norms_sq[j] as f32;
        }
        Self { dim, panels, norms }
    }

    pub fn num_panels(&self) -> usize {
        self.norms.len()
    }
}

/// Scans centroids `j0..j1` (multiples of 8 except at K) for `states`.
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
    let (p0, p1) = (j0 / LANES, j1.div_ceil(LANES).min(packed.num_panels()));
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `available()` was checked when the index chose this engine.
        unsafe { kernel::scan(packed, data, states, p0, p1) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (packed, data, states, p0, p1);
        unreachable!("the AVX2 engine is only selected on x86_64");
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::super::candidates::{ExactData, QueryState};
    use super::{F32Centroids, Row8, LANES};

    /// Rows per micro-group.
    const GROUP: usize = 6;
    /// Panels per cache chunk (~256 KiB at D = 512).
    const CHUNK_BYTES: usize = 256 << 10;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn micro<const MR: usize, const NP: usize>(
        xg: *const f32,
        panels: *const Row8,
        norms: *const Row8,
        dim: usize,
        first_centroid: usize,
        states: &mut [QueryState],
        data: &ExactData<'_>,
    ) {
        let mut acc = [[_mm256_setzero_ps(); NP]; MR];
        for l in 0..dim {
            let mut cv = [_mm256_setzero_ps(); NP];
            for (p, c) in cv.iter_mut().enumerate() {
                *c = _mm256_load_ps((*panels.add(p * dim + l)).0.as_ptr());
            }
            let xl = xg.add(l * MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let xb = _mm256_broadcast_ss(&*xl.add(r));
                for (a, c) in row.iter_mut().zip(cv.iter()) {
                    *a = _mm256_fmadd_ps(xb, *c, *a);
                }
            }
        }
        let minus_two = _mm256_set1_ps(-2.0);
        for (row, st) in acc.iter().zip(states.iter_mut()) {
            for (p, dots) in row.iter().enumerate() {
                let cn = _mm256_load_ps((*norms.add(p)).0.as_ptr());
                let v = _mm256_fmadd_ps(*dots, minus_two, cn);
                let le = _mm256_cmp_ps::<_CMP_LE_OQ>(v, _mm256_set1_ps(st.t));
                let mask = _mm256_movemask_ps(le) as u32;
                if mask != 0 {
                    let mut vals = [0.0f32; LANES];
                    _mm256_storeu_ps(vals.as_mut_ptr(), v);
                    st.offer_lanes(first_centroid + p * LANES, &vals, mask, data);
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn group<const MR: usize, const NP: usize>(
        packed: &F32Centroids,
        xg: &[f32],
        states: &mut [QueryState],
        data: &ExactData<'_>,
        p0: usize,
        p1: usize,
    ) {
        let dim = packed.dim;
        let base = packed.panels.as_ptr();
        let norms = packed.norms.as_ptr();
        let mut p = p0;
        while p + NP <= p1 {
            micro::<MR, NP>(
                xg.as_ptr(),
                base.add(p * dim),
                norms.add(p),
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
                base.add(p * dim),
                norms.add(p),
                dim,
                p * LANES,
                states,
                data,
            );
            p += 1;
        }
    }

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
        let chunk = (CHUNK_BYTES / (d * 32)).max(1);
        let mut c0 = p0;
        while c0 < p1 {
            let c1 = (c0 + chunk).min(p1);
            for (start, len, words) in &groups {
                let st = &mut states[*start..*start + *len];
                match words.len() / d {
                    1 => group::<1, 4>(packed, words, st, data, c0, c1),
                    2 => group::<2, 4>(packed, words, st, data, c0, c1),
                    4 => group::<4, 3>(packed, words, st, data, c0, c1),
                    _ => group::<GROUP, 2>(packed, words, st, data, c0, c1),
                }
            }
            c0 = c1;
        }
    }
}
