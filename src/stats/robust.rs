//! A guard against isolated spikes for the estimators of means: a value farther from the median
//! than a multiple of the normal-consistent median absolute deviation (MAD) is replaced by the
//! mean of its nearest neighbours that are not spikes.
//!
//! A p99 series has the odd minute where one side's GC or a cold cache multiplies a value many
//! times; a mean (and the long-run variance around it, [`super::long_run`]) follows such a spike
//! wherever it goes, while the rank tests the judge used before ignore its size. Replacing the
//! spike by its neighbours' mean, rather than clipping it (winsorizing), keeps the series'
//! serial correlation intact: clipped spikes stay as white noise of a sizeable variance mixed
//! into the AR(1) the long-run variance prewhitens with, which made it understate the variance
//! (2.7% false alarms instead of 0.5% at lag-1 correlation 0.7 with 5% spikes). On Gaussian data
//! about 0.05% of the values lie beyond 3.5 MADs, so little moves (3 MADs, tried first, took 1.15%
//! false alarms at lag-1 correlation 0.3 where the long-run variance alone takes 0.95%). It owns only that
//! transformation; it must not drop values (the series keeps its length and its order) and does
//! nothing when the MAD is 0 (most values equal: there is no scale to judge a spike by).

use super::StatsError;

/// How many normal-consistent MADs from the median a value may lie before it is pulled back.
pub const SPIKE_MADS: f64 = 3.5;

/// The MAD of a normal distribution is 0.6745 σ: 1.4826 = 1 / 0.6745 makes it estimate σ.
const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `x` with every value farther than `k·1.4826·MAD` from the median replaced by the mean of its
/// nearest neighbours that are not (the one neighbour at an edge), in the same order; unchanged
/// when the MAD is 0. Finite values only; an empty slice is an error.
pub fn despike(x: &[f64], k: f64) -> Result<Vec<f64>, StatsError> {
    if x.is_empty() {
        return Err(StatsError::TooFew {
            what: "despike",
            needed: 1,
            got: 0,
        });
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite { what: "despike" });
    }
    let m = median(x.to_vec());
    let mad = median(x.iter().map(|v| (v - m).abs()).collect());
    let half = k * MAD_TO_SIGMA * mad;
    if !(half > 0.0 && half.is_finite()) {
        return Ok(x.to_vec());
    }
    let spike = |v: f64| (v - m).abs() > half;
    // At least half the values lie within one MAD of the median, so a clean neighbour exists.
    let out = (0..x.len())
        .map(|i| {
            if !spike(x[i]) {
                return x[i];
            }
            let before = x[..i].iter().rev().copied().find(|v| !spike(*v));
            let after = x[i + 1..].iter().copied().find(|v| !spike(*v));
            match (before, after) {
                (Some(a), Some(b)) => a / 2.0 + b / 2.0,
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => m,
            }
        })
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_takes_the_mean_of_its_clean_neighbours() {
        let x = [1.0, 2.0, 100.0, 4.0, 3.0, -90.0];
        // median 2.5, deviations 1.5 0.5 97.5 1.5 0.5 92.5 → MAD 1.5; limit 2.5 ± 3·1.4826·1.5.
        let w = despike(&x, 3.0).unwrap();
        assert_eq!(w, vec![1.0, 2.0, 3.0, 4.0, 3.0, 3.0]);
    }

    #[test]
    fn no_scale_leaves_the_values_alone() {
        let x = [5.0, 5.0, 5.0, 9.0];
        assert_eq!(despike(&x, 3.0).unwrap(), x.to_vec());
        assert!(despike(&[], 3.0).is_err());
        assert!(despike(&[1.0, f64::NAN], 3.0).is_err());
    }
}
