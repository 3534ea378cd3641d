//! The daemon's flags: the part of [`super::Store`] that owns the `flags` table, small JSON
//! values kept across restarts (the emergency stop), each with the time it was set.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Flag, Store, StoreError, exec, millis, one};

impl Store {
    /// Sets a flag to a JSON value, replacing any previous one.
    pub fn set_flag<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const OP: &str = "set flag";
        let value =
            serde_json::to_string(value).map_err(|e| self.json(OP, format!("flag `{key}`"), e))?;
        self.write(OP, |tx| {
            exec(
                tx,
                "INSERT INTO flags (key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                     updated_at = excluded.updated_at",
                params![key, value, millis(at)],
            )
            .map_err(self.sql(OP))?;
            Ok(())
        })
    }

    /// A flag's value, if set.
    pub fn flag<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Flag<T>>, StoreError> {
        const OP: &str = "read flag";
        let row = self.read(OP, |conn| {
            one(
                conn,
                "SELECT value, updated_at FROM flags WHERE key = ?1",
                [key],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()
            .map_err(self.sql(OP))
        })?;
        row.map(|(value, updated_at)| {
            Ok(Flag {
                key: key.to_string(),
                value: serde_json::from_str(&value)
                    .map_err(|e| self.json(OP, format!("flag `{key}`"), e))?,
                updated_at: self.time(OP, "flags.updated_at", updated_at)?,
            })
        })
        .transpose()
    }

    /// Removes a flag; returns whether it was set.
    pub fn clear_flag(&self, key: &str) -> Result<bool, StoreError> {
        const OP: &str = "clear flag";
        self.write(OP, |tx| {
            exec(tx, "DELETE FROM flags WHERE key = ?1", [key])
                .map(|n| n == 1)
                .map_err(self.sql(OP))
        })
    }
}
