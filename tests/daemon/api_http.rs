//! The operator API over real HTTP on 127.0.0.1, against the embedded daemon and a stand-in
//! Prometheus: authentication (401/403), request checking (400/404/405/413), commands answered
//! by the state machine (200 with the new phase, 409 with its refusal), the operator's name in
//! the audit trail, history pagination, the comparison, the emergency stop and `/metrics`.

use crate::api_support;

use api_support::{ALICE, GRAF, PROM, SHOP, non_loopback_ip, start, start_on, wait_for_analysis};
use serde_json::Value;

async fn send(method: reqwest::Method, url: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {text}"));
    (status, json)
}

async fn post(url: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    send(reqwest::Method::POST, url, token, body).await
}

async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    send(reqwest::Method::GET, url, token, "").await
}

fn error_of(v: &Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_need_an_admin_token_and_answer_with_the_state_machine() {
    let d = start(
        "api-http",
        &[("web", "steady", "1h"), ("other", "steady", "1h")],
        "",
    )
    .await;
    let base = &d.base;
    let pause = format!("{base}/v1/rollouts/web/pause");
    let reason = r#"{"reason": "checking the dashboards"}"#;

    // Authentication and authorisation.
    let (s, v) = post(&pause, None, reason).await;
    assert_eq!(s, 401, "{v}");
    assert!(error_of(&v).contains("Authorization: Bearer"), "{v}");
    let (s, v) = post(&pause, Some("not-a-token"), reason).await;
    assert_eq!((s, error_of(&v)), (401, "unknown API token"));
    let (s, v) = post(&pause, Some(GRAF), reason).await;
    assert_eq!(s, 403, "{v}");
    assert!(error_of(&v).contains("`graf` is read-only"), "{v}");

    // Bad requests say what is wrong.
    let (s, v) = post(&pause, Some(ALICE), "pause it").await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("must be JSON"), "{v}");
    let (s, v) = post(&pause, Some(ALICE), r#"{"reason": "x", "by": "bob"}"#).await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("unknown field `by`"), "{v}");
    let (s, v) = post(&pause, Some(ALICE), r#"{"reason": ""}"#).await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("`reason` is empty"), "{v}");
    let (s, v) = post(&pause, Some(ALICE), "{}").await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("missing field `reason`"), "{v}");
    let long = format!(r#"{{"reason": "{}"}}"#, "x".repeat(1001));
    let (s, v) = post(&pause, Some(ALICE), &long).await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("at most 1000"), "{v}");
    let huge = format!(r#"{{"reason": "{}"}}"#, "x".repeat(20 * 1024));
    let (s, v) = post(&pause, Some(ALICE), &huge).await;
    assert_eq!(s, 413, "{v}");
    let (s, v) = post(
        &format!("{base}/v1/rollouts/nope/pause"),
        Some(ALICE),
        reason,
    )
    .await;
    assert_eq!(s, 404);
    assert!(error_of(&v).contains("no rollout named `nope`"), "{v}");
    let (s, v) = send(reqwest::Method::PUT, &pause, Some(ALICE), reason).await;
    assert_eq!(s, 405, "{v}");
    let (s, v) = get(&pause, Some(ALICE)).await;
    assert_eq!(s, 405, "{v}");

    // The state machine refuses what makes no sense, and says why.
    let (s, v) = post(
        &format!("{base}/v1/rollouts/web/approve"),
        Some(ALICE),
        reason,
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        error_of(&v).contains("`approve` is not allowed while the rollout is progressing"),
        "{v}"
    );
    let (s, v) = post(
        &format!("{base}/v1/rollouts/web/resume"),
        Some(ALICE),
        reason,
    )
    .await;
    assert_eq!(s, 409, "{v}");

    // A pause applies and answers with the new phase; alice is recorded as who did it.
    let (s, v) = post(&pause, Some(ALICE), reason).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["phase"], "paused");
    assert_eq!(v["weight"], 10);
    assert_eq!(v["by"], "alice");
    let (s, detail) = get(&format!("{base}/v1/rollouts/web"), None).await;
    assert_eq!(s, 200);
    assert_eq!(detail["phase"], "paused");
    let why = detail["phase_reason"].as_str().unwrap();
    assert!(why.contains("checking the dashboards"), "{detail}");
    let (_, h) = get(&format!("{base}/v1/rollouts/web/history?limit=1"), None).await;
    let newest = &h["entries"][0];
    assert_eq!(newest["action"], "paused", "{h}");
    assert_eq!(newest["triggered_by"], "alice", "{h}");
    assert_eq!(newest["by_operator"], true);
    assert!(
        newest["reason"]
            .as_str()
            .unwrap()
            .contains("checking the dashboards"),
        "{h}"
    );
    let (s, v) = post(
        &format!("{base}/v1/rollouts/web/resume"),
        Some(ALICE),
        r#"{"reason": "fine"}"#,
    )
    .await;
    assert_eq!((s, v["phase"].as_str()), (200, Some("progressing")), "{v}");

    // A run in progress cannot be started again with the same version, and a version that
    // could break the rule's queries is refused.
    let (s, v) = post(
        &format!("{base}/v1/rollouts/other/start"),
        Some(ALICE),
        reason,
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("already"), "{v}");
    let (s, v) = post(
        &format!("{base}/v1/rollouts/other/start"),
        Some(ALICE),
        r#"{"reason": "deploy", "canary": "v2\"} or up{"}"#,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    // Abort ends the run for good; a later start is a new run from the first stage.
    let (s, v) = post(
        &format!("{base}/v1/rollouts/other/abort"),
        Some(ALICE),
        r#"{"reason": "bad build"}"#,
    )
    .await;
    assert_eq!(
        (s, v["phase"].as_str(), v["weight"].as_u64()),
        (200, Some("aborted"), Some(0)),
        "{v}"
    );
    let (s, v) = post(
        &format!("{base}/v1/rollouts/other/start"),
        Some(ALICE),
        r#"{"reason": "fixed build", "canary": "build-43"}"#,
    )
    .await;
    assert_eq!(
        (
            s,
            v["phase"].as_str(),
            v["run"].as_u64(),
            v["canary"].as_str()
        ),
        (200, Some("progressing"), Some(2), Some("build-43")),
        "{v}"
    );
    let (_, runs) = get(&format!("{base}/v1/rollouts/other/runs"), None).await;
    assert_eq!(runs["runs"][0]["run"], 2, "{runs}");
    assert_eq!(runs["runs"][1]["last_action"], "aborted", "{runs}");
    let (_, h) = get(&format!("{base}/v1/rollouts/other/history?run=1"), None).await;
    assert_eq!(h["entries"][0]["action"], "aborted", "{h}");
    // The current run's history, newest first, starts with run 2's start; a scheduled analysis
    // may already be recorded after it (the newest entry), so the start is the oldest one.
    let (_, h) = get(&format!("{base}/v1/rollouts/other/history"), None).await;
    assert_eq!(h["next_cursor"], Value::Null, "{h}");
    let oldest = h["entries"].as_array().and_then(|e| e.last());
    let oldest = oldest.unwrap_or_else(|| panic!("no history: {h}"));
    assert_eq!(oldest["action"], "run-started", "{h}");
    assert_eq!(oldest["run"], 2, "{h}");
    assert!(
        h["entries"]
            .as_array()
            .is_some_and(|e| e.iter().all(|entry| entry["run"] == 2)),
        "{h}"
    );

    // The emergency stop needs an admin too, and records alice.
    let stop = format!("{base}/v1/emergency-stop");
    let (s, _) = post(&stop, Some(GRAF), r#"{"reason": "incident"}"#).await;
    assert_eq!(s, 403);
    let (s, v) = post(&stop, Some(ALICE), r#"{"reason": "incident 7"}"#).await;
    assert_eq!((s, v["active"].as_bool()), (200, Some(true)), "{v}");
    api_support::daemon_support::wait_for(
        "the stop",
        std::time::Duration::from_secs(5),
        || async {
            api_support::daemon_support::rollout(base, "web")
                .await
                .filter(|r| r.phase == "emergency-stopped" && r.weight == 0)
        },
    )
    .await;
    let (s, v) = get(&stop, None).await;
    assert_eq!(s, 200);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("incident 7 (by alice)"),
        "{v}"
    );
    let (s, _) = send(
        reqwest::Method::DELETE,
        &stop,
        None,
        r#"{"reason": "over"}"#,
    )
    .await;
    assert_eq!(s, 401);
    let (s, v) = send(
        reqwest::Method::DELETE,
        &stop,
        Some(ALICE),
        r#"{"reason": "over"}"#,
    )
    .await;
    assert_eq!((s, v["active"].as_bool()), (200, Some(false)), "{v}");

    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_show_the_plan_history_pages_analyses_and_the_comparison() {
    let d = start(
        "api-reads",
        &[
            ("web", "bad", "1h"),
            ("steady", "steady", "1h"),
            ("quiet", "absent", "1h"),
        ],
        "",
    )
    .await;
    let base = &d.base;
    wait_for_analysis(base, "web").await;

    let (s, v) = get(&format!("{base}/v1/rollouts"), None).await;
    assert_eq!(s, 200);
    assert_eq!(v["rollouts"].as_array().unwrap().len(), 3, "{v}");

    wait_for_analysis(base, "steady").await;
    let (s, v) = get(&format!("{base}/v1/rollouts/steady"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "steady");
    assert_eq!(v["phase"], "progressing");
    assert_eq!(v["stage"], 0);
    assert_eq!(v["stage_name"], "10%");
    assert_eq!(v["weight"], 10);
    assert!(v["started_at"].is_string(), "{v}");
    assert!(v["last_advanced_at"].is_string(), "{v}");
    assert!(v["next_analysis_at"].is_string(), "{v}");
    let plan = v["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 3);
    assert_eq!(plan[0]["status"], "current");
    assert_eq!(plan[0]["passes_required"], 1);
    assert_eq!(plan[0]["min_duration_seconds"], 3600.0);
    assert!(plan[0]["time_in_stage_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(plan[1]["status"], "pending");
    assert!(plan[1]["passes_seen"].is_null());
    let (s, v) = get(&format!("{base}/v1/rollouts/nope"), None).await;
    assert_eq!(s, 404);
    assert!(error_of(&v).contains("nope"));

    // The comparison of the latest analysis: the canary (0.9) is beyond the threshold (0.5).
    let (s, v) = get(&format!("{base}/v1/rollouts/web/comparison"), None).await;
    assert_eq!(s, 200, "{v}");
    let check = &v["checks"][0];
    assert_eq!(check["check"], "latency");
    assert_eq!(check["measure"], "max");
    assert_eq!(check["baseline"], 0.1);
    assert_eq!(check["canary"], 0.9);
    assert_eq!(check["threshold_kind"], "threshold");
    assert_eq!(check["threshold"], 0.5);
    assert_eq!(check["verdict"], "fail");
    assert!(check["effect_difference"].as_f64().is_some(), "{v}");

    // The critical check rolled it back; the history pages through every entry once.
    api_support::daemon_support::wait_for(
        "the rollback",
        std::time::Duration::from_secs(10),
        || async {
            api_support::daemon_support::rollout(base, "web")
                .await
                .filter(|r| r.phase == "rolled-back")
        },
    )
    .await;
    let (_, all) = get(&format!("{base}/v1/rollouts/web/history?limit=1000"), None).await;
    let all_ids: Vec<i64> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(all_ids.len() >= 2, "{all}");
    assert!(all["next_cursor"].is_null());
    let mut paged = Vec::new();
    let mut url = format!("{base}/v1/rollouts/web/history?limit=1");
    loop {
        let (s, page) = get(&url, None).await;
        assert_eq!(s, 200, "{page}");
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 1);
        paged.extend(entries.iter().map(|e| e["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{base}/v1/rollouts/web/history?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, all_ids);
    let actions: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"rolled-back"), "{actions:?}");
    assert!(
        all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["triggered_by"] == "auto-rollback" && e["by_operator"] == false),
        "{all}"
    );
    for bad in [
        "limit=0",
        "limit=abc",
        "limit=5000",
        "cursor=zzz",
        "cursor=-3",
        "colour=red",
    ] {
        let (s, v) = get(&format!("{base}/v1/rollouts/web/history?{bad}"), None).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }

    let (s, v) = get(&format!("{base}/v1/rollouts/web/analyses?limit=2"), None).await;
    assert_eq!(s, 200);
    let first = &v["analyses"][0];
    assert_eq!(first["outcome"], "fail");
    assert_eq!(first["evidence"]["checks"][0]["name"], "latency");
    assert!(
        first["evidence"]["checks"][0]["evidence"]["canary"].is_object(),
        "{v}"
    );

    // A check without data is inconclusive with its cause as a stable word: in the stored
    // evidence the analyses list serves, in the comparison, and on the rollout's page.
    wait_for_analysis(base, "quiet").await;
    let (s, v) = get(&format!("{base}/v1/rollouts/quiet/analyses?limit=1"), None).await;
    assert_eq!(s, 200, "{v}");
    let verdict = &v["analyses"][0]["evidence"]["checks"][0]["verdict"];
    assert_eq!(verdict["outcome"], "inconclusive", "{v}");
    assert_eq!(verdict["cause"], "no-data", "{v}");
    let (s, v) = get(&format!("{base}/v1/rollouts/quiet/comparison"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["checks"][0]["verdict"], "inconclusive", "{v}");
    assert_eq!(v["checks"][0]["cause"], "no-data", "{v}");
    let page = reqwest::get(format!("{base}/rollouts/quiet"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("data-cause=\"no-data\"")
            && page.contains("<code class=\"cause\">no-data</code>"),
        "{page}"
    );
    let (_, v) = get(&format!("{base}/v1/rollouts/web/comparison"), None).await;
    assert!(
        v["checks"][0]["cause"].is_null(),
        "a failed check has no cause: {v}"
    );

    // /metrics: the families the operators alert on.
    let m = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "canaryd_rollout_weight{rollout=\"web\"}",
        "canaryd_rollout_phase{rollout=\"web\",phase=\"rolled-back\"} 1",
        "canaryd_analyses_total{rollout=\"web\",verdict=\"fail\"}",
        "canaryd_backend_query_duration_seconds_bucket{source=\"prometheus\",le=\"+Inf\"}",
        "canaryd_backend_query_duration_seconds_count{source=\"prometheus\"}",
        "# TYPE canaryd_actuator_failures_total counter",
        "canaryd_notifications_pending ",
        "canaryd_notifications_sent_total ",
        "canaryd_notifications_failed_total ",
        "canaryd_notifications_superseded_total ",
        "canaryd_config_last_reload_successful 1",
    ] {
        assert!(m.contains(family), "missing {family} in:\n{m}");
    }
    d.stop().await;
}

/// Every route the daemon serves, as a reader would ask for it (GET).
const ROUTES: &[&str] = &[
    "/",
    "/rollouts/web",
    "/metrics",
    "/v1/rollouts/web/assignment?key=user-42",
    "/v1/rollouts/web/weight",
    "/v1/rollouts",
    "/v1/rollouts/web",
    "/v1/rollouts/web/history",
    "/v1/rollouts/web/runs",
    "/v1/rollouts/web/analyses",
    "/v1/rollouts/web/comparison",
    "/v1/emergency-stop",
];

/// The status of `GET base+route` with `token` (any body: pages are HTML, /metrics text).
async fn status_of(base: &str, route: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{base}{route}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// What a token of each role may read: the routes it gets an answer from (others are 403).
fn allowed(token: &str, route: &str) -> bool {
    let assignment = route.contains("/assignment") || route.ends_with("/weight");
    match token {
        ALICE | GRAF => true,
        SHOP => assignment,
        PROM => route == "/metrics",
        _ => false,
    }
}

/// Every route answers 401 without a token, except the probes, and the right role's token
/// gets an answer (not 401 or 403; the comparison may be 404 before the first analysis),
/// the wrong role's a 403 naming the token.
async fn assert_one_policy(base: &str) {
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(status_of(base, probe, None).await.0, 200, "{probe}");
    }
    for route in ROUTES {
        let (s, body) = status_of(base, route, None).await;
        assert_eq!(s, 401, "{route} without a token answered {s}: {body}");
        let (s, _) = status_of(base, route, Some("not-a-token")).await;
        assert_eq!(s, 401, "{route} with an unknown token");
        for token in [ALICE, GRAF, SHOP, PROM] {
            let (s, body) = status_of(base, route, Some(token)).await;
            if allowed(token, route) {
                assert!(
                    s == 200 || (s == 404 && route.ends_with("/comparison")),
                    "{route} with {token}: {s} {body}"
                );
            } else {
                assert_eq!(s, 403, "{route} with {token}: {body}");
                let name = token.split('-').next().unwrap();
                assert!(body.contains(&format!("`{name}`")), "{route}: {body}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_reads_needing_a_token_every_route_but_the_probes_asks_for_one() {
    let d = start(
        "api-locked",
        &[("web", "steady", "1h")],
        "reads_need_token = true",
    )
    .await;
    assert_one_policy(&d.base).await;
    // Prometheus scrapes with its bearer token and gets the families.
    let (s, m) = status_of(&d.base, "/metrics", Some(PROM)).await;
    assert_eq!(s, 200);
    assert!(m.contains("canaryd_rollout_weight{rollout=\"web\"}"), "{m}");
    // An application gets its assignment with its own token.
    let (s, a) = status_of(&d.base, "/v1/rollouts/web/assignment?key=u1", Some(SHOP)).await;
    assert_eq!(s, 200);
    assert!(a.contains("\"variant\""), "{a}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_from_another_host_needs_a_token_for_every_route_but_the_probes() {
    // reads_need_token is off: loopback reads without a token, another host does not.
    let d = start_on("0.0.0.0:0", "api-remote", &[("web", "steady", "1h")], "").await;
    let remote = format!("http://{}:{}", non_loopback_ip(), d.addr.port());
    assert_one_policy(&remote).await;
    let local = format!("http://127.0.0.1:{}", d.addr.port());
    for route in ROUTES {
        let (s, body) = status_of(&local, route, None).await;
        assert!(s == 200 || s == 404, "{route} from loopback: {s} {body}");
    }
    // The emergency stop is changed from loopback only, even by an admin.
    let (s, v) = post(
        &format!("{remote}/v1/emergency-stop"),
        Some(ALICE),
        r#"{"reason": "from afar"}"#,
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(error_of(&v).contains("loopback only"), "{v}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_answer_503_naming_the_cause_while_the_state_database_is_gone() {
    let d = start("api-store", &[("web", "steady", "1h")], "").await;
    let base = d.base.clone();
    let reason = r#"{"reason": "checking the dashboards"}"#;
    // The database goes away under the daemon; it notices within its check interval.
    let state = d.dir.join("state");
    let aside = d.dir.join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    for name in ["canaryd.db", "canaryd.db-wal"] {
        std::fs::rename(state.join(name), aside.join(name)).unwrap();
    }
    api_support::daemon_support::wait_for(
        "/readyz to say not ready",
        std::time::Duration::from_secs(10),
        || async {
            let r = reqwest::get(format!("{base}/readyz")).await.ok()?;
            (r.status() == 503).then_some(())
        },
    )
    .await;

    // A command cannot be recorded: 503 with the cause, not 409 "refused".
    let (s, v) = post(
        &format!("{base}/v1/rollouts/web/pause"),
        Some(ALICE),
        reason,
    )
    .await;
    assert_eq!(s, 503, "{v}");
    let message = error_of(&v);
    assert!(
        message.contains("was deleted while canaryd was running"),
        "{v}"
    );
    assert!(message.contains("restart canaryd"), "{v}");
    // So does the emergency stop, which is recorded before it applies.
    let (s, v) = post(&format!("{base}/v1/emergency-stop"), Some(ALICE), reason).await;
    assert_eq!(s, 503, "{v}");
    // What the machine refuses is still a refusal, and an unknown rollout still unknown.
    let (s, v) = post(
        &format!("{base}/v1/rollouts/web/approve"),
        Some(ALICE),
        reason,
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = post(
        &format!("{base}/v1/rollouts/nope/pause"),
        Some(ALICE),
        reason,
    )
    .await;
    assert_eq!(s, 404);

    // The CLI says so plainly, with the daemon-failure exit code.
    let token_file = d.dir.join("alice-token");
    std::fs::write(&token_file, ALICE).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args([
            "pause",
            "web",
            "--reason",
            "checking",
            "--url",
            &base,
            "--token-file",
        ])
        .arg(&token_file)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("was deleted while canaryd was running"),
        "{stderr}"
    );
    assert!(stderr.contains("(503)"), "{stderr}");
    d.stop().await;
}
