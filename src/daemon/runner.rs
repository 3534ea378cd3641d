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
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Shared;
use super::analysis::analyse;
use super::command::CommandError;
use super::status::RolloutStatus;
use crate::actuator::WeightChange;
use crate::notify::Notification;
use crate::notify::notification::CheckRow;
use crate::rollout::{
    Action, AuditAction, Command, Event, EventKind, Phase, Plan, RolloutState, Severity,
    StartPolicy, TriggeredBy, step,
};
use crate::rules::{RolloutRule, Schedule};
use crate::source::SourceError;
use crate::store::{NewAnalysis, NewAudit, NewIntent, NewMessage, NewRun, Step, StoreError};

/// The shortest gap between two ticks (the machine told that time passed): a tick that changed
/// nothing is not repeated sooner than this, however the due time is computed.
const TICK: Duration = Duration::from_millis(500);
/// Past a stage's due time (minimum or maximum duration) the tick fires this much later, so the
/// machine's clock has surely reached it.
const TICK_MARGIN: Duration = Duration::from_millis(5);
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
        /// `start` only: the canary version of the new run (the current one when `None`).
        canary: Option<String>,
        reply: Option<oneshot::Sender<Result<RolloutStatus, CommandError>>>,
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
    if let Err(e) = enqueue(shared, queued, now).await {
        tracing::error!(rollout = %rollout, error = %e, "Could not enqueue an alert.");
    }
}

/// Put alert messages in the outbox (off the async threads) and wake the dispatcher.
pub async fn enqueue(
    shared: &Shared,
    queued: Vec<NewMessage>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let store = shared.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        queued
            .iter()
            .try_for_each(|m| store.enqueue(m, now).map(|_| ()))
    })
    .await;
    match result {
        Ok(Ok(())) => {
            shared.notify.wake();
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
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
    let now = Utc::now();
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
    match shared.store.submit_step(&s).await {
        Ok(_) => {
            tracing::warn!(rollout = %name, weight = next.weight, phase = next.phase.name(), "A stored rollout has no rule file; paused where it is.");
            shared.publish(RolloutStatus::of(name, &next, None));
        }
        Err(e) => {
            tracing::error!(rollout = %name, error = %e, "Could not record the pause of a rollout whose rule file is gone.");
        }
    }
}

/// The audit row an `Action::Audit` is stored as (none for other actions).
fn audit_row(action: &Action) -> Option<NewAudit> {
    match action {
        Action::Audit {
            action,
            previous_weight,
            new_weight,
            reason,
            triggered_by,
        } => Some(NewAudit {
            action: kebab(action),
            previous_weight: Some(*previous_weight),
            new_weight: Some(*new_weight),
            reason: reason.clone(),
            triggered_by: triggered_by.to_string(),
        }),
        Action::SetWeight { .. } | Action::Notify { .. } => None,
    }
}

/// The stage name a weight change belongs to, for actuators.
pub fn stage_label(state: &RolloutState, rule: &RolloutRule) -> String {
    match state.phase.stage().and_then(|s| rule.plan.stages.get(s)) {
        Some(stage) => stage.name.clone(),
        None => crate::daemon::status::phase_name(&state.phase).to_string(),
    }
}

/// The rows of the evidence table a step's notifications carry: those of the analysis being
/// applied, or, for any other step (a tick, a command), those of the rollout's newest recorded
/// analysis, read from the store when the first notification needs them. Nothing is kept
/// between analyses: at thousands of rollouts, a kept table per rollout was a fifth of the
/// daemon's memory.
#[derive(Debug, Default)]
struct Rows(Option<Vec<CheckRow>>);

/// The part of a recorded analysis's evidence that notifications show.
#[derive(serde::Deserialize)]
struct RecordedChecks {
    checks: Vec<crate::judge::CheckResult>,
}

/// One rollout's running task.
pub struct Runner {
    shared: Arc<Shared>,
    name: String,
    rule: Arc<RolloutRule>,
    /// [`super::fingerprint`] of `rule`, stored with every step (computed once per rule).
    fingerprint: super::Fingerprint,
    state: RolloutState,
    /// The rule fingerprint stored with the rollout's last step (none for a new rollout): a
    /// different one at start is a rule change made while the daemon was down.
    stored_fingerprint: Option<String>,
    next_analysis: Instant,
    /// The analysis turn held from the start of an analysis until its step is committed (see
    /// [`Runner::analysis`]); released before the actuator is called.
    turn: Option<OwnedSemaphorePermit>,
}

impl Runner {
    /// Load the rollout's state (or begin one) and start it if it is new.
    pub async fn new(
        shared: Arc<Shared>,
        name: String,
        rule: Arc<RolloutRule>,
    ) -> Result<Runner, String> {
        // A fresh daemon starts thousands of rollouts at once: loading each one's state, and
        // its first step, take an analysis turn, so only a few are under way (and in memory) at
        // a time. The turn is given back when that step is committed, or when the loop starts.
        let turn = shared
            .scheduler
            .analysis_turns(shared.config.scheduler.max_concurrent_queries)
            .acquire_owned()
            .await
            .ok();
        let store = shared.store.clone();
        let key = name.clone();
        let stored = tokio::task::spawn_blocking(move || store.rollout::<RolloutState>(&key))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let runner = Runner {
            next_analysis: Instant::now() + first_delay(&name, &rule.schedule),
            shared,
            name,
            fingerprint: super::fingerprint(&rule),
            rule,
            stored_fingerprint: stored.as_ref().map(|s| s.rule_fingerprint.clone()),
            state: stored.map(|s| s.state).unwrap_or_default(),
            turn,
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
        &mut self,
        mailbox: Arc<super::scheduler::Mailbox>,
        shutdown: CancellationToken,
    ) {
        // The work of each wake-up (an analysis, a step and its commit, an actuator call) is
        // boxed and lives only while it runs: the task of an idle rollout, which is what most
        // of thousands are at any moment, keeps just its loop's state (a few hundred bytes)
        // instead of room for the largest of those futures.
        let mut emergency = self.shared.emergency.subscribe();
        // An emergency stop in force wins over starting: a new rollout never gets traffic then.
        let at_start = emergency.borrow_and_update().clone();
        let span = work_span(&self.name);
        Box::pin(self.sync_emergency(&at_start).instrument(span)).await;
        let span = work_span(&self.name);
        Box::pin(self.at_start(at_start.active).instrument(span)).await;
        self.turn = None;
        // The task sleeps until its next analysis, its next stage deadline (a tick), a message,
        // an emergency-stop change or shutdown: an idle rollout does not wake up.
        let mut last_tick: Option<Instant> = None;
        loop {
            let current = self.shared.rules.load().get(&self.name);
            let present = current.is_some();
            if let Some(rule) = current
                && !Arc::ptr_eq(&rule, &self.rule)
            {
                if rule.schedule != self.rule.schedule {
                    self.next_analysis = Instant::now() + first_delay(&self.name, &rule.schedule);
                }
                let previous = self.fingerprint.to_string();
                self.fingerprint = super::fingerprint(&rule);
                self.rule = rule;
                self.publish();
                let emergency = self.shared.emergency.borrow().active;
                let span = work_span(&self.name);
                Box::pin(self.rule_changed(previous, emergency).instrument(span)).await;
            }
            let active = matches!(
                self.state.phase,
                Phase::Progressing { .. } | Phase::WaitingApproval { .. }
            );
            let tick_at = tick_due(&self.state, &self.rule.plan, Utc::now())
                .map(|due| {
                    let at = Instant::now() + due + TICK_MARGIN;
                    last_tick.map_or(at, |last| at.max(last + TICK))
                })
                .filter(|_| present && active)
                // A failed store records nothing, so nothing is stepped (see `storage`).
                .filter(|_| self.shared.store.fault().is_none());
            let analysis_at = present.then_some(self.next_analysis);
            // One timer for both: the earlier of the next analysis and the next tick.
            let wake_at = match (analysis_at, tick_at) {
                (Some(a), Some(t)) => Some(a.min(t)),
                (a, t) => a.or(t),
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                changed = emergency.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = emergency.borrow_and_update().clone();
                    let span = work_span(&self.name);
                    Box::pin(self.sync_emergency(&now).instrument(span)).await;
                }
                msg = mailbox.recv() => match msg {
                    Msg::RulesChanged => {
                        // Read afresh: `present` predates the swap that sent this message.
                        if self.shared.rules.load().get(&self.name).is_none() {
                            let span = work_span(&self.name);
                            Box::pin(self.pause_removed().instrument(span)).await;
                        }
                    }
                    Msg::Command { command, by, reason, canary, reply } => {
                        let span = work_span(&self.name);
                        let event = self.command_event(command, by, reason, canary);
                        let result = Box::pin(self.apply(event, None).instrument(span)).await;
                        if let Some(reply) = reply {
                            let _ = reply.send(result.map(|()| RolloutStatus::of(&self.name, &self.state, Some(&self.rule))));
                        }
                    }
                },
                () = sleep_until_some(wake_at) => {
                    let now = Instant::now();
                    if analysis_at.is_some_and(|at| at <= now) {
                        self.analysis_due(active).await;
                    } else if tick_at.is_some_and(|at| at <= now) {
                        last_tick = Some(now);
                        let span = work_span(&self.name);
                        let _ = Box::pin(self.apply(Event::Tick, None).instrument(span)).await;
                    }
                }
            }
        }
    }

    /// The next analysis is due: run it (if the rollout is active) in a turn, and schedule the
    /// one after.
    async fn analysis_due(&mut self, active: bool) {
        // A failed store records nothing, so nothing is analysed (see `storage`).
        if active && self.shared.store.fault().is_none() {
            // The turn is awaited before the analysis's future is made: a rollout
            // waiting for its turn holds only its place in the queue.
            let turns = self
                .shared
                .scheduler
                .analysis_turns(self.shared.config.scheduler.max_concurrent_queries);
            // The semaphore is never closed, so acquiring only waits.
            if let Ok(turn) = turns.acquire_owned().await {
                let span = work_span(&self.name);
                Box::pin(self.analysis(turn).instrument(span)).await;
            }
        }
        self.next_analysis = following(self.next_analysis, &self.rule.schedule, Instant::now());
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
        let what = format!(
            "{} was removed or no longer names it",
            self.rule.path.display()
        );
        let _ = self.apply(Event::RuleRemoved { what }, None).await;
    }

    /// One analysis, run in its `turn`: at most a few analyses per query permit are under way
    /// at once, from their first query until their step is committed. Without turns, an
    /// overloaded daemon starts every due analysis, and each holds the answers it already has
    /// while its remaining queries wait for permits behind everybody else's (then its record
    /// while the store catches up): memory grows with the number of rollouts instead of with
    /// the work the daemon can actually do at once.
    async fn analysis(&mut self, turn: OwnedSemaphorePermit) {
        let Some(source) = self.shared.sources.get(&self.rule.source).cloned() else {
            tracing::error!(rollout = %self.name, source = %self.rule.source, "The rule's source is not configured; holding.");
            let error = format!("source `{}` is not configured", self.rule.source);
            self.backend_failed(&error).await;
            return;
        };
        self.turn = Some(turn);
        let started = Utc::now();
        // A run started with another version than the rule file's (`start --canary`) queries
        // the canary by its own version.
        let run = &self.state.run.canary;
        let rule = match run.is_empty() || *run == self.rule.sides.canary {
            true => Arc::clone(&self.rule),
            false => {
                let mut rule = RolloutRule::clone(&self.rule);
                rule.sides.canary = run.clone();
                Arc::new(rule)
            }
        };
        let analysed = analyse(
            &rule,
            source,
            Arc::clone(&self.shared.permits),
            started,
            self.state.weight,
        )
        .await;
        self.analysed(analysed).await;
        self.turn = None;
    }

    /// Judge the outcome of one analysis: step the machine on it, or count a backend error.
    async fn analysed(&mut self, analysed: Result<super::analysis::Analysed, SourceError>) {
        match analysed {
            Ok(analysed) => {
                if self.state.backend_errors > 0 {
                    tracing::info!(rollout = %self.name, failed = self.state.backend_errors, "The metric backend answers again; analyses resume.");
                }
                self.shared.metrics.inc(
                    "canaryd_analyses_total",
                    &[
                        ("rollout", &self.name),
                        ("verdict", &analysed.record.outcome),
                    ],
                );
                tracing::info!(rollout = %self.name, outcome = %analysed.record.outcome, score = analysed.record.score, "Analysis judged.");
                let rows = Rows(Some(
                    analysed.results.iter().map(CheckRow::from_result).collect(),
                ));
                let _ = self
                    .apply_with(
                        Event::Analysis(analysed.report),
                        Some(analysed.record),
                        rows,
                    )
                    .await;
            }
            Err(e) => {
                self.shared.metrics.inc(
                    "canaryd_backend_query_errors_total",
                    &[("rollout", &self.name), ("source", &self.rule.source)],
                );
                self.backend_failed(&e.to_string()).await;
            }
        }
    }

    /// An analysis could not run: the machine counts it and holds (a stored fact, so a restart
    /// keeps holding); at `backend_error_limit` in a row the team is alerted.
    async fn backend_failed(&mut self, error: &str) {
        let event = Event::BackendError {
            error: error.to_string(),
        };
        if self.apply(event, None).await.is_err() {
            return;
        }
        let errors = self.state.backend_errors;
        tracing::warn!(rollout = %self.name, errors, error = %error, "The metric backend failed; holding the rollout.");
        if errors == self.shared.config.scheduler.backend_error_limit {
            self.backend_alert(error).await;
        }
    }

    /// What the task does once at start, after the emergency state is applied: record a rule
    /// changed while the daemon was down, hold the stage until a fresh analysis, and begin the
    /// first run of a new rollout when its rule says runs start on their own.
    async fn at_start(&mut self, emergency: bool) {
        if let Some(previous) = self.stored_fingerprint.take() {
            self.rule_changed(previous, emergency).await;
        }
        let _ = self.apply(Event::DaemonStarted, None).await;
        if self.state.phase == Phase::Pending && self.rule.plan.start == StartPolicy::Auto {
            let start = Event::NewRun {
                canary: self.rule.sides.canary.clone(),
                by: TriggeredBy::Schedule,
                reason: "rule file loaded".to_string(),
                emergency,
            };
            let _ = self.apply(start, None).await;
        }
    }

    /// Tell the machine the rule was swapped (it records a change of fingerprint or canary, and
    /// may start a new run).
    async fn rule_changed(&mut self, previous: String, emergency: bool) {
        let event = Event::RuleChanged {
            fingerprint: self.fingerprint.to_string(),
            previous,
            canary: self.rule.sides.canary.clone(),
            emergency,
        };
        let _ = self.apply(event, None).await;
    }

    /// The event a command from the API or the CLI becomes: `start` begins a run of the
    /// current canary version (see `Event::NewRun`); the others go to the machine as they are.
    fn command_event(
        &self,
        command: Command,
        by: TriggeredBy,
        reason: String,
        canary: Option<String>,
    ) -> Event {
        if command != Command::Start {
            return Event::command(command, by, reason);
        }
        let canary = canary.unwrap_or_else(|| match self.state.run.canary.is_empty() {
            true => self.rule.sides.canary.clone(),
            false => self.state.run.canary.clone(),
        });
        Event::NewRun {
            canary,
            by,
            reason,
            emergency: self.shared.emergency.borrow().active,
        }
    }

    /// Record and route the backend-errors alert: state unchanged, one audit entry.
    async fn backend_alert(&mut self, error: &str) {
        let now = Utc::now();
        let reason = format!(
            "{} analyses in a row failed on metric backend errors; holding at {}% (last: {error})",
            self.state.backend_errors, self.state.weight
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
            .commit(
                self.state.clone(),
                Record {
                    audit: vec![audit],
                    outbox,
                    ..Record::default()
                },
                now,
            )
            .await
        {
            tracing::error!(rollout = %self.name, error = %e, "Could not record the backend alert.");
        }
    }

    /// Step the machine, record the decision, then act on it. A weight change the actuator
    /// could not apply is fed back to the machine as one more recorded step
    /// (`ActuationFailed`: weight put back, paused for review, critical alert).
    async fn apply(
        &mut self,
        event: Event,
        analysis: Option<NewAnalysis>,
    ) -> Result<(), CommandError> {
        self.apply_with(event, analysis, Rows::default()).await
    }

    /// [`Runner::apply`], with the evidence rows its notifications carry.
    async fn apply_with(
        &mut self,
        event: Event,
        analysis: Option<NewAnalysis>,
        mut rows: Rows,
    ) -> Result<(), CommandError> {
        if let Some(failed) = self.step_and_act(event, analysis, &mut rows).await? {
            // ActuationFailed never asks for a weight change, so this cannot fail the same way.
            if let Err(e) = self.step_and_act(failed, None, &mut rows).await {
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
        rows: &mut Rows,
    ) -> Result<Option<Event>, CommandError> {
        let now = Utc::now();
        let (next, actions) = match step(&self.state, &self.rule.plan, event, now) {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(rollout = %self.name, error = %e, "The rollout refused the event.");
                return Err(e.into());
            }
        };
        if actions.is_empty() && next == self.state && analysis.is_none() {
            return Ok(None);
        }
        let mut audit = Vec::new();
        let mut intent = None;
        let mut outbox = Vec::new();
        let mut run_started = None;
        for (seq, action) in actions.iter().enumerate() {
            let action_ref = action;
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
                        // The rows are filled in below.
                        evidence: &[],
                        public_url: self.shared.config.server.public_url.as_deref(),
                    };
                    let mut n = Notification::from_action(&ctx, *event, *severity, message);
                    if rows.0.is_none() {
                        rows.0 = Some(self.latest_rows().await);
                    }
                    n.checks = rows.0.clone().unwrap_or_default();
                    outbox.extend(messages(&self.rule, &n, seq));
                }
                Action::Audit {
                    action,
                    triggered_by,
                    ..
                } => {
                    if *action == AuditAction::RunStarted {
                        run_started = Some(NewRun {
                            canary: next.run.canary.clone(),
                            started_by: triggered_by.to_string(),
                        });
                    }
                    audit.extend(audit_row(action_ref));
                }
            }
        }
        let has_messages = !outbox.is_empty();
        let committed = self
            .commit(
                next.clone(),
                Record {
                    audit: audit.clone(),
                    intent: intent.clone(),
                    outbox,
                    analysis,
                    run_started,
                },
                now,
            )
            .await;
        // The analysis is recorded (or given up): the next one may start.
        self.turn = None;
        let intent_id = committed.map_err(|e| {
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

    /// The evidence rows of the rollout's newest recorded analysis (none before its first). A
    /// record that cannot be read is logged and the notification goes without rows: it still
    /// says what happened.
    async fn latest_rows(&self) -> Vec<CheckRow> {
        let store = self.shared.store.clone();
        let name = self.name.clone();
        let read =
            tokio::task::spawn_blocking(move || store.latest_evidence::<RecordedChecks>(&name))
                .await
                .map_err(|e| e.to_string())
                .and_then(|read| read.map_err(|e| e.to_string()));
        match read {
            Ok(latest) => latest
                .map(|recorded| recorded.checks.iter().map(CheckRow::from_result).collect())
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(rollout = %self.name, error = %e, "Could not read the latest analysis; the notification goes without its evidence.");
                Vec::new()
            }
        }
    }

    async fn commit(
        &self,
        state: RolloutState,
        record: Record,
        at: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        // Serialised here; the store's writer thread records it with the other steps of its
        // batch, and this task waits for that without holding a thread.
        let committed = {
            let fingerprint = self.fingerprint.to_string();
            let mut s = Step::new(&self.name, &state, &fingerprint, at);
            s.audit = record.audit;
            s.intent = record.intent;
            s.outbox = record.outbox;
            s.analysis = record.analysis;
            s.run = state.run.number;
            s.run_started = record.run_started;
            self.shared.store.submit_step(&s)
        };
        committed.await.map(|c| c.intent_id)
    }
}

/// What a step records besides the state (see [`Step`]).
#[derive(Default)]
struct Record {
    audit: Vec<NewAudit>,
    intent: Option<NewIntent>,
    outbox: Vec<NewMessage>,
    analysis: Option<NewAnalysis>,
    run_started: Option<NewRun>,
}

/// The span of one piece of a rollout's work (an analysis, a step, a command), made for that
/// piece: a span kept for the task's whole life cost about 300 bytes per rollout in the
/// subscriber, however idle the rollout.
fn work_span(rollout: &str) -> tracing::Span {
    tracing::info_span!("rollout", rollout = %rollout)
}

/// Sleep until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How long from `now` until the machine must be told that time passed: when the current stage's
/// minimum duration is over with its passes in (it advances or waits for approval), or its
/// maximum duration is over without them (it pauses). `None` when no tick can change anything
/// (not progressing, or a stage with neither deadline ahead): analyses and commands step the
/// machine themselves. Pure.
pub fn tick_due(state: &RolloutState, plan: &Plan, now: DateTime<Utc>) -> Option<Duration> {
    let Phase::Progressing { stage } = state.phase else {
        return None;
    };
    let stage = plan.stages.get(stage)?;
    // A stage without a start time gets one from its first tick.
    let Some(started) = state.stage_started_at else {
        return Some(Duration::ZERO);
    };
    let ran = (now - started).to_std().unwrap_or(Duration::ZERO);
    let deadline = if state.passes >= stage.required_passes && !state.held() {
        stage.min_duration
    } else {
        stage.max_duration?
    };
    Some(deadline.saturating_sub(ran))
}

/// A stable offset of `name` within `period` (FNV-1a of the name), so rollouts started together
/// spread their analyses over the period instead of all querying in the same instant, and a
/// rollout keeps its place across restarts.
pub fn stagger(name: &str, period: Duration) -> Duration {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(hash % nanos)
}

/// The wait before a rollout's first analysis: a fixed interval's analyses start at the rollout's
/// stagger offset within it; a cron schedule keeps its exact times.
fn first_delay(name: &str, schedule: &Schedule) -> Duration {
    match schedule {
        Schedule::Every(d) => stagger(name, *d),
        Schedule::Cron { .. } => next_delay(schedule),
    }
}

/// When the analysis after the one due at `due` is: a fixed interval keeps its cadence (and so
/// the rollout's stagger) from `due`, skipping the slots already missed when an analysis ran
/// late; a cron schedule's next time from now.
fn following(due: Instant, schedule: &Schedule, now: Instant) -> Instant {
    match schedule {
        Schedule::Every(d) if !d.is_zero() => {
            let next = due + *d;
            if next > now {
                return next;
            }
            // Missed slots are skipped, not run back to back.
            let behind = now.duration_since(next).as_nanos();
            let skip = u32::try_from(behind / d.as_nanos() + 1).unwrap_or(u32::MAX);
            next + d.saturating_mul(skip)
        }
        _ => now + next_delay(schedule),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{RollbackTarget, Stage};

    const MIN: Duration = Duration::from_secs(60);

    fn plan(min: Duration, max: Option<Duration>) -> Plan {
        Plan {
            stages: vec![Stage {
                name: "10%".into(),
                weight: 10,
                min_duration: min,
                max_duration: max,
                required_passes: 3,
                approval: false,
            }],
            rollback_to: RollbackTarget::Zero,
            warmup: Duration::ZERO,
            max_inconclusive: 3,
            triggers: Vec::new(),
            start: crate::rollout::StartPolicy::Auto,
        }
    }

    fn progressing(passes: u32, started: DateTime<Utc>) -> RolloutState {
        RolloutState {
            phase: Phase::Progressing { stage: 0 },
            weight: 10,
            stage_started_at: Some(started),
            passes,
            ..RolloutState::new()
        }
    }

    #[test]
    fn staggered_offsets_stay_within_the_interval_are_stable_and_spread() {
        let period = Duration::from_secs(10);
        let offsets: Vec<Duration> = (0..1000)
            .map(|i| stagger(&format!("rollout-{i}"), period))
            .collect();
        assert!(offsets.iter().all(|o| *o < period));
        assert_eq!(stagger("rollout-7", period), offsets[7]);
        // Every tenth of the interval gets some of the 1,000 rollouts, none more than twice its share.
        let mut buckets = [0usize; 10];
        for o in &offsets {
            buckets[(o.as_millis() / 1000) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (30..=200).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn a_fixed_interval_keeps_its_cadence_and_skips_missed_slots() {
        let every = Schedule::Every(Duration::from_secs(10));
        let due = Instant::now();
        assert_eq!(
            following(due, &every, due + Duration::from_secs(1)),
            due + Duration::from_secs(10)
        );
        // An analysis that ran 25 s late: the slots at +10 s and +20 s are gone, not run in a burst.
        assert_eq!(
            following(due, &every, due + Duration::from_secs(25)),
            due + Duration::from_secs(30)
        );
    }

    #[test]
    fn ticks_are_due_only_at_a_stage_deadline() {
        let t0 = Utc::now();
        let at = |d: Duration| t0 + chrono::Duration::from_std(d).unwrap();
        let open_ended = plan(10 * MIN, None);
        // Passes still missing and no maximum: nothing a tick could change.
        assert_eq!(tick_due(&progressing(1, t0), &open_ended, at(MIN)), None);
        // Passes in: due when the minimum duration is over.
        assert_eq!(
            tick_due(&progressing(3, t0), &open_ended, at(MIN)),
            Some(9 * MIN)
        );
        assert_eq!(
            tick_due(&progressing(3, t0), &open_ended, at(20 * MIN)),
            Some(Duration::ZERO)
        );
        // Passes missing with a maximum: due when it runs out.
        let bounded = plan(10 * MIN, Some(30 * MIN));
        assert_eq!(
            tick_due(&progressing(0, t0), &bounded, at(MIN)),
            Some(29 * MIN)
        );
        // A stage with no start time yet gets one at once; other phases never tick.
        let unstarted = RolloutState {
            stage_started_at: None,
            ..progressing(0, t0)
        };
        assert_eq!(tick_due(&unstarted, &bounded, t0), Some(Duration::ZERO));
        assert_eq!(tick_due(&RolloutState::new(), &bounded, t0), None);
    }
}
