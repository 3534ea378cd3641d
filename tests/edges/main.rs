//! Each edge of the daemon against the real thing it talks to: the example alerting rules for
//! canaryd against `promtool` (`alert_rules`), actuators against webhook
//! receivers, scripts and files (`actuators`), email against a real SMTP server (`notify_email`),
//! webhook notifications and a SIGKILLed dispatcher (`notify_http`), incidents as a
//! PagerDuty-shaped endpoint sees them (`notify_incidents`), the Prometheus source
//! against a real Prometheus and misbehaving servers (`prometheus_source`), and the store under
//! SIGKILL and a full file system (`store_crash`).
//!
//! One binary for all of them (each test binary links the whole crate); run one part with
//! `cargo test --test edges notify_http`. The tests that need a Prometheus share one per binary
//! where they only read ([`prometheus_support::shared`]).

#[path = "../support/prometheus.rs"]
mod prometheus_support;
#[path = "../support/smtp.rs"]
mod smtp;

mod actuators;
mod alert_rules;
mod notify_email;
mod notify_http;
mod notify_incidents;
mod prometheus_source;
mod replay_history;
mod store_crash;

/// The full name the test harness gives the test `name` of the module at `module_path` (pass
/// `module_path!()`), such as `notify_http::dispatcher_child`: what a test that re-executes this
/// binary in child mode selects with `--exact`.
pub fn harness_name(module_path: &str, name: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate, module)) => format!("{module}::{name}"),
        None => name.to_string(),
    }
}
