//! The Prometheus source: `/api/v1/query_range` and `/api/v1/query` over HTTP, one
//! [`MetricSource`] per configured server. This file holds the source itself and what it answers
//! for each query; its parts are the settings (`config`), the HTTP exchange with its retries,
//! headers and bearer token (`http`), several queries asked as one (`batch`), and the reading of
//! the answers (`parse`, with the fast reader of the usual range answer in `matrix` and the
//! sample values in `value`). Arrows go one way: `batch` → `http` → `parse` → `matrix` → `value`.
//! It must not interpret the numbers: empty answers and bad values are the judge's business.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{BatchFuture, MetricSource, QueryFuture, SourceError, check_request, unix_seconds};

mod batch;
mod config;
mod http;
mod matrix;
mod parse;
mod value;

pub use config::PrometheusConfig;
pub(super) use matrix::read as read_matrix;
pub(super) use parse::{parse_answer, parse_answer_tree};

use http::{DEFAULT_BACKOFF, build_client, format_seconds, range_params};

/// A [`MetricSource`] backed by a Prometheus server's HTTP API.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    name: String,
    base: String,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    bearer_token_file: Option<PathBuf>,
    /// Basic auth: the user, and the file its password is read from on every request.
    basic_auth: Option<(String, PathBuf)>,
    /// The credentials in the URL ([`crate::redact::secrets_of`]), masked in every error.
    url_secrets: Vec<String>,
    client: reqwest::Client,
    /// Hashes of combined queries ([`batch::combine`]) that Prometheus refused: their queries are asked
    /// one by one from then on (a rule edit makes a new combination, which is tried again).
    unbatchable: Arc<Mutex<HashSet<u64>>>,
}

impl PrometheusSource {
    /// Checks the settings and builds the HTTP client. Fails with [`SourceError::Config`] for a bad
    /// URL, a bad header, a zero timeout or too many retries. The token file is read per request.
    pub fn new(name: impl Into<String>, config: &PrometheusConfig) -> Result<Self, SourceError> {
        let name = name.into();
        let url = config.checked_url(&name)?;
        let client = build_client(&name, config, &url)?;
        Ok(PrometheusSource {
            base: url.as_str().trim_end_matches('/').to_string(),
            name,
            timeout: config.timeout,
            retries: config.retries,
            backoff: DEFAULT_BACKOFF,
            bearer_token_file: config.bearer_token_file.clone(),
            basic_auth: config.username.clone().zip(config.password_file.clone()),
            url_secrets: crate::redact::secrets_of(&config.url),
            client,
            unbatchable: Arc::default(),
        })
    }

    /// Sets the first wait between attempts (it doubles each time, up to 5 s). Default 200 ms.
    pub fn with_backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }
}

impl MetricSource for PrometheusSource {
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
            let params = range_params(query, start, end, step, self.timeout);
            self.fetch("/api/v1/query_range", query, params).await
        })
    }

    /// The queries are asked in one request (a POST: the combination can be too long for a
    /// URL), `label_replace(Q0, "canaryd_query", "0", "", "") or
    /// label_replace(Q1, ...) or ...`, and each answer's series are told apart by that label
    /// (removed again): one HTTP exchange and one evaluation instead of one per query. If
    /// Prometheus refuses the combination (a query answering a scalar cannot be labelled; a
    /// broken query fails them all), the queries are asked one by one, so every query gets its own
    /// answer or its own error, and that combination is not tried again. A timeout or an
    /// unreachable server fails the call like a single query would.
    fn query_range_many<'a>(
        &'a self,
        queries: &'a [String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> BatchFuture<'a> {
        Box::pin(self.query_range_batched(queries, start, end, step))
    }

    fn query_instant<'a>(&'a self, query: &'a str, at: DateTime<Utc>) -> QueryFuture<'a> {
        Box::pin(async move {
            check_request(&self.name, query, None)?;
            let params = vec![
                ("query", query.to_string()),
                ("time", format_seconds(unix_seconds(at))),
                ("timeout", format_seconds(self.timeout.as_secs_f64())),
            ];
            self.fetch("/api/v1/query", query, params).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let cases: [(PrometheusConfig, &str); 6] = [
            (PrometheusConfig::new("not a url"), "not a valid URL"),
            (PrometheusConfig::new("ftp://p"), "http:// or https://"),
            (
                PrometheusConfig::new("http://p/?x=1"),
                "query or a fragment",
            ),
            (
                PrometheusConfig {
                    timeout: Duration::ZERO,
                    ..PrometheusConfig::new("http://p")
                },
                "timeout",
            ),
            (
                PrometheusConfig {
                    retries: 11,
                    ..PrometheusConfig::new("http://p")
                },
                "at most 10",
            ),
            (
                PrometheusConfig {
                    headers: [("bad header".to_string(), "x".to_string())].into(),
                    ..PrometheusConfig::new("http://p")
                },
                "`bad header`",
            ),
        ];
        for (config, want) in cases {
            let e = PrometheusSource::new("prom", &config).unwrap_err();
            assert!(matches!(e, SourceError::Config { .. }), "{e}");
            assert!(e.to_string().contains(want), "{e}");
            assert!(e.to_string().starts_with("source `prom`"), "{e}");
        }
    }

    #[test]
    fn a_path_prefix_is_kept() {
        let source =
            PrometheusSource::new("prom", &PrometheusConfig::new("http://p:9090/prometheus/"))
                .unwrap();
        assert_eq!(source.base, "http://p:9090/prometheus");
    }
}
