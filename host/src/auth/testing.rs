//! Entry points into the signature layer for test vectors (Wycheproof) and
//! fuzzing (`fuzz/`). Not part of the API: nothing here is used to serve.
//!
//! [`JwsVerifier`] holds keys loaded by the gateway's own JWKS reader
//! ([`super::jwks::parse_jwks`]) and verifies a compact JWS the way an OIDC
//! provider does (`Provider::verify`) minus the claims:
//! the strict pre-parse (without its payload rules, since vector payloads are
//! not JWT claims), the key by `kid`, the key's own algorithm, then the same
//! signature primitive (`ProviderKey::verify`) over the decoded signature.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::Algorithm;

use super::JwtError;
use super::jwks::{self, ProviderKey};
use crate::jose;

/// Every algorithm an identity provider may be configured with.
pub const OIDC_ALGORITHMS: [&str; 9] =
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// Why [`JwsVerifier::verify_jws`] refused a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwsRejection {
    /// The strict pre-parse failed.
    Malformed(JwtError),
    /// No `kid` while several keys are loaded.
    MissingKid,
    /// No key has that `kid`.
    UnknownKid,
    /// The header `alg` is not the key's algorithm.
    AlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
}

/// Keys from one JWKS document, as an identity provider would hold them.
pub struct JwsVerifier {
    keys: HashMap<String, Arc<ProviderKey>>,
}

impl fmt::Debug for JwsVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwsVerifier").field("keys", &self.keys.values().collect::<Vec<_>>()).finish()
    }
}

impl JwsVerifier {
    /// Reads `doc` with the gateway's JWKS reader for a provider configured
    /// with `algorithms`; `Err` when it holds no usable key (the reader's
    /// own error text).
    pub fn from_jwks(doc: &[u8], algorithms: &[&str]) -> Result<Self, String> {
        let allowed: Vec<Algorithm> = algorithms.iter().filter_map(|a| jose::alg_from_name(a)).collect();
        let keys = jwks::parse_jwks("testing", doc, &allowed).map_err(|e| e.to_string())?;
        Ok(Self { keys })
    }

    /// The loaded keys: `(kid, algorithm name)`, sorted.
    pub fn keys(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.keys.values().map(|k| (k.kid.clone(), format!("{:?}", k.alg))).collect();
        v.sort();
        v
    }

    /// The signature layer of an OIDC token: strict pre-parse (payload
    /// rules aside), key by `kid` (or the only key when there is no `kid`,
    /// as `Provider::lookup`), header `alg` equal to the
    /// key's, then the signature.
    pub fn verify_jws(&self, token: &str) -> Result<(), JwsRejection> {
        let jws = jose::parse_jws(token).map_err(JwsRejection::Malformed)?;
        let key = match jws.header.kid.as_deref() {
            Some(kid) => self.keys.get(kid).ok_or(JwsRejection::UnknownKid)?,
            None if self.keys.len() == 1 => self.keys.values().next().ok_or(JwsRejection::MissingKid)?,
            None => return Err(JwsRejection::MissingKid),
        };
        if jws.header.alg != key.alg {
            return Err(JwsRejection::AlgorithmMismatch);
        }
        if key.verify(jws.signing_input.as_bytes(), &jws.signature) { Ok(()) } else { Err(JwsRejection::BadSignature) }
    }

    /// The signature primitive alone: does key `kid` verify `signature` over `message`?
    pub fn verify_raw(&self, kid: &str, message: &[u8], signature: &[u8]) -> Result<bool, JwsRejection> {
        let key = self.keys.get(kid).ok_or(JwsRejection::UnknownKid)?;
        Ok(key.verify(message, signature))
    }
}

/// What the strict pre-parse saw in a token (for fuzzing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSummary {
    /// `alg`, as the algorithm's name.
    pub alg: String,
    /// `kid`.
    pub kid: Option<String>,
    /// `typ`.
    pub typ: Option<String>,
    /// The decoded payload (the claims re-serialised when parsed as claims).
    pub payload: Vec<u8>,
    /// The length of `header.payload`.
    pub signing_input_len: usize,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// The strict pre-parse of every bearer token ([`jose::parse`]).
pub fn parse_token(token: &str) -> Result<ParsedSummary, JwtError> {
    let p = jose::parse(token)?;
    let payload = serde_json::to_vec(&p.claims).map_err(|_| JwtError::Json("payload"))?;
    Ok(ParsedSummary {
        alg: format!("{:?}", p.header.alg),
        kid: p.header.kid,
        typ: p.header.typ,
        payload,
        signing_input_len: p.signing_input.len(),
        signature: p.signature,
    })
}

/// The same pre-parse without the payload rules ([`jose::parse_jws`]).
pub fn parse_jws(token: &str) -> Result<ParsedSummary, JwtError> {
    let p = jose::parse_jws(token)?;
    Ok(ParsedSummary {
        alg: format!("{:?}", p.header.alg),
        kid: p.header.kid,
        typ: p.header.typ,
        payload: p.payload,
        signing_input_len: p.signing_input.len(),
        signature: p.signature,
    })
}
