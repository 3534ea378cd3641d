//! Incidents: the part of [`super::Store`] that owns the `incidents` table, one row per incident
//! key. It gives each incident an identity and an ordered life: a trigger opens an incident when
//! none is open under its key (at most one open per key) or updates the open one; a resolve
//! closes it; each message of the key takes the next number of its sequence, which orders
//! delivery per receiver (see `outbox`). It decides nothing about what is an incident (that is
//! `notify`) and sends nothing.

use rusqlite::{Connection, OptionalExtension, params};

use super::{IncidentStep, Inner, MessageIncident, OpenIncident, Store, StoreError, one};

/// Where a message goes in its incident's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placement {
    /// Which of the key's incidents (from 1).
    pub(super) ordinal: i64,
    /// Its number in the key's sequence.
    pub(super) seq: i64,
}

impl Inner {
    /// Open, update or close the incident of `incident` for a message enqueued at `at`; `None`
    /// when the message has no incident to belong to (a resolve for a key that never had one).
    pub(super) fn place_in_incident(
        &self,
        tx: &Connection,
        op: &'static str,
        incident: &MessageIncident,
        at: i64,
    ) -> Result<Option<Placement>, StoreError> {
        let found = one(
            tx,
            "SELECT ordinal, state = 'open', seq FROM incidents WHERE key = ?1",
            [&incident.key],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, bool>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            },
        )
        .optional()
        .map_err(self.sql(op))?;
        let (ordinal, seq) = match (incident.action, found) {
            (IncidentStep::Resolve, None) => return Ok(None),
            (IncidentStep::Trigger, None) => {
                tx.execute(
                    "INSERT INTO incidents (key, rollout, ordinal, state, seq, opened_at,
                         updated_at)
                     VALUES (?1, ?2, 1, 'open', 0, ?3, ?3)",
                    params![incident.key, incident.rollout, at],
                )
                .map_err(self.sql(op))?;
                (1, 0)
            }
            (IncidentStep::Trigger, Some((ordinal, false, seq))) => {
                tx.execute(
                    "UPDATE incidents SET ordinal = ?2, state = 'open', opened_at = ?3,
                         updated_at = ?3, resolved_at = NULL
                     WHERE key = ?1",
                    params![incident.key, ordinal + 1, at],
                )
                .map_err(self.sql(op))?;
                (ordinal + 1, seq)
            }
            (IncidentStep::Resolve, Some((ordinal, true, seq))) => {
                tx.execute(
                    "UPDATE incidents SET state = 'resolved', resolved_at = ?2, updated_at = ?2
                     WHERE key = ?1",
                    params![incident.key, at],
                )
                .map_err(self.sql(op))?;
                (ordinal, seq)
            }
            // An update of the open incident; or the resolve of the latest one for one more
            // receiver (one resolve per receiver: the dedupe key keeps the first).
            (IncidentStep::Trigger, Some((ordinal, true, seq)))
            | (IncidentStep::Resolve, Some((ordinal, false, seq))) => (ordinal, seq),
        };
        Ok(Some(Placement {
            ordinal,
            seq: seq + 1,
        }))
    }

    /// Records that the message at `seq` of `key` was enqueued.
    pub(super) fn advance_incident(
        &self,
        tx: &Connection,
        op: &'static str,
        key: &str,
        seq: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        tx.execute(
            "UPDATE incidents SET seq = MAX(seq, ?2), updated_at = ?3 WHERE key = ?1",
            params![key, seq, at],
        )
        .map_err(self.sql(op))?;
        Ok(())
    }
}

impl Store {
    /// The incidents still open about `rollout` (`None`: the daemon's own), oldest first, with
    /// the receivers told about them: what to resolve when it is over.
    pub fn open_incidents(&self, rollout: Option<&str>) -> Result<Vec<OpenIncident>, StoreError> {
        self.open_incidents_where("i.rollout IS ?1", rollout)
    }

    /// The incidents still open whose key starts with `prefix`, whoever they are about.
    pub fn open_incidents_under(&self, prefix: &str) -> Result<Vec<OpenIncident>, StoreError> {
        self.open_incidents_where("substr(i.key, 1, length(?1)) = ?1", Some(prefix))
    }

    fn open_incidents_where(
        &self,
        filter: &str,
        arg: Option<&str>,
    ) -> Result<Vec<OpenIncident>, StoreError> {
        const OP: &str = "list open incidents";
        let rows = self.read(OP, |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT i.key, i.rollout, i.opened_at,
                            (SELECT group_concat(DISTINCT o.receiver) FROM outbox o
                             WHERE o.incident_key = i.key),
                            (SELECT o.payload FROM outbox o WHERE o.incident_key = i.key
                             ORDER BY o.incident_seq DESC LIMIT 1)
                     FROM incidents i
                     WHERE i.state = 'open' AND {filter}
                     ORDER BY i.opened_at, i.key"
                ))
                .map_err(self.sql(OP))?;
            stmt.query_map([arg], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })
            .map_err(self.sql(OP))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(OP))
        })?;
        rows.into_iter()
            .map(|(key, rollout, opened_at, receivers, payload)| {
                let mut receivers: Vec<String> = receivers
                    .unwrap_or_default()
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .collect();
                receivers.sort();
                let payload = match payload {
                    Some(text) => serde_json::from_str(&text)
                        .map_err(|e| self.json(OP, format!("payload of incident `{key}`"), e))?,
                    None => serde_json::Value::Null,
                };
                Ok(OpenIncident {
                    opened_at: self.time(OP, "incidents.opened_at", opened_at)?,
                    key,
                    rollout,
                    receivers,
                    payload,
                })
            })
            .collect()
    }

    /// Whether the incident under `key` is open now.
    pub fn incident_open(&self, key: &str) -> Result<bool, StoreError> {
        const OP: &str = "load incident";
        self.read(OP, |conn| {
            one(
                conn,
                "SELECT state = 'open' FROM incidents WHERE key = ?1",
                [key],
                |row| row.get::<_, bool>(0),
            )
            .optional()
            .map(|open| open.unwrap_or(false))
            .map_err(self.sql(OP))
        })
    }
}

/// The stored dedupe key of a message of the `ordinal`-th incident of its key: the first keeps
/// the caller's, later ones get `#N`, so each incident's messages are deduplicated on their own.
pub(super) fn dedupe_key(key: &str, ordinal: i64) -> String {
    if ordinal <= 1 {
        key.to_string()
    } else {
        format!("{key}#{ordinal}")
    }
}
