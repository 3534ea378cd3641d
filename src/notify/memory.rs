//! An in-memory [`Notifier`] for tests and dry runs: it records what it is asked to send and
//! answers from a script of results. It owns nothing else and touches no network.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Notification, Notifier, NotifyError, SendFuture};

/// Records deliveries; fails while its script of errors lasts. Clones share the record.
#[derive(Debug, Clone, Default)]
pub struct MemoryNotifier {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    script: VecDeque<NotifyError>,
    sent: Vec<(String, Notification)>,
    attempts: usize,
}

impl MemoryNotifier {
    pub fn new() -> Self {
        MemoryNotifier::default()
    }

    /// The next attempts fail with these errors, in order; then attempts succeed.
    pub fn fail_with(&self, errors: impl IntoIterator<Item = NotifyError>) {
        self.lock().script.extend(errors);
    }

    /// Successful deliveries so far: (idempotency key, notification).
    pub fn sent(&self) -> Vec<(String, Notification)> {
        self.lock().sent.clone()
    }

    /// Every attempt so far, successful or not.
    pub fn attempts(&self) -> usize {
        self.lock().attempts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Notifier for MemoryNotifier {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn send<'a>(
        &'a self,
        notification: &'a Notification,
        idempotency_key: &'a str,
    ) -> SendFuture<'a> {
        let result = {
            let mut inner = self.lock();
            inner.attempts += 1;
            match inner.script.pop_front() {
                Some(error) => Err(error),
                None => {
                    inner
                        .sent
                        .push((idempotency_key.to_string(), notification.clone()));
                    Ok(())
                }
            }
        };
        Box::pin(async move { result })
    }
}
