//! The store's schema as an ordered list of migrations, and the code that applies them. It owns
//! the mapping "schema version N = the first N migrations applied"; it must not hold queries of
//! the typed API (those live in [`super`]).
//!
//! The version lives in `PRAGMA user_version`, which SQLite keeps in the database header and
//! changes transactionally: each migration and its version bump commit together, so a crash in
//! the middle of an upgrade leaves the database at the previous version, never half-migrated.
//! Migrations are append-only: never edit one that has shipped, add a new one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Every migration in order; `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // v1: rollouts and their history (analyses, audit) and actuator intents.
    "
    CREATE TABLE rollouts (
        name             TEXT PRIMARY KEY NOT NULL,
        state            TEXT NOT NULL,
        rule_fingerprint TEXT NOT NULL,
        updated_at       INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE analyses (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        rollout  TEXT NOT NULL REFERENCES rollouts(name),
        at       INTEGER NOT NULL,
        outcome  TEXT NOT NULL,
        score    REAL,
        evidence TEXT NOT NULL
    ) STRICT;
    CREATE INDEX analyses_by_rollout ON analyses(rollout, id);

    CREATE TABLE audit (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        rollout         TEXT NOT NULL REFERENCES rollouts(name),
        at              INTEGER NOT NULL,
        action          TEXT NOT NULL,
        previous_weight INTEGER CHECK (previous_weight BETWEEN 0 AND 100),
        new_weight      INTEGER CHECK (new_weight BETWEEN 0 AND 100),
        reason          TEXT NOT NULL,
        triggered_by    TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_by_rollout ON audit(rollout, id);

    CREATE TABLE intents (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        rollout         TEXT NOT NULL REFERENCES rollouts(name),
        idempotency_key TEXT NOT NULL UNIQUE,
        weight          INTEGER NOT NULL CHECK (weight BETWEEN 0 AND 100),
        previous_weight INTEGER NOT NULL CHECK (previous_weight BETWEEN 0 AND 100),
        status          TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
        error           TEXT,
        created_at      INTEGER NOT NULL,
        completed_at    INTEGER
    ) STRICT;
    CREATE INDEX intents_pending ON intents(status, id);
    ",
    // v2: the notification outbox and the daemon's flags.
    "
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        receiver        TEXT NOT NULL,
        dedupe_key      TEXT NOT NULL UNIQUE,
        event           TEXT NOT NULL,
        severity        TEXT NOT NULL,
        payload         TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        sent_at         INTEGER
    ) STRICT;
    CREATE INDEX outbox_due ON outbox(status, next_attempt_at, id);

    CREATE TABLE flags (
        key        TEXT PRIMARY KEY NOT NULL,
        value      TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    ",
    // v3: runs. A rollout is a sequence of runs (a canary version from the first stage); its
    // history rows carry the run they belong to. Rows written before are run 1.
    "
    ALTER TABLE audit ADD COLUMN run INTEGER NOT NULL DEFAULT 1 CHECK (run >= 1);
    ALTER TABLE analyses ADD COLUMN run INTEGER NOT NULL DEFAULT 1 CHECK (run >= 1);
    CREATE INDEX audit_by_run ON audit(rollout, run, id);
    CREATE INDEX analyses_by_run ON analyses(rollout, run, id);

    CREATE TABLE runs (
        rollout    TEXT NOT NULL REFERENCES rollouts(name),
        run        INTEGER NOT NULL CHECK (run >= 1),
        canary     TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        started_by TEXT NOT NULL,
        PRIMARY KEY (rollout, run)
    ) STRICT;
    INSERT INTO runs (rollout, run, canary, started_at, started_by)
        SELECT name, 1, '', COALESCE((SELECT MIN(at) FROM audit WHERE audit.rollout = name), updated_at), ''
        FROM rollouts;
    ",
    // v4: incidents. Each incident key has one row (at most one incident open per key, its
    // ordinal counting the incidents the key has had); outbox rows of an incident carry its key,
    // their place in its life (`incident_seq`) and whether they trigger or resolve it, so they
    // are delivered in order per receiver and a resolve supersedes a trigger not yet delivered.
    // `claimed_by` is the process generation holding a message's lease. The outbox is rebuilt
    // for the new status `superseded`; incidents in rows written before are carried over from
    // their payloads.
    "
    CREATE TABLE outbox_v4 (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        receiver        TEXT NOT NULL,
        dedupe_key      TEXT NOT NULL UNIQUE,
        event           TEXT NOT NULL,
        severity        TEXT NOT NULL,
        payload         TEXT NOT NULL,
        status          TEXT NOT NULL
                        CHECK (status IN ('pending', 'sent', 'failed', 'superseded')),
        attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        sent_at         INTEGER,
        incident_key    TEXT,
        incident_seq    INTEGER,
        incident_action TEXT CHECK (incident_action IN ('trigger', 'resolve')),
        claimed_by      INTEGER
    ) STRICT;
    INSERT INTO outbox_v4 (id, receiver, dedupe_key, event, severity, payload, status, attempts,
                           next_attempt_at, last_error, created_at, sent_at,
                           incident_key, incident_seq, incident_action)
        SELECT id, receiver, dedupe_key, event, severity, payload, status, attempts,
               next_attempt_at, last_error, created_at, sent_at,
               CASE WHEN json_valid(payload)
                         AND json_extract(payload, '$.incident') IN ('trigger', 'resolve')
                    THEN json_extract(payload, '$.group_key') END,
               CASE WHEN json_valid(payload)
                         AND json_extract(payload, '$.incident') IN ('trigger', 'resolve')
                    THEN id END,
               CASE WHEN json_valid(payload)
                         AND json_extract(payload, '$.incident') IN ('trigger', 'resolve')
                    THEN json_extract(payload, '$.incident') END
        FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_v4 RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox(status, next_attempt_at, id);
    CREATE INDEX outbox_by_incident ON outbox(incident_key, receiver, incident_seq)
        WHERE incident_key IS NOT NULL;

    CREATE TABLE incidents (
        key         TEXT PRIMARY KEY NOT NULL,
        rollout     TEXT,
        ordinal     INTEGER NOT NULL CHECK (ordinal >= 1),
        state       TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
        seq         INTEGER NOT NULL CHECK (seq >= 0),
        opened_at   INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        resolved_at INTEGER
    ) STRICT;
    CREATE INDEX incidents_open ON incidents(rollout, state);
    INSERT INTO incidents (key, rollout, ordinal, state, seq, opened_at, updated_at, resolved_at)
        SELECT incident_key, json_extract(MAX(payload), '$.rollout'), 1,
               CASE WHEN MAX(incident_action = 'resolve') THEN 'resolved' ELSE 'open' END,
               MAX(incident_seq), MIN(created_at), MAX(created_at),
               CASE WHEN MAX(incident_action = 'resolve') THEN MAX(created_at) END
        FROM outbox WHERE incident_key IS NOT NULL GROUP BY incident_key;
    ",
    // v5: the answers a stage's analyses keep for the next one (`store::kept`), so that each
    // analysis asks the backend only for what is new, across restarts too.
    "
    CREATE TABLE kept_answers (
        rollout TEXT NOT NULL,
        query   TEXT NOT NULL,
        step_ms INTEGER NOT NULL CHECK (step_ms > 0),
        from_ms INTEGER NOT NULL,
        data    BLOB NOT NULL,
        PRIMARY KEY (rollout, query, step_ms, from_ms)
    ) STRICT;
    ",
];

/// The schema version this build writes: the number of migrations.
pub const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

/// SQLite's `auto_vacuum` setting that keeps the pages freed by pruning (see `retention`) in a
/// list `PRAGMA incremental_vacuum` hands back to the file system.
const INCREMENTAL: i64 = 2;

/// Turns on incremental auto-vacuum. A database created by this build has it from its first
/// page (set before anything is written, see `open_writer`); one created before needs a
/// `VACUUM` once, which rewrites the whole file (and needs as much free space again): logged,
/// since it can take a while on a large database. Returns whether it had to.
pub(crate) fn incremental_vacuum(conn: &Connection, path: &Path) -> Result<bool, StoreError> {
    let failed = |source| StoreError::Migration {
        path: path.to_path_buf(),
        version: LATEST_VERSION,
        source,
    };
    let mode: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |row| row.get(0))
        .map_err(failed)?;
    if mode == INCREMENTAL {
        return Ok(false);
    }
    let pages: i64 = conn
        .pragma_query_value(None, "page_count", |row| row.get(0))
        .map_err(failed)?;
    tracing::info!(database = %path.display(), pages, "Turning on incremental vacuum: rewriting the state database once (VACUUM).");
    conn.pragma_update(None, "auto_vacuum", INCREMENTAL)
        .map_err(failed)?;
    conn.execute_batch("VACUUM").map_err(failed)?;
    tracing::info!(database = %path.display(), "The state database now gives freed space back.");
    Ok(true)
}

/// Reads `PRAGMA user_version`.
pub(crate) fn version(conn: &Connection, path: &Path) -> Result<u32, StoreError> {
    conn.pragma_query_value(None, "user_version", |row| row.get::<_, u32>(0))
        .map_err(|e| StoreError::sql("read the schema version", path, e))
}

/// Brings the database up to `migrations.len()`, one transaction per migration. Fails with
/// [`StoreError::TooNew`] if the database is already past the end of the list.
pub(crate) fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[&str],
) -> Result<u32, StoreError> {
    let target = migrations.len() as u32;
    let found = version(conn, path)?;
    if found > target {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: target,
        });
    }
    for (index, sql) in migrations.iter().enumerate().skip(found as usize) {
        let next = index as u32 + 1;
        let failed = |source| StoreError::Migration {
            path: path.to_path_buf(),
            version: next,
            source,
        };
        // IMMEDIATE takes the write lock up front; re-reading the version under it makes two
        // processes opening the same fresh database apply each migration once.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let now = tx
            .pragma_query_value(None, "user_version", |row| row.get::<_, u32>(0))
            .map_err(failed)?;
        if now >= next {
            continue;
        }
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", next)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    version(conn, path)
}
