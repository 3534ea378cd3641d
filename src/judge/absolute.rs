//! The absolute check: a service-level limit. By default ([`ThresholdTest::Observed`]) the
//! canary's aggregate over the window (mean, median, a quantile, min, max or the last value) is
//! compared with the threshold directly (`Either` fails on any departure), as an alerting rule
//! reads it. With `test = "statistical"` the aggregate must also be shown beyond the threshold at
//! the confidence: for a median or a percentile, an exact binomial test of how many points lie
//! beyond the threshold (the q-quantile is above it exactly when more than a fraction 1 − q of
//! the values are); for a mean, Student's one-sample t-test. Min, max and last are single points
//! and have no test (rule files refuse the combination). It needs `min_samples` finite points (at
//! least one; two for a t-test); the baseline is summarised, and its aggregate taken, for
//! context only. Pure.

use statrs::distribution::{ContinuousCDF, StudentsT};

use super::error_rate_absolute::binomial_upper;
use super::summary::{
    bad_word, beyond, clean, context_summary, evidence_of, finish, fmt_num, fmt_p, inconclusive,
    no_data_reason, not_computed, significance_level, significant_clause, summarize,
};
use super::{
    Aggregate, AggregateValue, CheckResult, CheckSpec, Direction, Effect, InconclusiveCause, Point,
    SideData, ThresholdTest, Thresholds, Verdict,
};
use crate::stats::{self, StatsError};

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

/// The p-value that the canary's true aggregate is beyond `threshold` in the bad direction, and
/// the test's name.
fn statistical_p(
    aggregate: Aggregate,
    threshold: f64,
    direction: Direction,
    v: &[f64],
) -> Result<(f64, String), StatsError> {
    let q = match aggregate {
        Aggregate::Mean => return mean_p(threshold, direction, v),
        Aggregate::Median => 0.5,
        Aggregate::Quantile(q) if testable(aggregate) => q,
        _ => {
            return Err(StatsError::Invalid(
                "a single point (min, max, last) has no statistical test".into(),
            ));
        }
    };
    // The q-quantile is above the threshold when more than a fraction 1 − q of the values are:
    // under "not above", the points above it are at most Binomial(n, 1 − q).
    let n = v.len() as u64;
    let above = v.iter().filter(|x| **x > threshold).count() as u64;
    let below = v.iter().filter(|x| **x < threshold).count() as u64;
    let upper = || binomial_upper(above, n, 1.0 - q);
    let lower = || binomial_upper(below, n, q);
    let p = match direction {
        Direction::HigherIsWorse => upper()?,
        Direction::LowerIsWorse => lower()?,
        Direction::Either => (2.0 * upper()?.min(lower()?)).min(1.0),
    };
    let test = format!(
        "exact binomial quantile test: {above} of {n} points above the threshold, {below} below"
    );
    Ok((p, test))
}

/// Student's one-sample t-test of the mean against `threshold`.
fn mean_p(threshold: f64, direction: Direction, v: &[f64]) -> Result<(f64, String), StatsError> {
    let n = v.len();
    if n < 2 {
        return Err(StatsError::TooFew {
            what: "t-test",
            needed: 2,
            got: n,
        });
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let variance = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let se = (variance / n as f64).sqrt();
    if !(se.is_finite() && se > 0.0) {
        return Err(StatsError::Invalid(
            "the values have no spread to test the mean with".into(),
        ));
    }
    let t = (mean - threshold) / se;
    let dist = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .map_err(|e| StatsError::Invalid(format!("Student's t: {e}")))?;
    let p = match direction {
        Direction::HigherIsWorse => dist.sf(t),
        Direction::LowerIsWorse => dist.cdf(t),
        Direction::Either => (2.0 * dist.sf(t.abs())).min(1.0),
    };
    Ok((p, format!("one-sample Student's t-test, {} df", n - 1)))
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
        let (p_value, test) = match statistical_p(aggregate, threshold, spec.direction, &cv) {
            Ok((p, test)) => (p.clamp(0.0, 1.0), test),
            Err(err) => return not_computed(spec, "the test", err, evidence),
        };
        evidence.p_value = Some(p_value);
        evidence.test = Some(test);
        let alpha = significance_level(spec);
        let head = format!(
            "canary {name} {} vs threshold {}",
            fmt_num(value),
            fmt_num(threshold)
        );
        let word = bad_word(spec.direction);
        let (verdict, reason) = if bad && p_value < alpha {
            let clause = significant_clause(p_value, alpha);
            (
                Verdict::Fail,
                format!("{head}: {word} the threshold, {clause}"),
            )
        } else if bad {
            let p = fmt_p(p_value);
            let reason = format!(
                "{head}: {word} the threshold but not significantly, p = {p} ≥ {}",
                fmt_num(alpha)
            );
            (Verdict::Pass, reason)
        } else {
            (Verdict::Pass, format!("{head}: within the threshold"))
        };
        return finish(spec, verdict, reason, evidence);
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
