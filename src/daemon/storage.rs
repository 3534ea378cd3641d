//! The state database's health as the daemon acts on it. The store latches a [`Fault`] when its
//! database file is deleted or replaced under it, or SQLite fails at the storage level, and from
//! then on writes nothing (see `store::health`). Here a task looks every [`CHECK_EVERY`] (writes
//! look before each batch as well) and, the first time it finds one, reports it everywhere an
//! operator looks: an error log line, `canaryd_state_database_healthy 0`, systemd's `STATUS=`,
//! and a critical `storage-failed` alert sent straight to the receivers the rules route it to
//! (the outbox is in the failed database). `/readyz` answers 503 with the cause from then on;
//! the runners stop analysing and ticking, and commands answer 503. It acts on nothing else:
//! nothing is recorded, no actuator is called, until an operator restores the database and
//! restarts the daemon.
//!
//! It also keeps the database bounded: every `[retention] prune_every` of the daemon's clock
//! ([`prune`]) it has the store drop the history `[retention]` does not keep (the runs still
//! under way are read from the rollouts' published statuses) and give the space back, and
//! counts what it did in `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::notify::Notification;
use crate::rollout::AuditAction;
use crate::rollout::{EventKind, Severity};
use crate::store::{Fault, Pruned, Retention, StoreError};

/// How often the database's files are looked at (two `stat`s).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the alert may take to reach one receiver.
const SEND_LIMIT: Duration = Duration::from_secs(10);

/// The sentence `/readyz`, the logs, systemd and the alert give for `fault`.
pub fn explain(fault: &Fault) -> String {
    StoreError::Failed {
        fault: fault.clone(),
    }
    .to_string()
}

/// Look for a fault until shutdown; report the first one found and stop looking.
pub async fn watch(shared: Arc<Shared>, shutdown: CancellationToken) {
    shared
        .metrics
        .set("canaryd_state_database_healthy", &[], 1.0);
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match shared.store.call(|s| Ok::<_, StoreError>(s.check())).await {
            Ok(Ok(())) => {}
            Ok(Err(fault)) => {
                report(&shared, &fault).await;
                return;
            }
            Err(e) => tracing::warn!(error = %e, "Could not check the state database."),
        }
    }
}

/// Tell the log, the metrics, systemd and the receivers.
async fn report(shared: &Shared, fault: &Fault) {
    let message = explain(fault);
    tracing::error!(database = %shared.store.path().display(), "{message}");
    shared
        .metrics
        .set("canaryd_state_database_healthy", &[], 0.0);
    crate::systemd::status(&format!("NOT READY: {message}"));
    send_alert(shared, message).await;
}

/// Send the alert to every receiver a loaded rule routes `storage-failed` to, each once.
async fn send_alert(shared: &Shared, message: String) {
    let now = shared.clock.now();
    let (kind, severity) = (EventKind::StorageFailed, Severity::Critical);
    let mut names: Vec<String> = shared
        .rules
        .load()
        .all()
        .iter()
        .flat_map(|rule| crate::notify::receivers_for(&rule.routes, kind, severity))
        .collect();
    names.sort();
    names.dedup();
    let notification = Notification::daemon(
        kind,
        severity,
        message,
        "canaryd/daemon/state-database".to_string(),
        now,
        shared.config.server.public_url.as_deref(),
    );
    let receivers = shared.notify.receivers();
    for name in names {
        let Some(receiver) = receivers.get(&name) else {
            tracing::error!(receiver = %name, "Cannot send the storage alert: the receiver is not built.");
            continue;
        };
        let key = format!("canaryd/storage-failed/{}/{name}", now.timestamp_millis());
        let sent =
            tokio::time::timeout(SEND_LIMIT, receiver.notifier.send(&notification, &key)).await;
        match sent {
            Ok(Ok(())) => tracing::info!(receiver = %name, "Storage alert sent."),
            Ok(Err(e)) => {
                tracing::error!(receiver = %name, error = %e, "Could not send the storage alert.")
            }
            Err(_) => {
                tracing::error!(receiver = %name, "Could not send the storage alert in time.")
            }
        }
    }
}

/// The audit actions written with every analysis rather than for a decision: retention drops
/// them with their analyses.
const ROUTINE: [AuditAction; 2] = [
    AuditAction::AnalysisRecorded,
    AuditAction::IgnoredDuringEmergency,
];

/// The store's retention policy from the config.
pub fn retention(config: &crate::config::RetentionConfig) -> Retention {
    Retention {
        keep_all_for: config.keep_all_for,
        keep_one_per: config.keep_one_per,
        finished_for: config.finished_runs_for,
        routine_actions: ROUTINE
            .iter()
            .filter_map(|a| match serde_json::to_value(a) {
                Ok(serde_json::Value::String(name)) => Some(name),
                _ => None,
            })
            .collect(),
    }
}

/// The phases of a run still under way: its history is not a finished run's yet.
const UNDER_WAY: [&str; 5] = [
    "pending",
    "progressing",
    "waiting-approval",
    "paused",
    "emergency-stopped",
];

/// Prune the history every `[retention] prune_every` of the daemon's time, until shutdown. A
/// failed store is left alone (it writes nothing any more).
pub async fn prune(shared: Arc<Shared>, shutdown: CancellationToken) {
    let every = shared.config.retention.prune_every;
    let policy = retention(&shared.config.retention);
    let start = tokio::time::Instant::now() + every;
    let mut tick = tokio::time::interval_at(start, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if shared.store.fault().is_some() {
            continue;
        }
        prune_once(&shared, &policy, shared.clock.now()).await;
    }
}

/// One pass: drop what `policy` does not keep at `now`, and count it.
pub async fn prune_once(shared: &Shared, policy: &Retention, now: DateTime<Utc>) -> Option<Pruned> {
    let open: std::collections::BTreeSet<(String, u32)> = shared
        .statuses()
        .into_iter()
        .filter(|s| UNDER_WAY.contains(&s.phase))
        .map(|s| (s.name, s.run))
        .collect();
    let policy = policy.clone();
    let pruned = shared
        .store
        .call(move |store| {
            store.prune(&policy, now, &|rollout, run| {
                open.contains(&(rollout.to_string(), run))
            })
        })
        .await;
    let m = &shared.metrics;
    match pruned {
        Ok(pruned) => {
            m.add(
                "canaryd_store_pruned_analyses_total",
                &[],
                pruned.analyses_deleted as f64,
            );
            m.set(
                "canaryd_store_last_prune_timestamp_seconds",
                &[],
                now.timestamp() as f64,
            );
            if pruned.analyses_deleted > 0 {
                tracing::info!(
                    runs = pruned.runs,
                    analyses = pruned.analyses_deleted,
                    audit = pruned.audit_deleted,
                    freed_bytes = pruned.bytes_freed,
                    "Pruned the history past its retention."
                );
            }
            Some(pruned)
        }
        Err(e) => {
            m.inc("canaryd_store_write_errors_total", &[("op", "prune")]);
            tracing::error!(error = %e, "Could not prune the history; the database keeps growing until a prune succeeds.");
            None
        }
    }
}
