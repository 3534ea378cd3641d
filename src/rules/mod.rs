//! Rule files: one rollout per TOML file, read in two stages and reported with file:line:column.
//!
//! This module owns the rule-file format (see `docs/rules.md`), its loading and its validation:
//! `raw` turns text into serde shapes (syntax, unknown keys, wrong types), `validate` checks
//! their meaning and builds a [`RolloutRule`], `reach` refuses valid checks that could never
//! decide what their verdicts say, `lint` warns about valid files that most likely do not do
//! what was meant, and this file ties the stages together for one text, many texts
//! (names must be unique across files) and files on disk (read through [`read_bounded`]), all
//! together ([`load_paths`], for start-up and `canaryd check`) or each on its own
//! ([`load_each`], for reloads). Everything but [`load_dir`], [`load_paths`], [`load_each`],
//! [`rule_files`], [`read_rule_files`], [`read_bounded`] and `config::load_config_names` is
//! pure. It does not run rollouts, query metrics or send notifications: it only describes them.

pub mod config;
pub mod duration;
pub mod lint;
pub mod model;
pub mod problem;
pub mod raw;
mod reach;
pub mod validate;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use config::{ConfigError, ConfigNames, KnownNames, NameKind, load_config_names};
pub use model::{
    CheckRule, Queries, RolloutRule, Route, Schedule, ScoreGroup, Scoring, Side, Sides, render,
};
pub use problem::{Location, Problem, SourceText, Warning};
pub use validate::validate;

/// One rule file's path and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleText {
    pub path: PathBuf,
    pub text: String,
}

/// Parse and validate one rule file's text: the rollout, or every problem found in it.
pub fn parse_rule(
    path: &Path,
    text: &str,
    known: &KnownNames,
) -> Result<RolloutRule, Vec<Problem>> {
    parse_rule_with_warnings(path, text, known).0
}

/// [`parse_rule`], and the [`lint::warnings`] of a valid file (none for an invalid one).
pub fn parse_rule_with_warnings(
    path: &Path,
    text: &str,
    known: &KnownNames,
) -> (Result<RolloutRule, Vec<Problem>>, Vec<Warning>) {
    let src = SourceText::new(path, text);
    let to_problems = |errors: Vec<raw::ShapeError>| -> Vec<Problem> {
        errors
            .into_iter()
            .map(|e| src.problem(e.span, e.message, e.hint))
            .collect()
    };
    match raw::parse(text) {
        raw::Shape::Broken(errors) => (Err(to_problems(errors)), Vec::new()),
        raw::Shape::Parsed { raw, unknown_keys } => {
            let mut problems = to_problems(unknown_keys);
            match validate(&raw, &src, known) {
                Ok(rule) if problems.is_empty() => {
                    let refused = reach::refusals(&raw, &rule, &src);
                    if !refused.is_empty() {
                        return (Err(refused), Vec::new());
                    }
                    let warnings = lint::warnings(&raw, &rule, &src);
                    (Ok(rule), warnings)
                }
                Ok(_) => (Err(problems), Vec::new()),
                Err(more) => {
                    problems.extend(more);
                    problems.sort_by_key(|p| p.location);
                    (Err(problems), Vec::new())
                }
            }
        }
    }
}

/// What validating several rule files found.
#[derive(Debug, Default)]
pub struct Validated {
    /// The rollouts of the valid files, in file order.
    pub rules: Vec<RolloutRule>,
    /// The problems of the others, in file order.
    pub problems: Vec<Problem>,
    /// The warnings of the valid files, in file order.
    pub warnings: Vec<Warning>,
}

/// Validate several rule files together: each on its own, then rollout names across files.
pub fn validate_texts(files: &[RuleText], known: &KnownNames) -> Validated {
    let parsed = parse_all(files, |file| {
        parse_rule_with_warnings(&file.path, &file.text, known)
    });
    let mut warnings = Vec::new();
    let parsed: Vec<_> = parsed
        .into_iter()
        .map(|(rule, found)| {
            warnings.extend(found);
            rule
        })
        .collect();
    let (rules, problems) = keep_unique(files.iter().map(|f| f.path.as_path()).zip(parsed), |i| {
        Some(Cow::Borrowed(files[i].text.as_str()))
    });
    Validated {
        rules,
        problems,
        warnings,
    }
}

/// The valid rules of `parsed` (in order) whose rollout names were not seen in an earlier
/// file, and the problems: each file's own, then one per duplicate name. `text_of(i)` is file
/// `i`'s text, asked for only to point at a duplicate's name.
fn keep_unique<'a>(
    parsed: impl Iterator<Item = (&'a Path, Result<RolloutRule, Vec<Problem>>)>,
    text_of: impl Fn(usize) -> Option<Cow<'a, str>>,
) -> (Vec<RolloutRule>, Vec<Problem>) {
    let mut rules: Vec<RolloutRule> = Vec::new();
    let mut problems = Vec::new();
    let mut first_seen: BTreeMap<String, &Path> = BTreeMap::new();
    for (i, (path, parsed)) in parsed.enumerate() {
        match parsed {
            Ok(rule) => {
                if let Some(first) = first_seen.get(&rule.name) {
                    let text = text_of(i).unwrap_or_default();
                    problems.push(duplicate_name(path, &text, &rule.name, first));
                } else {
                    first_seen.insert(rule.name.clone(), path);
                    rules.push(rule);
                }
            }
            Err(more) => problems.extend(more),
        }
    }
    (rules, problems)
}

/// Below this many files, parsing on one thread is faster than starting others.
const PARALLEL_MIN_FILES: usize = 64;

/// `parse` for each item, in order; many items are parsed on every available core (each on
/// its own, so the result does not depend on how they are split).
fn parse_all<T: Sync, R: Send>(items: &[T], parse: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let parse = &parse;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if threads < 2 || items.len() < PARALLEL_MIN_FILES {
        return items.iter().map(parse).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(chunk);
        // The calling thread parses the first chunk itself.
        let first = chunks.next().unwrap_or_default();
        let others: Vec<_> = chunks
            .map(|part| scope.spawn(move || part.iter().map(parse).collect::<Vec<_>>()))
            .collect();
        let mut parsed: Vec<_> = first.iter().map(parse).collect();
        for (handle, part) in others.into_iter().zip(items.chunks(chunk).skip(1)) {
            match handle.join() {
                Ok(done) => parsed.extend(done),
                // A panic while parsing is a bug; parse that part again here so that it
                // surfaces on the caller's thread with its own message.
                Err(_) => parsed.extend(part.iter().map(parse)),
            }
        }
        parsed
    })
}

/// The problem of the file at `path` (whose text is `text`) defining rollout `name`, which the
/// file at `holder` already defines: reported at the name.
pub fn duplicate_name(path: &Path, text: &str, name: &str, holder: &Path) -> Problem {
    SourceText::new(path, text).problem(
        name_span(text),
        format!("duplicate rollout name `{name}`"),
        Some(format!(
            "{} already defines it; rollout names must be unique across rule files",
            holder.display()
        )),
    )
}

/// Where `[rollout] name` is, to point at a duplicate.
fn name_span(text: &str) -> Option<std::ops::Range<usize>> {
    match raw::parse(text) {
        raw::Shape::Parsed { raw, .. } => raw
            .rollout
            .and_then(|r| r.into_inner().name)
            .map(|n| n.span()),
        raw::Shape::Broken(_) => None,
    }
}

/// The rule files a list of paths names: files as given, directories' `*.toml` files (not
/// recursively, sorted). A path that cannot be read is an error naming it.
pub fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problem> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| Problem::file(path, format!("cannot read: {e}")))?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path)
            .map_err(|e| Problem::file(path, format!("cannot list: {e}")))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Problem::file(path, format!("cannot list: {e}")))?;
            let p = entry.path();
            if p.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            // The directory entry knows its type: no `stat` per file, except to follow a
            // symbolic link.
            let is_file = match entry.file_type() {
                Ok(kind) if kind.is_symlink() => p.is_file(),
                Ok(kind) => kind.is_file(),
                Err(_) => p.is_file(),
            };
            if is_file {
                found.push(p);
            }
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Read rule files; an unreadable one is an error naming it.
pub fn read_rule_files(files: &[PathBuf]) -> Result<Vec<RuleText>, Problem> {
    files
        .iter()
        .map(|path| {
            read_rule_file(path).map(|text| RuleText {
                path: path.clone(),
                text,
            })
        })
        .collect()
}

/// One rule file's text; unreadable, an error naming it.
fn read_rule_file(path: &Path) -> Result<String, Problem> {
    read_bounded(path).map_err(|e| Problem::file(path, format!("cannot read: {e}")))
}

/// The largest rule or config file read: 16 MiB, some fifty times a 20,000-stage rule file, so
/// that a wrong path (a log, a disk image) is refused instead of read whole into memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// A file's text, refused with an error saying so when it is over [`MAX_FILE_BYTES`] (read
/// through a limit, so a file growing meanwhile is cut short and refused too).
pub fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the file is larger than {} MiB, the most canaryd reads",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    Ok(text)
}

/// Load and validate the rule files (and directories of them) at `paths`. Every problem is
/// reported, an unreadable file's among them.
///
/// Each file is read and parsed in one go, and its text dropped once parsed: a daemon starting
/// with 10,000 rule files never holds all their texts at once (25 MB of short-lived memory
/// whose holes the long-lived rules would pin).
pub fn load_paths(paths: &[PathBuf], known: &KnownNames) -> Result<Vec<RolloutRule>, Vec<Problem>> {
    let files = rule_files(paths).map_err(|p| vec![p])?;
    let parsed = parse_all(&files, |path| {
        let text = read_rule_file(path).map_err(|p| vec![p])?;
        parse_rule(path, &text, known)
    });
    let (rules, problems) = keep_unique(files.iter().map(PathBuf::as_path).zip(parsed), |i| {
        read_bounded(&files[i]).ok().map(Cow::Owned)
    });
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

/// One rule file read and validated on its own: its rollout, or every problem of its text
/// (an unreadable file's among them). Names are not yet compared across files.
#[derive(Debug)]
pub struct FileRule {
    pub path: PathBuf,
    pub parsed: Result<RolloutRule, Vec<Problem>>,
}

/// Read and validate each `*.toml` rule file in a directory on its own, in path order, so that
/// a broken file holds back no other (a reload's view; see `daemon::rule_files` for how the
/// files are then put together). Only a directory that cannot be listed fails as a whole.
pub fn load_each(dir: &Path, known: &KnownNames) -> Result<Vec<FileRule>, Problem> {
    let files = rule_files(&[dir.to_path_buf()])?;
    let parsed = parse_all(&files, |path| {
        let text = read_rule_file(path).map_err(|p| vec![p])?;
        parse_rule(path, &text, known)
    });
    Ok(files
        .into_iter()
        .zip(parsed)
        .map(|(path, parsed)| FileRule { path, parsed })
        .collect())
}

/// Load and validate every `*.toml` rule file in a directory.
pub fn load_dir(dir: &Path, known: &KnownNames) -> Result<Vec<RolloutRule>, Vec<Problem>> {
    load_paths(&[dir.to_path_buf()], known)
}

#[cfg(test)]
mod tests;
