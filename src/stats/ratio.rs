//! The relative difference of two means, `mean(canary) / mean(baseline) - 1`, with a variance
//! that holds under serial correlation, for bounds on "not worse than x%".
//!
//! It owns the delta-method variance of the ratio built on the long-run variances of
//! [`super::long_run`]: paired (one point per step on both sides, shared load cancels) through
//! the linearised series `z_t = c_t - r·b_t`, whose mean is zero at the ratio `r` and whose
//! long-run variance over `n·mean(b)²` is the variance of `r`; unpaired through each side's own
//! long-run variance, `(v_c + r²·v_b) / mean(b)²`, with Welch-Satterthwaite degrees of freedom.
//! It assumes positive quantities (latencies, throughputs), a baseline mean well away from zero
//! (the delta method is first order: with a baseline mean less than a few standard errors from
//! zero Fieller's interval, which this module does not compute, would be the right one) and the
//! assumptions of [`super::long_run`]. It must not decide what a tolerance means for a rule.

use super::estimate::{EstimateError, MeanEstimate, check_series, checked, difference};
use super::long_run::long_run;

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn baseline_mean(baseline: &[f64]) -> Result<f64, EstimateError> {
    let mb = mean(baseline);
    if !mb.is_finite() {
        return Err(EstimateError::NonFinite {
            what: "baseline mean",
        });
    }
    if mb <= 0.0 {
        return Err(EstimateError::NonPositiveBaseline { mean: mb });
    }
    Ok(mb)
}

/// `mean(canary)/mean(baseline) - 1` for series paired by step (the caller aligns them).
pub fn relative_paired(canary: &[f64], baseline: &[f64]) -> Result<MeanEstimate, EstimateError> {
    if canary.len() != baseline.len() {
        return Err(EstimateError::LengthMismatch {
            canary: canary.len(),
            baseline: baseline.len(),
        });
    }
    // The canary must vary or the baseline: either alone is enough for z to vary.
    for (what, x) in [("canary", canary), ("baseline", baseline)] {
        if let Err(e @ (EstimateError::TooFew { .. } | EstimateError::NonFinite { .. })) =
            check_series(what, x)
        {
            return Err(e);
        }
    }
    let mb = baseline_mean(baseline)?;
    let r = mean(canary) / mb;
    let z: Vec<f64> = canary
        .iter()
        .zip(baseline)
        .map(|(c, b)| c - r * b)
        .collect();
    // z does not vary when the canary is an exact multiple of the baseline: no variance.
    let lr = long_run(&z).map_err(|e| match e {
        EstimateError::NoVariation { .. } => EstimateError::NoVariation {
            what: "canary / baseline ratio",
        },
        other => other,
    })?;
    let sd = (lr.long_run_variance / lr.n as f64).sqrt() / mb;
    checked("canary / baseline ratio", r - 1.0, sd * sd, lr.df)
}

/// `mean(canary)/mean(baseline) - 1` for series that are not paired, each side with its own
/// long-run variance.
pub fn relative_unpaired(canary: &[f64], baseline: &[f64]) -> Result<MeanEstimate, EstimateError> {
    let c = long_run(canary)?.mean_estimate();
    let b = long_run(baseline)?.mean_estimate();
    let mb = baseline_mean(baseline)?;
    let r = c.estimate / mb;
    // Each side's standard error relative to the baseline mean, squared.
    let scaled = |e: &MeanEstimate, factor: f64| {
        let sd = e.variance.sqrt() * factor / mb;
        MeanEstimate {
            estimate: 0.0,
            variance: sd * sd,
            df: e.df,
        }
    };
    let v = difference(&scaled(&c, 1.0), &scaled(&b, r.abs()));
    checked("canary / baseline ratio", r - 1.0, v.variance, v.df)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proportional_canary_has_no_ratio_variance() {
        let b = [100.0, 120.0, 90.0, 110.0];
        let c: Vec<f64> = b.iter().map(|v| v * 1.1).collect();
        assert_eq!(
            relative_paired(&c, &b),
            Err(EstimateError::NoVariation {
                what: "canary / baseline ratio"
            })
        );
    }

    #[test]
    fn pairing_cancels_shared_load() {
        // A load wave shared by both sides, small independent noise: paired is much tighter.
        let load: Vec<f64> = (0..30)
            .map(|i| 100.0 + 40.0 * (i as f64 / 3.0).sin())
            .collect();
        let b: Vec<f64> = load
            .iter()
            .enumerate()
            .map(|(i, l)| l + (i % 3) as f64)
            .collect();
        let c: Vec<f64> = load
            .iter()
            .enumerate()
            .map(|(i, l)| 1.05 * l + (i % 4) as f64)
            .collect();
        let paired = relative_paired(&c, &b).unwrap();
        let unpaired = relative_unpaired(&c, &b).unwrap();
        assert!((paired.estimate - unpaired.estimate).abs() < 1e-15);
        assert!(
            paired.variance * 10.0 < unpaired.variance,
            "{paired:?} {unpaired:?}"
        );
    }

    #[test]
    fn refuses_what_it_cannot_bound() {
        assert_eq!(
            relative_unpaired(&[1.0, 2.0, 3.0], &[-1.0, 0.0, 0.5]),
            Err(EstimateError::NonPositiveBaseline { mean: -0.5 / 3.0 })
        );
        assert!(matches!(
            relative_paired(&[1.0, 2.0, 3.0], &[1.0, 2.0]),
            Err(EstimateError::LengthMismatch { .. })
        ));
        assert!(matches!(
            relative_paired(&[1.0, f64::INFINITY, 3.0], &[1.0, 2.0, 3.0]),
            Err(EstimateError::NonFinite { what: "canary" })
        ));
        // A baseline mean so large that the ratio's variance underflows to 0 (found by the
        // property test: a zero-variance estimate came back).
        assert_eq!(
            relative_paired(&[0.0, 0.0, 1.0], &[1.5e221, 0.0, 0.0]),
            Err(EstimateError::NoVariation {
                what: "canary / baseline ratio"
            })
        );
    }
}
