//! The error-rate-absolute check: the canary's error rate, summed over the window, against a
//! fixed rate (0.005 = 0.5%). By default ([`ThresholdTest::Observed`]) it reads the threshold as
//! a Prometheus alerting rule does: the observed rate over at least `min_samples` requests fails
//! when it is beyond the threshold in the bad direction, and passes otherwise. With `test =
//! "statistical"` it fails only when, in addition, an exact binomial test says the canary's true
//! rate is beyond it (at the confidence), and passes only when Wilson's interval of the rate lies
//! within the threshold on the bad side (the confidence bound shows the rate within it);
//! otherwise it is inconclusive (`NotShown`, the reason giving the bound). The statistical test
//! and interval run on the canary's *effective counts* when its per-step rates vary more than
//! binomial noise allows (`effective_counts`: `e/φ` out of `n/φ`, exact below one error per
//! step). Either way the evidence names the comparison that judged and shows Wilson's interval of
//! the rate. The baseline is summarised for context only. Pure.

use statrs::function::beta::checked_beta_reg;

use super::effective_counts::{self, deflate};
use super::error_rate::{bad_bound, count};
use super::summary::{
    bad_word, beyond, context_summary, counts_overflow, evidence_of, finish, fmt_num, fmt_p,
    inconclusive, pp, significance_level, significant_clause, summarize_counts, thin, whole,
    wilson, z_for,
};
use super::{
    CheckResult, CheckSpec, CountPoint, Direction, Effect, InconclusiveCause, Interval,
    IntervalScale, SideData, ThresholdTest, Thresholds, Verdict,
};

/// The evidence's `test` of an observed comparison.
pub(super) const OBSERVED_RATE: &str = "observed: the summed error rate vs the threshold";
use crate::stats::{Counts, StatsError};

/// P(X ≥ k) for X ~ Binomial(n, p).
pub(super) fn binomial_upper(k: u64, n: u64, p: f64) -> Result<f64, StatsError> {
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
/// the bad direction and, with [`ThresholdTest::Statistical`], an exact binomial test says the
/// canary's true rate is too (at the confidence). The baseline is summarised for context only.
pub(super) fn judge(
    spec: &CheckSpec,
    (threshold, test): (f64, ThresholdTest),
    baseline: &SideData,
    c_points: &[CountPoint],
    thresholds: Thresholds,
) -> CheckResult {
    let (c_summary, c_err, c_total) = summarize_counts(c_points);
    let mut evidence = evidence_of(context_summary(baseline), c_summary, thresholds);
    if !(0.0..=1.0).contains(&threshold) {
        let reason = format!("an error-rate threshold must be in [0, 1], got {threshold}");
        return inconclusive(spec, InconclusiveCause::Setting, reason, evidence);
    }
    let need = spec.min_samples.max(1) as f64;
    if let Some(why) = counts_overflow("canary", c_err, c_total)
        .or_else(|| thin("canary", &evidence.canary, c_total, need))
    {
        let (cause, reason) = why;
        return inconclusive(spec, cause, reason, evidence);
    }
    let c = whole(c_err, c_total);
    let rate = c_err / c_total;
    let (low, high) = wilson(c_err, c_total, z_for(spec.confidence));
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
    evidence.comparison = Some(format!(
        "canary error rate summed over the window, {} of {}, vs threshold {}",
        c.errors,
        c.total,
        pp(threshold)
    ));
    let too_far = beyond(spec.direction, rate - threshold, 0.0);
    let head = format!(
        "canary error rate {} vs threshold {}",
        pp(rate),
        pp(threshold)
    );
    if test == ThresholdTest::Observed {
        evidence.test = Some(OBSERVED_RATE.into());
        let (verdict, reason) = if too_far {
            let word = bad_word(spec.direction);
            let reason = format!("{head}: {word} the threshold over {} requests", c.total);
            (Verdict::Fail, reason)
        } else {
            let reason = format!("{head}: within the threshold over {} requests", c.total);
            (Verdict::Pass, reason)
        };
        return finish(spec, verdict, reason, evidence);
    }
    let deflation = match effective_counts::for_canary(c_points, spec.confidence) {
        Ok(d) => d,
        Err(err) => {
            let reason = format!("the dispersion of the counts could not be computed: {err}");
            return inconclusive(spec, InconclusiveCause::Untestable, reason, evidence);
        }
    };
    let ce = deflate(c, deflation.canary);
    let p_value = match binomial_p(ce, threshold, spec.direction) {
        Ok(p) => p.clamp(0.0, 1.0),
        Err(err) => {
            let reason = format!("the test could not be computed: {err}");
            return inconclusive(spec, InconclusiveCause::Untestable, reason, evidence);
        }
    };
    // Wilson's interval on the effective number of requests.
    let n = c_total / deflation.canary;
    let (low, high) = wilson(rate * n, n, z_for(spec.confidence));
    let interval = Interval {
        low,
        high,
        confidence: spec.confidence,
        scale: IntervalScale::Rate,
    };
    if let Some(effect) = evidence.effect.as_mut() {
        effect.interval = Some(interval);
    }
    evidence.p_value = Some(p_value);
    evidence.test = Some(if deflation.is_exact() {
        "exact binomial test".into()
    } else {
        "exact binomial test on effective counts".into()
    });
    if let Some(comparison) = evidence.comparison.as_mut() {
        comparison.push_str("; ");
        comparison.push_str(&deflation.how);
    }
    let alpha = significance_level(spec);
    let significant = p_value < alpha;
    let p = fmt_p(p_value);
    // The bound on the rate, as a difference from the threshold.
    let shifted = Interval {
        low: low - threshold,
        high: high - threshold,
        ..interval
    };
    let bound = bad_bound(spec.direction, &shifted) + threshold;
    let shown = format!(
        "the {}% bound on the rate is {}",
        fmt_num(spec.confidence * 100.0),
        pp(bound)
    );
    let (verdict, reason) = if significant && too_far {
        (
            Verdict::Fail,
            format!(
                "{head}: {} the threshold, {}",
                bad_word(spec.direction),
                significant_clause(p_value, alpha)
            ),
        )
    } else if !beyond(spec.direction, bound - threshold, 0.0) {
        (
            Verdict::Pass,
            format!("{head}: {shown}, within the threshold (p = {p})"),
        )
    } else {
        let reason = format!(
            "{} canary requests cannot show the rate within the {} threshold at {}%: {shown} \
             ({head}, p = {p})",
            count(c.total),
            pp(threshold),
            fmt_num(spec.confidence * 100.0)
        );
        return inconclusive(spec, InconclusiveCause::NotShown, reason, evidence);
    };
    finish(spec, verdict, reason, evidence)
}
