//! The daemon's notification receivers, built from `[receivers.*]`. A receiver that cannot be
//! built (a secret file missing or unreadable) is not dropped: it stands in as unavailable, so
//! its messages wait in the outbox and are retried until a reload builds it, instead of being
//! lost or keeping the daemon from starting. Every reload ([`rebuild`], from `reload`) builds
//! the whole set again from the config, re-reading the secret files, and swaps it into the
//! dispatcher, so a stand-in whose file the operator fixed starts delivering. It owns no
//! delivery logic; that is `notify`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Shared;
use crate::notify::{Notification, Notifier};
use crate::notify::{NotifyError, ReceiverConfig, Receivers, SendFuture};

/// A configured receiver that could not be built; every send fails with a retryable error
/// that says why and what to do.
#[derive(Debug)]
struct Unavailable {
    name: String,
    kind: &'static str,
    problem: String,
}

impl Notifier for Unavailable {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn send<'a>(&'a self, _n: &'a Notification, _key: &'a str) -> SendFuture<'a> {
        Box::pin(async move {
            Err(NotifyError::Connect {
                target: format!("receiver `{}`", self.name),
                detail: format!(
                    "not available: {}; fix it and reload (systemctl reload canaryd)",
                    self.problem
                ),
            })
        })
    }
}

/// Build every receiver; the problems of those that could not be built are returned beside a
/// set in which they stand in as unavailable.
pub fn build(configs: &BTreeMap<String, ReceiverConfig>) -> (Receivers, Vec<String>) {
    let mut receivers = Receivers::default();
    let mut problems = Vec::new();
    for (name, config) in configs {
        match config.build(name) {
            Ok(notifier) => receivers.insert(name.clone(), notifier, config.rate_limit()),
            Err(errors) => {
                let problem = errors
                    .iter()
                    .map(|e| e.problem.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                problems.push(format!("receiver `{name}`: {problem}"));
                let stand_in = Unavailable {
                    name: name.clone(),
                    kind: config.kind(),
                    problem,
                };
                receivers.insert(name.clone(), Arc::new(stand_in), config.rate_limit());
            }
        }
    }
    (receivers, problems)
}

/// Build the receivers again from the config (re-reading their secret files) and swap them into
/// the dispatcher; the ones that still cannot be built keep standing in as unavailable and are
/// logged. Returns their problems. The dispatcher retries waiting messages on their schedule.
pub async fn rebuild(shared: &Shared) -> Vec<String> {
    let configs = shared.config.receivers.clone();
    let built = tokio::task::spawn_blocking(move || build(&configs)).await;
    let (receivers, problems) = match built {
        Ok(built) => built,
        Err(e) => {
            let problem = format!("the receiver rebuild failed: {e}");
            tracing::error!("{problem}; the running receivers stay in use.");
            return vec![problem];
        }
    };
    let total = receivers.names().len();
    shared.notify.set_receivers(receivers);
    for problem in &problems {
        tracing::error!(
            "{problem}; it still stands in as unavailable, its notifications wait in the outbox."
        );
    }
    tracing::info!(
        receivers = total,
        unavailable = problems.len(),
        "Notification receivers rebuilt from the config (secret files re-read). Sources, \
         actuators and the listen address change only with a restart."
    );
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_receiver_with_a_missing_secret_stands_in_and_fails_retryably() {
        let configs: BTreeMap<String, ReceiverConfig> = toml::from_str(
            r#"
            [pager]
            kind = "pagerduty"
            url = "http://127.0.0.1:9/enqueue"
            routing_key_file = "/nonexistent/canaryd-test/pagerduty.key"
            "#,
        )
        .expect("valid receiver table");
        let (receivers, problems) = build(&configs);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("/nonexistent/canaryd-test/pagerduty.key"));
        let pager = receivers.get("pager").expect("stand-in registered");
        let n: Notification = serde_json::from_value(serde_json::json!({
            "rollout": "r", "team": "t", "event": "paused", "severity": "warning",
            "incident": "trigger", "group_key": "g", "at": "2026-01-01T00:00:00Z",
            "message": "m", "phase": "paused", "stage": null, "weight": 10, "checks": [],
            "status_url": null, "commands": []
        }))
        .expect("notification");
        let err = pager.notifier.send(&n, "k").await.expect_err("unavailable");
        assert!(err.retryable());
        assert!(err.to_string().contains("reload"));
    }
}
