//! What the state machine is told (events) and what it asks the runner to do (actions).
//!
//! Plain data only: the daemon builds an [`AnalysisReport`] from the judge's results and commands
//! from API calls, hands them to [`step`](super::step), and carries out the returned [`Action`]s.
//! Nothing here decides anything; the decisions live in `machine`.

use super::plan::{EventKind, Severity};
use crate::judge::InconclusiveCause;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One thing that happened to a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The judge finished one analysis of the canary against the baseline.
    Analysis(AnalysisReport),
    /// Time passed: lets the machine advance when a stage's minimum duration ends after its
    /// passes are in, and notice a stage past its maximum duration.
    Tick,
    /// Somebody (or something) asked for a change.
    Command {
        command: Command,
        by: TriggeredBy,
        reason: String,
    },
    /// The actuator could not apply the last `SetWeight` (from `previous`% to `attempted`%),
    /// even after its retries: the traffic is still at `previous`%. The machine puts the
    /// recorded weight back and pauses the rollout for review (see `machine`).
    ActuationFailed {
        attempted: u8,
        previous: u8,
        error: String,
    },
    /// An analysis could not be run: the metric backend failed (or is not configured). The
    /// rollout holds (no tick advances it) until an analysis reaches the machine again; the
    /// count is part of the stored state, so a restart during an outage keeps holding.
    BackendError { error: String },
    /// The daemon (re)started with this rollout loaded: whatever evidence is stored, no stage
    /// advances on a tick before a fresh analysis at the current weight reaches the machine.
    DaemonStarted,
    /// Begin a new run (a canary version taken through the plan from its first stage): from a
    /// deploy pipeline (`canaryd start NAME --canary V`, `POST /v1/rollouts/NAME/start`) or the
    /// first start of a new rule. `emergency` says an emergency stop is in force: the run then
    /// begins stopped at 0%.
    NewRun {
        canary: String,
        by: TriggeredBy,
        reason: String,
        emergency: bool,
    },
    /// The rollout's rule was loaded with a different content (`fingerprint`, before:
    /// `previous`) or a different `[sides] canary` (`canary`): recorded in the history, and a
    /// changed canary starts a new run when the plan says runs start on their own.
    RuleChanged {
        fingerprint: String,
        previous: String,
        canary: String,
        emergency: bool,
    },
    /// The rollout's rule is no longer loaded (`what` says which file): a run in progress
    /// pauses at once where it is; any other is left as it is. Recorded either way.
    RuleRemoved { what: String },
}

impl Event {
    /// Shorthand for a command event.
    pub fn command(command: Command, by: TriggeredBy, reason: impl Into<String>) -> Self {
        Event::Command {
            command,
            by,
            reason: reason.into(),
        }
    }
}

/// The commands the API and the scheduler can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// Begin at the first stage (from Pending), or retry after a rollback.
    Start,
    /// Let a stage waiting for approval advance.
    Approve,
    /// Freeze the rollout at its current weight.
    Pause,
    /// Continue a paused rollout at the stage it was paused in.
    Resume,
    /// Skip the evidence and move to the next stage now.
    Promote,
    /// Roll back (to the previous stage's weight or 0%, per the plan).
    Rollback,
    /// Give up on the rollout: the canary goes to 0% and the rollout is over.
    Abort,
    /// Set 0% at once and ignore everything until a person clears it.
    EmergencyStop,
    /// Lift an emergency stop; the rollout stays paused until resumed.
    ClearEmergency,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Start => "start",
            Command::Approve => "approve",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Promote => "promote",
            Command::Rollback => "rollback",
            Command::Abort => "abort",
            Command::EmergencyStop => "emergency-stop",
            Command::ClearEmergency => "clear-emergency",
        })
    }
}

/// Who caused a change: recorded in every audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggeredBy {
    /// The machine itself, on the evidence and the clock (advance, hold, pause for review).
    Schedule,
    /// A check's rollback trigger fired.
    AutoRollback,
    /// An emergency-stop switch (kill file, pager hook).
    Emergency,
    /// A named person.
    Operator(String),
}

impl fmt::Display for TriggeredBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TriggeredBy::Schedule => f.write_str("schedule"),
            TriggeredBy::AutoRollback => f.write_str("auto-rollback"),
            TriggeredBy::Emergency => f.write_str("emergency"),
            TriggeredBy::Operator(name) => write!(f, "operator `{name}`"),
        }
    }
}

/// The judge's overall outcome of one analysis (its weighted score against the thresholds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnalysisOutcome {
    Pass,
    Marginal,
    Fail,
    Inconclusive,
}

/// One check's verdict, as far as the rollout cares: an inconclusive one carries the judge's
/// typed cause, which the machine's no-data rules read (never the reason's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum CheckVerdict {
    Pass,
    Fail,
    /// Not enough evidence either way, and why: for lack of data (`no-data`, `too-few`), which
    /// the check's [`NoDataPolicy`](super::NoDataPolicy) may turn into a hold, pause or fail;
    /// `not-applicable` at 100% (the analysis's `overall` was scored without the check, so it
    /// counts neither for nor against the stage); or a test that could not be computed.
    Inconclusive {
        cause: InconclusiveCause,
    },
}

/// One check's result within an analysis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// The check's name, matched against `Trigger::check`.
    pub check: String,
    pub verdict: CheckVerdict,
    /// Judged on its stage's evidence with bounds valid at every look (issue 19): a failure is
    /// already sustained by the evidence itself, so the trigger's `for`/`consecutive` (meant for
    /// blips on absolute thresholds) do not delay it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settled: bool,
}

impl CheckOutcome {
    pub fn new(check: impl Into<String>, verdict: CheckVerdict) -> Self {
        CheckOutcome {
            check: check.into(),
            verdict,
            settled: false,
        }
    }

    pub fn pass(check: impl Into<String>) -> Self {
        CheckOutcome::new(check, CheckVerdict::Pass)
    }

    pub fn fail(check: impl Into<String>) -> Self {
        CheckOutcome::new(check, CheckVerdict::Fail)
    }

    pub fn inconclusive(check: impl Into<String>, cause: InconclusiveCause) -> Self {
        CheckOutcome::new(check, CheckVerdict::Inconclusive { cause })
    }
}

/// One analysis, as the state machine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisReport {
    pub checks: Vec<CheckOutcome>,
    pub overall: AnalysisOutcome,
}

/// What the runner must do after a step, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    /// Move the canary's share of traffic. Emitted exactly once per weight change, never when
    /// the weight stays the same.
    SetWeight { weight: u8, previous: u8 },
    /// Tell the receivers subscribed to `event`.
    Notify {
        event: EventKind,
        severity: Severity,
        message: String,
    },
    /// Record what happened, and why, in the audit log.
    Audit {
        action: AuditAction,
        previous_weight: u8,
        new_weight: u8,
        reason: String,
        triggered_by: TriggeredBy,
    },
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    Started,
    /// Retried after a rollback.
    Retried,
    /// An analysis was recorded (counted, held, or ignored during warm-up).
    AnalysisRecorded,
    StageAdvanced,
    WaitingApproval,
    Approved,
    Promoted,
    Succeeded,
    Paused,
    Resumed,
    RolledBack,
    Aborted,
    EmergencyStopped,
    EmergencyCleared,
    /// A check's notify-only trigger fired.
    CheckFailed,
    /// A dry-run trigger fired: what would have happened, with nothing done.
    DryRun,
    /// An event was ignored because an emergency stop is in force.
    IgnoredDuringEmergency,
    /// The actuator could not apply a weight change; the recorded weight went back to the
    /// applied one.
    ActuationFailed,
    /// An analysis failed on a metric backend error: the rollout holds where it is.
    BackendHeld,
    /// A new run (canary version) began at the first stage.
    RunStarted,
    /// The rollout's rule file changed (its fingerprint, and maybe its canary version).
    RuleChanged,
}
