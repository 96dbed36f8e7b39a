//! Helpers that stay hot between calls: after its last task a helper spins for [`LINGER`]
//! waiting for the next call's job before it goes back to sleep in the rayon pool.
//!
//! Waking a sleeping rayon worker takes tens of µs, longer than a whole B = 1 search; a
//! lingering helper joins a new job within a few hundred ns. A job is offered on a board
//! (one mutex, one generation counter); `offer` returns how many lingering helpers are bound
//! to join it, so the caller spawns only the missing ones. A helper leaves only under the
//! board's lock after checking that no job was offered since it started lingering, so a
//! counted helper always joins. The board holds the job weakly: it never keeps a finished
//! call's data alive.
//!
//! Lingering only pays when calls come back to back; spinning while the caller is away
//! takes a core from whatever else runs (a co-running torch job loses up to 15 % of a core
//! when a search runs every millisecond and each call leaves its helpers spinning 150 µs).
//! So a helper lingers only while calls are dense: the callers keep a running average of the
//! idle time between the end of a parallel call and the next offer ([`call_ended`],
//! [`offer`]), and a helper that finishes its work while that average exceeds [`LINGER`]
//! goes straight back to sleep (the next call then wakes it the ordinary way).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How long a helper spins for the next job after finishing one.
pub const LINGER: Duration = Duration::from_micros(150);

/// Reference instant for the atomics below (nanoseconds since it).
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// When the last parallel call ended (ns since `EPOCH`; 0: none yet).
static LAST_END: AtomicU64 = AtomicU64::new(0);
/// Running average (weight 1/4 per call) of the idle time between calls, in ns.
static IDLE_AVERAGE: AtomicU64 = AtomicU64::new(0);

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Records the end of a parallel call (the start of the idle time `offer` measures).
pub fn call_ended() {
    LAST_END.store(now_ns().max(1), Ordering::Relaxed);
}

/// Folds the idle time since the last call ended into the running average.
fn record_idle() {
    let end = LAST_END.load(Ordering::Relaxed);
    if end == 0 {
        return;
    }
    let idle = now_ns().saturating_sub(end);
    let avg = IDLE_AVERAGE.load(Ordering::Relaxed);
    IDLE_AVERAGE.store((3 * (avg / 4)).saturating_add(idle / 4), Ordering::Relaxed);
}

/// True while calls come back to back (average idle time within [`LINGER`]).
pub fn calls_are_dense() -> bool {
    IDLE_AVERAGE.load(Ordering::Relaxed) <= LINGER.as_nanos() as u64
}

/// A job helpers can join: claims and runs tasks until none is left.
pub trait Work: Send + Sync {
    fn help(&self);
}

struct Board {
    generation: u64,
    job: Option<Weak<dyn Work>>,
    /// Helpers lingering on `generation` (not yet counted by an offer).
    idle: usize,
}

static BOARD: Mutex<Board> = Mutex::new(Board {
    generation: 0,
    job: None,
    idle: 0,
});
/// Mirror of `Board::generation`, polled without the lock.
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn lock() -> MutexGuard<'static, Board> {
    BOARD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Posts `job` and returns how many lingering helpers will join it.
pub fn offer(job: &Arc<dyn Work>) -> usize {
    record_idle();
    let mut board = lock();
    board.generation += 1;
    board.job = Some(Arc::downgrade(job));
    GENERATION.store(board.generation, Ordering::Release);
    std::mem::take(&mut board.idle)
}

/// Runs `job`, then lingers: joins every job offered within [`LINGER`] of finishing the last.
pub fn help_and_linger(job: Arc<dyn Work>) {
    let mut job = Some(job);
    loop {
        if let Some(current) = job.take() {
            current.help();
        }
        if !calls_are_dense() {
            return;
        }
        #[cfg(test)]
        tests::LINGERED.with(|l| l.set(true));
        // Register as idle on the current generation (or join a job offered meanwhile).
        let mine = {
            let mut board = lock();
            board.idle += 1;
            board.generation
        };
        let deadline = Instant::now() + LINGER;
        let mut spins = 0u32;
        loop {
            if GENERATION.load(Ordering::Acquire) != mine {
                break;
            }
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(64) {
                if Instant::now() >= deadline {
                    break;
                }
                // Give the core away when a thread (maybe this call's caller) waits for it.
                std::thread::yield_now();
            }
        }
        let mut board = lock();
        if board.generation == mine {
            board.idle -= 1;
            return;
        }
        // Counted by the offer that bumped the generation: join its job (if still running).
        job = board.job.as_ref().and_then(Weak::upgrade);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(AtomicUsize);

    thread_local! {
        /// Set when this thread started lingering.
        pub(super) static LINGERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    impl Work for Count {
        fn help(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_lingering_helper_joins_the_next_offer_then_leaves() {
        let _serial = super::super::pool::TEST_THREADS_LOCK.lock();
        // The helper lingers only 150 µs: on a loaded machine this thread may miss the
        // window, so the scenario is retried until an offer finds it lingering.
        for _ in 0..200 {
            // Calls back to back (parallel calls of other tests may change this meanwhile:
            // it is reset at each try).
            LAST_END.store(0, Ordering::Relaxed);
            IDLE_AVERAGE.store(0, Ordering::Relaxed);
            let first = Arc::new(Count(AtomicUsize::new(0)));
            let helper = std::thread::spawn({
                let first: Arc<dyn Work> = first.clone();
                move || help_and_linger(first)
            });
            let second = Arc::new(Count(AtomicUsize::new(0)));
            let mut joined = 0;
            while !helper.is_finished() {
                if lock().idle > 0 {
                    let work: Arc<dyn Work> = second.clone();
                    joined = offer(&work);
                    // Every counted helper joins (helpers of concurrently running tests may
                    // linger on the same board too).
                    while second.0.load(Ordering::SeqCst) < joined {
                        std::hint::spin_loop();
                    }
                    break;
                }
            }
            // Joining returns: the helper left after lingering.
            helper.join().unwrap();
            assert_eq!(first.0.load(Ordering::SeqCst), 1);
            if joined >= 1 {
                return;
            }
        }
        panic!("no offer found the helper lingering in 200 tries");
    }

    #[test]
    fn helpers_do_not_linger_while_calls_are_sparse() {
        let _serial = super::super::pool::TEST_THREADS_LOCK.lock();
        // An average idle time far above LINGER (other tests' calls cannot bring it down
        // within this test: each call only takes a quarter off it).
        IDLE_AVERAGE.store(u64::MAX / 2, Ordering::Relaxed);
        assert!(!calls_are_dense());
        LINGERED.with(|l| l.set(false));
        let first = Arc::new(Count(AtomicUsize::new(0)));
        let work: Arc<dyn Work> = first.clone();
        help_and_linger(work);
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        // It went straight back: it never started lingering.
        assert!(!LINGERED.with(|l| l.get()));
        // Dense calls bring the average down: 1 µs idle gaps.
        LAST_END.store(0, Ordering::Relaxed);
        IDLE_AVERAGE.store(10 * LINGER.as_nanos() as u64, Ordering::Relaxed);
        for _ in 0..40 {
            call_ended();
            record_idle();
        }
        assert!(calls_are_dense());
        IDLE_AVERAGE.store(0, Ordering::Relaxed);
    }
}
