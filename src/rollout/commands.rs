//! The machine's steps for commands: start, approve, promote, pause, resume, roll back, abort,
//! emergency stop and its clearing, and what a command meets during an emergency. Part of
//! [`super`]'s `Machine`, like `runs`; pure like the rest.

use super::{Machine, Phase, ResumeTo, StepError};
use crate::rollout::event::{AuditAction, Command, TriggeredBy};
use crate::rollout::plan::{EventKind, Severity};

impl Machine<'_> {
    pub(super) fn command(
        &mut self,
        command: Command,
        by: TriggeredBy,
        reason: &str,
    ) -> Result<(), StepError> {
        if let Phase::EmergencyStopped { stage, .. } = self.next.phase {
            return self.command_during_emergency(command, stage, by, reason);
        }
        match command {
            Command::Start => self.start(by, reason),
            Command::Approve => match self.next.phase {
                Phase::WaitingApproval { stage } => {
                    let why = format!("approved by {by}: {reason}");
                    self.advance_past(stage, AuditAction::Approved, why, by)
                }
                _ => Err(self.not_allowed(command)),
            },
            Command::Pause => match self.next.phase {
                Phase::Progressing { stage } => {
                    self.pause(stage, ResumeTo::Progressing, EventKind::Paused, reason, by);
                    Ok(())
                }
                Phase::WaitingApproval { stage } => {
                    self.pause(
                        stage,
                        ResumeTo::WaitingApproval,
                        EventKind::Paused,
                        reason,
                        by,
                    );
                    Ok(())
                }
                _ => Err(self.not_allowed(command)),
            },
            Command::Resume => match self.next.phase {
                Phase::Paused {
                    stage, resume_to, ..
                } => self.resume(stage, resume_to, by, reason),
                _ => Err(self.not_allowed(command)),
            },
            Command::Promote => match self.next.phase {
                Phase::Progressing { stage } | Phase::WaitingApproval { stage } => {
                    let why = format!("promoted by {by}: {reason}");
                    self.advance_past(stage, AuditAction::Promoted, why, by)
                }
                _ => Err(self.not_allowed(command)),
            },
            Command::Rollback => match self.next.phase {
                Phase::Progressing { stage }
                | Phase::WaitingApproval { stage }
                | Phase::Paused { stage, .. } => {
                    self.rollback(stage, reason.to_string(), by);
                    Ok(())
                }
                // A finished rollout sits one past the last stage.
                Phase::Succeeded => {
                    self.rollback(self.plan.stages.len(), reason.to_string(), by);
                    Ok(())
                }
                _ => Err(self.not_allowed(command)),
            },
            Command::Abort => match self.next.phase {
                Phase::Pending
                | Phase::Progressing { .. }
                | Phase::WaitingApproval { .. }
                | Phase::Paused { .. } => {
                    let from = self.next.weight;
                    let why = format!("aborted by {by}: {reason}");
                    self.transition(Phase::Aborted, 0, AuditAction::Aborted, why, by);
                    self.notify(
                        EventKind::Aborted,
                        Severity::Warning,
                        format!("Rollout aborted at {from}%; canary set to 0%: {reason}"),
                    );
                    Ok(())
                }
                _ => Err(self.not_allowed(command)),
            },
            Command::EmergencyStop => {
                self.emergency_stop(by, reason);
                Ok(())
            }
            Command::ClearEmergency => Err(self.not_allowed(command)),
        }
    }

    fn command_during_emergency(
        &mut self,
        command: Command,
        stage: usize,
        by: TriggeredBy,
        reason: &str,
    ) -> Result<(), StepError> {
        match command {
            Command::ClearEmergency => {
                if !matches!(by, TriggeredBy::Operator(_)) {
                    return Err(StepError::NeedsOperator { by });
                }
                let phase = Phase::Paused {
                    stage,
                    resume_to: ResumeTo::Progressing,
                    reason: format!("emergency stop cleared: {reason}"),
                };
                let why = format!("emergency stop cleared by {by}: {reason}");
                let w = self.next.weight;
                self.transition(phase, w, AuditAction::EmergencyCleared, why, by);
                self.notify(
                    EventKind::EmergencyCleared,
                    Severity::Info,
                    format!(
                        "Emergency stop cleared: {reason}. The rollout stays paused at {w}% \
                         until resumed."
                    ),
                );
            }
            // The stop's 0% never reached the actuator: a second stop tries again.
            Command::EmergencyStop if self.next.weight != 0 => {
                let why = format!("emergency stop retried by {by}: {reason}");
                let phase = self.next.phase.clone();
                let from = self.next.weight;
                self.transition(phase, 0, AuditAction::EmergencyStopped, why, by);
                self.notify(
                    EventKind::EmergencyStop,
                    Severity::Critical,
                    format!("EMERGENCY STOP retried: canary set from {from}% to 0%: {reason}"),
                );
            }
            other => {
                let why = format!(
                    "`{other}` from {by} ignored: an emergency stop is in force ({reason})"
                );
                self.record(AuditAction::IgnoredDuringEmergency, why, by);
            }
        }
        Ok(())
    }

    fn start(&mut self, by: TriggeredBy, reason: &str) -> Result<(), StepError> {
        let retry = match self.next.phase {
            Phase::Pending => false,
            Phase::RolledBack { .. } => true,
            _ => return Err(self.not_allowed(Command::Start)),
        };
        let weight = self.stage(0).map_err(|_| StepError::EmptyPlan)?.weight;
        self.reset_evidence();
        let label = self.stage_label(0);
        let (action, why) = if retry {
            (AuditAction::Retried, format!("retried by {by}: {reason}"))
        } else {
            (AuditAction::Started, format!("started by {by}: {reason}"))
        };
        self.transition(Phase::Progressing { stage: 0 }, weight, action, why, by);
        if retry {
            self.notify(
                EventKind::RolledBack,
                Severity::Info,
                format!("Resolved: the rolled-back rollout is being retried ({reason})."),
            );
        }
        self.notify(
            EventKind::Started,
            Severity::Info,
            format!("Rollout started at {label}."),
        );
        Ok(())
    }

    fn resume(
        &mut self,
        stage: usize,
        resume_to: ResumeTo,
        by: TriggeredBy,
        reason: &str,
    ) -> Result<(), StepError> {
        let weight = self.stage(stage)?.weight;
        self.reset_evidence();
        let phase = match resume_to {
            ResumeTo::Progressing => Phase::Progressing { stage },
            ResumeTo::WaitingApproval => Phase::WaitingApproval { stage },
        };
        let label = self.stage_label(stage);
        let why = format!("resumed by {by}: {reason}");
        self.transition(phase, weight, AuditAction::Resumed, why, by);
        self.notify(
            EventKind::Resumed,
            Severity::Info,
            format!("Rollout resumed at {label}: {reason}"),
        );
        Ok(())
    }

    fn emergency_stop(&mut self, by: TriggeredBy, reason: &str) {
        if self.next.finished() {
            // A finished run keeps its weight: 100% is the released version, a rolled-back or
            // aborted canary already has what the rollback left it. Stopping would resurrect it
            // as a paused run that `resume` could move.
            let why = format!(
                "emergency stop by {by}: {reason}; the run is {} at {}%, left as it is",
                self.next.phase.name(),
                self.next.weight
            );
            self.record(AuditAction::EmergencyStopped, why, by);
            return;
        }
        let stage = match &self.next.phase {
            Phase::Progressing { stage }
            | Phase::WaitingApproval { stage }
            | Phase::Paused { stage, .. }
            | Phase::EmergencyStopped { stage, .. } => *stage,
            Phase::Pending | Phase::Succeeded | Phase::RolledBack { .. } | Phase::Aborted => 0,
        };
        let from = self.next.weight;
        let phase = Phase::EmergencyStopped {
            stage,
            reason: reason.to_string(),
        };
        self.next.passes = 0;
        self.next.inconclusive_streak = 0;
        self.next.failing.clear();
        self.next.holding.clear();
        let why = format!("emergency stop by {by}: {reason}");
        self.transition(phase, 0, AuditAction::EmergencyStopped, why, by);
        self.notify(
            EventKind::EmergencyStop,
            Severity::Critical,
            format!("EMERGENCY STOP: canary set from {from}% to 0%: {reason}"),
        );
    }
}
