//! Per-query state of a scan: the exact running top-k and the candidate threshold.

use super::distance::squared_l2_f64;
use super::margin::threshold;
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
    x_norm_sq: f64,
    margin: f64,
    pub best: TopK,
}

impl QueryState {
    pub fn new(row: usize, k: usize, x_norm_sq: f64, margin: f64) -> Self {
        Self { row, t: f32::MAX, x_norm_sq, margin, best: TopK::new(k) }
    }

    /// Sets the margin `E(x)` of the engine's candidate pass (before the scan starts).
    pub fn set_margin(&mut self, margin: f64) {
        self.margin = margin;
    }

    /// Evaluates centroid `j` exactly and keeps it if it enters the top-k; tightens `t`.
    #[inline(never)]
    pub fn consider(&mut self, j: usize, data: &ExactData<'_>) {
        let d = data.dim;
        let x = &data.x[self.row * d..(self.row + 1) * d];
        let c = &data.centroids[j * d..(j + 1) * d];
        let hit = Hit { d2: squared_l2_f64(x, c), idx: j as u32 };
        if self.best.push(hit) && self.best.is_full() {
            self.t = threshold(self.best.kth().map(|h| h.d2), self.x_norm_sq, self.margin);
        }
    }
}
