//! JWKS documents: fetching (bounded, no redirects, no cookies) and turning
//! keys into prepared verification keys that carry their own algorithm.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::jose::{kid_is_valid, sha256};

/// Key material in JWKS documents: base64url, padding tolerated (some
/// providers pad), non-canonical trailing bits still refused.
const B64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(false),
);

/// Smallest RSA modulus accepted, bits.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, bits (aws-lc-rs verifies up to 8192).
const MAX_RSA_BITS: usize = 8192;

/// Why fetching or reading a JWKS (or discovery document) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchError {
    /// Connection, TLS or timeout failure.
    #[error("request failed: {0}")]
    Transport(String),
    /// A non-200 answer.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// The body exceeded the configured limit.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not the expected JSON.
    #[error("response is not a valid {0} document")]
    Json(&'static str),
    /// The discovery document names another issuer.
    #[error("discovered issuer does not equal the configured issuer")]
    IssuerMismatch,
    /// The discovery document has no usable `jwks_uri`.
    #[error("discovery document has no usable jwks_uri")]
    JwksUri,
    /// The JWKS has no key the gateway can use.
    #[error("JWKS has no usable keys")]
    NoUsableKeys,
}

impl FetchError {
    /// The `result` label of `wasmgate_jwks_fetches_total`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Transport(_) => "transport",
            Self::Status(_) => "status",
            Self::TooLarge(_) => "too_large",
            Self::Json(_) | Self::IssuerMismatch | Self::JwksUri => "invalid",
            Self::NoUsableKeys => "no_usable_keys",
        }
    }
}

/// A verification key with the one algorithm it is used for.
pub(crate) struct ProviderKey {
    pub kid: String,
    pub alg: Algorithm,
    /// Parsed once when the key set is read, bound to the verification
    /// algorithm of `alg` (the key decides, never a token header). Keeping
    /// the parsed key also keeps aws-lc's per-key precomputation (the RSA
    /// Montgomery context), which a per-call parse would redo every time.
    key: ParsedPublicKey,
    /// SHA-256 over kid, algorithm and key material: identifies the key across refreshes.
    pub fingerprint: [u8; 32],
}

impl ProviderKey {
    /// True when `signature` (decoded: raw RSA, P1363 ECDSA or Ed25519
    /// bytes) is this key's signature over `message` under its own algorithm.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

impl fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// One provider's keys as of one successful fetch.
#[derive(Debug)]
pub(crate) struct KeySet {
    pub keys: HashMap<String, Arc<ProviderKey>>,
    pub fetched_at: Instant,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

fn b64(s: Option<&String>) -> Result<Vec<u8>, &'static str> {
    let s = s.ok_or("missing key parameter")?;
    B64URL_LENIENT.decode(s).map_err(|_| "key parameter is not base64url")
}

/// The aws-lc verification parameters of an RSA JWS algorithm (RFC 7518
/// §3.3 and §3.5; moduli of 2048 to 8192 bits).
fn rsa_params(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// The ROCA fingerprint (CVE-2017-15361): an RSA modulus made by the
/// vulnerable Infineon library is, modulo each of these small primes, a
/// power of 65537, so its factors can be found. A random modulus passes all
/// 38 residue tests with probability about 2^-30.
fn roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107,
        109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |acc, &b| (acc * 256 + u32::from(b)) % p);
        let generator = 65_537 % p;
        let mut power = 1;
        loop {
            if power == residue {
                return true;
            }
            power = power * generator % p;
            if power == 1 {
                return false;
            }
        }
    })
}

/// Turns one JWK into a prepared key, or says why it is skipped.
fn prepare(raw: &RawJwk, allowed: &[Algorithm]) -> Result<ProviderKey, &'static str> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("use is not sig");
    }
    if let Some(ops) = &raw.key_ops
        && !ops.iter().any(|o| o == "verify")
    {
        return Err("key_ops lacks verify");
    }
    let kid = raw.kid.clone().ok_or("missing kid")?;
    if !kid_is_valid(&kid) {
        return Err("malformed kid");
    }
    let alg_hint = raw.alg.as_deref();
    let mut material = Vec::new();
    let (alg, key) = match raw.kty.as_str() {
        "RSA" => {
            let alg = match alg_hint {
                None => Algorithm::RS256,
                Some("RS256") => Algorithm::RS256,
                Some("RS384") => Algorithm::RS384,
                Some("RS512") => Algorithm::RS512,
                Some("PS256") => Algorithm::PS256,
                Some("PS384") => Algorithm::PS384,
                Some("PS512") => Algorithm::PS512,
                Some(_) => return Err("unsupported alg for RSA key"),
            };
            let n = b64(raw.n.as_ref())?;
            let e = b64(raw.e.as_ref())?;
            let n = strip_zeros(&n);
            let e = strip_zeros(&e);
            // An all-zero modulus strips to nothing: 0 bits (found by fuzzing).
            let bits = n.first().map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err("RSA modulus size out of range");
            }
            if e.is_empty() || e.len() > 8 || e.last().is_some_and(|b| b & 1 == 0) || e == [1] {
                return Err("bad RSA exponent");
            }
            if roca_fingerprint(n) {
                return Err("RSA modulus has the ROCA fingerprint (CVE-2017-15361)");
            }
            material.extend_from_slice(n);
            material.push(0);
            material.extend_from_slice(e);
            let params = rsa_params(alg).ok_or("unsupported alg for RSA key")?;
            let key = RsaPublicKeyComponents { n, e }.to_parsed_public_key(params).map_err(|_| "bad RSA key")?;
            (alg, key)
        }
        "EC" => {
            let (alg, len, verify_alg) = match raw.crv.as_deref() {
                Some("P-256") => (Algorithm::ES256, 32, &sig::ECDSA_P256_SHA256_FIXED),
                Some("P-384") => (Algorithm::ES384, 48, &sig::ECDSA_P384_SHA384_FIXED),
                _ => return Err("unsupported EC curve"),
            };
            let named = match alg {
                Algorithm::ES256 => "ES256",
                _ => "ES384",
            };
            if alg_hint.is_some_and(|a| a != named) {
                return Err("alg does not match curve");
            }
            let x = b64(raw.x.as_ref())?;
            let y = b64(raw.y.as_ref())?;
            if x.len() != len || y.len() != len {
                return Err("bad EC coordinate length");
            }
            material.push(4);
            material.extend_from_slice(&x);
            material.extend_from_slice(&y);
            // Points that are not on the curve are refused here, once.
            (alg, ParsedPublicKey::new(verify_alg, &material).map_err(|_| "EC point not on curve")?)
        }
        "OKP" => {
            if raw.crv.as_deref() != Some("Ed25519") {
                return Err("unsupported OKP curve");
            }
            if alg_hint.is_some_and(|a| a != "EdDSA" && a != "Ed25519") {
                return Err("alg does not match curve");
            }
            let x = b64(raw.x.as_ref())?;
            if x.len() != 32 {
                return Err("bad Ed25519 key length");
            }
            let key = ParsedPublicKey::new(&sig::ED25519, &x).map_err(|_| "bad Ed25519 key")?;
            material.extend_from_slice(&x);
            (Algorithm::EdDSA, key)
        }
        _ => return Err("unsupported kty"),
    };
    if !allowed.contains(&alg) {
        return Err("algorithm not allowed for this provider");
    }
    let mut fp_input = Vec::with_capacity(material.len() + kid.len() + 16);
    fp_input.extend_from_slice(kid.as_bytes());
    fp_input.push(0);
    fp_input.extend_from_slice(format!("{alg:?}").as_bytes());
    fp_input.push(0);
    fp_input.extend_from_slice(&material);
    Ok(ProviderKey { fingerprint: sha256(&fp_input), kid, alg, key })
}

/// Reads a JWKS document; unusable keys are skipped (logged at debug), a
/// `kid` that appears twice drops every key with that `kid`.
pub(crate) fn parse_jwks(
    provider: &str,
    body: &[u8],
    allowed: &[Algorithm],
) -> Result<HashMap<String, Arc<ProviderKey>>, FetchError> {
    let doc: RawJwks = serde_json::from_slice(body).map_err(|_| FetchError::Json("JWKS"))?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut keys = HashMap::new();
    for (i, value) in doc.keys.into_iter().enumerate() {
        // Every entry's kid counts, usable or not: a kid named twice is ambiguous.
        if let Some(kid) = value.get("kid").and_then(serde_json::Value::as_str) {
            *seen.entry(kid.to_owned()).or_default() += 1;
        }
        let raw: RawJwk = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!(provider, index = i, "skipping JWK: not a JWK object");
                continue;
            }
        };
        match prepare(&raw, allowed) {
            Ok(k) => {
                keys.insert(k.kid.clone(), Arc::new(k));
            }
            Err(why) => tracing::debug!(provider, index = i, why, "skipping JWK"),
        }
    }
    for (kid, count) in seen {
        if count > 1 && keys.remove(&kid).is_some() {
            tracing::debug!(provider, kid, "dropping JWKs with a duplicated kid");
        }
    }
    if keys.is_empty() {
        return Err(FetchError::NoUsableKeys);
    }
    Ok(keys)
}

/// Parses `Cache-Control: max-age=N`.
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let cc = headers.get(http::header::CACHE_CONTROL)?.to_str().ok()?;
    cc.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        if k.trim().eq_ignore_ascii_case("max-age") {
            v.trim().parse::<u64>().ok().map(Duration::from_secs)
        } else {
            None
        }
    })
}

/// GETs `url` and returns its body, refusing non-200 answers and bodies over
/// `max_body` bytes (checked while streaming).
pub(crate) async fn fetch(
    client: &reqwest::Client,
    url: &str,
    max_body: usize,
) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
    let mut resp = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::Transport(e.without_url().to_string()))?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        return Err(FetchError::Status(status.as_u16()));
    }
    if resp.content_length().is_some_and(|l| l > max_body as u64) {
        return Err(FetchError::TooLarge(max_body));
    }
    let ttl = max_age(resp.headers());
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Transport(e.without_url().to_string()))? {
        if body.len() + chunk.len() > max_body {
            return Err(FetchError::TooLarge(max_body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, ttl))
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Reads a discovery document: its `issuer` must equal `issuer` exactly, and
/// its `jwks_uri` must be https (or http when the issuer itself is http).
pub(crate) fn parse_discovery(issuer: &str, body: &[u8]) -> Result<String, FetchError> {
    let d: Discovery = serde_json::from_slice(body).map_err(|_| FetchError::Json("discovery"))?;
    if d.issuer != issuer {
        return Err(FetchError::IssuerMismatch);
    }
    let scheme_ok =
        d.jwks_uri.starts_with("https://") || (issuer.starts_with("http://") && d.jwks_uri.starts_with("http://"));
    if !scheme_ok || reqwest::Url::parse(&d.jwks_uri).is_err() {
        return Err(FetchError::JwksUri);
    }
    Ok(d.jwks_uri)
}

/// The discovery URL of `issuer` (OIDC Discovery §4: a trailing slash is not doubled).
pub(crate) fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

#[cfg(test)]
mod tests;
