//! What every check kind shares, so each kind's file holds only its own decision: the summary of
//! each side after dropping unusable points (values or summed counts), the evidence and result
//! builders, the inconclusive verdicts for thin or unusable data (no data, too few points or
//! events, counts beyond exact arithmetic, a test that could not be computed, with their
//! [`InconclusiveCause`]), the decision's vocabulary (the significance level, the bad direction
//! and its words, the closing "p = ... < ..." clause) and the number formats of reasons. Pure;
//! the last guard on non-finite numbers is `finite`, the verdict rules are in the kinds' files.

use statrs::distribution::{ContinuousCDF, Normal};

use super::{
    CheckResult, CheckSpec, CountPoint, Direction, Evidence, InconclusiveCause, Point, SideData,
    SideSummary, Thresholds, Verdict,
};
use crate::stats::{self, Alternative, Counts, StatsError};

/// The fewest points per side any relative or trend test is run on, whatever `min_samples` says.
pub(super) const MIN_POINTS_FLOOR: usize = 3;

/// The most events a side's summed counts may hold: 2^53, the largest count an f64 holds
/// exactly. Beyond it whole events cannot be counted (nor two sides' counts added in a u64), so
/// a window that sums to more is inconclusive rather than judged on rounded numbers.
pub const MAX_EXACT_EVENTS: f64 = 9_007_199_254_740_992.0;

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

/// Sum the usable count points of one side: `(summary, errors, total)`. A point is usable when
/// both numbers are finite, neither is negative and errors ≤ total; others are dropped and
/// counted.
pub(super) fn summarize_counts(points: &[CountPoint]) -> (SideSummary, f64, f64) {
    let mut errors = 0.0;
    let mut total = 0.0;
    let mut used = 0;
    for p in points {
        let ok = p.errors.is_finite()
            && p.total.is_finite()
            && p.errors >= 0.0
            && p.total >= 0.0
            && p.errors <= p.total;
        if ok {
            errors += p.errors;
            total += p.total;
            used += 1;
        }
    }
    let summary = SideSummary {
        points: used,
        dropped: points.len() - used,
        errors: Some(errors),
        total: Some(total),
        rate: (total > 0.0).then(|| errors / total),
        ..SideSummary::default()
    };
    (summary, errors, total)
}

/// Summary of the side a check does not judge (shown for context only).
pub(super) fn context_summary(side: &SideData) -> SideSummary {
    match side {
        SideData::Values(points) => {
            let (kept, dropped) = clean(points);
            summarize(&kept.iter().map(|p| p.v).collect::<Vec<_>>(), dropped)
        }
        SideData::Counts(points) => summarize_counts(points).0,
    }
}

/// Evidence with the two sides' summaries and nothing measured yet.
pub(super) fn evidence_of(
    baseline: SideSummary,
    canary: SideSummary,
    thresholds: Thresholds,
) -> Evidence {
    Evidence {
        baseline,
        canary,
        effect: None,
        p_value: None,
        test: None,
        comparison: None,
        thresholds,
        family: None,
        notes: Vec::new(),
        decision: None,
    }
}

/// The result of a check: its verdict, the sentence saying why and the evidence.
pub(super) fn finish(
    spec: &CheckSpec,
    verdict: Verdict,
    reason: String,
    evidence: Evidence,
) -> CheckResult {
    CheckResult {
        name: spec.name.to_string(),
        verdict,
        reason,
        evidence,
    }
}

/// An inconclusive result with its cause; the reason is also the result's sentence.
pub(super) fn inconclusive(
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

/// An inconclusive result decided before any data was looked at (a setting the judge cannot
/// use, a check that is not applicable): the evidence holds the thresholds only.
pub(super) fn inconclusive_result(
    spec: &CheckSpec,
    thresholds: Thresholds,
    cause: InconclusiveCause,
    reason: String,
) -> CheckResult {
    CheckResult {
        name: spec.name.to_string(),
        verdict: Verdict::inconclusive(cause, reason.clone()),
        reason,
        evidence: evidence_of(SideSummary::default(), SideSummary::default(), thresholds),
    }
}

/// An inconclusive result for a test that could not be computed: `what` ("the test", "the
/// trend") and the error, whose cause decides the verdict's cause.
pub(super) fn not_computed(
    spec: &CheckSpec,
    what: &str,
    err: StatsError,
    evidence: Evidence,
) -> CheckResult {
    let cause = cause_of(&err);
    let reason = match cause {
        InconclusiveCause::NonFinite => {
            format!("the values overflow: {what} could not be computed: {err}")
        }
        _ => format!("{what} could not be computed: {err}"),
    };
    inconclusive(spec, cause, reason, evidence)
}

/// The cause of an inconclusive verdict for a test that could not be computed.
pub(super) fn cause_of(err: &StatsError) -> InconclusiveCause {
    match err {
        StatsError::NonFinite { .. } => InconclusiveCause::NonFinite,
        StatsError::TooFew { .. } => InconclusiveCause::TooFew,
        StatsError::Invalid(_) => InconclusiveCause::Untestable,
    }
}

/// The reason of a values side with no usable points.
pub(super) fn no_data_reason(side: &str, dropped: usize) -> String {
    if dropped == 0 {
        format!("no data: the {side} has no points")
    } else {
        format!("no data: the {side} has no usable points ({dropped} dropped as NaN/inf)")
    }
}

/// Inconclusive reasons for a side with no events or fewer than needed.
pub(super) fn thin(
    side: &str,
    summary: &SideSummary,
    total: f64,
    need: f64,
) -> Option<(InconclusiveCause, String)> {
    if total <= 0.0 {
        return Some((
            InconclusiveCause::NoData,
            if summary.dropped == 0 {
                format!("no data: the {side} has no events")
            } else {
                format!(
                    "no data: the {side} has no events ({} points dropped as NaN/inf or impossible)",
                    summary.dropped
                )
            },
        ));
    }
    (total < need).then(|| {
        let reason = format!(
            "too few events: the {side} has {}, needs at least {}",
            fmt_num(total),
            fmt_num(need)
        );
        (InconclusiveCause::TooFew, reason)
    })
}

/// The reason a side's summed counts cannot be computed with: a sum that overflowed to
/// infinity, or more events than [`MAX_EXACT_EVENTS`].
pub(super) fn counts_overflow(
    side: &str,
    errors: f64,
    total: f64,
) -> Option<(InconclusiveCause, String)> {
    let too_big = |v: f64| !v.is_finite() || v > MAX_EXACT_EVENTS;
    let (what, v) = if too_big(total) {
        ("total", total)
    } else if too_big(errors) {
        ("errors", errors)
    } else {
        return None;
    };
    let reason = format!(
        "the error counts overflow: the {side}'s summed {what} is {}, beyond the {} events \
         (2^53) that can be counted exactly",
        fmt_num(v),
        fmt_num(MAX_EXACT_EVENTS)
    );
    Some((InconclusiveCause::NonFinite, reason))
}

/// Round summed counts (Prometheus increases are fractional) to whole events.
pub(super) fn whole(errors: f64, total: f64) -> Counts {
    let total = total.round().max(0.0) as u64;
    let errors = (errors.round().max(0.0) as u64).min(total);
    Counts { errors, total }
}

/// Wilson score interval for a proportion.
pub(super) fn wilson(errors: f64, total: f64, z: f64) -> (f64, f64) {
    let p = errors / total;
    let z2 = z * z;
    let denom = 1.0 + z2 / total;
    let centre = (p + z2 / (2.0 * total)) / denom;
    let half = z * (p * (1.0 - p) / total + z2 / (4.0 * total * total)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The standard normal quantile of a two-sided interval at `confidence`.
pub(super) fn z_for(confidence: f64) -> f64 {
    Normal::standard().inverse_cdf(1.0 - (1.0 - confidence) / 2.0)
}

/// The p-value below which a test counts as evidence that the canary is worse.
///
/// `confidence` is the two-sided confidence of the effect's interval that the evidence reports,
/// and a verdict agrees with that interval: a directional check (higher or lower is worse) needs
/// its one-sided p-value below (1 − confidence) / 2, which is the interval at `confidence`
/// lying wholly on the bad side of "no change"; `Either` needs its two-sided p-value below
/// 1 − confidence. At the default 0.99 a healthy canary trips a directional check at most 0.5%
/// of the time. Checks judged together ([`judge_analysis`](super::judge_analysis)) share this level as a family through
/// Holm's correction, so a whole analysis alarms at most about as often as one check (see
/// BENCHMARKS.md, "Judge").
pub(super) fn significance_level(spec: &CheckSpec) -> f64 {
    match spec.direction {
        Direction::Either => 1.0 - spec.confidence,
        Direction::HigherIsWorse | Direction::LowerIsWorse => (1.0 - spec.confidence) / 2.0,
    }
}

/// The closing clause of a failing reason: "p = 0.0012 < 0.005". Every kind ends its `Fail`
/// reason with it, so the family-wise correction can restate it after adjusting the threshold.
pub(super) fn significant_clause(p: f64, alpha: f64) -> String {
    format!("p = {} < {}", fmt_p(p), fmt_num(alpha))
}

/// The alternative hypothesis that corresponds to "the canary is worse".
pub(super) fn bad_alternative(direction: Direction) -> Alternative {
    match direction {
        Direction::HigherIsWorse => Alternative::Greater,
        Direction::LowerIsWorse => Alternative::Less,
        Direction::Either => Alternative::TwoSided,
    }
}

/// Whether `effect` (canary minus reference, on whatever scale) is beyond `limit` in the bad
/// direction.
pub(super) fn beyond(direction: Direction, effect: f64, limit: f64) -> bool {
    match direction {
        Direction::HigherIsWorse => effect > limit,
        Direction::LowerIsWorse => effect < -limit,
        Direction::Either => effect.abs() > limit,
    }
}

/// The word for the bad side, for reasons ("above", "below", "away from").
pub(super) fn bad_word(direction: Direction) -> &'static str {
    match direction {
        Direction::HigherIsWorse => "above",
        Direction::LowerIsWorse => "below",
        Direction::Either => "away from",
    }
}

/// Format a p-value for a sentence.
pub(super) fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// Format a number compactly for a sentence.
pub(super) fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        "0".to_string()
    } else if x.abs() >= 1e5 || x.abs() < 1e-3 {
        format!("{x:.3e}")
    } else {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// Percentage points, for sentences.
pub(super) fn pp(rate: f64) -> String {
    format!("{:.3}%", rate * 100.0)
}

/// Average ranks (ties share their mean rank), 1-based.
pub(super) fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean_rank;
        }
        i = j + 1;
    }
    r
}
