//! Rigorous error bounds of the candidate pass and the per-query candidate threshold.
//!
//! The candidate pass scores centroid j for query x with the GEMM form, dropping the constant
//! `‖x‖²`: `v_j = fl(‖c_j‖² − 2·x̂·ĉ_j)`, computed in f32 (x̂, ĉ are x, c themselves, or their
//! bf16 roundings). If `|v_j − (‖c_j‖² − 2·x·c_j)| ≤ E(x)` for every j, then every centroid whose
//! exact squared distance is at most the current exact k-th best `d²_k` satisfies
//! `v_j ≤ d²_k − ‖x‖² + E(x)`, and also `v_j ≤ kth(v) + 2·E(x)`. The kernel evaluates exactly
//! every centroid under the smaller threshold, so no centroid of the true top-k (ties
//! included) can be skipped (`candidates.rs`).
//!
//! Bounds used (u = 2⁻²⁴, γ_n = n·u / (1 − n·u), any summation order, FMA or not):
//! * f32 dot of length D: `|fl(x·c) − x·c| ≤ γ_D · ‖x‖ · ‖c‖`.
//! * bf16 dot (products exact in f32, D sequential f32 additions per lane):
//!   `|fl(x̂·ĉ) − x·c| ≤ ‖x − x̂‖·‖c‖ + ‖x̂‖·‖c − ĉ‖ + γ_D·‖x̂‖·‖ĉ‖` (Cauchy–Schwarz).
//! * int8 codes with per-vector scales (integer dot exact, then 3 f32 roundings):
//!   `|fl(x̂·ĉ) − x·c| ≤ ‖x − x̂‖·‖c‖ + ‖x̂‖·‖c − ĉ‖ + γ_3·‖x̂‖·‖ĉ‖` (`vnni.rs`).
//! * `‖c‖²` stored in f32: `u·‖c‖²`; the final fused multiply-add: `u·|v|`.
//!
//! The sum is multiplied by a safety factor and padded with a relative 1e-9 slack for the f64
//! evaluation of the exact distances and of the threshold itself.

/// Unit roundoff of f32.
pub const UNIT_ROUNDOFF: f64 = 1.0 / (1u64 << 24) as f64;

/// Safety factor applied on top of the rigorous bound.
const SAFETY: f64 = 1.25;

/// `γ_n = n·u / (1 − n·u)`; callers only use it for `n·u < 1/2`.
pub fn gamma(n: usize) -> f64 {
    let nu = n as f64 * UNIT_ROUNDOFF;
    nu / (1.0 - nu)
}

/// Bound on the dot-product error of the f32 candidate pass.
pub fn dot_error_f32(dim: usize, x_norm: f64, c_norm_max: f64) -> f64 {
    gamma(dim + 2) * x_norm * c_norm_max
}

/// Norms that bound the dot-product error of a candidate pass on rounded vectors (bf16, or
/// int8 codes times a per-vector scale): x̂, ĉ are the rounded vectors.
#[derive(Debug, Clone, Copy)]
pub struct RoundedNorms {
    /// `‖x̂‖` and `‖x − x̂‖` of the query.
    pub x_hat: f64,
    pub x_residual: f64,
    /// `max_j ‖c_j‖`, `max_j ‖ĉ_j‖`, `max_j ‖c_j − ĉ_j‖` over the centroids.
    pub c_max: f64,
    pub c_hat_max: f64,
    pub c_residual_max: f64,
}

/// Bound on the dot-product error of the bf16 candidate pass over `dim` (even-padded) terms.
pub fn dot_error_bf16(dim: usize, n: &RoundedNorms) -> f64 {
    n.x_residual * n.c_max + n.x_hat * n.c_residual_max + gamma(dim + 2) * n.x_hat * n.c_hat_max
}

/// Bound on the dot-product error of the int8 candidate pass (`vnni.rs` derives it): the
/// integer dot product of the codes is exact, so only the quantisation residuals and the three
/// f32 roundings of the rescaling (int32 → f32, the two scales' product, their product with
/// the dot) remain.
pub fn dot_error_int8(n: &RoundedNorms) -> f64 {
    n.x_residual * n.c_max + n.x_hat * n.c_residual_max + gamma(3) * n.x_hat * n.c_hat_max
}

/// `E(x)`: bound on `|v_j − (‖c_j‖² − 2·x·c_j)|` given the dot error bound `dot_err`.
pub fn score_margin(dot_err: f64, x_norm: f64, c_norm_max: f64) -> f64 {
    let u = UNIT_ROUNDOFF;
    let cn_max = c_norm_max * c_norm_max;
    let stored_norm = u * cn_max;
    let fma_rounding = u * (cn_max * (1.0 + u) + 2.0 * (x_norm * c_norm_max + dot_err));
    let bound = stored_norm + 2.0 * dot_err + fma_rounding;
    SAFETY * bound + 1e-9 * (x_norm * x_norm + cn_max) + 1e-30
}

/// The f32 threshold on `v_j` for a query with exact `‖x‖² = x_norm_sq`, margin `margin`
/// and current exact k-th best squared distance `kth_d2` (`None` while fewer than k are
/// known: every centroid is a candidate). Rounded up; never +inf, so padding lanes scored
/// +inf are never candidates.
pub fn threshold(kth_d2: Option<f64>, x_norm_sq: f64, margin: f64) -> f32 {
    let Some(kth) = kth_d2 else { return f32::MAX };
    let t = kth - x_norm_sq + margin + 1e-9 * (kth.abs() + x_norm_sq);
    round_up_f32(t)
}

/// The f32 threshold derived from the k-th smallest approximate score `kth_score` seen:
/// `kth_score + 2·margin` (+ slack), rounded up, never +inf.
pub fn threshold_from_score(kth_score: f64, x_norm_sq: f64, margin: f64) -> f32 {
    let t = kth_score + 2.0 * margin + 1e-9 * (kth_score.abs() + x_norm_sq);
    round_up_f32(t)
}

/// `t` rounded up to f32, capped at `f32::MAX` (never +inf, so padding lanes scored +inf are
/// never candidates).
fn round_up_f32(t: f64) -> f32 {
    if t >= f64::from(f32::MAX) {
        return f32::MAX;
    }
    let r = t as f32;
    if f64::from(r) < t {
        r.next_up()
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_rounds_up_and_saturates() {
        let t = threshold(Some(1.0 + 1e-12), 0.0, 0.0);
        assert!(f64::from(t) >= 1.0 + 1e-12);
        assert_eq!(threshold(None, 5.0, 1.0), f32::MAX);
        assert_eq!(threshold(Some(1e300), 0.0, 0.0), f32::MAX);
    }

    #[test]
    fn margins_grow_with_norms() {
        let small = score_margin(dot_error_f32(512, 1.0, 1.0), 1.0, 1.0);
        let large = score_margin(dot_error_f32(512, 25.0, 25.0), 25.0, 25.0);
        assert!(large > small && small > 0.0);
        // f32 bound for D = 512 at norm 25 stays a small fraction of ‖x‖² + ‖c‖².
        assert!(large < 1e-3 * 1250.0);
    }
}
