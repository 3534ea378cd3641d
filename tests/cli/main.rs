//! The `canaryd` binary's commands run as a user runs them: `judge` on files (`judge_cli`),
//! `check` on rule files and configs (`check_cli`, `check_bounds`) and its agreement with what
//! `serve` loads (`check_agrees`), and the control commands against an embedded daemon
//! (`cli_control`) and what they say when something is wrong (`cli_faces`).
//!
//! One binary for all of them (each test binary links the whole crate); run one part with
//! `cargo test --test cli check_cli`.

#[path = "../api_support/mod.rs"]
mod api_support;

mod check_agrees;
mod check_bounds;
mod check_cli;
mod cli_control;
mod cli_faces;
mod export_cli;
mod judge_cli;
mod replay_cli;
mod replay_support;
mod replay_windows;
mod shipped_checkout;
mod shipped_search;
