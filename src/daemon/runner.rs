//! One rollout's task: the only place its state changes. Analyses on the rule's schedule, ticks,
//! commands from its mailbox and emergency-stop changes are serialised here; each goes through
//! the pure `step`, is recorded with `commit_step` (state, audit, actuator intent, outbox,
//! analysis in one transaction) and only then acted on: the actuator is called with the intent's
//! idempotency key and the intent completed. A change the actuator could not apply (after its
//! retries) is fed back to the machine as `ActuationFailed`, one more recorded step that puts
//! the weight back to the applied one and pauses for review. A backend error holds the rollout (no analysis and
//! no tick reaches the machine) and alerts after `backend_error_limit` in a row. Its timers run
//! on tokio's time and every "now" it stamps or compares comes from the daemon's clock
//! (`Shared::clock`), so an embedding test on paused time moves both together.
//!
//! This file holds the task and its loop. Beside it: `records` (pure: a step's actions turned
//! into audit rows, the actuator intent and outbox messages), `world` (the actuator, re-driving
//! a pending intent, alerts outside a step, pausing a rollout whose rule is gone) and `timing`
//! (when the next tick and analysis are due).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Shared;
use super::analysis::{EvidenceSpan, Kept, analyse_over, kept};
use super::command::CommandError;
pub use super::mailbox::Msg;
use super::status::RolloutStatus;
use crate::actuator::WeightChange;
use crate::notify::notification::CheckRow;
use crate::rollout::{
    Command, Event, EventKind, Phase, RolloutState, Severity, StartPolicy, TriggeredBy, step,
};
use crate::rules::RolloutRule;
use crate::source::SourceError;
use crate::store::{NewAnalysis, NewAudit, Step, StoreError};

/// The shortest gap between two ticks (the machine told that time passed): a tick that changed
/// nothing is not repeated sooner than this, however the due time is computed.
pub const TICK: Duration = Duration::from_millis(500);
/// Past a stage's due time (minimum or maximum duration) the tick fires this much later, so the
/// machine's clock has surely reached it.
pub const TICK_MARGIN: Duration = Duration::from_millis(5);

mod records;
mod timing;
mod world;

use records::{Record, incidents_over};
pub use records::{backend_incident, messages, stage_label};
pub use timing::{first_delay, following, stagger, tick_due};
pub use world::{
    Incidents, actuate, alert, alert_notification, daemon_receivers, enqueue, enqueue_for,
    pause_orphan, redrive, resolve_incidents,
};

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
    /// `rule` with the canary version of a run started with another one than the rule file's
    /// (`start --canary`), made once per rule and version instead of at every analysis.
    run_rule: Option<Arc<RolloutRule>>,
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
        let key = name.clone();
        let (stored, conclusive) = shared
            .store
            .call(move |s| {
                let stored = s.rollout::<RolloutState>(&key)?;
                // For `/metrics` from the start: when it last passed or failed.
                let conclusive = s.latest_analysis_at(&key, ["pass", "fail"])?;
                Ok::<_, StoreError>((stored, conclusive))
            })
            .await
            .map_err(|e| e.to_string())?;
        if let Some(at) = conclusive {
            shared.metrics.set(
                "canaryd_rollout_last_conclusive_analysis_timestamp_seconds",
                &[("rollout", &name)],
                at.timestamp_millis() as f64 / 1000.0,
            );
        }
        let runner = Runner {
            next_analysis: Instant::now() + first_delay(&name, &rule.schedule, shared.clock.now()),
            shared,
            name,
            fingerprint: super::fingerprint(&rule),
            rule,
            stored_fingerprint: stored.as_ref().map(|s| s.rule_fingerprint.clone()),
            run_rule: None,
            state: stored.map(|s| s.state).unwrap_or_default(),
            turn,
        };
        runner.publish();
        Ok(runner)
    }

    fn publish(&self) {
        let status = RolloutStatus::of(&self.name, &self.state, Some(&self.rule));
        self.shared.publish(status);
        // A rollout whose rule is gone has no series (the reload dropped them).
        if self.shared.rules.load().get(&self.name).is_none() {
            return;
        }
        let m = &self.shared.metrics;
        let rollout = [("rollout", self.name.as_str())];
        let streak = f64::from(self.state.inconclusive_streak);
        m.set("canaryd_rollout_inconclusive_streak", &rollout, streak);
        let errors = f64::from(self.state.backend_errors);
        m.set("canaryd_rollout_backend_errors", &rollout, errors);
    }

    /// The task's loop, until shutdown.
    pub async fn run(
        &mut self,
        mailbox: Arc<super::mailbox::Mailbox>,
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
                    self.next_analysis = Instant::now()
                        + first_delay(&self.name, &rule.schedule, self.shared.clock.now());
                }
                let previous = self.fingerprint.to_string();
                self.fingerprint = super::fingerprint(&rule);
                self.rule = rule;
                self.run_rule = None;
                self.publish();
                let emergency = self.shared.emergency.borrow().active;
                let span = work_span(&self.name);
                Box::pin(self.rule_changed(previous, emergency).instrument(span)).await;
            }
            let active = matches!(
                self.state.phase,
                Phase::Progressing { .. } | Phase::WaitingApproval { .. }
            );
            let tick_at = tick_due(&self.state, &self.rule.plan, self.shared.clock.now())
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
        self.next_analysis = following(
            self.next_analysis,
            &self.rule.schedule,
            Instant::now(),
            self.shared.clock.now(),
        );
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
            let reason = match emergency.cleared_reason.as_str() {
                "" => "emergency stop cleared",
                reason => reason,
            };
            let event = Event::command(Command::ClearEmergency, by, reason);
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
        let started = self.shared.clock.now();
        let rule = self.rule_for_run();
        // The stage's evidence since its warm-up (issue 19): see `analysis::stage`.
        let span = EvidenceSpan::of_rollout(&rule, &self.state, started);
        let kept = self.kept_answers(&rule, span, started).await;
        let analysed = analyse_over(
            &rule,
            source,
            Arc::clone(&self.shared.permits),
            started,
            self.state.weight,
            span,
            &kept,
        )
        .await;
        self.analysed(analysed).await;
        self.turn = None;
    }

    /// The answers the rollout's previous analysis kept for its staged checks (`analysis::kept`),
    /// so that this one asks the backend only for what is new. None when no check is staged or
    /// the stage is too young to resume from any; one that cannot be read is logged and its query
    /// asks for the whole stage.
    async fn kept_answers(
        &self,
        rule: &RolloutRule,
        span: EvidenceSpan,
        now: DateTime<Utc>,
    ) -> Vec<Kept> {
        let EvidenceSpan::Stage { from, .. } = span else {
            return Vec::new();
        };
        let resumable =
            |c: &crate::rules::CheckRule| span.stages(c) && kept::worth_keeping(c.step, from, now);
        if !rule.checks.iter().any(resumable) {
            return Vec::new();
        }
        let name = self.name.clone();
        match self.shared.store.call(move |s| s.kept_answers(&name)).await {
            Ok(records) => records
                .iter()
                .filter_map(|r| {
                    Kept::from_record(r)
                        .inspect_err(|e| tracing::warn!(rollout = %self.name, "{e}"))
                        .ok()
                })
                .collect(),
            Err(e) => {
                tracing::warn!(rollout = %self.name, error = %e, "Could not read the answers kept for this stage; asking for the whole stage.");
                Vec::new()
            }
        }
    }

    /// The rule the current run's analyses use: a run started with another version than the
    /// rule file's (`start --canary`) queries the canary by its own version.
    fn rule_for_run(&mut self) -> Arc<RolloutRule> {
        let run = &self.state.run.canary;
        if run.is_empty() || *run == self.rule.sides.canary {
            return Arc::clone(&self.rule);
        }
        if let Some(cached) = &self.run_rule
            && cached.sides.canary == *run
        {
            return Arc::clone(cached);
        }
        let mut rule = RolloutRule::clone(&self.rule);
        rule.sides.canary = run.clone();
        let rule = Arc::new(rule);
        self.run_rule = Some(Arc::clone(&rule));
        rule
    }

    /// Judge the outcome of one analysis: step the machine on it, or count a backend error.
    async fn analysed(&mut self, analysed: Result<super::analysis::Analysed, SourceError>) {
        match analysed {
            Ok(analysed) => {
                if self.state.backend_errors > 0 {
                    tracing::info!(rollout = %self.name, failed = self.state.backend_errors, "The metric backend answers again; analyses resume.");
                    self.backend_recovered().await;
                }
                let m = &self.shared.metrics;
                m.set("canaryd_backend_up", &[("source", &self.rule.source)], 1.0);
                tracing::info!(rollout = %self.name, outcome = %analysed.record.outcome, score = analysed.record.score, "Analysis judged.");
                let counted = Counted::of(&analysed);
                let rows = Rows(Some(
                    analysed.results.iter().map(CheckRow::from_result).collect(),
                ));
                let recorded = self
                    .apply_with(
                        Event::Analysis(analysed.report),
                        Some(analysed.record),
                        rows,
                    )
                    .await;
                // Counted once recorded: an analysis the store did not take was not acted on.
                match recorded {
                    Ok(()) => {
                        counted.recorded(&self.shared.metrics, &self.name, self.shared.clock.now())
                    }
                    Err(_) => self.shared.metrics.inc(
                        "canaryd_analyses_unrecorded_total",
                        &[("rollout", &self.name)],
                    ),
                }
            }
            Err(e) => {
                let m = &self.shared.metrics;
                m.set("canaryd_backend_up", &[("source", &self.rule.source)], 0.0);
                m.inc(
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

    /// The backend answers again: its backend-errors incident, if one is open, is over.
    async fn backend_recovered(&self) {
        let message = format!(
            "Resolved: the metric backend answers again after {} failed analyses; analyses \
             resume at {}%.",
            self.state.backend_errors, self.state.weight
        );
        let resolution = alert_notification(
            &self.shared,
            Some(&self.rule),
            &self.name,
            EventKind::BackendErrors,
            Severity::Info,
            message,
            self.shared.clock.now(),
        );
        resolve_incidents(
            &self.shared,
            Incidents::Key(backend_incident(&self.name)),
            resolution,
        )
        .await;
    }

    /// Record and route the backend-errors alert: state unchanged, one audit entry.
    async fn backend_alert(&mut self, error: &str) {
        let now = self.shared.clock.now();
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
        let mut n = alert_notification(
            &self.shared,
            Some(&self.rule),
            &self.name,
            EventKind::BackendErrors,
            Severity::Warning,
            reason.clone(),
            now,
        );
        // One incident while the backend is down, resolved when it answers again.
        n.group_key = backend_incident(&self.name);
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
        let now = self.shared.clock.now();
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
        // The rows are read from the store only when a notification needs them.
        if rows.0.is_none() && records::notifies(&actions) {
            rows.0 = Some(self.latest_rows().await);
        }
        let stepped = records::Stepped {
            rollout: &self.name,
            rule: &self.rule,
            before: &self.state,
            after: &next,
            at: now,
            public_url: self.shared.config.server.public_url.as_deref(),
        };
        let mut record =
            records::records(&stepped, &actions, rows.0.as_deref().unwrap_or_default());
        record.analysis = analysis;
        let audit = record.audit.clone();
        let intent = record.intent.clone();
        let has_messages = !record.outbox.is_empty();
        let over = incidents_over(&self.state, &next);
        let committed = self.commit(next.clone(), record, now).await;
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
        if let Some((kind, message)) = over {
            let resolution = alert_notification(
                &self.shared,
                Some(&self.rule),
                &self.name,
                kind,
                Severity::Info,
                message,
                now,
            );
            resolve_incidents(
                &self.shared,
                Incidents::Rollout(self.name.clone()),
                resolution,
            )
            .await;
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
        let name = self.name.clone();
        let read = self
            .shared
            .store
            .call(move |s| s.latest_evidence::<RecordedChecks>(&name))
            .await
            .map_err(|e| e.to_string());
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
        self.shared
            .clock
            .wait_outside(committed)
            .await
            .map(|c| c.intent_id)
            .inspect_err(|_| {
                let op = [("op", "step")];
                self.shared
                    .metrics
                    .inc("canaryd_store_write_errors_total", &op);
            })
    }
}

/// What `/metrics` counts of one analysis once it is recorded.
struct Counted {
    outcome: String,
    /// Each check's name and verdict.
    checks: Vec<(String, &'static str)>,
    /// It passed or failed on data (not inconclusive, not marginal, no check without data).
    conclusive: bool,
}

impl Counted {
    fn of(analysed: &super::analysis::Analysed) -> Counted {
        use crate::judge::Verdict;
        use crate::rollout::AnalysisOutcome;
        let checks: Vec<(String, &'static str)> = analysed
            .results
            .iter()
            .map(|r| {
                let verdict = match r.verdict {
                    Verdict::Pass => "pass",
                    Verdict::Fail => "fail",
                    Verdict::Inconclusive { .. } => "inconclusive",
                };
                (r.name.clone(), verdict)
            })
            .collect();
        let conclusive = match analysed.report.overall {
            AnalysisOutcome::Fail => true,
            AnalysisOutcome::Pass => {
                !checks.is_empty() && checks.iter().all(|(_, v)| *v != "inconclusive")
            }
            AnalysisOutcome::Marginal | AnalysisOutcome::Inconclusive => false,
        };
        Counted {
            outcome: analysed.record.outcome.clone(),
            checks,
            conclusive,
        }
    }

    fn recorded(&self, m: &super::Metrics, rollout: &str, at: DateTime<Utc>) {
        m.inc(
            "canaryd_analyses_total",
            &[("rollout", rollout), ("verdict", &self.outcome)],
        );
        for (check, verdict) in &self.checks {
            m.inc(
                "canaryd_check_verdicts_total",
                &[("rollout", rollout), ("check", check), ("verdict", verdict)],
            );
        }
        if self.conclusive {
            m.set(
                "canaryd_rollout_last_conclusive_analysis_timestamp_seconds",
                &[("rollout", rollout)],
                at.timestamp_millis() as f64 / 1000.0,
            );
        }
    }
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
