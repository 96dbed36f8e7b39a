//! Elementwise float32 functions of the head: `exp` (softmax), `tanh` (selector), row sums.
//!
//! Each is written as branch-free scalar code (selects, bit operations, fused multiply-adds
//! through `f32::mul_add`, which rounds once on every target) that LLVM vectorises. The public
//! functions run a copy compiled for AVX-512F or AVX2+FMA when the CPU has it, else the
//! baseline copy (whose `mul_add` may be a library call); every copy performs the same IEEE
//! operations in the same order, so a value's bits never depend on the CPU, the batch or the
//! position of a row.
//!
//! Accuracy (checked by the tests against f64 on dense grids): `exp` within 2 ulp on
//! [-87, 88], `tanh` within 2 ulp everywhere.

use super::super::vectorised::vectorised;

/// log2(e).
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two (Cody–Waite): `n · LN2_HI` is exact for |n| < 2^15.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2^23: adding and subtracting it rounds an f32 of magnitude < 2^22 to an integer.
const ROUND: f32 = 12_582_912.0;
/// Below this `exp` returns 0 (the true value is < 1.7e-38); above `EXP_HI`, +inf.
const EXP_LO: f32 = -87.0;
const EXP_HI: f32 = 88.0;

/// `e^x` for finite x ≤ 88 within 2 ulp (0 below -87, +inf above 88, NaN for NaN): the
/// reduction `x = n ln2 + r`, |r| ≤ ln2 / 2, and a degree-7 polynomial of e^r (Cephes).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(EXP_LO, EXP_HI); // NaN stays NaN
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, xc));
    let z = r * r;
    let p = [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ]
    .iter()
    .fold(1.987_569_1e-4f32, |acc, &c| acc.mul_add(r, c));
    let e_r = p.mul_add(z, r) + 1.0;
    // t's low mantissa bits hold n (|n| <= 127): 2^n built from its exponent field
    let n_int = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let pow2 = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    let y = e_r * pow2;
    if x < EXP_LO {
        0.0
    } else if x > EXP_HI {
        f32::INFINITY
    } else {
        y
    }
}

/// Below this |x| `tanh` uses its odd Taylor polynomial, above `1 - 2 / (e^{2|x|} + 1)`.
const TANH_SMALL: f32 = 0.55;
/// Above this |x| tanh rounds to ±1 in f32.
const TANH_ONE: f32 = 10.0;

/// `tanh(x)` within 2 ulp (NaN for NaN).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let ac = if a > TANH_ONE { TANH_ONE } else { a };
    let large = 1.0 - 2.0 / (exp(2.0 * ac) + 1.0);
    // a + a^3 · P(a^2): the series' terms to a^17 (the next one is < 2^-27 a below 0.55)
    let z = ac * ac;
    let p = [
        -1.455_834_4e-3,
        3.592_128e-3,
        -8.863_236e-3,
        2.186_948_8e-2,
        -5.396_825_4e-2,
        1.333_333_4e-1,
        -3.333_333_4e-1,
    ]
    .iter()
    .fold(5.900_274e-4f32, |acc, &c| acc.mul_add(z, c));
    let small = (p * z).mul_add(ac, ac);
    let magnitude = if a < TANH_SMALL { small } else { large };
    magnitude.copysign(x)
}

/// Lanes of the f64 sums (one AVX-512 vector).
const LANES: usize = 8;

/// `Σ f(v)` over `values` in f64: lane `l` sums the values at positions `l mod LANES` in
/// order, then the lanes are added in order (a fixed order: the same bits on every CPU).
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(v);
    }
    acc.iter().sum()
}

vectorised! {
    /// Replaces each value of `row` by `exp(value - max(row))` and returns the sum of the new
    /// values (f64 lane sums, rounded to f32): the numerators and the denominator of
    /// `softmax(row)`. An empty row returns 0; a row holding NaN or +inf gives NaN.
    pub fn softmax_numerators(row: &mut [f32]) -> f32 {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (m, &v) in lanes.iter_mut().zip(chunk) {
                *m = if v > *m { v } else { *m };
            }
        }
        let mut max = f32::NEG_INFINITY;
        for &v in chunks.remainder().iter().chain(&lanes) {
            max = if v > max { v } else { max };
        }
        for v in row.iter_mut() {
            *v = exp(*v - max);
        }
        lane_sum(row, f64::from) as f32
    }
}

vectorised! {
    /// `tanh` of every value, in place.
    pub fn tanh_in_place(values: &mut [f32]) -> () {
        for v in values.iter_mut() {
            *v = tanh(*v);
        }
    }
}

vectorised! {
    /// `sqrt(Σ v²)` of `row` (f64 lane sums, the root in f64, rounded to f32).
    pub fn norm(row: &[f32]) -> f32 {
        lane_sum(row, |v| f64::from(v) * f64::from(v)).sqrt() as f32
    }
}

/// One row of the meta-embedding head's elementwise steps, in place on `memory` (the read-out
/// of the softmax numerators, divided here by their `sum`), writing `infused = selector ⊙
/// memory` and `meta = (x + infused) · reach` (no reach: `x + infused`).
pub struct MetaRow<'a> {
    pub x: &'a [f32],
    pub memory: &'a mut [f32],
    pub selector: &'a [f32],
    pub infused: &'a mut [f32],
    pub meta: &'a mut [f32],
}

vectorised! {
    /// The steps of [`MetaRow`].
    pub fn combine_row(row: MetaRow<'_>, sum: f32, reach: Option<f32>) -> () {
        let values = row.memory.iter_mut().zip(row.selector).zip(row.x);
        for (((m, &s), &x), (inf, out)) in values.zip(row.infused.iter_mut().zip(row.meta.iter_mut())) {
            *m /= sum;
            *inf = s * *m;
            *out = x + *inf;
        }
        if let Some(r) = reach {
            for out in row.meta.iter_mut() {
                *out *= r;
            }
        }
    }
}

vectorised! {
    /// `out = v · factor`, elementwise.
    pub fn scale_row(v: &[f32], factor: f32, out: &mut [f32]) -> () {
        for (o, &x) in out.iter_mut().zip(v) {
            *o = x * factor;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in f32 steps between `got` and the f64 value `want` rounded to f32.
    fn ulps(got: f32, want: f64) -> u32 {
        let want = want as f32;
        if got == want {
            return 0;
        }
        let key = |v: f32| {
            let b = v.to_bits() as i64;
            if b < 0x8000_0000 {
                b
            } else {
                0x8000_0000 - b
            }
        };
        (key(got) - key(want)).unsigned_abs() as u32
    }

    fn grid(lo: f32, hi: f32, steps: usize) -> impl Iterator<Item = f32> {
        (0..=steps).map(move |i| lo + (hi - lo) * (i as f32 / steps as f32))
    }

    #[test]
    fn exp_is_within_2_ulp_and_saturates() {
        let worst = grid(-87.0, 88.0, 2_000_000)
            .chain(grid(-1.0, 1.0, 200_000))
            .map(|x| ulps(exp(x), f64::from(x).exp()))
            .max()
            .unwrap();
        assert!(worst <= 2, "exp: {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_is_within_2_ulp_odd_and_saturates() {
        let worst = grid(-12.0, 12.0, 2_000_000)
            .chain(grid(-0.7, 0.7, 200_000))
            .chain(grid(-1e-3, 1e-3, 20_000))
            .map(|x| ulps(tanh(x), f64::from(x).tanh()))
            .max()
            .unwrap();
        assert!(worst <= 2, "tanh: {worst} ulp");
        for x in [0.0f32, 1e-30, 0.3, 0.55, 2.0, 30.0] {
            assert_eq!(tanh(-x).to_bits(), (-tanh(x)).to_bits());
        }
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(1e30), 1.0);
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn slice_functions_match_the_scalar_ones() {
        let mut rng = crate::kernel::tests::Rng(7);
        for len in [0usize, 1, 7, 8, 9, 100, 1001] {
            let values: Vec<f32> = rng.vec(len).iter().map(|v| v * 6.0).collect();
            let mut tanhs = values.clone();
            tanh_in_place(&mut tanhs);
            for (t, &v) in tanhs.iter().zip(&values) {
                assert_eq!(t.to_bits(), tanh(v).to_bits());
            }
            let mut exps = values.clone();
            let sum = softmax_numerators(&mut exps);
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let want: f64 = values.iter().map(|&v| f64::from(v - max).exp()).sum();
            for (e, &v) in exps.iter().zip(&values) {
                assert_eq!(e.to_bits(), exp(v - max).to_bits());
            }
            assert!(
                (f64::from(sum) - want).abs() <= 1e-6 * want.max(1.0),
                "{len}: {sum} vs {want}"
            );
            let n = norm(&values);
            let want: f64 = values
                .iter()
                .map(|&v| f64::from(v).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                (f64::from(n) - want).abs() <= 1e-6 * want.max(1e-30),
                "{len}"
            );
        }
    }

    #[test]
    fn every_compiled_copy_gives_the_same_bits() {
        use crate::kernel::vectorised::copies;
        use std::sync::atomic::Ordering;
        let _serial = crate::kernel::pool::TEST_THREADS_LOCK.lock();
        let mut rng = crate::kernel::tests::Rng(8);
        let values: Vec<f32> = rng.vec(1003).iter().map(|v| v * 12.0).collect();
        let run = |copy: u8| {
            copies::WIDEST.store(copy, Ordering::Relaxed);
            let mut exps = values.clone();
            let sum = softmax_numerators(&mut exps);
            let mut tanhs = values.clone();
            tanh_in_place(&mut tanhs);
            let mut scaled = vec![0.0f32; values.len()];
            scale_row(&values, 0.37, &mut scaled);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            let sums = [sum.to_bits(), norm(&values).to_bits()];
            (bits(&exps), bits(&tanhs), bits(&scaled), sums)
        };
        let wide = run(copies::WIDE);
        let narrow = run(copies::NARROW);
        let baseline = run(copies::BASELINE);
        copies::WIDEST.store(copies::WIDE, Ordering::Relaxed);
        assert!(wide == narrow && narrow == baseline);
    }

    #[test]
    fn softmax_of_a_row_with_nan_or_inf_is_nan() {
        for bad in [f32::NAN, f32::INFINITY] {
            let mut row = vec![0.5f32, bad, -1.0];
            assert!(softmax_numerators(&mut row).is_nan());
        }
    }
}
