//! Recorded data as a metric source: series read from CSV files (`timestamp,value`, or
//! `timestamp,errors,total` for error counts; unix seconds; an optional header line), answered the
//! way Prometheus answers a range query over a stored series, for `canaryd replay`.
//!
//! It owns the reading of a recorded file (bounded in size and points, every problem reported
//! as `file:line` with what is wrong, never a panic) and [`RecordedSource`], which answers each
//! query it was given a series for: at every step from the range's start to its end, the latest
//! recorded point no later than that instant and no older than Prometheus's lookback of
//! [`LOOKBACK`], stamped at the instant (so a replayed analysis reads exactly one point per step,
//! as the daemon reads from Prometheus). It knows nothing about rules, checks or file names in a
//! directory: which file feeds which query is the replay's business (`crate::replay`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{MetricSource, QueryFuture, Series, SourceError, check_request, unix_seconds};
use crate::judge::{CountPoint, Point};

pub use super::memory::LOOKBACK;

/// The largest recorded file read, in bytes: a month of 10 s points is about 8 MiB.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// The most points one recorded file may hold (a year of 10 s points is 3.2 million).
pub const MAX_POINTS: usize = 4_000_000;
/// The latest timestamp a recorded file may hold: the end of the year 9999.
const LAST_TIMESTAMP: f64 = 253_402_300_799.0;
/// The most points one range query answers: Prometheus's own limit (11,000 points per series).
pub const MAX_ANSWER_POINTS: u64 = 11_000;

/// What a recorded file holds, as its shape was asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// `timestamp,value` lines.
    Values(Vec<Point>),
    /// `timestamp,errors,total` lines.
    Counts(Vec<CountPoint>),
}

impl Recorded {
    /// The first and last timestamps, when there is a point.
    pub fn span(&self) -> Option<(f64, f64)> {
        let times: Vec<f64> = match self {
            Recorded::Values(p) => [p.first(), p.last()]
                .into_iter()
                .flatten()
                .map(|p| p.t)
                .collect(),
            Recorded::Counts(p) => [p.first(), p.last()]
                .into_iter()
                .flatten()
                .map(|p| p.t)
                .collect(),
        };
        match times[..] {
            [first, last] => Some((first, last)),
            _ => None,
        }
    }
}

/// Why a recorded file cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum RecordedError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the file is larger than {} MiB, the most a recorded file may be", MAX_FILE_BYTES >> 20)]
    TooLarge { path: PathBuf },
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Read a recorded file: `counts` says whether it must hold `timestamp,errors,total` lines
/// (error-rate checks) or `timestamp,value` lines. See [`parse`].
pub fn read(path: &Path, counts: bool) -> Result<Recorded, RecordedError> {
    use std::io::Read;
    let read_error = |source| RecordedError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(RecordedError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let before = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        RecordedError::Line {
            path: path.to_path_buf(),
            line: before.iter().filter(|&&b| b == b'\n').count() + 1,
            message: "the text is not UTF-8".into(),
        }
    })?;
    parse(path, &text, counts)
}

/// Parse a recorded file's text (`path` only names it in errors). Blank lines and `#` comments
/// are skipped; the first other line may be a header (its first field not a number). Timestamps
/// are unix seconds, finite, and strictly increasing; values and counts may be `NaN` or `±Inf`
/// (a backend answers them, and the judge drops and counts them, never passing on them); errors
/// and totals must not be negative, nor errors above totals.
pub fn parse(path: &Path, text: &str, counts: bool) -> Result<Recorded, RecordedError> {
    let err = |line: usize, message: String| RecordedError::Line {
        path: path.to_path_buf(),
        line,
        message,
    };
    let (width, shape) = match counts {
        true => (3, "`timestamp,errors,total`"),
        false => (2, "`timestamp,value`"),
    };
    let mut values = Vec::new();
    let mut count_points = Vec::new();
    let mut previous: Option<(f64, usize)> = None;
    let mut seen = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        let header = !seen && fields[0].parse::<f64>().is_err();
        seen = true;
        if fields.len() != width {
            return Err(err(
                line,
                format!(
                    "expected {width} fields ({shape}), found {}{}",
                    fields.len(),
                    match (counts, fields.len()) {
                        (true, 2) => ": this check counts errors, so it needs errors and totals",
                        (false, 3) => ": this check judges values, not error counts",
                        _ => "",
                    }
                ),
            ));
        }
        if header {
            continue;
        }
        if values.len() + count_points.len() >= MAX_POINTS {
            return Err(err(
                line,
                format!("more than {MAX_POINTS} points; split the recording or shorten it"),
            ));
        }
        let t = fields[0]
            .parse::<f64>()
            .ok()
            .filter(|t| (0.0..=LAST_TIMESTAMP).contains(t))
            .ok_or_else(|| {
                err(
                    line,
                    format!(
                        "expected a timestamp (unix seconds, 0 to {LAST_TIMESTAMP}), found `{}`",
                        fields[0]
                    ),
                )
            })?;
        if let Some((before, at)) = previous
            && t <= before
        {
            return Err(err(
                line,
                format!(
                    "timestamp {t} is not after {before} (line {at}): timestamps must increase"
                ),
            ));
        }
        previous = Some((t, line));
        let number = |field: &str, what: &str| {
            field
                .parse::<f64>()
                .map_err(|_| err(line, format!("expected {what}, found `{field}`")))
        };
        if counts {
            let errors = number(fields[1], "a number of errors")?;
            let total = number(fields[2], "a number of requests")?;
            if errors < 0.0 || total < 0.0 {
                return Err(err(line, "errors and totals must not be negative".into()));
            }
            if errors > total {
                return Err(err(
                    line,
                    format!("errors ({errors}) exceed total ({total})"),
                ));
            }
            count_points.push(CountPoint { t, errors, total });
        } else {
            let v = number(fields[1], "a value")?;
            values.push(Point { t, v });
        }
    }
    Ok(match counts {
        true => Recorded::Counts(count_points),
        false => Recorded::Values(values),
    })
}

/// A [`MetricSource`] answering from recorded series, one per query text (see the module doc
/// for how a range is read). A query it has no series for answers no series, as Prometheus
/// does for a metric that does not exist.
#[derive(Debug)]
pub struct RecordedSource {
    name: String,
    series: HashMap<String, Vec<Point>>,
}

impl RecordedSource {
    /// A source named `name` (the rule's `source`, which its errors carry) with no series.
    pub fn new(name: impl Into<String>) -> Self {
        RecordedSource {
            name: name.into(),
            series: HashMap::new(),
        }
    }

    /// The series `query` answers with, in time order (replacing what was there).
    pub fn insert(&mut self, query: impl Into<String>, points: Vec<Point>) {
        self.series.insert(query.into(), points);
    }

    /// The series stored for `query`.
    pub fn get(&self, query: &str) -> Option<&[Point]> {
        self.series.get(query).map(Vec::as_slice)
    }

    fn range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<Series>, SourceError> {
        check_request(&self.name, query, Some((start, end, step)))?;
        let Some(points) = self.series.get(query) else {
            return Ok(vec![]);
        };
        let (start, end, step) = (unix_seconds(start), unix_seconds(end), step.as_secs_f64());
        let steps = ((end - start) / step).floor();
        if steps >= MAX_ANSWER_POINTS as f64 {
            return Err(SourceError::InvalidRequest {
                source_name: self.name.clone(),
                query: query.to_string(),
                detail: format!(
                    "the range holds more than {MAX_ANSWER_POINTS} steps; use a longer step"
                ),
            });
        }
        let lookback = LOOKBACK.as_secs_f64();
        // Bounded above: `steps` is below MAX_ANSWER_POINTS.
        let evaluated: Vec<Point> = (0..=steps as u64)
            .filter_map(|k| {
                let at = start + k as f64 * step;
                let after = points.partition_point(|p| p.t <= at);
                let latest = points.get(after.checked_sub(1)?)?;
                (latest.t > at - lookback).then_some(Point { t: at, v: latest.v })
            })
            .collect();
        Ok(match evaluated.is_empty() {
            true => vec![],
            false => vec![Series {
                labels: Default::default(),
                points: evaluated,
            }],
        })
    }
}

impl MetricSource for RecordedSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn query_range<'a>(
        &'a self,
        query: &'a str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> QueryFuture<'a> {
        Box::pin(async move { self.range(query, start, end, step) })
    }

    fn query_instant<'a>(&'a self, query: &'a str, at: DateTime<Utc>) -> QueryFuture<'a> {
        Box::pin(async move {
            check_request(&self.name, query, None)?;
            self.range(query, at, at, Duration::from_secs(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(t, 0).unwrap()
    }

    fn parsed(text: &str, counts: bool) -> Result<Recorded, String> {
        parse(Path::new("d/p99.canary.csv"), text, counts).map_err(|e| e.to_string())
    }

    #[test]
    fn files_parse_with_a_header_comments_and_non_finite_values() {
        let values = parsed(
            "timestamp,value\n# a comment\n\n100,0.5\n160,NaN\n220,inf\n",
            false,
        );
        let Ok(Recorded::Values(points)) = values else {
            panic!("{values:?}");
        };
        assert_eq!(points.len(), 3);
        assert_eq!(points[0], Point { t: 100.0, v: 0.5 });
        assert!(points[1].v.is_nan() && points[2].v.is_infinite());
        let counts = parsed("timestamp,errors,total\n100,1,50\n160,0,0\n", true).unwrap();
        assert_eq!(
            counts,
            Recorded::Counts(vec![
                CountPoint {
                    t: 100.0,
                    errors: 1.0,
                    total: 50.0
                },
                CountPoint {
                    t: 160.0,
                    errors: 0.0,
                    total: 0.0
                },
            ])
        );
        assert_eq!(counts.span(), Some((100.0, 160.0)));
        assert_eq!(parsed("timestamp,value\n", false).unwrap().span(), None);
    }

    #[test]
    fn bad_lines_are_named_with_file_line_and_what_is_wrong() {
        let cases = [
            (
                "t,v\n100,1\n160,x\n",
                false,
                "d/p99.canary.csv:3: expected a value, found `x`",
            ),
            (
                "t,v\n100,1\n100,2\n",
                false,
                "d/p99.canary.csv:3: timestamp 100 is not after 100 (line 2): timestamps must increase",
            ),
            (
                "t,v\nNaN,1\n",
                false,
                "d/p99.canary.csv:2: expected a timestamp (unix seconds, 0 to 253402300799), found `NaN`",
            ),
            (
                "t,v\n2026-01-01T00:00:00Z,1\n",
                false,
                "d/p99.canary.csv:2: expected a timestamp (unix seconds",
            ),
            (
                "t,v\n1e300,1\n",
                false,
                "d/p99.canary.csv:2: expected a timestamp (unix seconds, 0 to 253402300799), found `1e300`",
            ),
            (
                "t,v\n-5,1\n",
                false,
                "d/p99.canary.csv:2: expected a timestamp",
            ),
            (
                "t,v\n100,1,2\n",
                false,
                "d/p99.canary.csv:2: expected 2 fields (`timestamp,value`), found 3: this check judges values",
            ),
            (
                "t,e,n\n100,1\n",
                true,
                "d/p99.canary.csv:2: expected 3 fields (`timestamp,errors,total`), found 2: this check counts errors",
            ),
            (
                "t,e,n\n100,5,4\n",
                true,
                "d/p99.canary.csv:2: errors (5) exceed total (4)",
            ),
            (
                "t,e,n\n100,-1,4\n",
                true,
                "d/p99.canary.csv:2: errors and totals must not be negative",
            ),
        ];
        for (text, counts, want) in cases {
            let got = parsed(text, counts).map(|_| ()).unwrap_err();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn a_file_too_large_or_with_too_many_points_is_refused() {
        let dir = std::env::temp_dir().join(format!("canaryd-recorded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.canary.csv");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let e = read(&path, false).unwrap_err();
        assert!(matches!(e, RecordedError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("big.canary.csv"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let missing = read(&dir.join("none.csv"), false).unwrap_err();
        assert!(
            missing.to_string().contains("none.csv: cannot read"),
            "{missing}"
        );
        let many: String = (0..=MAX_POINTS).map(|i| format!("{i},1\n")).collect();
        let e = parsed(&many, false).unwrap_err();
        assert!(
            e.contains(&format!(":{}: more than", MAX_POINTS + 1)),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_range_reads_one_point_per_step_as_prometheus_evaluates_it() {
        let mut source = RecordedSource::new("prom");
        // Points every 60 s, with a gap longer than the lookback after 400.
        let points: Vec<Point> = [100, 160, 220, 280, 340, 400, 1000]
            .into_iter()
            .map(|t| Point {
                t: f64::from(t),
                v: f64::from(t) / 100.0,
            })
            .collect();
        source.insert("q", points);
        let step = Duration::from_secs(60);
        let answer = source
            .query_range("q", at(130), at(370), step)
            .await
            .unwrap();
        let got: Vec<(f64, f64)> = answer[0].points.iter().map(|p| (p.t, p.v)).collect();
        // Each step takes the latest point at or before it, stamped at the step.
        assert_eq!(
            got,
            [
                (130.0, 1.0),
                (190.0, 1.6),
                (250.0, 2.2),
                (310.0, 2.8),
                (370.0, 3.4)
            ]
        );
        // Older than the lookback (5 minutes) is gone; nothing at all is no series.
        let late = source
            .query_range("q", at(690), at(750), step)
            .await
            .unwrap();
        assert_eq!(late[0].points, [Point { t: 690.0, v: 4.0 }]);
        assert!(
            source
                .query_range("q", at(0), at(90), step)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            source
                .query_range("other", at(0), at(90), step)
                .await
                .unwrap()
                .is_empty()
        );
        let e = source
            .query_range("q", at(0), at(20_000), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, SourceError::InvalidRequest { .. }), "{e}");
        let instant = source.query_instant("q", at(165)).await.unwrap();
        assert_eq!(instant[0].points, [Point { t: 165.0, v: 1.6 }]);
    }
}
