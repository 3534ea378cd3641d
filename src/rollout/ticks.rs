//! The machine's steps in time: on a tick, a progressing stage advances once its minimum
//! duration and its passes are reached, or pauses once its maximum duration is. Part of
//! [`super`]'s `Machine`; pure like the rest.

use std::fmt::Write as _;

use super::{Machine, Phase, ResumeTo, StepError, elapsed, human};
use crate::rollout::event::{AuditAction, TriggeredBy};
use crate::rollout::plan::{EventKind, Severity};

impl Machine<'_> {
    pub(super) fn tick(&mut self) -> Result<(), StepError> {
        if let Phase::Progressing { stage } = self.next.phase {
            self.try_advance(stage)?;
        }
        Ok(())
    }

    /// In Progressing at `stage`: advance (or wait for approval) when the evidence and the
    /// minimum duration are in; pause when the maximum duration has passed without them.
    pub(super) fn try_advance(&mut self, stage: usize) -> Result<(), StepError> {
        let s = self.stage(stage)?.clone();
        let started = *self.next.stage_started_at.get_or_insert(self.now);
        let ran = elapsed(started, self.now);
        if self.next.passes >= s.required_passes && ran >= s.min_duration && !self.next.held() {
            let why = format!(
                "{} passing analyses of {} required and {} of {} minimum",
                self.next.passes,
                s.required_passes,
                human(ran),
                human(s.min_duration)
            );
            if s.approval {
                let label = self.stage_label(stage);
                let w = self.next.weight;
                self.transition(
                    Phase::WaitingApproval { stage },
                    w,
                    AuditAction::WaitingApproval,
                    why,
                    TriggeredBy::Schedule,
                );
                self.notify(
                    EventKind::WaitingApproval,
                    Severity::Info,
                    format!("{label} passed; waiting for approval to advance."),
                );
                return Ok(());
            }
            return self.advance_past(
                stage,
                AuditAction::StageAdvanced,
                why,
                TriggeredBy::Schedule,
            );
        }
        if let Some(max) = s.max_duration
            && ran >= max
        {
            let mut reason = format!(
                "stage ran {} (max {}) with {} of {} required passing analyses",
                human(ran),
                human(max),
                self.next.passes,
                s.required_passes
            );
            if !self.next.holding.is_empty() {
                let _ = write!(
                    reason,
                    "; not passing in its last analysis: {}",
                    self.next.holding.join(", ")
                );
            }
            self.pause(
                stage,
                ResumeTo::Progressing,
                EventKind::Paused,
                &reason,
                TriggeredBy::Schedule,
            );
        }
        Ok(())
    }
}
