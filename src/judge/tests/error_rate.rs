//! Error-rate checks: Fisher's exact test or the z-test by the counts, and the tolerance.

use super::*;

#[test]
fn error_rates_use_fisher_when_small_and_z_when_large() {
    let s = spec(
        CheckKind::ErrorRate { tolerance: 0.001 },
        Direction::HigherIsWorse,
        100,
    );
    // 30 minutes of 100 requests: 0.5% vs 3%.
    let r = judge_check(&s, &counts(30, 0.5, 100.0), &counts(30, 3.0, 100.0));
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    assert_eq!(r.evidence.test.as_deref(), Some("Fisher's exact test"));
    assert_eq!(r.evidence.canary.errors, Some(90.0));
    assert_eq!(r.evidence.canary.rate, Some(0.03));
    // 30 minutes of 100,000 requests: 1% vs 1.5%.
    let r = judge_check(
        &s,
        &counts(30, 1000.0, 100_000.0),
        &counts(30, 1500.0, 100_000.0),
    );
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    assert_eq!(
        r.evidence.test.as_deref(),
        Some("two-proportion z-test (pooled)")
    );
    let e = r.evidence.effect.unwrap();
    assert!((e.difference - 0.005).abs() < 1e-12);
    assert!((e.ratio.unwrap() - 1.5).abs() < 1e-12);
    let i = e.interval.unwrap();
    assert!(i.low < 0.005 && 0.005 < i.high);
}

#[test]
fn error_rate_within_tolerance_passes_even_when_significant() {
    let s = spec(
        CheckKind::ErrorRate { tolerance: 0.001 },
        Direction::HigherIsWorse,
        100,
    );
    // 1.00% vs 1.08%: significant on 30M requests, but only 0.08 pp.
    let r = judge_check(&s, &counts(30, 10_000.0, 1e6), &counts(30, 10_800.0, 1e6));
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    assert!(r.evidence.p_value.unwrap() < 1e-6);
    assert!(
        r.reason.contains("within the 0.1 pp tolerance"),
        "{}",
        r.reason
    );
    // Per-minute rates are never averaged: one busy minute dominates as it should.
    let b = SideData::Counts(vec![
        CountPoint {
            t: 0.0,
            errors: 0.0,
            total: 10.0,
        },
        CountPoint {
            t: 60.0,
            errors: 10.0,
            total: 10_000.0,
        },
    ]);
    let c = SideData::Counts(vec![
        CountPoint {
            t: 0.0,
            errors: 5.0,
            total: 10.0,
        },
        CountPoint {
            t: 60.0,
            errors: 10.0,
            total: 10_000.0,
        },
    ]);
    let r = judge_check(&s, &b, &c);
    // Mean per-minute rate would be 25% vs 0.05%; the summed rate is 0.15% vs 0.10%.
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    assert!((r.evidence.canary.rate.unwrap() - 15.0 / 10_010.0).abs() < 1e-12);
}
