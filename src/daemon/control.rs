//! The daemon as its faces see it: [`Control`], the one handle the HTTP API and the status
//! pages get. Through it they read the rollouts' statuses, the rules in force and the store (its
//! queries only, off the async threads), give a rollout a command and wait for what became of
//! it, and read, engage or clear the emergency stop (who may ask is decided before, by
//! [`super::access`]). Nothing else of the daemon's world (actuators, metric sources, the
//! scheduler, the notifiers, the metrics) is reachable from a face. It decides nothing: a
//! command goes through the rollout's mailbox to its runner and the state machine, and the
//! answer, or the typed [`CommandError`] saying why not, comes back from there.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::command::CommandError;
use super::emergency::{self, Emergency};
use super::runner::Msg;
use super::scheduler::MAILBOX;
use super::status::RolloutStatus;
use super::{RuleSet, Shared};
use crate::rollout::{Command, TriggeredBy};
use crate::store::{ReadOnly, StoreError};

/// How long a command waits for its rollout's task to answer.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// A command for one rollout, as an operator gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub command: Command,
    pub by: TriggeredBy,
    /// Why, for the audit trail.
    pub reason: String,
    /// `start` only: the canary version of the new run (the current one when `None`).
    pub canary: Option<String>,
}

/// The faces' handle on the running daemon; cheap to clone.
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

impl Control {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Control { shared }
    }

    /// Every rollout's status, by name.
    pub fn statuses(&self) -> Vec<RolloutStatus> {
        self.shared.statuses()
    }

    /// Whether a rollout by this name exists: its rule is loaded, or it is stored from before.
    pub fn knows(&self, name: &str) -> bool {
        self.shared.rules.load().get(name).is_some() || self.shared.has_status(name)
    }

    /// The rules in force (a snapshot: a reload swaps in a new set, this one stays as it was).
    pub fn rules(&self) -> Arc<RuleSet> {
        self.shared.rules.load_full()
    }

    /// Run `f` over the store's queries on the blocking pool (see `Store::call`).
    pub async fn read<T, E>(
        &self,
        f: impl FnOnce(&ReadOnly<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.shared.store.call(move |s| f(&s.read_only())).await
    }

    /// Give `order` to rollout `name` and wait (at most [`COMMAND_TIMEOUT`]) for its task to
    /// say what became of it: the rollout's status after the command, or why it was not
    /// carried out.
    pub async fn command(&self, name: &str, order: Order) -> Result<RolloutStatus, CommandError> {
        let rollout = || name.to_string();
        if !self.shared.scheduler.has(name) {
            return Err(CommandError::NoRule { rollout: rollout() });
        }
        let (reply, answer) = oneshot::channel();
        let msg = Msg::Command {
            command: order.command,
            by: order.by,
            reason: order.reason,
            canary: order.canary,
            reply: Some(reply),
        };
        if !self.shared.scheduler.send(name, msg) {
            return Err(CommandError::Busy {
                rollout: rollout(),
                waiting: MAILBOX,
            });
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(CommandError::Stopped { rollout: rollout() }),
            Err(_) => Err(CommandError::Timeout {
                rollout: rollout(),
                after: COMMAND_TIMEOUT,
            }),
        }
    }

    /// The emergency stop as it is now.
    pub fn emergency(&self) -> Emergency {
        self.shared.emergency.borrow().clone()
    }

    /// Engage the emergency stop (recorded in the store, so it survives a restart).
    pub async fn engage_emergency(&self, reason: String, by: String) -> Result<(), CommandError> {
        emergency::engage(&self.shared, reason, by).await
    }

    /// Clear the emergency stop, `by` an operator for `reason` (recorded in the history of
    /// every rollout it releases); refused while the stop file exists.
    pub async fn clear_emergency(&self, by: String, reason: String) -> Result<(), CommandError> {
        emergency::clear(&self.shared, by, reason).await
    }

    /// `[server] public_url`: where people reach the daemon, for the commands the pages print.
    pub fn public_url(&self) -> Option<String> {
        self.shared.config.server.public_url.clone()
    }

    /// The daemon's time ([`crate::clock::Clock`]): what pages and answers measure ages and
    /// deadlines against, the same time the runners decide by.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.shared.clock.now()
    }
}
