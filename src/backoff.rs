//! Exponential backoff: how long to wait before the next retry, doubling from a first wait up to
//! a cap, optionally with "equal jitter". One pure policy shared by every retry loop (metric
//! queries, webhook actuators, notification delivery, restarts of rollout tasks); it knows
//! nothing of clocks, sleeping or `Retry-After`, which each caller weighs in its own way.

use std::time::Duration;

/// Waits of `first · 2^retry`, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub first: Duration,
    /// The longest wait, however many retries came before.
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max }
    }

    /// The wait before retry number `retry + 1` (`retry` = 0 for the first retry):
    /// `first · 2^retry`, at most `max`. Never overflows: a doubling past `u32`, or past what a
    /// `Duration` holds, is `max`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.first
            .checked_mul(2u32.saturating_pow(retry))
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// [`Backoff::delay`] with its upper half scaled by `jitter` in [0, 1] (clamped; NaN counts
    /// as 0): never less than half the exponential wait, so the retries of many senders spread
    /// out without collapsing to zero.
    pub fn delay_with_jitter(&self, retry: u32, jitter: f64) -> Duration {
        let full = self.delay(retry);
        let half = full / 2;
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        half + half.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn waits_double_from_the_first_and_stop_at_the_cap() {
        let cases = [
            // (first, max, retry, want)
            (MS(200), MS(5_000), 0, MS(200)),
            (MS(200), MS(5_000), 1, MS(400)),
            (MS(200), MS(5_000), 3, MS(1_600)),
            (MS(200), MS(5_000), 4, MS(3_200)),
            (MS(200), MS(5_000), 5, MS(5_000)),
            (MS(200), MS(5_000), 30, MS(5_000)),
            (MS(200), MS(5_000), 31, MS(5_000)),
            (MS(200), MS(5_000), 32, MS(5_000)),
            (MS(200), MS(5_000), u32::MAX, MS(5_000)),
            (MS(1_000), MS(30_000), 4, MS(16_000)),
            (MS(1_000), MS(30_000), 5, MS(30_000)),
            // A first wait above the cap is cut to it; a zero wait stays zero.
            (MS(9_000), MS(5_000), 0, MS(5_000)),
            (Duration::ZERO, MS(5_000), u32::MAX, Duration::ZERO),
            // Past what a Duration holds: the cap, not a panic.
            (Duration::MAX, Duration::MAX, 1, Duration::MAX),
            (
                Duration::from_secs(u64::MAX / 4),
                Duration::MAX,
                8,
                Duration::MAX,
            ),
        ];
        for (first, max, retry, want) in cases {
            assert_eq!(
                Backoff::new(first, max).delay(retry),
                want,
                "first {first:?}, max {max:?}, retry {retry}"
            );
        }
    }

    #[test]
    fn jitter_scales_only_the_upper_half() {
        let b = Backoff::new(Duration::from_secs(5), Duration::from_secs(600));
        let cases = [
            // (retry, jitter, want)
            (0, 1.0, MS(5_000)),
            (0, 0.0, MS(2_500)),
            (0, 0.5, MS(3_750)),
            (1, 1.0, MS(10_000)),
            (3, 1.0, MS(40_000)),
            (u32::MAX, 1.0, MS(600_000)),
            (u32::MAX, 0.0, MS(300_000)),
            // Out of range or not a number: clamped, never below half nor above the whole.
            (0, -3.0, MS(2_500)),
            (0, 7.0, MS(5_000)),
            (0, f64::NAN, MS(2_500)),
            (0, f64::INFINITY, MS(5_000)),
        ];
        for (retry, jitter, want) in cases {
            assert_eq!(
                b.delay_with_jitter(retry, jitter),
                want,
                "retry {retry}, jitter {jitter}"
            );
        }
    }
}
