//! The state database's size over a week of analyses, with and without retention (issue 20
//! point 4), in compressed time: the analyses of 10 rollouts every 10 s are written through the
//! store's own API (`commit_step`, each with ~20 kB of evidence and its "analysis recorded"
//! audit line, like the daemon's), runs of 4 hours with a stage advanced every hour, and a
//! prune every 10 minutes of simulated time with the default `[retention]`. The clock is the
//! simulation's, so a week takes minutes.
//!
//! `cargo bench --bench retention` (a week with retention, then two hours without to measure
//! the bytes per analysis); options: `--days N`, `--rollouts N`, `--every SECONDS`,
//! `--dir PATH` (default: a directory in /dev/shm, so fsync costs nothing: the size does not
//! depend on it).

use std::path::PathBuf;
use std::time::Instant;

use canaryd::config::RetentionConfig;
use canaryd::store::{NewAnalysis, NewAudit, NewRun, Retention, Step, Store};
use chrono::{DateTime, Utc};

const RUN: i64 = 4 * 3600;
const STAGE: i64 = 3600;
const PRUNE_EVERY: i64 = 600;

struct Options {
    days: f64,
    rollouts: usize,
    every: i64,
    dir: PathBuf,
}

fn options() -> Options {
    let mut o = Options {
        days: 7.0,
        rollouts: 10,
        every: 10,
        dir: if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        }
        .join(format!("canaryd-retention-bench-{}", std::process::id())),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--days" => o.days = value.parse().expect("--days N"),
            "--rollouts" => o.rollouts = value.parse().expect("--rollouts N"),
            "--every" => o.every = value.parse().expect("--every SECONDS"),
            "--dir" => o.dir = PathBuf::from(value),
            // `cargo bench` passes `--bench`.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// A small deterministic generator for the evidence's numbers.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Evidence shaped like the judge's: 8 checks, each with both sides' summaries and their chart
/// lines over the window (30 points a side): about 20 kB of JSON, as the issue measured.
fn evidence(rng: &mut Lcg) -> Box<serde_json::value::RawValue> {
    let mut line = |base: f64| -> Vec<[f64; 2]> {
        (0..30)
            .map(|i| [1.7e9 + f64::from(i) * 10.0, base + rng.next() * base * 0.1])
            .collect()
    };
    let checks: Vec<serde_json::Value> = (0..8)
        .map(|c| {
            let base = 0.1 * f64::from(c + 1);
            serde_json::json!({
                "name": format!("check-{c}"),
                "verdict": {"outcome": "pass"},
                "reason": "the canary's p99 latency is within 10% of the baseline's",
                "evidence": {
                    "baseline": {"n": 3000, "mean": base, "median": base, "p99": base * 1.9},
                    "canary": {"n": 310, "mean": base * 1.01, "median": base, "p99": base * 2.0},
                    "effect": {"kind": "relative", "value": 0.0123, "ci": [-0.02, 0.04]},
                    "p_value": 0.41,
                    "baseline_line": line(base),
                    "canary_line": line(base * 1.01),
                }
            })
        })
        .collect();
    serde_json::value::to_raw_value(&serde_json::json!({ "checks": checks, "score": 1.0 })).unwrap()
}

fn audit(action: &str, reason: String) -> NewAudit {
    NewAudit {
        action: action.to_string(),
        previous_weight: Some(10),
        new_weight: Some(10),
        reason,
        triggered_by: "schedule".to_string(),
    }
}

/// Writes `seconds` of analyses of every rollout from `start`, pruning every 10 minutes with
/// `policy` when given; returns the analyses written.
fn simulate(
    store: &Store,
    o: &Options,
    start: DateTime<Utc>,
    seconds: i64,
    policy: Option<&Retention>,
) -> u64 {
    let mut rng = Lcg(42);
    let mut written = 0;
    let started = Instant::now();
    let names: Vec<String> = (0..o.rollouts).map(|r| format!("rollout-{r:02}")).collect();
    let mut t = 0;
    while t < seconds {
        let at = start + chrono::Duration::seconds(t);
        for (r, name) in names.iter().enumerate() {
            // Each rollout's runs are offset so their decisions do not all fall together.
            let local = t + r as i64 * 600;
            let run = (local / RUN + 1) as u32;
            let in_run = local % RUN;
            let state = serde_json::json!({
                "phase": {"progressing": {"stage": in_run / STAGE}},
                "weight": 10, "passes": 3, "inconclusive_streak": 0,
                "run": {"number": run, "canary": format!("v{run}")},
            });
            let mut step = Step::new(name, &state, "0123456789abcdef", at);
            step.run = run;
            if in_run < o.every || t == 0 {
                step.run_started = Some(NewRun {
                    canary: format!("v{run}"),
                    started_by: "schedule".into(),
                });
            }
            step.audit.push(audit(
                "analysis-recorded",
                "analysis Pass; 3 of 3 passes, 0 inconclusive in a row".to_string(),
            ));
            if in_run % STAGE < o.every && in_run > 0 {
                step.audit.push(audit(
                    "stage-advanced",
                    format!("stage {} passed: 3 of 3 passes", in_run / STAGE),
                ));
            }
            step.analysis = Some(NewAnalysis {
                outcome: "pass".into(),
                score: Some(1.0),
                evidence: evidence(&mut rng),
                kept: None,
            });
            store.commit_step(&step).expect("commit");
            written += 1;
        }
        t += o.every;
        if let Some(policy) = policy
            && t % PRUNE_EVERY == 0
        {
            let now = start + chrono::Duration::seconds(t);
            let current: Vec<(String, u32)> = names
                .iter()
                .enumerate()
                .map(|(r, n)| (n.clone(), ((t + r as i64 * 600) / RUN + 1) as u32))
                .collect();
            store
                .prune(policy, now, &|rollout, run| {
                    current.iter().any(|(n, c)| n == rollout && *c == run)
                })
                .expect("prune");
        }
        if t % 86_400 == 0 {
            let size = store.size().unwrap();
            eprintln!(
                "  day {}: {} analyses written, database {:.1} MB, {:.0} s",
                t / 86_400,
                written,
                size.bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
        }
    }
    written
}

fn on_disk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let o = options();
    let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let seconds = (o.days * 86_400.0) as i64;
    let policy = canaryd::daemon::storage::retention(&RetentionConfig::default());
    println!(
        "{} rollouts every {} s for {} days; retention: keep all for {:?}, one per {:?}, finished runs {:?}",
        o.rollouts, o.every, o.days, policy.keep_all_for, policy.keep_one_per, policy.finished_for
    );

    let with = o.dir.join("with");
    let _ = std::fs::remove_dir_all(&o.dir);
    let store = Store::open(&with).unwrap();
    let began = Instant::now();
    let written = simulate(&store, &o, start, seconds, Some(&policy));
    let size = store.size().unwrap();
    drop(store);
    println!(
        "with retention: {written} analyses written in {:.0} s; database {:.1} MB ({:.1} MB free pages), {:.1} MB on disk after close",
        began.elapsed().as_secs_f64(),
        size.bytes as f64 / 1e6,
        size.free_bytes as f64 / 1e6,
        on_disk(&with) as f64 / 1e6
    );

    let without = o.dir.join("without");
    let store = Store::open(&without).unwrap();
    let sample = 2 * 3600;
    let sampled = simulate(&store, &o, start, sample, None);
    let size = store.size().unwrap();
    drop(store);
    let per = size.bytes as f64 / sampled as f64;
    let week = per * (7.0 * 86_400.0 / o.every as f64) * o.rollouts as f64;
    println!(
        "without retention: {sampled} analyses in 2 h of time: {:.1} MB, {:.1} kB per analysis: {:.1} GB a week, {:.2} GB a day",
        size.bytes as f64 / 1e6,
        per / 1e3,
        week / 1e9,
        week / 7e9
    );
    let _ = std::fs::remove_dir_all(&o.dir);
}
