//! `[receivers.NAME]` tables: their serde shapes (one struct per `kind`, unknown keys refused),
//! the pure [`ReceiverConfig::validate`] that reports every problem at once, and
//! [`Receivers::build`], which reads the secret files and makes the notifiers. It owns nothing
//! about delivery; it must not log a secret.
//!
//! ```toml
//! [receivers.team-email]
//! kind = "email"
//! to = ["team@example.com"]
//! from = "canaryd <canaryd@example.com>"
//! smtp_host = "smtp.example.com"
//! smtp_port = 587                        # default: 25, 587 or 465 by `tls`
//! tls = "starttls"                       # "none" (local relay) | "starttls" | "tls"; default starttls
//! username = "canaryd"                   # optional; needs password_file
//! password_file = "/etc/canaryd/smtp.pass"
//! ca_file = "/etc/canaryd/relay-ca.pem"  # optional extra trusted root (PEM)
//! timeout = "10s"
//! rate_per_minute = 60                   # token bucket: refill rate ...
//! burst = 10                             # ... and size; a message over the limit waits
//!
//! [receivers.team-slack]
//! kind = "slack"
//! url_file = "/etc/canaryd/slack.url"    # or url = "https://hooks.slack.com/services/..."
//!
//! [receivers.ops-hook]
//! kind = "webhook"
//! url = "https://ops.example.com/canaryd"
//! headers = { X-Tenant = "payments" }
//! bearer_token_file = "/etc/canaryd/hook.token"
//!
//! [receivers.pager]
//! kind = "pagerduty"
//! routing_key_file = "/etc/canaryd/pagerduty.key"
//! url = "https://events.pagerduty.com/v2/enqueue"   # the default
//! source = "canaryd"                                # the default
//! ```
//! Every kind takes `timeout`, `rate_per_minute` and `burst`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use super::Notifier;
use super::email::{EmailNotifier, EmailSettings, SmtpTls};
use super::http::{Endpoint, PagerDutyNotifier, SlackNotifier, WebhookNotifier, header_map};
use super::rate::RateLimit;

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// One `[receivers.NAME]` table, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ReceiverConfig {
    Email(EmailConfig),
    Slack(SlackConfig),
    Webhook(WebhookConfig),
    Pagerduty(PagerDutyConfig),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub to: Vec<String>,
    pub from: String,
    pub smtp_host: String,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "duration_text")]
    pub timeout: Duration,
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL (a secret: prefer `url_file`).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "duration_text")]
    pub timeout: Duration,
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A file whose trimmed content is sent as `Authorization: Bearer ...`.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "duration_text")]
    pub timeout: Duration,
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    #[serde(default = "default_pagerduty_url")]
    pub url: String,
    /// A file holding the integration's routing key.
    pub routing_key_file: PathBuf,
    /// `payload.source`.
    #[serde(default = "default_source")]
    pub source: String,
    #[serde(default = "default_timeout", with = "duration_text")]
    pub timeout: Duration,
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_tls() -> SmtpTls {
    SmtpTls::Starttls
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_rate() -> u32 {
    60
}
fn default_burst() -> u32 {
    10
}
fn default_pagerduty_url() -> String {
    PAGERDUTY_URL.to_string()
}
fn default_source() -> String {
    "canaryd".to_string()
}

use crate::rules::duration::serde_text as duration_text;

/// Why a receiver cannot be built; names the receiver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("receiver `{name}`: {problem}")]
pub struct ReceiverError {
    pub name: String,
    pub problem: String,
}

impl ReceiverConfig {
    /// `email`, `slack`, `webhook` or `pagerduty`.
    pub fn kind(&self) -> &'static str {
        match self {
            ReceiverConfig::Email(_) => "email",
            ReceiverConfig::Slack(_) => "slack",
            ReceiverConfig::Webhook(_) => "webhook",
            ReceiverConfig::Pagerduty(_) => "pagerduty",
        }
    }

    /// The rate limit of this receiver.
    pub fn rate_limit(&self) -> RateLimit {
        let (per_minute, burst) = match self {
            ReceiverConfig::Email(c) => (c.rate_per_minute, c.burst),
            ReceiverConfig::Slack(c) => (c.rate_per_minute, c.burst),
            ReceiverConfig::Webhook(c) => (c.rate_per_minute, c.burst),
            ReceiverConfig::Pagerduty(c) => (c.rate_per_minute, c.burst),
        };
        RateLimit { per_minute, burst }
    }

    fn timeout(&self) -> Duration {
        match self {
            ReceiverConfig::Email(c) => c.timeout,
            ReceiverConfig::Slack(c) => c.timeout,
            ReceiverConfig::Webhook(c) => c.timeout,
            ReceiverConfig::Pagerduty(c) => c.timeout,
        }
    }

    /// Every problem of this table, without touching any file (pure).
    pub fn validate(&self, name: &str) -> Vec<ReceiverError> {
        let mut problems = Vec::new();
        let mut problem = |p: String| {
            problems.push(ReceiverError {
                name: name.to_string(),
                problem: p,
            })
        };
        let rate = self.rate_limit();
        if rate.per_minute == 0 {
            problem("`rate_per_minute` must be at least 1".into());
        }
        if rate.burst == 0 {
            problem("`burst` must be at least 1".into());
        }
        if self.timeout().is_zero() {
            problem("`timeout` must be more than 0s".into());
        }
        match self {
            ReceiverConfig::Email(c) => {
                if c.to.is_empty() {
                    problem("`to` lists no address; e.g. to = [\"team@example.com\"]".into());
                }
                for address in c.to.iter().chain([&c.from]) {
                    if let Err(e) = address.parse::<Mailbox>() {
                        problem(format!("`{address}` is not an email address: {e}"));
                    }
                }
                if c.smtp_host.trim().is_empty() {
                    problem("`smtp_host` is empty".into());
                }
                if c.smtp_port == Some(0) {
                    problem("`smtp_port` must not be 0".into());
                }
                match (&c.username, &c.password_file) {
                    (Some(_), None) => {
                        problem("`username` is set but `password_file` is not".into())
                    }
                    (None, Some(_)) => {
                        problem("`password_file` is set but `username` is not".into())
                    }
                    _ => {}
                }
                if c.username.is_some() && c.tls == SmtpTls::None && !is_loopback(&c.smtp_host) {
                    problem(
                        "refusing to send the SMTP password in clear text to a remote host: \
                         set `tls = \"starttls\"` or `\"tls\"`"
                            .into(),
                    );
                }
            }
            ReceiverConfig::Slack(c) => match (&c.url, &c.url_file) {
                (Some(url), None) => {
                    if let Err(e) = check_url(url) {
                        problem(format!("`url`: {e}"));
                    }
                }
                (None, Some(_)) => {}
                (Some(_), Some(_)) => problem("set `url` or `url_file`, not both".into()),
                (None, None) => problem(
                    "needs the incoming-webhook URL: `url_file = \"/etc/canaryd/slack.url\"` \
                     (or `url`)"
                        .into(),
                ),
            },
            ReceiverConfig::Webhook(c) => {
                if let Err(e) = check_url(&c.url) {
                    problem(format!("`url`: {e}"));
                }
                if let Err(e) = header_map(&c.headers) {
                    problem(format!("`headers`: {e}"));
                }
            }
            ReceiverConfig::Pagerduty(c) => {
                if let Err(e) = check_url(&c.url) {
                    problem(format!("`url`: {e}"));
                }
                if c.source.trim().is_empty() {
                    problem("`source` is empty".into());
                }
            }
        }
        problems
    }

    /// Validates, reads the secret files and builds the notifier.
    pub fn build(&self, name: &str) -> Result<Arc<dyn Notifier>, Vec<ReceiverError>> {
        let problems = self.validate(name);
        if !problems.is_empty() {
            return Err(problems);
        }
        let fail = |problem: String| {
            vec![ReceiverError {
                name: name.to_string(),
                problem,
            }]
        };
        let timeout = self.timeout();
        let notifier: Arc<dyn Notifier> = match self {
            ReceiverConfig::Email(c) => {
                let parse = |a: &str| {
                    a.parse::<Mailbox>()
                        .map_err(|e| fail(format!("`{a}`: {e}")))
                };
                let credentials = match (&c.username, &c.password_file) {
                    (Some(user), Some(file)) => Some((
                        user.clone(),
                        read_secret(file, "password_file").map_err(&fail)?,
                    )),
                    _ => None,
                };
                let extra_roots = match &c.ca_file {
                    Some(file) => vec![std::fs::read(file).map_err(|e| {
                        fail(format!("cannot read `ca_file` {}: {e}", file.display()))
                    })?],
                    None => Vec::new(),
                };
                let settings = EmailSettings {
                    name: name.to_string(),
                    from: parse(&c.from)?,
                    to: c.to.iter().map(|a| parse(a)).collect::<Result<_, _>>()?,
                    host: c.smtp_host.clone(),
                    port: c.smtp_port.unwrap_or(c.tls.default_port()),
                    tls: c.tls,
                    credentials,
                    extra_roots,
                    timeout,
                };
                Arc::new(EmailNotifier::new(settings).map_err(&fail)?)
            }
            ReceiverConfig::Slack(c) => {
                let url = match (&c.url, &c.url_file) {
                    (Some(url), _) => url.clone(),
                    (None, Some(file)) => read_secret(file, "url_file").map_err(&fail)?,
                    (None, None) => return Err(fail("no URL".into())),
                };
                let url = check_url(&url).map_err(|e| fail(format!("`url_file`: {e}")))?;
                // The whole URL is the secret (Slack's token is its path).
                let path = url.path().to_string();
                let endpoint = Endpoint::new("slack", name, url, HeaderMap::new(), timeout)
                    .map_err(&fail)?
                    .hiding(path);
                Arc::new(SlackNotifier { endpoint })
            }
            ReceiverConfig::Webhook(c) => {
                let mut headers = header_map(&c.headers).map_err(&fail)?;
                if let Some(file) = &c.bearer_token_file {
                    let token = read_secret(file, "bearer_token_file").map_err(&fail)?;
                    let mut value =
                        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                            fail(format!(
                                "the token in {} is not a valid header value",
                                file.display()
                            ))
                        })?;
                    value.set_sensitive(true);
                    headers.insert(AUTHORIZATION, value);
                }
                let url = check_url(&c.url).map_err(|e| fail(format!("`url`: {e}")))?;
                let endpoint =
                    Endpoint::new("webhook", name, url, headers, timeout).map_err(&fail)?;
                Arc::new(WebhookNotifier { endpoint })
            }
            ReceiverConfig::Pagerduty(c) => {
                let routing_key =
                    read_secret(&c.routing_key_file, "routing_key_file").map_err(&fail)?;
                let url = check_url(&c.url).map_err(|e| fail(format!("`url`: {e}")))?;
                let endpoint = Endpoint::new("pagerduty", name, url, HeaderMap::new(), timeout)
                    .map_err(&fail)?
                    .hiding(routing_key.clone());
                Arc::new(PagerDutyNotifier {
                    endpoint,
                    routing_key,
                    source: c.source.clone(),
                })
            }
        };
        Ok(notifier)
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("the URL has no host".into()),
        other => Err(format!("scheme `{other}` is not http or https")),
    }
}

/// A secret file's trimmed content; the error names the file, never the content.
fn read_secret(path: &Path, key: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{key}` {}: {e}", path.display()))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(format!("`{key}` {} is empty", path.display()));
    }
    Ok(secret)
}

/// One built receiver: its notifier and rate limit.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub notifier: Arc<dyn Notifier>,
    pub rate: RateLimit,
}

/// The built receivers, by name. Build a new set on reload and hand it to
/// [`DispatcherHandle::set_receivers`](super::DispatcherHandle::set_receivers).
#[derive(Debug, Clone, Default)]
pub struct Receivers {
    by_name: HashMap<String, Receiver>,
}

impl Receivers {
    /// Builds every receiver; on failure returns every problem of every receiver.
    pub fn build(
        configs: &BTreeMap<String, ReceiverConfig>,
    ) -> Result<Receivers, Vec<ReceiverError>> {
        let mut by_name = HashMap::new();
        let mut problems = Vec::new();
        for (name, config) in configs {
            match config.build(name) {
                Ok(notifier) => {
                    by_name.insert(
                        name.clone(),
                        Receiver {
                            notifier,
                            rate: config.rate_limit(),
                        },
                    );
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok(Receivers { by_name })
        } else {
            Err(problems)
        }
    }

    /// Adds (or replaces) a receiver built elsewhere: a test's [`super::MemoryNotifier`].
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        notifier: Arc<dyn Notifier>,
        rate: RateLimit,
    ) {
        self.by_name
            .insert(name.into(), Receiver { notifier, rate });
    }

    pub fn get(&self, name: &str) -> Option<&Receiver> {
        self.by_name.get(name)
    }

    /// The receivers' names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }
}
