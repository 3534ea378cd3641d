//! Error-rate-absolute checks: by default the observed rate over enough requests against the
//! threshold; with `test = "statistical"`, only a significant excess fails and only a rate shown
//! within the threshold passes.

use super::*;

#[test]
fn error_rate_absolute_statistical_needs_a_significant_excess() {
    let s = spec(
        CheckKind::ErrorRateAbsolute {
            threshold: 0.005,
            test: ThresholdTest::Statistical,
        },
        Direction::HigherIsWorse,
        100,
    );
    let nothing = SideData::Counts(vec![]);
    // 3% of 1,000 against 0.5%: fail.
    let r = judge_check(&s, &nothing, &counts(10, 3.0, 100.0));
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    assert_eq!(r.evidence.test.as_deref(), Some("exact binomial test"));
    // 0.7% of 1,000: above but not significantly (P(X ≥ 7 | 1000, 0.005) ≈ 0.24).
    // It does not pass either: 1,000 requests cannot show the rate within 0.5% (issue 18 point 3).
    let r = judge_check(&s, &nothing, &counts(10, 0.7, 100.0));
    assert_eq!(
        r.verdict.cause(),
        Some(InconclusiveCause::NotShown),
        "{}",
        r.reason
    );
    let p = r.evidence.p_value.unwrap();
    assert!((p - 0.2378).abs() < 1e-3, "{p}");
    assert!(
        r.reason.starts_with(
            "1,000 canary requests cannot show the rate within the 0.500% threshold at 99%: \
             the 99% bound on the rate is 1.7"
        ),
        "{}",
        r.reason
    );
    // 0.2% of 100,000 is shown within 0.5%: the bound is in the evidence and the reason.
    let r = judge_check(&s, &nothing, &counts(10, 20.0, 10_000.0));
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    let high = r.evidence.effect.unwrap().interval.unwrap().high;
    assert!(high > 0.002 && high < 0.005, "{high}");
    assert!(r.reason.contains("within the threshold"), "{}", r.reason);
    // Only the canary needs events.
    let r = judge_check(&s, &nothing, &counts(1, 0.0, 50.0));
    assert!(is_inconclusive(&r));
}

/// Issue 18 point 5: "error rate above 0.5%" reads as the Prometheus alerting rule reads it, the
/// observed rate over enough requests. 0.6% of 3,000 requests fails a 0.5% threshold.
#[test]
fn an_observed_rate_above_the_threshold_fails_by_default() {
    let s = spec(
        CheckKind::ErrorRateAbsolute {
            threshold: 0.005,
            test: ThresholdTest::Observed,
        },
        Direction::HigherIsWorse,
        100,
    );
    let nothing = SideData::Counts(vec![]);
    // 18 errors in 3,000 requests: 0.6%.
    let r = judge_check(&s, &nothing, &counts(30, 0.6, 100.0));
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    assert_eq!(
        r.reason,
        "canary error rate 0.600% vs threshold 0.500%: above the threshold over 3000 requests"
    );
    // The evidence says which comparison judged; there is no p-value to correct.
    assert_eq!(
        r.evidence.test.as_deref(),
        Some("observed: the summed error rate vs the threshold")
    );
    assert_eq!(r.evidence.p_value, None);
    // 0.4%: within.
    let r = judge_check(&s, &nothing, &counts(30, 0.4, 100.0));
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    // The statistical option on the same data keeps today's numbers: not significant, and
    // 3,000 requests cannot show the rate within 0.5% either.
    let statistical = CheckSpec {
        kind: CheckKind::ErrorRateAbsolute {
            threshold: 0.005,
            test: ThresholdTest::Statistical,
        },
        ..s.clone()
    };
    let r = judge_check(&statistical, &nothing, &counts(30, 0.6, 100.0));
    assert_eq!(
        r.verdict.cause(),
        Some(InconclusiveCause::NotShown),
        "{}",
        r.reason
    );
    assert_eq!(r.evidence.test.as_deref(), Some("exact binomial test"));
    assert!((r.evidence.p_value.unwrap() - 0.2507).abs() < 1e-3);
    // Too few requests to read a rate from: inconclusive, with its cause, even at 100% errors.
    let s = CheckSpec {
        min_samples: 3000,
        ..s
    };
    let r = judge_check(&s, &nothing, &counts(29, 100.0, 100.0));
    assert_eq!(r.verdict.cause(), Some(InconclusiveCause::TooFew), "{r:?}");
    assert!(
        r.reason
            .contains("too few events: the canary has 2900, needs at least 3000"),
        "{}",
        r.reason
    );
}
