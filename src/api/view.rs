//! What the API shows of a rollout, built from its stored state, its rule and its history: the
//! detail view with the plan's progress, audit entries as people read them, and the side-by-side
//! comparison of the latest analysis. Pure functions over plain data (the clock is passed in);
//! no I/O and no HTTP.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::daemon::status::phase_name;
use crate::judge::{CheckResult, DecisionRule, InconclusiveCause, SideSummary};
use crate::rollout::{Phase, RolloutState};
use crate::rules::{RolloutRule, Schedule};
use crate::store::{Analysis, AuditEntry};

/// One stage of the plan with the rollout's progress through it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageProgress {
    pub index: usize,
    pub name: String,
    pub weight: u8,
    pub approval: bool,
    /// `done`, `current` or `pending`.
    pub status: &'static str,
    pub passes_required: u32,
    /// Consecutive passes counted so far (current stage only).
    pub passes_seen: Option<u32>,
    pub min_duration_seconds: f64,
    pub max_duration_seconds: Option<f64>,
    /// Time since the stage began or was resumed (current stage only).
    pub time_in_stage_seconds: Option<f64>,
}

/// `GET /v1/rollouts/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutDetail {
    pub name: String,
    pub phase: &'static str,
    /// Why it is paused, rolled back or stopped, when it is.
    pub phase_reason: Option<String>,
    pub stage: Option<usize>,
    pub stage_name: Option<String>,
    pub weight: u8,
    /// The current run (1, 2, ...) and the canary version it takes through the plan.
    pub run: u32,
    pub canary: String,
    /// Why the rollout holds, when it does: a metric backend failing, or a fresh analysis
    /// awaited after the daemon started.
    pub held: Option<String>,
    /// When the current run was started (the newest `run-started`, `started` or `retried`
    /// audit entry).
    pub started_at: Option<DateTime<Utc>>,
    /// When the current stage began or was resumed.
    pub last_advanced_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub last_analysis_at: Option<DateTime<Utc>>,
    /// When the next analysis is due (only while progressing or waiting for approval), from the
    /// rule's schedule and the last analysis.
    pub next_analysis_at: Option<DateTime<Utc>>,
    pub inconclusive_streak: u32,
    /// The rule file is loaded (a stored rollout whose file was removed has none).
    pub rule_loaded: bool,
    /// The problems (file:line:col) of its rule file when that file does not load: the rule
    /// in force is the file's last good version. Empty while the file loads.
    pub rule_file_problems: Vec<String>,
    pub plan: Vec<StageProgress>,
}

/// What is known about a rollout besides its state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known {
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub last_analysis_at: Option<DateTime<Utc>>,
}

fn seconds(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// The detail view of rollout `name` at `now`.
pub fn detail(
    name: &str,
    state: &RolloutState,
    rule: Option<&RolloutRule>,
    known: Known,
    now: DateTime<Utc>,
) -> RolloutDetail {
    let stage = state.phase.stage();
    let active = matches!(
        state.phase,
        Phase::Progressing { .. } | Phase::WaitingApproval { .. }
    );
    let phase_reason = match &state.phase {
        Phase::Paused { reason, .. }
        | Phase::RolledBack { reason }
        | Phase::EmergencyStopped { reason, .. } => Some(reason.clone()),
        _ => None,
    };
    let plan = rule
        .map(|r| {
            r.plan
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let status = match (&state.phase, stage) {
                        (Phase::Succeeded, _) => "done",
                        (_, Some(current)) if i < current => "done",
                        (_, Some(current)) if i == current => "current",
                        _ => "pending",
                    };
                    let current = status == "current";
                    StageProgress {
                        index: i,
                        name: s.name.clone(),
                        weight: s.weight,
                        approval: s.approval,
                        status,
                        passes_required: s.required_passes,
                        passes_seen: current.then_some(state.passes),
                        min_duration_seconds: seconds(s.min_duration),
                        max_duration_seconds: s.max_duration.map(seconds),
                        time_in_stage_seconds: state
                            .stage_started_at
                            .filter(|_| current)
                            .map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let next_analysis_at = rule
        .filter(|_| active)
        .and_then(|r| next_analysis(&r.schedule, known.last_analysis_at, state, now));
    RolloutDetail {
        name: name.to_string(),
        phase: phase_name(&state.phase),
        phase_reason,
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
        held: held(state),
        started_at: known.started_at,
        last_advanced_at: state.stage_started_at,
        updated_at: known.updated_at,
        last_analysis_at: known.last_analysis_at,
        next_analysis_at,
        inconclusive_streak: state.inconclusive_streak,
        rule_loaded: rule.is_some(),
        rule_file_problems: Vec::new(),
        plan,
    }
}

/// Why a tick cannot advance the rollout now, in words.
pub fn held(state: &RolloutState) -> Option<String> {
    if state.backend_errors > 0 {
        return Some(format!(
            "holding: the last {} analyses failed on the metric backend",
            state.backend_errors
        ));
    }
    state
        .awaiting_analysis
        .then(|| "holding until a fresh analysis after the daemon started".to_string())
}

/// The next analysis: the cron's next occurrence, or the interval after the last analysis (or
/// after the stage began), never in the past.
fn next_analysis(
    schedule: &Schedule,
    last: Option<DateTime<Utc>>,
    state: &RolloutState,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match schedule {
        Schedule::Cron { cron, .. } => cron.find_next_occurrence(&now, false).ok(),
        Schedule::Every(every) => {
            let every = chrono::Duration::from_std(*every).ok()?;
            let from = last.or(state.stage_started_at)?;
            Some((from + every).max(now))
        }
    }
}

/// Who caused an audit entry, as people read it: an operator's name, or `schedule`,
/// `auto-rollback`, `emergency`.
pub fn who(triggered_by: &str) -> (String, bool) {
    match triggered_by
        .strip_prefix("operator `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        Some(name) => (name.to_string(), true),
        None => (triggered_by.to_string(), false),
    }
}

/// One audit entry in the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    /// The run it belongs to.
    pub run: u32,
    pub at: DateTime<Utc>,
    pub action: String,
    pub previous_weight: Option<u8>,
    pub new_weight: Option<u8>,
    pub reason: String,
    /// The operator's token name, or `schedule`, `auto-rollback`, `emergency`.
    pub triggered_by: String,
    /// `triggered_by` names a person (an API token).
    pub by_operator: bool,
}

impl From<AuditEntry> for HistoryEntry {
    fn from(e: AuditEntry) -> Self {
        let (triggered_by, by_operator) = who(&e.triggered_by);
        HistoryEntry {
            id: e.id,
            run: e.run,
            at: e.at,
            action: e.action,
            previous_weight: e.previous_weight,
            new_weight: e.new_weight,
            reason: e.reason,
            triggered_by,
            by_operator,
        }
    }
}

/// One check of the latest analysis, baseline against canary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckComparison {
    pub check: String,
    /// What `baseline` and `canary` are: `max`, `p99`, `error rate`, `median`, ...
    pub measure: Option<String>,
    pub baseline: Option<f64>,
    pub canary: Option<f64>,
    pub baseline_points: usize,
    pub canary_points: usize,
    /// Canary / baseline (or / threshold for absolute checks).
    pub effect_ratio: Option<f64>,
    /// Canary − baseline (or − threshold).
    pub effect_difference: Option<f64>,
    /// `tolerance`, `threshold` or `max slope per minute`.
    pub threshold_kind: Option<&'static str>,
    pub threshold: Option<f64>,
    pub direction: String,
    pub verdict: &'static str,
    /// Why an inconclusive verdict is inconclusive (`no-data`, `too-few`, `not-applicable`, ...);
    /// `null` for a pass or a fail.
    pub cause: Option<InconclusiveCause>,
    pub reason: String,
    pub p_value: Option<f64>,
    pub test: Option<String>,
    /// Which rule decided the verdict (`shown-beyond`, `shown-within`, `not-shown`,
    /// `observed`); `null` when it was decided before any comparison.
    pub decided_by: Option<DecisionRule>,
    /// The confidence bound on the worsening the decision rested on, on the scale of
    /// `bound_limit` (a ratio canary/baseline for relative checks on positive values).
    pub bound: Option<f64>,
    /// The tolerance, limit or threshold on the bound's scale (1.1 for a 10% tolerance).
    pub bound_limit: Option<f64>,
}

/// `GET /v1/rollouts/{name}/comparison`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub rollout: String,
    pub analysis_id: i64,
    pub at: DateTime<Utc>,
    pub outcome: String,
    pub score: Option<f64>,
    pub checks: Vec<CheckComparison>,
}

/// The value that stands for one side, and what it is.
fn side_value(s: &SideSummary) -> (Option<String>, Option<f64>) {
    if let Some(a) = &s.aggregate {
        let name = serde_json::to_value(a.aggregate)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        return (name, Some(a.value));
    }
    if let Some(r) = s.rate {
        return (Some("error rate".into()), Some(r));
    }
    if let Some(v) = s.slope_per_minute {
        return (Some("slope per minute".into()), Some(v));
    }
    if let Some(v) = s.median {
        return (Some("median".into()), Some(v));
    }
    (s.mean.map(|_| "mean".to_string()), s.mean)
}

/// Why an analysis' evidence cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("analysis {id} has evidence in an unexpected shape: {detail}")]
pub struct BadEvidence {
    pub id: i64,
    pub detail: String,
}

/// The comparison of one stored analysis.
pub fn comparison(analysis: &Analysis) -> Result<Comparison, BadEvidence> {
    let checks: Vec<CheckResult> = analysis
        .evidence
        .get("checks")
        .cloned()
        .map(serde_json::from_value)
        .unwrap_or(Ok(Vec::new()))
        .map_err(|e| BadEvidence {
            id: analysis.id,
            detail: e.to_string(),
        })?;
    let checks = checks
        .into_iter()
        .map(|c| {
            let (measure, baseline) = side_value(&c.evidence.baseline);
            let (canary_measure, canary) = side_value(&c.evidence.canary);
            let t = c.evidence.thresholds;
            let (threshold_kind, threshold) = if let Some(v) = t.tolerance {
                (Some("tolerance"), Some(v))
            } else if let Some(v) = t.threshold {
                (Some("threshold"), Some(v))
            } else if let Some(v) = t.max_slope_per_minute {
                (Some("max slope per minute"), Some(v))
            } else {
                (None, None)
            };
            let direction = match serde_json::to_value(t.direction) {
                Ok(Value::String(s)) => s,
                _ => String::new(),
            };
            CheckComparison {
                measure: measure.or(canary_measure),
                baseline,
                canary,
                baseline_points: c.evidence.baseline.points,
                canary_points: c.evidence.canary.points,
                effect_ratio: c.evidence.effect.and_then(|e| e.ratio),
                effect_difference: c.evidence.effect.map(|e| e.difference),
                threshold_kind,
                threshold,
                direction,
                verdict: c.verdict.as_str(),
                cause: c.verdict.cause(),
                reason: c.reason,
                p_value: c.evidence.p_value,
                test: c.evidence.test,
                decided_by: c.evidence.decision.map(|d| d.rule),
                bound: c
                    .evidence
                    .decision
                    .map(|d| d.bound)
                    .filter(|b| b.is_finite()),
                bound_limit: c.evidence.decision.map(|d| d.limit),
                check: c.name,
            }
        })
        .collect();
    Ok(Comparison {
        rollout: analysis.rollout.clone(),
        analysis_id: analysis.id,
        at: analysis.at,
        outcome: analysis.outcome.clone(),
        score: analysis.score,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{CheckKind, CheckSpec, Direction, Point, SideData, judge_check};
    use serde_json::json;

    #[test]
    fn operators_are_shown_by_name_and_machines_by_kind() {
        assert_eq!(who("operator `alice`"), ("alice".to_string(), true));
        assert_eq!(who("schedule"), ("schedule".to_string(), false));
        assert_eq!(who("auto-rollback"), ("auto-rollback".to_string(), false));
    }

    #[test]
    fn a_comparison_shows_both_sides_effect_threshold_and_verdict() {
        let spec = CheckSpec {
            name: "latency".into(),
            kind: CheckKind::Relative { tolerance: 0.1 },
            direction: Direction::HigherIsWorse,
            confidence: 0.99,
            min_samples: 3,
        };
        let pts = |v: f64| {
            SideData::Values(
                (0..20)
                    .map(|i| Point {
                        t: f64::from(i),
                        v: v + f64::from(i % 3) * 0.001,
                    })
                    .collect(),
            )
        };
        let result = judge_check(&spec, &pts(0.100), &pts(0.200));
        let analysis = Analysis {
            run: 1,
            id: 7,
            rollout: "web".into(),
            at: Utc::now(),
            outcome: "fail".into(),
            score: Some(0.0),
            evidence: json!({ "score": null, "checks": [result] }),
        };
        let c = comparison(&analysis).unwrap();
        assert_eq!(c.analysis_id, 7);
        let check = &c.checks[0];
        assert_eq!(check.check, "latency");
        assert_eq!(check.verdict, "fail");
        assert_eq!(check.threshold_kind, Some("tolerance"));
        assert_eq!(check.threshold, Some(0.1));
        assert!(check.baseline.unwrap() < check.canary.unwrap());
        assert!(check.effect_ratio.unwrap() > 1.5, "{check:?}");
        assert_eq!(check.direction, "higher-is-worse");
        assert_eq!(serde_json::to_value(check).unwrap()["cause"], Value::Null);
        // Which rule decided, with the bound it rested on (issue 18 point 3).
        assert_eq!(check.decided_by, Some(DecisionRule::ShownBeyond));
        assert!(check.bound.unwrap() > 1.1, "{check:?}");
        assert_eq!(check.bound_limit, Some(1.1));
        assert_eq!(
            serde_json::to_value(check).unwrap()["decided_by"],
            "shown-beyond"
        );

        // An inconclusive check names its cause, as a stable word.
        let empty = SideData::Values(Vec::new());
        let result = judge_check(&spec, &pts(0.100), &empty);
        let analysis = Analysis {
            evidence: json!({ "checks": [result] }),
            ..analysis
        };
        let c = comparison(&analysis).unwrap();
        assert_eq!(c.checks[0].verdict, "inconclusive");
        assert_eq!(c.checks[0].cause, Some(InconclusiveCause::NoData));
        assert_eq!(
            serde_json::to_value(&c).unwrap()["checks"][0]["cause"],
            "no-data"
        );
    }

    #[test]
    fn evidence_of_another_shape_is_an_error_not_a_panic() {
        let analysis = Analysis {
            run: 1,
            id: 3,
            rollout: "web".into(),
            at: Utc::now(),
            outcome: "pass".into(),
            score: None,
            evidence: json!({ "checks": [{"name": 1}] }),
        };
        assert!(
            comparison(&analysis)
                .unwrap_err()
                .to_string()
                .contains("analysis 3")
        );
    }
}
