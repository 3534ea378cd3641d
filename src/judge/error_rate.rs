//! The error-rate check: the canary's error rate against the baseline's, in rate units (0.001 =
//! 0.1 percentage points). Errors and totals are summed over the whole window before anything is
//! compared: a rate is errors / events, and per-minute rates would weigh a quiet minute with 3
//! requests like a busy one with 3,000.
//!
//! The summed counts are judged as binomial when they are, and as *effective counts* (`e/φ`
//! out of `n/φ`, φ the dispersion of the per-step counts, `effective_counts` argues the choice)
//! when the per-step rates vary more than binomial noise allows. On those counts, the comparison
//! is Fisher's exact test while any expected cell of the 2×2 table is below
//! [`FISHER_BELOW_EXPECTED`] and the two-proportion z-test (pooled) above it, where the two agree
//! and Fisher's cost grows with the counts; the interval of the difference is Newcombe's hybrid
//! score interval at the confidence, in the evidence's effect.
//!
//! The verdict: **fail** when the worsening is significant and its estimate beyond the tolerance;
//! **pass** when the interval's end on the bad side (the confidence bound on the worsening) is
//! within the tolerance: shown not worse than it; otherwise **inconclusive** (`NotShown`): the
//! requests cannot show the tolerance either way, and the reason gives the bound. A tolerance of
//! 0 asks to show the canary no worse at all, which a healthy canary rarely can. Pure.

use super::effective_counts::{self, deflate};
use super::summary::{
    bad_alternative, bad_word, beyond, counts_overflow, evidence_of, finish, fmt_num, fmt_p,
    inconclusive, pp, significance_level, significant_clause, summarize_counts, thin, whole,
    wilson, z_for,
};
use super::{
    CheckResult, CheckSpec, CountPoint, Direction, Effect, InconclusiveCause, Interval,
    IntervalScale, Thresholds, Verdict,
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
    let deflation = match effective_counts::for_comparison(b_points, c_points, spec.confidence) {
        Ok(d) => d,
        Err(err) => {
            let reason = format!("the dispersion of the counts could not be computed: {err}");
            return inconclusive(spec, InconclusiveCause::Untestable, reason, evidence);
        }
    };
    let (be, ce) = (deflate(b, deflation.baseline), deflate(c, deflation.canary));
    let (rb, rc) = (b_err / b_total, c_err / c_total);
    let pooled = (be.errors + ce.errors) as f64 / (be.total + ce.total) as f64;
    let min_expected = [
        ce.total as f64 * pooled,
        ce.total as f64 * (1.0 - pooled),
        be.total as f64 * pooled,
        be.total as f64 * (1.0 - pooled),
    ]
    .into_iter()
    .fold(f64::INFINITY, f64::min);
    let alternative = bad_alternative(spec.direction);
    let on = if deflation.is_exact() {
        ""
    } else {
        " on effective counts"
    };
    let tested: Result<(f64, String), StatsError> = if min_expected < FISHER_BELOW_EXPECTED {
        let table = [
            [ce.errors, ce.total - ce.errors],
            [be.errors, be.total - be.errors],
        ];
        fisher_exact(table, alternative).map(|f| (f.p_value, format!("Fisher's exact test{on}")))
    } else {
        two_proportion_z(ce, be, alternative, true)
            .map(|z| (z.p_value, format!("two-proportion z-test (pooled){on}")))
    };
    let (p_value, test) = match tested {
        Ok(x) => x,
        Err(err) => {
            let reason = format!("the test could not be computed: {err}");
            return inconclusive(spec, InconclusiveCause::Untestable, reason, evidence);
        }
    };
    // Newcombe's hybrid score interval for the difference of two proportions, each side's
    // Wilson interval on its effective number of requests.
    let z = z_for(spec.confidence);
    let (nc, nb) = (c_total / deflation.canary, b_total / deflation.baseline);
    let (lc, uc) = wilson(rc * nc, nc, z);
    let (lb, ub) = wilson(rb * nb, nb, z);
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
    evidence.test = Some(test);
    evidence.comparison = Some(format!(
        "error rates summed over the window: canary {} of {} vs baseline {} of {}; {}",
        c.errors, c.total, b.errors, b.total, deflation.how
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
    let bound = bad_bound(spec.direction, &interval);
    let shown = format!(
        "the {}% bound on the worsening is {:+.3} pp",
        fmt_num(spec.confidence * 100.0),
        bound * 100.0
    );
    let (verdict, reason) = if significant && too_far {
        (
            Verdict::Fail,
            format!(
                "{rates}: beyond the {tol} tolerance {} baseline, {}",
                bad_word(spec.direction),
                significant_clause(p_value, alpha)
            ),
        )
    } else if !beyond(spec.direction, bound, tolerance) {
        (
            Verdict::Pass,
            format!("{rates}: {shown}, within the {tol} tolerance (p = {p})"),
        )
    } else {
        let reason = format!(
            "{} canary requests cannot show a {tol} difference at {}%: {shown} ({rates}, p = {p})",
            count(c.total),
            fmt_num(spec.confidence * 100.0)
        );
        return inconclusive(spec, InconclusiveCause::NotShown, reason, evidence);
    };
    finish(spec, verdict, reason, evidence)
}

/// The end of the effect's interval on the bad side: the confidence bound on the worsening (for
/// `Either`, the end farther from no change), as a signed difference.
pub(super) fn bad_bound(direction: Direction, interval: &Interval) -> f64 {
    match direction {
        Direction::HigherIsWorse => interval.high,
        Direction::LowerIsWorse => interval.low,
        Direction::Either => {
            if interval.high >= -interval.low {
                interval.high
            } else {
                interval.low
            }
        }
    }
}

/// A whole number with thousands separators ("1,800").
pub(super) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
