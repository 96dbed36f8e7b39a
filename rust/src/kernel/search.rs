//! The search driver: splits (queries × centroids) into tasks, each scanning its centroid range
//! with a running exact top-k per query, runs them (`executor.rs`), then merges.
//!
//! Extra memory per call: the packed query blocks (B·D/2 words) and O(B·k) hits per centroid
//! range; the B×K score matrix is never formed.

use std::sync::Arc;

use super::bf16::{self, LANES};
use super::candidates::{finish_block, ExactData, QueryState};
use super::distance::copy_with_squared_norms;
use super::executor::{even_ranges, run_tasks};
use super::index::{IndexData, Packed};
use super::pool;
use super::portable;
use super::simd_f32;
use super::topk::{Hit, TopK};
use super::vnni;

/// Most queries per block (a multiple of the 12-row micro-group and of
/// `portable::ROW_GROUP`). A block's exact re-rank reads each centroid row once for all its
/// queries that need it, so at large k larger blocks read fewer rows: one Zen 4 thread,
/// 1024 × 1e4 × 512, k = 100, blocks of 96 / 192 / 384 queries: bf16 101 / 95 / 92 ms,
/// avx2-f32 156 / 139 / 133 ms (k = 1 unchanged).
const QUERY_BLOCK: usize = 384;
/// Below this many multiply-adds (B·K·D, ~0.3 ms on one Zen 4 core) the call runs on the
/// caller's thread alone: on the shared 2-core machine a helper thread rarely got a core in
/// time for such short calls (64 × 1e3 × 512: 0.49 ms on one thread, 0.91 ms on two under
/// load before the straggler-tolerant executor). With helpers lingering between calls
/// (`linger.rs`) the threshold went from 40 M to 10 M: 64 × 1e3 × 512 takes 0.23 ms on two
/// threads against 0.37 ms on one when the other core is free, 0.39–0.45 ms against
/// 0.37–0.41 ms while another process keeps it busy.
const PARALLEL_MIN_WORK: usize = 10_000_000;
/// Fewest 16-centroid panels per task.
const MIN_PANELS_PER_TASK: usize = 32;
/// A call of at most this many queries whose packed centroids take at least
/// [`SPLIT_MIN_BYTES`] is bound by reading them (a GEMV): it is split into one centroid range
/// per thread, so each thread reads its share (half of 1 MB at 1 × 1e3 × 512, within a Zen 4
/// core's 1 MB L2) and keeps it cached across calls (`executor.rs` gives the caller the
/// first range and the helper the last, call after call).
const SPLIT_MAX_QUERIES: usize = 12;
const SPLIT_MIN_BYTES: usize = 512 * 1024;
/// Fewest 16-centroid panels per task in such a split.
const SPLIT_MIN_PANELS: usize = 8;
/// Above this `(‖x‖ + max‖c‖)²` the f32 scores could overflow: scan exactly instead.
const EXACT_ONLY_NORM_SQ: f64 = 1e30;

/// A call's pass: the index's packed candidate pass, or the exact scan of every centroid.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Packed,
    Exact,
}

/// A query block packed for the bf16 or int8 pass.
enum QueryPack {
    None,
    Bf16(bf16::QueryPack),
    I8(vnni::QueryPack),
}

/// Splits `n` items into `parts` nearly equal ranges.
fn split(n: usize, parts: usize) -> Vec<(usize, usize)> {
    even_ranges(n, parts, 1, n)
}

/// How many query blocks a call of `b` queries has: enough for at most QUERY_BLOCK queries
/// each; in parallel (from two groups of queries on), at least two per thread while blocks
/// keep 96 queries or more, and a multiple of `threads` (11 blocks of about 96 queries on
/// two threads left one thread 6 blocks' work while the other did 5).
fn block_count(b: usize, group: usize, threads: usize, parallel: bool) -> usize {
    let blocks = b.div_ceil(QUERY_BLOCK);
    if parallel && b >= 2 * group {
        blocks
            .max((2 * threads).min(b.div_ceil(96)))
            .next_multiple_of(threads)
    } else {
        blocks
    }
}

/// `[start, end)` query blocks covering `b` queries: `blocks` blocks (fewer when `b` has
/// fewer micro-groups) of whole micro-groups of `group` rows (the last one may be short),
/// their group counts differing by at most one and spread evenly, so that any run of half
/// the blocks (what each of two threads claims) holds half the queries.
fn query_blocks(b: usize, group: usize, blocks: usize) -> Vec<(usize, usize)> {
    even_ranges(b.div_ceil(group), blocks, group, b)
}

/// Everything the tasks of one call read, owned so that helper threads may outlive the call
/// (see `executor.rs`).
struct Job {
    index: Arc<IndexData>,
    /// The queries, row-major `(b, dim)`, and their exact squared norms.
    x: Vec<f32>,
    x_norms_sq: Vec<f64>,
    pass: Pass,
    k: usize,
    qblocks: Vec<(usize, usize)>,
    /// Ranges of 16-centroid panels.
    ranges: Vec<(usize, usize)>,
    /// The packed centroids of this call are the large-k engine's (`IndexData::pass_for`).
    large_k: bool,
    /// The bf16 or int8 packing of each query block when the call has several centroid ranges
    /// (made by the caller before any task runs: a lazily shared packing would make every
    /// task wait for a possibly descheduled packer); empty with one range, where each block's
    /// only task packs its queries itself (in parallel).
    packs: Vec<QueryPack>,
}

impl Job {
    /// Task `t` = (query block `t / ranges`, centroid range `t % ranges`): the exact top-k of
    /// each query of the block when the call has one range, else their candidates over the
    /// range (resolved by [`Job::resolve`] once the ranges are done).
    fn run(&self, t: usize) -> Scanned {
        let index = &*self.index;
        let (q, r) = (t / self.ranges.len(), t % self.ranges.len());
        let (q0, q1) = self.qblocks[q];
        let (p0, p1) = self.ranges[r];
        let data = ExactData {
            x: &self.x,
            centroids: &index.rows,
            dim: index.dim,
        };
        let mut states: Vec<QueryState> = (q0..q1)
            .map(|row| QueryState::new(row, self.k, self.x_norms_sq[row]))
            .collect();
        let (j0, j1) = (p0 * LANES, (p1 * LANES).min(index.num));
        let packed = self.packed();
        let own;
        let pack = match self.packs.get(q) {
            Some(pack) => pack,
            None => {
                own = self.pack(q);
                &own
            }
        };
        match (self.pass, packed, pack) {
            (Pass::Exact, _, _) => portable::scan_exact(&data, &mut states, j0, j1),
            (_, Packed::Bf16(packed), QueryPack::Bf16(pack)) => {
                bf16::scan(packed, pack, &data, &mut states, p0, p1)
            }
            (_, Packed::I8(packed), QueryPack::I8(pack)) => {
                vnni::scan(packed, pack, &data, &mut states, p0, p1)
            }
            (_, Packed::F32(packed), _) => simd_f32::scan(
                packed,
                &data,
                index.c_norm_max,
                &mut states,
                &self.x_norms_sq,
                j0,
                j1,
            ),
            _ => portable::scan(
                &data,
                &index.norms_f32,
                index.c_norm_max,
                &mut states,
                &self.x_norms_sq,
                j0,
                j1,
            ),
        }
        if self.ranges.len() == 1 {
            Scanned::Done(finish_block(states, &data))
        } else {
            Scanned::Candidates(
                states
                    .into_iter()
                    .map(QueryState::into_candidates)
                    .collect(),
            )
        }
    }

    /// The packed centroids of this call's pass.
    fn packed(&self) -> &Packed {
        if self.large_k {
            self.index.pass_for(usize::MAX, 1).1
        } else {
            &self.index.packed
        }
    }

    /// Query block `q` packed for the call's pass (bf16 or int8; else nothing).
    fn pack(&self, q: usize) -> QueryPack {
        let index = &*self.index;
        let (q0, q1) = self.qblocks[q];
        let data = ExactData {
            x: &self.x,
            centroids: &index.rows,
            dim: index.dim,
        };
        let norms = &self.x_norms_sq;
        match (self.pass, self.packed()) {
            (Pass::Packed, Packed::Bf16(packed)) => QueryPack::Bf16(bf16::pack_queries(
                packed,
                &data,
                index.c_norm_max,
                norms,
                q0,
                q1,
            )),
            (Pass::Packed, Packed::I8(packed)) => QueryPack::I8(vnni::pack_queries(
                packed,
                &data,
                index.c_norm_max,
                norms,
                q0,
                q1,
            )),
            _ => QueryPack::None,
        }
    }

    /// The exact top-k of each query of block `q` from its ranges' candidates `parts`.
    fn resolve(&self, parts: &[Scanned]) -> Vec<TopK> {
        let data = ExactData {
            x: &self.x,
            centroids: &self.index.rows,
            dim: self.index.dim,
        };
        let mut states = match &parts[0] {
            Scanned::Candidates(states) => states.clone(),
            Scanned::Done(_) => unreachable!("a call of several ranges returns candidates"),
        };
        for part in &parts[1..] {
            if let Scanned::Candidates(more) = part {
                for (s, m) in states.iter_mut().zip(more) {
                    s.merge(m);
                }
            }
        }
        finish_block(states, &data)
    }
}

/// What a scan task returns (see [`Job::run`]).
enum Scanned {
    Done(Vec<TopK>),
    Candidates(Vec<QueryState>),
}

/// Sorted top-k hits of each of the `b` rows of `x` (row-major `(b, dim)`, finite).
pub(crate) fn search_hits(index: &Arc<IndexData>, x: &[f32], b: usize, k: usize) -> Vec<Vec<Hit>> {
    if b == 0 {
        return Vec::new();
    }
    let dim = index.dim;
    // The tasks own a copy of the queries (a straggling helper may outlive the call).
    let (x_owned, x_norms_sq) = copy_with_squared_norms(x, dim);
    let x_norm_max = x_norms_sq.iter().fold(0.0f64, |m, &n| m.max(n)).sqrt();
    let pass = if (x_norm_max + index.c_norm_max).powi(2) > EXACT_ONLY_NORM_SQ || dim > (1 << 20) {
        Pass::Exact
    } else {
        Pass::Packed
    };
    let panels = index.num.div_ceil(LANES);
    let threads = pool::num_threads();
    let work = b.saturating_mul(index.num).saturating_mul(dim);
    let (engine, packed) = index.pass_for(k, b);
    let large_k = engine != index.engine;
    let bytes_per_value = match (packed, pass) {
        (Packed::I8(_), Pass::Packed) => 1,
        (Packed::Bf16(_), Pass::Packed) => 2,
        _ => 4,
    };
    let panel_bytes = panels * LANES * dim * bytes_per_value;
    let gemv_split = threads > 1
        && b <= SPLIT_MAX_QUERIES
        && panel_bytes >= SPLIT_MIN_BYTES
        && work < PARALLEL_MIN_WORK;
    let parallel = threads > 1 && (work >= PARALLEL_MIN_WORK || gemv_split);
    // In parallel, split the queries first (no duplicated per-range work), then centroids.
    // Blocks are multiples of the engine's micro-kernel rows: 12 queries for the SIMD
    // engines, sgemm's row group for the portable one.
    let group = match packed {
        Packed::Rows => portable::ROW_GROUP,
        _ => 12,
    };
    let qblocks = query_blocks(b, group, block_count(b, group, threads, parallel));
    let ranges = if gemv_split {
        split(panels, threads.min((panels / SPLIT_MIN_PANELS).max(1)))
    } else if parallel {
        // Too few query blocks to share among the threads: split the centroids too.
        let wanted = if qblocks.len() >= 2 * threads {
            1
        } else {
            (4 * threads).div_ceil(qblocks.len())
        };
        split(panels, wanted.min((panels / MIN_PANELS_PER_TASK).max(1)))
    } else {
        vec![(0, panels)]
    };
    let num_ranges = ranges.len();
    let mut job = Job {
        index: Arc::clone(index),
        x: x_owned,
        x_norms_sq,
        pass,
        k,
        large_k,
        packs: Vec::new(),
        qblocks,
        ranges,
    };
    if num_ranges > 1 {
        job.packs = (0..job.qblocks.len()).map(|q| job.pack(q)).collect();
    }
    let job = Arc::new(job);
    let blocks = job.qblocks.len();
    let scan_job = Arc::clone(&job);
    let results = run_tasks(blocks * num_ranges, parallel, move |t| scan_job.run(t));
    let tops: Vec<Vec<TopK>> = if num_ranges == 1 {
        results
            .into_iter()
            .map(|r| match r {
                Scanned::Done(tops) => tops,
                Scanned::Candidates(_) => unreachable!("a call of one range finishes its queries"),
            })
            .collect()
    } else {
        // Second pass: each query block merges its ranges' candidates (tasks are ordered
        // query block, then range) and resolves them once.
        let results = Arc::new(results);
        run_tasks(blocks, parallel, move |q| {
            job.resolve(&results[q * num_ranges..(q + 1) * num_ranges])
        })
    };
    tops.into_iter().flatten().map(TopK::into_sorted).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_blocks_cover_the_batch_in_whole_groups_and_halve_evenly() {
        for (b, group) in [
            (1usize, 12usize),
            (11, 12),
            (64, 12),
            (64, 16),
            (97, 12),
            (1024, 12),
            (1024, 16),
            (1000, 16),
            (4099, 12),
        ] {
            for threads in [1usize, 2, 3] {
                let got = query_blocks(b, group, block_count(b, group, threads, true));
                // Contiguous cover of 0..b, each block starting on a group boundary.
                assert_eq!(got.first().unwrap().0, 0);
                assert_eq!(got.last().unwrap().1, b);
                for w in got.windows(2) {
                    assert_eq!(w[0].1, w[1].0);
                }
                for &(q0, q1) in &got {
                    assert!(
                        q0 < q1 && q0 % group == 0 && q1 - q0 <= QUERY_BLOCK,
                        "{got:?}"
                    );
                }
                if b >= 2 * group {
                    assert_eq!(got.len() % threads, 0, "b {b} threads {threads}: {got:?}");
                    // Each thread's share of the blocks (front or back) holds its share of
                    // the queries, to within one group.
                    let per = got.len() / threads;
                    for t in 0..threads {
                        let rows: usize =
                            got[t * per..(t + 1) * per].iter().map(|(a, z)| z - a).sum();
                        assert!(rows.abs_diff(b / threads) <= group, "b {b}: {got:?}");
                    }
                }
            }
        }
    }
}
