//! The three-way decision of a tested check on the continuous kinds (relative, absolute with
//! `test = "statistical"`, trend): *fail* when the worsening is significant at the check's level
//! and its estimate lies beyond the tolerance, *pass* only when the confidence bound on the
//! worsening lies within the tolerance (the canary is *shown* not worse than it), and otherwise
//! inconclusive with [`InconclusiveCause::NotShown`] and a reason giving the bound, so thin or
//! noisy data holds the stage instead of passing it.
//!
//! It owns that rule (the kinds record it as the evidence's [`super::Decision`]) and the sentence of a verdict
//! that is not shown. It works on an estimate and its interval on one scale (a log-ratio, a
//! difference, a slope) with the tolerance on the same scale; the kinds compute those and
//! translate the bound into their own words. Pure. The bound is the end of the interval at the
//! check's confidence on the bad side, which for a directional check is the one-sided bound at
//! `1 − α` (α the check's own significance, [`super::summary::significance_level`]), so *pass*,
//! *fail* and the p-value agree: a pass needs the bound within the tolerance, which the p-value
//! alone could not say.

use super::{DecisionRule, Direction, InconclusiveCause, Verdict};

/// What the rule decided, on the scale of the estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Decided {
    pub rule: DecisionRule,
    /// The end of the interval on the bad side (the farther one for `Either`).
    pub bound: f64,
}

/// Decide a tested check: `estimate` with its interval `(low, high)` at the check's confidence,
/// `significant` (its p-value below the check's level) and `tolerance` (≥ 0), all on one scale
/// where the bad side is given by `direction`.
pub(super) fn decide(
    direction: Direction,
    estimate: f64,
    (low, high): (f64, f64),
    significant: bool,
    tolerance: f64,
) -> Decided {
    let (beyond, bound, within) = match direction {
        Direction::HigherIsWorse => (estimate > tolerance, high, high <= tolerance),
        Direction::LowerIsWorse => (estimate < -tolerance, low, low >= -tolerance),
        Direction::Either => (
            estimate.abs() > tolerance,
            if high.abs() >= low.abs() { high } else { low },
            low >= -tolerance && high <= tolerance,
        ),
    };
    let rule = if significant && beyond {
        DecisionRule::ShownBeyond
    } else if within {
        DecisionRule::ShownWithin
    } else {
        DecisionRule::NotShown
    };
    Decided { rule, bound }
}

impl Decided {
    /// The verdict of the rule; a not-shown verdict carries `reason`.
    pub fn verdict(&self, reason: &str) -> Verdict {
        match self.rule {
            DecisionRule::ShownBeyond => Verdict::Fail,
            DecisionRule::ShownWithin | DecisionRule::Observed => Verdict::Pass,
            DecisionRule::NotShown => Verdict::inconclusive(InconclusiveCause::NotShown, reason),
        }
    }
}

/// The sentence of a check whose data shows neither a failure nor that it is within its
/// tolerance: "30 points cannot show the canary within +10% at 99%: the bound is +31%".
pub(super) fn not_shown_sentence(
    points: usize,
    what: &str,
    confidence: f64,
    bound: &str,
) -> String {
    format!(
        "{points} points cannot show {what} at {}%: the bound is {bound}",
        super::summary::fmt_num(confidence * 100.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::*;

    #[test]
    fn pass_needs_the_bound_within_and_fail_needs_significance_beyond() {
        // (direction, estimate, interval, significant, tolerance, rule)
        let cases = [
            (
                HigherIsWorse,
                0.02,
                (-0.01, 0.05),
                false,
                0.10,
                DecisionRule::ShownWithin,
            ),
            (
                HigherIsWorse,
                0.02,
                (-0.10, 0.31),
                false,
                0.10,
                DecisionRule::NotShown,
            ),
            (
                HigherIsWorse,
                0.20,
                (0.12, 0.28),
                true,
                0.10,
                DecisionRule::ShownBeyond,
            ),
            // Significant, estimate within, bound beyond: not shown either way.
            (
                HigherIsWorse,
                0.08,
                (0.02, 0.14),
                true,
                0.10,
                DecisionRule::NotShown,
            ),
            // Significant and wholly within: a pass.
            (
                HigherIsWorse,
                0.05,
                (0.02, 0.08),
                true,
                0.10,
                DecisionRule::ShownWithin,
            ),
            (
                LowerIsWorse,
                -0.20,
                (-0.28, -0.12),
                true,
                0.10,
                DecisionRule::ShownBeyond,
            ),
            (
                LowerIsWorse,
                0.30,
                (0.10, 0.50),
                false,
                0.10,
                DecisionRule::ShownWithin,
            ),
            (
                LowerIsWorse,
                0.00,
                (-0.15, 0.15),
                false,
                0.10,
                DecisionRule::NotShown,
            ),
            (
                Either,
                0.00,
                (-0.05, 0.05),
                false,
                0.10,
                DecisionRule::ShownWithin,
            ),
            (
                Either,
                0.00,
                (-0.15, 0.05),
                false,
                0.10,
                DecisionRule::NotShown,
            ),
            (
                Either,
                -0.30,
                (-0.40, -0.20),
                true,
                0.10,
                DecisionRule::ShownBeyond,
            ),
            // Tolerance 0: noise alone never shows "no worse at all" unless the bound is ≤ 0.
            (
                HigherIsWorse,
                0.00,
                (-0.02, 0.02),
                false,
                0.0,
                DecisionRule::NotShown,
            ),
        ];
        for (i, (dir, est, iv, sig, tol, rule)) in cases.into_iter().enumerate() {
            assert_eq!(decide(dir, est, iv, sig, tol).rule, rule, "case {i}");
        }
        assert_eq!(decide(Either, 0.0, (-0.15, 0.05), false, 0.1).bound, -0.15);
    }
}
