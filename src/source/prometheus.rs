//! The Prometheus source: `/api/v1/query_range` and `/api/v1/query` over HTTP.
//!
//! It owns the HTTP exchange (timeout, bounded retries with exponential backoff for retryable
//! failures only, extra headers, a bearer token read from a file on every request and never
//! logged) and the translation of Prometheus's JSON answers (matrix, vector, scalar) into
//! [`Series`]. Values arrive as strings and `"NaN"`, `"+Inf"` and `"-Inf"` stay NaN and ±inf. It
//! must not interpret the numbers: empty answers and bad values are the judge's business.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    BatchFuture, MetricSource, QueryFuture, Series, SourceError, check_request, duration_text,
    one_by_one, unix_seconds,
};
use crate::judge::Point;

/// The most retries a source may be configured with: beyond this a failing Prometheus would hold a
/// check for minutes.
pub const MAX_RETRIES: u32 = 10;

/// How a Prometheus source is reached. The daemon's config embeds it as
/// `[sources.NAME] kind = "prometheus"`:
///
/// ```toml
/// url = "http://prometheus:9090"
/// timeout = "10s"                      # per attempt; default 10s
/// retries = 2                          # extra attempts for retryable failures; default 2, max 10
/// bearer_token_file = "/run/secrets/prom-token"   # optional, read on every request
/// [headers]                            # optional
/// X-Scope-OrgID = "team-a"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL; `/api/v1/...` is appended (a path prefix such as `/prometheus` is kept).
    pub url: String,
    /// Time allowed for one attempt, answer included. Also sent to Prometheus as its query timeout.
    #[serde(default = "default_timeout", with = "duration_text")]
    pub timeout: Duration,
    /// Extra headers sent with every request (tenant IDs, for instance).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A file whose trimmed content is sent as `Authorization: Bearer ...`. Read on every request,
    /// so a rotated token is picked up; the token is never logged.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Extra attempts after a retryable failure (timeout, connection error, 5xx, 429).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_retries() -> u32 {
    2
}

impl PrometheusConfig {
    /// A config with the defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        PrometheusConfig {
            url: url.into(),
            timeout: default_timeout(),
            headers: BTreeMap::new(),
            bearer_token_file: None,
            retries: default_retries(),
        }
    }
}

/// A [`MetricSource`] backed by a Prometheus server's HTTP API.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    name: String,
    base: String,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    bearer_token_file: Option<PathBuf>,
    client: reqwest::Client,
    /// Hashes of combined queries ([`combine`]) that Prometheus refused: their queries are asked
    /// one by one from then on (a rule edit makes a new combination, which is tried again).
    unbatchable: Arc<Mutex<HashSet<u64>>>,
}

/// The label a combined query tags each part's series with: the part's index.
pub const BATCH_LABEL: &str = "canaryd_query";
/// At most this many refused combinations are remembered; then the memory starts afresh.
const UNBATCHABLE_MEMORY: usize = 4096;

/// The first wait between attempts; it doubles after every failed attempt, up to [`MAX_BACKOFF`].
const DEFAULT_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl PrometheusSource {
    /// Checks the settings and builds the HTTP client. Fails with [`SourceError::Config`] for a bad
    /// URL, a bad header, a zero timeout or too many retries. The token file is read per request.
    pub fn new(name: impl Into<String>, config: &PrometheusConfig) -> Result<Self, SourceError> {
        let name = name.into();
        let problem = |detail: String| SourceError::Config {
            source_name: name.clone(),
            detail,
        };
        let url = reqwest::Url::parse(config.url.trim())
            .map_err(|e| problem(format!("url `{}` is not a valid URL: {e}", config.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(problem(format!(
                "url `{}` must start with http:// or https://",
                config.url
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(problem(format!(
                "url `{}` must not have a query or a fragment",
                config.url
            )));
        }
        if config.timeout.is_zero() {
            return Err(problem("timeout must be more than zero".to_string()));
        }
        if config.retries > MAX_RETRIES {
            return Err(problem(format!(
                "retries is {}; at most {MAX_RETRIES} are allowed",
                config.retries
            )));
        }
        let mut headers = HeaderMap::new();
        for (key, value) in &config.headers {
            let header_name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
                problem(format!(
                    "header name `{key}` is not a valid HTTP header name"
                ))
            })?;
            if header_name == AUTHORIZATION && config.bearer_token_file.is_some() {
                return Err(problem(
                    "header `Authorization` conflicts with bearer_token_file; set only one".into(),
                ));
            }
            let mut header_value = HeaderValue::from_str(value).map_err(|_| {
                problem(format!("the value of header `{key}` is not valid in HTTP"))
            })?;
            header_value.set_sensitive(true);
            headers.insert(header_name, header_value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .default_headers(headers);
        if url.scheme() == "http" {
            // Plain HTTP needs no certificates: loading the system's roots is most of the
            // client's start-up cost. A redirect to https:// is refused with the fix instead.
            builder = builder
                .tls_certs_only(Vec::<reqwest::Certificate>::new())
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    if attempt.url().scheme() == "https" {
                        let to = attempt.url().to_string();
                        attempt.error(format!(
                            "the server redirected to {to}; set the source's url to https://"
                        ))
                    } else if attempt.previous().len() >= 10 {
                        attempt.error("more than 10 redirects")
                    } else {
                        attempt.follow()
                    }
                }));
        }
        let client = builder
            .build()
            .map_err(|e| problem(format!("cannot build the HTTP client: {}", error_chain(&e))))?;
        Ok(PrometheusSource {
            base: url.as_str().trim_end_matches('/').to_string(),
            name,
            timeout: config.timeout,
            retries: config.retries,
            backoff: DEFAULT_BACKOFF,
            bearer_token_file: config.bearer_token_file.clone(),
            client,
            unbatchable: Arc::default(),
        })
    }

    /// Sets the first wait between attempts (it doubles each time, up to 5 s). Default 200 ms.
    pub fn with_backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// Whether Prometheus refused this combination before.
    fn refused(&self, key: u64) -> bool {
        self.unbatchable
            .lock()
            .is_ok_and(|known| known.contains(&key))
    }

    fn remember_refused(&self, key: u64) {
        if let Ok(mut known) = self.unbatchable.lock() {
            if known.len() >= UNBATCHABLE_MEMORY {
                known.clear();
            }
            known.insert(key);
        }
    }

    /// Sends one API request (a GET) with retries, then parses the answer.
    async fn fetch(
        &self,
        endpoint: &str,
        query: &str,
        params: Vec<(&'static str, String)>,
    ) -> Result<Vec<Series>, SourceError> {
        self.fetch_as(Method::Get, endpoint, query, params).await
    }

    /// [`PrometheusSource::fetch`] with the parameters in the URL (GET) or in a form body (POST,
    /// which Prometheus accepts for queries too long for a URL).
    async fn fetch_as(
        &self,
        method: Method,
        endpoint: &str,
        query: &str,
        params: Vec<(&'static str, String)>,
    ) -> Result<Vec<Series>, SourceError> {
        let mut attempt = 0;
        loop {
            match self.attempt(method, endpoint, query, &params).await {
                Err(e) if e.retryable() && attempt < self.retries => {
                    let wait = backoff_for(self.backoff, attempt);
                    attempt += 1;
                    tracing::warn!(
                        source = %self.name,
                        query,
                        attempt,
                        retries = self.retries,
                        wait_ms = wait.as_millis() as u64,
                        error = %e,
                        "Query failed; retrying."
                    );
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// One HTTP exchange and the parsing of its answer.
    async fn attempt(
        &self,
        method: Method,
        endpoint: &str,
        query: &str,
        params: &[(&'static str, String)],
    ) -> Result<Vec<Series>, SourceError> {
        let url = format!("{}{endpoint}", self.base);
        let mut request = match method {
            Method::Get => self.client.get(&url).query(params),
            // Form-encoded by serde_urlencoded (through reqwest), with its Content-Type.
            Method::Post => self.client.post(&url).form(params),
        };
        if let Some(path) = &self.bearer_token_file {
            let token = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| SourceError::Config {
                    source_name: self.name.clone(),
                    detail: format!("cannot read bearer_token_file {}: {e}", path.display()),
                })?;
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                    SourceError::Config {
                        source_name: self.name.clone(),
                        detail: format!(
                            "bearer_token_file {} holds characters not allowed in an HTTP header",
                            path.display()
                        ),
                    }
                })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let transport = |e: reqwest::Error| self.transport_error(&url, query, e);
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        parse_answer(&self.name, query, status.as_u16(), &body)
    }

    fn transport_error(&self, url: &str, query: &str, e: reqwest::Error) -> SourceError {
        if e.is_timeout() {
            SourceError::Timeout {
                source_name: self.name.clone(),
                url: url.to_string(),
                query: query.to_string(),
                after: self.timeout,
            }
        } else {
            SourceError::Connect {
                source_name: self.name.clone(),
                url: url.to_string(),
                query: query.to_string(),
                detail: error_chain(&e.without_url()),
            }
        }
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
        Box::pin(async move {
            if queries.len() > 1 {
                for query in queries {
                    check_request(&self.name, query, Some((start, end, step)))?;
                }
                let combined = combine(queries);
                let key = {
                    use std::hash::{Hash, Hasher};
                    let mut hasher = std::hash::DefaultHasher::new();
                    combined.hash(&mut hasher);
                    hasher.finish()
                };
                if !self.refused(key) {
                    let params = range_params(&combined, start, end, step, self.timeout);
                    let sent = self
                        .fetch_as(Method::Post, "/api/v1/query_range", &combined, params)
                        .await;
                    match sent {
                        Ok(series) => match split(series, queries.len()) {
                            Some(answers) => return Ok(answers),
                            None => self.remember_refused(key),
                        },
                        Err(e) if e.retryable() => {
                            return Err(e.with_query(format!(
                                "{} (and {} more, asked together)",
                                queries[0],
                                queries.len() - 1
                            )));
                        }
                        Err(e) => {
                            tracing::debug!(
                                source = %self.name,
                                queries = queries.len(),
                                error = %e,
                                "Prometheus refused the combined query; asking one by one."
                            );
                            self.remember_refused(key);
                        }
                    }
                }
            }
            one_by_one(self, queries, start, end, step).await
        })
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

/// How a request carries its parameters.
#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Post,
}

/// The parameters of a `query_range` request.
fn range_params(
    query: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step: Duration,
    timeout: Duration,
) -> Vec<(&'static str, String)> {
    vec![
        ("query", query.to_string()),
        ("start", format_seconds(unix_seconds(start))),
        ("end", format_seconds(unix_seconds(end))),
        ("step", format_seconds(step.as_secs_f64())),
        ("timeout", format_seconds(timeout.as_secs_f64())),
    ]
}

/// Several queries as one: each part's series tagged with its index in [`BATCH_LABEL`].
pub fn combine(queries: &[String]) -> String {
    let mut combined = String::with_capacity(queries.iter().map(|q| q.len() + 48).sum());
    for (i, query) in queries.iter().enumerate() {
        if i > 0 {
            combined.push_str(" or ");
        }
        combined.push_str("label_replace(");
        combined.push_str(query.trim());
        // Writing to a String cannot fail.
        let _ = write!(combined, ", \"{BATCH_LABEL}\", \"{i}\", \"\", \"\")");
    }
    combined
}

/// The answer to a [`combine`]d query split back into one answer per part, the tag removed and
/// each part's series in the order Prometheus gave them. `None` if a series has no usable tag.
fn split(series: Vec<Series>, parts: usize) -> Option<Vec<Vec<Series>>> {
    let mut answers: Vec<Vec<Series>> = vec![Vec::new(); parts];
    for mut one in series {
        let index: usize = one.labels.remove(BATCH_LABEL)?.parse().ok()?;
        answers.get_mut(index)?.push(one);
    }
    Some(answers)
}

/// The wait before retry number `attempt + 1`: `first * 2^attempt`, at most [`MAX_BACKOFF`].
fn backoff_for(first: Duration, attempt: u32) -> Duration {
    crate::backoff::Backoff::new(first, MAX_BACKOFF).delay(attempt)
}

/// Seconds as Prometheus reads them: a decimal with at most millisecond precision.
fn format_seconds(seconds: f64) -> String {
    let text = format!("{seconds:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// An error and its causes on one line, so "connection refused" is not hidden behind "error
/// sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Turns one HTTP answer from the Prometheus API into series, or the error it reports.
pub(super) fn parse_answer(
    source_name: &str,
    query: &str,
    status: u16,
    body: &[u8],
) -> Result<Vec<Series>, SourceError> {
    if (200..300).contains(&status)
        && let Some(series) = super::matrix::read(body)
    {
        return Ok(series);
    }
    parse_answer_tree(source_name, query, status, body)
}

/// [`parse_answer`] through a JSON tree: slower, and names exactly what is wrong.
pub(super) fn parse_answer_tree(
    source_name: &str,
    query: &str,
    status: u16,
    body: &[u8],
) -> Result<Vec<Series>, SourceError> {
    let malformed = |detail: String| SourceError::Malformed {
        source_name: source_name.to_string(),
        query: query.to_string(),
        detail,
    };
    let ok_status = (200..300).contains(&status);
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let envelope = match parsed {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) if !ok_status => {
            return Err(SourceError::Http {
                source_name: source_name.to_string(),
                query: query.to_string(),
                status,
                error_type: None,
                message: body_excerpt(body),
            });
        }
        Ok(other) => {
            return Err(malformed(format!(
                "expected a JSON object, got {}",
                kind_of(&other)
            )));
        }
        Err(e) => {
            return Err(malformed(format!(
                "not JSON ({e}); the answer began with: {}",
                body_excerpt(body)
            )));
        }
    };
    let answer_status = envelope.get("status").and_then(Value::as_str);
    if !ok_status || answer_status == Some("error") {
        let error_type = envelope
            .get("errorType")
            .and_then(Value::as_str)
            .map(excerpt);
        let message = envelope
            .get("error")
            .and_then(Value::as_str)
            .map(excerpt)
            .unwrap_or_else(|| body_excerpt(body));
        return Err(SourceError::Http {
            source_name: source_name.to_string(),
            query: query.to_string(),
            status,
            error_type,
            message,
        });
    }
    if answer_status != Some("success") {
        return Err(malformed(format!(
            "`status` is {}, expected \"success\" or \"error\"",
            envelope
                .get("status")
                .map_or("missing".to_string(), |v| excerpt(&v.to_string()))
        )));
    }
    let data = envelope
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("`data` is missing or not an object".into()))?;
    let result_type = data
        .get("resultType")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("`data.resultType` is missing or not a string".into()))?;
    let result = data
        .get("result")
        .ok_or_else(|| malformed("`data.result` is missing".into()))?;
    match result_type {
        "matrix" => {
            let items = as_array(result, "data.result").map_err(malformed)?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = format!("data.result[{i}]");
                    if !item.is_object() {
                        return Err(malformed(format!(
                            "{at} should be an object with `metric` and values, got {}",
                            kind_of(item)
                        )));
                    }
                    let labels = labels_of(item, &at).map_err(malformed)?;
                    let values = item.get("values").ok_or_else(|| {
                        if item.get("histograms").is_some() {
                            malformed(format!(
                                "{at} holds native histograms, which checks cannot use; \
                                     query a histogram_quantile or a rate instead"
                            ))
                        } else {
                            malformed(format!("{at}.values is missing"))
                        }
                    })?;
                    let values = as_array(values, &format!("{at}.values")).map_err(malformed)?;
                    let points = values
                        .iter()
                        .enumerate()
                        .map(|(j, v)| point_of(v, &format!("{at}.values[{j}]")))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(malformed)?;
                    Ok(Series { labels, points })
                })
                .collect()
        }
        "vector" => {
            let items = as_array(result, "data.result").map_err(malformed)?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = format!("data.result[{i}]");
                    if !item.is_object() {
                        return Err(malformed(format!(
                            "{at} should be an object with `metric` and values, got {}",
                            kind_of(item)
                        )));
                    }
                    let labels = labels_of(item, &at).map_err(malformed)?;
                    let value = item.get("value").ok_or_else(|| {
                        if item.get("histogram").is_some() {
                            malformed(format!(
                                "{at} is a native histogram, which checks cannot use"
                            ))
                        } else {
                            malformed(format!("{at}.value is missing"))
                        }
                    })?;
                    let point = point_of(value, &format!("{at}.value")).map_err(malformed)?;
                    Ok(Series {
                        labels,
                        points: vec![point],
                    })
                })
                .collect()
        }
        "scalar" => {
            let point = point_of(result, "data.result").map_err(malformed)?;
            Ok(vec![Series {
                labels: BTreeMap::new(),
                points: vec![point],
            }])
        }
        other => Err(SourceError::UnsupportedResult {
            source_name: source_name.to_string(),
            query: query.to_string(),
            result_type: excerpt(other),
        }),
    }
}

fn as_array<'v>(value: &'v Value, at: &str) -> Result<&'v Vec<Value>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("{at} should be an array, got {}", kind_of(value)))
}

fn labels_of(item: &Value, at: &str) -> Result<BTreeMap<String, String>, String> {
    let metric = match item.get("metric") {
        None => return Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(format!(
                "{at}.metric should be an object of labels, got {}",
                kind_of(other)
            ));
        }
    };
    metric
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(format!(
                "{at}.metric.{} should be a string, got {}",
                excerpt(k),
                kind_of(other)
            )),
        })
        .collect()
}

/// One `[<unix seconds>, "<value>"]` pair.
fn point_of(pair: &Value, at: &str) -> Result<Point, String> {
    let items = match pair.as_array() {
        Some(items) if items.len() == 2 => items,
        _ => {
            return Err(format!(
                "{at} should be a [time, \"value\"] pair, got {}",
                excerpt(&pair.to_string())
            ));
        }
    };
    let t = items[0].as_f64().ok_or_else(|| {
        format!(
            "{at}: the time {} is not a number",
            excerpt(&items[0].to_string())
        )
    })?;
    let text = items[1].as_str().ok_or_else(|| {
        format!(
            "{at}: the value {} is not a string",
            excerpt(&items[1].to_string())
        )
    })?;
    let v = parse_value(text)
        .ok_or_else(|| format!("{at}: the value {:?} is not a number", excerpt(text)))?;
    Ok(Point { t, v })
}

/// A Prometheus sample value: a decimal, `NaN`, `+Inf` or `-Inf`.
pub(super) fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if text
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            None
        }
        _ => text.parse().ok(),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        excerpt(text)
    }
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> Result<Vec<Series>, SourceError> {
        parse_answer("prom", "q", status, body.as_bytes())
    }

    fn malformed_detail(status: u16, body: &str) -> String {
        match parse(status, body) {
            Err(SourceError::Malformed { detail, .. }) => detail,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    /// Debug text of series: equal for equal labels and points, NaN included.
    fn text(series: &[Series]) -> String {
        format!("{series:?}")
    }

    #[test]
    fn the_fast_reading_of_a_matrix_equals_the_tree_reading() {
        let body = r#"{"status":"success","warnings":["w"],"data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"m","track":"canary"},"values":[[1700000000,"1.5"],[1700000060.5,"NaN"],[1700000120,"+Inf"],[1700000180,"-2e-3"]]},
            {"metric":{},"values":[]},
            {"values":[[1,"-Inf"]]}]}}"#;
        let fast = super::super::matrix::read(body.as_bytes()).expect("the fast path reads it");
        let tree = parse_answer_tree("prom", "q", 200, body.as_bytes()).unwrap();
        assert_eq!(text(&fast), text(&tree));
        assert_eq!(fast.len(), 3);
        assert_eq!(fast[0].labels["track"], "canary");
        assert!(fast[0].points[1].v.is_nan());
        assert_eq!(fast[0].points[2].v, f64::INFINITY);
        assert_eq!(fast[0].points[1].t, 1_700_000_060.5);
    }

    #[test]
    fn answers_the_fast_path_cannot_read_are_left_to_the_tree_reading() {
        for body in [
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"abc"]]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1},"values":[]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"\u0031"]]}]}}"#,
            "not json",
        ] {
            assert!(
                super::super::matrix::read(body.as_bytes()).is_none(),
                "{body}"
            );
        }
        // An escaped value is still read, by the tree reading.
        let escaped = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"\u0031"]]}]}}"#;
        assert_eq!(parse(200, escaped).unwrap()[0].points[0].v, 1.0);
        // A bad value is named.
        let bad = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"abc"]]}]}}"#;
        assert!(malformed_detail(200, bad).contains("data.result[0].values[0]"));
    }

    #[test]
    fn form_bodies_encode_like_a_browser_form() {
        let params = vec![
            ("query", "sum(rate(x{a=\"b c\"}[1m])) or ü/%&+=".to_string()),
            ("step", "60".to_string()),
        ];
        // The request as `attempt` builds it for a POST.
        let request = reqwest::Client::new()
            .post("http://127.0.0.1:9/api/v1/query_range")
            .form(&params)
            .build()
            .unwrap();
        assert_eq!(
            request.headers()[reqwest::header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(
            request.body().and_then(reqwest::Body::as_bytes),
            Some(
                &b"query=sum%28rate%28x%7Ba%3D%22b+c%22%7D%5B1m%5D%29%29+or+%C3%BC%2F%25%26%2B%3D&step=60"[..]
            )
        );
    }

    #[test]
    fn combined_queries_tag_each_part_and_split_back_in_order() {
        let queries = vec!["a{x=\"1\"}".to_string(), " sum(b) ".to_string()];
        assert_eq!(
            combine(&queries),
            "label_replace(a{x=\"1\"}, \"canaryd_query\", \"0\", \"\", \"\") or \
             label_replace(sum(b), \"canaryd_query\", \"1\", \"\", \"\")"
        );
        let tagged = |tag: &str, name: &str| Series {
            labels: BTreeMap::from([
                ("__name__".to_string(), name.to_string()),
                (BATCH_LABEL.to_string(), tag.to_string()),
            ]),
            points: vec![Point { t: 1.0, v: 2.0 }],
        };
        let answers = split(
            vec![tagged("1", "b1"), tagged("0", "a"), tagged("1", "b2")],
            3,
        )
        .unwrap();
        let names = |i: usize| -> Vec<String> {
            answers[i]
                .iter()
                .map(|s| s.labels["__name__"].clone())
                .collect()
        };
        assert_eq!(names(0), ["a"]);
        assert_eq!(names(1), ["b1", "b2"]);
        assert!(answers[2].is_empty(), "a part with no series answers empty");
        assert!(!answers[1][0].labels.contains_key(BATCH_LABEL));
        // A series without a usable tag makes the answer unusable.
        assert!(split(vec![tagged("7", "x")], 3).is_none());
        assert!(split(vec![tagged("one", "x")], 3).is_none());
        let mut untagged = tagged("0", "x");
        untagged.labels.remove(BATCH_LABEL);
        assert!(split(vec![untagged], 3).is_none());
    }

    #[test]
    fn values_parse_like_prometheus_writes_them() {
        assert_eq!(parse_value("1.5"), Some(1.5));
        assert_eq!(parse_value("-2e3"), Some(-2000.0));
        assert!(parse_value("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("abc"), None);
        assert_eq!(parse_value("infinity"), None);
        assert_eq!(parse_value(""), None);
    }

    #[test]
    fn matrix_vector_and_scalar_answers_become_series() {
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"lat","track":"canary"},"values":[[10,"1"],[20.5,"NaN"],[30,"+Inf"]]}]}}"#;
        let series = parse(200, matrix).unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].labels["track"], "canary");
        assert_eq!(series[0].points[0], Point { t: 10.0, v: 1.0 });
        assert_eq!(series[0].points[1].t, 20.5);
        assert!(series[0].points[1].v.is_nan());
        assert_eq!(series[0].points[2].v, f64::INFINITY);

        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[5,"2"]},{"metric":{"a":"2"},"value":[5,"-Inf"]}]}}"#;
        let series = parse(200, vector).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(
            series[1].points,
            vec![Point {
                t: 5.0,
                v: f64::NEG_INFINITY
            }]
        );

        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[7,"42"]}}"#;
        let series = parse(200, scalar).unwrap();
        assert_eq!(series.len(), 1);
        assert!(series[0].labels.is_empty());
        assert_eq!(series[0].points, vec![Point { t: 7.0, v: 42.0 }]);

        let empty = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(parse(200, empty).unwrap(), vec![]);
    }

    #[test]
    fn error_answers_carry_prometheus_error_type_and_message() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        match parse(400, body) {
            Err(e @ SourceError::Http { .. }) => {
                assert!(!e.retryable());
                assert_eq!(
                    e.to_string(),
                    "source `prom`: query `q` failed with HTTP 400 (bad_data): parse error at char 5"
                );
            }
            other => panic!("expected Http, got {other:?}"),
        }
        match parse(503, "upstream down") {
            Err(e @ SourceError::Http { status: 503, .. }) => {
                assert!(e.retryable());
                assert!(e.to_string().contains("upstream down"), "{e}");
            }
            other => panic!("expected Http 503, got {other:?}"),
        }
    }

    #[test]
    fn malformed_answers_say_what_was_wrong_and_where() {
        let cases = [
            ("{not json", "not JSON"),
            ("[1,2]", "expected a JSON object, got an array"),
            (r#"{"status":"success"}"#, "`data` is missing"),
            (r#"{"status":"weird","data":{}}"#, "`status` is \"weird\""),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":{}}}"#,
                "data.result should be an array, got an object",
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}"#,
                "data.result[0].value: the value \"abc\" is not a number",
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,2]}]}}"#,
                "data.result[0].value: the value 2 is not a string",
            ),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2]]}]}}"#,
                "data.result[0].values[1] should be a [time, \"value\"] pair",
            ),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1},"values":[]}]}}"#,
                "data.result[0].metric.a should be a string, got a number",
            ),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"histograms":[]}]}}"#,
                "native histograms",
            ),
        ];
        for (body, want) in cases {
            let detail = malformed_detail(200, body);
            assert!(detail.contains(want), "{body}: {detail}");
        }
    }

    #[test]
    fn string_results_are_refused_clearly() {
        let body = r#"{"status":"success","data":{"resultType":"string","result":[1,"hello"]}}"#;
        match parse(200, body) {
            Err(e @ SourceError::UnsupportedResult { .. }) => {
                assert!(e.to_string().contains("`string`"), "{e}");
                assert!(!e.retryable());
            }
            other => panic!("expected UnsupportedResult, got {other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let first = Duration::from_millis(200);
        assert_eq!(backoff_for(first, 0), Duration::from_millis(200));
        assert_eq!(backoff_for(first, 1), Duration::from_millis(400));
        assert_eq!(backoff_for(first, 3), Duration::from_millis(1600));
        assert_eq!(backoff_for(first, 30), MAX_BACKOFF);
    }

    #[test]
    fn seconds_are_formatted_compactly() {
        assert_eq!(format_seconds(1_700_000_000.0), "1700000000");
        assert_eq!(format_seconds(1_700_000_000.25), "1700000000.25");
        assert_eq!(format_seconds(0.5), "0.5");
    }

    #[test]
    fn config_reads_from_toml_with_defaults_and_refuses_unknown_fields() {
        let config: PrometheusConfig = toml::from_str(r#"url = "http://p:9090""#).unwrap();
        assert_eq!(config, PrometheusConfig::new("http://p:9090"));
        let config: PrometheusConfig = toml::from_str(
            r#"
            url = "http://p:9090"
            timeout = "500ms"
            retries = 4
            bearer_token_file = "/run/token"
            [headers]
            X-Scope-OrgID = "team-a"
            "#,
        )
        .unwrap();
        assert_eq!(config.timeout, Duration::from_millis(500));
        assert_eq!(config.retries, 4);
        assert_eq!(config.headers["X-Scope-OrgID"], "team-a");
        let e = toml::from_str::<PrometheusConfig>("url = \"http://p\"\nretry = 3").unwrap_err();
        assert!(e.to_string().contains("unknown field `retry`"), "{e}");
        let e = toml::from_str::<PrometheusConfig>("url = \"http://p\"\ntimeout = \"soon\"")
            .unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
    }

    #[test]
    fn config_embeds_under_a_kind_tag() {
        #[derive(Debug, Deserialize)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        enum SourceConfig {
            Prometheus(PrometheusConfig),
        }
        let SourceConfig::Prometheus(config) =
            toml::from_str("kind = \"prometheus\"\nurl = \"http://p\"\ntimeout = \"2s\"").unwrap();
        assert_eq!(config.timeout, Duration::from_secs(2));
        let e = toml::from_str::<SourceConfig>("kind = \"prometheus\"\nurl = \"http://p\"\nx = 1")
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `x`"), "{e}");
    }

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
