//! `CentroidIndex`: the centroids copied once, with their norms and the packed bf16 panels.

use std::sync::Arc;

use ndarray::{Array1, Array2, ArrayView2};

use super::bf16::Bf16Centroids;
use super::distance::squared_norm_f64;
use super::engine::Engine;
use super::error::KernelError;
use super::reach::reachability_from_nearest;
use super::search::search_hits;
use super::simd_f32::{F32Centroids, Isa};
use super::vnni::{I8Centroids, I8Kernel};

/// Exact k-nearest-centroid search over fixed centroids `(K, D)` float32 (a cheap handle:
/// the packed data is shared with the worker threads of a running search).
pub struct CentroidIndex {
    data: Arc<IndexData>,
}

/// The centroids of an index, copied and packed once.
pub(crate) struct IndexData {
    pub(crate) num: usize,
    pub(crate) dim: usize,
    /// Row-major copy of the centroids (exact re-rank).
    pub(crate) rows: Vec<f32>,
    /// `‖c_j‖²` (f64), and rounded to f32 (portable pass).
    pub(crate) norms_sq: Vec<f64>,
    pub(crate) norms_f32: Vec<f32>,
    /// `max_j ‖c_j‖`.
    pub(crate) c_norm_max: f64,
    pub(crate) engine: Engine,
    pub(crate) packed: Packed,
    /// `auto` over an engine with a wide margin (int8): the engine, and its packing, that
    /// serves calls of B queries with `k >= large_k_from(K, B)` (see [`Engine::auto_large_k`]).
    pub(crate) large_k: Option<(Engine, Packed)>,
}

impl IndexData {
    /// The engine and packed centroids that serve a call of `b` queries for the k nearest.
    pub(crate) fn pass_for(&self, k: usize, b: usize) -> (Engine, &Packed) {
        match &self.large_k {
            Some((engine, packed)) if k >= large_k_from(self.num, b) => (*engine, packed),
            _ => (self.engine, &self.packed),
        }
    }
}

/// The centroids packed for the engine's candidate pass.
pub(crate) enum Packed {
    /// The portable pass reads `rows` and `norms_f32`.
    Rows,
    Bf16(Bf16Centroids),
    F32(F32Centroids),
    I8(I8Centroids),
}

/// The smallest k at which an `auto` index over the int8 engine runs its large-k engine, for
/// `num` centroids and a call of `b` queries: `max(⌈√K / 5⌉, ⌈K / (100·B²)⌉)` (B >= 4:
/// K = 1e3: 7, 1e4: 20, 1e5: 64; one query: K = 1e4: 100, 1e5: 1000). Measured on a 2-core
/// Zen 4, D = 512 (`rust/README.md`): the int8 margin, ~6× the bf16 one, costs extra exact
/// distances in proportion to k, while its faster scan (half the bytes) saves in proportion
/// to K per query, most of the call for a few queries (bound by reading the panels).
pub(crate) fn large_k_from(num: usize, b: usize) -> usize {
    let by_k = ((num as f64).sqrt() / 5.0).ceil();
    let b = b.max(1) as f64;
    let by_b = (num as f64 / (100.0 * b * b)).ceil();
    by_k.max(by_b).max(2.0) as usize
}

/// `rows` `(num, dim)` packed for `engine`'s candidate pass (`norms_sq`: exact `‖c_j‖²`).
fn pack(engine: Engine, rows: &[f32], num: usize, dim: usize, norms_sq: &[f64]) -> Packed {
    match engine {
        Engine::Avx512VnniI8 => Packed::I8(I8Centroids::pack(
            I8Kernel::Avx512,
            rows,
            num,
            dim,
            norms_sq,
        )),
        Engine::AvxVnniI8 => {
            // `with_engine` checked that the engine runs: the CPU has a 256-bit kernel.
            let kernel = I8Kernel::avx256().expect("avx-vnni-i8 runs on this CPU");
            Packed::I8(I8Centroids::pack(kernel, rows, num, dim, norms_sq))
        }
        Engine::Avx512Bf16 => Packed::Bf16(Bf16Centroids::pack(rows, num, dim, norms_sq)),
        Engine::Avx512F32 => Packed::F32(F32Centroids::pack(Isa::Avx512, rows, num, dim, norms_sq)),
        Engine::Avx2F32 => Packed::F32(F32Centroids::pack(Isa::Avx2, rows, num, dim, norms_sq)),
        Engine::Portable => Packed::Rows,
    }
}

/// Checks `x` is finite; `argument` names it in the error.
pub(crate) fn check_finite(
    data: &[f32],
    dim: usize,
    argument: &'static str,
) -> Result<(), KernelError> {
    // Blocks of 64 values are tested without an early exit (vectorised); the position is
    // looked for only in a block that fails.
    for (b, block) in data.chunks(64).enumerate() {
        if !block.iter().fold(true, |ok, v| ok & v.is_finite()) {
            let pos = 64 * b + block.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(KernelError::NonFinite {
                argument,
                row: pos / dim.max(1),
            });
        }
    }
    Ok(())
}

/// A C-contiguous copy of `view` unless it already is one.
fn contiguous<'a>(view: &'a ArrayView2<'a, f32>) -> std::borrow::Cow<'a, [f32]> {
    match view.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(view.iter().copied().collect()),
    }
}

impl CentroidIndex {
    /// Copies and packs `centroids` (K >= 1 rows, D >= 1, finite) for the engine `auto` picks.
    /// When that engine's margin is wide (int8), the index also packs the engine `auto` picks
    /// for large k and each call runs the one that serves its k ([`Engine::auto_large_k`]).
    pub fn new(centroids: ArrayView2<'_, f32>) -> Result<Self, KernelError> {
        let dim = centroids.ncols();
        let mut index = Self::with_engine(centroids, Engine::auto(dim))?;
        if let Some(large) = Engine::auto_large_k(index.engine(), dim) {
            let data = Arc::get_mut(&mut index.data).expect("a new index is not shared");
            let packed = pack(large, &data.rows, data.num, dim, &data.norms_sq);
            data.large_k = Some((large, packed));
        }
        Ok(index)
    }

    /// As [`CentroidIndex::new`] with an explicit engine; one this CPU cannot run is an error
    /// ([`KernelError::UnsupportedKernel`], naming those it runs).
    pub fn with_engine(
        centroids: ArrayView2<'_, f32>,
        engine: Engine,
    ) -> Result<Self, KernelError> {
        let (num, dim) = centroids.dim();
        if num == 0 {
            return Err(KernelError::EmptyCentroids);
        }
        if dim == 0 {
            return Err(KernelError::ZeroDim {
                argument: "centroids",
            });
        }
        if u32::try_from(num).is_err() {
            return Err(KernelError::TooManyCentroids { num_classes: num });
        }
        let rows = contiguous(&centroids).into_owned();
        check_finite(&rows, dim, "centroids")?;
        let norms_sq: Vec<f64> = rows.chunks_exact(dim).map(squared_norm_f64).collect();
        let norms_f32 = norms_sq.iter().map(|&n| n as f32).collect();
        let c_norm_max = norms_sq.iter().fold(0.0f64, |m, &n| m.max(n)).sqrt();
        engine.check_supported()?;
        if dim > engine.max_dim() {
            return Err(KernelError::KernelDim {
                name: engine.name(),
                max_dim: engine.max_dim(),
                dim,
            });
        }
        let packed = pack(engine, &rows, num, dim, &norms_sq);
        let data = IndexData {
            num,
            dim,
            rows,
            norms_sq,
            norms_f32,
            c_norm_max,
            engine,
            packed,
            large_k: None,
        };
        Ok(Self {
            data: Arc::new(data),
        })
    }

    /// Number of centroids K.
    pub fn num_classes(&self) -> usize {
        self.data.num
    }

    /// Feature dimension D.
    pub fn dim(&self) -> usize {
        self.data.dim
    }

    /// As [`CentroidIndex::new`] (`"auto"`) or [`CentroidIndex::with_engine`] for the engine
    /// named `kernel` ([`Engine::from_name`] errors for an unknown or unsupported name).
    pub fn with_kernel(centroids: ArrayView2<'_, f32>, kernel: &str) -> Result<Self, KernelError> {
        if kernel == "auto" {
            return Self::new(centroids);
        }
        Self::with_engine(centroids, Engine::from_name(kernel)?)
    }

    /// The candidate pass of calls with small k (k = 1); see [`CentroidIndex::engine_for`].
    pub fn engine(&self) -> Engine {
        self.data.engine
    }

    /// The candidate pass a call of `b` queries for the `k` nearest runs:
    /// [`CentroidIndex::engine`], except for an `auto` index over the int8 engine at
    /// `k >= large_k_from(K, b)`.
    pub fn engine_for(&self, k: usize, b: usize) -> Engine {
        self.data.pass_for(k, b).0
    }

    /// Bytes of packed centroid data a search of one query with k = 1 streams (its candidate
    /// pass's panels; the f32 rows for the portable engine), padding included.
    pub fn packed_nbytes(&self) -> usize {
        let data = &*self.data;
        match &data.packed {
            Packed::I8(p) => p.nbytes(),
            Packed::Bf16(p) => p.nbytes(),
            Packed::F32(p) => p.nbytes(1),
            Packed::Rows => std::mem::size_of_val(data.rows.as_slice()),
        }
    }

    /// `k` as a count when `1 <= k <= K`, else [`KernelError::BadK`].
    pub fn check_k(&self, k: i64) -> Result<usize, KernelError> {
        let num = self.num_classes();
        let k_ok = usize::try_from(k).ok().filter(|&k| k >= 1 && k <= num);
        k_ok.ok_or(KernelError::BadK {
            k,
            num_classes: num,
        })
    }

    /// Validates a query batch and returns it C-contiguous with its row count.
    fn queries<'a>(
        &self,
        x: &'a ArrayView2<'a, f32>,
    ) -> Result<std::borrow::Cow<'a, [f32]>, KernelError> {
        if x.ncols() != self.dim() {
            return Err(KernelError::DimMismatch {
                expected: self.dim(),
                got: x.ncols(),
            });
        }
        let data = contiguous(x);
        check_finite(&data, self.dim(), "x")?;
        Ok(data)
    }

    /// The k nearest centroids of each row of `x` `(B, D)`: exact L2 distances (not squared)
    /// ascending `(B, k)` float32 and their indices `(B, k)` int64; equal distances are
    /// ordered by the lower index.
    pub fn search(
        &self,
        x: ArrayView2<'_, f32>,
        k: i64,
    ) -> Result<(Array2<f32>, Array2<i64>), KernelError> {
        let k = self.check_k(k)?;
        let data = self.queries(&x)?;
        let b = x.nrows();
        let hits = search_hits(&self.data, &data, b, k);
        let mut dist = Array2::<f32>::zeros((b, k));
        let mut idx = Array2::<i64>::zeros((b, k));
        for (i, row) in hits.iter().enumerate() {
            for (c, hit) in row.iter().enumerate() {
                dist[[i, c]] = hit.d2.max(0.0).sqrt() as f32;
                idx[[i, c]] = i64::from(hit.idx);
            }
        }
        Ok((dist, idx))
    }

    /// `scale / max(nearest exact L2 distance, eps)` per row of `x`, float32 `(B,)`.
    pub fn reachability(
        &self,
        x: ArrayView2<'_, f32>,
        scale: f64,
        eps: f64,
    ) -> Result<Array1<f32>, KernelError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(KernelError::NotPositive {
                argument: "scale",
                value: scale,
            });
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(KernelError::NotPositive {
                argument: "eps",
                value: eps,
            });
        }
        let data = self.queries(&x)?;
        let hits = search_hits(&self.data, &data, x.nrows(), 1);
        Ok(hits
            .iter()
            .map(|row| reachability_from_nearest(row[0].d2, scale, eps))
            .collect())
    }
}
