//! Delivery: the [`Dispatcher`] task claims due messages from the store's outbox, waits for the
//! receiver's rate limit, sends, and records the outcome (sent; rescheduled with backoff and
//! jitter on a retryable failure; failed for good on a permanent one or when it gives up). It
//! owns the retry and rate-limit policy; it must not build notifications nor choose receivers
//! (they are in the outbox rows already). Due times, leases and ages are read from the clock it
//! is given ([`Dispatcher::with_clock`], the daemon's), waits and polls run on tokio's time.
//!
//! # Guarantees
//! - **Never lost**: messages live in the store; a claimed message is leased for
//!   [`DispatchSettings::lease`] and becomes due again if the dispatcher dies before recording
//!   the outcome (a crash, a kill, a failed write). A lease belongs to the process that took
//!   it: a dispatcher starting releases the leases of the process before it, so after a crash
//!   messages go out again within a poll, not a lease.
//! - **In order per incident**: of an incident's messages to one receiver, the store hands out
//!   only the earliest pending one; a resolve supersedes a trigger not yet delivered, so a
//!   trigger retried after a failure never reopens an incident after its resolve.
//! - **Sent once in normal operation**: a message is marked sent right after the receiver
//!   accepted it. A send is cut off at half the lease, so the lease never runs out under a send
//!   in progress and no second dispatcher claims it meanwhile.
//! - **At-least-once in the window** between the receiver's acceptance and the mark: see the
//!   idempotency keys in [`super`].
//! - **Over the rate limit, delayed, never dropped**: a message waits for a token in memory (up
//!   to [`DispatchSettings::max_rate_wait`]) or, if the wait is longer, is rescheduled to when
//!   the token will be there. Such a reschedule counts as an attempt in the store (each claim
//!   does), which the attempt limit includes.
//! - **Giving up**: after [`DispatchSettings::max_attempts`] attempts or once older than
//!   [`DispatchSettings::max_age`], a retryable failure marks the message failed.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::Receivers;
use super::rate::Bucket;
use super::{Notification, NotifyError};
use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::store::{Message, OutboxCounts, Store, StoreError};

/// The delay before attempt `attempts + 1`: `base · 2^(attempts−1)` capped at `max`, of which
/// the upper half is scaled by `jitter` in [0, 1] ("equal jitter", see [`Backoff`]).
pub fn backoff(attempts: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    Backoff::new(base, max).delay_with_jitter(attempts.saturating_sub(1), jitter)
}

/// How the dispatcher paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchSettings {
    /// How often to look for due messages when not woken.
    pub poll_interval: Duration,
    /// How long a claimed message is hidden from other claims. Sends are cut off at half of it.
    pub lease: Duration,
    /// Sends in flight at once.
    pub max_in_flight: usize,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Give up after this many attempts.
    pub max_attempts: u32,
    /// Give up on messages older than this.
    pub max_age: Duration,
    /// The longest a message waits in memory for a rate-limit token; longer waits reschedule.
    /// Capped at a quarter of the lease.
    pub max_rate_wait: Duration,
    /// On shutdown, how long sends in flight may finish before they are abandoned (to be
    /// retried after their lease).
    pub shutdown_grace: Duration,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings {
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(120),
            max_in_flight: 16,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(600),
            max_attempts: 20,
            max_age: Duration::from_secs(24 * 3600),
            max_rate_wait: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Counters since the dispatcher started, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyMetrics {
    /// Messages delivered.
    pub sent: u64,
    /// Messages given up on (permanent error, too many attempts, too old, unknown receiver).
    pub failed: u64,
    /// Failed attempts rescheduled for a retry.
    pub retried: u64,
    /// Messages rescheduled because their receiver was over its rate limit.
    pub rate_limited: u64,
}

impl NotifyMetrics {
    /// Prometheus text exposition of these counters and the outbox's counts.
    pub fn render(&self, outbox: &OutboxCounts) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        };
        counter(
            "canaryd_notifications_sent_total",
            "Notifications delivered since start.",
            self.sent,
        );
        counter(
            "canaryd_notifications_failed_total",
            "Notifications given up on since start.",
            self.failed,
        );
        counter(
            "canaryd_notifications_retried_total",
            "Failed notification attempts rescheduled since start.",
            self.retried,
        );
        counter(
            "canaryd_notifications_rate_limited_total",
            "Notifications delayed by a receiver's rate limit since start.",
            self.rate_limited,
        );
        out.push_str(
            "# HELP canaryd_notifications_outbox Notifications in the outbox by status.\n\
             # TYPE canaryd_notifications_outbox gauge\n",
        );
        for (status, n) in [
            ("pending", outbox.pending),
            ("sent", outbox.sent),
            ("failed", outbox.failed),
        ] {
            out.push_str(&format!(
                "canaryd_notifications_outbox{{status=\"{status}\"}} {n}\n"
            ));
        }
        out
    }
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    rate_limited: AtomicU64,
}

struct Shared {
    store: Store,
    receivers: ArcSwap<Receivers>,
    settings: DispatchSettings,
    counters: Counters,
    buckets: Mutex<HashMap<String, Bucket>>,
    wake: Notify,
    clock: Clock,
}

/// The delivery task. Build it, keep a [`DispatcherHandle`], then `tokio::spawn(d.run(token))`.
pub struct Dispatcher {
    shared: Arc<Shared>,
}

/// Talks to a running dispatcher: wake it, swap its receivers, read its counters.
#[derive(Clone)]
pub struct DispatcherHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DispatcherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherHandle")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl DispatcherHandle {
    /// Look for due messages now (after a step enqueued some), instead of at the next poll.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// Use these receivers from the next message on (a reload). Rate-limit buckets of
    /// receivers whose limit is unchanged are kept.
    pub fn set_receivers(&self, receivers: Receivers) {
        self.shared.receivers.store(Arc::new(receivers));
        self.wake();
    }

    /// The receivers in use, for an alert that cannot wait in the outbox (the state database
    /// itself failed).
    pub fn receivers(&self) -> Arc<Receivers> {
        self.shared.receivers.load_full()
    }

    /// The counters since start.
    pub fn metrics(&self) -> NotifyMetrics {
        let c = &self.shared.counters;
        NotifyMetrics {
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
        }
    }
}

impl Dispatcher {
    /// A dispatcher on the system clock.
    pub fn new(store: Store, receivers: Receivers, settings: DispatchSettings) -> Dispatcher {
        Dispatcher::with_clock(store, receivers, settings, Clock::system())
    }

    /// A dispatcher reading the time from `clock` (when a message is due, sent, retried):
    /// the daemon's own, so an embedding test controls it.
    pub fn with_clock(
        store: Store,
        receivers: Receivers,
        settings: DispatchSettings,
        clock: Clock,
    ) -> Dispatcher {
        Dispatcher {
            shared: Arc::new(Shared {
                store,
                receivers: ArcSwap::from_pointee(receivers),
                settings,
                counters: Counters::default(),
                buckets: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                clock,
            }),
        }
    }

    pub fn handle(&self) -> DispatcherHandle {
        DispatcherHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Delivers until `token` is cancelled; then lets sends in flight finish for
    /// `shutdown_grace` and abandons the rest (their leases expire and they are retried).
    pub async fn run(self, token: CancellationToken) {
        let shared = self.shared;
        let settings = shared.settings.clone();
        let mut in_flight: JoinSet<()> = JoinSet::new();
        info!(
            max_in_flight = settings.max_in_flight,
            lease_s = settings.lease.as_secs(),
            "Notification dispatcher started."
        );
        // Messages a previous process had claimed when it died (or stopped with sends in
        // flight) are due now, not when their leases would have run out.
        let now = shared.clock.now();
        match blocking(&shared.store, move |s| s.release_claims(now)).await {
            Ok(0) => {}
            Ok(released) => info!(
                released,
                "Notifications a previous process was sending are due again now."
            ),
            Err(e) => warn!(error = %e, "Cannot release the notifications a previous process \
                was sending; they are due again when their leases run out."),
        }
        while !token.is_cancelled() {
            let room = settings.max_in_flight.saturating_sub(in_flight.len());
            // A failed store answers every claim with the same error: the daemon reports it once.
            if room > 0 && shared.store.fault().is_none() {
                match claim(&shared, room).await {
                    Ok(messages) => {
                        for message in messages {
                            in_flight.spawn(deliver(Arc::clone(&shared), message));
                        }
                    }
                    Err(e) => warn!(error = %e, "Cannot claim due notifications; will retry."),
                }
            }
            let full = in_flight.len() >= settings.max_in_flight;
            tokio::select! {
                _ = token.cancelled() => break,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(settings.poll_interval), if !full => {}
            }
        }
        let drained = tokio::time::timeout(settings.shutdown_grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                abandoned = in_flight.len(),
                "Shutting down with notifications in flight; they will be retried after their lease."
            );
            in_flight.abort_all();
        }
        info!("Notification dispatcher stopped.");
    }
}

/// One store call from the dispatcher, on the store's async façade; its error as text.
async fn blocking<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    store.call(f).await.map_err(|e| e.to_string())
}

async fn claim(shared: &Arc<Shared>, room: usize) -> Result<Vec<Message>, String> {
    let store = shared.store.clone();
    let lease = shared.settings.lease;
    let now = shared.clock.now();
    blocking(&store, move |s| s.claim_due(now, lease, room)).await
}

/// What became of one attempt.
enum Outcome {
    Sent,
    Retry { at: DateTime<Utc>, error: String },
    Failed { error: String },
}

async fn deliver(shared: Arc<Shared>, message: Message) {
    let outcome = attempt(&shared, &message).await;
    let store = shared.store.clone();
    let id = message.id;
    let c = &shared.counters;
    let (result, counter) = match outcome {
        Outcome::Sent => {
            info!(id, receiver = %message.receiver, event = %message.event,
                attempts = message.attempts, "Notification sent.");
            let now = shared.clock.now();
            (
                blocking(&store, move |s| s.mark_sent(id, now)).await,
                &c.sent,
            )
        }
        Outcome::Retry { at, error } => (
            blocking(&store, move |s| s.reschedule(id, at, &error)).await,
            &c.retried,
        ),
        Outcome::Failed { error } => {
            warn!(id, receiver = %message.receiver, event = %message.event,
                attempts = message.attempts, error = %error, "Notification failed for good.");
            (
                blocking(&store, move |s| s.mark_failed(id, &error)).await,
                &c.failed,
            )
        }
    };
    match result {
        Ok(()) => {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => warn!(id, error = %e,
            "Cannot record the outcome of a notification; it is due again after its lease."),
    }
}

async fn attempt(shared: &Shared, message: &Message) -> Outcome {
    let settings = &shared.settings;
    let notification: Notification = match serde_json::from_value(message.payload.clone()) {
        Ok(n) => n,
        Err(e) => {
            return Outcome::Failed {
                error: format!("the stored payload is not a notification: {e}"),
            };
        }
    };
    let receivers = shared.receivers.load();
    let Some(receiver) = receivers.get(&message.receiver).cloned() else {
        return Outcome::Failed {
            error: format!(
                "receiver `{}` is not configured (known: {})",
                message.receiver,
                receivers.names().join(", ")
            ),
        };
    };
    drop(receivers);

    let max_wait = settings.max_rate_wait.min(settings.lease / 4);
    let reserved = {
        let mut buckets = shared
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        let bucket = buckets
            .entry(message.receiver.clone())
            .or_insert_with(|| Bucket::new(receiver.rate, now));
        if bucket.rate() != receiver.rate {
            *bucket = Bucket::new(receiver.rate, now);
        }
        bucket.reserve(now, max_wait)
    };
    match reserved {
        Ok(wait) if !wait.is_zero() => {
            debug!(id = message.id, receiver = %message.receiver, wait_ms = wait.as_millis() as u64,
                "Waiting for the receiver's rate limit.");
            tokio::time::sleep(wait).await;
        }
        Ok(_) => {}
        Err(wait) => {
            shared.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Outcome::Retry {
                at: shared.clock.now() + wait,
                error: format!(
                    "receiver `{}` is over its rate limit ({}/min, burst {}); delayed {}s",
                    message.receiver,
                    receiver.rate.per_minute,
                    receiver.rate.burst,
                    wait.as_secs()
                ),
            };
        }
    }

    let deadline = settings.lease / 2;
    let sent = tokio::time::timeout(
        deadline,
        receiver.notifier.send(&notification, &message.dedupe_key),
    )
    .await
    .unwrap_or_else(|_| {
        Err(NotifyError::Timeout {
            target: format!("receiver `{}`", message.receiver),
            after: deadline,
        })
    });
    let error = match sent {
        Ok(()) => return Outcome::Sent,
        Err(e) => e,
    };
    if !error.retryable() {
        return Outcome::Failed {
            error: format!("permanent error: {error}"),
        };
    }
    let now = shared.clock.now();
    let age = (now - message.created_at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    if message.attempts >= settings.max_attempts || age >= settings.max_age {
        return Outcome::Failed {
            error: format!(
                "gave up after {} attempts over {}s: {error}",
                message.attempts,
                age.as_secs()
            ),
        };
    }
    let jitter = (std::collections::hash_map::RandomState::new()
        .hash_one((message.id, message.attempts))
        % 10_000) as f64
        / 10_000.0;
    let mut delay = backoff(
        message.attempts,
        settings.backoff_base,
        settings.backoff_max,
        jitter,
    );
    if let Some(asked) = error.retry_after() {
        delay = delay.max(asked.min(settings.backoff_max));
    }
    debug!(id = message.id, receiver = %message.receiver, attempts = message.attempts,
        delay_ms = delay.as_millis() as u64, error = %error, "Notification attempt failed; will retry.");
    Outcome::Retry {
        at: now + delay,
        error: error.to_string(),
    }
}
