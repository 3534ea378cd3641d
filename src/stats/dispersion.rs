//! Quasi-binomial dispersion of per-step error counts, and the variance of the difference of two
//! sides' pooled error rates with each side's own dispersion.
//!
//! Summed counts judged as one binomial assume every request fails independently at one rate.
//! Production error rates move from minute to minute (a bad host, a retry storm), so summed
//! counts vary more than binomial noise allows and a binomial test alarms too often. This module
//! estimates, per side, the Pearson dispersion `φ = X² / (k - 1)` of the per-step counts under a
//! common rate (`X² = Σ (e_i - n_i p̂)² / (n_i p̂ (1 - p̂))`, `p̂ = Σe/Σn`, k steps with traffic),
//! as statsmodels' `GLM(e/n, 1, Binomial(), var_weights=n).fit(scale='X2')` does, and never lets
//! it below 1: the variance of the pooled rate is `max(φ, 1)·p̂(1-p̂)/Σn`, binomial or wider.
//!
//! It assumes steps are independent of each other given the rate (within-step dependence is what
//! φ absorbs), and that a normal approximation of the pooled rate is fair (tens of errors at
//! least): for thin counts the judge keeps its exact tests. It must not decide a verdict or
//! drop steps other than those without traffic.

use super::Counts;
use super::estimate::{EstimateError, MeanEstimate, checked, difference};

/// The dispersion of one side's per-step counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dispersion {
    /// Steps with traffic (steps with a total of 0 are left out).
    pub steps: usize,
    pub errors: u64,
    pub total: u64,
    /// Pooled rate `Σe / Σn`.
    pub rate: f64,
    /// Pearson's `X²` of the counts under the pooled rate.
    pub pearson_chi2: f64,
    /// `X² / (steps - 1)`, statsmodels' `scale`.
    pub scale: f64,
    /// `max(scale, 1)`: the factor on the binomial variance.
    pub phi: f64,
}

impl Dispersion {
    /// The pooled rate with its quasi-binomial variance. The degrees of freedom are those of
    /// `X²` (`steps - 1`) when the dispersion is estimated above 1, infinite when the binomial
    /// floor holds (the variance is then known).
    pub fn rate_estimate(&self) -> MeanEstimate {
        MeanEstimate {
            estimate: self.rate,
            variance: self.phi * self.rate * (1.0 - self.rate) / self.total as f64,
            df: if self.scale > 1.0 {
                (self.steps - 1) as f64
            } else {
                f64::INFINITY
            },
        }
    }
}

/// Pearson dispersion of per-step `(errors, total)` under a common rate. Needs at least 3 steps
/// with traffic and a pooled rate strictly between 0 and 1 ([`EstimateError::NoEvents`]
/// otherwise).
pub fn quasi_binomial(what: &'static str, steps: &[Counts]) -> Result<Dispersion, EstimateError> {
    let (errors, total, used) = sums(what, steps)?;
    if used < 3 {
        return Err(EstimateError::TooFew {
            what,
            needed: 3,
            got: used,
        });
    }
    if errors == 0 || errors == total {
        return Err(EstimateError::NoEvents {
            what,
            errors,
            total,
        });
    }
    let rate = errors as f64 / total as f64;
    let unit = rate * (1.0 - rate);
    let pearson_chi2: f64 = steps
        .iter()
        .filter(|s| s.total > 0)
        .map(|s| {
            let expected = s.total as f64 * rate;
            let d = s.errors as f64 - expected;
            d * d / (s.total as f64 * unit)
        })
        .sum();
    let scale = pearson_chi2 / (used - 1) as f64;
    Ok(Dispersion {
        steps: used,
        errors,
        total,
        rate,
        pearson_chi2,
        scale,
        phi: scale.max(1.0),
    })
}

/// Summed errors and totals and the number of steps with traffic; refuses a step with more
/// errors than requests and sums that overflow.
fn sums(what: &'static str, steps: &[Counts]) -> Result<(u64, u64, usize), EstimateError> {
    let (mut errors, mut total, mut used) = (0u64, 0u64, 0usize);
    for (step, s) in steps.iter().enumerate() {
        if s.errors > s.total {
            return Err(EstimateError::CountsExceedTotal {
                what,
                step,
                errors: s.errors,
                total: s.total,
            });
        }
        if s.total == 0 {
            continue;
        }
        used += 1;
        errors = errors
            .checked_add(s.errors)
            .ok_or(EstimateError::NonFinite { what })?;
        total = total
            .checked_add(s.total)
            .ok_or(EstimateError::NonFinite { what })?;
    }
    Ok((errors, total, used))
}

/// The canary's pooled error rate minus the baseline's, with the variance `φ_c p_c(1-p_c)/N_c +
/// φ_b p_b(1-p_b)/N_b` and Welch-Satterthwaite degrees of freedom. A side without errors (or with
/// only errors) has no dispersion to estimate and counts as binomial (φ = 1, its variance 0 at
/// the edge); when both are there the difference has no variance ([`EstimateError::NoVariation`]).
pub fn rate_difference(
    canary: &[Counts],
    baseline: &[Counts],
) -> Result<MeanEstimate, EstimateError> {
    let c = side_estimate("canary counts", canary)?;
    let b = side_estimate("baseline counts", baseline)?;
    let d = difference(&c, &b);
    checked("error-rate difference", d.estimate, d.variance, d.df)
}

fn side_estimate(what: &'static str, steps: &[Counts]) -> Result<MeanEstimate, EstimateError> {
    match quasi_binomial(what, steps) {
        Ok(d) => Ok(d.rate_estimate()),
        Err(EstimateError::NoEvents { errors, total, .. }) => Ok(MeanEstimate {
            estimate: errors as f64 / total as f64,
            variance: 0.0,
            df: f64::INFINITY,
        }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(pairs: &[(u64, u64)]) -> Vec<Counts> {
        pairs
            .iter()
            .map(|&(errors, total)| Counts { errors, total })
            .collect()
    }

    #[test]
    fn equal_rates_are_underdispersed_and_floored_at_binomial() {
        let d = quasi_binomial("side", &steps(&[(5, 1000), (5, 1000), (5, 1000)])).unwrap();
        assert_eq!(d.pearson_chi2, 0.0);
        assert_eq!(d.phi, 1.0);
        let e = d.rate_estimate();
        assert!(e.df.is_infinite());
        assert!((e.variance - 0.005 * 0.995 / 3000.0).abs() < 1e-18);
    }

    #[test]
    fn varying_rates_widen_the_variance() {
        let d =
            quasi_binomial("side", &steps(&[(1, 1000), (20, 1000), (3, 1000), (0, 0)])).unwrap();
        assert_eq!(d.steps, 3);
        assert!(d.phi > 5.0, "{d:?}");
        assert_eq!(d.rate_estimate().df, 2.0);
    }

    #[test]
    fn degenerate_counts_are_typed_errors() {
        assert_eq!(
            quasi_binomial("side", &steps(&[(0, 10), (0, 10), (0, 10)])),
            Err(EstimateError::NoEvents {
                what: "side",
                errors: 0,
                total: 30
            })
        );
        assert!(matches!(
            quasi_binomial("side", &steps(&[(1, 10), (0, 0), (2, 10)])),
            Err(EstimateError::TooFew { got: 2, .. })
        ));
        assert!(matches!(
            quasi_binomial("side", &steps(&[(1, 10), (11, 10), (2, 10)])),
            Err(EstimateError::CountsExceedTotal { step: 1, .. })
        ));
        assert!(matches!(
            quasi_binomial("side", &steps(&[(1, u64::MAX), (0, 1), (2, 10)])),
            Err(EstimateError::NonFinite { .. })
        ));
        let none = steps(&[(0, 100), (0, 100), (0, 100)]);
        assert_eq!(
            rate_difference(&none, &none),
            Err(EstimateError::NoVariation {
                what: "error-rate difference"
            })
        );
    }

    #[test]
    fn a_side_without_errors_counts_as_binomial() {
        let c = steps(&[(0, 100), (0, 100), (0, 100)]);
        let b = steps(&[(1, 100), (1, 100), (1, 100)]);
        let d = rate_difference(&c, &b).unwrap();
        assert!((d.estimate + 0.01).abs() < 1e-15);
        // The baseline's counts match its rate exactly (X² = 0): binomial.
        assert!((d.variance - 0.01 * 0.99 / 300.0).abs() < 1e-15);
    }
}
