//! One analysis of a rollout: query both sides of every check over its window through the
//! rollout's [`MetricSource`] (at most `max_concurrent_queries` queries in flight across the
//! daemon), judge the checks together (`judge::judge_analysis`, Holm's correction unless the rule
//! turns it off), score the analysis, and describe it for the state machine and the store.
//! A backend error fails the whole analysis (the rollout holds): it is never judged on
//! half the data. Empty answers are not errors: the judge turns them into `Inconclusive`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::judge::{
    self, CheckResult, CountPoint, FamilyControl, Point, ScoredCheck, SideData, Verdict,
    judge_analysis, score_analysis,
};
use crate::rollout::{AnalysisOutcome, AnalysisReport, CheckOutcome, VerdictClass};
use crate::rules::{Queries, RolloutRule, Side};
use crate::source::{MetricSource, Series, SourceError};
use crate::store::NewAnalysis;

/// What one analysis produced.
#[derive(Debug, Clone)]
pub struct Analysed {
    /// For the state machine.
    pub report: AnalysisReport,
    /// For the store: outcome, score and every check's evidence.
    pub record: NewAnalysis,
    /// Every check's result, for the evidence table of notifications.
    pub results: Vec<CheckResult>,
}

/// Which query of which check and side an answer belongs to.
#[derive(Debug, Clone, Copy)]
struct Slot {
    check: usize,
    side: Side,
    /// 0: values or errors, 1: totals.
    part: usize,
}

/// Run one analysis of `rule` at `now`.
pub async fn analyse(
    rule: &RolloutRule,
    source: Arc<dyn MetricSource>,
    permits: Arc<Semaphore>,
    now: DateTime<Utc>,
) -> Result<Analysed, SourceError> {
    let mut queries: JoinSet<(usize, Result<Vec<Series>, SourceError>)> = JoinSet::new();
    let mut slots = Vec::new();
    for (i, check) in rule.checks.iter().enumerate() {
        for side in [Side::Baseline, Side::Canary] {
            let texts = match check.rendered(&rule.sides, side) {
                Queries::Values { query } => vec![query],
                Queries::Counts { errors, total } => vec![errors, total],
            };
            for (part, text) in texts.into_iter().enumerate() {
                let slot = slots.len();
                slots.push(Slot {
                    check: i,
                    side,
                    part,
                });
                let source = Arc::clone(&source);
                let permits = Arc::clone(&permits);
                let start = now - chrono::Duration::from_std(check.window).unwrap_or_default();
                let step = check.step;
                queries.spawn(async move {
                    // The semaphore is never closed, so acquiring only waits.
                    let _permit = permits.acquire_owned().await;
                    (slot, source.query_range(&text, start, now, step).await)
                });
            }
        }
    }
    let mut answers: Vec<Option<Vec<Series>>> = vec![None; slots.len()];
    while let Some(joined) = queries.join_next().await {
        let (slot, answer) = joined.map_err(|e| SourceError::Config {
            source_name: source.name().to_string(),
            detail: format!("a query task failed: {e}"),
        })?;
        match answer {
            Ok(series) => answers[slot] = Some(series),
            Err(e) => {
                queries.abort_all();
                return Err(e);
            }
        }
    }
    let data = |check: usize, side: Side, part: usize| -> Vec<Series> {
        slots
            .iter()
            .position(|s| s.check == check && s.side == side && s.part == part)
            .and_then(|i| answers[i].clone())
            .unwrap_or_default()
    };
    let mut sides = Vec::new();
    let mut series = Vec::new();
    for (i, check) in rule.checks.iter().enumerate() {
        let side_data = |side: Side| match &check.queries {
            Queries::Values { .. } => SideData::Values(first_series(data(i, side, 0))),
            Queries::Counts { .. } => SideData::Counts(pair_counts(
                &first_series(data(i, side, 0)),
                &first_series(data(i, side, 1)),
            )),
        };
        let (baseline, canary) = (side_data(Side::Baseline), side_data(Side::Canary));
        series.push(json!({
            "check": check.spec.name,
            "baseline": plotted(&baseline),
            "canary": plotted(&canary),
        }));
        sides.push((baseline, canary));
    }
    // The checks are judged together: Holm's correction keeps a healthy analysis's chance of any
    // false alarm at the checks' significance, however many checks the rule has.
    let control = if rule.scoring.family_wise {
        FamilyControl::Holm
    } else {
        FamilyControl::PerCheck
    };
    let checks: Vec<_> = rule
        .checks
        .iter()
        .zip(&sides)
        .map(|(check, (baseline, canary))| (&check.spec, baseline, canary))
        .collect();
    let results = judge_analysis(&checks, control);
    let mut analysed = describe(rule, &results);
    // The raw points, for the status page's charts (not read by any decision).
    analysed.record.evidence["series"] = serde_json::Value::Array(series);
    Ok(analysed)
}

/// One side's points as the status page charts them: `[[t, v], ...]`, counts as their rate
/// (errors / total); a NaN, infinite or undefined value is `null`.
pub fn plotted(data: &SideData) -> serde_json::Value {
    let point = |t: f64, v: f64| json!([t, v.is_finite().then_some(v)]);
    let points = match data {
        SideData::Values(points) => points.iter().map(|p| point(p.t, p.v)).collect(),
        SideData::Counts(points) => points
            .iter()
            .map(|p| {
                point(
                    p.t,
                    if p.total > 0.0 {
                        p.errors / p.total
                    } else {
                        f64::NAN
                    },
                )
            })
            .collect(),
    };
    serde_json::Value::Array(points)
}

/// Score judged checks and describe the analysis for the machine and the store. Pure.
pub fn describe(rule: &RolloutRule, results: &[CheckResult]) -> Analysed {
    let scored: Vec<ScoredCheck> = results
        .iter()
        .zip(&rule.checks)
        .map(|(r, c)| ScoredCheck::new(r, c.group.clone(), c.critical))
        .collect();
    let scoring = judge::Scoring {
        group_weights: rule
            .scoring
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.weight))
            .collect(),
        pass_score: rule.scoring.pass,
        marginal_score: rule.scoring.marginal,
    };
    let score = score_analysis(&scored, &scoring);
    let overall = match score.outcome {
        judge::AnalysisOutcome::Pass => AnalysisOutcome::Pass,
        judge::AnalysisOutcome::Marginal => AnalysisOutcome::Marginal,
        judge::AnalysisOutcome::Fail => AnalysisOutcome::Fail,
        judge::AnalysisOutcome::Inconclusive => AnalysisOutcome::Inconclusive,
    };
    let checks = results
        .iter()
        .map(|r| match &r.verdict {
            Verdict::Pass => CheckOutcome::new(&r.name, VerdictClass::Pass),
            Verdict::Fail => CheckOutcome::new(&r.name, VerdictClass::Fail),
            Verdict::Inconclusive { reason } if lacks_data(reason) => {
                CheckOutcome::no_data(&r.name)
            }
            Verdict::Inconclusive { .. } => CheckOutcome::new(&r.name, VerdictClass::Inconclusive),
        })
        .collect();
    let outcome = match overall {
        AnalysisOutcome::Pass => "pass",
        AnalysisOutcome::Marginal => "marginal",
        AnalysisOutcome::Fail => "fail",
        AnalysisOutcome::Inconclusive => "inconclusive",
    };
    Analysed {
        report: AnalysisReport { checks, overall },
        record: NewAnalysis {
            outcome: outcome.to_string(),
            score: Some(score.score),
            evidence: json!({ "score": score, "checks": results }),
        },
        results: results.to_vec(),
    }
}

/// Whether an inconclusive verdict was for lack of data (the judge's reasons say so first).
fn lacks_data(reason: &str) -> bool {
    reason.starts_with("no data") || reason.starts_with("too few")
}

/// A check's query should aggregate to one series; the first is used when it does not.
fn first_series(series: Vec<Series>) -> Vec<Point> {
    if series.len() > 1 {
        tracing::warn!(
            series = series.len(),
            "A query returned several series; using the first. Aggregate it to one series."
        );
    }
    series
        .into_iter()
        .next()
        .map(|s| s.points)
        .unwrap_or_default()
}

/// Errors and totals paired by timestamp (points within half a second are the same instant).
fn pair_counts(errors: &[Point], totals: &[Point]) -> Vec<CountPoint> {
    totals
        .iter()
        .filter_map(|t| {
            errors
                .iter()
                .find(|e| (e.t - t.t).abs() < 0.5)
                .map(|e| CountPoint {
                    t: t.t,
                    errors: e.v,
                    total: t.v,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pair_by_timestamp_and_drop_unpaired_points() {
        let p = |t: f64, v: f64| Point { t, v };
        let paired = pair_counts(&[p(1.0, 1.0), p(2.0, 2.0)], &[p(2.1, 20.0), p(3.0, 30.0)]);
        assert_eq!(
            paired,
            vec![CountPoint {
                t: 2.1,
                errors: 2.0,
                total: 20.0
            }]
        );
    }

    #[test]
    fn plotted_points_keep_time_and_turn_unusable_values_into_null() {
        let values = SideData::Values(vec![
            Point { t: 1.0, v: 0.5 },
            Point {
                t: 2.0,
                v: f64::NAN,
            },
        ]);
        assert_eq!(plotted(&values), json!([[1.0, 0.5], [2.0, null]]));
        let counts = SideData::Counts(vec![
            CountPoint {
                t: 1.0,
                errors: 1.0,
                total: 4.0,
            },
            CountPoint {
                t: 2.0,
                errors: 0.0,
                total: 0.0,
            },
        ]);
        assert_eq!(plotted(&counts), json!([[1.0, 0.25], [2.0, null]]));
    }

    #[test]
    fn no_data_reasons_are_recognised() {
        assert!(lacks_data("no data: the canary has no points"));
        assert!(lacks_data(
            "too few points: the canary has 1, needs at least 3"
        ));
        assert!(!lacks_data("the test cannot be computed"));
    }
}
