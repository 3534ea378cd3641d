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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn command(
        reason: &str,
    ) -> (
        Msg,
        tokio::sync::oneshot::Receiver<
            Result<super::super::status::RolloutStatus, super::super::CommandError>,
        >,
    ) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let msg = Msg::Command {
            command: crate::rollout::Command::Pause,
            by: crate::rollout::TriggeredBy::Operator("alice".into()),
            reason: reason.into(),
            canary: None,
            reply: Some(reply),
        };
        (msg, answer)
    }

    fn reason_of(msg: &Msg) -> &str {
        match msg {
            Msg::Command { reason, .. } => reason,
            Msg::RulesChanged => "rules changed",
        }
    }

    #[tokio::test]
    async fn a_mailbox_delivers_in_order_coalesces_rule_changes_and_refuses_when_full() {
        let mailbox = Arc::new(Mailbox::default());
        // A receiver waiting before anything is sent gets the first message.
        let waiting = tokio::spawn({
            let mailbox = Arc::clone(&mailbox);
            async move { reason_of(&mailbox.recv().await).to_string() }
        });
        tokio::task::yield_now().await;
        assert!(mailbox.send(command("first").0));
        assert_eq!(waiting.await.unwrap(), "first");

        assert!(mailbox.send(Msg::RulesChanged));
        assert!(mailbox.send(command("second").0));
        assert!(
            mailbox.send(Msg::RulesChanged),
            "accepted, but not queued twice"
        );
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(reason_of(&mailbox.recv().await).to_string());
        }
        assert_eq!(got, ["rules changed", "second"]);
        let nothing = tokio::time::timeout(Duration::from_millis(50), mailbox.recv()).await;
        assert!(nothing.is_err(), "the duplicate rule change was queued");

        // Full: the 65th message is refused, and taking one makes room again.
        let answers: Vec<_> = (0..MAILBOX)
            .map(|i| {
                let (msg, answer) = command(&format!("c{i}"));
                assert!(mailbox.send(msg), "message {i}");
                answer
            })
            .collect();
        assert!(!mailbox.send(command("one too many").0));
        assert_eq!(reason_of(&mailbox.recv().await), "c0");
        assert!(mailbox.send(command("fits again").0));

        // Closed (the task ended): later messages are refused, waiting ones dropped, and their
        // senders learn it from the reply channel.
        mailbox.close();
        assert!(!mailbox.send(command("too late").0));
        let mut answers = answers.into_iter().skip(1);
        let unanswered = answers.next().unwrap().await;
        assert!(unanswered.is_err(), "{unanswered:?}");
    }
}
