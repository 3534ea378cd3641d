//! The builtin actuator: weights kept in a shared in-memory [`WeightTable`] that the daemon
//! serves to applications over HTTP ([`routes`]).
//!
//! This file owns the table (a hash map under a read-write lock; a write replaces one entry),
//! the actuator that writes it, and the two read-only handlers: `GET /v1/rollouts/{name}/weight`
//! and `GET /v1/rollouts/{name}/assignment?key=K`, which answers with the sticky variant from
//! [`crate::assign::assign`] under the rollout's [`Targeting`]. It does not decide weights, bind a
//! listener or persist anything: after a restart the runner replays the last recorded change.

use super::{Actuator, ActuatorError, ActuatorFuture, Failure, WeightChange, check_weight};
use crate::assign::{Variant, assign};
use crate::rollout::Targeting;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `[actuators.NAME] kind = "builtin"`: no settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinConfig {}

/// One rollout's current weight as the builtin actuator last set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutWeight {
    pub rollout: String,
    /// The canary's share of traffic, 0–100 (0 until the first change).
    pub weight: u8,
    /// The stage of the last change; `None` before the first one.
    pub stage: Option<String>,
    /// When the last change was applied; `None` before the first one.
    pub updated_at: Option<DateTime<Utc>>,
    /// Who is always or never in the canary, and the hash salt.
    #[serde(skip)]
    pub targeting: Targeting,
    /// The idempotency key of the last change applied, to make replays no-ops.
    #[serde(skip)]
    last_key: Option<String>,
}

/// The shared table of builtin weights. Cloning is cheap and every clone sees the same table.
///
/// Reads (one per assignment request) take a shared lock for a hash lookup; a write (a weight
/// change, a rule loaded or removed) replaces one entry under the exclusive lock, so its cost
/// does not grow with the number of rollouts.
#[derive(Debug, Clone)]
pub struct WeightTable {
    rollouts: Arc<RwLock<HashMap<String, Arc<RolloutWeight>>>>,
}

impl Default for WeightTable {
    fn default() -> Self {
        Self::new()
    }
}

impl WeightTable {
    pub fn new() -> Self {
        Self {
            rollouts: Arc::default(),
        }
    }

    /// The map for reading. A writer that panicked cannot leave an entry half-written (entries
    /// are replaced whole), so a poisoned lock is still read.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<RolloutWeight>>> {
        self.rollouts.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<RolloutWeight>>> {
        self.rollouts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `rollout` known with its targeting (on load or reload of its rule file). A rollout
    /// already in the table keeps its weight; only the targeting changes.
    pub fn register(&self, rollout: &str, targeting: Targeting) {
        let mut map = self.write();
        let entry = match map.get(rollout) {
            Some(existing) => RolloutWeight {
                targeting,
                ..RolloutWeight::clone(existing)
            },
            None => RolloutWeight {
                rollout: rollout.to_owned(),
                weight: 0,
                stage: None,
                updated_at: None,
                targeting,
                last_key: None,
            },
        };
        map.insert(rollout.to_owned(), Arc::new(entry));
    }

    /// Forgets `rollout` (its rule file was removed). Returns whether it was known.
    pub fn remove(&self, rollout: &str) -> bool {
        self.write().remove(rollout).is_some()
    }

    /// The rollout's current entry, if it is known.
    pub fn get(&self, rollout: &str) -> Option<Arc<RolloutWeight>> {
        self.read().get(rollout).cloned()
    }

    /// The names of every known rollout, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// The sticky variant for `key` in `rollout` and the weight it was drawn at, if the rollout is
    /// known.
    pub fn assign(&self, rollout: &str, key: &str) -> Option<(Variant, u8)> {
        let entry = self.get(rollout)?;
        Some((assign(&entry.targeting, entry.weight, key), entry.weight))
    }

    /// Applies `change`. Returns `Ok(false)` when the same idempotency key was already the last
    /// change applied (nothing to do).
    fn apply(&self, change: &WeightChange) -> Result<bool, Failure> {
        let now = Utc::now();
        let mut map = self.write();
        let Some(existing) = map.get(&change.rollout) else {
            return Err(Failure::UnknownRollout);
        };
        if existing.last_key.as_deref() == Some(&change.idempotency_key) {
            return Ok(false);
        }
        let entry = RolloutWeight {
            weight: change.weight,
            stage: Some(change.stage.clone()),
            updated_at: Some(now),
            last_key: Some(change.idempotency_key.clone()),
            ..RolloutWeight::clone(existing)
        };
        map.insert(change.rollout.clone(), Arc::new(entry));
        Ok(true)
    }
}

/// Sets weights in a [`WeightTable`].
#[derive(Debug, Clone)]
pub struct BuiltinActuator {
    name: String,
    table: WeightTable,
}

impl BuiltinActuator {
    pub fn new(name: &str, table: WeightTable) -> Self {
        Self {
            name: name.to_owned(),
            table,
        }
    }
}

impl Actuator for BuiltinActuator {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "builtin"
    }

    fn set_weight<'a>(&'a self, change: &'a WeightChange) -> ActuatorFuture<'a> {
        Box::pin(async move {
            check_weight(change)
                .and_then(|()| self.table.apply(change))
                .map_err(|failure| ActuatorError::new(self, change, failure))
                .map(|applied| {
                    if applied && change.weight == change.previous_weight {
                        // A weight put back as it was (after a restart): the daemon logs one
                        // line for all of them.
                        tracing::debug!(
                            actuator = %self.name, rollout = %change.rollout,
                            weight = change.weight, reason = %change.reason,
                            "Set the builtin canary weight again."
                        );
                    } else if applied {
                        tracing::info!(
                            actuator = %self.name, rollout = %change.rollout, stage = %change.stage,
                            weight = change.weight, previous_weight = change.previous_weight,
                            "Set the builtin canary weight."
                        );
                    } else {
                        tracing::debug!(
                            actuator = %self.name, rollout = %change.rollout,
                            idempotency_key = %change.idempotency_key,
                            "This weight change was already applied; nothing to do."
                        );
                    }
                })
        })
    }
}

/// `GET /v1/rollouts/{name}/assignment?key=K` → `{"variant":"canary"|"baseline","weight":W}`
/// and `GET /v1/rollouts/{name}/weight` → the rollout's [`RolloutWeight`] as JSON. Unknown
/// rollouts answer 404 and a missing or empty key 400, both as `{"error": "..."}`.
pub fn routes(table: WeightTable) -> Router {
    Router::new()
        .route("/v1/rollouts/{name}/assignment", get(assignment))
        .route("/v1/rollouts/{name}/weight", get(weight))
        .with_state(table)
}

/// The body of an assignment answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub variant: Variant,
    pub weight: u8,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
}

type ErrorResponse = (StatusCode, Json<ErrorBody>);

fn error(status: StatusCode, message: String) -> ErrorResponse {
    (status, Json(ErrorBody { error: message }))
}

fn unknown_rollout(name: &str) -> ErrorResponse {
    error(
        StatusCode::NOT_FOUND,
        format!("unknown rollout `{name}`: no rule file defines it for the builtin actuator"),
    )
}

#[derive(Debug, Deserialize)]
struct AssignmentQuery {
    key: Option<String>,
}

async fn assignment(
    State(table): State<WeightTable>,
    Path(name): Path<String>,
    Query(query): Query<AssignmentQuery>,
) -> Result<Json<Assignment>, ErrorResponse> {
    let key = match query.key {
        Some(key) if !key.is_empty() => key,
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "missing query parameter `key`: pass the user's or request's sticky key, \
                 e.g. ?key=user-42"
                    .to_owned(),
            ));
        }
    };
    let (variant, weight) = table
        .assign(&name, &key)
        .ok_or_else(|| unknown_rollout(&name))?;
    Ok(Json(Assignment { variant, weight }))
}

async fn weight(
    State(table): State<WeightTable>,
    Path(name): Path<String>,
) -> Result<Json<RolloutWeight>, ErrorResponse> {
    let entry = table.get(&name).ok_or_else(|| unknown_rollout(&name))?;
    Ok(Json(RolloutWeight::clone(&entry)))
}
