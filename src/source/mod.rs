//! Metric sources: where the judge's numbers come from.
//!
//! This module owns the [`MetricSource`] trait (range and instant queries that answer with labelled
//! [`Series`] of [`Point`]s), the [`SourceError`] that says what failed, where, and whether a retry
//! can help, and three implementations: [`PrometheusSource`] (the real one, over HTTP),
//! [`MemorySource`] (canned answers for the demo and for tests of the pure core) and
//! [`RecordedSource`] (recorded CSV files answered as Prometheus would, for `canaryd replay`).
//! It must not judge anything: an empty answer is `Ok(vec![])` and NaN or infinite values are
//! passed through as they are, because "no data" and bad values are verdicts the judge gives, not
//! errors a source raises. It knows nothing about rollouts, rules or the daemon's schedule.

mod memory;
mod prometheus;
pub mod recorded;

pub use memory::{MemorySource, Request};
pub use prometheus::{PrometheusConfig, PrometheusSource};
pub use recorded::RecordedSource;

/// The two readers of a Prometheus answer body, exposed only for the fuzz targets (`fuzz/`) and
/// their regression tests (`tests/core/fuzz_regressions.rs`), which check that they agree.
#[doc(hidden)]
pub mod answer {
    use super::{Series, SourceError};

    /// The byte-level matrix reader: the series, or `None` to read the answer the slow way.
    pub fn read_fast(body: &[u8]) -> Option<Vec<Series>> {
        super::prometheus::read_matrix(body)
    }

    /// The reading through a JSON tree, which accepts every valid answer and names what is
    /// wrong with the others (as source `fuzz`, query `q`).
    pub fn read_tree(status: u16, body: &[u8]) -> Result<Vec<Series>, SourceError> {
        super::prometheus::parse_answer_tree("fuzz", "q", status, body)
    }

    /// What the source makes of an answer: the fast reader when it can, else the tree.
    pub fn read(status: u16, body: &[u8]) -> Result<Vec<Series>, SourceError> {
        super::prometheus::parse_answer("fuzz", "q", status, body)
    }
}

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::judge::Point;
use crate::redact::SecretUrl;

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

/// The future [`MetricSource::query_range_many`] returns: one answer per query, in order.
pub type BatchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Vec<Series>>, SourceError>> + Send + 'a>>;

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

    /// Several range queries over the same span and step: one answer per query, in the order
    /// given, each exactly what [`MetricSource::query_range`] would answer. The first failure
    /// fails the whole call. This default asks them one after another; a source that can answer
    /// several queries in one request (Prometheus) overrides it.
    fn query_range_many<'a>(
        &'a self,
        queries: &'a [String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> BatchFuture<'a> {
        Box::pin(one_by_one(self, queries, start, end, step))
    }
}

/// Asks `queries` one after another; the first failure fails them all. The default of
/// [`MetricSource::query_range_many`], and a source's fallback when it cannot combine them.
pub(crate) async fn one_by_one<S: MetricSource + ?Sized>(
    source: &S,
    queries: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step: Duration,
) -> Result<Vec<Vec<Series>>, SourceError> {
    let mut answers = Vec::with_capacity(queries.len());
    for query in queries {
        answers.push(source.query_range(query, start, end, step).await?);
    }
    Ok(answers)
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
        /// Printed with its credentials masked.
        url: SecretUrl,
        query: String,
        detail: String,
    },

    /// No full answer within the configured timeout.
    #[error("source `{source_name}`: query `{query}` timed out after {} ms at {url}", after.as_millis())]
    Timeout {
        source_name: String,
        /// Printed with its credentials masked.
        url: SecretUrl,
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

    /// The same error with the credentials in its free text (a detail, the backend's message)
    /// masked, and every occurrence of the `known` secrets (the source's own) too.
    pub fn masked(mut self, known: &[String]) -> Self {
        let mask = |text: &mut String| *text = crate::redact::text_without(text, known);
        match &mut self {
            SourceError::Config { detail, .. }
            | SourceError::InvalidRequest { detail, .. }
            | SourceError::Connect { detail, .. }
            | SourceError::Malformed { detail, .. } => mask(detail),
            SourceError::Http { message, .. } => mask(message),
            SourceError::Timeout { .. } | SourceError::UnsupportedResult { .. } => {}
        }
        self
    }

    /// The same error reported for `query` (a combined query's error is told by its parts).
    pub fn with_query(mut self, text: String) -> Self {
        match &mut self {
            SourceError::InvalidRequest { query, .. }
            | SourceError::Connect { query, .. }
            | SourceError::Timeout { query, .. }
            | SourceError::Http { query, .. }
            | SourceError::Malformed { query, .. }
            | SourceError::UnsupportedResult { query, .. } => *query = text,
            SourceError::Config { .. } => {}
        }
        self
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

/// Durations written as text in config files (`timeout = "10s"`): the rule files' syntax.
pub(crate) use crate::rules::duration::serde_text as duration_text;

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
    fn config_durations_use_the_rule_file_syntax() {
        let ok: PrometheusConfig =
            toml::from_str("url = \"http://127.0.0.1:9090\"\ntimeout = \"1m30s\"").unwrap();
        assert_eq!(ok.timeout, Duration::from_secs(90));
        let err = toml::from_str::<PrometheusConfig>(
            "url = \"http://127.0.0.1:9090\"\ntimeout = \"ten\"",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bad duration `ten`"), "{err}");
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
