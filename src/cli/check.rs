//! `canaryd check [PATH...]`: validate the daemon config and rule files and print every problem
//! with its position.
//!
//! It loads the daemon config exactly as `canaryd serve` does (`config::load`: environment
//! overrides and validation included, so it accepts what `serve` accepts), then the rule files
//! against the config's names, hands them to `rules`, and prints, with the warnings `serve`
//! logs at start about a token file or state directory others can read. Exit 0 when everything is
//! valid, 1 when any problem was found, 3 when the config or a path cannot be read. It changes
//! nothing.

use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::USAGE_ERROR;
use crate::config;
use crate::rules::{self, KnownNames, Problem, Warning};

/// Where the daemon config is when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/canaryd/canaryd.toml";

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rule files or directories of them (their `*.toml` files). Default: the config's `rules_dir`.
    pub paths: Vec<PathBuf>,
    /// The daemon config, for `rules_dir` and the source, actuator and receiver names.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Run `canaryd check`.
pub fn run(args: CheckArgs) -> ExitCode {
    let report = match check(args.config.as_deref(), args.paths) {
        Ok(report) => report,
        Err(message) => return usage_error(&message),
    };
    for problem in &report.problems {
        println!("{problem}");
    }
    for warning in &report.warnings {
        println!("{warning}");
    }
    let mut bad_files: Vec<&Path> = report.problems.iter().map(|p| p.path.as_path()).collect();
    bad_files.sort();
    bad_files.dedup();
    println!(
        "{}",
        summary(
            report.files,
            report.problems.len(),
            bad_files.len(),
            report.warnings.len()
        )
    );
    if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What `check` found.
#[derive(Debug)]
pub struct Report {
    /// Rule files checked.
    pub files: usize,
    /// The config's problems, then the rule files', in file order.
    pub problems: Vec<Problem>,
    /// Warnings about valid rule files: printed, but they do not fail the check.
    pub warnings: Vec<Warning>,
}

/// Check the daemon config (`None`: the default one, if it exists) and the rule files at
/// `paths` (none: the config's `rules_dir`). `Err`: a usage error (unreadable config or path).
pub fn check(config: Option<&Path>, paths: Vec<PathBuf>) -> Result<Report, String> {
    let config = load_config(config)?;
    let paths = if paths.is_empty() {
        match config.rules_dir {
            Some(dir) => vec![dir],
            None if !config.problems.is_empty() => Vec::new(),
            None => {
                return Err(
                    "no rule files given and no `rules_dir` in the config; name files or directories to check".into(),
                );
            }
        }
    } else {
        paths
    };
    let texts = rules::rule_files(&paths)
        .and_then(|files| rules::read_rule_files(&files))
        .map_err(|problem| problem.to_string())?;
    for dir in paths.iter().filter(|p| p.is_dir()) {
        if !texts.iter().any(|t| t.path.starts_with(dir)) {
            eprintln!("note: no *.toml files in {}", dir.display());
        }
    }
    let validated = rules::validate_texts(&texts, &config.known);
    let mut problems = config.problems;
    problems.extend(validated.problems);
    let mut warnings = config.warnings;
    warnings.extend(validated.warnings);
    Ok(Report {
        files: texts.len(),
        problems,
        warnings,
    })
}

/// What `check` takes from the daemon config.
struct CheckedConfig {
    /// The names rule files may refer to.
    known: KnownNames,
    rules_dir: Option<PathBuf>,
    /// The config's own problems: exactly those that make `canaryd serve` refuse it.
    problems: Vec<Problem>,
    /// What `canaryd serve` warns about at start: a token file or state directory other users
    /// can read ([`config::exposure`]); credentials written into its URLs
    /// ([`config::credential_warnings`]).
    warnings: Vec<Warning>,
}

/// Load the daemon config the way `canaryd serve` does ([`config::load`]: the same parsing,
/// environment overrides and validation), keeping its problems to print. A config with
/// problems still names sources, actuators, receivers and `rules_dir` when its shape can be
/// read, so the rule files are checked against them too. Without `--config`, a missing default
/// config means names are not checked (said on stderr). `Err`: the config cannot be read.
fn load_config(path: Option<&Path>) -> Result<CheckedConfig, String> {
    let (path, explicit) = match path {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_CONFIG), false),
    };
    if !explicit && !path.exists() {
        eprintln!(
            "note: {DEFAULT_CONFIG} not found; the config is not checked and source, actuator and receiver names are not checked (use --config PATH)"
        );
        return Ok(CheckedConfig {
            known: KnownNames::any(),
            rules_dir: None,
            problems: Vec::new(),
            warnings: Vec::new(),
        });
    }
    match config::load(path) {
        Ok(config) => Ok(CheckedConfig {
            known: config.known_names(),
            warnings: config::exposure::warnings(&config)
                .into_iter()
                .chain(
                    config::credential_warnings(path, &config)
                        .into_iter()
                        .map(Warning),
                )
                .collect(),
            rules_dir: Some(config.rules_dir),
            problems: Vec::new(),
        }),
        Err(error) => {
            let Some(problems) = error.problems() else {
                return Err(error.to_string());
            };
            let (known, rules_dir) = match rules::load_config_names(path) {
                Ok(names) => (names.known, names.rules_dir),
                Err(_) => (KnownNames::any(), None),
            };
            Ok(CheckedConfig {
                known,
                rules_dir,
                problems,
                warnings: Vec::new(),
            })
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(USAGE_ERROR)
}

/// "3 rule files checked, 2 problems in 1 file", then ", 1 warning" if there are any.
pub fn summary(files: usize, problems: usize, bad_files: usize, warnings: usize) -> String {
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    let checked = format!("{} checked", plural(files, "rule file"));
    let found = if problems == 0 {
        format!("{checked}, no problems")
    } else {
        format!(
            "{checked}, {} in {}",
            plural(problems, "problem"),
            plural(bad_files, "file")
        )
    };
    if warnings == 0 {
        found
    } else {
        format!("{found}, {}", plural(warnings, "warning"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_with_plurals() {
        assert_eq!(
            summary(3, 2, 1, 0),
            "3 rule files checked, 2 problems in 1 file"
        );
        assert_eq!(
            summary(1, 1, 1, 0),
            "1 rule file checked, 1 problem in 1 file"
        );
        assert_eq!(summary(2, 0, 0, 0), "2 rule files checked, no problems");
        assert_eq!(summary(0, 0, 0, 0), "0 rule files checked, no problems");
        assert_eq!(
            summary(2, 0, 0, 1),
            "2 rule files checked, no problems, 1 warning"
        );
        assert_eq!(
            summary(3, 1, 1, 2),
            "3 rule files checked, 1 problem in 1 file, 2 warnings"
        );
    }
}
