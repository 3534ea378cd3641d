//! Effective counts: the error kinds' answer to overdispersion (issue 18 point 2). It owns the
//! choice between judging summed counts as binomial (exact) and widening them by a dispersion
//! factor φ estimated from the per-step counts, and the factor itself; the tests and verdicts
//! stay in `error_rate` and `error_rate_absolute`. Pure.
//!
//! Why effective counts. Summed errors judged as one binomial assume every request fails
//! independently at one rate; production rates move from minute to minute, and summed counts
//! then vary φ times more than binomial noise allows (φ ≈ 1 + n·p·CV², n·p a step's expected
//! errors, CV the spread of the per-step rate), so a binomial test alarms far above its level
//! (3.4% instead of 0.5% at 500 rpm with a per-side σ 0.5 factor). A quasi-binomial variance is φ
//! times the binomial one, and the counts `e/φ` out of `n/φ` have exactly that variance as
//! binomial counts: the exact tests the judge already trusts (Fisher's below 500 expected cells,
//! the pooled z-test above, the exact binomial test of `error-rate-absolute`) run unchanged on
//! the deflated counts, and so does Wilson's interval behind the bound a pass must show. With
//! φ = 1 nothing changes: the counts are the observed ones.
//!
//! The switch: **exact when a side averages fewer than [`ERRORS_PER_STEP`] error per step**
//! (fewer than two per step pooled over both sides, in the paired view). Low traffic (tens of
//! requests per minute, a few errors in the window) cannot be overdispersed by much — φ − 1 is
//! at most n·p·CV², a fraction of one when n·p is — while Pearson's X² over steps of 0 or 1 error
//! measures nothing but its own noise and would only cost power; so those canaries keep the
//! exact tests on the observed counts. Above it φ is estimated:
//! - **Paired** (the canary's share of each step's errors, [`stats::paired_dispersion`]) when at
//!   least 4 in 5 steps pair with the other side's nearest step within half a step, as relative
//!   checks pair. Bursts both sides see in the same minute cancel in the shares as they cancel in
//!   the difference of the rates (given the bursts, the difference has binomial variance), so
//!   only what moves one side and not the other widens it. Each side's own dispersion would
//!   count the shared bursts too: on `benches/detection.rs`'s model (shared σ 0.3, per side σ
//!   0.1, 600 rpm) it costs ×1.5's detection without buying calibration.
//! - **Per side** ([`stats::quasi_binomial`]) when the steps do not pair, and for
//!   `error-rate-absolute`, which judges the canary alone.
//!
//! φ is floored at 1 (never below binomial) and carries the noise of an estimate on k − 1
//! degrees of freedom: binomial counts give `X²/(k−1)` about `1 ± √(2/(k−1))`, above 1 half the
//! time by noise alone, and each such window would pay for a dispersion that is not there (about
//! 6 points of detection of ×1.5 at 500 rpm). So φ̂ is applied only once it is above the upper
//! quartile of that noise ([`SHOWN_ABOVE`]; 1.18 at 30 steps): below it the counts are judged
//! as observed. The price is on mildly overdispersed data whose φ̂ falls short of the gate; it is
//! measured (per-side σ 0.25 and 0.5: 0.5% and 0.75% false alarms at 0.99, a 0.5% level).
//! Judging `D/√(φ̂V)` against the normal quantile z would alarm like
//! Student's t on k − 1 degrees of freedom (0.77% instead of 0.5% at k = 30, 3% at k = 5) when φ
//! is well above 1; judging it against t always would cost power where the data are binomial
//! (φ̂ then exceeds 1 half the time by noise alone). The quantile used is z plus the share
//! `min(φ̂ − 1, 1)` of the way to t: z while φ̂ hugs the binomial floor, where the binomial
//! variance is near enough known, and t once φ̂ is 2 or more, where the variance is the
//! estimate's. The factor applied is φ̂·(quantile/z)², so the tests keep their level and their
//! exactness. `cargo bench --bench detection` measures it on overdispersed, shared-burst and
//! low-traffic counts next to a test that knows the true variance (BENCHMARKS.md).

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use super::align::{inferred_step, pair_nearest};
use super::summary::{fmt_num, whole};
use super::{CountPoint, Point};
use crate::stats::{self, Counts, EstimateError};

/// A side whose steps average fewer errors than this keeps the exact tests on its observed
/// counts (φ = 1); the paired view compares twice this with the errors of both sides per step.
pub const ERRORS_PER_STEP: f64 = 1.0;

/// The factors the two sides' counts are deflated by, and a sentence for the evidence.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Deflation {
    pub canary: f64,
    pub baseline: f64,
    /// How φ was found ("paired dispersion of 30 steps: φ 1.31, applied 1.38"), or why the
    /// counts are judged as observed.
    pub how: String,
}

impl Deflation {
    /// Whether the counts are judged as observed (binomial).
    pub fn is_exact(&self) -> bool {
        self.canary == 1.0 && self.baseline == 1.0
    }
}

/// `counts / factor`, rounded to whole events (the exact tests need integers).
pub(super) fn deflate(counts: Counts, factor: f64) -> Counts {
    if factor == 1.0 {
        return counts;
    }
    whole(counts.errors as f64 / factor, counts.total as f64 / factor)
}

/// One side's usable steps, in time order: whole counts at finite times (the points
/// `summary::summarize_counts` keeps).
fn steps(points: &[CountPoint]) -> Vec<(f64, Counts)> {
    let mut kept: Vec<(f64, Counts)> = points
        .iter()
        .filter(|p| {
            p.errors.is_finite()
                && p.total.is_finite()
                && p.errors >= 0.0
                && p.total >= 0.0
                && p.errors <= p.total
        })
        .map(|p| (p.t, whole(p.errors, p.total)))
        .collect();
    kept.sort_by(|a, b| match (a.0.is_finite(), b.0.is_finite()) {
        (true, true) => a.0.total_cmp(&b.0),
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => std::cmp::Ordering::Equal,
    });
    kept
}

/// Binomial counts give `X²/df` about `1 ± √(2/df)`; a dispersion is applied only above
/// `1 + SHOWN_ABOVE·√(2/df)`, the upper quartile of that noise (the normal quantile 0.674).
pub const SHOWN_ABOVE: f64 = 0.674;

/// The factor applied for an estimated dispersion `phi` on `df` degrees of freedom at the
/// check's `confidence` (see the module doc): 1 up to the upper quartile of binomial noise
/// ([`SHOWN_ABOVE`]), then `phi·(q/z)²`, `q = z + min(phi − 1, 1)·(t − z)`.
pub(super) fn applied(phi: f64, df: f64, confidence: f64) -> f64 {
    if df.is_nan() || df < 1.0 || phi.is_nan() || phi <= 1.0 + SHOWN_ABOVE * (2.0 / df).sqrt() {
        return 1.0;
    }
    let level = 1.0 - (1.0 - confidence) / 2.0;
    let z = Normal::standard().inverse_cdf(level);
    let t = StudentsT::new(0.0, 1.0, df)
        .map(|t| t.inverse_cdf(level))
        .unwrap_or(z);
    let q = z + (phi - 1.0).min(1.0) * (t - z);
    let factor = phi * (q / z) * (q / z);
    if factor.is_finite() { factor } else { phi }
}

/// One side's own factor: exact below [`ERRORS_PER_STEP`], else its quasi-binomial φ.
fn own(side: &str, steps: &[Counts], confidence: f64) -> Result<(f64, String), EstimateError> {
    let with_traffic = steps.iter().filter(|s| s.total > 0).count();
    let errors: u64 = steps.iter().map(|s| s.errors).sum();
    let per_step = errors as f64 / with_traffic.max(1) as f64;
    if per_step < ERRORS_PER_STEP {
        let how = format!(
            "{side}: {} errors per step, too few to be overdispersed: judged as observed",
            fmt_num(per_step)
        );
        return Ok((1.0, how));
    }
    match stats::quasi_binomial("counts", steps) {
        Ok(d) => {
            let factor = applied(d.phi, (d.steps - 1) as f64, confidence);
            let how = format!(
                "{side}: dispersion of {} steps φ {}{}",
                d.steps,
                fmt_num(d.scale),
                applied_clause(factor)
            );
            Ok((factor, how))
        }
        Err(EstimateError::TooFew { got, .. }) => Ok((
            1.0,
            format!("{side}: {got} steps with traffic, too few to measure dispersion"),
        )),
        Err(EstimateError::NoEvents { .. }) => Ok((1.0, format!("{side}: binomial"))),
        Err(e) => Err(e),
    }
}

fn applied_clause(factor: f64) -> String {
    if factor > 1.0 {
        format!(", counts divided by {}", fmt_num(factor))
    } else {
        ", at most binomial: counts as observed".to_string()
    }
}

/// The factors for comparing the canary's counts with the baseline's: paired when the steps
/// pair, each side's own otherwise (see the module doc).
pub(super) fn for_comparison(
    baseline: &[CountPoint],
    canary: &[CountPoint],
    confidence: f64,
) -> Result<Deflation, EstimateError> {
    let (b, c) = (steps(baseline), steps(canary));
    let at = |side: &[(f64, Counts)]| -> Vec<Point> {
        side.iter().map(|&(t, _)| Point { t, v: 0.0 }).collect()
    };
    let (bt, ct) = (at(&b), at(&c));
    let pairs = inferred_step(&bt, &ct)
        .map(|step| pair_nearest(&bt, &ct, step))
        .unwrap_or_default();
    let most = b.len().min(c.len());
    if pairs.len() >= 3 && pairs.len() * 5 >= most * 4 {
        let paired: Vec<(Counts, Counts)> = pairs.iter().map(|&(i, j)| (c[j].1, b[i].1)).collect();
        let with_traffic = paired
            .iter()
            .filter(|(c, b)| c.total > 0 && b.total > 0)
            .count();
        let errors: u64 = paired
            .iter()
            .filter(|(c, b)| c.total > 0 && b.total > 0)
            .map(|(c, b)| c.errors + b.errors)
            .sum();
        let per_step = errors as f64 / with_traffic.max(1) as f64;
        let exact = |how: String| Deflation {
            canary: 1.0,
            baseline: 1.0,
            how,
        };
        if per_step < 2.0 * ERRORS_PER_STEP {
            return Ok(exact(format!(
                "{} errors per step on both sides together, too few to be overdispersed: \
                 judged as observed",
                fmt_num(per_step)
            )));
        }
        return match stats::paired_dispersion(&paired) {
            Ok(d) => {
                let factor = applied(d.phi, (d.steps - 1) as f64, confidence);
                Ok(Deflation {
                    canary: factor,
                    baseline: factor,
                    how: format!(
                        "paired dispersion of the canary's share of each step's errors, {} \
                         steps: φ {}{}",
                        d.steps,
                        fmt_num(d.scale),
                        applied_clause(factor)
                    ),
                })
            }
            Err(EstimateError::TooFew { got, .. }) => Ok(exact(format!(
                "{got} paired steps with errors, too few to measure dispersion: judged as observed"
            ))),
            Err(EstimateError::NoEvents { .. }) => Ok(exact(
                "one side has no errors: no dispersion to measure, judged as observed".into(),
            )),
            Err(e) => Err(e),
        };
    }
    let counts = |side: &[(f64, Counts)]| side.iter().map(|s| s.1).collect::<Vec<_>>();
    let (canary, c_how) = own("canary", &counts(&c), confidence)?;
    let (baseline, b_how) = own("baseline", &counts(&b), confidence)?;
    Ok(Deflation {
        canary,
        baseline,
        how: format!(
            "{} of {most} steps paired, dispersion per side: {c_how}; {b_how}",
            pairs.len()
        ),
    })
}

/// The canary's own factor, for a check that judges the canary alone.
pub(super) fn for_canary(
    canary: &[CountPoint],
    confidence: f64,
) -> Result<Deflation, EstimateError> {
    let c: Vec<Counts> = steps(canary).into_iter().map(|s| s.1).collect();
    let (factor, how) = own("canary", &c, confidence)?;
    Ok(Deflation {
        canary: factor,
        baseline: 1.0,
        how,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_applied_factor_moves_from_z_to_t_as_phi_leaves_the_binomial_floor() {
        assert_eq!(applied(1.0, 29.0, 0.99), 1.0);
        assert_eq!(applied(0.7, 29.0, 0.99), 1.0);
        // Within the upper quartile of binomial noise at 29 df (1 + 0.674·√(2/29) = 1.177).
        assert_eq!(applied(1.17, 29.0, 0.99), 1.0);
        // t(0.995, 29) = 2.7564, z = 2.5758.
        let (t, z) = (2.756_385_903_670_335_f64, 2.575_829_303_549_05_f64);
        let q = z + 0.3 * (t - z);
        let near = applied(1.3, 29.0, 0.99);
        assert!((near - 1.3 * (q / z).powi(2)).abs() < 1e-9, "{near}");
        // From φ = 2 on, Student's t.
        let far = applied(3.0, 29.0, 0.99);
        assert!((far - 3.0 * (t / z).powi(2)).abs() < 1e-9, "{far}");
    }

    #[test]
    fn deflated_counts_are_whole_and_unchanged_at_one() {
        let c = Counts {
            errors: 75,
            total: 15_000,
        };
        assert_eq!(deflate(c, 1.0), c);
        assert_eq!(
            deflate(c, 1.5),
            Counts {
                errors: 50,
                total: 10_000
            }
        );
    }
}
