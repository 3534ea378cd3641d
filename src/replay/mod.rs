//! `canaryd replay`: a rollout decided again over recorded or historical data, on simulated time,
//! as the daemon would have decided it.
//!
//! It owns the simulated-time loop ([`replay`]) and nothing it could reuse: the state machine is
//! the pure `rollout::step`, every analysis is the daemon's own `daemon::analysis::analyse`
//! (the same queries over the same window and step, the same judge, Holm's correction and
//! scoring), and when analyses and ticks happen is the runner's own timing (`first_delay`,
//! `following`, `tick_due`, the tick margins). Only the clock is simulated: it jumps from one
//! analysis or tick to the next, so a rollout of hours replays in milliseconds. The data come
//! from any [`MetricSource`]: recorded CSV files (`data`: one directory, two files per check,
//! read into a `source::RecordedSource`) or the rule's Prometheus over a past span. It stores
//! nothing, calls no actuator (every weight change is taken as applied) and sends nothing;
//! approval gates stop the replay unless [`Options::approve`] approves them at once, and a
//! pause stops it (a person would have to look). The benchmark of whole rollouts drives
//! [`replay_observed`] in-process, which also tells a simulated service each weight the rollout
//! sets, so the service's traffic can follow it.

pub mod data;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::daemon::analysis::{EvidenceSpan, analyse_over};
use crate::daemon::runner::{TICK, TICK_MARGIN, first_delay, following, tick_due};
use crate::daemon::status::phase_name;
use crate::rollout::{
    Action, AnalysisReport, AuditAction, CheckVerdict, Command, Event, Phase, RolloutState,
    StepError, TriggeredBy, step,
};
use crate::rules::RolloutRule;
use crate::source::{MetricSource, SourceError};

pub use data::{DataError, RecordedData, load};

/// The most analyses one replay runs: past it the replay stops with an error rather than run on
/// (a recording spanning years at a 10 s interval would otherwise take hours).
pub const MAX_ANALYSES: usize = 200_000;
/// Queries in flight at once during one analysis (the daemon's default is 16).
const PERMITS: usize = 16;

/// What to replay.
#[derive(Debug, Clone)]
pub struct Options {
    /// When the run starts (the daemon would have started it then).
    pub start: DateTime<Utc>,
    /// When the data end: nothing is analysed after this.
    pub end: DateTime<Utc>,
    /// Approve every approval gate as soon as the rollout waits at it.
    pub approve: bool,
    /// Which evidence each analysis judges.
    pub judging: Judging,
}

/// Which evidence each analysis judges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Judging {
    /// Every check over its own window ending at the analysis, each analysis on its own: the
    /// judge before issue 19, kept to compare against (the whole-rollout benchmark).
    FixedWindow,
    /// What the daemon does: relative and error-rate checks over their stage since its warm-up,
    /// with anytime-valid bounds at the stage's share of α, the other checks over their windows
    /// cut at the stage's start (`daemon::analysis::EvidenceSpan::Stage`).
    #[default]
    Staged,
}

/// A replayed rollout: where it ended, how many analyses it took, and each decision.
#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    /// The phase it ended in: `succeeded`, `rolled-back`, `paused`, `waiting-approval`, or
    /// `progressing` when the data ended first.
    pub phase: &'static str,
    /// Analyses run.
    pub analyses: usize,
    /// Every decision, in order.
    pub decisions: Vec<Decision>,
    /// The state it ended in (the phase's reason, the weight).
    #[serde(skip)]
    pub state: RolloutState,
    /// Every analysis, in order.
    #[serde(skip)]
    pub log: Vec<AnalysisLine>,
    /// When the replay stopped (the last analysis or decision, or the end of the data).
    #[serde(skip)]
    pub stopped_at: DateTime<Utc>,
}

/// One decision of the state machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub time: DateTime<Utc>,
    /// What was decided: `run-started`, `stage-advanced`, `waiting-approval`, `approved`,
    /// `succeeded`, `paused`, `rolled-back`, `check-failed`, `dry-run`, ...
    pub action: AuditAction,
    /// The stage it was decided in, or moved to (its name).
    pub stage: Option<String>,
    /// The canary's weight after it.
    pub weight: u8,
    /// The checks that caused it: for a rollback, a pause or a failed check, the checks failing
    /// in the analysis that decided it (for a pause on missing or inconclusive evidence, the
    /// checks without a verdict); none for decisions made by passes and the clock.
    pub checks: Vec<String>,
    /// The machine's own sentence for it.
    #[serde(skip)]
    pub reason: String,
}

/// One analysis: when, at which stage and weight, and what the judge said.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisLine {
    pub time: DateTime<Utc>,
    pub stage: Option<String>,
    pub weight: u8,
    pub report: AnalysisReport,
}

/// Why a replay could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("the replay would end ({end}) before it starts ({start})")]
    Range {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    #[error("the analysis at {at} could not read its data: {source}")]
    Source {
        at: DateTime<Utc>,
        source: SourceError,
    },
    #[error(
        "the rollout was still {phase} after {MAX_ANALYSES} analyses (at {at}); replay a \
         shorter span (a later --start, an earlier --to)"
    )]
    TooLong {
        phase: &'static str,
        at: DateTime<Utc>,
    },
    #[error("the rollout refused a step at {at}: {source}")]
    Machine {
        at: DateTime<Utc>,
        source: StepError,
    },
}

/// Replay `rule`'s rollout over `source` from `options.start` to `options.end`: start a run,
/// then analyse and tick on the rule's schedule, each analysis judged at its time on what
/// `source` answers for the check's window, until the rollout finishes, pauses, waits for an
/// approval it is not given, or the data end.
pub async fn replay(
    rule: &RolloutRule,
    source: Arc<dyn MetricSource>,
    options: &Options,
) -> Result<Replay, ReplayError> {
    replay_observed(rule, source, options, &mut |_, _| {}).await
}

/// [`replay`], telling `on_weight` of every weight the rollout sets, at the simulated time it
/// sets it (where the daemon would call its actuator), before anything later is analysed: for a
/// simulated service whose traffic follows the rollout, as the whole-rollout benchmark's does.
pub async fn replay_observed(
    rule: &RolloutRule,
    source: Arc<dyn MetricSource>,
    options: &Options,
    on_weight: &mut (dyn FnMut(DateTime<Utc>, u8) + Send),
) -> Result<Replay, ReplayError> {
    let (start, end) = (options.start, options.end);
    if end < start {
        return Err(ReplayError::Range { start, end });
    }
    let mut sim = Sim {
        rule,
        state: RolloutState::new(),
        decisions: Vec::new(),
        on_weight,
    };
    sim.apply(Event::DaemonStarted, start, None)?;
    let run = Event::NewRun {
        canary: rule.sides.canary.clone(),
        by: TriggeredBy::Schedule,
        reason: "replay".to_string(),
        emergency: false,
    };
    sim.apply(run, start, None)?;
    // The runner's schedule counts in tokio instants: the replay's start is `base`.
    let base = Instant::now();
    let to_instant = |t: DateTime<Utc>| base + (t - start).to_std().unwrap_or_default();
    let to_time =
        |i: Instant| start + chrono::Duration::from_std(i.duration_since(base)).unwrap_or_default();
    let permits = Arc::new(Semaphore::new(PERMITS));
    let mut log = Vec::new();
    let mut now = start;
    let mut next_analysis = start + chrono_of(first_delay(&rule.name, &rule.schedule, start));
    let mut last_tick: Option<DateTime<Utc>> = None;
    // The answers the stage's analyses keep, as the daemon keeps them in its store.
    let mut kept = Vec::new();
    loop {
        match sim.state.phase {
            Phase::Progressing { .. } => {}
            Phase::WaitingApproval { .. } if options.approve => {
                let approve = Event::command(
                    Command::Approve,
                    TriggeredBy::Operator("replay --approve".into()),
                    "approved by replay --approve",
                );
                sim.apply(approve, now, None)?;
                continue;
            }
            _ => break,
        }
        let tick_at = tick_due(&sim.state, &rule.plan, now).map(|due| {
            let at = now + chrono_of(due + TICK_MARGIN);
            last_tick.map_or(at, |last| at.max(last + chrono_of(TICK)))
        });
        let wake = tick_at.map_or(next_analysis, |t| t.min(next_analysis));
        if wake > end {
            now = end;
            break;
        }
        now = wake;
        if next_analysis <= now {
            if log.len() >= MAX_ANALYSES {
                let phase = phase_name(&sim.state.phase);
                return Err(ReplayError::TooLong { phase, at: now });
            }
            let weight = sim.state.weight;
            let span = match options.judging {
                Judging::FixedWindow => EvidenceSpan::Window,
                Judging::Staged => EvidenceSpan::of_rollout(rule, &sim.state, now),
            };
            let source = Arc::clone(&source);
            let permits = Arc::clone(&permits);
            let analysed = analyse_over(rule, source, permits, now, weight, span, &kept)
                .await
                .map_err(|source| ReplayError::Source { at: now, source })?;
            if let Some(now_kept) = analysed.kept {
                kept = now_kept;
            }
            log.push(AnalysisLine {
                time: now,
                stage: sim.stage_name(&sim.state),
                weight,
                report: analysed.report.clone(),
            });
            let report = analysed.report.clone();
            sim.apply(Event::Analysis(analysed.report), now, Some(&report))?;
            let next = following(
                to_instant(next_analysis),
                &rule.schedule,
                to_instant(now),
                now,
            );
            next_analysis = to_time(next);
        } else {
            last_tick = Some(now);
            sim.apply(Event::Tick, now, None)?;
        }
    }
    Ok(Replay {
        phase: phase_name(&sim.state.phase),
        analyses: log.len(),
        decisions: sim.decisions,
        state: sim.state,
        log,
        stopped_at: now,
    })
}

fn chrono_of(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The simulated rollout: its state, the decisions so far, and who hears of weight changes.
struct Sim<'a, 'w> {
    rule: &'a RolloutRule,
    state: RolloutState,
    decisions: Vec<Decision>,
    on_weight: &'w mut (dyn FnMut(DateTime<Utc>, u8) + Send),
}

impl Sim<'_, '_> {
    /// Step the machine on `event` at `now` (the actuator always succeeds) and record its
    /// decisions; `report` is the analysis the event carries, which names the checks behind them.
    fn apply(
        &mut self,
        event: Event,
        now: DateTime<Utc>,
        report: Option<&AnalysisReport>,
    ) -> Result<(), ReplayError> {
        let (next, actions) = step(&self.state, &self.rule.plan, event, now)
            .map_err(|source| ReplayError::Machine { at: now, source })?;
        let stage = self
            .stage_name(&next)
            .or_else(|| self.stage_name(&self.state));
        for action in actions {
            let Action::Audit {
                action,
                new_weight,
                reason,
                ..
            } = action
            else {
                continue;
            };
            if action == AuditAction::AnalysisRecorded {
                continue;
            }
            let checks = match (action, report) {
                (
                    AuditAction::RolledBack
                    | AuditAction::Paused
                    | AuditAction::CheckFailed
                    | AuditAction::DryRun,
                    Some(report),
                ) => causes(report),
                _ => Vec::new(),
            };
            self.decisions.push(Decision {
                time: now,
                action,
                stage: stage.clone(),
                weight: new_weight,
                checks,
                reason,
            });
        }
        if next.weight != self.state.weight {
            (self.on_weight)(now, next.weight);
        }
        self.state = next;
        Ok(())
    }

    fn stage_name(&self, state: &RolloutState) -> Option<String> {
        let stage = state.phase.stage()?;
        self.rule.plan.stages.get(stage).map(|s| s.name.clone())
    }
}

/// The checks behind a decision an analysis caused: those failing in it, or when none failed
/// (a pause for missing or inconclusive evidence), those without a verdict (not counting the
/// checks that do not apply at 100%).
fn causes(report: &AnalysisReport) -> Vec<String> {
    let failing: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.verdict == CheckVerdict::Fail)
        .map(|c| c.check.clone())
        .collect();
    if !failing.is_empty() {
        return failing;
    }
    report
        .checks
        .iter()
        .filter(|c| {
            // Not applicable, or a stage's evidence still accruing: not why anything stopped.
            matches!(c.verdict, CheckVerdict::Inconclusive { cause }
                if !matches!(cause, crate::judge::InconclusiveCause::NotApplicable
                    | crate::judge::InconclusiveCause::Accruing))
        })
        .map(|c| c.check.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::Point;
    use crate::rules::{KnownNames, Side, parse_rule};
    use crate::source::RecordedSource;

    /// 2026-03-01T10:00:00Z.
    const START: i64 = 1_772_359_200;

    /// A simulated world hears of every weight the rollout sets, when it sets it: the weights
    /// and times it is told are those of the decisions that changed the weight, in order.
    #[tokio::test]
    async fn the_observer_is_told_each_weight_the_rollout_sets_when_it_sets_it() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay/web.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let rule = parse_rule(&path, &text, &KnownNames::any()).unwrap();
        let mut source = RecordedSource::new(rule.source.clone());
        for check in &rule.checks {
            for side in [Side::Baseline, Side::Canary] {
                for part in 0..2 {
                    let query = check.render_part(&rule.sides, side, part);
                    let points = (START - 1800..=START + 3600)
                        .step_by(60)
                        .enumerate()
                        .map(|(k, t)| Point {
                            t: t as f64,
                            v: match (query.contains("errors"), query.contains("requests")) {
                                (true, _) => 5.0,
                                (_, true) => 1000.0,
                                _ => 0.2 + (k % 5) as f64 * 0.001,
                            },
                        })
                        .collect();
                    source.insert(query, points);
                }
            }
        }
        let options = Options {
            start: DateTime::from_timestamp(START, 0).unwrap(),
            end: DateTime::from_timestamp(START + 3600, 0).unwrap(),
            approve: true,
            judging: Judging::FixedWindow,
        };
        let mut told = Vec::new();
        let replayed = replay_observed(&rule, Arc::new(source), &options, &mut |at, w| {
            told.push((at, w))
        })
        .await
        .unwrap();
        assert_eq!(replayed.phase, "succeeded", "{:?}", replayed.decisions);
        let mut changes = Vec::new();
        let mut weight = 0;
        for d in &replayed.decisions {
            if d.weight != weight {
                changes.push((d.time, d.weight));
                weight = d.weight;
            }
        }
        assert_eq!(told, changes);
        let weights: Vec<u8> = told.iter().map(|&(_, w)| w).collect();
        assert_eq!(weights, [10, 50, 100]);
        assert!(told.windows(2).all(|w| w[0].0 < w[1].0), "{told:?}");
    }
}
