//! The rollout: its plan and the pure state machine that walks it.
//!
//! This module owns the phases a rollout goes through and the only function that changes them,
//! `step(state, event, now) -> (state, actions)`. It performs no I/O and reads no clock: the runner
//! passes `now` in and carries out the returned actions (set a weight, notify, record an audit entry).
//!
//! - [`plan`]: the validated plan (stages, triggers, targeting), built by `rules`.
//! - [`event`]: what the machine is told (analyses, ticks, commands) and what it asks for (actions).
//! - [`machine`]: the state, its phases and [`step`].

pub mod event;
pub mod machine;
pub mod plan;

pub use event::*;
pub use machine::*;
pub use plan::*;
