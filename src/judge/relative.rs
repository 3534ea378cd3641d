//! The relative check: the canary's values against the baseline's, failing when the canary is
//! shown worse than the tolerance (a fraction of the baseline), passing only when it is shown
//! within it, and otherwise inconclusive ([`InconclusiveCause::NotShown`], see `decision`).
//! Points are paired by timestamp when the two sides share their moments (each point with its
//! nearest neighbour on the other side closer than half a step, see `align`): the per-moment
//! log-ratio ln(canary/baseline) cancels whatever load both sides saw at that minute, so a 10%
//! shift stands out of a traffic wave that would swamp an unpaired comparison. When fewer than 4
//! in 5 points pair, each side's logs are compared unpaired (Welch). Data that is not all
//! positive is compared by differences, and the relative effect is taken against the baseline's
//! median. Pure.
//!
//! **Dependence and spikes.** Consecutive minutes of a latency series are correlated (load and
//! GC drift for minutes), so 30 points are often worth 5 to 15 independent ones; the rank tests
//! used before (Wilcoxon, Mann-Whitney) counted them as 30 and failed healthy canaries at lag-1
//! correlation 0.7 about 14% of the time instead of 0.5%. The test is now Student's t on the
//! mean log-ratio with its long-run (HAC) variance from [`crate::stats::long_run`] (AR(1)
//! prewhitening, Newey-West on the residuals, degrees of freedom that account for the estimated
//! dependence), which estimates the dependence from the window itself and needs no knob. What
//! the rank tests were kept for, robustness to isolated spikes, is kept by replacing a log-ratio
//! beyond [`crate::stats::SPIKE_MADS`] normal-consistent MADs from the median by its neighbours'
//! mean ([`crate::stats::despike`]): one minute cannot carry a verdict; where it found spikes,
//! the window's lag-1 correlation is read from a copy cleaned harder, since the smaller spikes
//! it leaves would pull the correlation down. Chosen over a
//! signed-rank statistic with a HAC variance of its scores because the bound must be on the
//! metric's scale (the decision compares it with the tolerance) and the mean's bound
//! is; the price is the power the long-run variance costs when there is no dependence at all
//! (its degrees of freedom assume some may be hidden), measured in BENCHMARKS.md.

use super::align::{inferred_step, pair_nearest};
use super::decision::{decide, not_shown_sentence};
use super::summary::{
    MIN_POINTS_FLOOR, bad_alternative, bad_word, clean, evidence_of, finish, fmt_num, fmt_p,
    inconclusive, no_data_reason, not_computed, significance_level, significant_clause, summarize,
};
use super::{
    CheckResult, CheckSpec, DecisionRule, DecisionScale, Direction, Effect, Evidence,
    InconclusiveCause, Interval, IntervalScale, Point, Thresholds,
};
use crate::stats::{
    EstimateError, MeanEstimate, SPIKE_MADS, StatsError, despike, long_run_dependence_from,
};

/// The fewest points whose spikes [`despike`] replaces (see `robust_mean`).
const DESPIKE_FROM: usize = 20;

/// How far from the median (in MADs) a value may lie in the copy a spiky window's lag-1
/// correlation is read from (see `robust_mean`).
const DEPENDENCE_MADS: f64 = 2.5;

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

/// What the comparison measured, before the decision, on the scale the test works on: the
/// log-ratio ln(canary/baseline) for positive values, the difference canary − baseline
/// otherwise.
struct Measured {
    estimate: MeanEstimate,
    /// Whether the scale is the log-ratio.
    log: bool,
    /// Points behind the estimate (pairs, or the smaller side unpaired).
    points: usize,
    /// The raw difference shown in the effect (median of pairwise differences, or of medians).
    difference: f64,
    test: String,
    comparison: String,
}

/// The interval at the confidence and the p-value of "no change" towards the bad side. An
/// estimate without variance (every pair the same ratio) is exact: its interval is the
/// estimate, and "no change" is rejected exactly when the estimate is on the bad side of it.
fn bounds(spec: &CheckSpec, e: &MeanEstimate) -> Result<((f64, f64), f64), StatsError> {
    if e.variance == 0.0 {
        let bad = match spec.direction {
            Direction::HigherIsWorse => e.estimate > 0.0,
            Direction::LowerIsWorse => e.estimate < 0.0,
            Direction::Either => e.estimate != 0.0,
        };
        return Ok(((e.estimate, e.estimate), if bad { 0.0 } else { 1.0 }));
    }
    let interval = e.interval(spec.confidence)?;
    let p = e.p_value(0.0, bad_alternative(spec.direction))?;
    Ok((interval, p))
}

/// The spike-guarded mean of a series with its long-run variance: [`despike`] at
/// [`SPIKE_MADS`] MADs, then [`long_run`]. A series that does not vary has an exact mean
/// (variance 0). Also the sentence describing the dependence found.
fn robust_mean(x: &[f64]) -> Result<(MeanEstimate, String), StatsError> {
    // Below `DESPIKE_FROM` points the MAD of a correlated window is too unreliable a scale:
    // at lag-1 correlation 0.7 and 10 points it flagged the window's own wander, and replacing
    // it shrank the variance (1.45% false alarms instead of 0.75% without the guard). A spike in
    // so short a window stays, and the long-run variance counts it, which is conservative.
    let w = if x.len() >= DESPIKE_FROM {
        despike(x, SPIKE_MADS)?
    } else {
        x.to_vec()
    };
    // Where the guard found spikes, smaller ones it left act as white noise and pull the lag-1
    // correlation down, shrinking the long-run variance (ρ 0.7 with 5% Pareto spikes: 1.06-1.15%
    // of healthy canaries failed at the one-sided 0.5%). The correlation of such a window is read
    // from a copy cleaned at `DEPENDENCE_MADS`; a window without spikes keeps its own.
    let cleaner = if w != x {
        Some(despike(x, DEPENDENCE_MADS)?)
    } else {
        None
    };
    match long_run_dependence_from(&w, cleaner.as_deref().unwrap_or(&w)) {
        Ok(lr) => {
            let how = format!(
                "lag-1 correlation {:.2}, worth {:.1} of {} points, {:.1} df",
                lr.rho, lr.effective_n, lr.n, lr.df
            );
            Ok((lr.mean_estimate(), how))
        }
        Err(EstimateError::NoVariation { .. }) => {
            let mean = w.iter().sum::<f64>() / w.len() as f64;
            if !mean.is_finite() {
                return Err(StatsError::NonFinite { what: "mean" });
            }
            let e = MeanEstimate {
                estimate: mean,
                variance: 0.0,
                df: f64::INFINITY,
            };
            Ok((e, "no variation: exact".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Both sides of a relative check, cleaned (NaN and infinities dropped and counted), with their
/// values and the evidence summarising them.
pub(super) struct Sides {
    pub b: Vec<Point>,
    pub c: Vec<Point>,
    pub bv: Vec<f64>,
    pub cv: Vec<f64>,
    pub evidence: Evidence,
}

/// The two sides' usable points and their evidence, or the no-data verdict when a side has
/// none. The fixed-window judge and the stage's (`staged`) both start here.
pub(super) fn sides(
    spec: &CheckSpec,
    b_points: &[Point],
    c_points: &[Point],
    thresholds: Thresholds,
) -> Result<Sides, Box<CheckResult>> {
    let (b, b_dropped) = clean(b_points);
    let (c, c_dropped) = clean(c_points);
    let bv: Vec<f64> = b.iter().map(|p| p.v).collect();
    let cv: Vec<f64> = c.iter().map(|p| p.v).collect();
    let evidence = evidence_of(
        summarize(&bv, b_dropped),
        summarize(&cv, c_dropped),
        thresholds,
    );
    for (side, values, dropped) in [("baseline", &bv, b_dropped), ("canary", &cv, c_dropped)] {
        if values.is_empty() {
            let reason = no_data_reason(side, dropped);
            let no_data = inconclusive(spec, InconclusiveCause::NoData, reason, evidence);
            return Err(Box::new(no_data));
        }
    }
    Ok(Sides {
        b,
        c,
        bv,
        cv,
        evidence,
    })
}

/// Judge a relative check on the two sides' points.
pub(super) fn judge(
    spec: &CheckSpec,
    tolerance: f64,
    b_points: &[Point],
    c_points: &[Point],
    thresholds: Thresholds,
) -> CheckResult {
    let Sides {
        b,
        c,
        bv,
        cv,
        mut evidence,
    } = match sides(spec, b_points, c_points, thresholds) {
        Ok(sides) => sides,
        Err(no_data) => return *no_data,
    };
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
        measure_paired(&pairs, &how)
    } else {
        let why = match step {
            Some(step) => format!(
                "{} of {most} points paired within half the {}s step",
                pairs.len(),
                fmt_num(step)
            ),
            None => format!("0 of {most} points paired: the timestamps give no step"),
        };
        measure_unpaired(&bv, &cv, &why)
    };
    let (m, (low, high), p_value) =
        match measured.and_then(|m| bounds(spec, &m.estimate).map(|(iv, p)| (m, iv, p))) {
            Ok(x) => x,
            Err(err) => return not_computed(spec, "the test", err, evidence),
        };
    // The decision is taken on the relative scale (a monotone map of the test's scale, so the
    // interval and the p-value keep their meaning): exp(x) − 1 of a log-ratio, x / |median| of
    // a difference.
    let to_relative = |x: f64| {
        if m.log {
            x.exp() - 1.0
        } else {
            relative_to(x, baseline_median)
        }
    };
    let relative = to_relative(m.estimate.estimate);
    let (rel_low, rel_high) = (to_relative(low), to_relative(high));
    evidence.p_value = Some(p_value);
    evidence.effect = Some(if m.log {
        Effect {
            ratio: Some(relative + 1.0),
            difference: m.difference,
            interval: Some(Interval {
                low: rel_low + 1.0,
                high: rel_high + 1.0,
                confidence: spec.confidence,
                scale: IntervalScale::Ratio,
            }),
        }
    } else {
        Effect {
            ratio: (baseline_median != 0.0).then_some(1.0 + relative),
            difference: m.estimate.estimate,
            interval: Some(Interval {
                low,
                high,
                confidence: spec.confidence,
                scale: IntervalScale::Difference,
            }),
        }
    });
    evidence.test = Some(m.test);
    evidence.comparison = Some(m.comparison);

    let alpha = significance_level(spec);
    let significant = p_value < alpha;
    let decided = decide(
        spec.direction,
        relative,
        (rel_low, rel_high),
        significant,
        tolerance,
    );
    // The limit on the bad side of the bound, signed, on the relative scale.
    let limit = match spec.direction {
        Direction::HigherIsWorse => tolerance,
        Direction::LowerIsWorse => -tolerance,
        Direction::Either if decided.bound < 0.0 => -tolerance,
        Direction::Either => tolerance,
    };
    evidence.decision = Some(if m.log {
        super::Decision {
            rule: decided.rule,
            bound: decided.bound + 1.0,
            limit: limit + 1.0,
            scale: DecisionScale::Ratio,
        }
    } else {
        let scale = baseline_median.abs();
        super::Decision {
            rule: decided.rule,
            bound: decided_bound_raw(decided.bound, low, high),
            limit: limit * scale,
            scale: DecisionScale::Difference,
        }
    });
    let effect = format!("canary {} vs baseline", pct(relative));
    // Each sentence formats only the numbers it shows (float formatting is most of its cost).
    let tol = || pct(tolerance).trim_start_matches('+').to_string();
    let within = || match spec.direction {
        Direction::HigherIsWorse => format!("+{}", tol()),
        Direction::LowerIsWorse => format!("-{}", tol()),
        Direction::Either => format!("±{}", tol()),
    };
    let conf = fmt_num(spec.confidence * 100.0);
    let reason = match decided.rule {
        DecisionRule::ShownBeyond => format!(
            "{effect}: beyond the {} tolerance {} baseline, {}",
            tol(),
            bad_word(spec.direction),
            significant_clause(p_value, alpha)
        ),
        DecisionRule::ShownWithin => format!(
            "{effect}: within the {} tolerance, shown at {conf}% (the bound is {}; p = {})",
            tol(),
            pct(decided.bound),
            fmt_p(p_value)
        ),
        DecisionRule::NotShown | DecisionRule::Observed => format!(
            "{effect}: {}; p = {}",
            not_shown_sentence(
                m.points,
                &format!("the canary within {}", within()),
                spec.confidence,
                &pct(decided.bound)
            ),
            fmt_p(p_value)
        ),
    };
    finish(spec, decided.verdict(&reason), reason, evidence)
}

/// The bound on the difference scale that corresponds to the relative bound: the interval's
/// end on the same side.
fn decided_bound_raw(relative_bound: f64, low: f64, high: f64) -> f64 {
    if relative_bound >= 0.0 { high } else { low }
}

fn measure_paired(pairs: &[(f64, f64)], how: &str) -> Result<Measured, StatsError> {
    let positive = pairs.iter().all(|(b, c)| *b > 0.0 && *c > 0.0);
    let d: Vec<f64> = if positive {
        pairs.iter().map(|(b, c)| (c / b).ln()).collect()
    } else {
        pairs.iter().map(|(b, c)| c - b).collect()
    };
    let (estimate, dependence) = robust_mean(&d)?;
    let what = if positive { "log-ratio" } else { "difference" };
    let test = format!(
        "mean paired {what}, spikes beyond {SPIKE_MADS} MADs replaced by their neighbours, with its long-run (HAC) variance \
         ({dependence}): Student's t"
    );
    let comparison = if positive {
        format!("paired log-ratio by timestamp, {how}")
    } else {
        format!("paired difference by timestamp (values not all positive), {how}")
    };
    Ok(Measured {
        estimate,
        log: positive,
        points: pairs.len(),
        difference: median(pairs.iter().map(|(b, c)| c - b).collect()),
        test,
        comparison,
    })
}

fn measure_unpaired(bv: &[f64], cv: &[f64], why: &str) -> Result<Measured, StatsError> {
    let positive = bv.iter().chain(cv).all(|v| *v > 0.0);
    let scale = |v: &[f64]| -> Vec<f64> {
        if positive {
            v.iter().map(|x| x.ln()).collect()
        } else {
            v.to_vec()
        }
    };
    let (c, c_how) = robust_mean(&scale(cv))?;
    let (b, b_how) = robust_mean(&scale(bv))?;
    let d = crate::stats::difference(&c, &b);
    let what = if positive { "log" } else { "value" };
    let test = format!(
        "difference of mean {what}s, each side spikes beyond {SPIKE_MADS} MADs replaced by their neighbours with its own \
         long-run (HAC) variance (baseline: {b_how}; canary: {c_how}): Welch's t"
    );
    let comparison = format!(
        "mean {what}s, unpaired, {} vs {} points ({why})",
        bv.len(),
        cv.len()
    );
    Ok(Measured {
        estimate: d,
        log: positive,
        points: bv.len().min(cv.len()),
        difference: median(cv.to_vec()) - median(bv.to_vec()),
        test,
        comparison,
    })
}
