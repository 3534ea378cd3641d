//! The runs of a rollout: each a canary version taken through the plan from its first stage.
//! This part of [`super::Store`] owns the `runs` table (written with the step that begins a
//! run) and the list of a rollout's runs; the history rows say which run they belong to.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::{Inner, NewRun, RunRecord, StepJob, Store, StoreError};

impl Inner {
    /// Records that `job` begins its run. A run number already recorded (a step re-submitted
    /// after a crash cannot do that: the state is written with it) keeps its first record.
    pub(super) fn insert_run(
        &self,
        tx: &Connection,
        op: &'static str,
        job: &StepJob,
        run: &NewRun,
    ) -> Result<(), StoreError> {
        tx.prepare_cached(
            "INSERT INTO runs (rollout, run, canary, started_at, started_by)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (rollout, run) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                job.rollout,
                job.run,
                run.canary,
                job.at,
                run.started_by
            ])
        })
        .map(|_| ())
        .map_err(self.sql(op))
    }
}

impl Store {
    /// A rollout's runs, newest first, each with the newest entry of its history.
    pub fn runs(&self, rollout: &str) -> Result<Vec<RunRecord>, StoreError> {
        const OP: &str = "list runs";
        type Row = (u32, String, i64, String, Option<String>, Option<i64>);
        let rows: Vec<Row> = self.read(OP, |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT r.run, r.canary, r.started_at, r.started_by, a.action, a.at
                     FROM runs r LEFT JOIN audit a ON a.id = (
                         SELECT id FROM audit WHERE rollout = r.rollout AND run = r.run
                         ORDER BY id DESC LIMIT 1)
                     WHERE r.rollout = ?1 ORDER BY r.run DESC",
                )
                .map_err(self.sql(OP))?;
            stmt.query_map([rollout], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })
            .map_err(self.sql(OP))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(OP))
        })?;
        rows.into_iter()
            .map(|(run, canary, started, started_by, last_action, last)| {
                let last_at: Option<DateTime<Utc>> =
                    last.map(|at| self.time(OP, "audit.at", at)).transpose()?;
                Ok(RunRecord {
                    run,
                    canary,
                    started_at: self.time(OP, "runs.started_at", started)?,
                    started_by,
                    last_action,
                    last_at,
                })
            })
            .collect()
    }
}
