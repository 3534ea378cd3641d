//! The scheduler: one supervised task per rollout, and their mailboxes. A task that panics is
//! restarted after a growing pause (1 s, doubling, at most 30 s), logged, counted in
//! `canaryd_rollout_task_restarts_total` and alerted on; it is never silently gone. The mailbox
//! outlives restarts, so commands sent meanwhile wait for the new task. It also hands out the
//! turns to analyse (a few per query permit), so the work under way, and the memory it holds,
//! stays bounded however many rollouts are due at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Shared;
use super::runner::{Msg, Runner, alert};
use crate::rollout::{EventKind, Severity};

/// The first pause before restarting a panicked task; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Messages a rollout's mailbox holds before senders wait. Messages are boxed: a channel
/// allocates its slots a block at a time, and a block of boxes is a few hundred bytes per rollout
/// where a block of messages would be a few kilobytes.
const MAILBOX: usize = 64;
/// Analyses under way at once, per permitted metric query in flight
/// (`[scheduler] max_concurrent_queries`): enough to keep every permit busy, few enough that an
/// overloaded daemon does not hold the partial answers of every due analysis at once.
const ANALYSES_PER_QUERY_PERMIT: usize = 4;

type Mailboxes = BTreeMap<String, mpsc::Sender<Box<Msg>>>;

/// The running rollout tasks.
#[derive(Debug, Default)]
pub struct Scheduler {
    mailboxes: std::sync::Mutex<Mailboxes>,
    handles: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Turns to run an analysis, shared by every rollout (fair, first come first served).
    analyses: std::sync::OnceLock<Arc<Semaphore>>,
}

impl Scheduler {
    /// The turns to run an analysis: [`ANALYSES_PER_QUERY_PERMIT`] per query permit, sized on
    /// first use.
    pub fn analysis_turns(&self, max_concurrent_queries: usize) -> Arc<Semaphore> {
        Arc::clone(self.analyses.get_or_init(|| {
            Arc::new(Semaphore::new(
                max_concurrent_queries.max(1) * ANALYSES_PER_QUERY_PERMIT,
            ))
        }))
    }

    fn lock_mailboxes(&self) -> std::sync::MutexGuard<'_, Mailboxes> {
        self.mailboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a task runs for this rollout.
    pub fn has(&self, name: &str) -> bool {
        self.lock_mailboxes().contains_key(name)
    }

    /// Send a message to one rollout's task. `false` when it has none or its mailbox is gone.
    pub async fn send(&self, name: &str, msg: Msg) -> bool {
        let sender = self.lock_mailboxes().get(name).cloned();
        match sender {
            Some(s) => s.send(Box::new(msg)).await.is_ok(),
            None => false,
        }
    }

    /// Tell every task the rules changed.
    pub async fn rules_changed(&self) {
        let senders: Vec<_> = self.lock_mailboxes().values().cloned().collect();
        for s in senders {
            let _ = s.send(Box::new(Msg::RulesChanged)).await;
        }
    }

    /// Start the supervised task of rollout `name` (whose rule must be loaded).
    pub fn spawn(&self, shared: &Arc<Shared>, name: &str, shutdown: &CancellationToken) {
        let (tx, rx) = mpsc::channel(MAILBOX);
        let mailbox = Arc::new(Mutex::new(rx));
        self.lock_mailboxes().insert(name.to_string(), tx);
        let for_task = Arc::clone(shared);
        let owned = name.to_string();
        let token = shutdown.clone();
        let make = move || {
            let shared = Arc::clone(&for_task);
            let name = owned.clone();
            let mailbox = Arc::clone(&mailbox);
            let token = token.clone();
            async move {
                let Some(rule) = shared.rules.load().get(&name) else {
                    return;
                };
                match Runner::new(Arc::clone(&shared), name.clone(), rule).await {
                    Ok(runner) => runner.run(mailbox, token).await,
                    Err(e) => panic!("cannot load the state of rollout `{name}`: {e}"),
                }
            }
        };
        let for_alerts = Arc::clone(shared);
        let name = name.to_string();
        let span = tracing::info_span!("rollout", rollout = %name);
        let handle = tokio::spawn(
            supervise(
                name.clone(),
                FIRST_BACKOFF,
                make,
                shutdown.clone(),
                move |message| {
                    let shared = Arc::clone(&for_alerts);
                    let name = name.clone();
                    // Boxed: the supervisor waits in its task for the rollout's whole life, and
                    // should not carry room for the alert's future meanwhile.
                    Box::pin(async move {
                        shared
                            .metrics
                            .inc("canaryd_rollout_task_restarts_total", &[("rollout", &name)]);
                        let rules = shared.rules.load().get(&name).into_iter().collect();
                        alert(
                            &shared,
                            rules,
                            &name,
                            EventKind::TaskRestarted,
                            Severity::Critical,
                            message,
                        )
                        .await;
                    })
                },
            )
            .instrument(span),
        );
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(handle);
    }

    /// Wait for every task to finish (after shutdown was cancelled), at most `limit`; the ones
    /// still running then are aborted (their last step is either recorded or not at all).
    pub async fn drain(&self, limit: Duration) {
        let handles: Vec<_> = std::mem::take(
            &mut *self
                .handles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let aborts: Vec<_> = handles.iter().map(JoinHandle::abort_handle).collect();
        let all = async {
            for h in handles {
                let _ = h.await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("Some rollout tasks did not finish in time; stopping them.");
            for a in aborts {
                a.abort();
            }
        }
    }
}

/// Run `make()` until it returns normally or `shutdown` is cancelled; restart it after a panic,
/// with backoff (from `first_backoff`, doubling), calling `on_panic` with a message each time.
pub async fn supervise<F, Fut, P, PFut>(
    name: String,
    first_backoff: Duration,
    make: F,
    shutdown: CancellationToken,
    on_panic: P,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
    P: Fn(String) -> PFut,
    PFut: Future<Output = ()>,
{
    let mut backoff = first_backoff;
    loop {
        // The rollout's work runs inside this same tokio task, which is all a rollout costs
        // while idle; a panic while polling it is caught here, and the work dropped and made
        // anew. (A second task per rollout, to catch its panic from outside, cost 10 MB at
        // 10,000 rollouts.)
        match AssertUnwindSafe(make()).catch_unwind().await {
            Ok(()) => return,
            Err(panic) => {
                let detail = match panic.downcast::<String>() {
                    Ok(s) => *s,
                    Err(p) => p
                        .downcast::<&str>()
                        .map(|s| (*s).to_string())
                        .unwrap_or_else(|_| "unknown panic".to_string()),
                };
                let message = format!(
                    "The task of rollout `{name}` panicked ({detail}); restarting it in {} ms.",
                    backoff.as_millis()
                );
                tracing::error!(rollout = %name, "{message}");
                on_panic(message).await;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panicking_task_is_restarted_and_reported() {
        let runs = Arc::new(AtomicUsize::new(0));
        let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = Arc::clone(&runs);
        let make = move || {
            let r = Arc::clone(&r);
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
            }
        };
        let rep = Arc::clone(&reports);
        supervise(
            "web".into(),
            Duration::from_millis(10),
            make,
            CancellationToken::new(),
            move |m| {
                rep.lock().unwrap().push(m);
                async {}
            },
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let reports = reports.lock().unwrap();
        assert_eq!(reports.len(), 2);
        assert!(
            reports[0].contains("`web` panicked (boom)"),
            "{}",
            reports[0]
        );
        assert!(
            reports[1].contains("restarting it in 20 ms"),
            "{}",
            reports[1]
        );
    }

    #[tokio::test]
    async fn shutdown_stops_restarts() {
        let token = CancellationToken::new();
        token.cancel();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&runs);
        supervise(
            "web".into(),
            Duration::from_millis(10),
            move || {
                r.fetch_add(1, Ordering::SeqCst);
                async { panic!("always") }
            },
            token,
            |_| async {},
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
