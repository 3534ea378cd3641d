//! The absolute check: a service-level limit, not a hypothesis test. The canary's aggregate over
//! the window (mean, median, a quantile, min, max or the last value) is compared with the
//! threshold directly (`Either` fails on any departure). It still needs `min_samples` finite
//! points (at least one); the baseline is summarised, and its aggregate taken, for context only.
//! Pure.

use super::summary::{
    bad_word, beyond, clean, context_summary, evidence_of, finish, fmt_num, inconclusive,
    no_data_reason, not_computed, summarize,
};
use super::{
    Aggregate, AggregateValue, CheckResult, CheckSpec, Effect, InconclusiveCause, Point, SideData,
    Thresholds, Verdict,
};
use crate::stats::{self, StatsError};

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
pub(super) fn judge(
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
