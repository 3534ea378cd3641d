//! Receivers' rate limits: the [`RateLimit`] a receiver is configured with and the token
//! [`Bucket`] the dispatcher keeps per receiver. Pure: the caller passes the (tokio) instant, so
//! paused test time drives it too; it knows nothing of sending, receivers or the store.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A receiver's rate limit: a token bucket of `burst` tokens refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    /// No practical limit (tests, fakes).
    pub const UNLIMITED: RateLimit = RateLimit {
        per_minute: u32::MAX,
        burst: u32::MAX,
    };
}

/// A token bucket with reservations: a caller that may wait takes a token ahead of time
/// (the balance goes negative) and is told how long to wait before using it.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: RateLimit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: RateLimit, now: Instant) -> Bucket {
        Bucket {
            rate,
            tokens: f64::from(rate.burst.max(1)),
            last: now,
        }
    }

    /// The limit this bucket enforces.
    pub fn rate(&self) -> RateLimit {
        self.rate
    }

    fn per_second(&self) -> f64 {
        f64::from(self.rate.per_minute.max(1)) / 60.0
    }

    /// Takes one token: `Ok(wait)` (zero when one is there now) if it will be available within
    /// `max_wait`; otherwise `Err(wait)`, reserving nothing.
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens =
            (self.tokens + elapsed * self.per_second()).min(f64::from(self.rate.burst.max(1)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(Duration::ZERO);
        }
        let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.per_second());
        if wait <= max_wait {
            self.tokens -= 1.0;
            Ok(wait)
        } else {
            Err(wait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_paces_and_never_drops() {
        let rate = RateLimit {
            per_minute: 60,
            burst: 3,
        };
        let t0 = Instant::now();
        let mut b = Bucket::new(rate, t0);
        for _ in 0..3 {
            assert_eq!(b.reserve(t0, Duration::ZERO), Ok(Duration::ZERO));
        }
        // The fourth must wait a second; with no waiting allowed it is told how long.
        let refused = b.reserve(t0, Duration::ZERO).unwrap_err();
        assert!((refused.as_secs_f64() - 1.0).abs() < 1e-6, "{refused:?}");
        // Reservations queue up: 1 s, then 2 s.
        let w1 = b.reserve(t0, Duration::from_secs(5)).unwrap();
        let w2 = b.reserve(t0, Duration::from_secs(5)).unwrap();
        assert!((w1.as_secs_f64() - 1.0).abs() < 1e-6 && (w2.as_secs_f64() - 2.0).abs() < 1e-6);
        // After a long quiet spell the bucket is full again, not fuller.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(b.reserve(later, Duration::ZERO), Ok(Duration::ZERO));
        }
        assert!(b.reserve(later, Duration::ZERO).is_err());
    }
}
