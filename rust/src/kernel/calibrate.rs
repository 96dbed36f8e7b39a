//! The `auto` rule: rank the SIMD engines this process runs by a short timing, once.
//!
//! The first time an engine ranking is needed (the first `auto` index, or
//! `available_kernels()`), each SIMD engine this process runs searches a small synthetic
//! problem (K = 2048, D = 128, 16 queries, k = 1: 4 M multiply-adds, on the caller's thread
//! alone) once to warm up and three times timed; its best time is its score. The ranking keeps
//! the static order of [`Engine::ALL`] (int8 AVX-512 VNNI, bf16, int8 256-bit VNNI, f32
//! AVX-512, f32 AVX2: the order of their multiply-add rates) except that an engine moves ahead
//! of the ones before it when it beats all of them by more than [`MARGIN`] (timing noise on a
//! busy machine cannot reorder engines that are close). `portable-f32` is always last. An
//! engine superseded by one this process runs (`avx-vnni-i8` beside `avx512-vnni-i8`:
//! [`Engine::superseded_by`]) is not timed and comes after the other SIMD engines, so `auto`
//! never picks it; where the wider engine is absent (an AVX-VNNI CPU without AVX-512, or
//! `OLTR_DISABLE_KERNELS`) it is timed like the others. The ranking is cached for the
//! process (recomputed only if `OLTR_DISABLE_KERNELS` changes); 20–25 ms in all on a busy
//! 2-core Zen 4. The problem has k = 1: at large k the int8 engine, whose margin is the
//! widest, evaluates more exact distances, so an `auto` index over it also packs the next
//! engine of the ranking for large k (`CentroidIndex::new`, `index::large_k_from`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ndarray::Array2;

use super::engine::Engine;
use super::index::CentroidIndex;

/// An engine is ranked ahead of the statically preferred ones only when it is faster than
/// each of them by this factor.
const MARGIN: f64 = 1.15;
const CAL_CENTROIDS: usize = 2048;
const CAL_DIM: usize = 128;
const CAL_QUERIES: usize = 16;

/// `(the OLTR_DISABLE_KERNELS value, ranking)` of the last calibration.
static CACHE: Mutex<Option<(String, Vec<Engine>)>> = Mutex::new(None);

/// Deterministic pseudo-random matrix in [-1, 1) (xorshift64*).
fn synthetic(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut state = seed;
    Array2::from_shape_fn((rows, cols), |_| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

/// Best of three timed searches of the calibration problem with `engine`.
fn time_engine(engine: Engine, c: &Array2<f32>, x: &Array2<f32>) -> Duration {
    let Ok(index) = CentroidIndex::with_engine(c.view(), engine) else {
        return Duration::MAX;
    };
    let _ = index.search(x.view(), 1);
    (0..3)
        .map(|_| {
            let start = Instant::now();
            let _ = index.search(x.view(), 1);
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::MAX)
}

/// Orders `engines` (static preference order, portable last) by `times`: an engine moves
/// ahead of those preferred to it only when faster than each by [`MARGIN`].
pub(crate) fn rank(engines: &[Engine], times: &[Duration]) -> Vec<Engine> {
    let mut order: Vec<usize> = Vec::with_capacity(engines.len());
    for i in 0..engines.len() {
        if engines[i] == Engine::Portable {
            continue;
        }
        let t = times[i].as_secs_f64();
        // Insert before the first ranked engine it beats by the margin, if it beats every
        // engine from there on too.
        let pos = (0..order.len())
            .find(|&p| {
                order[p..]
                    .iter()
                    .all(|&o| times[o].as_secs_f64() > MARGIN * t)
            })
            .unwrap_or(order.len());
        order.insert(pos, i);
    }
    let mut ranked: Vec<Engine> = order.into_iter().map(|i| engines[i]).collect();
    if engines.contains(&Engine::Portable) {
        ranked.push(Engine::Portable);
    }
    ranked
}

/// The calibration score of each of `engines` (`time` of it), `Duration::MAX` (never ahead of
/// a timed engine) for `portable-f32` and for an engine superseded by one of `engines`,
/// which are not timed.
fn scores(engines: &[Engine], mut time: impl FnMut(Engine) -> Duration) -> Vec<Duration> {
    engines
        .iter()
        .map(|&e| {
            let superseded = e.superseded_by().is_some_and(|w| engines.contains(&w));
            if e == Engine::Portable || superseded {
                Duration::MAX
            } else {
                time(e)
            }
        })
        .collect()
}

/// `available` (this process's engines in static order) ranked by the cached calibration.
pub(crate) fn ranked(available: Vec<Engine>, disabled: &str) -> Vec<Engine> {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((key, ranking)) = cache.as_ref() {
        if key == disabled {
            return ranking.clone();
        }
    }
    let simd = available.iter().filter(|&&e| e != Engine::Portable).count();
    let ranking = if simd <= 1 {
        available
    } else {
        let c = synthetic(CAL_CENTROIDS, CAL_DIM, 0x9E37_79B9_7F4A_7C15);
        let x = synthetic(CAL_QUERIES, CAL_DIM, 0xD1B5_4A32_D192_ED03);
        let times = scores(&available, |e| time_engine(e, &c, &x));
        rank(&available, &times)
    };
    *cache = Some((disabled.to_string(), ranking.clone()));
    ranking
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn close_times_keep_the_static_order_clear_wins_move_ahead() {
        use Engine::*;
        let all = [Avx512VnniI8, Avx512Bf16, Avx512F32, Avx2F32, Portable];
        assert_eq!(
            Engine::ALL.len(),
            all.len() + 1,
            "AvxVnniI8: see the test below"
        );
        // Within the margin: static order.
        let r = rank(&all, &ms(&[100, 95, 90, 200, 1]));
        assert_eq!(
            r,
            vec![Avx512VnniI8, Avx512Bf16, Avx512F32, Avx2F32, Portable]
        );
        // avx2 clearly beats the AVX-512 ones (e.g. a CPU that slows down on zmm).
        let r = rank(&all, &ms(&[100, 300, 300, 50, 1]));
        assert_eq!(
            r,
            vec![Avx2F32, Avx512VnniI8, Avx512Bf16, Avx512F32, Portable]
        );
        // bf16 beats f32 clearly but not vnni.
        let r = rank(&all, &ms(&[60, 55, 200, 100, 1]));
        assert_eq!(
            r,
            vec![Avx512VnniI8, Avx512Bf16, Avx2F32, Avx512F32, Portable]
        );
        assert_eq!(rank(&[Portable], &ms(&[5])), vec![Portable]);
    }

    #[test]
    fn the_256_bit_int8_engine_is_timed_only_without_the_512_bit_one() {
        use Engine::*;
        // Fake timings: the 256-bit int8 engine twice as fast as everything else.
        let fake = |e: Engine| ms(&[if e == AvxVnniI8 { 10 } else { 20 }])[0];
        let mut timed = Vec::new();
        let all = Engine::ALL;
        let times = scores(&all, |e| {
            timed.push(e);
            fake(e)
        });
        assert!(!timed.contains(&AvxVnniI8) && !timed.contains(&Portable));
        let r = rank(&all, &times);
        assert_eq!(r[0], Avx512VnniI8);
        assert_eq!(&r[r.len() - 2..], &[AvxVnniI8, Portable]);
        // An AVX-VNNI CPU without AVX-512: int8 first unless avx2-f32 clearly wins.
        let client = [AvxVnniI8, Avx2F32, Portable];
        let r = rank(&client, &scores(&client, fake));
        assert_eq!(r, vec![AvxVnniI8, Avx2F32, Portable]);
        let r = rank(&client, &[ms(&[100])[0], ms(&[50])[0], Duration::MAX]);
        assert_eq!(r, vec![Avx2F32, AvxVnniI8, Portable]);
        let r = rank(&client, &[ms(&[100])[0], ms(&[95])[0], Duration::MAX]);
        assert_eq!(r, vec![AvxVnniI8, Avx2F32, Portable]);
    }
}
