//! canaryd: automated canary analysis. It compares a new version (the canary) with the old one
//! (the baseline) stage by stage, and advances, holds, pauses or rolls back on the evidence.
//!
//! # Layout
//! - [`stats`]: statistical tests exact to SciPy (pure).
//! - [`judge`]: one verdict per check with its evidence, and weighted analysis scores (pure).
//! - [`rules`]: rule files: parsing, validation with file:line:column errors (pure but for reading files).
//! - [`rollout`]: the plan and the rollout state machine `step(state, event, now)` (pure).
//! - [`assign`]: sticky hash-bucket assignment of keys to baseline or canary (pure).
//! - [`backoff`]: the exponential backoff every retry loop shares (pure).
//! - [`markup`]: HTML escaped by construction, for the status pages and HTML email (pure).
//! - [`clock`]: the time the daemon reads: the system clock, or tokio's (pausable) time in tests.
//! - [`source`]: metric backends behind the `MetricSource` trait: Prometheus, and in-memory.
//! - [`store`]: SQLite state: rollouts, analyses, audit trail, actuator intents, outbox.
//! - [`actuator`]: what sets the traffic weight: builtin assignment endpoint, webhook, command, file.
//! - [`notify`]: notifications: routing, content, email/Slack/webhook/PagerDuty, outbox delivery.
//! - [`tokens`]: the API token file (parsed with line numbers, re-read on change) and the hashing.
//! - [`config`]: the daemon config `canaryd.toml`: parse with positions, env overrides, validate.
//! - [`daemon`]: `canaryd serve`: scheduler, per-rollout runners, reload, emergency stop, HTTP.
//! - [`api`]: the operator HTTP API under `/v1` (reads, commands, emergency stop) and its tokens.
//! - [`web`]: the status page: server-rendered HTML with inline SVG charts, no JavaScript.
//! - [`systemd`]: the sd_notify protocol (READY, RELOADING, STOPPING, WATCHDOG, STATUS).
//! - [`logging`]: the tracing subscriber (text or JSON).
//! - [`sim`]: a simulated service (baseline and canary) for `canaryd demo` and end-to-end tests.
//! - [`cli`]: the command-line front end; `main` is thin glue around it.
//!
//! # Layers
//! Imports point one way: faces (`api`, `web`, `cli`) -> `daemon` -> edges (`config`, `source`,
//! `store`, `actuator`, `notify`, `tokens`, `systemd`, `logging`, `sim`) -> the pure core (`stats`,
//! `judge`, `rules`, `rollout`, `assign`, `backoff`). The faces see the daemon through
//! [`daemon::Control`]; `tests/layering.rs` checks the arrows (`docs/architecture.md`).

pub mod actuator;
pub mod api;
pub mod assign;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod judge;
pub mod logging;
pub mod markup;
pub mod notify;
pub mod rollout;
pub mod rules;
pub mod sim;
pub mod source;
pub mod stats;
pub mod store;
pub mod systemd;
pub mod tokens;
pub mod web;
