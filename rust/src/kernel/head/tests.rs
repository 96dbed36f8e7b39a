//! The fused head against the formulas in f64, and a row's bits across batches and engines.

use super::*;
use crate::kernel::dense::ENGINES;
use crate::kernel::tests::Rng;

struct Head {
    d: usize,
    k: usize,
    hallucinator_t: Vec<f32>,
    hallucinator_bias: Vec<f32>,
    centroids: Vec<f32>,
    selector_t: Vec<f32>,
    selector_bias: Vec<f32>,
}

impl Head {
    fn random(rng: &mut Rng, d: usize, k: usize) -> Self {
        let scaled = |rng: &mut Rng, len: usize, s: f32| -> Vec<f32> {
            rng.vec(len).into_iter().map(|v| v * s).collect()
        };
        Self {
            d,
            k,
            hallucinator_t: scaled(rng, d * k, 0.5),
            hallucinator_bias: scaled(rng, k, 0.5),
            centroids: scaled(rng, k * d, 2.0),
            selector_t: scaled(rng, d * d, 0.5),
            selector_bias: scaled(rng, d, 0.5),
        }
    }

    fn weights(&self) -> MetaWeights<'_> {
        let (d, k) = (self.d, self.k);
        MetaWeights {
            hallucinator_t: MatRef::new("h", &self.hallucinator_t, d, k, k).unwrap(),
            hallucinator_bias: &self.hallucinator_bias,
            centroids: MatRef::new("c", &self.centroids, k, d, d).unwrap(),
            selector_t: MatRef::new("s", &self.selector_t, d, d, d).unwrap(),
            selector_bias: &self.selector_bias,
        }
    }

    /// The module docs' formulas in f64 for one row: (memory, selector, meta).
    fn reference(&self, x: &[f32], reach: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (d, k) = (self.d, self.k);
        let f = |v: f32| f64::from(v);
        let scores: Vec<f64> = (0..k)
            .map(|j| {
                f(self.hallucinator_bias[j])
                    + (0..d)
                        .map(|i| f(x[i]) * f(self.hallucinator_t[i * k + j]))
                        .sum::<f64>()
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        let memory: Vec<f64> = (0..d)
            .map(|i| {
                (0..k)
                    .map(|j| exps[j] * f(self.centroids[j * d + i]))
                    .sum::<f64>()
                    / total
            })
            .collect();
        let selector: Vec<f64> = (0..d)
            .map(|j| {
                (f(self.selector_bias[j])
                    + (0..d)
                        .map(|i| f(x[i]) * f(self.selector_t[i * d + j]))
                        .sum::<f64>())
                .tanh()
            })
            .collect();
        let meta = (0..d)
            .map(|i| reach * (f(x[i]) + selector[i] * memory[i]))
            .collect();
        (memory, selector, meta)
    }
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

fn run(head: &Head, x: &[f32], dist: &[f32], engine: Engine) -> MetaParts {
    let b = x.len() / head.d;
    let reach = Reach {
        nearest_distance: dist,
        scale: 10.0,
        eps: 1e-12,
    };
    let x = MatRef::new("x", x, b, head.d, head.d).unwrap();
    meta_embedding(x, &head.weights(), Some(&reach), engine).unwrap()
}

#[test]
fn meta_embedding_follows_the_formulas() {
    let mut rng = Rng(11);
    let (b, d, k) = (5, 33, 70);
    let head = Head::random(&mut rng, d, k);
    let x = rng.vec(b * d);
    let dist: Vec<f32> = (0..b).map(|i| 0.5 + i as f32).collect();
    let parts = run(&head, &x, &dist, dense::engine("auto").unwrap());
    let reach = parts.reachability.as_ref().unwrap();
    for i in 0..b {
        let want_reach = 10.0 / f64::from(dist[i]);
        assert!((f64::from(reach[i]) - want_reach).abs() <= 1e-6 * want_reach);
        let (memory, selector, meta) = head.reference(&x[i * d..(i + 1) * d], want_reach);
        let row = i * d..(i + 1) * d;
        assert_close(&parts.memory()[row.clone()], &memory, "memory");
        assert_close(&parts.selector()[row.clone()], &selector, "selector");
        assert_close(&parts.meta()[row.clone()], &meta, "meta");
        for j in row {
            assert_eq!(parts.infused()[j], parts.selector()[j] * parts.memory()[j]);
        }
    }
}

#[test]
fn without_reach_the_meta_embedding_is_x_plus_infused() {
    let mut rng = Rng(12);
    let head = Head::random(&mut rng, 16, 9);
    let x = rng.vec(3 * 16);
    let xv = MatRef::new("x", &x, 3, 16, 16).unwrap();
    let parts = meta_embedding(xv, &head.weights(), None, Engine::Portable).unwrap();
    assert!(parts.reachability.is_none());
    for ((&meta, &xv), &infused) in parts.meta().iter().zip(&x).zip(parts.infused()) {
        assert_eq!(meta, xv + infused);
    }
}

#[test]
fn a_rows_bits_do_not_depend_on_its_batch_or_the_engine() {
    let mut rng = Rng(13);
    let (b, d, k) = (14, 40, 300);
    let head = Head::random(&mut rng, d, k);
    let x = rng.vec(b * d);
    let dist: Vec<f32> = (0..b).map(|i| 1.0 + i as f32 * 0.25).collect();
    let all = run(&head, &x, &dist, Engine::Portable);
    for engine in ENGINES.into_iter().filter(|e| e.is_supported()) {
        let again = run(&head, &x, &dist, engine);
        assert_eq!(again.meta(), all.meta(), "{}", engine.name());
        for i in [0, 7, b - 1] {
            let one = run(&head, &x[i * d..(i + 1) * d], &dist[i..=i], engine);
            assert_eq!(
                one.memory(),
                &all.memory()[i * d..(i + 1) * d],
                "{}",
                engine.name()
            );
            assert_eq!(
                one.meta(),
                &all.meta()[i * d..(i + 1) * d],
                "{}",
                engine.name()
            );
        }
    }
}

#[test]
fn rows_split_over_threads_keep_their_bits() {
    // 600 rows of K = 300 scores and of D = 240 values: the softmax and the elementwise
    // steps run as two row tasks on three threads; each row must equal its run alone (one
    // task, the caller), and so must its cosine logits.
    let _serial = crate::kernel::pool::TEST_THREADS_LOCK.lock();
    crate::kernel::pool::set_num_threads(3).unwrap();
    let mut rng = Rng(15);
    let (b, d, k) = (600, 240, 300);
    let head = Head::random(&mut rng, d, k);
    let x = rng.vec(b * d);
    let dist: Vec<f32> = (0..b).map(|i| 0.5 + (i % 7) as f32).collect();
    let engine = dense::engine("auto").unwrap();
    let all = run(&head, &x, &dist, engine);
    for i in [0, 1, 299, 300, 451, b - 1] {
        let one = run(&head, &x[i * d..(i + 1) * d], &dist[i..=i], engine);
        let row = i * d..(i + 1) * d;
        for (what, got, want) in [
            ("memory", one.memory(), &all.memory()[row.clone()]),
            ("selector", one.selector(), &all.selector()[row.clone()]),
            ("infused", one.infused(), &all.infused()[row.clone()]),
            ("meta", one.meta(), &all.meta()[row.clone()]),
        ] {
            assert_eq!(got, want, "{what} of row {i}");
        }
    }
    // the cosine classifier's row scaling, two row tasks too
    let unit_t = rng.vec(d * 50);
    let wm = MatRef::new("w", &unit_t, d, 50, 50).unwrap();
    let metas = MatRef::new("v", all.meta(), b, d, d).unwrap();
    let logits = cosine_logits(metas, wm, 16.0, Squash::Code, engine).unwrap();
    for i in [0, 299, 300, b - 1] {
        let one = MatRef::new("v", &all.meta()[i * d..(i + 1) * d], 1, d, d).unwrap();
        let want = cosine_logits(one, wm, 16.0, Squash::Code, engine).unwrap();
        assert_eq!(want, logits[i * 50..(i + 1) * 50], "logits of row {i}");
    }
}

#[test]
fn cosine_logits_follow_both_squashes() {
    let mut rng = Rng(14);
    let (b, d, k) = (4, 24, 30);
    let mut v = rng.vec(b * d);
    v[..d].fill(0.0); // a zero row: zero logits
    let unit_t = rng.vec(d * k);
    let vm = MatRef::new("v", &v, b, d, d).unwrap();
    let wm = MatRef::new("w", &unit_t, d, k, k).unwrap();
    for squash in [Squash::Code, Squash::Paper] {
        let logits = cosine_logits(vm, wm, 16.0, squash, Engine::Portable).unwrap();
        for i in 0..b {
            let row = &v[i * d..(i + 1) * d];
            let n = row
                .iter()
                .map(|&x| f64::from(x).powi(2))
                .sum::<f64>()
                .sqrt();
            let factor = match squash {
                Squash::Code => 16.0 / (1.0 + n),
                Squash::Paper => 16.0 * n / (1.0 + n * n),
            };
            let want: Vec<f64> = (0..k)
                .map(|j| {
                    factor
                        * (0..d)
                            .map(|l| f64::from(row[l]) * f64::from(unit_t[l * k + j]))
                            .sum::<f64>()
                })
                .collect();
            assert_close(&logits[i * k..(i + 1) * k], &want, "logits");
        }
        assert!(logits[..k].iter().all(|&l| l == 0.0));
    }
}

#[test]
fn shape_errors_name_the_argument() {
    let mut rng = Rng(15);
    let head = Head::random(&mut rng, 8, 5);
    let x = rng.vec(2 * 8);
    let xv = MatRef::new("x", &x, 2, 8, 8).unwrap();
    let mut w = head.weights();
    w.selector_bias = &head.selector_bias[..7];
    let err = meta_embedding(xv, &w, None, Engine::Portable).unwrap_err();
    assert!(err.to_string().starts_with("selector_bias"), "{err}");
    let w = head.weights();
    let reach = Reach {
        nearest_distance: &[1.0],
        scale: 10.0,
        eps: 1e-12,
    };
    let err = meta_embedding(xv, &w, Some(&reach), Engine::Portable).unwrap_err();
    assert!(err.to_string().starts_with("nearest_distance"), "{err}");
    let short = MatRef::new("x", &x[..7], 1, 7, 7).unwrap();
    let err = meta_embedding(short, &w, None, Engine::Portable).unwrap_err();
    assert!(err.to_string().starts_with("hallucinator_t"), "{err}");
    let unit = rng.vec(7 * 5);
    let wm = MatRef::new("w", &unit, 7, 5, 5).unwrap();
    let err = cosine_logits(xv, wm, 16.0, Squash::Code, Engine::Portable).unwrap_err();
    assert!(err.to_string().starts_with("unit_weight_t"), "{err}");
}
