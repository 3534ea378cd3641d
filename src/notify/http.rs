//! The HTTP notifiers: Slack-style incoming webhooks, the generic JSON webhook and PagerDuty
//! Events v2. They own the request and the classification of its failures; the bodies come
//! from [`super::content`]. Secrets (the Slack URL's path, the routing key, a bearer token) are
//! never put in errors or logs: errors name the receiver and the URL's origin only.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::{Notification, Notifier, NotifyError, SendFuture, content};

/// Longest part of an error answer kept in the error.
const BODY_EXCERPT: usize = 300;

/// One HTTP endpoint with its client, headers and a printable name.
#[derive(Debug, Clone)]
pub struct Endpoint {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    timeout: Duration,
    /// `slack receiver `x` at https://hooks.slack.com`: no path, no query, no secret.
    target: String,
    /// The credentials in the URL and in headers such as `Authorization`, and those added with
    /// [`Endpoint::hiding`]: masked in the error answers quoted in errors.
    secrets: Vec<String>,
}

impl Endpoint {
    /// An endpoint; `headers` are sent with every request.
    pub fn new(
        kind: &str,
        name: &str,
        url: reqwest::Url,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<Endpoint, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let target = format!(
            "{kind} receiver `{name}` at {}",
            url.origin().ascii_serialization()
        );
        let mut secrets = crate::redact::secrets_of(url.as_str());
        secrets.extend(
            headers
                .iter()
                .filter(|(name, value)| {
                    value.is_sensitive() || crate::redact::is_sensitive_name(name.as_str())
                })
                .filter_map(|(_, value)| value.to_str().ok())
                .flat_map(|value| {
                    [
                        value.to_string(),
                        value.trim_start_matches("Bearer ").to_string(),
                    ]
                }),
        );
        Ok(Endpoint {
            client,
            url,
            headers,
            timeout,
            target,
            secrets,
        })
    }

    /// The same endpoint, masking `secret` too where an answer quotes it (a Slack URL's path,
    /// a routing key).
    pub fn hiding(mut self, secret: impl Into<String>) -> Endpoint {
        self.secrets.push(secret.into());
        self
    }

    /// POSTs a JSON body; any 2xx is success.
    pub async fn post_json(&self, body: &Value, extra: HeaderMap) -> Result<(), NotifyError> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .headers(extra)
            .json(body)
            .send()
            .await
            .map_err(|e| self.classify(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text =
            crate::redact::text_without(&response.text().await.unwrap_or_default(), &self.secrets);
        let mut body: String = text.chars().take(BODY_EXCERPT).collect();
        if text.chars().count() > BODY_EXCERPT {
            body.push('…');
        }
        Err(NotifyError::Http {
            target: self.target.clone(),
            status: status.as_u16(),
            body,
            retry_after,
        })
    }

    fn classify(&self, e: &reqwest::Error) -> NotifyError {
        // The error's text may hold the URL, whose path can be a secret: describe it ourselves.
        let target = self.target.clone();
        if e.is_timeout() {
            NotifyError::Timeout {
                target,
                after: self.timeout,
            }
        } else if e.is_connect() {
            NotifyError::Connect {
                target,
                detail: root_cause(e),
            }
        } else {
            NotifyError::Network {
                target,
                detail: root_cause(e),
            }
        }
    }
}

/// The innermost cause of an error (`Connection refused (os error 111)`), free of URLs.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.contains("://") {
        "request failed".to_string()
    } else {
        text
    }
}

/// Headers from a config table, checked.
pub fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid HTTP header name"))?;
        let v = HeaderValue::from_str(value).map_err(|_| {
            format!("the value of header `{name}` is not a valid HTTP header value")
        })?;
        map.insert(n, v);
    }
    Ok(map)
}

/// A Slack-style incoming webhook: `{"text": ..., "blocks": [...]}`.
#[derive(Debug, Clone)]
pub struct SlackNotifier {
    pub endpoint: Endpoint,
}

impl Notifier for SlackNotifier {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn send<'a>(&'a self, n: &'a Notification, _key: &'a str) -> SendFuture<'a> {
        Box::pin(async move {
            self.endpoint
                .post_json(&content::slack(n), HeaderMap::new())
                .await
        })
    }
}

/// The generic JSON webhook (schema in the module doc of [`super`]).
#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    pub endpoint: Endpoint,
}

impl Notifier for WebhookNotifier {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, n: &'a Notification, key: &'a str) -> SendFuture<'a> {
        Box::pin(async move {
            let mut extra = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(key) {
                extra.insert("idempotency-key", value);
            }
            self.endpoint
                .post_json(&content::webhook(n, key), extra)
                .await
        })
    }
}

/// PagerDuty Events API v2 (`trigger`/`resolve` keyed by the incident's group key).
#[derive(Clone)]
pub struct PagerDutyNotifier {
    pub endpoint: Endpoint,
    pub routing_key: String,
    pub source: String,
}

impl std::fmt::Debug for PagerDutyNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDutyNotifier")
            .field("endpoint", &self.endpoint)
            .field("routing_key", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

impl Notifier for PagerDutyNotifier {
    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    fn send<'a>(&'a self, n: &'a Notification, _key: &'a str) -> SendFuture<'a> {
        Box::pin(async move {
            let body = content::pagerduty(n, &self.routing_key, &self.source);
            self.endpoint.post_json(&body, HeaderMap::new()).await
        })
    }
}
