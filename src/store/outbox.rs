//! The notification outbox: the part of [`super::Store`] that owns the `outbox` table. Messages
//! are enqueued with a step (or alone), claimed with a lease by the dispatcher, and marked sent,
//! rescheduled or failed; a dedupe key is enqueued once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Inner, MAX_PAGE, Message, MessageStatus, NewMessage, OutboxCounts, Store, StoreError, exec,
    millis, millis_of, one,
};

impl Store {
    // ----- notification outbox -----

    /// Enqueues one notification outside a step (due at `now`). Returns `None`, writing nothing,
    /// if its dedupe key is already in the outbox.
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
    pub fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        const OP: &str = "claim due notifications";
        let now_ms = millis(now);
        let lease_end = now_ms.saturating_add(millis_of(lease));
        let rows = self.write(OP, |tx| {
            let rows = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM outbox
                         WHERE status = 'pending' AND next_attempt_at <= ?1
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
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2 WHERE id = ?1",
                    params![row.id, lease_end],
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
        let sql = format!("UPDATE outbox SET {set} WHERE id = ?1 AND status = 'pending'");
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

    /// How many messages are pending, sent and failed.
    pub fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        const OP: &str = "count notifications";
        self.read(OP, |conn| {
            one(
                conn,
                "SELECT count(*) FILTER (WHERE status = 'pending'),
                        count(*) FILTER (WHERE status = 'sent'),
                        count(*) FILTER (WHERE status = 'failed')
                 FROM outbox",
                [],
                |row| {
                    Ok(OutboxCounts {
                        pending: row.get(0)?,
                        sent: row.get(1)?,
                        failed: row.get(2)?,
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
    pub(super) fn insert_message(
        &self,
        tx: &Connection,
        op: &'static str,
        message: &MessageJob,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        let inserted = tx
            .prepare_cached(
                "INSERT INTO outbox (receiver, dedupe_key, event, severity, payload, status,
                     attempts, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)
                 ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    message.receiver,
                    message.dedupe_key,
                    message.event,
                    message.severity,
                    message.payload,
                    at
                ])
            })
            .map_err(self.sql(op))?;
        Ok((inserted == 1).then(|| tx.last_insert_rowid()))
    }
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
}

impl MessageJob {
    pub(super) fn new(message: &NewMessage) -> Result<MessageJob, serde_json::Error> {
        Ok(MessageJob {
            receiver: message.receiver.clone(),
            dedupe_key: message.dedupe_key.clone(),
            event: message.event.clone(),
            severity: message.severity.clone(),
            payload: serde_json::to_string(&message.payload)?,
        })
    }
}
