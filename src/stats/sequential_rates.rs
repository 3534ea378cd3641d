//! Anytime-valid bounds on a canary's excess error rate over its baseline's, from per-step
//! counts arriving over a stage (issue 19 point 2, error kinds).
//!
//! Each step with traffic on both sides gives one point `d_t = r_c − k·r_b` (the canary's error
//! rate minus `k` times the baseline's at that step; `k = 1` for the plain difference, `1 + tol`
//! for "at most tol worse, relatively"), whose mean is at most 0 exactly when the canary's rate
//! is at most `k` times the baseline's. Those points go through [`SequentialMean`], whose
//! long-run variance follows the data when per-step rates vary more than binomial noise allows
//! (overdispersion, bursts) and when bursts last several steps; the variance is then floored at
//! the binomial one, `p_c(1−p_c)·mean(1/n_c) + k²·p_b(1−p_b)·mean(1/n_b)` with each side's pooled
//! rate, so it is never below binomial. It assumes tens of requests per step at least (the
//! boundary is a normal one: for thin traffic the judge keeps its exact tests) and must not
//! drop steps other than those without traffic on a side, or decide a verdict.

use super::sequential::{
    Dependence, SequentialBounds, SequentialError, SequentialMean, Spread, TARGET_POINTS,
    mixing_parameter, radius,
};

/// The running summaries of both sides' per-step counts.
#[derive(Debug, Clone, PartialEq)]
pub struct SequentialRates {
    factor: f64,
    diff: SequentialMean,
    errors: [u64; 2],
    totals: [u64; 2],
    /// `Σ 1/n` per side over the steps used.
    inverse_totals: [f64; 2],
    skipped: usize,
}

impl SequentialRates {
    /// `factor` is `k` in `r_c − k·r_b`: 1 for "no worse at all", `1.5` for "at most 50% worse".
    pub fn new(factor: f64) -> Result<SequentialRates, SequentialError> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(SequentialError::NonFinite {
                what: "rate factor",
            });
        }
        Ok(SequentialRates {
            factor,
            diff: SequentialMean::new(),
            errors: [0; 2],
            totals: [0; 2],
            inverse_totals: [0.0; 2],
            skipped: 0,
        })
    }

    /// Like [`Self::new`], its per-step excesses' lag-1 estimate pooled with `prior`, the
    /// dependence of the steps just before the stage ([`SequentialMean::with_prior`]).
    pub fn with_prior(factor: f64, prior: Dependence) -> Result<SequentialRates, SequentialError> {
        let mut rates = SequentialRates::new(factor)?;
        rates.diff = SequentialMean::with_prior(prior);
        Ok(rates)
    }

    /// The dependence of the per-step excesses so far, to pool into a later stage's estimate.
    pub fn dependence(&self) -> Dependence {
        self.diff.dependence()
    }

    /// Steps a bound needs ([`SequentialMean::needed`]).
    pub fn needed(&self) -> usize {
        self.diff.needed()
    }

    /// Adds one step's `(errors, total)` of each side. A step without traffic on a side carries
    /// no comparison and is skipped (counted in [`Self::skipped`]).
    pub fn push(
        &mut self,
        canary: (u64, u64),
        baseline: (u64, u64),
    ) -> Result<(), SequentialError> {
        for (side, (errors, total)) in [("canary", canary), ("baseline", baseline)] {
            if errors > total {
                return Err(SequentialError::CountsExceedTotal {
                    side,
                    errors,
                    total,
                });
            }
        }
        if canary.1 == 0 || baseline.1 == 0 {
            self.skipped += 1;
            return Ok(());
        }
        let rate = |(e, n): (u64, u64)| e as f64 / n as f64;
        self.diff
            .push(rate(canary) - self.factor * rate(baseline))?;
        for (i, (e, n)) in [canary, baseline].into_iter().enumerate() {
            self.errors[i] += e;
            self.totals[i] += n;
            self.inverse_totals[i] += 1.0 / n as f64;
        }
        Ok(())
    }

    /// Steps skipped for lack of traffic on a side.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The mean excess and one step's standard deviation, never below binomial.
    pub fn spread(&self) -> Result<Spread, SequentialError> {
        let steps = self.diff.len();
        let binomial = if steps > 0 {
            (0..2)
                .map(|i| {
                    let p = self.errors[i] as f64 / self.totals[i] as f64;
                    let k2 = if i == 0 {
                        1.0
                    } else {
                        self.factor * self.factor
                    };
                    k2 * p * (1.0 - p) * self.inverse_totals[i] / steps as f64
                })
                .sum::<f64>()
        } else {
            0.0
        };
        match self.diff.spread() {
            Ok(spread) if spread.sigma * spread.sigma > binomial => Ok(spread),
            // The binomial floor holds: the variance is known.
            Ok(spread) => Ok(Spread {
                sigma: binomial.sqrt(),
                df: f64::INFINITY,
                ..spread
            }),
            // Identical per-step rates (no errors at all, say) still carry the binomial noise;
            // with no errors on either side even that is zero, and nothing can be bounded.
            Err(SequentialError::NoVariation { .. }) if binomial > 0.0 => Ok(Spread {
                n: steps,
                mean: self.diff.mean().unwrap_or(0.0),
                sigma: binomial.sqrt(),
                rho: 0.0,
                batch_size: 1,
                df: f64::INFINITY,
            }),
            Err(e) => Err(e),
        }
    }

    /// One-sided bounds on the mean excess at `alpha` each, valid at every look.
    pub fn bounds(&self, alpha: f64) -> Result<SequentialBounds, SequentialError> {
        let spread = self.spread()?;
        let r = spread.half_width(alpha)?;
        Ok(SequentialBounds {
            spread,
            lower: spread.mean - r,
            upper: spread.mean + r,
        })
    }

    /// `ln` of the one-sided mixture e-value against "the mean excess is at most 0".
    pub fn ln_e_value(&self, alpha: f64) -> Result<f64, SequentialError> {
        let spread = self.spread()?;
        let m = mixing_parameter(alpha, TARGET_POINTS)?;
        let t = spread.n as f64;
        Ok(super::sequential::ln_e_value(
            t,
            t * spread.mean / (spread.half_width(alpha)? / radius(spread.n, alpha)?),
            m,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_excess_is_bounded_with_the_binomial_variance_not_lost() {
        // Every step: the canary 5 errors in 100, the baseline 0 in 100. The per-step excess
        // never varies, but the counts still carry binomial noise: the mean excess is 5%,
        // bounded above zero, never read as "no difference".
        let mut rates = SequentialRates::new(1.0).unwrap();
        for _ in 0..40 {
            rates.push((5, 100), (0, 100)).unwrap();
        }
        let bounds = rates.bounds(0.01).unwrap();
        assert!((bounds.spread.mean - 0.05).abs() < 1e-12);
        let binomial = (0.05f64 * 0.95 / 100.0).sqrt();
        assert!((bounds.spread.sigma - binomial).abs() < 1e-12);
        assert!(bounds.lower > 0.0, "{bounds:?}");
    }

    #[test]
    fn bad_counts_are_refused_and_steps_without_traffic_skipped() {
        let mut rates = SequentialRates::new(1.0).unwrap();
        assert_eq!(
            rates.push((101, 100), (0, 100)),
            Err(SequentialError::CountsExceedTotal {
                side: "canary",
                errors: 101,
                total: 100
            })
        );
        rates.push((0, 0), (1, 100)).unwrap();
        assert_eq!(rates.skipped(), 1);
        for _ in 0..20 {
            rates.push((0, 100), (0, 100)).unwrap();
        }
        // No errors anywhere: nothing to scale a bound by, refused rather than passed.
        assert!(matches!(
            rates.bounds(0.01),
            Err(SequentialError::NoVariation { .. })
        ));
        assert!(SequentialRates::new(f64::NAN).is_err());
    }
}
