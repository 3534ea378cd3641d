//! The shipped `rules/checkout-api.toml` replayed on flat healthy data with the canary's p99
//! changed around 10:13: its `p99-critical` says "p99 above 500 ms for 2 minutes", and that is
//! what must roll back. It read the window's `max` with `for = "2m"`, so two 30-second spikes
//! two minutes apart (one in each of two analyses' windows) rolled a healthy canary back: the
//! whole-rollout benchmark's healthy checkout-api canaries, whose p99 has a GC spike now and
//! then, were rolled back 8.7-14.3% of the time by this check alone (issue 19 point 5).

use std::path::Path;

use serde_json::Value;

use crate::replay_support::{replay_json, rollback, temp_dir};

/// 2026-03-01T10:00:00Z.
const START: i64 = 1_772_359_200;

/// A small deterministic wobble so that no series is constant.
fn wobble(t: i64) -> f64 {
    1.0 + 0.02 * ((t / 30) % 5) as f64 / 4.0
}

fn write_values(dir: &Path, check: &str, value: impl Fn(&str, i64) -> f64) {
    for side in ["baseline", "canary"] {
        let mut csv = String::from("timestamp,value\n");
        for t in (START - 3600..=START + 3600).step_by(30) {
            csv.push_str(&format!("{t},{}\n", value(side, t)));
        }
        std::fs::write(dir.join(format!("{check}.{side}.csv")), csv).unwrap();
    }
}

fn write_counts(dir: &Path, check: &str) {
    for side in ["baseline", "canary"] {
        let mut csv = String::from("timestamp,errors,total\n");
        for t in (START - 3600..=START + 3600).step_by(30) {
            csv.push_str(&format!("{t},0,2000\n"));
        }
        std::fs::write(dir.join(format!("{check}.{side}.csv")), csv).unwrap();
    }
}

/// Replay the shipped rule from 10:00 with the canary's p99 at 0.9 s at the instants for which
/// `high` is true (every other series flat and healthy); the JSON answer.
fn replay(tag: &str, high: impl Fn(i64) -> bool) -> Value {
    let dir = temp_dir("shipped", tag);
    let rule = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/checkout-api.toml");
    let p99 = |side: &str, t: i64| {
        if side == "canary" && high(t) {
            0.9
        } else {
            0.2 * wobble(t)
        }
    };
    write_values(&dir, "p99-critical", p99);
    write_values(&dir, "p99-vs-baseline", p99);
    write_values(&dir, "p95-warning", |_, t| 0.15 * wobble(t));
    write_values(&dir, "memory-vs-baseline", |_, t| 4.0e8 * wobble(t));
    write_values(&dir, "queue-depth-growth", |_, t| 100.0 * wobble(t));
    for check in [
        "error-rate-vs-baseline",
        "error-rate-critical",
        "5xx-critical",
        "error-rate-warning",
    ] {
        write_counts(&dir, check);
    }
    let answer = replay_json(&rule, &dir, "2026-03-01T10:00:00Z");
    let _ = std::fs::remove_dir_all(&dir);
    answer
}

#[test]
fn two_brief_spikes_two_minutes_apart_do_not_roll_back() {
    // 10:13:00 lies in the window (10:12, 10:14], 10:15:00 in (10:14, 10:16].
    let answer = replay("spikes", |t| t == START + 780 || t == START + 900);
    assert!(rollback(&answer).is_none(), "{answer:#}");
}

#[test]
fn a_p99_above_500ms_for_three_minutes_rolls_back() {
    // Above from 10:13:00 to 10:16:00: every analysis from 10:14 sees it.
    let answer = replay("sustained", |t| (START + 780..=START + 960).contains(&t));
    let r = rollback(&answer).unwrap_or_else(|| panic!("{answer:#}"));
    assert_eq!(r["time"], "2026-03-01T10:16:00Z", "{answer:#}");
    let checks = r["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c == "p99-critical"), "{answer:#}");
}
