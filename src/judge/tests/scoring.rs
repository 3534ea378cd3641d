//! The analysis score: group weights, critical checks and inconclusive checks.

use super::*;

fn scored(name: &str, group: &str, critical: bool, verdict: Verdict) -> ScoredCheck {
    ScoredCheck {
        name: name.into(),
        group: group.into(),
        critical,
        verdict,
    }
}

fn scoring(pass: f64, marginal: f64) -> Scoring {
    Scoring {
        group_weights: [("latency".to_string(), 60.0), ("errors".to_string(), 40.0)].into(),
        pass_score: pass,
        marginal_score: marginal,
    }
}

fn inc() -> Verdict {
    Verdict::inconclusive(InconclusiveCause::TooFew, "too few points")
}

#[test]
fn analysis_score_table() {
    use AnalysisOutcome as O;
    use Verdict::{Fail, Pass};
    let cases: Vec<(Vec<ScoredCheck>, O, f64)> = vec![
        (
            vec![
                scored("a", "latency", false, Pass),
                scored("b", "errors", false, Pass),
            ],
            O::Pass,
            100.0,
        ),
        // latency half passing: 60 * 50% + 40 * 100% = 70 → fail below 75.
        (
            vec![
                scored("a", "latency", false, Pass),
                scored("a2", "latency", false, Fail),
                scored("b", "errors", false, Pass),
            ],
            O::Fail,
            70.0,
        ),
        // 60 * 100% + 40 * 50% = 80: marginal.
        (
            vec![
                scored("a", "latency", false, Pass),
                scored("b", "errors", false, Pass),
                scored("b2", "errors", false, Fail),
            ],
            O::Marginal,
            80.0,
        ),
        // A critical failure fails the analysis even at a high score.
        (
            (0..19)
                .map(|i| scored(&format!("c{i}"), "latency", false, Pass))
                .chain([
                    scored("errors", "errors", false, Pass),
                    scored("p99", "latency", true, Fail),
                ])
                .collect(),
            O::Fail,
            60.0 * 19.0 / 20.0 + 40.0,
        ),
        // All inconclusive: thin evidence is never a pass.
        (
            vec![
                scored("a", "latency", false, inc()),
                scored("b", "errors", false, inc()),
            ],
            O::Inconclusive,
            0.0,
        ),
        // One group inconclusive: 60 points of evidence only.
        (
            vec![
                scored("a", "latency", false, Pass),
                scored("b", "errors", false, inc()),
            ],
            O::Inconclusive,
            60.0,
        ),
        // Inconclusive on a critical check blocks a pass.
        (
            vec![
                scored("a", "latency", false, Pass),
                scored("b", "errors", true, inc()),
            ],
            O::Inconclusive,
            60.0,
        ),
        // Failures alone sink it even if the inconclusive checks had passed.
        (
            vec![
                scored("a", "latency", false, Fail),
                scored("b", "errors", false, inc()),
            ],
            O::Fail,
            0.0,
        ),
    ];
    for (i, (checks, want, score)) in cases.into_iter().enumerate() {
        let s = score_analysis(&checks, &scoring(95.0, 75.0));
        assert_eq!(s.outcome, want, "case {i}: {}", s.reason);
        assert!((s.score - score).abs() < 1e-9, "case {i}: {}", s.score);
    }
}

#[test]
fn one_inconclusive_among_many_passes_only_on_evidence_that_reaches_the_pass_score() {
    let mut checks: Vec<ScoredCheck> = (0..19)
        .map(|i| scored(&format!("c{i}"), "latency", false, Verdict::Pass))
        .collect();
    checks.push(scored("thin", "latency", false, inc()));
    let s = score_analysis(
        &checks,
        &Scoring {
            group_weights: [("latency".to_string(), 1.0)].into(),
            pass_score: 95.0,
            marginal_score: 75.0,
        },
    );
    assert_eq!(s.outcome, AnalysisOutcome::Pass);
    assert_eq!(s.inconclusive_checks, vec!["thin".to_string()]);
    let s = score_analysis(
        &checks,
        &Scoring {
            group_weights: [("latency".to_string(), 1.0)].into(),
            pass_score: 96.0,
            marginal_score: 75.0,
        },
    );
    assert_eq!(s.outcome, AnalysisOutcome::Inconclusive, "{}", s.reason);
}

#[test]
fn scoring_misconfiguration_is_inconclusive() {
    let checks = vec![scored("a", "saturation", false, Verdict::Pass)];
    let s = score_analysis(&checks, &scoring(95.0, 75.0));
    assert_eq!(s.outcome, AnalysisOutcome::Inconclusive);
    assert!(
        s.reason.contains("group `saturation`, which has no weight"),
        "{}",
        s.reason
    );
    let s = score_analysis(&[], &scoring(95.0, 75.0));
    assert_eq!(s.outcome, AnalysisOutcome::Inconclusive);
    let s = score_analysis(
        &[scored("a", "latency", false, Verdict::Pass)],
        &scoring(70.0, 80.0),
    );
    assert_eq!(s.outcome, AnalysisOutcome::Inconclusive);
}
