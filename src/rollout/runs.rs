//! The machine's steps about runs and the world around the evidence: a new run (a canary
//! version from the first stage), a changed rule, a failed backend. Part of [`super`]'s
//! `Machine`; kept apart so the core transitions stay readable. Pure like the rest.

use super::{Machine, Phase, ResumeTo, StepError};
use crate::rollout::event::{AuditAction, TriggeredBy};
use crate::rollout::plan::{EventKind, Severity, StartPolicy};

impl Machine<'_> {
    /// An analysis could not run: count it and hold. The first of a series is audited (the
    /// daemon alerts when the count reaches its limit); the rest only update the stored count.
    pub(super) fn backend_error(&mut self, error: &str) {
        if !matches!(
            self.next.phase,
            Phase::Progressing { .. } | Phase::WaitingApproval { .. }
        ) {
            return;
        }
        self.next.backend_errors = self.next.backend_errors.saturating_add(1);
        if self.next.backend_errors == 1 {
            let why = format!(
                "an analysis failed on the metric backend; holding at {}% until it answers: {error}",
                self.next.weight
            );
            self.record(AuditAction::BackendHeld, why, TriggeredBy::Schedule);
        }
    }

    /// Begin a run for `canary` at the first stage (see `Event::NewRun`).
    pub(super) fn new_run(
        &mut self,
        canary: &str,
        by: TriggeredBy,
        reason: &str,
        emergency: bool,
    ) -> Result<(), StepError> {
        let in_progress = matches!(
            self.next.phase,
            Phase::Progressing { .. } | Phase::WaitingApproval { .. } | Phase::Paused { .. }
        );
        if in_progress && canary == self.next.run.canary {
            return Err(StepError::AlreadyRunning {
                run: self.next.run.number,
                canary: canary.to_string(),
            });
        }
        let weight = self.stage(0).map_err(|_| StepError::EmptyPlan)?.weight;
        let before = self.next.run.clone();
        let was = self.next.phase.clone();
        // A rollout never started takes its first run now; any other begins the next one.
        if was != Phase::Pending {
            self.next.run.number = before.number.saturating_add(1);
        }
        self.next.run.canary = canary.to_string();
        if self.next.run.rule_canary.is_empty() {
            self.next.run.rule_canary = canary.to_string();
        }
        self.reset_evidence();
        let n = self.next.run.number;
        let mut why = format!("run {n} (canary `{canary}`) started by {by}: {reason}");
        if was != Phase::Pending {
            let ended = match was {
                Phase::Succeeded | Phase::RolledBack { .. } | Phase::Aborted => {
                    format!("ended {}", was.name())
                }
                _ => format!("superseded while {}", was.name()),
            };
            why.push_str(&format!(
                "; run {} (canary `{}`) {ended}",
                before.number, before.canary
            ));
        }
        let label = self.stage_label(0);
        let stopped = emergency || matches!(was, Phase::EmergencyStopped { .. });
        if stopped {
            let phase = Phase::EmergencyStopped {
                stage: 0,
                reason: "an emergency stop is in force".to_string(),
            };
            why.push_str("; held at 0% by the emergency stop in force");
            self.transition(phase, 0, AuditAction::RunStarted, why, by);
            self.notify(
                EventKind::Started,
                Severity::Info,
                format!(
                    "Run {n} (canary `{canary}`) registered at {label}, held at 0% while the \
                     emergency stop is in force."
                ),
            );
        } else {
            let phase = Phase::Progressing { stage: 0 };
            self.transition(phase, weight, AuditAction::RunStarted, why, by);
            self.notify(
                EventKind::Started,
                Severity::Info,
                format!("Run {n} (canary `{canary}`) started at {label}."),
            );
        }
        Ok(())
    }

    /// The rule was loaded with another fingerprint or canary: record it in the history, and
    /// start a new run when the canary changed and the plan starts runs on its own.
    pub(super) fn rule_changed(
        &mut self,
        fingerprint: &str,
        previous: &str,
        canary: &str,
        emergency: bool,
    ) -> Result<(), StepError> {
        let seen = self.next.run.rule_canary.clone();
        // States stored before runs existed know no version: adopt the rule's, silently.
        if seen.is_empty() {
            self.next.run.rule_canary = canary.to_string();
            if self.next.run.canary.is_empty() {
                self.next.run.canary = canary.to_string();
            }
        }
        let canary_changed = !seen.is_empty() && seen != canary;
        if fingerprint == previous && !canary_changed {
            return Ok(());
        }
        self.next.run.rule_canary = canary.to_string();
        let mut why = format!("rule file changed (fingerprint {previous} -> {fingerprint})");
        if canary_changed {
            why.push_str(&format!("; canary `{seen}` -> `{canary}`"));
        }
        let starts =
            canary_changed && canary != self.next.run.canary && self.next.phase != Phase::Pending;
        match (starts, self.plan.start) {
            (true, StartPolicy::Auto) => why.push_str("; a new run starts"),
            (true, StartPolicy::Manual) => {
                why.push_str("; `start = \"manual\"`: the new version waits for `canaryd start`")
            }
            (false, _) => {}
        }
        self.record(AuditAction::RuleChanged, why, TriggeredBy::Schedule);
        if starts && self.plan.start == StartPolicy::Auto {
            let reason = format!("the rule file's canary changed to `{canary}`");
            self.new_run(canary, TriggeredBy::Schedule, &reason, emergency)?;
        }
        Ok(())
    }

    /// The rule is gone: pause a run in progress, record it for any other.
    pub(super) fn rule_removed(&mut self, what: &str) {
        let reason = format!("its rule is no longer loaded: {what}");
        let by = TriggeredBy::Schedule;
        match self.next.phase {
            Phase::Progressing { stage } => {
                self.pause(stage, ResumeTo::Progressing, EventKind::Paused, &reason, by)
            }
            Phase::WaitingApproval { stage } => self.pause(
                stage,
                ResumeTo::WaitingApproval,
                EventKind::Paused,
                &reason,
                by,
            ),
            _ => {
                let why = format!("{reason}; the rollout stays {}", self.next.phase.name());
                self.record(AuditAction::RuleChanged, why, by);
            }
        }
    }
}
