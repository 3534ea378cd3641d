//! The HTTP exchange with Prometheus: the client (extra headers, plain HTTP without loading
//! certificates, no silent redirect to https), one request as a GET or a form-encoded POST with
//! the bearer token or the basic-auth password read from its file on every request and never
//! logged (both masked in any error, with the URL's own credentials), bounded retries with
//! exponential backoff for retryable failures only, and transport errors told apart (timeout or
//! connection). The answer's body is handed as it came to `parse`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use super::PrometheusSource;
use super::config::PrometheusConfig;
use super::parse::parse_answer;
use crate::source::{Series, SourceError, unix_seconds};

/// The first wait between attempts; it doubles after every failed attempt, up to [`MAX_BACKOFF`].
pub(super) const DEFAULT_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a request carries its parameters.
#[derive(Debug, Clone, Copy)]
pub(super) enum Method {
    Get,
    Post,
}

/// The HTTP client for `config`, whose `url` has been checked: every extra header is sent (and
/// marked sensitive), a timeout per attempt, and over plain HTTP no certificates and no
/// redirect to https. Fails with [`SourceError::Config`] for a bad header.
pub(super) fn build_client(
    name: &str,
    config: &PrometheusConfig,
    url: &reqwest::Url,
) -> Result<reqwest::Client, SourceError> {
    let problem = |detail: String| SourceError::Config {
        source_name: name.to_string(),
        detail,
    };
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
        let mut header_value = HeaderValue::from_str(value)
            .map_err(|_| problem(format!("the value of header `{key}` is not valid in HTTP")))?;
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
                    let to = crate::redact::url(attempt.url().as_str()).into_owned();
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
    builder
        .build()
        .map_err(|e| problem(format!("cannot build the HTTP client: {}", error_chain(&e))))
}

impl PrometheusSource {
    /// Sends one API request (a GET) with retries, then parses the answer.
    pub(super) async fn fetch(
        &self,
        endpoint: &str,
        query: &str,
        params: Vec<(&'static str, String)>,
    ) -> Result<Vec<Series>, SourceError> {
        self.fetch_as(Method::Get, endpoint, query, params).await
    }

    /// [`PrometheusSource::fetch`] with the parameters in the URL (GET) or in a form body (POST,
    /// which Prometheus accepts for queries too long for a URL).
    pub(super) async fn fetch_as(
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
        // The secrets this request carries, masked in whatever error it ends with (a backend or
        // a proxy may quote the request back).
        let mut known = self.url_secrets.clone();
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
            known.push(token.trim().to_string());
        }
        if let Some((user, path)) = &self.basic_auth {
            let password =
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| SourceError::Config {
                        source_name: self.name.clone(),
                        detail: format!("cannot read password_file {}: {e}", path.display()),
                    })?;
            let password = password.trim().to_string();
            // `basic_auth` marks the header sensitive.
            request = request.basic_auth(user, Some(&password));
            known.push(password);
        }
        let transport = |e: reqwest::Error| self.transport_error(&url, query, e).masked(&known);
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        parse_answer(&self.name, query, status.as_u16(), &body).map_err(|e| e.masked(&known))
    }

    fn transport_error(&self, url: &str, query: &str, e: reqwest::Error) -> SourceError {
        if e.is_timeout() {
            SourceError::Timeout {
                source_name: self.name.clone(),
                url: url.into(),
                query: query.to_string(),
                after: self.timeout,
            }
        } else {
            SourceError::Connect {
                source_name: self.name.clone(),
                url: url.into(),
                query: query.to_string(),
                detail: error_chain(&e.without_url()),
            }
        }
    }
}

/// The parameters of a `query_range` request.
pub(super) fn range_params(
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

/// The wait before retry number `attempt + 1`: `first * 2^attempt`, at most [`MAX_BACKOFF`].
fn backoff_for(first: Duration, attempt: u32) -> Duration {
    crate::backoff::Backoff::new(first, MAX_BACKOFF).delay(attempt)
}

/// Seconds as Prometheus reads them: a decimal with at most millisecond precision.
pub(super) fn format_seconds(seconds: f64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
