//! The last guard on every verdict: a `Pass` or `Fail` whose evidence holds a number that is NaN
//! or infinite becomes `Inconclusive` ([`InconclusiveCause::NonFinite`]) with a reason naming
//! the number. Pure; it owns nothing but that rule.
//!
//! Comparisons with NaN are false, so arithmetic that overflowed used to read as "within the
//! threshold" and pass (summed counts of 1e308 gave a NaN error rate). The kinds guard their
//! intermediates where they are formed (summed counts, ratios, differences, slopes); this guard
//! catches whatever reaches the evidence anyway (a mean, a quantile, an interval bound, a
//! p-value), so no verdict is ever decided on a number that is not a number.

use super::{CheckKind, CheckResult, CheckSpec, Evidence, InconclusiveCause, SideSummary, Verdict};

/// `result`, or `Inconclusive` when it is a pass or a fail decided with a non-finite number.
pub(super) fn guard(spec: &CheckSpec, result: CheckResult) -> CheckResult {
    if matches!(result.verdict, Verdict::Inconclusive { .. }) {
        return result;
    }
    let Some(what) = first_non_finite(&result.evidence) else {
        return result;
    };
    let reason = format!("{}: {what}", overflow_head(spec));
    CheckResult {
        verdict: Verdict::inconclusive(InconclusiveCause::NonFinite, reason.clone()),
        reason,
        ..result
    }
}

/// The start of a non-finite reason for this kind of check: "the error counts overflow".
pub(super) fn overflow_head(spec: &CheckSpec) -> &'static str {
    match spec.kind {
        CheckKind::ErrorRate { .. } | CheckKind::ErrorRateAbsolute { .. } => {
            "the error counts overflow"
        }
        CheckKind::Relative { .. } | CheckKind::Absolute { .. } | CheckKind::Trend { .. } => {
            "the values overflow"
        }
    }
}

/// The first number of the evidence that is not finite, as "the canary's mean is inf".
fn first_non_finite(e: &Evidence) -> Option<String> {
    let mut numbers: Vec<(String, f64)> = Vec::with_capacity(24);
    side_numbers("baseline", &e.baseline, &mut numbers);
    side_numbers("canary", &e.canary, &mut numbers);
    if let Some(p) = e.p_value {
        numbers.push(("the p-value".into(), p));
    }
    if let Some(effect) = &e.effect {
        numbers.push(("the effect".into(), effect.difference));
        if let Some(ratio) = effect.ratio {
            numbers.push(("the effect's ratio".into(), ratio));
        }
        if let Some(interval) = &effect.interval {
            numbers.push(("the effect's interval's low bound".into(), interval.low));
            numbers.push(("the effect's interval's high bound".into(), interval.high));
        }
    }
    numbers
        .into_iter()
        .find(|(_, v)| !v.is_finite())
        .map(|(name, v)| format!("{name} is {v}, so the verdict cannot be trusted"))
}

fn side_numbers(side: &str, s: &SideSummary, out: &mut Vec<(String, f64)>) {
    let named = [
        ("summed errors", s.errors),
        ("summed total", s.total),
        ("error rate", s.rate),
        ("mean", s.mean),
        ("median", s.median),
        ("p90", s.p90),
        ("p99", s.p99),
        ("aggregate", s.aggregate.map(|a| a.value)),
        ("slope per minute", s.slope_per_minute),
    ];
    for (name, value) in named {
        if let Some(v) = value {
            out.push((format!("the {side}'s {name}"), v));
        }
    }
}
