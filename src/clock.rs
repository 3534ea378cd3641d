//! The time the daemon reads: [`Clock`], handed to every part that stamps or compares wall-clock
//! times (the runners, the scheduler's alerts, reloads, the notification dispatcher). The
//! production clock is the system clock; an embedding test gives the daemon a clock that follows
//! tokio's time from a fixed start, so `tokio::time::pause` and `advance` move the daemon's
//! timers and its "now" together, and a test proves that nothing happens by advancing past the
//! moment it would have happened instead of sleeping. Timers keep using tokio time in both
//! cases. It owns nothing else: no timers, no scheduling.

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

    #[test]
    fn the_default_clock_is_the_system_clock() {
        let before = Utc::now();
        let read = Clock::default().now();
        assert!(read >= before && read <= Utc::now(), "{read}");
        assert_eq!(Clock::default(), Clock::system());
    }
}
