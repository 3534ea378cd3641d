//! Mann-Kendall trend test: Kendall's tau-b of y against t with its tie-corrected asymptotic
//! p-value, as `scipy.stats.kendalltau(t, y, method='asymptotic')` (SciPy 1.17).
//!
//! Owns the O(n log n) concordance count (a merge-sort inversion count, Knight's algorithm) and
//! the tie bookkeeping shared with the Theil-Sen interval. It does no I/O and never panics on
//! data: too few points, non-finite values, mismatched lengths or a constant series (tau is
//! undefined) are a [`StatsError`].

use statrs::distribution::{ContinuousCDF, Normal};

use super::{Alternative, StatsError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannKendall {
    pub tau_b: f64,
    pub p_value: f64,
}

/// Kendall's tau-b of `y` against `t` and its asymptotic p-value with tie correction.
///
/// `Greater` tests for an upward trend (y increases with t), `Less` for a downward one. Needs at
/// least 3 points (SciPy's variance divides by n - 2); constant `t` or constant `y` is an error
/// because tau-b is then 0/0.
pub fn mann_kendall(
    t: &[f64],
    y: &[f64],
    alternative: Alternative,
) -> Result<MannKendall, StatsError> {
    if t.len() != y.len() {
        return Err(StatsError::Invalid(format!(
            "mann_kendall: t has {} points but y has {}",
            t.len(),
            y.len()
        )));
    }
    if t.len() < 3 {
        return Err(StatsError::TooFew {
            what: "mann_kendall",
            needed: 3,
            got: t.len(),
        });
    }
    if t.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite {
            what: "mann_kendall t",
        });
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite {
            what: "mann_kendall y",
        });
    }
    let size = t.len();
    // Sort the pairs by (t, y); then every strict inversion of y is a discordant pair.
    // `+ 0.0` turns -0.0 into 0.0 so that total_cmp groups equal values together.
    let mut pairs: Vec<(f64, f64)> = t.iter().zip(y).map(|(a, b)| (a + 0.0, b + 0.0)).collect();
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));

    let mut ntie: u128 = 0; // pairs tied in both t and y
    let mut run = 1u128;
    for w in pairs.windows(2) {
        if w[0] == w[1] {
            run += 1;
        } else {
            ntie += run * (run - 1) / 2;
            run = 1;
        }
    }
    ntie += run * (run - 1) / 2;

    let tx = TieStats::of(t);
    let ty = TieStats::of(y);
    let mut ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let dis = count_strict_inversions(&mut ys);

    let tot = (size as u128) * (size as u128 - 1) / 2;
    if tx.pairs == tot {
        return Err(StatsError::Invalid(
            "mann_kendall: all t are equal, so there is no trend to measure".into(),
        ));
    }
    if ty.pairs == tot {
        return Err(StatsError::Invalid(
            "mann_kendall: y is constant, so Kendall's tau is undefined".into(),
        ));
    }
    let con_minus_dis =
        tot as f64 - tx.pairs as f64 - ty.pairs as f64 + ntie as f64 - 2.0 * dis as f64;
    let tau = con_minus_dis
        / (tot as f64 - tx.pairs as f64).sqrt()
        / (tot as f64 - ty.pairs as f64).sqrt();
    let tau = tau.clamp(-1.0, 1.0);

    let n = size as f64;
    let m = n * (n - 1.0);
    let var = (m * (2.0 * n + 5.0) - tx.v1 as f64 - ty.v1 as f64) / 18.0
        + (2.0 * tx.pairs as f64 * ty.pairs as f64) / m
        + tx.v0 as f64 * ty.v0 as f64 / (9.0 * m * (n - 2.0));
    let z = con_minus_dis / var.sqrt();
    let normal = Normal::standard();
    let p_value = match alternative {
        Alternative::TwoSided => 2.0 * normal.sf(z.abs()),
        Alternative::Greater => normal.sf(z),
        Alternative::Less => normal.cdf(z),
    };
    Ok(MannKendall {
        tau_b: tau,
        p_value: p_value.clamp(0.0, 1.0),
    })
}

/// Tie statistics of one variable, summed over groups of equal values of size c:
/// `pairs` = sum c(c-1)/2, `v0` = sum c(c-1)(c-2), `v1` = sum c(c-1)(2c+5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TieStats {
    pub pairs: u128,
    pub v0: u128,
    pub v1: u128,
}

impl TieStats {
    pub(crate) fn of(values: &[f64]) -> TieStats {
        let mut sorted: Vec<f64> = values.iter().map(|v| v + 0.0).collect();
        sorted.sort_unstable_by(f64::total_cmp);
        let mut stats = TieStats {
            pairs: 0,
            v0: 0,
            v1: 0,
        };
        let mut i = 0;
        while i < sorted.len() {
            let mut j = i + 1;
            while j < sorted.len() && sorted[j] == sorted[i] {
                j += 1;
            }
            let c = (j - i) as u128;
            if c > 1 {
                stats.pairs += c * (c - 1) / 2;
                stats.v0 += c * (c - 1) * (c - 2);
                stats.v1 += c * (c - 1) * (2 * c + 5);
            }
            i = j;
        }
        stats
    }
}

/// Number of pairs i < j with v[i] > v[j] (equal values are not inversions); sorts `v`.
fn count_strict_inversions(v: &mut [f64]) -> u128 {
    let mut buf = v.to_vec();
    merge_count(v, &mut buf)
}

fn merge_count(v: &mut [f64], buf: &mut [f64]) -> u128 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut count = {
        let (left, right) = v.split_at_mut(mid);
        let (bl, br) = buf.split_at_mut(mid);
        merge_count(left, bl) + merge_count(right, br)
    };
    let (mut i, mut j, mut k) = (0, mid, 0);
    while i < mid && j < n {
        if v[i] <= v[j] {
            buf[k] = v[i];
            i += 1;
        } else {
            buf[k] = v[j];
            count += (mid - i) as u128;
            j += 1;
        }
        k += 1;
    }
    buf[k..k + mid - i].copy_from_slice(&v[i..mid]);
    k += mid - i;
    buf[k..k + n - j].copy_from_slice(&v[j..n]);
    v.copy_from_slice(&buf[..n]);
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use Alternative::{Greater, Less, TwoSided};

    fn assert_close(got: f64, want: f64) {
        assert!(
            (got - want).abs() <= (1e-7 * want.abs()).max(1e-12),
            "got {got}, want {want}"
        );
    }

    // Expected values are scipy.stats.kendalltau(t, y, method='asymptotic', alternative=...).
    #[test]
    fn upward_trend_without_ties_matches_scipy() {
        let t = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let y = [2.0, 1.0, 4.0, 3.0, 6.0, 5.0, 8.0, 9.0];
        for (alt, p) in [
            (TwoSided, 0.006492857745083887),
            (Less, 0.9967535711274581),
            (Greater, 0.0032464288725419436),
        ] {
            let r = mann_kendall(&t, &y, alt).unwrap();
            assert_close(r.tau_b, 0.7857142857142856);
            assert_close(r.p_value, p);
        }
    }

    #[test]
    fn ties_in_both_series_match_scipy() {
        let t = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0];
        let y = [5.0, 5.0, 4.0, 6.0, 4.0, 4.0, 3.0, 3.0, 2.0];
        for (alt, p) in [
            (TwoSided, 0.004293085742924204),
            (Less, 0.002146542871462102),
            (Greater, 0.9978534571285379),
        ] {
            let r = mann_kendall(&t, &y, alt).unwrap();
            assert_close(r.tau_b, -0.8255008255012383);
            assert_close(r.p_value, p);
        }
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        let a = mann_kendall(&[0.0, -0.0, 1.0], &[2.0, 1.0, 3.0], TwoSided).unwrap();
        let b = mann_kendall(&[0.0, 0.0, 1.0], &[2.0, 1.0, 3.0], TwoSided).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn three_points_is_enough() {
        let r = mann_kendall(&[1.0, 2.0, 3.0], &[3.0, 1.0, 2.0], TwoSided).unwrap();
        assert_close(r.tau_b, -0.33333333333333337);
        assert_close(r.p_value, 0.6015081344405899);
    }

    #[test]
    fn merge_sort_count_agrees_with_brute_force() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for len in [0usize, 1, 2, 3, 17, 64, 257] {
            let v: Vec<f64> = (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % 7) as f64
                })
                .collect();
            let brute = (0..len)
                .flat_map(|i| (i + 1..len).map(move |j| (i, j)))
                .filter(|&(i, j)| v[i] > v[j])
                .count() as u128;
            let mut w = v.clone();
            assert_eq!(count_strict_inversions(&mut w), brute, "len {len}");
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            mann_kendall(&[1.0, 2.0], &[3.0, 1.0], TwoSided),
            Err(StatsError::TooFew {
                needed: 3,
                got: 2,
                ..
            })
        ));
        assert!(matches!(
            mann_kendall(&[1.0, 2.0, 3.0], &[1.0, 2.0], TwoSided),
            Err(StatsError::Invalid(_))
        ));
        assert!(matches!(
            mann_kendall(&[1.0, 2.0, f64::NAN], &[1.0, 2.0, 3.0], TwoSided),
            Err(StatsError::NonFinite { .. })
        ));
        assert!(matches!(
            mann_kendall(&[1.0, 2.0, 3.0], &[1.0, f64::INFINITY, 3.0], TwoSided),
            Err(StatsError::NonFinite { .. })
        ));
        // Constant y or constant t: tau-b is 0/0 (SciPy returns NaN).
        assert!(matches!(
            mann_kendall(&[1.0, 2.0, 3.0], &[5.0, 5.0, 5.0], TwoSided),
            Err(StatsError::Invalid(_))
        ));
        assert!(matches!(
            mann_kendall(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0], TwoSided),
            Err(StatsError::Invalid(_))
        ));
    }
}
