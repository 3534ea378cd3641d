//! Order statistics of the pairwise slopes (y_q − y_p) / (t_q − t_p), t_p < t_q, of n points
//! without listing the n(n − 1)/2 slopes: O(n log n) expected time per round, a few rounds, and
//! O(n) memory. It owns that selection and nothing else (no statistics, no I/O, no panics on
//! data; the caller checks that every slope is finite).
//!
//! Whether a pair's slope is at most a pivot pair's slope dy/dx is a comparison of one key per
//! point, y·dx − t·dy (the later point's key is at most the earlier's), kept as a nearly exact
//! double-double so that equal slopes of integer data compare equal. Counting the pairs at or
//! below a pivot is then counting inversions of the keys in time order by merge sort. The
//! selection narrows a band of slopes (lo, hi] that holds the wanted rank with pivots drawn at
//! random from the band (the randomized scheme of Matoušek 1991 and Dillencourt, Mount and
//! Netanyahu 1992), and once the band holds O(n) pairs it lists them, computing each slope
//! exactly as the quadratic method does, and selects among them: the answer is bit for bit the
//! slope the quadratic method finds (up to a pivot tie in the last bits of data that is not
//! exactly representable, where the pairs on either side of the pivot differ by an ulp).

/// One point, with the time in minutes (or whatever unit the caller uses).
#[derive(Debug, Clone, Copy)]
struct Pt {
    t: f64,
    y: f64,
}

/// A pivot slope dy/dx, given by the pair of points it is the slope of.
#[derive(Debug, Clone, Copy)]
struct Pivot {
    dx: f64,
    dy: f64,
}

/// A point's place in a sequence and the key its inversions are counted on (compared
/// lexicographically).
#[derive(Debug, Clone, Copy)]
struct Item {
    key: (f64, f64, f64),
    at: u32,
}

/// A pair's key gap: `y·dx − t·dy` as hi + lo with |lo| ≤ ulp(hi) / 2.
fn key(p: Pt, v: Pivot) -> (f64, f64) {
    let a = p.y * v.dx;
    let a_err = p.y.mul_add(v.dx, -a);
    let b = p.t * v.dy;
    let b_err = p.t.mul_add(v.dy, -b);
    let (s, e) = two_sum(a, -b);
    let (hi, lo) = two_sum(s, e + (a_err - b_err));
    (hi, lo)
}

fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// The slope of the pair (p, q), t_p < t_q, computed as the quadratic method computes it.
fn slope(p: Pt, q: Pt) -> f64 {
    (q.y - p.y) / (q.t - p.t)
}

/// SplitMix64: deterministic choices, so a run is reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((u128::from(z) * n as u128) >> 64) as usize
    }
}

/// Count (and with `found`, list) the pairs (a before b) of `items` with a.key > b.key, sorting
/// `items` by key. Merge sort: O(n log n) plus the pairs listed.
fn inversions(
    items: &mut [Item],
    buf: &mut Vec<Item>,
    mut found: Option<&mut Vec<(u32, u32)>>,
) -> u64 {
    let n = items.len();
    buf.clear();
    buf.extend_from_slice(items);
    let mut count = 0u64;
    let mut width = 1;
    // Bottom-up: runs of `width` in `src` merge into `dst`, then the two swap.
    let (mut src, mut dst): (&mut [Item], &mut [Item]) = (items, buf.as_mut_slice());
    let mut in_items = true;
    while width < n {
        let mut start = 0;
        while start < n {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut i, mut j, mut o) = (start, mid, start);
            while i < mid && j < end {
                if src[j].key < src[i].key {
                    count += (mid - i) as u64;
                    if let Some(found) = found.as_deref_mut() {
                        found.extend(src[i..mid].iter().map(|a| (a.at, src[j].at)));
                    }
                    dst[o] = src[j];
                    j += 1;
                } else {
                    dst[o] = src[i];
                    i += 1;
                }
                o += 1;
            }
            dst[o..o + (mid - i)].copy_from_slice(&src[i..mid]);
            o += mid - i;
            dst[o..o + (end - j)].copy_from_slice(&src[j..end]);
            start = end;
        }
        std::mem::swap(&mut src, &mut dst);
        in_items = !in_items;
        width *= 2;
    }
    if !in_items {
        dst.copy_from_slice(src);
    }
    count
}

/// The pairwise slopes of a set of points, ready for selections.
pub(crate) struct Slopes {
    /// Sorted by (t, y).
    pts: Vec<Pt>,
    /// Pairs with t_p < t_q.
    total: u64,
    items: Vec<Item>,
    buf: Vec<Item>,
    rng: Rng,
}

/// Once a band holds at most this many pairs per point, it is listed.
const BAND_PER_POINT: u64 = 4;
/// Pairs drawn from the band per round: the pivots are taken about two standard deviations of
/// the sample's rank either side of the wanted rank, so a round shrinks the band about 16-fold.
const SAMPLE: f64 = 4096.0;
/// Rounds of narrowing before the band is listed whatever its size (never reached in practice:
/// each round shrinks the band by a factor of about √(samples) / 4).
const MAX_ROUNDS: usize = 48;

impl Slopes {
    /// The points (t, y); `pairs` is the number of pairs with different t (at least 1).
    pub(crate) fn new(t: &[f64], y: &[f64], pairs: u64) -> Slopes {
        let mut pts: Vec<Pt> = t.iter().zip(y).map(|(&t, &y)| Pt { t, y }).collect();
        pts.sort_unstable_by(|a, b| a.t.total_cmp(&b.t).then(a.y.total_cmp(&b.y)));
        let n = pts.len();
        Slopes {
            pts,
            total: pairs,
            items: Vec::with_capacity(n),
            buf: Vec::with_capacity(n),
            rng: Rng(0x5EED ^ n as u64),
        }
    }

    /// Pairs (p, q) with t_p < t_q whose slope is at most `v`'s (`or_equal`) or below it.
    fn count(&mut self, v: Pivot, or_equal: bool) -> u64 {
        // Time order, and by key within equal times (y·dx grows with y): no inversions there.
        let sign = if or_equal { -1.0 } else { 1.0 };
        self.items.clear();
        self.items
            .extend(self.pts.iter().enumerate().map(|(i, &p)| {
                let (hi, lo) = key(p, v);
                Item {
                    key: (hi, lo, sign * p.t),
                    at: i as u32,
                }
            }));
        inversions(&mut self.items, &mut self.buf, None)
    }

    /// Whether the pair's slope is in the band (lo, hi].
    fn in_band(&self, p: Pt, q: Pt, lo: Option<Pivot>, hi: Option<Pivot>) -> bool {
        lo.is_none_or(|v| key(q, v) > key(p, v)) && hi.is_none_or(|v| key(q, v) <= key(p, v))
    }

    /// The slopes of the pairs in the band (lo, hi].
    fn band(&mut self, lo: Option<Pivot>, hi: Option<Pivot>) -> Vec<f64> {
        // In ascending order of the lo key (later times first among equal keys), the band's
        // pairs are the inversions of the hi key (earlier times last among equal keys).
        self.items.clear();
        for (i, &p) in self.pts.iter().enumerate() {
            let key = match hi {
                Some(v) => {
                    let (a, b) = key(p, v);
                    (a, b, -p.t)
                }
                None => (0.0, 0.0, -p.t),
            };
            self.items.push(Item { key, at: i as u32 });
        }
        if let Some(v) = lo {
            let order: Vec<(f64, f64)> = self.pts.iter().map(|&p| key(p, v)).collect();
            self.items.sort_unstable_by(|a, b| {
                let (ka, kb) = (order[a.at as usize], order[b.at as usize]);
                ka.partial_cmp(&kb)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(
                        self.pts[b.at as usize]
                            .t
                            .total_cmp(&self.pts[a.at as usize].t),
                    )
            });
        }
        let mut pairs = Vec::new();
        inversions(&mut self.items, &mut self.buf, Some(&mut pairs));
        pairs
            .into_iter()
            .map(|(a, b)| slope(self.pts[a as usize], self.pts[b as usize]))
            .collect()
    }

    /// The `k`-th smallest slope (from 0), in `f64::total_cmp` order as a sort would give.
    pub(crate) fn select(&mut self, k: u64) -> f64 {
        let n = self.pts.len();
        let k = k.min(self.total.saturating_sub(1));
        // The band (lo, hi] holds rank k: c_lo ≤ k < c_hi, counting pairs at or below each.
        let (mut lo, mut hi): (Option<Pivot>, Option<Pivot>) = (None, None);
        let (mut c_lo, mut c_hi) = (0u64, self.total);
        let limit = BAND_PER_POINT * n as u64 + 64;
        for _ in 0..MAX_ROUNDS {
            let band = c_hi - c_lo;
            if band <= limit {
                break;
            }
            // Draw pairs at random and keep those in the band (uniform over the band): about
            // SAMPLE pairs, as long as that takes at most 64 draws per point. Fewer kept pairs
            // would leave the pivots' margin wider than the band and the band would not shrink.
            let mut sample: Vec<(f64, Pivot)> = Vec::new();
            let wanted = SAMPLE * self.total as f64 / band as f64;
            let draws = (wanted.ceil() as usize).clamp(64, 64 * n);
            for _ in 0..draws {
                let (i, j) = (self.rng.below(n), self.rng.below(n));
                let (p, q) = (self.pts[i.min(j)], self.pts[i.max(j)]);
                if p.t < q.t && self.in_band(p, q, lo, hi) {
                    let pivot = Pivot {
                        dx: q.t - p.t,
                        dy: q.y - p.y,
                    };
                    sample.push((slope(p, q), pivot));
                }
            }
            if sample.is_empty() {
                continue;
            }
            sample.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            let m = sample.len();
            // Where rank k falls in the sample, and a margin of about two standard deviations.
            let at = ((k - c_lo) as f64 / band as f64 * m as f64) as usize;
            let margin = 2 * (m as f64).sqrt() as usize + 1;
            let below = at.checked_sub(margin).map(|i| sample[i].1);
            let above = (at + margin < m).then(|| sample[at + margin].1);
            for v in [below, above].into_iter().flatten() {
                let c = self.count(v, true);
                if c <= k {
                    if c >= c_lo {
                        (lo, c_lo) = (Some(v), c);
                    }
                } else {
                    if self.count(v, false) <= k {
                        // Rank k is a slope equal to the pivot's.
                        return slope_of(v);
                    }
                    if c <= c_hi {
                        (hi, c_hi) = (Some(v), c);
                    }
                }
            }
        }
        let mut band = self.band(lo, hi);
        if band.is_empty() {
            return hi.or(lo).map_or(f64::NAN, slope_of);
        }
        let at = ((k - c_lo) as usize).min(band.len() - 1);
        *band.select_nth_unstable_by(at, f64::total_cmp).1
    }
}

/// A pivot's slope, as the quadratic method computes it.
fn slope_of(v: Pivot) -> f64 {
    v.dy / v.dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{
        ProptestConfig, Strategy, prop, prop_assert_eq, prop_assume, prop_oneof, proptest,
    };

    /// Every slope, sorted: the quadratic method.
    fn all_slopes(t: &[f64], y: &[f64]) -> Vec<f64> {
        let mut s = Vec::new();
        for i in 0..t.len() {
            for j in 0..t.len() {
                let dx = t[i] - t[j];
                if dx > 0.0 {
                    s.push((y[i] - y[j]) / dx);
                }
            }
        }
        s.sort_unstable_by(f64::total_cmp);
        s
    }

    fn rng_values(seed: u64, n: usize, f: impl Fn(&mut Rng) -> f64) -> Vec<f64> {
        let mut r = Rng(seed);
        (0..n).map(|_| f(&mut r)).collect()
    }

    fn agrees(t: &[f64], y: &[f64], label: &str) {
        let want = all_slopes(t, y);
        let mut s = Slopes::new(t, y, want.len() as u64);
        let n = want.len();
        let ranks = [0, 1, n / 4, n / 2, n / 2 + 1, 3 * n / 4];
        let from_top = [n / 2, 2, 1].map(|d| n.saturating_sub(d));
        for k in ranks.into_iter().chain(from_top).filter(|k| *k < n) {
            let got = s.select(k as u64);
            assert_eq!(
                got.to_bits(),
                want[k].to_bits(),
                "{label}: rank {k} of {n}: {got} vs {}",
                want[k]
            );
        }
    }

    #[test]
    fn every_rank_matches_the_quadratic_method() {
        for n in [3usize, 10, 50, 300, 900] {
            let t: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let noise = rng_values(n as u64, n, |r| r.below(1_000_000) as f64 / 1e3);
            agrees(&t, &noise, "noise");
            // Integer data full of exact ties: a staircase (slope 1/3 on most pairs), a mostly
            // constant queue, repeated times.
            let stairs: Vec<f64> = (0..n).map(|i| (i / 3) as f64).collect();
            agrees(&t, &stairs, "stairs");
            let queue = rng_values(7, n, |r| {
                if r.below(10) == 0 {
                    r.below(5) as f64
                } else {
                    0.0
                }
            });
            agrees(&t, &queue, "queue");
            let repeated: Vec<f64> = (0..n).map(|i| (i / 4) as f64 * 0.25).collect();
            let ys = rng_values(11, n, |r| r.below(7) as f64);
            agrees(&repeated, &ys, "repeated times");
            // Irregular times in minutes (10 s scrapes with jitter) and large values.
            let jitter: Vec<f64> = (0..n)
                .map(|i| (i as f64 * 10.0 + (i % 3) as f64 * 0.37) / 60.0)
                .collect();
            let memory = rng_values(13, n, |r| 2e9 + r.below(1 << 20) as f64);
            agrees(&jitter, &memory, "memory");
        }
    }

    #[test]
    fn counting_matches_the_definition() {
        let t = [0.0, 1.0, 1.0, 2.0, 4.0];
        let y = [1.0, 3.0, 0.0, 2.0, 2.0];
        let slopes = all_slopes(&t, &y);
        let mut s = Slopes::new(&t, &y, slopes.len() as u64);
        for &(dx, dy) in &[(1.0, 0.0), (2.0, 1.0), (1.0, -1.0), (3.0, 1.0)] {
            let v = dy / dx;
            let le = slopes.iter().filter(|s| **s <= v).count() as u64;
            let lt = slopes.iter().filter(|s| **s < v).count() as u64;
            assert_eq!(s.count(Pivot { dx, dy }, true), le, "≤ {v}");
            assert_eq!(s.count(Pivot { dx, dy }, false), lt, "< {v}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any ranks of any data (integers full of ties, repeated times, reals) agree bit for
        /// bit with the quadratic method.
        #[test]
        fn selected_ranks_are_the_sorted_ranks(
            points in prop::collection::vec(
                prop_oneof![
                    (0u8..40, 0u8..6).prop_map(|(t, y)| (f64::from(t), f64::from(y))),
                    (0u16..2000, -1e3..1e3f64).prop_map(|(t, y)| (f64::from(t) / 7.0, y)),
                ],
                2..400,
            ),
            picks in prop::collection::vec(0.0..1.0f64, 4),
        ) {
            let (t, y): (Vec<f64>, Vec<f64>) = points.into_iter().unzip();
            let want = all_slopes(&t, &y);
            prop_assume!(!want.is_empty());
            let mut s = Slopes::new(&t, &y, want.len() as u64);
            for pick in picks {
                let k = ((pick * want.len() as f64) as usize).min(want.len() - 1);
                let got = s.select(k as u64);
                prop_assert_eq!(got.to_bits(), want[k].to_bits(), "rank {} of {}", k, want.len());
            }
        }
    }
}
