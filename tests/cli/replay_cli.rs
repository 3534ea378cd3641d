//! `canaryd replay --data DIR` run as a user runs it, on a rollout recorded minute by minute
//! (`tests/fixtures/replay/web.toml`: analysed on the minute, stages 10% → 50% (approval) →
//! 100% of 5 minutes and 3 passes each): a healthy canary succeeds with the timeline the plan
//! gives, stops at the approval gate without `--approve`; a canary whose error rate jumps rolls
//! back at the first analysis whose window holds the jump, naming the check; a stage that cannot
//! show its latency pauses at its `max_duration` naming the check that held it; a canary without
//! usable latency (no points, or only NaN) pauses on the inconclusive streak, never passing; the
//! JSON has exactly the documented keys; bad, missing and oversized files are errors naming
//! file and line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::replay_support::temp_dir;

/// 2026-03-01T10:00:00Z: the run starts here.
const START: i64 = 1_772_359_200;

fn rule() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/replay/web.toml")
        .display()
        .to_string()
}

fn canaryd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small deterministic noise in [-1, 1).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// A recording from 15 minutes before the start to 30 after, one point a minute: latency about
/// 200 ms on both sides (1% noise), 1,000 requests a minute with 5 errors; from
/// `errors_from` on, the canary's minutes have 200 errors.
fn record(tag: &str, errors_from: Option<i64>) -> PathBuf {
    let dir = temp_dir("replay", tag);
    let times: Vec<i64> = (-90..=180).map(|s| START + 10 * s).collect();
    for (side, seed) in [("baseline", 1), ("canary", 2)] {
        let mut noise = Noise(seed);
        let mut latency = String::from("timestamp,value\n");
        let mut errors = String::from("timestamp,errors,total\n");
        for &t in &times {
            latency.push_str(&format!("{t},{}\n", 0.2 * (1.0 + 0.01 * noise.next())));
            let bad = side == "canary" && errors_from.is_some_and(|from| t >= from);
            errors.push_str(&format!("{t},{},1000\n", if bad { 200 } else { 5 }));
        }
        // `latency-limit` asks the same query as `latency`: the same series.
        std::fs::write(dir.join(format!("latency.{side}.csv")), &latency).unwrap();
        std::fs::write(dir.join(format!("latency-limit.{side}.csv")), &latency).unwrap();
        std::fs::write(dir.join(format!("errors.{side}.csv")), &errors).unwrap();
    }
    dir
}

fn replay_json(dir: &Path, extra: &[&str]) -> Value {
    let rule = rule();
    let mut args = vec![
        "replay",
        "--rule",
        &rule,
        "--data",
        dir.to_str().unwrap(),
        "--start",
        "2026-03-01T10:00:00Z",
        "--output",
        "json",
    ];
    args.extend(extra);
    let out = canaryd(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(time, action, stage, weight, checks)` of each decision.
fn timeline(replay: &Value) -> Vec<(String, String, String, u64, Vec<String>)> {
    replay["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["time"].as_str().unwrap().to_string(),
                d["action"].as_str().unwrap().to_string(),
                d["stage"].as_str().unwrap_or("").to_string(),
                d["weight"].as_u64().unwrap(),
                d["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn decision(
    time: &str,
    action: &str,
    stage: &str,
    weight: u64,
    checks: &[&str],
) -> (String, String, String, u64, Vec<String>) {
    (
        format!("2026-03-01T{time}Z"),
        action.to_string(),
        stage.to_string(),
        weight,
        checks.iter().map(|c| c.to_string()).collect(),
    )
}

/// Analyses on the minute from 10:01, each stage judged on its own 10-second points since it
/// started, with the 20 points before it for their dependence only: accruing at 10:01 (fewer
/// than 10 points), passes from 10:02, the stage's 5 minutes and 3 passes reached at 10:05,
/// which advances; the same at 50% by 10:10, where the gate waits and `--approve` approves at
/// once; at 100% (where only `latency-limit` judges) success at 10:15: every stage at its
/// `min_duration`, as a fixed window would. (Waiting for 20 of the stage's points, the stages
/// took 6 minutes each, success at 10:17.)
#[test]
fn a_healthy_recording_succeeds_with_the_plans_timeline() {
    let dir = record("healthy", None);
    let replay = replay_json(&dir, &["--approve"]);
    assert_eq!(replay["phase"], "succeeded", "{replay:#}");
    assert_eq!(replay["analyses"], 15, "{replay:#}");
    let want = vec![
        decision("10:00:00", "run-started", "10%", 10, &[]),
        decision("10:05:00", "stage-advanced", "50%", 50, &[]),
        decision("10:10:00", "waiting-approval", "50%", 50, &[]),
        decision("10:10:00", "approved", "100%", 100, &[]),
        decision("10:15:00", "succeeded", "100%", 100, &[]),
    ];
    assert_eq!(timeline(&replay), want, "{replay:#}");

    // Without --approve the replay stops at the gate, and the table says why.
    let waiting = replay_json(&dir, &[]);
    assert_eq!(waiting["phase"], "waiting-approval");
    assert_eq!(waiting["analyses"], 10);
    assert_eq!(timeline(&waiting), want[..3].to_vec());
    let rule = rule();
    let out = canaryd(&[
        "replay",
        "--rule",
        &rule,
        "--data",
        dir.to_str().unwrap(),
        "--start",
        "2026-03-01T10:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.starts_with("web: waiting-approval after 10 analyses, at 50%"),
        "{table}"
    );
    assert!(table.contains("--approve approves every gate"), "{table}");
    assert!(table.contains("\ntime "), "{table}");
    assert!(table.contains("stage-advanced"), "{table}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The canary's errors jump from 0.5% to 20% at 10:07, two minutes into the 50% stage (which
/// started at 10:05). The stage's mean cannot show it yet (a step inside the stage reads as
/// dependence), so the window scan of the stage's latest points (issue 19) fails it at 10:08,
/// the first analysis after the onset, and the critical check rolls back.
#[test]
fn a_degraded_recording_rolls_back_at_the_analysis_that_sees_it_naming_the_check() {
    let dir = record("degraded", Some(START + 7 * 60));
    let replay = replay_json(&dir, &["--approve"]);
    assert_eq!(replay["phase"], "rolled-back", "{replay:#}");
    assert_eq!(replay["analyses"], 8, "{replay:#}");
    let timeline = timeline(&replay);
    assert_eq!(
        timeline.last().unwrap(),
        &decision("10:08:00", "rolled-back", "50%", 0, &["errors"]),
        "{replay:#}"
    );
    assert_eq!(timeline.len(), 3, "{replay:#}");

    // --analyses lists each analysis: the seven before do not fail, the eighth fails on `errors`.
    let rule = rule();
    let out = canaryd(&[
        "replay",
        "--rule",
        &rule,
        "--data",
        dir.to_str().unwrap(),
        "--start",
        "2026-03-01T10:00:00Z",
        "--approve",
        "--analyses",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    let rows: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("analysis"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 8, "{table}");
    assert!(rows[..7].iter().all(|r| !r.contains("fail")), "{table}");
    assert!(
        rows[7].starts_with("2026-03-01T10:08:00+00:00  50%")
            && rows[7].contains("fail")
            && rows[7].ends_with("errors: fail"),
        "{table}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_json_has_exactly_the_documented_keys() {
    let dir = record("json", Some(START + 7 * 60));
    let replay = replay_json(&dir, &[]);
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&replay), ["analyses", "decisions", "phase"]);
    for d in replay["decisions"].as_array().unwrap() {
        assert_eq!(keys(d), ["action", "checks", "stage", "time", "weight"]);
    }
    assert_eq!(
        replay["decisions"][0],
        json!({"time": "2026-03-01T10:00:00Z", "action": "run-started", "stage": "10%",
               "weight": 10, "checks": []})
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad input never replays: a bad value, a missing file, a file of the wrong shape, one too
/// large, a start after the data; each is exit 3 with the file (and line) and what is wrong.
#[test]
fn bad_data_is_an_error_naming_file_line_and_what() {
    let rule = rule();
    let run = |dir: &Path| canaryd(&["replay", "--rule", &rule, "--data", dir.to_str().unwrap()]);
    let refused = |dir: &Path, want: &str| {
        let out = run(dir);
        assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(want), "want {want:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(stdout(&out).is_empty());
    };

    let dir = record("bad-value", None);
    let file = dir.join("latency.canary.csv");
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines[3] = format!("{},abc", lines[3].split(',').next().unwrap());
    std::fs::write(&file, lines.join("\n")).unwrap();
    refused(
        &dir,
        &format!("{}:4: expected a value, found `abc`", file.display()),
    );

    let dir = record("missing", None);
    std::fs::remove_file(dir.join("errors.canary.csv")).unwrap();
    std::fs::rename(
        dir.join("latency-limit.baseline.csv"),
        dir.join("latency-lmit.baseline.csv"),
    )
    .unwrap();
    refused(
        &dir,
        "missing errors.canary.csv, latency-limit.baseline.csv: each check needs \
         CHECK.baseline.csv and CHECK.canary.csv (the directory has latency-lmit.baseline.csv)",
    );

    let dir = record("shape", None);
    let file = dir.join("errors.baseline.csv");
    std::fs::write(&file, "timestamp,value\n1772359200,0.5\n").unwrap();
    refused(
        &dir,
        &format!(
            "{}:1: expected 3 fields (`timestamp,errors,total`), found 2: this check counts errors",
            file.display()
        ),
    );

    let dir = record("large", None);
    let file = dir.join("latency.baseline.csv");
    std::fs::File::create(&file)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    refused(
        &dir,
        &format!("{}: the file is larger than 64 MiB", file.display()),
    );

    let dir = record("late", None);
    let out = canaryd(&[
        "replay",
        "--rule",
        &rule,
        "--data",
        dir.to_str().unwrap(),
        "--start",
        "2026-03-02T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("the replay would end (2026-03-01 10:30:00 UTC) before it starts"),
        "{}",
        stderr(&out)
    );
}

/// No usable canary latency, none at all or only NaN: both latency checks are inconclusive at
/// every analysis (never a pass), and the third in a row (`max_inconclusive = 3`) pauses the
/// rollout, naming them.
#[test]
fn a_recording_without_usable_canary_latency_pauses_naming_the_checks_without_a_verdict() {
    for (tag, nan) in [("no-latency", false), ("nan-latency", true)] {
        let dir = record(tag, None);
        let mut text = String::from("timestamp,value\n");
        if nan {
            for s in -90..=180 {
                text.push_str(&format!("{},NaN\n", START + 10 * s));
            }
        }
        for check in ["latency", "latency-limit"] {
            std::fs::write(dir.join(format!("{check}.canary.csv")), &text).unwrap();
        }
        let replay = replay_json(&dir, &["--approve"]);
        assert_eq!(replay["phase"], "paused", "{tag}: {replay:#}");
        assert_eq!(replay["analyses"], 3, "{tag}: {replay:#}");
        assert_eq!(
            timeline(&replay),
            [
                decision("10:00:00", "run-started", "10%", 10, &[]),
                decision(
                    "10:03:00",
                    "paused",
                    "10%",
                    10,
                    &["latency", "latency-limit"]
                ),
            ],
            "{tag}: {replay:#}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A stage that cannot show its latency within the tolerance (the canary is 10% slower, the
/// tolerance 10%: the bound never gets within it, nor is a worsening beyond it shown) holds,
/// accruing, until its `max_duration`; the pause then names the check that held it, so the
/// person it asks knows where to look.
#[test]
fn a_stage_past_its_max_duration_pauses_naming_the_check_that_held_it() {
    let dir = record("held", None);
    let mut noise = Noise(7);
    let mut latency = String::from("timestamp,value\n");
    for s in -90..=180 {
        let v = 0.22 * (1.0 + 0.01 * noise.next());
        latency.push_str(&format!("{},{v}\n", START + 10 * s));
    }
    for check in ["latency", "latency-limit"] {
        std::fs::write(dir.join(format!("{check}.canary.csv")), &latency).unwrap();
    }
    let text = std::fs::read_to_string(rule()).unwrap().replacen(
        "min_duration = \"5m\"",
        "min_duration = \"5m\"\nmax_duration = \"8m\"",
        1,
    );
    let rule = dir.join("web.toml");
    std::fs::write(&rule, text).unwrap();
    let replay = crate::replay_support::replay_json(&rule, &dir, "2026-03-01T10:00:00Z");
    assert_eq!(replay["phase"], "paused", "{replay:#}");
    let pause = replay["decisions"].as_array().unwrap().last().unwrap();
    assert_eq!(pause["action"], "paused", "{replay:#}");
    assert_eq!(pause["stage"], "10%", "{replay:#}");
    // The table, for people, gives the machine's reason.
    let out = canaryd(&[
        "replay",
        "--rule",
        rule.to_str().unwrap(),
        "--data",
        dir.to_str().unwrap(),
        "--start",
        "2026-03-01T10:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(
        first.ends_with(
            "stage ran 8m (max 8m) with 0 of 3 required passing analyses; \
             not passing in its last analysis: latency"
        ),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
