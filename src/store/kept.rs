//! The answers a rollout's analyses keep between the looks of a stage (issue 19 point 1): each
//! analysis of a staged check asks the backend only for the points after the ones it kept, so
//! this part of [`super::Store`] owns the `kept_answers` table, one row per query of the
//! rollout's current stage, replaced in the same transaction as an analysis that read it (no
//! extra fsync; the daemon replaces them only now and then) and read back before the next
//! analysis, after a restart too. The rows are
//! opaque bytes to the store: the daemon encodes and checks them (`daemon::analysis::kept`).

use rusqlite::{Connection, params};

use super::{Inner, KeptAnswer, Store, StoreError};

impl Inner {
    /// Replaces `rollout`'s kept answers with `kept` (none: clears them).
    pub(super) fn replace_kept(
        &self,
        tx: &Connection,
        op: &'static str,
        rollout: &str,
        kept: &[KeptAnswer],
    ) -> Result<(), StoreError> {
        tx.prepare_cached("DELETE FROM kept_answers WHERE rollout = ?1")
            .and_then(|mut s| s.execute([rollout]))
            .map_err(self.sql(op))?;
        if kept.is_empty() {
            return Ok(());
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO kept_answers (rollout, query, step_ms, from_ms, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (rollout, query, step_ms, from_ms) DO UPDATE SET data = excluded.data",
            )
            .map_err(self.sql(op))?;
        for answer in kept {
            insert
                .execute(params![
                    rollout,
                    answer.query,
                    answer.step_ms,
                    answer.from_ms,
                    answer.data
                ])
                .map_err(self.sql(op))?;
        }
        Ok(())
    }
}

impl Store {
    /// The answers `rollout`'s latest recorded analysis kept, in no particular order.
    pub fn kept_answers(&self, rollout: &str) -> Result<Vec<KeptAnswer>, StoreError> {
        const OP: &str = "read the kept answers";
        self.read(OP, |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT query, step_ms, from_ms, data FROM kept_answers WHERE rollout = ?1",
                )
                .map_err(self.sql(OP))?;
            stmt.query_map([rollout], |row| {
                Ok(KeptAnswer {
                    query: row.get(0)?,
                    step_ms: row.get(1)?,
                    from_ms: row.get(2)?,
                    data: row.get(3)?,
                })
            })
            .map_err(self.sql(OP))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(OP))
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::super::tests::TempDir;
    use super::super::{NewAnalysis, Step};
    use super::*;

    fn analysis(kept: Vec<KeptAnswer>) -> NewAnalysis {
        NewAnalysis {
            outcome: "inconclusive".to_string(),
            score: None,
            evidence: serde_json::value::to_raw_value(&serde_json::json!({})).unwrap(),
            kept: Some(kept),
        }
    }

    fn answer(query: &str, data: &[u8]) -> KeptAnswer {
        KeptAnswer {
            query: query.to_string(),
            step_ms: 60_000,
            from_ms: 1_000_000,
            data: data.to_vec(),
        }
    }

    /// Kept with the analysis that read them, read back after the store is opened again, replaced
    /// by the next analysis's, and cleared by one that keeps none; other rollouts keep theirs.
    #[test]
    fn kept_answers_survive_a_reopen_and_each_analysis_replaces_them() {
        let dir = TempDir::new();
        let at = DateTime::from_timestamp(1_000, 0).unwrap();
        let commit = |store: &Store, rollout: &str, kept: Vec<KeptAnswer>| {
            let mut step = Step::new(rollout, &1u8, "fp", at);
            step.analysis = Some(analysis(kept));
            store.commit_step(&step).unwrap();
        };
        {
            let store = Store::open(&dir.0).unwrap();
            commit(&store, "web", vec![answer("a", b"1"), answer("b", b"2")]);
            commit(&store, "api", vec![answer("a", b"3")]);
        }
        let store = Store::open(&dir.0).unwrap();
        let mut web = store.kept_answers("web").unwrap();
        web.sort_by(|x, y| x.query.cmp(&y.query));
        assert_eq!(web, [answer("a", b"1"), answer("b", b"2")]);
        commit(&store, "web", vec![answer("b", b"22")]);
        assert_eq!(store.kept_answers("web").unwrap(), [answer("b", b"22")]);
        // A step without an analysis (a tick, a command) leaves them as they are.
        store
            .commit_step(&Step::new("web", &2u8, "fp", at))
            .unwrap();
        assert_eq!(store.kept_answers("web").unwrap(), [answer("b", b"22")]);
        commit(&store, "web", Vec::new());
        assert!(store.kept_answers("web").unwrap().is_empty());
        assert_eq!(store.kept_answers("api").unwrap(), [answer("a", b"3")]);
    }
}
