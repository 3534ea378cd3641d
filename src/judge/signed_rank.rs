//! The Wilcoxon signed-rank test and the one-sample Hodges-Lehmann estimate (median of Walsh
//! averages) with its distribution-free confidence interval: the paired comparison the judge
//! makes on per-timestamp log-ratios. It owns these two computations only; deciding what a
//! p-value means for a rollout is the judge's job. Conventions follow SciPy's `wilcoxon`
//! (zeros dropped, exact null distribution for up to 50 nonzero differences without ties, else
//! the normal approximation with tie-corrected variance and no continuity correction) and R's
//! `wilcox.test(conf.int = TRUE)` for the interval.

use crate::stats::{Alternative, StatsError};
use statrs::distribution::{ContinuousCDF, Normal};

/// Up to this many nonzero differences without ties, p-values come from the exact null
/// distribution (SciPy's threshold).
const EXACT_MAX_N: usize = 50;

/// Above this many differences the n(n+1)/2 Walsh averages are not materialised; the estimate
/// and interval fall back to the sample median and its order-statistic (sign-test) interval.
const WALSH_MAX_N: usize = 1500;

/// How a signed-rank p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignedRankMethod {
    Exact,
    Normal,
}

/// The result of a Wilcoxon signed-rank test of "the differences are centred on zero".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignedRank {
    /// Nonzero differences used (zeros are dropped).
    pub n: usize,
    /// Sum of the ranks of the positive differences.
    pub w_plus: f64,
    pub p_value: f64,
    pub method: SignedRankMethod,
}

/// Wilcoxon signed-rank test on differences `d` against zero. `Greater` means the differences
/// tend to be positive. All differences zero gives p = 1 (no evidence of any difference).
pub fn signed_rank_test(d: &[f64], alternative: Alternative) -> Result<SignedRank, StatsError> {
    if d.iter().any(|x| !x.is_finite()) {
        return Err(StatsError::NonFinite {
            what: "signed-rank differences",
        });
    }
    let mut nz: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0).collect();
    let n = nz.len();
    if n == 0 {
        return Ok(SignedRank {
            n: 0,
            w_plus: 0.0,
            p_value: 1.0,
            method: SignedRankMethod::Exact,
        });
    }
    nz.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    // Average ranks over ties of |d|, and the tie correction term.
    let mut w_plus = 0.0;
    let mut tie_term = 0.0;
    let mut has_ties = false;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && nz[j].abs() == nz[i].abs() {
            j += 1;
        }
        let t = (j - i) as f64;
        if j - i > 1 {
            has_ties = true;
            tie_term += t * t * t - t;
        }
        let rank = (i + 1 + j) as f64 / 2.0;
        w_plus += rank * nz[i..j].iter().filter(|x| **x > 0.0).count() as f64;
        i = j;
    }
    let nf = n as f64;
    let (p_value, method) = if n <= EXACT_MAX_N && !has_ties {
        let cdf = null_cdf(n);
        // W+ is an integer here (no ties).
        let w = w_plus.round() as usize;
        let le = cdf[w];
        let ge = if w == 0 { 1.0 } else { 1.0 - cdf[w - 1] };
        let p = match alternative {
            Alternative::Greater => ge,
            Alternative::Less => le,
            Alternative::TwoSided => (2.0 * le.min(ge)).min(1.0),
        };
        (p, SignedRankMethod::Exact)
    } else {
        let mean = nf * (nf + 1.0) / 4.0;
        let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
        let p = if var <= 0.0 {
            1.0
        } else {
            let z = (w_plus - mean) / var.sqrt();
            let normal = Normal::standard();
            match alternative {
                Alternative::Greater => normal.sf(z),
                Alternative::Less => normal.cdf(z),
                Alternative::TwoSided => (2.0 * normal.sf(z.abs())).min(1.0),
            }
        };
        (p, SignedRankMethod::Normal)
    };
    Ok(SignedRank {
        n,
        w_plus,
        p_value: p_value.clamp(0.0, 1.0),
        method,
    })
}

/// Cumulative null distribution of W+ for n nonzero, untied differences: `cdf[w] = P(W+ ≤ w)`.
fn null_cdf(n: usize) -> Vec<f64> {
    let max = n * (n + 1) / 2;
    let mut counts = vec![0.0f64; max + 1];
    counts[0] = 1.0;
    for k in 1..=n {
        let top = k * (k + 1) / 2;
        for w in (k..=top).rev() {
            counts[w] += counts[w - k];
        }
    }
    let total = 2f64.powi(n as i32);
    let mut acc = 0.0;
    counts
        .iter()
        .map(|c| {
            acc += c;
            (acc / total).min(1.0)
        })
        .collect()
}

/// The one-sample Hodges-Lehmann estimate (median of the Walsh averages (d_i + d_j)/2, i ≤ j)
/// of the centre of `d`, with its distribution-free interval at `confidence`.
/// Returns `(estimate, low, high)`.
pub fn walsh_shift_ci(d: &[f64], confidence: f64) -> Result<(f64, f64, f64), StatsError> {
    if d.iter().any(|x| !x.is_finite()) {
        return Err(StatsError::NonFinite {
            what: "signed-rank differences",
        });
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(StatsError::Invalid(format!(
            "confidence must be in (0, 1), got {confidence}"
        )));
    }
    let n = d.len();
    if n < 2 {
        return Err(StatsError::TooFew {
            what: "Hodges-Lehmann interval",
            needed: 2,
            got: n,
        });
    }
    let alpha = 1.0 - confidence;
    let z = Normal::standard().inverse_cdf(1.0 - alpha / 2.0);
    if n > WALSH_MAX_N {
        let mut s = d.to_vec();
        s.sort_by(f64::total_cmp);
        let nf = n as f64;
        let half = z * nf.sqrt() / 2.0;
        let lo = ((nf / 2.0 - half).floor().max(0.0)) as usize;
        let hi = ((nf / 2.0 + half).ceil() as usize).min(n - 1);
        let med = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        return Ok((med, s[lo], s[hi]));
    }
    let m = n * (n + 1) / 2;
    let mut walsh = Vec::with_capacity(m);
    for i in 0..n {
        for j in i..n {
            walsh.push((d[i] + d[j]) / 2.0);
        }
    }
    walsh.sort_by(f64::total_cmp);
    let estimate = if m % 2 == 1 {
        walsh[m / 2]
    } else {
        (walsh[m / 2 - 1] + walsh[m / 2]) / 2.0
    };
    // qu: the smallest w with P(W+ ≤ w) ≥ alpha/2 (R's qsignrank), at least 1.
    let qu = if n <= EXACT_MAX_N {
        let cdf = null_cdf(n);
        cdf.iter().position(|p| *p >= alpha / 2.0).unwrap_or(0)
    } else {
        let nf = n as f64;
        let mean = nf * (nf + 1.0) / 4.0;
        let sd = (nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0).sqrt();
        (mean - z * sd).round().max(0.0) as usize
    }
    .clamp(1, m.div_ceil(2));
    Ok((estimate, walsh[qu - 1], walsh[m - qu]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values checked against SciPy 1.17: `wilcoxon(d, alternative=...)`.
    #[test]
    #[allow(clippy::approx_constant)] // 3.14 is a measurement in R's example data, not π
    fn exact_p_values_match_scipy() {
        let d = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
            .iter()
            .zip([0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29])
            .map(|(x, y)| x - y)
            .collect::<Vec<_>>();
        // x - y from R's wilcox.test example: V = 40, p (greater) = 0.01953.
        let r = signed_rank_test(&d, Alternative::Greater).unwrap();
        assert_eq!(r.method, SignedRankMethod::Exact);
        assert_eq!(r.w_plus, 40.0);
        assert!((r.p_value - 0.019531).abs() < 1e-5, "{}", r.p_value);
        let two = signed_rank_test(&d, Alternative::TwoSided).unwrap();
        assert!((two.p_value - 0.039062).abs() < 1e-5, "{}", two.p_value);
        let less = signed_rank_test(&d, Alternative::Less).unwrap();
        assert!(less.p_value > 0.98);
    }

    #[test]
    fn ties_use_the_normal_approximation() {
        let d = [1.0, 1.0, 2.0, -1.0, 3.0, 2.0, 4.0, 0.0];
        let r = signed_rank_test(&d, Alternative::Greater).unwrap();
        assert_eq!(r.method, SignedRankMethod::Normal);
        assert_eq!(r.n, 7);
        // scipy.stats.wilcoxon(d, alternative='greater', method='approx') -> 0.020342454
        assert!((r.p_value - 0.020342454).abs() < 1e-8, "{}", r.p_value);
    }

    #[test]
    fn all_zero_differences_are_no_evidence() {
        let r = signed_rank_test(&[0.0; 10], Alternative::Greater).unwrap();
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn walsh_interval_matches_r() {
        // R's wilcox.test(x - y, conf.int = TRUE) rule on the example above: qu = qsignrank(0.025, 9)
        // = 6, so the interval is the 6th smallest and 6th largest of the 45 Walsh averages.
        let d = [0.952, -0.147, 1.022, 0.43, 0.62, 0.59, 0.49, -0.08, 0.01];
        let (est, lo, hi) = walsh_shift_ci(&d, 0.95).unwrap();
        assert!((est - 0.46).abs() < 1e-9, "{est}");
        assert!((lo - 0.01).abs() < 1e-9, "{lo}");
        assert!((hi - 0.786).abs() < 1e-9, "{hi}");
    }

    #[test]
    fn non_finite_is_an_error() {
        assert!(signed_rank_test(&[1.0, f64::NAN], Alternative::Greater).is_err());
        assert!(walsh_shift_ci(&[1.0, f64::INFINITY], 0.9).is_err());
    }
}
