//! The sandbox secret: compared in constant time through SHA-256 digests, so
//! neither the content nor (beyond hashing time) the length of the
//! configured secret leaks through timing.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::jose::sha256;

/// The configured sandbox secret, kept only as a digest.
#[derive(Clone)]
pub(crate) struct SandboxSecret {
    digest: [u8; 32],
}

impl fmt::Debug for SandboxSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SandboxSecret([redacted])")
    }
}

impl SandboxSecret {
    /// Keeps the digest of `secret` (which the config layer already refuses when empty).
    pub fn new(secret: &[u8]) -> Self {
        Self { digest: sha256(secret) }
    }

    /// True when `presented` is exactly the secret. Empty input never matches.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let candidate = sha256(presented);
        let equal: bool = candidate.ct_eq(&self.digest).into();
        equal && !presented.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checklist 19: near-miss, prefix, extension, empty and case variants do not match.
    #[test]
    fn checklist_19_sandbox_secret_near_misses_rejected() {
        let s = SandboxSecret::new(b"s3cret-sandbox-value");
        assert!(s.matches(b"s3cret-sandbox-value"));
        for bad in [
            &b"s3cret-sandbox-valuf"[..],
            b"s3cret-sandbox-valu",
            b"s3cret-sandbox-value ",
            b"s3cret-sandbox-value\0",
            b"S3CRET-SANDBOX-VALUE",
            b"s",
            b"",
        ] {
            assert!(!s.matches(bad), "{bad:?}");
        }
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
