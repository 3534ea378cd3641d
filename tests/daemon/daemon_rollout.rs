//! The daemon embedded in-process (`daemon::run` with a CancellationToken and a reload channel)
//! against a real Prometheus scraping a metrics endpoint this test serves every second:
//! a healthy canary advances through compressed stages to Succeeded, a failing one rolls back,
//! a Prometheus outage holds a rollout (never advancing) and alerts after N errors, then it
//! resumes; a broken rule file on reload keeps the old rules and shows in /metrics; the stop file
//! and the API stop every rollout at 0%. This test runs on the machine's time (a real Prometheus
//! answers over real sockets), so its waits are generous bounds on events, never timings: that
//! the stops act within a second of the daemon's time is proven on controlled time in
//! `daemon_faults::the_stop_file_and_the_api_stop_every_rollout_at_zero_within_a_second`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADMIN_TOKEN: &str = "alice-admin-token-for-the-rollout-test";
use crate::api_support::daemon_support::*;
use crate::prometheus_support::Prometheus;
use canaryd::store::Store;

fn audit_actions(store: &Store, rollout: &str) -> Vec<String> {
    let page = store.audit_page(rollout, None, 1000).unwrap();
    page.items.into_iter().rev().map(|a| a.action).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollouts_advance_roll_back_hold_reload_and_stop() {
    let scrape =
        serve_metrics(&[("base", 0.1), ("good", 0.1), ("bad", 0.9), ("steady", 0.1)]).await;
    let mut prom = tokio::task::spawn_blocking(move || {
        let p = Prometheus::builder()
            .scrape("app", scrape.to_string())
            .start();
        assert!(
            p.wait_for_data("latency_seconds", Duration::from_secs(15)),
            "no scrape landed"
        );
        p
    })
    .await
    .unwrap();

    let dir = temp_dir("rollout");
    let config_path = write_config(&dir, &prom.url(), "http://127.0.0.1:9/weights");
    // An operator token: the emergency-stop API is a mutation and needs one.
    add_tokens(&dir, &config_path, &[("alice", "admin", ADMIN_TOKEN)], "");
    // A real HTTP receiver for the `team` webhook: notifications must reach it.
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let text = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace("http://127.0.0.1:9/unused", &receiver_url);
    std::fs::write(&config_path, text).unwrap();
    write_rule(&dir, "healthy", "good", "file", "2s");
    write_rule(&dir, "failing", "bad", "builtin", "2s");
    write_rule(&dir, "steady", "steady", "builtin", "1h");
    let Embedded {
        base,
        shutdown,
        reload: reload_tx,
        running,
        ..
    } = embed(&config_path).await;
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);

    // Healthy: 10% → 50% → 100% → Succeeded, through the file actuator.
    wait_for("healthy to succeed", Duration::from_secs(30), || async {
        rollout(&base, "healthy")
            .await
            .filter(|r| r.phase == "succeeded" && r.weight == 100)
    })
    .await;
    let file = std::fs::read_to_string(dir.join("weights/healthy.json")).unwrap();
    assert!(file.contains("\"weight\":100"), "{file}");
    // Failing: the critical check rolls back to 0% and the rollout never passed 10%.
    let failing = wait_for("failing to roll back", Duration::from_secs(15), || async {
        rollout(&base, "failing")
            .await
            .filter(|r| r.phase == "rolled-back")
    })
    .await;
    assert_eq!(failing.weight, 0);
    // The team's webhook hears about the rollback, with the evidence that caused it.
    let rollback = wait_for("the rollback notification", Duration::from_secs(10), || {
        let received = Arc::clone(&received);
        async move {
            received
                .lock()
                .unwrap()
                .iter()
                .find(|n| {
                    n.to_string().contains("\"failing\"") && n.to_string().contains("rolled-back")
                })
                .cloned()
        }
    })
    .await;
    let text = rollback.to_string();
    assert!(text.contains("\"checks\""), "{text}");
    assert!(text.contains("\"verdict\":\"fail\""), "{text}");
    let store = Store::open(&dir.join("state")).unwrap();
    let failing_audit = audit_actions(&store, "failing");
    assert!(
        !failing_audit.contains(&"stage-advanced".to_string()),
        "{failing_audit:?}"
    );
    assert!(
        failing_audit.contains(&"rolled-back".to_string()),
        "{failing_audit:?}"
    );
    let healthy_audit = audit_actions(&store, "healthy");
    assert_eq!(
        healthy_audit
            .iter()
            .filter(|a| *a == "stage-advanced")
            .count(),
        2,
        "{healthy_audit:?}"
    );
    assert_eq!(
        healthy_audit.iter().filter(|a| *a == "succeeded").count(),
        1
    );
    let m = metrics(&base).await;
    assert!(
        m.contains("canaryd_rollout_weight{rollout=\"healthy\"} 100"),
        "{m}"
    );
    assert!(
        m.contains("canaryd_analyses_total{rollout=\"failing\",verdict=\"fail\"}"),
        "{m}"
    );

    // Outage: the steady rollout holds at 10% and alerts after 2 failed analyses.
    let steady = rollout(&base, "steady").await.unwrap();
    assert_eq!((steady.phase.as_str(), steady.weight), ("progressing", 10));
    prom = tokio::task::spawn_blocking(move || {
        prom.stop();
        prom
    })
    .await
    .unwrap();
    wait_for(
        "the backend-errors alert",
        Duration::from_secs(15),
        || async {
            audit_actions(&store, "steady")
                .contains(&"backend-errors".to_string())
                .then_some(())
        },
    )
    .await;
    let held = rollout(&base, "steady").await.unwrap();
    assert_eq!((held.phase.as_str(), held.weight), ("progressing", 10));
    assert!(
        metrics(&base).await.contains(
            "canaryd_backend_query_errors_total{rollout=\"steady\",source=\"prometheus\"}"
        )
    );
    let analyses_before = store
        .analyses_page("steady", None, 1000)
        .unwrap()
        .items
        .len();
    prom = tokio::task::spawn_blocking(move || {
        prom.restart();
        prom
    })
    .await
    .unwrap();
    wait_for("analyses to resume", Duration::from_secs(20), || async {
        (store
            .analyses_page("steady", None, 1000)
            .unwrap()
            .items
            .len()
            > analyses_before)
            .then_some(())
    })
    .await;

    // A broken rule file: the reload fails, the old rules keep running.
    std::fs::write(dir.join("rules/broken.toml"), "[rollout\nname = ").unwrap();
    reload_tx.send(()).await.unwrap();
    wait_for(
        "the failed reload in /metrics",
        Duration::from_secs(10),
        || async {
            metrics(&base)
                .await
                .contains("canaryd_config_last_reload_successful 0")
                .then_some(())
        },
    )
    .await;
    let count = store
        .analyses_page("steady", None, 1000)
        .unwrap()
        .items
        .len();
    wait_for(
        "steady to keep being analysed",
        Duration::from_secs(10),
        || async {
            (store
                .analyses_page("steady", None, 1000)
                .unwrap()
                .items
                .len()
                > count)
                .then_some(())
        },
    )
    .await;
    std::fs::remove_file(dir.join("rules/broken.toml")).unwrap();
    reload_tx.send(()).await.unwrap();
    wait_for("a good reload", Duration::from_secs(10), || async {
        metrics(&base)
            .await
            .contains("canaryd_config_last_reload_successful 1")
            .then_some(())
    })
    .await;

    // The stop file: every rollout at 0%.
    std::fs::write(dir.join("stop"), "").unwrap();
    wait_for(
        "the stop file to stop everything",
        Duration::from_secs(10),
        || async {
            // Finished runs are left as they are (issue 16): the succeeded one keeps 100%, the
            // rolled-back one its 0%; the one in progress is stopped at 0%.
            let all = rollouts(&base).await;
            let is = |name: &str, phase: &str, weight: u8| {
                all.iter()
                    .any(|r| r.name == name && r.phase == phase && r.weight == weight)
            };
            (all.len() == 3
                && is("steady", "emergency-stopped", 0)
                && is("healthy", "succeeded", 100)
                && is("failing", "rolled-back", 0))
            .then_some(())
        },
    )
    .await;
    let w: serde_json::Value = reqwest::get(format!("{base}/v1/rollouts/steady/weight"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(w["weight"], 0);
    let client = reqwest::Client::new();
    let refused = client
        .delete(format!("{base}/v1/emergency-stop"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"reason": "stop file test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409, "the file keeps the stop in force");
    std::fs::remove_file(dir.join("stop")).unwrap();
    wait_for("the stop to clear", Duration::from_secs(5), || async {
        let all = rollouts(&base).await;
        let phase = |name: &str| all.iter().find(|r| r.name == name).map(|r| r.phase.clone());
        (phase("steady").as_deref() == Some("paused")
            && phase("healthy").as_deref() == Some("succeeded")
            && phase("failing").as_deref() == Some("rolled-back"))
        .then_some(())
    })
    .await;

    // A new rule file starts a new rollout (picked up by the directory watch, or a reload).
    write_rule(&dir, "late", "steady", "builtin", "1h");
    reload_tx.send(()).await.unwrap();
    wait_for(
        "the new rollout to start",
        Duration::from_secs(10),
        || async { rollout(&base, "late").await.filter(|r| r.weight == 10) },
    )
    .await;
    // The API: every rollout at 0%.
    let resp = client
        .post(format!("{base}/v1/emergency-stop"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"reason": "bad deploy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_for("the API stop", Duration::from_secs(10), || async {
        rollout(&base, "late")
            .await
            .filter(|r| r.phase == "emergency-stopped" && r.weight == 0)
    })
    .await;
    assert!(
        metrics(&base)
            .await
            .contains("canaryd_emergency_stop_active 1")
    );
    let late_audit = audit_actions(&store, "late");
    assert!(
        late_audit.contains(&"emergency-stopped".to_string()),
        "{late_audit:?}"
    );
    let cleared = client
        .delete(format!("{base}/v1/emergency-stop"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"reason": "stop file test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), running).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    drop(prom);
    let _ = std::fs::remove_dir_all(&dir);
}
