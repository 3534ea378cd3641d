//! A replay's recorded data: one directory holding, for every check of the rule, the baseline's
//! and the canary's series as `CHECK.baseline.csv` and `CHECK.canary.csv` (`timestamp,value`, or
//! `timestamp,errors,total` for the error-rate kinds), read into a [`RecordedSource`] that
//! answers each of the rule's rendered queries with its file. It owns the file names and the
//! mapping of files to queries; the reading of one file is `source::recorded`'s.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::judge::Point;
use crate::rules::{Queries, RolloutRule, Side};
use crate::source::RecordedSource;
use crate::source::recorded::{self, Recorded, RecordedError};

/// The recorded data of a rule, as a source, and the span they cover.
#[derive(Debug)]
pub struct RecordedData {
    pub source: RecordedSource,
    /// The earliest timestamp of any file.
    pub first: DateTime<Utc>,
    /// The latest timestamp of any file.
    pub last: DateTime<Utc>,
}

/// Why a directory of recorded data cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "{dir}: missing {}: each check needs CHECK.baseline.csv and CHECK.canary.csv{}",
        files.join(", "),
        match others.is_empty() {
            true => String::new(),
            false => format!(" (the directory has {})", others.join(", ")),
        }
    )]
    Missing {
        dir: PathBuf,
        files: Vec<String>,
        /// The CSV files present that no check reads (a misspelt check name, say).
        others: Vec<String>,
    },
    #[error(transparent)]
    File(#[from] RecordedError),
    #[error(
        "{first} and {second} hold different values at {t}, but both are the query `{query}`, \
         which the backend answers with one series"
    )]
    Conflict {
        query: String,
        first: PathBuf,
        second: PathBuf,
        t: f64,
    },
    #[error("{dir}: the files hold no points, so there is nothing to replay")]
    Empty { dir: PathBuf },
}

/// The file of `check`'s `side` in `dir`.
pub fn file_name(check: &str, side: Side) -> String {
    match side {
        Side::Baseline => format!("{check}.baseline.csv"),
        Side::Canary => format!("{check}.canary.csv"),
    }
}

/// Read the recorded data of every check of `rule` from `dir`. Every missing file is named at
/// once; a bad file is named with its line.
pub fn load(rule: &RolloutRule, dir: &Path) -> Result<RecordedData, DataError> {
    let sides = [Side::Baseline, Side::Canary];
    let wanted: Vec<String> = rule
        .checks
        .iter()
        .flat_map(|c| sides.map(|side| file_name(&c.spec.name, side)))
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|f| !dir.join(f).is_file())
        .cloned()
        .collect();
    if !missing.is_empty() {
        let mut others: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.ends_with(".csv") && !wanted.contains(name))
            .collect();
        others.sort();
        return Err(DataError::Missing {
            dir: dir.to_path_buf(),
            files: missing,
            others,
        });
    }
    let mut source = RecordedSource::new(rule.source.clone());
    // Which file fed each query, to name both when two disagree.
    let mut fed: Vec<(String, PathBuf)> = Vec::new();
    let mut span: Option<(f64, f64)> = None;
    for check in &rule.checks {
        for side in sides {
            let path = dir.join(file_name(&check.spec.name, side));
            let counts = matches!(check.queries, Queries::Counts { .. });
            let recorded = recorded::read(&path, counts)?;
            if let Some((first, last)) = recorded.span() {
                span = Some(span.map_or((first, last), |(a, b)| (a.min(first), b.max(last))));
            }
            let parts: Vec<Vec<Point>> = match recorded {
                Recorded::Values(points) => vec![points],
                Recorded::Counts(points) => vec![
                    points
                        .iter()
                        .map(|p| Point {
                            t: p.t,
                            v: p.errors,
                        })
                        .collect(),
                    points
                        .iter()
                        .map(|p| Point { t: p.t, v: p.total })
                        .collect(),
                ],
            };
            for (part, points) in parts.into_iter().enumerate() {
                let query = check.render_part(&rule.sides, side, part);
                // Two checks asking the same query read one series: their files are its parts
                // (windows of different lengths), merged, and must agree where they overlap.
                if let Some((_, first)) = fed.iter().find(|(q, _)| *q == query) {
                    let had = source.get(&query).unwrap_or_default();
                    let merged = merge(had, &points).map_err(|t| DataError::Conflict {
                        query: query.clone(),
                        first: first.clone(),
                        second: path.clone(),
                        t,
                    })?;
                    source.insert(query, merged);
                    continue;
                }
                fed.push((query.clone(), path.clone()));
                source.insert(query, points);
            }
        }
    }
    let time = |t: f64| {
        DateTime::from_timestamp(t.floor() as i64, ((t - t.floor()) * 1e9) as u32)
            .unwrap_or_default()
    };
    let Some((first, last)) = span else {
        return Err(DataError::Empty {
            dir: dir.to_path_buf(),
        });
    };
    Ok(RecordedData {
        source,
        first: time(first),
        last: time(last),
    })
}

/// Two time-ordered parts of one series as one: the union of their points, or the first
/// timestamp where they disagree.
fn merge(a: &[Point], b: &[Point]) -> Result<Vec<Point>, f64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.t == y.t => {
                if !x.v.total_cmp(&y.v).is_eq() {
                    return Err(x.t);
                }
                out.push(*x);
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.t < y.t => {
                out.push(*x);
                i += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                out.push(*y);
                j += 1;
            }
            (None, None) => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(pairs: &[(f64, f64)]) -> Vec<Point> {
        pairs.iter().map(|&(t, v)| Point { t, v }).collect()
    }

    #[test]
    fn parts_of_one_series_merge_and_must_agree_where_they_overlap() {
        let long = points(&[(0.0, 1.0), (60.0, 2.0), (120.0, 3.0)]);
        let short = points(&[(120.0, 3.0), (180.0, 4.0)]);
        assert_eq!(
            merge(&long, &short).unwrap(),
            points(&[(0.0, 1.0), (60.0, 2.0), (120.0, 3.0), (180.0, 4.0)])
        );
        assert_eq!(merge(&short, &long).unwrap(), merge(&long, &short).unwrap());
        let other = points(&[(60.0, 2.5)]);
        assert_eq!(merge(&long, &other), Err(60.0));
    }
}
