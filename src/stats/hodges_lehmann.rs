//! Hodges-Lehmann shift estimate with its distribution-free confidence interval.
//!
//! It owns order statistics of the n·m pairwise differences `y_j - x_i`, found without
//! materialising them: both samples are sorted once, the differences form an implicit matrix
//! sorted along rows and columns, and a randomised selection (Monahan's scheme for the
//! Hodges-Lehmann estimator, with Floyd-Rivest sampled pivot pairs) narrows per-row candidate
//! ranges with O(n + m) two-pointer counts.
//! It must not allocate anything of size n·m; the null distribution for the interval comes from
//! the Mann-Whitney module.

use statrs::distribution::{ContinuousCDF, Normal};

use super::StatsError;
use super::mann_whitney::exact_cdf;
use super::quantile::{check_sample, sorted_copy};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftEstimate {
    /// Median of all pairwise differences y_j - x_i.
    pub shift: f64,
    /// Confidence interval bounds on the shift (order statistics of the pairwise differences
    /// chosen from the Mann-Whitney null distribution).
    pub low: f64,
    pub high: f64,
    pub confidence: f64,
}

/// Below this many pairs the interval uses the exact Mann-Whitney null distribution (50 vs 50
/// costs about 3·10^6 steps); above it, the normal approximation.
const EXACT_PAIRS: usize = 2500;

/// Once this few candidates remain, they are copied out and selected directly.
const GATHER_AT: u64 = 4096;

/// The implicit matrix `d(i, j) = ys[j] - xs[i]` over ascending `xs` (rows) and `ys` (columns):
/// non-decreasing along each row, non-increasing down each column. Every difference is computed
/// by the same expression, and rounding is monotone, so the order holds for the computed values.
struct Differences {
    xs: Vec<f64>,
    ys: Vec<f64>,
}

impl Differences {
    fn new(x: &[f64], y: &[f64]) -> Self {
        Differences {
            xs: sorted_copy(x),
            ys: sorted_copy(y),
        }
    }

    fn count(&self) -> u64 {
        self.xs.len() as u64 * self.ys.len() as u64
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.ys[j] - self.xs[i]
    }

    /// For each row, how many entries are below `p` (`strict`) or at most `p`; writes them to
    /// `out` and returns their sum. The caller guarantees that row i's count lies in
    /// `lo[i]..=hi[i]` (true for any `p` strictly between the values already excluded on either
    /// side). Row counts are non-decreasing down the rows, so the column pointer only moves
    /// forward and never scans outside the candidate range: O(n + min(m, candidates)).
    fn count_rows(
        &self,
        p: f64,
        strict: bool,
        lo: &[usize],
        hi: &[usize],
        out: &mut [usize],
    ) -> u64 {
        let mut j = 0usize;
        let mut total = 0u64;
        for (i, slot) in out.iter_mut().enumerate() {
            let xi = self.xs[i];
            let end = hi[i];
            j = j.max(lo[i]);
            if strict {
                while j < end && self.ys[j] - xi < p {
                    j += 1;
                }
            } else {
                while j < end && self.ys[j] - xi <= p {
                    j += 1;
                }
            }
            *slot = j;
            total += j as u64;
        }
        total
    }

    /// The smallest difference strictly above `v`.
    fn next_above(&self, v: f64) -> Option<f64> {
        let n = self.xs.len();
        let (lo, hi) = (vec![0usize; n], vec![self.ys.len(); n]);
        let mut le = vec![0usize; n];
        self.count_rows(v, false, &lo, &hi, &mut le);
        le.iter()
            .enumerate()
            .filter(|&(_, &j)| j < self.ys.len())
            .map(|(i, &j)| self.at(i, j))
            .min_by(f64::total_cmp)
    }

    /// The k-th smallest difference (0-based), exactly.
    ///
    /// Invariant: the answer lies among the candidates `d(i, lo[i]..hi[i])`; everything left of
    /// `lo` is at most a value `p_lo` known to rank before k (`below` of them), everything right
    /// of `hi` at least a value `p_hi` known to rank after k, and every candidate lies strictly
    /// between the two. Each round draws a random sample of candidates and takes two of them as
    /// pivots bracketing the expected position of the answer (Floyd-Rivest); counting entries
    /// `<=` the lower pivot and `<` the upper one either finds the answer (a pivot that ties it)
    /// or cuts the candidates down, typically to a sixth or less per round.
    fn select(&self, k: u64) -> f64 {
        const SAMPLE: usize = 1024;
        let (n, m) = (self.xs.len(), self.ys.len());
        let mut lo = vec![0usize; n];
        let mut hi = vec![m; n];
        let mut counts = vec![0usize; n];
        let mut starts = vec![0u64; n + 1];
        let mut sample = Vec::with_capacity(SAMPLE);
        let mut rng = SplitMix(0x5EED_CA7A_12D0_0001 ^ k);
        let gather_at = GATHER_AT.max((n + m) as u64);
        loop {
            let below: u64 = lo.iter().map(|&v| v as u64).sum();
            for i in 0..n {
                starts[i + 1] = starts[i] + (hi[i] - lo[i]) as u64;
            }
            let remaining = starts[n];
            let target = k - below;
            if remaining <= gather_at {
                let mut rest: Vec<f64> = Vec::with_capacity(remaining as usize);
                for i in 0..n {
                    rest.extend((lo[i]..hi[i]).map(|j| self.at(i, j)));
                }
                let (_, v, _) = rest.select_nth_unstable_by(target as usize, f64::total_cmp);
                return *v;
            }
            // A uniform sample of candidates, with replacement.
            sample.clear();
            for _ in 0..SAMPLE {
                let r = rng.next() % remaining;
                let i = starts.partition_point(|&s| s <= r) - 1;
                sample.push(self.at(i, lo[i] + (r - starts[i]) as usize));
            }
            sample.sort_unstable_by(f64::total_cmp);
            let centre = target as f64 / remaining as f64 * SAMPLE as f64;
            let spread = 2.5 * (SAMPLE as f64).sqrt();
            let at = |pos: f64| sample[(pos.max(0.0) as usize).min(SAMPLE - 1)];
            let (p1, p2) = (at(centre - spread), at(centre + spread));

            // Lower pivot: does everything <= p1 rank before k?
            if self.count_rows(p1, false, &lo, &hi, &mut counts) <= k {
                lo.copy_from_slice(&counts);
            } else {
                if self.count_rows(p1, true, &lo, &hi, &mut counts) <= k {
                    return p1; // #(< p1) <= k < #(<= p1)
                }
                hi.copy_from_slice(&counts);
                continue;
            }
            if p2 <= p1 {
                continue; // p2 is no longer strictly inside the candidate range.
            }
            // Upper pivot: everything >= p2 ranks after k?
            let lt2 = self.count_rows(p2, true, &lo, &hi, &mut counts);
            if lt2 > k {
                hi.copy_from_slice(&counts);
            } else {
                let le2 = self.count_rows(p2, false, &lo, &hi, &mut counts);
                if le2 > k {
                    return p2; // lt2 <= k < le2
                }
                lo.copy_from_slice(&counts);
            }
        }
    }

    /// Median as `numpy.median`: the middle one, or the mean of the two middle ones.
    fn median(&self) -> f64 {
        let total = self.count();
        if total % 2 == 1 {
            return self.select(total / 2);
        }
        let a = self.select(total / 2 - 1);
        let n = self.xs.len();
        let (lo, hi) = (vec![0usize; n], vec![self.ys.len(); n]);
        let mut le = vec![0usize; n];
        let b = if self.count_rows(a, false, &lo, &hi, &mut le) > total / 2 {
            a
        } else {
            self.next_above(a).unwrap_or(a)
        };
        let mid = (a + b) / 2.0;
        if mid.is_finite() {
            mid
        } else {
            a / 2.0 + b / 2.0
        }
    }
}

/// A small deterministic generator (SplitMix64): pivots need no real randomness, only no
/// adversarial structure, and the module must not read the clock.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Median of all y_j - x_i (the mean of the two middle ones when n·m is even, as
/// `numpy.median`), without materialising the n·m differences: O((n + m) log(n·m)) expected.
pub fn hodges_lehmann(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    check_sample("hodges-lehmann x sample", x, 1)?;
    check_sample("hodges-lehmann y sample", y, 1)?;
    Ok(Differences::new(x, y).median())
}

/// The 1-based rank k of the interval's lower end: the largest k >= 1 with
/// `2·P(U <= k-1) <= 1 - confidence` under the Mann-Whitney null for sizes n and m, or `None` when
/// even k = 1 is too narrow.
fn ci_rank(n: usize, m: usize, confidence: f64) -> Option<u64> {
    let half_alpha = (1.0 - confidence) / 2.0;
    let nm = n * m;
    if nm <= EXACT_PAIRS {
        let cdf = exact_cdf(n.min(m), n.max(m), nm / 2);
        let count = cdf.iter().take_while(|&&c| c <= half_alpha).count();
        (count > 0).then_some(count as u64)
    } else {
        let z = Normal::standard().inverse_cdf(1.0 - half_alpha);
        let (nf, mf) = (n as f64, m as f64);
        let sigma = (nf * mf * (nf + mf + 1.0) / 12.0).sqrt();
        // Continuity-corrected: P(U <= k-1) ≈ Φ((k - 1 + 0.5 - nm/2) / σ) <= α/2.
        let k = (nf * mf / 2.0 + 0.5 - z * sigma).floor();
        (k >= 1.0).then_some(k as u64)
    }
}

/// Shift with a distribution-free confidence interval at `confidence` (e.g. 0.99).
///
/// Convention (Hollander & Wolfe; Bauer 1972): with the n·m differences `y_j - x_i` in ascending
/// order `D(1) <= ... <= D(nm)`, the interval is `[D(k), D(nm - k + 1)]` where k is the largest
/// integer >= 1 with `P(U <= k - 1) <= (1 - confidence) / 2` under the Mann-Whitney null (no ties),
/// so its coverage is at least `confidence`. The null is exact for n·m <= 2500 and the
/// continuity-corrected normal approximation above (k = ⌊nm/2 + 1/2 - z·σ⌋, σ² = nm(n+m+1)/12).
/// This is the same k as R's `wilcox.test(conf.int = TRUE)` except when a tail probability equals
/// α/2 exactly. If the samples are too small for any interval to reach `confidence`, an
/// `Invalid` error says so.
pub fn hodges_lehmann_ci(
    x: &[f64],
    y: &[f64],
    confidence: f64,
) -> Result<ShiftEstimate, StatsError> {
    check_sample("hodges-lehmann x sample", x, 1)?;
    check_sample("hodges-lehmann y sample", y, 1)?;
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(StatsError::Invalid(format!(
            "confidence {confidence} is outside (0, 1)"
        )));
    }
    let (n, m) = (x.len(), y.len());
    let k = ci_rank(n, m, confidence).ok_or_else(|| {
        StatsError::Invalid(format!(
            "samples of {n} and {m} points are too small for a {confidence} confidence interval on the shift"
        ))
    })?;
    let d = Differences::new(x, y);
    let total = d.count();
    Ok(ShiftEstimate {
        shift: d.median(),
        low: d.select(k - 1),
        high: d.select(total - k),
        confidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_differences(x: &[f64], y: &[f64]) -> Vec<f64> {
        let mut d: Vec<f64> = y
            .iter()
            .flat_map(|&b| x.iter().map(move |&a| b - a))
            .collect();
        d.sort_by(f64::total_cmp);
        d
    }

    fn sample(seed: u64, len: usize, ties: bool) -> Vec<f64> {
        let mut g = SplitMix(seed);
        (0..len)
            .map(|_| {
                let v = (g.next() >> 11) as f64 / (1u64 << 53) as f64;
                if ties {
                    (v * 6.0).floor()
                } else {
                    v * 10.0 - 3.0
                }
            })
            .collect()
    }

    #[test]
    fn every_order_statistic_matches_brute_force() {
        for (seed, n, m, ties) in [
            (1, 7, 5, false),
            (2, 40, 130, true),
            (3, 1, 9, false),
            (4, 90, 80, false),
            (11, 300, 400, true),
            (12, 350, 250, false),
            (13, 3, 20_000, false),
        ] {
            let (x, y) = (sample(seed, n, ties), sample(seed + 100, m, ties));
            let brute = all_differences(&x, &y);
            let d = Differences::new(&x, &y);
            let step = (brute.len() / 97).max(1);
            for k in (0..brute.len()).step_by(step).chain([brute.len() - 1]) {
                assert_eq!(d.select(k as u64), brute[k], "n={n} m={m} k={k}");
            }
        }
    }

    #[test]
    fn shift_is_the_numpy_median_of_differences() {
        for (seed, n, m, ties) in [
            (5, 4, 6, false),
            (6, 3, 3, false),
            (7, 30, 20, true),
            (8, 2, 1, false),
        ] {
            let (x, y) = (sample(seed, n, ties), sample(seed + 7, m, ties));
            let brute = all_differences(&x, &y);
            let t = brute.len();
            let median = if t % 2 == 1 {
                brute[t / 2]
            } else {
                (brute[t / 2 - 1] + brute[t / 2]) / 2.0
            };
            assert_eq!(hodges_lehmann(&x, &y).unwrap(), median);
        }
        assert_eq!(hodges_lehmann(&[0.0, 6.0], &[2.0, 2.0, 4.0]).unwrap(), 0.0);
    }

    #[test]
    fn interval_uses_the_documented_order_statistics() {
        // n = m = 5: P(U <= 2) = 4/252 ≈ 0.0159 <= 0.025 < P(U <= 3) = 7/252, so k = 3 at 95%:
        // [D(3), D(23)].
        let x = [1.0, 2.5, 3.1, 4.0, 7.2];
        let y = [2.0, 3.3, 5.0, 6.1, 9.9];
        let brute = all_differences(&x, &y);
        let ci = hodges_lehmann_ci(&x, &y, 0.95).unwrap();
        assert_eq!((ci.low, ci.high), (brute[2], brute[22]));
        assert_eq!(ci.shift, brute[12]);
        assert_eq!(ci.confidence, 0.95);
        // Larger samples, normal approximation: k = floor(nm/2 + 0.5 - z σ).
        let (x, y) = (sample(9, 60, false), sample(10, 70, false));
        let brute = all_differences(&x, &y);
        let sigma = (60.0f64 * 70.0 * 131.0 / 12.0).sqrt();
        let k = (2100.0 + 0.5 - 1.959_963_984_540_054 * sigma).floor() as usize;
        let ci = hodges_lehmann_ci(&x, &y, 0.95).unwrap();
        assert_eq!((ci.low, ci.high), (brute[k - 1], brute[4200 - k]));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            hodges_lehmann(&[], &[1.0]),
            Err(StatsError::TooFew { .. })
        ));
        assert!(matches!(
            hodges_lehmann(&[1.0], &[f64::NAN]),
            Err(StatsError::NonFinite { .. })
        ));
        for c in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(matches!(
                hodges_lehmann_ci(&[1.0, 2.0], &[3.0, 4.0], c),
                Err(StatsError::Invalid(_))
            ));
        }
        // 2 vs 2 can never reach 99%: the widest interval covers 1 - 2/6.
        assert!(matches!(
            hodges_lehmann_ci(&[1.0, 2.0], &[3.0, 4.0], 0.99),
            Err(StatsError::Invalid(m)) if m.contains("too small")
        ));
    }
}
