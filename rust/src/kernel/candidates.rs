//! Per-query state of a scan: candidates under the threshold, and the exact running top-k.
//!
//! A centroid whose approximate score `v_j` passes the threshold `t` is buffered, not evaluated
//! at once. Two thresholds are valid (each keeps every centroid of the true top-k, see
//! `margin.rs`), and `t` is the smaller one:
//! * from the scores: `kth(v) + 2·E` (the true k-th score is at most `kth(v) + E`);
//! * from exact distances: `d²_k − ‖x‖² + E`, once k candidates were evaluated exactly.
//!
//! The buffer is evaluated exactly (keeping only entries still under `t`) when it outgrows its
//! capacity and at the end, so memory stays O(k) per query whatever the data (even when
//! thousands of centroids tie) and only about one to three exact distances are computed per
//! query on ordinary data.

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
pub struct QueryState {
    /// Row of the query in `ExactData::x`.
    pub row: usize,
    /// Candidate threshold on the approximate score `v_j` (see `margin`).
    pub t: f32,
    t_scores: f32,
    t_exact: f32,
    x_norm_sq: f64,
    margin: f64,
    /// k smallest approximate scores seen (as `Hit { d2: v, .. }`).
    scores: TopK,
    /// Candidates not yet evaluated exactly: (score, centroid).
    pending: Vec<(f32, u32)>,
    capacity: usize,
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
            scores: TopK::new(k),
            pending: Vec::new(),
            capacity: 4 * k + 60,
            best: TopK::new(k),
        }
    }

    /// Sets the margin `E(x)` of the engine's candidate pass (before the scan starts).
    pub fn set_margin(&mut self, margin: f64) {
        self.margin = margin;
    }

    /// Takes centroid `j` with approximate score `v <= self.t` as a candidate.
    #[inline(never)]
    pub fn offer(&mut self, j: usize, v: f32, data: &ExactData<'_>) {
        self.pending.push((v, j as u32));
        if self.scores.push(Hit {
            d2: f64::from(v),
            idx: j as u32,
        }) && self.scores.is_full()
        {
            let kth = self.scores.kth().map_or(f64::from(f32::MAX), |h| h.d2);
            self.t_scores = threshold_from_score(kth, self.x_norm_sq, self.margin);
            self.t = self.t_scores.min(self.t_exact);
        }
        if self.pending.len() > self.capacity {
            self.flush(data);
        }
    }

    /// Offers the lanes of one SIMD score vector: `vals[lane]` is the score of centroid
    /// `first + lane`, and bit `lane` of `mask` says it passed the vector compare against
    /// `self.t` (re-checked here, since `self.t` can drop while the lanes are offered).
    #[inline(always)]
    pub fn offer_lanes(&mut self, first: usize, vals: &[f32], mut mask: u32, data: &ExactData<'_>) {
        while mask != 0 {
            let lane = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if vals[lane] <= self.t {
                self.offer(first + lane, vals[lane], data);
            }
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

    /// Evaluates exactly the pending candidates still under the threshold.
    fn flush(&mut self, data: &ExactData<'_>) {
        let mut pending = std::mem::take(&mut self.pending);
        for &(v, j) in &pending {
            if v <= self.t {
                self.evaluate(j as usize, data);
            }
        }
        pending.clear();
        self.pending = pending;
    }

    /// Ends the scan: the exact top-k of the candidates.
    pub fn finish(mut self, data: &ExactData<'_>) -> TopK {
        self.flush(data);
        self.best
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
