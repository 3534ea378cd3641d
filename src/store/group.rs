//! Group commit on a dedicated thread: callers hand in jobs, one writer thread runs every job
//! waiting at that moment as one batch, and each caller gets back the result of its own job.
//! It owns only the hand-over (a queue, the thread and the replies); it knows nothing of SQL:
//! the store passes the function that runs a batch.
//!
//! The thread takes the first job off the queue and calls the batch function with an iterator
//! that yields that job and then every job queued by then, up to [`MAX_BATCH`]; the function
//! pulls them when it is ready to write (the store takes the writer connection first, so jobs
//! arriving while another write holds it join the batch). Callers arriving during a batch queue
//! up for the next one. A caller waits either blocking ([`Group::run`], for threads) or as a
//! future ([`Group::submit`], for async tasks, which then need no blocking-pool thread: one
//! thread hand-off per batch instead of several per job). A batch that panics gives its callers
//! the `lost` result and the thread carries on with the next.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// The most jobs one batch takes; later ones wait for the next batch.
pub(super) const MAX_BATCH: usize = 256;

/// Where a job's result goes.
enum Reply<R> {
    Blocking(mpsc::SyncSender<R>),
    Async(oneshot::Sender<R>),
}

impl<R> Reply<R> {
    /// A caller that stopped waiting does not care: its result is dropped.
    fn send(self, result: R) {
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

struct Pending<J, R> {
    job: J,
    reply: Reply<R>,
}

/// The running group commit; dropping it lets the thread finish the queued jobs, then stops
/// and waits for it.
pub(super) struct Group<J, R> {
    queue: Option<Sender<Pending<J, R>>>,
    /// Jobs handed in and not yet taken into a batch.
    waiting: Arc<AtomicUsize>,
    lost: Arc<dyn Fn() -> R + Send + Sync>,
    thread: Option<JoinHandle<()>>,
}

impl<J, R> std::fmt::Debug for Group<J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<J: Send + 'static, R: Send + 'static> Group<J, R> {
    /// Starts the thread `name`. `run` gets each batch as an iterator, in arrival order, and
    /// must return one result per job it took, in the same order (jobs it does not take after
    /// the first stay queued for the next batch). A missing result counts as `lost`, which also
    /// makes the result of every job of a batch that panicked.
    pub(super) fn start(
        name: &str,
        mut run: impl FnMut(&mut dyn Iterator<Item = J>) -> Vec<R> + Send + 'static,
        lost: impl Fn() -> R + Send + Sync + 'static,
    ) -> std::io::Result<Group<J, R>> {
        let lost: Arc<dyn Fn() -> R + Send + Sync> = Arc::new(lost);
        let on_thread = Arc::clone(&lost);
        let (queue, jobs) = mpsc::channel::<Pending<J, R>>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&waiting);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                while let Ok(first) = jobs.recv() {
                    counted.fetch_sub(1, Ordering::Relaxed);
                    let mut replies = Vec::new();
                    let mut batch = Batch {
                        first: Some(first),
                        jobs: &jobs,
                        waiting: &counted,
                        replies: &mut replies,
                    };
                    let results = catch_unwind(AssertUnwindSafe(|| run(&mut batch)));
                    let mut results = results.unwrap_or_default().into_iter();
                    for reply in replies {
                        reply.send(results.next().unwrap_or_else(|| on_thread()));
                    }
                }
            })?;
        Ok(Group {
            queue: Some(queue),
            waiting,
            lost,
            thread: Some(thread),
        })
    }

    fn hand_in(&self, job: J, reply: Reply<R>) -> Result<(), Reply<R>> {
        let Some(queue) = &self.queue else {
            return Err(reply);
        };
        self.waiting.fetch_add(1, Ordering::Relaxed);
        queue.send(Pending { job, reply }).map_err(|e| {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            e.0.reply
        })
    }

    /// Runs `job` in the next batch and waits, blocking this thread, for its result.
    pub(super) fn run(&self, job: J) -> R {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.hand_in(job, Reply::Blocking(tx)).is_err() {
            return (self.lost)();
        }
        rx.recv().unwrap_or_else(|_| (self.lost)())
    }

    /// Hands `job` in for the next batch; the future gives its result, without holding a
    /// thread while it waits.
    pub(super) fn submit(&self, job: J) -> impl Future<Output = R> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let handed = self.hand_in(job, Reply::Async(tx)).is_ok();
        let lost = Arc::clone(&self.lost);
        async move {
            if !handed {
                return lost();
            }
            rx.await.unwrap_or_else(|_| lost())
        }
    }

    /// How many jobs wait for a batch to take them.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl<J, R> Drop for Group<J, R> {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One batch: its first job, then whatever is queued when the batch function asks.
struct Batch<'a, J, R> {
    first: Option<Pending<J, R>>,
    jobs: &'a Receiver<Pending<J, R>>,
    waiting: &'a AtomicUsize,
    replies: &'a mut Vec<Reply<R>>,
}

impl<J, R> Iterator for Batch<'_, J, R> {
    type Item = J;

    fn next(&mut self) -> Option<J> {
        if self.replies.len() >= MAX_BATCH {
            return None;
        }
        let pending = match self.first.take() {
            Some(first) => first,
            None => {
                let next = self.jobs.try_recv().ok()?;
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                next
            }
        };
        self.replies.push(pending.reply);
        Some(pending.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn doubling() -> Group<u64, u64> {
        Group::start(
            "test-group",
            |jobs| jobs.map(|j| j * 2).collect(),
            || u64::MAX,
        )
        .unwrap()
    }

    #[test]
    fn a_lone_caller_gets_its_result() {
        let group = doubling();
        assert_eq!(group.run(21), 42);
    }

    #[tokio::test]
    async fn an_async_caller_gets_its_result_without_blocking() {
        let group = doubling();
        let (a, b) = tokio::join!(group.submit(1), group.submit(2));
        assert_eq!((a, b), (2, 4));
    }

    #[test]
    fn jobs_queued_behind_a_busy_writer_share_one_batch_and_get_their_own_results() {
        let gate = Arc::new(Mutex::new(()));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let group: Group<u64, u64> = {
            let gate = Arc::clone(&gate);
            let sizes = Arc::clone(&sizes);
            Group::start(
                "test-group",
                move |jobs| {
                    let _held = gate.lock().unwrap();
                    let results: Vec<u64> = jobs.map(|j| j + 1000).collect();
                    sizes.lock().unwrap().push(results.len());
                    results
                },
                || u64::MAX,
            )
            .unwrap()
        };
        let held = gate.lock().unwrap();
        std::thread::scope(|scope| {
            let callers: Vec<_> = (0..16u64)
                .map(|n| {
                    let group = &group;
                    scope.spawn(move || (n, group.run(n)))
                })
                .collect();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while group.queued() < 15 {
                assert!(std::time::Instant::now() < deadline, "callers never queued");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            drop(held);
            for caller in callers {
                let (n, got) = caller.join().unwrap();
                assert_eq!(got, n + 1000);
            }
        });
        assert_eq!(*sizes.lock().unwrap(), vec![16]);
    }

    #[test]
    fn a_panicking_batch_loses_only_its_jobs_and_the_thread_carries_on() {
        let group: Group<u32, u32> = Group::start(
            "test-group",
            |jobs| {
                let jobs: Vec<u32> = jobs.collect();
                assert!(!jobs.contains(&13), "unlucky batch");
                jobs
            },
            || 0,
        )
        .unwrap();
        assert_eq!(group.run(13), 0);
        assert_eq!(group.run(5), 5);
    }

    #[test]
    fn a_short_answer_marks_the_missing_jobs_lost() {
        let group: Group<u32, u32> =
            Group::start("test-group", |jobs| jobs.take(0).collect(), || 99).unwrap();
        assert_eq!(group.run(5), 99);
    }

    #[test]
    fn dropping_the_group_finishes_the_queued_jobs_first() {
        let done = Arc::new(AtomicUsize::new(0));
        let group: Group<u32, u32> = {
            let done = Arc::clone(&done);
            Group::start(
                "test-group",
                move |jobs| {
                    let results: Vec<u32> = jobs.collect();
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    done.fetch_add(results.len(), Ordering::SeqCst);
                    results
                },
                || 0,
            )
            .unwrap()
        };
        let futures: Vec<_> = (0..10).map(|n| group.submit(n)).collect();
        drop(group);
        assert_eq!(done.load(Ordering::SeqCst), 10);
        drop(futures);
    }
}
