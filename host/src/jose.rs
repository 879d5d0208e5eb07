//! JOSE primitives shared by OIDC verification (`auth`) and the gateway's
//! own tokens (`tokens`): the strict JWS pre-parse and canonical
//! base64url, the NumericDate time rules ([`TimeError`]), SHA-256 and the
//! clock.
//!
//! A leaf module: it imports nothing from the rest of the crate, so both
//! `auth` and `tokens` can build on it without depending on each other.

mod jws;
mod time;

#[cfg(test)]
pub(crate) use jws::B64URL;
pub use jws::JwtError;
#[cfg(any(test, feature = "testing"))]
pub(crate) use jws::parse_jws;
pub(crate) use jws::{JwtHeader, ParsedJwt, alg_from_name, audience_matches, kid_is_valid, numeric_date, parse};
pub use time::TimeError;
pub(crate) use time::{check_times, now_unix};

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
