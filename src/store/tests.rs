//! Unit tests of the store, each on a fresh database in its own temporary directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::*;

/// A directory removed when dropped.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "canaryd-store-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

fn audit(action: &str, from: u8, to: u8) -> NewAudit {
    NewAudit {
        action: action.to_string(),
        previous_weight: Some(from),
        new_weight: Some(to),
        reason: format!("{action} from {from} to {to}"),
        triggered_by: "analysis".to_string(),
    }
}

fn message(key: &str) -> NewMessage {
    NewMessage {
        receiver: "team-email".to_string(),
        dedupe_key: key.to_string(),
        event: "advanced".to_string(),
        severity: "info".to_string(),
        payload: json!({ "key": key }),
        incident: None,
    }
}

fn intent(key: &str, from: u8, to: u8) -> NewIntent {
    NewIntent {
        idempotency_key: key.to_string(),
        weight: to,
        previous_weight: from,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    stage: u32,
    weight: u8,
}

/// A step with every part filled in.
fn full_step<'a>(rollout: &'a str, state: &'a State, n: u32, at: DateTime<Utc>) -> Step<'a, State> {
    let mut step = Step::new(rollout, state, "fp-1", at);
    step.audit = vec![audit("advance", 10, 25), audit("notify", 25, 25)];
    step.intent = Some(intent(&format!("{rollout}-{n}"), 10, 25));
    step.outbox = vec![message(&format!("{rollout}-{n}-mail"))];
    step.analysis = Some(NewAnalysis {
        outcome: "pass".to_string(),
        score: Some(0.93),
        evidence: serde_json::value::to_raw_value(
            &json!({ "p99": { "verdict": "pass", "p": 0.41 } }),
        )
        .unwrap(),
        kept: None,
    });
    step
}

fn count(store: &Store, table: &str) -> i64 {
    let conn = lock(&store.inner.reader);
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .unwrap()
}

// ----- opening and migrations -----

#[test]
fn open_creates_the_database_in_wal_mode_with_full_sync_and_foreign_keys() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0.join("nested/state")).unwrap();
    assert_eq!(store.path(), dir.0.join("nested/state/canaryd.db"));
    assert!(store.path().is_file());
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);

    let writer = lock(&store.inner.writer);
    let mode: String = writer
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    let sync: i64 = writer
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    let fk: i64 = writer
        .pragma_query_value(None, "foreign_keys", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous=FULL");
    assert_eq!(fk, 1);
}

#[test]
fn data_survives_closing_and_reopening() {
    let dir = TempDir::new();
    let state = State {
        stage: 2,
        weight: 25,
    };
    {
        let store = Store::open(&dir.0).unwrap();
        store
            .commit_step(&full_step("web", &state, 1, t(0)))
            .unwrap();
    }
    let store = Store::open(&dir.0).unwrap();
    let saved = store.rollout::<State>("web").unwrap().unwrap();
    assert_eq!(saved.state, state);
    assert_eq!(store.pending_intents().unwrap().len(), 1);
}

#[test]
fn upgrading_from_v1_keeps_the_data_and_adds_the_later_tables() {
    let dir = TempDir::new();
    let path = dir.0.join(DB_FILE);
    let state = State {
        stage: 1,
        weight: 5,
    };
    {
        // A database as a v1 daemon wrote it, with v1's own statements.
        let v1 = Store::open_file(&path, &schema::MIGRATIONS[..1]).unwrap();
        assert_eq!(v1.schema_version().unwrap(), 1);
        // The outbox does not exist yet at v1.
        assert!(v1.outbox_counts().is_err());
        drop(v1);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let json = serde_json::to_string(&state).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO rollouts (name, state, rule_fingerprint, updated_at)
                 VALUES ('web', '{json}', 'fp-old', 1000);
             INSERT INTO audit (rollout, at, action, previous_weight, new_weight, reason, triggered_by)
                 VALUES ('web', 900, 'start', 0, 5, 'started', 'schedule');
             INSERT INTO intents (rollout, idempotency_key, weight, previous_weight, status, created_at)
                 VALUES ('web', 'web-1', 5, 0, 'pending', 900);"
        ))
        .unwrap();
    }
    let store = Store::open(&dir.0).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    let saved = store.rollout::<State>("web").unwrap().unwrap();
    assert_eq!(
        (saved.state, saved.rule_fingerprint.as_str()),
        (state, "fp-old")
    );
    let audit = store.audit_page("web", None, 10).unwrap().items;
    assert_eq!((audit.len(), audit[0].run), (1, 1));
    assert_eq!(store.intent_by_key("web-1").unwrap().unwrap().weight, 5);
    assert_eq!(store.enqueue(&message("m"), t(1)).unwrap(), Some(1));
    store.set_flag("emergency_stop", &false, t(1)).unwrap();
    // The history before runs is run 1, listed with its first entry's time.
    let runs = store.runs("web").unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].run, runs[0].canary.as_str()), (1, ""));
    assert_eq!(runs[0].started_at.timestamp_millis(), 900);
    assert_eq!(runs[0].last_action.as_deref(), Some("start"));
}

#[test]
fn history_and_analyses_are_kept_per_run() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let state = State {
        stage: 0,
        weight: 10,
    };
    for (run, at) in [(1u32, 0u32), (1, 1), (2, 2)] {
        let mut step = full_step("web", &state, at, t(i64::from(at)));
        step.intent = None;
        step.run = run;
        if at != 1 {
            step.run_started = Some(NewRun {
                canary: format!("v{run}"),
                started_by: "schedule".into(),
            });
        }
        store.commit_step(&step).unwrap();
    }
    let all = store.audit_page_of("web", None, None, 100).unwrap().items;
    let second = store
        .audit_page_of("web", Some(2), None, 100)
        .unwrap()
        .items;
    assert!(second.iter().all(|e| e.run == 2) && !second.is_empty());
    assert!(all.len() > second.len());
    let analyses = store
        .analyses_page_of("web", Some(1), None, 100)
        .unwrap()
        .items;
    assert_eq!(analyses.len(), 2);
    assert!(analyses.iter().all(|a| a.run == 1));
    let runs = store.runs("web").unwrap();
    let listed: Vec<(u32, &str)> = runs.iter().map(|r| (r.run, r.canary.as_str())).collect();
    assert_eq!(listed, [(2, "v2"), (1, "v1")]);
}

#[test]
fn a_failing_migration_leaves_the_previous_version_intact() {
    let dir = TempDir::new();
    let path = dir.0.join(DB_FILE);
    drop(Store::open(&dir.0).unwrap());
    let mut broken: Vec<&str> = schema::MIGRATIONS.to_vec();
    broken.push("CREATE TABLE half_done (a INTEGER); SELECT no_such_column FROM rollouts;");
    let err = Store::open_file(&path, &broken).unwrap_err();
    assert!(
        matches!(err, StoreError::Migration { version, .. } if version == LATEST_VERSION + 1),
        "{err}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    let store = Store::open(&dir.0).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    let half_done: i64 = lock(&store.inner.reader)
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'half_done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        half_done, 0,
        "the failed migration's first statement was rolled back"
    );
}

#[test]
fn a_database_from_a_newer_canaryd_is_refused() {
    let dir = TempDir::new();
    drop(Store::open(&dir.0).unwrap());
    let path = dir.0.join(DB_FILE);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", LATEST_VERSION + 7)
        .unwrap();
    let err = Store::open(&dir.0).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::TooNew { found, supported, .. }
            if found == LATEST_VERSION + 7 && supported == LATEST_VERSION),
        "{text}"
    );
    assert!(
        text.contains(&path.display().to_string()) && text.contains("newer"),
        "{text}"
    );
}

#[test]
fn a_file_that_is_not_a_database_gives_a_clear_error() {
    let dir = TempDir::new();
    let path = dir.0.join(DB_FILE);
    std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
    let err = Store::open(&dir.0).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("move it aside"), "{text}");
}

#[test]
fn a_state_dir_that_is_a_file_gives_a_clear_error() {
    let dir = TempDir::new();
    let file = dir.0.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = Store::open(&file).unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

// ----- commit_step -----

#[test]
fn commit_step_records_every_part() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let state = State {
        stage: 1,
        weight: 25,
    };
    let committed = store
        .commit_step(&full_step("web", &state, 1, t(5)))
        .unwrap();
    assert_eq!(committed.audit_ids.len(), 2);
    assert_eq!(committed.outbox_ids.len(), 1);

    let saved = store.rollout::<State>("web").unwrap().unwrap();
    assert_eq!(
        saved,
        StoredRollout {
            name: "web".to_string(),
            state,
            rule_fingerprint: "fp-1".to_string(),
            updated_at: t(5),
        }
    );

    let audit_entries = store.audit_page("web", None, 10).unwrap();
    assert_eq!(audit_entries.next, None);
    let ids: Vec<i64> = audit_entries.items.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        vec![committed.audit_ids[1], committed.audit_ids[0]],
        "newest first"
    );
    assert_eq!(
        audit_entries.items[1],
        AuditEntry {
            run: 1,
            id: committed.audit_ids[0],
            rollout: "web".to_string(),
            at: t(5),
            action: "advance".to_string(),
            previous_weight: Some(10),
            new_weight: Some(25),
            reason: "advance from 10 to 25".to_string(),
            triggered_by: "analysis".to_string(),
        }
    );

    let pending = store.pending_intents().unwrap();
    assert_eq!(
        pending,
        vec![Intent {
            id: committed.intent_id.unwrap(),
            rollout: "web".to_string(),
            idempotency_key: "web-1".to_string(),
            weight: 25,
            previous_weight: 10,
            status: IntentStatus::Pending,
            error: None,
            created_at: t(5),
            completed_at: None,
        }]
    );

    let mail = store.message_by_dedupe_key("web-1-mail").unwrap().unwrap();
    assert_eq!(Some(mail.id), committed.outbox_ids[0]);
    assert_eq!(
        (
            mail.status,
            mail.attempts,
            mail.next_attempt_at,
            mail.created_at,
            mail.sent_at
        ),
        (MessageStatus::Pending, 0, t(5), t(5), None)
    );
    assert_eq!(mail.payload, json!({ "key": "web-1-mail" }));

    let analyses = store.analyses_page("web", None, 10).unwrap();
    assert_eq!(
        analyses.items,
        vec![Analysis {
            run: 1,
            id: committed.analysis_id.unwrap(),
            rollout: "web".to_string(),
            at: t(5),
            outcome: "pass".to_string(),
            score: Some(0.93),
            evidence: json!({ "p99": { "verdict": "pass", "p": 0.41 } }),
        }]
    );
}

#[test]
fn a_step_with_only_a_state_saves_the_state_and_nothing_else() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let state = json!({ "phase": "Progressing" });
    let committed = store
        .commit_step(&Step::new("api", &state, "fp", t(0)))
        .unwrap();
    assert_eq!(
        committed,
        Committed {
            audit_ids: vec![],
            intent_id: None,
            outbox_ids: vec![],
            analysis_id: None
        }
    );
    let saved = store.rollout::<serde_json::Value>("api").unwrap().unwrap();
    assert_eq!(saved.state, state);
    for table in ["audit", "intents", "outbox", "analyses"] {
        assert_eq!(count(&store, table), 0, "{table}");
    }
}

#[test]
fn later_steps_replace_the_state_and_rollouts_are_listed_by_name() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let first = State {
        stage: 0,
        weight: 5,
    };
    let second = State {
        stage: 1,
        weight: 25,
    };
    store
        .commit_step(&Step::new("web", &first, "fp-1", t(0)))
        .unwrap();
    store
        .commit_step(&Step::new("api", &first, "fp-1", t(1)))
        .unwrap();
    store
        .commit_step(&Step::new("web", &second, "fp-2", t(2)))
        .unwrap();

    let all = store.rollouts::<State>().unwrap();
    let summary: Vec<(&str, &State, &str, DateTime<Utc>)> = all
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                &r.state,
                r.rule_fingerprint.as_str(),
                r.updated_at,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("api", &first, "fp-1", t(1)),
            ("web", &second, "fp-2", t(2))
        ]
    );
    assert!(store.rollout::<State>("nope").unwrap().is_none());
}

#[test]
fn a_reused_idempotency_key_rejects_the_whole_step() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let before = State {
        stage: 1,
        weight: 25,
    };
    store
        .commit_step(&full_step("web", &before, 1, t(0)))
        .unwrap();

    let after = State {
        stage: 2,
        weight: 50,
    };
    let mut step = full_step("web", &after, 2, t(10));
    step.intent = Some(intent("web-1", 25, 50));
    let err = store.commit_step(&step).unwrap_err();
    assert!(
        matches!(&err, StoreError::DuplicateIntent { key, .. } if key == "web-1"),
        "{err}"
    );
    assert!(
        err.to_string().contains("nothing of this step was written"),
        "{err}"
    );

    assert_eq!(
        store.rollout::<State>("web").unwrap().unwrap().state,
        before
    );
    assert_eq!(count(&store, "audit"), 2);
    assert_eq!(count(&store, "intents"), 1);
    assert!(store.message_by_dedupe_key("web-2-mail").unwrap().is_none());
    assert_eq!(count(&store, "analyses"), 1);
}

#[test]
fn a_failing_part_rolls_back_the_parts_written_before_it() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let state = State {
        stage: 1,
        weight: 25,
    };
    let mut step = full_step("web", &state, 1, t(0));
    // A weight above 100 violates the intents table's CHECK, after the state and audit rows
    // were already inserted in the transaction.
    step.intent = Some(intent("web-1", 25, 150));
    let err = store.commit_step(&step).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Sql {
                op: "commit step",
                ..
            }
        ),
        "{err}"
    );
    assert!(store.rollout::<State>("web").unwrap().is_none());
    for table in ["audit", "intents", "outbox", "analyses"] {
        assert_eq!(count(&store, table), 0, "{table}");
    }
}

#[test]
fn a_dedupe_key_already_enqueued_is_skipped_and_the_rest_of_the_step_kept() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    assert_eq!(
        store.enqueue(&message("web-paused"), t(0)).unwrap(),
        Some(1)
    );
    assert_eq!(store.enqueue(&message("web-paused"), t(1)).unwrap(), None);

    let state = State {
        stage: 1,
        weight: 25,
    };
    let mut step = Step::new("web", &state, "fp", t(2));
    step.outbox = vec![message("web-paused"), message("web-resumed")];
    step.audit = vec![audit("resume", 25, 25)];
    let committed = store.commit_step(&step).unwrap();
    assert_eq!(committed.outbox_ids[0], None);
    assert!(committed.outbox_ids[1].is_some());
    assert_eq!(count(&store, "outbox"), 2);
    assert_eq!(count(&store, "audit"), 1);
    // The first message is untouched by the duplicate.
    let first = store.message_by_dedupe_key("web-paused").unwrap().unwrap();
    assert_eq!(first.created_at, t(0));
}

#[test]
fn a_nan_score_is_stored_as_no_score() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let state = State {
        stage: 0,
        weight: 5,
    };
    let mut step = Step::new("web", &state, "fp", t(0));
    step.analysis = Some(NewAnalysis {
        outcome: "inconclusive".to_string(),
        score: Some(f64::NAN),
        evidence: serde_json::value::to_raw_value(&json!([])).unwrap(),
        kept: None,
    });
    store.commit_step(&step).unwrap();
    let page = store.analyses_page("web", None, 5).unwrap();
    assert_eq!(page.items[0].score, None);
}

// ----- pagination -----

#[test]
fn audit_pages_walk_newest_first_without_gaps_or_overlap() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let state = State {
        stage: 0,
        weight: 0,
    };
    for i in 0..25u8 {
        for rollout in ["web", "api"] {
            let mut step = Step::new(rollout, &state, "fp", t(i64::from(i)));
            step.audit = vec![audit(&format!("a{i}"), i, i + 1)];
            store.commit_step(&step).unwrap();
        }
    }
    let mut cursor = None;
    let mut sizes = Vec::new();
    let mut actions = Vec::new();
    loop {
        let page = store.audit_page("web", cursor, 10).unwrap();
        sizes.push(page.items.len());
        actions.extend(page.items.iter().map(|e| {
            assert_eq!(e.rollout, "web");
            e.action.clone()
        }));
        // The cursor goes through its string form, as it would over HTTP.
        match page.next {
            Some(next) => cursor = Some(next.to_string().parse::<Cursor>().unwrap()),
            None => break,
        }
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    let expected: Vec<String> = (0..25).rev().map(|i| format!("a{i}")).collect();
    assert_eq!(actions, expected);
}

#[test]
fn a_page_exactly_full_at_the_end_has_no_next_cursor() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let state = State {
        stage: 0,
        weight: 0,
    };
    for i in 0..4 {
        let mut step = Step::new("web", &state, "fp", t(i));
        step.analysis = Some(NewAnalysis {
            outcome: format!("o{i}"),
            score: None,
            evidence: serde_json::value::to_raw_value(&json!({})).unwrap(),
            kept: None,
        });
        store.commit_step(&step).unwrap();
    }
    let first = store.analyses_page("web", None, 2).unwrap();
    assert_eq!(
        first
            .items
            .iter()
            .map(|a| a.outcome.as_str())
            .collect::<Vec<_>>(),
        ["o3", "o2"]
    );
    let second = store.analyses_page("web", first.next, 2).unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|a| a.outcome.as_str())
            .collect::<Vec<_>>(),
        ["o1", "o0"]
    );
    assert_eq!(second.next, None);
    // A limit of 0 still returns one row rather than an endless series of empty pages.
    assert_eq!(store.analyses_page("web", None, 0).unwrap().items.len(), 1);
    assert!(
        store
            .analyses_page("other", None, 5)
            .unwrap()
            .items
            .is_empty()
    );
}

#[test]
fn cursors_that_the_store_did_not_hand_out_are_rejected() {
    for bad in ["", "abc", "-3", "0", "1.5"] {
        let err = bad.parse::<Cursor>().unwrap_err();
        assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
    }
    assert_eq!("42".parse::<Cursor>().unwrap().to_string(), "42");
}

// ----- intents -----

#[test]
fn completing_intents_records_the_outcome_once() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let state = State {
        stage: 1,
        weight: 25,
    };
    let a = store
        .commit_step(&full_step("web", &state, 1, t(0)))
        .unwrap()
        .intent_id
        .unwrap();
    let b = store
        .commit_step(&full_step("web", &state, 2, t(1)))
        .unwrap()
        .intent_id
        .unwrap();
    let c = store
        .commit_step(&full_step("api", &state, 3, t(2)))
        .unwrap()
        .intent_id
        .unwrap();
    let pending: Vec<i64> = store
        .pending_intents()
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(pending, vec![a, b, c], "oldest first");

    store.complete_intent(a, Ok(()), t(10)).unwrap();
    store
        .complete_intent(c, Err("HTTP 503 from the load balancer"), t(11))
        .unwrap();
    let pending: Vec<i64> = store
        .pending_intents()
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(pending, vec![b]);

    let done = store.intent_by_key("web-1").unwrap().unwrap();
    assert_eq!(
        (done.status, done.error, done.completed_at),
        (IntentStatus::Done, None, Some(t(10)))
    );
    let failed = store.intent_by_key("api-3").unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref(), failed.completed_at),
        (
            IntentStatus::Failed,
            Some("HTTP 503 from the load balancer"),
            Some(t(11))
        )
    );

    let again = store.complete_intent(a, Err("late"), t(12)).unwrap_err();
    assert!(
        matches!(&again, StoreError::NotPending { status, .. } if status == "done"),
        "{again}"
    );
    assert_eq!(
        store.intent_by_key("web-1").unwrap().unwrap().status,
        IntentStatus::Done
    );
    let missing = store.complete_intent(999, Ok(()), t(12)).unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { id: 999, .. }),
        "{missing}"
    );
    assert!(store.intent_by_key("nope").unwrap().is_none());
}

// ----- outbox -----

#[test]
fn claiming_returns_due_messages_earliest_first_and_leases_them() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let first = store.enqueue(&message("m1"), t(0)).unwrap().unwrap();
    let second = store.enqueue(&message("m2"), t(1)).unwrap().unwrap();
    let later = store.enqueue(&message("m3"), t(100)).unwrap().unwrap();

    let lease = Duration::from_secs(30);
    let claimed = store.claim_due(t(5), lease, 10).unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![first, second]
    );
    assert!(
        claimed
            .iter()
            .all(|m| m.attempts == 1 && m.next_attempt_at == t(35))
    );

    // Leased: not claimable again until the lease runs out.
    assert!(store.claim_due(t(20), lease, 10).unwrap().is_empty());
    let reclaimed = store.claim_due(t(35), lease, 1).unwrap();
    assert_eq!((reclaimed[0].id, reclaimed[0].attempts), (first, 2));

    let rest = store.claim_due(t(200), lease, 10).unwrap();
    assert_eq!(
        rest.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![second, first, later]
    );
}

#[test]
fn polls_that_find_nothing_to_claim_leave_nothing_to_checkpoint() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let lease = Duration::from_secs(30);
    let idle = store.writes_noted();
    assert!(store.claim_due(t(0), lease, 10).unwrap().is_empty());
    assert_eq!(
        store.writes_noted(),
        idle,
        "a poll of an empty outbox was counted as a write"
    );

    let id = store.enqueue(&message("m1"), t(10)).unwrap().unwrap();
    let enqueued = store.writes_noted();
    assert!(enqueued > idle);
    // Not due yet, then due, then leased: only the claim itself changes rows.
    assert!(store.claim_due(t(5), lease, 10).unwrap().is_empty());
    assert_eq!(store.writes_noted(), enqueued);
    let claimed = store.claim_due(t(10), lease, 10).unwrap();
    assert_eq!(claimed.iter().map(|m| m.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(store.writes_noted(), enqueued + 1);
    assert!(store.claim_due(t(20), lease, 10).unwrap().is_empty());
    assert_eq!(store.writes_noted(), enqueued + 1);
}

#[test]
fn a_message_moves_through_reschedule_to_sent_exactly_once() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let id = store.enqueue(&message("m1"), t(0)).unwrap().unwrap();
    let lease = Duration::from_secs(60);

    store.claim_due(t(0), lease, 10).unwrap();
    store.reschedule(id, t(8), "SMTP 451 try again").unwrap();
    let waiting = store.message_by_dedupe_key("m1").unwrap().unwrap();
    assert_eq!(
        (
            waiting.next_attempt_at,
            waiting.last_error.as_deref(),
            waiting.attempts
        ),
        (t(8), Some("SMTP 451 try again"), 1)
    );
    assert!(store.claim_due(t(7), lease, 10).unwrap().is_empty());
    assert_eq!(store.claim_due(t(8), lease, 10).unwrap()[0].attempts, 2);

    store.mark_sent(id, t(9)).unwrap();
    let sent = store.message_by_dedupe_key("m1").unwrap().unwrap();
    assert_eq!(
        (sent.status, sent.sent_at, sent.last_error),
        (MessageStatus::Sent, Some(t(9)), None)
    );
    assert!(store.claim_due(t(1000), lease, 10).unwrap().is_empty());

    let twice = store.mark_sent(id, t(10)).unwrap_err();
    assert!(
        matches!(&twice, StoreError::NotPending { status, .. } if status == "sent"),
        "{twice}"
    );
    assert!(store.reschedule(id, t(20), "x").is_err());
    assert!(store.mark_failed(id, "x").is_err());
    assert!(matches!(
        store.mark_sent(777, t(10)).unwrap_err(),
        StoreError::NotFound { id: 777, .. }
    ));
}

#[test]
fn failed_messages_are_never_claimed_and_counts_follow_the_statuses() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    assert_eq!(store.outbox_counts().unwrap(), OutboxCounts::default());
    let ids: Vec<i64> = (0..5)
        .map(|i| {
            store
                .enqueue(&message(&format!("m{i}")), t(0))
                .unwrap()
                .unwrap()
        })
        .collect();
    store.mark_sent(ids[0], t(1)).unwrap();
    store.mark_sent(ids[1], t(1)).unwrap();
    store.mark_failed(ids[2], "550 no such mailbox").unwrap();
    assert_eq!(
        store.outbox_counts().unwrap(),
        OutboxCounts {
            pending: 2,
            sent: 2,
            failed: 1,
            superseded: 0
        }
    );
    let failed = store.message_by_dedupe_key("m2").unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.last_error.as_deref()),
        (MessageStatus::Failed, Some("550 no such mailbox"))
    );
    let due: Vec<i64> = store
        .claim_due(t(5), Duration::from_secs(1), 10)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(due, vec![ids[3], ids[4]]);
}

// ----- flags -----

#[test]
fn flags_round_trip_overwrite_and_clear() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct EmergencyStop {
        on: bool,
        by: String,
        why: String,
    }
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    assert!(
        store
            .flag::<EmergencyStop>("emergency_stop")
            .unwrap()
            .is_none()
    );
    let stop = EmergencyStop {
        on: true,
        by: "alice".into(),
        why: "incident 42".into(),
    };
    store.set_flag("emergency_stop", &stop, t(1)).unwrap();
    let flag = store
        .flag::<EmergencyStop>("emergency_stop")
        .unwrap()
        .unwrap();
    assert_eq!(
        (flag.key.as_str(), &flag.value, flag.updated_at),
        ("emergency_stop", &stop, t(1))
    );

    let lifted = EmergencyStop {
        on: false,
        by: "bob".into(),
        why: "resolved".into(),
    };
    store.set_flag("emergency_stop", &lifted, t(2)).unwrap();
    assert_eq!(
        store
            .flag::<EmergencyStop>("emergency_stop")
            .unwrap()
            .unwrap()
            .value,
        lifted
    );

    // Reading a flag as the wrong type names the flag.
    let err = store.flag::<u32>("emergency_stop").unwrap_err();
    assert!(
        matches!(err, StoreError::Json { .. }) && err.to_string().contains("emergency_stop"),
        "{err}"
    );

    assert!(store.clear_flag("emergency_stop").unwrap());
    assert!(!store.clear_flag("emergency_stop").unwrap());
    assert!(
        store
            .flag::<EmergencyStop>("emergency_stop")
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_state_of_the_wrong_shape_names_the_rollout() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    store
        .commit_step(&Step::new("web", &json!("not a state"), "fp", t(0)))
        .unwrap();
    let err = store.rollout::<State>("web").unwrap_err();
    assert!(err.to_string().contains("state of rollout `web`"), "{err}");
}

// ----- concurrency -----

#[test]
fn the_store_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Store>();

    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let state = State {
        stage: 0,
        weight: 0,
    };
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let store = store.clone();
            let state = &state;
            scope.spawn(move || {
                for n in 0..20 {
                    let name = format!("r{thread}");
                    store
                        .commit_step(&full_step(&name, state, n, t(0)))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(count(&store, "intents"), 80);
    assert_eq!(count(&store, "audit"), 160);
    assert_eq!(store.rollouts::<State>().unwrap().len(), 4);
}

#[test]
fn an_open_read_does_not_block_a_commit() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let old = State {
        stage: 0,
        weight: 5,
    };
    store
        .commit_step(&Step::new("web", &old, "fp", t(0)))
        .unwrap();

    // Hold a read transaction open on the reader connection, mid-snapshot...
    let mut reader = lock(&store.inner.reader);
    let snapshot = reader.transaction().unwrap();
    let before: String = snapshot
        .query_row("SELECT state FROM rollouts WHERE name = 'web'", [], |r| {
            r.get(0)
        })
        .unwrap();
    // ...and commit meanwhile: with WAL the writer neither waits nor fails.
    let new = State {
        stage: 1,
        weight: 25,
    };
    let started = std::time::Instant::now();
    store.commit_step(&full_step("web", &new, 1, t(1))).unwrap();
    assert!(
        started.elapsed() < BUSY_TIMEOUT,
        "the commit waited for the reader"
    );
    // The reader keeps its snapshot until it finishes.
    let still: String = snapshot
        .query_row("SELECT state FROM rollouts WHERE name = 'web'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(before, still);
    drop(snapshot);
    drop(reader);
    assert_eq!(store.rollout::<State>("web").unwrap().unwrap().state, new);
}

// ----- group commit -----

/// Runs `commit(store, n)` on `callers` threads at once with the writer held until all but the
/// leader have queued, so their steps land in one batch; the results in caller order.
fn commit_in_one_batch<T: Send>(
    store: &Store,
    callers: u32,
    commit: impl Fn(&Store, u32) -> T + Sync,
) -> Vec<T> {
    let writer = lock(&store.inner.writer);
    let commit = &commit;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..callers)
            .map(|n| scope.spawn(move || commit(store, n)))
            .collect();
        // The first caller leads a batch blocked on the writer; the others queue behind it.
        release_when_queued(store, callers as usize - 1, writer);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Holds the writer connection until `queued` steps wait for it, so that they all land in one
/// batch, then lets them through.
fn release_when_queued(store: &Store, queued: usize, writer: MutexGuard<'_, Connection>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.steps.queued() < queued {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {queued} steps queued",
            store.steps.queued()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(writer);
}

#[test]
fn concurrent_steps_share_a_batch_and_each_caller_gets_its_own_rows() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let threads = 24;
    let results = commit_in_one_batch(&store, threads, |store, n| {
        let name = format!("r{n:02}");
        let state = State {
            stage: n,
            weight: 10,
        };
        let committed = store.commit_step(&full_step(&name, &state, n, t(n.into())));
        (name, committed)
    });

    let mut seen_ids = std::collections::HashSet::new();
    for (name, result) in results {
        let committed = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        // The ids handed back are this caller's own rows.
        let intent = store.intent_by_key(&format!("{name}-{}", &name[1..].parse::<u32>().unwrap()));
        let intent = intent.unwrap().unwrap();
        assert_eq!(Some(intent.id), committed.intent_id, "{name}");
        assert_eq!(intent.rollout, name);
        let analyses = store.analyses_page(&name, None, 10).unwrap().items;
        assert_eq!(analyses.len(), 1, "{name}");
        assert_eq!(Some(analyses[0].id), committed.analysis_id, "{name}");
        let audit = store.audit_page(&name, None, 10).unwrap().items;
        let mut audit_ids: Vec<i64> = audit.iter().map(|a| a.id).collect();
        audit_ids.sort();
        assert_eq!(audit_ids, committed.audit_ids, "{name}");
        let mail = store
            .message_by_dedupe_key(&format!("{}-mail", intent.idempotency_key))
            .unwrap()
            .unwrap();
        assert_eq!(committed.outbox_ids, vec![Some(mail.id)], "{name}");
        assert!(seen_ids.insert(committed.analysis_id), "{name}: shared id");
    }
    assert_eq!(store.rollouts::<State>().unwrap().len(), threads as usize);
    assert_eq!(count(&store, "intents"), i64::from(threads));
    assert_eq!(count(&store, "audit"), 2 * i64::from(threads));
    assert_eq!(count(&store, "outbox"), i64::from(threads));
    assert_eq!(count(&store, "analyses"), i64::from(threads));
}

#[test]
fn a_failing_step_in_a_batch_fails_alone_and_the_others_are_recorded() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    // Already recorded: a step reusing this key must fail.
    let first = State {
        stage: 0,
        weight: 0,
    };
    store
        .commit_step(&full_step("taken", &first, 0, t(0)))
        .unwrap();

    let threads: u32 = 12;
    let results = commit_in_one_batch(&store, threads, |store, n| {
        let name = format!("r{n:02}");
        let state = State {
            stage: n,
            weight: 25,
        };
        let mut step = full_step(&name, &state, n, t(1));
        match n {
            // Violates the intents table's CHECK after its state and audit rows.
            3 => step.intent = Some(intent("bad-weight", 25, 150)),
            // An idempotency key recorded before the batch.
            7 => step.intent = Some(intent("taken-0", 0, 25)),
            _ => {}
        }
        (n, store.commit_step(&step))
    });

    for (n, result) in results {
        let name = format!("r{n:02}");
        match n {
            3 => assert!(
                matches!(
                    result,
                    Err(StoreError::Sql {
                        op: "commit step",
                        ..
                    })
                ),
                "{name}: {result:?}"
            ),
            7 => assert!(
                matches!(&result, Err(StoreError::DuplicateIntent { key, .. }) if key == "taken-0"),
                "{name}: {result:?}"
            ),
            _ => {
                result.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        let stored = store.rollout::<State>(&name).unwrap();
        let audit = store.audit_page(&name, None, 10).unwrap().items;
        let analyses = store.analyses_page(&name, None, 10).unwrap().items;
        if n == 3 || n == 7 {
            // Nothing of a failed step remains, not even the parts written before the failure.
            assert!(stored.is_none(), "{name}");
            assert!(audit.is_empty(), "{name}");
            assert!(analyses.is_empty(), "{name}");
            assert!(
                store
                    .message_by_dedupe_key(&format!("{name}-{n}-mail"))
                    .unwrap()
                    .is_none(),
                "{name}"
            );
        } else {
            assert_eq!(stored.unwrap().state.stage, n, "{name}");
            assert_eq!(audit.len(), 2, "{name}");
            assert_eq!(analyses.len(), 1, "{name}");
        }
    }
    // The earlier step plus the ten good ones.
    assert_eq!(count(&store, "intents"), 11);
    assert_eq!(count(&store, "analyses"), 11);
}

#[test]
fn two_steps_with_one_key_in_a_batch_record_the_first_only() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    let state = State {
        stage: 1,
        weight: 25,
    };
    let names = ["a", "b", "c"];
    let results = commit_in_one_batch(&store, 3, |store, n| {
        let name = names[n as usize];
        let mut step = full_step(name, &state, 1, t(1));
        if name != "a" {
            step.intent = Some(intent("same", 10, 25));
        }
        store.commit_step(&step).is_ok()
    });
    // `a` succeeds; of `b` and `c`, exactly one records the key.
    assert!(results[0]);
    assert_eq!(results.iter().filter(|ok| **ok).count(), 2, "{results:?}");
    assert_eq!(count(&store, "intents"), 2);
    assert_eq!(store.rollouts::<State>().unwrap().len(), 2);
}

#[test]
fn the_wal_index_is_kept_in_memory_and_another_process_cannot_open_the_database() {
    let dir = TempDir::new();
    let store = Store::open(&dir.0).unwrap();
    store.set_flag("k", &1, Utc::now()).unwrap();
    // No mapped index file for a full or read-only file system to turn into a SIGBUS.
    assert!(dir.0.join(DB_FILE).exists());
    assert!(!dir.0.join("canaryd.db-shm").exists());
    // A second handle in this process shares the open database.
    let again = Store::open(&dir.0).unwrap();
    assert_eq!(again.flag::<i32>("k").unwrap().map(|f| f.value), Some(1));
    // Another process (Python's sqlite3, as an operator's tool would) is turned away.
    let script = "import sqlite3, sys\n\
                  c = sqlite3.connect(sys.argv[1], timeout=0.2)\n\
                  c.execute('SELECT count(*) FROM flags').fetchone()\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.0.join(DB_FILE))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "another process read the database");
    assert!(stderr.contains("database is locked"), "{stderr}");
    drop((store, again));
    // Once the store is closed, it can.
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.0.join(DB_FILE))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
