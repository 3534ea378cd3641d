//! One rollout's task: the only place its state changes. Analyses on the rule's schedule, ticks,
//! commands from its mailbox and emergency-stop changes are serialised here; each goes through
//! the pure `step`, is recorded with `commit_step` (state, audit, actuator intent, outbox,
//! analysis in one transaction) and only then acted on: the actuator is called with the intent's
//! idempotency key and the intent completed. A change the actuator could not apply (after its
//! retries) is fed back to the machine as `ActuationFailed`, one more recorded step that puts
//! the weight back to the applied one and pauses for review. A backend error holds the rollout (no analysis and
//! no tick reaches the machine) and alerts after `backend_error_limit` in a row.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::analysis::analyse;
use super::status::RolloutStatus;
use crate::actuator::WeightChange;
use crate::judge::CheckResult;
use crate::notify::Notification;
use crate::rollout::{
    Action, Command, Event, EventKind, Phase, RolloutState, Severity, TriggeredBy, step,
};
use crate::rules::{RolloutRule, Schedule};
use crate::store::{NewAnalysis, NewAudit, NewIntent, NewMessage, Step};

/// How often the machine is told that time passed (stage minimum and maximum durations).
const TICK: Duration = Duration::from_millis(500);
/// Attempts at one weight change before it is recorded as failed.
const ACTUATOR_ATTEMPTS: u32 = 3;

/// What can be sent to a rollout's task.
#[derive(Debug)]
pub enum Msg {
    /// An operator's (or the daemon's) command; the reply says what became of it.
    Command {
        command: Command,
        by: TriggeredBy,
        reason: String,
        reply: Option<oneshot::Sender<Result<RolloutStatus, String>>>,
    },
    /// The rule set was swapped: pick up the new rule (or notice it is gone).
    RulesChanged,
}

/// The serde (kebab-case) name of a value, for the store's string columns.
fn kebab<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_string(),
    }
}

/// The outbox messages one notification becomes for the receivers a rule routes it to.
pub fn messages(rule: &RolloutRule, n: &Notification, index: usize) -> Vec<NewMessage> {
    match crate::notify::outbox_messages(&rule.routes, n, index) {
        Ok(messages) => messages,
        Err(e) => {
            tracing::error!(rollout = %n.rollout, error = %e, "Could not encode a notification.");
            Vec::new()
        }
    }
}

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
            .map_or_else(|| "unknown".to_string(), |s| s.phase.clone()),
        stage: None,
        weight: status.map_or(0, |s| s.weight),
        checks: Vec::new(),
        status_url: shared
            .config
            .server
            .public_url
            .as_deref()
            .map(|base| crate::notify::notification::status_url(base, rollout)),
        commands: vec![format!("canaryd status {rollout}")],
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
    let now = Utc::now();
    let own = rules.iter().find(|r| r.name == rollout).map(Arc::as_ref);
    let n = alert_notification(shared, own, rollout, kind, severity, message, now);
    let queued: Vec<NewMessage> = rules.iter().flat_map(|r| messages(r, &n, 0)).collect();
    let store = shared.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        queued
            .iter()
            .try_for_each(|m| store.enqueue(m, now).map(|_| ()))
    })
    .await;
    match result {
        Ok(Ok(())) => shared.notify.wake(),
        Ok(Err(e)) => tracing::error!(error = %e, "Could not enqueue an alert."),
        Err(e) => tracing::error!(error = %e, "Could not enqueue an alert."),
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
    let store = shared.store.clone();
    let result = outcome.clone();
    let completed = tokio::task::spawn_blocking(move || {
        store.complete_intent(
            intent_id,
            result.as_ref().map(|_| ()).map_err(String::as_str),
            Utc::now(),
        )
    })
    .await;
    match completed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(rollout = %change.rollout, error = %e, "Could not record the actuator's outcome.")
        }
        Err(e) => {
            tracing::error!(rollout = %change.rollout, error = %e, "Could not record the actuator's outcome.")
        }
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
            if let Err(e) = runner.step_and_act(failed, None).await {
                tracing::error!(rollout = %change.rollout, error = %e, "Could not record the failed re-driven weight change.");
            }
        }
        Err(e) => {
            tracing::error!(rollout = %change.rollout, error = %e, "Could not load the rollout to record its failed weight change.");
        }
    }
}

/// The stage name a weight change belongs to, for actuators.
pub fn stage_label(state: &RolloutState, rule: &RolloutRule) -> String {
    match state.phase.stage().and_then(|s| rule.plan.stages.get(s)) {
        Some(stage) => stage.name.clone(),
        None => crate::daemon::status::phase_name(&state.phase).to_string(),
    }
}

/// One rollout's running task.
pub struct Runner {
    shared: Arc<Shared>,
    name: String,
    rule: Arc<RolloutRule>,
    state: RolloutState,
    backend_errors: u32,
    next_analysis: Instant,
    /// The latest analysis's check results, for the evidence table of notifications.
    evidence: Vec<CheckResult>,
}

impl Runner {
    /// Load the rollout's state (or begin one) and start it if it is new.
    pub async fn new(
        shared: Arc<Shared>,
        name: String,
        rule: Arc<RolloutRule>,
    ) -> Result<Runner, String> {
        let store = shared.store.clone();
        let key = name.clone();
        let stored = tokio::task::spawn_blocking(move || store.rollout::<RolloutState>(&key))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let runner = Runner {
            next_analysis: Instant::now() + first_delay(&rule.schedule),
            shared,
            name,
            rule,
            state: stored.map(|s| s.state).unwrap_or_default(),
            backend_errors: 0,
            evidence: Vec::new(),
        };
        runner.publish();
        Ok(runner)
    }

    fn publish(&self) {
        let status = RolloutStatus::of(&self.name, &self.state, Some(&self.rule));
        self.shared.publish(status);
    }

    /// The task's loop, until shutdown.
    pub async fn run(
        mut self,
        mailbox: Arc<Mutex<mpsc::Receiver<Msg>>>,
        shutdown: CancellationToken,
    ) {
        let mut inbox = mailbox.lock().await;
        let mut emergency = self.shared.emergency.subscribe();
        // An emergency stop in force wins over starting: a new rollout never gets traffic then.
        let at_start = emergency.borrow_and_update().clone();
        self.sync_emergency(&at_start).await;
        if self.state.phase == Phase::Pending {
            let start = Event::command(Command::Start, TriggeredBy::Schedule, "rule file loaded");
            let _ = self.apply(start, None).await;
        }
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let current = self.shared.rules.load().get(&self.name);
            let present = current.is_some();
            if let Some(rule) = current
                && !Arc::ptr_eq(&rule, &self.rule)
            {
                if rule.schedule != self.rule.schedule {
                    self.next_analysis = Instant::now() + first_delay(&rule.schedule);
                }
                self.rule = rule;
                self.publish();
            }
            let active = matches!(
                self.state.phase,
                Phase::Progressing { .. } | Phase::WaitingApproval { .. }
            );
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                changed = emergency.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = emergency.borrow_and_update().clone();
                    self.sync_emergency(&now).await;
                }
                msg = inbox.recv() => match msg {
                    None => return,
                    Some(Msg::RulesChanged) => {
                        if !present {
                            self.pause_removed().await;
                        }
                    }
                    Some(Msg::Command { command, by, reason, reply }) => {
                        let result = self.apply(Event::command(command, by, reason), None).await;
                        if let Some(reply) = reply {
                            let _ = reply.send(result.map(|()| RolloutStatus::of(&self.name, &self.state, Some(&self.rule))));
                        }
                    }
                },
                () = tokio::time::sleep_until(self.next_analysis), if present => {
                    if active {
                        self.analysis().await;
                    }
                    self.next_analysis = Instant::now() + next_delay(&self.rule.schedule);
                }
                _ = ticker.tick(), if present && active && self.backend_errors == 0 => {
                    let _ = self.apply(Event::Tick, None).await;
                }
            }
        }
    }

    async fn sync_emergency(&mut self, emergency: &super::Emergency) {
        let stopped = matches!(self.state.phase, Phase::EmergencyStopped { .. });
        if emergency.active && !stopped {
            let event = Event::command(
                Command::EmergencyStop,
                TriggeredBy::Emergency,
                emergency.reason.clone(),
            );
            let _ = self.apply(event, None).await;
        } else if !emergency.active && stopped {
            let by = TriggeredBy::Operator(emergency.cleared_by.clone());
            let event = Event::command(Command::ClearEmergency, by, "emergency stop cleared");
            let _ = self.apply(event, None).await;
        }
    }

    async fn pause_removed(&mut self) {
        if matches!(
            self.state.phase,
            Phase::Progressing { .. } | Phase::WaitingApproval { .. }
        ) {
            let reason = format!("its rule file {} was removed", self.rule.path.display());
            let _ = self
                .apply(
                    Event::command(Command::Pause, TriggeredBy::Schedule, reason),
                    None,
                )
                .await;
        }
    }

    async fn analysis(&mut self) {
        let Some(source) = self.shared.sources.get(&self.rule.source).cloned() else {
            tracing::error!(rollout = %self.name, source = %self.rule.source, "The rule's source is not configured; holding.");
            return;
        };
        let started = Utc::now();
        match analyse(
            &self.rule,
            source,
            Arc::clone(&self.shared.permits),
            started,
        )
        .await
        {
            Ok(analysed) => {
                if self.backend_errors > 0 {
                    tracing::info!(rollout = %self.name, failed = self.backend_errors, "The metric backend answers again; analyses resume.");
                    self.backend_errors = 0;
                }
                self.shared.metrics.inc(
                    "canaryd_analyses_total",
                    &[
                        ("rollout", &self.name),
                        ("verdict", &analysed.record.outcome),
                    ],
                );
                tracing::info!(rollout = %self.name, outcome = %analysed.record.outcome, score = analysed.record.score, "Analysis judged.");
                self.evidence = analysed.results;
                let _ = self
                    .apply(Event::Analysis(analysed.report), Some(analysed.record))
                    .await;
            }
            Err(e) => {
                self.backend_errors += 1;
                self.shared.metrics.inc(
                    "canaryd_backend_query_errors_total",
                    &[("rollout", &self.name), ("source", &self.rule.source)],
                );
                tracing::warn!(rollout = %self.name, errors = self.backend_errors, error = %e, "The metric backend failed; holding the rollout.");
                if self.backend_errors == self.shared.config.scheduler.backend_error_limit {
                    self.backend_alert(&e.to_string()).await;
                }
            }
        }
    }

    /// Record and route the backend-errors alert: state unchanged, one audit entry.
    async fn backend_alert(&mut self, error: &str) {
        let now = Utc::now();
        let reason = format!(
            "{} analyses in a row failed on metric backend errors; holding at {}% (last: {error})",
            self.backend_errors, self.state.weight
        );
        let audit = NewAudit {
            action: "backend-errors".to_string(),
            previous_weight: Some(self.state.weight),
            new_weight: Some(self.state.weight),
            reason: reason.clone(),
            triggered_by: TriggeredBy::Schedule.to_string(),
        };
        let n = alert_notification(
            &self.shared,
            Some(&self.rule),
            &self.name,
            EventKind::BackendErrors,
            Severity::Warning,
            reason.clone(),
            now,
        );
        let outbox = messages(&self.rule, &n, 0);
        tracing::error!(rollout = %self.name, weight = self.state.weight, "{reason}");
        if let Err(e) = self
            .commit(self.state.clone(), vec![audit], None, outbox, None, now)
            .await
        {
            tracing::error!(rollout = %self.name, error = %e, "Could not record the backend alert.");
        }
    }

    /// Step the machine, record the decision, then act on it. A weight change the actuator
    /// could not apply is fed back to the machine as one more recorded step
    /// (`ActuationFailed`: weight put back, paused for review, critical alert).
    async fn apply(&mut self, event: Event, analysis: Option<NewAnalysis>) -> Result<(), String> {
        if let Some(failed) = self.step_and_act(event, analysis).await? {
            // ActuationFailed never asks for a weight change, so this cannot fail the same way.
            if let Err(e) = self.step_and_act(failed, None).await {
                tracing::error!(rollout = %self.name, error = %e, "Could not record the failed weight change.");
            }
        }
        Ok(())
    }

    /// One step: the machine, the record, then the actuator. Returns the `ActuationFailed`
    /// event to feed next when the actuator could not apply the step's weight change.
    async fn step_and_act(
        &mut self,
        event: Event,
        analysis: Option<NewAnalysis>,
    ) -> Result<Option<Event>, String> {
        let now = Utc::now();
        let (next, actions) = match step(&self.state, &self.rule.plan, event, now) {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(rollout = %self.name, error = %e, "The rollout refused the event.");
                return Err(e.to_string());
            }
        };
        if actions.is_empty() && next == self.state && analysis.is_none() {
            return Ok(None);
        }
        let mut audit = Vec::new();
        let mut intent = None;
        let mut outbox = Vec::new();
        for (seq, action) in actions.iter().enumerate() {
            match action {
                Action::SetWeight { weight, previous } => {
                    let stamp = now
                        .timestamp_nanos_opt()
                        .unwrap_or_else(|| now.timestamp_micros());
                    intent = Some(NewIntent {
                        idempotency_key: format!("{}/{stamp}/{previous}-{weight}", self.name),
                        weight: *weight,
                        previous_weight: *previous,
                    });
                }
                Action::Notify {
                    event,
                    severity,
                    message,
                } => {
                    let ctx = crate::notify::Context {
                        rollout: &self.name,
                        team: &self.rule.team,
                        plan: &self.rule.plan,
                        before: &self.state,
                        after: &next,
                        at: now,
                        evidence: &self.evidence,
                        public_url: self.shared.config.server.public_url.as_deref(),
                    };
                    let n = Notification::from_action(&ctx, *event, *severity, message);
                    outbox.extend(messages(&self.rule, &n, seq));
                }
                Action::Audit {
                    action,
                    previous_weight,
                    new_weight,
                    reason,
                    triggered_by,
                } => {
                    audit.push(NewAudit {
                        action: kebab(action),
                        previous_weight: Some(*previous_weight),
                        new_weight: Some(*new_weight),
                        reason: reason.clone(),
                        triggered_by: triggered_by.to_string(),
                    });
                }
            }
        }
        let has_messages = !outbox.is_empty();
        let intent_id = self
            .commit(next.clone(), audit.clone(), intent.clone(), outbox, analysis, now)
            .await
            .map_err(|e| {
                tracing::error!(rollout = %self.name, error = %e, "Could not record the step; nothing was done.");
                e
            })?;
        self.state = next;
        self.publish();
        if has_messages {
            self.shared.notify.wake();
        }
        for a in &audit {
            tracing::info!(
                rollout = %self.name,
                stage = self.state.phase.stage().map(|s| s + 1),
                weight = a.new_weight,
                action = %a.action,
                by = %a.triggered_by,
                "{}", a.reason
            );
        }
        if let (Some(id), Some(intent)) = (intent_id, intent) {
            let change = WeightChange {
                rollout: self.name.clone(),
                stage: stage_label(&self.state, &self.rule),
                weight: intent.weight,
                previous_weight: intent.previous_weight,
                reason: audit.last().map(|a| a.reason.clone()).unwrap_or_default(),
                idempotency_key: intent.idempotency_key,
            };
            if let Err(error) = actuate(&self.shared, &self.rule.actuator, id, change).await {
                return Ok(Some(Event::ActuationFailed {
                    attempted: intent.weight,
                    previous: intent.previous_weight,
                    error,
                }));
            }
        }
        Ok(None)
    }

    async fn commit(
        &self,
        state: RolloutState,
        audit: Vec<NewAudit>,
        intent: Option<NewIntent>,
        outbox: Vec<NewMessage>,
        analysis: Option<NewAnalysis>,
        at: DateTime<Utc>,
    ) -> Result<Option<i64>, String> {
        let store = self.shared.store.clone();
        let name = self.name.clone();
        let fingerprint = super::fingerprint(&self.rule);
        tokio::task::spawn_blocking(move || {
            let mut s = Step::new(&name, &state, &fingerprint, at);
            s.audit = audit;
            s.intent = intent;
            s.outbox = outbox;
            s.analysis = analysis;
            store.commit_step(&s).map(|c| c.intent_id)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

/// The wait before a rollout's first analysis.
fn first_delay(schedule: &Schedule) -> Duration {
    next_delay(schedule)
}

/// The wait until the next analysis.
fn next_delay(schedule: &Schedule) -> Duration {
    match schedule {
        Schedule::Every(d) => *d,
        Schedule::Cron { cron, .. } => {
            let now = Utc::now();
            cron.find_next_occurrence(&now, false)
                .ok()
                .and_then(|next| (next - now).to_std().ok())
                .unwrap_or(Duration::from_secs(60))
        }
    }
}
