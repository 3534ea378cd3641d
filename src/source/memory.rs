//! An in-memory source: canned series per query string, or answers computed by a closure.
//!
//! It owns nothing but a table of answers and a count of the queries it was asked, so the demo and
//! the tests of the pure core and of the daemon's loop can run without a network. It is NOT the
//! proof that the Prometheus source works: it does not parse PromQL, evaluate on step boundaries
//! or apply staleness rules. `tests/edges/prometheus_source.rs` runs against a real Prometheus for
//! that.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{MetricSource, QueryFuture, Series, SourceError, check_request, unix_seconds};
use crate::judge::Point;

/// How far back an instant query looks for the latest point, as Prometheus's default lookback.
pub const LOOKBACK: Duration = Duration::from_secs(300);

/// One query as a [`MemorySource`] closure sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Range {
        query: String,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    },
    Instant {
        query: String,
        at: DateTime<Utc>,
    },
}

impl Request {
    /// The query string of either kind of request.
    pub fn query(&self) -> &str {
        match self {
            Request::Range { query, .. } | Request::Instant { query, .. } => query,
        }
    }
}

type Responder = dyn Fn(&Request) -> Result<Vec<Series>, SourceError> + Send + Sync;

enum Answers {
    /// Stored series (or a stored error) per exact query string; unknown queries answer empty.
    Table(HashMap<String, Result<Vec<Series>, SourceError>>),
    /// Every answer computed by a closure.
    Computed(Box<Responder>),
}

/// A [`MetricSource`] answering from memory.
///
/// With a table ([`MemorySource::new`], [`MemorySource::set`]): a range query returns each stored
/// series' points with `start <= t <= end` (series left with no point are dropped, as Prometheus
/// drops them), without resampling to `step`; an instant query returns, per series, the latest
/// point no later than `at` and no older than [`LOOKBACK`], stamped at `at`. A query never stored
/// answers `Ok(vec![])`, like a Prometheus metric that does not exist. [`MemorySource::fail`]
/// stores an error instead, to test how callers handle failures.
pub struct MemorySource {
    name: String,
    answers: Mutex<Answers>,
    asked: Mutex<HashMap<String, usize>>,
}

impl std::fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MemorySource {
    /// An empty table: every query answers `Ok(vec![])` until series are [`set`](Self::set).
    pub fn new(name: impl Into<String>) -> Self {
        MemorySource {
            name: name.into(),
            answers: Mutex::new(Answers::Table(HashMap::new())),
            asked: Mutex::new(HashMap::new()),
        }
    }

    /// A source whose every answer comes from `respond` (a canary degrading over time, say).
    pub fn from_fn<F>(name: impl Into<String>, respond: F) -> Self
    where
        F: Fn(&Request) -> Result<Vec<Series>, SourceError> + Send + Sync + 'static,
    {
        MemorySource {
            name: name.into(),
            answers: Mutex::new(Answers::Computed(Box::new(respond))),
            asked: Mutex::new(HashMap::new()),
        }
    }

    /// Stores the series `query` answers with, replacing what was there (and any closure).
    pub fn set(&self, query: impl Into<String>, series: Vec<Series>) {
        self.store(query.into(), Ok(series));
    }

    /// Makes `query` fail with `error` until it is [`set`](Self::set) again.
    pub fn fail(&self, query: impl Into<String>, error: SourceError) {
        self.store(query.into(), Err(error));
    }

    /// How many times `query` was asked, range and instant together.
    pub fn times_asked(&self, query: &str) -> usize {
        let asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        asked.get(query).copied().unwrap_or(0)
    }

    fn store(&self, query: String, answer: Result<Vec<Series>, SourceError>) {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *answers {
            Answers::Table(table) => {
                table.insert(query, answer);
            }
            Answers::Computed(_) => {
                *answers = Answers::Table(HashMap::from([(query, answer)]));
            }
        }
    }

    fn answer(&self, request: &Request) -> Result<Vec<Series>, SourceError> {
        {
            let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
            *asked.entry(request.query().to_string()).or_insert(0) += 1;
        }
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        let stored = match &*answers {
            Answers::Computed(respond) => return respond(request),
            Answers::Table(table) => match table.get(request.query()) {
                None => return Ok(vec![]),
                Some(Err(e)) => return Err(e.clone()),
                Some(Ok(series)) => series,
            },
        };
        Ok(match request {
            Request::Range { start, end, .. } => {
                window(stored, unix_seconds(*start), unix_seconds(*end))
            }
            Request::Instant { at, .. } => latest(stored, unix_seconds(*at)),
        })
    }
}

fn window(stored: &[Series], start: f64, end: f64) -> Vec<Series> {
    stored
        .iter()
        .filter_map(|s| {
            let points: Vec<Point> = s
                .points
                .iter()
                .filter(|p| p.t >= start && p.t <= end)
                .copied()
                .collect();
            (!points.is_empty()).then(|| Series {
                labels: s.labels.clone(),
                points,
            })
        })
        .collect()
}

fn latest(stored: &[Series], at: f64) -> Vec<Series> {
    let oldest = at - LOOKBACK.as_secs_f64();
    stored
        .iter()
        .filter_map(|s| {
            s.points
                .iter()
                .filter(|p| p.t <= at && p.t > oldest)
                .max_by(|a, b| a.t.total_cmp(&b.t))
                .map(|p| Series {
                    labels: s.labels.clone(),
                    points: vec![Point { t: at, v: p.v }],
                })
        })
        .collect()
}

impl MetricSource for MemorySource {
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
        Box::pin(async move {
            check_request(&self.name, query, Some((start, end, step)))?;
            self.answer(&Request::Range {
                query: query.to_string(),
                start,
                end,
                step,
            })
        })
    }

    fn query_instant<'a>(&'a self, query: &'a str, at: DateTime<Utc>) -> QueryFuture<'a> {
        Box::pin(async move {
            check_request(&self.name, query, None)?;
            self.answer(&Request::Instant {
                query: query.to_string(),
                at,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn series(track: &str, points: &[(f64, f64)]) -> Series {
        Series {
            labels: BTreeMap::from([("track".to_string(), track.to_string())]),
            points: points.iter().map(|&(t, v)| Point { t, v }).collect(),
        }
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn range_queries_keep_points_inside_the_window() {
        let source = MemorySource::new("mem");
        source.set(
            "lat",
            vec![
                series("canary", &[(100.0, 1.0), (160.0, 2.0), (220.0, 3.0)]),
                series("baseline", &[(10.0, 9.0)]),
            ],
        );
        let got =
            block_on(source.query_range("lat", at(150), at(220), Duration::from_secs(60))).unwrap();
        assert_eq!(got, vec![series("canary", &[(160.0, 2.0), (220.0, 3.0)])]);
        assert_eq!(source.times_asked("lat"), 1);
    }

    #[test]
    fn instant_queries_take_the_latest_point_within_the_lookback() {
        let source = MemorySource::new("mem");
        source.set(
            "lat",
            vec![
                series("canary", &[(100.0, 1.0), (160.0, f64::NAN)]),
                series("baseline", &[(10.0, 9.0)]),
            ],
        );
        let got = block_on(source.query_instant("lat", at(400))).unwrap();
        assert_eq!(
            got.len(),
            1,
            "the baseline's point is older than the lookback"
        );
        assert_eq!(got[0].labels["track"], "canary");
        assert_eq!(got[0].points[0].t, 400.0);
        assert!(got[0].points[0].v.is_nan(), "NaN passes through");
    }

    #[test]
    fn unknown_queries_are_empty_and_stored_errors_come_back() {
        let source = MemorySource::new("mem");
        assert_eq!(
            block_on(source.query_instant("nothing", at(1))).unwrap(),
            vec![]
        );
        let error = SourceError::Timeout {
            source_name: "mem".into(),
            url: "memory".into(),
            query: "lat".into(),
            after: Duration::from_secs(1),
        };
        source.fail("lat", error.clone());
        assert_eq!(block_on(source.query_instant("lat", at(1))), Err(error));
        source.set("lat", vec![series("canary", &[(1.0, 5.0)])]);
        assert_eq!(
            block_on(source.query_instant("lat", at(1))).unwrap().len(),
            1
        );
        assert_eq!(source.times_asked("lat"), 2);
    }

    #[test]
    fn a_closure_computes_answers_and_works_behind_a_trait_object() {
        let source: Arc<dyn MetricSource> =
            Arc::new(MemorySource::from_fn("mem", |request| match request {
                Request::Instant { at, .. } => {
                    Ok(vec![series("canary", &[(unix_seconds(*at), 7.0)])])
                }
                Request::Range { .. } => Ok(vec![]),
            }));
        let got = block_on(source.query_instant("anything", at(42))).unwrap();
        assert_eq!(got, vec![series("canary", &[(42.0, 7.0)])]);
        assert_eq!(source.name(), "mem");
        let e =
            block_on(source.query_range("x", at(10), at(5), Duration::from_secs(1))).unwrap_err();
        assert!(matches!(e, SourceError::InvalidRequest { .. }), "{e}");
    }
}
