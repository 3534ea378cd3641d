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

use toml::de::{DeTable, DeValue};

use super::{Config, ENV_PREFIX, ENV_SEPARATOR, SourceConfig};
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
        let mut add = |key: &[&str], message: String, hint: Option<&str>| {
            problems.push(ConfigProblem::new(key, message, hint));
        };
        if self.state_dir.as_os_str().is_empty() {
            add(
                &["state_dir"],
                "`state_dir` is empty".into(),
                Some("give the directory for the state database, e.g. \"/var/lib/canaryd\""),
            );
        }
        if self.rules_dir.as_os_str().is_empty() {
            add(
                &["rules_dir"],
                "`rules_dir` is empty".into(),
                Some("give the directory of the rule files, e.g. \"/etc/canaryd/rules\""),
            );
        }
        if let Some(file) = &self.emergency_stop_file
            && file.as_os_str().is_empty()
        {
            add(
                &["emergency_stop_file"],
                "`emergency_stop_file` is empty".into(),
                Some("remove the key or give a path"),
            );
        }
        if self.scheduler.max_concurrent_queries == 0 {
            add(
                &["scheduler", "max_concurrent_queries"],
                "`scheduler.max_concurrent_queries` must be at least 1".into(),
                None,
            );
        }
        if self.scheduler.backend_error_limit == 0 {
            add(
                &["scheduler", "backend_error_limit"],
                "`scheduler.backend_error_limit` must be at least 1".into(),
                None,
            );
        }
        if let Err((message, hint)) = log_filter(&self.log.level) {
            add(
                &["log", "level"],
                format!("`log.level` = {:?}: {message}", self.log.level),
                Some(hint),
            );
        }
        if let Some(url) = &self.server.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            add(
                &["server", "public_url"],
                format!("`server.public_url` = {url:?} must start with http:// or https://"),
                None,
            );
        }
        for (name, source) in &self.sources {
            match source {
                SourceConfig::Prometheus(c) => {
                    if let Err(e) = PrometheusSource::new(name.clone(), c) {
                        add(&["sources", name], format!("[sources.{name}]: {e}"), None);
                    }
                }
            }
        }
        for (name, actuator) in &self.actuators {
            if let Err(e) = crate::actuator::validate(name, actuator) {
                add(
                    &["actuators", name],
                    format!("[actuators.{name}]: {e}"),
                    None,
                );
            }
        }
        for (name, receiver) in &self.receivers {
            for e in receiver.validate(name) {
                add(&["receivers", name], e.to_string(), None);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Whether a `tracing` filter (`[log] level`, `RUST_LOG`) can be used: `Err((what, hint))`.
pub(super) fn log_filter(filter: &str) -> Result<(), (String, &'static str)> {
    tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| {
        (
            format!("not a valid filter ({e})"),
            "use e.g. \"info\" or \"canaryd=debug,info\"",
        )
    })?;
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
