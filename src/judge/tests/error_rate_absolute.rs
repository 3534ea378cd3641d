//! Error-rate-absolute checks: only a significant excess over the threshold fails.

use super::*;

#[test]
fn error_rate_absolute_needs_a_significant_excess() {
    let s = spec(
        CheckKind::ErrorRateAbsolute { threshold: 0.005 },
        Direction::HigherIsWorse,
        100,
    );
    let nothing = SideData::Counts(vec![]);
    // 3% of 1,000 against 0.5%: fail.
    let r = judge_check(&s, &nothing, &counts(10, 3.0, 100.0));
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    assert_eq!(r.evidence.test.as_deref(), Some("exact binomial test"));
    // 0.7% of 1,000: above but not significantly (P(X ≥ 7 | 1000, 0.005) ≈ 0.24).
    let r = judge_check(&s, &nothing, &counts(10, 0.7, 100.0));
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    let p = r.evidence.p_value.unwrap();
    assert!((p - 0.2378).abs() < 1e-3, "{p}");
    assert!(r.reason.contains("not significantly"));
    // Only the canary needs events.
    let r = judge_check(&s, &nothing, &counts(1, 0.0, 50.0));
    assert!(is_inconclusive(&r));
}
