//! Criterion benchmark of the memory core over the shape grid (D = 512, k = 1):
//! B ∈ {1, 64, 1024} × K ∈ {1e3, 1e4, 1e5}. Kept short: 10 samples, ~1 s each shape.
//! `cargo bench --bench memory_core`; the thread count follows OLTR_NUM_THREADS / the cores.
//! Comparisons with numpy / torch / faiss are in `benches/bench_memory.py`.

use std::time::Duration;

use _core::CentroidIndex;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;

const DIM: usize = 512;

/// Deterministic pseudo-normal matrix (xorshift64*, sum of four uniforms).
fn matrix(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut state = seed.max(1);
    let mut uniform = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    Array2::from_shape_fn((rows, cols), |_| {
        (0..4).map(|_| uniform()).sum::<f32>() * 0.866
    })
}

fn search_grid(c: &mut Criterion) {
    let mut group = c.benchmark_group("search_k1_d512");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for &num in &[1_000usize, 10_000, 100_000] {
        let centroids = matrix(num, DIM, 7);
        let index = CentroidIndex::new(centroids.view()).expect("valid centroids");
        for &batch in &[1usize, 64, 1024] {
            let x = matrix(batch, DIM, 11);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new(format!("K{num}"), batch), &x, |b, x| {
                b.iter(|| index.search(x.view(), 1).expect("valid queries"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, search_grid);
criterion_main!(benches);
