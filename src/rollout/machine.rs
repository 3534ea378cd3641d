//! The rollout state machine: [`RolloutState`] and the one function that changes it, [`step`].
//!
//! This module owns every decision a rollout makes (start, advance, hold, wait for approval,
//! pause, roll back, abort, emergency stop) and nothing else: it reads no clock (`now` is passed
//! in), performs no I/O and keeps no hidden state, so the same state, plan, event and instant
//! always give the same result. The runner stores the state (as JSON), carries out the returned
//! [`Action`]s in order and feeds the next event.
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

use super::event::{
    Action, AnalysisOutcome, AnalysisReport, AuditAction, CheckOutcome, Command, Event,
    TriggeredBy, VerdictClass,
};
use super::plan::{
    EventKind, NoDataPolicy, Plan, RollbackTarget, Severity, Stage, Sustain, TriggerAction,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
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
        }
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
    }

    // ----- commands -----

    fn command(
        &mut self,
        command: Command,
        by: TriggeredBy,
        reason: &str,
    ) -> Result<(), StepError> {
        if let Phase::EmergencyStopped { stage, .. } = self.next.phase {
            return self.command_during_emergency(command, stage, by, reason);
        }
        match command {
            Command::Start => self.start(by, reason),
            Command::Approve => match self.next.phase {
                Phase::WaitingApproval { stage } => {
                    let why = format!("approved by {by}: {reason}");
                    self.advance_past(stage, AuditAction::Approved, why, by)
                }
                _ => Err(self.not_allowed(command)),
            },
            Command::Pause => match self.next.phase {
                Phase::Progressing { stage } => {
                    self.pause(stage, ResumeTo::Progressing, EventKind::Paused, reason, by);
                    Ok(())
                }
                Phase::WaitingApproval { stage } => {
                    self.pause(
                        stage,
                        ResumeTo::WaitingApproval,
                        EventKind::Paused,
                        reason,
                        by,
                    );
                    Ok(())
                }
                _ => Err(self.not_allowed(command)),
            },
            Command::Resume => match self.next.phase {
                Phase::Paused {
                    stage, resume_to, ..
                } => self.resume(stage, resume_to, by, reason),
                _ => Err(self.not_allowed(command)),
            },
            Command::Promote => match self.next.phase {
                Phase::Progressing { stage } | Phase::WaitingApproval { stage } => {
                    let why = format!("promoted by {by}: {reason}");
                    self.advance_past(stage, AuditAction::Promoted, why, by)
                }
                _ => Err(self.not_allowed(command)),
            },
            Command::Rollback => match self.next.phase {
                Phase::Progressing { stage }
                | Phase::WaitingApproval { stage }
                | Phase::Paused { stage, .. } => {
                    self.rollback(stage, reason.to_string(), by);
                    Ok(())
                }
                // A finished rollout sits one past the last stage.
                Phase::Succeeded => {
                    self.rollback(self.plan.stages.len(), reason.to_string(), by);
                    Ok(())
                }
                _ => Err(self.not_allowed(command)),
            },
            Command::Abort => match self.next.phase {
                Phase::Pending
                | Phase::Progressing { .. }
                | Phase::WaitingApproval { .. }
                | Phase::Paused { .. } => {
                    let from = self.next.weight;
                    let why = format!("aborted by {by}: {reason}");
                    self.transition(Phase::Aborted, 0, AuditAction::Aborted, why, by);
                    self.notify(
                        EventKind::Aborted,
                        Severity::Warning,
                        format!("Rollout aborted at {from}%; canary set to 0%: {reason}"),
                    );
                    Ok(())
                }
                _ => Err(self.not_allowed(command)),
            },
            Command::EmergencyStop => {
                self.emergency_stop(by, reason);
                Ok(())
            }
            Command::ClearEmergency => Err(self.not_allowed(command)),
        }
    }

    fn command_during_emergency(
        &mut self,
        command: Command,
        stage: usize,
        by: TriggeredBy,
        reason: &str,
    ) -> Result<(), StepError> {
        match command {
            Command::ClearEmergency => {
                if !matches!(by, TriggeredBy::Operator(_)) {
                    return Err(StepError::NeedsOperator { by });
                }
                let phase = Phase::Paused {
                    stage,
                    resume_to: ResumeTo::Progressing,
                    reason: format!("emergency stop cleared: {reason}"),
                };
                let why = format!("emergency stop cleared by {by}: {reason}");
                let w = self.next.weight;
                self.transition(phase, w, AuditAction::EmergencyCleared, why, by);
                self.notify(
                    EventKind::EmergencyCleared,
                    Severity::Info,
                    format!(
                        "Emergency stop cleared: {reason}. The rollout stays paused at {w}% \
                         until resumed."
                    ),
                );
            }
            // The stop's 0% never reached the actuator: a second stop tries again.
            Command::EmergencyStop if self.next.weight != 0 => {
                let why = format!("emergency stop retried by {by}: {reason}");
                let phase = self.next.phase.clone();
                let from = self.next.weight;
                self.transition(phase, 0, AuditAction::EmergencyStopped, why, by);
                self.notify(
                    EventKind::EmergencyStop,
                    Severity::Critical,
                    format!("EMERGENCY STOP retried: canary set from {from}% to 0%: {reason}"),
                );
            }
            other => {
                let why = format!(
                    "`{other}` from {by} ignored: an emergency stop is in force ({reason})"
                );
                self.record(AuditAction::IgnoredDuringEmergency, why, by);
            }
        }
        Ok(())
    }

    fn start(&mut self, by: TriggeredBy, reason: &str) -> Result<(), StepError> {
        let retry = match self.next.phase {
            Phase::Pending => false,
            Phase::RolledBack { .. } => true,
            _ => return Err(self.not_allowed(Command::Start)),
        };
        let weight = self.stage(0).map_err(|_| StepError::EmptyPlan)?.weight;
        self.reset_evidence();
        let label = self.stage_label(0);
        let (action, why) = if retry {
            (AuditAction::Retried, format!("retried by {by}: {reason}"))
        } else {
            (AuditAction::Started, format!("started by {by}: {reason}"))
        };
        self.transition(Phase::Progressing { stage: 0 }, weight, action, why, by);
        if retry {
            self.notify(
                EventKind::RolledBack,
                Severity::Info,
                format!("Resolved: the rolled-back rollout is being retried ({reason})."),
            );
        }
        self.notify(
            EventKind::Started,
            Severity::Info,
            format!("Rollout started at {label}."),
        );
        Ok(())
    }

    fn resume(
        &mut self,
        stage: usize,
        resume_to: ResumeTo,
        by: TriggeredBy,
        reason: &str,
    ) -> Result<(), StepError> {
        let weight = self.stage(stage)?.weight;
        self.reset_evidence();
        let phase = match resume_to {
            ResumeTo::Progressing => Phase::Progressing { stage },
            ResumeTo::WaitingApproval => Phase::WaitingApproval { stage },
        };
        let label = self.stage_label(stage);
        let why = format!("resumed by {by}: {reason}");
        self.transition(phase, weight, AuditAction::Resumed, why, by);
        self.notify(
            EventKind::Resumed,
            Severity::Info,
            format!("Rollout resumed at {label}: {reason}"),
        );
        Ok(())
    }

    fn emergency_stop(&mut self, by: TriggeredBy, reason: &str) {
        let stage = match &self.next.phase {
            Phase::Progressing { stage }
            | Phase::WaitingApproval { stage }
            | Phase::Paused { stage, .. }
            | Phase::EmergencyStopped { stage, .. } => *stage,
            Phase::Succeeded => self.plan.stages.len().saturating_sub(1),
            Phase::Pending | Phase::RolledBack { .. } | Phase::Aborted => 0,
        };
        let from = self.next.weight;
        let phase = Phase::EmergencyStopped {
            stage,
            reason: reason.to_string(),
        };
        self.next.passes = 0;
        self.next.inconclusive_streak = 0;
        self.next.failing.clear();
        let why = format!("emergency stop by {by}: {reason}");
        self.transition(phase, 0, AuditAction::EmergencyStopped, why, by);
        self.notify(
            EventKind::EmergencyStop,
            Severity::Critical,
            format!("EMERGENCY STOP: canary set from {from}% to 0%: {reason}"),
        );
    }

    // ----- the outside world -----

    /// The actuator could not move the canary from `previous`% to `attempted`%: record the
    /// weight still applied and stop for a person (see the module documentation).
    fn actuation_failed(
        &mut self,
        attempted: u8,
        previous: u8,
        error: &str,
    ) -> Result<(), StepError> {
        if self.next.weight != attempted {
            return Err(StepError::StaleActuation {
                attempted,
                weight: self.next.weight,
            });
        }
        let problem = format!(
            "the actuator could not set the canary from {previous}% to {attempted}%: {error}"
        );
        let why = format!("{problem}; the canary stays at {previous}%");
        let by = TriggeredBy::Schedule;
        if let Phase::EmergencyStopped { .. } = self.next.phase {
            // Still an emergency stop (deaf to everything else), at the weight really applied.
            self.put_back(previous, self.next.phase.clone(), why, by);
            self.notify(
                EventKind::ActuatorFailed,
                Severity::Critical,
                format!(
                    "EMERGENCY STOP NOT APPLIED: {problem}. The canary still has {previous}% \
                     of traffic; fix the actuator and send the emergency stop again."
                ),
            );
            return Ok(());
        }
        // Where the rollout was before the failed change: the stage it was moving within, or
        // for a change out of the stages (succeed, roll back, abort) the stage still applied.
        let at = match &self.next.phase {
            Phase::Progressing { stage } => Some((*stage, ResumeTo::Progressing)),
            Phase::WaitingApproval { stage } => Some((*stage, ResumeTo::WaitingApproval)),
            Phase::Paused {
                stage, resume_to, ..
            } => Some((*stage, *resume_to)),
            Phase::Succeeded
            | Phase::RolledBack { .. }
            | Phase::Aborted
            | Phase::Pending
            | Phase::EmergencyStopped { .. } => self
                .plan
                .stages
                .iter()
                .rposition(|s| s.weight == previous)
                .or((previous == 0).then_some(0))
                .map(|stage| (stage, ResumeTo::Progressing)),
        };
        match at {
            Some((stage, resume_to)) => {
                let phase = Phase::Paused {
                    stage,
                    resume_to,
                    reason: why.clone(),
                };
                let label = self.stage_label(stage);
                self.put_back(previous, phase, format!("paused for review: {why}"), by);
                self.notify(
                    EventKind::ActuatorFailed,
                    Severity::Critical,
                    format!(
                        "Rollout paused at {label} with the canary still at {previous}%: \
                         {problem}. Fix the actuator, then resume (or roll back)."
                    ),
                );
            }
            // Only a succeeded rollout (at 100%, no stage's weight) gets here.
            None => {
                self.put_back(previous, Phase::Succeeded, why, by);
                self.notify(
                    EventKind::ActuatorFailed,
                    Severity::Critical,
                    format!(
                        "The rollout stays succeeded with the canary still at {previous}%: \
                         {problem}. Fix the actuator, then roll back again."
                    ),
                );
            }
        }
        Ok(())
    }

    /// Record `weight` (the one still applied) and `phase` without asking the actuator for
    /// anything: the audit says the change failed.
    fn put_back(&mut self, weight: u8, phase: Phase, reason: String, by: TriggeredBy) {
        let attempted = self.next.weight;
        self.next.phase = phase;
        self.next.weight = weight;
        self.next.passes = 0;
        self.next.inconclusive_streak = 0;
        self.next.failing.clear();
        self.actions.push(Action::Audit {
            action: AuditAction::ActuationFailed,
            previous_weight: attempted,
            new_weight: weight,
            reason,
            triggered_by: by,
        });
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

    // ----- time -----

    fn tick(&mut self) -> Result<(), StepError> {
        if let Phase::Progressing { stage } = self.next.phase {
            self.try_advance(stage)?;
        }
        Ok(())
    }

    /// In Progressing at `stage`: advance (or wait for approval) when the evidence and the
    /// minimum duration are in; pause when the maximum duration has passed without them.
    fn try_advance(&mut self, stage: usize) -> Result<(), StepError> {
        let s = self.stage(stage)?.clone();
        let started = *self.next.stage_started_at.get_or_insert(self.now);
        let ran = elapsed(started, self.now);
        if self.next.passes >= s.required_passes && ran >= s.min_duration {
            let why = format!(
                "{} passing analyses of {} required and {} of {} minimum",
                self.next.passes,
                s.required_passes,
                human(ran),
                human(s.min_duration)
            );
            if s.approval {
                let label = self.stage_label(stage);
                let w = self.next.weight;
                self.transition(
                    Phase::WaitingApproval { stage },
                    w,
                    AuditAction::WaitingApproval,
                    why,
                    TriggeredBy::Schedule,
                );
                self.notify(
                    EventKind::WaitingApproval,
                    Severity::Info,
                    format!("{label} passed; waiting for approval to advance."),
                );
                return Ok(());
            }
            return self.advance_past(
                stage,
                AuditAction::StageAdvanced,
                why,
                TriggeredBy::Schedule,
            );
        }
        if let Some(max) = s.max_duration
            && ran >= max
        {
            let reason = format!(
                "stage ran {} (max {}) with {} of {} required passing analyses",
                human(ran),
                human(max),
                self.next.passes,
                s.required_passes
            );
            self.pause(
                stage,
                ResumeTo::Progressing,
                EventKind::Paused,
                &reason,
                TriggeredBy::Schedule,
            );
        }
        Ok(())
    }

    // ----- analyses -----

    fn analysis(&mut self, report: &AnalysisReport) -> Result<(), StepError> {
        let (stage, waiting) = match self.next.phase {
            Phase::Progressing { stage } => (stage, false),
            Phase::WaitingApproval { stage } => (stage, true),
            Phase::EmergencyStopped { .. } => {
                let why = format!(
                    "analysis ({:?}) ignored: an emergency stop is in force",
                    report.overall
                );
                self.record(
                    AuditAction::IgnoredDuringEmergency,
                    why,
                    TriggeredBy::Schedule,
                );
                return Ok(());
            }
            ref other => {
                let why = format!(
                    "analysis ({:?}) recorded, not counted: the rollout is {}",
                    report.overall,
                    other.name()
                );
                self.record(AuditAction::AnalysisRecorded, why, TriggeredBy::Schedule);
                return Ok(());
            }
        };
        self.stage(stage)?;
        let started = *self.next.stage_started_at.get_or_insert(self.now);
        let ran = elapsed(started, self.now);
        if ran < self.plan.warmup {
            let why = format!(
                "analysis ({:?}) recorded, not counted: warm-up, {} of {}",
                report.overall,
                human(ran),
                human(self.plan.warmup)
            );
            self.record(AuditAction::AnalysisRecorded, why, TriggeredBy::Schedule);
            return Ok(());
        }

        self.update_failing(report);
        let verdict = self.evaluate_triggers(report);

        // Count the evidence.
        let with_data = !report.checks.is_empty() && !report.checks.iter().any(is_no_data);
        let mut summary = format!("analysis {:?}", report.overall);
        match report.overall {
            AnalysisOutcome::Pass if with_data => {
                self.next.passes += 1;
                self.next.inconclusive_streak = 0;
            }
            AnalysisOutcome::Fail => {
                self.next.passes = 0;
                self.next.inconclusive_streak = 0;
            }
            AnalysisOutcome::Pass | AnalysisOutcome::Marginal | AnalysisOutcome::Inconclusive => {
                if report.overall == AnalysisOutcome::Pass {
                    summary.push_str(" without data for every check, held");
                }
                self.next.passes = 0;
                self.next.inconclusive_streak += 1;
            }
        }
        let required = self.stage(stage)?.required_passes;
        let _ = write!(
            summary,
            "; {} of {} passes, {} inconclusive in a row",
            self.next.passes, required, self.next.inconclusive_streak
        );
        if !verdict.failing.is_empty() {
            let _ = write!(summary, "; failing: {}", verdict.failing.join(", "));
        }
        self.record(
            AuditAction::AnalysisRecorded,
            summary,
            TriggeredBy::Schedule,
        );
        self.actions.extend(verdict.side_effects);

        let resume_to = if waiting {
            ResumeTo::WaitingApproval
        } else {
            ResumeTo::Progressing
        };
        if let Some(reason) = verdict.rollback {
            self.rollback(stage, reason, TriggeredBy::AutoRollback);
        } else if let Some(reason) = verdict.pause {
            self.pause(
                stage,
                resume_to,
                EventKind::CheckFailed,
                &reason,
                TriggeredBy::Schedule,
            );
        } else if report.overall == AnalysisOutcome::Fail && !verdict.sustain_pending {
            let reason = match verdict.failing.is_empty() {
                true => "the analysis failed overall".to_string(),
                false => format!(
                    "the analysis failed overall ({})",
                    verdict.failing.join(", ")
                ),
            };
            self.pause(
                stage,
                resume_to,
                EventKind::Paused,
                &reason,
                TriggeredBy::Schedule,
            );
        } else if self.plan.max_inconclusive > 0
            && self.next.inconclusive_streak >= self.plan.max_inconclusive
        {
            let reason = format!(
                "{} inconclusive or marginal analyses in a row (max {})",
                self.next.inconclusive_streak, self.plan.max_inconclusive
            );
            self.pause(
                stage,
                resume_to,
                EventKind::InconclusiveStreak,
                &reason,
                TriggeredBy::Schedule,
            );
        } else if !waiting {
            self.try_advance(stage)?;
        }
        Ok(())
    }

    /// Whether `outcome` counts as failing for the failure streaks: a Fail, or "no data" for a
    /// check with a trigger that treats no data as failure.
    fn is_failing(&self, outcome: &CheckOutcome) -> bool {
        outcome.class == VerdictClass::Fail
            || (is_no_data(outcome)
                && self
                    .plan
                    .triggers
                    .iter()
                    .any(|t| *t.check == *outcome.check && t.no_data == NoDataPolicy::Fail))
    }

    fn update_failing(&mut self, report: &AnalysisReport) {
        let mut failing = BTreeMap::new();
        for outcome in report.checks.iter().filter(|c| self.is_failing(c)) {
            let entry = match self.next.failing.get(&outcome.check) {
                Some(prev) => FailingCheck {
                    since: prev.since,
                    count: prev.count.saturating_add(1),
                    fired: prev.fired.clone(),
                },
                None => FailingCheck {
                    since: self.now,
                    count: 1,
                    fired: Vec::new(),
                },
            };
            failing.insert(outcome.check.clone(), entry);
        }
        self.next.failing = failing;
    }

    fn evaluate_triggers(&mut self, report: &AnalysisReport) -> TriggerVerdict {
        let mut v = TriggerVerdict {
            failing: self.next.failing.keys().cloned().collect(),
            ..TriggerVerdict::default()
        };
        let plan = self.plan;
        for (index, trigger) in plan.triggers.iter().enumerate() {
            let Some(outcome) = report.checks.iter().find(|c| *c.check == *trigger.check) else {
                continue;
            };
            let name = &trigger.check;
            let no_data = is_no_data(outcome);
            if no_data && trigger.no_data == NoDataPolicy::Pause {
                let reason = format!("check `{name}` has no data");
                if trigger.dry_run {
                    v.side_effects.push(dry_run_audit(
                        self.next.weight,
                        format!("dry run: would have paused: {reason}"),
                    ));
                } else if v.pause.is_none() {
                    v.pause = Some(reason);
                }
                continue;
            }
            let fails = outcome.class == VerdictClass::Fail
                || (no_data && trigger.no_data == NoDataPolicy::Fail);
            let Some(streak) = self.next.failing.get_mut(&**name) else {
                continue;
            };
            if !fails {
                continue;
            }
            let met = match trigger.sustain {
                Sustain::Immediately => true,
                Sustain::For(d) => elapsed(streak.since, self.now) >= d,
                Sustain::Consecutive(n) => streak.count >= n,
            };
            let what = match trigger.sustain {
                Sustain::Immediately => format!("check `{name}` failing"),
                Sustain::For(d) => format!(
                    "check `{name}` failing for {} (sustain {})",
                    human(elapsed(streak.since, self.now)),
                    human(d)
                ),
                Sustain::Consecutive(n) => format!(
                    "check `{name}` failing in {} consecutive analyses (sustain {n})",
                    streak.count
                ),
            };
            if !met {
                if !trigger.dry_run && trigger.action != TriggerAction::Notify {
                    v.sustain_pending = true;
                }
                continue;
            }
            let speaks_once = trigger.dry_run || trigger.action == TriggerAction::Notify;
            if speaks_once {
                if streak.fired.contains(&index) {
                    continue;
                }
                streak.fired.push(index);
            }
            let w = self.next.weight;
            match (trigger.dry_run, trigger.action) {
                (true, action) => {
                    let would = match action {
                        TriggerAction::Rollback => "rolled back",
                        TriggerAction::Pause => "paused for review",
                        TriggerAction::Notify => "notified",
                    };
                    let msg = format!("dry run: would have {would}: {what}");
                    v.side_effects.push(Action::Notify {
                        event: EventKind::CheckFailed,
                        severity: Severity::Info,
                        message: msg.clone(),
                    });
                    v.side_effects.push(dry_run_audit(w, msg));
                }
                (false, TriggerAction::Notify) => {
                    v.side_effects.push(Action::Notify {
                        event: EventKind::CheckFailed,
                        severity: Severity::Warning,
                        message: format!("{what}; nothing changed"),
                    });
                    v.side_effects.push(Action::Audit {
                        action: AuditAction::CheckFailed,
                        previous_weight: w,
                        new_weight: w,
                        reason: what,
                        triggered_by: TriggeredBy::Schedule,
                    });
                }
                (false, TriggerAction::Pause) => {
                    v.pause.get_or_insert(what);
                }
                (false, TriggerAction::Rollback) => {
                    v.rollback.get_or_insert(what);
                }
            }
        }
        v
    }
}

fn is_no_data(outcome: &CheckOutcome) -> bool {
    outcome.no_data && outcome.class == VerdictClass::Inconclusive
}

fn dry_run_audit(weight: u8, reason: String) -> Action {
    Action::Audit {
        action: AuditAction::DryRun,
        previous_weight: weight,
        new_weight: weight,
        reason,
        triggered_by: TriggeredBy::Schedule,
    }
}

/// What the triggers made of one analysis.
#[derive(Default)]
struct TriggerVerdict {
    /// Names of the checks failing now.
    failing: Vec<String>,
    /// A rollback trigger fired, with the reason.
    rollback: Option<String>,
    /// A pause trigger (or a no-data pause) fired, with the reason.
    pause: Option<String>,
    /// A failing check has a rollback or pause trigger still waiting for its sustain.
    sustain_pending: bool,
    /// Notify-only and dry-run notifications and audit entries.
    side_effects: Vec<Action>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::Trigger;
    use chrono::TimeZone;

    const MIN: i64 = 60;

    /// Events at seconds after the start.
    type Timeline = Vec<(i64, Event)>;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    fn stage(name: &str, weight: u8) -> Stage {
        Stage {
            name: name.to_string(),
            weight,
            min_duration: Duration::from_secs(10 * 60),
            max_duration: None,
            required_passes: 3,
            approval: false,
        }
    }

    fn trigger(check: &str, action: TriggerAction) -> Trigger {
        Trigger {
            check: check.into(),
            action,
            sustain: Sustain::Immediately,
            no_data: NoDataPolicy::Inconclusive,
            dry_run: false,
        }
    }

    /// 10% → 25% → 50%, 10 minutes and 3 passes each; error-rate rolls back, latency pauses,
    /// cpu notifies.
    fn plan() -> Plan {
        Plan {
            stages: vec![stage("c10", 10), stage("c25", 25), stage("c50", 50)],
            rollback_to: RollbackTarget::PreviousStage,
            warmup: Duration::ZERO,
            max_inconclusive: 5,
            triggers: vec![
                trigger("error-rate", TriggerAction::Rollback),
                trigger("latency", TriggerAction::Pause),
                trigger("cpu", TriggerAction::Notify),
            ],
        }
    }

    fn with(f: impl FnOnce(&mut Plan)) -> Plan {
        let mut p = plan();
        f(&mut p);
        p
    }

    fn op() -> TriggeredBy {
        TriggeredBy::Operator("ana".to_string())
    }

    fn cmd(c: Command) -> Event {
        Event::command(c, op(), "test")
    }

    fn report(overall: AnalysisOutcome, checks: Vec<CheckOutcome>) -> Event {
        Event::Analysis(AnalysisReport { checks, overall })
    }

    const CHECKS: [&str; 3] = ["error-rate", "latency", "cpu"];

    fn pass() -> Event {
        let checks = CHECKS
            .iter()
            .map(|c| CheckOutcome::new(*c, VerdictClass::Pass));
        report(AnalysisOutcome::Pass, checks.collect())
    }

    /// `check` fails; the others pass; the overall outcome is `overall`.
    fn failing(check: &str, overall: AnalysisOutcome) -> Event {
        let checks = CHECKS.iter().map(|c| {
            let class = if *c == check {
                VerdictClass::Fail
            } else {
                VerdictClass::Pass
            };
            CheckOutcome::new(*c, class)
        });
        report(overall, checks.collect())
    }

    fn fail(check: &str) -> Event {
        failing(check, AnalysisOutcome::Fail)
    }

    /// `check` has no data; the others pass.
    fn no_data(check: &str, overall: AnalysisOutcome) -> Event {
        let checks = CHECKS.iter().map(|c| match *c == check {
            true => CheckOutcome::no_data(*c),
            false => CheckOutcome::new(*c, VerdictClass::Pass),
        });
        report(overall, checks.collect())
    }

    fn outcome(o: AnalysisOutcome) -> Event {
        let checks = CHECKS
            .iter()
            .map(|c| CheckOutcome::new(*c, VerdictClass::Pass));
        report(o, checks.collect())
    }

    /// Start at 0 and reach stage 2 (25%) at minute 10.
    fn to_stage_2() -> Vec<(i64, Event)> {
        vec![
            (0, cmd(Command::Start)),
            (MIN, pass()),
            (2 * MIN, pass()),
            (3 * MIN, pass()),
            (10 * MIN, Event::Tick),
        ]
    }

    fn run(plan: &Plan, events: Vec<(i64, Event)>) -> (RolloutState, Vec<Action>) {
        let mut state = RolloutState::new();
        let mut all = Vec::new();
        for (secs, event) in events {
            let (next, actions) = step(&state, plan, event.clone(), at(secs))
                .unwrap_or_else(|e| panic!("{event:?} at {secs}s: {e}"));
            state = next;
            all.extend(actions);
        }
        (state, all)
    }

    fn then(mut events: Vec<(i64, Event)>, more: Vec<(i64, Event)>) -> Vec<(i64, Event)> {
        events.extend(more);
        events
    }

    fn repeat(from_min: i64, n: i64, event: Event) -> Vec<(i64, Event)> {
        (0..n)
            .map(|i| ((from_min + i) * MIN, event.clone()))
            .collect()
    }

    fn notified(actions: &[Action], kind: EventKind) -> Option<Severity> {
        actions.iter().rev().find_map(|a| match a {
            Action::Notify {
                event, severity, ..
            } if *event == kind => Some(*severity),
            _ => None,
        })
    }

    struct Case {
        name: &'static str,
        plan: Plan,
        events: Vec<(i64, Event)>,
        phase: &'static str,
        stage: Option<usize>,
        weight: u8,
    }

    fn start() -> Vec<(i64, Event)> {
        vec![(0, cmd(Command::Start))]
    }

    #[test]
    fn scenarios() {
        use AnalysisOutcome as O;
        let fr = "error-rate";
        let for_5m = |p: &mut Plan| p.triggers[0].sustain = Sustain::For(Duration::from_secs(300));
        let cases = vec![
            Case {
                name: "start goes to the first stage",
                plan: plan(),
                events: start(),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "3 passes and 10 minutes advance to 25%",
                plan: plan(),
                events: to_stage_2(),
                phase: "progressing",
                stage: Some(1),
                weight: 25,
            },
            Case {
                name: "passes alone do not advance before the minimum duration",
                plan: plan(),
                events: then(
                    start(),
                    vec![
                        (MIN, pass()),
                        (2 * MIN, pass()),
                        (3 * MIN, pass()),
                        (9 * MIN, Event::Tick),
                    ],
                ),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "time alone does not advance with too few passes",
                plan: plan(),
                events: then(
                    start(),
                    vec![(MIN, pass()), (2 * MIN, pass()), (60 * MIN, Event::Tick)],
                ),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "a marginal analysis resets the consecutive passes",
                plan: plan(),
                events: then(
                    start(),
                    vec![
                        (MIN, pass()),
                        (2 * MIN, pass()),
                        (3 * MIN, outcome(O::Marginal)),
                        (4 * MIN, pass()),
                        (20 * MIN, Event::Tick),
                    ],
                ),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "an overall pass with a no-data check is not evidence",
                plan: plan(),
                events: then(
                    start(),
                    then(
                        repeat(1, 3, no_data("cpu", O::Pass)),
                        vec![(20 * MIN, Event::Tick)],
                    ),
                ),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "the analysis that completes the evidence after the minimum advances at once",
                plan: plan(),
                events: then(
                    start(),
                    vec![(9 * MIN, pass()), (10 * MIN, pass()), (11 * MIN, pass())],
                ),
                phase: "progressing",
                stage: Some(1),
                weight: 25,
            },
            Case {
                name: "critical failure at 25% rolls back to 10%",
                plan: plan(),
                events: then(to_stage_2(), vec![(11 * MIN, fail(fr))]),
                phase: "rolled back",
                stage: None,
                weight: 10,
            },
            Case {
                name: "critical failure at the first stage rolls back to 0%",
                plan: plan(),
                events: then(start(), vec![(MIN, fail(fr))]),
                phase: "rolled back",
                stage: None,
                weight: 0,
            },
            Case {
                name: "rollback-to zero goes to 0% from 25%",
                plan: with(|p| p.rollback_to = RollbackTarget::Zero),
                events: then(to_stage_2(), vec![(11 * MIN, fail(fr))]),
                phase: "rolled back",
                stage: None,
                weight: 0,
            },
            Case {
                name: "a check failing with a good overall score still rolls back",
                plan: plan(),
                events: then(start(), vec![(MIN, failing(fr, O::Pass))]),
                phase: "rolled back",
                stage: None,
                weight: 0,
            },
            Case {
                name: "error rate failing for 4 minutes with sustain 5m holds",
                plan: with(for_5m),
                events: then(start(), repeat(1, 5, fail(fr))),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "error rate failing for 5 minutes with sustain 5m rolls back",
                plan: with(for_5m),
                events: then(start(), repeat(1, 6, fail(fr))),
                phase: "rolled back",
                stage: None,
                weight: 0,
            },
            Case {
                name: "a passing analysis restarts the sustain clock",
                plan: with(for_5m),
                events: then(
                    start(),
                    then(
                        repeat(1, 4, fail(fr)),
                        then(vec![(5 * MIN, pass())], repeat(6, 5, fail(fr))),
                    ),
                ),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "sustain 3 consecutive: 2 failures hold",
                plan: with(|p| p.triggers[0].sustain = Sustain::Consecutive(3)),
                events: then(start(), repeat(1, 2, fail(fr))),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "sustain 3 consecutive: 3 failures roll back",
                plan: with(|p| p.triggers[0].sustain = Sustain::Consecutive(3)),
                events: then(start(), repeat(1, 3, fail(fr))),
                phase: "rolled back",
                stage: None,
                weight: 0,
            },
            Case {
                name: "4 inconclusive in a row hold",
                plan: plan(),
                events: then(start(), repeat(1, 4, outcome(O::Inconclusive))),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "5 inconclusive in a row pause",
                plan: plan(),
                events: then(start(), repeat(1, 5, outcome(O::Inconclusive))),
                phase: "paused",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "marginal counts toward the inconclusive streak",
                plan: plan(),
                events: then(
                    start(),
                    then(
                        repeat(1, 3, outcome(O::Marginal)),
                        repeat(4, 2, outcome(O::Inconclusive)),
                    ),
                ),
                phase: "paused",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "approval gate waits for a person",
                plan: with(|p| p.stages[0].approval = true),
                events: then(
                    to_stage_2(),
                    vec![(11 * MIN, pass()), (60 * MIN, Event::Tick)],
                ),
                phase: "waiting for approval",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "approve advances past the gate",
                plan: with(|p| p.stages[0].approval = true),
                events: then(to_stage_2(), vec![(11 * MIN, cmd(Command::Approve))]),
                phase: "progressing",
                stage: Some(1),
                weight: 25,
            },
            Case {
                name: "dry-run rollback never changes the weight",
                plan: with(|p| p.triggers[0].dry_run = true),
                events: then(start(), repeat(1, 4, failing(fr, O::Marginal))),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "warm-up analyses are not counted",
                plan: with(|p| p.warmup = Duration::from_secs(5 * 60)),
                events: then(start(), then(repeat(1, 3, pass()), repeat(2, 3, fail(fr)))),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "warm-up passes do not count toward the stage",
                plan: with(|p| p.warmup = Duration::from_secs(5 * 60)),
                events: then(
                    start(),
                    then(repeat(1, 3, pass()), vec![(30 * MIN, Event::Tick)]),
                ),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "a stage past its max duration pauses",
                plan: with(|p| p.stages[0].max_duration = Some(Duration::from_secs(30 * 60))),
                events: then(start(), vec![(MIN, pass()), (30 * MIN, Event::Tick)]),
                phase: "paused",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "an overall fail with no trigger pauses for review",
                plan: plan(),
                events: then(start(), vec![(MIN, outcome(O::Fail))]),
                phase: "paused",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "a pause trigger pauses",
                plan: plan(),
                events: then(start(), vec![(MIN, failing("latency", O::Pass))]),
                phase: "paused",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "a notify trigger changes nothing",
                plan: plan(),
                events: then(start(), repeat(1, 3, failing("cpu", O::Pass))),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "no data holds by default",
                plan: plan(),
                events: then(start(), repeat(1, 3, no_data(fr, O::Inconclusive))),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "no data with policy pause pauses",
                plan: with(|p| p.triggers[0].no_data = NoDataPolicy::Pause),
                events: then(start(), vec![(MIN, no_data(fr, O::Inconclusive))]),
                phase: "paused",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "no data with policy fail fires the rollback trigger",
                plan: with(|p| p.triggers[0].no_data = NoDataPolicy::Fail),
                events: then(to_stage_2(), vec![(11 * MIN, no_data(fr, O::Inconclusive))]),
                phase: "rolled back",
                stage: None,
                weight: 10,
            },
            Case {
                name: "after the last stage the rollout succeeds at 100%",
                plan: plan(),
                events: then(
                    to_stage_2(),
                    then(
                        repeat(11, 3, pass()),
                        then(
                            vec![(20 * MIN, Event::Tick)],
                            then(repeat(21, 3, pass()), vec![(30 * MIN, Event::Tick)]),
                        ),
                    ),
                ),
                phase: "succeeded",
                stage: None,
                weight: 100,
            },
            Case {
                name: "a paused rollout ignores ticks and analyses",
                plan: plan(),
                events: then(
                    start(),
                    then(
                        vec![(MIN, cmd(Command::Pause))],
                        then(
                            repeat(2, 3, pass()),
                            vec![(30 * MIN, fail(fr)), (40 * MIN, Event::Tick)],
                        ),
                    ),
                ),
                phase: "paused",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "resume continues at the same stage",
                plan: plan(),
                events: then(
                    to_stage_2(),
                    vec![
                        (11 * MIN, cmd(Command::Pause)),
                        (20 * MIN, cmd(Command::Resume)),
                    ],
                ),
                phase: "progressing",
                stage: Some(1),
                weight: 25,
            },
            Case {
                name: "resume restarts the stage clock and evidence",
                plan: plan(),
                events: then(
                    start(),
                    vec![
                        (MIN, pass()),
                        (2 * MIN, pass()),
                        (3 * MIN, cmd(Command::Pause)),
                        (4 * MIN, cmd(Command::Resume)),
                        (5 * MIN, pass()),
                        (20 * MIN, Event::Tick),
                    ],
                ),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "promote skips the evidence",
                plan: plan(),
                events: then(start(), vec![(MIN, cmd(Command::Promote))]),
                phase: "progressing",
                stage: Some(1),
                weight: 25,
            },
            Case {
                name: "an operator rollback from 25% goes to 10%",
                plan: plan(),
                events: then(to_stage_2(), vec![(11 * MIN, cmd(Command::Rollback))]),
                phase: "rolled back",
                stage: None,
                weight: 10,
            },
            Case {
                name: "start after a rollback retries from the first stage",
                plan: plan(),
                events: then(
                    to_stage_2(),
                    vec![(11 * MIN, fail(fr)), (20 * MIN, cmd(Command::Start))],
                ),
                phase: "progressing",
                stage: Some(0),
                weight: 10,
            },
            Case {
                name: "abort sends the canary to 0%",
                plan: plan(),
                events: then(to_stage_2(), vec![(11 * MIN, cmd(Command::Abort))]),
                phase: "aborted",
                stage: None,
                weight: 0,
            },
            Case {
                name: "emergency stop sets 0% and beats everything",
                plan: plan(),
                events: then(
                    to_stage_2(),
                    vec![
                        (
                            11 * MIN,
                            Event::command(
                                Command::EmergencyStop,
                                TriggeredBy::Emergency,
                                "kill file",
                            ),
                        ),
                        (12 * MIN, cmd(Command::Resume)),
                        (13 * MIN, cmd(Command::Start)),
                        (14 * MIN, cmd(Command::Promote)),
                        (15 * MIN, pass()),
                        (16 * MIN, Event::Tick),
                    ],
                ),
                phase: "emergency-stopped",
                stage: Some(1),
                weight: 0,
            },
            Case {
                name: "clearing an emergency leaves the rollout paused at 0%",
                plan: plan(),
                events: then(
                    to_stage_2(),
                    vec![
                        (
                            11 * MIN,
                            Event::command(
                                Command::EmergencyStop,
                                TriggeredBy::Emergency,
                                "kill file",
                            ),
                        ),
                        (12 * MIN, cmd(Command::ClearEmergency)),
                        (13 * MIN, Event::Tick),
                        (14 * MIN, pass()),
                    ],
                ),
                phase: "paused",
                stage: Some(1),
                weight: 0,
            },
            Case {
                name: "resume after a cleared emergency restores the stage weight",
                plan: plan(),
                events: then(
                    to_stage_2(),
                    vec![
                        (
                            11 * MIN,
                            Event::command(
                                Command::EmergencyStop,
                                TriggeredBy::Emergency,
                                "kill file",
                            ),
                        ),
                        (12 * MIN, cmd(Command::ClearEmergency)),
                        (13 * MIN, cmd(Command::Resume)),
                    ],
                ),
                phase: "progressing",
                stage: Some(1),
                weight: 25,
            },
        ];
        for case in cases {
            let (state, actions) = run(&case.plan, case.events);
            assert_eq!(
                (state.phase.name(), state.phase.stage(), state.weight),
                (case.phase, case.stage, case.weight),
                "{}\nactions: {actions:#?}",
                case.name
            );
        }
    }

    #[test]
    fn notifications_carry_the_right_severity() {
        use AnalysisOutcome as O;
        let cases: Vec<(&str, Timeline, EventKind, Severity)> = vec![
            (
                "stage advanced",
                to_stage_2(),
                EventKind::StageAdvanced,
                Severity::Info,
            ),
            ("started", start(), EventKind::Started, Severity::Info),
            (
                "rolled back",
                then(start(), vec![(MIN, fail("error-rate"))]),
                EventKind::RolledBack,
                Severity::Critical,
            ),
            (
                "paused for a failing check",
                then(start(), vec![(MIN, fail("latency"))]),
                EventKind::CheckFailed,
                Severity::Warning,
            ),
            (
                "paused by hand",
                then(start(), vec![(MIN, cmd(Command::Pause))]),
                EventKind::Paused,
                Severity::Warning,
            ),
            (
                "overall fail",
                then(start(), vec![(MIN, outcome(O::Fail))]),
                EventKind::Paused,
                Severity::Warning,
            ),
            (
                "inconclusive streak",
                then(start(), repeat(1, 5, outcome(O::Inconclusive))),
                EventKind::InconclusiveStreak,
                Severity::Warning,
            ),
            (
                "notify trigger",
                then(start(), vec![(MIN, failing("cpu", O::Pass))]),
                EventKind::CheckFailed,
                Severity::Warning,
            ),
            (
                "emergency",
                then(start(), vec![(MIN, cmd(Command::EmergencyStop))]),
                EventKind::EmergencyStop,
                Severity::Critical,
            ),
            (
                "succeeded",
                then(
                    start(),
                    vec![
                        (MIN, cmd(Command::Promote)),
                        (2 * MIN, cmd(Command::Promote)),
                        (3 * MIN, cmd(Command::Promote)),
                    ],
                ),
                EventKind::Succeeded,
                Severity::Info,
            ),
            (
                "retry resolves the rollback",
                then(
                    start(),
                    vec![(MIN, fail("error-rate")), (2 * MIN, cmd(Command::Start))],
                ),
                EventKind::RolledBack,
                Severity::Info,
            ),
        ];
        for (name, events, kind, severity) in cases {
            let (_, actions) = run(&plan(), events);
            assert_eq!(
                notified(&actions, kind),
                Some(severity),
                "{name}: {actions:#?}"
            );
        }
    }

    #[test]
    fn weight_changes_emit_exactly_one_set_weight_and_an_audit() {
        let (_, actions) = run(&plan(), to_stage_2());
        let sets: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::SetWeight { weight, previous } => Some((*previous, *weight)),
                _ => None,
            })
            .collect();
        assert_eq!(sets, vec![(0, 10), (10, 25)]);
        let audited: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Audit {
                    action,
                    previous_weight,
                    new_weight,
                    ..
                } if previous_weight != new_weight => {
                    Some((*action, *previous_weight, *new_weight))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            audited,
            vec![
                (AuditAction::Started, 0, 10),
                (AuditAction::StageAdvanced, 10, 25)
            ]
        );
    }

    #[test]
    fn sustained_failure_rolls_back_exactly_when_the_sustain_is_met() {
        let p = with(|p| p.triggers[0].sustain = Sustain::For(Duration::from_secs(300)));
        let mut events = start();
        events.extend(repeat(1, 5, fail("error-rate")));
        let (state, actions) = run(&p, events);
        assert_eq!(
            state.phase.name(),
            "progressing",
            "4 minutes of failure: hold"
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::SetWeight { weight: 0, .. }))
        );
        assert_eq!(state.failing["error-rate"].count, 5);
        let (next, actions) = step(&state, &p, fail("error-rate"), at(6 * MIN)).unwrap();
        assert_eq!(
            next.phase.name(),
            "rolled back",
            "5 minutes of failure: roll back"
        );
        assert!(actions.contains(&Action::SetWeight {
            weight: 0,
            previous: 10
        }));
    }

    #[test]
    fn dry_run_records_what_would_have_happened_once_per_streak() {
        let p = with(|p| p.triggers[0].dry_run = true);
        let mut events = start();
        events.extend(repeat(1, 4, failing("error-rate", AnalysisOutcome::Pass)));
        let (state, actions) = run(&p, events);
        assert_eq!(state.weight, 10);
        let dry: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Audit {
                    action: AuditAction::DryRun,
                    reason,
                    ..
                } => Some(reason.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(dry.len(), 1, "{dry:?}");
        assert!(dry[0].contains("would have rolled back"), "{}", dry[0]);
    }

    #[test]
    fn events_during_an_emergency_are_audited_as_ignored() {
        let (state, _) = run(
            &plan(),
            then(start(), vec![(MIN, cmd(Command::EmergencyStop))]),
        );
        for event in [
            cmd(Command::Resume),
            cmd(Command::Rollback),
            pass(),
            fail("error-rate"),
        ] {
            let (next, actions) = step(&state, &plan(), event.clone(), at(2 * MIN)).unwrap();
            assert_eq!(
                next, state,
                "{event:?} changed an emergency-stopped rollout"
            );
            assert!(
                matches!(
                    actions.as_slice(),
                    [Action::Audit {
                        action: AuditAction::IgnoredDuringEmergency,
                        ..
                    }]
                ),
                "{event:?}: {actions:?}"
            );
        }
        let (next, actions) = step(&state, &plan(), Event::Tick, at(2 * MIN)).unwrap();
        assert_eq!((next, actions), (state, vec![]));
    }

    #[test]
    fn commands_that_make_no_sense_are_refused_without_change() {
        let pending = RolloutState::new();
        let (progressing, _) = run(&plan(), start());
        let (paused, _) = run(&plan(), then(start(), vec![(MIN, cmd(Command::Pause))]));
        let (rolled_back, _) = run(&plan(), then(start(), vec![(MIN, fail("error-rate"))]));
        let (aborted, _) = run(&plan(), then(start(), vec![(MIN, cmd(Command::Abort))]));
        let cases = [
            (&pending, Command::Approve, "pending"),
            (&pending, Command::Resume, "pending"),
            (&pending, Command::Rollback, "pending"),
            (&pending, Command::Pause, "pending"),
            (&pending, Command::ClearEmergency, "pending"),
            (&progressing, Command::Start, "progressing"),
            (&progressing, Command::Approve, "progressing"),
            (&progressing, Command::Resume, "progressing"),
            (&paused, Command::Pause, "paused"),
            (&paused, Command::Promote, "paused"),
            (&paused, Command::Approve, "paused"),
            (&rolled_back, Command::Rollback, "rolled back"),
            (&rolled_back, Command::Abort, "rolled back"),
            (&aborted, Command::Start, "aborted"),
        ];
        for (state, command, phase) in cases {
            let got = step(state, &plan(), cmd(command), at(5 * MIN));
            assert_eq!(
                got,
                Err(StepError::NotAllowed { command, phase }),
                "{command} while {phase}"
            );
        }
        let err = step(&progressing, &plan(), cmd(Command::Approve), at(5 * MIN)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`approve` is not allowed while the rollout is progressing"
        );
    }

    #[test]
    fn only_a_person_clears_an_emergency() {
        let (stopped, _) = run(
            &plan(),
            then(start(), vec![(MIN, cmd(Command::EmergencyStop))]),
        );
        for by in [
            TriggeredBy::Schedule,
            TriggeredBy::Emergency,
            TriggeredBy::AutoRollback,
        ] {
            let got = step(
                &stopped,
                &plan(),
                Event::command(Command::ClearEmergency, by.clone(), "x"),
                at(2 * MIN),
            );
            assert_eq!(got, Err(StepError::NeedsOperator { by }));
        }
    }

    #[test]
    fn bad_plans_give_errors_not_panics() {
        let empty = with(|p| p.stages.clear());
        assert_eq!(
            step(&RolloutState::new(), &empty, cmd(Command::Start), at(0)),
            Err(StepError::EmptyPlan)
        );
        // The rule file lost a stage under a running rollout.
        let (state, _) = run(&plan(), to_stage_2());
        let shorter = with(|p| p.stages.truncate(1));
        assert_eq!(
            step(&state, &shorter, Event::Tick, at(11 * MIN)),
            Err(StepError::StageOutOfRange {
                stage: 1,
                stages: 1
            })
        );
    }

    #[test]
    fn state_round_trips_through_json() {
        let p = with(|p| p.triggers[0].sustain = Sustain::Consecutive(9));
        let mut events = to_stage_2();
        events.push((11 * MIN + 1, fail("error-rate")));
        events.push((12 * MIN, cmd(Command::Pause)));
        let (state, _) = run(&p, events);
        assert!(!state.failing.is_empty());
        let json = serde_json::to_string(&state).unwrap();
        let back: RolloutState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state, "{json}");
    }

    fn failed(attempted: u8, previous: u8) -> Event {
        Event::ActuationFailed {
            attempted,
            previous,
            error: "webhook answered 500".to_string(),
        }
    }

    fn audited(actions: &[Action], action: AuditAction) -> Option<(u8, u8, String)> {
        actions.iter().find_map(|a| match a {
            Action::Audit {
                action: got,
                previous_weight,
                new_weight,
                reason,
                ..
            } if *got == action => Some((*previous_weight, *new_weight, reason.clone())),
            _ => None,
        })
    }

    #[test]
    fn a_failed_advance_stays_at_the_applied_weight_paused_until_resumed() {
        let (at_25, _) = run(&plan(), to_stage_2());
        assert_eq!(
            (&at_25.phase, at_25.weight),
            (&Phase::Progressing { stage: 1 }, 25)
        );
        let (paused, actions) = step(&at_25, &plan(), failed(25, 10), at(10 * MIN + 1)).unwrap();
        assert_eq!(paused.weight, 10);
        let Phase::Paused {
            stage,
            resume_to,
            reason,
        } = &paused.phase
        else {
            panic!("not paused: {:?}", paused.phase);
        };
        assert_eq!((*stage, *resume_to), (1, ResumeTo::Progressing));
        assert!(reason.contains("webhook answered 500"), "{reason}");
        assert!(reason.contains("from 10% to 25%"), "{reason}");
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::SetWeight { .. }))
        );
        let (from, to, why) = audited(&actions, AuditAction::ActuationFailed).unwrap();
        assert_eq!((from, to), (25, 10));
        assert!(why.contains("webhook answered 500"), "{why}");
        assert_eq!(
            notified(&actions, EventKind::ActuatorFailed),
            Some(Severity::Critical)
        );
        // Analyses and ticks do not move it; Resume re-applies the stage's weight.
        let (held, _) = step(&paused, &plan(), pass(), at(11 * MIN)).unwrap();
        assert_eq!((&held.phase, held.weight), (&paused.phase, 10));
        let (resumed, actions) =
            step(&paused, &plan(), cmd(Command::Resume), at(12 * MIN)).unwrap();
        assert_eq!(
            (&resumed.phase, resumed.weight),
            (&Phase::Progressing { stage: 1 }, 25)
        );
        assert!(actions.contains(&Action::SetWeight {
            weight: 25,
            previous: 10
        }));
    }

    #[test]
    fn a_failed_rollback_or_abort_stays_at_the_applied_stage_and_can_be_retried() {
        let (at_25, _) = run(&plan(), to_stage_2());
        for command in [Command::Rollback, Command::Abort] {
            let (down, actions) = step(&at_25, &plan(), cmd(command), at(11 * MIN)).unwrap();
            let target = down.weight;
            assert!(actions.contains(&Action::SetWeight {
                weight: target,
                previous: 25
            }));
            let (kept, _) = step(&down, &plan(), failed(target, 25), at(11 * MIN + 1)).unwrap();
            assert_eq!(kept.weight, 25, "{command}");
            assert!(
                matches!(kept.phase, Phase::Paused { stage: 1, .. }),
                "{command}: {:?}",
                kept.phase
            );
            let (again, actions) = step(&kept, &plan(), cmd(command), at(12 * MIN)).unwrap();
            assert_eq!(again.weight, target);
            assert!(actions.contains(&Action::SetWeight {
                weight: target,
                previous: 25
            }));
        }
    }

    #[test]
    fn a_failed_success_pauses_at_the_last_stage_and_a_failed_rollback_after_it_stays_succeeded() {
        let mut events = to_stage_2();
        events.extend(repeat(11, 3, pass()));
        events.push((20 * MIN, Event::Tick));
        events.extend(repeat(21, 3, pass()));
        events.push((30 * MIN, Event::Tick));
        let (done, _) = run(&plan(), events);
        assert_eq!((&done.phase, done.weight), (&Phase::Succeeded, 100));
        let (kept, _) = step(&done, &plan(), failed(100, 50), at(30 * MIN + 1)).unwrap();
        assert_eq!(kept.weight, 50);
        assert!(
            matches!(kept.phase, Phase::Paused { stage: 2, .. }),
            "{kept:?}"
        );
        // From succeeded, a rollback to 50% that fails leaves it succeeded at 100%.
        let (back, _) = step(&done, &plan(), cmd(Command::Rollback), at(31 * MIN)).unwrap();
        assert_eq!(back.weight, 50);
        let (kept, actions) = step(&back, &plan(), failed(50, 100), at(31 * MIN + 1)).unwrap();
        assert_eq!((&kept.phase, kept.weight), (&Phase::Succeeded, 100));
        assert_eq!(
            notified(&actions, EventKind::ActuatorFailed),
            Some(Severity::Critical)
        );
    }

    #[test]
    fn a_failed_emergency_stop_stays_stopped_at_the_applied_weight_and_a_second_stop_retries() {
        let (at_25, _) = run(&plan(), to_stage_2());
        let stop = Event::command(Command::EmergencyStop, TriggeredBy::Emergency, "kill file");
        let (stopped, _) = step(&at_25, &plan(), stop.clone(), at(11 * MIN)).unwrap();
        let (stuck, actions) = step(&stopped, &plan(), failed(0, 25), at(11 * MIN + 1)).unwrap();
        assert!(matches!(
            stuck.phase,
            Phase::EmergencyStopped { stage: 1, .. }
        ));
        assert_eq!(stuck.weight, 25);
        assert_eq!(
            notified(&actions, EventKind::ActuatorFailed),
            Some(Severity::Critical)
        );
        // Still deaf to everything else...
        let (same, _) = step(&stuck, &plan(), cmd(Command::Resume), at(12 * MIN)).unwrap();
        assert_eq!(same, stuck);
        // ...but a second stop tries the 0% again.
        let (retried, actions) = step(&stuck, &plan(), stop, at(12 * MIN)).unwrap();
        assert_eq!(retried.weight, 0);
        assert!(actions.contains(&Action::SetWeight {
            weight: 0,
            previous: 25
        }));
        // Once the 0% is applied, a further stop changes nothing again.
        let (twice, actions) = step(
            &retried,
            &plan(),
            Event::command(Command::EmergencyStop, TriggeredBy::Emergency, "again"),
            at(13 * MIN),
        )
        .unwrap();
        assert_eq!(twice, retried);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::SetWeight { .. }))
        );
    }

    #[test]
    fn a_stale_actuation_failure_changes_nothing() {
        let (at_25, _) = run(&plan(), to_stage_2());
        assert_eq!(
            step(&at_25, &plan(), failed(10, 0), at(11 * MIN)),
            Err(StepError::StaleActuation {
                attempted: 10,
                weight: 25
            })
        );
    }
}
