//! Helpers for the API and CLI tests: a tiny stand-in for Prometheus's `query_range` (every
//! series constant, `bad` series at 0.9, `absent` ones empty and the rest at 0.1), a token file
//! with an admin `alice` and a read-only `graf`, and the daemon embedded in-process on 127.0.0.1.

#![allow(dead_code)] // Each test file uses its own part.

#[path = "../fixtures/daemon/support.rs"]
pub mod daemon_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::Query;
use canaryd::daemon::DaemonError;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const ALICE: &str = "alice-admin-token-0123456789";
pub const GRAF: &str = "graf-read-token-0123456789";

/// Answer `query_range` like Prometheus: one series, a point every `step` seconds; no series
/// at all for an `absent` one.
async fn query_range(Query(q): Query<HashMap<String, String>>) -> axum::Json<Value> {
    if q.get("query").is_some_and(|s| s.contains("absent")) {
        return axum::Json(json!({
            "status": "success",
            "data": {"resultType": "matrix", "result": []}
        }));
    }
    let start: f64 = q.get("start").and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let end: f64 = q.get("end").and_then(|s| s.parse().ok()).unwrap_or(start);
    let step: f64 = q
        .get("step")
        .and_then(|s| s.trim_end_matches('s').parse().ok())
        .unwrap_or(1.0f64)
        .max(1.0);
    let value = if q.get("query").is_some_and(|s| s.contains("bad")) {
        "0.9"
    } else {
        "0.1"
    };
    let mut values = Vec::new();
    let mut t = start.ceil();
    while t <= end {
        values.push(json!([t, value]));
        t += step;
    }
    axum::Json(json!({
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}
    }))
}

/// A fake Prometheus on 127.0.0.1; its base URL.
pub async fn fake_prometheus() -> String {
    let app = axum::Router::new().route("/api/v1/query_range", axum::routing::get(query_range));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

pub struct Daemon {
    pub base: String,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub shutdown: CancellationToken,
    pub running: JoinHandle<Result<(), DaemonError>>,
}

impl Daemon {
    pub async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.running).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start the daemon with rollouts `(name, canary series, first stage's minimum duration)`,
/// a token file and `extra_server` lines added to `[server]`.
pub async fn start(tag: &str, rollouts: &[(&str, &str, &str)], extra_server: &str) -> Daemon {
    let prometheus = fake_prometheus().await;
    let dir = daemon_support::temp_dir(tag);
    let path = daemon_support::write_config(&dir, &prometheus, "http://127.0.0.1:9/weights");
    daemon_support::add_tokens(
        &dir,
        &path,
        &[("alice", "admin", ALICE), ("graf", "read", GRAF)],
        extra_server,
    );
    for (name, canary, min) in rollouts {
        daemon_support::write_rule(&dir, name, canary, "builtin", min);
    }
    let daemon_support::Embedded {
        addr,
        base,
        shutdown,
        running,
        ..
    } = daemon_support::embed(&path).await;
    for (name, _, _) in rollouts {
        daemon_support::wait_for("the rollout to start", Duration::from_secs(10), || async {
            let v: Value = reqwest::Client::new()
                .get(format!("{base}/v1/rollouts/{name}"))
                .bearer_auth(GRAF)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["phase"] != "pending" && v["phase"].is_string()).then_some(())
        })
        .await;
    }
    Daemon {
        base,
        addr,
        dir,
        shutdown,
        running,
    }
}

/// Wait until rollout `name` has at least one analysis.
pub async fn wait_for_analysis(base: &str, name: &str) {
    daemon_support::wait_for("an analysis", Duration::from_secs(15), || async {
        let v: Value = reqwest::get(format!("{base}/v1/rollouts/{name}/analyses?limit=1"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["analyses"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|_| ())
    })
    .await;
}
