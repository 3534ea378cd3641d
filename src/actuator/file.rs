//! The file actuator: writes each rollout's weight to its own file for applications or nginx to
//! read.
//!
//! One file per rollout: `path` is a template in which `{rollout}` is replaced by the rollout's
//! name (e.g. `/run/canaryd/{rollout}.json`), so rollouts never contend for one file and a reader
//! needs to parse only its own. Contents are JSON (`{"rollout":..,"weight":..,"stage":..,
//! "updated_at":..}`) or `KEY=VALUE` lines (`CANARYD_ROLLOUT`, `CANARYD_STAGE`, `CANARYD_WEIGHT`,
//! `CANARYD_UPDATED_AT`; values double-quoted when they hold anything but plain characters, so
//! both `sh` and systemd's `EnvironmentFile=` read them). This file owns the atomic replace: write
//! a temporary file in the same directory, fsync it, rename it over the target, fsync the directory;
//! a reader sees the old contents or the new, never a mix, and no temporary file is left behind.
//! It does not create directories: a missing directory is a configuration error to report.

use super::{Actuator, ActuatorError, ActuatorFuture, Failure, WeightChange, check_weight};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The placeholder a path template must contain.
pub const ROLLOUT_PLACEHOLDER: &str = "{rollout}";

/// `[actuators.NAME] kind = "file"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Path template containing `{rollout}`, e.g. `/run/canaryd/{rollout}.json`.
    pub path: String,
    /// `json` (the default) or `env` (`KEY=VALUE` lines).
    #[serde(default)]
    pub format: FileFormat,
}

/// What the weight file looks like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// One JSON object and a newline.
    #[default]
    Json,
    /// `KEY=VALUE` lines.
    #[serde(alias = "key-value")]
    Env,
}

impl FileConfig {
    pub fn new(path: impl Into<String>, format: FileFormat) -> Self {
        Self {
            path: path.into(),
            format,
        }
    }

    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.path.contains(ROLLOUT_PLACEHOLDER) {
            problems.push(format!(
                "path `{}` does not contain `{ROLLOUT_PLACEHOLDER}`; each rollout gets its own \
                 file, e.g. path = \"/run/canaryd/{ROLLOUT_PLACEHOLDER}.json\"",
                self.path
            ));
        }
        if self.path.ends_with('/') {
            problems.push(format!(
                "path `{}` names a directory, not a file",
                self.path
            ));
        }
        if self.path.contains('\0') {
            problems.push("path contains a NUL byte".to_owned());
        }
        problems
    }
}

/// Writes each rollout's weight to its own file.
#[derive(Debug, Clone)]
pub struct FileActuator {
    name: String,
    config: FileConfig,
}

impl FileActuator {
    /// `config` should have passed validation ([`super::validate`]).
    pub fn new(name: &str, config: &FileConfig) -> Self {
        Self {
            name: name.to_owned(),
            config: config.clone(),
        }
    }

    /// The file that holds `rollout`'s weight.
    pub fn path_for(&self, rollout: &str) -> Result<PathBuf, Failure> {
        let plain = !rollout.is_empty()
            && rollout != "."
            && rollout != ".."
            && !rollout.contains(['/', '\\', '\0']);
        if !plain {
            return Err(Failure::Invalid(format!(
                "rollout name `{rollout}` cannot be used in a file name"
            )));
        }
        Ok(PathBuf::from(
            self.config.path.replace(ROLLOUT_PLACEHOLDER, rollout),
        ))
    }

    fn contents(&self, change: &WeightChange) -> Result<String, Failure> {
        let updated_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        match self.config.format {
            FileFormat::Json => {
                let value = serde_json::json!({
                    "rollout": change.rollout,
                    "weight": change.weight,
                    "stage": change.stage,
                    "updated_at": updated_at,
                });
                Ok(format!("{value}\n"))
            }
            FileFormat::Env => {
                let mut out = String::new();
                for (key, value) in [
                    ("CANARYD_ROLLOUT", change.rollout.as_str()),
                    ("CANARYD_STAGE", change.stage.as_str()),
                    ("CANARYD_WEIGHT", change.weight.to_string().as_str()),
                    ("CANARYD_UPDATED_AT", updated_at.as_str()),
                ] {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(&env_value(key, value)?);
                    out.push('\n');
                }
                Ok(out)
            }
        }
    }
}

/// `value` as written after `KEY=`: bare when plain, else double-quoted with `\`, `"`, `$` and
/// `` ` `` escaped. Control characters are refused.
fn env_value(key: &str, value: &str) -> Result<String, Failure> {
    if value.chars().any(char::is_control) {
        return Err(Failure::Invalid(format!(
            "{key} value {value:?} contains a control character"
        )));
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "_.:/+@%,-".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        return Ok(value.to_owned());
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Ok(quoted)
}

/// Distinguishes temporary files written at the same time by one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `contents` atomically: temp file in the same directory, fsync, rename,
/// fsync the directory. The temporary file is removed if any step fails.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), Failure> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Failure::Io { what, path, source }
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Failure::Invalid(format!("`{}` does not name a file", path.display())))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = dir.join(format!(
        ".{}.tmp.{}.{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));

    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(io("could not create a temporary file to replace", path))?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io("could not write a temporary file to replace", path))
        .and_then(|()| {
            drop(file);
            std::fs::rename(&temp, path).map_err(io("could not rename a temporary file onto", path))
        });
    if let Err(failure) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(failure);
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("could not fsync the directory", dir))
}

impl Actuator for FileActuator {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    /// Writing the same change again rewrites the same weight (only `updated_at` moves), so
    /// replays are harmless.
    fn set_weight<'a>(&'a self, change: &'a WeightChange) -> ActuatorFuture<'a> {
        Box::pin(async move {
            let fail = |failure| ActuatorError::new(self, change, failure);
            check_weight(change).map_err(fail)?;
            let path = self.path_for(&change.rollout).map_err(fail)?;
            let contents = self.contents(change).map_err(fail)?;
            let target = path.clone();
            tokio::task::spawn_blocking(move || write_atomically(&target, contents.as_bytes()))
                .await
                .map_err(|e| fail(Failure::Invalid(format!("the file writer panicked: {e}"))))?
                .map_err(fail)?;
            tracing::info!(
                actuator = %self.name, rollout = %change.rollout, stage = %change.stage,
                weight = change.weight, path = %path.display(), "Wrote the weight file."
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_bare_when_plain_and_quoted_otherwise() {
        let cases = [
            ("canary-25", "canary-25"),
            ("2025-01-02T03:04:05.000Z", "2025-01-02T03:04:05.000Z"),
            ("two words", "\"two words\""),
            ("a\"b$c`d\\e", "\"a\\\"b\\$c\\`d\\\\e\""),
            ("", "\"\""),
        ];
        for (value, want) in cases {
            assert_eq!(env_value("K", value).unwrap(), want, "{value}");
        }
        let err = env_value("CANARYD_STAGE", "a\nb").unwrap_err().to_string();
        assert!(err.contains("CANARYD_STAGE"), "{err}");
    }

    #[test]
    fn rollout_names_that_would_escape_the_directory_are_refused() {
        let actuator = FileActuator::new(
            "f",
            &FileConfig::new("/run/canaryd/{rollout}.json", FileFormat::Json),
        );
        assert_eq!(
            actuator.path_for("checkout").unwrap(),
            PathBuf::from("/run/canaryd/checkout.json")
        );
        for bad in ["", ".", "..", "../etc/passwd", "a/b"] {
            assert!(actuator.path_for(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_template_without_the_placeholder_is_a_problem() {
        let problems = FileConfig::new("/run/canaryd/weights.json", FileFormat::Json).problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("{rollout}"), "{problems:?}");
    }
}
