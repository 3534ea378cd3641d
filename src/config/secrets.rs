//! Warnings about credentials written into the config's URLs (a `user:password@`, a `?token=`):
//! they are masked wherever canaryd shows a URL, but they still sit in a file that is often
//! world-readable and kept in version control. Each warning names the key and the setting that
//! reads the secret from a file instead. Pure, but for [`warnings`] reading the config again
//! for positions.

use std::collections::HashMap;
use std::path::Path;

use super::{Config, ConfigProblem, SourceConfig, validate};
use crate::actuator::ActuatorConfig;
use crate::notify::ReceiverConfig;
use crate::redact::has_credentials;
use crate::rules::Problem;

impl Config {
    /// One problem per URL setting that carries credentials, with where to put them instead.
    pub fn url_credentials(&self) -> Vec<ConfigProblem> {
        let mut found = Vec::new();
        let mut check = |key: [&str; 3], url: &str, instead: &str| {
            if has_credentials(url) {
                found.push(ConfigProblem {
                    key: key.iter().map(|k| k.to_string()).collect(),
                    message: format!(
                        "`{}` carries credentials in the URL (masked when shown, but kept in \
                         this file)",
                        key.join(".")
                    ),
                    hint: Some(instead.to_string()),
                });
            }
        };
        for (name, source) in &self.sources {
            let SourceConfig::Prometheus(c) = source;
            check(
                ["sources", name, "url"],
                &c.url,
                "drop them from the URL: `username` with `password_file` for basic auth, or \
                 `bearer_token_file` for a token",
            );
        }
        for (name, actuator) in &self.actuators {
            if let ActuatorConfig::Webhook(c) = actuator {
                check(
                    ["actuators", name, "url"],
                    &c.url,
                    "put a token in a file named by `bearer_token_file` and drop it from the URL",
                );
            }
        }
        for (name, receiver) in &self.receivers {
            let (url, instead) = match receiver {
                ReceiverConfig::Webhook(c) => (
                    c.url.as_str(),
                    "put a token in a file named by `bearer_token_file` and drop it from the URL",
                ),
                ReceiverConfig::Slack(c) => match &c.url {
                    Some(url) => (
                        url.as_str(),
                        "the whole Slack URL is a secret: put it in a file named by `url_file`",
                    ),
                    None => continue,
                },
                ReceiverConfig::Pagerduty(c) => (
                    c.url.as_str(),
                    "the routing key belongs in `routing_key_file`; drop credentials from the URL",
                ),
                ReceiverConfig::Email(_) => continue,
            };
            check(["receivers", name, "url"], url, instead);
        }
        found
    }
}

/// [`Config::url_credentials`] located in the config file at `path` (as `canaryd check`
/// prints them); none when the file cannot be read again.
pub fn warnings(path: &Path, config: &Config) -> Vec<Problem> {
    let found = config.url_credentials();
    if found.is_empty() {
        return Vec::new();
    }
    let Ok(text) = crate::rules::read_bounded(path) else {
        return Vec::new();
    };
    validate::locate(path, &text, &HashMap::new(), found)
}
