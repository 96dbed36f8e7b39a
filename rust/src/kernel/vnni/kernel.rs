//! The int8 kernels (`vpdpbusd`) over the packing of `vnni.rs`, written once by a macro over
//! the vector width and the `vpdpbusd` form, instantiated three times:
//! * `avx512` (`avx512-vnni-i8`): `_mm512_dpbusd_epi32`, one zmm per 16-centroid panel row;
//! * `vex` (`avx-vnni-i8` on AVX-VNNI CPUs without AVX-512: Intel Alder Lake and later client
//!   parts, AMD Zen 5 client parts): `_mm256_dpbusd_avx_epi32`, two ymm halves per panel row
//!   (lanes 0–7, 8–15). **Never executed during development**: the machine it was written on
//!   (AMD Zen 4) has AVX-512 VNNI but not AVX-VNNI; it differs from `evex` only in that one
//!   intrinsic (and its target feature).
//! * `evex` (`avx-vnni-i8` on CPUs with AVX-512 VNNI + VL but not AVX-VNNI, e.g. Zen 4, Ice
//!   Lake): `_mm256_dpbusd_epi32`, the EVEX encoding of the same 256-bit instruction; what the
//!   tests exercise on such a CPU.
//!
//! Every width rescales each lane's integer dot product with the same three f32 operations
//! (int32 → f32, the scale product, one FMA with `‖c‖²`) on the same values, so a candidate
//! score is bit-identical whatever the width and `margin::dot_error_int8` bounds it
//! unchanged; the int32 lanes sum the same products (the overflow argument of `vnni.rs`
//! holds for any subset of one centroid's D products, hence for every accumulator and sum).
//!
//! Register tiles: MR query rows × NP panels × (vectors per panel row) accumulators, NP panel
//! rows loaded per quad, one broadcast. zmm (32 registers): MR × NP = 2×8, 4×6, 8×3, 12×2. ymm
//! (16 registers for VEX code): 2×2, 4×1, and micro-groups of 8 or 12 rows as sub-groups of
//! 4 or 6 rows × 1 panel (each sub-group re-reads the chunk of panels, from cache).

use super::super::bf16::LANES;

/// Lanes `v ≤ t` (ordered) of 16 f32 as a mask.
#[target_feature(enable = "avx512f")]
#[inline]
fn le_mask_zmm(v: std::arch::x86_64::__m512, t: std::arch::x86_64::__m512) -> u32 {
    use std::arch::x86_64::*;
    u32::from(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, t))
}

/// Lanes `v ≤ t` (ordered) of 8 f32 as a mask.
#[target_feature(enable = "avx2")]
#[inline]
fn le_mask_ymm(v: std::arch::x86_64::__m256, t: std::arch::x86_64::__m256) -> u32 {
    use std::arch::x86_64::*;
    _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(v, t)) as u32
}

/// Writes kernel module `$name` for target features `$feat`: integer vector type `$iv`,
/// float `$fv`, `$per_row` vectors per 64-byte panel row, `$sets` accumulator sets of the
/// one-query pass, `[$r, $n]` the sub-group rows and panels of micro-groups of 2, 4, 8, 12
/// rows, then the intrinsics: `$dp` the `vpdpbusd` form, the others as their names say.
macro_rules! i8_kernel {
    ($name:ident, $feat:literal, $iv:ty, $fv:ty, $per_row:literal, $sets:literal,
     [$r2:literal, $n2:literal], [$r4:literal, $n4:literal], [$r8:literal, $n8:literal],
     [$r12:literal, $n12:literal], $dp:ident, $zero:ident, $load:ident, $set1:ident,
     $add:ident, $sub:ident, $cvt:ident, $cast:ident, $mul:ident, $set1ps:ident,
     $fmadd:ident, $store:ident, $le:ident, $min:ident) => {
        pub(in super::super) mod $name {
            use std::arch::x86_64::*;

            use super::super::super::bf16::Row16;
            use super::super::super::candidates::{ExactData, QueryState};
            use super::super::I8Centroids;
            use super::LANES;

            /// Vectors per panel row, and their lanes.
            const PER_ROW: usize = $per_row;
            const VLANES: usize = LANES / PER_ROW;

            /// Vector `h` of the panel row at `row` (64-byte aligned).
            #[target_feature(enable = $feat)]
            #[inline]
            unsafe fn part(row: *const Row16, h: usize) -> $iv {
                $load(row.cast::<$iv>().add(h).cast())
            }

            /// Integer dot products of MR query rows (words `xg[q * stride + r]`) with NP
            /// consecutive panels from `p`, rescaled to scores, then the threshold test.
            #[target_feature(enable = $feat)]
            #[inline]
            #[allow(clippy::too_many_arguments)]
            unsafe fn micro<const MR: usize, const NP: usize>(
                packed: &I8Centroids,
                xg: *const u32,
                stride: usize,
                minus_two_scales: &[f32],
                p: usize,
                states: &mut [QueryState],
                data: &ExactData<'_>,
                scores: Option<&mut ScoreBuffer>,
            ) {
                let quads = packed.quads;
                let panels = packed.panels.as_ptr().add(p * quads);
                let mut acc = [[[$zero(); PER_ROW]; NP]; MR];
                for q in 0..quads {
                    let mut cv = [[$zero(); PER_ROW]; NP];
                    for (i, c) in cv.iter_mut().enumerate() {
                        for (h, ch) in c.iter_mut().enumerate() {
                            *ch = part(panels.add(i * quads + q), h);
                        }
                    }
                    let xq = xg.add(q * stride);
                    for (r, row) in acc.iter_mut().enumerate() {
                        let xb = $set1(*xq.add(r) as i32);
                        for (a, c) in row.iter_mut().zip(cv.iter()) {
                            for (ah, ch) in a.iter_mut().zip(c.iter()) {
                                *ah = $dp(*ah, xb, *ch);
                            }
                        }
                    }
                }
                match scores {
                    Some(buffer) => {
                        for (r, row) in acc.iter().enumerate().take(states.len()) {
                            for (i, dots) in row.iter().enumerate() {
                                let v = rescale(packed, dots, minus_two_scales[r], p + i);
                                buffer.set(r, p + i, v);
                            }
                        }
                    }
                    None => {
                        for (r, (row, st)) in acc.iter().zip(states.iter_mut()).enumerate() {
                            for (i, dots) in row.iter().enumerate() {
                                offer_panel(packed, dots, minus_two_scales[r], p + i, st, data);
                            }
                        }
                    }
                }
            }

            /// The scores of one query with panel `p` from its integer dot products `dots`
            /// (the three f32 operations of the module docs, per lane).
            #[target_feature(enable = $feat)]
            #[inline]
            unsafe fn rescale(
                packed: &I8Centroids,
                dots: &[$iv; PER_ROW],
                minus_two_scale: f32,
                p: usize,
            ) -> [$fv; PER_ROW] {
                let m2s = $set1ps(minus_two_scale);
                let mut v = [$cast($zero()); PER_ROW];
                for (h, (vh, dh)) in v.iter_mut().zip(dots).enumerate() {
                    let side = |s: &[Row16]| part(s.as_ptr().add(p), h);
                    let dot = $sub(*dh, side(&packed.offsets));
                    let w = $mul($cast(side(&packed.scales)), m2s);
                    *vh = $fmadd($cvt(dot), w, $cast(side(&packed.norms)));
                }
                v
            }

            /// Rescales the integer dot products `dots` of one query with panel `p` to
            /// scores and offers those under the query's threshold. The rescale and the
            /// compare are inlined into the kernels (as a call for every query and panel they
            /// took ~4 % longer at 1024 × 1e3, one thread); only a vector with a lane under
            /// the threshold goes on to [`offer_scores`].
            #[target_feature(enable = $feat)]
            #[inline]
            unsafe fn offer_panel(
                packed: &I8Centroids,
                dots: &[$iv; PER_ROW],
                minus_two_scale: f32,
                p: usize,
                st: &mut QueryState,
                data: &ExactData<'_>,
            ) {
                let v = rescale(packed, dots, minus_two_scale, p);
                offer_if_under(&v, p, st, data);
            }

            /// Offers the scores `v` of panel `p` to `st` if a lane is under its threshold.
            #[target_feature(enable = $feat)]
            #[inline]
            unsafe fn offer_if_under(
                v: &[$fv; PER_ROW],
                p: usize,
                st: &mut QueryState,
                data: &ExactData<'_>,
            ) {
                let t = $set1ps(st.t);
                let mut mask = 0u32;
                for (h, vh) in v.iter().enumerate() {
                    mask |= super::$le(*vh, t) << (h * VLANES);
                }
                if mask != 0 {
                    offer_scores(v, p, st, data);
                }
            }

            /// A micro-group's scores over a chunk of panels, query-major, for the k = 1 pass
            /// of [`group`]: each query's least score of the chunk sets its threshold before
            /// any of the chunk's scores is offered (offering as they come, the threshold
            /// trails the running least score and int8's wide margin lets a vector through for
            /// every few new lows: ~22 of the 62 vectors of a query at 1024 × 1e3). The
            /// one-query pass [`single`], bound by reading the panels, offers as it goes
            /// (buffering it measured no faster at 1 × 1e3).
            pub(in super::super) struct ScoreBuffer {
                scores: Vec<[$fv; PER_ROW]>,
                p0: usize,
                width: usize,
            }

            thread_local! {
                /// This thread's score buffer, kept between calls (a new one per micro-group
                /// and chunk cost more than the offers it saves on small searches).
                static SCORES: std::cell::RefCell<Vec<[$fv; PER_ROW]>> =
                    const { std::cell::RefCell::new(Vec::new()) };
            }

            impl ScoreBuffer {
                fn new(rows: usize, (p0, p1): (usize, usize)) -> Self {
                    let mut scores = SCORES.with(|s| std::mem::take(&mut *s.borrow_mut()));
                    // SAFETY: all-zero bits are a valid f32 vector.
                    scores.resize(rows * (p1 - p0), unsafe { std::mem::zeroed() });
                    Self {
                        scores,
                        p0,
                        width: p1 - p0,
                    }
                }

                fn set(&mut self, r: usize, p: usize, v: [$fv; PER_ROW]) {
                    self.scores[r * self.width + p - self.p0] = v;
                }

                /// Tightens `st` (row `r`) to its least score over the chunk, then offers
                /// the chunk's vectors with a lane under the threshold.
                #[target_feature(enable = $feat)]
                unsafe fn offer_row(&self, r: usize, st: &mut QueryState, data: &ExactData<'_>) {
                    let row = &self.scores[r * self.width..(r + 1) * self.width];
                    let mut least = $set1ps(f32::INFINITY);
                    for v in row {
                        for vh in v {
                            least = $min(least, *vh);
                        }
                    }
                    let mut lanes = [0.0f32; VLANES];
                    $store(lanes.as_mut_ptr(), least);
                    st.tighten_to_least(lanes.iter().fold(f32::INFINITY, |m, &x| m.min(x)));
                    for (i, v) in row.iter().enumerate() {
                        offer_if_under(v, self.p0 + i, st, data);
                    }
                }
            }

            impl Drop for ScoreBuffer {
                fn drop(&mut self) {
                    let scores = std::mem::take(&mut self.scores);
                    SCORES.with(|s| *s.borrow_mut() = scores);
                }
            }

            /// Offers the scores `v` of panel `p` (some under the threshold) to `st`.
            #[target_feature(enable = $feat)]
            #[inline(never)]
            unsafe fn offer_scores(
                v: &[$fv; PER_ROW],
                p: usize,
                st: &mut QueryState,
                data: &ExactData<'_>,
            ) {
                let mut vals = [0.0f32; LANES];
                for (h, vh) in v.iter().enumerate() {
                    $store(vals.as_mut_ptr().add(h * VLANES), *vh);
                }
                st.offer_lanes(p * LANES, &vals, data);
            }

            /// One query over panels `p0..p1`, one panel at a time with `$sets` accumulator
            /// sets over its quads: each panel is one sequential stream (a query alone is
            /// bound by reading them; interleaving several panels' streams read them slower).
            #[target_feature(enable = $feat)]
            unsafe fn single(
                packed: &I8Centroids,
                xg: &[u32],
                minus_two_scale: f32,
                st: &mut QueryState,
                data: &ExactData<'_>,
                (p0, p1): (usize, usize),
            ) {
                const SETS: usize = $sets;
                let quads = packed.quads;
                for p in p0..p1 {
                    let panel = packed.panels.as_ptr().add(p * quads);
                    let mut acc = [[$zero(); PER_ROW]; SETS];
                    let mut q = 0;
                    while q + SETS <= quads {
                        for (u, a) in acc.iter_mut().enumerate() {
                            let xb = $set1(xg[q + u] as i32);
                            for (h, ah) in a.iter_mut().enumerate() {
                                *ah = $dp(*ah, xb, part(panel.add(q + u), h));
                            }
                        }
                        q += SETS;
                    }
                    while q < quads {
                        let xb = $set1(xg[q] as i32);
                        for (h, ah) in acc[0].iter_mut().enumerate() {
                            *ah = $dp(*ah, xb, part(panel.add(q), h));
                        }
                        q += 1;
                    }
                    // Integer sums: exact in any order.
                    let mut dots = acc[0];
                    for set in &acc[1..] {
                        for (d, a) in dots.iter_mut().zip(set) {
                            *d = $add(*d, *a);
                        }
                    }
                    offer_panel(packed, &dots, minus_two_scale, p, st, data);
                }
            }

            /// The micro-group of `mr` rows packed in `xg` (`m2s`, `states`: its live rows)
            /// over panels `p0..p1`, in sub-groups of MR rows, NP panels at a time, then one
            /// by one (rows past the live ones are computed and dropped).
            #[target_feature(enable = $feat)]
            unsafe fn group<const MR: usize, const NP: usize>(
                packed: &I8Centroids,
                xg: &[u32],
                m2s: &[f32],
                states: &mut [QueryState],
                data: &ExactData<'_>,
                (p0, p1): (usize, usize),
            ) {
                let mr = xg.len() / packed.quads;
                // k = 1: a chunk's scores are buffered and offered after the least is known
                let mut buffer = states
                    .iter()
                    .all(|st| st.k() == 1)
                    .then(|| ScoreBuffer::new(MR, (p0, p1)));
                for r0 in (0..states.len()).step_by(MR) {
                    let (m2s, states) = (&m2s[r0..], &mut states[r0..]);
                    let x = xg.as_ptr().add(r0);
                    let mut p = p0;
                    while p + NP <= p1 {
                        micro::<MR, NP>(packed, x, mr, m2s, p, states, data, buffer.as_mut());
                        p += NP;
                    }
                    while p < p1 {
                        micro::<MR, 1>(packed, x, mr, m2s, p, states, data, buffer.as_mut());
                        p += 1;
                    }
                    if let Some(buffer) = &buffer {
                        for (r, st) in states.iter_mut().take(MR).enumerate() {
                            buffer.offer_row(r, st, data);
                        }
                    }
                }
            }

            /// Runs one micro-group over panels `c0..c1` (the `run` of
            /// `bf16::by_chunk_and_group`): its MR variant `mr`, packed words `xg`, `−2·s_x`
            /// and states of its live rows.
            ///
            /// # Safety
            /// The CPU must have `$feat` (`I8Kernel::available`).
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            pub(in super::super) unsafe fn run_group(
                packed: &I8Centroids,
                data: &ExactData<'_>,
                mr: usize,
                xg: &[u32],
                m2s: &[f32],
                st: &mut [QueryState],
                c0: usize,
                c1: usize,
            ) {
                match mr {
                    1 => single(packed, xg, m2s[0], &mut st[0], data, (c0, c1)),
                    2 => group::<$r2, $n2>(packed, xg, m2s, st, data, (c0, c1)),
                    4 => group::<$r4, $n4>(packed, xg, m2s, st, data, (c0, c1)),
                    8 => group::<$r8, $n8>(packed, xg, m2s, st, data, (c0, c1)),
                    _ => group::<$r12, $n12>(packed, xg, m2s, st, data, (c0, c1)),
                }
            }
        }
    };
}

#[rustfmt::skip]
i8_kernel!(avx512, "avx512f,avx512vnni", __m512i, __m512, 1, 4, [2, 8], [4, 6], [8, 3], [12, 2],
    _mm512_dpbusd_epi32, _mm512_setzero_si512, _mm512_load_si512, _mm512_set1_epi32,
    _mm512_add_epi32, _mm512_sub_epi32, _mm512_cvtepi32_ps, _mm512_castsi512_ps, _mm512_mul_ps,
    _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps, le_mask_zmm, _mm512_min_ps);

/// The 256-bit kernel module `$name` for target features `$feat` and the `vpdpbusd` form `$dp`.
macro_rules! ymm_kernel {
    ($name:ident, $feat:literal, $dp:ident) => {
#[rustfmt::skip]
        i8_kernel!($name, $feat, __m256i, __m256, 2, 2, [2, 2], [4, 1], [4, 1], [6, 1], $dp,
            _mm256_setzero_si256, _mm256_load_si256, _mm256_set1_epi32, _mm256_add_epi32,
            _mm256_sub_epi32, _mm256_cvtepi32_ps, _mm256_castsi256_ps, _mm256_mul_ps,
            _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps, le_mask_ymm, _mm256_min_ps);
    };
}

ymm_kernel!(vex, "avx2,fma,avxvnni", _mm256_dpbusd_avx_epi32);
ymm_kernel!(evex, "avx2,fma,avx512vnni,avx512vl", _mm256_dpbusd_epi32);
