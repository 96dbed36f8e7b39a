//! Tests of the dense kernels: every engine against the contract's loop, batch invariance.

use super::*;
use crate::kernel::tests::Rng;

/// A dense row-major matrix (stride = cols).
struct Dense {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Dense {
    fn random(rng: &mut Rng, rows: usize, cols: usize) -> Self {
        Self {
            data: rng.vec(rows * cols),
            rows,
            cols,
        }
    }
    fn view(&self) -> MatRef<'_> {
        MatRef::new("x", &self.data, self.rows, self.cols, self.cols).unwrap()
    }
}

/// The contract's loop: acc = +0, fma over k in order, then + bias.
fn naive_f32(a: &Dense, b: &Dense, bias: Option<&[f32]>) -> Vec<f32> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for l in 0..k {
                acc = a.data[i * k + l].mul_add(b.data[l * n + j], acc);
            }
            out[i * n + j] = bias.map_or(acc, |bias| acc + bias[j]);
        }
    }
    out
}

fn naive_f64(a: &Dense, b: &Dense, bias: Option<&[f32]>) -> Vec<f64> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut out = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|l| f64::from(a.data[i * k + l]) * f64::from(b.data[l * n + j]))
                .sum();
            out[i * n + j] = s + bias.map_or(0.0, |bias| f64::from(bias[j]));
        }
    }
    out
}

fn run(a: &Dense, b: &Dense, bias: Option<&[f32]>, engine: Engine) -> Vec<f32> {
    let mut out = vec![f32::NAN; a.rows * b.cols];
    let view = MatMut::new("out", &mut out, a.rows, b.cols, b.cols).unwrap();
    matmul(a.view(), b.view(), view, bias, engine).unwrap();
    out
}

fn engines() -> Vec<Engine> {
    ENGINES.into_iter().filter(|e| e.is_supported()).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn every_engine_matches_the_fma_loop_bit_for_bit_and_f64_closely() {
    let _serial = pool::TEST_THREADS_LOCK.lock();
    pool::set_num_threads(2).unwrap();
    let mut rng = Rng(7);
    for &(m, k, n) in &[
        (1, 1, 1),
        (2, 7, 15),
        (3, 300, 65),
        (17, 257, 130),
        (6, 600, 1100),
        (13, 64, 64),
        (64, 512, 100),
        (300, 40, 33),
        // Direct reads of every sliver height (1..=12 rows), wide tiles and single vectors.
        (4, 260, 700),
        (5, 33, 300),
        (10, 270, 1000),
        (12, 64, 513),
        (1, 300, 1040),
        // Direct reads over several blocks of DIRECT_KC rows and DIRECT_NC columns per
        // thread (the last row group fetching the next block).
        (9, 2 * DIRECT_KC + 5, 2 * 2 * DIRECT_NC + 37),
    ] {
        let a = Dense::random(&mut rng, m, k);
        let b = Dense::random(&mut rng, k, n);
        let bias = rng.vec(n);
        for with_bias in [false, true] {
            let bias = with_bias.then_some(&bias[..]);
            let want = naive_f32(&a, &b, bias);
            let exact = naive_f64(&a, &b, bias);
            for engine in engines() {
                let got = run(&a, &b, bias, engine);
                assert_eq!(bits(&got), bits(&want), "{engine:?} {m}x{k}x{n}");
                for (g, e) in got.iter().zip(&exact) {
                    let tol = 1e-5 * (k as f64 + 1.0);
                    assert!((f64::from(*g) - e).abs() <= tol, "{g} vs {e}");
                }
            }
        }
    }
}

#[test]
fn bits_do_not_depend_on_batch_rows_columns_or_threads() {
    let _serial = pool::TEST_THREADS_LOCK.lock();
    let mut rng = Rng(11);
    let (k, n) = (530, 1500);
    let a = Dense::random(&mut rng, 300, k);
    let b = Dense::random(&mut rng, k, n);
    let bias = rng.vec(n);
    pool::set_num_threads(1).unwrap();
    let full = run(&a, &b, Some(&bias), engines()[0]);
    for threads in [1, 2, 3] {
        pool::set_num_threads(threads).unwrap();
        for engine in engines() {
            assert_eq!(bits(&run(&a, &b, Some(&bias), engine)), bits(&full));
            // Row sub-batches (M = 1, 2, 3, 17, 64) at several positions.
            for &(r0, rows) in &[(0, 1), (5, 2), (40, 3), (100, 17), (233, 64), (299, 1)] {
                let sub = Dense {
                    data: a.data[r0 * k..(r0 + rows) * k].to_vec(),
                    rows,
                    cols: k,
                };
                let got = run(&sub, &b, Some(&bias), engine);
                assert_eq!(bits(&got), bits(&full[r0 * n..(r0 + rows) * n]));
            }
            // A column sub-range of b, read in place (row stride n).
            let (c0, c1) = (37, 1203);
            let bv = MatRef::new("b", &b.data[c0..], k, c1 - c0, n).unwrap();
            let mut out = vec![0.0f32; 3 * (c1 - c0)];
            let ov = MatMut::new("out", &mut out, 3, c1 - c0, c1 - c0).unwrap();
            let av = MatRef::new("a", &a.data[7 * k..], 3, k, k).unwrap();
            matmul(av, bv, ov, Some(&bias[c0..c1]), engine).unwrap();
            for r in 0..3 {
                let row = &full[(7 + r) * n + c0..(7 + r) * n + c1];
                assert_eq!(bits(&out[r * (c1 - c0)..(r + 1) * (c1 - c0)]), bits(row));
            }
        }
    }
}

#[test]
fn strided_views_are_read_and_written_in_place_only() {
    let _serial = pool::TEST_THREADS_LOCK.lock();
    pool::set_num_threads(2).unwrap();
    let mut rng = Rng(3);
    let (m, k, n) = (9, 270, 70);
    let (lda, ldb, ldc) = (k + 5, n + 30, n + 3);
    let abuf = rng.vec(m * lda);
    let bbuf = rng.vec(k * ldb);
    let a = Dense {
        data: (0..m)
            .flat_map(|i| abuf[i * lda..i * lda + k].to_vec())
            .collect(),
        rows: m,
        cols: k,
    };
    let b = Dense {
        data: (0..k)
            .flat_map(|i| bbuf[i * ldb..i * ldb + n].to_vec())
            .collect(),
        rows: k,
        cols: n,
    };
    let want = naive_f32(&a, &b, None);
    for engine in engines() {
        let mut cbuf = vec![-7.0f32; m * ldc + 11];
        let av = MatRef::new("a", &abuf, m, k, lda).unwrap();
        let bv = MatRef::new("b", &bbuf, k, n, ldb).unwrap();
        let cv = MatMut::new("out", &mut cbuf[11..], m, n, ldc).unwrap();
        matmul(av, bv, cv, None, engine).unwrap();
        for i in 0..m {
            let row = &cbuf[11 + i * ldc..11 + i * ldc + n];
            assert_eq!(bits(row), bits(&want[i * n..(i + 1) * n]), "{engine:?}");
        }
        let untouched = cbuf[..11]
            .iter()
            .chain(
                (0..m).flat_map(|i| &cbuf[11 + i * ldc + n..(11 + (i + 1) * ldc).min(cbuf.len())]),
            )
            .all(|&v| v == -7.0);
        assert!(untouched, "{engine:?} wrote outside out");
    }
}

#[test]
fn empty_dimensions() {
    let mut rng = Rng(5);
    for engine in engines() {
        // K = 0: bias, or zeros.
        let a = Dense::random(&mut rng, 3, 0);
        let b = Dense::random(&mut rng, 0, 4);
        let bias = [1.0, -2.0, 3.5, 0.25];
        assert_eq!(run(&a, &b, Some(&bias), engine), [bias; 3].concat());
        assert_eq!(run(&a, &b, None, engine), vec![0.0; 12]);
        // M = 0 and N = 0 leave out (empty) alone.
        let a0 = Dense::random(&mut rng, 0, 5);
        let b5 = Dense::random(&mut rng, 5, 4);
        assert!(run(&a0, &b5, None, engine).is_empty());
        let a5 = Dense::random(&mut rng, 2, 5);
        let b0 = Dense::random(&mut rng, 5, 0);
        assert!(run(&a5, &b0, None, engine).is_empty());
    }
}

#[test]
fn shape_and_kernel_errors_name_the_argument() {
    let a = [0.0f32; 6];
    let mut o = [0.0f32; 6];
    let av = MatRef::new("a", &a, 2, 3, 3).unwrap();
    let bv = MatRef::new("b", &a, 2, 3, 3).unwrap();
    let ov = MatMut::new("out", &mut o, 2, 3, 3).unwrap();
    let err = matmul(av, bv, ov, None, Engine::Portable).unwrap_err();
    assert!(err.to_string().starts_with("b must have 3 rows"), "{err}");
    let bv = MatRef::new("b", &a, 3, 2, 2).unwrap();
    let ov = MatMut::new("out", &mut o, 3, 2, 2).unwrap();
    let err = matmul(av, bv, ov, None, Engine::Portable).unwrap_err();
    assert!(
        err.to_string().starts_with("out must have shape (2, 2)"),
        "{err}"
    );
    let ov = MatMut::new("out", &mut o, 2, 2, 2).unwrap();
    let err = matmul(av, bv, ov, Some(&a[..3]), Engine::Portable).unwrap_err();
    assert!(
        err.to_string().starts_with("bias must have 2 elements"),
        "{err}"
    );
    let err = MatRef::new("a", &a, 2, 3, 4).unwrap_err();
    assert!(err.to_string().starts_with("a needs 7 elements"), "{err}");
    let err = MatRef::new("a", &a, 2, 3, 2).unwrap_err();
    assert!(
        err.to_string().starts_with("a rows must not overlap"),
        "{err}"
    );
    let ov = MatMut::new("out", &mut o, 2, 2, 2).unwrap();
    let err = matmul(av, bv, ov, None, Engine::Avx512Bf16).unwrap_err();
    assert!(err.to_string().contains("'portable-f32'"), "{err}");
    assert_eq!(engine("portable-f32"), Ok(Engine::Portable));
    assert_eq!(engine("auto"), Ok(engines()[0]));
    let msg = engine("avx512-bf16").unwrap_err().to_string();
    assert!(
        msg.contains("'auto', 'avx512-f32', 'avx2-f32', 'portable-f32'"),
        "{msg}"
    );
    assert!(msg.contains("\"avx512-bf16\""), "{msg}");
}
