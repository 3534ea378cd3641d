//! Staged judging (issue 19 points 1-2): a relative or error-rate check judged on *all* of its
//! stage's evidence so far (every point since the stage started, after its warm-up), with the
//! anytime-valid bounds of [`crate::stats::SequentialMean`] and [`crate::stats::SequentialRates`]
//! at the stage's share of the check's significance, so that looking at the growing evidence at
//! every analysis keeps the false-alarm rate (docs/sequential.md). It owns that decision and its
//! evidence; the caller chooses the points (the daemon queries from the stage's start) and the
//! share, and the family-wise correction (Holm over the checks' anytime p-values) is
//! `family`'s. Pure.
//!
//! The rule, with `L` the tolerance on the test's scale (`ln(1 + tolerance)` for a relative
//! check's log-ratios, the tolerance itself for an error rate's difference), α the share and β
//! the check's own one-sided significance: **fail** when the anytime p-value of "the worsening
//! is at most `L`" is below α (equivalently, the one-sided lower bound on the worsening is above
//! `L`); **pass** when the upper bound at β is within `L` (a rollout is promoted only if every
//! stage passes, so a false pass needs no split over the stages: docs/sequential.md);
//! otherwise the evidence is still accruing ([`InconclusiveCause::Accruing`]): the
//! stage holds and the next analysis, with more points, decides. Fewer than
//! [`crate::stats::MIN_POINTS`] points (or than `min_samples`) is accruing too, never a pass; a
//! check given the points just before its stage pools their dependence into its lag-1 estimate
//! (never their level) and decides from [`crate::stats::MIN_POINTS_WITH_PRIOR`]. Only
//! directional relative checks and higher-is-worse error rates are staged ([`supports`]); the
//! other kinds keep their fixed windows.

use super::align::{inferred_step, pair_nearest};
use super::summary::{
    evidence_of, finish, fmt_num, inconclusive, pp, significance_level, summarize_counts,
};
use super::{
    CheckKind, CheckResult, CheckSpec, CountPoint, Decision, DecisionRule, DecisionScale,
    Direction, Effect, InconclusiveCause, Interval, IntervalScale, Point, SideData, Thresholds,
    Verdict,
};
use crate::stats::{
    Dependence, SPIKE_MADS, SequentialError, SequentialMean, SequentialRates, Spread,
    TARGET_POINTS, despike, ln_e_value, mixing_parameter, radius,
};

/// Whether `spec` is judged on its stage's evidence: a relative check with a direction, or an
/// error-rate check where higher is worse.
pub fn supports(spec: &CheckSpec) -> bool {
    match spec.kind {
        CheckKind::Relative { .. } => spec.direction != Direction::Either,
        CheckKind::ErrorRate { .. } => spec.direction == Direction::HigherIsWorse,
        _ => false,
    }
}

/// Judge a supported check on its stage's evidence: failed at the significance of `spec` (the
/// caller gives a spec whose confidence is the stage's share, see `daemon::analysis`), passed on
/// the upper bound at the one-sided significance `pass`. `None` when the kind is not staged
/// ([`supports`]) or the data has the wrong shape: judge it as usual.
pub(super) fn judge(
    spec: &CheckSpec,
    baseline: &SideData,
    canary: &SideData,
    thresholds: Thresholds,
    staged: super::Staged<'_>,
) -> Option<CheckResult> {
    if !supports(spec) {
        return None;
    }
    let levels = Levels {
        fail: significance_level(spec),
        pass: staged.pass,
    };
    // Read with its lookback in the stage's warm-up: the points before the stage are there,
    // the stage's own not yet. That is the evidence accruing, not a lack of data.
    let empty = |d: &SideData| match d {
        SideData::Values(p) => p.is_empty(),
        SideData::Counts(p) => p.is_empty(),
    };
    if staged.before.is_some_and(|(b, c)| !empty(b) && !empty(c))
        && empty(baseline)
        && empty(canary)
    {
        let evidence = evidence_of(Default::default(), Default::default(), thresholds);
        let reason = "the stage's evidence starts after its warm-up: no point of it yet";
        return Some(inconclusive(
            spec,
            InconclusiveCause::Accruing,
            reason.to_string(),
            evidence,
        ));
    }
    match (&spec.kind, baseline, canary) {
        (CheckKind::Relative { tolerance }, SideData::Values(b), SideData::Values(c)) => {
            let before = match staged.before {
                Some((SideData::Values(b), SideData::Values(c))) => Some((&b[..], &c[..])),
                _ => None,
            };
            Some(relative(
                spec,
                *tolerance,
                (b, c),
                before,
                thresholds,
                levels,
            ))
        }
        (CheckKind::ErrorRate { tolerance }, SideData::Counts(b), SideData::Counts(c)) => {
            let before = match staged.before {
                Some((SideData::Counts(b), SideData::Counts(c))) => Some((&b[..], &c[..])),
                _ => None,
            };
            Some(error_rate(
                spec,
                *tolerance,
                (b, c),
                before,
                thresholds,
                levels,
            ))
        }
        _ => None,
    }
}

/// The one-sided significances of a staged check's two decisions.
#[derive(Debug, Clone, Copy)]
struct Levels {
    /// A failure: the stage's share of the check's significance (Holm's level in the family).
    fail: f64,
    /// A pass: the check's own significance. A canary is promoted only if every stage passes,
    /// so the chance of passing a stage where it is worse than the tolerance bounds the chance
    /// of promoting it, with no split over the stages.
    pass: f64,
}

impl Levels {
    /// The test's description: what each decision is held to.
    fn test(&self) -> String {
        format!(
            "one-sided: a failure at the stage's α {}, a pass on the bound at α {}",
            fmt_num(self.fail),
            fmt_num(self.pass)
        )
    }
}

/// The anytime p-value of "the mean is at most `hypothesis`" at one look: `min(1, 1/M_t)` of
/// the mixture e-value at the stage's level. Under the hypothesis it is ever below `a` with
/// probability at most `a` (Ville), so Holm over such p-values at every analysis keeps the
/// family's error over the stage (docs/sequential.md).
fn anytime_p(spread: &Spread, hypothesis: f64, alpha: f64) -> Result<f64, SequentialError> {
    let m = mixing_parameter(alpha, TARGET_POINTS)?;
    let t = spread.n as f64;
    // One point's standard deviation as the boundary uses it (Studentised early on).
    let scale = spread.half_width(alpha)? / radius(spread.n, alpha)?;
    let s = t * (spread.mean - hypothesis) / scale;
    Ok((-ln_e_value(t, s, m)).exp().min(1.0))
}

/// The verdict's rule from the p-value and the upper bound, both on the oriented scale (higher
/// is worse).
fn rule_of(p: f64, alpha: f64, upper: f64, limit: f64) -> DecisionRule {
    if p < alpha {
        DecisionRule::ShownBeyond
    } else if upper <= limit {
        DecisionRule::ShownWithin
    } else {
        DecisionRule::NotShown
    }
}

fn verdict_of(rule: DecisionRule, reason: &str) -> Verdict {
    match rule {
        DecisionRule::ShownBeyond => Verdict::Fail,
        DecisionRule::ShownWithin | DecisionRule::Observed => Verdict::Pass,
        DecisionRule::NotShown => Verdict::inconclusive(InconclusiveCause::Accruing, reason),
    }
}

fn accruing(
    spec: &CheckSpec,
    got: usize,
    need: usize,
    what: &str,
    ev: super::Evidence,
) -> CheckResult {
    let reason = format!(
        "the stage's evidence is accruing: {got} {what} so far, a decision needs at least {need}"
    );
    inconclusive(spec, InconclusiveCause::Accruing, reason, ev)
}

fn sequential_failed(spec: &CheckSpec, err: SequentialError, ev: super::Evidence) -> CheckResult {
    let cause = match err {
        SequentialError::NonFinite { .. } => InconclusiveCause::NonFinite,
        SequentialError::TooFew { .. } => InconclusiveCause::Accruing,
        _ => InconclusiveCause::Untestable,
    };
    inconclusive(
        spec,
        cause,
        format!("the stage's bound could not be computed: {err}"),
        ev,
    )
}

/// The values of `b` and `c` paired by timestamp.
fn paired(b: &[Point], c: &[Point]) -> Vec<(f64, f64)> {
    inferred_step(b, c)
        .map(|step| pair_nearest(b, c, step))
        .unwrap_or_default()
        .into_iter()
        .map(|(i, j)| (b[i].v, c[j].v))
        .collect()
}

/// The oriented log-ratios of `pairs` with isolated spikes (a log-ratio more than 3.5 MADs from
/// the median) replaced by their neighbours' mean, as the fixed-window judge does; `None` when a
/// value is not positive.
fn log_ratios(pairs: &[(f64, f64)], sign: f64) -> Option<Vec<f64>> {
    let ratios: Vec<f64> = pairs
        .iter()
        .map(|&(b, c)| (b > 0.0 && c > 0.0).then(|| sign * (c / b).ln()))
        .collect::<Option<_>>()?;
    Some(despike(&ratios, SPIKE_MADS).unwrap_or(ratios))
}

/// The dependence of the finite points before the stage (`before`, baseline and canary), for
/// the stage's lag-1 estimate; none when they do not pair or are not positive.
fn dependence_before(before: Option<(&[Point], &[Point])>, sign: f64) -> Dependence {
    let finite = |points: &[Point]| -> Vec<Point> {
        points.iter().copied().filter(|p| p.v.is_finite()).collect()
    };
    let Some(ratios) = before.and_then(|(b, c)| log_ratios(&paired(&finite(b), &finite(c)), sign))
    else {
        return Dependence::default();
    };
    let mut mean = SequentialMean::new();
    for r in ratios {
        if mean.push(r).is_err() {
            return Dependence::default();
        }
    }
    mean.dependence()
}

fn relative(
    spec: &CheckSpec,
    tolerance: f64,
    (b_points, c_points): (&[Point], &[Point]),
    before: Option<(&[Point], &[Point])>,
    thresholds: Thresholds,
    levels: Levels,
) -> CheckResult {
    let super::relative::Sides {
        b, c, mut evidence, ..
    } = match super::relative::sides(spec, b_points, c_points, thresholds) {
        Ok(sides) => sides,
        Err(no_data) => return *no_data,
    };
    let pairs = paired(&b, &c);
    // Oriented so that a worsening is positive.
    let (sign, limit) = match spec.direction {
        Direction::LowerIsWorse if tolerance < 1.0 => (-1.0, -(1.0 - tolerance).ln()),
        Direction::LowerIsWorse => (-1.0, f64::INFINITY),
        _ => (1.0, tolerance.ln_1p()),
    };
    // The points before the stage tell how dependent its points are (never its level): with
    // enough of them the bound decides from fewer of the stage's own (docs/sequential.md).
    let prior = dependence_before(before, sign);
    let mut mean = SequentialMean::with_prior(prior);
    let need = spec.min_samples.max(mean.needed());
    if pairs.len() < need {
        return accruing(spec, pairs.len(), need, "paired points", evidence);
    }
    // Isolated spikes are replaced: one wild minute of a p99 must not widen the stage's bound for
    // the rest of the stage. A change in the middle of a stage that is still a minority of its
    // points can look like spikes here; the window scan, where it is the majority, is what
    // catches it (docs/sequential.md).
    let Some(ratios) = log_ratios(&pairs, sign) else {
        let reason = "the stage's evidence compares log-ratios, and some values are not positive"
            .to_string();
        return inconclusive(spec, InconclusiveCause::Untestable, reason, evidence);
    };
    for r in ratios {
        if let Err(e) = mean.push(r) {
            return sequential_failed(spec, e, evidence);
        }
    }
    let alpha = levels.fail;
    let decided = mean.bounds(levels.pass).and_then(|bounds| {
        let p = if limit.is_finite() {
            anytime_p(&bounds.spread, limit, alpha)?
        } else {
            1.0
        };
        Ok((bounds, p))
    });
    let (bounds, p) = match decided {
        Ok(x) => x,
        Err(e) => return sequential_failed(spec, e, evidence),
    };
    let to_ratio = |x: f64| (sign * x).exp();
    let (low, high) = if sign > 0.0 {
        (to_ratio(bounds.lower), to_ratio(bounds.upper))
    } else {
        (to_ratio(bounds.upper), to_ratio(bounds.lower))
    };
    let ratio = to_ratio(bounds.spread.mean);
    evidence.p_value = Some(p);
    evidence.effect = Some(Effect {
        ratio: Some(ratio),
        difference: ratio - 1.0,
        interval: Some(Interval {
            low,
            high,
            confidence: 1.0 - levels.pass,
            scale: IntervalScale::Ratio,
        }),
    });
    let pooled = match prior.n {
        0 => String::new(),
        n => format!(", its dependence pooled with the {n} points before the stage"),
    };
    evidence.test = Some(format!(
        "anytime-valid confidence sequence on the mean paired log-ratio since the stage's \
         warm-up (long-run variance: lag-1 correlation {:.2}, batches of {}{pooled}), {}",
        bounds.spread.rho,
        bounds.spread.batch_size,
        levels.test()
    ));
    evidence.comparison = Some(format!(
        "paired log-ratio by timestamp over the stage, {} pairs",
        pairs.len()
    ));
    let rule = rule_of(p, alpha, bounds.upper, limit);
    let bad_bound = to_ratio(bounds.upper);
    let limit_ratio = to_ratio(limit);
    evidence.decision = Some(Decision {
        rule,
        bound: bad_bound,
        limit: limit_ratio,
        scale: DecisionScale::Ratio,
    });
    let pct = |r: f64| format!("{:+.1}%", (r - 1.0) * 100.0);
    let effect = format!(
        "canary {} vs baseline over {} stage points",
        pct(ratio),
        pairs.len()
    );
    let reason = match rule {
        DecisionRule::ShownBeyond => format!(
            "{effect}: beyond the {} tolerance, anytime p = {} < {}",
            pct(limit_ratio),
            fmt_num(p),
            fmt_num(alpha)
        ),
        DecisionRule::ShownWithin | DecisionRule::Observed => format!(
            "{effect}: within the {} tolerance, the stage's bound is {}",
            pct(limit_ratio),
            pct(bad_bound)
        ),
        DecisionRule::NotShown => format!(
            "{effect}: the stage's evidence is accruing, the bound {} is not yet within {} \
             (anytime p = {}, a failure needs < {})",
            pct(bad_bound),
            pct(limit_ratio),
            fmt_num(p),
            fmt_num(alpha)
        ),
    };
    finish(spec, verdict_of(rule, &reason), reason, evidence)
}

/// Pushes the usable steps of `b_points` and `c_points`, paired by timestamp, into `rates`;
/// returns the steps with traffic on both sides.
fn push_steps(
    rates: &mut SequentialRates,
    b_points: &[CountPoint],
    c_points: &[CountPoint],
) -> Result<usize, SequentialError> {
    let usable = |p: &&CountPoint| {
        p.errors.is_finite()
            && p.total.is_finite()
            && p.errors >= 0.0
            && p.total >= 0.0
            && p.errors <= p.total
            && p.total < 9.0e15
    };
    let as_point = |p: &CountPoint| Point { t: p.t, v: p.total };
    let b: Vec<&CountPoint> = b_points.iter().filter(usable).collect();
    let c: Vec<&CountPoint> = c_points.iter().filter(usable).collect();
    let bp: Vec<Point> = b.iter().map(|p| as_point(p)).collect();
    let cp: Vec<Point> = c.iter().map(|p| as_point(p)).collect();
    let pairs = inferred_step(&bp, &cp)
        .map(|step| pair_nearest(&bp, &cp, step))
        .unwrap_or_default();
    for (i, j) in &pairs {
        let count = |p: &CountPoint| (p.errors.round() as u64, p.total.round() as u64);
        rates.push(count(c[*j]), count(b[*i]))?;
    }
    Ok(pairs.len().saturating_sub(rates.skipped()))
}

fn error_rate(
    spec: &CheckSpec,
    tolerance: f64,
    (b_points, c_points): (&[CountPoint], &[CountPoint]),
    before: Option<(&[CountPoint], &[CountPoint])>,
    thresholds: Thresholds,
    levels: Levels,
) -> CheckResult {
    let (b_summary, _, b_total) = summarize_counts(b_points);
    let (c_summary, _, c_total) = summarize_counts(c_points);
    let mut evidence = evidence_of(b_summary, c_summary, thresholds);
    for (side, total) in [("baseline", b_total), ("canary", c_total)] {
        if total <= 0.0 {
            let reason = format!("no data: the {side} has no requests");
            return inconclusive(spec, InconclusiveCause::NoData, reason, evidence);
        }
    }
    let prior = before
        .and_then(|(b, c)| {
            let mut rates = SequentialRates::new(1.0).ok()?;
            push_steps(&mut rates, b, c).ok()?;
            Some(rates.dependence())
        })
        .unwrap_or_default();
    let mut rates = match SequentialRates::with_prior(1.0, prior) {
        Ok(r) => r,
        Err(e) => return sequential_failed(spec, e, evidence),
    };
    let steps = match push_steps(&mut rates, b_points, c_points) {
        Ok(steps) => steps,
        Err(e) => return sequential_failed(spec, e, evidence),
    };
    if steps < rates.needed() {
        return accruing(
            spec,
            steps,
            rates.needed(),
            "steps with traffic on both sides",
            evidence,
        );
    }
    if (c_total as usize) < spec.min_samples {
        return accruing(
            spec,
            c_total as usize,
            spec.min_samples,
            "canary requests",
            evidence,
        );
    }
    let alpha = levels.fail;
    let decided = rates
        .bounds(levels.pass)
        .and_then(|bounds| Ok((bounds, anytime_p(&bounds.spread, tolerance, alpha)?)));
    let (bounds, p) = match decided {
        Ok(x) => x,
        Err(e) => return sequential_failed(spec, e, evidence),
    };
    evidence.p_value = Some(p);
    evidence.effect = Some(Effect {
        ratio: None,
        difference: bounds.spread.mean,
        interval: Some(Interval {
            low: bounds.lower,
            high: bounds.upper,
            confidence: 1.0 - levels.pass,
            scale: IntervalScale::Difference,
        }),
    });
    evidence.test = Some(format!(
        "anytime-valid confidence sequence on the mean per-step excess error rate since the \
         stage's warm-up (never below binomial; lag-1 correlation {:.2}), {}",
        bounds.spread.rho,
        levels.test()
    ));
    evidence.comparison = Some(format!(
        "canary − baseline error rate per step over the stage, {steps} steps"
    ));
    let rule = rule_of(p, alpha, bounds.upper, tolerance);
    evidence.decision = Some(Decision {
        rule,
        bound: bounds.upper,
        limit: tolerance,
        scale: DecisionScale::Difference,
    });
    let effect = format!(
        "canary {} vs baseline over {steps} stage steps",
        pp(bounds.spread.mean)
    );
    let reason = match rule {
        DecisionRule::ShownBeyond => format!(
            "{effect}: beyond the {} tolerance, anytime p = {} < {}",
            pp(tolerance),
            fmt_num(p),
            fmt_num(alpha)
        ),
        DecisionRule::ShownWithin | DecisionRule::Observed => format!(
            "{effect}: within the {} tolerance, the stage's bound is {}",
            pp(tolerance),
            pp(bounds.upper)
        ),
        DecisionRule::NotShown => format!(
            "{effect}: the stage's evidence is accruing, the bound {} is not yet within {} \
             (anytime p = {}, a failure needs < {})",
            pp(bounds.upper),
            pp(tolerance),
            fmt_num(p),
            fmt_num(alpha)
        ),
    };
    finish(spec, verdict_of(rule, &reason), reason, evidence)
}
