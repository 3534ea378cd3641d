//! `canaryd replay --from T1 --to T2` over a rule's own Prometheus history: a real Prometheus
//! backfilled by promtool with 50 minutes of a service scraped every 5 s (latency gauges, request
//! and error counters), and the rule of `tests/fixtures/replay/web.toml` asking it through the
//! Prometheus source edge. A healthy canary (`good`) succeeds with the plan's timeline; the
//! `canary` version, whose errors jump from 1 in 200 to 1 in 5 after 10:06, a minute into its
//! 50% stage (started at 10:05), is rolled back by the analysis of 10:08, the second after the
//! jump (the window scan of issue 19: at 10:07 half of the stage's points are still good),
//! naming the check.

use crate::prometheus_support::Prometheus;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// 2026-03-01T10:00:00Z: the run starts here.
const START: i64 = 1_772_359_200;
/// Samples every 5 s from 20 minutes before the start to 30 after (the rule's `increase(...[10s])`
/// needs two samples in each 10-second step).
const EVERY: i64 = 5;

/// The OpenMetrics text: per version, `latency_seconds` about 200 ms, `requests_total` growing by
/// 1,000 a minute and `errors_total` by 5 a minute (by 200 a minute for `canary` after
/// `START + 6 min`).
fn history() -> String {
    let times: Vec<i64> = (START - 20 * 60..=START + 30 * 60)
        .step_by(EVERY as usize)
        .collect();
    let versions = ["stable", "canary", "good"];
    let mut text = String::from("# TYPE latency_seconds gauge\n");
    for (i, version) in versions.iter().enumerate() {
        for (k, t) in times.iter().enumerate() {
            // A small wobble, different per version, so paired differences are not all zero.
            let wobble = ((k * 7 + i * 3) % 5) as f64 * 0.001;
            text.push_str(&format!(
                "latency_seconds{{version=\"{version}\"}} {} {t}\n",
                0.2 + wobble
            ));
        }
    }
    for (family, per_step) in [("requests", 250.0), ("errors", 1.25)] {
        text.push_str(&format!("# TYPE {family} counter\n"));
        for version in versions {
            let mut total = 0.0;
            for t in &times {
                let jump = family == "errors" && version == "canary" && *t > START + 6 * 60;
                total += if jump { 50.0 } else { per_step };
                text.push_str(&format!(
                    "{family}_total{{version=\"{version}\"}} {total} {t}\n"
                ));
            }
        }
    }
    text
}

fn rule(dir: &std::path::Path, canary: &str) -> String {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay/web.toml"),
    )
    .unwrap()
    .replace("canary = \"canary\"", &format!("canary = \"{canary}\""));
    let path = dir.join(format!("{canary}.toml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn replay(rule: &str, prometheus: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args([
            "replay",
            "--rule",
            rule,
            "--from",
            "2026-03-01T10:00:00Z",
            "--to",
            "2026-03-01T10:30:00Z",
            "--source",
            prometheus,
            "--approve",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn timeline(replay: &Value) -> Vec<String> {
    replay["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {} {} {}% {}",
                d["time"].as_str().unwrap(),
                d["action"].as_str().unwrap(),
                d["stage"].as_str().unwrap_or("-"),
                d["weight"],
                d["checks"]
            )
        })
        .collect()
}

#[test]
fn a_replay_over_prometheus_history_decides_as_the_daemon_would() {
    let prometheus = Prometheus::builder().backfill(history()).start();
    let dir = std::env::temp_dir().join(format!("canaryd-replay-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let healthy = replay(&rule(&dir, "good"), &prometheus.url());
    assert_eq!(healthy["phase"], "succeeded", "{healthy:#}");
    assert_eq!(healthy["analyses"], 15, "{healthy:#}");
    assert_eq!(
        timeline(&healthy),
        [
            "2026-03-01T10:00:00Z run-started 10% 10% []",
            "2026-03-01T10:05:00Z stage-advanced 50% 50% []",
            "2026-03-01T10:10:00Z waiting-approval 50% 50% []",
            "2026-03-01T10:10:00Z approved 100% 100% []",
            "2026-03-01T10:15:00Z succeeded 100% 100% []",
        ]
    );

    let degraded = replay(&rule(&dir, "canary"), &prometheus.url());
    assert_eq!(degraded["phase"], "rolled-back", "{degraded:#}");
    assert_eq!(degraded["analyses"], 8, "{degraded:#}");
    assert_eq!(
        timeline(&degraded).last().unwrap(),
        "2026-03-01T10:08:00Z rolled-back 50% 0% [\"errors\"]"
    );

    // A Prometheus that is not there: exit 4, saying which query could not be read.
    let gone = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args([
            "replay",
            "--rule",
            &rule(&dir, "good"),
            "--from",
            "2026-03-01T10:00:00Z",
            "--to",
            "2026-03-01T10:30:00Z",
            "--source",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert_eq!(gone.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("the analysis at 2026-03-01 10:01:00 UTC could not read its data"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 19 point 1 against the real Prometheus: a stage's analyses that resume from what the
/// previous one kept (asking only for the last minutes) judge exactly what analyses re-reading
/// the whole stage judge, minute after minute through the canary's error jump: Prometheus
/// evaluates the resumed queries at the same instants of the stage's grid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_reads_of_prometheus_judge_what_whole_reads_judge() {
    use canaryd::daemon::analysis::{EvidenceSpan, Kept, analyse_over};
    use canaryd::source::{MetricSource, PrometheusConfig, PrometheusSource};
    use chrono::DateTime;
    use std::sync::Arc;

    let prometheus =
        tokio::task::spawn_blocking(|| Prometheus::builder().backfill(history()).start())
            .await
            .unwrap();
    let dir = std::env::temp_dir().join(format!("canaryd-resumed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = rule(&dir, "canary");
    let text = std::fs::read_to_string(&path).unwrap();
    let known = canaryd::rules::KnownNames::any();
    let rule = canaryd::rules::parse_rule(std::path::Path::new(&path), &text, &known).unwrap();
    let config = PrometheusConfig::new(prometheus.url());
    let source: Arc<dyn MetricSource> =
        Arc::new(PrometheusSource::new("prometheus", &config).unwrap());
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let from = DateTime::from_timestamp(START, 0).unwrap();
    let span = EvidenceSpan::of_stage(0, 3, from, std::time::Duration::ZERO).unwrap();
    let mut kept: Vec<Kept> = Vec::new();
    let mut verdicts = Vec::new();
    for minute in 1..=12 {
        let now = from + chrono::Duration::minutes(minute);
        let analyse = |kept: &[Kept]| {
            let (rule, source, permits) = (&rule, Arc::clone(&source), Arc::clone(&permits));
            let kept = kept.to_vec();
            async move {
                analyse_over(rule, source, permits, now, 10, span, &kept)
                    .await
                    .unwrap()
            }
        };
        let resumed = analyse(&kept).await;
        let whole = analyse(&[]).await;
        for (a, b) in resumed.results.iter().zip(&whole.results) {
            assert_eq!(a.verdict, b.verdict, "{} at {now}", a.name);
            assert_eq!(a.reason, b.reason, "{} at {now}", a.name);
            assert_eq!(a.evidence.canary.points, b.evidence.canary.points);
        }
        verdicts.push(format!("{:?}", resumed.report.overall));
        if let Some(now_kept) = resumed.kept {
            assert_eq!(Some(&now_kept), whole.kept.as_ref(), "at {now}");
            kept = now_kept;
        }
    }
    // The stage's evidence accrues, then the jump fails it: both kinds of look were compared.
    assert_eq!(verdicts.first().unwrap(), "Inconclusive", "{verdicts:?}");
    assert_eq!(verdicts.last().unwrap(), "Fail", "{verdicts:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
