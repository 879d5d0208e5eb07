//! Exponential back-off: the one rule every retry loop of the gateway uses
//! (driver connects and health checks, policy reload, JWKS refresh).

use std::time::Duration;

/// `base` after the first failure, doubling with each further one, never
/// more than `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The pause after the first failure.
    pub base: Duration,
    /// The longest pause.
    pub cap: Duration,
}

impl Backoff {
    /// The pause after the `failures`-th consecutive failure (1-based):
    /// `base · 2^(failures-1)`, at most `cap`. Zero failures count as one.
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << shift).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule of `drivers::RetryPolicy::backoff`.
    #[test]
    fn backoff_doubles_from_interval_and_caps() {
        let p = Backoff { base: Duration::from_millis(100), cap: Duration::from_millis(1000) };
        let waits: Vec<u128> = (1..=6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(0), Duration::from_millis(100));
        assert_eq!(p.delay(u32::MAX), Duration::from_millis(1000));
    }

    /// The rule of the policy reload's back-off.
    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let max = Duration::from_secs(30);
        let b = Backoff { base: Duration::from_millis(500), cap: max };
        assert_eq!(b.delay(1), Duration::from_millis(500));
        assert_eq!(b.delay(2), Duration::from_secs(1));
        assert_eq!(b.delay(4), Duration::from_secs(4));
        assert_eq!(b.delay(50), max);
    }

    #[test]
    fn a_huge_base_saturates_instead_of_overflowing() {
        let b = Backoff { base: Duration::MAX, cap: Duration::from_secs(5) };
        assert_eq!(b.delay(40), Duration::from_secs(5));
    }
}
