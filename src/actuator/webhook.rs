//! The webhook actuator: POSTs each weight change as JSON to a configured URL.
//!
//! This file owns the request (the [`WeightChange`] as the body, configured headers plus an
//! `Idempotency-Key` header), its timeout, and bounded retries with exponential backoff on failures
//! a retry can help (connection errors, timeouts, 5xx, 429, honouring `Retry-After` up to
//! `max_backoff`). Anything but a 2xx (redirects included: they are not followed) is an error
//! carrying the status and the first part of the body. It does not alert or move the rollout: the runner decides what a failure means.

use super::{
    Actuator, ActuatorError, ActuatorFuture, ConfigError, Failure, WeightChange, chain,
    check_weight, duration_str, truncate_head,
};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::Backoff;

/// How much of an error response's body goes into the error message.
const BODY_EXCERPT_BYTES: usize = 512;

/// `[actuators.NAME] kind = "webhook"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST, `http://` or `https://`.
    pub url: String,
    /// Extra request headers (e.g. `X-Tenant`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A file whose trimmed content is sent as `Authorization: Bearer ...`: read on every
    /// change (a rotated token is picked up), never logged, masked in errors. Keeps the token
    /// out of the config file, where `headers` or the URL would put it.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Bound on one attempt, connection to last body byte.
    #[serde(default = "default_timeout", with = "duration_str")]
    pub timeout: Duration,
    /// Attempts in all, the first included (1–10).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each later one.
    #[serde(default = "default_backoff", with = "duration_str")]
    pub backoff: Duration,
    /// Upper bound on any one wait between attempts, `Retry-After` included.
    #[serde(default = "default_max_backoff", with = "duration_str")]
    pub max_backoff: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_attempts() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}

impl WebhookConfig {
    /// A config for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: BTreeMap::new(),
            bearer_token_file: None,
            timeout: default_timeout(),
            max_attempts: default_max_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }

    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // Quoted with its credentials masked: a problem is printed and logged.
        let shown = crate::redact::url(&self.url);
        match reqwest::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => problems.push(format!(
                "url `{shown}` uses scheme `{}`; use http:// or https://",
                url.scheme()
            )),
            Err(e) => problems.push(format!("url `{shown}` is not a valid URL: {e}")),
        }
        if let Err(e) = header_map(&self.headers) {
            problems.push(e);
        }
        if self.bearer_token_file.is_some()
            && self
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("authorization"))
        {
            problems.push(
                "header `Authorization` conflicts with bearer_token_file; set only one".to_owned(),
            );
        }
        if self.timeout.is_zero() {
            problems.push("timeout must be above zero".to_owned());
        }
        if !(1..=10).contains(&self.max_attempts) {
            problems.push(format!(
                "max_attempts = {} is out of range; use 1 to 10",
                self.max_attempts
            ));
        }
        if self.backoff > self.max_backoff {
            problems.push(format!(
                "backoff ({:?}) is longer than max_backoff ({:?})",
                self.backoff, self.max_backoff
            ));
        }
        problems
    }
}

fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header name `{name}` is not a valid HTTP header name"))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            format!("header `{name}` has a value with characters HTTP does not allow")
        })?;
        value.set_sensitive(true);
        map.insert(header, value);
    }
    Ok(map)
}

/// POSTs weight changes to a URL.
#[derive(Debug, Clone)]
pub struct WebhookActuator {
    name: String,
    config: WebhookConfig,
    client: reqwest::Client,
    /// The credentials in the URL and in headers such as `Authorization`, masked in every error.
    secrets: Vec<String>,
}

impl WebhookActuator {
    /// Validates `config` and builds the HTTP client.
    pub fn new(name: &str, config: &WebhookConfig) -> Result<Self, ConfigError> {
        let fail = |problems: Vec<String>| ConfigError {
            actuator: name.to_owned(),
            problems,
        };
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        let headers = header_map(&config.headers).map_err(|e| fail(vec![e]))?;
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            // A redirect would turn the POST into a GET; report the 3xx instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("canaryd/", env!("CARGO_PKG_VERSION")));
        if config.url.trim_start().starts_with("http://") {
            // Plain HTTP (and no redirects) needs no certificates: skip loading the system's.
            builder = builder.tls_certs_only(Vec::<reqwest::Certificate>::new());
        }
        let client = builder
            .build()
            .map_err(|e| fail(vec![format!("cannot build the HTTP client: {e}")]))?;
        let mut secrets = crate::redact::secrets_of(&config.url);
        secrets.extend(
            config
                .headers
                .iter()
                .filter(|(name, _)| crate::redact::is_sensitive_name(name))
                .map(|(_, value)| value.clone()),
        );
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            client,
            secrets,
        })
    }

    /// The wait before attempt `attempt + 1` (attempts count from 1).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = Backoff::new(self.config.backoff, self.config.max_backoff)
            .delay(attempt.saturating_sub(1));
        retry_after
            .unwrap_or(exponential)
            .min(self.config.max_backoff)
    }

    /// One attempt. `Err((failure, retry_after))` on any failure.
    async fn attempt(
        &self,
        change: &WeightChange,
        attempt: u32,
    ) -> Result<(), (Failure, Option<Duration>)> {
        let url = &self.config.url;
        let mut request = self
            .client
            .post(url)
            .header("Idempotency-Key", &change.idempotency_key)
            .json(change);
        let mut secrets = self.secrets.clone();
        if let Some(path) = &self.config.bearer_token_file {
            let token = self.read_token(path).await.map_err(|f| (f, None))?;
            request = request.header(AUTHORIZATION, token.header);
            secrets.push(token.text);
        }
        let secrets = secrets;
        let response = request.send().await.map_err(|source| {
            let transient = source.is_timeout()
                || source.is_connect()
                || source.is_request()
                || source.is_body();
            let source = source.without_url();
            let failure = Failure::Request {
                url: url.as_str().into(),
                attempts: attempt,
                transient,
                detail: crate::redact::text_without(&chain(&source), &secrets),
                source,
            };
            (failure, None)
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = crate::redact::text_without(&body_excerpt(response).await, &secrets);
        let failure = Failure::Status {
            url: url.as_str().into(),
            status: status.as_u16(),
            attempts: attempt,
            body,
        };
        Err((failure, retry_after))
    }
}

/// A bearer token read from its file: the header to send, and the token to mask.
struct Token {
    header: HeaderValue,
    text: String,
}

impl WebhookActuator {
    async fn read_token(&self, path: &std::path::Path) -> Result<Token, Failure> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| Failure::Io {
                what: "cannot read bearer_token_file",
                path: path.to_path_buf(),
                source,
            })?;
        let text = text.trim().to_owned();
        let mut header = HeaderValue::from_str(&format!("Bearer {text}")).map_err(|_| {
            Failure::Invalid(format!(
                "bearer_token_file {} holds characters not allowed in an HTTP header",
                path.display()
            ))
        })?;
        header.set_sensitive(true);
        Ok(Token { header, text })
    }
}

/// The first [`BODY_EXCERPT_BYTES`] of a response body, read no further than needed.
async fn body_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    let mut cut = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > BODY_EXCERPT_BYTES {
                    cut = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                bytes.extend_from_slice(format!(" (body unreadable: {e})").as_bytes());
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = truncate_head(text.trim(), BODY_EXCERPT_BYTES);
    match (text.is_empty(), cut && !text.ends_with('…')) {
        (true, _) => "(empty body)".to_owned(),
        (false, true) => format!("{text}…"),
        (false, false) => text,
    }
}

impl Actuator for WebhookActuator {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn set_weight<'a>(&'a self, change: &'a WeightChange) -> ActuatorFuture<'a> {
        Box::pin(async move {
            check_weight(change).map_err(|f| ActuatorError::new(self, change, f))?;
            let mut attempt = 1;
            loop {
                let (failure, retry_after) = match self.attempt(change, attempt).await {
                    Ok(()) => {
                        tracing::info!(
                            actuator = %self.name, rollout = %change.rollout,
                            stage = %change.stage, weight = change.weight, attempt,
                            "The webhook accepted the weight change."
                        );
                        return Ok(());
                    }
                    Err(e) => e,
                };
                let error = ActuatorError::new(self, change, failure);
                if !error.retryable() || attempt >= self.config.max_attempts {
                    return Err(error);
                }
                let wait = self.backoff(attempt, retry_after);
                tracing::warn!(
                    actuator = %self.name, rollout = %change.rollout, attempt,
                    retry_in_ms = wait.as_millis() as u64, error = %error,
                    "The webhook failed; retrying."
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        })
    }
}
