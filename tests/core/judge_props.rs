//! Properties of the judge over arbitrary numbers (issue 16, point 2): whatever the data —
//! ordinary, huge, tiny, subnormal, NaN, ±inf, counts that overflow when summed — every check
//! kind never panics, and never passes or fails unless every number on the way to its verdict
//! was finite. Arithmetic that overflows ends as inconclusive with the reason.

use canaryd::judge::{
    Aggregate, CheckKind, CheckResult, CheckSpec, CountPoint, Direction, Evidence,
    InconclusiveCause, MAX_EXACT_EVENTS, Point, SideData, SideSummary, ThresholdTest, Verdict,
    judge_check,
};
use proptest::prelude::*;

/// Any number a metric backend or a data file could hand the judge.
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e3..1e3f64,
        2 => 0.0..1e6f64,
        1 => (1e300..f64::MAX).prop_flat_map(|v| prop_oneof![Just(v), Just(-v)]),
        1 => (f64::MIN_POSITIVE / 1e10..1e-300).prop_flat_map(|v| prop_oneof![Just(v), Just(-v)]),
        1 => prop::sample::select(vec![
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
        ]),
        1 => any::<f64>(),
    ]
}

/// A count as a counter increase: ordinary, huge (1e308 sums to inf), NaN or negative.
fn count() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..1e4f64,
        2 => (0u64..50).prop_map(|v| v as f64),
        1 => 1e15..1e17f64,
        1 => 1e300..f64::MAX,
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, -1.0, 0.0, f64::MAX]),
    ]
}

/// Timestamps: mostly one a minute (so the sides pair), sometimes anything.
fn times(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        4 => Just((0..n).map(|i| 1.7e9 + 60.0 * i as f64).collect::<Vec<_>>()),
        1 => prop::collection::vec(number(), n),
    ]
}

fn values() -> impl Strategy<Value = SideData> {
    (0usize..24)
        .prop_flat_map(|n| (times(n), prop::collection::vec(number(), n)))
        .prop_map(|(t, v)| {
            SideData::Values(t.into_iter().zip(v).map(|(t, v)| Point { t, v }).collect())
        })
}

fn counts() -> impl Strategy<Value = SideData> {
    prop::collection::vec((count(), count()), 0..12).prop_map(|pairs| {
        SideData::Counts(
            pairs
                .into_iter()
                .enumerate()
                .map(|(i, (a, b))| CountPoint {
                    t: 60.0 * i as f64,
                    errors: a.min(b),
                    total: a.max(b),
                })
                .collect(),
        )
    })
}

fn kind() -> impl Strategy<Value = CheckKind> {
    let limit =
        prop_oneof![3 => 0.0..2.0f64, 1 => number().prop_filter("finite", |v| v.is_finite())];
    prop_oneof![
        limit
            .clone()
            .prop_map(|t| CheckKind::Relative { tolerance: t.abs() }),
        (
            limit.clone(),
            prop::sample::select(vec![
                Aggregate::Mean,
                Aggregate::Median,
                Aggregate::Min,
                Aggregate::Max,
                Aggregate::Last,
                Aggregate::Quantile(0.99),
            ]),
            any::<bool>()
        )
            .prop_map(|(threshold, aggregate, statistical)| CheckKind::Absolute {
                threshold,
                aggregate,
                // Min, max and last have no test: rule files refuse the combination.
                test: if statistical && aggregate.has_test() {
                    ThresholdTest::Statistical
                } else {
                    ThresholdTest::Observed
                },
            }),
        limit.clone().prop_map(|t| CheckKind::ErrorRate {
            tolerance: t.abs() / 10.0
        }),
        (0.0..1.0f64, any::<bool>()).prop_map(|(threshold, statistical)| {
            CheckKind::ErrorRateAbsolute {
                threshold,
                test: if statistical {
                    ThresholdTest::Statistical
                } else {
                    ThresholdTest::Observed
                },
            }
        }),
        limit.prop_map(|m| CheckKind::Trend {
            max_slope_per_minute: m
        }),
    ]
}

fn spec() -> impl Strategy<Value = CheckSpec> {
    (
        kind(),
        prop::sample::select(vec![
            Direction::HigherIsWorse,
            Direction::LowerIsWorse,
            Direction::Either,
        ]),
        prop::sample::select(vec![0.9, 0.95, 0.99]),
        1usize..6,
    )
        .prop_map(|(kind, direction, confidence, min_samples)| CheckSpec {
            name: "check".into(),
            kind,
            direction,
            confidence,
            min_samples,
        })
}

/// A check with data of the shape its kind needs (and sometimes not).
fn case() -> impl Strategy<Value = (CheckSpec, SideData, SideData)> {
    spec().prop_flat_map(|spec| {
        let data = match spec.kind {
            CheckKind::ErrorRate { .. } | CheckKind::ErrorRateAbsolute { .. } => {
                prop_oneof![9 => counts(), 1 => values()].boxed()
            }
            _ => prop_oneof![9 => values(), 1 => counts()].boxed(),
        };
        (Just(spec), data.clone(), data)
    })
}

/// Every number the evidence reports.
fn evidence_numbers(e: &Evidence) -> Vec<(&'static str, f64)> {
    fn side(s: &SideSummary, out: &mut Vec<(&'static str, f64)>) {
        let named = [
            ("mean", s.mean),
            ("median", s.median),
            ("p90", s.p90),
            ("p99", s.p99),
            ("aggregate", s.aggregate.map(|a| a.value)),
            ("errors", s.errors),
            ("total", s.total),
            ("rate", s.rate),
            ("slope", s.slope_per_minute),
        ];
        out.extend(named.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))));
    }
    let mut out = Vec::new();
    side(&e.baseline, &mut out);
    side(&e.canary, &mut out);
    out.extend(e.p_value.map(|p| ("p-value", p)));
    if let Some(effect) = &e.effect {
        out.push(("difference", effect.difference));
        out.extend(effect.ratio.map(|r| ("ratio", r)));
        if let Some(i) = &effect.interval {
            out.push(("low", i.low));
            out.push(("high", i.high));
        }
    }
    out
}

/// The usable values of a side, as the judge keeps them: finite values in time order (points
/// without a finite time last). Sums are taken in this order, as the judge takes them.
fn usable(data: &SideData) -> Vec<Point> {
    let mut kept: Vec<Point> = match data {
        SideData::Values(p) => p.iter().copied().filter(|p| p.v.is_finite()).collect(),
        SideData::Counts(_) => Vec::new(),
    };
    kept.sort_by(|a, b| match (a.t.is_finite(), b.t.is_finite()) {
        (true, true) => a.t.total_cmp(&b.t),
        (x, y) => y.cmp(&x),
    });
    kept
}

/// Summed usable counts: (errors, total).
fn summed(data: &SideData) -> (f64, f64) {
    match data {
        SideData::Counts(points) => points
            .iter()
            .filter(|p| {
                p.errors.is_finite()
                    && p.total.is_finite()
                    && p.errors >= 0.0
                    && p.total >= 0.0
                    && p.errors <= p.total
            })
            .fold((0.0, 0.0), |(e, t), p| (e + p.errors, t + p.total)),
        SideData::Values(_) => (0.0, 0.0),
    }
}

fn all_finite(values: impl IntoIterator<Item = f64>) -> bool {
    values.into_iter().all(f64::is_finite)
}

/// Whether the numbers a verdict of this kind is computed from are all finite, computed here
/// independently of the judge: sums (means and summed counts), the differences and ratios the
/// relative tests are made of, the pairwise slopes of a trend; for an observed last, min or max,
/// the one value read.
fn path_is_finite(spec: &CheckSpec, baseline: &SideData, canary: &SideData) -> bool {
    let counts_ok = |data: &SideData| {
        let (e, t) = summed(data);
        e.is_finite() && t.is_finite() && t <= MAX_EXACT_EVENTS && (t == 0.0 || (e / t).is_finite())
    };
    let (b, c) = (usable(baseline), usable(canary));
    let sum_ok = |v: &[Point]| v.iter().map(|p| p.v).sum::<f64>().is_finite();
    match spec.kind {
        CheckKind::ErrorRate { .. } => counts_ok(baseline) && counts_ok(canary),
        CheckKind::ErrorRateAbsolute { .. } => counts_ok(canary),
        CheckKind::Relative { .. } => {
            let all: Vec<f64> = b.iter().chain(&c).map(|p| p.v).collect();
            let positive = all.iter().all(|v| *v > 0.0);
            sum_ok(&b)
                && sum_ok(&c)
                && all.iter().all(|x| {
                    all.iter().all(|y| {
                        (x - y).is_finite() && (!positive || ((x / y).is_finite() && x / y > 0.0))
                    })
                })
        }
        // An observed last, min or max reads one of the (finite) values and computes nothing
        // from the others.
        CheckKind::Absolute {
            aggregate: Aggregate::Last | Aggregate::Min | Aggregate::Max,
            test: ThresholdTest::Observed,
            ..
        } => !c.is_empty(),
        CheckKind::Absolute { .. } => {
            let mut v: Vec<f64> = c.iter().map(|p| p.v).collect();
            v.sort_by(f64::total_cmp);
            sum_ok(&c) && all_finite(v.windows(2).map(|w| w[1] - w[0]))
        }
        CheckKind::Trend { .. } => {
            // As the judge: minutes since the first point; when a time is missing, the points
            // are one a minute (a documented fallback, not arithmetic).
            let minutes: Vec<f64> = if c.iter().all(|p| p.t.is_finite()) {
                let t0 = c.first().map_or(0.0, |p| p.t);
                c.iter().map(|p| (p.t - t0) / 60.0).collect()
            } else {
                (0..c.len()).map(|i| i as f64).collect()
            };
            sum_ok(&c)
                && all_finite(minutes.iter().copied())
                && c.iter().zip(&minutes).all(|(p, ti)| {
                    c.iter()
                        .zip(&minutes)
                        .all(|(q, tj)| ti <= tj || ((p.v - q.v) / (ti - tj)).is_finite())
                })
        }
    }
}

fn decided(r: &CheckResult) -> bool {
    matches!(r.verdict, Verdict::Pass | Verdict::Fail)
}

/// The fail-closed promise on one case (see the property below).
fn stands_on_finite_numbers(
    spec: &CheckSpec,
    baseline: &SideData,
    canary: &SideData,
) -> Result<(), TestCaseError> {
    let result = judge_check(spec, baseline, canary);
    if decided(&result) {
        for (name, v) in evidence_numbers(&result.evidence) {
            prop_assert!(
                v.is_finite(),
                "{:?} with {name} = {v}: {}",
                result.verdict,
                result.reason
            );
        }
        prop_assert!(
            path_is_finite(spec, baseline, canary),
            "{:?} although a number on its path is not finite: {}",
            result.verdict,
            result.reason
        );
    }
    if let Verdict::Inconclusive {
        cause: InconclusiveCause::NonFinite,
        reason,
    } = &result.verdict
    {
        prop_assert!(
            reason.starts_with("the error counts overflow: ")
                || reason.starts_with("the values overflow: "),
            "{reason}"
        );
    }
    prop_assert_eq!(
        &result.reason,
        match &result.verdict {
            Verdict::Inconclusive { reason, .. } => reason,
            _ => &result.reason,
        }
    );
    Ok(())
}

/// A case random seeds found once: an observed `last` reads one value, so a last value beyond
/// the threshold fails the canary even when its earlier values span more than f64's range (their
/// differences overflow, and no verdict is computed from them).
#[test]
fn an_observed_last_value_fails_whatever_the_earlier_values_span() {
    let spec = CheckSpec {
        name: "p99".into(),
        kind: CheckKind::Absolute {
            threshold: 0.5,
            aggregate: Aggregate::Last,
            test: ThresholdTest::Observed,
        },
        direction: Direction::HigherIsWorse,
        confidence: 0.99,
        min_samples: 1,
    };
    let values = [-1.7e308, 1.7e308, 1.75e308];
    let canary = SideData::Values(
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| Point {
                t: 60.0 * i as f64,
                v,
            })
            .collect(),
    );
    let baseline = SideData::Values(Vec::new());
    assert_eq!(
        judge_check(&spec, &baseline, &canary).verdict,
        Verdict::Fail
    );
    stands_on_finite_numbers(&spec, &baseline, &canary).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The fail-closed promise, for every kind: a pass or a fail only when every number the
    /// verdict stands on, and every number its evidence reports, is finite.
    #[test]
    fn no_verdict_stands_on_a_number_that_is_not_finite((spec, baseline, canary) in case()) {
        stands_on_finite_numbers(&spec, &baseline, &canary)?;
    }

    /// Counts that overflow when summed are never judged, whatever the other side holds.
    #[test]
    fn overflowing_counts_are_inconclusive(
        (spec, baseline, _) in case().prop_filter("counts kinds", |(s, _, _)| matches!(
            s.kind, CheckKind::ErrorRate { .. } | CheckKind::ErrorRateAbsolute { .. })),
        n in 2usize..6,
    ) {
        let canary = SideData::Counts(
            (0..n).map(|i| CountPoint { t: 60.0 * i as f64, errors: 1e308, total: 1e308 }).collect(),
        );
        let result = judge_check(&spec, &baseline, &canary);
        prop_assert!(!decided(&result), "{:?}: {}", result.verdict, result.reason);
        let overflow = result.verdict.cause() == Some(InconclusiveCause::NonFinite);
        // The error-rate comparison may stop at the baseline first (no data, too few events).
        prop_assert!(
            overflow || matches!(spec.kind, CheckKind::ErrorRate { .. }),
            "{:?}: {}", result.verdict, result.reason
        );
    }
}

/// The judge API on the case: a canary with 100% errors in counts of 1e308.
#[test]
fn a_canary_with_every_request_failing_in_counts_of_1e308_is_not_a_pass() {
    let spec = |kind| CheckSpec {
        name: "errors".into(),
        kind,
        direction: Direction::HigherIsWorse,
        confidence: 0.99,
        min_samples: 100,
    };
    let side = |errors: f64| {
        SideData::Counts(
            (0..3)
                .map(|i| CountPoint {
                    t: 60.0 * f64::from(i),
                    errors,
                    total: 1e308,
                })
                .collect(),
        )
    };
    for kind in [
        CheckKind::ErrorRate { tolerance: 0.001 },
        CheckKind::ErrorRateAbsolute {
            threshold: 0.01,
            test: ThresholdTest::Observed,
        },
        CheckKind::ErrorRateAbsolute {
            threshold: 0.01,
            test: ThresholdTest::Statistical,
        },
    ] {
        let result = judge_check(&spec(kind.clone()), &side(0.0), &side(1e308));
        assert_eq!(
            result.verdict.cause(),
            Some(InconclusiveCause::NonFinite),
            "{kind:?}: {}",
            result.reason
        );
        assert!(
            result
                .reason
                .starts_with("the error counts overflow: the baseline's summed total is inf")
                || result
                    .reason
                    .starts_with("the error counts overflow: the canary's summed total is inf"),
            "{}",
            result.reason
        );
    }
}
