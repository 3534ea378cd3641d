//! What each rollout publishes about itself for `/metrics` and `GET /v1/rollouts`: a small,
//! cloneable summary of its state, replaced after every committed step. Plain data.

use serde::Serialize;

use crate::rollout::{Phase, RolloutState};
use crate::rules::RolloutRule;

/// One rollout as the HTTP API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutStatus {
    pub name: String,
    /// `pending`, `progressing`, `waiting-approval`, `paused`, `rolled-back`, `succeeded`,
    /// `aborted` or `emergency-stopped`.
    pub phase: &'static str,
    /// Index into the plan's stages, from 0.
    pub stage: Option<usize>,
    pub stage_name: Option<String>,
    pub weight: u8,
    /// The run (1, 2, ...) and the canary version it takes through the plan.
    pub run: u32,
    pub canary: String,
}

/// The kebab-case name of a phase, as serde writes it.
pub fn phase_name(phase: &Phase) -> &'static str {
    match phase {
        Phase::Pending => "pending",
        Phase::Progressing { .. } => "progressing",
        Phase::WaitingApproval { .. } => "waiting-approval",
        Phase::Paused { .. } => "paused",
        Phase::RolledBack { .. } => "rolled-back",
        Phase::Succeeded => "succeeded",
        Phase::Aborted => "aborted",
        Phase::EmergencyStopped { .. } => "emergency-stopped",
    }
}

impl RolloutStatus {
    pub fn of(name: &str, state: &RolloutState, rule: Option<&RolloutRule>) -> Self {
        let stage = state.phase.stage();
        RolloutStatus {
            name: name.to_string(),
            phase: phase_name(&state.phase),
            stage,
            stage_name: stage
                .and_then(|s| rule.and_then(|r| r.plan.stages.get(s)))
                .map(|s| s.name.clone()),
            weight: state.weight,
            run: state.run.number,
            canary: match (state.run.canary.as_str(), rule) {
                ("", Some(rule)) => rule.sides.canary.clone(),
                (canary, _) => canary.to_string(),
            },
        }
    }
}
