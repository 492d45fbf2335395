//! Reconnect delays: capped exponential backoff with jitter, sans-IO (the caller
//! sleeps).

use std::time::Duration;

use rand::Rng;

/// How reconnect delays grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Delay multiplier per consecutive failure (at least 1).
    pub multiplier: u32,
    /// Delay multiplier for rate-limit errors (429) on top of the normal delay.
    pub rate_limit_factor: u32,
}

impl Default for BackoffConfig {
    /// 1 s, doubling, capped at 60 s; rate limits wait 4× longer (still capped).
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2,
            rate_limit_factor: 4,
        }
    }
}

/// Consecutive-failure counter that hands out delays.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
}

impl Backoff {
    /// A fresh counter.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            failures: 0,
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures (after a successful login).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The ceiling of the next delay: `initial × multiplier^failures`, times the rate
    /// limit factor when asked, capped at `max`. No overflow whatever the counts.
    pub fn ceiling(&self, rate_limited: bool) -> Duration {
        let mut d = self.config.initial;
        for _ in 0..self.failures.min(64) {
            d = d.saturating_mul(self.config.multiplier.max(1));
            if d >= self.config.max {
                break;
            }
        }
        if rate_limited {
            d = d.saturating_mul(self.config.rate_limit_factor.max(1));
        }
        d.min(self.config.max)
    }

    /// The next delay ("equal jitter": half the ceiling plus a random part of the other
    /// half, so reconnecting clients spread out but never retry at once), and counts
    /// one more failure.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rate_limited: bool, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(rate_limited);
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 {
            0
        } else {
            rng.gen_range(0..=spread)
        };
        half + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn grows_exponentially_up_to_the_cap_with_jitter() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut b = Backoff::new(BackoffConfig::default());
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let ceiling = b.ceiling(false);
            let d = b.next_delay(false, &mut rng);
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
            ceilings.push(ceiling.as_secs());
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(false), Duration::from_secs(1));
        assert_eq!(b.ceiling(true), Duration::from_secs(4));
    }

    proptest::proptest! {
        #[test]
        fn delays_stay_within_half_ceiling_and_the_cap(
            initial_ms in 0u64..100_000,
            max_ms in 0u64..1_000_000,
            multiplier in 0u32..10,
            factor in 0u32..10,
            failures in 0usize..100,
            seed: u64,
        ) {
            let config = BackoffConfig {
                initial: Duration::from_millis(initial_ms),
                max: Duration::from_millis(max_ms),
                multiplier,
                rate_limit_factor: factor,
            };
            let mut rng = StdRng::seed_from_u64(seed);
            let mut b = Backoff::new(config);
            let mut last_ceiling = Duration::ZERO;
            for i in 0..failures {
                let limited = i % 3 == 0;
                let ceiling = b.ceiling(limited);
                proptest::prop_assert!(ceiling <= config.max);
                if !limited && multiplier >= 1 {
                    proptest::prop_assert!(ceiling >= last_ceiling.min(config.max));
                    last_ceiling = ceiling;
                }
                let d = b.next_delay(limited, &mut rng);
                proptest::prop_assert!(d >= ceiling / 2 && d <= ceiling);
            }
        }
    }

    #[test]
    fn never_overflows() {
        let mut rng = StdRng::seed_from_u64(6);
        let mut b = Backoff::new(BackoffConfig {
            initial: Duration::MAX,
            max: Duration::MAX,
            multiplier: u32::MAX,
            rate_limit_factor: u32::MAX,
        });
        for _ in 0..3 {
            let _ = b.next_delay(true, &mut rng);
        }
        let mut zero = Backoff::new(BackoffConfig {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 0,
            rate_limit_factor: 0,
        });
        assert_eq!(zero.next_delay(true, &mut rng), Duration::ZERO);
    }
}
