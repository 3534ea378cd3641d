//! The machine's steps about the outside world: a weight change the actuator could not apply
//! puts the recorded weight back to the one still applied and stops for a person. Part of
//! [`super`]'s `Machine`; pure like the rest.

use super::{Machine, Phase, ResumeTo, StepError};
use crate::rollout::event::{Action, AuditAction, TriggeredBy};
use crate::rollout::plan::{EventKind, Severity};

impl Machine<'_> {
    /// The actuator could not move the canary from `previous`% to `attempted`%: record the
    /// weight still applied and stop for a person (see the module documentation).
    pub(super) fn actuation_failed(
        &mut self,
        attempted: u8,
        previous: u8,
        error: &str,
    ) -> Result<(), StepError> {
        if self.next.weight != attempted {
            return Err(StepError::StaleActuation {
                attempted,
                weight: self.next.weight,
            });
        }
        let problem = format!(
            "the actuator could not set the canary from {previous}% to {attempted}%: {error}"
        );
        let why = format!("{problem}; the canary stays at {previous}%");
        let by = TriggeredBy::Schedule;
        if let Phase::EmergencyStopped { .. } = self.next.phase {
            // Still an emergency stop (deaf to everything else), at the weight really applied.
            self.put_back(previous, self.next.phase.clone(), why, by);
            self.notify(
                EventKind::ActuatorFailed,
                Severity::Critical,
                format!(
                    "EMERGENCY STOP NOT APPLIED: {problem}. The canary still has {previous}% \
                     of traffic; fix the actuator and send the emergency stop again."
                ),
            );
            return Ok(());
        }
        // Where the rollout was before the failed change: the stage it was moving within, or
        // for a change out of the stages (succeed, roll back, abort) the stage still applied.
        let at = match &self.next.phase {
            Phase::Progressing { stage } => Some((*stage, ResumeTo::Progressing)),
            Phase::WaitingApproval { stage } => Some((*stage, ResumeTo::WaitingApproval)),
            Phase::Paused {
                stage, resume_to, ..
            } => Some((*stage, *resume_to)),
            Phase::Succeeded
            | Phase::RolledBack { .. }
            | Phase::Aborted
            | Phase::Pending
            | Phase::EmergencyStopped { .. } => self
                .plan
                .stages
                .iter()
                .rposition(|s| s.weight == previous)
                .or((previous == 0).then_some(0))
                .map(|stage| (stage, ResumeTo::Progressing)),
        };
        match at {
            Some((stage, resume_to)) => {
                let phase = Phase::Paused {
                    stage,
                    resume_to,
                    reason: why.clone(),
                };
                let label = self.stage_label(stage);
                self.put_back(previous, phase, format!("paused for review: {why}"), by);
                self.notify(
                    EventKind::ActuatorFailed,
                    Severity::Critical,
                    format!(
                        "Rollout paused at {label} with the canary still at {previous}%: \
                         {problem}. Fix the actuator, then resume (or roll back)."
                    ),
                );
            }
            // Only a succeeded rollout (at 100%, no stage's weight) gets here.
            None => {
                self.put_back(previous, Phase::Succeeded, why, by);
                self.notify(
                    EventKind::ActuatorFailed,
                    Severity::Critical,
                    format!(
                        "The rollout stays succeeded with the canary still at {previous}%: \
                         {problem}. Fix the actuator, then roll back again."
                    ),
                );
            }
        }
        Ok(())
    }

    /// Record `weight` (the one still applied) and `phase` without asking the actuator for
    /// anything: the audit says the change failed.
    fn put_back(&mut self, weight: u8, phase: Phase, reason: String, by: TriggeredBy) {
        let attempted = self.next.weight;
        self.next.phase = phase;
        self.next.weight = weight;
        self.next.passes = 0;
        self.next.inconclusive_streak = 0;
        self.next.failing.clear();
        self.next.holding.clear();
        self.actions.push(Action::Audit {
            action: AuditAction::ActuationFailed,
            previous_weight: attempted,
            new_weight: weight,
            reason,
            triggered_by: by,
        });
    }
}
