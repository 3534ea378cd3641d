//! Actuators: the edge that sets a canary's traffic weight in the outside world.
//!
//! This module owns the [`Actuator`] trait the runner calls with a [`WeightChange`], the
//! [`ActuatorError`] it returns (saying which actuator, what failed and whether a retry can help),
//! the `[actuators.NAME]` config shapes ([`ActuatorConfig`]) and [`build`], which validates a shape
//! and returns a ready actuator. The kinds live in their own files: `builtin` (an in-memory
//! [`WeightTable`] the daemon serves over HTTP), `webhook`, `command` and `file`. It does not decide
//! weights, record intents or completions (the runner and the store do), nor alert on failure.
//! Every actuator is idempotent for the same `idempotency_key`: applying a change twice leaves the
//! world as applying it once.

pub mod builtin;
pub mod command;
pub mod file;
pub mod webhook;

use serde::{Deserialize, Serialize};

use crate::redact::SecretUrl;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use builtin::{BuiltinActuator, BuiltinConfig, RolloutWeight, WeightTable};
pub use command::{CommandActuator, CommandConfig};
pub use file::{FileActuator, FileConfig, FileFormat};
pub use webhook::{WebhookActuator, WebhookConfig};

/// One weight change the runner asks an actuator to carry out. It is also the webhook's JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightChange {
    /// The rollout's name.
    pub rollout: String,
    /// The name of the stage the weight belongs to.
    pub stage: String,
    /// The canary's new share of traffic, 0–100.
    pub weight: u8,
    /// The share before this change, 0–100.
    pub previous_weight: u8,
    /// Why (e.g. "advanced to stage canary-25", "rolled back: p99 latency").
    pub reason: String,
    /// The same key for every attempt at the same change, so receivers can deduplicate.
    pub idempotency_key: String,
}

/// The future [`Actuator::set_weight`] returns: boxed so the trait stays object-safe.
pub type ActuatorFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ActuatorError>> + Send + 'a>>;

/// Sets a canary's traffic weight somewhere. The daemon holds one `Arc<dyn Actuator>` per rollout.
///
/// Implementations must be idempotent for the same `idempotency_key`, must not retry forever
/// (every wait is bounded by configuration), and report failures as [`ActuatorError`].
pub trait Actuator: Send + Sync + fmt::Debug {
    /// The configured name (`[actuators.NAME]`).
    fn name(&self) -> &str;
    /// The kind: "builtin", "webhook", "command" or "file".
    fn kind(&self) -> &'static str;
    /// Carry out `change`. `Ok` means the new weight is in effect.
    fn set_weight<'a>(&'a self, change: &'a WeightChange) -> ActuatorFuture<'a>;
}

/// A failed weight change: which actuator, what failed, and whether a retry can help.
#[derive(Debug, thiserror::Error)]
#[error("actuator `{actuator}` ({kind}) could not set rollout `{rollout}` to {weight}%: {failure}")]
pub struct ActuatorError {
    pub actuator: String,
    pub kind: &'static str,
    pub rollout: String,
    pub weight: u8,
    pub failure: Failure,
}

impl ActuatorError {
    pub(crate) fn new(actuator: &dyn Actuator, change: &WeightChange, failure: Failure) -> Self {
        Self {
            actuator: actuator.name().to_owned(),
            kind: actuator.kind(),
            rollout: change.rollout.clone(),
            weight: change.weight,
            failure,
        }
    }

    /// Whether trying the same change again later may succeed (a timeout, a 5xx, a 429, a
    /// transient I/O error), as opposed to a failure that needs a person (a 4xx, a missing
    /// program, an unwritable path, a bad weight).
    pub fn retryable(&self) -> bool {
        self.failure.retryable()
    }
}

/// What went wrong, by actuator kind.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("weight {0} is out of range 0–100")]
    WeightOutOfRange(u8),
    #[error(
        "the rollout is not registered with the builtin weight table (was its rule file loaded?)"
    )]
    UnknownRollout,
    #[error("POST {url} failed after {attempts} attempt(s): {detail}")]
    Request {
        /// Printed with its credentials masked.
        url: SecretUrl,
        attempts: u32,
        /// A timeout or connection failure: a retry may succeed.
        transient: bool,
        /// The error and its causes in one line ("…: connection refused"), credentials masked.
        detail: String,
        /// Stripped of its URL, which may carry credentials.
        #[source]
        source: reqwest::Error,
    },
    #[error("POST {url} returned {status} after {attempts} attempt(s): {body}")]
    Status {
        /// Printed with its credentials masked.
        url: SecretUrl,
        status: u16,
        attempts: u32,
        /// The first part of the response body, credentials masked.
        body: String,
    },
    #[error("could not start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` did not finish within {after:?} and was killed")]
    CommandTimeout { program: String, after: Duration },
    #[error("`{program}` {status}; stderr: {stderr_tail}")]
    CommandFailed {
        program: String,
        /// The exit code, or `None` when a signal ended the program.
        code: Option<i32>,
        /// "exited with code 3" or "was killed by signal 9".
        status: String,
        /// The last part of what the program wrote to stderr.
        stderr_tail: String,
    },
    #[error("{what} `{path}`: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// `error` and each of its causes, joined with ": ".
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

/// Exit code a command may use to ask for a retry (`EX_TEMPFAIL` from sysexits.h).
pub const EXIT_TEMPFAIL: i32 = 75;

impl Failure {
    fn retryable(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            Failure::WeightOutOfRange(_) | Failure::UnknownRollout | Failure::Invalid(_) => false,
            Failure::Request { transient, .. } => *transient,
            Failure::Status { status, .. } => *status == 429 || (500..600).contains(status),
            Failure::Spawn { .. } => false,
            Failure::CommandTimeout { .. } => true,
            Failure::CommandFailed { code, .. } => *code == Some(EXIT_TEMPFAIL),
            Failure::Io { source, .. } => !matches!(
                source.kind(),
                K::PermissionDenied
                    | K::NotFound
                    | K::NotADirectory
                    | K::IsADirectory
                    | K::ReadOnlyFilesystem
                    | K::InvalidInput
                    | K::InvalidFilename
            ),
        }
    }
}

/// Checks every actuator receives before doing anything.
pub(crate) fn check_weight(change: &WeightChange) -> Result<(), Failure> {
    if change.weight > 100 {
        return Err(Failure::WeightOutOfRange(change.weight));
    }
    if change.previous_weight > 100 {
        return Err(Failure::WeightOutOfRange(change.previous_weight));
    }
    Ok(())
}

/// One `[actuators.NAME]` table, chosen by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ActuatorConfig {
    Builtin(BuiltinConfig),
    Webhook(WebhookConfig),
    Command(CommandConfig),
    File(FileConfig),
}

impl ActuatorConfig {
    /// Every problem with this configuration at once; empty when it is usable.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ActuatorConfig::Builtin(_) => Vec::new(),
            ActuatorConfig::Webhook(c) => c.problems(),
            ActuatorConfig::Command(c) => c.problems(),
            ActuatorConfig::File(c) => c.problems(),
        }
    }
}

/// An `[actuators.NAME]` table that cannot be built, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("actuator `{actuator}`: {}", problems.join("; "))]
pub struct ConfigError {
    pub actuator: String,
    pub problems: Vec<String>,
}

/// Checks `config` without building anything (for config validation and reload dry runs).
pub fn validate(name: &str, config: &ActuatorConfig) -> Result<(), ConfigError> {
    let problems = config.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError {
            actuator: name.to_owned(),
            problems,
        })
    }
}

/// Validates `config` and builds the actuator named `name`. Builtin actuators write to `table`,
/// the one the daemon's HTTP server serves.
pub fn build(
    name: &str,
    config: &ActuatorConfig,
    table: &WeightTable,
) -> Result<Arc<dyn Actuator>, ConfigError> {
    validate(name, config)?;
    let built: Arc<dyn Actuator> = match config {
        ActuatorConfig::Builtin(_) => Arc::new(BuiltinActuator::new(name, table.clone())),
        ActuatorConfig::Webhook(c) => Arc::new(WebhookActuator::new(name, c)?),
        ActuatorConfig::Command(c) => Arc::new(CommandActuator::new(name, c)),
        ActuatorConfig::File(c) => Arc::new(FileActuator::new(name, c)),
    };
    Ok(built)
}

/// Serde glue for durations written as strings ("10s"): the one parser rule files use.
pub(crate) use crate::rules::duration::serde_text as duration_str;

/// Cuts `text` to at most `max` bytes at a character boundary, marking the cut.
pub(crate) fn truncate_head(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Keeps the last `max` bytes of `text` at a character boundary, marking the cut.
pub(crate) fn truncate_tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_durations_use_the_rule_file_syntax_and_name_bad_ones() {
        let ok: WebhookConfig = toml::from_str(
            "url = \"http://127.0.0.1:1/w\"\ntimeout = \"1m30s\"\nbackoff = \"250ms\"",
        )
        .unwrap();
        assert_eq!(ok.timeout, Duration::from_secs(90));
        assert_eq!(ok.backoff, Duration::from_millis(250));
        let err =
            toml::from_str::<WebhookConfig>("url = \"http://127.0.0.1:1/w\"\ntimeout = \"10\"")
                .unwrap_err()
                .to_string();
        assert!(err.contains("bad duration `10`"), "{err}");
    }

    #[test]
    fn truncation_keeps_char_boundaries_and_says_so() {
        assert_eq!(truncate_head("short", 10), "short");
        assert_eq!(truncate_head("ééé", 3), "é…");
        assert_eq!(truncate_tail("abcdef", 3), "…def");
        assert_eq!(truncate_tail("ééé", 3), "…é");
    }

    #[test]
    fn config_is_chosen_by_kind_and_rejects_unknown_fields() {
        let parsed: std::collections::BTreeMap<String, ActuatorConfig> = toml::from_str(
            r#"
            [builtin]
            kind = "builtin"

            [lb]
            kind = "webhook"
            url = "http://127.0.0.1:8080/weights"
            timeout = "2s"
            headers = { Authorization = "Bearer x" }

            [script]
            kind = "command"
            argv = ["/usr/local/bin/set-weight", "--verbose"]

            [nginx]
            kind = "file"
            path = "/run/canaryd/{rollout}.env"
            format = "env"
            "#,
        )
        .unwrap();
        assert!(matches!(parsed["builtin"], ActuatorConfig::Builtin(_)));
        match &parsed["lb"] {
            ActuatorConfig::Webhook(c) => {
                assert_eq!(c.timeout, Duration::from_secs(2));
                assert_eq!(c.headers["Authorization"], "Bearer x");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parsed["script"], ActuatorConfig::Command(_)));
        match &parsed["nginx"] {
            ActuatorConfig::File(c) => assert_eq!(c.format, FileFormat::Env),
            other => panic!("{other:?}"),
        }

        let err =
            toml::from_str::<ActuatorConfig>("kind = \"webhook\"\nurl = \"http://x\"\nretry = 3")
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `retry`"), "{err}");
        let err = toml::from_str::<ActuatorConfig>("kind = \"istio\"").unwrap_err();
        assert!(err.to_string().contains("istio"), "{err}");
        let err = toml::from_str::<ActuatorConfig>(
            "kind = \"webhook\"\nurl = \"http://x\"\ntimeout = \"5\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad duration `5`"), "{err}");
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let config: ActuatorConfig = toml::from_str(
            "kind = \"webhook\"\nurl = \"ftp://x\"\ntimeout = \"0s\"\nmax_attempts = 0",
        )
        .unwrap();
        let err = validate("lb", &config).unwrap_err();
        assert_eq!(err.actuator, "lb");
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.to_string().starts_with("actuator `lb`: "), "{err}");
    }
}
