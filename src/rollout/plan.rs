//! The validated rollout plan the state machine walks: stages, triggers, targeting.
//!
//! Built by `rules` from a rule file; consumed by the state machine and the runner. Plain data.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    /// Share of traffic on the canary, 0–100.
    pub weight: u8,
    /// The stage runs at least this long before it may advance.
    pub min_duration: Duration,
    /// After this long without enough passing analyses, pause for review.
    pub max_duration: Option<Duration>,
    /// Consecutive passing analyses (with enough data) required to leave the stage.
    pub required_passes: u32,
    /// A person must approve before the rollout leaves this stage.
    pub approval: bool,
}

/// What "roll back" means for a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RollbackTarget {
    /// Back to the previous stage's weight (0% from the first stage).
    PreviousStage,
    /// Straight to 0%.
    Zero,
}

/// What a failing check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerAction {
    /// Critical: roll back at once.
    Rollback,
    /// Warning: pause and ask a person to review.
    Pause,
    /// Tell the receivers, change nothing.
    Notify,
}

/// How long a check must keep failing before its action fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sustain {
    /// On the first failing analysis.
    Immediately,
    /// Failing in every analysis for at least this long ("error rate > 0.5% for 5 minutes").
    For(Duration),
    /// Failing in this many consecutive analyses.
    Consecutive(u32),
}

/// What a check's "no data" (empty or all-NaN query) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoDataPolicy {
    /// Hold the stage (the default).
    Inconclusive,
    /// Pause for review.
    Pause,
    /// Treat as a failure of the check.
    Fail,
}

/// The per-check reaction settings the state machine needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// The check's name: the same allocation as its `CheckSpec::name`.
    pub check: Arc<str>,
    pub action: TriggerAction,
    pub sustain: Sustain,
    pub no_data: NoDataPolicy,
    /// Evaluate and record, but never act.
    pub dry_run: bool,
    /// The check's window: until its stage has run this long after the warm-up, too few points
    /// is the canary's evidence still arriving, not a lack of data (0 in plans stored before).
    #[serde(default)]
    pub window: Duration,
}

/// A rollout's whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub stages: Vec<Stage>,
    pub rollback_to: RollbackTarget,
    /// No analysis is judged before this long after a stage starts.
    pub warmup: Duration,
    /// Pause after this many inconclusive analyses in a row.
    pub max_inconclusive: u32,
    pub triggers: Vec<Trigger>,
    /// Whether a new rule, or a changed `[sides] canary`, starts a run by itself.
    pub start: StartPolicy,
}

/// When a run begins (the rule's `[rollout] start` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartPolicy {
    /// As soon as the rule is loaded, and again whenever its `[sides] canary` changes: the rule
    /// file is the deploy trigger.
    #[default]
    Auto,
    /// Only on `canaryd start NAME [--canary VERSION]` or `POST /v1/rollouts/NAME/start`: a
    /// deploy pipeline says when.
    Manual,
}

/// Who is always or never in the canary, and the salt of the sticky hash.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Targeting {
    /// Keys always in the canary (internal users, beta cohort), while the weight is above 0.
    pub allow: Vec<String>,
    /// Keys never in the canary.
    pub deny: Vec<String>,
    pub salt: String,
}

/// How urgent a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// What happened, as receivers subscribe to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    Started,
    StageAdvanced,
    WaitingApproval,
    Succeeded,
    Paused,
    Resumed,
    RolledBack,
    Aborted,
    EmergencyStop,
    EmergencyCleared,
    CheckFailed,
    InconclusiveStreak,
    BackendErrors,
    ActuatorFailed,
    ConfigReloadFailed,
    /// A rollout's task failed (an error, or a panic) and was restarted by its supervisor.
    TaskRestarted,
    /// The state database was deleted, replaced or failed: the daemon stopped acting.
    StorageFailed,
}
