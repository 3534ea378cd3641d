//! What a runner does in the world outside the machine, and what the daemon does without a
//! running task: call the actuator (and re-drive an intent a crash left pending), enqueue alerts
//! that are not part of a step, and pause a stored rollout whose rule file is gone.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::records::{audit_row, messages};
use super::{Rows, Runner};
use crate::actuator::WeightChange;
use crate::daemon::Shared;
use crate::daemon::status::RolloutStatus;
use crate::notify::Notification;
use crate::rollout::{Event, EventKind, Plan, RolloutState, Severity, StartPolicy, step};
use crate::rules::RolloutRule;
use crate::store::{NewAudit, NewMessage, Step};

/// Attempts at one weight change before it is recorded as failed.
const ACTUATOR_ATTEMPTS: u32 = 3;

/// A notification that is not part of a step (reload failure, task restart,
/// backend errors): what the rollout's published status says, no evidence table.
pub fn alert_notification(
    shared: &Shared,
    rule: Option<&RolloutRule>,
    rollout: &str,
    kind: EventKind,
    severity: Severity,
    message: String,
    at: DateTime<Utc>,
) -> Notification {
    let status = shared.statuses().into_iter().find(|s| s.name == rollout);
    Notification {
        scope: crate::notify::Scope::Rollout,
        rollout: rollout.to_string(),
        team: rule.map(|r| r.team.clone()).unwrap_or_default(),
        event: kind,
        severity,
        incident: crate::notify::incident_action(kind, severity),
        group_key: crate::notify::group_key(rollout, None, at),
        at,
        message,
        phase: status
            .as_ref()
            .map_or_else(|| "unknown".to_string(), |s| s.phase.to_string()),
        stage: None,
        weight: status.map_or(0, |s| s.weight),
        checks: Vec::new(),
        status_url: shared
            .config
            .server
            .public_url
            .as_deref()
            .map(|base| crate::notify::notification::status_url(base, rollout)),
        commands: vec![crate::notify::command_line::status_line(
            rollout,
            shared.config.server.public_url.as_deref(),
            shared.config.server.reads_need_token,
        )],
    }
}

/// Enqueue an alert that is not part of a step (reload failure, task restart),
/// routed by the given rules, and log it.
pub async fn alert(
    shared: &Shared,
    rules: Vec<Arc<RolloutRule>>,
    rollout: &str,
    kind: EventKind,
    severity: Severity,
    message: String,
) {
    let now = shared.clock.now();
    let own = rules.iter().find(|r| r.name == rollout).map(Arc::as_ref);
    let n = alert_notification(shared, own, rollout, kind, severity, message, now);
    let queued: Vec<NewMessage> = rules.iter().flat_map(|r| messages(r, &n, 0)).collect();
    if let Err(e) = enqueue(shared, queued, now).await {
        tracing::error!(rollout = %rollout, error = %e, "Could not enqueue an alert.");
    }
}

/// The receivers of every loaded rule's routes that take an event of this kind and severity,
/// each once: who hears of the daemon's own trouble.
pub fn daemon_receivers(shared: &Shared, kind: EventKind, severity: Severity) -> Vec<String> {
    let mut receivers: Vec<String> = Vec::new();
    for rule in shared.rules.load().all() {
        for r in crate::notify::receivers_for(&rule.routes, kind, severity) {
            if !receivers.contains(&r) {
                receivers.push(r);
            }
        }
    }
    receivers
}

/// Enqueue `n` for `receivers` (one message each), and log a failure to.
pub async fn enqueue_for(shared: &Shared, n: &Notification, receivers: Vec<String>) {
    let routes = [crate::rules::Route {
        receivers,
        events: vec![n.event],
        min_severity: Severity::Info,
    }];
    let queued = match crate::notify::outbox_messages(&routes, n, 0) {
        Ok(queued) => queued,
        Err(e) => {
            tracing::error!(incident = %n.group_key, error = %e, "Could not encode an alert.");
            return;
        }
    };
    if let Err(e) = enqueue(shared, queued, n.at).await {
        tracing::error!(incident = %n.group_key, error = %e, "Could not enqueue an alert.");
    }
}

/// Resolve the open incidents `select` picks (`Rollout(name)`: every one of that rollout's own):
/// `resolution` (what ended them) goes, as each one's resolve, to every receiver told of it.
/// A resolve the store finds already sent is not sent again.
pub async fn resolve_incidents(shared: &Shared, select: Incidents, resolution: Notification) {
    let listed = shared
        .store
        .call(move |store| match select {
            Incidents::Rollout(name) => store.open_incidents_under(&format!("canaryd/{name}/")),
            Incidents::Key(key) => Ok(store
                .open_incidents_under(&key)?
                .into_iter()
                .filter(|i| i.key == key)
                .collect()),
            Incidents::Under(prefix) => store.open_incidents_under(&prefix),
        })
        .await;
    let open = match listed {
        Ok(open) => open,
        Err(e) => {
            tracing::error!(error = %e, "Could not list the open incidents to resolve.");
            return;
        }
    };
    for incident in open {
        tracing::info!(incident = %incident.key, receivers = incident.receivers.len(),
            "Resolving an incident that is over.");
        let n = resolution.clone().resolving(incident.key);
        enqueue_for(shared, &n, incident.receivers).await;
    }
}

/// Which open incidents [`resolve_incidents`] resolves.
#[derive(Debug, Clone)]
pub enum Incidents {
    /// Every one of this rollout's own (keyed `canaryd/NAME/...`: its stages' problems, its
    /// backend, its task), not its rule file's, which only the file loading again resolves.
    Rollout(String),
    /// The one under exactly this key.
    Key(String),
    /// Every one whose key starts with this.
    Under(String),
}

/// Put alert messages in the outbox (off the async threads) and wake the dispatcher.
pub async fn enqueue(
    shared: &Shared,
    queued: Vec<NewMessage>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let result = shared
        .store
        .call(move |store| {
            queued
                .iter()
                .try_for_each(|m| store.enqueue(m, now).map(|_| ()))
        })
        .await;
    match result {
        Ok(()) => {
            shared.notify.wake();
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Carry out a recorded intent: call the actuator with its idempotency key (a few attempts for
/// retryable failures), then record the outcome. Used for fresh intents and, at start-up, for
/// the ones a crash left pending. The error, when the change could not be applied for good, is
/// for the caller to feed to the rollout's machine (`Event::ActuationFailed`), which puts the
/// recorded weight back, pauses and alerts.
pub async fn actuate(
    shared: &Shared,
    actuator: &str,
    intent_id: i64,
    change: WeightChange,
) -> Result<(), String> {
    let outcome = match shared.actuators.get(actuator) {
        None => Err(format!("actuator `{actuator}` is not configured")),
        Some(act) => {
            let mut attempt = 1;
            loop {
                match act.set_weight(&change).await {
                    Ok(()) => break Ok(()),
                    Err(e) if e.retryable() && attempt < ACTUATOR_ATTEMPTS => {
                        tracing::warn!(rollout = %change.rollout, attempt, error = %e, "Weight change failed; retrying.");
                        tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                        attempt += 1;
                    }
                    Err(e) => break Err(e.to_string()),
                }
            }
        }
    };
    if let Err(e) = &outcome {
        shared.metrics.inc(
            "canaryd_actuator_failures_total",
            &[("rollout", &change.rollout), ("actuator", actuator)],
        );
        tracing::error!(rollout = %change.rollout, weight = change.weight, error = %e, "The actuator failed to set the weight.");
    }
    let result = outcome.clone();
    let now = shared.clock.now();
    let completed = shared
        .store
        .call(move |store| {
            store.complete_intent(
                intent_id,
                result.as_ref().map(|_| ()).map_err(String::as_str),
                now,
            )
        })
        .await;
    if let Err(e) = completed {
        tracing::error!(rollout = %change.rollout, error = %e, "Could not record the actuator's outcome.")
    }
    outcome
}

/// Re-drive an intent a crash left pending, at start-up before the rollout's task runs. If the
/// actuator still cannot apply it, the rollout's machine is told (`ActuationFailed`), recorded
/// as one more step, exactly as a running task would: the weight goes back to the applied one
/// and the rollout pauses for review with a critical alert.
pub async fn redrive(
    shared: &Arc<Shared>,
    rule: Arc<RolloutRule>,
    intent_id: i64,
    change: WeightChange,
) {
    let Err(error) = actuate(shared, &rule.actuator, intent_id, change.clone()).await else {
        return;
    };
    let failed = Event::ActuationFailed {
        attempted: change.weight,
        previous: change.previous_weight,
        error,
    };
    match Runner::new(Arc::clone(shared), change.rollout.clone(), rule).await {
        Ok(mut runner) => {
            if let Err(e) = runner
                .step_and_act(failed, None, &mut Rows::default())
                .await
            {
                tracing::error!(rollout = %change.rollout, error = %e, "Could not record the failed re-driven weight change.");
            }
        }
        Err(e) => {
            tracing::error!(rollout = %change.rollout, error = %e, "Could not load the rollout to record its failed weight change.");
        }
    }
}

/// A stored rollout whose rule file is gone at start (removed while the daemon was down): a run
/// in progress is paused where it is, with an audit entry, so no rollout sits at a weight with
/// nobody judging it; any other gets the entry only. No task runs for it (no rule, no plan).
pub async fn pause_orphan(
    shared: &Shared,
    name: &str,
    stored: &crate::store::StoredRollout<RolloutState>,
) {
    // The machine needs a plan only to name stages; a rule-less one names them by number.
    let plan = Plan {
        stages: Vec::new(),
        rollback_to: crate::rollout::RollbackTarget::Zero,
        warmup: Duration::ZERO,
        max_inconclusive: 0,
        triggers: Vec::new(),
        start: StartPolicy::Manual,
    };
    let what = "its rule file was removed while the daemon was down".to_string();
    let now = shared.clock.now();
    let (next, actions) = match step(&stored.state, &plan, Event::RuleRemoved { what }, now) {
        Ok(out) => out,
        Err(e) => {
            tracing::error!(rollout = %name, error = %e, "Could not pause a rollout whose rule file is gone.");
            return;
        }
    };
    let audit: Vec<NewAudit> = actions.iter().filter_map(audit_row).collect();
    let mut s = Step::new(name, &next, &stored.rule_fingerprint, now);
    s.audit = audit;
    s.run = next.run.number;
    match shared
        .clock
        .wait_outside(shared.store.submit_step(&s))
        .await
    {
        Ok(_) => {
            tracing::warn!(rollout = %name, weight = next.weight, phase = next.phase.name(), "A stored rollout has no rule file; paused where it is.");
            shared.publish(RolloutStatus::of(name, &next, None));
        }
        Err(e) => {
            tracing::error!(rollout = %name, error = %e, "Could not record the pause of a rollout whose rule file is gone.");
        }
    }
}
