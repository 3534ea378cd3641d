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
                test: ThresholdTest::Observed,
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
            test: ThresholdTest::Observed,
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

/// `test = "statistical"`: the aggregate must also be shown beyond the threshold at the
/// confidence (0.99: a directional p-value below 0.005, a two-sided one below 0.01). P-values
/// from SciPy 1.17: `binom.sf(k - 1, n, p)` and `ttest_1samp(v, threshold, alternative=...)`.
#[test]
fn statistical_absolute_checks_test_the_aggregate() {
    use Direction::*;
    // 1.0, 1.1, ..., 2.9: mean 1.95, median 1.95, p90 2.71.
    let c = series(20, |i| 1.0 + 0.1 * i as f64);
    let none = SideData::Values(vec![]);
    // (aggregate, threshold, direction, verdict, p-value, test)
    let cases = [
        // p90 2.71 is above 2.55, but only 4 of 20 points are: P(Bin(20, 0.1) ≥ 4).
        (
            Aggregate::Quantile(0.9),
            2.55,
            HigherIsWorse,
            Verdict::Pass,
            0.1329533234343351,
            "exact binomial quantile test: 4 of 20 points above the threshold, 16 below",
        ),
        // 17 of 20 points above the median's threshold: P(Bin(20, 0.5) ≥ 17).
        (
            Aggregate::Median,
            1.25,
            HigherIsWorse,
            Verdict::Fail,
            0.0012884140014648438,
            "exact binomial quantile test: 17 of 20 points above the threshold, 3 below",
        ),
        (
            Aggregate::Median,
            2.65,
            LowerIsWorse,
            Verdict::Fail,
            0.0012884140014648438,
            "exact binomial quantile test: 3 of 20 points above the threshold, 17 below",
        ),
        (
            Aggregate::Mean,
            1.8,
            HigherIsWorse,
            Verdict::Pass,
            0.1354719740863024,
            "one-sample Student's t-test, 19 df",
        ),
        (
            Aggregate::Mean,
            1.5,
            HigherIsWorse,
            Verdict::Fail,
            0.0014965348498055522,
            "one-sample Student's t-test, 19 df",
        ),
        (
            Aggregate::Mean,
            1.5,
            Either,
            Verdict::Fail,
            0.0029930696996111044,
            "one-sample Student's t-test, 19 df",
        ),
    ];
    for (aggregate, threshold, direction, verdict, p, test) in cases {
        let kind = CheckKind::Absolute {
            threshold,
            aggregate,
            test: ThresholdTest::Statistical,
        };
        let r = judge_check(&spec(kind, direction, 10), &none, &c);
        let at = format!("{aggregate:?} vs {threshold}");
        assert_eq!(r.verdict, verdict, "{at}: {}", r.reason);
        let got = r.evidence.p_value.unwrap();
        assert!(
            (got - p).abs() <= 1e-9 * p.max(1e-3),
            "{at}: p {got} vs {p}"
        );
        assert_eq!(r.evidence.test.as_deref(), Some(test), "{at}");
        // The observed comparison of the same data: every case is beyond its threshold.
        let kind = CheckKind::Absolute {
            threshold,
            aggregate,
            test: ThresholdTest::Observed,
        };
        let r = judge_check(&spec(kind, direction, 10), &none, &c);
        assert_eq!(r.verdict, Verdict::Fail, "{at} observed: {}", r.reason);
        assert_eq!(r.evidence.p_value, None);
        assert_eq!(
            r.evidence.test.as_deref(),
            Some("observed: the aggregate vs the threshold")
        );
    }
    // Single points have no test: inconclusive, never a pass.
    let kind = CheckKind::Absolute {
        threshold: 1.0,
        aggregate: Aggregate::Max,
        test: ThresholdTest::Statistical,
    };
    let r = judge_check(&spec(kind, HigherIsWorse, 10), &none, &c);
    assert_eq!(
        r.verdict.cause(),
        Some(InconclusiveCause::Untestable),
        "{r:?}"
    );
}
