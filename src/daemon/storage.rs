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

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::notify::Notification;
use crate::rollout::{EventKind, Severity};
use crate::store::{Fault, StoreError};

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
