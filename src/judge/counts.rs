//! Verdicts on error counts: canary vs baseline error rate, and the canary's error rate vs a
//! fixed rate. Pure.
//!
//! Errors and totals are summed over the whole window before anything is compared: a rate is
//! errors / events, and per-minute rates would weigh a quiet minute with 3 requests like a busy
//! one with 3,000. The comparison of two summed rates is Fisher's exact test while any expected
//! cell of the 2×2 table is below [`FISHER_BELOW_EXPECTED`] and the two-proportion z-test
//! (pooled) above it, where the two agree and Fisher's cost grows with the counts.

use super::{
    CheckResult, CheckSpec, CountPoint, Direction, Effect, Evidence, InconclusiveCause, Interval,
    IntervalScale, SideData, SideSummary, Thresholds, Verdict, bad_alternative, bad_word, beyond,
    fmt_num, fmt_p, significance_level, significant_clause,
};
use crate::stats::{Counts, StatsError, fisher_exact, two_proportion_z};
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::beta::checked_beta_reg;

/// Fisher's exact test is used while the smallest expected cell count of the 2×2 table is below
/// this; the two-proportion z-test above it.
pub const FISHER_BELOW_EXPECTED: f64 = 500.0;

/// The most events a side's summed counts may hold: 2^53, the largest count an f64 holds
/// exactly. Beyond it whole events cannot be counted (nor two sides' counts added in a u64), so
/// a window that sums to more is inconclusive rather than judged on rounded numbers.
pub const MAX_EXACT_EVENTS: f64 = 9_007_199_254_740_992.0;

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

fn context_summary(side: &SideData) -> SideSummary {
    match side {
        SideData::Counts(points) => summarize_counts(points).0,
        SideData::Values(points) => {
            let (kept, dropped) = super::values::clean(points);
            super::values::summarize(&kept.iter().map(|p| p.v).collect::<Vec<_>>(), dropped)
        }
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
    (cause, reason): (InconclusiveCause, String),
    evidence: Evidence,
) -> CheckResult {
    let verdict = Verdict::inconclusive(cause, reason.clone());
    finish(spec, verdict, reason, evidence)
}

/// The reason a side's summed counts cannot be computed with: a sum that overflowed to
/// infinity, or more events than [`MAX_EXACT_EVENTS`].
fn overflow(side: &str, errors: f64, total: f64) -> Option<(InconclusiveCause, String)> {
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

/// Inconclusive reasons for a side with no events or fewer than needed.
fn thin(
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

/// Percentage points, for sentences.
fn pp(rate: f64) -> String {
    format!("{:.3}%", rate * 100.0)
}

/// Wilson score interval for a proportion.
fn wilson(errors: f64, total: f64, z: f64) -> (f64, f64) {
    let p = errors / total;
    let z2 = z * z;
    let denom = 1.0 + z2 / total;
    let centre = (p + z2 / (2.0 * total)) / denom;
    let half = z * (p * (1.0 - p) / total + z2 / (4.0 * total * total)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn z_for(confidence: f64) -> f64 {
    Normal::standard().inverse_cdf(1.0 - (1.0 - confidence) / 2.0)
}

/// Round summed counts (Prometheus increases are fractional) to whole events.
fn whole(errors: f64, total: f64) -> Counts {
    let total = total.round().max(0.0) as u64;
    let errors = (errors.round().max(0.0) as u64).min(total);
    Counts { errors, total }
}

pub(super) fn error_rate(
    spec: &CheckSpec,
    tolerance: f64,
    b_points: &[CountPoint],
    c_points: &[CountPoint],
    thresholds: Thresholds,
) -> CheckResult {
    let (b_summary, b_err, b_total) = summarize_counts(b_points);
    let (c_summary, c_err, c_total) = summarize_counts(c_points);
    let mut evidence = Evidence {
        baseline: b_summary,
        canary: c_summary,
        effect: None,
        p_value: None,
        test: None,
        comparison: None,
        thresholds,
        family: None,
    };
    let need = spec.min_samples.max(1) as f64;
    if let Some(why) = overflow("baseline", b_err, b_total)
        .or_else(|| overflow("canary", c_err, c_total))
        .or_else(|| thin("baseline", &evidence.baseline, b_total, need))
        .or_else(|| thin("canary", &evidence.canary, c_total, need))
    {
        return inconclusive(spec, why, evidence);
    }
    let b = whole(b_err, b_total);
    let c = whole(c_err, c_total);
    let (rb, rc) = (b_err / b_total, c_err / c_total);
    let pooled = (b.errors + c.errors) as f64 / (b.total + c.total) as f64;
    let min_expected = [
        c.total as f64 * pooled,
        c.total as f64 * (1.0 - pooled),
        b.total as f64 * pooled,
        b.total as f64 * (1.0 - pooled),
    ]
    .into_iter()
    .fold(f64::INFINITY, f64::min);
    let alternative = bad_alternative(spec.direction);
    let tested: Result<(f64, &str), StatsError> = if min_expected < FISHER_BELOW_EXPECTED {
        let table = [
            [c.errors, c.total - c.errors],
            [b.errors, b.total - b.errors],
        ];
        fisher_exact(table, alternative).map(|f| (f.p_value, "Fisher's exact test"))
    } else {
        two_proportion_z(c, b, alternative, true)
            .map(|z| (z.p_value, "two-proportion z-test (pooled)"))
    };
    let (p_value, test) = match tested {
        Ok(x) => x,
        Err(err) => {
            let reason = format!("the test could not be computed: {err}");
            return inconclusive(spec, (InconclusiveCause::Untestable, reason), evidence);
        }
    };
    // Newcombe's hybrid score interval for the difference of two proportions.
    let z = z_for(spec.confidence);
    let (lc, uc) = wilson(c_err, c_total, z);
    let (lb, ub) = wilson(b_err, b_total, z);
    let difference = rc - rb;
    let interval = Interval {
        low: difference - ((rc - lc).powi(2) + (ub - rb).powi(2)).sqrt(),
        high: difference + ((uc - rc).powi(2) + (rb - lb).powi(2)).sqrt(),
        confidence: spec.confidence,
        scale: IntervalScale::Difference,
    };
    evidence.p_value = Some(p_value);
    evidence.effect = Some(Effect {
        ratio: (rb > 0.0).then(|| rc / rb).filter(|r| r.is_finite()),
        difference,
        interval: Some(interval),
    });
    evidence.test = Some(test.to_string());
    evidence.comparison = Some(format!(
        "error rates summed over the window: canary {} of {} vs baseline {} of {}",
        c.errors, c.total, b.errors, b.total
    ));
    let alpha = significance_level(spec);
    let significant = p_value < alpha;
    let too_far = beyond(spec.direction, difference, tolerance);
    let rates = format!(
        "canary error rate {} vs baseline {} ({:+.3} pp)",
        pp(rc),
        pp(rb),
        difference * 100.0
    );
    let tol = format!("{} pp", fmt_num(tolerance * 100.0));
    let p = fmt_p(p_value);
    let (verdict, reason) = if significant && too_far {
        (
            Verdict::Fail,
            format!(
                "{rates}: beyond the {tol} tolerance {} baseline, {}",
                bad_word(spec.direction),
                significant_clause(p_value, alpha)
            ),
        )
    } else if !significant {
        (
            Verdict::Pass,
            format!(
                "{rates}: no significant difference, p = {p} ≥ {}",
                fmt_num(alpha)
            ),
        )
    } else {
        (
            Verdict::Pass,
            format!("{rates}: significant (p = {p}) but within the {tol} tolerance"),
        )
    };
    finish(spec, verdict, reason, evidence)
}

/// P(X ≥ k) for X ~ Binomial(n, p).
fn binomial_upper(k: u64, n: u64, p: f64) -> Result<f64, StatsError> {
    if k == 0 || p >= 1.0 {
        return Ok(1.0);
    }
    if p <= 0.0 {
        return Ok(0.0);
    }
    checked_beta_reg(k as f64, (n - k + 1) as f64, p)
        .map_err(|e| StatsError::Invalid(format!("binomial tail: {e}")))
}

/// P(X ≤ k) for X ~ Binomial(n, p).
fn binomial_lower(k: u64, n: u64, p: f64) -> Result<f64, StatsError> {
    if k >= n || p <= 0.0 {
        return Ok(1.0);
    }
    if p >= 1.0 {
        return Ok(0.0);
    }
    checked_beta_reg((n - k) as f64, (k + 1) as f64, 1.0 - p)
        .map_err(|e| StatsError::Invalid(format!("binomial tail: {e}")))
}

/// Exact binomial test of the canary's errors against the rate `threshold`, for the bad
/// direction.
fn binomial_p(c: Counts, threshold: f64, direction: Direction) -> Result<f64, StatsError> {
    let upper = || binomial_upper(c.errors, c.total, threshold);
    let lower = || binomial_lower(c.errors, c.total, threshold);
    Ok(match direction {
        Direction::HigherIsWorse => upper()?,
        Direction::LowerIsWorse => lower()?,
        Direction::Either => (2.0 * upper()?.min(lower()?)).min(1.0),
    })
}

/// The canary's summed error rate vs a fixed rate. Fail when the rate is beyond the threshold in
/// the bad direction and an exact binomial test says the canary's true rate is too (at the
/// confidence). The baseline is summarised for context only.
pub(super) fn error_rate_absolute(
    spec: &CheckSpec,
    threshold: f64,
    baseline: &SideData,
    c_points: &[CountPoint],
    thresholds: Thresholds,
) -> CheckResult {
    let (c_summary, c_err, c_total) = summarize_counts(c_points);
    let mut evidence = Evidence {
        baseline: context_summary(baseline),
        canary: c_summary,
        effect: None,
        p_value: None,
        test: None,
        comparison: None,
        thresholds,
        family: None,
    };
    if !(0.0..=1.0).contains(&threshold) {
        let reason = format!("an error-rate threshold must be in [0, 1], got {threshold}");
        return inconclusive(spec, (InconclusiveCause::Setting, reason), evidence);
    }
    let need = spec.min_samples.max(1) as f64;
    if let Some(why) = overflow("canary", c_err, c_total)
        .or_else(|| thin("canary", &evidence.canary, c_total, need))
    {
        return inconclusive(spec, why, evidence);
    }
    let c = whole(c_err, c_total);
    let rate = c_err / c_total;
    let p_value = match binomial_p(c, threshold, spec.direction) {
        Ok(p) => p.clamp(0.0, 1.0),
        Err(err) => {
            let reason = format!("the test could not be computed: {err}");
            return inconclusive(spec, (InconclusiveCause::Untestable, reason), evidence);
        }
    };
    let (low, high) = wilson(c_err, c_total, z_for(spec.confidence));
    evidence.p_value = Some(p_value);
    evidence.effect = Some(Effect {
        ratio: (threshold > 0.0)
            .then(|| rate / threshold)
            .filter(|r| r.is_finite()),
        difference: rate - threshold,
        interval: Some(Interval {
            low,
            high,
            confidence: spec.confidence,
            scale: IntervalScale::Rate,
        }),
    });
    evidence.test = Some("exact binomial test".into());
    evidence.comparison = Some(format!(
        "canary error rate summed over the window, {} of {}, vs threshold {}",
        c.errors,
        c.total,
        pp(threshold)
    ));
    let alpha = significance_level(spec);
    let significant = p_value < alpha;
    let too_far = beyond(spec.direction, rate - threshold, 0.0);
    let head = format!(
        "canary error rate {} vs threshold {}",
        pp(rate),
        pp(threshold)
    );
    let p = fmt_p(p_value);
    let (verdict, reason) = if significant && too_far {
        (
            Verdict::Fail,
            format!(
                "{head}: {} the threshold, {}",
                bad_word(spec.direction),
                significant_clause(p_value, alpha)
            ),
        )
    } else if too_far {
        (
            Verdict::Pass,
            format!(
                "{head}: {} the threshold but not significantly, p = {p} ≥ {}",
                bad_word(spec.direction),
                fmt_num(alpha)
            ),
        )
    } else {
        (Verdict::Pass, format!("{head}: within the threshold"))
    };
    finish(spec, verdict, reason, evidence)
}
