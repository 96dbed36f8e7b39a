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
//! the caller's arrays, so each region is claimed once (a duplicate the executor starts for a
//! stalled helper returns at once) and the call returns only when every region is written:
//! a stalled helper delays the call by at most the rest of its region, and nothing touches the
//! arrays after the call.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::engine::{quoted, Engine};
use super::error::KernelError;
use super::executor::run_tasks;
use super::pool;
use super::simd_f32::Block;

/// Rows of `b` per block (the partial sums go through `out` between blocks).
pub const KC: usize = 256;
/// Columns of `b` per packed block (KC × NC floats = 512 KiB, a Zen 4 core's L2 holds two).
pub const NC: usize = 512;
/// Calls of at most this many rows read `b` in place instead of packing it.
pub const DIRECT_MAX_ROWS: usize = 12;
/// Rows ahead of the current one that a direct (unpacked) read of `b` prefetches. On the
/// shared 2-core Zen 4 (under other jobs' load), 10 × 1e5 × 512 (`b` 205 MB from DRAM) took
/// 12–26 ms with 8 rows against 23–37 ms without; 8, 16, 32 and 64 rows then measured
/// 24–29 ms alike, and 16 was best for 1 × 1000 × 512 (34 µs against 37–41 µs).
pub const PREFETCH_ROWS: usize = 16;
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
    let job = Arc::new(Job {
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
        claimed: (0..count).map(|_| AtomicBool::new(false)).collect(),
        done: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
    });
    let shared = Arc::clone(&job);
    run_tasks(count, parallel, move |t| shared.run(t));
    job.wait_all(count);
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

/// `parts` nearly equal ranges of `units` units of `width` (the last one capped at `n`).
fn ranges(units: usize, parts: usize, width: usize, n: usize) -> Ranges {
    let parts = parts.clamp(1, units.max(1));
    (0..parts)
        .map(|i| {
            let (u0, u1) = (i * units / parts, (i + 1) * units / parts);
            ((u0 * width).min(n), (u1 * width).min(n))
        })
        .collect()
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
        return (vec![(0, m)], ranges(n.div_ceil(16), threads, 16, n));
    }
    let target = threads * TASKS_PER_THREAD;
    let col_parts = target.min(panels);
    let row_parts = target.div_ceil(col_parts).min(m.div_ceil(6));
    (
        ranges(m.div_ceil(6), row_parts, 6, m),
        ranges(panels, col_parts, nr, n),
    )
}

#[derive(Clone, Copy)]
struct Ptr(*const f32);
#[derive(Clone, Copy)]
struct PtrMut(*mut f32);

/// One call's shared state: pointers into the caller's arrays (valid until `matmul` returns,
/// which waits for every region: see the module docs) and the regions' claims.
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
    claimed: Vec<AtomicBool>,
    done: AtomicUsize,
    failed: AtomicBool,
}

// SAFETY: the pointers are only dereferenced by region tasks, which write disjoint regions of
// `out` (each claimed once) and read `a`, `b`, `bias`; `matmul` waits for all of them.
unsafe impl Send for Job {}
unsafe impl Sync for Job {}

/// Counts a claimed region as done even if its computation panics (then flags the call).
struct DoneGuard<'a>(&'a Job);

impl Drop for DoneGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Ordering::SeqCst);
        }
        self.0.done.fetch_add(1, Ordering::Release);
    }
}

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
        if self.claimed[t].swap(true, Ordering::AcqRel) {
            return;
        }
        let _done = DoneGuard(self);
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

    /// Waits until all `count` regions are written (each was claimed before `run_tasks`
    /// returned: it calls every task it has no result for).
    fn wait_all(&self, count: usize) {
        let mut spins = 0u32;
        while self.done.load(Ordering::Acquire) < count {
            spins += 1;
            if spins < 1000 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        assert!(
            !self.failed.load(Ordering::SeqCst),
            "a matmul region task panicked"
        );
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

/// Writes the region kernel module `$name` for one instruction set: `$feat` its target
/// features, `$np` vectors per panel row, `$ops` its vector ops in `simd_f32`.
#[cfg(target_arch = "x86_64")]
macro_rules! dense_kernel {
    ($name:ident, $feat:literal, $np:expr, $wide:expr, $ops:ident) => {
        mod $name {
            use super::super::simd_f32::$ops::*;
            use super::{Block, Region, KC, NC, PANELS, PREFETCH_ROWS};

            /// f32 lanes per vector.
            const LANES: usize = std::mem::size_of::<V>() / 4;
            /// Vectors per panel row.
            const NP: usize = $np;
            /// Columns per panel.
            pub const NR: usize = NP * LANES;
            /// Rows per micro-kernel tile.
            const MR: usize = 6;
            /// Vectors per tile of a direct read for 1..=MR rows.
            const WIDE: [usize; MR] = $wide;

            /// `c[0..R, 0..W·LANES] = (load_c ? c : 0) + a[0..R, 0..kc] · b[0..kc, 0..W·LANES]`
            /// (+ bias when `bias` is not null), one FMA per (row, column, k) in k order.
            #[target_feature(enable = $feat)]
            #[inline]
            #[allow(clippy::too_many_arguments)]
            unsafe fn micro<const R: usize, const W: usize>(
                a: *const f32,
                lda: usize,
                b: *const f32,
                ldb: usize,
                kc: usize,
                c: *mut f32,
                ldc: usize,
                load_c: bool,
                bias: *const f32,
                prefetch_cols: usize,
            ) {
                let mut acc = [[zero(); W]; R];
                if load_c {
                    for (r, row) in acc.iter_mut().enumerate() {
                        for (p, v) in row.iter_mut().enumerate() {
                            *v = loadu(c.add(r * ldc + p * LANES));
                        }
                    }
                }
                for kk in 0..kc {
                    let bk = b.add(kk * ldb);
                    let ahead = bk.wrapping_add(PREFETCH_ROWS * ldb);
                    for q in (0..prefetch_cols).step_by(16) {
                        prefetch(ahead.wrapping_add(q));
                    }
                    let mut bv = [zero(); W];
                    for (p, v) in bv.iter_mut().enumerate() {
                        *v = loadu(bk.add(p * LANES));
                    }
                    for (r, row) in acc.iter_mut().enumerate() {
                        let x = bcast(*a.add(r * lda + kk));
                        for (v, w) in row.iter_mut().zip(bv.iter()) {
                            *v = fma(x, *w, *v);
                        }
                    }
                }
                if !bias.is_null() {
                    for row in acc.iter_mut() {
                        for (p, v) in row.iter_mut().enumerate() {
                            *v = add(*v, loadu(bias.add(p * LANES)));
                        }
                    }
                }
                for (r, row) in acc.iter().enumerate() {
                    for (p, v) in row.iter().enumerate() {
                        store(c.add(r * ldc + p * LANES), *v);
                    }
                }
            }

            /// [`micro`] over `m` rows (slivers of MR, then one shorter tile).
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn rows(
                a: *const f32,
                lda: usize,
                m: usize,
                b: *const f32,
                ldb: usize,
                kc: usize,
                c: *mut f32,
                ldc: usize,
                load_c: bool,
                bias: *const f32,
            ) {
                let mut i = 0;
                while i + MR <= m {
                    micro::<MR, NP>(
                        a.add(i * lda),
                        lda,
                        b,
                        ldb,
                        kc,
                        c.add(i * ldc),
                        ldc,
                        load_c,
                        bias,
                        0,
                    );
                    i += MR;
                }
                let (a, c) = (a.add(i * lda), c.add(i * ldc));
                match m - i {
                    0 => {}
                    1 => micro::<1, NP>(a, lda, b, ldb, kc, c, ldc, load_c, bias, 0),
                    2 => micro::<2, NP>(a, lda, b, ldb, kc, c, ldc, load_c, bias, 0),
                    3 => micro::<3, NP>(a, lda, b, ldb, kc, c, ldc, load_c, bias, 0),
                    4 => micro::<4, NP>(a, lda, b, ldb, kc, c, ldc, load_c, bias, 0),
                    _ => micro::<5, NP>(a, lda, b, ldb, kc, c, ldc, load_c, bias, 0),
                }
            }

            /// [`micro`] tiles of `R` rows × `W` vectors (then narrower ones) across the first
            /// `cols` columns (a multiple of LANES) of `b` read in place. The first tile
            /// prefetches `prefetch_cols` columns of the row [`PREFETCH_ROWS`] ahead, so that
            /// `b` is fetched in row order (long sequential runs) for every tile.
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn sweep<const R: usize, const W: usize>(
                a: *const f32,
                lda: usize,
                b: *const f32,
                ldb: usize,
                kc: usize,
                c: *mut f32,
                ldc: usize,
                load_c: bool,
                bias: *const f32,
                cols: usize,
                prefetch_cols: usize,
            ) {
                let at = |p: *const f32, j: usize| if p.is_null() { p } else { p.add(j) };
                let mut j = 0;
                while j + W * LANES <= cols {
                    let pf = if j == 0 { prefetch_cols } else { 0 };
                    micro::<R, W>(
                        a,
                        lda,
                        b.add(j),
                        ldb,
                        kc,
                        c.add(j),
                        ldc,
                        load_c,
                        at(bias, j),
                        pf,
                    );
                    j += W * LANES;
                }
                // The rest in halving widths (a single-vector tile of one row would wait on
                // its FMA latency: 15 of them took longer than a 256-column tile).
                if W > 8 && j + 8 * LANES <= cols {
                    let pf = if j == 0 { prefetch_cols } else { 0 };
                    micro::<R, 8>(
                        a,
                        lda,
                        b.add(j),
                        ldb,
                        kc,
                        c.add(j),
                        ldc,
                        load_c,
                        at(bias, j),
                        pf,
                    );
                    j += 8 * LANES;
                }
                if W > 4 && j + 4 * LANES <= cols {
                    let pf = if j == 0 { prefetch_cols } else { 0 };
                    micro::<R, 4>(
                        a,
                        lda,
                        b.add(j),
                        ldb,
                        kc,
                        c.add(j),
                        ldc,
                        load_c,
                        at(bias, j),
                        pf,
                    );
                    j += 4 * LANES;
                }
                if W > 2 && j + 2 * LANES <= cols {
                    let pf = if j == 0 { prefetch_cols } else { 0 };
                    micro::<R, 2>(
                        a,
                        lda,
                        b.add(j),
                        ldb,
                        kc,
                        c.add(j),
                        ldc,
                        load_c,
                        at(bias, j),
                        pf,
                    );
                    j += 2 * LANES;
                }
                while j < cols {
                    let pf = if j == 0 { prefetch_cols } else { 0 };
                    micro::<R, 1>(
                        a,
                        lda,
                        b.add(j),
                        ldb,
                        kc,
                        c.add(j),
                        ldc,
                        load_c,
                        at(bias, j),
                        pf,
                    );
                    j += LANES;
                }
            }

            /// The direct (unpacked) read of `cols` columns for `m <= MR` rows: the widest tile
            /// the registers hold for that many rows ([`WIDE`]), so that each k reads a long
            /// run of row k of `b`.
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn direct(
                a: *const f32,
                lda: usize,
                m: usize,
                b: *const f32,
                ldb: usize,
                kc: usize,
                c: *mut f32,
                ldc: usize,
                load_c: bool,
                bias: *const f32,
                cols: usize,
                prefetch_cols: usize,
            ) {
                let pf = prefetch_cols;
                match m {
                    1 => {
                        sweep::<1, { WIDE[0] }>(a, lda, b, ldb, kc, c, ldc, load_c, bias, cols, pf)
                    }
                    2 => {
                        sweep::<2, { WIDE[1] }>(a, lda, b, ldb, kc, c, ldc, load_c, bias, cols, pf)
                    }
                    3 => {
                        sweep::<3, { WIDE[2] }>(a, lda, b, ldb, kc, c, ldc, load_c, bias, cols, pf)
                    }
                    4 => {
                        sweep::<4, { WIDE[3] }>(a, lda, b, ldb, kc, c, ldc, load_c, bias, cols, pf)
                    }
                    5 => {
                        sweep::<5, { WIDE[4] }>(a, lda, b, ldb, kc, c, ldc, load_c, bias, cols, pf)
                    }
                    _ => {
                        sweep::<MR, { WIDE[5] }>(a, lda, b, ldb, kc, c, ldc, load_c, bias, cols, pf)
                    }
                }
            }

            /// The last `cols < LANES` columns of a direct read, one `f32::mul_add` (an FMA
            /// instruction here) per (row, column, k) in k order: the lanes' arithmetic.
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn tail(
                a: *const f32,
                lda: usize,
                m: usize,
                b: *const f32,
                ldb: usize,
                kc: usize,
                c: *mut f32,
                ldc: usize,
                load_c: bool,
                bias: *const f32,
                cols: usize,
            ) {
                for i in 0..m {
                    for j in 0..cols {
                        let out = c.add(i * ldc + j);
                        let mut acc = if load_c { *out } else { 0.0 };
                        for kk in 0..kc {
                            acc = (*a.add(i * lda + kk)).mul_add(*b.add(kk * ldb + j), acc);
                        }
                        if !bias.is_null() {
                            acc += *bias.add(j);
                        }
                        *out = acc;
                    }
                }
            }

            /// A ragged panel (`cols < NR` columns): the tile goes through a buffer of MR × NR
            /// (zero padding in the columns past `cols`; `b` is zero-padded too).
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn ragged(
                a: *const f32,
                lda: usize,
                m: usize,
                b: *const f32,
                kc: usize,
                c: *mut f32,
                ldc: usize,
                cols: usize,
                load_c: bool,
                bias: *const f32,
            ) {
                let mut tile = [0.0f32; MR * NR];
                let mut padded_bias = [0.0f32; NR];
                let bias = if bias.is_null() {
                    bias
                } else {
                    padded_bias[..cols].copy_from_slice(std::slice::from_raw_parts(bias, cols));
                    padded_bias.as_ptr()
                };
                let mut i = 0;
                while i < m {
                    let h = (m - i).min(MR);
                    if load_c {
                        for r in 0..h {
                            let src = std::slice::from_raw_parts(c.add((i + r) * ldc), cols);
                            tile[r * NR..r * NR + cols].copy_from_slice(src);
                        }
                    }
                    rows(
                        a.add(i * lda),
                        lda,
                        h,
                        b,
                        NR,
                        kc,
                        tile.as_mut_ptr(),
                        NR,
                        load_c,
                        bias,
                    );
                    for r in 0..h {
                        let dst = std::slice::from_raw_parts_mut(c.add((i + r) * ldc), cols);
                        dst.copy_from_slice(&tile[r * NR..r * NR + cols]);
                    }
                    i += MR;
                }
            }

            /// Packs `b[0..kc, 0..nc]` as panels of NR columns (panel `p`, row `k` at
            /// `(p * kc + k) * NR`), zero-padding the last.
            #[target_feature(enable = $feat)]
            unsafe fn pack(b: *const f32, ldb: usize, kc: usize, nc: usize, dst: *mut f32) {
                let panels = nc.div_ceil(NR);
                for kk in 0..kc {
                    let src = b.add(kk * ldb);
                    for p in 0..panels {
                        let w = (nc - p * NR).min(NR);
                        let d = dst.add((p * kc + kk) * NR);
                        if w == NR {
                            for v in 0..NP {
                                store(d.add(v * LANES), loadu(src.add(p * NR + v * LANES)));
                            }
                        } else {
                            std::ptr::copy_nonoverlapping(src.add(p * NR), d, w);
                            std::ptr::write_bytes(d.add(w), 0, NR - w);
                        }
                    }
                }
            }

            /// Computes one region of `out` (see the module docs).
            ///
            /// # Safety
            /// The CPU must have `$feat`; the region's pointers must address its elements.
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn region(r: &Region) {
                PANELS.with(|cell| {
                    let mut buf = cell.borrow_mut();
                    let need = (KC * NC).div_ceil(16);
                    if buf.len() < need {
                        buf.resize(need, Block::default());
                    }
                    let panels = buf.as_mut_ptr().cast::<f32>();
                    let mut jc = 0;
                    while jc < r.n {
                        let nc = (r.n - jc).min(NC);
                        let full = nc / NR;
                        let mut pc = 0;
                        while pc < r.k {
                            let kc = (r.k - pc).min(KC);
                            let b = r.b.add(pc * r.ldb + jc);
                            if !r.direct {
                                pack(b, r.ldb, kc, nc, panels);
                            }
                            let load_c = pc > 0;
                            let bias = if pc + kc == r.k && !r.bias.is_null() {
                                r.bias.add(jc)
                            } else {
                                std::ptr::null()
                            };
                            let a = r.a.add(pc);
                            let c = r.c.add(jc);
                            let mut i = 0;
                            while i < r.m {
                                let h = (r.m - i).min(MR);
                                let (ai, ci) = (a.add(i * r.lda), c.add(i * r.ldc));
                                if r.direct {
                                    let vec_cols = nc / LANES * LANES;
                                    let pf = if i == 0 { nc } else { 0 };
                                    direct(
                                        ai, r.lda, h, b, r.ldb, kc, ci, r.ldc, load_c, bias,
                                        vec_cols, pf,
                                    );
                                    let at = |p: *const f32| {
                                        if p.is_null() {
                                            p
                                        } else {
                                            p.add(vec_cols)
                                        }
                                    };
                                    tail(
                                        ai,
                                        r.lda,
                                        h,
                                        b.add(vec_cols),
                                        r.ldb,
                                        kc,
                                        ci.add(vec_cols),
                                        r.ldc,
                                        load_c,
                                        at(bias),
                                        nc - vec_cols,
                                    );
                                } else {
                                    for p in 0..full {
                                        let bp = panels.add(p * kc * NR).cast_const();
                                        let bias_p = if bias.is_null() {
                                            bias
                                        } else {
                                            bias.add(p * NR)
                                        };
                                        let c = ci.add(p * NR);
                                        rows(ai, r.lda, h, bp, NR, kc, c, r.ldc, load_c, bias_p);
                                    }
                                }
                                if !r.direct && full * NR < nc {
                                    let bias_p = if bias.is_null() {
                                        bias
                                    } else {
                                        bias.add(full * NR)
                                    };
                                    ragged(
                                        ai,
                                        r.lda,
                                        h,
                                        panels.add(full * kc * NR),
                                        kc,
                                        ci.add(full * NR),
                                        r.ldc,
                                        nc - full * NR,
                                        load_c,
                                        bias_p,
                                    );
                                }
                                i += MR;
                            }
                            pc += kc;
                        }
                        jc += nc;
                    }
                });
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
dense_kernel!(avx512, "avx512f", 4, [16, 12, 8, 6, 4, 4], avx512_ops);
#[cfg(target_arch = "x86_64")]
dense_kernel!(avx2, "avx2,fma", 2, [8, 6, 4, 3, 2, 2], avx2_ops);

#[cfg(test)]
mod tests {
    use super::*;

    /// Small deterministic generator (xorshift64*), uniform in [-1, 1).
    struct Rng(u64);

    impl Rng {
        fn uniform(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        fn vec(&mut self, len: usize) -> Vec<f32> {
            (0..len).map(|_| self.uniform()).collect()
        }
    }

    /// A dense row-major matrix (stride = cols).
    struct Dense {
        data: Vec<f32>,
        rows: usize,
        cols: usize,
    }

    impl Dense {
        fn random(rng: &mut Rng, rows: usize, cols: usize) -> Self {
            Self {
                data: rng.vec(rows * cols),
                rows,
                cols,
            }
        }
        fn view(&self) -> MatRef<'_> {
            MatRef::new("x", &self.data, self.rows, self.cols, self.cols).unwrap()
        }
    }

    /// The contract's loop: acc = +0, fma over k in order, then + bias.
    fn naive_f32(a: &Dense, b: &Dense, bias: Option<&[f32]>) -> Vec<f32> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f32;
                for l in 0..k {
                    acc = a.data[i * k + l].mul_add(b.data[l * n + j], acc);
                }
                out[i * n + j] = bias.map_or(acc, |bias| acc + bias[j]);
            }
        }
        out
    }

    fn naive_f64(a: &Dense, b: &Dense, bias: Option<&[f32]>) -> Vec<f64> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|l| f64::from(a.data[i * k + l]) * f64::from(b.data[l * n + j]))
                    .sum();
                out[i * n + j] = s + bias.map_or(0.0, |bias| f64::from(bias[j]));
            }
        }
        out
    }

    fn run(a: &Dense, b: &Dense, bias: Option<&[f32]>, engine: Engine) -> Vec<f32> {
        let mut out = vec![f32::NAN; a.rows * b.cols];
        let view = MatMut::new("out", &mut out, a.rows, b.cols, b.cols).unwrap();
        matmul(a.view(), b.view(), view, bias, engine).unwrap();
        out
    }

    fn engines() -> Vec<Engine> {
        ENGINES.into_iter().filter(|e| e.is_supported()).collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn every_engine_matches_the_fma_loop_bit_for_bit_and_f64_closely() {
        let _serial = pool::TEST_THREADS_LOCK.lock();
        pool::set_num_threads(2).unwrap();
        let mut rng = Rng(7);
        for &(m, k, n) in &[
            (1, 1, 1),
            (2, 7, 15),
            (3, 300, 65),
            (17, 257, 130),
            (6, 600, 1100),
            (13, 64, 64),
            (64, 512, 100),
            (300, 40, 33),
            // Direct reads of every sliver height (1..=12 rows), wide tiles and single vectors.
            (4, 260, 700),
            (5, 33, 300),
            (10, 270, 1000),
            (12, 64, 513),
            (1, 300, 1040),
        ] {
            let a = Dense::random(&mut rng, m, k);
            let b = Dense::random(&mut rng, k, n);
            let bias = rng.vec(n);
            for with_bias in [false, true] {
                let bias = with_bias.then_some(&bias[..]);
                let want = naive_f32(&a, &b, bias);
                let exact = naive_f64(&a, &b, bias);
                for engine in engines() {
                    let got = run(&a, &b, bias, engine);
                    assert_eq!(bits(&got), bits(&want), "{engine:?} {m}x{k}x{n}");
                    for (g, e) in got.iter().zip(&exact) {
                        let tol = 1e-5 * (k as f64 + 1.0);
                        assert!((f64::from(*g) - e).abs() <= tol, "{g} vs {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn bits_do_not_depend_on_batch_rows_columns_or_threads() {
        let _serial = pool::TEST_THREADS_LOCK.lock();
        let mut rng = Rng(11);
        let (k, n) = (530, 1500);
        let a = Dense::random(&mut rng, 300, k);
        let b = Dense::random(&mut rng, k, n);
        let bias = rng.vec(n);
        pool::set_num_threads(1).unwrap();
        let full = run(&a, &b, Some(&bias), engines()[0]);
        for threads in [1, 2, 3] {
            pool::set_num_threads(threads).unwrap();
            for engine in engines() {
                assert_eq!(bits(&run(&a, &b, Some(&bias), engine)), bits(&full));
                // Row sub-batches (M = 1, 2, 3, 17, 64) at several positions.
                for &(r0, rows) in &[(0, 1), (5, 2), (40, 3), (100, 17), (233, 64), (299, 1)] {
                    let sub = Dense {
                        data: a.data[r0 * k..(r0 + rows) * k].to_vec(),
                        rows,
                        cols: k,
                    };
                    let got = run(&sub, &b, Some(&bias), engine);
                    assert_eq!(bits(&got), bits(&full[r0 * n..(r0 + rows) * n]));
                }
                // A column sub-range of b, read in place (row stride n).
                let (c0, c1) = (37, 1203);
                let bv = MatRef::new("b", &b.data[c0..], k, c1 - c0, n).unwrap();
                let mut out = vec![0.0f32; 3 * (c1 - c0)];
                let ov = MatMut::new("out", &mut out, 3, c1 - c0, c1 - c0).unwrap();
                let av = MatRef::new("a", &a.data[7 * k..], 3, k, k).unwrap();
                matmul(av, bv, ov, Some(&bias[c0..c1]), engine).unwrap();
                for r in 0..3 {
                    let row = &full[(7 + r) * n + c0..(7 + r) * n + c1];
                    assert_eq!(bits(&out[r * (c1 - c0)..(r + 1) * (c1 - c0)]), bits(row));
                }
            }
        }
    }

    #[test]
    fn strided_views_are_read_and_written_in_place_only() {
        let _serial = pool::TEST_THREADS_LOCK.lock();
        pool::set_num_threads(2).unwrap();
        let mut rng = Rng(3);
        let (m, k, n) = (9, 270, 70);
        let (lda, ldb, ldc) = (k + 5, n + 30, n + 3);
        let abuf = rng.vec(m * lda);
        let bbuf = rng.vec(k * ldb);
        let a = Dense {
            data: (0..m)
                .flat_map(|i| abuf[i * lda..i * lda + k].to_vec())
                .collect(),
            rows: m,
            cols: k,
        };
        let b = Dense {
            data: (0..k)
                .flat_map(|i| bbuf[i * ldb..i * ldb + n].to_vec())
                .collect(),
            rows: k,
            cols: n,
        };
        let want = naive_f32(&a, &b, None);
        for engine in engines() {
            let mut cbuf = vec![-7.0f32; m * ldc + 11];
            let av = MatRef::new("a", &abuf, m, k, lda).unwrap();
            let bv = MatRef::new("b", &bbuf, k, n, ldb).unwrap();
            let cv = MatMut::new("out", &mut cbuf[11..], m, n, ldc).unwrap();
            matmul(av, bv, cv, None, engine).unwrap();
            for i in 0..m {
                let row = &cbuf[11 + i * ldc..11 + i * ldc + n];
                assert_eq!(bits(row), bits(&want[i * n..(i + 1) * n]), "{engine:?}");
            }
            let untouched =
                cbuf[..11]
                    .iter()
                    .chain((0..m).flat_map(|i| {
                        &cbuf[11 + i * ldc + n..(11 + (i + 1) * ldc).min(cbuf.len())]
                    }))
                    .all(|&v| v == -7.0);
            assert!(untouched, "{engine:?} wrote outside out");
        }
    }

    #[test]
    fn empty_dimensions() {
        let mut rng = Rng(5);
        for engine in engines() {
            // K = 0: bias, or zeros.
            let a = Dense::random(&mut rng, 3, 0);
            let b = Dense::random(&mut rng, 0, 4);
            let bias = [1.0, -2.0, 3.5, 0.25];
            assert_eq!(run(&a, &b, Some(&bias), engine), [bias; 3].concat());
            assert_eq!(run(&a, &b, None, engine), vec![0.0; 12]);
            // M = 0 and N = 0 leave out (empty) alone.
            let a0 = Dense::random(&mut rng, 0, 5);
            let b5 = Dense::random(&mut rng, 5, 4);
            assert!(run(&a0, &b5, None, engine).is_empty());
            let a5 = Dense::random(&mut rng, 2, 5);
            let b0 = Dense::random(&mut rng, 5, 0);
            assert!(run(&a5, &b0, None, engine).is_empty());
        }
    }

    #[test]
    fn shape_and_kernel_errors_name_the_argument() {
        let a = [0.0f32; 6];
        let mut o = [0.0f32; 6];
        let av = MatRef::new("a", &a, 2, 3, 3).unwrap();
        let bv = MatRef::new("b", &a, 2, 3, 3).unwrap();
        let ov = MatMut::new("out", &mut o, 2, 3, 3).unwrap();
        let err = matmul(av, bv, ov, None, Engine::Portable).unwrap_err();
        assert!(err.to_string().starts_with("b must have 3 rows"), "{err}");
        let bv = MatRef::new("b", &a, 3, 2, 2).unwrap();
        let ov = MatMut::new("out", &mut o, 3, 2, 2).unwrap();
        let err = matmul(av, bv, ov, None, Engine::Portable).unwrap_err();
        assert!(
            err.to_string().starts_with("out must have shape (2, 2)"),
            "{err}"
        );
        let ov = MatMut::new("out", &mut o, 2, 2, 2).unwrap();
        let err = matmul(av, bv, ov, Some(&a[..3]), Engine::Portable).unwrap_err();
        assert!(
            err.to_string().starts_with("bias must have 2 elements"),
            "{err}"
        );
        let err = MatRef::new("a", &a, 2, 3, 4).unwrap_err();
        assert!(err.to_string().starts_with("a needs 7 elements"), "{err}");
        let err = MatRef::new("a", &a, 2, 3, 2).unwrap_err();
        assert!(
            err.to_string().starts_with("a rows must not overlap"),
            "{err}"
        );
        let ov = MatMut::new("out", &mut o, 2, 2, 2).unwrap();
        let err = matmul(av, bv, ov, None, Engine::Avx512Bf16).unwrap_err();
        assert!(err.to_string().contains("'portable-f32'"), "{err}");
        assert_eq!(engine("portable-f32"), Ok(Engine::Portable));
        assert_eq!(engine("auto"), Ok(engines()[0]));
        let msg = engine("avx512-bf16").unwrap_err().to_string();
        assert!(
            msg.contains("'auto', 'avx512-f32', 'avx2-f32', 'portable-f32'"),
            "{msg}"
        );
        assert!(msg.contains("\"avx512-bf16\""), "{msg}");
    }
}
