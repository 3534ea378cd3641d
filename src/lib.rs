//! canaryd: automated canary analysis. It compares a new version (the canary) with the old one
//! (the baseline) stage by stage, and advances, holds, pauses or rolls back on the evidence.
//!
//! # Layout
//! Four layers, and every import points down them (or sideways inside one, never in a circle):
//! **faces -> daemon -> edges -> core**. `tests/core/layering.rs` checks the arrows
//! (`docs/architecture.md`).
//!
//! Faces (what people and programs talk to; they see the daemon only through
//! [`daemon::Control`]):
//! - [`api`]: the operator HTTP API under `/v1` (reads, commands, emergency stop).
//! - [`web`]: the status page: server-rendered HTML with inline SVG charts, no JavaScript.
//! - [`cli`]: the command-line front end and the composition root (`cli::serve::routes`);
//!   `main` is thin glue around it.
//!
//! The daemon layer (imports edges and core, never a face):
//! - [`daemon`]: `canaryd serve`: scheduler, per-rollout runners, reload, emergency stop, HTTP.
//! - [`replay`]: `canaryd replay`: the daemon's analyses and the state machine over recorded or
//!   historical data, on simulated time.
//!
//! Edges (the outside world; they import the core and each other's types, never the daemon):
//! - [`config`]: the daemon config `canaryd.toml`: parse with positions, env overrides, validate.
//! - [`source`]: metric backends behind the `MetricSource` trait: Prometheus, in-memory, and
//!   recorded CSV files (for replay).
//! - [`store`]: SQLite state: rollouts, analyses, audit trail, actuator intents, outbox.
//! - [`actuator`]: what sets the traffic weight: builtin assignment endpoint, webhook, command, file.
//! - [`notify`]: notifications: routing, content, email/Slack/webhook/PagerDuty, outbox delivery.
//! - [`tokens`]: the API token file (parsed with line numbers, re-read on change) and the hashing.
//! - [`clock`]: the time the daemon reads: the system clock, or tokio's (pausable) time in tests.
//! - [`systemd`]: the sd_notify protocol (READY, RELOADING, STOPPING, WATCHDOG, STATUS).
//! - [`logging`]: the tracing subscriber (text or JSON).
//! - [`sim`]: a simulated service (baseline and canary) for `canaryd demo` and end-to-end tests.
//!
//! The core (pure: no I/O, no clock; imports only the core below it):
//! - [`rules`]: rule files: parsing, validation with file:line:column errors (pure but for reading files).
//! - [`rollout`]: the plan and the rollout state machine `step(state, event, now)`.
//! - [`judge`]: one verdict per check with its evidence, and weighted analysis scores.
//! - [`stats`]: statistical tests exact to SciPy, and estimators checked against statsmodels.
//! - [`assign`]: sticky hash-bucket assignment of keys to baseline or canary.
//! - [`backoff`]: the exponential backoff every retry loop shares.
//! - [`markup`]: HTML escaped by construction, for the status pages and HTML email.
//! - [`redact`]: credentials masked in URLs and free text before they are recorded or shown.
//! - [`readout`]: effects and limits as people read them (`+0.28 pp`, `tolerance 10%`).

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
pub mod readout;
pub mod redact;
pub mod replay;
pub mod rollout;
pub mod rules;
pub mod sim;
pub mod source;
pub mod stats;
pub mod store;
pub mod systemd;
pub mod tokens;
pub mod web;
