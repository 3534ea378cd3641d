//! Anytime-valid one-sided confidence bounds on the mean of a series whose points arrive over a
//! stage (issue 19 point 2): bounds that hold at every look at once, however often one looks, so
//! a decision taken at the first look whose bound clears a threshold keeps its error rate.
//!
//! It owns the Robbins normal-mixture boundary in its one-sided (half-normal mixture) form
//! (Howard, Ramdas, McAuliffe, Sekhon 2021, the one-sided normal mixture), with the mixing parameter
//! fixed for [`TARGET_POINTS`] by the rule of Waudby-Smith et al. (AsympCS, 2021); the mixture's
//! e-value for anytime p-values; and [`SequentialMean`], a bounded-memory accumulator (its memory
//! does not grow with the stage) that plugs a long-run variance into the boundary: an AR(1)
//! prewhitened batch-means estimate with batches that double, floored at the i.i.d. and the
//! AR(1) estimates. Under a CLT for weakly dependent series this is an *asymptotic* confidence
//! sequence (AsympCS, with the long-run variance in place of the variance); the
//! Monte-Carlo tests in `tests/core/sequential.rs` measure how it holds at finite n.
//! It assumes the series' mean does not move within the stage (its evidence starts at the
//! stage's start, the judge's business) and must not decide verdicts or split α (see
//! [`super::alpha_split`]). docs/sequential.md argues every choice.

use statrs::distribution::{ContinuousCDF, StudentsT};
use statrs::function::erf::erfc;

/// The number of points the boundary is tightest for: the mixing parameter is chosen so that
/// the bound is narrowest at 60 points (an hour of one-minute steps, ten minutes of 10 s
/// steps). The boundary is flat around its optimum: at 10 or 1,000 points it is at most 17% and
/// 11% wider than the narrowest boundary any mixing parameter gives there (at α 0.05; 11% and
/// 7% at 0.005), pinned by `tests/core/sequential_reference.rs`.
pub const TARGET_POINTS: f64 = 60.0;

/// Points needed before a bound is given. With 10, an AR(1) with ρ 0.8 often looks independent
/// and its stages crossed falsely in 2% at α 1%, nearly all at points 10-13; from 20, 0.4%
/// (docs/sequential.md).
pub const MIN_POINTS: usize = 20;

/// Points a bound needs when an earlier segment of the same series of at least [`MIN_POINTS`]
/// points ([`SequentialMean::with_prior`]) says how dependent its points are: the floor of
/// [`MIN_POINTS`] is there because ten points of a strongly correlated series can look
/// independent, which the earlier segment's points rule out (docs/sequential.md).
pub const MIN_POINTS_WITH_PRIOR: usize = 10;

/// The lag-1 dependence of a segment of a series: its points and its sums of squared and of
/// lag-1 products of deviations from its own mean. The segment's level does not matter (an
/// earlier stage's, at another weight), only how its points hang together.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Dependence {
    pub n: usize,
    c0: f64,
    c1: f64,
}

/// Batches kept between `BATCHES` and `2·BATCHES`: when `2·BATCHES` are complete, neighbours
/// merge and the batch size doubles.
const BATCHES: usize = 32;

/// Largest AR(1) coefficient used for prewhitening, as in [`super::long_run`].
const RHO_CLAMP: f64 = 0.97;

/// Why a sequential bound could not be computed, or an α split refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SequentialError {
    /// Fewer points than [`MIN_POINTS`] (or steps with traffic on both sides).
    #[error("too few points: {what} needs at least {needed}, got {got}")]
    TooFew {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    /// A NaN or infinite value was offered.
    #[error("non-finite value in {what}")]
    NonFinite { what: &'static str },
    /// Every point so far is the same: there is no variance to scale the boundary by.
    #[error("{what} does not vary: every value is the same")]
    NoVariation { what: &'static str },
    /// An error probability outside (0, 1).
    #[error("alpha {0} is outside (0, 1)")]
    Alpha(f64),
    /// A step reports more errors than requests.
    #[error("{side}: a step has {errors} errors out of a total of {total}")]
    CountsExceedTotal {
        side: &'static str,
        errors: u64,
        total: u64,
    },
    /// An α split needs at least one share.
    #[error("an alpha split needs at least one stage")]
    NoStages,
    /// A share of an α split that is not a positive finite number.
    #[error("stage {index}: weight {weight} is not a positive finite number")]
    Weight { index: usize, weight: f64 },
}

fn check_alpha(alpha: f64) -> Result<(), SequentialError> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(SequentialError::Alpha(alpha))
    }
}

/// The mixing parameter `m` (the precision of the normal mixing distribution, in units of one
/// point's variance) that makes the one-sided boundary at `alpha` tightest near `target`
/// points: AsympCS's `ρ² = (2 ln(1/a) + ln(1 + 2 ln(1/a))) / t*` with `m = 1/ρ²`, taken at the
/// two-sided level `a = 2·alpha`, which the one-sided boundary at `alpha` approaches.
pub fn mixing_parameter(alpha: f64, target: f64) -> Result<f64, SequentialError> {
    check_alpha(alpha)?;
    let l = 2.0 * (1.0 / (2.0 * alpha).min(0.999)).ln();
    Ok(target / (l + (1.0 + l).ln()))
}

/// `ln Φ(z)` for the standard normal, accurate in both tails.
fn ln_phi(z: f64) -> f64 {
    (0.5 * erfc(-z / std::f64::consts::SQRT_2)).ln()
}

/// The logarithm of the one-sided (half-normal) mixture e-value after `t` points whose
/// standardised sum is `s` (sum of deviations from the hypothesised mean, divided by one
/// point's standard deviation): `ln(2·√(m/(t+m))·exp(z²/2)·Φ(z))`, `z = s/√(t+m)`. Under the
/// hypothesis it is a nonnegative supermartingale with mean at most 1 (for Gaussian increments;
/// asymptotically otherwise), so by Ville's inequality it ever reaches `1/α` with probability at
/// most α.
pub fn ln_e_value(t: f64, s: f64, m: f64) -> f64 {
    let z = s / (t + m).sqrt();
    std::f64::consts::LN_2 + 0.5 * (m / (t + m)).ln() + 0.5 * z * z + ln_phi(z)
}

/// The one-sided boundary on the standardised sum after `t` points: the `s` at which
/// [`ln_e_value`] reaches `ln(1/α)`. Found by bisection between 0 and the two-sided boundary at
/// α (`√((t+m)·ln((t+m)/(m·α²)))`), which always lies above it.
pub fn one_sided_boundary(t: f64, alpha: f64, m: f64) -> Result<f64, SequentialError> {
    check_alpha(alpha)?;
    if !(t.is_finite() && t > 0.0 && m.is_finite() && m > 0.0) {
        return Err(SequentialError::NonFinite { what: "boundary" });
    }
    let goal = (1.0 / alpha).ln();
    let f =
        |z: f64| std::f64::consts::LN_2 + 0.5 * (m / (t + m)).ln() + 0.5 * z * z + ln_phi(z) - goal;
    let (mut lo, mut hi) = (0.0, ((t + m) / m).ln() + 2.0 * goal);
    hi = hi.sqrt();
    // f is increasing in z (its derivative z + φ(z)/Φ(z) is positive), f(0) < 0 < f(hi).
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-15 * hi {
            break;
        }
    }
    Ok(0.5 * (lo + hi) * (t + m).sqrt())
}

/// The two-sided normal-mixture boundary on the standardised sum at total level α (Howard et
/// al. 2021; AsympCS's margin times t): `√((t+m)·ln((t+m)/(m·α²)))`.
pub fn two_sided_boundary(t: f64, alpha: f64, m: f64) -> Result<f64, SequentialError> {
    check_alpha(alpha)?;
    Ok(((t + m) * ((t + m) / (m * alpha * alpha)).ln()).sqrt())
}

/// The half-width of a one-sided bound on the mean after `t` points, per unit of one point's
/// (long-run) standard deviation, for the mixing parameter chosen for [`TARGET_POINTS`].
pub fn radius(t: usize, alpha: f64) -> Result<f64, SequentialError> {
    let m = mixing_parameter(alpha, TARGET_POINTS)?;
    Ok(one_sided_boundary(t as f64, alpha, m)? / t as f64)
}

/// One batch of points: how many have a predecessor, their sum and their predecessors' sum
/// (so the residuals of any AR(1) fit can be summed per batch later).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Batch {
    count: usize,
    sum: f64,
    sum_prev: f64,
}

impl Batch {
    fn merge(self, other: Batch) -> Batch {
        Batch {
            count: self.count + other.count,
            sum: self.sum + other.sum,
            sum_prev: self.sum_prev + other.sum_prev,
        }
    }
}

/// The running summaries of a series' points: enough for its mean and a long-run variance, in
/// memory that does not grow with the number of points (at most `2·BATCHES` batches of three
/// numbers). Values are stored shifted by the first point, so sums of squares do not cancel.
#[derive(Debug, Clone, PartialEq)]
pub struct SequentialMean {
    n: usize,
    shift: f64,
    sum: f64,
    sum_sq: f64,
    /// `Σ x_t x_{t-1}`, `Σ x_{t-1}`, `Σ x_{t-1}²` over t ≥ 2.
    sum_cross: f64,
    sum_prev: f64,
    sum_prev_sq: f64,
    last: f64,
    batch_size: usize,
    batches: Vec<Batch>,
    open: Batch,
    /// An earlier segment's dependence, pooled into the lag-1 estimate.
    prior: Dependence,
}

impl Default for SequentialMean {
    fn default() -> Self {
        SequentialMean::new()
    }
}

/// The mean so far with its long-run standard deviation and how it was estimated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub mean: f64,
    /// One point's long-run standard deviation `σ̂_LR` (the boundary's scale): `√(n·Var(mean))`.
    pub sigma: f64,
    /// The AR(1) coefficient used for prewhitening (bias-corrected, clamped).
    pub rho: f64,
    /// Points per batch of the batch-means estimate.
    pub batch_size: usize,
    /// Degrees of freedom of `σ̂²` (infinite when it is known, as a binomial floor is).
    pub df: f64,
}

impl Spread {
    /// The half-width of the one-sided bound at `alpha`: `σ̂` times the standardised radius of
    /// [`radius`], Studentised at the look's own level: the radius is `z/√n` for some `z`, the
    /// Gaussian quantile of the level this look is held to; it becomes the Student-t quantile
    /// of the same level at `df`. That widens the early looks of a stage, where `σ̂` rests on
    /// few effective points, and tends to the Gaussian boundary as the stage grows (so the
    /// bound stays asymptotically exact).
    pub fn half_width(&self, alpha: f64) -> Result<f64, SequentialError> {
        let r = radius(self.n, alpha)?;
        if self.df.is_infinite() {
            return Ok(r * self.sigma);
        }
        let z = r * (self.n as f64).sqrt();
        let tail = 0.5 * erfc(z / std::f64::consts::SQRT_2);
        let t = StudentsT::new(0.0, 1.0, self.df)
            .map_err(|_| SequentialError::NonFinite { what: "df" })?
            .inverse_cdf(tail);
        let t = -t;
        Ok(r * self.sigma * (t / z).max(1.0))
    }
}

/// One-sided anytime-valid bounds on the mean, each holding at every look with probability at
/// least `1 − alpha` (asymptotically).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SequentialBounds {
    pub spread: Spread,
    /// The mean is above this at every look, with probability at least `1 − alpha`.
    pub lower: f64,
    /// The mean is below this at every look, with probability at least `1 − alpha`.
    pub upper: f64,
}

impl SequentialMean {
    pub fn new() -> SequentialMean {
        SequentialMean {
            n: 0,
            shift: 0.0,
            sum: 0.0,
            sum_sq: 0.0,
            sum_cross: 0.0,
            sum_prev: 0.0,
            sum_prev_sq: 0.0,
            last: 0.0,
            batch_size: 1,
            batches: Vec::with_capacity(2 * BATCHES),
            open: Batch::default(),
            prior: Dependence::default(),
        }
    }

    /// An accumulator whose lag-1 estimate pools `prior`, the dependence of an earlier segment
    /// of the same series (the points just before the stage's evidence starts): the mean and the
    /// variance are still this segment's own, but with a prior of [`MIN_POINTS`] points or more
    /// a bound is given from [`MIN_POINTS_WITH_PRIOR`] points.
    pub fn with_prior(prior: Dependence) -> SequentialMean {
        SequentialMean {
            prior,
            ..SequentialMean::new()
        }
    }

    /// The dependence of the points so far, to pool into a later segment's estimate.
    pub fn dependence(&self) -> Dependence {
        if self.n < 2 {
            return Dependence::default();
        }
        let (c0, c1) = self.lag_sums();
        Dependence { n: self.n, c0, c1 }
    }

    /// The sums of squared and of lag-1 products of deviations from the mean.
    fn lag_sums(&self) -> (f64, f64) {
        let n = self.n as f64;
        let mean = self.sum / n;
        let k = n - 1.0;
        // Values are shifted by the first point, so the first is 0 and the sums over t ≥ 2 of
        // x_t and x_t² are the sums over all points.
        let c1 = self.sum_cross - mean * (self.sum + self.sum_prev) + k * mean * mean;
        let c0 = self.sum_sq - n * mean * mean;
        (c0, c1)
    }

    /// Points a bound needs: [`MIN_POINTS`], or [`MIN_POINTS_WITH_PRIOR`] with a long prior.
    pub fn needed(&self) -> usize {
        if self.prior.n >= MIN_POINTS {
            MIN_POINTS_WITH_PRIOR
        } else {
            MIN_POINTS
        }
    }

    /// Points seen so far.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The mean of the points so far (`None` before the first).
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64 + self.shift)
    }

    /// Adds the next point. A non-finite value is refused and leaves the summaries unchanged.
    pub fn push(&mut self, value: f64) -> Result<(), SequentialError> {
        if !value.is_finite() {
            return Err(SequentialError::NonFinite { what: "point" });
        }
        if self.n == 0 {
            self.shift = value;
        }
        let x = value - self.shift;
        if self.n > 0 {
            let prev = self.last;
            self.sum_cross += x * prev;
            self.sum_prev += prev;
            self.sum_prev_sq += prev * prev;
            self.open.count += 1;
            self.open.sum += x;
            self.open.sum_prev += prev;
            if self.open.count == self.batch_size {
                self.batches.push(std::mem::take(&mut self.open));
                if self.batches.len() == 2 * BATCHES {
                    let merged: Vec<Batch> = self
                        .batches
                        .chunks(2)
                        .map(|pair| pair[0].merge(pair[1]))
                        .collect();
                    self.batches = merged;
                    self.batch_size *= 2;
                }
            }
        }
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
        self.last = x;
        Ok(())
    }

    /// The mean so far and one point's long-run standard deviation: the largest of the i.i.d.
    /// standard deviation, the AR(1) one (`σ_e/(1−ρ̂)`) and the prewhitened batch-means one
    /// (residual batch sums' variance per point, recoloured by `1/(1−ρ̂)²`).
    pub fn spread(&self) -> Result<Spread, SequentialError> {
        let needed = self.needed();
        if self.n < needed {
            return Err(SequentialError::TooFew {
                what: "a sequential bound",
                needed,
                got: self.n,
            });
        }
        let n = self.n as f64;
        let mean = self.sum / n;
        let raw_variance = (self.sum_sq - n * mean * mean) / (n - 1.0);
        if !raw_variance.is_finite() {
            return Err(SequentialError::NonFinite {
                what: "the series' variance",
            });
        }
        let variance = raw_variance.max(0.0);
        if variance <= 1e-300 * (1.0 + (mean + self.shift).abs()) {
            return Err(SequentialError::NoVariation { what: "the series" });
        }
        // Lag-1 autocorrelation around the overall mean, bias-corrected (Marriott-Pope); with a
        // prior, pooled with the earlier segment's (each around its own mean, so each carries
        // the bias of one mean: about `(1+3ρ)/n` per segment, `2(1+3ρ)/N` pooled), and never
        // below this segment's own. `n_rho` is the points the estimate rests on.
        let k = n - 1.0;
        let sum_cur = self.sum;
        let (c0, c1) = self.lag_sums();
        let raw = (c1 / c0).clamp(-1.0, 1.0);
        let own = (raw + (1.0 + 3.0 * raw) / n).clamp(-RHO_CLAMP, RHO_CLAMP);
        let (rho, n_rho) = match self.prior {
            Dependence {
                n: p,
                c0: p0,
                c1: p1,
            } if p >= 2 && p0 > 0.0 && p0.is_finite() => {
                let total = n + p as f64;
                let raw = ((c1 + p1) / (c0 + p0)).clamp(-1.0, 1.0);
                let pooled = (raw + 2.0 * (1.0 + 3.0 * raw) / total).clamp(-RHO_CLAMP, RHO_CLAMP);
                if pooled > own {
                    (pooled, total)
                } else {
                    (own, n)
                }
            }
            _ => (own, n),
        };
        // Residuals e_t = (x_t − x̄) − ρ(x_{t−1} − x̄) for t ≥ 2.
        let cur_sq = self.sum_sq;
        let e_sum = (sum_cur - k * mean) - rho * (self.sum_prev - k * mean);
        let e_sq = (cur_sq - 2.0 * mean * sum_cur + k * mean * mean)
            - 2.0 * rho * (self.sum_cross - mean * (sum_cur + self.sum_prev) + k * mean * mean)
            + rho * rho * (self.sum_prev_sq - 2.0 * mean * self.sum_prev + k * mean * mean);
        let e_mean = e_sum / k;
        let e_var = ((e_sq - k * e_mean * e_mean) / (k - 1.0)).max(0.0);
        // Recolour with ρ one standard error up (`Var ρ̂ ≈ (1−ρ²)/n`): the looks that cross
        // falsely are those whose ρ̂ falls short of the truth, and the early looks of a stage
        // have few points. The excess vanishes as n grows, so the estimate stays consistent.
        let rho_up = if rho > 0.0 {
            (rho + ((1.0 - rho * rho) / n_rho).sqrt()).min(RHO_CLAMP)
        } else {
            rho
        };
        let recolour = 1.0 / ((1.0 - rho_up) * (1.0 - rho_up));
        let mut long_run = variance.max(e_var * recolour);
        if self.batches.len() >= 2 {
            let b = self.batch_size as f64;
            let sums: Vec<f64> = self
                .batches
                .iter()
                .map(|batch| (batch.sum - b * mean) - rho * (batch.sum_prev - b * mean))
                .collect();
            let avg = sums.iter().sum::<f64>() / sums.len() as f64;
            let bm =
                sums.iter().map(|s| (s - avg).powi(2)).sum::<f64>() / ((sums.len() - 1) as f64 * b);
            long_run = long_run.max(bm * recolour);
        }
        if !long_run.is_finite() {
            return Err(SequentialError::NonFinite {
                what: "the series' long-run variance",
            });
        }
        // Degrees of freedom as `stats::long_run` counts them for the AR(1) factor, plus the
        // i.i.d. variance's own: `1/df = 1/(n−1) + 4ρ⁺/(n(1−ρ⁺))`, at least 1.
        let inv_df = 1.0 / (n - 1.0) + 4.0 * rho_up.max(0.0) / (n_rho * (1.0 - rho_up));
        Ok(Spread {
            n: self.n,
            mean: mean + self.shift,
            sigma: long_run.sqrt(),
            rho,
            batch_size: self.batch_size,
            df: (1.0 / inv_df).max(1.0),
        })
    }

    /// One-sided bounds at `alpha` each, valid at every look.
    pub fn bounds(&self, alpha: f64) -> Result<SequentialBounds, SequentialError> {
        let spread = self.spread()?;
        let r = spread.half_width(alpha)?;
        Ok(SequentialBounds {
            spread,
            lower: spread.mean - r,
            upper: spread.mean + r,
        })
    }

    /// `ln` of the one-sided mixture e-value against "the mean is at most `hypothesis`" (for a
    /// lower bound above it): the evidence for a worsening beyond `hypothesis`. The running
    /// maximum of `exp(-this)`'s reciprocal over looks is an anytime p-value for Holm.
    pub fn ln_e_value(&self, hypothesis: f64, alpha: f64) -> Result<f64, SequentialError> {
        let spread = self.spread()?;
        let m = mixing_parameter(alpha, TARGET_POINTS)?;
        let t = spread.n as f64;
        let s =
            t * (spread.mean - hypothesis) / (spread.half_width(alpha)? / radius(spread.n, alpha)?);
        Ok(ln_e_value(t, s, m))
    }
}

/// The anytime-valid p-value of a hypothesis over a stage: `min(1, 1/max e-value)` over the
/// looks so far. Once small it stays small, and under the hypothesis it is ever below `a` with
/// probability at most `a`, so Holm's procedure over a family of them at every look keeps the
/// family-wise error over the whole stage.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AnytimeP {
    max_ln_e: f64,
}

impl AnytimeP {
    /// Records one look's `ln` e-value and returns the p-value so far.
    pub fn observe(&mut self, ln_e: f64) -> f64 {
        if ln_e.is_finite() && ln_e > self.max_ln_e {
            self.max_ln_e = ln_e;
        }
        self.p()
    }

    pub fn p(&self) -> f64 {
        (-self.max_ln_e).exp().min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_sided_boundary_is_where_the_e_value_reaches_one_over_alpha() {
        for &(t, alpha) in &[(10.0, 0.05), (60.0, 0.005), (2000.0, 0.01)] {
            let m = mixing_parameter(alpha, TARGET_POINTS).unwrap();
            let s = one_sided_boundary(t, alpha, m).unwrap();
            assert!((ln_e_value(t, s, m) - (1.0 / alpha).ln()).abs() < 1e-9);
            // Tighter than the two-sided boundary at alpha, looser than at 2·alpha.
            assert!(s < two_sided_boundary(t, alpha, m).unwrap());
            assert!(s > two_sided_boundary(t, 2.0 * alpha, m).unwrap());
        }
    }

    #[test]
    fn the_e_value_reaches_one_over_alpha_exactly_where_the_lower_bound_passes() {
        // The anytime p-value fed to Holm must agree with the bound the evidence shows.
        let mut acc = SequentialMean::new();
        let mut x = 0.0;
        for i in 0..200u32 {
            x = 0.6 * x + ((i * 7919) % 101) as f64 / 50.0 - 1.0;
            acc.push(x + 0.4).unwrap();
        }
        let alpha = 0.01;
        let lower = acc.bounds(alpha).unwrap().lower;
        let at = |h: f64| acc.ln_e_value(h, alpha).unwrap() - (1.0 / alpha).ln();
        assert!(at(lower).abs() < 1e-6, "{}", at(lower));
        assert!(at(lower - 0.01) > 0.0 && at(lower + 0.01) < 0.0);
        let mut p = AnytimeP::default();
        assert!(p.observe(acc.ln_e_value(lower - 0.01, alpha).unwrap()) < alpha);
        assert!(p.observe(f64::NAN) < alpha, "a later look never raises it");
    }

    #[test]
    fn memory_stays_bounded_and_the_mean_exact_over_a_long_stage() {
        let mut acc = SequentialMean::new();
        for i in 0..100_000 {
            acc.push(1000.0 + (i % 7) as f64).unwrap();
        }
        assert!(acc.batches.len() < 2 * BATCHES);
        let spread = acc.spread().unwrap();
        let expected = 1000.0 + (14_285.0 * 21.0 + 10.0) / 100_000.0;
        assert!((spread.mean - expected).abs() < 1e-9);
        assert!(spread.batch_size >= 100_000 / (2 * BATCHES));
    }

    #[test]
    fn degenerate_input_is_refused_never_a_bound() {
        let mut acc = SequentialMean::new();
        assert_eq!(
            acc.push(f64::NAN),
            Err(SequentialError::NonFinite { what: "point" })
        );
        for _ in 0..20 {
            acc.push(5.0).unwrap();
        }
        assert!(matches!(
            acc.bounds(0.01),
            Err(SequentialError::NoVariation { .. })
        ));
        assert!(matches!(
            SequentialMean::new().bounds(0.01),
            Err(SequentialError::TooFew { .. })
        ));
        assert_eq!(
            mixing_parameter(1.0, 60.0),
            Err(SequentialError::Alpha(1.0))
        );
    }
}
