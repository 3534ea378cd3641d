//! Weighted scoring of an analysis, after Kayenta: checks belong to groups with weights; a
//! group's score is the share of its checks that passed; the analysis score (0–100) is the
//! weighted mean of the group scores. It owns turning verdicts into an [`AnalysisOutcome`] and
//! nothing else (no statistics, no I/O).
//!
//! Inconclusive checks never help an analysis pass. The score counts them as not passing (in the
//! denominator, not the numerator), and a second, optimistic score counts them as passing:
//! 1. a critical check that failed → `Fail`;
//! 2. optimistic score below `marginal_score` → `Fail` (the failures alone sink it);
//! 3. a critical check that is inconclusive → `Inconclusive`;
//! 4. score ≥ `pass_score` and above 0 → `Pass` (enough checks passed on evidence);
//! 5. score ≥ `marginal_score` and optimistic score < `pass_score` → `Marginal` (the missing
//!    evidence could not lift it to a pass);
//! 6. otherwise → `Inconclusive` (missing evidence stands between this analysis and a decision).
//!
//! A check that is not applicable ([`InconclusiveCause::NotApplicable`]: it compares with a
//! baseline that has no traffic, at 100%) is left out altogether: the analysis is judged by the
//! checks that can judge it, and a group whose checks are all not applicable has no weight. When
//! no check can judge, the analysis is `Inconclusive` with that reason, never a pass.

use super::{CheckResult, InconclusiveCause, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One judged check as scoring sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoredCheck {
    pub name: String,
    pub group: String,
    /// A critical check that fails fails the analysis whatever the score.
    #[serde(default)]
    pub critical: bool,
    pub verdict: Verdict,
}

impl ScoredCheck {
    pub fn new(result: &CheckResult, group: impl Into<String>, critical: bool) -> Self {
        ScoredCheck {
            name: result.name.clone(),
            group: group.into(),
            critical,
            verdict: result.verdict.clone(),
        }
    }
}

/// Group weights and score thresholds (Kayenta's defaults: pass at 95, marginal at 75).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scoring {
    /// Weight per group; only relative sizes matter. Every group a check names must be here.
    pub group_weights: BTreeMap<String, f64>,
    #[serde(default = "default_pass_score")]
    pub pass_score: f64,
    #[serde(default = "default_marginal_score")]
    pub marginal_score: f64,
}

fn default_pass_score() -> f64 {
    95.0
}

fn default_marginal_score() -> f64 {
    75.0
}

/// The outcome of a whole analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnalysisOutcome {
    Pass,
    Marginal,
    Fail,
    Inconclusive,
}

/// One group's tally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupScore {
    pub group: String,
    pub weight: f64,
    pub passed: usize,
    pub failed: usize,
    pub inconclusive: usize,
    /// Checks left out because they cannot judge this analysis (not counted in `score`).
    #[serde(default)]
    pub not_applicable: usize,
    /// passed / all judged checks of the group, 0–100.
    pub score: f64,
}

/// The scored analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisScore {
    pub outcome: AnalysisOutcome,
    /// 0–100, inconclusive checks counted as not passing.
    pub score: f64,
    /// 0–100, inconclusive checks counted as passing: the best the missing evidence could give.
    pub score_if_inconclusive_passed: f64,
    pub reason: String,
    pub groups: Vec<GroupScore>,
    pub critical_failures: Vec<String>,
    pub inconclusive_checks: Vec<String>,
    /// Checks left out because they cannot judge this analysis (a baseline without traffic).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_applicable_checks: Vec<String>,
}

/// Score an analysis. Pure; misconfiguration (a group without a weight, thresholds out of
/// order) gives `Inconclusive` with the reason, never a pass.
pub fn score_analysis(checks: &[ScoredCheck], scoring: &Scoring) -> AnalysisScore {
    let mut groups: BTreeMap<&str, GroupScore> = BTreeMap::new();
    let mut critical_failures = Vec::new();
    let mut critical_inconclusive = Vec::new();
    let mut inconclusive_checks = Vec::new();
    let mut not_applicable_checks = Vec::new();
    let mut problems = Vec::new();
    for check in checks {
        let weight = match scoring.group_weights.get(&check.group) {
            Some(w) if w.is_finite() && *w >= 0.0 => *w,
            Some(w) => {
                problems.push(format!("group `{}` has an invalid weight {w}", check.group));
                0.0
            }
            None => {
                problems.push(format!(
                    "check `{}` is in group `{}`, which has no weight",
                    check.name, check.group
                ));
                0.0
            }
        };
        let g = groups.entry(&check.group).or_insert_with(|| GroupScore {
            group: check.group.clone(),
            weight,
            passed: 0,
            failed: 0,
            inconclusive: 0,
            not_applicable: 0,
            score: 0.0,
        });
        match check.verdict {
            Verdict::Inconclusive {
                cause: InconclusiveCause::NotApplicable,
                ..
            } => {
                g.not_applicable += 1;
                not_applicable_checks.push(check.name.clone());
            }
            Verdict::Pass => g.passed += 1,
            Verdict::Fail => {
                g.failed += 1;
                if check.critical {
                    critical_failures.push(check.name.clone());
                }
            }
            Verdict::Inconclusive { .. } => {
                g.inconclusive += 1;
                inconclusive_checks.push(check.name.clone());
                if check.critical {
                    critical_inconclusive.push(check.name.clone());
                }
            }
        }
    }
    // Weights count relative to the largest, so the weighted sums stay finite (a weight of 1e307
    // times a score of 100 is inf, and inf / 1e307 would pass anything); scores are clamped to
    // 0-100 against rounding.
    let top = groups.values().map(|g| g.weight).fold(0.0, f64::max);
    let (mut weighted, mut weighted_hi, mut weights) = (0.0, 0.0, 0.0);
    for g in groups.values_mut() {
        let n = (g.passed + g.failed + g.inconclusive) as f64;
        if n == 0.0 {
            // Every check of the group is not applicable: the group does not count.
            continue;
        }
        g.score = 100.0 * g.passed as f64 / n;
        let w = if top > 0.0 { g.weight / top } else { 0.0 };
        weighted += w * g.score;
        weighted_hi += w * 100.0 * (g.passed + g.inconclusive) as f64 / n;
        weights += w;
    }
    let (score, score_hi) = if weights > 0.0 {
        (
            (weighted / weights).clamp(0.0, 100.0),
            (weighted_hi / weights).clamp(0.0, 100.0),
        )
    } else {
        (0.0, 0.0)
    };
    let (pass, marginal) = (scoring.pass_score, scoring.marginal_score);
    if !(0.0..=100.0).contains(&pass) || !(0.0..=100.0).contains(&marginal) || marginal > pass {
        problems.push(format!(
            "scores must satisfy 0 ≤ marginal_score ({marginal}) ≤ pass_score ({pass}) ≤ 100"
        ));
    }
    if checks.is_empty() {
        problems.push("the analysis has no checks".into());
    } else if not_applicable_checks.len() == checks.len() {
        problems.push(format!(
            "no check can judge this analysis: {} not applicable (the baseline has no traffic)",
            match checks.len() {
                1 => format!("`{}` is", checks[0].name),
                _ => format!("`{}` are", not_applicable_checks.join("`, `")),
            }
        ));
    } else if weights <= 0.0 {
        problems.push("the groups of this analysis have no weight".into());
    }
    let (outcome, reason) = if !problems.is_empty() {
        (AnalysisOutcome::Inconclusive, problems.join("; "))
    } else if !critical_failures.is_empty() {
        (
            AnalysisOutcome::Fail,
            format!("critical check failed: {}", critical_failures.join(", ")),
        )
    } else if score_hi < marginal {
        (
            AnalysisOutcome::Fail,
            format!("score {score_hi:.1} is below the marginal score {marginal}"),
        )
    } else if !critical_inconclusive.is_empty() {
        (
            AnalysisOutcome::Inconclusive,
            format!(
                "critical check without enough evidence: {}",
                critical_inconclusive.join(", ")
            ),
        )
    } else if score >= pass && score > 0.0 {
        // `score > 0`: a check of a weighted group passed. Without it a pass score of 0 would
        // pass an analysis on no evidence at all.
        (
            AnalysisOutcome::Pass,
            format!("score {score:.1} reaches the pass score {pass}"),
        )
    } else if score >= marginal && score_hi < pass {
        (
            AnalysisOutcome::Marginal,
            format!(
                "score {score:.1} is between the marginal score {marginal} and the pass score {pass}"
            ),
        )
    } else {
        (
            AnalysisOutcome::Inconclusive,
            format!(
                "score {score:.1} (up to {score_hi:.1} if the inconclusive checks passed) is \
                 below the pass score {pass} for want of evidence: {}",
                inconclusive_checks.join(", ")
            ),
        )
    };
    AnalysisScore {
        outcome,
        score,
        score_if_inconclusive_passed: score_hi,
        reason,
        groups: groups.into_values().collect(),
        critical_failures,
        inconclusive_checks,
        not_applicable_checks,
    }
}

#[cfg(test)]
mod tests {
    //! Checks that cannot judge (a baseline without traffic, at 100%): the judge says so, and
    //! the score leaves them out.
    use super::super::{
        Aggregate, BaselineTraffic, CheckKind, CheckSpec, CountPoint, Direction,
        NOT_APPLICABLE_AT_100, Point, SideData, ThresholdTest, judge_check_with,
    };
    use super::*;

    fn spec(kind: CheckKind) -> CheckSpec {
        CheckSpec {
            name: "check".into(),
            kind,
            direction: Direction::HigherIsWorse,
            confidence: 0.99,
            min_samples: 3,
        }
    }

    fn scored(name: &str, group: &str, critical: bool, verdict: Verdict) -> ScoredCheck {
        ScoredCheck {
            name: name.into(),
            group: group.into(),
            critical,
            verdict,
        }
    }

    fn not_applicable() -> Verdict {
        Verdict::inconclusive(InconclusiveCause::NotApplicable, NOT_APPLICABLE_AT_100)
    }

    fn scoring() -> Scoring {
        Scoring {
            group_weights: [("latency".to_string(), 60.0), ("errors".to_string(), 40.0)].into(),
            pass_score: 95.0,
            marginal_score: 75.0,
        }
    }

    #[test]
    fn checks_that_need_a_baseline_are_not_applicable_when_it_has_no_traffic() {
        let values = |v: f64| {
            SideData::Values(
                (0..10)
                    .map(|i| Point {
                        t: 60.0 * f64::from(i),
                        v: v + f64::from(i % 3),
                    })
                    .collect(),
            )
        };
        let counts = |errors: f64| {
            SideData::Counts(
                (0..10)
                    .map(|i| CountPoint {
                        t: 60.0 * f64::from(i),
                        errors,
                        total: 1000.0,
                    })
                    .collect(),
            )
        };
        let (empty_values, empty_counts) = (SideData::Values(vec![]), SideData::Counts(vec![]));
        let cases = [
            (
                CheckKind::Relative { tolerance: 0.1 },
                &empty_values,
                values(100.0),
                true,
            ),
            (
                CheckKind::ErrorRate { tolerance: 0.01 },
                &empty_counts,
                counts(1.0),
                true,
            ),
            (
                CheckKind::Absolute {
                    threshold: 500.0,
                    aggregate: Aggregate::Max,
                    test: ThresholdTest::Observed,
                },
                &empty_values,
                values(100.0),
                false,
            ),
            (
                CheckKind::ErrorRateAbsolute {
                    threshold: 0.01,
                    test: ThresholdTest::Observed,
                },
                &empty_counts,
                counts(1.0),
                false,
            ),
            (
                CheckKind::Trend {
                    max_slope_per_minute: 10.0,
                },
                &empty_values,
                values(100.0),
                false,
            ),
        ];
        for (kind, baseline, canary, needs) in cases {
            assert_eq!(kind.needs_baseline(), needs, "{kind:?}");
            let s = spec(kind.clone());
            let at_100 = judge_check_with(&s, baseline, &canary, BaselineTraffic::at_weight(100));
            if needs {
                assert_eq!(at_100.verdict, not_applicable(), "{kind:?}");
                assert_eq!(at_100.reason, NOT_APPLICABLE_AT_100);
                // Below 100% an empty baseline is missing data, as it always was.
                let at_50 = judge_check_with(&s, baseline, &canary, BaselineTraffic::at_weight(50));
                assert_eq!(
                    at_50.verdict.cause(),
                    Some(InconclusiveCause::NoData),
                    "{kind:?}"
                );
            } else {
                // Kinds that judge the canary alone judge it at 100% as anywhere else.
                assert_eq!(at_100.verdict, Verdict::Pass, "{kind:?}: {}", at_100.reason);
            }
        }
    }

    #[test]
    fn checks_that_are_not_applicable_are_left_out_of_the_score() {
        use Verdict::{Fail, Pass};
        // The last stage is judged by the checks that can judge it.
        let s = score_analysis(
            &[
                scored("p99-vs-baseline", "latency", true, not_applicable()),
                scored("p99-absolute", "latency", false, Pass),
                scored("errors-vs-baseline", "errors", true, not_applicable()),
                scored("errors-absolute", "errors", true, Pass),
            ],
            &scoring(),
        );
        assert_eq!(
            (s.outcome, s.score),
            (AnalysisOutcome::Pass, 100.0),
            "{}",
            s.reason
        );
        assert_eq!(
            s.not_applicable_checks,
            ["p99-vs-baseline", "errors-vs-baseline"]
        );
        assert!(s.inconclusive_checks.is_empty());
        assert_eq!(s.groups[1].not_applicable, 1);
        // A group whose checks all cannot judge carries no weight; the others decide.
        let s = score_analysis(
            &[
                scored("p99-vs-baseline", "latency", true, not_applicable()),
                scored("errors-absolute", "errors", false, Fail),
            ],
            &scoring(),
        );
        assert_eq!(
            (s.outcome, s.score),
            (AnalysisOutcome::Fail, 0.0),
            "{}",
            s.reason
        );
        // When no check can judge, the analysis is inconclusive and says why: never a pass.
        let s = score_analysis(
            &[
                scored("p99-vs-baseline", "latency", true, not_applicable()),
                scored("errors-vs-baseline", "errors", false, not_applicable()),
            ],
            &scoring(),
        );
        assert_eq!(s.outcome, AnalysisOutcome::Inconclusive);
        assert_eq!(
            s.reason,
            "no check can judge this analysis: `p99-vs-baseline`, `errors-vs-baseline` are not \
             applicable (the baseline has no traffic)"
        );
    }
}
