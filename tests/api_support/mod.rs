//! Helpers for the API and CLI tests: a tiny stand-in for Prometheus's `query_range` (every
//! series constant, `bad` series at 0.9, `absent` ones empty and the rest at 0.1), a token file
//! with an admin `alice`, a read-only `graf`, an application `shop` and a scraper `prom`, and the
//! daemon embedded in-process on 127.0.0.1 (or every address, for tests from another peer).

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
pub const SHOP: &str = "shop-app-token-0123456789";
pub const PROM: &str = "prom-metrics-token-0123456789";

/// One of this host's addresses that is not loopback, for a test that needs the daemon to see
/// a peer from another host: the local address the kernel picks to reach outside (a UDP
/// `connect` sends nothing). Panics, saying so, on a host with only loopback.
pub fn non_loopback_ip() -> std::net::IpAddr {
    for target in ["192.0.2.1:9", "10.255.255.254:9", "8.8.8.8:53"] {
        let Ok(socket) = std::net::UdpSocket::bind("0.0.0.0:0") else {
            continue;
        };
        if socket.connect(target).is_err() {
            continue;
        }
        if let Ok(local) = socket.local_addr() {
            let ip = local.ip();
            if !ip.is_loopback() && !ip.is_unspecified() {
                return ip;
            }
        }
    }
    panic!("this test needs an IPv4 address other than loopback on this host (and a route out)");
}

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
    start_on("127.0.0.1:0", tag, rollouts, extra_server).await
}

/// [`start`], listening on `listen` (`0.0.0.0:0` to be reached from a non-loopback address).
pub async fn start_on(
    listen: &str,
    tag: &str,
    rollouts: &[(&str, &str, &str)],
    extra_server: &str,
) -> Daemon {
    let prometheus = fake_prometheus().await;
    let dir = daemon_support::temp_dir(tag);
    let path = daemon_support::write_config(&dir, &prometheus, "http://127.0.0.1:9/weights");
    daemon_support::add_tokens(
        &dir,
        &path,
        &[
            ("alice", "admin", ALICE),
            ("graf", "read", GRAF),
            ("shop", "app", SHOP),
            ("prom", "metrics", PROM),
        ],
        extra_server,
    );
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{listen}\""),
    );
    std::fs::write(&path, text).unwrap();
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
