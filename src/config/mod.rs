//! The daemon's configuration (`canaryd.toml`): its shapes, loading in two stages and validation.
//!
//! This module owns the `[server]`, `[log]`, `[scheduler]`, `[retention]`, `[sources.*]`, `[actuators.*]` and
//! `[receivers.*]` schema. Loading first parses the file with `toml`, so syntax errors and unknown
//! keys are reported with file:line:column; then it applies `CANARYD__SECTION__KEY` environment
//! overrides through the `config` crate (which loses positions, hence the first pass); then the
//! pure [`Config::validate`] (in `validate`) returns every remaining problem at once, each pointed
//! at its key's line:column or at the variable that set it. `canaryd check` and `canaryd serve`
//! both load through [`load`], so they accept exactly the same files. It builds nothing (sources
//! and actuators are built by the daemon) and reads no file but the config itself (and the
//! token file; [`exposure`] reads the modes of the token file and the state directory).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actuator::ActuatorConfig;
use crate::redact;
use crate::rules::raw::Shape;
use crate::rules::{KnownNames, Problem, SourceText};
use crate::source::PrometheusConfig;

pub mod exposure;
mod secrets;
mod validate;
pub use secrets::warnings as credential_warnings;
pub use validate::{ConfigProblem, MAX_CONCURRENT_QUERIES};

/// Where `canaryd serve` looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/canaryd/canaryd.toml";

/// The prefix of environment overrides: `CANARYD__SERVER__LISTEN=127.0.0.1:9797`.
pub const ENV_PREFIX: &str = "CANARYD";
/// Separates the prefix and the path of an override's key.
pub const ENV_SEPARATOR: &str = "__";

/// The whole daemon configuration, after overrides. Call [`Config::validate`] before use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite state database lives.
    pub state_dir: PathBuf,
    /// Where the rule files (`*.toml`, one rollout each) live.
    pub rules_dir: PathBuf,
    /// While this file exists, every rollout is held at 0% (emergency stop).
    #[serde(default)]
    pub emergency_stop_file: Option<PathBuf>,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    pub actuators: BTreeMap<String, ActuatorConfig>,
    #[serde(default)]
    pub receivers: BTreeMap<String, ReceiverConfig>,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port; loopback by default (reads are open to loopback peers only).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The base URL people use to reach the daemon, for links in notifications.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Accept emergency-stop requests from other hosts (off: loopback peers only).
    #[serde(default)]
    pub remote_emergency_stop: bool,
    /// The API token file: one `NAME ROLE SHA256-HEX` per line (see `crate::tokens`). Without
    /// it every mutation is refused with 401.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Reads (the pages, `/metrics`, assignment, weight, `GET /v1/...`) need a token too; off:
    /// open to loopback peers (other peers always need one). See `daemon::access`.
    #[serde(default)]
    pub reads_need_token: bool,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9797))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            public_url: None,
            remote_emergency_stop: false,
            token_file: None,
            reads_need_token: false,
        }
    }
}

/// `[log]`: how logs are written (to stderr, which journald collects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `canaryd=debug,info`, ...
    #[serde(default = "default_level")]
    pub level: String,
}

fn default_level() -> String {
    "info".to_string()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: default_level(),
        }
    }
}

/// Readable lines for a terminal, or one JSON object per line for log collectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[scheduler]`: limits on what the analyses may ask of the metric backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Backend requests in flight at once, across every rollout (an analysis's queries that share
    /// a window and step are one request).
    #[serde(default = "default_max_queries")]
    pub max_concurrent_queries: usize,
    /// Consecutive analyses failing on backend errors before an alert is raised. The rollout
    /// holds from the first error either way.
    #[serde(default = "default_error_limit")]
    pub backend_error_limit: u32,
}

fn default_max_queries() -> usize {
    8
}

fn default_error_limit() -> u32 {
    3
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_concurrent_queries: default_max_queries(),
            backend_error_limit: default_error_limit(),
        }
    }
}

/// `[retention]`: how long the history is kept at which resolution (see `store::retention`).
/// Decisions, and the analyses they were taken on, are always kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Every analysis younger than this is kept.
    #[serde(
        default = "default_keep_all_for",
        with = "crate::rules::duration::serde_text"
    )]
    pub keep_all_for: Duration,
    /// Older, one analysis per run per this much time is kept (with each stage's first and
    /// last).
    #[serde(
        default = "default_keep_one_per",
        with = "crate::rules::duration::serde_text"
    )]
    pub keep_one_per: Duration,
    /// This long after a finished run's last entry, only its decisions' analyses and each
    /// stage's first and last are kept.
    #[serde(
        default = "default_finished_runs_for",
        with = "crate::rules::duration::serde_text"
    )]
    pub finished_runs_for: Duration,
    /// How often the history is pruned.
    #[serde(
        default = "default_prune_every",
        with = "crate::rules::duration::serde_text"
    )]
    pub prune_every: Duration,
}

fn default_keep_all_for() -> Duration {
    Duration::from_secs(3600)
}

fn default_keep_one_per() -> Duration {
    Duration::from_secs(600)
}

fn default_finished_runs_for() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_prune_every() -> Duration {
    Duration::from_secs(600)
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep_all_for: default_keep_all_for(),
            keep_one_per: default_keep_one_per(),
            finished_runs_for: default_finished_runs_for(),
            prune_every: default_prune_every(),
        }
    }
}

/// One `[sources.NAME]` table, chosen by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    Prometheus(PrometheusConfig),
}

/// One `[receivers.NAME]` table: the notifier's own configuration, chosen by its `kind`.
pub use crate::notify::ReceiverConfig;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Syntax, unknown keys, wrong types: every one found, each with file:line:column.
    #[error("{}", lines(.0))]
    Parse(Vec<Problem>),
    /// An environment override that does not fit the schema.
    #[error("config {path} with environment overrides ({vars}) is not valid: {message}")]
    Override {
        path: PathBuf,
        vars: String,
        message: String,
    },
    /// Every problem [`Config::validate`] found, each with its position or variable.
    #[error("{}", Problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// What `canaryd check` prints: every problem, each with the config's path; `None` when the
    /// file could not be read at all.
    pub fn problems(&self) -> Option<Vec<Problem>> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse(problems) => Some(problems.clone()),
            ConfigError::Override {
                path,
                vars,
                message,
            } => Some(vec![Problem::file(
                path,
                format!("with the environment overrides {vars}: {message}"),
            )]),
            ConfigError::Invalid { problems, .. } => Some(problems.clone()),
        }
    }
}

/// Problems one per line (each with its hint).
fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

struct Problems<'a>(&'a Path, &'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {} is not valid:", self.0.display())?;
        for p in self.1 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Read, parse, override from the process environment and validate the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = crate::rules::read_bounded(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = parse(path, &text, &env)?;
    // The daemon reads the token file at start and refuses to start without it: so does this.
    if let Err(e) = crate::tokens::Tokens::load(config.server.token_file.as_deref()) {
        let problem = ConfigProblem {
            key: vec!["server".into(), "token_file".into()],
            message: e.to_string(),
            hint: Some(
                "create it with `canaryd token new NAME --role admin`, or remove the key".into(),
            ),
        };
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: validate::locate(path, &text, &overrides(&env), vec![problem]),
        });
    }
    Ok(config)
}

/// The `CANARYD__*` variables of `env`.
fn overrides(env: &HashMap<String, String>) -> HashMap<String, String> {
    env.iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Parse config text, apply the `CANARYD__*` overrides found in `env`, and validate. Pure.
pub fn parse(
    path: &Path,
    text: &str,
    env: &HashMap<String, String>,
) -> Result<Config, ConfigError> {
    // Stage 1: the file alone, for positions.
    let from_file: Config = match crate::rules::raw::parse_as::<Config>(text) {
        Shape::Parsed { raw, unknown_keys } if unknown_keys.is_empty() => *raw,
        Shape::Parsed {
            unknown_keys: errors,
            ..
        }
        | Shape::Broken(errors) => {
            let src = SourceText::new(path, text);
            return Err(ConfigError::Parse(
                errors
                    .into_iter()
                    // A message may quote the value, which may be a URL with credentials.
                    .map(|e| src.problem(e.span, redact::text(&e.message), e.hint))
                    .collect(),
            ));
        }
    };
    // Stage 2: overrides.
    let overrides = overrides(env);
    let config = if overrides.is_empty() {
        from_file
    } else {
        let mut vars: Vec<&str> = overrides.keys().map(String::as_str).collect();
        vars.sort_unstable();
        let vars = vars.join(", ");
        let fail = |message: String| ConfigError::Override {
            path: path.to_path_buf(),
            vars: vars.clone(),
            message: redact::text(&message).into_owned(),
        };
        ::config::Config::builder()
            .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
            .add_source(
                ::config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator(ENV_SEPARATOR)
                    .separator(ENV_SEPARATOR)
                    .try_parsing(true)
                    .source(Some(overrides.clone().into_iter().collect())),
            )
            .build()
            .map_err(|e| fail(e.to_string()))?
            .try_deserialize::<Config>()
            .map_err(|e| fail(e.to_string()))?
    };
    // Stage 3: meaning, each problem pointed at its key (or the variable that set it).
    let mut problems = config.validate().err().unwrap_or_default();
    // `RUST_LOG`, when set, replaces `[log] level` (see `crate::logging`).
    if let Some(filter) = env.get("RUST_LOG").filter(|f| !f.trim().is_empty())
        && let Err((message, hint)) = validate::log_filter(filter)
    {
        problems.push(ConfigProblem {
            key: Vec::new(),
            message: format!("RUST_LOG = {filter:?}, which replaces `log.level`: {message}"),
            hint: Some(hint),
        });
    }
    if problems.is_empty() {
        return Ok(config);
    }
    Err(ConfigError::Invalid {
        path: path.to_path_buf(),
        problems: validate::locate(path, text, &overrides, problems),
    })
}

impl Config {
    /// The names rule files may refer to.
    pub fn known_names(&self) -> KnownNames {
        KnownNames::new(
            self.sources.keys().cloned().collect::<Vec<_>>(),
            self.actuators.keys().cloned().collect(),
            self.receivers.keys().cloned().collect(),
        )
    }

    /// The longest a source waits for one attempt, to bound shutdown and analyses.
    pub fn max_source_timeout(&self) -> Duration {
        self.sources
            .values()
            .map(|s| match s {
                SourceConfig::Prometheus(c) => c.timeout,
            })
            .max()
            .unwrap_or(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests;
