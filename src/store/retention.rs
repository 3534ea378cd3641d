//! Retention: what of a rollout's history is kept as it ages, so the database stays bounded (an
//! analysis's evidence is about 20 kB: 10 rollouts analysed every 10 s wrote 1.6 GB a day).
//! This part of [`super::Store`] owns the pruning of the `analyses` table (and of the routine
//! audit rows written with the analyses it drops), giving the freed pages back to the file
//! system (`PRAGMA incremental_vacuum`), and the database's size; it decides nothing about
//! rollouts (the caller says which runs are still under way and which audit actions are
//! routine) and runs only when called (the daemon calls it on a timer).
//!
//! # What is kept
//! Per run, [`plan`] (pure) keeps:
//! - every analysis younger than [`Retention::keep_all_for`];
//! - every *decisive* analysis, the one recorded in the same step as a decision (an audit entry
//!   whose action is not routine: a stage advanced, a pause, a rollback), so the history still
//!   explains every decision with the evidence it was taken on;
//! - the first and the last analysis of each stage (the last one before or at each decision, the
//!   first one after it) and of the run;
//! - beyond that, the first analysis of each [`Retention::keep_one_per`] slot of time (slots
//!   aligned on the epoch, so a pass keeps what an earlier pass kept);
//! - of a run no longer under way whose last row is older than [`Retention::finished_for`], only
//!   the decisive analyses and the stages' first and last ones: the rest of its evidence goes.
//!
//! A dropped analysis takes the routine audit rows of its own step with it (the
//! "analysis recorded" line of each analysis); decisions are never dropped.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Store, StoreError, lock, millis, millis_of};

/// How long history is kept at which resolution (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Analyses younger than this are all kept.
    pub keep_all_for: Duration,
    /// Older ones: one per this much time per run (plus decisions and stage boundaries).
    pub keep_one_per: Duration,
    /// A finished run keeps only its decisions' analyses and its stages' first and last ones
    /// once its newest row is this old.
    pub finished_for: Duration,
    /// Audit actions that are not decisions (written with every analysis): `analysis-recorded`.
    pub routine_actions: Vec<String>,
}

/// What one [`Store::prune`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Runs looked at.
    pub runs: u64,
    pub analyses_deleted: u64,
    pub audit_deleted: u64,
    /// Bytes the database file shrank by (pages handed back by the incremental vacuum).
    pub bytes_freed: u64,
}

/// The database's size: pages in use and free pages, in bytes (`page_count * page_size`, read
/// from the header: cheap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSize {
    pub bytes: u64,
    pub free_bytes: u64,
}

/// One analysis as [`plan`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
}

/// A run's history as [`plan`] sees it.
#[derive(Debug, Clone, Default)]
pub struct RunHistory {
    /// Its analyses, oldest first.
    pub analyses: Vec<Row>,
    /// When its decisions (non-routine audit entries) were taken, unix ms, oldest first.
    pub decisions: Vec<i64>,
    /// Whether the run has ended (not the rollout's current run under way) and its newest row is
    /// older than [`Retention::finished_for`].
    pub finished_long_ago: bool,
}

/// The ids of the analyses of `run` to drop at `now_ms` under `policy`: pure.
pub fn plan(run: &RunHistory, policy: &Retention, now_ms: i64) -> Vec<i64> {
    let rows = &run.analyses;
    if rows.is_empty() {
        return Vec::new();
    }
    let mut keep: HashSet<i64> = HashSet::new();
    let decisions: BTreeSet<i64> = run.decisions.iter().copied().collect();
    // The run's first and last analysis.
    keep.insert(rows[0].id);
    keep.insert(rows[rows.len() - 1].id);
    for &decision in &decisions {
        // The last analysis before or at the decision (at it: the decisive one), and the first
        // after it: the last analysis of a stage and the first of the next.
        let split = rows.partition_point(|r| r.at <= decision);
        if split > 0 {
            keep.insert(rows[split - 1].id);
        }
        if let Some(next) = rows.get(split) {
            keep.insert(next.id);
        }
    }
    let recent_from = now_ms.saturating_sub(millis_of(policy.keep_all_for));
    let slot = millis_of(policy.keep_one_per).max(1);
    let mut last_slot = None;
    for row in rows {
        if decisions.contains(&row.at) {
            keep.insert(row.id);
        }
        if !run.finished_long_ago {
            if row.at >= recent_from {
                keep.insert(row.id);
            }
            let this_slot = row.at.div_euclid(slot);
            if last_slot != Some(this_slot) {
                keep.insert(row.id);
                last_slot = Some(this_slot);
            }
        }
    }
    rows.iter()
        .filter(|r| !keep.contains(&r.id))
        .map(|r| r.id)
        .collect()
}

/// Pages handed back per transaction of the incremental vacuum (4 MB at 4 kB pages): each is a
/// short write, so steps waiting for the writer do not wait long.
const VACUUM_PAGES: i64 = 1024;
/// Analyses deleted per statement.
const DELETE_CHUNK: usize = 500;

impl Store {
    /// Drops the history `policy` does not keep (see the module's documentation), run by run,
    /// each in its own short transaction, then hands the freed pages back to the file system.
    /// `open(rollout, run)` says whether a run is still under way (a rollout's current run, not
    /// finished).
    pub fn prune(
        &self,
        policy: &Retention,
        now: DateTime<Utc>,
        open: &dyn Fn(&str, u32) -> bool,
    ) -> Result<Pruned, StoreError> {
        const OP: &str = "prune the history";
        let now_ms = millis(now);
        let before = self.size()?;
        let runs: Vec<(String, u32)> = self.read(OP, |conn| {
            let mut stmt = conn
                // Every run with analyses, recorded in `runs` or not (a step's run defaults to 1).
                .prepare_cached(
                    "SELECT rollout, run FROM runs UNION SELECT DISTINCT rollout, run FROM analyses
                     ORDER BY 1, 2",
                )
                .map_err(self.sql(OP))?;
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(self.sql(OP))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sql(OP))
        })?;
        let mut pruned = Pruned::default();
        let finished_before = now_ms.saturating_sub(millis_of(policy.finished_for));
        for (rollout, run) in runs {
            pruned.runs += 1;
            let (mut history, routine) =
                self.run_history(&rollout, run, &policy.routine_actions)?;
            let newest = history
                .analyses
                .last()
                .map(|r| r.at)
                .into_iter()
                .chain(history.decisions.last().copied())
                .chain(routine.keys().copied())
                .max();
            history.finished_long_ago =
                !open(&rollout, run) && newest.is_some_and(|at| at < finished_before);
            let doomed = plan(&history, policy, now_ms);
            if doomed.is_empty() {
                continue;
            }
            let at_of: HashMap<i64, i64> = history.analyses.iter().map(|r| (r.id, r.at)).collect();
            for chunk in doomed.chunks(DELETE_CHUNK) {
                let (analyses, audit) = self.write(OP, |tx| {
                    let mut analyses = 0;
                    let mut audit = 0;
                    for id in chunk {
                        analyses += tx
                            .prepare_cached("DELETE FROM analyses WHERE id = ?1")
                            .and_then(|mut s| s.execute([id]))
                            .map_err(self.sql(OP))? as u64;
                        // The routine rows of the analysis's own step, by their ids.
                        let rows = at_of.get(id).and_then(|at| routine.get(at));
                        for row in rows.into_iter().flatten() {
                            audit += tx
                                .prepare_cached("DELETE FROM audit WHERE id = ?1")
                                .and_then(|mut s| s.execute([row]))
                                .map_err(self.sql(OP))? as u64;
                        }
                    }
                    Ok((analyses, audit))
                })?;
                pruned.analyses_deleted += analyses;
                pruned.audit_deleted += audit;
            }
        }
        self.vacuum()?;
        let after = self.size()?;
        pruned.bytes_freed = before.bytes.saturating_sub(after.bytes);
        Ok(pruned)
    }

    /// The analyses and decisions of one run (the rest of [`RunHistory`] is the caller's), and
    /// the ids of its routine audit rows by the time of their step.
    fn run_history(
        &self,
        rollout: &str,
        run: u32,
        routine: &[String],
    ) -> Result<(RunHistory, HashMap<i64, Vec<i64>>), StoreError> {
        const OP: &str = "read a run's history to prune it";
        self.read(OP, |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, at FROM analyses WHERE rollout = ?1 AND run = ?2 ORDER BY at, id",
                )
                .map_err(self.sql(OP))?;
            let analyses = stmt
                .query_map(params![rollout, run], |row| {
                    Ok(Row {
                        id: row.get(0)?,
                        at: row.get(1)?,
                    })
                })
                .map_err(self.sql(OP))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sql(OP))?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, at, action FROM audit WHERE rollout = ?1 AND run = ?2
                     ORDER BY at, id",
                )
                .map_err(self.sql(OP))?;
            let rows = stmt
                .query_map(params![rollout, run], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })
                .map_err(self.sql(OP))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sql(OP))?;
            let mut decisions = Vec::new();
            let mut routine_rows: HashMap<i64, Vec<i64>> = HashMap::new();
            for (id, at, action) in rows {
                if routine.contains(&action) {
                    routine_rows.entry(at).or_default().push(id);
                } else {
                    decisions.push(at);
                }
            }
            let history = RunHistory {
                analyses,
                decisions,
                finished_long_ago: false,
            };
            Ok((history, routine_rows))
        })
    }

    /// Hands the database's free pages back to the file system, [`VACUUM_PAGES`] per
    /// transaction; returns the pages freed.
    pub fn vacuum(&self) -> Result<u64, StoreError> {
        const OP: &str = "vacuum the freed pages";
        let mut freed = 0u64;
        loop {
            let conn = lock(&self.inner.writer);
            self.inner.verify(&conn)?;
            let free: i64 = conn
                .pragma_query_value(None, "freelist_count", |row| row.get(0))
                .map_err(self.sql(OP))
                .inspect_err(|e| self.inner.health.note(e))?;
            if free == 0 {
                return Ok(freed);
            }
            // Each step of the statement frees one page: step it to the end.
            let stepped: rusqlite::Result<()> = (|| {
                let mut stmt =
                    conn.prepare(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?;
                let mut rows = stmt.raw_query();
                while rows.next()?.is_some() {}
                Ok(())
            })();
            stepped
                .map_err(self.sql(OP))
                .inspect_err(|e| self.inner.health.note(e))?;
            drop(conn);
            self.inner.checkpoints.wrote(1);
            freed += free.min(VACUUM_PAGES) as u64;
        }
    }

    /// The database's size in bytes (pages in use and free), from its header.
    pub fn size(&self) -> Result<StoreSize, StoreError> {
        const OP: &str = "read the database size";
        let conn = lock(&self.inner.reader);
        let pragma = |name: &str| -> Result<u64, StoreError> {
            conn.pragma_query_value(None, name, |row| row.get::<_, i64>(0))
                .map(|v| v.max(0) as u64)
                .map_err(self.sql(OP))
        };
        let page = pragma("page_size")?;
        Ok(StoreSize {
            bytes: pragma("page_count")? * page,
            free_bytes: pragma("freelist_count")? * page,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn policy() -> Retention {
        Retention {
            keep_all_for: Duration::from_secs(3600),
            keep_one_per: Duration::from_secs(600),
            finished_for: Duration::from_secs(86_400),
            routine_actions: vec!["analysis-recorded".into()],
        }
    }

    /// A run analysed every minute from minute 0 to `minutes - 1` (id = minute + 1).
    fn every_minute(minutes: i64, decisions: &[i64]) -> RunHistory {
        RunHistory {
            analyses: (0..minutes)
                .map(|m| Row {
                    id: m + 1,
                    at: m * MIN,
                })
                .collect(),
            decisions: decisions.iter().map(|m| m * MIN).collect(),
            finished_long_ago: false,
        }
    }

    fn kept(run: &RunHistory, now_minute: i64) -> Vec<i64> {
        let doomed: HashSet<i64> = plan(run, &policy(), now_minute * MIN).into_iter().collect();
        run.analyses
            .iter()
            .map(|r| r.id)
            .filter(|id| !doomed.contains(id))
            .map(|id| id - 1)
            .collect()
    }

    #[test]
    fn keeps_recent_analyses_all_and_older_ones_one_per_slot() {
        // Three hours every minute, no decision; now = minute 180: the last hour whole.
        let run = every_minute(180, &[]);
        let kept = kept(&run, 180);
        let mut expected: Vec<i64> = (0..120).step_by(10).collect();
        expected.extend(120..180);
        assert_eq!(kept, expected);
    }

    #[test]
    fn keeps_decisive_analyses_and_each_stages_first_and_last() {
        // Decisions at minutes 33 (taken with that analysis) and, between analyses, at 47.5.
        let mut run = every_minute(180, &[33]);
        run.decisions.push(47 * MIN + MIN / 2);
        let kept = kept(&run, 180);
        for minute in [33, 34, 47, 48] {
            assert!(kept.contains(&minute), "minute {minute}: {kept:?}");
        }
        for minute in [32, 35, 46, 49] {
            assert!(!kept.contains(&minute), "minute {minute}: {kept:?}");
        }
    }

    #[test]
    fn a_run_finished_long_ago_keeps_only_decisions_and_stage_boundaries() {
        let mut run = every_minute(180, &[33, 90]);
        run.finished_long_ago = true;
        assert_eq!(kept(&run, 180 + 24 * 60), [0, 33, 34, 90, 91, 179]);
        // Within the last hour too: a finished run's recent analyses are no exception.
        assert_eq!(kept(&run, 180), [0, 33, 34, 90, 91, 179]);
    }

    #[test]
    fn a_second_pass_drops_nothing_more() {
        let run = every_minute(600, &[100, 250]);
        let first: HashSet<i64> = plan(&run, &policy(), 600 * MIN).into_iter().collect();
        let left = RunHistory {
            analyses: run
                .analyses
                .iter()
                .filter(|r| !first.contains(&r.id))
                .copied()
                .collect(),
            ..run.clone()
        };
        assert_eq!(plan(&left, &policy(), 600 * MIN), Vec::<i64>::new());
    }

    #[test]
    fn an_empty_run_drops_nothing() {
        assert!(plan(&RunHistory::default(), &policy(), 0).is_empty());
        let one = every_minute(1, &[]);
        assert!(plan(&one, &policy(), 10_000 * MIN).is_empty());
    }
}
