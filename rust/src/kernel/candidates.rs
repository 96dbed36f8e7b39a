//! Per-query state of a scan: candidates under the threshold, and the exact running top-k.
//!
//! A centroid whose approximate score `v_j` passes the threshold `t` is buffered, not evaluated
//! at once, and costs nothing more during the scan (no heap: large k is as cheap per
//! candidate as k = 1). Two thresholds are valid (each keeps every centroid of the true top-k,
//! see `margin.rs`), and `t` is the smaller one:
//! * from the scores: `kth(v) + 2·E` (the true k-th score is at most `kth(v) + E`);
//! * from exact distances: `d²_k − ‖x‖² + E`, once k candidates were evaluated exactly.
//!
//! When the buffer outgrows its capacity (`4k + 16`) one selection pass
//! (`select_nth_unstable`, O(n)) finds its k-th score, lowers `t` to `kth(v) + 2·E` and drops
//! the entries above it; if half the buffer survives (a wide margin) the capacity doubles, up
//! to `16k + 4096`. When even that fills up (e.g. thousands of tied centroids) the buffer is
//! *resolved*: the k best scores are evaluated exactly first, which makes the exact threshold
//! tight at once, then the other survivors in ascending score order, stopping at the first
//! score above `t`. At the end of the scan [`finish_block`] does the same for a block of
//! queries together, each round in centroid order so that a row is read once for every query
//! of the block that needs it; so only about k plus the centroids within ~2E of the k-th score
//! are evaluated. Memory stays O(k) per query whatever the data.

use super::distance::squared_l2_f64;
use super::margin::{dot_error_f32, score_margin, threshold, threshold_from_score};
use super::topk::{Hit, TopK};

/// Row-major f32 data the exact re-rank reads: the query rows and the centroid rows.
#[derive(Clone, Copy)]
pub struct ExactData<'a> {
    pub x: &'a [f32],
    pub centroids: &'a [f32],
    pub dim: usize,
}

/// One query during a scan over a range of centroids.
#[derive(Clone)]
pub struct QueryState {
    /// Row of the query in `ExactData::x`.
    pub row: usize,
    /// Candidate threshold on the approximate score `v_j` (see `margin`).
    pub t: f32,
    t_scores: f32,
    t_exact: f32,
    x_norm_sq: f64,
    margin: f64,
    k: usize,
    /// Candidates not yet evaluated exactly: (score, centroid); every centroid offered so far
    /// with a score `<= t` that is not in `best`'s evaluated set.
    pending: Vec<(f32, u32)>,
    /// Buffer size that triggers a compaction; doubles (up to `max_capacity`) while half of
    /// the buffer survives compactions (a wide margin), so the threshold work stays O(1)
    /// per candidate.
    capacity: usize,
    max_capacity: usize,
    best: TopK,
}

impl QueryState {
    pub fn new(row: usize, k: usize, x_norm_sq: f64) -> Self {
        Self {
            row,
            t: f32::MAX,
            t_scores: f32::MAX,
            t_exact: f32::MAX,
            x_norm_sq,
            margin: 0.0,
            k,
            pending: Vec::new(),
            capacity: 4 * k + 16,
            max_capacity: 16 * k + 4096,
            best: TopK::new(k),
        }
    }

    /// Sets the margin `E(x)` of the engine's candidate pass (before the scan starts).
    pub fn set_margin(&mut self, margin: f64) {
        self.margin = margin;
    }

    /// Takes centroid `j` with approximate score `v <= self.t` as a candidate.
    #[inline]
    pub fn offer(&mut self, j: usize, v: f32, data: &ExactData<'_>) {
        self.pending.push((v, j as u32));
        if self.pending.len() > self.capacity {
            self.compact(data);
        }
    }

    /// Offers the lanes of one SIMD score vector (at most 16): `vals[lane]` is the score of
    /// centroid `first + lane`; those `<= self.t` are taken. Branch-free: every lane is
    /// written past the buffer's end and the end advances over the passing ones only (a
    /// branch per lane mispredicted on about every candidate: 13 ns per candidate of a bf16
    /// scan at k = 100).
    #[inline(always)]
    pub fn offer_lanes(&mut self, first: usize, vals: &[f32], data: &ExactData<'_>) {
        debug_assert!(vals.len() <= 16);
        self.pending.reserve(vals.len());
        let t = self.t;
        let spare = self.pending.spare_capacity_mut();
        let mut taken = 0;
        for (lane, &v) in vals.iter().enumerate() {
            spare[taken].write((v, (first + lane) as u32));
            taken += usize::from(v <= t);
        }
        // SAFETY: the first `taken` spare slots were just written (`taken` <= lane + 1).
        unsafe { self.pending.set_len(self.pending.len() + taken) };
        if self.k == 1 {
            self.tighten_to_least(vals.iter().fold(f32::INFINITY, |m, &v| m.min(v)));
        }
        if self.pending.len() > self.capacity {
            self.compact(data);
        }
    }

    /// The k this query asks for.
    pub fn k(&self) -> usize {
        self.k
    }

    /// For k = 1: `least`, a score seen (or about to be offered), is the best so far; the
    /// score threshold follows it at once (a selection pass of the buffer would find the
    /// same), so later vectors offer only scores within 2E of it.
    #[inline(always)]
    pub fn tighten_to_least(&mut self, least: f32) {
        debug_assert_eq!(self.k, 1);
        if least < f32::INFINITY {
            let ts = threshold_from_score(f64::from(least), self.x_norm_sq, self.margin);
            if ts < self.t_scores {
                self.t_scores = ts;
                self.t = self.t_scores.min(self.t_exact);
            }
        }
    }

    /// Lowers the score threshold to the buffer's `kth(v) + 2E` and drops the entries above
    /// `t`. If half of the buffer survives, it grows (twice the room), or once at its
    /// maximum (thousands of tied centroids) is resolved, which keeps memory O(k).
    #[inline(never)]
    fn compact(&mut self, data: &ExactData<'_>) {
        self.tighten_from_scores();
        if self.pending.len() > self.capacity / 2 {
            if self.capacity < self.max_capacity {
                self.capacity = (2 * self.capacity).min(self.max_capacity);
            } else {
                self.resolve(data);
            }
        }
    }

    /// `t_scores` from the k-th smallest buffered score (one selection pass), then drops the
    /// buffered entries above `t`. The buffer holds every score seen `<= t` (not yet
    /// evaluated), so its k-th score bounds the k-th score seen.
    fn tighten_from_scores(&mut self) {
        let k = self.k;
        if self.pending.len() >= k {
            let (_, kth, _) = self
                .pending
                .select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
            let t = threshold_from_score(f64::from(kth.0), self.x_norm_sq, self.margin);
            self.t_scores = self.t_scores.min(t);
            self.t = self.t_scores.min(self.t_exact);
        }
        let t = self.t;
        self.pending.retain(|e| e.0 <= t);
    }

    /// Evaluates the buffer exactly, the k best scores first, then the others under the
    /// (now exact) threshold in ascending score order until a score exceeds `t`, and empties
    /// it.
    fn resolve(&mut self, data: &ExactData<'_>) {
        let mut pending = std::mem::take(&mut self.pending);
        let k = self.k.min(pending.len());
        if k > 0 && k < pending.len() {
            pending.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
        }
        for &(_, j) in pending[..k].iter().take(PREFETCH_AHEAD) {
            prefetch_row(data, j as usize);
        }
        for i in 0..k {
            if let Some(&(_, next)) = pending.get(i + PREFETCH_AHEAD) {
                prefetch_row(data, next as usize);
            }
            let (v, j) = pending[i];
            if v <= self.t {
                self.evaluate(j as usize, data);
            }
        }
        let t = self.t;
        let mut rest: Vec<(f32, u32)> = pending[k..].iter().copied().filter(|e| e.0 <= t).collect();
        rest.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        self.evaluate_in_order(&rest, data);
        pending.clear();
        self.pending = pending;
    }

    /// Evaluates `sorted` (ascending scores) exactly until a score exceeds `t`.
    fn evaluate_in_order(&mut self, sorted: &[(f32, u32)], data: &ExactData<'_>) {
        // The rows are random reads (the scan streams the packed panels, not the rows):
        // fetch the next candidates' rows while this one is evaluated.
        for &(_, j) in sorted.iter().take(PREFETCH_AHEAD) {
            prefetch_row(data, j as usize);
        }
        for (i, &(v, j)) in sorted.iter().enumerate() {
            if v > self.t {
                break;
            }
            if let Some(&(_, next)) = sorted.get(i + PREFETCH_AHEAD) {
                prefetch_row(data, next as usize);
            }
            self.evaluate(j as usize, data);
        }
    }

    /// Evaluates centroid `j` exactly (no candidate test).
    #[inline]
    pub fn evaluate(&mut self, j: usize, data: &ExactData<'_>) {
        let d = data.dim;
        let x = &data.x[self.row * d..(self.row + 1) * d];
        let c = &data.centroids[j * d..(j + 1) * d];
        let hit = Hit {
            d2: squared_l2_f64(x, c),
            idx: j as u32,
        };
        if self.best.push(hit) && self.best.is_full() {
            self.t_exact = threshold(self.best.kth().map(|h| h.d2), self.x_norm_sq, self.margin);
            self.t = self.t_scores.min(self.t_exact);
        }
    }

    /// Ends the scan of one centroid range of several: the candidates (buffer tightened to
    /// `kth(v) + 2E`, and any exact hits), to be merged with the other ranges' by
    /// [`QueryState::merge`] and resolved once by [`finish_block`], so a query
    /// evaluates about k + (its window) distances in all rather than that many per range.
    pub fn into_candidates(mut self) -> Self {
        self.tighten_from_scores();
        self
    }

    /// Adds the candidates and exact hits of the same query over another centroid range (any
    /// set's `kth(v) + 2E` bounds the true top-k's scores, so each range's threshold holds for
    /// the union).
    pub fn merge(&mut self, other: &QueryState) {
        debug_assert_eq!((self.row, self.k), (other.row, other.k));
        self.pending.extend_from_slice(&other.pending);
        self.best.merge(other.best.clone());
        self.margin = self.margin.max(other.margin);
        self.t_scores = self.t_scores.min(other.t_scores);
        if self.best.is_full() {
            self.t_exact = threshold(self.best.kth().map(|h| h.d2), self.x_norm_sq, self.margin);
        }
        self.t = self.t_scores.min(self.t_exact);
    }
}

/// Ends the scan of a block of queries: the exact top-k of each from its candidates.
///
/// Resolved together so that each centroid row is read once for all the queries of the
/// block that need it: first each query's k best scores (evaluated whatever the exact
/// threshold), then, under each query's now exact threshold `t`, the rest of its candidates;
/// each round is evaluated in centroid order (rows prefetched ahead). Every centroid of a
/// query's true top-k has `v <= t` whatever the order of evaluation (`t` only decreases and
/// always holds), so all of them are evaluated.
pub fn finish_block(mut states: Vec<QueryState>, data: &ExactData<'_>) -> Vec<TopK> {
    for st in states.iter_mut() {
        st.tighten_from_scores();
    }
    // Room for both rounds' pairs at once, and the radix sort's scratch: no reallocation.
    let total = states.iter().map(|st| st.pending.len()).sum();
    let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(total);
    let mut scratch: Vec<(u32, u32)> = Vec::with_capacity(total);
    let mut rests: Vec<Vec<(f32, u32)>> = Vec::with_capacity(states.len());
    for (i, st) in states.iter_mut().enumerate() {
        let mut pending = std::mem::take(&mut st.pending);
        let k = st.k.min(pending.len());
        if k > 0 && k < pending.len() {
            pending.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
        }
        pairs.extend(pending.drain(..k).map(|(_, j)| (j, i as u32)));
        rests.push(pending);
    }
    evaluate_pairs(&mut states, &mut pairs, &mut scratch, data);
    for (i, (st, rest)) in states.iter().zip(&rests).enumerate() {
        let t = st.t;
        pairs.extend(
            rest.iter()
                .filter(|e| e.0 <= t)
                .map(|&(_, j)| (j, i as u32)),
        );
    }
    evaluate_pairs(&mut states, &mut pairs, &mut scratch, data);
    states.into_iter().map(|s| s.best).collect()
}

/// Evaluates the (centroid, query state) `pairs` (pushed in ascending query order) exactly in
/// centroid order, and empties them.
fn evaluate_pairs(
    states: &mut [QueryState],
    pairs: &mut Vec<(u32, u32)>,
    scratch: &mut Vec<(u32, u32)>,
    data: &ExactData<'_>,
) {
    sort_by_centroid(pairs, scratch);
    for &(j, _) in pairs.iter().take(PREFETCH_AHEAD) {
        prefetch_row(data, j as usize);
    }
    for (n, &(j, i)) in pairs.iter().enumerate() {
        if let Some(&(next, _)) = pairs.get(n + PREFETCH_AHEAD) {
            if next != j {
                prefetch_row(data, next as usize);
            }
        }
        states[i as usize].evaluate(j as usize, data);
    }
    pairs.clear();
}

/// Sorts `pairs` by centroid (`.0`), keeping their order within a centroid: for pairs pushed
/// in ascending query order, the order of `sort_unstable`. An LSD radix sort on 8-bit digits
/// (as many as the largest centroid needs: 2 passes up to K = 65 536), O(n) per pass where a
/// comparison sort of the ~10⁵ pairs of a 384-query block at k = 100 took a tenth of the call.
/// `other` is scratch space (its contents are overwritten; it may swap with `pairs`).
fn sort_by_centroid(pairs: &mut Vec<(u32, u32)>, other: &mut Vec<(u32, u32)>) {
    if pairs.len() <= 64 {
        pairs.sort_unstable();
        return;
    }
    let max = pairs.iter().fold(0u32, |m, p| m.max(p.0));
    other.clear();
    other.resize(pairs.len(), (0, 0));
    let mut shift = 0u32;
    loop {
        let digit = |p: &(u32, u32)| ((p.0 >> shift) & 0xff) as usize;
        let mut starts = [0usize; 256];
        for p in pairs.iter() {
            starts[digit(p)] += 1;
        }
        let mut sum = 0;
        for s in starts.iter_mut() {
            (*s, sum) = (sum, sum + *s);
        }
        for p in pairs.iter() {
            let d = digit(p);
            other[starts[d]] = *p;
            starts[d] += 1;
        }
        std::mem::swap(pairs, other);
        shift += 8;
        if shift >= 32 || max >> shift == 0 {
            break;
        }
    }
}

/// Candidates whose centroid rows are prefetched ahead of their exact evaluation.
const PREFETCH_AHEAD: usize = 3;

/// Asks the CPU to bring centroid row `j` into cache (a hint; no effect off x86_64).
#[inline(always)]
fn prefetch_row(data: &ExactData<'_>, j: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let row = &data.centroids[j * data.dim..(j + 1) * data.dim];
        for line in row.chunks(16) {
            // SAFETY: prefetching a valid address has no side effect.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (data, j);
    }
}

/// Sets each query's margin for an f32 candidate pass (`margin::dot_error_f32`): shared by the
/// AVX2 and portable engines. `x_norms_sq[row]` is the query's exact squared norm.
pub fn set_f32_margins(states: &mut [QueryState], x_norms_sq: &[f64], dim: usize, c_norm_max: f64) {
    for st in states.iter_mut() {
        let x_norm = x_norms_sq[st.row].sqrt();
        st.set_margin(score_margin(
            dot_error_f32(dim, x_norm, c_norm_max),
            x_norm,
            c_norm_max,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_by_centroid_orders_as_a_comparison_sort() {
        // Pairs pushed in ascending query order, centroids spanning 1, 2 and 4 radix digits.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for (n, num) in [
            (10usize, 7u32),
            (65, 300),
            (1000, 200),
            (5000, 70_000),
            (3000, u32::MAX),
        ] {
            let mut pairs = Vec::with_capacity(n);
            for i in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                pairs.push(((seed % u64::from(num)) as u32, (i / 3) as u32));
            }
            let mut want = pairs.clone();
            want.sort_unstable();
            sort_by_centroid(&mut pairs, &mut Vec::new());
            assert_eq!(pairs, want, "n {n} num {num}");
        }
    }
}
