//! `canaryd export` against the daemon embedded in-process, and the round trip into `canaryd
//! replay`: the daemon rolls back `bad` (its canary's latency, 0.9 s, is above the critical 0.5 s
//! limit); the analysis that decided it, exported, holds the points the daemon judged (0.1 and 0.9
//! at the fake Prometheus's timestamps), and replaying the rule over the export rolls back on the
//! same check. An unknown analysis id is refused with exit 1.

use crate::api_support;

use std::process::Command;
use std::time::Duration;

use api_support::daemon_support::wait_for;
use api_support::start;
use serde_json::Value;

async fn canaryd(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
            .args(&args)
            .env_remove("CANARYD_URL")
            .env_remove("CANARYD_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exported_analysis_replays_to_the_same_decision() {
    let d = start("export", &[("bad", "bad", "1h")], "").await;
    let base = d.base.clone();
    let phase = || async {
        let v: Value = reqwest::get(format!("{base}/v1/rollouts/bad"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["phase"] == "rolled-back").then_some(())
    };
    wait_for("bad to roll back", Duration::from_secs(20), phase).await;
    let listed: Value = reqwest::get(format!("{base}/v1/rollouts/bad/analyses?limit=1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let latest = &listed["analyses"][0];
    assert_eq!(latest["outcome"], "fail", "{listed:#}");
    let id = latest["id"].as_i64().unwrap();

    let out = d.dir.join("exported");
    let (code, stdout, stderr) = canaryd(args(&[
        "export",
        "bad",
        "--analysis",
        &id.to_string(),
        "--dir",
        out.to_str().unwrap(),
        "--url",
        &d.base,
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("wrote 2 files to "), "{stdout}");
    // The points the daemon judged: the baseline at 0.1, the canary at 0.9, as many as the
    // evidence counted, at whole seconds.
    let judged = &latest["evidence"]["checks"][0]["evidence"];
    for (side, value) in [("baseline", "0.1"), ("canary", "0.9")] {
        let text = std::fs::read_to_string(out.join(format!("latency.{side}.csv"))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "timestamp,value");
        assert_eq!(
            lines.len() - 1,
            judged[side]["points"].as_u64().unwrap() as usize,
            "{text}"
        );
        for line in &lines[1..] {
            let (t, v) = line.split_once(',').unwrap();
            assert!(t.parse::<i64>().is_ok(), "{line}");
            assert_eq!(v, value, "{line}");
        }
    }

    // The round trip: the rule over the exported window rolls back on the same check.
    let rule = d.dir.join("rules/bad.toml");
    let (code, stdout, stderr) = canaryd(args(&[
        "replay",
        "--rule",
        rule.to_str().unwrap(),
        "--data",
        out.to_str().unwrap(),
        "--output",
        "json",
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let replay: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(replay["phase"], "rolled-back", "{replay:#}");
    let last = replay["decisions"].as_array().unwrap().last().unwrap();
    assert_eq!(last["action"], "rolled-back");
    assert_eq!(last["checks"], serde_json::json!(["latency"]));

    // The latest analysis is the default; an id the rollout does not have is refused.
    let (code, stdout, stderr) = canaryd(args(&[
        "export",
        "bad",
        "--dir",
        d.dir.join("latest").to_str().unwrap(),
        "--url",
        &d.base,
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("analysis {id} of `bad`")),
        "{stdout}"
    );
    let (code, _, stderr) = canaryd(args(&[
        "export",
        "bad",
        "--analysis",
        &(id + 1000).to_string(),
        "--url",
        &d.base,
    ]))
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("has no analysis"), "{stderr}");
    d.stop().await;
}
