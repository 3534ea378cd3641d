//! Theil-Sen robust slope with its confidence interval, as `scipy.stats.theilslopes(y, t,
//! confidence, method='separate')` (SciPy 1.17).
//!
//! Owns the pairwise-slope median, the 'separate' intercept and Sen's (1968) interval from the
//! tie-corrected variance of Kendall's S. It does no I/O and never panics on data: too few points,
//! non-finite values, mismatched lengths, all-equal t or a confidence outside (0, 1) are a
//! [`StatsError`]. Memory and time are O(n^2) in the number of points (every pair's slope).

use statrs::distribution::{ContinuousCDF, Normal};

use super::StatsError;
use super::mann_kendall::TieStats;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TheilSen {
    /// Median of pairwise slopes.
    pub slope: f64,
    /// median(y) - slope * median(t) (SciPy's 'separate' method).
    pub intercept: f64,
    pub low: f64,
    pub high: f64,
}

/// Theil-Sen slope of `y` against `t` with a two-sided interval at `confidence` (e.g. 0.95).
///
/// Pairs with equal `t` are skipped. Like SciPy, a confidence above 0.5 and its complement give
/// the same interval.
pub fn theil_sen(t: &[f64], y: &[f64], confidence: f64) -> Result<TheilSen, StatsError> {
    if t.len() != y.len() {
        return Err(StatsError::Invalid(format!(
            "theil_sen: t has {} points but y has {}",
            t.len(),
            y.len()
        )));
    }
    if t.len() < 2 {
        return Err(StatsError::TooFew {
            what: "theil_sen",
            needed: 2,
            got: t.len(),
        });
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(StatsError::Invalid(format!(
            "theil_sen: confidence must be strictly between 0 and 1, got {confidence}"
        )));
    }
    if t.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite {
            what: "theil_sen t",
        });
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite {
            what: "theil_sen y",
        });
    }
    let n = t.len();
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in 0..n {
            let dx = t[i] - t[j];
            if dx > 0.0 {
                slopes.push((y[i] - y[j]) / dx);
            }
        }
    }
    if slopes.is_empty() {
        return Err(StatsError::Invalid(
            "theil_sen: all t are equal, so no slope can be estimated".into(),
        ));
    }
    if slopes.iter().any(|s| !s.is_finite()) {
        return Err(StatsError::NonFinite {
            what: "theil_sen pairwise slope (t too close together or y too large)",
        });
    }
    slopes.sort_unstable_by(f64::total_cmp);
    let slope = median_sorted(&slopes);
    let mut ts = t.to_vec();
    ts.sort_unstable_by(f64::total_cmp);
    let mut ys = y.to_vec();
    ys.sort_unstable_by(f64::total_cmp);
    let intercept = median_sorted(&ys) - slope * median_sorted(&ts);

    let alpha = if confidence > 0.5 {
        1.0 - confidence
    } else {
        confidence
    };
    let z = Normal::standard().inverse_cdf(alpha / 2.0);
    let nf = n as f64;
    // Sen (1968), eqn 2.6: variance of Kendall's S with ties in t and in y.
    let sigsq = (nf * (nf - 1.0) * (2.0 * nf + 5.0)
        - TieStats::of(t).v1 as f64
        - TieStats::of(y).v1 as f64)
        / 18.0;
    let sigma = sigsq.sqrt();
    let nt = slopes.len() as f64;
    let last = slopes.len() - 1;
    let ru = ((nt - z * sigma) / 2.0).round_ties_even();
    let rl = ((nt + z * sigma) / 2.0).round_ties_even() - 1.0;
    let ru = if ru.is_finite() {
        (ru.max(0.0) as usize).min(last)
    } else {
        last
    };
    let rl = if rl.is_finite() {
        (rl.max(0.0) as usize).min(last)
    } else {
        0
    };
    Ok(TheilSen {
        slope,
        intercept,
        low: slopes[rl],
        high: slopes[ru],
    })
}

/// Median of a non-empty sorted slice (mean of the middle two for even length, like NumPy).
fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(got: f64, want: f64) {
        assert!(
            (got - want).abs() <= (1e-7 * want.abs()).max(1e-12),
            "got {got}, want {want}"
        );
    }

    fn check(t: &[f64], y: &[f64], confidence: f64, want: [f64; 4]) {
        let r = theil_sen(t, y, confidence).unwrap();
        for (got, want) in [r.slope, r.intercept, r.low, r.high].into_iter().zip(want) {
            assert_close(got, want);
        }
    }

    // Expected values are scipy.stats.theilslopes(y, t, alpha=confidence).
    #[test]
    fn noisy_series_matches_scipy() {
        let t = [0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0, 105.0];
        let y = [100.0, 101.5, 101.0, 103.0, 102.5, 104.0, 106.0, 105.0];
        check(
            &t,
            &y,
            0.95,
            [
                0.051666666666666666,
                100.0375,
                0.03333333333333333,
                0.08333333333333333,
            ],
        );
    }

    #[test]
    fn ties_in_t_and_y_match_scipy_and_confidence_is_symmetric() {
        let t = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0];
        let y = [5.0, 5.0, 4.0, 6.0, 4.0, 4.0, 3.0, 3.0, 2.0];
        for confidence in [0.95, 0.9, 0.1] {
            check(&t, &y, confidence, [-0.75, 5.5, -1.0, -0.5]);
        }
    }

    #[test]
    fn exact_line_and_two_points() {
        let t = [0.0, 1.0, 2.0, 3.0, 4.0];
        let y: Vec<f64> = t.iter().map(|v| 2.0 * v + 1.0).collect();
        check(&t, &y, 0.95, [2.0, 1.0, 2.0, 2.0]);
        check(&[0.0, 2.0], &[3.0, 1.0], 0.95, [-1.0, 3.0, -1.0, -1.0]);
    }

    #[test]
    fn constant_series_has_zero_slope() {
        let r = theil_sen(&[0.0, 1.0, 2.0, 3.0], &[7.0; 4], 0.9).unwrap();
        assert_eq!((r.slope, r.intercept, r.low, r.high), (0.0, 7.0, 0.0, 0.0));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            theil_sen(&[1.0], &[1.0], 0.95),
            Err(StatsError::TooFew {
                needed: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            theil_sen(&[1.0, 2.0], &[1.0], 0.95),
            Err(StatsError::Invalid(_))
        ));
        for confidence in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            assert!(
                matches!(
                    theil_sen(&[1.0, 2.0], &[1.0, 2.0], confidence),
                    Err(StatsError::Invalid(_))
                ),
                "confidence {confidence}"
            );
        }
        assert!(matches!(
            theil_sen(&[1.0, f64::NAN], &[1.0, 2.0], 0.95),
            Err(StatsError::NonFinite { .. })
        ));
        assert!(matches!(
            theil_sen(&[1.0, 2.0], &[1.0, f64::NEG_INFINITY], 0.95),
            Err(StatsError::NonFinite { .. })
        ));
        assert!(matches!(
            theil_sen(&[3.0, 3.0, 3.0], &[1.0, 2.0, 3.0], 0.95),
            Err(StatsError::Invalid(_))
        ));
    }
}
