//! The daemon as its users meet it: the operator API over HTTP (`api_http`), the status pages in
//! headless Chromium (`web_page`), rule files edited, broken and removed under a running daemon
//! (`rule_files`), and the binary under systemd's unit and notify protocol (`systemd_unit`).
//!
//! One binary for all of them (each test binary links the whole crate); run one part with
//! `cargo test --test daemon web_page`. The remaining daemon tests (`tests/daemon_*.rs`,
//! `tests/e2e_*.rs`) are still binaries of their own and can join here as modules.

#[path = "../api_support/mod.rs"]
mod api_support;
#[path = "../support/chromium.rs"]
mod chromium;

mod api_http;
mod rule_files;
mod systemd_unit;
mod web_page;
