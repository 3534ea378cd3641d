//! What the replay tests share: a fresh directory per test for rule files and recorded data, and
//! `canaryd replay --output json` run on them as a user runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A new empty directory under the system's temp dir, unique to this process and call.
pub fn temp_dir(prefix: &str, tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "canaryd-{prefix}-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `canaryd replay --rule RULE --data DATA --start START --output json`: its answer, after
/// asserting that it succeeded (its stderr otherwise).
pub fn replay_json(rule: &Path, data: &Path, start: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["replay", "--rule"])
        .arg(rule)
        .arg("--data")
        .arg(data)
        .args(["--start", start, "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The first rollback of a replay's JSON answer, if it rolled back.
pub fn rollback(answer: &Value) -> Option<&Value> {
    answer["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["action"] == "rolled-back")
}
