//! Criterion benchmarks for the statistics engine: the speed targets of the Mann-Whitney,
//! Hodges-Lehmann and Fisher implementations and the trend estimators. Run with
//! `cargo bench --bench stats -- --quick` (`-- trend` for the trend estimators only).

use std::hint::black_box;
use std::time::Duration;

use canaryd::stats::{
    Alternative, MwMethod, fisher_exact, hodges_lehmann_ci, mann_kendall, mann_whitney_u, theil_sen,
};
use criterion::{Criterion, criterion_group, criterion_main};

/// Deterministic normal samples (SplitMix64 + Box-Muller), so runs are comparable.
fn normal_sample(seed: u64, len: usize, mean: f64) -> Vec<f64> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..len)
        .map(|_| {
            let (u1, u2) = (next().max(f64::MIN_POSITIVE), next());
            mean + (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect()
}

fn mann_whitney(c: &mut Criterion) {
    let mut g = c.benchmark_group("mann_whitney");
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    for n in [10_000usize, 1_000_000] {
        let x = normal_sample(1, n, 0.0);
        let y = normal_sample(2, n, 0.01);
        g.bench_function(format!("asymptotic {n} vs {n}"), |b| {
            b.iter(|| {
                mann_whitney_u(
                    black_box(&x),
                    black_box(&y),
                    Alternative::TwoSided,
                    MwMethod::Asymptotic,
                    true,
                )
            })
        });
    }
    let x = normal_sample(3, 50, 0.0);
    let y = normal_sample(4, 50, 0.3);
    g.bench_function("exact 50 vs 50", |b| {
        b.iter(|| {
            mann_whitney_u(
                black_box(&x),
                black_box(&y),
                Alternative::TwoSided,
                MwMethod::Exact,
                true,
            )
        })
    });
    g.finish();
}

fn hodges_lehmann(c: &mut Criterion) {
    let mut g = c.benchmark_group("hodges_lehmann");
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(10);
    let x = normal_sample(5, 100_000, 0.0);
    let y = normal_sample(6, 100_000, 0.05);
    g.bench_function("with 99% CI 100k vs 100k", |b| {
        b.iter(|| hodges_lehmann_ci(black_box(&x), black_box(&y), 0.99))
    });
    g.finish();
}

fn fisher(c: &mut Criterion) {
    let mut g = c.benchmark_group("fisher_exact");
    g.measurement_time(Duration::from_secs(2));
    g.bench_function("two-sided [[2600,997400],[2500,997500]]", |b| {
        b.iter(|| {
            fisher_exact(
                black_box([[2600, 997_400], [2500, 997_500]]),
                Alternative::TwoSided,
            )
        })
    });
    g.bench_function("greater [[8,92],[2530,47470]]", |b| {
        b.iter(|| fisher_exact(black_box([[8, 92], [2530, 47_470]]), Alternative::Greater))
    });
    g.finish();
}

/// The trend check's estimators (issue 16, point 8): Theil-Sen's slope with its interval and
/// Mann-Kendall's test, at the judge's cap (20,000 points) and at a million. A memory series
/// growing with noise and ties (values rounded to whole kilobytes), one point a minute.
fn trend(c: &mut Criterion) {
    let mut g = c.benchmark_group("trend");
    g.sample_size(10);
    for n in [20_000usize, 1_000_000] {
        g.measurement_time(Duration::from_secs(if n > 100_000 { 60 } else { 10 }));
        let t: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let y: Vec<f64> = normal_sample(7, n, 0.0)
            .into_iter()
            .enumerate()
            .map(|(i, e)| (2e6 + 0.5 * i as f64 + 50.0 * e).round())
            .collect();
        g.bench_function(format!("theil_sen {n}"), |b| {
            b.iter(|| theil_sen(black_box(&t), black_box(&y), 0.99))
        });
        g.bench_function(format!("mann_kendall {n}"), |b| {
            b.iter(|| mann_kendall(black_box(&t), black_box(&y), Alternative::Greater))
        });
    }
    g.finish();
}

criterion_group!(benches, mann_whitney, hodges_lehmann, fisher, trend);
criterion_main!(benches);
