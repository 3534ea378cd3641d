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
    /// Analyses in a row that failed on metric backend errors. While non-zero the rollout holds:
    /// no tick advances it. Stored, so a restart during an outage keeps holding.
    #[serde(default)]
    pub backend_errors: u32,
    /// Set when the daemon starts: no tick advances the stage before a fresh analysis at the
    /// current weight has reached the machine (the stored passes may be hours old).
    #[serde(default)]
    pub awaiting_analysis: bool,
    /// When the last analysis with data for every check was counted.
    #[serde(default)]
    pub last_analysis_at: Option<DateTime<Utc>>,
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
    /// begin (see [`StartPolicy`]).
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
            last_analysis_at: None,
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
        self.next.awaiting_analysis = false;
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
        if self.next.finished() {
            // A finished run keeps its weight: 100% is the released version, a rolled-back or
            // aborted canary already has what the rollback left it. Stopping would resurrect it
            // as a paused run that `resume` could move.
            let why = format!(
                "emergency stop by {by}: {reason}; the run is {} at {}%, left as it is",
                self.next.phase.name(),
                self.next.weight
            );
            self.record(AuditAction::EmergencyStopped, why, by);
            return;
        }
        let stage = match &self.next.phase {
            Phase::Progressing { stage }
            | Phase::WaitingApproval { stage }
            | Phase::Paused { stage, .. }
            | Phase::EmergencyStopped { stage, .. } => *stage,
            Phase::Pending | Phase::Succeeded | Phase::RolledBack { .. } | Phase::Aborted => 0,
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
        if self.next.passes >= s.required_passes && ran >= s.min_duration && !self.next.held() {
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
        // The backend answers again.
        self.next.backend_errors = 0;
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
        // A fresh analysis at this weight: the stored evidence may be used again.
        self.next.awaiting_analysis = false;

        // Count the evidence.
        let with_data = !report.checks.is_empty() && !report.checks.iter().any(is_no_data);
        if with_data {
            self.next.last_analysis_at = Some(self.now);
        }
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

#[path = "runs.rs"]
mod runs;

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "runs_tests.rs"]
mod runs_tests;
