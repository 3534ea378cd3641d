//! The state database bounded and the signals on-call alerts on, on the embedded daemon on
//! paused time:
//! - retention: a rollout analysed every second, then finished, keeps its decisions and the
//!   analyses they were taken on while the rest of its evidence is thinned, then dropped; what
//!   is kept survives a restart, and the database's size is in `/metrics`;
//! - analyses are counted once recorded: while the store refuses to record them, they are
//!   counted as unrecorded (and the store's write errors), not as analyses.

use std::path::Path;
use std::time::Duration;

use crate::api_support::daemon_support::{
    add_tokens, embed, metrics, settle, temp_dir, wait_for, write_config, write_rule,
};
use crate::api_support::{ALICE, fake_prometheus};
use canaryd::store::{Analysis, AuditEntry, MAX_PAGE, Store};

/// Let `seconds` of the daemon's time pass, a second at a time.
async fn seconds(n: u64) {
    for _ in 0..n {
        settle().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The value of the series `line` (name and labels as written) in a `/metrics` text.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn analyses(store: &Store, rollout: &str) -> Vec<Analysis> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.analyses_page(rollout, cursor, MAX_PAGE).unwrap();
        all.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

fn audit(store: &Store, rollout: &str) -> Vec<AuditEntry> {
    store.audit_page(rollout, None, MAX_PAGE).unwrap().items
}

async fn start(dir: &Path, retention: &str) -> crate::api_support::daemon_support::Embedded {
    let prometheus = fake_prometheus().await;
    let path = write_config(dir, &prometheus, "http://127.0.0.1:9/weights");
    add_tokens(dir, &path, &[("alice", "admin", ALICE)], "");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n{retention}")).unwrap();
    embed(&path).await
}

#[tokio::test(start_paused = true)]
async fn retention_keeps_every_decisions_analysis_thins_the_rest_and_survives_a_restart() {
    let dir = temp_dir("retention");
    write_rule(&dir, "web", "good", "builtin", "3m");
    let retention = "[retention]\nkeep_all_for = \"1m\"\nkeep_one_per = \"30s\"\n\
                     finished_runs_for = \"1m\"\nprune_every = \"20s\"\n";
    let daemon = start(&dir, retention).await;
    let base = daemon.base.clone();
    // Three minutes at the first stage, analysed every second.
    seconds(150).await;
    let store = Store::open(&dir.join("state")).unwrap();
    let thinned = analyses(&store, "web");
    // The last minute whole (and what came since the last prune, at most 20 s ago), one per
    // 30 s before it, and the first: about half of the 150 written.
    assert!(
        (60..=85).contains(&thinned.len()),
        "{} analyses after 150 s",
        thinned.len()
    );
    let m = metrics(&base).await;
    let pruned = value(&m, "canaryd_store_pruned_analyses_total").unwrap();
    assert!(pruned >= 70.0, "{pruned} pruned");
    let bytes = value(&m, "canaryd_store_bytes").expect("the database's size in /metrics");
    assert!(bytes > 0.0, "{m}");

    // Past the first stage to the end, then the run is finished long enough to lose its
    // evidence but for its decisions'.
    wait_for(
        "the rollout to finish",
        Duration::from_secs(120),
        || async {
            let v: serde_json::Value = reqwest::get(format!("{base}/v1/rollouts/web"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["phase"] == "succeeded").then_some(())
        },
    )
    .await;
    seconds(100).await;
    let kept = analyses(&store, "web");
    let history = audit(&store, "web");
    assert!(kept.len() <= 12, "{} analyses kept: {kept:#?}", kept.len());
    let decisions: Vec<&AuditEntry> = history
        .iter()
        .filter(|a| ["stage-advanced", "succeeded", "promoted"].contains(&a.action.as_str()))
        .collect();
    assert!(decisions.len() >= 3, "{history:#?}");
    for decision in &decisions {
        // The analysis it was taken on: the last one at or before it, a second or two earlier.
        assert!(
            kept.iter()
                .any(|a| a.at <= decision.at && decision.at - a.at <= chrono::Duration::seconds(2)),
            "no analysis left for {decision:?}; kept: {:?}",
            kept.iter().map(|a| a.at).collect::<Vec<_>>()
        );
    }
    // No "analysis recorded" line is left without its analysis.
    for row in history.iter().filter(|a| a.action == "analysis-recorded") {
        assert!(kept.iter().any(|a| a.at == row.at), "{row:?}");
    }

    // A restart keeps what was kept, and its prunes drop nothing more.
    drop(store);
    daemon.shutdown.cancel();
    let _ = daemon.running.await;
    let again = start(&dir, retention).await;
    seconds(30).await;
    // The finished rollout analyses nothing after the restart: the time of its last conclusive
    // analysis is read back from the history for on-call's alerts.
    let newest = kept.iter().map(|a| a.at).max().unwrap();
    let m = metrics(&again.base).await;
    let last = "canaryd_rollout_last_conclusive_analysis_timestamp_seconds{rollout=\"web\"}";
    assert_eq!(
        value(&m, last),
        Some(newest.timestamp_millis() as f64 / 1000.0),
        "{m}"
    );
    let store = Store::open(&dir.join("state")).unwrap();
    let after = analyses(&store, "web");
    let ids = |list: &[Analysis]| list.iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&kept));
    assert_eq!(audit(&store, "web").len(), history.len());
    drop(store);
    again.shutdown.cancel();
    let _ = again.running.await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn analyses_are_counted_once_recorded_and_the_ones_the_store_refused_apart() {
    let dir = temp_dir("signals");
    write_rule(&dir, "web", "good", "builtin", "1h");
    let daemon = start(&dir, "").await;
    let base = daemon.base.clone();
    seconds(5).await;
    let m = metrics(&base).await;
    let pass = "canaryd_analyses_total{rollout=\"web\",verdict=\"pass\"}";
    assert!(value(&m, pass).unwrap() >= 2.0, "{m}");
    for series in [
        "canaryd_check_verdicts_total{rollout=\"web\",check=\"latency\",verdict=\"pass\"}",
        "canaryd_rollout_inconclusive_streak{rollout=\"web\"}",
        "canaryd_rollout_last_conclusive_analysis_timestamp_seconds{rollout=\"web\"}",
        "canaryd_rollout_backend_errors{rollout=\"web\"}",
        "canaryd_backend_up{source=\"prometheus\"}",
        "canaryd_state_database_healthy",
        "canaryd_store_bytes",
    ] {
        assert!(value(&m, series).is_some(), "{series} in {m}");
    }
    assert_eq!(
        value(&m, "canaryd_backend_up{source=\"prometheus\"}"),
        Some(1.0)
    );

    // The store refuses every analysis (not a storage failure: the daemon goes on analysing).
    let conn = rusqlite::Connection::open_with_flags_and_vfs(
        dir.join("state").join(canaryd::store::DB_FILE),
        rusqlite::OpenFlags::default(),
        canaryd::store::VFS,
    )
    .unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON analyses
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .unwrap();
    let counted = value(&metrics(&base).await, pass).unwrap();
    let store = Store::open(&dir.join("state")).unwrap();
    let stored = analyses(&store, "web").len();
    seconds(5).await;
    let m = metrics(&base).await;
    assert_eq!(analyses(&store, "web").len(), stored, "nothing recorded");
    assert_eq!(
        value(&m, pass),
        Some(counted),
        "analyses never recorded were counted"
    );
    let unrecorded = value(&m, "canaryd_analyses_unrecorded_total{rollout=\"web\"}").unwrap_or(0.0);
    assert!(unrecorded >= 3.0, "{m}");
    let errors = value(&m, "canaryd_store_write_errors_total{op=\"step\"}").unwrap_or(0.0);
    assert!(errors >= unrecorded, "{m}");

    // Recorded again: counted again, one for one.
    conn.execute_batch("DROP TRIGGER refuse").unwrap();
    seconds(5).await;
    let m = metrics(&base).await;
    let now_counted = value(&m, pass).unwrap();
    let now_stored = analyses(&store, "web").len();
    assert!(now_counted > counted, "{m}");
    assert!(
        (now_counted - counted) as usize <= now_stored - stored,
        "{now_counted} - {counted} counted, {now_stored} - {stored} stored"
    );

    // The rule file removed: the rollout's series go with it (its stored history stays).
    std::fs::remove_file(dir.join("rules").join("web.toml")).unwrap();
    daemon.reload.send(()).await.unwrap();
    wait_for(
        "the rollout's series to go",
        Duration::from_secs(30),
        || async {
            let m = metrics(&base).await;
            let left: Vec<&str> = m
                .lines()
                .filter(|l| {
                    l.contains("rollout=\"web\"")
                        && !l.starts_with("canaryd_rollout_phase")
                        && !l.starts_with("canaryd_rollout_weight")
                        && !l.starts_with("canaryd_rollout_stage")
                })
                .collect();
            left.is_empty().then_some(())
        },
    )
    .await;
    seconds(3).await;
    let m = metrics(&base).await;
    assert!(
        !m.contains("canaryd_rollout_inconclusive_streak{rollout=\"web\"}"),
        "{m}"
    );
    drop(conn);
    drop(store);
    daemon.shutdown.cancel();
    let _ = daemon.running.await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The example alerting rules, loaded into a real Prometheus scraping the daemon's `/metrics`:
/// when the store refuses to record analyses, the two alerts about it fire, and nothing else.
/// On the machine's time (a real Prometheus answers over real sockets): its waits are bounds on
/// events, not timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_alerts_fire_in_a_real_prometheus_scraping_the_daemon() {
    use crate::prometheus_support::Prometheus;
    let dir = temp_dir("alerts-e2e");
    write_rule(&dir, "web", "good", "builtin", "1h");
    let daemon = start(&dir, "").await;
    let target = daemon.addr.to_string();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alerts.yml");
    let prom = tokio::task::spawn_blocking(move || {
        let p = Prometheus::builder()
            .scrape("canaryd", target)
            .rule_file(rules)
            .start();
        let scraped = "canaryd_analyses_total{job=\"canaryd\",rollout=\"web\"}";
        assert!(
            p.wait_for_data(scraped, Duration::from_secs(30)),
            "{}",
            p.log_tail()
        );
        p
    })
    .await
    .unwrap();

    let conn = rusqlite::Connection::open_with_flags_and_vfs(
        dir.join("state").join(canaryd::store::DB_FILE),
        rusqlite::OpenFlags::default(),
        canaryd::store::VFS,
    )
    .unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON analyses
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .unwrap();

    let (prom, firing) = tokio::task::spawn_blocking(move || {
        let firing = [
            r#"ALERTS{alertstate="firing",alertname="CanarydAnalysesNotRecorded",rollout="web"}"#,
            r#"ALERTS{alertstate="firing",alertname="CanarydStoreWriteErrors",op="step"}"#,
        ]
        .iter()
        .all(|query| prom.wait_for_data(query, Duration::from_secs(60)));
        let all = prom
            .instant_query_json("ALERTS{alertstate=\"firing\"}")
            .unwrap_or_default();
        (prom, (firing, all))
    })
    .await
    .unwrap();
    let (fired, all) = firing;
    assert!(fired, "{all}\n{}", prom.log_tail());
    let names: std::collections::BTreeSet<&str> = all
        .split("\"alertname\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["CanarydAnalysesNotRecorded", "CanarydStoreWriteErrors"],
        "{all}"
    );
    drop(conn);
    drop(prom);
    daemon.shutdown.cancel();
    let _ = daemon.running.await;
    let _ = std::fs::remove_dir_all(&dir);
}
