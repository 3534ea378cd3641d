//! How long `canaryd replay` takes to decide a whole rollout: the shipped `checkout-api` plan
//! (7 stages, 9 checks, an analysis every 2 minutes: about 110 analyses over 3 h 40 min) over
//! in-memory recorded data, healthy (it succeeds) and with the canary's errors at 5% from the
//! start of the 25% stage (the critical error-rate check rolls it back), through the library
//! function `canaryd::replay::replay` as the whole-rollout benchmark drives it. Reports the
//! median and the slowest of the runs, per replay and per analysis.
//!
//! Run: `cargo bench --bench replay --profile dev` (add `-- --runs N`; default 20). The
//! decisions do not depend on the profile; the times do (a release build is several times
//! faster).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use canaryd::judge::Point;
use canaryd::replay::{Options, replay};
use canaryd::rules::{KnownNames, Queries, Side, parse_rule};
use canaryd::sim::Rng;
use canaryd::source::RecordedSource;
use chrono::DateTime;

/// 2026-03-01T10:00:00Z.
const START: i64 = 1_772_359_200;

fn main() {
    let runs = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20usize);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/checkout-api.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let rule = parse_rule(&path, &text, &KnownNames::any()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = Options {
        start: DateTime::from_timestamp(START, 0).unwrap(),
        end: DateTime::from_timestamp(START + 6 * 3600, 0).unwrap(),
        approve: true,
        judging: Default::default(),
    };
    println!("| canary | phase | analyses | median per replay | slowest | per analysis |");
    println!("|---|---|---|---|---|---|");
    for (label, bad_from) in [
        ("healthy", None),
        ("errors 5% from 10:40", Some(START + 40 * 60)),
    ] {
        let source = Arc::new(recording(&rule, bad_from));
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..runs {
            let began = Instant::now();
            let replayed = runtime
                .block_on(replay(&rule, source.clone(), &options))
                .unwrap();
            times.push(began.elapsed().as_secs_f64() * 1e3);
            last = Some(replayed);
        }
        times.sort_by(f64::total_cmp);
        let replayed = last.unwrap();
        let median = times[times.len() / 2];
        println!(
            "| {label} | {} | {} | {median:.1} ms | {:.1} ms | {:.2} ms |",
            replayed.phase,
            replayed.analyses,
            times[times.len() - 1],
            median / replayed.analyses.max(1) as f64,
        );
    }
}

/// Six hours from an hour before the start, a point every 30 s for each query of each check:
/// latencies about 0.3 s (2% noise), memory about 1 GB, a flat queue, 1,000 requests per step with
/// errors drawn at 0.05% (at 5% on the canary from `bad_from` on).
fn recording(rule: &canaryd::rules::RolloutRule, bad_from: Option<i64>) -> RecordedSource {
    let mut source = RecordedSource::new(rule.source.clone());
    let mut rng = Rng::new(7);
    for check in &rule.checks {
        for side in [Side::Baseline, Side::Canary] {
            let parts = match check.queries {
                Queries::Values { .. } => 1,
                Queries::Counts { .. } => 2,
            };
            for part in 0..parts {
                let query = check.render_part(&rule.sides, side, part);
                if source.get(&query).is_some() {
                    continue;
                }
                let points = (START - 3600..=START + 6 * 3600)
                    .step_by(30)
                    .map(|t| {
                        let bad = side == Side::Canary && bad_from.is_some_and(|from| t >= from);
                        let v = match (part, &check.queries) {
                            (1, _) => 1000.0,
                            (_, Queries::Counts { .. }) => {
                                let rate = if bad { 0.05 } else { 0.0005 };
                                (0..1000).filter(|_| rng.uniform() < rate).count() as f64
                            }
                            _ if query.contains("memory") => 1e9 * (1.0 + 0.01 * rng.normal()),
                            _ if query.contains("queue") => 5.0 + rng.normal(),
                            _ => 0.3 * (1.0 + 0.02 * rng.normal()),
                        };
                        Point { t: t as f64, v }
                    })
                    .collect();
                source.insert(query, points);
            }
        }
    }
    source
}
