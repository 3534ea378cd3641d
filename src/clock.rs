//! The time the daemon reads: [`Clock`], handed to every part that stamps or compares wall-clock
//! times (the runners, the scheduler's alerts, reloads, the notification dispatcher). The
//! production clock is the system clock; an embedding test gives the daemon a clock that follows
//! tokio's time from a fixed start, so `tokio::time::pause` and `advance` move the daemon's
//! timers and its "now" together, and a test proves that nothing happens by advancing past the
//! moment it would have happened instead of sleeping. Timers keep using tokio time in both
//! cases. Paused time auto-advances whenever the runtime is idle, and only work on tokio's
//! blocking pool holds it back; so work done on another thread (the store's writer) is awaited
//! through [`Clock::wait_outside`], which on a tokio clock waits on the blocking pool, lest the
//! daemon's time run ahead of a commit in flight. It owns nothing else: no timers, no scheduling.

use chrono::{DateTime, Utc};

/// Where "now" comes from. Cheap to copy; every copy reads the same time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock(Source);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Source {
    #[default]
    System,
    /// `start` at tokio instant `base`, then moving as tokio's clock moves.
    Tokio {
        start: DateTime<Utc>,
        base: tokio::time::Instant,
    },
}

impl Clock {
    /// The system clock (`Utc::now()`): what the daemon uses unless embedded otherwise.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that reads `start` now and then moves with tokio's clock: with paused time
    /// (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`) it moves only when tokio's
    /// time is advanced, by as much. Call it inside the runtime whose time it should follow.
    pub fn following_tokio(start: DateTime<Utc>) -> Clock {
        Clock(Source::Tokio {
            start,
            base: tokio::time::Instant::now(),
        })
    }

    /// Await `work` that is done on a thread outside the runtime (a commit on the store's writer
    /// thread). On the system clock it is awaited directly, holding no thread. On a tokio clock
    /// it is awaited from the blocking pool, which holds paused time's auto-advance back until
    /// it is done: otherwise the daemon's other timers (polls, analyses) would run its time ahead
    /// while the work is under way, by as much as a slow disk takes.
    pub async fn wait_outside<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> T {
        match self.0 {
            Source::System => work.await,
            Source::Tokio { .. } => {
                let runtime = tokio::runtime::Handle::current();
                match tokio::task::spawn_blocking(move || runtime.block_on(work)).await {
                    Ok(out) => out,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    // The blocking pool is shut down only with the runtime, which ends this
                    // task too.
                    Err(e) => panic!("a wait outside the runtime was cancelled: {e}"),
                }
            }
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match self.0 {
            Source::System => Utc::now(),
            Source::Tokio { start, base } => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(base);
                chrono::Duration::from_std(elapsed)
                    .ok()
                    .and_then(|d| start.checked_add_signed(d))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_only_with_tokio_time_and_by_as_much() {
        let start = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::following_tokio(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), start + chrono::Duration::seconds(90));
        // A copy reads the same time.
        let copy = clock;
        assert_eq!(copy.now(), clock.now());
    }

    #[tokio::test(start_paused = true)]
    async fn paused_time_waits_for_work_outside_the_runtime_awaited_through_the_clock() {
        let clock = Clock::following_tokio(Utc::now());
        // Work on another thread that takes 50 ms of the machine's time, while a timer of the
        // runtime keeps asking for time to pass.
        let outside = || {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                let _ = tx.send(());
            });
            async move { rx.await.unwrap() }
        };
        let ticking = tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let before = tokio::time::Instant::now();
        clock.wait_outside(outside()).await;
        assert!(
            before.elapsed() < Duration::from_secs(1),
            "paused time ran {:?} ahead while the work was under way",
            before.elapsed()
        );
        // Awaited directly, paused time runs ahead of it, which is what the wait prevents.
        let before = tokio::time::Instant::now();
        outside().await;
        assert!(before.elapsed() >= Duration::from_secs(1));
        ticking.abort();
    }

    #[test]
    fn the_default_clock_is_the_system_clock() {
        let before = Utc::now();
        let read = Clock::default().now();
        assert!(read >= before && read <= Utc::now(), "{read}");
        assert_eq!(Clock::default(), Clock::system());
    }
}
