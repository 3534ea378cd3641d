//! Criterion benchmark of a whole analysis: 20 checks with 60 one-minute points per side, judged
//! together (`judge_analysis` with Holm's correction) and scored. Target: ≤ 1 ms per analysis. Run: `cargo bench --bench judge`.

use canaryd::judge::{
    Aggregate, CheckKind, CheckSpec, CountPoint, Direction, FamilyControl, Point, ScoredCheck,
    Scoring, SideData, judge_analysis, score_analysis,
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

fn analysis() -> Vec<(CheckSpec, SideData, SideData, String)> {
    let mut checks = Vec::new();
    let spec = |name: String, kind| CheckSpec {
        name,
        kind,
        direction: Direction::HigherIsWorse,
        confidence: 0.99,
        min_samples: 10,
    };
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
        };
        checks.push((
            spec(format!("slo-{i}"), kind),
            series(200 + i, 100.0),
            series(300 + i, 100.0),
            "latency".into(),
        ));
    }
    let kind = CheckKind::ErrorRateAbsolute { threshold: 0.01 };
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
    let checks = analysis();
    assert_eq!(checks.len(), 20);
    let scoring = Scoring {
        group_weights: [("latency", 50.0), ("errors", 40.0), ("saturation", 10.0)]
            .into_iter()
            .map(|(g, w)| (g.to_string(), w))
            .collect(),
        pass_score: 95.0,
        marginal_score: 75.0,
    };
    c.bench_function("analysis of 20 checks, 60 points per side", |b| {
        b.iter(|| {
            let family: Vec<(&CheckSpec, &SideData, &SideData)> = checks
                .iter()
                .map(|(spec, base, canary, _)| (spec, base, canary))
                .collect();
            let results = judge_analysis(black_box(&family), FamilyControl::Holm);
            let scored: Vec<ScoredCheck> = results
                .iter()
                .zip(&checks)
                .map(|(r, (spec, _, _, group))| {
                    ScoredCheck::new(r, group.clone(), spec.name == "error-slo")
                })
                .collect();
            score_analysis(&scored, &scoring)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
