//! Notifications to teams and on-call: what a rollout's events tell people, who gets them, and
//! their delivery from the durable outbox. It owns the receivers (email, Slack, generic webhook,
//! PagerDuty), routing, content and the [`Dispatcher`]; it must not decide anything about a
//! rollout (the state machine does) nor write the outbox rows of a decision (the daemon does, in
//! the same transaction as the decision, with [`outbox_messages`]).
//!
//! # Parts
//! - [`notification`]: the [`Notification`] payload and its incident group key (pure).
//! - [`route`]: receivers per event and the outbox dedupe keys (pure).
//! - [`content`]: rendering per receiver kind (pure).
//! - [`command_line`]: the commands printed to act, complete so they run as printed (pure).
//! - [`config`]: `[receivers.NAME]` shapes, validation, and building [`Receivers`].
//! - [`email`], [`http`]: the notifiers that talk to the world.
//! - [`dispatch`]: the [`Dispatcher`] task: claim, rate-limit, send, record, retry.
//! - [`rate`]: a receiver's [`rate::RateLimit`] and the token bucket that enforces it (pure).
//!
//! # Delivery guarantees
//! A message is enqueued in the same transaction as the decision that caused it, so it is never
//! lost; a claimed message is leased, and becomes due again if its sender dies before recording
//! the outcome. The dispatcher marks a message sent right after the receiver accepted it: in
//! normal operation each message is sent once. The window between the receiver's acceptance and
//! the mark (a crash, a kill, a failed database write in between) gives *at-least-once*
//! delivery; every send carries the message's idempotency key (its outbox dedupe key) so the
//! receiver can collapse a repeat: the email `Message-ID` is derived from it, the generic
//! webhook sends it in the body and the `Idempotency-Key` header, and PagerDuty collapses on
//! `dedup_key` (the incident's group key: a repeated trigger updates the open incident). A
//! lease belongs to the process that took it, and the next process releases a gone one's at
//! start, so after a crash what was in flight is sent again within a poll.
//!
//! # Incidents
//! A notification that triggers or resolves (see [`incident_action`]) belongs to the incident of
//! its group key, and its outbox messages carry it ([`route::incident_of`]): the store gives the
//! key one incident open at a time, orders its messages per receiver and lets a resolve
//! supersede a trigger not yet delivered (see `store::incidents`). Rollout incidents are
//! anchored on the stage they happened in ([`group_key`]); the daemon keys the others by what
//! they are about (`canaryd/NAME/backend-errors`, `canaryd/rule-file/PATH`,
//! `canaryd/daemon/rule-reload`) and resolves them when it is over, and resolves every open
//! incident of a rollout when a new run begins or a run finishes. A daemon event
//! ([`Notification::daemon`], `scope: "daemon"`) names no rollout and links to the overview.
//!
//! # Generic webhook schema (version 1)
//! `POST` with `Content-Type: application/json` and `Idempotency-Key: KEY`:
//! ```json
//! {
//!   "version": 1,
//!   "idempotency_key": "canaryd/web/1740830400000/paused/ops-hook",
//!   "summary": "[canaryd] WARNING web: Rollout paused at stage 2 `c25` (25%) for review: ...",
//!   "text": "the plain-text body, as in the email",
//!   "notification": {
//!     "scope": "rollout",                     // rollout | daemon (then rollout and team are "")
//!     "rollout": "web", "team": "payments",
//!     "event": "paused",                      // an event kind as rule files spell it
//!     "severity": "warning",                  // info | warning | critical
//!     "incident": "trigger",                  // trigger | resolve | none
//!     "group_key": "canaryd/web/1740830400000",
//!     "at": "2025-03-01T12:00:00Z",
//!     "message": "Rollout paused at ... for review: check `latency` failing",
//!     "phase": "paused",
//!     "stage": {"number": 2, "of": 3, "name": "c25", "weight": 25},   // or null
//!     "weight": 25,
//!     "checks": [{
//!       "check": "latency", "verdict": "fail", "reason": "...", "measure": "median",
//!       "baseline": 0.12, "canary": 0.19, "ratio": 1.58, "difference": 0.07,
//!       "limit": {"kind": "tolerance", "value": 0.1},  // tolerance | threshold | max-slope-per-minute
//!       "p_value": 0.0001, "confidence": 0.99, "test": "Wilcoxon signed-rank"
//!     }],
//!     "status_url": "https://canaryd.example.com/rollouts/web",     // or null
//!     "commands": ["canaryd resume web --url https://canaryd.example.com --token-file ~/.config/canaryd/token --reason \"...\"", ...]
//!   }
//! }
//! ```
//! Any 2xx is success; 408, 429 and 5xx are retried (honouring `Retry-After`); other answers
//! fail the message for good. New fields may be added within version 1; a change that breaks a
//! reader bumps the version.

pub mod command_line;
pub mod config;
pub mod content;
pub mod dispatch;
pub mod email;
pub mod http;
pub mod memory;
pub mod notification;
pub mod rate;
pub mod route;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use config::{ReceiverConfig, ReceiverError, Receivers};
pub use dispatch::{DispatchSettings, Dispatcher, DispatcherHandle, NotifyMetrics};
pub use memory::MemoryNotifier;
pub use notification::{
    CheckRow, Context, IncidentAction, Limit, Notification, Scope, StageInfo, group_key,
    incident_action,
};
pub use route::{dedupe_key, incident_of, outbox_messages, receivers_for};

/// The future a [`Notifier`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>>;

/// Something that delivers a notification to people: one configured receiver.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// `email`, `slack`, `webhook` or `pagerduty`.
    fn kind(&self) -> &'static str;

    /// Delivers one notification. `idempotency_key` is the same on every attempt of one outbox
    /// message, so a receiver can collapse a repeat.
    fn send<'a>(
        &'a self,
        notification: &'a Notification,
        idempotency_key: &'a str,
    ) -> SendFuture<'a>;
}

/// Why a delivery failed, and whether trying again can help ([`NotifyError::retryable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot connect to {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("no answer from {target} within {after:?}")]
    Timeout { target: String, after: Duration },
    #[error("network error talking to {target}: {detail}")]
    Network { target: String, detail: String },
    #[error("TLS with {target} failed: {detail}")]
    Tls { target: String, detail: String },
    #[error("{target} answered HTTP {status}: {body}")]
    Http {
        target: String,
        status: u16,
        body: String,
        /// The `Retry-After` the server asked for, if any.
        retry_after: Option<Duration>,
    },
    #[error("SMTP server {target} answered {code}: {detail}")]
    Smtp {
        target: String,
        code: u16,
        detail: String,
    },
    #[error(
        "SMTP server {target} rejected the credentials ({detail}); check `username` and \
         `password_file`"
    )]
    Auth { target: String, detail: String },
    #[error("bad email address `{address}`: {detail}")]
    Address { address: String, detail: String },
    #[error("cannot build the message: {detail}")]
    Message { detail: String },
}

impl NotifyError {
    /// Whether a later attempt may succeed: connection problems, timeouts, TLS and network
    /// errors, HTTP 408/429/5xx and SMTP 4xx replies. Bad credentials, bad addresses, other
    /// 4xx and SMTP 5xx replies will fail the same way every time.
    pub fn retryable(&self) -> bool {
        match self {
            NotifyError::Connect { .. }
            | NotifyError::Timeout { .. }
            | NotifyError::Network { .. }
            | NotifyError::Tls { .. } => true,
            NotifyError::Http { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            NotifyError::Smtp { code, .. } => (400..500).contains(code),
            NotifyError::Auth { .. }
            | NotifyError::Address { .. }
            | NotifyError::Message { .. } => false,
        }
    }

    /// How long the receiver asked us to wait before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
