//! The notification outbox: the part of [`super::Store`] that owns the `outbox` table. Messages
//! are enqueued with a step (or alone), claimed with a lease by the dispatcher, and marked sent,
//! rescheduled or failed; a dedupe key is enqueued once. The messages of one incident (see
//! `incidents`) are claimed in their order per receiver, one at a time, and a resolve
//! supersedes the undelivered triggers before it. A lease belongs to the process generation
//! that took it: the next process releases a gone one's leases at once ([`Store::release_claims`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Inner, MAX_PAGE, Message, MessageIncident, MessageStatus, NewMessage, OutboxCounts, Store,
    StoreError, exec, millis, millis_of, one,
};

impl Store {
    // ----- notification outbox -----

    /// Enqueues one notification outside a step (due at `now`). Returns `None`, writing nothing,
    /// if its dedupe key is already in the outbox or it resolves an incident its key never had.
    pub fn enqueue(
        &self,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        const OP: &str = "enqueue notification";
        let message =
            MessageJob::new(message).map_err(|e| self.json(OP, "notification payload", e))?;
        self.write(OP, |tx| {
            self.inner.insert_message(tx, OP, &message, millis(now))
        })
    }

    /// Claims up to `limit` pending messages due at `now` (earliest first): each gets one more
    /// attempt counted and is hidden from other claims for `lease`, after which it is due again
    /// unless marked sent, rescheduled or failed (so a sender that dies mid-send loses nothing).
    ///
    /// Of an incident's messages to one receiver, only the earliest pending one can be claimed,
    /// so a later message is never delivered before an earlier one; and a trigger not in flight
    /// with a resolve after it is first marked superseded (the resolve goes instead).
    pub fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        const OP: &str = "claim due notifications";
        let now_ms = millis(now);
        let lease_end = now_ms.saturating_add(millis_of(lease));
        let generation = self.inner.generation;
        let rows = self.write(OP, |tx| {
            exec(
                tx,
                "UPDATE outbox SET status = 'superseded', claimed_by = NULL,
                     last_error = 'superseded: the incident was resolved before it was delivered'
                 WHERE status = 'pending' AND incident_action = 'trigger'
                   AND (claimed_by IS NULL OR next_attempt_at <= ?1)
                   AND EXISTS (SELECT 1 FROM outbox r
                               WHERE r.incident_key = outbox.incident_key
                                 AND r.receiver = outbox.receiver
                                 AND r.incident_seq > outbox.incident_seq
                                 AND r.incident_action = 'resolve'
                                 AND r.status = 'pending')",
                params![now_ms],
            )
            .map_err(self.sql(OP))?;
            let rows = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM outbox
                         WHERE status = 'pending' AND next_attempt_at <= ?1
                           AND (incident_key IS NULL OR NOT EXISTS (
                                SELECT 1 FROM outbox e
                                WHERE e.incident_key = outbox.incident_key
                                  AND e.receiver = outbox.receiver
                                  AND e.incident_seq < outbox.incident_seq
                                  AND e.status = 'pending'))
                         ORDER BY next_attempt_at, id LIMIT ?2"
                    ))
                    .map_err(self.sql(OP))?;
                stmt.query_map(
                    params![now_ms, limit.min(MAX_PAGE) as i64],
                    MessageRow::from_row,
                )
                .map_err(self.sql(OP))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sql(OP))?
            };
            let mut claimed = Vec::with_capacity(rows.len());
            for mut row in rows {
                exec(
                    tx,
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2,
                         claimed_by = ?3
                     WHERE id = ?1",
                    params![row.id, lease_end, generation],
                )
                .map_err(self.sql(OP))?;
                row.attempts += 1;
                row.next_attempt_at = lease_end;
                claimed.push(row);
            }
            Ok(claimed)
        })?;
        rows.into_iter()
            .map(|row| self.message_from(OP, row))
            .collect()
    }

    /// Releases the leases taken by other process generations (a process that was killed, or
    /// stopped with sends in flight): those messages are due at `now` instead of when the lease
    /// would have run out. Call once at start, before claiming; the state lock makes this
    /// process the only one. Returns how many were released.
    pub fn release_claims(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        const OP: &str = "release notification leases";
        let generation = self.inner.generation;
        self.write(OP, |tx| {
            exec(
                tx,
                "UPDATE outbox SET claimed_by = NULL, next_attempt_at = MIN(next_attempt_at, ?1)
                 WHERE status = 'pending' AND claimed_by IS NOT NULL AND claimed_by != ?2",
                params![millis(now), generation],
            )
            .map_err(self.sql(OP))
        })
    }

    /// Marks a claimed message as sent. Fails if it is not pending, so a message is never
    /// recorded as sent twice.
    pub fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.update_pending_message(
            "mark notification sent",
            id,
            "status = 'sent', sent_at = ?2, last_error = NULL",
            &[&millis(at)],
        )
    }

    /// Records a failed attempt that may succeed later: the message is due again at
    /// `next_attempt_at` (the caller computes the backoff).
    pub fn reschedule(
        &self,
        id: i64,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.update_pending_message(
            "reschedule notification",
            id,
            "next_attempt_at = ?2, last_error = ?3",
            &[&millis(next_attempt_at), &error],
        )
    }

    /// Gives up on a message (a permanent error, or too many attempts).
    pub fn mark_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.update_pending_message(
            "mark notification failed",
            id,
            "status = 'failed', last_error = ?2",
            &[&error],
        )
    }

    fn update_pending_message(
        &self,
        op: &'static str,
        id: i64,
        set: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE outbox SET {set}, claimed_by = NULL WHERE id = ?1 AND status = 'pending'"
        );
        let mut all: Vec<&dyn rusqlite::ToSql> = vec![&id];
        all.extend_from_slice(args);
        self.write(op, |tx| {
            let changed = exec(tx, &sql, all.as_slice()).map_err(self.sql(op))?;
            if changed == 1 {
                return Ok(());
            }
            let status = one(tx, "SELECT status FROM outbox WHERE id = ?1", [id], |row| {
                row.get::<_, String>(0)
            })
            .optional()
            .map_err(self.sql(op))?;
            Err(self.not_pending(op, "notification", id, status))
        })
    }

    /// The message with this dedupe key, if any.
    pub fn message_by_dedupe_key(&self, key: &str) -> Result<Option<Message>, StoreError> {
        const OP: &str = "load notification";
        let row = self.read(OP, |conn| {
            one(
                conn,
                &format!("SELECT {MESSAGE_COLUMNS} FROM outbox WHERE dedupe_key = ?1"),
                [key],
                MessageRow::from_row,
            )
            .optional()
            .map_err(self.sql(OP))
        })?;
        row.map(|row| self.message_from(OP, row)).transpose()
    }

    /// How many messages are pending, sent, failed and superseded.
    pub fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        const OP: &str = "count notifications";
        self.read(OP, |conn| {
            one(
                conn,
                "SELECT count(*) FILTER (WHERE status = 'pending'),
                        count(*) FILTER (WHERE status = 'sent'),
                        count(*) FILTER (WHERE status = 'failed'),
                        count(*) FILTER (WHERE status = 'superseded')
                 FROM outbox",
                [],
                |row| {
                    Ok(OutboxCounts {
                        pending: row.get(0)?,
                        sent: row.get(1)?,
                        failed: row.get(2)?,
                        superseded: row.get(3)?,
                    })
                },
            )
            .map_err(self.sql(OP))
        })
    }

    fn message_from(&self, op: &'static str, row: MessageRow) -> Result<Message, StoreError> {
        Ok(Message {
            id: row.id,
            payload: serde_json::from_str(&row.payload)
                .map_err(|e| self.json(op, format!("payload of notification {}", row.id), e))?,
            status: MessageStatus::parse(&row.status).ok_or_else(|| {
                self.bad(
                    op,
                    "outbox.status",
                    format!("unknown status `{}`", row.status),
                )
            })?,
            attempts: u32::try_from(row.attempts).map_err(|_| {
                self.bad(
                    op,
                    "outbox.attempts",
                    format!("{} is not a count", row.attempts),
                )
            })?,
            next_attempt_at: self.time(op, "outbox.next_attempt_at", row.next_attempt_at)?,
            created_at: self.time(op, "outbox.created_at", row.created_at)?,
            sent_at: self.opt_time(op, "outbox.sent_at", row.sent_at)?,
            receiver: row.receiver,
            dedupe_key: row.dedupe_key,
            event: row.event,
            severity: row.severity,
            last_error: row.last_error,
        })
    }
}

impl Inner {
    /// Inserts one message (a message of an incident in its place in the incident's life);
    /// its id, or `None` when its dedupe key is already in the outbox or it has no incident to
    /// belong to.
    pub(super) fn insert_message(
        &self,
        tx: &Connection,
        op: &'static str,
        message: &MessageJob,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        let placement = match &message.incident {
            Some(incident) => match self.place_in_incident(tx, op, incident, at)? {
                Some(placement) => Some((incident, placement)),
                None => return Ok(None),
            },
            None => None,
        };
        let dedupe_key = match placement {
            Some((_, p)) => super::incidents::dedupe_key(&message.dedupe_key, p.ordinal),
            None => message.dedupe_key.clone(),
        };
        let inserted = tx
            .prepare_cached(
                "INSERT INTO outbox (receiver, dedupe_key, event, severity, payload, status,
                     attempts, next_attempt_at, created_at, incident_key, incident_seq,
                     incident_action)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?7, ?8, ?9)
                 ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    message.receiver,
                    dedupe_key,
                    message.event,
                    message.severity,
                    message.payload,
                    at,
                    placement.map(|(i, _)| i.key.as_str()),
                    placement.map(|(_, p)| p.seq),
                    placement.map(|(i, _)| i.action.as_str()),
                ])
            })
            .map_err(self.sql(op))?;
        if inserted != 1 {
            return Ok(None);
        }
        let id = tx.last_insert_rowid();
        if let Some((incident, p)) = placement {
            self.advance_incident(tx, op, &incident.key, p.seq, at)?;
        }
        Ok(Some(id))
    }
}

/// A process generation for leases: random, so two processes (or two opens of the store in
/// one test) never share one.
pub(super) fn new_generation() -> i64 {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    // Positive, so it is never mistaken for a missing one.
    (random >> 1) as i64
}

const MESSAGE_COLUMNS: &str = "id, receiver, dedupe_key, event, severity, payload, status, \
     attempts, next_attempt_at, last_error, created_at, sent_at";

struct MessageRow {
    id: i64,
    receiver: String,
    dedupe_key: String,
    event: String,
    severity: String,
    payload: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    created_at: i64,
    sent_at: Option<i64>,
}

impl MessageRow {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(MessageRow {
            id: row.get(0)?,
            receiver: row.get(1)?,
            dedupe_key: row.get(2)?,
            event: row.get(3)?,
            severity: row.get(4)?,
            payload: row.get(5)?,
            status: row.get(6)?,
            attempts: row.get(7)?,
            next_attempt_at: row.get(8)?,
            last_error: row.get(9)?,
            created_at: row.get(10)?,
            sent_at: row.get(11)?,
        })
    }
}

/// A notification with its payload serialised.
#[derive(Debug)]
pub(super) struct MessageJob {
    pub(super) receiver: String,
    pub(super) dedupe_key: String,
    pub(super) event: String,
    pub(super) severity: String,
    pub(super) payload: String,
    pub(super) incident: Option<MessageIncident>,
}

impl MessageJob {
    pub(super) fn new(message: &NewMessage) -> Result<MessageJob, serde_json::Error> {
        Ok(MessageJob {
            receiver: message.receiver.clone(),
            dedupe_key: message.dedupe_key.clone(),
            event: message.event.clone(),
            severity: message.severity.clone(),
            payload: serde_json::to_string(&message.payload)?,
            incident: message.incident.clone(),
        })
    }
}
