//! Runs independent tasks on the caller's thread plus the helper pool, tolerating stragglers.
//!
//! On a busy machine a helper thread can be descheduled in the middle of a task for
//! milliseconds; waiting for it would make a parallel call slower than a sequential one. Tasks
//! here are pure (they read shared immutable data and return a value), so the caller, once no
//! unclaimed task is left, waits for running tasks only about twice its own average task time
//! (spinning at first, then asleep) and then runs any unfinished task itself. Helpers linger
//! hot for the next call's job (`linger.rs`). The first result stored for a task wins; a late
//! duplicate is dropped. Shared data is owned by the tasks' closure (`'static`), so a
//! straggler that finishes after the call returned touches nothing the caller freed.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::linger::{self, Work};
use super::pool;

/// Shortest wait for running helper tasks before the caller duplicates them.
const MIN_WAIT: Duration = Duration::from_micros(50);
/// The caller spins this long for running helper tasks before it sleeps on the condvar.
const SPIN_WAIT: Duration = Duration::from_micros(30);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Shared<T, F> {
    task: F,
    /// Unclaimed tasks `[front, back)`, packed as `back << 32 | front`: the caller claims from
    /// the front and helpers from the back, so with as many tasks as threads each thread
    /// keeps scanning the same centroid range call after call (it stays in its cache).
    unclaimed: AtomicU64,
    slots: Vec<Mutex<Option<T>>>,
    finished: AtomicUsize,
    /// Set while the caller sleeps on `changed`.
    sleeping: AtomicBool,
    wake: Mutex<()>,
    changed: Condvar,
}

impl<T, F: Fn(usize) -> T> Shared<T, F> {
    fn claim(&self, from_back: bool) -> Option<usize> {
        let mut cur = self.unclaimed.load(Ordering::Relaxed);
        loop {
            let (front, back) = (cur & 0xffff_ffff, cur >> 32);
            if front >= back {
                return None;
            }
            let (next, t) = if from_back {
                ((back - 1) << 32 | front, back - 1)
            } else {
                (back << 32 | (front + 1), front)
            };
            match self.unclaimed.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(t as usize),
                Err(seen) => cur = seen,
            }
        }
    }

    fn is_done(&self, t: usize) -> bool {
        lock(&self.slots[t]).is_some()
    }

    /// Runs task `t` unless its result is already stored; stores the first result.
    fn execute(&self, t: usize) {
        if self.is_done(t) {
            return;
        }
        let result = (self.task)(t);
        let mut slot = lock(&self.slots[t]);
        if slot.is_none() {
            *slot = Some(result);
            drop(slot);
            self.finished.fetch_add(1, Ordering::SeqCst);
            if self.sleeping.load(Ordering::SeqCst) {
                let _guard = lock(&self.wake);
                self.changed.notify_all();
            }
        }
    }

    /// Waits until every task is stored or `wait` has passed: spins first, then sleeps.
    fn wait_finished(&self, count: usize, wait: Duration) {
        let start = Instant::now();
        let spin = wait.min(SPIN_WAIT);
        while self.finished.load(Ordering::Acquire) < count {
            if start.elapsed() >= spin {
                break;
            }
            for _ in 0..32 {
                std::hint::spin_loop();
            }
        }
        if self.finished.load(Ordering::Acquire) >= count {
            return;
        }
        let guard = lock(&self.wake);
        self.sleeping.store(true, Ordering::SeqCst);
        let left = wait.saturating_sub(start.elapsed());
        let _ = self
            .changed
            .wait_timeout_while(guard, left, |_| {
                self.finished.load(Ordering::SeqCst) < count
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

impl<T, F> Work for Shared<T, F>
where
    T: Send,
    F: Fn(usize) -> T + Send + Sync,
{
    fn help(&self) {
        while let Some(t) = self.claim(true) {
            self.execute(t);
        }
    }
}

/// `parts` nearly equal `[start, end)` ranges of `units` units of `width` items (the last one
/// capped at `n` items): how the kernels cut rows, columns, centroids or queries into tasks.
/// Fewer parts when there are fewer units; one empty range when there is none.
pub fn even_ranges(units: usize, parts: usize, width: usize, n: usize) -> Vec<(usize, usize)> {
    let parts = parts.clamp(1, units.max(1));
    (0..parts)
        .map(|i| {
            let (u0, u1) = (i * units / parts, (i + 1) * units / parts);
            ((u0 * width).min(n), (u1 * width).min(n))
        })
        .collect()
}

/// Results of `task(0..count)` in order. With `parallel` and helper threads configured, the
/// tasks are shared between the caller and the helpers (see the module docs).
pub fn run_tasks<T, F>(count: usize, parallel: bool, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> T + Send + Sync + 'static,
{
    let helpers = if parallel && count > 1 {
        pool::helpers()
    } else {
        None
    };
    let Some(helpers) = helpers else {
        return (0..count).map(task).collect();
    };
    let shared = Arc::new(Shared {
        task,
        unclaimed: AtomicU64::new((count as u64) << 32),
        slots: (0..count).map(|_| Mutex::new(None)).collect(),
        finished: AtomicUsize::new(0),
        sleeping: AtomicBool::new(false),
        wake: Mutex::new(()),
        changed: Condvar::new(),
    });
    let work: Arc<dyn Work> = shared.clone();
    let wanted = helpers.current_num_threads().min(count - 1);
    let lingering = linger::offer(&work);
    for _ in lingering.min(wanted)..wanted {
        let work = Arc::clone(&work);
        helpers.spawn(move || linger::help_and_linger(work));
    }
    drop(work);
    let start = Instant::now();
    let mut mine = 0u32;
    while let Some(t) = shared.claim(false) {
        shared.execute(t);
        mine += 1;
    }
    let elapsed = start.elapsed();
    let wait = if mine > 0 {
        elapsed * 2 / mine
    } else {
        elapsed
    }
    .max(MIN_WAIT);
    shared.wait_finished(count, wait);
    let results = (0..count)
        .map(|t| {
            shared.execute(t);
            match lock(&shared.slots[t]).take() {
                Some(result) => result,
                None => (shared.task)(t),
            }
        })
        .collect();
    linger::call_ended();
    results
}

/// `task(t)` for every `t` in `0..count`, each exactly once, shared between the caller and
/// the helpers as [`run_tasks`] shares them; returns when all have run. Unlike `run_tasks`,
/// `task` may borrow from the caller (it writes disjoint parts of the caller's buffers: the
/// dense products' regions, the head's rows): a task is claimed before it runs, so a late
/// helper never starts one the caller ran, and the call waits for every claimed task to
/// finish, so none runs after it returns. Panics if a task panicked.
pub fn run_scoped<F: Fn(usize) + Sync>(count: usize, parallel: bool, task: &F) {
    /// The borrowed task with its lifetime erased, and the tasks' claims.
    struct Scope {
        task: *const (dyn Fn(usize) + Sync),
        claimed: Vec<AtomicBool>,
        done: AtomicUsize,
        failed: AtomicBool,
    }
    // SAFETY: `task` is `Sync` and only called (by the thread that claimed a task) while
    // `run_scoped` waits below, so it outlives every call.
    unsafe impl Send for Scope {}
    unsafe impl Sync for Scope {}
    /// Counts a claimed task as done even if it panics (then flags the call).
    struct DoneGuard<'a>(&'a Scope);
    impl Drop for DoneGuard<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.failed.store(true, Ordering::SeqCst);
            }
            self.0.done.fetch_add(1, Ordering::Release);
        }
    }
    if count == 0 {
        return;
    }
    let borrowed: *const (dyn Fn(usize) + Sync + '_) = task;
    // SAFETY: only the lifetime changes (same fat pointer); see `Scope`.
    let erased: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(borrowed) };
    let scope = Arc::new(Scope {
        task: erased,
        claimed: (0..count).map(|_| AtomicBool::new(false)).collect(),
        done: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
    });
    let shared = Arc::clone(&scope);
    run_tasks(count, parallel, move |t| {
        if shared.claimed[t].swap(true, Ordering::AcqRel) {
            return;
        }
        let _done = DoneGuard(&shared);
        // SAFETY: task `t` was claimed here, before `run_scoped` stopped waiting (below).
        unsafe { (*shared.task)(t) }
    });
    // `run_tasks` called every task it had no result for: each is claimed; wait for them.
    let mut spins = 0u32;
    while scope.done.load(Ordering::Acquire) < count {
        spins += 1;
        if spins < 1000 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    assert!(!scope.failed.load(Ordering::SeqCst), "a core task panicked");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_every_result_in_order_with_and_without_helpers() {
        let _serial = pool::TEST_THREADS_LOCK.lock();
        pool::set_num_threads(3).unwrap();
        let got = run_tasks(50, true, |t| t * t);
        assert_eq!(got, (0..50).map(|t| t * t).collect::<Vec<_>>());
        let got = run_tasks(7, false, |t| t + 1);
        assert_eq!(got, (1..8).collect::<Vec<_>>());
        assert!(run_tasks(0, true, |t| t).is_empty());
    }

    #[test]
    fn scoped_tasks_run_once_each_and_finish_before_the_call_returns() {
        let _serial = pool::TEST_THREADS_LOCK.lock();
        pool::set_num_threads(2).unwrap();
        // A stalled helper's task is not run again by the caller (it is claimed), and the
        // call waits for it: the borrowed counters see every task exactly once.
        let runs: Vec<AtomicUsize> = (0..6).map(|_| AtomicUsize::new(0)).collect();
        run_scoped(6, true, &|t| {
            let on_helper = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("oltr-core"));
            if on_helper {
                std::thread::sleep(Duration::from_millis(100));
            }
            runs[t].fetch_add(1, Ordering::SeqCst);
        });
        assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1));
        run_scoped(0, true, &|_| unreachable!());
    }

    #[test]
    fn a_stalled_helper_does_not_stall_the_call() {
        let _serial = pool::TEST_THREADS_LOCK.lock();
        pool::set_num_threads(2).unwrap();
        let start = Instant::now();
        // Every task stalls on the helper thread; the caller duplicates the stalled one after a
        // short wait, and its own copy returns at once.
        let got = run_tasks(4, true, move |t| {
            let on_helper = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("oltr-core"));
            if on_helper {
                std::thread::sleep(Duration::from_millis(400));
            }
            t
        });
        assert_eq!(got, vec![0, 1, 2, 3]);
        assert!(
            start.elapsed() < Duration::from_millis(350),
            "{:?}",
            start.elapsed()
        );
    }
}
