//! Metric sources: where the judge's numbers come from.
//!
//! This module owns the [`MetricSource`] trait (range and instant queries that answer with labelled
//! [`Series`] of [`Point`]s), the [`SourceError`] that says what failed, where, and whether a retry
//! can help, and two implementations: [`PrometheusSource`] (the real one, over HTTP) and
//! [`MemorySource`] (canned answers for the demo and for tests of the pure core). It must not judge
//! anything: an empty answer is `Ok(vec![])` and NaN or infinite values are passed through as they
//! are, because "no data" and bad values are verdicts the judge gives, not errors a source raises.
//! It knows nothing about rollouts, rules or the daemon's schedule.

mod memory;
mod prometheus;

pub use memory::{MemorySource, Request};
pub use prometheus::{PrometheusConfig, PrometheusSource};

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::judge::Point;

/// One labelled series as a source answers it. An instant query gives one point per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels, `__name__` included when the source reports it.
    pub labels: BTreeMap<String, String>,
    /// Points in time order. Values may be NaN or ±inf: the judge drops and counts them.
    pub points: Vec<Point>,
}

/// The future a [`MetricSource`] query returns: boxed so the trait stays object-safe and the
/// daemon can hold an `Arc<dyn MetricSource>` per rollout.
pub type QueryFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Series>, SourceError>> + Send + 'a>>;

/// A place that answers PromQL-like queries. Implementations must be cheap to share across tasks.
pub trait MetricSource: Send + Sync {
    /// The name the source was configured under (`[sources.NAME]`); every error carries it.
    fn name(&self) -> &str;

    /// The series of `query` evaluated every `step` from `start` to `end`, both included.
    fn query_range<'a>(
        &'a self,
        query: &'a str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> QueryFuture<'a>;

    /// The value of `query` at the instant `at`: one point per series (a scalar answer is one
    /// series with no labels).
    fn query_instant<'a>(&'a self, query: &'a str, at: DateTime<Utc>) -> QueryFuture<'a>;
}

/// What went wrong with a query, with the source's name and the query, and whether a retry can help
/// ([`SourceError::retryable`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The source's settings are unusable (bad URL, bad header, unreadable token file).
    #[error("source `{source_name}`: {detail}")]
    Config { source_name: String, detail: String },

    /// The query was refused before it was sent (an empty query, a range that ends before it starts).
    #[error("source `{source_name}`: query `{query}` is invalid: {detail}")]
    InvalidRequest {
        source_name: String,
        query: String,
        detail: String,
    },

    /// No connection could be made, or it broke before a full answer came.
    #[error("source `{source_name}`: cannot reach {url} for query `{query}`: {detail}")]
    Connect {
        source_name: String,
        url: String,
        query: String,
        detail: String,
    },

    /// No full answer within the configured timeout.
    #[error("source `{source_name}`: query `{query}` timed out after {} ms at {url}", after.as_millis())]
    Timeout {
        source_name: String,
        url: String,
        query: String,
        after: Duration,
    },

    /// The source answered with an error status (HTTP, or `"status": "error"` in the body).
    /// `error_type` and `message` are the source's own (`bad_data`, `parse error at char 5: ...`).
    #[error(
        "source `{source_name}`: query `{query}` failed with HTTP {status}{}: {message}",
        error_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default()
    )]
    Http {
        source_name: String,
        query: String,
        status: u16,
        error_type: Option<String>,
        message: String,
    },

    /// The answer could not be understood: not JSON, the wrong shape, a value that is not a number.
    #[error("source `{source_name}`: malformed answer to query `{query}`: {detail}")]
    Malformed {
        source_name: String,
        query: String,
        detail: String,
    },

    /// The answer was well formed but of a kind checks cannot use (a PromQL string).
    #[error(
        "source `{source_name}`: query `{query}` returned a `{result_type}` result; checks need a \
         matrix, a vector or a scalar"
    )]
    UnsupportedResult {
        source_name: String,
        query: String,
        result_type: String,
    },
}

impl SourceError {
    /// Whether asking again later can help: timeouts, connection failures, HTTP 5xx and 429 can;
    /// a rejected query, a 4xx, a malformed answer or bad settings cannot.
    pub fn retryable(&self) -> bool {
        match self {
            SourceError::Connect { .. } | SourceError::Timeout { .. } => true,
            SourceError::Http { status, .. } => *status >= 500 || *status == 429,
            SourceError::Config { .. }
            | SourceError::InvalidRequest { .. }
            | SourceError::Malformed { .. }
            | SourceError::UnsupportedResult { .. } => false,
        }
    }

    /// The name of the source the error came from.
    pub fn source_name(&self) -> &str {
        match self {
            SourceError::Config { source_name, .. }
            | SourceError::InvalidRequest { source_name, .. }
            | SourceError::Connect { source_name, .. }
            | SourceError::Timeout { source_name, .. }
            | SourceError::Http { source_name, .. }
            | SourceError::Malformed { source_name, .. }
            | SourceError::UnsupportedResult { source_name, .. } => source_name,
        }
    }
}

/// Refuses requests no source can answer, the same way for every implementation.
pub(crate) fn check_request(
    source_name: &str,
    query: &str,
    range: Option<(DateTime<Utc>, DateTime<Utc>, Duration)>,
) -> Result<(), SourceError> {
    let invalid = |detail: &str| SourceError::InvalidRequest {
        source_name: source_name.to_string(),
        query: query.to_string(),
        detail: detail.to_string(),
    };
    if query.trim().is_empty() {
        return Err(invalid("the query is empty"));
    }
    if let Some((start, end, step)) = range {
        if end < start {
            return Err(invalid(&format!(
                "the range ends ({end}) before it starts ({start})"
            )));
        }
        if step.is_zero() {
            return Err(invalid("the step is zero; it must be positive"));
        }
    }
    Ok(())
}

/// Unix seconds (with fractions) of a time, as sources and [`Point::t`] count them.
pub(crate) fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9
}

/// Durations written as text in config files: `500ms`, `10s`, `2m`, `1h`, or a bare number of
/// seconds (`1.5`).
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses `500ms`, `10s`, `2m`, `1h` or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number.parse().map_err(|_| {
            format!("`{text}` is not a duration; write it like `500ms`, `10s`, `2m` or `1h`")
        })?;
        let seconds = match unit.trim() {
            "ms" => value / 1000.0,
            "" | "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            other => {
                return Err(format!(
                    "`{text}` has an unknown unit `{other}`; use `ms`, `s`, `m` or `h`"
                ));
            }
        };
        Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
    }

    /// Writes a duration the way [`parse`] reads it.
    pub fn format(d: Duration) -> String {
        let ms = d.as_millis();
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_follows_the_kind_of_failure() {
        let http = |status| SourceError::Http {
            source_name: "prom".into(),
            query: "up".into(),
            status,
            error_type: None,
            message: "x".into(),
        };
        let cases = [
            (http(500), true),
            (http(503), true),
            (http(429), true),
            (http(400), false),
            (http(422), false),
            (http(404), false),
            (
                SourceError::Timeout {
                    source_name: "prom".into(),
                    url: "http://x".into(),
                    query: "up".into(),
                    after: Duration::from_secs(1),
                },
                true,
            ),
            (
                SourceError::Connect {
                    source_name: "prom".into(),
                    url: "http://x".into(),
                    query: "up".into(),
                    detail: "refused".into(),
                },
                true,
            ),
            (
                SourceError::Malformed {
                    source_name: "prom".into(),
                    query: "up".into(),
                    detail: "bad".into(),
                },
                false,
            ),
            (
                SourceError::UnsupportedResult {
                    source_name: "prom".into(),
                    query: "up".into(),
                    result_type: "string".into(),
                },
                false,
            ),
            (
                SourceError::Config {
                    source_name: "prom".into(),
                    detail: "bad".into(),
                },
                false,
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.retryable(), want, "{error}");
            assert_eq!(error.source_name(), "prom");
        }
    }

    #[test]
    fn http_error_message_names_source_query_type_and_message() {
        let e = SourceError::Http {
            source_name: "prom-eu".into(),
            query: "sum(".into(),
            status: 400,
            error_type: Some("bad_data".into()),
            message: "parse error".into(),
        };
        assert_eq!(
            e.to_string(),
            "source `prom-eu`: query `sum(` failed with HTTP 400 (bad_data): parse error"
        );
    }

    #[test]
    fn durations_parse_from_text() {
        let cases = [
            ("500ms", Some(Duration::from_millis(500))),
            ("10s", Some(Duration::from_secs(10))),
            ("2m", Some(Duration::from_secs(120))),
            ("1h", Some(Duration::from_secs(3600))),
            ("1.5", Some(Duration::from_millis(1500))),
            ("ten", None),
            ("10d", None),
            ("", None),
            ("-1s", None),
        ];
        for (text, want) in cases {
            assert_eq!(duration_text::parse(text).ok(), want, "{text:?}");
        }
        assert_eq!(duration_text::format(Duration::from_secs(10)), "10s");
        assert_eq!(duration_text::format(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn requests_no_source_can_answer_are_refused() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t1 = DateTime::from_timestamp(1_700_000_600, 0).unwrap();
        let step = Duration::from_secs(60);
        assert!(check_request("p", "up", Some((t0, t1, step))).is_ok());
        assert!(check_request("p", "up", None).is_ok());
        let errors = [
            check_request("p", "  ", None),
            check_request("p", "up", Some((t1, t0, step))),
            check_request("p", "up", Some((t0, t1, Duration::ZERO))),
        ];
        for e in errors {
            let e = e.unwrap_err();
            assert!(matches!(e, SourceError::InvalidRequest { .. }), "{e}");
            assert!(!e.retryable());
        }
    }

    #[test]
    fn unix_seconds_keeps_fractions() {
        let t = DateTime::from_timestamp(1_700_000_000, 250_000_000).unwrap();
        assert_eq!(unix_seconds(t), 1_700_000_000.25);
    }
}
