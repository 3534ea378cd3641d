//! The plain records the store reads and writes: what a caller hands in (`New*`, [`Step`]) and
//! what it gets back (rows with their ids and timestamps). It owns no I/O and no SQL.
//!
//! Event kinds, severities, actions and outcomes are kept as strings: their enums belong to the
//! rollout state machine and the notifiers, and the store must not pin their spelling.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One decision of the state machine, written by [`super::Store::commit_step`] in a single
/// transaction: either every part is recorded or none is.
#[derive(Debug, Clone)]
pub struct Step<'a, S> {
    /// The rollout's name; its row is created on the first step.
    pub rollout: &'a str,
    /// The rollout's new state, stored as JSON (opaque to the store).
    pub state: &'a S,
    /// Fingerprint of the rule file the state was computed under.
    pub rule_fingerprint: &'a str,
    /// When the decision was taken; the timestamp of every row written by the step.
    pub at: DateTime<Utc>,
    pub audit: Vec<NewAudit>,
    /// The weight change to carry out, recorded before the actuator is called.
    pub intent: Option<NewIntent>,
    /// Notifications to send; one whose dedupe key is already in the outbox is skipped.
    pub outbox: Vec<NewMessage>,
    pub analysis: Option<NewAnalysis>,
    /// The run the step's audit entries and analysis belong to (1 unless set).
    pub run: u32,
    /// Set when the step begins run `run`: recorded in the list of runs.
    pub run_started: Option<NewRun>,
}

/// A run that begins with a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRun {
    /// The canary version it takes through the plan.
    pub canary: String,
    /// Who started it (`schedule`, `operator:alice`, ...).
    pub started_by: String,
}

/// One run of a rollout, as listed by [`super::Store::runs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run: u32,
    /// Empty for a run recorded before versions were (a database from before runs).
    pub canary: String,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
    /// The action of the run's newest audit entry (`succeeded`, `rolled-back`, ...).
    pub last_action: Option<String>,
    pub last_at: Option<DateTime<Utc>>,
}

impl<'a, S> Step<'a, S> {
    /// A step that only saves the state; add the other parts with the public fields.
    pub fn new(
        rollout: &'a str,
        state: &'a S,
        rule_fingerprint: &'a str,
        at: DateTime<Utc>,
    ) -> Self {
        Step {
            rollout,
            state,
            rule_fingerprint,
            at,
            audit: Vec::new(),
            intent: None,
            outbox: Vec::new(),
            analysis: None,
            run: 1,
            run_started: None,
        }
    }
}

/// What [`super::Store::commit_step`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub audit_ids: Vec<i64>,
    pub intent_id: Option<i64>,
    /// One entry per message of the step, `None` where its dedupe key was already enqueued.
    pub outbox_ids: Vec<Option<i64>>,
    pub analysis_id: Option<i64>,
}

/// A rollout's saved state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRollout<S> {
    pub name: String,
    pub state: S,
    pub rule_fingerprint: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewAnalysis {
    pub outcome: String,
    /// The weighted score; NaN is stored as no score.
    pub score: Option<f64>,
    /// Per-check evidence, as the judge produced it, already written as JSON (the daemon
    /// serialises it once, straight from its types; `serde_json::value::to_raw_value` makes one).
    pub evidence: Box<serde_json::value::RawValue>,
    /// The answers the rollout's next analyses of the stage resume from (`store::kept`): they
    /// replace the ones kept before (none: clear them); `None` leaves those as they are.
    #[serde(skip)]
    pub kept: Option<Vec<KeptAnswer>>,
}

/// One query's answer so far in a stage, kept for the next analysis, opaque to the store: the
/// query's text, its step and the stage's start identify it; `data` is the answer as the
/// daemon encoded it (`daemon::analysis::kept`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    pub query: String,
    pub step_ms: i64,
    pub from_ms: i64,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub id: i64,
    pub rollout: String,
    /// The run it belongs to.
    #[serde(default = "first_run")]
    pub run: u32,
    pub at: DateTime<Utc>,
    pub outcome: String,
    pub score: Option<f64>,
    pub evidence: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAudit {
    pub action: String,
    pub previous_weight: Option<u8>,
    pub new_weight: Option<u8>,
    pub reason: String,
    /// Who or what caused it: `analysis`, `schedule`, `operator:alice`, ...
    pub triggered_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub rollout: String,
    /// The run it belongs to.
    #[serde(default = "first_run")]
    pub run: u32,
    pub at: DateTime<Utc>,
    pub action: String,
    pub previous_weight: Option<u8>,
    pub new_weight: Option<u8>,
    pub reason: String,
    pub triggered_by: String,
}

/// A weight change about to be carried out. The idempotency key is unique across the store and
/// is what the actuator receives, so re-driving the intent after a crash is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIntent {
    pub idempotency_key: String,
    pub weight: u8,
    pub previous_weight: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    Pending,
    Done,
    Failed,
}

impl IntentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentStatus::Pending => "pending",
            IntentStatus::Done => "done",
            IntentStatus::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(IntentStatus::Pending),
            "done" => Some(IntentStatus::Done),
            "failed" => Some(IntentStatus::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for IntentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub id: i64,
    pub rollout: String,
    pub idempotency_key: String,
    pub weight: u8,
    pub previous_weight: u8,
    pub status: IntentStatus,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A notification to enqueue. The dedupe key is unique across the outbox: enqueueing it twice
/// keeps the first message only. A message of an incident takes its place in the incident's
/// life (see [`MessageIncident`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    pub receiver: String,
    pub dedupe_key: String,
    pub event: String,
    pub severity: String,
    pub payload: Value,
    /// The incident it triggers (or updates) or resolves; `None` for information.
    #[serde(default)]
    pub incident: Option<MessageIncident>,
}

/// The incident a message belongs to. The store keeps one row per incident key: a trigger
/// opens an incident when none is open under the key (the key's next one, whose messages get
/// `#N` appended to their dedupe keys from the second on) and otherwise updates the open one;
/// a resolve closes the open one, goes to every receiver it is enqueued for while that
/// incident is the key's latest, and is dropped when the key never had an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageIncident {
    /// The incident key (PagerDuty's `dedup_key`, the notification's group key).
    pub key: String,
    /// The rollout it is about; `None` for the daemon's own incidents.
    pub rollout: Option<String>,
    pub action: IncidentStep,
}

/// What a message does to its incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStep {
    Trigger,
    Resolve,
}

impl IncidentStep {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStep::Trigger => "trigger",
            IncidentStep::Resolve => "resolve",
        }
    }
}

/// An incident still open, with the receivers that were told about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenIncident {
    pub key: String,
    pub rollout: Option<String>,
    pub opened_at: DateTime<Utc>,
    /// Every receiver a message of this incident was enqueued for, sorted.
    pub receivers: Vec<String>,
    /// The payload of its latest message.
    pub payload: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Pending,
    Sent,
    /// Given up on: a permanent error or too many attempts.
    Failed,
    /// Not sent: its incident was resolved before it was delivered, and the resolve went
    /// instead (a trigger after its own resolve would reopen the incident).
    Superseded,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
            MessageStatus::Superseded => "superseded",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(MessageStatus::Pending),
            "sent" => Some(MessageStatus::Sent),
            "failed" => Some(MessageStatus::Failed),
            "superseded" => Some(MessageStatus::Superseded),
            _ => None,
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: i64,
    pub receiver: String,
    pub dedupe_key: String,
    pub event: String,
    pub severity: String,
    pub payload: Value,
    pub status: MessageStatus,
    /// Delivery attempts started (each claim counts one).
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Number of outbox messages in each status, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
    /// Triggers never sent because their incident was resolved first (the resolve went).
    #[serde(default)]
    pub superseded: u64,
}

/// A daemon flag (emergency stop, ...): a JSON value under a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag<T> {
    pub key: String,
    pub value: T,
    pub updated_at: DateTime<Utc>,
}

/// Where the next page starts: listings are newest first, and the cursor is the id of the last
/// row returned. It prints and parses as a plain string, for HTTP query parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub(crate) i64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A cursor string that is not one the store handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid page cursor `{0}`: use the `next` value of a previous page")]
pub struct BadCursor(pub String);

impl FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Cursor(id)),
            _ => Err(BadCursor(text.to_string())),
        }
    }
}

/// One page of a newest-first listing; `next` is `None` on the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

fn first_run() -> u32 {
    1
}
