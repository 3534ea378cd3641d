//! Commits canary steps to a store in a loop, for crash tests and a quick throughput figure.
//!
//! `store_crash_writer DIR` commits steps 1, 2, 3, ... (continuing after the last one found in
//! DIR) until killed, and prints `committed N` on stdout, flushed, after each commit returned:
//! kill it with `kill -9` at any moment, and every step it printed must be in the store, whole.
//! `tests/store_crash.rs` runs this same code (it includes this file) and does exactly that.
//!
//! `store_crash_writer --bench N DIR` commits N steps and prints the commit rate.

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
        })
        .collect();
    // Evidence of varying size, up to several pages, so that some commits span many WAL frames
    // and a kill can land in the middle of writing them.
    let padding = "x".repeat((seq % 7) as usize * 3000);
    step.analysis = Some(NewAnalysis {
        outcome: format!("seq-{seq}"),
        score: Some(seq as f64),
        evidence: json!({ "seq": seq, "padding": padding }),
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

/// Commits `count` steps and prints how many per second.
fn bench(dir: &Path, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(dir)?;
    let first = last_seq(&store)? + 1;
    let started = Instant::now();
    for seq in first..first + count {
        commit(&store, seq)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{count} commit_step calls (state, 2 audit entries, intent, 2 notifications, analysis; \
         synchronous=FULL) in {elapsed:.3} s: {:.0} commits/s, {:.2} ms each",
        count as f64 / elapsed,
        elapsed * 1000.0 / count as f64
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [dir] => run(Path::new(dir), None),
        [flag, count, dir] if flag == "--bench" => match count.parse::<u64>() {
            Ok(count) => bench(Path::new(dir), count),
            Err(_) => Err(format!("--bench wants a number of commits, not `{count}`").into()),
        },
        _ => Err("usage: store_crash_writer [--bench N] STATE_DIR".into()),
    };
    if let Err(err) = result {
        eprintln!("store_crash_writer: {err}");
        std::process::exit(1);
    }
}
