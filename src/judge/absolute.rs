//! The absolute check: a service-level limit. By default ([`ThresholdTest::Observed`]) the
//! canary's aggregate over the window (mean, median, a quantile, min, max or the last value) is
//! compared with the threshold directly (`Either` fails on any departure), as an alerting rule
//! reads it. With `test = "statistical"` the aggregate must be shown beyond the threshold at the
//! confidence to fail and shown within it to pass (its confidence bound on the good side of the
//! threshold), and is otherwise inconclusive (`NotShown`, see `decision`): for a median or a
//! percentile, a binomial test of how many points lie beyond the threshold (the q-quantile is
//! above it exactly when more than a fraction 1 − q of the values are) with the order-statistic
//! interval, both at the effective number of points when the points beyond come in runs (the
//! long-run variance of that indicator series); for a mean, Student's t with the mean's long-run
//! (HAC) variance (`stats::long_run`), so correlated minutes count for what they are worth. Min,
//! max and last are single points and have no test (rule files refuse the combination). It needs `min_samples` finite points (at
//! least one; two for a t-test); the baseline is summarised, and its aggregate taken, for
//! context only. Pure.

use super::decision::{decide, not_shown_sentence};
use super::error_rate_absolute::binomial_upper;
use super::summary::{
    bad_alternative, bad_word, beyond, clean, context_summary, evidence_of, finish, fmt_num, fmt_p,
    inconclusive, no_data_reason, not_computed, ranks, significance_level, significant_clause,
    summarize,
};
use super::{
    Aggregate, AggregateValue, CheckResult, CheckSpec, Decision, DecisionRule, DecisionScale,
    Direction, Effect, InconclusiveCause, Interval, IntervalScale, Point, SideData, ThresholdTest,
    Thresholds, Verdict,
};
use crate::stats::{self, EstimateError, StatsError, long_run};

/// The evidence's `test` of an observed comparison.
pub(super) const OBSERVED_AGGREGATE: &str = "observed: the aggregate vs the threshold";

/// Whether a statistical test exists for `aggregate`: a mean, or a quantile strictly inside
/// (0, 1) (the median is one). Min, max, last and the 0 and 1 quantiles are single points.
pub(super) fn testable(aggregate: Aggregate) -> bool {
    match aggregate {
        Aggregate::Mean | Aggregate::Median => true,
        Aggregate::Quantile(q) => q > 0.0 && q < 1.0,
        Aggregate::Min | Aggregate::Max | Aggregate::Last => false,
    }
}

/// What a statistical test said about the canary's true aggregate: the p-value that it is
/// beyond the threshold on the bad side, its interval at the confidence (on the metric's
/// scale; ±inf where the points cannot bound it), and the test's name.
struct Tested {
    p_value: f64,
    interval: (f64, f64),
    test: String,
}

/// The statistical test of `aggregate` against `threshold` on the canary's values in time
/// order.
fn statistical(
    spec: &CheckSpec,
    aggregate: Aggregate,
    threshold: f64,
    v: &[f64],
) -> Result<Tested, StatsError> {
    let q = match aggregate {
        Aggregate::Mean => return mean_test(spec, threshold, v),
        Aggregate::Median => 0.5,
        Aggregate::Quantile(q) if testable(aggregate) => q,
        _ => {
            return Err(StatsError::Invalid(
                "a single point (min, max, last) has no statistical test".into(),
            ));
        }
    };
    let n = v.len();
    let above = v.iter().filter(|x| **x > threshold).count();
    let below = v.iter().filter(|x| **x < threshold).count();
    // Points beyond the threshold come in runs when consecutive minutes are correlated: the
    // binomial counts are taken at the effective number of independent points, never above n,
    // from the long-run variance of the values' ranks. The ranks' correlation is at least that
    // of the indicator "beyond the threshold" (for Gaussian AR(1) minutes, (6/π)·asin(ρ/2)
    // against (2/π)·asin(ρ) at the median), and 30 ranks estimate it far better than 30 zeros
    // and ones: the indicator's own estimate let 2.3% of healthy medians fail at ρ = 0.7.
    let inflation = long_run(&ranks(v))
        .map(|lr| lr.long_run_variance / lr.variance)
        .unwrap_or(1.0)
        .max(1.0);
    let n_eff = ((n as f64 / inflation).floor() as usize).clamp(1, n);
    let scale = |k: usize| ((k as f64 * n_eff as f64 / n as f64).round() as u64).min(n_eff as u64);
    let (k_above, k_below, m) = (scale(above), scale(below), n_eff as u64);
    let upper = || binomial_upper(k_above, m, 1.0 - q);
    let lower = || binomial_upper(k_below, m, q);
    let p = match spec.direction {
        Direction::HigherIsWorse => upper()?,
        Direction::LowerIsWorse => lower()?,
        Direction::Either => (2.0 * upper()?.min(lower()?)).min(1.0),
    };
    // The interval of the q-quantile from order statistics: x_(u) bounds it from above when
    // P(Binomial(m, q) ≥ u) ≤ 1 − γ, x_(l) from below when P(Binomial(m, q) ≥ l) ≥ γ (γ the
    // one-sided level of each end), indices scaled from m to n.
    let gamma = (1.0 + spec.confidence) / 2.0;
    let mut sorted = v.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let at = |k: u64| {
        let i = ((k as f64 * n as f64 / m as f64).round() as usize).clamp(1, n);
        sorted[i - 1]
    };
    let mut high = f64::INFINITY;
    for u in 1..=m {
        if binomial_upper(u, m, q)? <= 1.0 - gamma {
            high = at(u);
            break;
        }
    }
    let mut low = f64::NEG_INFINITY;
    for l in (1..=m).rev() {
        if binomial_upper(l, m, q)? >= gamma {
            low = at(l);
            break;
        }
    }
    let mut test = format!(
        "exact binomial quantile test: {above} of {n} points above the threshold, {below} below"
    );
    if n_eff < n {
        test.push_str(&format!(
            ", counted as {k_above} and {k_below} of an effective {n_eff} (consecutive points \
             are correlated: variance times {inflation:.2})"
        ));
    }
    Ok(Tested {
        p_value: p,
        interval: (low, high),
        test,
    })
}

/// Student's t on the mean against `threshold`, with the long-run (HAC) variance of the mean
/// so correlated minutes count for what they are worth (as the relative check's).
fn mean_test(spec: &CheckSpec, threshold: f64, v: &[f64]) -> Result<Tested, StatsError> {
    let lr = long_run(v).map_err(|e| match e {
        EstimateError::NoVariation { .. } => {
            StatsError::Invalid("the values have no spread to test the mean with".into())
        }
        other => other.into(),
    })?;
    let e = lr.mean_estimate();
    let p = e.p_value(threshold, bad_alternative(spec.direction))?;
    let interval = e.interval(spec.confidence)?;
    let test = format!(
        "Student's t on the mean with its long-run (HAC) variance (lag-1 correlation {:.2}, \
         worth {:.1} of {} points, {:.1} df)",
        lr.rho, lr.effective_n, lr.n, lr.df
    );
    Ok(Tested {
        p_value: p,
        interval,
        test,
    })
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

/// Absolute checks are a service-level limit: the canary's aggregate over the window is compared
/// with the threshold directly (`Either` fails on any departure), and with
/// [`ThresholdTest::Statistical`] it fails only when a test also shows it beyond the threshold.
/// They need `min_samples` finite points (at least one); the baseline is summarised for context
/// only.
pub(super) fn judge(
    spec: &CheckSpec,
    (threshold, aggregate, test): (f64, Aggregate, ThresholdTest),
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
    let mut evidence = evidence_of(baseline_summary, summarize(&cv, c_dropped), thresholds);
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
    evidence.comparison = Some(format!(
        "canary {name} of {} points vs threshold {}",
        cv.len(),
        fmt_num(threshold)
    ));
    let bad = beyond(spec.direction, value - threshold, 0.0);
    if test == ThresholdTest::Statistical {
        let tested = match statistical(spec, aggregate, threshold, &cv) {
            Ok(t) => t,
            Err(err) => return not_computed(spec, "the test", err, evidence),
        };
        let p_value = tested.p_value.clamp(0.0, 1.0);
        let (low, high) = tested.interval;
        evidence.p_value = Some(p_value);
        evidence.test = Some(tested.test);
        if let Some(effect) = &mut evidence.effect {
            effect.interval = Some(Interval {
                low: low - threshold,
                high: high - threshold,
                confidence: spec.confidence,
                scale: IntervalScale::Difference,
            });
        }
        let alpha = significance_level(spec);
        let decided = decide(
            spec.direction,
            value - threshold,
            (low - threshold, high - threshold),
            p_value < alpha,
            0.0,
        );
        evidence.decision = Some(Decision {
            rule: decided.rule,
            bound: decided.bound + threshold,
            limit: threshold,
            scale: DecisionScale::Value,
        });
        let head = format!(
            "canary {name} {} vs threshold {}",
            fmt_num(value),
            fmt_num(threshold)
        );
        let word = bad_word(spec.direction);
        let bound = fmt_num(decided.bound + threshold);
        let reason = match decided.rule {
            DecisionRule::ShownBeyond => format!(
                "{head}: {word} the threshold, {}",
                significant_clause(p_value, alpha)
            ),
            DecisionRule::ShownWithin => format!(
                "{head}: within the threshold, shown at {}% (the bound is {bound}; p = {})",
                fmt_num(spec.confidence * 100.0),
                fmt_p(p_value)
            ),
            DecisionRule::NotShown | DecisionRule::Observed => format!(
                "{head}: {}; p = {}",
                not_shown_sentence(
                    cv.len(),
                    &format!("the {name} within the threshold"),
                    spec.confidence,
                    &bound
                ),
                fmt_p(p_value)
            ),
        };
        return finish(spec, decided.verdict(&reason), reason, evidence);
    }
    evidence.test = Some(OBSERVED_AGGREGATE.into());
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
