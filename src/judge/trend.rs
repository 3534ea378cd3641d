//! The trend check: the canary's own slope per minute (Theil-Sen, with its interval) against a
//! limit, Mann-Kendall for significance; it fails when the slope is beyond the limit in the bad
//! direction and the trend is significant in that direction (memory or queue depth growing),
//! passes only when the interval's bound on the bad side is within the limit, and is otherwise
//! inconclusive ([`InconclusiveCause::NotShown`], see `decision`). The baseline's slope is shown
//! for context only. At most [`MAX_TREND_POINTS`] points are judged. Pure.
//!
//! **Dependence.** Mann-Kendall's variance and Sen's interval assume independent points; memory
//! that wanders with load for minutes makes 30 points worth far fewer, and a flat but correlated
//! series then looks like a trend. Following Hamed and Rao (1998) and Yue and Wang (2004), the
//! variance of Kendall's S is multiplied by `n / n*`, the ratio of the long-run variance to the
//! variance of the detrended series (here of the ranks of the residuals from the Theil-Sen line,
//! so spikes weigh as ranks do), estimated by [`crate::stats::long_run_detrended`] as the
//! relative check's is, with the bias correction of a fitted line: the z statistic is divided
//! by its square root and referred to Student's t at the long-run degrees of freedom, and Sen's
//! interval is widened to the same standard.

use super::decision::{decide, not_shown_sentence};
use super::summary::{
    MIN_POINTS_FLOOR, bad_alternative, clean, context_summary, evidence_of, finish, fmt_num, fmt_p,
    inconclusive, no_data_reason, not_computed, ranks, significance_level, significant_clause,
    summarize,
};
use super::{
    CheckResult, CheckSpec, Direction, Effect, InconclusiveCause, Interval, IntervalScale, Point,
    SideData, Thresholds,
};
use super::{Decision, DecisionRule, DecisionScale};
use crate::stats::{
    Alternative, StatsError, TheilSen, long_run_detrended, mann_kendall, theil_sen,
};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

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
    let computed = corrected(spec, &t, &cv);
    let (ts, p_value, inflation) = match computed {
        Ok(x) => x,
        Err(err) => return not_computed(spec, "the trend", err, evidence),
    };
    evidence.canary.slope_per_minute = Some(ts.slope);
    evidence.p_value = Some(p_value);
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
    evidence.test = Some(format!(
        "Theil-Sen slope with Mann-Kendall trend test, variance corrected for serial \
         correlation ({inflation})"
    ));
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
    let significant = p_value < alpha;
    let decided = decide(
        spec.direction,
        ts.slope,
        (ts.low, ts.high),
        significant,
        max_slope,
    );
    evidence.decision = Some(Decision {
        rule: decided.rule,
        bound: decided.bound,
        limit: match spec.direction {
            Direction::LowerIsWorse => -max_slope,
            Direction::Either if decided.bound < 0.0 => -max_slope,
            _ => max_slope,
        },
        scale: DecisionScale::SlopePerMinute,
    });
    let slope = format!("canary slope {} per minute", fmt_num(ts.slope));
    let limit = fmt_num(max_slope);
    let p = fmt_p(p_value);
    let conf = fmt_num(spec.confidence * 100.0);
    let reason = match decided.rule {
        DecisionRule::ShownBeyond => {
            let word = match spec.direction {
                Direction::HigherIsWorse => "above",
                Direction::LowerIsWorse => "below minus",
                Direction::Either => "beyond ±",
            };
            format!(
                "{slope} is {word} the limit {limit}, trend {}",
                significant_clause(p_value, alpha)
            )
        }
        DecisionRule::ShownWithin => format!(
            "{slope}: within the limit {limit}, shown at {conf}% (the bound is {}; p = {p})",
            fmt_num(decided.bound)
        ),
        DecisionRule::NotShown | DecisionRule::Observed => {
            let what = match spec.direction {
                Direction::HigherIsWorse => format!("a slope below {limit} per minute"),
                Direction::LowerIsWorse => format!("a slope above -{limit} per minute"),
                Direction::Either => format!("a slope within ±{limit} per minute"),
            };
            format!(
                "{slope}: {}; p = {p}",
                not_shown_sentence(
                    cv.len(),
                    &what,
                    spec.confidence,
                    &format!("{} per minute", fmt_num(decided.bound))
                )
            )
        }
    };
    finish(spec, decided.verdict(&reason), reason, evidence)
}

/// Theil-Sen's slope with its interval and Mann-Kendall's p-value, both with the variance of
/// Kendall's S multiplied by the long-run inflation of the detrended ranks; and a sentence
/// saying how much that was.
fn corrected(
    spec: &CheckSpec,
    t: &[f64],
    y: &[f64],
) -> Result<(TheilSen, f64, String), StatsError> {
    let alternative = bad_alternative(spec.direction);
    let plain = theil_sen(t, y, spec.confidence)?;
    let mk = mann_kendall(t, y, alternative)?;
    let residuals: Vec<f64> = t.iter().zip(y).map(|(t, y)| y - plain.slope * t).collect();
    // A perfect line leaves constant residuals: nothing to correct for.
    // Where the long-run variance is floored at the i.i.d. one (no sign of positive
    // dependence), Kendall's S keeps its known variance, referred to Student's t at the degrees
    // of freedom the AR(1) factor's uncertainty alone leaves: a window of a ρ 0.5 series can
    // show no dependence by chance, and judged as independent (infinite df) 1.0-1.1% of flat
    // series failed at the one-sided 0.5% (0.64% now). Not the full long-run df: those measure
    // the Newey-West estimate of an inflation that is not applied (a sawtooth's wide lag gave
    // 1.9 df to 15 points and an unbounded interval).
    let (inflation, df) = match long_run_detrended(&ranks(&residuals)) {
        Ok(lr) if lr.long_run_variance > lr.variance => (lr.long_run_variance / lr.variance, lr.df),
        Ok(lr) => (1.0, lr.dependence_df),
        Err(_) => (1.0, f64::INFINITY),
    };
    let normal = Normal::standard();
    // Mann-Kendall's z from its p-value, deflated, referred to Student's t at the long-run df.
    let z = match alternative {
        Alternative::Greater => normal.inverse_cdf(1.0 - mk.p_value),
        Alternative::Less => -normal.inverse_cdf(mk.p_value),
        Alternative::TwoSided => normal.inverse_cdf(1.0 - mk.p_value / 2.0),
    } / inflation.sqrt();
    let student = (df.is_finite())
        .then(|| StudentsT::new(0.0, 1.0, df).ok())
        .flatten();
    let sf = |z: f64| match &student {
        Some(d) => d.sf(z),
        None => normal.sf(z),
    };
    let p_value = match alternative {
        Alternative::TwoSided => (2.0 * sf(z.abs())).min(1.0),
        _ => sf(z),
    };
    if p_value.is_nan() {
        return Err(StatsError::NonFinite {
            what: "trend p-value",
        });
    }
    // Sen's interval at the confidence whose normal quantile is t(df)'s at the check's
    // confidence, times the inflation's square root.
    let two_sided = (1.0 + spec.confidence) / 2.0;
    let quantile = match &student {
        Some(d) => d.inverse_cdf(two_sided),
        None => normal.inverse_cdf(two_sided),
    } * inflation.sqrt();
    // Where that confidence is beyond what n points' ranks resolve, Sen's interval is the
    // range of the pairwise slopes: the true slope lies beyond the steepest pairwise slope only
    // if every pair of residuals is ordered against it, a chance of 1/n! for independent points.
    let wide = (2.0 * normal.cdf(quantile) - 1.0).clamp(spec.confidence, 1.0 - 1e-12);
    let ts = theil_sen(t, y, wide)?;
    let how = format!(
        "variance times {:.2}, {:.1} df",
        inflation,
        if df.is_finite() { df } else { f64::INFINITY }
    );
    Ok((ts, p_value, how))
}
