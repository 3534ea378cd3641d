//! Actuator intents: the part of [`super::Store`] that owns the `intents` table. A step records
//! its intent (pending) before the runner calls the actuator; the runner completes it after, and
//! lists the pending ones on start-up to re-drive them with the same idempotency key.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Inner, Intent, IntentStatus, NewIntent, Store, StoreError, exec, millis, one};

impl Store {
    // ----- actuator intents -----

    /// Records the outcome of an intent: `Ok(())` marks it done, `Err(reason)` failed. Fails if
    /// the intent does not exist or is no longer pending.
    pub fn complete_intent(
        &self,
        id: i64,
        outcome: Result<(), &str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const OP: &str = "complete intent";
        let (status, error) = match outcome {
            Ok(()) => (IntentStatus::Done, None),
            Err(reason) => (IntentStatus::Failed, Some(reason)),
        };
        self.write(OP, |tx| {
            let changed = exec(
                tx,
                "UPDATE intents SET status = ?2, error = ?3, completed_at = ?4
                     WHERE id = ?1 AND status = 'pending'",
                params![id, status.as_str(), error, millis(at)],
            )
            .map_err(self.sql(OP))?;
            if changed == 1 {
                return Ok(());
            }
            let status = one(
                tx,
                "SELECT status FROM intents WHERE id = ?1",
                [id],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map_err(self.sql(OP))?;
            Err(self.not_pending(OP, "actuator intent", id, status))
        })
    }
    /// Intents recorded but never completed, oldest first: after a crash, the runner re-drives
    /// each with its idempotency key, then completes it.
    pub fn pending_intents(&self) -> Result<Vec<Intent>, StoreError> {
        self.intents_where(
            "list pending intents",
            "status = 'pending' ORDER BY id",
            &[],
        )
    }

    /// The intent with this idempotency key, if any.
    pub fn intent_by_key(&self, key: &str) -> Result<Option<Intent>, StoreError> {
        Ok(self
            .intents_where("load intent", "idempotency_key = ?1", &[&key])?
            .pop())
    }

    fn intents_where(
        &self,
        op: &'static str,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Intent>, StoreError> {
        let sql = format!(
            "SELECT id, rollout, idempotency_key, weight, previous_weight, status, error,
                 created_at, completed_at
             FROM intents WHERE {filter}"
        );
        let rows = self.read(op, |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(self.sql(op))?;
            stmt.query_map(args, |row| {
                Ok(IntentRow {
                    id: row.get(0)?,
                    rollout: row.get(1)?,
                    idempotency_key: row.get(2)?,
                    weight: row.get(3)?,
                    previous_weight: row.get(4)?,
                    status: row.get(5)?,
                    error: row.get(6)?,
                    created_at: row.get(7)?,
                    completed_at: row.get(8)?,
                })
            })
            .map_err(self.sql(op))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(op))
        })?;
        rows.into_iter()
            .map(|row| {
                Ok(Intent {
                    id: row.id,
                    weight: self.weight(op, "intents.weight", row.weight)?,
                    previous_weight: self.weight(
                        op,
                        "intents.previous_weight",
                        row.previous_weight,
                    )?,
                    status: IntentStatus::parse(&row.status).ok_or_else(|| {
                        self.bad(
                            op,
                            "intents.status",
                            format!("unknown status `{}`", row.status),
                        )
                    })?,
                    created_at: self.time(op, "intents.created_at", row.created_at)?,
                    completed_at: self.opt_time(op, "intents.completed_at", row.completed_at)?,
                    rollout: row.rollout,
                    idempotency_key: row.idempotency_key,
                    error: row.error,
                })
            })
            .collect()
    }
}

impl Inner {
    pub(super) fn insert_intent(
        &self,
        tx: &Connection,
        op: &'static str,
        rollout: &str,
        intent: &NewIntent,
        at: i64,
    ) -> Result<i64, StoreError> {
        let existing = tx
            .prepare_cached("SELECT id FROM intents WHERE idempotency_key = ?1")
            .and_then(|mut s| {
                s.query_row([&intent.idempotency_key], |row| row.get::<_, i64>(0))
                    .optional()
            })
            .map_err(self.sql(op))?;
        if existing.is_some() {
            return Err(StoreError::DuplicateIntent {
                op,
                path: self.path().to_path_buf(),
                key: intent.idempotency_key.clone(),
            });
        }
        tx.prepare_cached(
            "INSERT INTO intents (rollout, idempotency_key, weight, previous_weight, status,
                 created_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5)",
        )
        .and_then(|mut s| {
            s.insert(params![
                rollout,
                intent.idempotency_key,
                intent.weight,
                intent.previous_weight,
                at
            ])
        })
        .map_err(self.sql(op))
    }
}

struct IntentRow {
    id: i64,
    rollout: String,
    idempotency_key: String,
    weight: i64,
    previous_weight: i64,
    status: String,
    error: Option<String>,
    created_at: i64,
    completed_at: Option<i64>,
}
