//! canaryd: automated canary analysis. It compares a new version (the canary) with the old one
//! (the baseline) stage by stage, and advances, holds, pauses or rolls back on the evidence.
//!
//! # Layout
//! - [`stats`]: statistical tests exact to SciPy (pure).
//! - [`judge`]: one verdict per check with its evidence, and weighted analysis scores (pure).
//! - [`rules`]: rule files: parsing, validation with file:line:column errors (pure but for reading files).
//! - [`rollout`]: the plan and the rollout state machine `step(state, event, now)` (pure).
//! - [`assign`]: sticky hash-bucket assignment of keys to baseline or canary (pure).
//! - [`cli`]: the command-line front end; `main` is thin glue around it.

pub mod actuator;
pub mod assign;
pub mod cli;
pub mod judge;
pub mod rollout;
pub mod rules;
pub mod source;
pub mod stats;
pub mod store;
