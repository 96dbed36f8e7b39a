//! The kernel's private rayon pool of helper threads: built lazily, rebuilt only when its size
//! changes. A parallel call runs on the caller's thread plus `num_threads() − 1` helpers
//! (`executor.rs`).
//!
//! Thread count: the last [`set_num_threads`], else the `OLTR_NUM_THREADS` environment
//! variable (read at the first call), else the number of available cores. The global rayon pool is never configured.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rayon::ThreadPool;

use super::error::KernelError;

/// Environment variable read for the default thread count.
pub const ENV_VAR: &str = "OLTR_NUM_THREADS";

struct PoolState {
    requested: Option<usize>,
    pool: Option<Arc<ThreadPool>>,
}

static STATE: Mutex<PoolState> = Mutex::new(PoolState {
    requested: None,
    pool: None,
});

fn lock() -> MutexGuard<'static, PoolState> {
    // A panic while holding the lock cannot leave the state inconsistent: recover it.
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `OLTR_NUM_THREADS`, else the available cores; read once (finding the cores reads cgroup
/// files, ~30 µs, too slow for every call).
fn default_threads() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        std::env::var(ENV_VAR)
            .ok()
            .and_then(|raw| raw.trim().parse::<usize>().ok())
            .filter(|&n| n >= 1)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// Use `n >= 1` threads from the next kernel call on.
pub fn set_num_threads(n: i64) -> Result<(), KernelError> {
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or(KernelError::BadThreads { n })?;
    lock().requested = Some(n);
    Ok(())
}

/// The number of threads the kernel uses.
pub fn num_threads() -> usize {
    lock().requested.unwrap_or_else(default_threads)
}

/// The helper pool, `num_threads() − 1` threads; `None` for one thread or if the pool cannot
/// be built (the caller then works alone).
pub fn helpers() -> Option<Arc<ThreadPool>> {
    let mut state = lock();
    let want = state.requested.unwrap_or_else(default_threads) - 1;
    if want == 0 {
        return None;
    }
    if let Some(pool) = &state.pool {
        if pool.current_num_threads() == want {
            return Some(Arc::clone(pool));
        }
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(want)
        .thread_name(|i| format!("oltr-core-{i}"))
        // A panicking task leaves its slot empty; the caller then runs it itself.
        .panic_handler(|_| {})
        .build()
        .ok()
        .map(Arc::new);
    state.pool.clone_from(&built);
    built
}

/// Serialises the tests that change the process-wide thread count.
#[cfg(test)]
pub(crate) static TEST_THREADS_LOCK: Mutex<()> = Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_positive_counts_and_resizes() {
        let _serial = TEST_THREADS_LOCK.lock();
        assert!(set_num_threads(0).is_err());
        assert!(set_num_threads(-3).is_err());
        set_num_threads(3).unwrap();
        assert_eq!(num_threads(), 3);
        assert_eq!(helpers().unwrap().current_num_threads(), 2);
        set_num_threads(1).unwrap();
        assert!(helpers().is_none());
        set_num_threads(2).unwrap();
        assert_eq!(helpers().unwrap().current_num_threads(), 1);
    }
}
