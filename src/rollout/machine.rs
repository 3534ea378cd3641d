//! The rollout state machine: [`RolloutState`] and the one function that changes it, [`step`].
//!
//! This module owns every decision a rollout makes (start, advance, hold, wait for approval,
//! pause, roll back, abort, emergency stop) and nothing else: it reads no clock (`now` is passed
//! in), performs no I/O and keeps no hidden state, so the same state, plan, event and instant
//! always give the same result. The runner stores the state (as JSON), carries out the returned
//! [`Action`]s in order and feeds the next event.
//!
//! # Parts
//! This file holds the public types, [`step`] and the shared transitions (pause, roll back,
//! advance). The steps of the private `Machine` live in child files along its seams: `commands`
//! (what an operator or the API asks), `analyses` (an analysis report and the triggers it
//! fires), `ticks` (time: advancing or timing out a stage), `world` (a weight change the actuator
//! could not apply) and `runs` (new runs, changed rules, a failing backend).
//!
//! # Rules worth knowing
//! - **Commands that make no sense** in the current phase (approve while progressing, resume a
//!   rollout that is not paused, ...) return `Err(StepError::NotAllowed)` and change nothing; the
//!   API turns that into a 409. Ticks and analyses never fail that way: where they do not apply
//!   they are recorded (analyses) or do nothing (ticks).
//! - **Emergency stop** overrides everything: while it is in force every command and analysis is
//!   ignored with an `IgnoredDuringEmergency` audit entry (ticks, which arrive every few seconds,
//!   are ignored silently), except `ClearEmergency`, which only an operator may give and which
//!   leaves the rollout paused at 0%.
//! - **Resume** restarts the stage's clock and evidence: the warm-up, minimum duration, passes and
//!   failure streaks count again from the resume, because the pause happened for a reason.
//! - **Rollback never raises the weight**: the target (previous stage's weight, or 0%) is capped
//!   at the current weight.
//! - **Abort** sends the canary to 0% and ends the rollout for good; a rolled-back rollout can be
//!   retried with `Start` (from the first stage), an aborted one cannot.
//! - **Overall Fail** pauses for review unless a failing check has a rollback or pause trigger
//!   still waiting for its sustain: then the stage holds and that trigger decides.
//! - `max_inconclusive == 0` disables the inconclusive-streak pause.
//! - Notify-only and dry-run triggers speak once per failure streak, not on every analysis.
//! - **A weight change the actuator could not apply** (`ActuationFailed`) puts the recorded
//!   weight back to the one still applied and pauses the rollout for review where it was, the
//!   reason naming the actuator's error; `Resume` re-applies the stage's weight with a normal
//!   `SetWeight`. A failed rollback or abort pauses at the stage whose weight is still applied
//!   (or leaves a succeeded rollout succeeded at 100%), so the operator can try again. A failed
//!   emergency stop stays an emergency stop, at the weight still applied, and a second
//!   `EmergencyStop` retries the 0%.

use super::event::{Action, AuditAction, Command, Event, TriggeredBy};
use super::plan::{EventKind, Plan, RollbackTarget, Severity, Stage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What a paused rollout goes back to on `Resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResumeTo {
    Progressing,
    WaitingApproval,
}

/// Where a rollout is. Stage numbers index `Plan::stages`, from 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Created, not started; the canary gets no traffic.
    Pending,
    /// Gathering evidence at a stage's weight.
    Progressing { stage: usize },
    /// The stage has its evidence; a person must approve before it advances.
    WaitingApproval { stage: usize },
    /// Frozen at the current weight until a person resumes it.
    Paused {
        stage: usize,
        resume_to: ResumeTo,
        reason: String,
    },
    /// Rolled back; terminal until `Start` retries from the first stage.
    RolledBack { reason: String },
    /// All stages passed; the canary has 100%.
    Succeeded,
    /// Given up; the canary has 0%. Final.
    Aborted,
    /// 0% and deaf to everything but `ClearEmergency`. `stage` is where a later resume continues.
    EmergencyStopped { stage: usize, reason: String },
}

impl Phase {
    /// A short name for messages and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Progressing { .. } => "progressing",
            Phase::WaitingApproval { .. } => "waiting for approval",
            Phase::Paused { .. } => "paused",
            Phase::RolledBack { .. } => "rolled back",
            Phase::Succeeded => "succeeded",
            Phase::Aborted => "aborted",
            Phase::EmergencyStopped { .. } => "emergency-stopped",
        }
    }

    /// The stage the rollout is at, if it is at one.
    pub fn stage(&self) -> Option<usize> {
        match self {
            Phase::Progressing { stage }
            | Phase::WaitingApproval { stage }
            | Phase::Paused { stage, .. }
            | Phase::EmergencyStopped { stage, .. } => Some(*stage),
            Phase::Pending | Phase::RolledBack { .. } | Phase::Succeeded | Phase::Aborted => None,
        }
    }
}

/// A check that has failed in every analysis since `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingCheck {
    /// The first failing analysis of the streak.
    pub since: DateTime<Utc>,
    /// Consecutive failing analyses.
    pub count: u32,
    /// Indexes into `Plan::triggers` of the notify-only and dry-run triggers that already spoke
    /// during this streak.
    pub fired: Vec<usize>,
}

/// Everything the machine remembers about one rollout. Stored as JSON; round-trips exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    pub phase: Phase,
    /// The canary's current share of traffic, 0–100.
    pub weight: u8,
    /// When the current stage began (or was resumed); warm-up and durations count from here.
    pub stage_started_at: Option<DateTime<Utc>>,
    /// Consecutive passing analyses (overall Pass with data) in the current stage.
    pub passes: u32,
    /// Consecutive inconclusive or marginal analyses in the current stage.
    pub inconclusive_streak: u32,
    /// Checks failing right now, by name.
    pub failing: BTreeMap<String, FailingCheck>,
    /// When the stage's latest counted analysis did not pass: its checks without a pass
    /// (failing, or without a verdict, such as a stage's evidence still accruing), not those
    /// that do not apply. What holds the stage, named when it outlives its `max_duration`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holding: Vec<String>,
    /// Analyses in a row that failed on metric backend errors. While non-zero the rollout holds:
    /// no tick advances it. Stored, so a restart during an outage keeps holding.
    #[serde(default)]
    pub backend_errors: u32,
    /// Set when the daemon starts: no tick advances the stage before a fresh analysis at the
    /// current weight has reached the machine (the stored passes may be hours old).
    #[serde(default)]
    pub awaiting_analysis: bool,
    /// The run the rollout is in.
    #[serde(default)]
    pub run: Run,
}

/// One run of a rollout: a canary version taken through the plan from its first stage. A
/// finished run (succeeded, rolled back, aborted) stays finished; the next version is a new run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// 1 for the first run, one more for each run after it.
    pub number: u32,
    /// The canary version this run tests (empty when not known: states stored before runs).
    #[serde(default)]
    pub canary: String,
    /// The rule file's `[sides] canary` when last seen: when the file changes it, a new run can
    /// begin (see [`StartPolicy`](super::plan::StartPolicy)).
    #[serde(default)]
    pub rule_canary: String,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            number: 1,
            canary: String::new(),
            rule_canary: String::new(),
        }
    }
}

impl Default for RolloutState {
    fn default() -> Self {
        RolloutState::new()
    }
}

impl RolloutState {
    /// A rollout that has not started: Pending at 0%.
    pub fn new() -> Self {
        RolloutState {
            phase: Phase::Pending,
            weight: 0,
            stage_started_at: None,
            passes: 0,
            inconclusive_streak: 0,
            failing: BTreeMap::new(),
            backend_errors: 0,
            awaiting_analysis: false,
            holding: Vec::new(),
            run: Run::default(),
        }
    }

    /// Whether a tick may not advance the stage: a backend outage or a start of the daemon
    /// since the last analysis.
    pub fn held(&self) -> bool {
        self.backend_errors > 0 || self.awaiting_analysis
    }

    /// Whether the current run is over: succeeded, rolled back or aborted.
    pub fn finished(&self) -> bool {
        matches!(
            self.phase,
            Phase::Succeeded | Phase::RolledBack { .. } | Phase::Aborted
        )
    }
}

/// Why a step was refused. The state is unchanged when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("`{command}` is not allowed while the rollout is {phase}")]
    NotAllowed {
        command: Command,
        phase: &'static str,
    },
    #[error("only an operator can clear an emergency stop, not {by}")]
    NeedsOperator { by: TriggeredBy },
    #[error("the plan has no stages, so there is nothing to start")]
    EmptyPlan,
    #[error(
        "the rollout is at stage {stage} but the plan has {stages} stage(s); \
         the rule file changed under a running rollout: abort or roll it back"
    )]
    StageOutOfRange { stage: usize, stages: usize },
    #[error(
        "the failed change to {attempted}% is not the rollout's last one (it is at {weight}%); \
         nothing to put back"
    )]
    StaleActuation { attempted: u8, weight: u8 },
    #[error(
        "run {run} is already taking canary `{canary}` through the plan; give another version \
         to start a new run, or roll back or abort this one first"
    )]
    AlreadyRunning { run: u32, canary: String },
}

/// Apply one event to a rollout at instant `now`: the new state and what the runner must do.
///
/// Pure: no clock, no I/O. See the module documentation for the rules.
pub fn step(
    state: &RolloutState,
    plan: &Plan,
    event: Event,
    now: DateTime<Utc>,
) -> Result<(RolloutState, Vec<Action>), StepError> {
    let mut m = Machine {
        plan,
        now,
        next: state.clone(),
        actions: Vec::new(),
    };
    match event {
        Event::Tick => m.tick()?,
        Event::Analysis(report) => m.analysis(&report)?,
        Event::Command {
            command,
            by,
            reason,
        } => m.command(command, by, &reason)?,
        Event::ActuationFailed {
            attempted,
            previous,
            error,
        } => m.actuation_failed(attempted, previous, &error)?,
        Event::BackendError { error } => m.backend_error(&error),
        Event::DaemonStarted => {
            if matches!(m.next.phase, Phase::Progressing { .. }) {
                m.next.awaiting_analysis = true;
            }
        }
        Event::NewRun {
            canary,
            by,
            reason,
            emergency,
        } => m.new_run(&canary, by, &reason, emergency)?,
        Event::RuleChanged {
            fingerprint,
            previous,
            canary,
            emergency,
        } => m.rule_changed(&fingerprint, &previous, &canary, emergency)?,
        Event::RuleRemoved { what } => m.rule_removed(&what),
    }
    Ok((m.next, m.actions))
}

/// One step in progress: the state being built and the actions so far.
struct Machine<'a> {
    plan: &'a Plan,
    now: DateTime<Utc>,
    next: RolloutState,
    actions: Vec<Action>,
}

fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or(Duration::ZERO)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s.is_multiple_of(3600) && s > 0 => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) && s > 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

impl Machine<'_> {
    fn stage(&self, index: usize) -> Result<&Stage, StepError> {
        self.plan
            .stages
            .get(index)
            .ok_or(StepError::StageOutOfRange {
                stage: index,
                stages: self.plan.stages.len(),
            })
    }

    fn stage_label(&self, index: usize) -> String {
        match self.plan.stages.get(index) {
            Some(s) => format!("stage {} `{}` ({}%)", index + 1, s.name, s.weight),
            None => format!("stage {}", index + 1),
        }
    }

    fn not_allowed(&self, command: Command) -> StepError {
        StepError::NotAllowed {
            command,
            phase: self.next.phase.name(),
        }
    }

    /// Move to `phase` at `weight`: one SetWeight if the weight changes, then the audit entry.
    fn transition(
        &mut self,
        phase: Phase,
        weight: u8,
        action: AuditAction,
        reason: String,
        by: TriggeredBy,
    ) {
        let previous = self.next.weight;
        if weight != previous {
            self.actions.push(Action::SetWeight { weight, previous });
        }
        self.next.phase = phase;
        self.next.weight = weight;
        self.actions.push(Action::Audit {
            action,
            previous_weight: previous,
            new_weight: weight,
            reason,
            triggered_by: by,
        });
    }

    /// An audit entry that changes neither phase nor weight.
    fn record(&mut self, action: AuditAction, reason: String, by: TriggeredBy) {
        let w = self.next.weight;
        self.actions.push(Action::Audit {
            action,
            previous_weight: w,
            new_weight: w,
            reason,
            triggered_by: by,
        });
    }

    fn notify(&mut self, event: EventKind, severity: Severity, message: String) {
        self.actions.push(Action::Notify {
            event,
            severity,
            message,
        });
    }

    /// Start a stage's clock and evidence afresh.
    fn reset_evidence(&mut self) {
        self.next.stage_started_at = Some(self.now);
        self.next.passes = 0;
        self.next.inconclusive_streak = 0;
        self.next.failing.clear();
        self.next.holding.clear();
        self.next.awaiting_analysis = false;
    }

    // ----- shared transitions -----

    fn pause(
        &mut self,
        stage: usize,
        resume_to: ResumeTo,
        kind: EventKind,
        reason: &str,
        by: TriggeredBy,
    ) {
        let w = self.next.weight;
        let label = self.stage_label(stage);
        let phase = Phase::Paused {
            stage,
            resume_to,
            reason: reason.to_string(),
        };
        let why = format!("paused by {by}: {reason}");
        self.transition(phase, w, AuditAction::Paused, why, by);
        self.notify(
            kind,
            Severity::Warning,
            format!("Rollout paused at {label} for review: {reason}"),
        );
    }

    /// Roll back from stage `from` (which may be one past the last stage, for a succeeded rollout).
    fn rollback(&mut self, from: usize, reason: String, by: TriggeredBy) {
        let target = match self.plan.rollback_to {
            RollbackTarget::Zero => 0,
            RollbackTarget::PreviousStage => from
                .checked_sub(1)
                .and_then(|prev| self.plan.stages.get(prev))
                .map_or(0, |s| s.weight),
        };
        let from_weight = self.next.weight;
        let weight = target.min(from_weight);
        self.next.passes = 0;
        self.next.inconclusive_streak = 0;
        self.next.failing.clear();
        self.next.holding.clear();
        let why = format!("rolled back by {by}: {reason}");
        let phase = Phase::RolledBack {
            reason: reason.clone(),
        };
        self.transition(phase, weight, AuditAction::RolledBack, why, by);
        self.notify(
            EventKind::RolledBack,
            Severity::Critical,
            format!("Rolled back from {from_weight}% to {weight}%: {reason}"),
        );
    }

    /// Leave stage `stage` for the next one, or succeed after the last.
    fn advance_past(
        &mut self,
        stage: usize,
        action: AuditAction,
        why: String,
        by: TriggeredBy,
    ) -> Result<(), StepError> {
        let next = stage + 1;
        if next >= self.plan.stages.len() {
            self.next.passes = 0;
            self.next.inconclusive_streak = 0;
            self.next.failing.clear();
            self.next.holding.clear();
            let action = if action == AuditAction::StageAdvanced {
                AuditAction::Succeeded
            } else {
                action
            };
            self.transition(Phase::Succeeded, 100, action, why, by);
            self.notify(
                EventKind::Succeeded,
                Severity::Info,
                "Rollout succeeded: the canary has 100% of traffic.".to_string(),
            );
            return Ok(());
        }
        let weight = self.stage(next)?.weight;
        self.reset_evidence();
        let label = self.stage_label(next);
        self.transition(Phase::Progressing { stage: next }, weight, action, why, by);
        self.notify(
            EventKind::StageAdvanced,
            Severity::Info,
            format!("Advanced to {label}."),
        );
        Ok(())
    }
}

#[path = "analyses.rs"]
mod analyses;
#[path = "commands.rs"]
mod commands;
#[path = "runs.rs"]
mod runs;
#[path = "ticks.rs"]
mod ticks;
#[path = "world.rs"]
mod world;

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "runs_tests.rs"]
mod runs_tests;
