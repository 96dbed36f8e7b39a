//! The only PyO3 file: the extension module `oltr._core`.
//!
//! Arrays are borrowed read-only while attached; the kernel runs detached (GIL released) on
//! views of them and allocates its outputs, which become NumPy arrays after re-attaching.
//! Inputs must not be modified by another thread during a call.

use numpy::ndarray::Ix2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArrayDyn};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::kernel::{pool, CentroidIndex, Engine, KernelError};

impl From<KernelError> for PyErr {
    fn from(err: KernelError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

/// `(dist float32 (B, k), idx int64 (B, k))` as NumPy arrays.
type SearchResult<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

/// Exact k-nearest-centroid search over fixed float32 centroids (K, D), copied once.
#[pyclass(frozen, module = "oltr._core", name = "CentroidIndex")]
struct PyCentroidIndex {
    inner: CentroidIndex,
}

/// `obj` as a read-only float32 array, or TypeError naming `argument` and what it got.
fn float32_array<'py>(
    obj: &Bound<'py, PyAny>,
    argument: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    obj.extract::<PyReadonlyArrayDyn<'py, f32>>().map_err(|_| {
        let got = match obj.getattr("dtype") {
            Ok(dtype) => format!("{} with dtype {}", obj.get_type(), dtype),
            Err(_) => obj.get_type().to_string(),
        };
        PyTypeError::new_err(format!(
            "{argument} must be a float32 NumPy array, got {got}"
        ))
    })
}

/// A 2-D view of `array`, or ValueError naming `argument`.
fn view2<'a>(
    array: &'a PyReadonlyArrayDyn<'_, f32>,
    argument: &'static str,
) -> Result<numpy::ndarray::ArrayView2<'a, f32>, KernelError> {
    let view = array.as_array();
    let ndim = view.ndim();
    view.into_dimensionality::<Ix2>()
        .map_err(|_| KernelError::BadNdim { argument, ndim })
}

#[pymethods]
impl PyCentroidIndex {
    /// centroids: float32 (K, D), K >= 1, D >= 1, finite. kernel: "auto" (the fastest this
    /// CPU runs) or an engine name of available_kernels(); an unknown name or an engine this
    /// CPU cannot run raises ValueError naming the valid choices.
    #[new]
    #[pyo3(signature = (centroids, kernel = "auto"))]
    fn new(py: Python<'_>, centroids: &Bound<'_, PyAny>, kernel: &str) -> PyResult<Self> {
        let centroids = float32_array(centroids, "centroids")?;
        let view = view2(&centroids, "centroids")?;
        let inner = py.detach(|| CentroidIndex::with_kernel(view, kernel))?;
        Ok(Self { inner })
    }

    /// Number of centroids K.
    #[getter]
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    /// Feature dimension D.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// The engine (candidate pass) of searches with small k (k = 1, reachability), one of
    /// available_kernels(); kernel_for(k) names the one a search for k runs.
    #[getter]
    fn kernel(&self) -> &'static str {
        self.inner.engine().name()
    }

    /// The engine a search of `batch` queries for the k nearest runs (1 <= k <= K,
    /// batch >= 1): `kernel`, except for an "auto" index over an int8 engine at large k
    /// (see rust/README.md).
    fn kernel_for(&self, k: i64, batch: i64) -> PyResult<&'static str> {
        let k = self.inner.check_k(k)?;
        let b = usize::try_from(batch)
            .ok()
            .filter(|&b| b >= 1)
            .ok_or_else(|| PyValueError::new_err(format!("batch must be >= 1, got {batch}")))?;
        Ok(self.inner.engine_for(k, b).name())
    }

    /// Bytes of packed centroid data a one-query search streams (the engine's panels,
    /// padding included; the float32 rows for "portable-f32").
    #[getter]
    fn packed_nbytes(&self) -> usize {
        self.inner.packed_nbytes()
    }

    /// x: float32 (B, D); k in [1, K] -> (dist float32 (B, k) exact L2 ascending,
    /// idx int64 (B, k)); ties by the lower index.
    fn search<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        k: i64,
    ) -> PyResult<SearchResult<'py>> {
        let x = float32_array(x, "x")?;
        let view = view2(&x, "x")?;
        let (dist, idx) = py.detach(|| self.inner.search(view, k))?;
        Ok((dist.into_pyarray(py), idx.into_pyarray(py)))
    }

    /// x: float32 (B, D) -> float32 (B,) = scale / max(nearest exact L2 distance, eps).
    fn reachability<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        scale: f64,
        eps: f64,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let x = float32_array(x, "x")?;
        let view = view2(&x, "x")?;
        let reach = py.detach(|| self.inner.reachability(view, scale, eps))?;
        Ok(reach.into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        format!(
            "CentroidIndex(num_classes={}, dim={}, kernel={:?})",
            self.inner.num_classes(),
            self.inner.dim(),
            self.inner.engine().name()
        )
    }
}

/// Use n >= 1 threads in the core from the next call on (ValueError otherwise).
#[pyfunction]
fn set_num_threads(n: i64) -> PyResult<()> {
    Ok(pool::set_num_threads(n)?)
}

/// The engines this CPU runs, fastest first (the names `kernel=` accepts besides "auto").
/// The first call of a process times the engines (~20 ms, GIL released).
#[pyfunction]
fn available_kernels(py: Python<'_>) -> Vec<&'static str> {
    py.detach(|| Engine::available().into_iter().map(Engine::name).collect())
}

/// Threads the core uses: set_num_threads, else OLTR_NUM_THREADS, else the core count.
#[pyfunction]
fn get_num_threads() -> usize {
    pool::num_threads()
}

#[pymodule(gil_used = false)]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "build_profile",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    )?;
    m.add_class::<PyCentroidIndex>()?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(available_kernels, m)?)?;
    Ok(())
}
