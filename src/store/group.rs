//! Group commit: many threads hand in jobs, one of them (the leader) runs every job waiting at
//! that moment as one batch, and each thread gets back the result of its own job. It owns only
//! the hand-over (a queue, a leader flag and a condition variable); it knows nothing of SQL: the
//! store passes the function that runs a batch.
//!
//! A caller queues its job, then either becomes the leader (no batch is running) or waits. The
//! leader takes the whole queue, runs it without holding the queue's lock, so that callers
//! arriving meanwhile queue up for the next batch, then posts every result and wakes the
//! waiters; one of those whose job is still queued becomes the next leader. A caller returns
//! only once its own job's result is posted, that is once the batch holding it has finished.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The hand-over point of a group commit.
#[derive(Debug)]
pub(super) struct Group<J, R> {
    state: Mutex<State<J, R>>,
    done: Condvar,
}

#[derive(Debug)]
struct State<J, R> {
    next_ticket: u64,
    queue: Vec<(u64, J)>,
    results: HashMap<u64, R>,
    /// Tickets of a batch whose leader panicked: their callers get the `lost` result.
    lost: HashSet<u64>,
    leading: bool,
}

impl<J, R> Default for Group<J, R> {
    fn default() -> Self {
        Group {
            state: Mutex::new(State {
                next_ticket: 0,
                queue: Vec::new(),
                results: HashMap::new(),
                lost: HashSet::new(),
                leading: false,
            }),
            done: Condvar::new(),
        }
    }
}

impl<J, R> Group<J, R> {
    fn lock(&self) -> MutexGuard<'_, State<J, R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many jobs wait for a leader to take them.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Runs `job` in a batch with whatever other jobs are waiting, and returns its result.
    /// `run` gets the batch in arrival order and must return one result per job, in the same
    /// order (a shorter answer counts the missing ones as lost). `lost` makes the result of a
    /// job whose batch never finished (its leader panicked).
    pub(super) fn submit(
        &self,
        job: J,
        run: impl FnOnce(Vec<J>) -> Vec<R>,
        lost: impl Fn() -> R,
    ) -> R {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push((ticket, job));
        let mut run = Some(run);
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result;
            }
            if state.lost.remove(&ticket) {
                return lost();
            }
            if !state.leading
                && let Some(run) = run.take()
            {
                state.leading = true;
                let (tickets, jobs): (Vec<u64>, Vec<J>) =
                    std::mem::take(&mut state.queue).into_iter().unzip();
                drop(state);
                let mut guard = Leading {
                    group: self,
                    tickets,
                };
                let results = run(jobs);
                let tickets = std::mem::take(&mut guard.tickets);
                drop(guard);
                state = self.lock();
                let mut posted = 0;
                for (ticket, result) in tickets.iter().zip(results) {
                    state.results.insert(*ticket, result);
                    posted += 1;
                }
                state.lost.extend(tickets.into_iter().skip(posted));
                state.leading = false;
                self.done.notify_all();
                continue;
            }
            state = self
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Hands the lead back if the batch panics, marking its jobs lost so that their callers return
/// instead of waiting forever. On a normal finish the leader empties `tickets` first and posts
/// the results itself.
struct Leading<'a, J, R> {
    group: &'a Group<J, R>,
    tickets: Vec<u64>,
}

impl<J, R> Drop for Leading<'_, J, R> {
    fn drop(&mut self) {
        if self.tickets.is_empty() {
            return;
        }
        let mut state = self.group.lock();
        state.lost.extend(self.tickets.drain(..));
        state.leading = false;
        self.group.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_lone_caller_runs_its_own_batch() {
        let group: Group<u32, u32> = Group::default();
        assert_eq!(
            group.submit(20, |jobs| jobs.iter().map(|j| j + 1).collect(), || 0),
            21
        );
    }

    #[test]
    fn concurrent_callers_each_get_their_own_result_and_share_batches() {
        let group: Arc<Group<u64, u64>> = Arc::new(Group::default());
        let batches = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16u64)
            .map(|t| {
                let group = Arc::clone(&group);
                let batches = Arc::clone(&batches);
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let job = t * 1000 + i;
                        let got = group.submit(
                            job,
                            |jobs| {
                                batches.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                jobs.iter().map(|j| j * 2).collect()
                            },
                            || u64::MAX,
                        );
                        assert_eq!(got, job * 2);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!(
            batches < 16 * 200,
            "{batches} batches for 3200 jobs: nothing was grouped"
        );
    }

    #[test]
    fn a_panicking_batch_loses_only_its_jobs_and_frees_the_lead() {
        let group: Group<u32, u32> = Group::default();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            group.submit(1, |_| panic!("batch failed"), || 0)
        }));
        assert!(panicked.is_err());
        assert_eq!(group.submit(5, |jobs| jobs, || 0), 5);
    }

    #[test]
    fn a_short_answer_marks_the_missing_jobs_lost() {
        let group: Group<u32, u32> = Group::default();
        assert_eq!(group.submit(5, |_| Vec::new(), || 99), 99);
    }
}
