//! The emergency stop: one switch that sends every rollout to 0% at once and holds it there.
//!
//! It is in force while any of these is: the API flag (set by `POST /v1/emergency-stop` or by
//! `CANARYD_EMERGENCY_STOP=true` at start, stored in the state database so it survives restarts,
//! cleared by `DELETE /v1/emergency-stop`), or the stop file (in force while it exists; polled
//! every 250 ms). This module owns combining them and publishing the result on a `watch`
//! channel; each rollout's task reacts through the state machine's `EmergencyStop` and
//! `ClearEmergency` commands, so the stop is recorded and notified like any other step.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::command::CommandError;

/// The store flag holding the API's emergency stop.
pub const FLAG: &str = "emergency-stop";
/// How often the stop file is looked at.
pub const POLL: Duration = Duration::from_millis(250);

/// What the rollouts are told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Emergency {
    pub active: bool,
    /// Why it is in force (when active).
    pub reason: String,
    /// Who lifted it (when not active), recorded as the operator who cleared it.
    pub cleared_by: String,
    /// Why it was lifted (when not active), recorded with the clearing.
    pub cleared_reason: String,
}

/// The API flag as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopFlag {
    pub reason: String,
    pub by: String,
}

/// Recompute the switch from the flag and the file and publish it if it changed.
pub async fn refresh(shared: &Shared, cleared_by: &str, cleared_reason: &str) {
    let flag = shared
        .store
        .call(|s| s.flag::<StopFlag>(FLAG))
        .await
        .map_err(|e| tracing::error!(error = %e, "Cannot read the emergency-stop flag."))
        .ok()
        .flatten();
    let file = shared
        .config
        .emergency_stop_file
        .as_ref()
        .filter(|f| f.exists())
        .cloned();
    let next = match (flag, file) {
        (Some(flag), _) => Emergency {
            active: true,
            reason: format!("{} (by {})", flag.value.reason, flag.value.by),
            ..Emergency::default()
        },
        (None, Some(file)) => Emergency {
            active: true,
            reason: format!("the stop file {} exists", file.display()),
            ..Emergency::default()
        },
        (None, None) => Emergency {
            active: false,
            reason: String::new(),
            cleared_by: cleared_by.to_string(),
            cleared_reason: cleared_reason.to_string(),
        },
    };
    let changed = shared.emergency.send_if_modified(|current| {
        if current.active == next.active && (!next.active || current.reason == next.reason) {
            return false;
        }
        *current = next.clone();
        true
    });
    if changed {
        shared.metrics.set(
            "canaryd_emergency_stop_active",
            &[],
            f64::from(u8::from(next.active)),
        );
        if next.active {
            tracing::error!(reason = %next.reason, "EMERGENCY STOP: every rollout goes to 0%.");
        } else {
            tracing::warn!(by = %cleared_by, reason = %cleared_reason, "Emergency stop cleared; rollouts stay paused until resumed.");
        }
    }
}

/// Set the API flag (from the API or the environment at start) and apply it.
pub async fn engage(shared: &Shared, reason: String, by: String) -> Result<(), CommandError> {
    let now = shared.clock.now();
    shared
        .store
        .call(move |s| s.set_flag(FLAG, &StopFlag { reason, by }, now))
        .await
        .map_err(CommandError::from)?;
    refresh(shared, "", "").await;
    Ok(())
}

/// Clear the API flag, `by` an operator for `reason` (both recorded by every rollout it
/// releases). Fails (changing nothing else) while the stop file exists, since the file would
/// keep the stop in force.
pub async fn clear(shared: &Shared, by: String, reason: String) -> Result<(), CommandError> {
    if let Some(file) = shared
        .config
        .emergency_stop_file
        .as_ref()
        .filter(|f| f.exists())
    {
        return Err(CommandError::StopFile { file: file.clone() });
    }
    shared
        .store
        .call(|s| s.clear_flag(FLAG))
        .await
        .map_err(CommandError::from)?;
    refresh(shared, &by, &reason).await;
    Ok(())
}

/// Poll the stop file until shutdown.
pub async fn watch_file(shared: Arc<Shared>, shutdown: CancellationToken) {
    let who: PathBuf = shared
        .config
        .emergency_stop_file
        .clone()
        .unwrap_or_default();
    let by = format!("stop file {}", who.display());
    let mut every = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => refresh(&shared, &by, "the stop file was removed").await,
        }
    }
}
