//! Criterion benchmarks of a whole analysis, judged together (`judge_analysis` with Holm's
//! correction) and scored, with 60 one-minute points per side: the daemon's typical rule of 10
//! checks (1 absolute max, 7 paired relative, 2 error-rate), and a wider rule of 20 checks of
//! every kind. Target: the judge well under 100 µs for the 10-check rule. Run:
//! `cargo bench --bench judge -- --quick`.

use canaryd::judge::{
    Aggregate, CheckKind, CheckSpec, CountPoint, Direction, FamilyControl, Point, ScoredCheck,
    Scoring, SideData, ThresholdTest, judge_analysis, score_analysis,
};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const POINTS: usize = 60;

/// Deterministic pseudo-noise in [-1, 1) (splitmix64), so the data look like real series.
fn noise(seed: u64, i: usize) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

fn series(seed: u64, level: f64) -> SideData {
    SideData::Values(
        (0..POINTS)
            .map(|i| Point {
                t: 1.7e9 + 60.0 * i as f64,
                v: level * (1.0 + 0.3 * (i as f64 / 6.0).sin()) * (1.0 + 0.1 * noise(seed, i)),
            })
            .collect(),
    )
}

fn counts(seed: u64, rate: f64) -> SideData {
    SideData::Counts(
        (0..POINTS)
            .map(|i| CountPoint {
                t: 1.7e9 + 60.0 * i as f64,
                errors: (500.0 * rate * (1.0 + noise(seed, i))).round(),
                total: 500.0,
            })
            .collect(),
    )
}

type Check = (CheckSpec, SideData, SideData, String);

fn spec(name: String, kind: CheckKind) -> CheckSpec {
    CheckSpec {
        name: name.into(),
        kind,
        direction: Direction::HigherIsWorse,
        confidence: 0.99,
        min_samples: 10,
    }
}

/// The daemon's typical rule: 1 absolute max, 7 relative checks judged paired, 2 error rates.
fn typical_analysis() -> Vec<Check> {
    let mut checks = Vec::new();
    let kind = CheckKind::Absolute {
        threshold: 150.0,
        aggregate: Aggregate::Max,
        test: ThresholdTest::Observed,
    };
    checks.push((
        spec("latency-max".into(), kind),
        series(500, 100.0),
        series(501, 100.0),
        "latency".into(),
    ));
    for i in 0..7u64 {
        let kind = CheckKind::Relative { tolerance: 0.05 };
        let level = if i % 3 == 0 { 110.0 } else { 100.0 };
        checks.push((
            spec(format!("latency-{i}"), kind),
            series(600 + i, 100.0),
            series(700 + i, level),
            "latency".into(),
        ));
    }
    for i in 0..2u64 {
        let kind = CheckKind::ErrorRate { tolerance: 0.001 };
        checks.push((
            spec(format!("errors-{i}"), kind),
            counts(800 + i, 0.005),
            counts(900 + i, 0.006),
            "errors".into(),
        ));
    }
    checks
}

/// A wide rule of 20 checks of every kind.
fn analysis() -> Vec<Check> {
    let mut checks = Vec::new();
    for i in 0..12u64 {
        let kind = CheckKind::Relative { tolerance: 0.05 };
        let level = if i % 4 == 0 { 110.0 } else { 100.0 };
        checks.push((
            spec(format!("latency-{i}"), kind),
            series(i, 100.0),
            series(100 + i, level),
            "latency".into(),
        ));
    }
    for i in 0..4u64 {
        let kind = CheckKind::ErrorRate { tolerance: 0.001 };
        checks.push((
            spec(format!("errors-{i}"), kind),
            counts(i, 0.005),
            counts(50 + i, 0.006),
            "errors".into(),
        ));
    }
    for i in 0..2u64 {
        let kind = CheckKind::Absolute {
            threshold: 150.0,
            aggregate: Aggregate::Quantile(0.99),
            test: ThresholdTest::Observed,
        };
        checks.push((
            spec(format!("slo-{i}"), kind),
            series(200 + i, 100.0),
            series(300 + i, 100.0),
            "latency".into(),
        ));
    }
    let kind = CheckKind::ErrorRateAbsolute {
        threshold: 0.01,
        test: ThresholdTest::Observed,
    };
    checks.push((
        spec("error-slo".into(), kind),
        counts(7, 0.005),
        counts(8, 0.005),
        "errors".into(),
    ));
    let kind = CheckKind::Trend {
        max_slope_per_minute: 1.0,
    };
    checks.push((
        spec("memory".into(), kind),
        series(400, 512.0),
        series(401, 512.0),
        "saturation".into(),
    ));
    checks
}

fn bench(c: &mut Criterion) {
    let typical = typical_analysis();
    assert_eq!(typical.len(), 10);
    bench_analysis(
        c,
        "analysis of 10 checks (7 paired), 60 points per side",
        &typical,
    );
    let checks = analysis();
    assert_eq!(checks.len(), 20);
    bench_analysis(c, "analysis of 20 checks, 60 points per side", &checks);
}

fn bench_analysis(c: &mut Criterion, name: &str, checks: &[Check]) {
    let scoring = Scoring {
        group_weights: [("latency", 50.0), ("errors", 40.0), ("saturation", 10.0)]
            .into_iter()
            .map(|(g, w)| (g.to_string(), w))
            .collect(),
        pass_score: 95.0,
        marginal_score: 75.0,
    };
    c.bench_function(name, |b| {
        b.iter(|| {
            let family: Vec<(&CheckSpec, &SideData, &SideData)> = checks
                .iter()
                .map(|(spec, base, canary, _)| (spec, base, canary))
                .collect();
            let results = judge_analysis(black_box(&family), FamilyControl::Holm);
            let scored: Vec<ScoredCheck> = results
                .iter()
                .zip(checks)
                .map(|(r, (spec, _, _, group))| {
                    ScoredCheck::new(r, group.clone(), &*spec.name == "error-slo")
                })
                .collect();
            score_analysis(&scored, &scoring)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
