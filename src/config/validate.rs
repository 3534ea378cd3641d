//! The meaning of the daemon config: every problem with its settings, each pointed at the key
//! that holds it (file:line:column, or the environment variable that set it) with a hint.
//!
//! This module owns [`Config::validate`], the pure check both `canaryd serve` and `canaryd check`
//! run (through [`super::parse`]), and turning its key paths into positions in the file. It
//! builds nothing; the sources, actuators and receivers validate their own tables and it
//! collects what they say.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::{Config, ENV_PREFIX, ENV_SEPARATOR, SourceConfig};
use crate::rules::problem::{closest, list};
use crate::rules::{Problem, SourceText};
use crate::source::PrometheusSource;

/// One thing wrong with the settings: the key that holds it (`["scheduler",
/// "max_concurrent_queries"]`, or a table such as `["sources", "prometheus"]`), what and what
/// to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl ConfigProblem {
    fn new(key: &[&str], message: impl Into<String>, hint: Option<&str>) -> ConfigProblem {
        ConfigProblem {
            key: key.iter().map(|k| k.to_string()).collect(),
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }
}

impl Config {
    /// Every problem with the settings at once; `Ok` when the daemon can run with them.
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let add = |problems: &mut Vec<ConfigProblem>,
                   key: &[&str],
                   message: String,
                   hint: Option<&str>| {
            problems.push(ConfigProblem::new(key, message, hint));
        };
        if self.state_dir.as_os_str().is_empty() {
            add(
                &mut problems,
                &["state_dir"],
                "`state_dir` is empty".into(),
                Some("give the directory for the state database, e.g. \"/var/lib/canaryd\""),
            );
        }
        if self.rules_dir.as_os_str().is_empty() {
            add(
                &mut problems,
                &["rules_dir"],
                "`rules_dir` is empty".into(),
                Some("give the directory of the rule files, e.g. \"/etc/canaryd/rules\""),
            );
        }
        if let Some(file) = &self.emergency_stop_file
            && file.as_os_str().is_empty()
        {
            add(
                &mut problems,
                &["emergency_stop_file"],
                "`emergency_stop_file` is empty".into(),
                Some("remove the key or give a path"),
            );
        }
        let queries = self.scheduler.max_concurrent_queries;
        if !(1..=MAX_CONCURRENT_QUERIES).contains(&queries) {
            add(
                &mut problems,
                &["scheduler", "max_concurrent_queries"],
                format!(
                    "`scheduler.max_concurrent_queries` = {queries} is out of range: 1 to {MAX_CONCURRENT_QUERIES}"
                ),
                Some("backend requests in flight at once across every rollout; the default is 8"),
            );
        }
        if self.scheduler.backend_error_limit == 0 {
            add(
                &mut problems,
                &["scheduler", "backend_error_limit"],
                "`scheduler.backend_error_limit` must be at least 1".into(),
                None,
            );
        }
        problems.extend(self.retention.problems());
        if let Err((message, hint)) = log_filter(&self.log.level) {
            problems.push(ConfigProblem {
                key: vec!["log".into(), "level".into()],
                message: format!("`log.level` = {:?}: {message}", self.log.level),
                hint: Some(hint),
            });
        }
        if let Some(url) = &self.server.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            add(
                &mut problems,
                &["server", "public_url"],
                format!("`server.public_url` = {url:?} must start with http:// or https://"),
                None,
            );
        }
        for (name, source) in &self.sources {
            match source {
                SourceConfig::Prometheus(c) => {
                    if let Err(e) = PrometheusSource::new(name.clone(), c) {
                        add(
                            &mut problems,
                            &["sources", name],
                            format!("[sources.{name}]: {e}"),
                            None,
                        );
                    }
                }
            }
        }
        for (name, actuator) in &self.actuators {
            if let Err(e) = crate::actuator::validate(name, actuator) {
                add(
                    &mut problems,
                    &["actuators", name],
                    format!("[actuators.{name}]: {e}"),
                    None,
                );
            }
        }
        for (name, receiver) in &self.receivers {
            for e in receiver.validate(name) {
                add(&mut problems, &["receivers", name], e.to_string(), None);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The shortest time between two prunes of the history.
pub const MIN_PRUNE_EVERY: Duration = Duration::from_secs(10);

impl super::RetentionConfig {
    /// What is wrong with `[retention]`, each pointed at its key.
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let human = crate::rules::duration::format;
        if self.keep_one_per.is_zero() {
            problems.push(ConfigProblem::new(
                &["retention", "keep_one_per"],
                "`retention.keep_one_per` must be longer than 0s",
                Some("one analysis per run is kept per this much time past `keep_all_for`, e.g. \"10m\""),
            ));
        }
        if self.prune_every < MIN_PRUNE_EVERY {
            problems.push(ConfigProblem::new(
                &["retention", "prune_every"],
                format!(
                    "`retention.prune_every` = {:?} is shorter than {}",
                    human(self.prune_every),
                    human(MIN_PRUNE_EVERY)
                ),
                Some("how often the history is pruned; the default is \"10m\""),
            ));
        }
        if self.finished_runs_for < self.keep_all_for {
            problems.push(ConfigProblem::new(
                &["retention", "finished_runs_for"],
                format!(
                    "`retention.finished_runs_for` = {:?} is shorter than `retention.keep_all_for` = {:?}",
                    human(self.finished_runs_for),
                    human(self.keep_all_for)
                ),
                Some("a finished run's evidence goes after `finished_runs_for`; keep it at least as long as every analysis is kept"),
            ));
        }
        problems
    }
}

/// The most backend requests in flight at once: far more than one backend serves usefully,
/// and far below the `usize` sizes that overflow the scheduler's arithmetic or panic tokio's
/// semaphore (`9223372036854775807` did).
pub const MAX_CONCURRENT_QUERIES: usize = 1024;

/// The level names a filter may use, alone (`warn`) or for a target (`canaryd=debug`).
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Whether a `tracing` filter (`[log] level`, `RUST_LOG`) can be used: `Err((what, hint))`.
///
/// `tracing` reads a bare word that is not a level as a target name, so `level = "eror"`
/// would enable nothing but a module called `eror` and silence every line: every directive's
/// level (the word itself, or what follows `=`) must be one of [`LEVELS`].
pub(super) fn log_filter(filter: &str) -> Result<(), (String, String)> {
    let known = || {
        format!(
            "known levels: {}; for one module write `target=level`, e.g. \"canaryd=debug,info\"",
            list(LEVELS)
        )
    };
    if filter.trim().is_empty() {
        return Err(("empty: no line would be logged".into(), known()));
    }
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, l)| l.trim());
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            let hint = match closest(level, LEVELS) {
                Some(best) => format!("did you mean `{best}`? {}", known()),
                None => known(),
            };
            return Err((format!("`{level}` is not a log level"), hint));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| (format!("not a valid filter ({e})"), known()))?;
    Ok(())
}

/// Where each problem is: the environment variable that set its key if one did, else the key's
/// value in the file (or the nearest table of it that is written there).
pub(super) fn locate(
    path: &Path,
    text: &str,
    overrides: &HashMap<String, String>,
    problems: Vec<ConfigProblem>,
) -> Vec<Problem> {
    let src = SourceText::new(path, text);
    // The file parsed once already (stage 1), so this cannot fail; without it, no positions.
    let doc = DeTable::parse(text).ok();
    problems
        .into_iter()
        .map(|p| {
            if p.key.is_empty() {
                // About the environment, not the file.
                return Problem {
                    path: path.to_path_buf(),
                    location: None,
                    message: p.message,
                    hint: p.hint,
                };
            }
            match override_of(overrides, &p.key) {
                Some(var) => Problem {
                    path: path.to_path_buf(),
                    location: None,
                    message: format!("{} (set by {var})", p.message),
                    hint: p.hint,
                },
                None => src.problem(
                    doc.as_ref().and_then(|d| span_of(d.get_ref(), &p.key)),
                    p.message,
                    p.hint,
                ),
            }
        })
        .collect()
}

/// The `CANARYD__*` variable that overrides `key` or a table above it, if any.
fn override_of<'o>(overrides: &'o HashMap<String, String>, key: &[String]) -> Option<&'o str> {
    let mut vars: Vec<&str> = overrides.keys().map(String::as_str).collect();
    vars.sort_unstable();
    vars.into_iter().find(|var| {
        let Some(rest) = var.strip_prefix(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")) else {
            return false;
        };
        let parts: Vec<String> = rest
            .split(ENV_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        // The variable names this key, or a key inside it (a table's own setting).
        parts.len() >= key.len()
            && key
                .iter()
                .zip(&parts)
                .all(|(k, p)| k.to_ascii_lowercase() == *p)
    })
}

/// The span of `key`'s value in the document, or of the deepest part of it that is written.
fn span_of(table: &DeTable<'_>, key: &[String]) -> Option<Range<usize>> {
    let (first, rest) = key.split_first()?;
    let (k, value) = table.iter().find(|(k, _)| k.get_ref() == first)?;
    if rest.is_empty() {
        // A table's span may cover its whole body; its key points at the header.
        return Some(match value.get_ref() {
            DeValue::Table(_) => k.span(),
            _ => value.span(),
        });
    }
    match value.get_ref() {
        DeValue::Table(inner) => span_of(inner, rest).or(Some(k.span())),
        _ => Some(value.span()),
    }
}
