//! Mann-Whitney U test (Wilcoxon rank-sum), as SciPy's `mannwhitneyu`.
//!
//! It owns the U statistic (with midranks), the exact null distribution of U (a recurrence over
//! sample sizes, never an enumeration of subsets) and the tie-corrected normal approximation. The
//! Hodges-Lehmann interval borrows the null distribution from here. It must not use statrs's
//! Mann-Whitney, which is wrong unless the first sample is the larger one.

use super::proportion::normal_p;
use super::quantile::{check_sample, sorted_keys};
use super::{Alternative, StatsError};

/// How the p-value is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MwMethod {
    /// The exact null distribution (valid without ties), by recurrence.
    Exact,
    /// Normal approximation with tie-corrected variance (and optional 0.5 continuity correction).
    Asymptotic,
    /// SciPy's rule: asymptotic when both samples have more than 8 points or there are ties, else
    /// exact.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: R_x - n_x(n_x+1)/2.
    pub u: f64,
    pub p_value: f64,
    /// The method actually used (never `Auto`).
    pub method: MwMethod,
}

/// Largest amount of work (array cells updated) the exact probability recurrence may do, about a
/// second; beyond it ask for the asymptotic method. (Up to 60 vs 60 the integer path is used,
/// which costs only n·(limit+1).)
const EXACT_WORK_LIMIT: u128 = 2_000_000_000;

/// The rank statistics of `x` within the pooled sample.
struct Ranked {
    /// U of x.
    u: f64,
    /// Σ (t³ - t) over groups of tied values.
    tie_term: f64,
}

/// Midrank U of x and the tie term, by sorting each sample once and merging. The merge runs on
/// order-preserving integer keys (equal keys are equal values), with no allocation per element.
fn rank(x: &[f64], y: &[f64]) -> Ranked {
    let xs = sorted_keys(x);
    let ys = sorted_keys(y);
    let (n, m) = (xs.len(), ys.len());
    let (mut i, mut j) = (0usize, 0usize);
    // Twice the rank sum of x, exactly, in integers.
    let mut twice_rx: u128 = 0;
    let mut tie_term: u128 = 0;
    let mut pos: u128 = 0;
    while i < n || j < m {
        let v = match (xs.get(i), ys.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        let i0 = i;
        while i < n && xs[i] == v {
            i += 1;
        }
        let j0 = j;
        while j < m && ys[j] == v {
            j += 1;
        }
        let cx = (i - i0) as u128;
        let t = cx + (j - j0) as u128;
        // Ranks pos+1 ..= pos+t share the midrank pos + (t+1)/2.
        twice_rx += cx * (2 * pos + t + 1);
        tie_term += t * t * t - t;
        pos += t;
    }
    let n = n as u128;
    let twice_u = twice_rx - n * (n + 1);
    Ranked {
        u: twice_u as f64 / 2.0,
        tie_term: tie_term as f64,
    }
}

/// Lower tail of the exact null distribution of U for samples of `n` and `m` points without ties:
/// `cdf[u] = P(U <= u)` for `u` in `0..=limit`.
///
/// The frequencies of U are the coefficients of the Gaussian binomial
/// `[n+m choose n]_q = Π_{i=1..n} (1 - q^(m+i)) / (1 - q^i)`. When C(n+m, n) fits comfortably in
/// an i128 (up to about 60 vs 60) they are built exactly, one factor at a time, in O(n·limit);
/// beyond that a probability recurrence takes over (see [`exact_cdf_recurrence`]). Only
/// coefficients up to `limit` are kept: a truncated product is exact on the kept prefix.
pub(super) fn exact_cdf(n: usize, m: usize, limit: usize) -> Vec<f64> {
    let (n, m) = (n.min(m), n.max(m));
    let total = (1..=n).fold(1.0f64, |acc, i| acc * (m + i) as f64 / i as f64);
    if total >= 2f64.powi(120) {
        return exact_cdf_recurrence(n, m, limit);
    }
    let width = limit + 1;
    let mut freq = vec![0i128; width];
    freq[0] = 1;
    for i in 1..=n {
        // Multiply by (1 - q^(m+i)), from the top down so each coefficient reads the old values.
        let shift = m + i;
        for u in (shift..width).rev() {
            freq[u] -= freq[u - shift];
        }
        // Divide by (1 - q^i): c[u] = a[u] + c[u - i], from the bottom up.
        for u in i..width {
            freq[u] += freq[u - i];
        }
    }
    let total = freq_total(n, m);
    let mut acc = 0i128;
    freq.iter()
        .map(|&f| {
            acc += f;
            (acc as f64 / total).min(1.0)
        })
        .collect()
}

/// C(n+m, n) as an f64, from exact integer arithmetic (called only when it fits an i128).
fn freq_total(n: usize, m: usize) -> f64 {
    let mut c: u128 = 1;
    for i in 1..=n as u128 {
        // C(m+i, i) = C(m+i-1, i-1)·(m+i)/i, exact at every step.
        c = c * (m as u128 + i) / i;
    }
    c as f64
}

/// The same lower tail by a recurrence on the largest pooled point: it is an x with probability
/// n/(n+m), and then beats all m y's, so `P_{n,m}(u) = n/(n+m)·P_{n-1,m}(u-m) + m/(n+m)·P_{n,m-1}(u)`.
/// Working in probabilities (convex combinations) never overflows and keeps full relative
/// precision in the tails; the work is about n·m·(limit+1).
fn exact_cdf_recurrence(n: usize, m: usize, limit: usize) -> Vec<f64> {
    let width = limit + 1;
    // prev[j] / cur[j]: the pmf for (i-1, j) / (i, j), truncated to `width` cells.
    let mut prev = vec![0.0f64; (m + 1) * width];
    let mut cur = vec![0.0f64; (m + 1) * width];
    for j in 0..=m {
        prev[j * width] = 1.0; // i = 0: U is 0.
    }
    for i in 1..=n {
        cur[..width].fill(0.0);
        cur[0] = 1.0; // j = 0: U is 0.
        for j in 1..=m {
            let wx = i as f64 / (i + j) as f64;
            let wy = j as f64 / (i + j) as f64;
            let (done, rest) = cur.split_at_mut(j * width);
            let left = &done[(j - 1) * width..];
            let out = &mut rest[..width];
            let up = &prev[j * width..(j + 1) * width];
            let reach = (i * j).min(limit);
            for u in 0..=reach {
                let from_x = if u >= j { up[u - j] } else { 0.0 };
                out[u] = wx * from_x + wy * left[u];
            }
            out[reach + 1..].fill(0.0);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let pmf = &prev[m * width..(m + 1) * width];
    let mut acc = 0.0;
    pmf.iter()
        .map(|p| {
            acc += p;
            acc.min(1.0)
        })
        .collect()
}

/// P(U >= u) under the exact null, with `u` truncated to an integer as SciPy does.
fn exact_sf(n: usize, m: usize, u: f64) -> Result<f64, StatsError> {
    let nm = (n * m) as i64;
    let u = u.trunc() as i64;
    if u <= 0 {
        return Ok(1.0);
    }
    if u > nm {
        return Ok(0.0);
    }
    // By symmetry P(U >= u) = P(U <= nm - u); use whichever tail is shorter.
    let (limit, upper) = if nm - u < u {
        ((nm - u) as usize, false)
    } else {
        ((u - 1) as usize, true)
    };
    let work = (n as u128) * (m as u128) * (limit as u128 + 1);
    if work > EXACT_WORK_LIMIT && n.min(m) > 60 {
        return Err(StatsError::Invalid(format!(
            "exact Mann-Whitney for samples of {n} and {m} points is too costly; use the asymptotic method"
        )));
    }
    let cdf = exact_cdf(n, m, limit);
    Ok(if upper { 1.0 - cdf[limit] } else { cdf[limit] })
}

/// Mann-Whitney U test of `x` against `y`, exactly as `scipy.stats.mannwhitneyu(x, y,
/// use_continuity=continuity, alternative=..., method=...)`.
///
/// `u` is U of `x` (R_x - n_x(n_x+1)/2, midranks for ties). `Greater` means `x` tends to be
/// larger. The p-value uses U of x for `Greater`, U of y for `Less` and the larger of the two for
/// `TwoSided` (doubled, capped at 1). `Exact` ignores ties (as SciPy does); `Asymptotic` uses the
/// tie-corrected variance and, when `continuity`, moves U 0.5 towards the mean.
pub fn mann_whitney_u(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
    method: MwMethod,
    continuity: bool,
) -> Result<MannWhitney, StatsError> {
    check_sample("mann-whitney x sample", x, 1)?;
    check_sample("mann-whitney y sample", y, 1)?;
    let (n1, n2) = (x.len(), y.len());
    let ranked = rank(x, y);
    let u1 = ranked.u;
    let nm = n1 as f64 * n2 as f64;
    let u2 = nm - u1;
    let (u, factor) = match alternative {
        Alternative::Greater => (u1, 1.0),
        Alternative::Less => (u2, 1.0),
        Alternative::TwoSided => (u1.max(u2), 2.0),
    };
    let method = match method {
        MwMethod::Auto if (n1 > 8 && n2 > 8) || ranked.tie_term > 0.0 => MwMethod::Asymptotic,
        MwMethod::Auto => MwMethod::Exact,
        other => other,
    };
    let p = match method {
        MwMethod::Exact => exact_sf(n1.min(n2), n1.max(n2), u)?,
        _ => {
            let n = (n1 + n2) as f64;
            let s = (nm / 12.0 * ((n + 1.0) - ranked.tie_term / (n * (n - 1.0)))).sqrt();
            let mut numerator = u - nm / 2.0;
            if continuity {
                numerator -= 0.5;
            }
            // s = 0 (all values tied): SciPy divides anyway; -0.5/0 = -inf gives p = 1.
            let z = numerator / s;
            if z.is_nan() {
                1.0
            } else {
                normal_p(z, Alternative::Greater)
            }
        }
    };
    Ok(MannWhitney {
        u: u1,
        p_value: (p * factor).clamp(0.0, 1.0),
        method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: P(U <= u) by enumerating all C(n+m, n) placements of x among the pooled ranks.
    fn brute_cdf(n: usize, m: usize) -> Vec<f64> {
        let total = n + m;
        let mut counts = vec![0u64; n * m + 1];
        let mut all = 0u64;
        for mask in 0u32..(1 << total) {
            if mask.count_ones() as usize != n {
                continue;
            }
            // U of x = number of (x, y) pairs with x above y.
            let mut u = 0;
            let mut ys_below = 0;
            for bit in 0..total {
                if mask & (1 << bit) != 0 {
                    u += ys_below;
                } else {
                    ys_below += 1;
                }
            }
            counts[u] += 1;
            all += 1;
        }
        let mut acc = 0;
        counts
            .iter()
            .map(|c| {
                acc += c;
                acc as f64 / all as f64
            })
            .collect()
    }

    #[test]
    fn recurrence_matches_enumeration() {
        for (n, m) in [(1, 1), (2, 3), (3, 2), (4, 4), (5, 7), (1, 9), (6, 6)] {
            let brute = brute_cdf(n, m);
            for exact in [
                exact_cdf(n, m, n * m),
                exact_cdf_recurrence(n.min(m), n.max(m), n * m),
            ] {
                for (a, b) in exact.iter().zip(&brute) {
                    assert!((a - b).abs() < 1e-14, "n={n} m={m}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn first_sample_smaller_is_not_the_statrs_bug() {
        // statrs gets this wrong; SciPy: U = 0, p = 0.1.
        let r = mann_whitney_u(
            &[1.0, 2.0, 3.0],
            &[4.0, 5.0, 6.0],
            Alternative::TwoSided,
            MwMethod::Exact,
            true,
        )
        .unwrap();
        assert_eq!(r.u, 0.0);
        assert!((r.p_value - 0.1).abs() < 1e-15);
        assert_eq!(r.method, MwMethod::Exact);
        let r = mann_whitney_u(
            &[1.0, 2.0],
            &[3.0, 4.0, 5.0, 6.0],
            Alternative::Less,
            MwMethod::Auto,
            true,
        )
        .unwrap();
        // Only one of C(6,2) = 15 arrangements is this extreme.
        assert!((r.p_value - 1.0 / 15.0).abs() < 1e-15);
    }

    #[test]
    fn integer_and_probability_paths_agree_on_large_samples() {
        let a = exact_cdf(40, 55, 1100);
        let b = exact_cdf_recurrence(40, 55, 1100);
        for (u, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!((p - q).abs() <= 1e-12 * p.max(1e-300), "u={u}: {p} vs {q}");
        }
    }

    #[test]
    fn fifty_vs_fifty_exact_is_a_proper_distribution() {
        let cdf = exact_cdf(50, 50, 2500);
        assert!((cdf[2500] - 1.0).abs() < 1e-12);
        // Symmetric: P(U <= 1249) = P(U >= 1251) = 1 - P(U <= 1250).
        assert!((cdf[1249] - (1.0 - cdf[1250])).abs() < 1e-12);
        // P(U = 0) = 1 / C(100, 50).
        assert!((cdf[0] * 1.008_913_445_455_641_9e29 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn ties_use_midranks_and_auto_goes_asymptotic() {
        // Pooled: 1 2 2 3 -> ranks 1, 2.5, 2.5, 4. x = [2, 3]: R = 6.5, U = 3.5.
        let r = mann_whitney_u(
            &[2.0, 3.0],
            &[1.0, 2.0],
            Alternative::TwoSided,
            MwMethod::Auto,
            true,
        )
        .unwrap();
        assert_eq!(r.u, 3.5);
        assert_eq!(r.method, MwMethod::Asymptotic);
        // All tied: no evidence at all.
        let r = mann_whitney_u(
            &[1.0, 1.0],
            &[1.0, 1.0],
            Alternative::Greater,
            MwMethod::Asymptotic,
            true,
        )
        .unwrap();
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            mann_whitney_u(&[], &[1.0], Alternative::Less, MwMethod::Auto, true),
            Err(StatsError::TooFew { .. })
        ));
        assert!(matches!(
            mann_whitney_u(&[1.0], &[f64::NAN], Alternative::Less, MwMethod::Auto, true),
            Err(StatsError::NonFinite { .. })
        ));
        let big: Vec<f64> = (0..5000).map(f64::from).collect();
        assert!(matches!(
            mann_whitney_u(&big, &big, Alternative::TwoSided, MwMethod::Exact, true),
            Err(StatsError::Invalid(_))
        ));
    }
}
