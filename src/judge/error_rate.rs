//! The error-rate check: the canary's error rate against the baseline's, failing when the canary
//! is worse by more than the tolerance (in rate units) with evidence at the confidence. Errors
//! and totals are summed over the whole window before anything is compared: a rate is errors /
//! events, and per-minute rates would weigh a quiet minute with 3 requests like a busy one with
//! 3,000. The comparison of two summed rates is Fisher's exact test while any expected cell of
//! the 2×2 table is below [`FISHER_BELOW_EXPECTED`] and the two-proportion z-test (pooled) above
//! it, where the two agree and Fisher's cost grows with the counts; the interval of the
//! difference is Newcombe's hybrid score interval. Pure.

use super::summary::{
    bad_alternative, bad_word, beyond, counts_overflow, evidence_of, finish, fmt_num, fmt_p,
    inconclusive, pp, significance_level, significant_clause, summarize_counts, thin, whole,
    wilson, z_for,
};
use super::{
    CheckResult, CheckSpec, CountPoint, Effect, InconclusiveCause, Interval, IntervalScale,
    Thresholds, Verdict,
};
use crate::stats::{StatsError, fisher_exact, two_proportion_z};

/// Fisher's exact test is used while the smallest expected cell count of the 2×2 table is below
/// this; the two-proportion z-test above it.
pub const FISHER_BELOW_EXPECTED: f64 = 500.0;

/// Judge an error-rate check on the two sides' counts.
pub(super) fn judge(
    spec: &CheckSpec,
    tolerance: f64,
    b_points: &[CountPoint],
    c_points: &[CountPoint],
    thresholds: Thresholds,
) -> CheckResult {
    let (b_summary, b_err, b_total) = summarize_counts(b_points);
    let (c_summary, c_err, c_total) = summarize_counts(c_points);
    let mut evidence = evidence_of(b_summary, c_summary, thresholds);
    let need = spec.min_samples.max(1) as f64;
    if let Some(why) = counts_overflow("baseline", b_err, b_total)
        .or_else(|| counts_overflow("canary", c_err, c_total))
        .or_else(|| thin("baseline", &evidence.baseline, b_total, need))
        .or_else(|| thin("canary", &evidence.canary, c_total, need))
    {
        let (cause, reason) = why;
        return inconclusive(spec, cause, reason, evidence);
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
            return inconclusive(spec, InconclusiveCause::Untestable, reason, evidence);
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
