//! `shutdown:` — what the gateway does on SIGTERM or SIGINT.
//!
//! Readiness (`/readyz`, `grpc.health.v1.Health`) turns false at once; the
//! listener keeps accepting and serving for `drain_delay_ms`, so load
//! balancers (a Kubernetes Service's endpoints, an L4 balancer's health
//! check) see it and stop sending; then it stops accepting and calls and
//! streams in flight get `grace_ms` to finish; the rest are closed.
//!
//! The defaults (5 s and 20 s) fit Kubernetes' default
//! `terminationGracePeriodSeconds` of 30 s: 5 s is a few readiness-probe
//! periods and endpoint propagation, 20 s lets long calls finish, and the
//! remaining 5 s cover stopping background tasks before the kubelet's
//! SIGKILL.

use std::time::Duration;

use serde::Deserialize;

/// A `shutdown:` value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shutdown.{key} must be within {min}..={max}, got {value}")]
pub struct ShutdownConfigError {
    /// The key under `shutdown.`.
    pub key: &'static str,
    /// The smallest value allowed.
    pub min: u64,
    /// The largest value allowed.
    pub max: u64,
    /// The value configured.
    pub value: u64,
}

/// The `shutdown:` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// After the signal, how long the listener keeps accepting and serving
    /// while readiness reports not ready, milliseconds (0: stop accepting at
    /// once).
    pub drain_delay_ms: u64,
    /// Then, how long calls and streams in flight may take to finish,
    /// milliseconds; connections still open after it are closed.
    pub grace_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { drain_delay_ms: 5_000, grace_ms: 20_000 }
    }
}

impl ShutdownConfig {
    /// `drain_delay_ms` as a duration.
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay_ms)
    }

    /// `grace_ms` as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }

    pub(super) fn validate(&self) -> Result<(), ShutdownConfigError> {
        check("drain_delay_ms", self.drain_delay_ms, 0, 600_000)?;
        check("grace_ms", self.grace_ms, 0, 3_600_000)
    }
}

fn check(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ShutdownConfigError> {
    if (min..=max).contains(&value) { Ok(()) } else { Err(ShutdownConfigError { key, min, max, value }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_kubernetes_default_grace_period() {
        let d = ShutdownConfig::default();
        assert_eq!((d.drain_delay(), d.grace()), (Duration::from_secs(5), Duration::from_secs(20)));
        assert!(d.drain_delay() + d.grace() < Duration::from_secs(30));
        assert_eq!(d.validate(), Ok(()));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let c = ShutdownConfig { drain_delay_ms: 600_001, ..ShutdownConfig::default() };
        assert_eq!(c.validate().map_err(|e| e.key), Err("drain_delay_ms"));
        let c = ShutdownConfig { grace_ms: 3_600_001, ..ShutdownConfig::default() };
        assert_eq!(c.validate().map_err(|e| e.key), Err("grace_ms"));
    }
}
