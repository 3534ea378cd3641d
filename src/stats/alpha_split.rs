//! How a rollout's error budget α is split over its stages, so that the probability that a
//! healthy rollout is ever rolled back or paused by a statistical check, over the whole rollout,
//! stays at most α (issue 19 point 2).
//!
//! The plan is known before the rollout starts, so α is split in advance: stage `s` gets
//! `α·w_s/Σw`, and since each stage's evidence is its own confidence sequence (valid at every
//! look within the stage, [`super::sequential`]), a union bound over stages gives at most α for
//! the whole rollout, whatever the number of looks. Within a stage the checks of one family share
//! the stage's α by the judge's Holm correction (`judge::summary`), fed anytime p-values
//! ([`super::AnytimeP`]) at each analysis:
//! a false rejection needs some true hypothesis's anytime p-value to fall below `α_s/k₀` (k₀ the
//! true hypotheses), which happens at any look with probability at most `α_s`. It owns the split
//! and nothing else; which weights a plan uses is the judge's decision (docs/sequential.md
//! recommends equal weights).

use super::sequential::SequentialError;

/// Splits `alpha` over stages in proportion to `weights` (each positive and finite): the shares
/// sum to `alpha`.
pub fn split_alpha(alpha: f64, weights: &[f64]) -> Result<Vec<f64>, SequentialError> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(SequentialError::Alpha(alpha));
    }
    if weights.is_empty() {
        return Err(SequentialError::NoStages);
    }
    if let Some((index, &weight)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| !(w.is_finite() && **w > 0.0))
    {
        return Err(SequentialError::Weight { index, weight });
    }
    let total: f64 = weights.iter().sum();
    Ok(weights.iter().map(|w| alpha * w / total).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_sum_to_alpha_in_proportion_to_the_weights() {
        let shares = split_alpha(0.01, &[1.0, 1.0, 2.0]).unwrap();
        assert_eq!(shares.len(), 3);
        assert!((shares.iter().sum::<f64>() - 0.01).abs() < 1e-15);
        assert!((shares[2] - 0.005).abs() < 1e-15);
    }

    #[test]
    fn bad_weights_are_refused_naming_the_stage() {
        assert_eq!(
            split_alpha(0.01, &[1.0, 0.0]),
            Err(SequentialError::Weight {
                index: 1,
                weight: 0.0
            })
        );
        assert!(matches!(
            split_alpha(0.01, &[f64::NAN]),
            Err(SequentialError::Weight { index: 0, .. })
        ));
        assert_eq!(split_alpha(0.01, &[]), Err(SequentialError::NoStages));
        assert_eq!(split_alpha(0.0, &[1.0]), Err(SequentialError::Alpha(0.0)));
    }
}
