//! An estimate with its variance and degrees of freedom, and the one-sided confidence bounds on
//! it: the common currency of the estimators for dependent and overdispersed data
//! ([`super::long_run`], [`super::dispersion`], [`super::ratio`]).
//!
//! It owns the Student-t bound `estimate ± t(confidence, df)·√variance`, the Welch-Satterthwaite
//! combination of two independent estimates, the comparison of a bound with a tolerance, and
//! [`EstimateError`], the typed reasons these estimators refuse their input. It assumes the
//! estimate is approximately normal with a variance estimated on `df` degrees of freedom
//! (`df = ∞`: the variance is known, as a binomial variance is); it must not decide what a
//! tolerance is for a rule, or turn a bound into a verdict (that is the judge's job).

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use super::{Alternative, StatsError};

/// Why an estimator refused its input. Every degenerate case is one of these, never a NaN that
/// a later comparison could read as a pass.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EstimateError {
    /// Fewer points (or steps with traffic) than the estimator needs.
    #[error("too few points: {what} needs at least {needed}, got {got}")]
    TooFew {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    /// A value is NaN or infinite.
    #[error("non-finite value in {what}")]
    NonFinite { what: &'static str },
    /// Every value is the same, so there is no variance to estimate a bound from.
    #[error("{what} does not vary: every value is the same")]
    NoVariation { what: &'static str },
    /// Counts with no errors at all (or only errors): the rate sits on the edge of its range
    /// and its dispersion cannot be estimated.
    #[error("{what} has {errors} errors out of {total}: no dispersion can be estimated")]
    NoEvents {
        what: &'static str,
        errors: u64,
        total: u64,
    },
    /// A step reports more errors than requests.
    #[error("{what}: step {step} has {errors} errors out of a total of {total}")]
    CountsExceedTotal {
        what: &'static str,
        step: usize,
        errors: u64,
        total: u64,
    },
    /// Paired series of different lengths.
    #[error("paired series differ in length: canary {canary}, baseline {baseline}")]
    LengthMismatch { canary: usize, baseline: usize },
    /// A relative difference needs a baseline mean above zero.
    #[error("the baseline mean is {mean}: a relative difference needs it above zero")]
    NonPositiveBaseline { mean: f64 },
    /// A confidence outside (0, 1).
    #[error("confidence {0} is outside (0, 1)")]
    Confidence(f64),
}

/// The judge maps one error type to its inconclusive causes: an estimator's refusal reads as
/// the tests' [`StatsError`] (too few points, a non-finite value, or anything else as an
/// invalid argument with the estimator's sentence).
impl From<EstimateError> for StatsError {
    fn from(e: EstimateError) -> Self {
        match e {
            EstimateError::TooFew { what, needed, got } => StatsError::TooFew { what, needed, got },
            EstimateError::NonFinite { what } => StatsError::NonFinite { what },
            other => StatsError::Invalid(other.to_string()),
        }
    }
}

/// A point estimate with the variance of that estimate and the degrees of freedom the variance
/// was estimated on (`f64::INFINITY` when it is known, e.g. binomial).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanEstimate {
    pub estimate: f64,
    /// Variance of `estimate` (not of the data).
    pub variance: f64,
    pub df: f64,
}

/// Where a one-sided bound on the worsening lies relative to a tolerance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// The bound on the worsening is within the tolerance: shown not worse than it.
    ShownWithin { bound: f64 },
    /// Even the most favourable bound is beyond the tolerance: shown worse than it.
    ShownBeyond { bound: f64 },
    /// The interval holds the tolerance: the data show neither.
    Neither { lower: f64, upper: f64 },
}

impl MeanEstimate {
    /// The quantile of Student's t at `df` (the normal one when `df` is infinite).
    fn quantile(&self, confidence: f64) -> Result<f64, EstimateError> {
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(EstimateError::Confidence(confidence));
        }
        if !(self.estimate.is_finite() && self.variance.is_finite() && self.variance >= 0.0) {
            return Err(EstimateError::NonFinite { what: "estimate" });
        }
        if self.variance == 0.0 {
            return Err(EstimateError::NoVariation { what: "estimate" });
        }
        if self.df.is_infinite() {
            return Ok(Normal::standard().inverse_cdf(confidence));
        }
        let t = StudentsT::new(0.0, 1.0, self.df)
            .map_err(|_| EstimateError::NonFinite { what: "df" })?;
        Ok(t.inverse_cdf(confidence))
    }

    /// One-sided upper bound at `confidence`: the estimate is below it with that confidence.
    pub fn upper_bound(&self, confidence: f64) -> Result<f64, EstimateError> {
        Ok(self.estimate + self.quantile(confidence)? * self.variance.sqrt())
    }

    /// One-sided lower bound at `confidence`.
    pub fn lower_bound(&self, confidence: f64) -> Result<f64, EstimateError> {
        Ok(self.estimate - self.quantile(confidence)? * self.variance.sqrt())
    }

    /// The p-value of "the true value is `null`" against `alternative` (`Greater`: the true
    /// value is above `null`), from Student's t at `df` (the normal distribution when `df` is
    /// infinite).
    pub fn p_value(&self, null: f64, alternative: Alternative) -> Result<f64, EstimateError> {
        // The quantile's checks: a finite estimate with a positive, finite variance.
        self.quantile(0.5)?;
        let t = (self.estimate - null) / self.variance.sqrt();
        if t.is_nan() {
            return Err(EstimateError::NonFinite {
                what: "t statistic",
            });
        }
        let (sf, cdf): (f64, f64) = if self.df.is_infinite() {
            let n = Normal::standard();
            (n.sf(t), n.cdf(t))
        } else {
            let d = StudentsT::new(0.0, 1.0, self.df)
                .map_err(|_| EstimateError::NonFinite { what: "df" })?;
            (d.sf(t), d.cdf(t))
        };
        Ok(match alternative {
            Alternative::Greater => sf,
            Alternative::Less => cdf,
            Alternative::TwoSided => (2.0 * sf.min(cdf)).min(1.0),
        })
    }

    /// The two-sided interval at `confidence`: `(lower, upper)` one-sided bounds at
    /// `(1 + confidence) / 2` each.
    pub fn interval(&self, confidence: f64) -> Result<(f64, f64), EstimateError> {
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(EstimateError::Confidence(confidence));
        }
        let one_sided = (1.0 + confidence) / 2.0;
        Ok((self.lower_bound(one_sided)?, self.upper_bound(one_sided)?))
    }

    /// Whether the estimate (a worsening where larger is worse; negate a lower-is-worse one
    /// first) is shown within `tolerance`, shown beyond it, or neither, each at `confidence`
    /// one-sided. A tolerance of 0 asks "shown no worse at all", which a pure-noise canary meets
    /// only when its upper bound falls below zero.
    pub fn against_tolerance(
        &self,
        tolerance: f64,
        confidence: f64,
    ) -> Result<Tolerance, EstimateError> {
        let (lower, upper) = (self.lower_bound(confidence)?, self.upper_bound(confidence)?);
        Ok(if upper <= tolerance {
            Tolerance::ShownWithin { bound: upper }
        } else if lower > tolerance {
            Tolerance::ShownBeyond { bound: lower }
        } else {
            Tolerance::Neither { lower, upper }
        })
    }

    /// The i.i.d. estimate of a sample's mean: sample mean, `s²/n`, `n - 1` degrees of freedom.
    pub fn iid_mean(x: &[f64]) -> Result<Self, EstimateError> {
        check_series("sample", x)?;
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
        Ok(MeanEstimate {
            estimate: mean,
            variance: var / n,
            df: n - 1.0,
        })
    }
}

/// `a - b` for independent estimates: the variances add and the degrees of freedom follow
/// Welch-Satterthwaite, `(v_a + v_b)² / (v_a²/df_a + v_b²/df_b)` (computed from the shares
/// `v/(v_a + v_b)`, so huge variances do not overflow); an infinite df (a known variance)
/// contributes no term, and two known variances give an infinite df.
pub fn difference(a: &MeanEstimate, b: &MeanEstimate) -> MeanEstimate {
    let variance = a.variance + b.variance;
    let term = |e: &MeanEstimate| {
        if e.df.is_finite() && variance > 0.0 {
            let share = e.variance / variance;
            share * share / e.df
        } else {
            0.0
        }
    };
    let terms = term(a) + term(b);
    MeanEstimate {
        estimate: a.estimate - b.estimate,
        variance,
        df: if terms > 0.0 {
            1.0 / terms
        } else {
            f64::INFINITY
        },
    }
}

/// `estimate` as a [`MeanEstimate`] if a bound can be built from it: finite, with a variance
/// that neither overflowed nor underflowed to 0, and degrees of freedom that are a number.
pub(super) fn checked(
    what: &'static str,
    estimate: f64,
    variance: f64,
    df: f64,
) -> Result<MeanEstimate, EstimateError> {
    if !(estimate.is_finite() && variance.is_finite()) || df.is_nan() {
        return Err(EstimateError::NonFinite { what });
    }
    if variance <= 0.0 {
        return Err(EstimateError::NoVariation { what });
    }
    Ok(MeanEstimate {
        estimate,
        variance,
        df,
    })
}

/// At least 3 points, all finite, not all the same.
pub(super) fn check_series(what: &'static str, x: &[f64]) -> Result<(), EstimateError> {
    if x.len() < 3 {
        return Err(EstimateError::TooFew {
            what,
            needed: 3,
            got: x.len(),
        });
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(EstimateError::NonFinite { what });
    }
    if x.iter().all(|v| *v == x[0]) {
        return Err(EstimateError::NoVariation { what });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(estimate: f64, variance: f64, df: f64) -> MeanEstimate {
        MeanEstimate {
            estimate,
            variance,
            df,
        }
    }

    #[test]
    fn bounds_use_student_t_and_normal_at_infinite_df() {
        // t(0.99, 10) = 2.7637694581126957 (scipy.stats.t.ppf).
        let e = est(1.0, 4.0, 10.0);
        let up = e.upper_bound(0.99).unwrap();
        assert!((up - (1.0 + 2.0 * 2.7637694581126957)).abs() < 1e-9, "{up}");
        let lo = e.lower_bound(0.99).unwrap();
        assert!((lo - (1.0 - 2.0 * 2.7637694581126957)).abs() < 1e-9, "{lo}");
        // norm.ppf(0.99) = 2.3263478740408408.
        let up = est(0.0, 1.0, f64::INFINITY).upper_bound(0.99).unwrap();
        assert!((up - 2.3263478740408408).abs() < 1e-9, "{up}");
    }

    #[test]
    fn tolerance_outcomes() {
        // Bounds 0.1 ± 2.326·0.01 ≈ [0.077, 0.123].
        let e = est(0.1, 1e-4, f64::INFINITY);
        assert!(matches!(
            e.against_tolerance(0.2, 0.99),
            Ok(Tolerance::ShownWithin { .. })
        ));
        assert!(matches!(
            e.against_tolerance(0.05, 0.99),
            Ok(Tolerance::ShownBeyond { .. })
        ));
        assert!(matches!(
            e.against_tolerance(0.1, 0.99),
            Ok(Tolerance::Neither { .. })
        ));
    }

    #[test]
    fn degenerate_estimates_are_errors_not_bounds() {
        assert_eq!(
            est(1.0, 0.0, 5.0).upper_bound(0.99),
            Err(EstimateError::NoVariation { what: "estimate" })
        );
        assert_eq!(
            est(f64::NAN, 1.0, 5.0).upper_bound(0.99),
            Err(EstimateError::NonFinite { what: "estimate" })
        );
        assert_eq!(
            est(1.0, f64::INFINITY, 5.0).against_tolerance(0.1, 0.99),
            Err(EstimateError::NonFinite { what: "estimate" })
        );
        assert_eq!(
            est(1.0, 1.0, 5.0).upper_bound(1.0),
            Err(EstimateError::Confidence(1.0))
        );
        assert_eq!(
            MeanEstimate::iid_mean(&[1.0, 1.0, 1.0]),
            Err(EstimateError::NoVariation { what: "sample" })
        );
        assert!(matches!(
            MeanEstimate::iid_mean(&[1.0, 2.0]),
            Err(EstimateError::TooFew { needed: 3, .. })
        ));
    }

    #[test]
    fn welch_difference_of_known_and_estimated_variances() {
        let d = difference(&est(3.0, 2.0, 4.0), &est(1.0, 1.0, 9.0));
        assert_eq!(d.estimate, 2.0);
        assert_eq!(d.variance, 3.0);
        assert!((d.df - 9.0 / (4.0 / 4.0 + 1.0 / 9.0)).abs() < 1e-12);
        let known = difference(&est(0.0, 1.0, f64::INFINITY), &est(0.0, 1.0, f64::INFINITY));
        assert!(known.df.is_infinite());
    }

    #[test]
    fn welch_df_of_huge_variances_is_a_number() {
        // v² overflows; the shares do not (found by the property test: df was NaN).
        let d = difference(&est(0.0, 2e235, 5.0), &est(0.0, 2e235, 5.0));
        assert!((d.df - 10.0).abs() < 1e-9, "{d:?}");
    }
}
