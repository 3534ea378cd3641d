//! The one-sample Hodges-Lehmann estimate (median of the Walsh averages) of the centre of paired
//! differences, with its distribution-free confidence interval, as R's `wilcox.test(conf.int =
//! TRUE)` computes them. It owns selecting order statistics of the n(n+1)/2 Walsh averages
//! without materialising them (Monahan's selection with Floyd-Rivest sampled pivots); the
//! interval's ranks come from the signed-rank null distribution in `signed_rank`. It must not
//! allocate anything of size n².

use statrs::distribution::{ContinuousCDF, Normal};

use super::StatsError;
use super::signed_rank::{EXACT_MAX_N, check_finite, null_cdf, sort_differences};

/// Above this many differences the n(n+1)/2 Walsh averages are not materialised; the estimate
/// and interval fall back to the sample median and its order-statistic (sign-test) interval.
const WALSH_MAX_N: usize = 1500;

/// The one-sample Hodges-Lehmann estimate (median of the Walsh averages (d_i + d_j)/2, i ≤ j)
/// of the centre of `d`, with its distribution-free interval at `confidence`.
/// Returns `(estimate, low, high)`.
pub fn walsh_shift_ci(d: &[f64], confidence: f64) -> Result<(f64, f64, f64), StatsError> {
    check_finite(d)?;
    walsh_shift_ci_sorted(sort_differences(d), confidence)
}

/// [`walsh_shift_ci`] on differences already sorted by [`sort_differences`].
pub fn walsh_shift_ci_sorted(s: Vec<f64>, confidence: f64) -> Result<(f64, f64, f64), StatsError> {
    check_finite(&s)?;
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(StatsError::Invalid(format!(
            "confidence must be in (0, 1), got {confidence}"
        )));
    }
    let n = s.len();
    if n < 2 {
        return Err(StatsError::TooFew {
            what: "Hodges-Lehmann interval",
            needed: 2,
            got: n,
        });
    }
    let alpha = 1.0 - confidence;
    let z = || Normal::standard().inverse_cdf(1.0 - alpha / 2.0);
    if n > WALSH_MAX_N {
        let nf = n as f64;
        let half = z() * nf.sqrt() / 2.0;
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
    // qu: the smallest w with P(W+ ≤ w) ≥ alpha/2 (R's qsignrank), at least 1.
    let qu = if n <= EXACT_MAX_N {
        let cdf = null_cdf(n);
        cdf.iter().position(|p| *p >= alpha / 2.0).unwrap_or(0)
    } else {
        let nf = n as f64;
        let mean = nf * (nf + 1.0) / 4.0;
        let sd = (nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0).sqrt();
        (mean - z() * sd).round().max(0.0) as usize
    }
    .clamp(1, m.div_ceil(2));
    // The order statistics of the Walsh averages are selected from the sorted differences
    // without materialising (or sorting) all n(n+1)/2 of them: the same values a full sort
    // would give, in O(n log n) instead of O(n² log n). The median comes first: every count
    // made while looking for it also narrows the two bounds' searches.
    let median_rank = if m % 2 == 1 { m / 2 } else { m / 2 - 1 };
    let mut walsh = WalshAverages::new(s, [median_rank, qu - 1, m - qu]);
    let estimate = if m % 2 == 1 {
        walsh.select(0)
    } else {
        let (below, above) = walsh.select_pair(0);
        (below + above) / 2.0
    };
    let low = walsh.select(1);
    let high = walsh.select(2);
    Ok((estimate, low, high))
}

/// A key whose signed integer order is the total order of `f64` (`f64::total_cmp`).
fn order_key(x: f64) -> i64 {
    let bits = x.to_bits() as i64;
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// The inverse of [`order_key`].
fn from_order_key(key: i64) -> f64 {
    f64::from_bits((key ^ ((((key >> 63) as u64) >> 1) as i64)) as u64)
}

/// Below this many candidates left, a selection finishes on a small buffer.
const WALSH_SMALL: usize = 48;

/// Candidates sampled per round of a selection, and how far either side of rank k's place in
/// the sample the two pivots are taken.
const WALSH_SAMPLE: usize = 24;
const WALSH_SPREAD: usize = 3;

/// How many ranks one [`WalshAverages`] selects: the median and the interval's two bounds.
const WALSH_TARGETS: usize = 3;

/// The Walsh averages (s_i + s_j)/2, i ≤ j, of differences sorted ascending, seen as an
/// upper-triangular matrix whose rows and columns are both ascending (IEEE addition and
/// halving are monotone, also in the total order of signed zeros), for selecting order
/// statistics by their rank (Monahan's algorithm: a pivot among the remaining candidates, a
/// linear count of the averages below it, and the candidates narrowed row by row).
///
/// Several ranks are selected from the same averages: every count made for one of them narrows
/// the candidates of all of them, so the later selections start from what the earlier ones
/// learnt instead of from the whole triangle.
struct WalshAverages {
    /// The differences, ascending in total order.
    s: Vec<f64>,
    /// The 0-based ranks to select.
    ranks: [usize; WALSH_TARGETS],
    /// Which ranks are still to be selected (only those are narrowed further).
    pending: [bool; WALSH_TARGETS],
    /// Per target, per row i, the first candidate column (≥ i): every average left of it lies
    /// below the target's rank.
    lo: [Vec<usize>; WALSH_TARGETS],
    /// Per target, per row i, one past the last candidate column (≤ n): every average from it
    /// on lies above the target's rank.
    hi: [Vec<usize>; WALSH_TARGETS],
    /// State of the pseudo-random pivot choice (fixed seed: the result does not depend on it,
    /// only the time does).
    rng: u64,
    /// Scratch: per row, the first column past a count.
    bounds: Vec<usize>,
    /// Scratch: per row, how many candidates the rows above it hold.
    start: Vec<usize>,
}

impl WalshAverages {
    /// `s` ascending in total order; `ranks` below n(n+1)/2.
    fn new(s: Vec<f64>, ranks: [usize; WALSH_TARGETS]) -> Self {
        let n = s.len();
        WalshAverages {
            s,
            ranks,
            pending: [true; WALSH_TARGETS],
            lo: std::array::from_fn(|_| (0..n).collect()),
            hi: std::array::from_fn(|_| vec![n; n]),
            rng: 0x9E37_79B9_7F4A_7C15,
            bounds: Vec::with_capacity(n),
            start: Vec::with_capacity(n),
        }
    }

    fn key(&self, i: usize, j: usize) -> i64 {
        order_key((self.s[i] + self.s[j]) / 2.0)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Per row i, how many averages (s_i + s_j)/2 with j ≥ i are below `pivot` (`strict`) or at
    /// most `pivot`, as the first column past them; rows are walked with one pointer, because
    /// the boundary column never moves right as the row goes down.
    ///
    /// `pivot` must be a candidate of target `t`: then every average left of the target's
    /// candidates is below it and every one right of them above it, so each row's boundary lies
    /// within the candidates' columns and only those are looked at.
    fn boundaries(&self, t: usize, pivot: i64, strict: bool, out: &mut Vec<usize>) -> usize {
        let n = self.s.len();
        let (lo, hi) = (&self.lo[t], &self.hi[t]);
        out.clear();
        let mut count = 0;
        let mut j = n;
        for i in 0..n {
            j = j.min(hi[i]);
            while j > lo[i] {
                let k = self.key(i, j - 1);
                if (strict && k < pivot) || (!strict && k <= pivot) {
                    break;
                }
                j -= 1;
            }
            j = j.max(lo[i]);
            count += j - i;
            out.push(j);
        }
        count
    }

    /// Count the averages below (`strict`) or at most `pivot` (a candidate of target `t`), and
    /// narrow every target with
    /// the count: a target whose rank the count reaches past drops what lies right of the
    /// boundary, any other what lies left of it. Returns the count.
    fn count_and_learn(&mut self, t: usize, pivot: i64, strict: bool) -> usize {
        let mut bounds = std::mem::take(&mut self.bounds);
        let count = self.boundaries(t, pivot, strict, &mut bounds);
        for t in (0..WALSH_TARGETS).filter(|&t| self.pending[t]) {
            if count <= self.ranks[t] {
                raise(&mut self.lo[t], &bounds);
            } else {
                lower(&mut self.hi[t], &bounds);
            }
        }
        self.bounds = bounds;
        count
    }

    /// The Walsh average of 0-based rank `ranks[t]` in ascending total order: exactly the value
    /// at that index of all the averages sorted with `f64::total_cmp`.
    ///
    /// Each round samples a few candidates, takes two of them that should bracket the rank
    /// (Floyd-Rivest's idea) and narrows the candidates to what lies between them, so a few
    /// linear counts replace the sort of all n(n+1)/2 averages.
    fn select(&mut self, t: usize) -> f64 {
        let n = self.s.len();
        let k = self.ranks[t];
        let mut start = std::mem::take(&mut self.start);
        let found = loop {
            // Every average left of a row's candidates is below every candidate, every one
            // right of them above: the answer is the candidate of rank k − (averages left).
            let (lo, hi) = (&self.lo[t], &self.hi[t]);
            start.clear();
            let (mut active, mut left) = (0, 0);
            for i in 0..n {
                start.push(active);
                active += hi[i] - lo[i];
                left += lo[i] - i;
            }
            if active <= WALSH_SMALL {
                let mut keys = [0i64; WALSH_SMALL];
                let mut len = 0;
                for i in 0..n {
                    for j in lo[i]..hi[i] {
                        keys[len] = self.key(i, j);
                        len += 1;
                    }
                }
                let keys = &mut keys[..len];
                let (_, kth, _) = keys.select_nth_unstable(k - left);
                break *kth;
            }
            // An evenly spaced sample of the candidates in row order from a random offset,
            // taken in one pass over the rows.
            let mut sample = [0i64; WALSH_SAMPLE];
            let step = active / WALSH_SAMPLE;
            let mut r = (self.next_random() % step as u64) as usize;
            let (lo, hi) = (&self.lo[t], &self.hi[t]);
            let mut row = 0;
            for x in sample.iter_mut() {
                while start[row] + (hi[row] - lo[row]) <= r {
                    row += 1;
                }
                *x = self.key(row, lo[row] + r - start[row]);
                r += step;
            }
            sample.sort_unstable();
            let at = (k - left) * WALSH_SAMPLE / active;
            let low = sample[at.saturating_sub(WALSH_SPREAD)];
            let high = sample[(at + WALSH_SPREAD).min(WALSH_SAMPLE - 1)];
            match self.narrow(t, low, true) {
                Narrowed::Found => break low,
                Narrowed::Below => continue,
                Narrowed::Above => {}
            }
            if high != low && self.narrow(t, high, false) == Narrowed::Found {
                break high;
            }
        };
        self.start = start;
        self.pending[t] = false;
        from_order_key(found)
    }

    /// The averages of 0-based ranks `ranks[t]` and `ranks[t] + 1` (the latter below
    /// n(n+1)/2).
    fn select_pair(&mut self, t: usize) -> (f64, f64) {
        let k = self.ranks[t];
        let first = self.select(t);
        let key = order_key(first);
        let upto = self.count_and_learn(t, key, false);
        let next = if k + 1 < upto {
            key
        } else {
            // The smallest average above `first`: the least of each row's first one above it.
            let n = self.s.len();
            (0..n)
                .filter(|&i| self.bounds[i] < n)
                .map(|i| self.key(i, self.bounds[i]))
                .min()
                .unwrap_or(key)
        };
        (first, from_order_key(next))
    }

    /// Narrow the candidates of every target with `pivot` (a candidate) and say where rank `k`
    /// lies relative to it. `expect_above` orders the two counts so that the likely outcome
    /// costs one.
    fn narrow(&mut self, t: usize, pivot: i64, expect_above: bool) -> Narrowed {
        let k = self.ranks[t];
        if expect_above {
            if k >= self.count_and_learn(t, pivot, false) {
                Narrowed::Above
            } else if k >= self.count_and_learn(t, pivot, true) {
                Narrowed::Found
            } else {
                Narrowed::Below
            }
        } else if k < self.count_and_learn(t, pivot, true) {
            Narrowed::Below
        } else if k < self.count_and_learn(t, pivot, false) {
            Narrowed::Found
        } else {
            Narrowed::Above
        }
    }
}

/// Where rank k lies relative to a pivot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Narrowed {
    Below,
    Found,
    Above,
}

fn raise(lo: &mut [usize], bounds: &[usize]) {
    for (lo, b) in lo.iter_mut().zip(bounds) {
        *lo = (*lo).max(*b);
    }
}

fn lower(hi: &mut [usize], bounds: &[usize]) {
    for (hi, b) in hi.iter_mut().zip(bounds) {
        *hi = (*hi).min(*b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Alternative;
    use crate::stats::signed_rank::{compute_null_cdf, signed_rank_test, signed_rank_test_sorted};
    use proptest::strategy::Strategy;

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

    /// The interval as computed before selection replaced the full sort: every Walsh average
    /// materialised and sorted.
    fn walsh_by_full_sort(d: &[f64], confidence: f64) -> (f64, f64, f64) {
        let n = d.len();
        let alpha = 1.0 - confidence;
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
        let qu = if n <= EXACT_MAX_N {
            compute_null_cdf(n)
                .iter()
                .position(|p| *p >= alpha / 2.0)
                .unwrap_or(0)
        } else {
            let z = Normal::standard().inverse_cdf(1.0 - alpha / 2.0);
            let nf = n as f64;
            let mean = nf * (nf + 1.0) / 4.0;
            let sd = (nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0).sqrt();
            (mean - z * sd).round().max(0.0) as usize
        }
        .clamp(1, m.div_ceil(2));
        (estimate, walsh[qu - 1], walsh[m - qu])
    }

    fn bits(x: (f64, f64, f64)) -> (u64, u64, u64) {
        (x.0.to_bits(), x.1.to_bits(), x.2.to_bits())
    }

    #[test]
    fn selection_gives_the_full_sort_values_bit_for_bit() {
        // Log-ratios of a 60-point paired check, and data full of ties and signed zeros.
        let ratios: Vec<f64> = (0..60)
            .map(|i| (1.0 + 0.1 * ((i * 37 % 17) as f64 / 17.0 - 0.4)).ln())
            .collect();
        let ties: Vec<f64> = (0..61).map(|i| ((i % 7) as f64 - 3.0) * 0.5).collect();
        let zeros = [0.0, -0.0, 0.0, -0.0, 1.0, -1.0, -0.0, 2.0];
        let all_same = [0.25; 40];
        for d in [&ratios[..], &ties, &zeros, &all_same, &[1.0, -1.0]] {
            for confidence in [0.5, 0.9, 0.95, 0.99, 0.999] {
                let got = walsh_shift_ci(d, confidence).unwrap();
                let want = walsh_by_full_sort(d, confidence);
                assert_eq!(bits(got), bits(want), "n = {}, {confidence}", d.len());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn selection_matches_the_full_sort_on_any_data(
            d in proptest::collection::vec(
                proptest::prop_oneof![
                    -1e3f64..1e3,
                    (-5i32..5).prop_map(|x| x as f64 * 0.1),
                    proptest::strategy::Just(-0.0),
                    proptest::strategy::Just(0.0),
                    proptest::strategy::Just(f64::MAX),
                    proptest::strategy::Just(-f64::MAX),
                    proptest::strategy::Just(5e-324),
                ],
                2..130,
            ),
            confidence in 0.5f64..0.9999,
        ) {
            let got = walsh_shift_ci(&d, confidence).unwrap();
            let want = walsh_by_full_sort(&d, confidence);
            proptest::prop_assert_eq!(bits(got), bits(want));
            // The test on pre-sorted differences (the judge's path) is the test on raw ones.
            let sorted = sort_differences(&d);
            for alternative in [Alternative::Greater, Alternative::Less, Alternative::TwoSided] {
                let merged = signed_rank_test_sorted(&sorted, alternative).unwrap();
                let direct = signed_rank_test(&d, alternative).unwrap();
                proptest::prop_assert_eq!(merged.n, direct.n);
                proptest::prop_assert_eq!(merged.method, direct.method);
                proptest::prop_assert_eq!(merged.w_plus.to_bits(), direct.w_plus.to_bits());
                proptest::prop_assert_eq!(merged.p_value.to_bits(), direct.p_value.to_bits());
            }
        }
    }

    #[test]
    fn non_finite_is_an_error() {
        assert!(walsh_shift_ci(&[1.0, f64::INFINITY], 0.9).is_err());
        assert!(walsh_shift_ci_sorted(vec![1.0, f64::NAN], 0.9).is_err());
    }
}
