//! Absolute checks: the aggregate against the threshold.

use super::*;

#[test]
fn absolute_compares_the_aggregate_with_the_threshold() {
    let b = series(30, |_| 0.1);
    let c = series(30, |i| if i == 29 { 0.9 } else { 0.2 });
    let cases = [
        (
            Aggregate::Mean,
            0.3,
            Direction::HigherIsWorse,
            Verdict::Pass,
        ),
        (Aggregate::Max, 0.5, Direction::HigherIsWorse, Verdict::Fail),
        (
            Aggregate::Last,
            0.5,
            Direction::HigherIsWorse,
            Verdict::Fail,
        ),
        (
            Aggregate::Median,
            0.19,
            Direction::HigherIsWorse,
            Verdict::Fail,
        ),
        (
            Aggregate::Quantile(0.5),
            0.25,
            Direction::LowerIsWorse,
            Verdict::Fail,
        ),
        (Aggregate::Min, 0.1, Direction::LowerIsWorse, Verdict::Pass),
    ];
    for (agg, threshold, dir, want) in cases {
        let s = spec(
            CheckKind::Absolute {
                threshold,
                aggregate: agg,
            },
            dir,
            10,
        );
        let r = judge_check(&s, &b, &c);
        assert_eq!(r.verdict, want, "{agg:?}: {}", r.reason);
        assert!(r.evidence.canary.aggregate.is_some());
    }
    let s = spec(
        CheckKind::Absolute {
            threshold: 1.0,
            aggregate: Aggregate::Max,
        },
        Direction::HigherIsWorse,
        10,
    );
    let r = judge_check(&s, &b, &series(3, |_| 0.1));
    assert!(
        is_inconclusive(&r),
        "thin canary data must not pass an absolute check"
    );
}
