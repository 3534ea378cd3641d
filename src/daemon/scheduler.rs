//! The scheduler: one supervised task per rollout, and their mailboxes. A task that fails (its
//! state cannot be loaded: a [`TaskError`], returned, never a panic, so a build with
//! `panic = "abort"` keeps running) or that panics (a bug) is
//! restarted after a growing pause (1 s, doubling, at most 30 s), logged, counted in
//! `canaryd_rollout_task_restarts_total` and alerted on; it is never silently gone. The mailbox
//! outlives restarts, so commands sent meanwhile wait for the new task; senders never wait, and
//! a mailbox whose task has ended, or that holds [`MAILBOX`] messages already, refuses. It also
//! hands out the turns to analyse (a few per query permit), so the work under way, and the
//! memory it holds, stays bounded however many rollouts are due at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Shared;
pub use super::mailbox::MAILBOX;
use super::mailbox::{CloseOnDrop, Mailbox, Msg};
use super::runner::{Runner, alert};
use crate::backoff::Backoff;
use crate::rollout::{EventKind, Severity};

/// The first pause before restarting a failed task; it doubles up to [`MAX_BACKOFF`] (see
/// [`Backoff`]).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Analyses under way at once, per permitted metric query in flight
/// (`[scheduler] max_concurrent_queries`): enough to keep every permit busy, few enough that an
/// overloaded daemon does not hold the partial answers of every due analysis at once.
const ANALYSES_PER_QUERY_PERMIT: usize = 4;

type Mailboxes = BTreeMap<String, Arc<Mailbox>>;

/// Why a rollout's task ended before its work was done; its supervisor restarts it.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The rollout's stored state cannot be read (written by another version, say, or the
    /// store failed); a later attempt may succeed once the operator fixes it.
    #[error("cannot load the state of rollout `{rollout}`: {detail}")]
    LoadState { rollout: String, detail: String },
}

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

    /// Send a message to one rollout's task. `false` when it has none, its task has ended or
    /// its mailbox is full.
    pub fn send(&self, name: &str, msg: Msg) -> bool {
        let mailbox = self.lock_mailboxes().get(name).cloned();
        mailbox.is_some_and(|m| m.send(msg))
    }

    /// Tell every task the rules changed.
    pub fn rules_changed(&self) {
        let mailboxes: Vec<_> = self.lock_mailboxes().values().cloned().collect();
        for m in mailboxes {
            m.send(Msg::RulesChanged);
        }
    }

    /// Start the supervised task of rollout `name` (whose rule must be loaded).
    pub fn spawn(&self, shared: &Arc<Shared>, name: &str, shutdown: &CancellationToken) {
        let mailbox = Arc::new(Mailbox::default());
        self.lock_mailboxes()
            .insert(name.to_string(), Arc::clone(&mailbox));
        let closer = CloseOnDrop(mailbox);
        let for_task = Arc::clone(shared);
        // One copy of the name, shared by the supervisor and its two closures.
        let name: Arc<str> = Arc::from(name);
        let owned = Arc::clone(&name);
        let token = shutdown.clone();
        // The closure holds the closer, and lives exactly as long as the task.
        let make = move || {
            let shared = Arc::clone(&for_task);
            let name = Arc::clone(&owned);
            let mailbox = Arc::clone(&closer.0);
            let token = token.clone();
            async move {
                let Some(rule) = shared.rules.load().get(&name) else {
                    return Ok(());
                };
                // Boxed, and borrowed by `run`: a runner held by value here, then moved into
                // `run`'s future, is stored three times over in the task.
                let runner = Runner::new(Arc::clone(&shared), name.to_string(), rule)
                    .await
                    .map(Box::new);
                match runner {
                    Ok(mut runner) => {
                        runner.run(mailbox, token).await;
                        Ok(())
                    }
                    Err(detail) => Err(TaskError::LoadState {
                        rollout: name.to_string(),
                        detail,
                    }),
                }
            }
        };
        let for_alerts = Arc::clone(shared);
        // Spawned as it is rather than awaited inside another async block, where it would be
        // stored twice in the task (once as the block's capture, once as what it awaits).
        let supervised = supervise(
            Arc::clone(&name),
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
        );
        let handle = tokio::spawn(supervised);
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

/// Run `make()` until it returns `Ok` or `shutdown` is cancelled; restart it after an error or a
/// panic, with backoff (from `first_backoff`, doubling), calling `on_restart` with a message
/// each time. Errors are how a task asks for a restart; catching panics is the safety net for
/// bugs (and does nothing in a `panic = "abort"` build).
/// (A plain function returning an async block: an `async fn` keeps a second copy of its
/// arguments in its future, for the whole life of the rollout's task.)
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn stores its arguments twice in its future"
)]
pub fn supervise<F, Fut, E, P, PFut>(
    name: Arc<str>,
    first_backoff: Duration,
    make: F,
    shutdown: CancellationToken,
    on_restart: P,
) -> impl Future<Output = ()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
    P: Fn(String) -> PFut,
    PFut: Future<Output = ()>,
{
    async move {
        let backoff = Backoff::new(first_backoff, MAX_BACKOFF);
        let mut restarts: u32 = 0;
        loop {
            // The rollout's work runs inside this same tokio task, which is all a rollout costs
            // while idle; a panic while polling it is caught here, and the work dropped and made
            // anew. (A second task per rollout, to catch its panic from outside, cost 10 MB at
            // 10,000 rollouts.)
            let (how, detail) = match AssertUnwindSafe(make()).catch_unwind().await {
                Ok(Ok(())) => return,
                Ok(Err(error)) => ("failed", error.to_string()),
                Err(panic) => {
                    let detail = match panic.downcast::<String>() {
                        Ok(s) => *s,
                        Err(p) => p
                            .downcast::<&str>()
                            .map(|s| (*s).to_string())
                            .unwrap_or_else(|_| "unknown panic".to_string()),
                    };
                    ("panicked", detail)
                }
            };
            let pause = backoff.delay(restarts);
            let message = format!(
                "The task of rollout `{name}` {how} ({detail}); restarting it in {} ms.",
                pause.as_millis()
            );
            tracing::error!(rollout = %name, "{message}");
            on_restart(message).await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            restarts = restarts.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
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
                Ok::<(), TaskError>(())
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

    #[tokio::test(start_paused = true)]
    async fn a_task_that_fails_to_load_its_state_is_restarted_and_reported_like_a_panic() {
        let runs = Arc::new(AtomicUsize::new(0));
        let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = Arc::clone(&runs);
        let make = move || {
            let r = Arc::clone(&r);
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 3 {
                    return Err(TaskError::LoadState {
                        rollout: "web".into(),
                        detail: "unknown phase".into(),
                    });
                }
                Ok(())
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
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        let reports = reports.lock().unwrap();
        // The same backoff, doubling, as after a panic.
        assert_eq!(
            *reports,
            [10, 20, 40].map(|ms| format!(
                "The task of rollout `web` failed (cannot load the state of rollout `web`: \
                 unknown phase); restarting it in {ms} ms."
            ))
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
                async {
                    Err::<(), _>(TaskError::LoadState {
                        rollout: "web".into(),
                        detail: "always".into(),
                    })
                }
            },
            token,
            |_| async {},
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
