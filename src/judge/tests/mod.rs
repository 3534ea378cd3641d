//! Tables of cases for the judge's rules and the analysis score: the rules every kind shares
//! (thin data, NaN, wrong shapes and settings, evidence that reads back) here, each kind's own
//! in the file named after it, and the score in `scoring`. The helpers here build specs and data.

use super::*;

mod absolute;
mod error_rate;
mod error_rate_absolute;
mod relative;
mod scoring;
mod trend;

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
    let s = relative(0.20, Direction::HigherIsWorse);
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
