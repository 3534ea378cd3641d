//! What becomes of a command (to a rollout, or the emergency stop) when it cannot be carried
//! out: one typed error from the rollout's task or the emergency switch to the API, which maps
//! each kind to its HTTP status in one place (`api`'s `From<CommandError> for ApiError`). A
//! refusal of the state machine is the operator's to reconsider (409); a decision that could not
//! be recorded, because the state database failed, is the daemon's trouble (503), never a
//! refusal. It owns the kinds and their messages only.

use std::path::PathBuf;
use std::time::Duration;

use crate::rollout::StepError;
use crate::store::StoreError;

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The state machine refused it in the rollout's phase.
    #[error(transparent)]
    Refused(#[from] StepError),
    /// The rollout is known (stored) but has no rule file loaded, so no task to take it.
    #[error("rollout `{rollout}` has no rule file loaded, so it takes no commands")]
    NoRule { rollout: String },
    /// The emergency stop cannot be cleared while its stop file exists.
    #[error("the stop file {} exists; remove it to clear the emergency stop", file.display())]
    StopFile { file: PathBuf },
    /// No rollout by that name.
    #[error("no rollout named `{rollout}`; GET /v1/rollouts lists them")]
    Unknown { rollout: String },
    /// The decision could not be recorded, so nothing was done.
    #[error("nothing was recorded and nothing done: {message}")]
    Store { message: String },
    /// The rollout's mailbox is full or its task is not running.
    #[error(
        "rollout `{rollout}` takes no commands right now: its task is not running (shutting \
         down?) or already has {waiting} waiting; try again"
    )]
    Busy { rollout: String, waiting: usize },
    /// The rollout's task ended before answering.
    #[error("rollout `{rollout}`'s task stopped before answering; check its state")]
    Stopped { rollout: String },
    /// No answer in time; the command is still queued and may apply.
    #[error(
        "rollout `{rollout}` did not answer within {} s; the command may still apply",
        after.as_secs()
    )]
    Timeout { rollout: String, after: Duration },
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        CommandError::Store {
            message: e.to_string(),
        }
    }
}
