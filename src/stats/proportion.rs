//! Two-proportion z-test on error counts (statsmodels' `proportions_ztest` for two samples).
//!
//! It owns the z statistic of the canary's error rate minus the baseline's and its normal p-value;
//! it must not decide what rate difference matters (that is the rule's threshold).

use statrs::distribution::{ContinuousCDF, Normal};

use super::{Alternative, StatsError};

/// Errors out of a total, summed over a window.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub errors: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZTest {
    pub z: f64,
    pub p_value: f64,
}

fn check_counts(what: &'static str, c: Counts) -> Result<(), StatsError> {
    if c.total == 0 {
        return Err(StatsError::TooFew {
            what,
            needed: 1,
            got: 0,
        });
    }
    if c.errors > c.total {
        return Err(StatsError::Invalid(format!(
            "{what}: {} errors out of a total of {}",
            c.errors, c.total
        )));
    }
    Ok(())
}

/// p-value of a standard-normal statistic for `alternative` (`Greater`: upper tail).
pub(super) fn normal_p(z: f64, alternative: Alternative) -> f64 {
    let n = Normal::standard();
    match alternative {
        Alternative::Greater => n.sf(z),
        Alternative::Less => n.cdf(z),
        Alternative::TwoSided => (2.0 * n.sf(z.abs())).min(1.0),
    }
}

/// z of the canary's rate minus the baseline's; `pooled` selects the pooled-variance form
/// (`p(1-p)(1/n1 + 1/n2)` with `p` the pooled rate, as statsmodels' `proportions_ztest`), otherwise
/// the unpooled Wald form `p1(1-p1)/n1 + p2(1-p2)/n2`. `Greater` means the canary's rate is higher.
///
/// When the variance is zero and the rates are equal (no errors at all, or only errors, on both
/// sides), there is no evidence of a difference: z = 0 and p = 1 (statsmodels returns NaN there).
/// With zero variance but different rates (possible unpooled) z is ±infinity.
pub fn two_proportion_z(
    canary: Counts,
    baseline: Counts,
    alternative: Alternative,
    pooled: bool,
) -> Result<ZTest, StatsError> {
    check_counts("canary counts", canary)?;
    check_counts("baseline counts", baseline)?;
    let (e1, n1) = (canary.errors as f64, canary.total as f64);
    let (e2, n2) = (baseline.errors as f64, baseline.total as f64);
    let (p1, p2) = (e1 / n1, e2 / n2);
    let diff = p1 - p2;
    let var = if pooled {
        let p = (e1 + e2) / (n1 + n2);
        p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)
    } else {
        p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2
    };
    if var == 0.0 && diff == 0.0 {
        return Ok(ZTest {
            z: 0.0,
            p_value: 1.0,
        });
    }
    let z = diff / var.sqrt();
    Ok(ZTest {
        z,
        p_value: normal_p(z, alternative),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(errors: u64, total: u64) -> Counts {
        Counts { errors, total }
    }

    #[test]
    fn pooled_z_matches_hand_computation() {
        // p1 = 0.03, p2 = 0.007, pooled p = 10/1100.
        let r = two_proportion_z(c(3, 100), c(7, 1000), Alternative::Greater, true).unwrap();
        let p: f64 = 10.0 / 1100.0;
        let z = (0.03 - 0.007) / (p * (1.0 - p) * (0.01 + 0.001)).sqrt();
        assert!((r.z - z).abs() < 1e-12);
        assert!((r.z - 2.310526370784749).abs() < 1e-9);
        assert!((r.p_value - 0.010429515149229929).abs() < 1e-12);
        let less = two_proportion_z(c(3, 100), c(7, 1000), Alternative::Less, true).unwrap();
        assert!((less.p_value + r.p_value - 1.0).abs() < 1e-12);
    }

    #[test]
    fn unpooled_uses_each_samples_own_variance() {
        let r = two_proportion_z(c(3, 100), c(7, 1000), Alternative::TwoSided, false).unwrap();
        let se = (0.03f64 * 0.97 / 100.0 + 0.007 * 0.993 / 1000.0).sqrt();
        assert!((r.z - 0.023 / se).abs() < 1e-12);
    }

    #[test]
    fn no_errors_anywhere_is_no_evidence() {
        let r = two_proportion_z(c(0, 100), c(0, 50), Alternative::TwoSided, true).unwrap();
        assert_eq!(
            r,
            ZTest {
                z: 0.0,
                p_value: 1.0
            }
        );
    }

    #[test]
    fn rejects_bad_counts() {
        assert!(matches!(
            two_proportion_z(c(5, 4), c(0, 10), Alternative::Less, true),
            Err(StatsError::Invalid(m)) if m.contains("canary")
        ));
        assert!(matches!(
            two_proportion_z(c(0, 4), c(0, 0), Alternative::Less, true),
            Err(StatsError::TooFew {
                what: "baseline counts",
                ..
            })
        ));
    }
}
