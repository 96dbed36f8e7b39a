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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How long a helper spins for the next job after finishing one.
pub const LINGER: Duration = Duration::from_micros(150);

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
}
