//! Commits canary steps to a store in a loop, for crash tests and a quick throughput figure.
//!
//! `store_crash_writer DIR` commits steps 1, 2, 3, ... (continuing after the last one found in
//! DIR) until killed, and prints `committed N` on stdout, flushed, after each commit returned:
//! kill it with `kill -9` at any moment, and every step it printed must be in the store, whole.
//! `tests/edges/store_crash.rs` runs this same code (it includes this file) and does exactly that.
//!
//! `store_crash_writer --bench N [--writers W] DIR` commits N steps from W threads at once
//! (default 1) and prints the commit rate and latency.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use serde_json::json;

use canaryd::store::{NewAnalysis, NewAudit, NewIntent, NewMessage, Step, Store, StoreError};

/// The rollout every step updates; its state is `{"seq": N}` for the last step committed.
pub const ROLLOUT: &str = "crash";

/// The step numbered `seq`: state, two audit entries, an intent, two notifications and an
/// analysis, each tagged with `seq` so a checker can find every part.
pub fn commit(store: &Store, seq: u64) -> Result<(), StoreError> {
    let state = json!({ "seq": seq, "phase": "Progressing" });
    let mut step = Step::new(ROLLOUT, &state, "fingerprint", Utc::now());
    step.audit = ["a", "b"]
        .iter()
        .map(|part| NewAudit {
            action: "advance".to_string(),
            previous_weight: Some((seq % 100) as u8),
            new_weight: Some(((seq + 1) % 100) as u8),
            reason: format!("seq {seq} {part}"),
            triggered_by: "store_crash_writer".to_string(),
        })
        .collect();
    step.intent = Some(NewIntent {
        idempotency_key: format!("seq-{seq}"),
        weight: ((seq + 1) % 100) as u8,
        previous_weight: (seq % 100) as u8,
    });
    step.outbox = ["a", "b"]
        .iter()
        .map(|part| NewMessage {
            receiver: "team-email".to_string(),
            dedupe_key: format!("seq-{seq}-{part}"),
            event: "advanced".to_string(),
            severity: "info".to_string(),
            payload: json!({ "seq": seq }),
            incident: None,
        })
        .collect();
    // Evidence of varying size, up to several pages, so that some commits span many WAL frames
    // and a kill can land in the middle of writing them.
    let padding = "x".repeat((seq % 7) as usize * 3000);
    step.analysis = Some(NewAnalysis {
        outcome: format!("seq-{seq}"),
        score: Some(seq as f64),
        evidence: serde_json::value::to_raw_value(&json!({ "seq": seq, "padding": padding }))
            .unwrap(),
        kept: None,
    });
    store.commit_step(&step).map(|_| ())
}

/// The last step committed in the store (0 if none).
pub fn last_seq(store: &Store) -> Result<u64, StoreError> {
    Ok(store
        .rollout::<serde_json::Value>(ROLLOUT)?
        .and_then(|r| r.state.get("seq").and_then(|s| s.as_u64()))
        .unwrap_or(0))
}

/// Commits steps after the last one in `dir` until `count` are done (forever if `None`),
/// printing `committed N` after each. Even steps also get their intent completed, as a runner
/// would after the actuator answered, so a store holds both pending and done intents; on
/// start-up, the even intents a kill left pending are completed first, as a runner re-drives
/// them after a crash.
pub fn run(dir: &Path, count: Option<u64>) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(dir)?;
    for intent in store.pending_intents()? {
        let seq = intent
            .idempotency_key
            .trim_start_matches("seq-")
            .parse::<u64>();
        if seq.is_ok_and(|seq| seq % 2 == 0) {
            store.complete_intent(intent.id, Ok(()), Utc::now())?;
        }
    }
    let first = last_seq(&store)? + 1;
    let mut stdout = std::io::stdout().lock();
    let mut seq = first;
    while count.is_none_or(|n| seq < first + n) {
        commit(&store, seq)?;
        writeln!(stdout, "committed {seq}")?;
        stdout.flush()?;
        if seq % 2 == 0
            && let Some(intent) = store.intent_by_key(&format!("seq-{seq}"))?
        {
            store.complete_intent(intent.id, Ok(()), Utc::now())?;
        }
        seq += 1;
    }
    Ok(())
}

/// Commits `count` steps from `writers` threads at once (as the daemon's runners do from the
/// blocking pool) and prints how many per second, with the latency of one commit.
fn bench(dir: &Path, count: u64, writers: u64) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(dir)?;
    let first = last_seq(&store)? + 1;
    let next = std::sync::atomic::AtomicU64::new(first);
    let started = Instant::now();
    let latencies = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut latencies = Vec::new();
                    loop {
                        let seq = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if seq >= first + count {
                            return Ok::<_, StoreError>(latencies);
                        }
                        let at = Instant::now();
                        commit(&store, seq)?;
                        latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                    }
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().map_err(|_| "a writer thread panicked".to_string()))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = latencies
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "{count} commit_step calls from {writers} thread(s) (state, 2 audit entries, intent, \
         2 notifications, analysis; synchronous=FULL) in {elapsed:.3} s: {:.0} commits/s; \
         latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        count as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

fn bench_args(count: &str, writers: &str, dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let count = count
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("--bench wants a number of commits, not `{count}`"))?;
    let writers = writers
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("--writers wants a number of threads, not `{writers}`"))?;
    bench(Path::new(dir), count, writers)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [dir] => run(Path::new(dir), None),
        [flag, count, dir] if flag == "--bench" => bench_args(count, "1", dir),
        [flag, count, wflag, writers, dir] if flag == "--bench" && wflag == "--writers" => {
            bench_args(count, writers, dir)
        }
        _ => Err("usage: store_crash_writer [--bench N [--writers W]] STATE_DIR".into()),
    };
    if let Err(err) = result {
        eprintln!("store_crash_writer: {err}");
        std::process::exit(1);
    }
}
