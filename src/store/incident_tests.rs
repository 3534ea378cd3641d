//! Unit tests of incidents in the store: their life (open, update, resolve, reopen), the order
//! their messages are claimed in, superseding, leases of a process that is gone, and the
//! upgrade of an outbox written before incidents.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "canaryd-incidents-{tag}-{}-{}",
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

const LEASE: Duration = Duration::from_secs(120);

/// A message of incident `key` for `receiver`: a trigger (of `event`) or a resolve.
fn message(key: &str, receiver: &str, event: &str, action: IncidentStep) -> NewMessage {
    let dedupe = match action {
        IncidentStep::Trigger => format!("{key}/{event}/{receiver}"),
        IncidentStep::Resolve => format!("{key}/resolve/{receiver}"),
    };
    NewMessage {
        receiver: receiver.to_string(),
        dedupe_key: dedupe,
        event: event.to_string(),
        severity: "warning".to_string(),
        payload: json!({ "key": key, "event": event, "action": action }),
        incident: Some(MessageIncident {
            key: key.to_string(),
            rollout: Some("web".to_string()),
            action,
        }),
    }
}

fn trigger(key: &str, receiver: &str, event: &str) -> NewMessage {
    message(key, receiver, event, IncidentStep::Trigger)
}

fn resolve(key: &str, receiver: &str) -> NewMessage {
    message(key, receiver, "resumed", IncidentStep::Resolve)
}

fn open_keys(store: &Store) -> Vec<String> {
    store
        .open_incidents(Some("web"))
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect()
}

fn claimed_keys(store: &Store, at: DateTime<Utc>) -> Vec<String> {
    store
        .claim_due(at, LEASE, 100)
        .unwrap()
        .into_iter()
        .map(|m| m.dedupe_key)
        .collect()
}

#[test]
fn an_incident_opens_once_updates_resolves_once_and_reopens_as_the_next_one() {
    let dir = TempDir::new("life");
    let store = Store::open(&dir.0).unwrap();
    // A resolve with nothing open is dropped.
    assert_eq!(store.enqueue(&resolve("k", "pager"), t(0)).unwrap(), None);
    assert!(open_keys(&store).is_empty());

    assert!(
        store
            .enqueue(&trigger("k", "pager", "paused"), t(1))
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .enqueue(&trigger("k", "mail", "paused"), t(1))
            .unwrap()
            .is_some()
    );
    // The same event again within the open incident: not queued again.
    assert_eq!(
        store
            .enqueue(&trigger("k", "pager", "paused"), t(2))
            .unwrap(),
        None
    );
    // Another event: an update of the open incident.
    assert!(
        store
            .enqueue(&trigger("k", "pager", "rolled-back"), t(3))
            .unwrap()
            .is_some()
    );
    let open = store.open_incidents(Some("web")).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].receivers, vec!["mail", "pager"]);
    assert!(store.incident_open("k").unwrap());

    // Resolved: once per receiver, every receiver.
    assert!(
        store
            .enqueue(&resolve("k", "pager"), t(4))
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .enqueue(&resolve("k", "mail"), t(4))
            .unwrap()
            .is_some()
    );
    assert_eq!(store.enqueue(&resolve("k", "pager"), t(5)).unwrap(), None);
    assert!(!store.incident_open("k").unwrap());
    assert!(open_keys(&store).is_empty());

    // The key's next incident: its messages are its own (`#2`), paged again.
    assert!(
        store
            .enqueue(&trigger("k", "pager", "paused"), t(6))
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .message_by_dedupe_key("k/paused/pager#2")
            .unwrap()
            .is_some()
    );
    assert_eq!(open_keys(&store), vec!["k"]);
    assert!(
        store
            .enqueue(&resolve("k", "pager"), t(7))
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .message_by_dedupe_key("k/resolve/pager#2")
            .unwrap()
            .is_some()
    );
}

#[test]
fn an_incidents_messages_are_claimed_in_order_one_at_a_time_per_receiver() {
    let dir = TempDir::new("order");
    let store = Store::open(&dir.0).unwrap();
    store
        .enqueue(&trigger("k", "pager", "paused"), t(0))
        .unwrap();
    store
        .enqueue(&trigger("k", "pager", "rolled-back"), t(0))
        .unwrap();
    store
        .enqueue(&trigger("k", "mail", "paused"), t(0))
        .unwrap();
    // The first of each receiver; the update waits for the pager's trigger.
    let mut first = claimed_keys(&store, t(1));
    first.sort();
    assert_eq!(first, vec!["k/paused/mail", "k/paused/pager"]);
    assert!(claimed_keys(&store, t(2)).is_empty(), "in flight: nothing");
    let pager = store
        .message_by_dedupe_key("k/paused/pager")
        .unwrap()
        .unwrap();
    store.mark_sent(pager.id, t(3)).unwrap();
    assert_eq!(claimed_keys(&store, t(3)), vec!["k/rolled-back/pager"]);
}

#[test]
fn a_resolve_supersedes_an_undelivered_trigger_but_waits_for_one_in_flight() {
    let dir = TempDir::new("supersede");
    let store = Store::open(&dir.0).unwrap();
    store
        .enqueue(&trigger("a", "pager", "paused"), t(0))
        .unwrap();
    store
        .enqueue(&trigger("b", "pager", "paused"), t(0))
        .unwrap();
    // `a`'s trigger failed once and waits for its retry; `b`'s is being sent.
    let claimed = store.claim_due(t(0), LEASE, 100).unwrap();
    let a = claimed
        .iter()
        .find(|m| m.dedupe_key.starts_with("a/"))
        .unwrap();
    store.reschedule(a.id, t(30), "HTTP 503").unwrap();
    store.enqueue(&resolve("a", "pager"), t(1)).unwrap();
    store.enqueue(&resolve("b", "pager"), t(1)).unwrap();

    // `a`'s resolve goes at once, its trigger never; `b`'s resolve waits for its trigger.
    assert_eq!(claimed_keys(&store, t(2)), vec!["a/resolve/pager"]);
    let a = store
        .message_by_dedupe_key("a/paused/pager")
        .unwrap()
        .unwrap();
    assert_eq!(a.status, MessageStatus::Superseded);
    // The counts /metrics and the overview read say so.
    assert_eq!(store.outbox_counts().unwrap().superseded, 1);
    let b = store
        .message_by_dedupe_key("b/paused/pager")
        .unwrap()
        .unwrap();
    store.mark_sent(b.id, t(3)).unwrap();
    assert_eq!(claimed_keys(&store, t(3)), vec!["b/resolve/pager"]);
    assert!(claimed_keys(&store, t(100)).is_empty());
}

#[test]
fn the_next_process_releases_the_leases_of_one_that_is_gone_at_once() {
    let dir = TempDir::new("release");
    {
        let gone = Store::open(&dir.0).unwrap();
        gone.enqueue(&trigger("k", "pager", "paused"), t(0))
            .unwrap();
        assert_eq!(claimed_keys(&gone, t(0)).len(), 1);
    }
    let store = Store::open(&dir.0).unwrap();
    // Still leased for 120 s ...
    assert!(claimed_keys(&store, t(5)).is_empty());
    // ... until this process releases what the one before it held.
    assert_eq!(store.release_claims(t(5)).unwrap(), 1);
    assert_eq!(claimed_keys(&store, t(5)), vec!["k/paused/pager"]);
    // Its own leases it keeps.
    assert_eq!(store.release_claims(t(6)).unwrap(), 0);
    assert!(claimed_keys(&store, t(6)).is_empty());
}

#[test]
fn upgrading_carries_the_incidents_of_messages_written_before() {
    let dir = TempDir::new("upgrade");
    let path = dir.0.join(DB_FILE);
    {
        let v3 = Store::open_file(&path, &schema::MIGRATIONS[..3]).unwrap();
        drop(v3);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let payload = |key: &str, incident: &str| {
            json!({"rollout": "web", "group_key": key, "incident": incident}).to_string()
        };
        for (id, dedupe, key, incident, status) in [
            (1, "g1/paused/pager", "g1", "trigger", "sent"),
            (2, "g1/resumed/pager", "g1", "resolve", "sent"),
            (3, "g2/paused/pager", "g2", "trigger", "pending"),
            (4, "info/1/started/pager", "g3", "none", "sent"),
        ] {
            conn.execute(
                "INSERT INTO outbox (id, receiver, dedupe_key, event, severity, payload, status,
                     attempts, next_attempt_at, created_at)
                 VALUES (?1, 'pager', ?2, 'paused', 'warning', ?3, ?4, 1, 1000, 1000)",
                rusqlite::params![id, dedupe, payload(key, incident), status],
            )
            .unwrap();
        }
    }
    let store = Store::open(&dir.0).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    assert_eq!(open_keys(&store), vec!["g2"]);
    assert!(!store.incident_open("g1").unwrap());
    // The open one is resolved as any other, after its pending trigger (superseding it).
    assert!(
        store
            .enqueue(&resolve("g2", "pager"), t(0))
            .unwrap()
            .is_some()
    );
    assert_eq!(claimed_keys(&store, t(1)), vec!["g2/resolve/pager"]);
    let old = store
        .message_by_dedupe_key("g2/paused/pager")
        .unwrap()
        .unwrap();
    assert_eq!(old.status, MessageStatus::Superseded);
}
