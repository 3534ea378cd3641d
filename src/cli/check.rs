//! `canaryd check [PATH...]`: validate rule files and print every problem with its position.
//!
//! It reads the daemon config (for `rules_dir` and the names rule files may refer to) and the
//! rule files, hands them to `rules`, and prints. Exit 0 when every file is valid, 1 when any
//! problem was found, 3 when the config or a path cannot be read. It changes nothing.

use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::USAGE_ERROR;
use crate::rules::{self, KnownNames};

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
    let (known, rules_dir) = match load_known(args.config.as_deref()) {
        Ok(found) => found,
        Err(message) => return usage_error(&message),
    };
    let paths = if args.paths.is_empty() {
        match rules_dir {
            Some(dir) => vec![dir],
            None => {
                return usage_error(
                    "no rule files given and no `rules_dir` in the config; name files or directories to check",
                );
            }
        }
    } else {
        args.paths
    };
    let texts = match rules::rule_files(&paths).and_then(|files| rules::read_rule_files(&files)) {
        Ok(texts) => texts,
        Err(problem) => return usage_error(&problem.to_string()),
    };
    for dir in paths.iter().filter(|p| p.is_dir()) {
        if !texts.iter().any(|t| t.path.starts_with(dir)) {
            eprintln!("note: no *.toml files in {}", dir.display());
        }
    }
    let (_rules, problems) = rules::validate_texts(&texts, &known);
    for problem in &problems {
        println!("{problem}");
    }
    let mut bad_files: Vec<&Path> = problems.iter().map(|p| p.path.as_path()).collect();
    bad_files.sort();
    bad_files.dedup();
    println!("{}", summary(texts.len(), problems.len(), bad_files.len()));
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The names to check against and the config's `rules_dir`. Without `--config`, a missing
/// default config means names are not checked (said on stderr); any other failure is an error.
fn load_known(config: Option<&Path>) -> Result<(KnownNames, Option<PathBuf>), String> {
    let (path, explicit) = match config {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_CONFIG), false),
    };
    if !explicit && !path.exists() {
        eprintln!(
            "note: {DEFAULT_CONFIG} not found; source, actuator and receiver names are not checked (use --config PATH)"
        );
        return Ok((KnownNames::any(), None));
    }
    rules::load_config_names(path)
        .map(|names| (names.known, names.rules_dir))
        .map_err(|e| e.to_string())
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(USAGE_ERROR)
}

/// "3 rule files checked, 2 problems in 1 file".
pub fn summary(files: usize, problems: usize, bad_files: usize) -> String {
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    let checked = format!("{} checked", plural(files, "rule file"));
    if problems == 0 {
        format!("{checked}, no problems")
    } else {
        format!(
            "{checked}, {} in {}",
            plural(problems, "problem"),
            plural(bad_files, "file")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_with_plurals() {
        assert_eq!(
            summary(3, 2, 1),
            "3 rule files checked, 2 problems in 1 file"
        );
        assert_eq!(summary(1, 1, 1), "1 rule file checked, 1 problem in 1 file");
        assert_eq!(summary(2, 0, 0), "2 rule files checked, no problems");
        assert_eq!(summary(0, 0, 0), "0 rule files checked, no problems");
    }
}
