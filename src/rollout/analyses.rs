//! The machine's steps for analyses and triggers: an analysis report updates the stage's
//! evidence (passes, failing checks, inconclusive streak), then the rule's triggers decide
//! whether to hold, pause, roll back, or only notify (and what a dry run would have done). Part
//! of [`super`]'s `Machine`; pure like the rest.

use super::{FailingCheck, Machine, Phase, ResumeTo, StepError, elapsed, human};
use crate::judge::InconclusiveCause;
use crate::rollout::event::{
    Action, AnalysisOutcome, AnalysisReport, AuditAction, CheckOutcome, CheckVerdict, TriggeredBy,
};
use crate::rollout::plan::{EventKind, NoDataPolicy, Severity, Sustain, Trigger, TriggerAction};
use std::collections::BTreeMap;
use std::fmt::Write as _;

impl Machine<'_> {
    pub(super) fn analysis(&mut self, report: &AnalysisReport) -> Result<(), StepError> {
        // The backend answers again.
        self.next.backend_errors = 0;
        let (stage, waiting) = match self.next.phase {
            Phase::Progressing { stage } => (stage, false),
            Phase::WaitingApproval { stage } => (stage, true),
            Phase::EmergencyStopped { .. } => {
                let why = format!(
                    "analysis ({:?}) ignored: an emergency stop is in force",
                    report.overall
                );
                self.record(
                    AuditAction::IgnoredDuringEmergency,
                    why,
                    TriggeredBy::Schedule,
                );
                return Ok(());
            }
            ref other => {
                let why = format!(
                    "analysis ({:?}) recorded, not counted: the rollout is {}",
                    report.overall,
                    other.name()
                );
                self.record(AuditAction::AnalysisRecorded, why, TriggeredBy::Schedule);
                return Ok(());
            }
        };
        self.stage(stage)?;
        let started = *self.next.stage_started_at.get_or_insert(self.now);
        let ran = elapsed(started, self.now);
        if ran < self.plan.warmup {
            let why = format!(
                "analysis ({:?}) recorded, not counted: warm-up, {} of {}",
                report.overall,
                human(ran),
                human(self.plan.warmup)
            );
            self.record(AuditAction::AnalysisRecorded, why, TriggeredBy::Schedule);
            return Ok(());
        }

        self.update_failing(report);
        let verdict = self.evaluate_triggers(report);
        // A fresh analysis at this weight: the stored evidence may be used again.
        self.next.awaiting_analysis = false;

        // Count the evidence.
        let with_data = !report.checks.is_empty() && !report.checks.iter().any(lacks_data);
        let passed = report.overall == AnalysisOutcome::Pass && with_data;
        // A dry-run check records its verdicts and acts on none: it neither holds the stage nor
        // ends the accruing stage's exemption from the inconclusive streak.
        let plan = self.plan;
        let acting = |c: &&CheckOutcome| {
            !plan
                .triggers
                .iter()
                .any(|t| t.dry_run && *t.check == *c.check)
        };
        self.next.holding = report
            .checks
            .iter()
            .filter(acting)
            .filter(|c| !passed && holds(c))
            .map(|c| c.check.clone())
            .collect();
        let accruing = accruing_only(report.checks.iter().filter(acting));
        let mut summary = format!("analysis {:?}", report.overall);
        match report.overall {
            AnalysisOutcome::Pass if with_data => {
                self.next.passes += 1;
                self.next.inconclusive_streak = 0;
            }
            AnalysisOutcome::Fail => {
                self.next.passes = 0;
                self.next.inconclusive_streak = 0;
            }
            AnalysisOutcome::Pass | AnalysisOutcome::Marginal | AnalysisOutcome::Inconclusive => {
                if report.overall == AnalysisOutcome::Pass {
                    summary.push_str(" without data for every check, held");
                }
                self.next.passes = 0;
                // A staged check's evidence still accruing holds the stage: the anytime bound
                // decides at a later analysis, and waiting for it is not a streak to pause on.
                if !accruing {
                    self.next.inconclusive_streak += 1;
                }
            }
        }
        let required = self.stage(stage)?.required_passes;
        let _ = write!(
            summary,
            "; {} of {} passes, {} inconclusive in a row",
            self.next.passes, required, self.next.inconclusive_streak
        );
        if !verdict.failing.is_empty() {
            let _ = write!(summary, "; failing: {}", verdict.failing.join(", "));
        }
        self.record(
            AuditAction::AnalysisRecorded,
            summary,
            TriggeredBy::Schedule,
        );
        self.actions.extend(verdict.side_effects);

        let resume_to = if waiting {
            ResumeTo::WaitingApproval
        } else {
            ResumeTo::Progressing
        };
        if let Some(reason) = verdict.rollback {
            self.rollback(stage, reason, TriggeredBy::AutoRollback);
        } else if let Some(reason) = verdict.pause {
            self.pause(
                stage,
                resume_to,
                EventKind::CheckFailed,
                &reason,
                TriggeredBy::Schedule,
            );
        } else if report.overall == AnalysisOutcome::Fail && !verdict.sustain_pending {
            let reason = match verdict.failing.is_empty() {
                true => "the analysis failed overall".to_string(),
                false => format!(
                    "the analysis failed overall ({})",
                    verdict.failing.join(", ")
                ),
            };
            self.pause(
                stage,
                resume_to,
                EventKind::Paused,
                &reason,
                TriggeredBy::Schedule,
            );
        } else if self.plan.max_inconclusive > 0
            && self.next.inconclusive_streak >= self.plan.max_inconclusive
        {
            let reason = format!(
                "{} inconclusive or marginal analyses in a row (max {})",
                self.next.inconclusive_streak, self.plan.max_inconclusive
            );
            self.pause(
                stage,
                resume_to,
                EventKind::InconclusiveStreak,
                &reason,
                TriggeredBy::Schedule,
            );
        } else if !waiting {
            self.try_advance(stage)?;
        }
        Ok(())
    }

    /// Whether `outcome` counts as failing for the failure streaks: a Fail, or "no data" for a
    /// check with a trigger that treats no data as failure.
    fn is_failing(&self, outcome: &CheckOutcome) -> bool {
        outcome.verdict == CheckVerdict::Fail
            || self.plan.triggers.iter().any(|t| {
                *t.check == *outcome.check
                    && t.no_data == NoDataPolicy::Fail
                    && self.lacks_data_for(outcome, t)
            })
    }

    /// Whether `outcome` is a lack of data for `trigger`'s no-data policy: no data, or too few
    /// points once the stage has run the check's window after its warm-up. Before that, too few
    /// points is the canary's evidence still arriving (a freshly deployed canary has minutes of
    /// points in a 30-minute window); the check stays inconclusive and the stage holds.
    fn lacks_data_for(&self, outcome: &CheckOutcome, trigger: &Trigger) -> bool {
        let arriving = outcome.verdict
            == (CheckVerdict::Inconclusive {
                cause: InconclusiveCause::TooFew,
            })
            && self.next.stage_started_at.is_some_and(|started| {
                elapsed(started, self.now) < self.plan.warmup.saturating_add(trigger.window)
            });
        lacks_data(outcome) && !arriving
    }

    fn update_failing(&mut self, report: &AnalysisReport) {
        let mut failing = BTreeMap::new();
        for outcome in report.checks.iter().filter(|c| self.is_failing(c)) {
            let entry = match self.next.failing.get(&outcome.check) {
                Some(prev) => FailingCheck {
                    since: prev.since,
                    count: prev.count.saturating_add(1),
                    fired: prev.fired.clone(),
                },
                None => FailingCheck {
                    since: self.now,
                    count: 1,
                    fired: Vec::new(),
                },
            };
            failing.insert(outcome.check.clone(), entry);
        }
        self.next.failing = failing;
    }

    fn evaluate_triggers(&mut self, report: &AnalysisReport) -> TriggerVerdict {
        let mut v = TriggerVerdict {
            failing: self.next.failing.keys().cloned().collect(),
            ..TriggerVerdict::default()
        };
        let plan = self.plan;
        for (index, trigger) in plan.triggers.iter().enumerate() {
            let Some(outcome) = report.checks.iter().find(|c| *c.check == *trigger.check) else {
                continue;
            };
            let name = &trigger.check;
            let no_data = self.lacks_data_for(outcome, trigger);
            if no_data && trigger.no_data == NoDataPolicy::Pause {
                let reason = format!("check `{name}` has no data");
                if trigger.dry_run {
                    v.side_effects.push(dry_run_audit(
                        self.next.weight,
                        format!("dry run: would have paused: {reason}"),
                    ));
                } else if v.pause.is_none() {
                    v.pause = Some(reason);
                }
                continue;
            }
            let fails = outcome.verdict == CheckVerdict::Fail
                || (no_data && trigger.no_data == NoDataPolicy::Fail);
            let Some(streak) = self.next.failing.get_mut(&**name) else {
                continue;
            };
            if !fails {
                continue;
            }
            let met = outcome.settled
                || match trigger.sustain {
                    Sustain::Immediately => true,
                    Sustain::For(d) => elapsed(streak.since, self.now) >= d,
                    Sustain::Consecutive(n) => streak.count >= n,
                };
            let what = match trigger.sustain {
                _ if outcome.settled => format!("check `{name}` failing on its stage's evidence"),
                Sustain::Immediately => format!("check `{name}` failing"),
                Sustain::For(d) => format!(
                    "check `{name}` failing for {} (sustain {})",
                    human(elapsed(streak.since, self.now)),
                    human(d)
                ),
                Sustain::Consecutive(n) => format!(
                    "check `{name}` failing in {} consecutive analyses (sustain {n})",
                    streak.count
                ),
            };
            if !met {
                if !trigger.dry_run && trigger.action != TriggerAction::Notify {
                    v.sustain_pending = true;
                }
                continue;
            }
            let speaks_once = trigger.dry_run || trigger.action == TriggerAction::Notify;
            if speaks_once {
                if streak.fired.contains(&index) {
                    continue;
                }
                streak.fired.push(index);
            }
            let w = self.next.weight;
            match (trigger.dry_run, trigger.action) {
                (true, action) => {
                    let would = match action {
                        TriggerAction::Rollback => "rolled back",
                        TriggerAction::Pause => "paused for review",
                        TriggerAction::Notify => "notified",
                    };
                    let msg = format!("dry run: would have {would}: {what}");
                    v.side_effects.push(Action::Notify {
                        event: EventKind::CheckFailed,
                        severity: Severity::Info,
                        message: msg.clone(),
                    });
                    v.side_effects.push(dry_run_audit(w, msg));
                }
                (false, TriggerAction::Notify) => {
                    v.side_effects.push(Action::Notify {
                        event: EventKind::CheckFailed,
                        severity: Severity::Warning,
                        message: format!("{what}; nothing changed"),
                    });
                    v.side_effects.push(Action::Audit {
                        action: AuditAction::CheckFailed,
                        previous_weight: w,
                        new_weight: w,
                        reason: what,
                        triggered_by: TriggeredBy::Schedule,
                    });
                }
                (false, TriggerAction::Pause) => {
                    v.pause.get_or_insert(what);
                }
                (false, TriggerAction::Rollback) => {
                    v.rollback.get_or_insert(what);
                }
            }
        }
        v
    }
}

/// Whether a check had no data to judge, for the no-data policies and for holding a stage on
/// missing evidence: inconclusive because a side had no usable points (or events) or fewer than
/// the check's minimum. Decided on the judge's cause; every cause is named, so a new one must
/// be placed here before the crate compiles. A query that returned several series is not a lack
/// of data (the series are there, the query selects too many): the `no_data` policy does not
/// apply, and the check counts towards the inconclusive streak until the query is fixed. Nor is
/// evidence too thin to show the tolerance (`NotShown`): the data is there and more of it
/// decides, so the stage holds and the streak counts.
fn lacks_data(outcome: &CheckOutcome) -> bool {
    match outcome.verdict {
        CheckVerdict::Pass | CheckVerdict::Fail => false,
        CheckVerdict::Inconclusive { cause } => match cause {
            InconclusiveCause::NoData | InconclusiveCause::TooFew => true,
            InconclusiveCause::NonFinite
            | InconclusiveCause::TooMany
            | InconclusiveCause::NotApplicable
            | InconclusiveCause::Setting
            | InconclusiveCause::SeveralSeries
            | InconclusiveCause::NotShown
            | InconclusiveCause::Accruing
            | InconclusiveCause::Untestable => false,
        },
    }
}

/// Whether a check that did not pass holds its stage: anything but a pass or a check that
/// does not apply (a relative check at 100%, with no baseline left).
fn holds(outcome: &CheckOutcome) -> bool {
    !matches!(
        outcome.verdict,
        CheckVerdict::Pass
            | CheckVerdict::Inconclusive {
                cause: InconclusiveCause::NotApplicable
            }
    )
}

/// Whether `checks` (those that act) wait only for a stage's evidence still accruing: some are
/// accruing and every other passes or does not apply.
fn accruing_only<'a>(checks: impl Iterator<Item = &'a CheckOutcome> + Clone) -> bool {
    let cause = |c: &CheckOutcome| match c.verdict {
        CheckVerdict::Inconclusive { cause } => Some(cause),
        CheckVerdict::Pass | CheckVerdict::Fail => None,
    };
    checks
        .clone()
        .any(|c| cause(c) == Some(InconclusiveCause::Accruing))
        && checks.into_iter().all(|c| {
            c.verdict == CheckVerdict::Pass
                || matches!(
                    cause(c),
                    Some(InconclusiveCause::Accruing | InconclusiveCause::NotApplicable)
                )
        })
}

fn dry_run_audit(weight: u8, reason: String) -> Action {
    Action::Audit {
        action: AuditAction::DryRun,
        previous_weight: weight,
        new_weight: weight,
        reason,
        triggered_by: TriggeredBy::Schedule,
    }
}

/// What the triggers made of one analysis.
#[derive(Default)]
struct TriggerVerdict {
    /// Names of the checks failing now.
    failing: Vec<String>,
    /// A rollback trigger fired, with the reason.
    rollback: Option<String>,
    /// A pause trigger (or a no-data pause) fired, with the reason.
    pause: Option<String>,
    /// A failing check has a rollback or pause trigger still waiting for its sustain.
    sustain_pending: bool,
    /// Notify-only and dry-run notifications and audit entries.
    side_effects: Vec<Action>,
}
