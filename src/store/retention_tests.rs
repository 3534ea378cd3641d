//! Retention on a real database: what a prune keeps and drops, the space it gives back, and an
//! older database converted to incremental vacuum on open.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::value::to_raw_value;

use super::tests::TempDir;
use super::*;

/// A time `seconds` after an instant on a 10-minute boundary (slots are aligned on the epoch).
fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_400 + seconds, 0).unwrap()
}

fn policy() -> Retention {
    Retention {
        keep_all_for: Duration::from_secs(3600),
        keep_one_per: Duration::from_secs(600),
        finished_for: Duration::from_secs(86_400),
        routine_actions: vec!["analysis-recorded".into()],
    }
}

/// About 20 kB of evidence, like a real analysis's.
fn evidence(n: i64) -> Box<serde_json::value::RawValue> {
    let checks: Vec<serde_json::Value> = (0..40)
        .map(|c| {
            serde_json::json!({
                "check": format!("check-{c}"),
                "verdict": "pass",
                "baseline": (0..20).map(|i| (n + i + c) as f64 * 0.001).collect::<Vec<_>>(),
                "canary": (0..20).map(|i| (n * 7 + i + c) as f64 * 0.001).collect::<Vec<_>>(),
            })
        })
        .collect();
    to_raw_value(&serde_json::json!({ "n": n, "checks": checks })).unwrap()
}

fn recorded(action: &str) -> NewAudit {
    NewAudit {
        action: action.to_string(),
        previous_weight: Some(10),
        new_weight: Some(10),
        reason: format!("{action} reason"),
        triggered_by: "schedule".to_string(),
    }
}

/// Analyses of run `run` every 10 s for `seconds`, each with its routine audit row; at each
/// second in `decide_at` the step also records a `stage-advanced` decision.
fn analyse(store: &Store, rollout: &str, run: u32, from: i64, seconds: i64, decide_at: &[i64]) {
    for s in (from..from + seconds).step_by(10) {
        let state = serde_json::json!({ "s": s });
        let mut step = Step::new(rollout, &state, "fp", t(s));
        step.run = run;
        // Run 3 of `api` is not in the list of runs (as a step whose run was not begun by
        // the machine); its analyses are pruned all the same.
        if s == from && !(rollout == "api" && run == 3) {
            step.run_started = Some(NewRun {
                canary: format!("v{run}"),
                started_by: "schedule".into(),
            });
        }
        step.audit.push(recorded("analysis-recorded"));
        if decide_at.contains(&s) {
            step.audit.push(recorded("stage-advanced"));
        }
        step.analysis = Some(NewAnalysis {
            outcome: "pass".into(),
            score: Some(1.0),
            evidence: evidence(s),
            kept: None,
        });
        store.commit_step(&step).unwrap();
    }
}

/// Every analysis of a run, newest first, page after page as the API reads them.
fn analyses_of(store: &Store, rollout: &str, run: u32) -> Vec<Analysis> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .analyses_page_of(rollout, Some(run), cursor, MAX_PAGE)
            .unwrap();
        all.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

fn audit_of(store: &Store, rollout: &str, run: u32) -> Vec<AuditEntry> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .audit_page_of(rollout, Some(run), cursor, MAX_PAGE)
            .unwrap();
        all.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

#[test]
fn a_prune_keeps_decisions_with_their_analyses_thins_the_rest_and_gives_the_space_back() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    // Run 1: three hours, finished a day and more ago; run 2: three hours, under way.
    analyse(&store, "web", 1, 0, 3 * 3600, &[1800, 5400]);
    let day = 86_400;
    analyse(&store, "web", 2, 2 * day, 3 * 3600, &[2 * day + 1800]);
    let now = t(2 * day + 3 * 3600);
    let before = store.size().unwrap();
    let total_before = analyses_of(&store, "web", 1).len() + analyses_of(&store, "web", 2).len();
    assert_eq!(total_before, 2 * 1080);

    let pruned = store
        .prune(&policy(), now, &|rollout, run| rollout == "web" && run == 2)
        .unwrap();

    // Every decision is still there, with the analysis it was taken on.
    for run in [1, 2] {
        let audit = audit_of(&store, "web", run);
        let analyses = analyses_of(&store, "web", run);
        let decisions: Vec<&AuditEntry> = audit
            .iter()
            .filter(|a| a.action == "stage-advanced")
            .collect();
        assert_eq!(decisions.len(), if run == 1 { 2 } else { 1 });
        for decision in decisions {
            assert!(
                analyses.iter().any(|a| a.at == decision.at),
                "run {run}: the analysis of the decision at {} is gone",
                decision.at
            );
            // Its routine row too: the decisive analysis's audit line stays whole.
            assert!(
                audit
                    .iter()
                    .any(|a| a.at == decision.at && a.action == "analysis-recorded")
            );
        }
        // No routine audit row is left without its analysis.
        for row in audit.iter().filter(|a| a.action == "analysis-recorded") {
            assert!(analyses.iter().any(|a| a.at == row.at), "{row:?}");
        }
    }
    // Run 1, finished long ago: its first and last, and each stage's first and last.
    let run1: Vec<i64> = analyses_of(&store, "web", 1)
        .iter()
        .rev()
        .map(|a| a.at.timestamp() - 1_700_000_400)
        .collect();
    assert_eq!(run1, [0, 1800, 1810, 5400, 5410, 3 * 3600 - 10]);
    // Run 2, under way: the last hour whole (360), one per 10 minutes before it (12 slots),
    // and the decision's stage boundaries (1800 opens a slot; 1810 is the next stage's first).
    let run2 = analyses_of(&store, "web", 2);
    assert_eq!(run2.len(), 360 + 12 + 1, "{}", run2.len());
    assert_eq!(
        pruned.analyses_deleted as usize,
        total_before - run1.len() - run2.len()
    );
    assert_eq!(pruned.audit_deleted, pruned.analyses_deleted);
    // The space is given back to the file system.
    let after = store.size().unwrap();
    assert!(
        after.bytes < before.bytes / 3,
        "{before:?} -> {after:?} ({pruned:?})"
    );
    assert_eq!(after.free_bytes, 0);
    assert_eq!(pruned.bytes_freed, before.bytes - after.bytes);
    let on_disk = std::fs::metadata(dir.0.join(DB_FILE)).unwrap().len();
    assert!(on_disk <= before.bytes, "{on_disk} on disk");

    // A run missing from the list of runs is pruned too.
    analyse(&store, "api", 3, 0, 3 * 3600, &[]);
    store.prune(&policy(), now, &|_, _| false).unwrap();
    assert_eq!(analyses_of(&store, "api", 3).len(), 2, "its first and last");

    // A second pass finds nothing more to drop, and a restart keeps what was kept.
    let again = store.prune(&policy(), now, &|_, run| run == 2).unwrap();
    assert_eq!((again.analyses_deleted, again.audit_deleted), (0, 0));
    drop(store);
    let store = Store::open(&dir.0).unwrap();
    assert_eq!(analyses_of(&store, "web", 1).len(), run1.len());
    assert_eq!(analyses_of(&store, "web", 2).len(), run2.len());
    assert_eq!(analyses_of(&store, "api", 3).len(), 2);
}

#[test]
fn a_database_from_before_retention_is_converted_to_incremental_vacuum_once() {
    let dir = TempDir::new();
    let path = dir.0.join(DB_FILE);
    {
        // As an older canaryd created it: no auto_vacuum, WAL, the whole schema.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        for sql in schema::MIGRATIONS {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", LATEST_VERSION)
            .unwrap();
        let mode: i64 = conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 0);
    }
    let store = Store::open(&dir.0).unwrap();
    analyse(&store, "web", 1, 0, 3 * 3600, &[]);
    let before = store.size().unwrap();
    store
        .prune(&policy(), t(3 * 3600 + 86_400 * 2), &|_, _| false)
        .unwrap();
    let after = store.size().unwrap();
    assert!(after.bytes < before.bytes / 10, "{before:?} -> {after:?}");
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "incremental");
}
