//! One analysis of a rollout: query both sides of every check over its window through the
//! rollout's [`MetricSource`] (at most `max_concurrent_queries` queries in flight across the
//! daemon), read the answers into the judge's data (`answers`: one series per query, an absent
//! errors series beside totals as zero errors, several series refused), judge the checks together
//! (Holm's correction unless the rule turns it off), score the analysis, and describe it for the
//! state machine and the store. A backend error fails the whole analysis (the rollout holds): it
//! is never judged on half the data. Empty answers are not errors: the judge turns them into
//! `Inconclusive`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::judge::{
    self, BaselineTraffic, CheckResult, FamilyControl, InconclusiveCause, ScoredCheck, SideData,
    Verdict, score_analysis,
};
use crate::rollout::{AnalysisOutcome, AnalysisReport, CheckOutcome};
use crate::rules::{Queries, RolloutRule, Side};
use crate::source::{MetricSource, Series, SourceError};
use crate::store::NewAnalysis;

mod answers;
#[cfg(test)]
mod answers_tests;
#[cfg(test)]
mod dry_run_tests;
pub mod kept;
mod stage;
#[cfg(test)]
mod stage_tests;

pub use kept::Kept;
pub use stage::{EvidenceSpan, MAX_POINTS};

/// What one analysis produced.
#[derive(Debug, Clone)]
pub struct Analysed {
    /// For the state machine.
    pub report: AnalysisReport,
    /// For the store: outcome, score and every check's evidence.
    pub record: NewAnalysis,
    /// Every check's result, for the evidence table of notifications.
    pub results: Vec<CheckResult>,
    /// The staged queries' answers so far, for the stage's next analyses (also in `record`);
    /// `None` when the ones kept before still serve (`kept::stale`).
    pub kept: Option<Vec<Kept>>,
}

/// Where one query of an analysis starts, and what it resumes from.
struct QueryPlan<'a> {
    /// Where it would start without a kept answer.
    start: DateTime<Utc>,
    /// For a staged query of a stage old enough to resume (`kept::worth_keeping`): its stage's
    /// evidence start and step, to keep its answer.
    stage: Option<(DateTime<Utc>, std::time::Duration)>,
    /// The answer kept for it in this stage, if any.
    prior: Option<&'a Kept>,
    /// Where it resumes from `prior`, when that asks for less than the whole stage.
    resumed: Option<DateTime<Utc>>,
}

impl<'a> QueryPlan<'a> {
    fn of(
        check: &crate::rules::CheckRule,
        text: &str,
        span: EvidenceSpan,
        now: DateTime<Utc>,
        kept: &'a [Kept],
    ) -> Self {
        let start = span.start(check, now);
        let stage = match span {
            EvidenceSpan::Stage { from, .. }
                if span.stages(check) && kept::worth_keeping(check.step, from, now) =>
            {
                Some((from, check.step))
            }
            _ => None,
        };
        let prior = stage.and_then(|(from, step)| kept::find(kept, text, step, from));
        let resumed = prior
            .zip(stage)
            .and_then(|(prior, (from, step))| kept::resume(prior, step, from, start, now));
        QueryPlan {
            start,
            stage,
            prior,
            resumed,
        }
    }

    fn asked_from(&self) -> DateTime<Utc> {
        self.resumed.unwrap_or(self.start)
    }

    /// Completes a resumed answer with its kept points.
    fn complete(&self, answer: &mut Option<Vec<Series>>) {
        if let (Some(at), Some(prior), Some(fresh)) = (self.resumed, self.prior, answer.as_mut()) {
            *fresh = kept::merge(prior, std::mem::take(fresh), at, self.start);
        }
    }

    /// Whether what this staged query kept before is stale next to its completed `answer`.
    fn stale(&self, answer: &Option<Vec<Series>>) -> bool {
        self.stage.is_some() && answer.as_ref().is_some_and(|a| kept::stale(self.prior, a))
    }

    /// What a staged query keeps of its completed `answer`.
    fn keep(&self, text: &str, answer: &Option<Vec<Series>>) -> Option<Kept> {
        let (from, step) = self.stage?;
        Some(Kept {
            query: text.to_string(),
            step,
            from,
            series: answer.clone()?,
        })
    }
}

/// Which query of which check and side an answer belongs to.
#[derive(Debug, Clone, Copy)]
struct Slot {
    check: usize,
    side: Side,
    /// 0: values or errors, 1: totals.
    part: usize,
}

/// Run one analysis of `rule` at `now`, the canary having `weight`% of the traffic: at 100% the
/// baseline serves none, and the checks that compare with it are not applicable
/// (`judge::BaselineTraffic`).
pub async fn analyse(
    rule: &RolloutRule,
    source: Arc<dyn MetricSource>,
    permits: Arc<Semaphore>,
    now: DateTime<Utc>,
    weight: u8,
) -> Result<Analysed, SourceError> {
    analyse_over(
        rule,
        source,
        permits,
        now,
        weight,
        EvidenceSpan::Window,
        &[],
    )
    .await
}

/// [`analyse`] over `span`: with [`EvidenceSpan::Stage`], the staged checks are queried from
/// their stage's warm-up to now and judged on that evidence with anytime-valid bounds at the
/// stage's share of their significance (Holm over their anytime p-values); see `stage`. A staged
/// query with an answer in `kept` (the previous analysis's [`Analysed::kept`]) asks only for what
/// is new since (`kept`).
pub async fn analyse_over(
    rule: &RolloutRule,
    source: Arc<dyn MetricSource>,
    permits: Arc<Semaphore>,
    now: DateTime<Utc>,
    weight: u8,
    span: EvidenceSpan,
    kept: &[Kept],
) -> Result<Analysed, SourceError> {
    let mut slots = Vec::new();
    for (i, check) in rule.checks.iter().enumerate() {
        for side in [Side::Baseline, Side::Canary] {
            let parts = match &check.queries {
                Queries::Values { .. } => 1,
                Queries::Counts { .. } => 2,
            };
            for part in 0..parts {
                slots.push(Slot {
                    check: i,
                    side,
                    part,
                });
            }
        }
    }
    let slot_texts: Vec<String> = slots
        .iter()
        .map(|slot| rule.checks[slot.check].render_part(&rule.sides, slot.side, slot.part))
        .collect();
    // Where each query starts: a staged one resumes from the answer its stage kept (`kept`).
    let plans: Vec<QueryPlan> = slots
        .iter()
        .zip(&slot_texts)
        .map(|(slot, text)| QueryPlan::of(&rule.checks[slot.check], text, span, now, kept))
        .collect();
    // The queries that share a start and a step are asked together (one request to Prometheus:
    // `MetricSource::query_range_many`); a rule's checks usually all do.
    let mut groups: Vec<(DateTime<Utc>, std::time::Duration, Vec<usize>)> = Vec::new();
    for (index, slot) in slots.iter().enumerate() {
        let check = &rule.checks[slot.check];
        let start = plans[index].asked_from();
        match groups
            .iter_mut()
            .find(|(from, step, _)| *from == start && *step == check.step)
        {
            Some((_, _, members)) => members.push(index),
            None => groups.push((start, check.step, vec![index])),
        }
    }
    // A request is spawned only once it holds a permit: however many analyses are due, the
    // daemon holds at most `max_concurrent_queries` request tasks, and each waiting analysis
    // holds one place in the semaphore's (fair, first-come) queue.
    type Answers = Result<Vec<Vec<Series>>, SourceError>;
    let mut requests: JoinSet<(usize, Answers)> = JoinSet::new();
    let mut answers: Vec<Option<Vec<Series>>> = vec![None; slots.len()];
    let failed = |e: tokio::task::JoinError| SourceError::Config {
        source_name: source.name().to_string(),
        detail: format!("a query task failed: {e}"),
    };
    let take = |group: usize, answer: Answers, answers: &mut Vec<Option<Vec<Series>>>| {
        for (&slot, series) in groups[group].2.iter().zip(answer?) {
            answers[slot] = Some(series);
        }
        Ok::<(), SourceError>(())
    };
    let texts: Vec<Vec<String>> = groups
        .iter()
        .map(|(_, _, members)| members.iter().map(|&i| slot_texts[i].clone()).collect())
        .collect();
    for (group, texts) in texts.into_iter().enumerate() {
        // The semaphore is never closed, so acquiring only waits.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        // Answers already in are taken now, so a backend error stops the analysis early.
        while let Some(joined) = requests.try_join_next() {
            let (done, answer) = joined.map_err(failed)?;
            take(done, answer, &mut answers)?;
        }
        let (start, step, _) = groups[group];
        let source = Arc::clone(&source);
        requests.spawn(async move {
            let _permit = permit;
            let answer = source.query_range_many(&texts, start, now, step).await;
            (group, answer)
        });
    }
    while let Some(joined) = requests.join_next().await {
        let (done, answer) = joined.map_err(failed)?;
        // Dropping the set on an error aborts the requests still in flight.
        take(done, answer, &mut answers)?;
    }
    for (plan, answer) in plans.iter().zip(&mut answers) {
        plan.complete(answer);
    }
    // Kept again only when stale (`kept::stale`): the store's writes stay a few per stage, and an
    // analysis whose kept answers still serve copies nothing.
    let stale = plans.iter().zip(&answers).any(|(plan, a)| plan.stale(a));
    let kept = stale.then(|| {
        let mut all: Vec<Kept> = Vec::new();
        for ((plan, text), answer) in plans.iter().zip(&slot_texts).zip(&answers) {
            if let Some(k) = plan.keep(text, answer)
                && !all.iter().any(|a| a.query == k.query && a.step == k.step)
            {
                all.push(k);
            }
        }
        all
    });
    let mut data = |check: usize, side: Side, part: usize| -> Vec<Series> {
        slots
            .iter()
            .position(|s| s.check == check && s.side == side && s.part == part)
            .and_then(|i| answers[i].take())
            .unwrap_or_default()
    };
    // Each check's two sides as the judge takes them, or why its answers cannot be judged (a
    // query answering several series), and how they were read (`answers`).
    type Read = Result<[(SideData, Option<String>); 2], String>;
    let mut reads: Vec<Read> = Vec::new();
    // A staged check's points before its stage (`EvidenceSpan::split`).
    let mut befores: Vec<Option<[SideData; 2]>> = Vec::new();
    let mut series = Vec::new();
    for (i, check) in rule.checks.iter().enumerate() {
        let judged_from = span.judged_from(check);
        let mut read_side = |side: Side| {
            let query = |part| check.render_part(&rule.sides, side, part);
            let read = match &check.queries {
                Queries::Values { .. } => answers::values(&query(0), data(i, side, 0))
                    .map(|points| (SideData::Values(points), None)),
                Queries::Counts { .. } => answers::counts(
                    (&query(0), data(i, side, 0)),
                    (&query(1), data(i, side, 1)),
                    judged_from,
                )
                .map(|(points, note)| (SideData::Counts(points), note)),
            };
            let name = side_name(side);
            read.map(|(data, note)| (data, note.map(|n| format!("{name}: {n}"))))
                .map_err(|e| format!("{name}: {e}"))
        };
        let read = read_side(Side::Baseline).and_then(|b| Ok([b, read_side(Side::Canary)?]));
        let (read, before) = match read {
            Ok([(b, b_note), (c, c_note)]) => {
                let ([b, c], before) = span.split(check, [b, c]);
                (Ok([(b, b_note), (c, c_note)]), before)
            }
            Err(e) => (Err(e), None),
        };
        befores.push(before);
        let line = |which: usize| {
            read.as_ref()
                .map_or_else(|_| Vec::new(), |sides| plotted(&sides[which].0))
        };
        series.push(ChartSeries::new(&check.spec.name, line(0), line(1)));
        reads.push(read);
    }
    // The checks are judged together: Holm's correction keeps a healthy analysis's chance of any
    // false alarm at the checks' significance, however many checks the rule has. A check whose
    // answers were refused is inconclusive and, like every inconclusive check, outside the family.
    let control = if rule.scoring.family_wise {
        FamilyControl::Holm
    } else {
        FamilyControl::PerCheck
    };
    let traffic = BaselineTraffic::at_weight(weight);
    // A staged check is judged with the stage's share of its significance, in the family too.
    let staged_specs: Vec<judge::CheckSpec> = rule.checks.iter().map(|c| span.spec(c)).collect();
    let mut results: Vec<CheckResult> = rule
        .checks
        .iter()
        .zip(&staged_specs)
        .zip(reads.iter().zip(&befores))
        .map(|((check, spec), (read, before))| match read {
            Ok([(baseline, _), (canary, _)]) if span.stages(check) => {
                let staged = judge::Staged {
                    pass: span.pass_level(check),
                    before: before.as_ref().map(|[b, c]| (b, c)),
                };
                judge::judge_check_staged(spec, baseline, canary, traffic, staged)
            }
            Ok([(baseline, _), (canary, _)]) => {
                judge::judge_check_with(spec, baseline, canary, traffic)
            }
            Err(why) => judge::unjudged(spec, InconclusiveCause::SeveralSeries, why.clone()),
        })
        .collect();
    let specs: Vec<&judge::CheckSpec> = staged_specs.iter().collect();
    judge::apply_family_control(&specs, &mut results, control);
    // Staged checks: "not shown" is accruing, and an error rate's window scan may fail it.
    let sides: Vec<Option<(&SideData, &SideData)>> = reads
        .iter()
        .map(|read| read.as_ref().ok().map(|[(b, _), (c, _)]| (b, c)))
        .collect();
    span.settle(rule, now, &sides, &mut results, traffic);
    for (result, read) in results.iter_mut().zip(reads) {
        if let Ok(sides) = read {
            result
                .evidence
                .notes
                .extend(sides.into_iter().filter_map(|(_, note)| note));
        }
    }
    let mut analysed = describe(rule, &results, &series);
    // A staged check's verdict rests on evidence valid at every look: no `for`/`consecutive`.
    for (outcome, check) in analysed.report.checks.iter_mut().zip(&rule.checks) {
        outcome.settled = span.stages(check);
    }
    analysed.record.kept = kept
        .as_ref()
        .map(|kept| kept.iter().map(Kept::to_record).collect());
    analysed.kept = kept;
    Ok(analysed)
}

/// One point of a chart line: time (Unix seconds) and value (`null` when unusable).
pub type ChartPoint = (f64, Option<f64>);

/// A check's two chart lines, recorded with its analysis for the status page (not read by any
/// decision): `{"check": .., "t0": T, "baseline": [[dt, v], ..], "canary": [..]}`, each time
/// written as seconds after `t0` (the earliest), which keeps the record small. A record without
/// `t0` (written before it existed) has absolute times. A whole `dt` is written as an
/// integer (`20`, not `20.0`): shorter, and quicker to write.
#[derive(Debug, Clone, Serialize)]
pub struct ChartSeries<'a> {
    pub check: &'a str,
    pub t0: f64,
    #[serde(serialize_with = "chart_line")]
    pub baseline: Vec<ChartPoint>,
    #[serde(serialize_with = "chart_line")]
    pub canary: Vec<ChartPoint>,
}

fn chart_line<S: serde::Serializer>(points: &[ChartPoint], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(points.iter().map(|&(t, v)| (Offset(t), v)))
}

/// Seconds after `t0`, whole ones as an integer.
struct Offset(f64);

impl Serialize for Offset {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Exactly representable as an i64 well inside this bound.
        if self.0.fract() == 0.0 && self.0.abs() < 1e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl<'a> ChartSeries<'a> {
    /// The lines of `check` from [`plotted`] points (absolute times).
    pub fn new(check: &'a str, mut baseline: Vec<ChartPoint>, mut canary: Vec<ChartPoint>) -> Self {
        let t0 = baseline
            .iter()
            .chain(&canary)
            .map(|(t, _)| *t)
            .fold(f64::INFINITY, f64::min);
        let t0 = if t0.is_finite() { t0 } else { 0.0 };
        for (t, _) in baseline.iter_mut().chain(canary.iter_mut()) {
            *t = ((*t - t0) * 1000.0).round() / 1000.0;
        }
        ChartSeries {
            check,
            t0,
            baseline,
            canary,
        }
    }
}

/// The `evidence` column of an analysis: `{"checks": [...], "score": {...}, "series": [...]}`.
#[derive(Serialize)]
struct EvidenceRecord<'a> {
    checks: &'a [CheckResult],
    score: &'a judge::AnalysisScore,
    series: &'a [ChartSeries<'a>],
}

/// The resolution of a chart line recorded with an analysis: a series of at least twice this many
/// points is averaged down to between this many and twice as many (a whole number of raw points
/// each); a shorter one is kept whole. Enough for the status page's charts, a fraction of the raw
/// points of a long window.
pub const CHART_POINTS: usize = 30;
/// Significant digits kept of a charted value (a chart is a few hundred pixels high).
const CHART_DIGITS: i32 = 4;

/// One side's points as the status page charts them (`[[t, v], ...]` in JSON), counts as their rate
/// (errors / total); a NaN, infinite or undefined value is `null`. A series of 2 ×
/// [`CHART_POINTS`] points or more is reduced (see there), each point the mean time and mean
/// usable value of consecutive points (`null` when none is usable); values keep [`CHART_DIGITS`] significant
/// digits and times millisecond precision, which keeps the analysis record small.
pub fn plotted(data: &SideData) -> Vec<ChartPoint> {
    let raw: Vec<(f64, f64)> = match data {
        SideData::Values(points) => points.iter().map(|p| (p.t, p.v)).collect(),
        SideData::Counts(points) => points
            .iter()
            .map(|p| {
                let rate = if p.total > 0.0 {
                    p.errors / p.total
                } else {
                    f64::NAN
                };
                (p.t, rate)
            })
            .collect(),
    };
    let group = (raw.len() / CHART_POINTS).max(1);
    raw.chunks(group)
        .map(|chunk| {
            let t = chunk.iter().map(|(t, _)| t).sum::<f64>() / chunk.len() as f64;
            let (sum, usable) = chunk
                .iter()
                .filter(|(_, v)| v.is_finite())
                .fold((0.0, 0usize), |(sum, n), (_, v)| (sum + v, n + 1));
            let v = (usable > 0)
                .then(|| sum / usable as f64)
                .filter(|v| v.is_finite());
            ((t * 1000.0).round() / 1000.0, v.map(significant))
        })
        .collect()
}

/// `v` rounded to [`CHART_DIGITS`] significant digits.
fn significant(v: f64) -> f64 {
    if v == 0.0 {
        return v;
    }
    let scale = 10f64.powi(CHART_DIGITS - 1 - v.abs().log10().floor() as i32);
    let rounded = (v * scale).round() / scale;
    if rounded.is_finite() { rounded } else { v }
}

/// Score judged checks and describe the analysis for the machine and the store (its evidence
/// written as JSON once, here, with the chart lines `series`). Pure.
pub fn describe(rule: &RolloutRule, results: &[CheckResult], series: &[ChartSeries]) -> Analysed {
    // A dry-run check records its verdict and acts on nothing: it stays out of the score, or its
    // failure would pause the rollout through the analysis's outcome. (It stays in Holm's family
    // above, so its recorded verdict is the one it would have live.)
    let dry_run = |name: &str| {
        rule.plan
            .triggers
            .iter()
            .any(|t| *t.check == *name && t.dry_run)
    };
    let scored: Vec<ScoredCheck> = results
        .iter()
        .zip(&rule.checks)
        .filter(|(r, _)| !dry_run(&r.name))
        .map(|(r, c)| ScoredCheck::new(r, &*c.group, c.critical))
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
    // When every check is a dry run, nothing gates the rollout: the analysis passes, and its
    // score over all the checks is recorded for the operator tuning them.
    let all_dry_run = scored.is_empty() && !results.is_empty();
    let score = if all_dry_run {
        let all: Vec<ScoredCheck> = results
            .iter()
            .zip(&rule.checks)
            .map(|(r, c)| ScoredCheck::new(r, &*c.group, c.critical))
            .collect();
        score_analysis(&all, &scoring)
    } else {
        score_analysis(&scored, &scoring)
    };
    let overall = match score.outcome {
        _ if all_dry_run => AnalysisOutcome::Pass,
        judge::AnalysisOutcome::Pass => AnalysisOutcome::Pass,
        judge::AnalysisOutcome::Marginal => AnalysisOutcome::Marginal,
        judge::AnalysisOutcome::Fail => AnalysisOutcome::Fail,
        judge::AnalysisOutcome::Inconclusive => AnalysisOutcome::Inconclusive,
    };
    let checks = results.iter().map(outcome_of).collect();
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
            evidence: evidence_json(&EvidenceRecord {
                checks: results,
                score: &score,
                series,
            }),
            kept: None,
        },
        results: results.to_vec(),
        kept: None,
    }
}

/// One check's verdict as the state machine sees it: the judge's verdict, an inconclusive one
/// with its typed cause (the machine's no-data rules decide from it).
fn outcome_of(r: &CheckResult) -> CheckOutcome {
    match &r.verdict {
        Verdict::Pass => CheckOutcome::pass(&r.name),
        Verdict::Fail => CheckOutcome::fail(&r.name),
        Verdict::Inconclusive { cause, .. } => CheckOutcome::inconclusive(&r.name, *cause),
    }
}

/// The evidence as JSON. Serialising these types cannot fail (no maps with non-string keys; NaN
/// is written as `null`), but if it ever did, the record says so rather than losing the analysis.
fn evidence_json(record: &EvidenceRecord) -> Box<RawValue> {
    serde_json::value::to_raw_value(record).unwrap_or_else(|e| {
        let text = json!({ "error": format!("the evidence could not be written: {e}") });
        RawValue::from_string(text.to_string()).unwrap_or_default()
    })
}

/// "baseline" or "canary", as notes and refusals name a side.
fn side_name(side: Side) -> &'static str {
    match side {
        Side::Baseline => "baseline",
        Side::Canary => "canary",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{CountPoint, Point};
    use crate::rollout::CheckVerdict;

    /// A side's chart line as it is recorded in JSON.
    fn charted(data: &SideData) -> serde_json::Value {
        serde_json::to_value(plotted(data)).unwrap()
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
        assert_eq!(charted(&values), json!([[1.0, 0.5], [2.0, null]]));
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
        assert_eq!(charted(&counts), json!([[1.0, 0.25], [2.0, null]]));
    }

    #[test]
    fn long_series_are_charted_at_a_reduced_resolution() {
        let values = SideData::Values(
            (0..60)
                .map(|i| Point {
                    t: 1000.0 + 10.0 * f64::from(i),
                    v: if i == 3 { f64::NAN } else { 0.123_456_789 },
                })
                .collect(),
        );
        let points = charted(&values);
        let points = points.as_array().unwrap();
        assert_eq!(points.len(), CHART_POINTS);
        // Pairs of points become one at their mean time; an unusable value is left out of the
        // mean, and values keep four significant digits.
        assert_eq!(points[0], json!([1005.0, 0.1235]));
        assert_eq!(points[1], json!([1025.0, 0.1235]));
        assert_eq!(points[29], json!([1585.0, 0.1235]));
        let gone = SideData::Values(
            (0..60)
                .map(|i| Point {
                    t: f64::from(i),
                    v: if i < 2 { f64::NAN } else { 1.0 },
                })
                .collect(),
        );
        assert_eq!(charted(&gone)[0], json!([0.5, null]));
        // A short series (a 1 m window at a 2 s step) keeps every point.
        let short = SideData::Values(
            (0..31)
                .map(|i| Point {
                    t: f64::from(i),
                    v: 1.0,
                })
                .collect(),
        );
        assert_eq!(plotted(&short).len(), 31);
        assert_eq!(significant(-0.000_123_456), -0.000_123_5);
        assert_eq!(significant(98_765.4), 98_770.0);
    }

    #[test]
    fn inconclusive_verdicts_reach_the_machine_with_their_cause() {
        let spec = judge::CheckSpec {
            name: "p99".into(),
            kind: judge::CheckKind::Relative { tolerance: 0.1 },
            direction: judge::Direction::HigherIsWorse,
            confidence: 0.99,
            min_samples: 3,
        };
        let points = |n: usize| {
            SideData::Values(
                (0..n)
                    .map(|i| Point {
                        t: i as f64 * 60.0,
                        v: 1.0,
                    })
                    .collect(),
            )
        };
        let judged = |b: &SideData, c: &SideData| outcome_of(&judge::judge_check(&spec, b, c));
        let cause = |o: CheckOutcome| match o.verdict {
            CheckVerdict::Inconclusive { cause } => Some(cause),
            CheckVerdict::Pass | CheckVerdict::Fail => None,
        };
        // No points, and too few points, reach the machine as such.
        let no_points = judged(&points(5), &points(0));
        assert_eq!(
            no_points,
            CheckOutcome::inconclusive("p99", InconclusiveCause::NoData)
        );
        let one_point = judged(&points(5), &points(1));
        assert_eq!(cause(one_point), Some(InconclusiveCause::TooFew));
        // Both sides constant and equal: judged on the data it has, not a lack of it.
        let judged_same = judged(&points(5), &points(5));
        assert!(
            !matches!(
                cause(judged_same.clone()),
                Some(InconclusiveCause::NoData | InconclusiveCause::TooFew)
            ),
            "{judged_same:?}"
        );
        // Overflowing values are non-finite arithmetic, not a lack of data.
        let huge = SideData::Values(
            (0..5)
                .map(|i| Point {
                    t: i as f64 * 60.0,
                    v: if i % 2 == 0 { 1e308 } else { -1e308 },
                })
                .collect(),
        );
        assert_eq!(
            cause(judged(&huge, &huge)),
            Some(InconclusiveCause::NonFinite)
        );
    }

    /// Issue 16, point 5, on the shipped plan: at 100% the baseline reports nothing, and the
    /// checks that compare with it are left out, so `checkout-api`'s last stage passes on its
    /// absolute, error-rate-absolute and trend checks. The same answers below 100% are missing
    /// evidence, never a pass.
    #[tokio::test]
    async fn the_shipped_plan_passes_at_100_percent_on_the_checks_that_can_judge() {
        use crate::rules::{KnownNames, parse_rule};
        use crate::source::{MemorySource, Request};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/checkout-api.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let rule = parse_rule(&path, &text, &KnownNames::any()).unwrap();
        let baseline = format!("\"{}\"", rule.sides.baseline);
        let source = MemorySource::from_fn(rule.source.clone(), move |request| {
            let Request::Range {
                query,
                start,
                end,
                step,
            } = request
            else {
                return Ok(vec![]);
            };
            if query.contains(&baseline) {
                return Ok(vec![]);
            }
            // A healthy canary: no errors, flat queue, p99 well under its 0.5 s limit.
            let value = [
                ("5..", 0.0),
                ("_total", 1000.0),
                ("queue_depth", 5.0),
                ("memory", 1e9),
            ]
            .into_iter()
            .find(|(needle, _)| query.contains(needle))
            .map_or(0.2, |(_, v)| v);
            let step = chrono::Duration::from_std(*step).unwrap();
            let mut points = Vec::new();
            let mut t = *start;
            while t <= *end {
                // A little wobble: a constant series has no trend to test.
                let wobble = (t.timestamp() / 60 % 3) as f64 * 0.01;
                points.push(Point {
                    t: t.timestamp() as f64,
                    v: value * (1.0 + wobble),
                });
                t += step;
            }
            Ok(vec![Series {
                labels: Default::default(),
                points,
            }])
        });
        let source: Arc<dyn MetricSource> = Arc::new(source);
        let permits = Arc::new(Semaphore::new(4));
        let now = Utc::now();
        let at = |weight| {
            analyse(
                &rule,
                Arc::clone(&source),
                Arc::clone(&permits),
                now,
                weight,
            )
        };
        let full = at(100).await.unwrap();
        assert_eq!(
            full.report.overall,
            AnalysisOutcome::Pass,
            "{:?}",
            full.results
        );
        let not_applicable = |c: &CheckOutcome| {
            c.verdict
                == CheckVerdict::Inconclusive {
                    cause: InconclusiveCause::NotApplicable,
                }
        };
        for (outcome, check) in full.report.checks.iter().zip(&rule.checks) {
            assert_eq!(
                not_applicable(outcome),
                check.spec.kind.needs_baseline(),
                "{outcome:?}"
            );
        }
        assert!(full.report.checks.iter().any(not_applicable));
        let half = at(50).await.unwrap();
        assert_ne!(half.report.overall, AnalysisOutcome::Pass);
        assert!(!half.report.checks.iter().any(not_applicable));
    }

    /// The whole path of a lack of data, from the backend's answer to the machine: a canary
    /// query with no series (no data) or one point under `min_samples = 2` (too few) reaches the
    /// machine as that cause, and the check's `no_data = "pause"` pauses the rollout.
    #[tokio::test]
    async fn an_empty_or_thin_canary_answer_pauses_a_rollout_whose_no_data_policy_says_so() {
        use crate::rollout::{Event, Phase, RolloutState, step};
        use crate::rules::{KnownNames, parse_rule};
        use crate::source::{MemorySource, Request};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("tests/fixtures/daemon/rule.toml.in"))
            .unwrap()
            .replace("@NAME@", "web")
            .replace("@CANARY@", "new")
            .replace("@ACTUATOR@", "builtin")
            .replace("@MIN@", "1h")
            .replace(
                "action = \"rollback\"",
                "action = \"rollback\"\nno_data = \"pause\"",
            );
        let rule = parse_rule(std::path::Path::new("web.toml"), &text, &KnownNames::any()).unwrap();
        let now = Utc::now();
        for (canary_points, cause) in [
            (0, InconclusiveCause::NoData),
            (1, InconclusiveCause::TooFew),
        ] {
            let source = MemorySource::from_fn(rule.source.clone(), move |request| {
                let Request::Range { query, end, .. } = request else {
                    return Ok(vec![]);
                };
                let n = if query.contains("\"new\"") {
                    canary_points
                } else {
                    5
                };
                let points = (0..n)
                    .map(|i| Point {
                        t: end.timestamp() as f64 - f64::from(i),
                        v: 0.1,
                    })
                    .collect();
                Ok(vec![Series {
                    labels: Default::default(),
                    points,
                }])
            });
            let analysed = analyse(
                &rule,
                Arc::new(source),
                Arc::new(Semaphore::new(4)),
                now,
                10,
            )
            .await
            .unwrap();
            assert_eq!(
                analysed.report.checks,
                [CheckOutcome::inconclusive("latency", cause)]
            );
            let state = RolloutState {
                phase: Phase::Progressing { stage: 0 },
                weight: 10,
                stage_started_at: Some(now - chrono::Duration::hours(1)),
                ..RolloutState::default()
            };
            let (next, _) =
                step(&state, &rule.plan, Event::Analysis(analysed.report), now).unwrap();
            assert!(
                matches!(&next.phase, Phase::Paused { reason, .. } if reason.contains("no data")),
                "{cause:?}: {:?}",
                next.phase
            );
        }
    }

    #[test]
    fn chart_times_are_recorded_after_the_earliest() {
        let chart = ChartSeries::new(
            "p99",
            vec![(1_700_000_020.25, Some(1.0)), (1_700_000_040.25, None)],
            vec![
                (1_700_000_000.125, Some(2.0)),
                (1_700_000_060.125, Some(3.0)),
            ],
        );
        assert_eq!(
            serde_json::to_string(&chart).unwrap(),
            r#"{"check":"p99","t0":1700000000.125,"baseline":[[20.125,1.0],[40.125,null]],"canary":[[0,2.0],[60,3.0]]}"#
        );
        let empty = ChartSeries::new("p99", vec![], vec![]);
        assert_eq!(empty.t0, 0.0);
    }
}
