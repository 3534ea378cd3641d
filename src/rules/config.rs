//! The few facts rule validation needs from the daemon config: where rule files live, and the
//! names of its sources, actuators and receivers.
//!
//! It reads only `rules_dir` and the table names under `[sources]`, `[actuators]` and
//! `[receivers]`, ignoring every other key, so the daemon's full config loader can reuse it. It
//! does not validate those tables' contents: that is the full loader's job.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why the daemon config could not be read.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Names rule files may refer to. `KnownNames::any()` accepts every name (no config to check
/// against).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KnownNames {
    names: Option<Names>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Names {
    sources: BTreeSet<String>,
    actuators: BTreeSet<String>,
    receivers: BTreeSet<String>,
}

/// Which kind of name a rule file refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Source,
    Actuator,
    Receiver,
}

impl NameKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Source => "source",
            NameKind::Actuator => "actuator",
            NameKind::Receiver => "receiver",
        }
    }
}

impl KnownNames {
    /// These names and no others.
    pub fn new<I, S>(sources: I, actuators: I, receivers: I) -> KnownNames
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let set = |i: I| i.into_iter().map(Into::into).collect();
        KnownNames {
            names: Some(Names {
                sources: set(sources),
                actuators: set(actuators),
                receivers: set(receivers),
            }),
        }
    }

    /// Any name is accepted: used when there is no daemon config to check against.
    pub fn any() -> KnownNames {
        KnownNames { names: None }
    }

    /// Whether names are checked at all.
    pub fn is_checked(&self) -> bool {
        self.names.is_some()
    }

    /// `Ok` if `name` is known (or names are not checked), else the known names of that kind.
    pub fn check(&self, kind: NameKind, name: &str) -> Result<(), Vec<&str>> {
        let Some(names) = &self.names else {
            return Ok(());
        };
        let set = match kind {
            NameKind::Source => &names.sources,
            NameKind::Actuator => &names.actuators,
            NameKind::Receiver => &names.receivers,
        };
        if set.contains(name) {
            Ok(())
        } else {
            Err(set.iter().map(String::as_str).collect())
        }
    }
}

/// What rule loading needs from the daemon config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigNames {
    pub rules_dir: Option<PathBuf>,
    pub known: KnownNames,
}

#[derive(Deserialize)]
struct RawConfigNames {
    rules_dir: Option<PathBuf>,
    #[serde(default)]
    sources: BTreeMap<String, toml::Value>,
    #[serde(default)]
    actuators: BTreeMap<String, toml::Value>,
    #[serde(default)]
    receivers: BTreeMap<String, toml::Value>,
}

/// Read `rules_dir` and the source, actuator and receiver names from config text.
pub fn parse_config_names(path: &Path, text: &str) -> Result<ConfigNames, ConfigError> {
    let raw: RawConfigNames = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim().to_string(),
    })?;
    Ok(ConfigNames {
        rules_dir: raw.rules_dir,
        known: KnownNames::new(
            raw.sources.into_keys().collect::<Vec<_>>(),
            raw.actuators.into_keys().collect(),
            raw.receivers.into_keys().collect(),
        ),
    })
}

/// Read `rules_dir` and the source, actuator and receiver names from a config file.
pub fn load_config_names(path: &Path) -> Result<ConfigNames, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_config_names(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_and_rules_dir_and_ignores_the_rest() {
        let text = r#"
            state_dir = "/var/lib/canaryd"
            rules_dir = "/etc/canaryd/rules"
            [server]
            listen = "127.0.0.1:9797"
            [sources.prometheus]
            kind = "prometheus"
            [actuators.builtin]
            kind = "builtin"
            [receivers.team-email]
            kind = "email"
            [receivers.pager]
            kind = "pagerduty"
        "#;
        let names = parse_config_names(Path::new("c.toml"), text).unwrap();
        assert_eq!(names.rules_dir, Some(PathBuf::from("/etc/canaryd/rules")));
        assert_eq!(names.known.check(NameKind::Source, "prometheus"), Ok(()));
        assert_eq!(names.known.check(NameKind::Actuator, "builtin"), Ok(()));
        assert_eq!(
            names.known.check(NameKind::Receiver, "oncall"),
            Err(vec!["pager", "team-email"])
        );
    }

    #[test]
    fn the_shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/canaryd.toml");
        let names = load_config_names(&path).unwrap();
        assert!(names.known.is_checked());
        assert_eq!(names.known.check(NameKind::Receiver, "pager"), Ok(()));
    }

    #[test]
    fn broken_config_is_an_error_naming_the_file() {
        let err = parse_config_names(Path::new("c.toml"), "rules_dir = [").unwrap_err();
        assert!(
            err.to_string().starts_with("config c.toml is not valid"),
            "{err}"
        );
        let err = load_config_names(Path::new("/nonexistent/c.toml")).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot read config /nonexistent/c.toml")
        );
    }

    #[test]
    fn any_accepts_every_name() {
        assert_eq!(
            KnownNames::any().check(NameKind::Source, "whatever"),
            Ok(())
        );
        assert!(!KnownNames::any().is_checked());
    }
}
