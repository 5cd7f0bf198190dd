//! The retry backoff of the dispatcher: exponential from `initial` to
//! `max`, with jitter — the wait is a random point of the step's upper half,
//! so retries of many alerts after one outage spread out instead of
//! arriving together.

use std::time::Duration;

use rand::Rng;

/// A source of jitter: a number in `[0, 1]` per call. The default is
/// [`random_unit`]; tests pass a fixed one.
pub type Jitter = fn() -> f64;

/// A uniformly random number in `[0, 1]`.
pub fn random_unit() -> f64 {
    rand::thread_rng().gen_range(0.0..=1.0)
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// Steps of `initial`, doubling per attempt up to `max`; random jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self::with_jitter(initial, max, random_unit)
    }

    /// The same steps with the jitter taken from `jitter`.
    pub fn with_jitter(initial: Duration, max: Duration, jitter: Jitter) -> Self {
        Self {
            initial,
            max,
            jitter,
        }
    }

    /// The step after `attempts` failed attempts (1 = the first failure):
    /// `initial · 2^(attempts-1)`, at most `max`.
    pub fn step(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << exp).min(self.max)
    }

    /// How long to wait: the step's lower half plus a jittered part of its
    /// upper half, so always within `[step / 2, step]`.
    pub fn delay(&self, attempts: u32) -> Duration {
        let half = self.step(attempts) / 2;
        half + half.mul_f64((self.jitter)().clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn steps_double_and_cap() {
        let b = Backoff::with_jitter(MS(100), MS(1000), || 0.0);
        let steps: Vec<u64> = [1, 2, 3, 4, 5, 40, u32::MAX]
            .map(|a| b.step(a).as_millis() as u64)
            .to_vec();
        assert_eq!(steps, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn jitter_spans_the_upper_half_of_the_step() {
        let low = Backoff::with_jitter(MS(100), MS(1000), || 0.0);
        let high = Backoff::with_jitter(MS(100), MS(1000), || 1.0);
        let mid = Backoff::with_jitter(MS(100), MS(1000), || 0.5);
        assert_eq!(low.delay(3), MS(200));
        assert_eq!(high.delay(3), MS(400));
        assert_eq!(mid.delay(3), MS(300));
        // A source out of range is clamped, never beyond the step.
        let wild = Backoff::with_jitter(MS(100), MS(1000), || 7.0);
        assert_eq!(wild.delay(5), MS(1000));
    }

    #[test]
    fn random_jitter_stays_within_the_step() {
        let b = Backoff::new(MS(100), MS(1000));
        for _ in 0..50 {
            let d = b.delay(4);
            assert!(d >= MS(400) && d <= MS(800), "{d:?}");
        }
    }
}
