//! Alignment of the two sides of a paired check: each point is paired with its nearest
//! neighbour on the other side closer than half a step, each point used at most once, so points
//! taken at slightly different moments (exports, backends whose scrapes or evaluations jitter)
//! still pair with the moment they share and the load both sides saw still cancels. It owns the
//! pairing rule and the step it is measured in, nothing about tests or verdicts. Pure; the time
//! and memory are O(n log n) and O(n) whatever the timestamps (duplicates, all equal, NaN).

use super::Point;

/// The spacing of the points, in seconds: the median of the gaps between consecutive distinct
/// finite timestamps of both sides, or `None` when no side has two such timestamps.
///
/// The judge is not given the rule's query step (a [`CheckSpec`](super::CheckSpec) has none,
/// and `canaryd judge`'s data files have no step either), so it is inferred here. For a range
/// query the points sit exactly one step apart, so the median gap is the step itself unless more
/// than half of the points are missing; jittered timestamps give gaps scattered around the step,
/// and their median stays on it.
pub(super) fn inferred_step(b: &[Point], c: &[Point]) -> Option<f64> {
    let mut gaps: Vec<f64> = [b, c]
        .iter()
        .flat_map(|side| side.windows(2).map(|w| w[1].t - w[0].t))
        .filter(|gap| gap.is_finite() && *gap > 0.0)
        .collect();
    let n = gaps.len();
    if n == 0 {
        return None;
    }
    gaps.sort_unstable_by(f64::total_cmp);
    let step = if n % 2 == 1 {
        gaps[n / 2]
    } else {
        (gaps[n / 2 - 1] + gaps[n / 2]) / 2.0
    };
    step.is_finite().then_some(step)
}

/// The (baseline, canary) index pairs of points closer than half of `step` seconds, each point in
/// at most one pair, in the baseline's time order. Both sides are sorted by time, points without
/// a finite time at the end (as `summary::clean` leaves them); those are never paired.
///
/// The candidates of each point are its nearest neighbours on the other side, one at or before
/// it and one after; candidates are taken nearest first, and a tie (two pairs equally far apart)
/// goes to the earlier baseline point, then the earlier canary point, so the same data always
/// pairs the same way. A point exactly half a step from the other side's point is as near the
/// moment before as the one after it: which moment it shares is unknown, so it is not paired.
pub(super) fn pair_nearest(b: &[Point], c: &[Point], step: f64) -> Vec<(usize, usize)> {
    let half = step / 2.0;
    if !(half.is_finite() && half > 0.0) {
        return Vec::new();
    }
    let timed = |side: &[Point]| side.iter().take_while(|p| p.t.is_finite()).count();
    let (b, c) = (&b[..timed(b)], &c[..timed(c)]);
    // At most two candidates per point of either side: O(n) memory whatever the timestamps.
    let mut candidates: Vec<(f64, usize, usize)> = Vec::with_capacity(2 * (b.len() + c.len()));
    let mut consider = |i: usize, j: usize| {
        let distance = (b[i].t - c[j].t).abs();
        if distance < half {
            candidates.push((distance, i, j));
        }
    };
    for (i, p) in b.iter().enumerate() {
        let after = c.partition_point(|q| q.t <= p.t);
        if after > 0 {
            consider(i, after - 1);
        }
        if after < c.len() {
            consider(i, after);
        }
    }
    for (j, q) in c.iter().enumerate() {
        let after = b.partition_point(|p| p.t <= q.t);
        if after > 0 {
            consider(after - 1, j);
        }
        if after < b.len() {
            consider(after, j);
        }
    }
    candidates.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut b_used = vec![false; b.len()];
    let mut c_used = vec![false; c.len()];
    let mut pairs = Vec::with_capacity(b.len().min(c.len()));
    for (_, i, j) in candidates {
        if !b_used[i] && !c_used[j] {
            b_used[i] = true;
            c_used[j] = true;
            pairs.push((i, j));
        }
    }
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(times: &[f64]) -> Vec<Point> {
        times.iter().map(|&t| Point { t, v: 1.0 }).collect()
    }

    /// Baseline times, canary times, step, the pairs expected.
    type Case<'a> = (&'a [f64], &'a [f64], f64, &'a [(usize, usize)]);

    #[test]
    fn pairing_table() {
        let nan = f64::NAN;
        // (baseline times, canary times, step, expected pairs)
        let cases: &[Case] = &[
            // Identical timestamps.
            (
                &[0.0, 60.0, 120.0],
                &[0.0, 60.0, 120.0],
                60.0,
                &[(0, 0), (1, 1), (2, 2)],
            ),
            // Shifted by 0.3 of a step, either way.
            (
                &[0.0, 60.0, 120.0],
                &[18.0, 78.0, 138.0],
                60.0,
                &[(0, 0), (1, 1), (2, 2)],
            ),
            (
                &[0.0, 60.0, 120.0],
                &[-18.0, 42.0, 102.0],
                60.0,
                &[(0, 0), (1, 1), (2, 2)],
            ),
            // Exactly half a step: as near the minute before as the one after, so unpaired.
            (&[0.0, 60.0, 120.0], &[30.0, 90.0, 150.0], 60.0, &[]),
            // More than half a step from anything: unpaired, the others still pair.
            (
                &[0.0, 60.0, 120.0],
                &[0.0, 200.0, 120.0 + 1.0],
                60.0,
                &[(0, 0), (2, 2)],
            ),
            (&[0.0], &[31.0], 60.0, &[]),
            // Two canary points near one baseline point: the nearer wins, the other stays out.
            (&[0.0, 60.0], &[50.0, 55.0], 60.0, &[(1, 1)]),
            // Used at most once: the second-nearest goes to the next free neighbour in reach.
            (&[0.0, 20.0], &[10.0, 25.0], 60.0, &[(0, 0), (1, 1)]),
            // A tie (10 s either way): the earlier baseline point takes it.
            (&[0.0, 20.0], &[10.0], 60.0, &[(0, 0)]),
            // A tie for one baseline point: the earlier canary point.
            (&[10.0], &[0.0, 20.0], 60.0, &[(0, 0)]),
            // Duplicate timestamps pair one to one (which with which is arbitrary but fixed).
            (&[0.0, 0.0, 60.0], &[0.0, 0.0], 60.0, &[(0, 1), (1, 0)]),
            // Timestamps that are not numbers never pair; a step that is not usable pairs nothing.
            (&[0.0, nan], &[0.0, nan], 60.0, &[(0, 0)]),
            (&[0.0], &[0.0], nan, &[]),
            (&[0.0], &[0.0], 0.0, &[]),
            (&[], &[0.0], 60.0, &[]),
        ];
        for (b, c, step, expected) in cases {
            let pairs = pair_nearest(&at(b), &at(c), *step);
            assert_eq!(pairs, *expected, "b {b:?}, c {c:?}, step {step}");
        }
    }

    #[test]
    fn the_step_is_the_median_gap() {
        let cases: &[(&[f64], &[f64], Option<f64>)] = &[
            (&[0.0, 60.0, 120.0], &[18.0, 78.0, 138.0], Some(60.0)),
            // A missing point makes one gap of two steps; the median stays one step.
            (&[0.0, 60.0, 180.0, 240.0], &[0.0, 60.0, 120.0], Some(60.0)),
            // Jittered gaps scatter around the step.
            (&[0.0, 55.0, 125.0, 185.0], &[3.0, 61.0, 122.0], Some(60.0)),
            // Duplicates and times that are not numbers are not gaps.
            (&[0.0, 0.0, 10.0, f64::NAN], &[], Some(10.0)),
            (&[0.0], &[5.0], None),
            (&[f64::NAN, f64::NAN], &[], None),
            (&[-f64::MAX, f64::MAX], &[], None),
        ];
        for (b, c, expected) in cases {
            assert_eq!(inferred_step(&at(b), &at(c)), *expected, "b {b:?}, c {c:?}");
        }
    }
}
