//! Exact distances: `Σ (x − c)²` and `Σ x²` accumulated in f64 from f32 inputs.
//!
//! Each difference `x − c` of two f32 values is formed in f64 (exact unless the exponents are
//! more than 29 apart), squared and added in f64 by one fused multiply-add, so the relative
//! error of the result is about `D · 2⁻⁵³`, far below f32 resolution. These are the distances
//! the kernel returns.

use super::vectorised::vectorised;

/// Lanes of independent partial sums of [`squared_norm_f64`] (lets the compiler vectorise).
const LANES: usize = 16;

/// Lanes of independent partial sums of [`squared_l2_f64`]: four AVX-512 vectors of f64, so
/// the adds of one lane are not a chain of dependent latencies.
const L2_LANES: usize = 32;

vectorised! {
    /// Exact squared L2 distance `Σ (x_l − c_l)²` in f64. `x` and `c` have the same length.
    /// A [`vectorised!`] function: fused multiply-adds are exactly rounded everywhere (a
    /// library call without hardware FMA), so every copy gives the same bits.
    #[inline]
    pub fn squared_l2_f64(x: &[f32], c: &[f32]) -> f64 {
        debug_assert_eq!(x.len(), c.len());
        let mut acc = [0.0f64; L2_LANES];
        let mut xs = x.chunks_exact(L2_LANES);
        let mut cs = c.chunks_exact(L2_LANES);
        for (xc, cc) in (&mut xs).zip(&mut cs) {
            for l in 0..L2_LANES {
                let d = f64::from(xc[l]) - f64::from(cc[l]);
                acc[l] = d.mul_add(d, acc[l]);
            }
        }
        let mut tail = 0.0f64;
        for (&a, &b) in xs.remainder().iter().zip(cs.remainder()) {
            let d = f64::from(a) - f64::from(b);
            tail = d.mul_add(d, tail);
        }
        acc.iter().sum::<f64>() + tail
    }
}

vectorised! {
    /// Squared L2 norm `Σ x_l²` in f64 (a [`vectorised!`] function: the same summation order
    /// and bits in every copy).
    #[inline]
    pub fn squared_norm_f64(x: &[f32]) -> f64 {
        let mut acc = [0.0f64; LANES];
        let mut xs = x.chunks_exact(LANES);
        for xc in &mut xs {
            for l in 0..LANES {
                let v = f64::from(xc[l]);
                acc[l] += v * v;
            }
        }
        let tail: f64 = xs
            .remainder()
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum();
        acc.iter().sum::<f64>() + tail
    }
}

/// A copy of the rows of `x` (row-major, `dim` columns) and their squared norms
/// ([`squared_norm_f64`]), in one pass: each row is read once from memory.
pub fn copy_with_squared_norms(x: &[f32], dim: usize) -> (Vec<f32>, Vec<f64>) {
    let mut copy = Vec::with_capacity(x.len());
    let mut norms = Vec::with_capacity(x.len() / dim.max(1));
    for row in x.chunks_exact(dim) {
        copy.extend_from_slice(row);
        norms.push(squared_norm_f64(row));
    }
    (copy, norms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_sum_for_odd_lengths() {
        use crate::kernel::vectorised::copies;
        use std::sync::atomic::Ordering;
        let _serial = crate::kernel::pool::TEST_THREADS_LOCK.lock();
        for d in [1usize, 3, 7, 8, 9, 17, 513] {
            let x: Vec<f32> = (0..d).map(|i| (i as f32 * 0.37).sin() * 25.0).collect();
            let c: Vec<f32> = (0..d).map(|i| (i as f32 * 0.11).cos() * 3.0).collect();
            let naive: f64 = x
                .iter()
                .zip(&c)
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum();
            assert!((squared_l2_f64(&x, &c) - naive).abs() <= 1e-12 * naive.max(1.0));
            let norm: f64 = x.iter().map(|&a| f64::from(a).powi(2)).sum();
            assert!((squared_norm_f64(&x) - norm).abs() <= 1e-12 * norm.max(1.0));
            // Every compiled copy (AVX-512F, AVX2+FMA, baseline) gives the same bits.
            let run = |copy: u8| {
                copies::WIDEST.store(copy, Ordering::Relaxed);
                (
                    squared_norm_f64(&x).to_bits(),
                    squared_l2_f64(&x, &c).to_bits(),
                )
            };
            let (wide, narrow, baseline) = (
                run(copies::WIDE),
                run(copies::NARROW),
                run(copies::BASELINE),
            );
            copies::WIDEST.store(copies::WIDE, Ordering::Relaxed);
            assert!(wide == narrow && narrow == baseline, "d {d}");
            let two_rows = [x.clone(), c.clone()].concat();
            let (copy, norms) = copy_with_squared_norms(&two_rows, d);
            assert_eq!(copy, two_rows);
            assert_eq!(norms, vec![squared_norm_f64(&x), squared_norm_f64(&c)]);
        }
    }

    #[test]
    fn near_point_distance_has_no_cancellation() {
        let c: Vec<f32> = (0..512)
            .map(|i| ((i * 7919 % 512) as f32 / 512.0 - 0.5) * 2.2)
            .collect();
        let mut x = c.clone();
        x[5] += 1e-3;
        let d = squared_l2_f64(&x, &c).sqrt();
        let expect = (f64::from(x[5]) - f64::from(c[5])).abs();
        assert!((d - expect).abs() <= 1e-12);
    }
}
