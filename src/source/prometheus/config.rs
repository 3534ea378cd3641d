//! The settings of a Prometheus source as the daemon's config holds them
//! (`[sources.NAME] kind = "prometheus"`): their serde shape with its defaults, and the checks of
//! the URL, the timeout and the retries that [`PrometheusSource::new`](super::PrometheusSource::new)
//! makes before building the HTTP client. No I/O.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::source::{SourceError, duration_text};

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
/// username = "canaryd"                 # optional basic auth, with ...
/// password_file = "/run/secrets/prom-pass"        # ... its password, read on every request
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
    /// The user of HTTP basic auth; its password comes from `password_file`. Use these rather
    /// than `user:password@` in the URL, which would put the password in the config file.
    #[serde(default)]
    pub username: Option<String>,
    /// A file whose trimmed content is the basic-auth password of `username`. Read on every
    /// request, so a rotated password is picked up; never logged.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
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
            username: None,
            password_file: None,
        }
    }
}

impl PrometheusConfig {
    /// The base URL, once the URL, the timeout and the retries are known to be usable; else
    /// [`SourceError::Config`] naming the source `name` and the problem.
    pub(super) fn checked_url(&self, name: &str) -> Result<reqwest::Url, SourceError> {
        let problem = |detail: String| SourceError::Config {
            source_name: name.to_string(),
            detail,
        };
        // Quoted with its credentials masked: a problem is printed and logged.
        let shown = crate::redact::url(&self.url);
        let url = reqwest::Url::parse(self.url.trim())
            .map_err(|e| problem(format!("url `{shown}` is not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(problem(format!(
                "url `{shown}` must start with http:// or https://"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(problem(format!(
                "url `{shown}` must not have a query or a fragment"
            )));
        }
        match (&self.username, &self.password_file) {
            (Some(_), None) => {
                return Err(problem("username is set but password_file is not".into()));
            }
            (None, Some(_)) => {
                return Err(problem("password_file is set but username is not".into()));
            }
            (Some(_), Some(_)) if self.bearer_token_file.is_some() => {
                return Err(problem(
                    "username and password_file (basic auth) conflict with bearer_token_file; \
                     set only one"
                        .into(),
                ));
            }
            (Some(_), Some(_)) if !url.username().is_empty() => {
                return Err(problem(
                    "username and password_file conflict with the user in the url; set only one"
                        .into(),
                ));
            }
            _ => {}
        }
        if self.timeout.is_zero() {
            return Err(problem("timeout must be more than zero".to_string()));
        }
        if self.retries > MAX_RETRIES {
            return Err(problem(format!(
                "retries is {}; at most {MAX_RETRIES} are allowed",
                self.retries
            )));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn basic_auth_from_a_file_needs_both_halves_and_no_other_credentials() {
        let with = |text: &str| {
            let config: PrometheusConfig = toml::from_str(text).unwrap();
            config
                .checked_url("p")
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            with("url = \"http://p\"\nusername = \"u\"\npassword_file = \"/run/pass\""),
            Ok(())
        );
        let cases = [
            ("username = \"u\"", "password_file is not"),
            ("password_file = \"/run/pass\"", "username is not"),
            (
                "username = \"u\"\npassword_file = \"/p\"\nbearer_token_file = \"/t\"",
                "conflict with bearer_token_file",
            ),
        ];
        for (extra, says) in cases {
            let e = with(&format!("url = \"http://p\"\n{extra}")).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
        }
        let e =
            with("url = \"http://x:y@p\"\nusername = \"u\"\npassword_file = \"/p\"").unwrap_err();
        assert!(e.contains("the user in the url"), "{e}");
        assert!(!e.contains("x:y"), "{e}");
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
}
