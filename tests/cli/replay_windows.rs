//! Consecutive analyses judge consecutive windows, not overlapping ones: a window of `2m` at a
//! `30s` step holds the 4 points of (now − 2m, now], so with analyses every 2 minutes one 30-second
//! spike lands in exactly one analysis. Before, windows were closed at both ends (5 points), a
//! spike on an analysis's boundary was read by two analyses in a row, and `for = "2m"` rolled a
//! healthy canary back on one point (the shipped `checkout-api`'s `p99-critical`, issue 19's
//! whole-rollout benchmark: most healthy rollouts rolled back).

use serde_json::Value;

use crate::replay_support::{replay_json, temp_dir};

/// 2026-03-01T10:00:00Z.
const START: i64 = 1_772_359_200;

const RULE: &str = r#"
[rollout]
name = "spiky"
team = "tests"
source = "prometheus"
actuator = "builtin"
rollback_to = "zero"

[analysis]
schedule = "*/2 * * * *"
warmup = "0s"

[[stages]]
name = "50%"
weight = 50
min_duration = "10m"
required_passes = 2

[sides]
label = "version"
baseline = "stable"
canary = "canary"

[[checks]]
name = "p99-critical"
kind = "absolute"
threshold = 0.5
aggregate = "max"
query = 'p99_seconds{ {{label}}="{{side}}" }'
window = "2m"
step = "30s"
min_samples = 3
critical = true
action = "rollback"
for = "2m"
"#;

/// Replay a p99 of 0.2 s every 30 s from 10:00 to 10:30 with the values at `spikes` (unix
/// seconds) at 0.9 s; the JSON answer.
fn replay(tag: &str, spikes: &[i64]) -> Value {
    let dir = temp_dir("windows", tag);
    std::fs::write(dir.join("spiky.toml"), RULE).unwrap();
    for side in ["baseline", "canary"] {
        let mut csv = String::from("timestamp,value\n");
        for t in (START - 600..=START + 1800).step_by(30) {
            let v = if side == "canary" && spikes.contains(&t) {
                0.9
            } else {
                0.2
            };
            csv.push_str(&format!("{t},{v}\n"));
        }
        std::fs::write(dir.join(format!("p99-critical.{side}.csv")), csv).unwrap();
    }
    replay_json(&dir.join("spiky.toml"), &dir, "2026-03-01T10:00:00Z")
}

#[test]
fn one_spike_on_an_analysis_boundary_fails_one_analysis_and_for_2m_does_not_roll_back() {
    // 10:04:00 is an analysis's end and the next one's start.
    let answer = replay("boundary", &[START + 240]);
    assert_eq!(answer["phase"], "succeeded", "{answer:#}");
}

#[test]
fn a_spike_lasting_two_analyses_still_rolls_back() {
    // One point in each of the windows (10:02, 10:04] and (10:04, 10:06].
    let answer = replay("lasting", &[START + 240, START + 270]);
    assert_eq!(answer["phase"], "rolled-back", "{answer:#}");
    let decisions = answer["decisions"].as_array().unwrap();
    let rollback = decisions.iter().find(|d| d["action"] == "rolled-back");
    let rollback = rollback.unwrap_or_else(|| panic!("{answer:#}"));
    assert_eq!(rollback["time"], "2026-03-01T10:06:00Z", "{answer:#}");
    assert_eq!(rollback["checks"], serde_json::json!(["p99-critical"]));
}
