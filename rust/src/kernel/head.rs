//! The meta-embedding head and the cosine classifier at inference, one call each.
//!
//! [`meta_embedding`] computes, for a batch `x` (B, D), the official head's formulas
//! (Liu et al., CVPR 2019, as the official `MetaEmbedding_Classifier` codes them):
//!
//! ```text
//! memory   = softmax(x · Hᵀ + h) · C        hallucinator H (K, D), h (K,); centroids C (K, D)
//! selector = tanh(x · Sᵀ + s)               selector S (D, D), s (D,)
//! infused  = selector ⊙ memory
//! reach    = scale / max(d, eps)            d: each row's nearest-centroid distance (given)
//! meta     = reach ⊙ (x + infused)          (no reach given: x + infused)
//! ```
//!
//! and [`cosine_logits`] the cosine classifier of a batch `v`: `σ(‖v‖) · v · Wᵀ` with the unit
//! rows of `W` given transposed and `σ` the code squash `logit_scale / (1 + ‖v‖)` or the
//! paper's `logit_scale · ‖v‖ / (1 + ‖v‖²)`.
//!
//! The products run on [`dense::matmul`] (one FMA chain per entry in k order) and the
//! elementwise steps on [`math`] (the same IEEE operations on every CPU), each row on its own:
//! a row's results have the same bits in any batch, at any thread count, with any engine.
//! Weights come transposed (D, K) so the products read them row by row. The softmax is folded
//! into the read-out: `exp(z - max z) · C` divided by the row's sum of exponentials.

pub mod math;

use std::cell::RefCell;

use super::dense::{self, MatMut, MatRef};
use super::engine::Engine;
use super::error::KernelError;
use super::executor::{even_ranges, run_scoped};
use super::pool;

/// The head's weights, as [`meta_embedding`] takes them (D features, K classes).
#[derive(Clone, Copy, Debug)]
pub struct MetaWeights<'a> {
    /// The hallucinator's weight, transposed: (D, K).
    pub hallucinator_t: MatRef<'a>,
    /// The hallucinator's bias: K values.
    pub hallucinator_bias: &'a [f32],
    /// The memory (class centroids): (K, D).
    pub centroids: MatRef<'a>,
    /// The concept selector's weight, transposed: (D, D).
    pub selector_t: MatRef<'a>,
    /// The concept selector's bias: D values.
    pub selector_bias: &'a [f32],
}

/// The reachability of each row: `scale / max(nearest_distance, eps)`.
#[derive(Clone, Copy, Debug)]
pub struct Reach<'a> {
    /// Each row's distance to its nearest centroid: B values.
    pub nearest_distance: &'a [f32],
    pub scale: f32,
    pub eps: f32,
}

/// What [`meta_embedding`] returns: four (B, D) row-major arrays in one allocation (memory,
/// selector, infused, meta, in that order) and, with a [`Reach`], B values.
#[derive(Debug)]
pub struct MetaParts {
    /// The four arrays, `4 × B × D` values.
    pub values: Vec<f32>,
    /// Values per array (B × D).
    len: usize,
    pub reachability: Option<Vec<f32>>,
}

impl MetaParts {
    /// Array `i` of the four.
    fn part(&self, i: usize) -> &[f32] {
        &self.values[i * self.len..(i + 1) * self.len]
    }

    /// `softmax(x · Hᵀ + h) · C`.
    pub fn memory(&self) -> &[f32] {
        self.part(0)
    }

    /// `tanh(x · Sᵀ + s)`.
    pub fn selector(&self) -> &[f32] {
        self.part(1)
    }

    /// `selector ⊙ memory`.
    pub fn infused(&self) -> &[f32] {
        self.part(2)
    }

    /// `reach ⊙ (x + infused)` (no reach: `x + infused`).
    pub fn meta(&self) -> &[f32] {
        self.part(3)
    }
}

/// The cosine classifier's squash of a row's norm `n` into its logit factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Squash {
    /// The official code: `logit_scale / (1 + n)`.
    Code,
    /// The paper: `logit_scale · n / (1 + n²)`.
    Paper,
}

fn check_shape(
    argument: &'static str,
    m: &MatRef<'_>,
    rows: usize,
    cols: usize,
) -> Result<(), KernelError> {
    if (m.rows(), m.cols()) == (rows, cols) {
        return Ok(());
    }
    Err(KernelError::BadMatrix {
        argument,
        detail: format!(
            "must have shape ({rows}, {cols}), got ({}, {})",
            m.rows(),
            m.cols()
        ),
    })
}

fn check_len(argument: &'static str, values: &[f32], len: usize) -> Result<(), KernelError> {
    if values.len() == len {
        return Ok(());
    }
    Err(KernelError::BadMatrix {
        argument,
        detail: format!("must have {len} elements, got {}", values.len()),
    })
}

/// `out = a · b (+ bias)`, `out` holding exactly `a.rows() × b.cols()` values (row-major).
fn product_into(
    a: MatRef<'_>,
    b: MatRef<'_>,
    bias: Option<&[f32]>,
    out: &mut [f32],
    engine: Engine,
) -> Result<(), KernelError> {
    let (rows, cols) = (a.rows(), b.cols());
    dense::matmul(
        a,
        b,
        MatMut::new("out", out, rows, cols, cols)?,
        bias,
        engine,
    )
}

/// Bytes from which [`zeroed`] asks for transparent huge pages.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// `len` zeros in a new vector. From [`HUGE_PAGE_MIN_BYTES`] on, Linux is asked to back it
/// with transparent huge pages (`MADV_HUGEPAGE`, as numpy does for its large arrays) before
/// anything touches it: a fresh large allocation is zero pages mapped on first write, and on
/// the shared VM each 4 KiB fault cost ~2.5 µs (400 MB of logits at B × K = 1024 × 1e5:
/// ~0.2 s of faults per call). Where the kernel refuses, nothing changes.
fn zeroed(len: usize) -> Result<Vec<f32>, KernelError> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let too_large = || KernelError::OutOfMemory {
        bytes: len.saturating_mul(4),
    };
    let layout = std::alloc::Layout::array::<f32>(len).map_err(|_| too_large())?;
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<f32>();
    if ptr.is_null() {
        return Err(too_large());
    }
    // SAFETY: allocated by the global allocator with the layout of `len` f32 values, all
    // zero bits (0.0): what `vec![0.0; len]` builds, without aborting when memory runs out.
    let mut values = unsafe { Vec::from_raw_parts(ptr, len, len) };
    #[cfg(target_os = "linux")]
    if len * 4 >= HUGE_PAGE_MIN_BYTES {
        let start = values.as_mut_ptr() as usize;
        let page = 4096;
        let first = start.next_multiple_of(page);
        let end = start + len * 4;
        // SAFETY: the advice covers whole pages inside this vector's allocation; it changes
        // how they are backed, never their contents.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
    Ok(values)
}

/// `rows × cols` elements, or [`KernelError::OutOfMemory`] when that overflows.
fn elements(rows: usize, cols: usize) -> Result<usize, KernelError> {
    rows.checked_mul(cols)
        .ok_or(KernelError::OutOfMemory { bytes: usize::MAX })
}

/// A `rows × cols` product `a · b (+ bias)` into a new vector.
fn product(
    a: MatRef<'_>,
    b: MatRef<'_>,
    bias: Option<&[f32]>,
    engine: Engine,
) -> Result<Vec<f32>, KernelError> {
    let mut out = zeroed(elements(a.rows(), b.cols())?)?;
    product_into(a, b, bias, &mut out, engine)?;
    Ok(out)
}

/// Floats of scratch a thread keeps between calls (64 MiB).
const SCRATCH_KEEP: usize = 16 << 20;

thread_local! {
    /// The calling thread's scratch (the (B, K) scores, the scaled (B, D) rows), kept between
    /// calls up to [`SCRATCH_KEEP`] floats: a buffer new on each call pays the first touch of
    /// its pages (in a cargo test thread on the shared VM, 2–3 ms for 4 MB, B × K = 1024 × 1000).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `f` on `len` floats of this thread's scratch (contents unspecified: `f` writes them first).
fn with_scratch<R>(
    len: usize,
    f: impl FnOnce(&mut [f32]) -> Result<R, KernelError>,
) -> Result<R, KernelError> {
    let mut buffer = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buffer.len() < len {
        drop(std::mem::take(&mut buffer)); // free the old scratch before the larger one
        buffer = zeroed(len)?;
    }
    let result = f(&mut buffer[..len]);
    if buffer.len() <= SCRATCH_KEEP {
        SCRATCH.with(|s| *s.borrow_mut() = buffer);
    }
    result
}

/// Values per elementwise task (fewer values: the caller's thread alone).
const ROW_TASK_MIN_VALUES: usize = 1 << 16;

/// A buffer that row tasks write in disjoint row ranges.
#[derive(Clone, Copy)]
struct SharedRows {
    ptr: *mut f32,
    width: usize,
}

// SAFETY: `rows` hands each task its own rows; `by_rows` returns after every task (the tasks
// share it by reference only, so it need not be `Send`).
unsafe impl Sync for SharedRows {}

impl SharedRows {
    fn new(values: &mut [f32], width: usize) -> Self {
        Self {
            ptr: values.as_mut_ptr(),
            width,
        }
    }

    /// Rows `r0..r1`.
    ///
    /// # Safety
    /// The rows must lie in the buffer and no other task may hold them.
    unsafe fn rows<'a>(self, r0: usize, r1: usize) -> &'a mut [f32] {
        std::slice::from_raw_parts_mut(self.ptr.add(r0 * self.width), (r1 - r0) * self.width)
    }
}

/// `task(r0, r1)` over ranges covering `rows` rows of `width` values, shared between the
/// core's threads when there are at least two tasks' worth of values.
fn by_rows(rows: usize, width: usize, task: &(impl Fn(usize, usize) + Sync)) {
    let tasks =
        (rows.saturating_mul(width) / ROW_TASK_MIN_VALUES).clamp(1, 4 * pool::num_threads());
    let ranges = even_ranges(rows, tasks, 1, rows);
    run_scoped(ranges.len(), ranges.len() > 1, &|t| {
        let (r0, r1) = ranges[t];
        if r0 < r1 {
            task(r0, r1);
        }
    });
}

/// The meta-embedding of every row of `x` (B, D) (see the module docs). Errors name the
/// argument whose shape disagrees with `x` and the hallucinator's (D, K).
///
/// The four (B, D) results share one allocation (from 4 MiB on, huge pages: one fresh
/// mapping instead of four, each of whose pages would fault on first write), and the
/// elementwise steps run on the core's threads, row ranges at a time.
pub fn meta_embedding(
    x: MatRef<'_>,
    w: &MetaWeights<'_>,
    reach: Option<&Reach<'_>>,
    engine: Engine,
) -> Result<MetaParts, KernelError> {
    let (b, d, k) = (x.rows(), x.cols(), w.hallucinator_t.cols());
    check_shape("hallucinator_t", &w.hallucinator_t, d, k)?;
    check_len("hallucinator_bias", w.hallucinator_bias, k)?;
    check_shape("centroids", &w.centroids, k, d)?;
    check_shape("selector_t", &w.selector_t, d, d)?;
    check_len("selector_bias", w.selector_bias, d)?;
    if let Some(reach) = reach {
        check_len("nearest_distance", reach.nearest_distance, b)?;
    }
    let len = elements(b, d)?;
    let mut values = zeroed(elements(len, 4)?)?;
    let (memory, rest) = values.split_at_mut(len);
    let (selector, rest) = rest.split_at_mut(len);
    let (infused, meta) = rest.split_at_mut(len);
    let mut sums = vec![1.0f32; b]; // no class: an empty softmax, a zero read-out (as torch gives)
    with_scratch(elements(b, k)?, |scores| {
        product_into(
            x,
            w.hallucinator_t,
            Some(w.hallucinator_bias),
            scores,
            engine,
        )?;
        if k > 0 {
            let (rows, totals) = (SharedRows::new(scores, k), SharedRows::new(&mut sums, 1));
            by_rows(b, k, &|r0, r1| {
                // SAFETY: each task has its own rows of both buffers.
                let (rows, totals) = unsafe { (rows.rows(r0, r1), totals.rows(r0, r1)) };
                for (row, total) in rows.chunks_exact_mut(k).zip(totals) {
                    *total = math::softmax_numerators(row);
                }
            });
        }
        let exps = MatRef::new("scores", scores, b, k, k)?;
        product_into(exps, w.centroids, None, memory, engine)
    })?;
    product_into(x, w.selector_t, Some(w.selector_bias), selector, engine)?;
    let reachability = reach.map(|r| {
        r.nearest_distance
            .iter()
            .map(|&dist| (1.0 / if dist < r.eps { r.eps } else { dist }) * r.scale)
            .collect::<Vec<f32>>()
    });
    if d > 0 {
        let outs = [memory, selector, infused, meta].map(|part| SharedRows::new(part, d));
        let reachability = reachability.as_deref();
        by_rows(b, d, &|r0, r1| {
            // SAFETY: each task has its own rows of the four arrays.
            let [memory, selector, infused, meta] = outs.map(|o| unsafe { o.rows(r0, r1) });
            math::tanh_in_place(selector);
            let rows = memory
                .chunks_exact_mut(d)
                .zip(selector.chunks_exact(d))
                .zip(infused.chunks_exact_mut(d).zip(meta.chunks_exact_mut(d)));
            for (i, ((memory, selector), (infused, meta))) in (r0..r1).zip(rows) {
                let row = math::MetaRow {
                    x: x.row(i),
                    memory,
                    selector,
                    infused,
                    meta,
                };
                math::combine_row(row, sums[i], reachability.map(|r| r[i]));
            }
        });
    }
    Ok(MetaParts {
        values,
        len,
        reachability,
    })
}

/// The cosine classifier's logits (B, K) of `v` (B, D): each row times its squash factor
/// (`logit_scale` and [`Squash`]; the row norm from [`math::norm`]), times `unit_weight_t`
/// (D, K), the classifier's unit rows transposed.
pub fn cosine_logits(
    v: MatRef<'_>,
    unit_weight_t: MatRef<'_>,
    logit_scale: f32,
    squash: Squash,
    engine: Engine,
) -> Result<Vec<f32>, KernelError> {
    let (b, d) = (v.rows(), v.cols());
    check_shape("unit_weight_t", &unit_weight_t, d, unit_weight_t.cols())?;
    with_scratch(elements(b, d)?, |scaled| {
        if d > 0 {
            let rows = SharedRows::new(scaled, d);
            by_rows(b, d, &|r0, r1| {
                // SAFETY: each task has its own rows.
                let outs = unsafe { rows.rows(r0, r1) };
                for (i, out) in (r0..r1).zip(outs.chunks_exact_mut(d)) {
                    let row = v.row(i);
                    let norm = math::norm(row);
                    let factor = match squash {
                        Squash::Code => (1.0 / (norm + 1.0)) * logit_scale,
                        Squash::Paper => (norm * logit_scale) / (norm * norm + 1.0),
                    };
                    math::scale_row(row, factor, out);
                }
            });
        }
        let scaled = MatRef::new("v", scaled, b, d, d)?;
        product(scaled, unit_weight_t, None, engine)
    })
}

#[cfg(test)]
mod tests;
