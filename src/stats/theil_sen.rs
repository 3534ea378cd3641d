//! Theil-Sen robust slope with its confidence interval, as `scipy.stats.theilslopes(y, t,
//! confidence, method='separate')` (SciPy 1.17).
//!
//! Owns the pairwise-slope median, the 'separate' intercept and Sen's (1968) interval from the
//! tie-corrected variance of Kendall's S. It does no I/O and never panics on data: too few points,
//! non-finite values, mismatched lengths, all-equal t or a confidence outside (0, 1) are a
//! [`StatsError`]. Up to [`QUADRATIC_UP_TO`] points every pair's slope is listed and sorted;
//! above, the median and the interval's bounds are selected among the pairs without listing them
//! (`slope_selection`: O(n log n) expected time, O(n) memory), with the same results.

use statrs::distribution::{ContinuousCDF, Normal};

use super::StatsError;
use super::mann_kendall::TieStats;
use super::slope_selection::Slopes;

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
    estimate(t, y, confidence, QUADRATIC_UP_TO)
}

/// [`theil_sen`], listing the slopes up to `list_up_to` points.
fn estimate(
    t: &[f64],
    y: &[f64],
    confidence: f64,
    list_up_to: usize,
) -> Result<TheilSen, StatsError> {
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
    let tx = TieStats::of(t);
    let pairs = (n as u128) * (n as u128 - 1) / 2 - tx.pairs;
    if pairs == 0 {
        return Err(StatsError::Invalid(
            "theil_sen: all t are equal, so no slope can be estimated".into(),
        ));
    }
    let mut order = if n <= list_up_to {
        Order::Listed(listed_slopes(t, y)?)
    } else {
        if !slopes_are_finite(t, y) {
            return Err(StatsError::NonFinite {
                what: "theil_sen pairwise slope (t too close together or y too large)",
            });
        }
        Order::Selected(Slopes::new(t, y, pairs as u64))
    };
    let middle = (pairs / 2) as u64;
    let slope = if pairs % 2 == 1 {
        order.at(middle)
    } else {
        (order.at(middle - 1) + order.at(middle)) / 2.0
    };
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
    let sigsq =
        (nf * (nf - 1.0) * (2.0 * nf + 5.0) - tx.v1 as f64 - TieStats::of(y).v1 as f64) / 18.0;
    let sigma = sigsq.sqrt();
    let nt = pairs as f64;
    let last = (pairs - 1) as u64;
    let ru = ((nt - z * sigma) / 2.0).round_ties_even();
    let rl = ((nt + z * sigma) / 2.0).round_ties_even() - 1.0;
    let ru = if ru.is_finite() {
        (ru.max(0.0) as u64).min(last)
    } else {
        last
    };
    let rl = if rl.is_finite() {
        (rl.max(0.0) as u64).min(last)
    } else {
        0
    };
    Ok(TheilSen {
        slope,
        intercept,
        low: order.at(rl),
        high: order.at(ru),
    })
}

/// Up to this many points every pairwise slope is listed and sorted (quick at this size, and
/// the method SciPy uses); above it the order statistics are selected without listing them.
pub const QUADRATIC_UP_TO: usize = 256;

/// The pairwise slopes in order: listed and sorted, or selected one rank at a time.
enum Order {
    Listed(Vec<f64>),
    Selected(Slopes),
}

impl Order {
    fn at(&mut self, rank: u64) -> f64 {
        match self {
            Order::Listed(sorted) => sorted[rank as usize],
            Order::Selected(slopes) => slopes.select(rank),
        }
    }
}

/// Every pairwise slope with t_i > t_j, sorted; an error if one is not finite.
fn listed_slopes(t: &[f64], y: &[f64]) -> Result<Vec<f64>, StatsError> {
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
    if slopes.iter().any(|s| !s.is_finite()) {
        return Err(StatsError::NonFinite {
            what: "theil_sen pairwise slope (t too close together or y too large)",
        });
    }
    slopes.sort_unstable_by(f64::total_cmp);
    Ok(slopes)
}

/// Whether every pairwise slope is finite, in O(n log n): every difference of y between
/// different times is at most an extreme one (the largest y of a time against the smallest
/// before it, and the other way round), and every slope lies between the slopes of
/// neighbouring times (a slope across several times is a weighted mean of theirs).
fn slopes_are_finite(t: &[f64], y: &[f64]) -> bool {
    let mut pts: Vec<(f64, f64)> = t.iter().copied().zip(y.iter().copied()).collect();
    pts.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    // (time, smallest y, largest y) of each distinct time.
    let mut groups: Vec<(f64, f64, f64)> = Vec::new();
    for (t, y) in pts {
        match groups.last_mut() {
            Some(g) if g.0 == t => {
                g.1 = g.1.min(y);
                g.2 = g.2.max(y);
            }
            _ => groups.push((t, y, y)),
        }
    }
    let (Some(first), Some(last)) = (groups.first(), groups.last()) else {
        return true;
    };
    if !(last.0 - first.0).is_finite() {
        return false;
    }
    let (mut low, mut high) = (first.1, first.2);
    for w in groups.windows(2) {
        let (a, b) = (w[0], w[1]);
        let dx = b.0 - a.0;
        let finite = [b.2 - low, high - b.1, (b.2 - a.1) / dx, (b.1 - a.2) / dx]
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            return false;
        }
        low = low.min(b.1);
        high = high.max(b.2);
    }
    true
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

    /// Both ways: the slopes listed and sorted, and selected without listing them.
    fn check(t: &[f64], y: &[f64], confidence: f64, want: [f64; 4]) {
        for list_up_to in [QUADRATIC_UP_TO, 0] {
            let r = estimate(t, y, confidence, list_up_to).unwrap();
            for (got, want) in [r.slope, r.intercept, r.low, r.high].into_iter().zip(want) {
                assert_close(got, want);
            }
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

    /// Above [`QUADRATIC_UP_TO`] points the slopes are selected, not listed: the estimate, its
    /// interval and its errors are those of the listed slopes, bit for bit.
    #[test]
    fn selected_slopes_give_the_listed_estimate() {
        let mut state = 42u64;
        let mut next = move |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for n in [257usize, 600, 1500] {
            let t: Vec<f64> = (0..n).map(|i| i as f64 * 0.25).collect();
            let noisy: Vec<f64> = (0..n)
                .map(|i| 1e6 + i as f64 * 3.0 + next(997) as f64)
                .collect();
            let queue: Vec<f64> = (0..n)
                .map(|_| if next(8) == 0 { next(4) as f64 } else { 0.0 })
                .collect();
            let repeated: Vec<f64> = (0..n).map(|i| (i / 5) as f64).collect();
            for (t, y) in [(&t, &noisy), (&t, &queue), (&repeated, &noisy)] {
                for confidence in [0.9, 0.99] {
                    let listed = estimate(t, y, confidence, usize::MAX).unwrap();
                    let selected = estimate(t, y, confidence, 0).unwrap();
                    let bits =
                        |r: TheilSen| [r.slope, r.intercept, r.low, r.high].map(f64::to_bits);
                    assert_eq!(
                        bits(selected),
                        bits(listed),
                        "n = {n}: {selected:?} vs {listed:?}"
                    );
                }
            }
        }
        let overflowing = [0.0, 1.0, 2.0, 3.0];
        for y in [[0.0, 1.0, f64::MAX, -f64::MAX], [0.0, 1e308, 1.5e308, 0.0]] {
            let listed = estimate(&overflowing, &y, 0.95, usize::MAX);
            assert_eq!(estimate(&overflowing, &y, 0.95, 0), listed, "{y:?}");
        }
        assert_eq!(
            estimate(&[1e-310, 2e-310, 3e-310], &[0.0, 1.0, 2.0], 0.95, 0),
            estimate(
                &[1e-310, 2e-310, 3e-310],
                &[0.0, 1.0, 2.0],
                0.95,
                usize::MAX
            ),
        );
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
