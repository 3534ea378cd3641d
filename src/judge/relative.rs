//! The relative check: the canary's values against the baseline's, failing when the canary is
//! worse by more than the tolerance (a fraction of the baseline) with evidence at the confidence.
//! Points are paired by timestamp when the two sides share their moments (each point with its
//! nearest neighbour on the other side closer than half a step, see `align`): the per-moment
//! log-ratio ln(canary/baseline) cancels whatever load both sides saw at that minute, so a 10%
//! shift stands out of a traffic wave that would swamp an unpaired comparison. The pairs are
//! tested against zero with the Wilcoxon signed-rank test and the effect is their Hodges-Lehmann
//! pseudo-median. When fewer than 4 in 5 points pair, the judge falls back to Mann-Whitney with
//! the two-sample Hodges-Lehmann shift. Data that is not all positive is compared by differences, and the
//! relative effect is taken against the baseline's median. Pure.

use super::align::{inferred_step, pair_nearest};
use super::summary::{
    MIN_POINTS_FLOOR, bad_alternative, bad_word, beyond, clean, evidence_of, finish, fmt_num,
    fmt_p, inconclusive, no_data_reason, not_computed, significance_level, significant_clause,
    summarize,
};
use super::{
    CheckResult, CheckSpec, Effect, InconclusiveCause, Interval, IntervalScale, Point, Thresholds,
    Verdict,
};
use crate::stats::{
    MwMethod, SignedRankMethod, StatsError, hodges_lehmann, hodges_lehmann_ci, mann_whitney_u,
    signed_rank_test_sorted, walsh_shift_ci_sorted,
};

/// The largest magnitude a value compared by differences may have: differences of two such
/// values, and sums of two differences (Walsh averages), stay finite.
const LARGEST_DIFFERENCED: f64 = f64::MAX / 4.0;

/// Why values cannot be compared without overflowing, if they cannot: positive values are
/// compared by ratios (their largest ratio must be finite), others by differences (no
/// magnitude above [`LARGEST_DIFFERENCED`]).
fn overflow_problem(values: &[&[f64]]) -> Option<String> {
    if values.iter().all(|v| v.is_empty()) {
        return None;
    }
    let all = || values.iter().flat_map(|v| v.iter().copied());
    let min = all().fold(f64::INFINITY, f64::min);
    let max = all().fold(f64::NEG_INFINITY, f64::max);
    if min > 0.0 {
        let ratio = max / min;
        return (!ratio.is_finite()).then(|| {
            format!(
                "the values overflow: the largest value over the smallest ({} / {}) is beyond \
                 the largest number",
                fmt_num(max),
                fmt_num(min)
            )
        });
    }
    let largest = max.abs().max(min.abs());
    (largest > LARGEST_DIFFERENCED).then(|| {
        format!(
            "the values overflow: a value of magnitude {} is beyond {}, where differences of \
             the values overflow",
            fmt_num(largest),
            fmt_num(LARGEST_DIFFERENCED)
        )
    })
}

/// Relative effect (canary − baseline) / |reference| with the conventions for a zero reference:
/// any change from zero is infinitely large, no change is none.
fn relative_to(difference: f64, reference: f64) -> f64 {
    if reference != 0.0 {
        difference / reference.abs()
    } else if difference > 0.0 {
        f64::INFINITY
    } else if difference < 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    }
}

fn pct(rel: f64) -> String {
    if rel.is_infinite() {
        return if rel > 0.0 { "+inf%" } else { "-inf%" }.to_string();
    }
    format!("{:+.1}%", rel * 100.0)
}

/// Median of finite values (NaN for none): the middle order statistics in total order, found
/// by selection rather than a full sort (the same values bit for bit).
fn median(mut v: Vec<f64>) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let (below, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let mid = *mid;
    if n % 2 == 1 {
        mid
    } else {
        // The largest of the lower half is the order statistic just below the middle.
        let before = below.iter().copied().max_by(f64::total_cmp).unwrap_or(mid);
        (before + mid) / 2.0
    }
}

/// What the comparison measured, before the decision.
struct Measured {
    p_value: f64,
    /// (canary − baseline) / |baseline| on the metric's own scale.
    relative: f64,
    effect: Effect,
    test: String,
    comparison: String,
}

/// Judge a relative check on the two sides' points.
pub(super) fn judge(
    spec: &CheckSpec,
    tolerance: f64,
    b_points: &[Point],
    c_points: &[Point],
    thresholds: Thresholds,
) -> CheckResult {
    let (b, b_dropped) = clean(b_points);
    let (c, c_dropped) = clean(c_points);
    let bv: Vec<f64> = b.iter().map(|p| p.v).collect();
    let cv: Vec<f64> = c.iter().map(|p| p.v).collect();
    let mut evidence = evidence_of(
        summarize(&bv, b_dropped),
        summarize(&cv, c_dropped),
        thresholds,
    );
    if bv.is_empty() {
        let reason = no_data_reason("baseline", b_dropped);
        return inconclusive(spec, InconclusiveCause::NoData, reason, evidence);
    }
    if cv.is_empty() {
        let reason = no_data_reason("canary", c_dropped);
        return inconclusive(spec, InconclusiveCause::NoData, reason, evidence);
    }
    let need = spec.min_samples.max(MIN_POINTS_FLOOR);
    for (side, n) in [("baseline", bv.len()), ("canary", cv.len())] {
        if n < need {
            let reason = format!("too few points: the {side} has {n}, needs at least {need}");
            return inconclusive(spec, InconclusiveCause::TooFew, reason, evidence);
        }
    }
    if let Some(reason) = overflow_problem(&[&bv, &cv]) {
        return inconclusive(spec, InconclusiveCause::NonFinite, reason, evidence);
    }
    let baseline_median = evidence.baseline.median.unwrap_or(f64::NAN);
    let step = inferred_step(&b, &c);
    let pairs: Vec<(f64, f64)> = step
        .map(|step| pair_nearest(&b, &c, step))
        .unwrap_or_default()
        .into_iter()
        .map(|(i, j)| (b[i].v, c[j].v))
        .collect();
    let most = bv.len().min(cv.len());
    let paired = pairs.len() >= need && pairs.len() * 5 >= most * 4;
    let measured = if paired {
        let how = format!(
            "{} of {most} points paired (nearest within half the {}s step)",
            pairs.len(),
            fmt_num(step.unwrap_or(f64::NAN))
        );
        measure_paired(spec, &pairs, baseline_median, &how)
    } else {
        let why = match step {
            Some(step) => format!(
                "{} of {most} points paired within half the {}s step",
                pairs.len(),
                fmt_num(step)
            ),
            None => format!("0 of {most} points paired: the timestamps give no step"),
        };
        measure_unpaired(spec, &bv, &cv, baseline_median, &why)
    };
    let m = match measured {
        Ok(m) => m,
        Err(err) => return not_computed(spec, "the test", err, evidence),
    };
    evidence.p_value = Some(m.p_value);
    evidence.effect = Some(m.effect);
    evidence.test = Some(m.test);
    evidence.comparison = Some(m.comparison);

    let alpha = significance_level(spec);
    let significant = m.p_value < alpha;
    let too_far = beyond(spec.direction, m.relative, tolerance);
    let effect = format!("canary {} vs baseline", pct(m.relative));
    // Each sentence formats only the numbers it shows (float formatting is most of its cost).
    let tol = || pct(tolerance).trim_start_matches('+').to_string();
    let (verdict, reason) = if significant && too_far {
        (
            Verdict::Fail,
            format!(
                "{effect}: beyond the {} tolerance {} baseline, {}",
                tol(),
                bad_word(spec.direction),
                significant_clause(m.p_value, alpha)
            ),
        )
    } else if !significant {
        (
            Verdict::Pass,
            format!(
                "{effect}: no significant difference, p = {} ≥ {}",
                fmt_p(m.p_value),
                fmt_num(alpha)
            ),
        )
    } else {
        (
            Verdict::Pass,
            format!(
                "{effect}: significant (p = {}) but within the {} tolerance",
                fmt_p(m.p_value),
                tol()
            ),
        )
    };
    finish(spec, verdict, reason, evidence)
}

fn measure_paired(
    spec: &CheckSpec,
    pairs: &[(f64, f64)],
    baseline_median: f64,
    how: &str,
) -> Result<Measured, StatsError> {
    let positive = pairs.iter().all(|(b, c)| *b > 0.0 && *c > 0.0);
    let d: Vec<f64> = if positive {
        pairs.iter().map(|(b, c)| (c / b).ln()).collect()
    } else {
        pairs.iter().map(|(b, c)| c - b).collect()
    };
    // Sorted once for both the signed-rank test and the Walsh averages.
    let mut sorted = d;
    sorted.sort_unstable_by(f64::total_cmp);
    let sr = signed_rank_test_sorted(&sorted, bad_alternative(spec.direction))?;
    let (est, lo, hi) = walsh_shift_ci_sorted(sorted, spec.confidence)?;
    let method = match sr.method {
        SignedRankMethod::Exact => "exact",
        SignedRankMethod::Normal => "normal approximation",
    };
    let test = format!("Wilcoxon signed-rank ({method}) with Hodges-Lehmann pseudo-median");
    if positive {
        let raw_mid = median(pairs.iter().map(|(b, c)| c - b).collect());
        let ratio = est.exp();
        Ok(Measured {
            p_value: sr.p_value,
            relative: ratio - 1.0,
            effect: Effect {
                ratio: Some(ratio),
                difference: raw_mid,
                interval: Some(Interval {
                    low: lo.exp(),
                    high: hi.exp(),
                    confidence: spec.confidence,
                    scale: IntervalScale::Ratio,
                }),
            },
            test,
            comparison: format!("paired log-ratio by timestamp, {how}"),
        })
    } else {
        let relative = relative_to(est, baseline_median);
        Ok(Measured {
            p_value: sr.p_value,
            relative,
            effect: Effect {
                ratio: (baseline_median != 0.0).then_some(1.0 + relative),
                difference: est,
                interval: Some(Interval {
                    low: lo,
                    high: hi,
                    confidence: spec.confidence,
                    scale: IntervalScale::Difference,
                }),
            },
            test,
            comparison: format!("paired difference by timestamp (values not all positive), {how}"),
        })
    }
}

fn measure_unpaired(
    spec: &CheckSpec,
    bv: &[f64],
    cv: &[f64],
    baseline_median: f64,
    why: &str,
) -> Result<Measured, StatsError> {
    let mw = mann_whitney_u(
        cv,
        bv,
        bad_alternative(spec.direction),
        MwMethod::Auto,
        true,
    )?;
    let method = match mw.method {
        MwMethod::Exact => "exact",
        _ => "normal approximation",
    };
    let test = format!("Mann-Whitney U ({method}) with Hodges-Lehmann shift");
    let comparison = format!(
        "Hodges-Lehmann shift + Mann-Whitney, unpaired, {} vs {} points ({why})",
        bv.len(),
        cv.len()
    );
    let positive = bv.iter().chain(cv).all(|v| *v > 0.0);
    if positive {
        let lb: Vec<f64> = bv.iter().map(|v| v.ln()).collect();
        let lc: Vec<f64> = cv.iter().map(|v| v.ln()).collect();
        let shift = hodges_lehmann_ci(&lb, &lc, spec.confidence)?;
        let difference = hodges_lehmann(bv, cv)?;
        let ratio = shift.shift.exp();
        Ok(Measured {
            p_value: mw.p_value,
            relative: ratio - 1.0,
            effect: Effect {
                ratio: Some(ratio),
                difference,
                interval: Some(Interval {
                    low: shift.low.exp(),
                    high: shift.high.exp(),
                    confidence: spec.confidence,
                    scale: IntervalScale::Ratio,
                }),
            },
            test,
            comparison,
        })
    } else {
        let shift = hodges_lehmann_ci(bv, cv, spec.confidence)?;
        let relative = relative_to(shift.shift, baseline_median);
        Ok(Measured {
            p_value: mw.p_value,
            relative,
            effect: Effect {
                ratio: (baseline_median != 0.0).then_some(1.0 + relative),
                difference: shift.shift,
                interval: Some(Interval {
                    low: shift.low,
                    high: shift.high,
                    confidence: spec.confidence,
                    scale: IntervalScale::Difference,
                }),
            },
            test,
            comparison,
        })
    }
}
