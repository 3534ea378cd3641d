//! Welch's unequal-variance t-test (SciPy's `ttest_ind(equal_var=False)`). Kept with the SciPy
//! reference tests rather than in `canaryd::stats`: no check uses it yet, so the daemon does not
//! carry it; a check that wants it moves it back.
//!
//! It owns the t statistic, the Welch-Satterthwaite degrees of freedom and the Student-t p-value;
//! it must not drop outliers or non-finite values (that is the caller's job).

use statrs::distribution::{ContinuousCDF, StudentsT};

use canaryd::stats::{Alternative, StatsError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WelchT {
    /// (mean_x - mean_y) / se
    pub t: f64,
    /// Welch-Satterthwaite degrees of freedom.
    pub df: f64,
    pub p_value: f64,
}

/// At least `needed` points, all finite (as `canaryd::stats`'s own tests check their samples).
fn check_sample(what: &'static str, x: &[f64], needed: usize) -> Result<(), StatsError> {
    if x.len() < needed {
        return Err(StatsError::TooFew {
            what,
            needed,
            got: x.len(),
        });
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite { what });
    }
    Ok(())
}

/// Neumaier-compensated sum: at least as accurate as NumPy's pairwise summation.
fn accurate_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut comp) = (0.0f64, 0.0f64);
    for v in values {
        let t = sum + v;
        if sum.abs() >= v.abs() {
            comp += (sum - t) + v;
        } else {
            comp += (v - t) + sum;
        }
        sum = t;
    }
    sum + comp
}

/// Mean and unbiased (ddof = 1) variance, two-pass like NumPy.
fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = accurate_sum(x.iter().copied()) / n;
    let ss = accurate_sum(x.iter().map(|v| (v - mean) * (v - mean)));
    (mean, ss / (n - 1.0))
}

/// Welch's t-test of `x` against `y`; `Greater` means `x` has the larger mean. Each sample needs at
/// least two points, and at least one of them must vary (otherwise t is 0/0).
pub fn welch_t(x: &[f64], y: &[f64], alternative: Alternative) -> Result<WelchT, StatsError> {
    check_sample("welch x sample", x, 2)?;
    check_sample("welch y sample", y, 2)?;
    let (mx, vx) = mean_var(x);
    let (my, vy) = mean_var(y);
    let (nx, ny) = (x.len() as f64, y.len() as f64);
    let (ax, ay) = (vx / nx, vy / ny);
    let se2 = ax + ay;
    if se2 == 0.0 {
        return Err(StatsError::Invalid(
            "welch t: both samples have zero variance".to_string(),
        ));
    }
    let t = (mx - my) / se2.sqrt();
    let df = se2 * se2 / (ax * ax / (nx - 1.0) + ay * ay / (ny - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df)
        .map_err(|e| StatsError::Invalid(format!("welch t: degrees of freedom {df}: {e}")))?;
    let p_value = match alternative {
        Alternative::Greater => dist.sf(t),
        Alternative::Less => dist.cdf(t),
        Alternative::TwoSided => (2.0 * dist.sf(t.abs())).min(1.0),
    };
    Ok(WelchT { t, df, p_value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy_on_a_small_case() {
        // scipy.stats.ttest_ind([1,2,3,4], [2,4,6,8,10], equal_var=False)
        let r = welch_t(
            &[1.0, 2.0, 3.0, 4.0],
            &[2.0, 4.0, 6.0, 8.0, 10.0],
            Alternative::TwoSided,
        )
        .unwrap();
        let se = (1.25f64 / 3.0 * 4.0 / 4.0 + 10.0 / 5.0).sqrt();
        assert!((r.t - (2.5 - 6.0) / se).abs() < 1e-12);
        let (a, b) = (5.0f64 / 12.0, 2.0f64);
        assert!((r.df - (a + b).powi(2) / (a * a / 3.0 + b * b / 4.0)).abs() < 1e-12);
        let g = welch_t(
            &[1.0, 2.0, 3.0, 4.0],
            &[2.0, 4.0, 6.0, 8.0, 10.0],
            Alternative::Greater,
        )
        .unwrap();
        let l = welch_t(
            &[1.0, 2.0, 3.0, 4.0],
            &[2.0, 4.0, 6.0, 8.0, 10.0],
            Alternative::Less,
        )
        .unwrap();
        assert!((g.p_value + l.p_value - 1.0).abs() < 1e-12);
        assert!((r.p_value - 2.0 * l.p_value).abs() < 1e-12);
    }

    #[test]
    fn rejects_degenerate_samples() {
        assert!(matches!(
            welch_t(&[1.0], &[1.0, 2.0], Alternative::Less),
            Err(StatsError::TooFew {
                needed: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            welch_t(&[1.0, 1.0], &[2.0, 2.0], Alternative::Less),
            Err(StatsError::Invalid(_))
        ));
        assert!(matches!(
            welch_t(&[1.0, f64::INFINITY], &[2.0, 2.0], Alternative::Less),
            Err(StatsError::NonFinite { .. })
        ));
    }
}
