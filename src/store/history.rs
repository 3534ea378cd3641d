//! A rollout's history: the part of [`super::Store`] that reads the `audit` and `analyses`
//! tables, page by page and newest first, for one run or all. The rows are written with the step
//! (`steps`); nothing here writes.

use rusqlite::{OptionalExtension, params};
use serde::de::DeserializeOwned;

use super::{
    Analysis, AuditEntry, Cursor, MAX_PAGE, Page, Store, StoreError, after, one, paginate,
};

impl Store {
    // ----- history: audit and analyses -----

    /// A rollout's audit entries, newest first, `limit` (at most [`MAX_PAGE`]) per page,
    /// starting after `cursor` (from the start when `None`).
    pub fn audit_page(
        &self,
        rollout: &str,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.audit_page_of(rollout, None, cursor, limit)
    }

    /// [`Store::audit_page`] of one run only, or of every run with `None`.
    pub fn audit_page_of(
        &self,
        rollout: &str,
        run: Option<u32>,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<AuditEntry>, StoreError> {
        const OP: &str = "list audit entries";
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.read(OP, |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, rollout, at, action, previous_weight, new_weight, reason,
                         triggered_by, run
                     FROM audit WHERE rollout = ?1 AND id < ?2 AND (?4 IS NULL OR run = ?4)
                     ORDER BY id DESC LIMIT ?3",
                )
                .map_err(self.sql(OP))?;
            let args = params![rollout, after(cursor), limit as i64 + 1, run];
            stmt.query_map(args, |row| {
                Ok(AuditRow {
                    id: row.get(0)?,
                    run: row.get(8)?,
                    rollout: row.get(1)?,
                    at: row.get(2)?,
                    action: row.get(3)?,
                    previous_weight: row.get(4)?,
                    new_weight: row.get(5)?,
                    reason: row.get(6)?,
                    triggered_by: row.get(7)?,
                })
            })
            .map_err(self.sql(OP))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(OP))
        })?;
        let entries = rows
            .into_iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.id,
                    run: row.run,
                    rollout: row.rollout,
                    at: self.time(OP, "audit.at", row.at)?,
                    action: row.action,
                    previous_weight: row
                        .previous_weight
                        .map(|w| self.weight(OP, "audit.previous_weight", w))
                        .transpose()?,
                    new_weight: row
                        .new_weight
                        .map(|w| self.weight(OP, "audit.new_weight", w))
                        .transpose()?,
                    reason: row.reason,
                    triggered_by: row.triggered_by,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(paginate(entries, limit, |e| e.id))
    }

    /// A rollout's analyses, newest first, paginated like [`Store::audit_page`].
    pub fn analyses_page(
        &self,
        rollout: &str,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<Analysis>, StoreError> {
        self.analyses_page_of(rollout, None, cursor, limit)
    }

    /// [`Store::analyses_page`] of one run only, or of every run with `None`.
    pub fn analyses_page_of(
        &self,
        rollout: &str,
        run: Option<u32>,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<Analysis>, StoreError> {
        const OP: &str = "list analyses";
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.read(OP, |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, rollout, at, outcome, score, evidence, run
                     FROM analyses WHERE rollout = ?1 AND id < ?2 AND (?4 IS NULL OR run = ?4)
                     ORDER BY id DESC LIMIT ?3",
                )
                .map_err(self.sql(OP))?;
            let args = params![rollout, after(cursor), limit as i64 + 1, run];
            stmt.query_map(args, |row| {
                Ok((
                    (row.get::<_, i64>(0)?, row.get::<_, u32>(6)?),
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<f64>>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .map_err(self.sql(OP))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(OP))
        })?;
        let analyses = rows
            .into_iter()
            .map(|((id, run), rollout, at, outcome, score, evidence)| {
                Ok(Analysis {
                    id,
                    run,
                    at: self.time(OP, "analyses.at", at)?,
                    evidence: serde_json::from_str(&evidence)
                        .map_err(|e| self.json(OP, format!("evidence of analysis {id}"), e))?,
                    rollout,
                    outcome,
                    score,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(paginate(analyses, limit, |a| a.id))
    }

    /// When the rollout's newest analysis whose outcome is one of `outcomes` was recorded
    /// (`None`: it has none).
    pub fn latest_analysis_at(
        &self,
        rollout: &str,
        outcomes: [&str; 2],
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        const OP: &str = "read the latest analysis of an outcome";
        let at = self.read(OP, |conn| {
            one(
                conn,
                "SELECT at FROM analyses WHERE rollout = ?1 AND (outcome = ?2 OR outcome = ?3)
                 ORDER BY id DESC LIMIT 1",
                params![rollout, outcomes[0], outcomes[1]],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map_err(self.sql(OP))
        })?;
        self.opt_time(OP, "analyses.at", at)
    }

    /// The evidence of a rollout's newest analysis, read as `T` (a part of it: serde skips the
    /// fields `T` does not name); `None` when it has none yet.
    pub fn latest_evidence<T: DeserializeOwned>(
        &self,
        rollout: &str,
    ) -> Result<Option<T>, StoreError> {
        const OP: &str = "read the latest analysis";
        let row = self.read(OP, |conn| {
            one(
                conn,
                "SELECT id, evidence FROM analyses WHERE rollout = ?1 ORDER BY id DESC LIMIT 1",
                [rollout],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(self.sql(OP))
        })?;
        row.map(|(id, evidence)| {
            serde_json::from_str(&evidence)
                .map_err(|e| self.json(OP, format!("evidence of analysis {id}"), e))
        })
        .transpose()
    }
}

struct AuditRow {
    id: i64,
    run: u32,
    rollout: String,
    at: i64,
    action: String,
    previous_weight: Option<i64>,
    new_weight: Option<i64>,
    reason: String,
    triggered_by: String,
}
