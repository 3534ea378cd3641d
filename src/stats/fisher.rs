//! Fisher's exact test on a 2×2 table of error counts, as SciPy's `fisher_exact`.
//!
//! It owns the sample odds ratio and the hypergeometric p-values. The hypergeometric pmf is
//! computed in log space with Loader's saddle-point method (Stirling remainders and a stable
//! `x·ln(x/np) + np - x`), which keeps full relative precision for tables with millions of
//! requests, and tails are summed outward from their end point, so tiny p-values keep their
//! relative precision. It must not approximate (no chi-square fallback).

use std::f64::consts::PI;

use super::{Alternative, StatsError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FisherExact {
    /// Sample odds ratio a*d/(b*c); may be 0, +inf or NaN.
    pub odds_ratio: f64,
    pub p_value: f64,
}

/// ln(n!) - ln(sqrt(2πn) (n/e)^n), the error of Stirling's formula, for integer n >= 0.
fn stirlerr(n: f64) -> f64 {
    const S0: f64 = 1.0 / 12.0;
    const S1: f64 = 1.0 / 360.0;
    const S2: f64 = 1.0 / 1260.0;
    const S3: f64 = 1.0 / 1680.0;
    const S4: f64 = 1.0 / 1188.0;
    if n <= 15.0 {
        if n == 0.0 {
            return 0.0;
        }
        // n! is exact in f64 up to 15! (< 2^53), so its logarithm is correctly rounded.
        let mut fact = 1.0f64;
        let mut k = 2.0;
        while k <= n {
            fact *= k;
            k += 1.0;
        }
        return fact.ln() - (n + 0.5) * n.ln() + n - 0.5 * (2.0 * PI).ln();
    }
    let nn = n * n;
    if n > 500.0 {
        (S0 - S1 / nn) / n
    } else if n > 80.0 {
        (S0 - (S1 - S2 / nn) / nn) / n
    } else if n > 35.0 {
        (S0 - (S1 - (S2 - S3 / nn) / nn) / nn) / n
    } else {
        (S0 - (S1 - (S2 - (S3 - S4 / nn) / nn) / nn) / nn) / n
    }
}

/// x·ln(x/np) + np - x, computed without cancellation when x is close to np.
fn bd0(x: f64, np: f64) -> f64 {
    if (x - np).abs() < 0.1 * (x + np) {
        let mut v = (x - np) / (x + np);
        let mut s = (x - np) * v;
        let mut ej = 2.0 * x * v;
        v *= v;
        let mut j = 1.0;
        loop {
            ej *= v;
            let s1 = s + ej / (2.0 * j + 1.0);
            if s1 == s {
                return s1;
            }
            s = s1;
            j += 1.0;
        }
    }
    x * (x / np).ln() + np - x
}

/// ln of the binomial pmf C(n, x) p^x q^(n-x), with q = 1 - p given separately for precision.
fn ln_dbinom(x: f64, n: f64, p: f64, q: f64) -> f64 {
    if p == 0.0 {
        return if x == 0.0 { 0.0 } else { f64::NEG_INFINITY };
    }
    if q == 0.0 {
        return if x == n { 0.0 } else { f64::NEG_INFINITY };
    }
    if x == 0.0 {
        if n == 0.0 {
            return 0.0;
        }
        return if p < 0.1 {
            -bd0(n, n * q) - n * p
        } else {
            n * q.ln()
        };
    }
    if x == n {
        return if q < 0.1 {
            -bd0(n, n * p) - n * q
        } else {
            n * p.ln()
        };
    }
    if x < 0.0 || x > n {
        return f64::NEG_INFINITY;
    }
    let lc = stirlerr(n) - stirlerr(x) - stirlerr(n - x) - bd0(x, n * p) - bd0(n - x, n * q);
    let lf = (2.0 * PI).ln() + x.ln() + (-x / n).ln_1p();
    lc - 0.5 * lf
}

/// The hypergeometric distribution of the top-left cell: `draws` drawn from `good + bad` items.
#[derive(Debug, Clone, Copy)]
struct Hypergeom {
    good: f64,
    bad: f64,
    draws: f64,
}

impl Hypergeom {
    fn lo(&self) -> f64 {
        (self.draws - self.bad).max(0.0)
    }

    fn hi(&self) -> f64 {
        self.draws.min(self.good)
    }

    fn ln_pmf(&self, x: f64) -> f64 {
        if x < self.lo() || x > self.hi() {
            return f64::NEG_INFINITY;
        }
        let total = self.good + self.bad;
        let p = self.draws / total;
        let q = (total - self.draws) / total;
        ln_dbinom(x, self.good, p, q) + ln_dbinom(self.draws - x, self.bad, p, q)
            - ln_dbinom(self.draws, total, p, q)
    }

    fn pmf(&self, x: f64) -> f64 {
        self.ln_pmf(x).exp()
    }

    /// P(X <= x) / pmf(x) for x in the support, summing terms downward until negligible.
    fn lower_sum_ratio(&self, x: f64) -> f64 {
        let (good, bad, draws) = (self.good, self.bad, self.draws);
        let lo = self.lo();
        let mut sum = 0.0;
        let mut term = 1.0;
        let mut k = x;
        while k > lo && term >= f64::EPSILON * sum {
            // pmf(k-1)/pmf(k) = k (bad - draws + k) / ((draws + 1 - k)(good + 1 - k))
            term *= k * (bad - draws + k) / ((draws + 1.0 - k) * (good + 1.0 - k));
            sum += term;
            k -= 1.0;
        }
        1.0 + sum
    }

    /// P(X <= x), computed from the shorter side so both small tails and values near 1 are
    /// accurate (R's `phyper` strategy).
    fn cdf(&self, x: f64) -> f64 {
        let x = x.floor();
        if x < self.lo() {
            return 0.0;
        }
        if x >= self.hi() {
            return 1.0;
        }
        if x * (self.good + self.bad) > self.draws * self.good {
            // x is above the mean: 1 - P(X >= x+1), and P(X >= x+1) is the lower tail of the
            // mirrored distribution (swap good and bad) at draws - x - 1.
            let mirror = Hypergeom {
                good: self.bad,
                bad: self.good,
                draws: self.draws,
            };
            let y = self.draws - x - 1.0;
            1.0 - mirror.pmf(y) * mirror.lower_sum_ratio(y)
        } else {
            (self.pmf(x) * self.lower_sum_ratio(x)).min(1.0)
        }
    }

    /// P(X > x).
    fn sf(&self, x: f64) -> f64 {
        let mirror = Hypergeom {
            good: self.bad,
            bad: self.good,
            draws: self.draws,
        };
        // X > x  <=>  draws - X < draws - x  <=>  X' <= draws - x - 1.
        mirror.cdf(self.draws - x.floor() - 1.0)
    }
}

/// Largest x in [lo, hi] with `pred(x)` true, for a predicate true on a prefix of the range;
/// `lo - 1` when it is true nowhere.
fn last_true(mut lo: f64, mut hi: f64, pred: impl Fn(f64) -> bool) -> f64 {
    let start = lo;
    if !pred(lo) {
        return start - 1.0;
    }
    while lo < hi {
        let mid = lo + ((hi - lo) / 2.0).ceil();
        if pred(mid) { lo = mid } else { hi = mid - 1.0 }
    }
    lo
}

/// Fisher's exact test. `table` is [[canary_errors, canary_ok], [baseline_errors, baseline_ok]];
/// `Greater` means the canary's error odds are higher.
///
/// As SciPy: a table with an empty row or column gives odds ratio NaN and p = 1; otherwise the
/// odds ratio is a·d/(b·c), +inf when b·c = 0. The two-sided p-value sums the probabilities of all
/// tables at most `pmf(observed)·(1 + 1e-14)` (SciPy 1.17's relative tolerance).
pub fn fisher_exact(
    table: [[u64; 2]; 2],
    alternative: Alternative,
) -> Result<FisherExact, StatsError> {
    let [[a, b], [c, d]] = table;
    let overflow = || StatsError::Invalid(format!("fisher exact: table {table:?} sums overflow"));
    let n1 = a.checked_add(b).ok_or_else(overflow)?;
    let n2 = c.checked_add(d).ok_or_else(overflow)?;
    n1.checked_add(n2).ok_or_else(overflow)?;
    if n1 == 0 || n2 == 0 || a + c == 0 || b + d == 0 {
        return Ok(FisherExact {
            odds_ratio: f64::NAN,
            p_value: 1.0,
        });
    }
    let odds_ratio = if c > 0 && b > 0 {
        (a as f64 * d as f64) / (c as f64 * b as f64)
    } else {
        f64::INFINITY
    };
    let (af, n1f, n2f) = (a as f64, n1 as f64, n2 as f64);
    let n = (a + c) as f64;
    let h = Hypergeom {
        good: n1f,
        bad: n2f,
        draws: n,
    };
    let p_value = match alternative {
        Alternative::Less => h.cdf(af),
        Alternative::Greater => h.sf(af - 1.0),
        Alternative::TwoSided => {
            let mode = ((n + 1.0) * (n1f + 1.0) / (n1f + n2f + 2.0)).floor();
            let pexact = h.pmf(af);
            let pmode = h.pmf(mode);
            let gamma = 1.0 + 1e-14;
            let threshold = pexact * gamma;
            if (pexact - pmode).abs() / pexact.max(pmode) <= 1e-14 {
                1.0
            } else if af < mode {
                // Upper side: tables at or beyond the first x >= mode with pmf <= threshold.
                let plower = h.cdf(af);
                let last_above = last_true(mode, h.hi(), |x| h.pmf(x) > threshold);
                plower + h.sf(last_above)
            } else {
                let pupper = h.sf(af - 1.0);
                // Lower side: pmf increases up to the mode, so "pmf <= threshold" is a prefix.
                let last_below = last_true(h.lo(), mode, |x| h.pmf(x) <= threshold);
                pupper + h.cdf(last_below)
            }
        }
    };
    Ok(FisherExact {
        odds_ratio,
        p_value: p_value.clamp(0.0, 1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact hypergeometric probabilities by brute-force products (small tables only).
    fn brute_pmf(x: u64, good: u64, bad: u64, draws: u64) -> f64 {
        fn ln_choose(n: u64, k: u64) -> f64 {
            (0..k)
                .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
                .sum()
        }
        if x > good || draws - x > bad {
            return 0.0;
        }
        (ln_choose(good, x) + ln_choose(bad, draws - x) - ln_choose(good + bad, draws)).exp()
    }

    #[test]
    fn pmf_and_tails_match_brute_force() {
        let h = Hypergeom {
            good: 20.0,
            bad: 30.0,
            draws: 15.0,
        };
        let mut acc = 0.0;
        for x in 0..=15u64 {
            let p = brute_pmf(x, 20, 30, 15);
            assert!(
                (h.pmf(x as f64) - p).abs() <= 1e-13 * p.max(1e-300),
                "pmf {x}"
            );
            acc += p;
            assert!((h.cdf(x as f64) - acc).abs() < 1e-13, "cdf {x}");
            assert!((h.sf(x as f64) - (1.0 - acc)).abs() < 1e-13, "sf {x}");
        }
    }

    #[test]
    fn two_sided_matches_brute_force_definition() {
        for table in [
            [[3u64, 7], [10, 5]],
            [[0, 10], [5, 5]],
            [[8, 2], [1, 5]],
            [[2, 30], [15, 20]],
        ] {
            let [[a, b], [c, d]] = table;
            let (good, bad, draws) = (a + b, c + d, a + c);
            let pobs = brute_pmf(a, good, bad, draws);
            let expected: f64 = (0..=draws)
                .map(|x| brute_pmf(x, good, bad, draws))
                .filter(|&p| p <= pobs * (1.0 + 1e-14))
                .sum();
            let got = fisher_exact(table, Alternative::TwoSided).unwrap().p_value;
            assert!(
                (got - expected.min(1.0)).abs() < 1e-12,
                "{table:?}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn odds_ratio_edges_follow_scipy() {
        let r = fisher_exact([[0, 100], [0, 20]], Alternative::TwoSided).unwrap();
        assert!(r.odds_ratio.is_nan());
        assert_eq!(r.p_value, 1.0);
        assert_eq!(
            fisher_exact([[1, 99], [0, 20]], Alternative::Greater)
                .unwrap()
                .odds_ratio,
            f64::INFINITY
        );
        assert_eq!(
            fisher_exact([[0, 20], [4, 96]], Alternative::Less)
                .unwrap()
                .odds_ratio,
            0.0
        );
    }

    #[test]
    fn large_table_is_accurate() {
        // SciPy 1.17: fisher_exact([[8, 92], [2530, 47470]], 'greater') -> p = 0.13468213772656962
        let r = fisher_exact([[8, 92], [2530, 47470]], Alternative::Greater).unwrap();
        assert!((r.p_value - 0.134_682_137_726_569_62).abs() < 1e-14);
        assert!((r.odds_ratio - 1.631_551_813_026_293_2).abs() < 1e-14);
    }

    #[test]
    fn rejects_overflowing_tables() {
        assert!(matches!(
            fisher_exact([[u64::MAX, 1], [0, 1]], Alternative::Less),
            Err(StatsError::Invalid(_))
        ));
    }
}
