//! The trend check: the canary's own slope per minute (Theil-Sen, with its interval) against a
//! limit, Mann-Kendall for significance; it fails when the slope is beyond the limit in the bad
//! direction and the trend is significant in that direction (memory or queue depth growing). The
//! baseline's slope is shown for context only. At most [`MAX_TREND_POINTS`] points are judged.
//! Pure.

use super::summary::{
    MIN_POINTS_FLOOR, bad_alternative, beyond, clean, context_summary, evidence_of, finish,
    fmt_num, fmt_p, inconclusive, no_data_reason, not_computed, significance_level,
    significant_clause, summarize,
};
use super::{
    CheckResult, CheckSpec, Direction, Effect, InconclusiveCause, Interval, IntervalScale, Point,
    SideData, Thresholds, Verdict,
};
use crate::stats::{mann_kendall, theil_sen};

/// The most points a trend check judges. The estimate takes O(n log n) time and O(n) memory
/// (about 0.25 s and 20 MB at this size on a loaded 2-core machine, see BENCHMARKS.md); a window
/// of more points is inconclusive with the reason instead of holding an analysis for seconds.
/// 20,000 one-minute points are two weeks.
pub const MAX_TREND_POINTS: usize = 20_000;

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
pub(super) fn judge(
    spec: &CheckSpec,
    max_slope: f64,
    baseline: &SideData,
    c_points: &[Point],
    thresholds: Thresholds,
) -> CheckResult {
    let (c, c_dropped) = clean(c_points);
    let cv: Vec<f64> = c.iter().map(|p| p.v).collect();
    let mut evidence = evidence_of(
        context_summary(baseline),
        summarize(&cv, c_dropped),
        thresholds,
    );
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
