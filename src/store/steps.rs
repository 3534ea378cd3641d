//! Rollouts and steps: the part of [`super::Store`] that owns the `rollouts` table and writes a
//! step (the rollout's state with its audit rows, intent, notifications, analysis and run) in
//! one transaction through the group commit, and reads the saved states back. The writer
//! thread's batch (`commit_batch`) lives here; the intent and message inserts it calls live with
//! their tables.

use std::future::Future;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::outbox::MessageJob;
use super::{
    Committed, Inner, NewAudit, NewIntent, NewRun, Step, Store, StoreError, StoredRollout, lock,
    millis, one,
};

impl Store {
    // ----- the key operation -----

    /// Records one decision of the state machine, all or nothing: the rollout's new state, its
    /// audit entries, the actuator intent (status pending), the notifications (skipping any whose
    /// dedupe key is already enqueued, due at `step.at`) and the analysis. Fails, writing
    /// nothing, if the intent's idempotency key is already recorded.
    ///
    /// Returns once the step is durable. Steps committed at the same time from several threads
    /// share one transaction and one fsync (group commit, see the module's documentation); each
    /// step still succeeds or fails on its own.
    pub fn commit_step<S: Serialize>(&self, step: &Step<'_, S>) -> Result<Committed, StoreError> {
        let job = self.step_job(step)?;
        self.steps.run(job)
    }

    /// [`Store::commit_step`] for async callers: the step is serialised now, and the future
    /// resolves once it is durable, without holding a thread (of the blocking pool or any other)
    /// while the batch holding it is written.
    pub fn submit_step<S: Serialize>(
        &self,
        step: &Step<'_, S>,
    ) -> impl Future<Output = Result<Committed, StoreError>> + Send + 'static {
        let job = self.step_job(step);
        let committed = job.map(|job| self.steps.submit(job));
        async move { committed?.await }
    }

    /// Serialises a step on the caller's thread, so that the batch's leader only runs SQL.
    fn step_job<S: Serialize>(&self, step: &Step<'_, S>) -> Result<StepJob, StoreError> {
        const OP: &str = COMMIT_OP;
        let state = serde_json::to_string(step.state)
            .map_err(|e| self.json(OP, format!("state of rollout `{}`", step.rollout), e))?;
        let analysis = step.analysis.as_ref().map(|analysis| AnalysisJob {
            outcome: analysis.outcome.clone(),
            score: analysis.score.filter(|s| !s.is_nan()),
            evidence: analysis.evidence.get().to_string(),
            kept: analysis.kept.clone(),
        });
        let outbox = step
            .outbox
            .iter()
            .map(MessageJob::new)
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|e| self.json(OP, "notification payload", e))?;
        Ok(StepJob {
            rollout: step.rollout.to_string(),
            state,
            rule_fingerprint: step.rule_fingerprint.to_string(),
            at: millis(step.at),
            audit: step.audit.clone(),
            intent: step.intent.clone(),
            outbox,
            analysis,
            run: step.run.max(1),
            run_started: step.run_started.clone(),
        })
    }

    // ----- rollouts -----

    /// The saved state of one rollout, if it has one.
    pub fn rollout<S: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<StoredRollout<S>>, StoreError> {
        const OP: &str = "load rollout";
        let row = self.read(OP, |conn| {
            one(
                conn,
                "SELECT name, state, rule_fingerprint, updated_at FROM rollouts WHERE name = ?1",
                [name],
                RolloutRow::from_row,
            )
            .optional()
            .map_err(self.sql(OP))
        })?;
        row.map(|row| self.rollout_from(OP, row)).transpose()
    }

    /// Every saved rollout, by name.
    pub fn rollouts<S: DeserializeOwned>(&self) -> Result<Vec<StoredRollout<S>>, StoreError> {
        const OP: &str = "list rollouts";
        let rows = self.read(OP, |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT name, state, rule_fingerprint, updated_at FROM rollouts ORDER BY name",
                )
                .map_err(self.sql(OP))?;
            stmt.query_map([], RolloutRow::from_row)
                .map_err(self.sql(OP))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sql(OP))
        })?;
        rows.into_iter()
            .map(|row| self.rollout_from(OP, row))
            .collect()
    }

    fn rollout_from<S: DeserializeOwned>(
        &self,
        op: &'static str,
        row: RolloutRow,
    ) -> Result<StoredRollout<S>, StoreError> {
        let state = serde_json::from_str(&row.state)
            .map_err(|e| self.json(op, format!("state of rollout `{}`", row.name), e))?;
        Ok(StoredRollout {
            updated_at: self.time(op, "rollouts.updated_at", row.updated_at)?,
            name: row.name,
            state,
            rule_fingerprint: row.rule_fingerprint,
        })
    }
}

/// The batch side of the group commit, run on its thread (which holds no [`Store`], so that
/// dropping the last handle stops it).
impl Inner {
    /// Writes a batch of steps in one `IMMEDIATE` transaction, each inside its own savepoint so
    /// that a failing step is rolled back alone, and commits it (one fsync). If the transaction
    /// cannot begin or commit, every step of the batch gets the error.
    pub(super) fn commit_batch(
        &self,
        jobs: &mut dyn Iterator<Item = StepJob>,
    ) -> Vec<Result<Committed, StoreError>> {
        // The connection first: steps handed in while another write holds it join this batch.
        let mut conn = lock(&self.writer);
        let jobs: Vec<StepJob> = jobs.collect();
        if let Err(fault) = self.check_on(&conn) {
            return jobs
                .iter()
                .map(|_| {
                    Err(StoreError::Failed {
                        fault: fault.clone(),
                    })
                })
                .collect();
        }
        let results = self.write_batch(&mut conn, jobs);
        for result in &results {
            if let Err(e) = result {
                self.health.note(e);
            }
        }
        results
    }

    /// [`Inner::commit_batch`]'s writing, on the writer connection.
    pub(super) fn write_batch(
        &self,
        conn: &mut Connection,
        jobs: Vec<StepJob>,
    ) -> Vec<Result<Committed, StoreError>> {
        const OP: &str = COMMIT_OP;
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return jobs.iter().map(|_| Err(self.copy_sql(OP, &e))).collect(),
        };
        let single = jobs.len() == 1;
        let mut results: Vec<Result<Committed, StoreError>> = jobs
            .iter()
            .map(|job| {
                if single {
                    // Alone in its transaction: a failure rolls the transaction back below.
                    return self.insert_step(&tx, job);
                }
                tx.prepare_cached("SAVEPOINT step")
                    .and_then(|mut s| s.execute([]))
                    .map_err(self.sql(OP))?;
                let result = self.insert_step(&tx, job);
                let end = if result.is_ok() {
                    "RELEASE step"
                } else {
                    "ROLLBACK TO step"
                };
                tx.prepare_cached(end)
                    .and_then(|mut s| s.execute([]))
                    .map_err(self.sql(OP))?;
                if result.is_err() {
                    tx.prepare_cached("RELEASE step")
                        .and_then(|mut s| s.execute([]))
                        .map_err(self.sql(OP))?;
                }
                result
            })
            .collect();
        if single && results[0].is_err() {
            // Dropping the transaction rolls it back.
            return results;
        }
        if let Err(e) = tx.commit() {
            for result in &mut results {
                if result.is_ok() {
                    *result = Err(self.copy_sql(OP, &e));
                }
            }
        }
        // Steps rolled back, or a commit that failed, leave nothing to checkpoint.
        let committed = results.iter().filter(|r| r.is_ok()).count();
        self.checkpoints.wrote(committed as u64);
        results
    }

    /// One SQLite error for each of several callers (a batch's failed commit).
    pub(super) fn copy_sql(&self, op: &'static str, e: &rusqlite::Error) -> StoreError {
        let copy = match e {
            rusqlite::Error::SqliteFailure(code, message) => {
                rusqlite::Error::SqliteFailure(*code, message.clone())
            }
            other => rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(other.to_string()),
            ),
        };
        StoreError::sql(op, self.path(), copy)
    }

    /// Writes one step's rows on `tx` (the caller handles transaction and savepoint).
    pub(super) fn insert_step(
        &self,
        tx: &Connection,
        job: &StepJob,
    ) -> Result<Committed, StoreError> {
        const OP: &str = COMMIT_OP;
        let at = job.at;
        tx.prepare_cached(
            "INSERT INTO rollouts (name, state, rule_fingerprint, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET state = excluded.state,
                 rule_fingerprint = excluded.rule_fingerprint, updated_at = excluded.updated_at",
        )
        .and_then(|mut s| s.execute(params![job.rollout, job.state, job.rule_fingerprint, at]))
        .map_err(self.sql(OP))?;

        if let Some(started) = &job.run_started {
            self.insert_run(tx, OP, job, started)?;
        }

        let mut audit_ids = Vec::with_capacity(job.audit.len());
        if !job.audit.is_empty() {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO audit (rollout, at, action, previous_weight, new_weight, reason,
                         triggered_by, run)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(self.sql(OP))?;
            for entry in &job.audit {
                let id = stmt
                    .insert(params![
                        job.rollout,
                        at,
                        entry.action,
                        entry.previous_weight,
                        entry.new_weight,
                        entry.reason,
                        entry.triggered_by,
                        job.run
                    ])
                    .map_err(self.sql(OP))?;
                audit_ids.push(id);
            }
        }

        let intent_id = match &job.intent {
            Some(intent) => Some(self.insert_intent(tx, OP, &job.rollout, intent, at)?),
            None => None,
        };

        let mut outbox_ids = Vec::with_capacity(job.outbox.len());
        for message in &job.outbox {
            outbox_ids.push(self.insert_message(tx, OP, message, at)?);
        }

        let analysis_id = match &job.analysis {
            Some(analysis) => Some(
                tx.prepare_cached(
                    "INSERT INTO analyses (rollout, at, outcome, score, evidence, run)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut s| {
                    s.insert(params![
                        job.rollout,
                        at,
                        analysis.outcome,
                        analysis.score,
                        analysis.evidence,
                        job.run
                    ])
                })
                .map_err(self.sql(OP))?,
            ),
            None => None,
        };
        if let Some(kept) = job.analysis.as_ref().and_then(|a| a.kept.as_ref()) {
            self.replace_kept(tx, OP, &job.rollout, kept)?;
        }

        Ok(Committed {
            audit_ids,
            intent_id,
            outbox_ids,
            analysis_id,
        })
    }
}

struct RolloutRow {
    name: String,
    state: String,
    rule_fingerprint: String,
    updated_at: i64,
}

impl RolloutRow {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(RolloutRow {
            name: row.get(0)?,
            state: row.get(1)?,
            rule_fingerprint: row.get(2)?,
            updated_at: row.get(3)?,
        })
    }
}

/// The operation named in errors of [`Store::commit_step`].
pub(super) const COMMIT_OP: &str = "commit step";

/// A step ready to write: owned and already serialised, so that any thread can write it.
#[derive(Debug)]
pub(super) struct StepJob {
    pub(super) rollout: String,
    pub(super) state: String,
    pub(super) rule_fingerprint: String,
    pub(super) at: i64,
    pub(super) run: u32,
    pub(super) run_started: Option<NewRun>,
    pub(super) audit: Vec<NewAudit>,
    pub(super) intent: Option<NewIntent>,
    pub(super) outbox: Vec<MessageJob>,
    pub(super) analysis: Option<AnalysisJob>,
}

#[derive(Debug)]
pub(super) struct AnalysisJob {
    pub(super) outcome: String,
    /// `None` for no score or NaN.
    pub(super) score: Option<f64>,
    pub(super) evidence: String,
    pub(super) kept: Option<Vec<super::KeptAnswer>>,
}
