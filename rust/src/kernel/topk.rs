//! Per-query running top-k of exact squared distances, ordered by (distance, centroid index).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One exact candidate: squared L2 distance (f64) and centroid index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub d2: f64,
    pub idx: u32,
}

impl Eq for Hit {}

impl Ord for Hit {
    /// Smaller distance first; equal distances by the lower centroid index.
    fn cmp(&self, other: &Self) -> Ordering {
        self.d2.total_cmp(&other.d2).then(self.idx.cmp(&other.idx))
    }
}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The k best hits seen so far (a max-heap: its top is the current k-th best).
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Hit>,
}

impl TopK {
    /// An empty top-k; `k >= 1`.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1),
        }
    }

    /// True once k hits are held.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// The current k-th best hit (the worst kept), if full.
    #[inline]
    pub fn kth(&self) -> Option<Hit> {
        if self.is_full() {
            self.heap.peek().copied()
        } else {
            None
        }
    }

    /// Offers a hit; returns true when it was kept.
    #[inline]
    pub fn push(&mut self, hit: Hit) -> bool {
        if self.heap.len() < self.k {
            self.heap.push(hit);
            return true;
        }
        match self.heap.peek_mut() {
            Some(mut worst) if hit < *worst => {
                *worst = hit;
                true
            }
            _ => false,
        }
    }

    /// Merges another top-k (same k) into this one.
    pub fn merge(&mut self, other: TopK) {
        for hit in other.heap {
            self.push(hit);
        }
    }

    /// The kept hits, best first.
    pub fn into_sorted(self) -> Vec<Hit> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_k_best_with_index_tie_break() {
        let mut t = TopK::new(3);
        for (d2, idx) in [(5.0, 0), (1.0, 9), (1.0, 4), (3.0, 2), (1.0, 7), (0.5, 8)] {
            t.push(Hit { d2, idx });
        }
        let got: Vec<(f64, u32)> = t.into_sorted().iter().map(|h| (h.d2, h.idx)).collect();
        assert_eq!(got, vec![(0.5, 8), (1.0, 4), (1.0, 7)]);
    }

    #[test]
    fn merge_equals_single_pass() {
        let hits: Vec<Hit> = (0..50u32)
            .map(|i| Hit {
                d2: f64::from((i * 37) % 11),
                idx: i,
            })
            .collect();
        let mut whole = TopK::new(7);
        hits.iter().for_each(|&h| {
            whole.push(h);
        });
        let (mut a, mut b) = (TopK::new(7), TopK::new(7));
        hits[..20].iter().for_each(|&h| {
            a.push(h);
        });
        hits[20..].iter().for_each(|&h| {
            b.push(h);
        });
        a.merge(b);
        assert_eq!(a.into_sorted(), whole.into_sorted());
    }
}
