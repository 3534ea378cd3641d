//! Family-wise control of false alarms across the checks of one analysis. It owns the step that
//! judges every check of an analysis and then applies Holm's step-down procedure to the checks
//! that were tested, so that a healthy canary trips *any* check of the analysis at most at the
//! family's significance, however many checks the analysis has. It must stay pure (no I/O, no
//! clock) and must never make a check fail more easily than it would on its own, nor touch a check
//! without a p-value (absolute thresholds, inconclusive checks).
//!
//! Each check alone fails a healthy canary with probability up to its significance (0.5% for a
//! directional check at confidence 0.99), and those chances add up: 20 checks alarm ~10% of the
//! time. Holm's procedure sorts the tested checks by p-value and compares the smallest with
//! α/m, the next with α/(m − 1), and so on, stopping at the first that is not significant; every
//! check after that point is not significant either. That keeps the chance of any false alarm
//! at α for any dependence between the checks, and it is uniformly more powerful than Bonferroni.
//!
//! The family is every check of the analysis that produced a p-value (judged `Pass`, `Fail` or
//! not shown within its tolerance on a test), whatever its estimate: counting only the checks whose estimate lies beyond their
//! tolerance would pick the family after looking at the data and lose the guarantee. Checks may
//! have different significances (an `Either` check at 0.99 has 1%, a directional one 0.5%, a
//! check at 0.999 has 0.1%): the family's significance is the largest of them, and each check's
//! share of it is weighted by its own significance (weighted Holm), with a check's threshold
//! never above its own significance. When every check has the same significance this is plain
//! Holm at that significance; a family of one check is judged exactly as by `judge_check`.
//!
//! A check that would fail on its own but is not significant after the correction is
//! inconclusive, [`InconclusiveCause::NotShown`] (issue 18 point 3: a pass must be shown, and
//! its estimate, hence its bound, is beyond the tolerance): the evidence is not strong enough for
//! an analysis of this many checks to fail it, nor to pass it. Its reason says so ("p = 0.0040 is
//! not significant after Holm's correction over 10 checks (needs < 0.0005)") and its evidence
//! records the family.

use serde::{Deserialize, Serialize};

use super::summary::{fmt_p, significance_level, significant_clause};
use super::{
    BaselineTraffic, CheckResult, CheckSpec, DecisionRule, InconclusiveCause, SideData, Verdict,
    judge_check_with,
};

/// How the false alarms of an analysis's checks are controlled together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FamilyControl {
    /// Holm's step-down over the checks with a p-value: a healthy analysis fails at most at the
    /// family's significance, however many checks it has.
    #[default]
    Holm,
    /// Every check at its own significance: false alarms add up across the checks.
    PerCheck,
}

/// How the family-wise correction treated one check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FamilyEvidence {
    pub method: FamilyControl,
    /// Checks in the family: the checks of the analysis that produced a p-value.
    pub checks: usize,
    /// This check's place in Holm's order, from 1 (the strongest evidence).
    pub rank: usize,
    /// The family's significance: a healthy analysis fails any check at most this often.
    pub significance: f64,
    /// The p-value this check needed at its step of the procedure (`p < threshold`).
    pub threshold: f64,
    /// Holm's adjusted p-value, on the family's scale: below `significance` exactly when the
    /// check is significant after the correction.
    pub adjusted_p_value: f64,
    /// Whether the check's test is significant after the correction.
    pub significant: bool,
}

/// Judge every check of one analysis, then control the family's false alarms with `control`.
///
/// The results are in the order of `checks`. With [`FamilyControl::PerCheck`], or with fewer
/// than two tested checks, they are exactly [`judge_check`](super::judge_check)'s.
pub fn judge_analysis(
    checks: &[(&CheckSpec, &SideData, &SideData)],
    control: FamilyControl,
) -> Vec<CheckResult> {
    judge_analysis_with(checks, control, BaselineTraffic::Serving)
}

/// [`judge_analysis`] knowing whether the baseline serves traffic (see [`judge_check_with`]):
/// checks that are not applicable are inconclusive and, like every inconclusive check, outside
/// the family.
pub fn judge_analysis_with(
    checks: &[(&CheckSpec, &SideData, &SideData)],
    control: FamilyControl,
    traffic: BaselineTraffic,
) -> Vec<CheckResult> {
    let mut results: Vec<CheckResult> = checks
        .iter()
        .map(|(spec, baseline, canary)| judge_check_with(spec, baseline, canary, traffic))
        .collect();
    let specs: Vec<&CheckSpec> = checks.iter().map(|(spec, _, _)| *spec).collect();
    apply_family_control(&specs, &mut results, control);
    results
}

/// Apply the family-wise correction to checks already judged one by one: `results[i]` is the
/// verdict of `specs[i]` (a result without a spec is left alone).
///
/// Failing checks that are not significant after Holm's correction become `Inconclusive`
/// ([`InconclusiveCause::NotShown`]) with a reason saying so; failing checks that stay
/// significant keep `Fail` with the corrected threshold in their reason. Every tested check
/// (passed, failed, or not shown within its tolerance) records [`FamilyEvidence`]. Checks
/// without a p-value and other inconclusive checks are untouched and do not count in the family.
pub fn apply_family_control(
    specs: &[&CheckSpec],
    results: &mut [CheckResult],
    control: FamilyControl,
) {
    if control == FamilyControl::PerCheck {
        return;
    }
    // (index, p-value, the check's own significance) of every tested check.
    let mut members: Vec<(usize, f64, f64)> = specs
        .iter()
        .zip(results.iter())
        .enumerate()
        .filter(|(_, (_, r))| match r.verdict.cause() {
            // Not shown within the tolerance, but tested: it belongs to the family (leaving it
            // out would choose the family after seeing the data).
            Some(cause) => {
                cause == InconclusiveCause::NotShown || cause == InconclusiveCause::Accruing
            }
            None => true,
        })
        .filter_map(|(i, (spec, r))| {
            let p = r.evidence.p_value.filter(|p| !p.is_nan())?;
            // A confidence outside (0, 1) has no significance to share (the judge already made
            // such a check inconclusive).
            let alpha = Some(significance_level(spec)).filter(|a| *a > 0.0 && *a < 1.0)?;
            Some((i, p.clamp(0.0, 1.0), alpha))
        })
        .collect();
    let m = members.len();
    if m < 2 {
        return;
    }
    let family_alpha = members.iter().map(|&(_, _, a)| a).fold(0.0, f64::max);
    // Holm's order: the strongest evidence relative to the check's own significance first.
    members.sort_by(|x, y| (x.1 / x.2).total_cmp(&(y.1 / y.2)).then(x.0.cmp(&y.0)));
    let mut remaining: f64 = members.iter().map(|&(_, _, a)| a).sum();
    let mut adjusted_max: f64 = 0.0;
    // Where the step-down stopped: (check name, its threshold).
    let mut stopped: Option<(String, f64)> = None;
    for (k, &(i, p, alpha)) in members.iter().enumerate() {
        // Weighted Holm: this check's share of the family's significance is its own significance
        // over the significances still in play; `max` caps the threshold at its own significance.
        let scale = remaining.max(family_alpha);
        let threshold = alpha * family_alpha / scale;
        adjusted_max = adjusted_max.max((p * scale / alpha).min(1.0));
        remaining -= alpha;
        let significant = stopped.is_none() && p < threshold;
        if !significant && stopped.is_none() {
            stopped = Some((results[i].name.clone(), threshold));
        }
        let result = &mut results[i];
        result.evidence.family = Some(FamilyEvidence {
            method: FamilyControl::Holm,
            checks: m,
            rank: k + 1,
            significance: family_alpha,
            threshold,
            adjusted_p_value: adjusted_max,
            significant,
        });
        if result.verdict != Verdict::Fail {
            continue;
        }
        let clause = significant_clause(p, alpha);
        let head = match result.reason.strip_suffix(&clause) {
            Some(head) => head.to_string(),
            None => format!("{}; ", result.reason),
        };
        let (p_text, needed) = (fmt_p(p), fmt_level(threshold));
        if significant {
            result.reason =
                format!("{head}p = {p_text} < {needed} after Holm's correction over {m} checks");
        } else {
            let why = match &stopped {
                Some((name, at)) if p < threshold => format!(
                    "adjusted p = {} ≥ {}: the step-down stopped at `{name}`, which needed p < {}",
                    fmt_p(adjusted_max),
                    fmt_level(family_alpha),
                    fmt_level(*at)
                ),
                _ => format!("needs < {needed}"),
            };
            // Its estimate is beyond the tolerance, so its bound is too: not shown either way.
            result.reason = format!(
                "{head}p = {p_text} is not significant after Holm's correction over {m} checks \
                 ({why})"
            );
            // Its estimate is beyond the tolerance, so its bound is too: not shown either way.
            if let Some(decision) = &mut result.evidence.decision {
                decision.rule = DecisionRule::NotShown;
            }
            result.verdict = Verdict::inconclusive(InconclusiveCause::NotShown, &result.reason);
        }
    }
}

/// A significance level for a sentence, to two significant digits: 0.0005, 0.00025, 0.0017;
/// below 1e-4 in scientific notation (2.5e-5).
fn fmt_level(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return format!("{x}");
    }
    if x < 1e-4 {
        return format!("{x:.1e}");
    }
    let decimals = (1 - x.log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests;
