//! The only PyO3 file: the extension module `oltr._core`.
//!
//! Arrays are borrowed read-only while attached; the kernel runs detached (GIL released) on
//! views of them and allocates its outputs, which become NumPy arrays after re-attaching.
//! Inputs must not be modified by another thread during a call.

use numpy::ndarray::{Array2, Array3, Ix2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::kernel::dense::{self, MatMut, MatRef};
use crate::kernel::head::{self, MetaWeights, Reach, Squash};
use crate::kernel::{pool, CentroidIndex, Engine, KernelError};

impl From<KernelError> for PyErr {
    fn from(err: KernelError) -> PyErr {
        match err {
            KernelError::OutOfMemory { .. } => PyMemoryError::new_err(err.to_string()),
            _ => PyValueError::new_err(err.to_string()),
        }
    }
}

/// `(dist float32 (B, k), idx int64 (B, k))` as NumPy arrays.
type SearchResult<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

/// Exact k-nearest-centroid search over fixed float32 centroids (K, D), copied once.
#[pyclass(frozen, module = "oltr._core", name = "CentroidIndex")]
struct PyCentroidIndex {
    inner: CentroidIndex,
}

/// What `obj` is, for an error message: its type, and its dtype when it has one.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    match obj.getattr("dtype") {
        Ok(dtype) => format!("{} with dtype {}", obj.get_type(), dtype),
        Err(_) => obj.get_type().to_string(),
    }
}

/// `obj` as a read-only float32 array, or TypeError naming `argument` and what it got.
fn float32_array<'py>(
    obj: &Bound<'py, PyAny>,
    argument: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    obj.extract::<PyReadonlyArrayDyn<'py, f32>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{argument} must be a float32 NumPy array, got {}",
            describe(obj)
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

/// The memory layout of a float32 array argument of `matmul` (rows × cols, row stride in
/// elements; a 1-D array is one row).
struct Layout {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    stride: usize,
    /// Elements spanned from `ptr`.
    len: usize,
}

impl Layout {
    /// Bytes `[start, end)` the array spans (empty when it has no element).
    fn bytes(&self) -> (usize, usize) {
        let start = self.ptr as usize;
        (start, start + self.len * 4)
    }
}

fn bad(argument: &'static str, detail: String) -> PyErr {
    KernelError::BadMatrix { argument, detail }.into()
}

/// `obj` as a float32 NumPy array of `ndim` dimensions whose last axis has unit stride, rows
/// any stride >= the row length; ValueError naming `argument` otherwise.
fn matmul_array<'a, 'py>(
    obj: &'a Bound<'py, PyAny>,
    argument: &'static str,
    ndim: usize,
) -> PyResult<(&'a Bound<'py, PyArrayDyn<f32>>, Layout)> {
    let array = obj.cast::<PyArrayDyn<f32>>().map_err(|_| {
        bad(
            argument,
            format!("must be a float32 NumPy array, got {}", describe(obj)),
        )
    })?;
    if array.ndim() != ndim {
        return Err(bad(
            argument,
            format!("must be {ndim}-D, got {} dimension(s)", array.ndim()),
        ));
    }
    let (shape, strides) = (array.shape(), array.strides());
    let (rows, cols, row_bytes, col_bytes) = if ndim == 2 {
        (shape[0], shape[1], strides[0], strides[1])
    } else {
        (1, shape[0], 0, strides[0])
    };
    let empty = rows == 0 || cols == 0;
    if !empty && cols > 1 && col_bytes != 4 {
        return Err(bad(
            argument,
            format!("must have a unit stride along its last axis (4 bytes), got {col_bytes} bytes"),
        ));
    }
    let stride = if !empty && rows > 1 {
        usize::try_from(row_bytes)
            .ok()
            .filter(|b| b.is_multiple_of(4))
            .ok_or_else(|| {
                bad(
                    argument,
                    format!(
                        "rows must have a positive stride of whole elements, got {row_bytes} bytes"
                    ),
                )
            })?
            / 4
    } else {
        cols
    };
    let ptr = array.data();
    if !(ptr as usize).is_multiple_of(4) {
        return Err(bad(argument, "data must be aligned to 4 bytes".to_string()));
    }
    let len = dense::span(argument, rows, cols, stride)?;
    Ok((
        array,
        Layout {
            ptr,
            rows,
            cols,
            stride,
            len,
        },
    ))
}

/// A float32 input array borrowed read-only for a call, with its layout (`matmul_array`).
struct Input<'py> {
    _guard: numpy::PyReadonlyArrayDyn<'py, f32>,
    layout: Layout,
    /// The argument's name, for errors.
    argument: &'static str,
}

impl<'py> Input<'py> {
    /// `obj` as an input of `ndim` dimensions (see `matmul_array`), borrowed read-only.
    fn new(obj: &Bound<'py, PyAny>, argument: &'static str, ndim: usize) -> PyResult<Self> {
        let (array, layout) = matmul_array(obj, argument, ndim)?;
        Ok(Self {
            _guard: array.try_readonly()?,
            layout,
            argument,
        })
    }

    /// The elements the array spans.
    fn data(&self) -> &[f32] {
        // SAFETY: the layout spans `len` elements inside the array (checked by
        // `matmul_array`), and the read-only borrow keeps it alive and unwritten by Rust code
        // while `self` lives.
        unsafe { std::slice::from_raw_parts(self.layout.ptr.cast_const(), self.layout.len) }
    }

    /// The array as a matrix view (a 1-D array is one row).
    fn matrix(&self) -> Result<MatRef<'_>, KernelError> {
        let lay = &self.layout;
        MatRef::new(self.argument, self.data(), lay.rows, lay.cols, lay.stride)
    }
}

/// `values` (rows × cols, row-major) as a new 2-D NumPy array.
fn to_numpy<'py>(
    py: Python<'py>,
    values: Vec<f32>,
    rows: usize,
    cols: usize,
) -> Bound<'py, PyArray2<f32>> {
    Array2::from_shape_vec((rows, cols), values)
        .expect("the kernel returns rows × cols values")
        .into_pyarray(py)
}

/// `(memory, selector, infused, meta, reachability)` of the meta-embedding head.
type MetaResult<'py> = (
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
    Option<Bound<'py, PyArray1<f32>>>,
);

/// The meta-embedding head's inference formulas in one call (see `kernel::head`).
#[pyfunction]
#[pyo3(signature = (
    x, hallucinator_t, hallucinator_bias, centroids, selector_t, selector_bias,
    nearest_distance = None, *, reach_scale = 10.0, eps = 1e-12, kernel = "auto"
))]
#[allow(clippy::too_many_arguments)]
fn meta_embedding<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    hallucinator_t: &Bound<'py, PyAny>,
    hallucinator_bias: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
    selector_t: &Bound<'py, PyAny>,
    selector_bias: &Bound<'py, PyAny>,
    nearest_distance: Option<&Bound<'py, PyAny>>,
    reach_scale: f64,
    eps: f64,
    kernel: &str,
) -> PyResult<MetaResult<'py>> {
    let engine = dense::engine(kernel)?;
    for (argument, value) in [("reach_scale", reach_scale), ("eps", eps)] {
        if !(value.is_finite() && value > 0.0) {
            return Err(KernelError::NotPositive { argument, value }.into());
        }
    }
    let x = Input::new(x, "x", 2)?;
    let inputs = [
        Input::new(hallucinator_t, "hallucinator_t", 2)?,
        Input::new(hallucinator_bias, "hallucinator_bias", 1)?,
        Input::new(centroids, "centroids", 2)?,
        Input::new(selector_t, "selector_t", 2)?,
        Input::new(selector_bias, "selector_bias", 1)?,
    ];
    let nearest = nearest_distance
        .map(|d| Input::new(d, "nearest_distance", 1))
        .transpose()?;
    let xm = x.matrix()?;
    let weights = MetaWeights {
        hallucinator_t: inputs[0].matrix()?,
        hallucinator_bias: inputs[1].data(),
        centroids: inputs[2].matrix()?,
        selector_t: inputs[3].matrix()?,
        selector_bias: inputs[4].data(),
    };
    let reach = nearest.as_ref().map(|d| Reach {
        nearest_distance: d.data(),
        scale: reach_scale as f32,
        eps: eps as f32,
    });
    let parts = py.detach(|| head::meta_embedding(xm, &weights, reach.as_ref(), engine))?;
    let (b, d) = (xm.rows(), xm.cols());
    // the four (B, D) arrays as views of one (4, B, D) array over the kernel's one allocation
    let all = Array3::from_shape_vec((4, b, d), parts.values)
        .expect("the kernel returns 4 × B × D values")
        .into_pyarray(py);
    let part = |i: usize| -> PyResult<Bound<'py, PyArray2<f32>>> {
        Ok(all.as_any().get_item(i)?.cast_into::<PyArray2<f32>>()?)
    };
    Ok((
        part(0)?,
        part(1)?,
        part(2)?,
        part(3)?,
        parts.reachability.map(|r| r.into_pyarray(py)),
    ))
}

/// The cosine classifier's logits (see `kernel::head::cosine_logits`).
#[pyfunction]
#[pyo3(signature = (v, unit_weight_t, logit_scale, *, squash = "code", kernel = "auto"))]
fn cosine_logits<'py>(
    py: Python<'py>,
    v: &Bound<'py, PyAny>,
    unit_weight_t: &Bound<'py, PyAny>,
    logit_scale: f64,
    squash: &str,
    kernel: &str,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let engine = dense::engine(kernel)?;
    let squash = match squash {
        "code" => Squash::Code,
        "paper" => Squash::Paper,
        other => {
            return Err(PyValueError::new_err(format!(
                "squash must be 'code' or 'paper', got {other:?}"
            )))
        }
    };
    if !logit_scale.is_finite() {
        return Err(PyValueError::new_err(format!(
            "logit_scale must be finite, got {logit_scale}"
        )));
    }
    let v = Input::new(v, "v", 2)?;
    let weight = Input::new(unit_weight_t, "unit_weight_t", 2)?;
    let (vm, wm) = (v.matrix()?, weight.matrix()?);
    let logits = py.detach(|| head::cosine_logits(vm, wm, logit_scale as f32, squash, engine))?;
    Ok(to_numpy(py, logits, vm.rows(), wm.cols()))
}

/// out = a @ b (+ bias) in float32 with fused multiply-adds in k order (see `kernel::dense`).
#[pyfunction]
#[pyo3(signature = (a, b, out, bias = None, *, kernel = "auto"))]
fn matmul(
    py: Python<'_>,
    a: &Bound<'_, PyAny>,
    b: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    bias: Option<&Bound<'_, PyAny>>,
    kernel: &str,
) -> PyResult<()> {
    let engine = dense::engine(kernel)?;
    let a = Input::new(a, "a", 2)?;
    let b = Input::new(b, "b", 2)?;
    let (out_arr, out_lay) = matmul_array(out, "out", 2)?;
    let bias = bias.map(|bias| Input::new(bias, "bias", 1)).transpose()?;
    let (o0, o1) = out_lay.bytes();
    for input in [&a, &b].into_iter().chain(bias.as_ref()) {
        let (s, e) = input.layout.bytes();
        if s < e && o0 < o1 && s < o1 && o0 < e {
            return Err(bad(
                "out",
                format!(
                    "must not overlap {name} in memory (out is written while {name} is read)",
                    name = input.argument
                ),
            ));
        }
    }
    let _out_guard = out_arr.try_readwrite().map_err(|err| match err {
        numpy::BorrowError::NotWriteable => bad("out", "must be writeable".to_string()),
        other => bad("out", format!("cannot be borrowed for writing: {other}")),
    })?;
    // SAFETY: the layout spans `len` elements inside `out` (checked by `matmul_array`), the
    // write borrow keeps it alive and unaliased by other Rust borrows during the call, and it
    // does not overlap the inputs (checked above).
    let out_data = unsafe { std::slice::from_raw_parts_mut(out_lay.ptr, out_lay.len) };
    let out_view = MatMut::new("out", out_data, out_lay.rows, out_lay.cols, out_lay.stride)?;
    let (a_view, b_view) = (a.matrix()?, b.matrix()?);
    let bias_data = bias.as_ref().map(Input::data);
    py.detach(|| dense::matmul(a_view, b_view, out_view, bias_data, engine))?;
    Ok(())
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
    m.add_function(wrap_pyfunction!(matmul, m)?)?;
    m.add_function(wrap_pyfunction!(meta_embedding, m)?)?;
    m.add_function(wrap_pyfunction!(cosine_logits, m)?)?;
    Ok(())
}
