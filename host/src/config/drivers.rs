//! `drivers:` — where each driver listens and how the gateway talks to
//! it. See `docs/drivers.md`. The section checks itself while it is
//! deserialized, so its errors carry the YAML line and column.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// Why the `drivers:` section is refused. `driver` is `credentials` or
/// `upstreams.NAME`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriversConfigError {
    /// An upstream driver named `""` or `credentials`.
    #[error("drivers.upstreams: {0:?} is not a usable driver name")]
    UpstreamName(String),
    /// `credential_cache.default_ttl_ms` or `catalogue_ttl_ms` is 0.
    #[error("drivers.credential_cache: default_ttl_ms and catalogue_ttl_ms must be > 0")]
    CacheTtl,
    /// A driver's `socket` is empty.
    #[error("drivers.{0}.socket is empty")]
    NoSocket(String),
    /// A driver's `timeout_ms` is 0 or above 60 s.
    #[error("drivers.{0}.timeout_ms must be 1..=60000")]
    Timeout(String),
    /// A driver's `health_interval_ms` is below 100.
    #[error("drivers.{0}.health_interval_ms must be >= 100")]
    HealthInterval(String),
    /// A driver's `connect` back-off is unusable.
    #[error("drivers.{0}.connect: attempts and interval_ms must be > 0 and max_backoff_ms >= interval_ms")]
    Connect(String),
}

/// All drivers. Every key is optional; an absent driver is not used.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriversConfig {
    /// The credentials driver (`credentials.v1.CredentialsDriver`).
    #[serde(default)]
    pub credentials: Option<DriverConfig>,
    /// How resolved credentials are cached.
    #[serde(default)]
    pub credential_cache: CredentialCacheConfig,
    /// Upstream drivers that routes forward to (e.g. a compute driver on
    /// `unix:///run/sandbox.sock`), by name: health-checked with the same
    /// connection helper so `/readyz` reflects the required ones.
    #[serde(default)]
    pub upstreams: std::collections::BTreeMap<String, DriverConfig>,
}

/// One driver on a Unix socket.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriverConfig {
    /// The driver's Unix socket.
    pub socket: PathBuf,
    /// Deadline of every call to the driver (and of a connection attempt).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retry and back-off while the driver cannot be reached.
    #[serde(default)]
    pub connect: RetryConfig,
    /// Interval between gRPC health checks while the driver is healthy.
    #[serde(default = "default_health_interval_ms")]
    pub health_interval_ms: u64,
    /// Whether the gateway is not ready (`/readyz`) while this driver is down.
    #[serde(default = "default_true")]
    pub required: bool,
}

/// Connect retry and back-off: `attempts` tries at start-up, the first
/// retry after `interval_ms`, doubling up to `max_backoff_ms` (also the pace of
/// background reconnects while the driver stays down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts before start-up gives up waiting (background retries go on).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// First back-off.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Longest back-off.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            interval_ms: default_interval_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

/// How resolved credentials are cached by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialCacheConfig {
    /// A credential is not used once it is this close to its expiry.
    #[serde(default = "default_refresh_skew_ms")]
    pub refresh_skew_ms: u64,
    /// A background refresh starts this long before that point (at most half
    /// the credential's usable lifetime).
    #[serde(default = "default_refresh_ahead_ms")]
    pub refresh_ahead_ms: u64,
    /// How long a credential the driver gives no expiry for (`expires_at_ms = 0`) is cached.
    #[serde(default = "default_ttl_ms")]
    pub default_ttl_ms: u64,
    /// How long the credential catalogue (`ListCredentials`) is cached.
    #[serde(default = "default_catalogue_ttl_ms")]
    pub catalogue_ttl_ms: u64,
}

impl Default for CredentialCacheConfig {
    fn default() -> Self {
        Self {
            refresh_skew_ms: default_refresh_skew_ms(),
            refresh_ahead_ms: default_refresh_ahead_ms(),
            default_ttl_ms: default_ttl_ms(),
            catalogue_ttl_ms: default_catalogue_ttl_ms(),
        }
    }
}

fn default_timeout_ms() -> u64 {
    1_000
}
fn default_health_interval_ms() -> u64 {
    5_000
}
fn default_true() -> bool {
    true
}
fn default_attempts() -> u32 {
    5
}
fn default_interval_ms() -> u64 {
    100
}
fn default_max_backoff_ms() -> u64 {
    5_000
}
fn default_refresh_skew_ms() -> u64 {
    30_000
}
fn default_refresh_ahead_ms() -> u64 {
    60_000
}
fn default_ttl_ms() -> u64 {
    300_000
}
fn default_catalogue_ttl_ms() -> u64 {
    10_000
}

impl DriversConfig {
    /// Checks ranges.
    fn validate(&self) -> Result<(), DriversConfigError> {
        if let Some(d) = &self.credentials {
            d.validate(|| "credentials".to_owned())?;
        }
        for (name, d) in &self.upstreams {
            if name.is_empty() || name == "credentials" {
                return Err(DriversConfigError::UpstreamName(name.clone()));
            }
            d.validate(|| format!("upstreams.{name}"))?;
        }
        let c = &self.credential_cache;
        if c.default_ttl_ms == 0 || c.catalogue_ttl_ms == 0 {
            return Err(DriversConfigError::CacheTtl);
        }
        Ok(())
    }

    /// Deserializes and validates (for `#[serde(deserialize_with)]`).
    pub(super) fn deserialize_checked<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let cfg = Self::deserialize(d)?;
        cfg.validate().map_err(serde::de::Error::custom)?;
        Ok(cfg)
    }
}

impl DriverConfig {
    /// Checks one driver; `name` is its key under `drivers.`.
    fn validate(&self, name: impl Fn() -> String) -> Result<(), DriversConfigError> {
        if self.socket.as_os_str().is_empty() {
            return Err(DriversConfigError::NoSocket(name()));
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return Err(DriversConfigError::Timeout(name()));
        }
        if self.health_interval_ms < 100 {
            return Err(DriversConfigError::HealthInterval(name()));
        }
        let r = &self.connect;
        if r.attempts == 0 || r.interval_ms == 0 || r.max_backoff_ms < r.interval_ms {
            return Err(DriversConfigError::Connect(name()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<DriversConfig, String> {
        DriversConfig::deserialize_checked(serde_norway::Deserializer::from_str(yaml)).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_full_form() {
        let c = parse("credentials: {socket: /run/c.sock}").unwrap_or_else(|e| panic!("{e}"));
        let d = c.credentials.unwrap_or_else(|| panic!("credentials"));
        assert_eq!((d.timeout_ms, d.health_interval_ms, d.required), (1_000, 5_000, true));
        assert_eq!(d.connect, RetryConfig::default());
        assert_eq!(c.credential_cache, CredentialCacheConfig::default());
        let c = parse(
            "credentials:\n  socket: c.sock\n  timeout_ms: 250\n  connect: {attempts: 3, interval_ms: 50, \
             max_backoff_ms: 1000}\n  health_interval_ms: 1000\n  required: false\ncredential_cache: \
             {refresh_skew_ms: 1, refresh_ahead_ms: 2, default_ttl_ms: 3, catalogue_ttl_ms: 4}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.credential_cache.catalogue_ttl_ms, 4);
        assert!(!c.credentials.is_some_and(|d| d.required));
    }

    #[test]
    fn bad_values_are_refused() {
        for yaml in [
            "credentials: {socket: c, timeout_ms: 0}",
            "credentials: {socket: c, health_interval_ms: 10}",
            "credentials: {socket: c, connect: {attempts: 0}}",
            "credentials: {socket: c, connect: {interval_ms: 500, max_backoff_ms: 100}}",
            "credentials: {socket: c, typo: 1}",
            "credential_cache: {default_ttl_ms: 0}",
            "credentials: {}",
        ] {
            assert!(parse(yaml).is_err(), "{yaml}");
        }
        let err = parse("upstreams: {sandbox: {socket: s, timeout_ms: 0}}").expect_err("timeout");
        assert!(err.contains("drivers.upstreams.sandbox.timeout_ms must be 1..=60000"), "{err}");
        let err = parse("upstreams: {credentials: {socket: s}}").expect_err("a reserved name");
        assert!(err.contains(r#"drivers.upstreams: "credentials" is not a usable driver name"#), "{err}");
    }
}
