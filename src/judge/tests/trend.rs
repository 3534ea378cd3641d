//! Trend checks: a significant slope beyond the limit fails.

use super::*;

#[test]
fn trend_fails_on_significant_growth_beyond_the_limit() {
    let mut rng = Rng(11);
    let s = spec(
        CheckKind::Trend {
            max_slope_per_minute: 1.0,
        },
        Direction::HigherIsWorse,
        10,
    );
    let growing = series(30, |i| 500.0 + 3.0 * i as f64 + rng.normal());
    let r = judge_check(&s, &SideData::Values(vec![]), &growing);
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    let slope = r.evidence.canary.slope_per_minute.unwrap();
    assert!((slope - 3.0).abs() < 0.2, "{slope}");
    // Growing, significantly, but slower than the limit.
    let slow = series(30, |i| 500.0 + 0.5 * i as f64 + 0.1 * rng.normal());
    let r = judge_check(&s, &SideData::Values(vec![]), &slow);
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    assert!(r.evidence.p_value.unwrap() < 0.01);
    // Flat noise.
    let flat = series(30, |_| 500.0 + 10.0 * rng.normal());
    let r = judge_check(&s, &SideData::Values(vec![]), &flat);
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    // Shrinking fails only when lower is worse.
    let shrinking = series(30, |i| 500.0 - 3.0 * i as f64 + rng.normal());
    let r = judge_check(&s, &SideData::Values(vec![]), &shrinking);
    assert_eq!(r.verdict, Verdict::Pass);
    let s = spec(
        CheckKind::Trend {
            max_slope_per_minute: 1.0,
        },
        Direction::LowerIsWorse,
        10,
    );
    let r = judge_check(&s, &SideData::Values(vec![]), &shrinking);
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
}
