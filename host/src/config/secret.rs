//! Secrets in the config: where they come from, and a holder that never
//! prints them.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// Where a secret comes from. Prefer `file` (a mounted Kubernetes Secret) or
/// `env`; `value` is for development only.
#[derive(Clone, Deserialize)]
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
            Self::Env(name) => std::env::var(name)
                .map_err(|_| ConfigError::Invalid(format!("environment variable {name} is not set")))?
                .into_bytes(),
            Self::Value(v) => v.clone().into_bytes(),
        };
        if bytes.is_empty() {
            return Err(ConfigError::Invalid(format!("secret from {self:?} is empty")));
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
        assert!(SecretSource::Value(String::new()).resolve().is_err());
    }
}
