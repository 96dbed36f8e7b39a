//! Reachability: `scale / max(d, eps)` for the nearest exact distance d.

/// `scale / max(√d2, eps)` in f64, rounded to f32. Finite for finite `scale > 0`, `eps > 0`
/// (saturates to f32::MAX rather than +inf).
#[inline]
pub fn reachability_from_nearest(d2: f64, scale: f64, eps: f64) -> f32 {
    let r = scale / d2.max(0.0).sqrt().max(eps);
    (r as f32).min(f32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_distance_uses_eps_and_stays_finite() {
        assert_eq!(
            reachability_from_nearest(0.0, 10.0, 1e-6),
            (10.0f64 / 1e-6) as f32
        );
        assert_eq!(reachability_from_nearest(4.0, 10.0, 1e-6), 5.0);
        assert!(reachability_from_nearest(0.0, 1e30, 1e-30).is_finite());
    }
}
