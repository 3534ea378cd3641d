//! Tables of cases for the judge's rules and the analysis score.

use super::*;

/// splitmix64 with Box-Muller: deterministic noise for test data (also used by `family`'s tests).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(super) fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub(super) fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn spec(kind: CheckKind, direction: Direction, min_samples: usize) -> CheckSpec {
    CheckSpec {
        name: "latency".into(),
        kind,
        direction,
        confidence: 0.99,
        min_samples,
    }
}

fn relative(tolerance: f64, direction: Direction) -> CheckSpec {
    spec(CheckKind::Relative { tolerance }, direction, 10)
}

/// One point per minute starting at t = 0, values from `f(minute)`.
fn series(n: usize, mut f: impl FnMut(usize) -> f64) -> SideData {
    SideData::Values(
        (0..n)
            .map(|i| Point {
                t: 60.0 * i as f64,
                v: f(i),
            })
            .collect(),
    )
}

/// Positive noisy series around `level` with multiplicative noise `sigma`.
fn noisy(n: usize, level: f64, sigma: f64, seed: u64) -> SideData {
    let mut rng = Rng(seed);
    series(n, |_| level * (sigma * rng.normal()).exp())
}

fn counts(n: usize, errors_per_point: f64, total_per_point: f64) -> SideData {
    SideData::Counts(
        (0..n)
            .map(|i| CountPoint {
                t: 60.0 * i as f64,
                errors: errors_per_point,
                total: total_per_point,
            })
            .collect(),
    )
}

fn is_inconclusive(r: &CheckResult) -> bool {
    matches!(r.verdict, Verdict::Inconclusive { .. })
}

#[test]
fn thin_data_is_inconclusive_never_pass() {
    let s = relative(0.05, Direction::HigherIsWorse);
    // Even when the few points there are look perfectly healthy.
    let cases = [
        (
            noisy(5, 100.0, 0.01, 1),
            noisy(30, 100.0, 0.01, 2),
            "the baseline has 5, needs at least 10",
        ),
        (
            noisy(30, 100.0, 0.01, 1),
            noisy(9, 100.0, 0.01, 2),
            "the canary has 9, needs at least 10",
        ),
    ];
    for (b, c, why) in cases {
        let r = judge_check(&s, &b, &c);
        assert!(is_inconclusive(&r), "{r:?}");
        assert!(r.reason.contains(why), "{}", r.reason);
    }
    // min_samples below the floor of 3 still needs 3 points.
    let s0 = spec(
        CheckKind::Relative { tolerance: 0.05 },
        Direction::HigherIsWorse,
        0,
    );
    let r = judge_check(&s0, &noisy(2, 1.0, 0.1, 1), &noisy(2, 1.0, 0.1, 2));
    assert!(r.reason.contains("needs at least 3"), "{}", r.reason);
    // Counts: fewer events than min_samples.
    let s = spec(
        CheckKind::ErrorRate { tolerance: 0.001 },
        Direction::HigherIsWorse,
        1000,
    );
    let r = judge_check(&s, &counts(10, 0.0, 50.0), &counts(10, 0.0, 200.0));
    assert!(is_inconclusive(&r));
    assert_eq!(
        r.reason,
        "too few events: the baseline has 500, needs at least 1000"
    );
}

#[test]
fn nan_only_is_no_data_with_the_dropped_count() {
    let s = relative(0.05, Direction::HigherIsWorse);
    let nan = series(4, |i| if i % 2 == 0 { f64::NAN } else { f64::INFINITY });
    let r = judge_check(&s, &noisy(30, 1.0, 0.1, 1), &nan);
    assert!(is_inconclusive(&r));
    assert_eq!(
        r.reason,
        "no data: the canary has no usable points (4 dropped as NaN/inf)"
    );
    assert_eq!(r.evidence.canary.dropped, 4);
    let r = judge_check(&s, &SideData::Values(vec![]), &noisy(30, 1.0, 0.1, 1));
    assert_eq!(r.reason, "no data: the baseline has no points");
    // Counts: NaN counts are dropped too.
    let s = spec(
        CheckKind::ErrorRate { tolerance: 0.001 },
        Direction::HigherIsWorse,
        100,
    );
    let r = judge_check(&s, &counts(5, f64::NAN, 100.0), &counts(5, 1.0, 100.0));
    assert!(
        r.reason
            .starts_with("no data: the baseline has no events (5 points dropped"),
        "{}",
        r.reason
    );
}

#[test]
fn some_nan_points_are_dropped_and_counted_but_the_rest_is_judged() {
    let s = relative(0.05, Direction::HigherIsWorse);
    let mut rng = Rng(9);
    let c = series(30, |i| {
        if i < 3 {
            f64::NAN
        } else {
            100.0 * (0.05 * rng.normal()).exp()
        }
    });
    let r = judge_check(&s, &noisy(30, 100.0, 0.05, 8), &c);
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    assert_eq!(
        (r.evidence.canary.points, r.evidence.canary.dropped),
        (27, 3)
    );
}

/// A traffic wave of ±40% seen by both sides, 2% independent noise, canary 10% slower.
fn load_wave(seed: u64, canary_offset_seconds: f64) -> (SideData, SideData) {
    let mut rng = Rng(seed);
    let wave = |i: usize| 1.0 + 0.4 * (2.0 * std::f64::consts::PI * i as f64 / 15.0).sin();
    let mut b = Vec::new();
    let mut c = Vec::new();
    for i in 0..30 {
        let t = 60.0 * i as f64;
        b.push(Point {
            t,
            v: 200.0 * wave(i) * (0.02 * rng.normal()).exp(),
        });
        c.push(Point {
            t: t + canary_offset_seconds,
            v: 220.0 * wave(i) * (0.02 * rng.normal()).exp(),
        });
    }
    (SideData::Values(b), SideData::Values(c))
}

#[test]
fn shared_load_wave_paired_detects_ten_percent_that_unpaired_misses() {
    let s = relative(0.05, Direction::HigherIsWorse);
    let (b, c) = load_wave(42, 0.0);
    let paired = judge_check(&s, &b, &c);
    assert_eq!(paired.verdict, Verdict::Fail, "{}", paired.reason);
    assert_eq!(
        paired.evidence.comparison.as_deref(),
        Some("paired log-ratio by timestamp, 30 pairs")
    );
    let ratio = paired.evidence.effect.and_then(|e| e.ratio).unwrap();
    assert!((ratio - 1.10).abs() < 0.02, "{ratio}");
    // The same values 30 s apart cannot be paired: the wave swamps the shift.
    let (b, c) = load_wave(42, 30.0);
    let unpaired = judge_check(&s, &b, &c);
    assert_eq!(unpaired.verdict, Verdict::Pass, "{}", unpaired.reason);
    let cmp = unpaired.evidence.comparison.unwrap();
    assert!(
        cmp.starts_with("Hodges-Lehmann shift + Mann-Whitney, unpaired"),
        "{cmp}"
    );
    assert!(unpaired.evidence.p_value.unwrap() > 0.01);
}

#[test]
fn small_jitter_in_timestamps_still_pairs() {
    let s = relative(0.05, Direction::HigherIsWorse);
    let (b, c) = load_wave(7, 0.4);
    let r = judge_check(&s, &b, &c);
    assert!(r.evidence.comparison.unwrap().starts_with("paired"));
}

#[test]
fn verdict_table_for_relative_checks() {
    use Direction::*;
    // (canary level vs baseline 100, noise, tolerance, direction, expected)
    let cases = [
        // significant but within tolerance → pass
        (
            103.0,
            0.01,
            0.05,
            HigherIsWorse,
            Verdict::Pass,
            "within the 5.0% tolerance",
        ),
        // significant and beyond tolerance → fail
        (
            120.0,
            0.02,
            0.05,
            HigherIsWorse,
            Verdict::Fail,
            "beyond the 5.0% tolerance above baseline",
        ),
        // beyond tolerance but too noisy to be significant → pass
        (
            108.0,
            0.60,
            0.05,
            HigherIsWorse,
            Verdict::Pass,
            "no significant difference",
        ),
        // better in the direction that is good → pass
        (
            80.0,
            0.02,
            0.05,
            HigherIsWorse,
            Verdict::Pass,
            "no significant difference",
        ),
        (
            80.0,
            0.02,
            0.05,
            LowerIsWorse,
            Verdict::Fail,
            "below baseline",
        ),
        (
            120.0,
            0.02,
            0.05,
            LowerIsWorse,
            Verdict::Pass,
            "no significant difference",
        ),
        (
            80.0,
            0.02,
            0.05,
            Either,
            Verdict::Fail,
            "away from baseline",
        ),
        (
            120.0,
            0.02,
            0.05,
            Either,
            Verdict::Fail,
            "away from baseline",
        ),
        (101.0, 0.02, 0.05, Either, Verdict::Pass, ""),
    ];
    for (i, (level, sigma, tol, dir, want, words)) in cases.into_iter().enumerate() {
        let s = relative(tol, dir);
        let b = noisy(30, 100.0, sigma, 100 + i as u64);
        let c = noisy(30, level, sigma, 200 + i as u64);
        let r = judge_check(&s, &b, &c);
        assert_eq!(r.verdict, want, "case {i}: {}", r.reason);
        assert!(r.reason.contains(words), "case {i}: {}", r.reason);
        if want == Verdict::Fail {
            assert!(r.evidence.p_value.unwrap() < 0.01);
        }
    }
    // "Significant but within tolerance" really was significant.
    let r = judge_check(
        &relative(0.05, HigherIsWorse),
        &noisy(30, 100.0, 0.01, 100),
        &noisy(30, 103.0, 0.01, 200),
    );
    assert!(r.evidence.p_value.unwrap() < 1e-4);
}

#[test]
fn unpaired_values_without_timestamps_use_rank_tests() {
    let s = relative(0.05, Direction::HigherIsWorse);
    let mut rng = Rng(5);
    let nan_t = |level: f64, rng: &mut Rng| {
        SideData::Values(
            (0..40)
                .map(|_| Point {
                    t: f64::NAN,
                    v: level * (0.05 * rng.normal()).exp(),
                })
                .collect(),
        )
    };
    let b = nan_t(100.0, &mut rng);
    let c = nan_t(125.0, &mut rng);
    let r = judge_check(&s, &b, &c);
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    assert!(
        r.evidence
            .comparison
            .unwrap()
            .contains("unpaired, 40 vs 40 points (0 of 40 timestamps matched)")
    );
    let e = r.evidence.effect.unwrap();
    assert!((e.ratio.unwrap() - 1.25).abs() < 0.04, "{e:?}");
    assert!(e.difference > 15.0 && e.difference < 35.0, "{e:?}");
    let i = e.interval.unwrap();
    assert!(i.low < e.ratio.unwrap() && e.ratio.unwrap() < i.high);
}

#[test]
fn values_not_all_positive_compare_differences() {
    let s = relative(0.10, Direction::HigherIsWorse);
    let mut rng = Rng(3);
    let b = series(30, |_| 10.0 + rng.normal());
    let c = series(30, |i| if i == 0 { -1.0 } else { 14.0 + rng.normal() });
    let r = judge_check(&s, &b, &c);
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    assert!(
        r.evidence
            .comparison
            .unwrap()
            .starts_with("paired difference by timestamp")
    );
    assert_eq!(
        r.evidence.effect.unwrap().interval.unwrap().scale,
        IntervalScale::Difference
    );
}

#[test]
fn identical_sides_pass() {
    let s = relative(0.05, Direction::Either);
    let b = noisy(30, 100.0, 0.1, 1);
    let r = judge_check(&s, &b, &b.clone());
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(r.evidence.p_value, Some(1.0));
}

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

#[test]
fn wrong_data_shape_and_bad_settings_are_inconclusive() {
    let s = spec(
        CheckKind::ErrorRate { tolerance: 0.001 },
        Direction::HigherIsWorse,
        10,
    );
    let r = judge_check(&s, &noisy(30, 1.0, 0.1, 1), &noisy(30, 1.0, 0.1, 2));
    assert!(is_inconclusive(&r));
    assert!(
        r.reason.contains("needs counts (errors, total)"),
        "{}",
        r.reason
    );
    let mut s = relative(0.05, Direction::HigherIsWorse);
    s.confidence = 1.0;
    let r = judge_check(&s, &noisy(30, 1.0, 0.1, 1), &noisy(30, 1.0, 0.1, 2));
    assert!(is_inconclusive(&r));
    assert!(r.reason.contains("confidence"));
}

#[test]
fn evidence_serialises_with_the_fields_reports_need() {
    let s = relative(0.05, Direction::HigherIsWorse);
    let (b, c) = load_wave(1, 0.0);
    let r = judge_check(&s, &b, &c);
    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "baseline",
        "canary",
        "effect",
        "p_value",
        "test",
        "comparison",
        "thresholds",
    ] {
        assert!(json["evidence"].get(key).is_some(), "missing {key}: {json}");
    }
    assert_eq!(json["verdict"]["outcome"], "fail");
    assert_eq!(json["evidence"]["thresholds"]["tolerance"], 0.05);
    assert!(json["evidence"]["baseline"]["p99"].is_number());
    let back: CheckResult = serde_json::from_value(json).unwrap();
    assert_eq!(back.verdict, r.verdict);
}

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

#[test]
fn recorded_results_read_back_exactly_and_unbounded_numbers_as_nan() {
    // Notifications made after a restart read the newest analysis's results back from the
    // store: every number must come back bit for bit.
    let b = noisy(30, 100.0, 7.3, 11);
    let c = noisy(30, 103.1, 7.9, 12);
    let mut results = vec![
        judge_check(&relative(0.05, Direction::HigherIsWorse), &b, &c),
        judge_check(
            &spec(
                CheckKind::ErrorRate { tolerance: 0.001 },
                Direction::HigherIsWorse,
                100,
            ),
            &counts(30, 1.3, 977.0),
            &counts(30, 2.9, 1013.0),
        ),
    ];
    let json = serde_json::to_string(&results).unwrap();
    let back: Vec<CheckResult> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, results);
    // JSON has no NaN or infinity (serde_json writes null): such a number reads back as NaN
    // instead of making the whole record unreadable.
    let effect = results[0].evidence.effect.as_mut().unwrap();
    effect.difference = f64::NAN;
    if let Some(interval) = effect.interval.as_mut() {
        interval.low = f64::NEG_INFINITY;
    }
    let json = serde_json::to_string(&results).unwrap();
    let back: Vec<CheckResult> = serde_json::from_str(&json).unwrap();
    let effect = back[0].evidence.effect.unwrap();
    assert!(effect.difference.is_nan());
    assert!(
        effect
            .interval
            .is_some_and(|i| i.low.is_nan() && i.high.is_finite())
    );
}
