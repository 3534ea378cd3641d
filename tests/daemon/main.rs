//! The daemon as its users meet it: the operator API over HTTP (`api_http`), how queries'
//! answers are read (`absent_series`), the status pages in
//! headless Chromium (`web_page`) and what on-call reads there and in email (`web_story`), rule files edited, broken and removed under a running daemon
//! (`rule_files`), the binary under systemd's unit and notify protocol (`systemd_unit`), a whole
//! rollout against a real Prometheus (`daemon_rollout`), the real binary's start, reload, stop
//! and crash (`daemon_binary`), faults (`daemon_faults`) and the wrong actions it must never
//! take (`daemon_safety`), the database bounded and the signals alerted on (`store_signals`), the embedded ones on controlled time.
//!
//! One binary for all of them (each test binary links the whole crate); run one part with
//! `cargo test --test daemon web_page`. End-to-end scenarios are in `tests/e2e/`.

#[path = "../api_support/mod.rs"]
mod api_support;
#[path = "../support/chromium.rs"]
mod chromium;

#[path = "../support/prometheus.rs"]
mod prometheus_support;
#[path = "../support/smtp.rs"]
mod smtp;

mod absent_series;
mod api_http;
mod daemon_binary;
mod daemon_faults;
mod daemon_rollout;
mod daemon_safety;
mod incidents;
mod kept_answers;
mod rule_files;
mod secrets;
mod store_signals;
mod systemd_unit;
mod web_page;
mod web_story;
