//! Verdicts on series of values: relative (canary vs baseline), absolute (aggregate vs a
//! threshold) and trend (slope vs a limit). Pure; the counts kinds live in `counts`.
//!
//! Relative checks pair points by timestamp when the two sides share them: the per-timestamp
//! log-ratio ln(canary/baseline) cancels whatever load both sides saw at that minute, so a 10%
//! shift stands out of a traffic wave that would swamp an unpaired comparison. The pairs are
//! tested against zero with the Wilcoxon signed-rank test and the effect is their Hodges-Lehmann
//! pseudo-median. Without shared timestamps the judge falls back to Mann-Whitney with the
//! two-sample Hodges-Lehmann shift. Data that is not all positive is compared by differences,
//! and the relative effect is taken against the baseline's median.

use super::{
    Aggregate, AggregateValue, CheckResult, CheckSpec, Direction, Effect, Evidence,
    InconclusiveCause, Interval, IntervalScale, PAIR_TOLERANCE_SECONDS, Point, SideData,
    SideSummary, Thresholds, Verdict, bad_alternative, bad_word, beyond, cause_of, fmt_num, fmt_p,
    significance_level, significant_clause,
};
use crate::stats::{
    self, MwMethod, SignedRankMethod, StatsError, hodges_lehmann, hodges_lehmann_ci, mann_kendall,
    mann_whitney_u, signed_rank_test_sorted, theil_sen, walsh_shift_ci_sorted,
};

/// The fewest points per side any relative or trend test is run on, whatever `min_samples` says.
const MIN_POINTS_FLOOR: usize = 3;

/// The most points a trend check judges. The estimate takes O(n log n) time and O(n) memory
/// (about 0.25 s and 20 MB at this size on a loaded 2-core machine, see BENCHMARKS.md); a window
/// of more points is inconclusive with the reason instead of holding an analysis for seconds.
/// 20,000 one-minute points are two weeks.
pub const MAX_TREND_POINTS: usize = 20_000;

/// Finite points sorted by time (points without a finite time keep their order at the end),
/// and how many were dropped as NaN/inf.
pub(super) fn clean(points: &[Point]) -> (Vec<Point>, usize) {
    let mut kept: Vec<Point> = points.iter().copied().filter(|p| p.v.is_finite()).collect();
    let dropped = points.len() - kept.len();
    let by_time = |a: &Point, b: &Point| match (a.t.is_finite(), b.t.is_finite()) {
        (true, true) => a.t.total_cmp(&b.t),
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => std::cmp::Ordering::Equal,
    };
    // Range queries return points in time order: then the (stable) sort would change nothing.
    if !kept.is_sorted_by(|a, b| by_time(a, b).is_le()) {
        kept.sort_by(by_time);
    }
    (kept, dropped)
}

/// Mean, median, p90 and p99 of the usable values.
pub(super) fn summarize(values: &[f64], dropped: usize) -> SideSummary {
    let mut s = SideSummary {
        points: values.len(),
        dropped,
        ..SideSummary::default()
    };
    if values.is_empty() {
        return s;
    }
    s.mean = Some(values.iter().sum::<f64>() / values.len() as f64);
    if let Ok(q) = stats::quantiles(values, &[0.5, 0.9, 0.99]) {
        s.median = q.first().copied();
        s.p90 = q.get(1).copied();
        s.p99 = q.get(2).copied();
    }
    s
}

/// Summary of the side a check does not judge (shown for context only).
fn context_summary(side: &SideData) -> SideSummary {
    match side {
        SideData::Values(points) => {
            let (kept, dropped) = clean(points);
            summarize(&kept.iter().map(|p| p.v).collect::<Vec<_>>(), dropped)
        }
        SideData::Counts(points) => super::counts::summarize_counts(points).0,
    }
}

fn no_data_reason(side: &str, dropped: usize) -> String {
    if dropped == 0 {
        format!("no data: the {side} has no points")
    } else {
        format!("no data: the {side} has no usable points ({dropped} dropped as NaN/inf)")
    }
}

fn finish(spec: &CheckSpec, verdict: Verdict, reason: String, evidence: Evidence) -> CheckResult {
    CheckResult {
        name: spec.name.to_string(),
        verdict,
        reason,
        evidence,
    }
}

fn inconclusive(
    spec: &CheckSpec,
    cause: InconclusiveCause,
    reason: String,
    evidence: Evidence,
) -> CheckResult {
    finish(
        spec,
        Verdict::inconclusive(cause, reason.clone()),
        reason,
        evidence,
    )
}

/// An inconclusive result for a test that could not be computed: `what` ("the test", "the
/// trend") and the error, whose cause decides the verdict's cause.
fn not_computed(spec: &CheckSpec, what: &str, err: StatsError, evidence: Evidence) -> CheckResult {
    let cause = cause_of(&err);
    let reason = match cause {
        InconclusiveCause::NonFinite => {
            format!("the values overflow: {what} could not be computed: {err}")
        }
        _ => format!("{what} could not be computed: {err}"),
    };
    inconclusive(spec, cause, reason, evidence)
}

/// The largest magnitude a value compared by differences may have: differences of two such
/// values, and sums of two differences (Walsh averages), stay finite.
const LARGEST_DIFFERENCED: f64 = f64::MAX / 4.0;

/// Why values cannot be compared without overflowing, if they cannot: positive values are
/// compared by ratios (their largest ratio must be finite), others by differences (no
/// magnitude above [`LARGEST_DIFFERENCED`]).
fn overflow_problem(values: &[&[f64]]) -> Option<String> {
    if values.iter().all(|v| v.is_empty()) {
        return None;
    }
    let all = || values.iter().flat_map(|v| v.iter().copied());
    let min = all().fold(f64::INFINITY, f64::min);
    let max = all().fold(f64::NEG_INFINITY, f64::max);
    if min > 0.0 {
        let ratio = max / min;
        return (!ratio.is_finite()).then(|| {
            format!(
                "the values overflow: the largest value over the smallest ({} / {}) is beyond \
                 the largest number",
                fmt_num(max),
                fmt_num(min)
            )
        });
    }
    let largest = max.abs().max(min.abs());
    (largest > LARGEST_DIFFERENCED).then(|| {
        format!(
            "the values overflow: a value of magnitude {} is beyond {}, where differences of \
             the values overflow",
            fmt_num(largest),
            fmt_num(LARGEST_DIFFERENCED)
        )
    })
}

/// Baseline/canary value pairs whose timestamps agree within [`PAIR_TOLERANCE_SECONDS`].
/// Both inputs are sorted by time (as `clean` leaves them).
pub(super) fn pair_by_time(b: &[Point], c: &[Point]) -> Vec<(f64, f64)> {
    let mut pairs = Vec::with_capacity(b.len().min(c.len()));
    let (mut i, mut j) = (0, 0);
    while i < b.len() && j < c.len() {
        let (tb, tc) = (b[i].t, c[j].t);
        if !tb.is_finite() || !tc.is_finite() {
            break;
        }
        if (tb - tc).abs() <= PAIR_TOLERANCE_SECONDS {
            pairs.push((b[i].v, c[j].v));
            i += 1;
            j += 1;
        } else if tb < tc {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

/// Relative effect (canary − baseline) / |reference| with the conventions for a zero reference:
/// any change from zero is infinitely large, no change is none.
fn relative_to(difference: f64, reference: f64) -> f64 {
    if reference != 0.0 {
        difference / reference.abs()
    } else if difference > 0.0 {
        f64::INFINITY
    } else if difference < 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    }
}

fn pct(rel: f64) -> String {
    if rel.is_infinite() {
        return if rel > 0.0 { "+inf%" } else { "-inf%" }.to_string();
    }
    format!("{:+.1}%", rel * 100.0)
}

/// Median of finite values (NaN for none): the middle order statistics in total order, found
/// by selection rather than a full sort (the same values bit for bit).
fn median(mut v: Vec<f64>) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let (below, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let mid = *mid;
    if n % 2 == 1 {
        mid
    } else {
        // The largest of the lower half is the order statistic just below the middle.
        let before = below.iter().copied().max_by(f64::total_cmp).unwrap_or(mid);
        (before + mid) / 2.0
    }
}

/// What the comparison measured, before the decision.
struct Measured {
    p_value: f64,
    /// (canary − baseline) / |baseline| on the metric's own scale.
    relative: f64,
    effect: Effect,
    test: String,
    comparison: String,
}

pub(super) fn relative(
    spec: &CheckSpec,
    tolerance: f64,
    b_points: &[Point],
    c_points: &[Point],
    thresholds: Thresholds,
) -> CheckResult {
    let (b, b_dropped) = clean(b_points);
    let (c, c_dropped) = clean(c_points);
    let bv: Vec<f64> = b.iter().map(|p| p.v).collect();
    let cv: Vec<f64> = c.iter().map(|p| p.v).collect();
    let mut evidence = Evidence {
        baseline: summarize(&bv, b_dropped),
        canary: summarize(&cv, c_dropped),
        effect: None,
        p_value: None,
        test: None,
        comparison: None,
        thresholds,
        family: None,
    };
    if bv.is_empty() {
        let reason = no_data_reason("baseline", b_dropped);
        return inconclusive(spec, InconclusiveCause::NoData, reason, evidence);
    }
    if cv.is_empty() {
        let reason = no_data_reason("canary", c_dropped);
        return inconclusive(spec, InconclusiveCause::NoData, reason, evidence);
    }
    let need = spec.min_samples.max(MIN_POINTS_FLOOR);
    for (side, n) in [("baseline", bv.len()), ("canary", cv.len())] {
        if n < need {
            let reason = format!("too few points: the {side} has {n}, needs at least {need}");
            return inconclusive(spec, InconclusiveCause::TooFew, reason, evidence);
        }
    }
    if let Some(reason) = overflow_problem(&[&bv, &cv]) {
        return inconclusive(spec, InconclusiveCause::NonFinite, reason, evidence);
    }
    let baseline_median = evidence.baseline.median.unwrap_or(f64::NAN);
    let pairs = pair_by_time(&b, &c);
    let paired = pairs.len() >= need && pairs.len() * 5 >= bv.len().min(cv.len()) * 4;
    let measured = if paired {
        measure_paired(spec, &pairs, baseline_median)
    } else {
        let why = format!(
            "{} of {} timestamps matched",
            pairs.len(),
            bv.len().min(cv.len())
        );
        measure_unpaired(spec, &bv, &cv, baseline_median, &why)
    };
    let m = match measured {
        Ok(m) => m,
        Err(err) => return not_computed(spec, "the test", err, evidence),
    };
    evidence.p_value = Some(m.p_value);
    evidence.effect = Some(m.effect);
    evidence.test = Some(m.test);
    evidence.comparison = Some(m.comparison);

    let alpha = significance_level(spec);
    let significant = m.p_value < alpha;
    let too_far = beyond(spec.direction, m.relative, tolerance);
    let effect = format!("canary {} vs baseline", pct(m.relative));
    // Each sentence formats only the numbers it shows (float formatting is most of its cost).
    let tol = || pct(tolerance).trim_start_matches('+').to_string();
    let (verdict, reason) = if significant && too_far {
        (
            Verdict::Fail,
            format!(
                "{effect}: beyond the {} tolerance {} baseline, {}",
                tol(),
                bad_word(spec.direction),
                significant_clause(m.p_value, alpha)
            ),
        )
    } else if !significant {
        (
            Verdict::Pass,
            format!(
                "{effect}: no significant difference, p = {} ≥ {}",
                fmt_p(m.p_value),
                fmt_num(alpha)
            ),
        )
    } else {
        (
            Verdict::Pass,
            format!(
                "{effect}: significant (p = {}) but within the {} tolerance",
                fmt_p(m.p_value),
                tol()
            ),
        )
    };
    finish(spec, verdict, reason, evidence)
}

fn measure_paired(
    spec: &CheckSpec,
    pairs: &[(f64, f64)],
    baseline_median: f64,
) -> Result<Measured, StatsError> {
    let positive = pairs.iter().all(|(b, c)| *b > 0.0 && *c > 0.0);
    let d: Vec<f64> = if positive {
        pairs.iter().map(|(b, c)| (c / b).ln()).collect()
    } else {
        pairs.iter().map(|(b, c)| c - b).collect()
    };
    // Sorted once for both the signed-rank test and the Walsh averages.
    let mut sorted = d;
    sorted.sort_unstable_by(f64::total_cmp);
    let sr = signed_rank_test_sorted(&sorted, bad_alternative(spec.direction))?;
    let (est, lo, hi) = walsh_shift_ci_sorted(sorted, spec.confidence)?;
    let method = match sr.method {
        SignedRankMethod::Exact => "exact",
        SignedRankMethod::Normal => "normal approximation",
    };
    let test = format!("Wilcoxon signed-rank ({method}) with Hodges-Lehmann pseudo-median");
    if positive {
        let raw_mid = median(pairs.iter().map(|(b, c)| c - b).collect());
        let ratio = est.exp();
        Ok(Measured {
            p_value: sr.p_value,
            relative: ratio - 1.0,
            effect: Effect {
                ratio: Some(ratio),
                difference: raw_mid,
                interval: Some(Interval {
                    low: lo.exp(),
                    high: hi.exp(),
                    confidence: spec.confidence,
                    scale: IntervalScale::Ratio,
                }),
            },
            test,
            comparison: format!("paired log-ratio by timestamp, {} pairs", pairs.len()),
        })
    } else {
        let relative = relative_to(est, baseline_median);
        Ok(Measured {
            p_value: sr.p_value,
            relative,
            effect: Effect {
                ratio: (baseline_median != 0.0).then_some(1.0 + relative),
                difference: est,
                interval: Some(Interval {
                    low: lo,
                    high: hi,
                    confidence: spec.confidence,
                    scale: IntervalScale::Difference,
                }),
            },
            test,
            comparison: format!(
                "paired difference by timestamp, {} pairs (values not all positive)",
                pairs.len()
            ),
        })
    }
}

fn measure_unpaired(
    spec: &CheckSpec,
    bv: &[f64],
    cv: &[f64],
    baseline_median: f64,
    why: &str,
) -> Result<Measured, StatsError> {
    let mw = mann_whitney_u(
        cv,
        bv,
        bad_alternative(spec.direction),
        MwMethod::Auto,
        true,
    )?;
    let method = match mw.method {
        MwMethod::Exact => "exact",
        _ => "normal approximation",
    };
    let test = format!("Mann-Whitney U ({method}) with Hodges-Lehmann shift");
    let comparison = format!(
        "Hodges-Lehmann shift + Mann-Whitney, unpaired, {} vs {} points ({why})",
        bv.len(),
        cv.len()
    );
    let positive = bv.iter().chain(cv).all(|v| *v > 0.0);
    if positive {
        let lb: Vec<f64> = bv.iter().map(|v| v.ln()).collect();
        let lc: Vec<f64> = cv.iter().map(|v| v.ln()).collect();
        let shift = hodges_lehmann_ci(&lb, &lc, spec.confidence)?;
        let difference = hodges_lehmann(bv, cv)?;
        let ratio = shift.shift.exp();
        Ok(Measured {
            p_value: mw.p_value,
            relative: ratio - 1.0,
            effect: Effect {
                ratio: Some(ratio),
                difference,
                interval: Some(Interval {
                    low: shift.low.exp(),
                    high: shift.high.exp(),
                    confidence: spec.confidence,
                    scale: IntervalScale::Ratio,
                }),
            },
            test,
            comparison,
        })
    } else {
        let shift = hodges_lehmann_ci(bv, cv, spec.confidence)?;
        let relative = relative_to(shift.shift, baseline_median);
        Ok(Measured {
            p_value: mw.p_value,
            relative,
            effect: Effect {
                ratio: (baseline_median != 0.0).then_some(1.0 + relative),
                difference: shift.shift,
                interval: Some(Interval {
                    low: shift.low,
                    high: shift.high,
                    confidence: spec.confidence,
                    scale: IntervalScale::Difference,
                }),
            },
            test,
            comparison,
        })
    }
}

/// The value of `aggregate` over the finite values of points sorted by time.
fn aggregate_of(aggregate: Aggregate, v: &[f64]) -> Result<f64, StatsError> {
    let empty = || StatsError::TooFew {
        what: "aggregate",
        needed: 1,
        got: 0,
    };
    match aggregate {
        Aggregate::Mean => {
            if v.is_empty() {
                Err(empty())
            } else {
                Ok(v.iter().sum::<f64>() / v.len() as f64)
            }
        }
        Aggregate::Median => stats::quantile(v, 0.5),
        Aggregate::Quantile(q) => stats::quantile(v, q),
        Aggregate::Min => v.iter().copied().reduce(f64::min).ok_or_else(empty),
        Aggregate::Max => v.iter().copied().reduce(f64::max).ok_or_else(empty),
        Aggregate::Last => v.last().copied().ok_or_else(empty),
    }
}

fn aggregate_name(aggregate: Aggregate) -> String {
    match aggregate {
        Aggregate::Mean => "mean".into(),
        Aggregate::Median => "median".into(),
        Aggregate::Min => "min".into(),
        Aggregate::Max => "max".into(),
        Aggregate::Last => "last value".into(),
        Aggregate::Quantile(q) => format!("p{}", fmt_num(q * 100.0)),
    }
}

/// Absolute checks are a service-level limit, not a hypothesis test: the canary's aggregate over
/// the window is compared with the threshold directly (`Either` fails on any departure).
/// They still need `min_samples` finite points (at least one); the baseline is summarised for
/// context only.
pub(super) fn absolute(
    spec: &CheckSpec,
    threshold: f64,
    aggregate: Aggregate,
    baseline: &SideData,
    c_points: &[Point],
    thresholds: Thresholds,
) -> CheckResult {
    let (c, c_dropped) = clean(c_points);
    let cv: Vec<f64> = c.iter().map(|p| p.v).collect();
    // The baseline's values are cleaned once, for both its summary and its aggregate.
    let (baseline_summary, bv) = match baseline {
        SideData::Values(points) => {
            let (b, dropped) = clean(points);
            let bv: Vec<f64> = b.iter().map(|p| p.v).collect();
            (summarize(&bv, dropped), Some(bv))
        }
        SideData::Counts(_) => (context_summary(baseline), None),
    };
    let mut evidence = Evidence {
        baseline: baseline_summary,
        canary: summarize(&cv, c_dropped),
        effect: None,
        p_value: None,
        test: None,
        comparison: None,
        thresholds,
        family: None,
    };
    if cv.is_empty() {
        let reason = no_data_reason("canary", c_dropped);
        return inconclusive(spec, InconclusiveCause::NoData, reason, evidence);
    }
    let need = spec.min_samples.max(1);
    if cv.len() < need {
        let reason = format!(
            "too few points: the canary has {}, needs at least {need}",
            cv.len()
        );
        return inconclusive(spec, InconclusiveCause::TooFew, reason, evidence);
    }
    let value = match aggregate_of(aggregate, &cv) {
        Ok(v) => v,
        Err(err) => return not_computed(spec, "the aggregate", err, evidence),
    };
    let name = aggregate_name(aggregate);
    evidence.canary.aggregate = Some(AggregateValue { aggregate, value });
    if let Some(bv) = &bv
        && let Ok(bvalue) = aggregate_of(aggregate, bv)
    {
        evidence.baseline.aggregate = Some(AggregateValue {
            aggregate,
            value: bvalue,
        });
    }
    evidence.effect = Some(Effect {
        // The ratio is shown, never judged: one that overflows (a threshold near 0) is left out,
        // as for a zero threshold, and the verdict rests on the difference.
        ratio: (threshold != 0.0)
            .then_some(value / threshold)
            .filter(|r| r.is_finite()),
        difference: value - threshold,
        interval: None,
    });
    evidence.test = Some("none: the aggregate is compared with the threshold".into());
    evidence.comparison = Some(format!(
        "canary {name} of {} points vs threshold {}",
        cv.len(),
        fmt_num(threshold)
    ));
    let bad = beyond(spec.direction, value - threshold, 0.0);
    let (verdict, reason) = if bad {
        (
            Verdict::Fail,
            format!(
                "canary {name} {} is {} the threshold {}",
                fmt_num(value),
                bad_word(spec.direction),
                fmt_num(threshold)
            ),
        )
    } else {
        (
            Verdict::Pass,
            format!(
                "canary {name} {} is within the threshold {}",
                fmt_num(value),
                fmt_num(threshold)
            ),
        )
    };
    finish(spec, verdict, reason, evidence)
}

/// Minutes since the first point; when any time is missing, the point index is taken as minutes.
fn minutes(points: &[Point]) -> (Vec<f64>, bool) {
    if points.iter().all(|p| p.t.is_finite()) {
        let t0 = points.first().map_or(0.0, |p| p.t);
        (points.iter().map(|p| (p.t - t0) / 60.0).collect(), true)
    } else {
        ((0..points.len()).map(|i| i as f64).collect(), false)
    }
}

/// Trend checks judge the canary's own slope: Theil-Sen slope per minute with its interval,
/// Mann-Kendall for significance. Fail when the slope is beyond the limit in the bad direction
/// and Mann-Kendall finds the trend significant in that direction.
pub(super) fn trend(
    spec: &CheckSpec,
    max_slope: f64,
    baseline: &SideData,
    c_points: &[Point],
    thresholds: Thresholds,
) -> CheckResult {
    let (c, c_dropped) = clean(c_points);
    let cv: Vec<f64> = c.iter().map(|p| p.v).collect();
    let mut evidence = Evidence {
        baseline: context_summary(baseline),
        canary: summarize(&cv, c_dropped),
        effect: None,
        p_value: None,
        test: None,
        comparison: None,
        thresholds,
        family: None,
    };
    if cv.is_empty() {
        let reason = no_data_reason("canary", c_dropped);
        return inconclusive(spec, InconclusiveCause::NoData, reason, evidence);
    }
    let need = spec.min_samples.max(MIN_POINTS_FLOOR);
    if cv.len() < need {
        let reason = format!(
            "too few points: the canary has {}, needs at least {need}",
            cv.len()
        );
        return inconclusive(spec, InconclusiveCause::TooFew, reason, evidence);
    }
    if cv.len() > MAX_TREND_POINTS {
        let reason = format!(
            "too many points for a trend: the canary has {}, at most {MAX_TREND_POINTS} are \
             judged (a longer step or a shorter window gives fewer)",
            cv.len()
        );
        return inconclusive(spec, InconclusiveCause::TooMany, reason, evidence);
    }
    if let SideData::Values(points) = baseline {
        let (b, _) = clean(points);
        if (MIN_POINTS_FLOOR..=MAX_TREND_POINTS).contains(&b.len()) {
            let (bt, _) = minutes(&b);
            let bv: Vec<f64> = b.iter().map(|p| p.v).collect();
            evidence.baseline.slope_per_minute =
                theil_sen(&bt, &bv, spec.confidence).ok().map(|s| s.slope);
        }
    }
    let (t, timed) = minutes(&c);
    let computed = theil_sen(&t, &cv, spec.confidence)
        .and_then(|ts| mann_kendall(&t, &cv, bad_alternative(spec.direction)).map(|mk| (ts, mk)));
    let (ts, mk) = match computed {
        Ok(x) => x,
        Err(err) => return not_computed(spec, "the trend", err, evidence),
    };
    evidence.canary.slope_per_minute = Some(ts.slope);
    evidence.p_value = Some(mk.p_value);
    evidence.effect = Some(Effect {
        ratio: None,
        difference: ts.slope,
        interval: Some(Interval {
            low: ts.low,
            high: ts.high,
            confidence: spec.confidence,
            scale: IntervalScale::SlopePerMinute,
        }),
    });
    evidence.test = Some("Theil-Sen slope with Mann-Kendall trend test".into());
    evidence.comparison = Some(format!(
        "canary slope per minute over {} points{}",
        cv.len(),
        if timed {
            ""
        } else {
            " (no timestamps: one point per minute assumed)"
        }
    ));
    let alpha = significance_level(spec);
    let significant = mk.p_value < alpha;
    let too_steep = beyond(spec.direction, ts.slope, max_slope);
    let slope = format!("canary slope {} per minute", fmt_num(ts.slope));
    let limit = fmt_num(max_slope);
    let p = fmt_p(mk.p_value);
    let (verdict, reason) = if significant && too_steep {
        let word = match spec.direction {
            Direction::HigherIsWorse => "above",
            Direction::LowerIsWorse => "below minus",
            Direction::Either => "beyond ±",
        };
        (
            Verdict::Fail,
            format!(
                "{slope} is {word} the limit {limit}, trend {}",
                significant_clause(mk.p_value, alpha)
            ),
        )
    } else if !significant {
        (
            Verdict::Pass,
            format!(
                "{slope}: no significant trend, p = {p} ≥ {}",
                fmt_num(alpha)
            ),
        )
    } else {
        (
            Verdict::Pass,
            format!("{slope}: significant trend (p = {p}) but within the limit {limit}"),
        )
    };
    finish(spec, verdict, reason, evidence)
}
