//! Kernel tests against a naive scalar f64 implementation.

use ndarray::{Array2, ArrayView2};

use super::{pool, CentroidIndex, Engine, KernelError};

/// Small deterministic generator (xorshift64*), uniform in [-1, 1) and ~normal (the kernel
/// modules' tests share it).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() * 0.866
    }
    pub(crate) fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.uniform()).collect()
    }
    fn matrix(&mut self, rows: usize, cols: usize, scale: f32) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |_| self.normal() * scale)
    }
}

/// Naive reference: every distance in f64 (sequential sum), stable sort, first k.
fn naive(x: ArrayView2<'_, f32>, c: ArrayView2<'_, f32>, k: usize) -> Vec<Vec<(f64, i64)>> {
    x.rows()
        .into_iter()
        .map(|xr| {
            let mut all: Vec<(f64, i64)> = c
                .rows()
                .into_iter()
                .enumerate()
                .map(|(j, cr)| {
                    let d2: f64 = xr
                        .iter()
                        .zip(cr.iter())
                        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                        .sum();
                    (d2.sqrt(), j as i64)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            all.truncate(k);
            all
        })
        .collect()
}

/// Checks `search` against the naive reference: distances to 1e-6 relative (1e-5 is the
/// contract) and identical indices, except that among centroids whose exact distances agree
/// to 1e-12 (f64 summation-order ties) any order is accepted.
/// Few-query calls take other paths (bf16 storage of the f32 engines, a GEMV split), so a
/// batch of more rows is also checked one row at a time and as its first three rows.
fn check(index: &CentroidIndex, x: ArrayView2<'_, f32>, c: ArrayView2<'_, f32>, k: usize) {
    check_batch(index, x, c, k);
    for rows in [1usize, 3] {
        if x.nrows() > rows {
            for start in (0..x.nrows() - rows + 1).step_by(rows).take(4) {
                check_batch(index, x.slice(ndarray::s![start..start + rows, ..]), c, k);
            }
        }
    }
}

fn check_batch(index: &CentroidIndex, x: ArrayView2<'_, f32>, c: ArrayView2<'_, f32>, k: usize) {
    let (dist, idx) = index.search(x, k as i64).unwrap();
    assert_eq!(dist.dim(), (x.nrows(), k));
    let want = naive(x, c, k);
    for (i, row) in want.iter().enumerate() {
        for (col, &(d, j)) in row.iter().enumerate() {
            let got_d = f64::from(dist[[i, col]]);
            let rel = (got_d - d).abs() / d.max(1e-30);
            assert!(
                rel <= 1e-6 || (got_d - d).abs() <= 1e-30,
                "row {i} col {col}: {got_d} vs {d}"
            );
            if idx[[i, col]] != j {
                let alt = naive(x.slice(ndarray::s![i..i + 1, ..]), c, c.nrows())[0]
                    .iter()
                    .find(|e| e.1 == idx[[i, col]])
                    .map(|e| e.0)
                    .unwrap();
                assert!(
                    (alt - d).abs() <= 1e-12 * d.max(1e-30),
                    "row {i} col {col}: idx {} vs {j}",
                    idx[[i, col]]
                );
            }
        }
    }
}

/// Every engine this CPU runs (the tests cover each).
fn engines() -> Vec<Engine> {
    Engine::available()
}

#[test]
fn every_micro_group_size_and_panel_remainder_matches_the_naive_search() {
    // B = 1..=13 and 25 queries cover each micro-group variant (1, 2, 4, 8, 12 rows, with
    // padding rows) and their sub-groups in the 256-bit int8 kernel; K = 16·n ± a few covers
    // whole and partial panels, D = 4·n + 1..3 partial quads.
    let mut rng = Rng(53);
    for &(kc, d) in &[(61usize, 13usize), (160, 130), (35, 6)] {
        let c = rng.matrix(kc, d, 1.0);
        let x = rng.matrix(25, d, 1.0);
        for e in engines() {
            let index = CentroidIndex::with_engine(c.view(), e).unwrap();
            for b in (1..=13).chain([25]) {
                for k in [1usize, 3, kc] {
                    check(&index, x.slice(ndarray::s![..b, ..]), c.view(), k);
                }
            }
        }
    }
}

#[test]
fn the_256_bit_int8_engine_runs_wherever_a_256_bit_vnni_kernel_does() {
    use super::vnni::I8Kernel;
    assert_eq!(
        Engine::AvxVnniI8.is_supported(),
        I8Kernel::avx256().is_some()
    );
    // AVX-512 VNNI + VL implies the EVEX-256 form; `auto` keeps the 512-bit engine first.
    if I8Kernel::Avx256Evex.available() && Engine::Avx512VnniI8.is_supported() {
        assert!(Engine::AvxVnniI8.is_supported());
        let ranked = Engine::available();
        assert_eq!(ranked[0], Engine::Avx512VnniI8);
        assert_eq!(
            &ranked[ranked.len() - 2..],
            &[Engine::AvxVnniI8, Engine::Portable]
        );
        assert_ne!(Engine::auto(64), Engine::AvxVnniI8);
    }
    assert_eq!(Engine::AvxVnniI8.max_dim(), Engine::Avx512VnniI8.max_dim());
    assert_eq!(
        Engine::from_name("avx-vnni-i8").is_ok(),
        Engine::AvxVnniI8.is_supported()
    );
}

#[test]
fn random_odd_dims_both_engines() {
    let mut rng = Rng(7);
    for &(b, kc, d, k) in &[
        (37usize, 1000usize, 67usize, 5usize),
        (13, 300, 512, 1),
        (5, 64, 1, 3),
        (1, 17, 33, 17),
    ] {
        let c = rng.matrix(kc, d, 1.0);
        let x = rng.matrix(b, d, 1.0);
        for e in engines() {
            let index = CentroidIndex::with_engine(c.view(), e).unwrap();
            check(&index, x.view(), c.view(), k);
        }
    }
}

#[test]
fn duplicates_ties_and_queries_on_centroids() {
    let mut rng = Rng(11);
    let base = rng.matrix(40, 24, 3.0);
    // Every centroid appears three times (rows j, j+40, j+80): exact ties.
    let c = ndarray::concatenate![ndarray::Axis(0), base, base, base];
    let x = ndarray::concatenate![
        ndarray::Axis(0),
        base.slice(ndarray::s![..10, ..]),
        rng.matrix(6, 24, 3.0)
    ];
    for e in engines() {
        let index = CentroidIndex::with_engine(c.view(), e).unwrap();
        let (dist, idx) = index.search(x.view(), 7).unwrap();
        for i in 0..10 {
            assert_eq!(dist[[i, 0]], 0.0);
            assert_eq!(
                [idx[[i, 0]], idx[[i, 1]], idx[[i, 2]]],
                [i as i64, i as i64 + 40, i as i64 + 80]
            );
        }
        check(&index, x.view(), c.view(), 7);
        check(&index, x.view(), c.view(), 120);
    }
}

#[test]
fn k1_over_several_chunks_with_ties_across_them_matches_the_naive_search() {
    // K = 2000 at D = 256: the int8 pass scans 125 panels in chunks (96 panels), and a k = 1
    // micro-group offers a chunk's scores only once its least is known. Each query lies near
    // a centroid (as class features lie near their class's); centroid 1990 + j copies j, so
    // the nearest can tie across chunks (the lower index must win), and some queries are
    // far from every centroid (no clear nearest).
    let mut rng = Rng(61);
    let (k_num, d) = (2000usize, 256usize);
    let mut c = rng.matrix(k_num, d, 1.0).mapv(|v| v.max(0.0) * 2.0);
    for j in 0..10 {
        let row = c.row(j).to_owned();
        c.row_mut(1990 + j).assign(&row);
    }
    let picks = [
        0usize, 3, 700, 1200, 1999, 5, 9, 1500, 42, 990, 1991, 77, 1300, 600,
    ];
    let mut x = Array2::<f32>::zeros((picks.len() + 6, d));
    for (i, &j) in picks.iter().enumerate() {
        let noise = rng.matrix(1, d, 0.5);
        for l in 0..d {
            x[[i, l]] = c[[j, l]] + noise[[0, l]];
        }
    }
    x.slice_mut(ndarray::s![picks.len().., ..])
        .assign(&rng.matrix(6, d, 4.0));
    x.row_mut(1).assign(&c.row(3)); // exactly on centroid 3 (and 1993)
    for e in engines() {
        let index = CentroidIndex::with_engine(c.view(), e).unwrap();
        check(&index, x.view(), c.view(), 1);
        let (dist, idx) = index.search(x.view(), 1).unwrap();
        assert_eq!((dist[[1, 0]], idx[[1, 0]]), (0.0, 3), "{}", e.name());
    }
}

#[test]
fn query_near_a_centroid_of_norm_25_is_exact() {
    let mut rng = Rng(3);
    let d = 512;
    let mut c = rng.matrix(2000, d, 1.0);
    for mut row in c.rows_mut() {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.mapv_inplace(|v| v * 25.0 / n);
    }
    // Queries 1e-3 from centroid 5i (random direction), plus near-ties between two centroids.
    let mut x = Array2::<f32>::zeros((20, d));
    for i in 0..20 {
        let dir = rng.matrix(1, d, 1.0);
        let n = dir.iter().map(|v| v * v).sum::<f32>().sqrt();
        for l in 0..d {
            x[[i, l]] = c[[5 * i, l]] + 1e-3 * dir[[0, l]] / n;
        }
    }
    for e in engines() {
        let index = CentroidIndex::with_engine(c.view(), e).unwrap();
        let (dist, idx) = index.search(x.view(), 3).unwrap();
        let want = naive(x.view(), c.view(), 3);
        for i in 0..20 {
            assert_eq!(idx[[i, 0]], 5 * i as i64);
            let rel = (f64::from(dist[[i, 0]]) - want[i][0].0).abs() / want[i][0].0;
            assert!(rel <= 1e-5, "relative error {rel}");
        }
        let reach = index.reachability(x.view(), 10.0, 1e-6).unwrap();
        assert!(reach.iter().all(|r| r.is_finite() && *r > 1000.0));
    }
}

#[test]
fn near_ties_inside_the_gemm_error_are_ranked_exactly() {
    // Centroids on a sphere of radius 25 around the query, radii differing by 1e-6 relative:
    // far below the GEMM-form error, so only the exact re-rank can order them.
    let mut rng = Rng(5);
    let d = 96;
    let q = rng.matrix(1, d, 2.0);
    let mut c = Array2::<f32>::zeros((300, d));
    for j in 0..300 {
        let dir = rng.matrix(1, d, 1.0);
        let n = dir.iter().map(|v| v * v).sum::<f32>().sqrt();
        let radius = 25.0 * (1.0 + 1e-6 * ((j * 7919) % 300) as f32);
        for l in 0..d {
            c[[j, l]] = q[[0, l]] + radius * dir[[0, l]] / n;
        }
    }
    let x = ndarray::concatenate![ndarray::Axis(0), q, q, q];
    for e in engines() {
        let index = CentroidIndex::with_engine(c.view(), e).unwrap();
        check(&index, x.view(), c.view(), 10);
    }
}

#[test]
fn parallel_split_matches_single_thread() {
    let mut rng = Rng(13);
    let c = rng.matrix(3001, 64, 1.0);
    let x = rng.matrix(300, 64, 1.0);
    let index = CentroidIndex::new(c.view()).unwrap();
    let _serial = pool::TEST_THREADS_LOCK.lock();
    pool::set_num_threads(3).unwrap();
    let par = index.search(x.view(), 4).unwrap();
    pool::set_num_threads(1).unwrap();
    let single = index.search(x.view(), 4).unwrap();
    assert_eq!(par, single);
    check(&index, x.view(), c.view(), 4);
}

#[test]
fn few_query_centroid_split_matches_single_thread_call_after_call() {
    // 5 × 1200 × 256: 600 KB of bf16 panels, split into one centroid range per thread; the
    // repeated calls run on helpers that linger between calls.
    let mut rng = Rng(23);
    let c = rng.matrix(1200, 256, 1.0);
    let x = rng.matrix(5, 256, 1.0);
    let index = CentroidIndex::new(c.view()).unwrap();
    let _serial = pool::TEST_THREADS_LOCK.lock();
    pool::set_num_threads(1).unwrap();
    let single = index.search(x.view(), 3).unwrap();
    for threads in [2, 3] {
        pool::set_num_threads(threads).unwrap();
        for _ in 0..200 {
            assert_eq!(index.search(x.view(), 3).unwrap(), single);
        }
    }
    check(&index, x.view(), c.view(), 3);
}

#[test]
fn portable_sgemm_tiles_at_every_block_size_match_the_naive_search() {
    // The portable engine's sgemm tiles (from 8 queries per block on; loops below), at block
    // sizes around its 16-row group, K not a multiple of its 256-centroid tile, odd D, one and
    // two threads (blocks of multiples of 16 queries, or centroid ranges at odd panels).
    let mut rng = Rng(29);
    let c = rng.matrix(777, 67, 1.0);
    let x = rng.matrix(200, 67, 1.0);
    let index = CentroidIndex::with_engine(c.view(), Engine::Portable).unwrap();
    let _serial = pool::TEST_THREADS_LOCK.lock();
    for threads in [1, 2] {
        pool::set_num_threads(threads).unwrap();
        for b in [7usize, 8, 15, 16, 17, 33, 64, 97, 200] {
            for k in [1usize, 9] {
                check_batch(&index, x.slice(ndarray::s![..b, ..]), c.view(), k);
            }
        }
    }
}

#[test]
fn huge_norms_fall_back_to_exact_scan() {
    let mut rng = Rng(17);
    let c = rng.matrix(50, 8, 1e18);
    let x = rng.matrix(4, 8, 1e18);
    let index = CentroidIndex::new(c.view()).unwrap();
    check(&index, x.view(), c.view(), 2);
}

#[test]
fn shapes_k1_b1_empty_batch() {
    let mut rng = Rng(19);
    let c = rng.matrix(1, 5, 1.0);
    let index = CentroidIndex::new(c.view()).unwrap();
    check(&index, rng.matrix(1, 5, 1.0).view(), c.view(), 1);
    let (dist, idx) = index
        .search(Array2::<f32>::zeros((0, 5)).view(), 1)
        .unwrap();
    assert_eq!((dist.dim(), idx.dim()), ((0, 1), (0, 1)));
    assert_eq!(
        index
            .reachability(Array2::<f32>::zeros((0, 5)).view(), 1.0, 1e-6)
            .unwrap()
            .len(),
        0
    );
    // A non-contiguous query view.
    let wide = rng.matrix(6, 10, 1.0);
    let strided = wide.slice(ndarray::s![.., ..;2]);
    check(&index, strided, c.view(), 1);
}

#[test]
fn bad_inputs_are_rejected() {
    let c = Array2::<f32>::ones((4, 3));
    let index = CentroidIndex::new(c.view()).unwrap();
    let x = Array2::<f32>::ones((2, 3));
    assert!(matches!(
        index.search(x.view(), 0),
        Err(KernelError::BadK { .. })
    ));
    assert!(matches!(
        index.search(x.view(), 5),
        Err(KernelError::BadK { .. })
    ));
    assert!(matches!(
        index.search(Array2::<f32>::ones((2, 4)).view(), 1),
        Err(KernelError::DimMismatch { .. })
    ));
    let mut bad = x.clone();
    bad[[1, 2]] = f32::NAN;
    let err = index.search(bad.view(), 1).unwrap_err();
    assert_eq!(
        err,
        KernelError::NonFinite {
            argument: "x",
            row: 1
        }
    );
    assert!(err.to_string().contains('x'));
    // The finiteness test runs in blocks of 64 values: the first bad row is named wherever
    // it lies (first block, a later block, the short last block, two bad rows in one block).
    let c7 = Array2::<f32>::ones((4, 7));
    let index7 = CentroidIndex::new(c7.view()).unwrap();
    for (bad_at, want_row) in [
        (vec![(0, 0)], 0),
        (vec![(20, 3)], 20),
        (vec![(41, 6)], 41),
        (vec![(12, 1), (10, 5)], 10),
    ] {
        let mut x = Array2::<f32>::ones((42, 7));
        for &(row, col) in &bad_at {
            x[[row, col]] = if col % 2 == 0 {
                f32::NAN
            } else {
                f32::NEG_INFINITY
            };
        }
        assert_eq!(
            index7.search(x.view(), 1).unwrap_err(),
            KernelError::NonFinite {
                argument: "x",
                row: want_row
            }
        );
    }
    assert!(CentroidIndex::new(Array2::<f32>::zeros((0, 3)).view()).is_err());
    let mut bad_c = c.clone();
    bad_c[[0, 0]] = f32::INFINITY;
    assert!(matches!(
        CentroidIndex::new(bad_c.view()),
        Err(KernelError::NonFinite {
            argument: "centroids",
            ..
        })
    ));
    assert!(index.reachability(x.view(), 1.0, 0.0).is_err());
    assert!(index.reachability(x.view(), -1.0, 1e-6).is_err());
    assert!(index.reachability(x.view(), 1.0, f64::NAN).is_err());
}

#[test]
fn clustered_near_duplicate_centroids_at_large_norm() {
    // Centroids in tight clusters (spread 1e-4 around a few bases of norm ~1e3) and queries
    // inside the clusters: every approximate score in a cluster is within the bf16 error.
    let mut rng = Rng(23);
    let d = 40;
    let bases = rng.matrix(4, d, 150.0);
    let c = Array2::from_shape_fn((400, d), |(j, l)| bases[[j % 4, l]] + 1e-4 * rng.normal());
    let x = Array2::from_shape_fn((9, d), |(i, l)| bases[[i % 4, l]] + 3e-5 * rng.normal());
    for e in engines() {
        let index = CentroidIndex::with_engine(c.view(), e).unwrap();
        check(&index, x.view(), c.view(), 1);
        check(&index, x.view(), c.view(), 8);
    }
}

#[test]
fn thousands_of_ties_and_k_up_to_num_classes() {
    // 9000 copies of one centroid among 500 random ones: the candidate buffer fills with
    // equal scores past its largest size (16k + 4096 for k <= 100) and must resolve
    // (evaluate and empty) instead of growing or looping.
    let mut rng = Rng(29);
    let d = 33;
    let one = rng.matrix(1, d, 1.0);
    let others = rng.matrix(500, d, 1.0);
    let copies = Array2::from_shape_fn((9000, d), |(_, l)| one[[0, l]]);
    let c = ndarray::concatenate![ndarray::Axis(0), others, copies];
    let x = ndarray::concatenate![ndarray::Axis(0), one, rng.matrix(4, d, 0.5)];
    for e in engines() {
        let index = CentroidIndex::with_engine(c.view(), e).unwrap();
        for k in [1usize, 7, 100, 1000, 9500] {
            check(&index, x.view(), c.view(), k);
        }
        let (dist, idx) = index.search(x.view(), 1000).unwrap();
        assert!((0..1000).all(|col| dist[[0, col]] == 0.0 && idx[[0, col]] == 500 + col as i64));
    }
}

#[test]
fn large_k_random_and_clustered() {
    let mut rng = Rng(31);
    let c = rng.matrix(2500, 70, 1.0);
    let x = rng.matrix(30, 70, 1.0);
    for e in engines() {
        let index = CentroidIndex::with_engine(c.view(), e).unwrap();
        for k in [10usize, 100, 999] {
            check(&index, x.view(), c.view(), k);
        }
    }
}

#[test]
fn one_dominant_component_hides_the_rest_from_the_quantised_scores() {
    // Every vector has one component near 100 and the others ~1e-3: with a per-vector int8
    // scale (or bf16) the small components round to nothing, yet they decide the ranking.
    let mut rng = Rng(37);
    for d in [1usize, 2, 3, 5, 31, 130] {
        let c = Array2::from_shape_fn((300, d), |(j, l)| {
            if l == 0 {
                100.0 + 1e-7 * (j % 3) as f32
            } else {
                1e-3 * rng.normal()
            }
        });
        let x = Array2::from_shape_fn(
            (7, d),
            |(_, l)| {
                if l == 0 {
                    100.0
                } else {
                    1e-3 * rng.normal()
                }
            },
        );
        for e in engines() {
            let index = CentroidIndex::with_engine(c.view(), e).unwrap();
            for k in [1usize, 4, 300] {
                check(&index, x.view(), c.view(), k);
            }
        }
    }
}

#[test]
fn d1_near_ties_at_large_magnitude() {
    // D = 1: centroids 1e4 + i·2⁻¹⁰ (adjacent f32 values apart), a query between each pair.
    let c = Array2::from_shape_fn((200, 1), |(j, _)| 1e4 + j as f32 / 1024.0);
    let x = Array2::from_shape_fn((50, 1), |(i, _)| {
        1e4 + (4 * i) as f32 / 1024.0 + 1.0 / 2048.0
    });
    for e in engines() {
        let index = CentroidIndex::with_engine(c.view(), e).unwrap();
        check(&index, x.view(), c.view(), 1);
        check(&index, x.view(), c.view(), 3);
    }
}

#[test]
fn an_engine_limited_in_d_refuses_larger_d_and_auto_avoids_it() {
    let d = super::vnni::MAX_DIM + 1;
    let c = Array2::<f32>::from_shape_fn((3, d), |(j, l)| ((j * 7 + l) % 13) as f32);
    for e in engines() {
        let built = CentroidIndex::with_engine(c.view(), e);
        if d > e.max_dim() {
            let err = built.err().unwrap();
            assert!(matches!(err, KernelError::KernelDim { .. }), "{err}");
            assert!(err.to_string().contains(e.name()));
        } else {
            assert!(built.is_ok());
        }
    }
    let auto = CentroidIndex::new(c.view()).unwrap();
    assert!(d <= auto.engine().max_dim());
    check(&auto, c.slice(ndarray::s![1..2, ..]), c.view(), 2);
}

#[test]
fn auto_dispatches_on_k_and_batch_and_stays_exact() {
    // K = 2500: large_k_from = 10 for B >= 4 (√K / 5), 25 for B = 1 (K / 100). An `auto`
    // index over the int8 engine serves larger k with the next engine of the ranking; every
    // k is exact whichever engine serves it.
    use super::index::large_k_from;
    let mut rng = Rng(41);
    let (num, d) = (2500usize, 96usize);
    let c = rng.matrix(num, d, 1.0);
    let owners = rng.matrix(40, d, 0.3);
    let x = Array2::from_shape_fn((40, d), |(i, l)| c[[(i * 61) % num, l]] + owners[[i, l]]);
    let auto = CentroidIndex::new(c.view()).unwrap();
    assert_eq!((large_k_from(num, 40), large_k_from(num, 1)), (10, 25));
    let small = auto.engine();
    assert_eq!(small, Engine::auto(d));
    assert_eq!(auto.engine_for(1, 40), small);
    assert_eq!(auto.engine_for(9, 40), small);
    assert_eq!(auto.engine_for(24, 1), small);
    match Engine::auto_large_k(small, d) {
        Some(large) => {
            assert!(small.is_int8() && !large.is_int8());
            assert_eq!(auto.engine_for(10, 40), large);
            assert_eq!(auto.engine_for(10, 4), large);
            assert_eq!(auto.engine_for(10, 2), large);
            assert_eq!(auto.engine_for(25, 1), large);
            assert_eq!(auto.engine_for(num, 1), large);
        }
        None => assert_eq!(auto.engine_for(num, 40), small),
    }
    for k in [1usize, 9, 10, 24, 25, 100, 1000] {
        check(&auto, x.view(), c.view(), k);
    }
    // A forced engine serves every call itself.
    for e in engines() {
        let forced = CentroidIndex::with_engine(c.view(), e).unwrap();
        assert_eq!(
            (forced.engine_for(1, 1), forced.engine_for(1000, 64)),
            (e, e)
        );
    }
}

#[test]
fn large_k_from_grows_with_the_centroids_and_for_few_queries() {
    use super::index::large_k_from;
    let many: Vec<usize> = [1, 1000, 10_000, 100_000, 1_000_000]
        .iter()
        .map(|&n| large_k_from(n, 64))
        .collect();
    assert_eq!(many, vec![2, 7, 20, 64, 200]);
    assert_eq!(large_k_from(10_000, 1), 100);
    assert_eq!(large_k_from(100_000, 1), 1000);
    assert_eq!(large_k_from(100_000, 2), 250);
    assert_eq!(large_k_from(10_000, 4), 20);
}

#[test]
fn ranges_merge_candidates_and_early_exact_hits_before_one_resolve() {
    // 3 threads, 30 queries over 42 000 centroids: 3 query blocks × 4 centroid ranges, each
    // range scanned for candidates and resolved once per query after the merge. 40 000
    // copies of one centroid overflow each range's buffer (resolved early, so the merge also
    // combines exact hits) for the query equal to it.
    let mut rng = Rng(43);
    let d = 16;
    let one = rng.matrix(1, d, 1.0);
    let others = rng.matrix(2000, d, 1.0);
    let copies = Array2::from_shape_fn((40_000, d), |(_, l)| one[[0, l]]);
    let c = ndarray::concatenate![ndarray::Axis(0), others, copies];
    let x = ndarray::concatenate![ndarray::Axis(0), one, rng.matrix(29, d, 1.0)];
    let _serial = pool::TEST_THREADS_LOCK.lock();
    for e in engines() {
        let index = CentroidIndex::with_engine(c.view(), e).unwrap();
        for k in [1usize, 7, 300, 2500] {
            pool::set_num_threads(3).unwrap();
            let par = index.search(x.view(), k as i64).unwrap();
            check_batch(&index, x.view(), c.view(), k);
            pool::set_num_threads(1).unwrap();
            assert_eq!(
                par,
                index.search(x.view(), k as i64).unwrap(),
                "{e:?} k={k}"
            );
        }
    }
}
