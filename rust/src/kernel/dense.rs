//! Batch-invariant float32 matrix product `out = a · b (+ bias)` for the inference head.
//!
//! # Arithmetic (the same in every engine)
//! `out[i, j] = fl(acc + bias[j])` (no addition without bias), where `acc = +0.0` and, for
//! `k = 0..K` in order, `acc = fma(a[i, k], b[k, j], acc)`. One element's bits therefore depend
//! only on `a[i, :]`, `b[:, j]` and `bias[j]`: not on M, the row's position, the column tile,
//! the thread count or the engine (`avx512-f32`, `avx2-f32`: vector FMAs, one lane per
//! column; `portable-f32`: `f32::mul_add`). The k sum is blocked ([`KC`] rows of `b` at a
//! time) by keeping the partial `acc` in `out` between blocks (an f32 store and reload does
//! not change it); it is never split or reordered.
//!
//! # Structure (outer-product GEMM)
//! The columns are cut into panels of NR = NP vectors (64 columns with AVX-512, 16 with AVX2).
//! A micro-kernel keeps an MR × NR tile of `out` in registers (MR = 6 rows), broadcasts
//! `a[i, k]` of its rows from `a` in place and multiplies it into NP vectors of row k of a
//! panel. For each block of [`NC`] columns × [`KC`] rows of `b`, the block is packed once into
//! a per-thread panel buffer (~512 KiB, L2) that then serves every row sliver of the task, each
//! sliver (MR × KC of `a`, L1) sweeping all the block's panels; a ragged last panel is
//! zero-padded and its tile goes through a small buffer, so no lane past N is written.
//!
//! Calls of at most [`DIRECT_MAX_ROWS`] rows are bound by reading `b` (a GEMV-like stream):
//! they skip the copy and read `b` in place, with the widest register tile the row count
//! allows (1 row: 16 AVX-512 vectors, 256 columns) so that each k reads a long run of row k;
//! the first tile of each block prefetches (into L2) the block's whole row [`PREFETCH_ROWS`]
//! ahead, so `b` is fetched in row order. Columns past the last whole vector take a scalar
//! `mul_add` loop (the same FMA arithmetic).
//!
//! # Threads
//! Tasks are (row range × column range) regions of `out`, never a split of K, run by the
//! core's executor (`executor.rs`). Few-row calls over a `b` of at least [`SPLIT_MIN_BYTES`] get
//! one column range (whole vectors) per thread (each keeps its share of `b` in its own L2
//! across calls when it fits); larger
//! calls get about 4 tasks per thread, columns first (each block of `b` is then packed once).
//! Small calls run on the caller alone. The tasks write `out` in place through pointers into
//! the caller's arrays, so they run by `executor::run_scoped`: each region is claimed once
//! (a duplicate the executor starts for a stalled helper returns at once) and the call
//! returns only when every region is written: a stalled helper delays the call by at most the
//! rest of its region, and nothing touches the arrays after the call.

use std::cell::RefCell;

use super::engine::{quoted, Engine};
use super::error::KernelError;
use super::executor::{even_ranges, run_scoped};
use super::pool;
use super::simd_f32::Block;

/// Rows of `b` per block (the partial sums go through `out` between blocks).
pub const KC: usize = 256;
/// Columns of `b` per packed block (KC × NC floats = 512 KiB, a Zen 4 core's L2 holds two).
pub const NC: usize = 512;
/// Rows and columns of `b` per block of a direct (unpacked) read.
pub const DIRECT_KC: usize = 64;
pub const DIRECT_NC: usize = 2048;
/// Calls of at most this many rows read `b` in place instead of packing it.
pub const DIRECT_MAX_ROWS: usize = 12;
/// Rows ahead of the current one that a direct (unpacked) read of `b` prefetches. On the
/// shared 2-core Zen 4 (under other jobs' load), 10 × 1e5 × 512 (`b` 205 MB from DRAM) took
/// 12–26 ms with 8 rows against 23–37 ms without; 8, 16, 32 and 64 rows then measured
/// 24–29 ms alike, and 16 was best for 1 × 1000 × 512 (34 µs against 37–41 µs).
pub const PREFETCH_ROWS: usize = 16;
/// One block of a call as the kernels see it: `kc` columns of `a` (row stride `lda`) from the
/// block's first k, rows of `b` (stride `ldb`) from its first column, `c` (stride `ldc`),
/// whether `c` already holds the partial sums of earlier k blocks (`load_c`), and the bias
/// (null: none, or not the last k block).
#[derive(Clone, Copy)]
pub(crate) struct Operands {
    pub(crate) a: *const f32,
    pub(crate) lda: usize,
    pub(crate) b: *const f32,
    pub(crate) ldb: usize,
    pub(crate) kc: usize,
    pub(crate) c: *mut f32,
    pub(crate) ldc: usize,
    pub(crate) load_c: bool,
    pub(crate) bias: *const f32,
}

impl Operands {
    /// The same block from row `i` of `a` and `c` on.
    ///
    /// # Safety
    /// Row `i` must lie within the arrays.
    pub(crate) unsafe fn at_row(self, i: usize) -> Self {
        Self {
            a: self.a.add(i * self.lda),
            c: self.c.add(i * self.ldc),
            ..self
        }
    }

    /// The same block from column `j` of `b`, `c` and the bias on.
    ///
    /// # Safety
    /// Column `j` must lie within the arrays.
    pub(crate) unsafe fn at_col(self, j: usize) -> Self {
        Self {
            b: self.b.add(j),
            c: self.c.add(j),
            bias: if self.bias.is_null() {
                self.bias
            } else {
                self.bias.add(j)
            },
            ..self
        }
    }
}

/// What a tile prefetches while it reads `b`: (columns, distance in elements from the row it
/// reads to the row it fetches); `(0, _)` fetches nothing.
pub type Prefetch = (usize, isize);
/// No prefetch.
pub const NO_PREFETCH: Prefetch = (0, 0);
/// Below this many multiply-adds (M·N·K) a call runs on the caller's thread alone.
const PARALLEL_MIN_WORK: usize = 4_000_000;
/// A call of at most [`DIRECT_MAX_ROWS`] rows whose `b` has at least this many bytes is split
/// into one column range per thread.
pub const SPLIT_MIN_BYTES: usize = 512 * 1024;
/// Tasks per thread of a larger parallel call.
const TASKS_PER_THREAD: usize = 4;

/// The engines `matmul` runs, in order of preference.
pub const ENGINES: [Engine; 3] = [Engine::Avx512F32, Engine::Avx2F32, Engine::Portable];

/// A read-only row-major f32 matrix view: row `i` is `data[i * stride..i * stride + cols]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    stride: usize,
}

/// A writeable row-major f32 matrix view (see [`MatRef`]).
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    stride: usize,
}

/// Elements a `rows × cols` view with row stride `stride` spans, or an error naming `argument`.
pub fn span(
    argument: &'static str,
    rows: usize,
    cols: usize,
    stride: usize,
) -> Result<usize, KernelError> {
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    if rows > 1 && stride < cols {
        return Err(KernelError::BadMatrix {
            argument,
            detail: format!(
                "rows must not overlap: row stride {stride} is less than the row length {cols} \
                 (elements)"
            ),
        });
    }
    Ok((rows - 1) * stride + cols)
}

fn check_len(argument: &'static str, len: usize, need: usize) -> Result<(), KernelError> {
    if len < need {
        return Err(KernelError::BadMatrix {
            argument,
            detail: format!("needs {need} elements for its shape and stride, got {len}"),
        });
    }
    Ok(())
}

impl<'a> MatRef<'a> {
    /// `rows × cols` over `data` with row stride `stride` (elements).
    pub fn new(
        argument: &'static str,
        data: &'a [f32],
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> Result<Self, KernelError> {
        check_len(argument, data.len(), span(argument, rows, cols, stride)?)?;
        Ok(Self {
            data,
            rows,
            cols,
            stride,
        })
    }
}

impl MatRef<'_> {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i` (its `cols` elements).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.stride..i * self.stride + self.cols]
    }
}

impl<'a> MatMut<'a> {
    /// `rows × cols` over `data` with row stride `stride` (elements).
    pub fn new(
        argument: &'static str,
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> Result<Self, KernelError> {
        check_len(argument, data.len(), span(argument, rows, cols, stride)?)?;
        Ok(Self {
            data,
            rows,
            cols,
            stride,
        })
    }
}

/// The engine `kernel=name` selects: `"auto"` is the first of [`ENGINES`] this process runs;
/// another name must be one of them (an unknown name, or one this CPU cannot run, is an error
/// naming the valid choices).
pub fn engine(name: &str) -> Result<Engine, KernelError> {
    if name == "auto" {
        return Ok(ENGINES
            .into_iter()
            .find(|e| e.is_supported())
            .unwrap_or(Engine::Portable));
    }
    match ENGINES.into_iter().find(|e| e.name() == name) {
        None => Err(KernelError::UnknownKernel {
            name: name.to_string(),
            choices: choices(ENGINES.into_iter().map(Engine::name)),
        }),
        Some(e) if e.is_supported() => Ok(e),
        Some(e) => Err(KernelError::UnsupportedKernel {
            name: e.name(),
            choices: choices(
                ENGINES
                    .into_iter()
                    .filter(|e| e.is_supported())
                    .map(Engine::name),
            ),
        }),
    }
}

/// `'auto', 'a', 'b'`: the valid `kernel=` names among `names`.
fn choices<'a>(names: impl Iterator<Item = &'a str>) -> String {
    quoted(std::iter::once("auto").chain(names))
}

/// `out = a · b (+ bias)` with the arithmetic of the module docs. `a`: (M, K), `b`: (K, N),
/// `out`: (M, N), `bias`: N values. Errors name the argument whose shape disagrees.
pub fn matmul(
    a: MatRef<'_>,
    b: MatRef<'_>,
    out: MatMut<'_>,
    bias: Option<&[f32]>,
    engine: Engine,
) -> Result<(), KernelError> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        return Err(KernelError::BadMatrix {
            argument: "b",
            detail: format!("must have {k} rows (the columns of a), got {}", b.rows),
        });
    }
    if out.rows != m || out.cols != n {
        return Err(KernelError::BadMatrix {
            argument: "out",
            detail: format!(
                "must have shape ({m}, {n}), got ({}, {})",
                out.rows, out.cols
            ),
        });
    }
    if let Some(bias) = bias {
        if bias.len() != n {
            return Err(KernelError::BadMatrix {
                argument: "bias",
                detail: format!(
                    "must have {n} elements (the columns of b), got {}",
                    bias.len()
                ),
            });
        }
    }
    engine.check_supported()?;
    if !ENGINES.contains(&engine) {
        return Err(KernelError::UnknownKernel {
            name: engine.name().to_string(),
            choices: choices(ENGINES.into_iter().map(Engine::name)),
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        for i in 0..m {
            let row = &mut out.data[i * out.stride..i * out.stride + n];
            match bias {
                Some(bias) => row.copy_from_slice(bias),
                None => row.fill(0.0),
            }
        }
        return Ok(());
    }
    let threads = pool::num_threads();
    let direct = m <= DIRECT_MAX_ROWS;
    let split = direct && k * n * 4 >= SPLIT_MIN_BYTES;
    let parallel = threads > 1 && (m * n * k >= PARALLEL_MIN_WORK || split);
    let nr = panel_width(engine);
    let (rows, cols) = plan(m, n, nr, threads, parallel, direct);
    let count = rows.len() * cols.len();
    let job = Job {
        a: Ptr(a.data.as_ptr()),
        lda: a.stride,
        b: Ptr(b.data.as_ptr()),
        ldb: b.stride,
        c: PtrMut(out.data.as_mut_ptr()),
        ldc: out.stride,
        bias: bias.map(|b| Ptr(b.as_ptr())),
        k,
        direct,
        engine,
        rows,
        cols,
    };
    run_scoped(count, parallel, &|t| job.run(t));
    Ok(())
}

/// Columns per micro-kernel panel of `engine`.
fn panel_width(engine: Engine) -> usize {
    match engine {
        #[cfg(target_arch = "x86_64")]
        Engine::Avx512F32 => avx512::NR,
        #[cfg(target_arch = "x86_64")]
        Engine::Avx2F32 => avx2::NR,
        _ => 16,
    }
}

/// `[start, end)` ranges of rows or columns.
type Ranges = Vec<(usize, usize)>;

/// Row ranges × column ranges (column ranges start on panel boundaries).
fn plan(
    m: usize,
    n: usize,
    nr: usize,
    threads: usize,
    parallel: bool,
    direct: bool,
) -> (Ranges, Ranges) {
    let panels = n.div_ceil(nr);
    if !parallel {
        return (vec![(0, m)], vec![(0, n)]);
    }
    if direct {
        // Whole vectors (16 columns) per range: no range ends in a ragged panel that would
        // need packing, and the ranges stay even (1 × 512 × 1000 on two threads: 496 and
        // 504 columns, each just inside a 1 MiB L2, where 512 + 488 left the first thrashing).
        return (vec![(0, m)], even_ranges(n.div_ceil(16), threads, 16, n));
    }
    let target = threads * TASKS_PER_THREAD;
    let col_parts = target.min(panels);
    let row_parts = target.div_ceil(col_parts).min(m.div_ceil(6));
    (
        even_ranges(m.div_ceil(6), row_parts, 6, m),
        even_ranges(panels, col_parts, nr, n),
    )
}

#[derive(Clone, Copy)]
struct Ptr(*const f32);
#[derive(Clone, Copy)]
struct PtrMut(*mut f32);

/// One call's shared state: pointers into the caller's arrays (valid until `matmul` returns,
/// which waits for every region: see the module docs) and the regions.
struct Job {
    a: Ptr,
    lda: usize,
    b: Ptr,
    ldb: usize,
    c: PtrMut,
    ldc: usize,
    bias: Option<Ptr>,
    k: usize,
    direct: bool,
    engine: Engine,
    rows: Vec<(usize, usize)>,
    cols: Vec<(usize, usize)>,
}

// SAFETY: the pointers are only dereferenced by region tasks, which write disjoint regions of
// `out` (each run once by `run_scoped`) and read `a`, `b`, `bias`; `matmul` waits for all.
// (Shared by reference only: `run_scoped` borrows it, so it need not be `Send`.)
unsafe impl Sync for Job {}

/// One region of the call, as the kernels see it.
#[derive(Clone, Copy)]
struct Region {
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    /// Null without bias.
    bias: *const f32,
    m: usize,
    n: usize,
    k: usize,
    direct: bool,
}

impl Job {
    fn run(&self, t: usize) {
        let (r0, r1) = self.rows[t / self.cols.len()];
        let (c0, c1) = self.cols[t % self.cols.len()];
        if r0 == r1 || c0 == c1 {
            return;
        }
        // SAFETY: the ranges lie inside the validated shapes of the caller's arrays, which
        // outlive the call (see `Job`).
        unsafe {
            let region = Region {
                a: self.a.0.add(r0 * self.lda),
                lda: self.lda,
                b: self.b.0.add(c0),
                ldb: self.ldb,
                c: self.c.0.add(r0 * self.ldc + c0),
                ldc: self.ldc,
                bias: self.bias.map_or(std::ptr::null(), |b| b.0.add(c0)),
                m: r1 - r0,
                n: c1 - c0,
                k: self.k,
                direct: self.direct,
            };
            match self.engine {
                #[cfg(target_arch = "x86_64")]
                Engine::Avx512F32 => avx512::region(&region),
                #[cfg(target_arch = "x86_64")]
                Engine::Avx2F32 => avx2::region(&region),
                _ => portable_region(&region),
            }
        }
    }
}

/// The portable engine over one region: `f32::mul_add` in the order of the module docs.
///
/// # Safety
/// The region's pointers must address its `m × k`, `k × n`, `m × n` and `n` elements.
unsafe fn portable_region(r: &Region) {
    for i in 0..r.m {
        let c = std::slice::from_raw_parts_mut(r.c.add(i * r.ldc), r.n);
        c.fill(0.0);
        for kk in 0..r.k {
            let aik = *r.a.add(i * r.lda + kk);
            let brow = std::slice::from_raw_parts(r.b.add(kk * r.ldb), r.n);
            for (cj, &bj) in c.iter_mut().zip(brow) {
                *cj = aik.mul_add(bj, *cj);
            }
        }
        if !r.bias.is_null() {
            let bias = std::slice::from_raw_parts(r.bias, r.n);
            for (cj, &bj) in c.iter_mut().zip(bias) {
                *cj += bj;
            }
        }
    }
}

thread_local! {
    /// Each thread's packed panels of `b` (KC × NC floats), kept across calls.
    static PANELS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(target_arch = "x86_64")]
use simd::{avx2, avx512};

#[cfg(test)]
mod tests;
