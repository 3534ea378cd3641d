//! A rollout's mailbox: the messages for its task ([`Msg`]: commands and rule changes), in
//! order. The scheduler creates one per rollout and closes it when the task ends for good; the
//! runner reads it. Senders never wait: a closed or full mailbox ([`MAILBOX`] messages) refuses.
//! It knows nothing of what the messages mean.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{Notify, oneshot};

use super::command::CommandError;
use super::status::RolloutStatus;
use crate::rollout::{Command, TriggeredBy};

/// Messages a rollout's mailbox holds before it refuses more (its task is stuck, or an operator
/// is sending commands faster than they can be recorded).
pub const MAILBOX: usize = 64;

/// What can be sent to a rollout's task.
#[derive(Debug)]
pub enum Msg {
    /// An operator's (or the daemon's) command; the reply says what became of it.
    Command {
        command: Command,
        by: TriggeredBy,
        reason: String,
        /// `start` only: the canary version of the new run (the current one when `None`).
        canary: Option<String>,
        reply: Option<oneshot::Sender<Result<RolloutStatus, CommandError>>>,
    },
    /// The rule set was swapped: pick up the new rule (or notice it is gone).
    RulesChanged,
}

/// A rollout's mailbox: the messages for its task, in order. A queue and a wake-up, about a
/// hundred bytes while empty; a tokio channel took close to a kilobyte per rollout.
#[derive(Debug, Default)]
pub struct Mailbox {
    queue: std::sync::Mutex<Queue>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Msg>,
    /// The task has ended for good: nothing will read what is sent.
    closed: bool,
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queue a message for the task; `false` when the mailbox is closed or full. A
    /// `RulesChanged` already waiting is not queued twice: the task reads the rules afresh.
    pub fn send(&self, msg: Msg) -> bool {
        let mut queue = self.lock();
        if queue.closed || queue.messages.len() >= MAILBOX {
            return false;
        }
        let again = matches!(msg, Msg::RulesChanged)
            && queue
                .messages
                .iter()
                .any(|m| matches!(m, Msg::RulesChanged));
        if !again {
            queue.messages.push_back(msg);
        }
        drop(queue);
        self.arrived.notify_one();
        true
    }

    /// The next message, waiting for one. Cancel-safe: a message is taken only when returned.
    pub async fn recv(&self) -> Msg {
        loop {
            {
                let mut queue = self.lock();
                if let Some(msg) = queue.messages.pop_front() {
                    if queue.messages.is_empty() {
                        // An idle rollout holds no queue storage.
                        queue.messages = VecDeque::new();
                    }
                    return msg;
                }
            }
            // A notification sent since the check is kept as a permit, so none is missed.
            self.arrived.notified().await;
        }
    }

    /// Refuse every later message and drop the waiting ones (their senders see the reply
    /// channel closed).
    pub(super) fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.messages = VecDeque::new();
    }
}

/// Closes a mailbox when its task ends, however it ends (returned, or aborted at shutdown).
pub(super) struct CloseOnDrop(pub(super) Arc<Mailbox>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}
