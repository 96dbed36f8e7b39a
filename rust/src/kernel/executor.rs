//! Runs independent tasks on the caller's thread plus the helper pool, tolerating stragglers.
//!
//! On a busy machine a helper thread can be descheduled in the middle of a task for
//! milliseconds; waiting for it would make a parallel call slower than a sequential one. Tasks
//! here are pure (they read shared immutable data and return a value), so the caller, once no
//! unclaimed task is left, waits for running tasks only about twice its own average task time
//! and then runs any unfinished task itself. The first result stored for a task wins; a late
//! duplicate is dropped. Shared data is owned by the tasks' closure (`'static`), so a
//! straggler that finishes after the call returned touches nothing the caller freed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::pool;

/// Shortest wait for running helper tasks before the caller duplicates them.
const MIN_WAIT: Duration = Duration::from_micros(50);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Shared<T, F> {
    task: F,
    count: usize,
    next: AtomicUsize,
    slots: Vec<Mutex<Option<T>>>,
    finished: Mutex<usize>,
    changed: Condvar,
}

impl<T, F: Fn(usize) -> T> Shared<T, F> {
    fn claim(&self) -> Option<usize> {
        let t = self.next.fetch_add(1, Ordering::Relaxed);
        (t < self.count).then_some(t)
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
            *lock(&self.finished) += 1;
            self.changed.notify_all();
        }
    }
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
        count,
        next: AtomicUsize::new(0),
        slots: (0..count).map(|_| Mutex::new(None)).collect(),
        finished: Mutex::new(0),
        changed: Condvar::new(),
    });
    for _ in 0..helpers.current_num_threads().min(count - 1) {
        let shared = Arc::clone(&shared);
        helpers.spawn(move || {
            while let Some(t) = shared.claim() {
                shared.execute(t);
            }
        });
    }
    let start = Instant::now();
    let mut mine = 0u32;
    while let Some(t) = shared.claim() {
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
    let finished = lock(&shared.finished);
    let (finished, _) = shared
        .changed
        .wait_timeout_while(finished, wait, |n| *n < count)
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    drop(finished);
    (0..count)
        .map(|t| {
            shared.execute(t);
            match lock(&shared.slots[t]).take() {
                Some(result) => result,
                None => (shared.task)(t),
            }
        })
        .collect()
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
