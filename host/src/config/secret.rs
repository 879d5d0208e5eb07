//! Secrets in the config: where they come from, and a holder that never
//! prints them.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// Why a secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// `env: NAME` and `NAME` is not set (or not UTF-8).
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    /// The secret is empty; `origin` is its (redacted) `Debug` form.
    #[error("secret from {origin} is empty")]
    Empty {
        /// Where it came from, as [`SecretSource`]'s `Debug` shows it.
        origin: String,
    },
}

/// Where a secret comes from. Prefer `file` (a mounted Kubernetes Secret) or
/// `env`; `value` is for development only.
#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretSource {
    /// The contents of a file (one trailing newline is removed).
    File(PathBuf),
    /// The value of an environment variable.
    Env(String),
    /// Inline in the config file.
    Value(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Env(v) => f.debug_tuple("Env").field(v).finish(),
            Self::Value(_) => f.write_str("Value([redacted])"),
        }
    }
}

impl SecretSource {
    /// Reads the secret. Empty secrets are refused.
    pub fn resolve(&self) -> Result<SecretValue, ConfigError> {
        let bytes = match self {
            Self::File(path) => {
                let mut b = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                if b.last() == Some(&b'\n') {
                    b.pop();
                    if b.last() == Some(&b'\r') {
                        b.pop();
                    }
                }
                b
            }
            Self::Env(name) => std::env::var(name).map_err(|_| SecretError::EnvUnset(name.clone()))?.into_bytes(),
            Self::Value(v) => v.clone().into_bytes(),
        };
        if bytes.is_empty() {
            return Err(SecretError::Empty { origin: format!("{self:?}") }.into());
        }
        Ok(SecretValue(bytes.into_boxed_slice()))
    }
}

/// Secret bytes. `Debug` never shows them.
#[derive(Clone)]
pub struct SecretValue(Box<[u8]>);

impl SecretValue {
    /// Wraps bytes.
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Self {
        Self(bytes.into())
    }

    /// The secret bytes. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue([redacted; {} bytes])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let s = SecretSource::Value("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        let v = s.resolve().expect("inline secret resolves");
        assert!(!format!("{v:?}").contains("hunter2"));
        assert_eq!(v.expose(), b"hunter2");
    }

    #[test]
    fn empty_secret_is_refused() {
        let err = SecretSource::Value(String::new()).resolve().expect_err("empty");
        assert!(matches!(&err, ConfigError::Secret(SecretError::Empty { .. })), "{err:?}");
        assert_eq!(err.to_string(), "invalid config: secret from Value([redacted]) is empty");
    }
}
