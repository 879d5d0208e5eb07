//! What a source answers: a token that never prints, with its type and expiry.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A credential's secret text. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token text: only for the gRPC answer. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token([redacted; {} bytes])", self.0.len())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One resolved credential, as the driver answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The token.
    pub token: Token,
    /// For example `Bearer`.
    pub token_type: String,
    /// Unix time in milliseconds after which the token must not be used;
    /// 0 when there is no expiry.
    pub expires_at_ms: i64,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// `ms` after now, as Unix milliseconds.
pub fn ms_from_now(d: Duration) -> i64 {
    unix_ms(SystemTime::now() + d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_prints() {
        let t = Token::new("s3cr3t-value");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert!(!format!("{t}").contains("s3cr3t"));
        let c = Credential { token: t, token_type: "Bearer".into(), expires_at_ms: 0 };
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
