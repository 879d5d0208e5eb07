//! JWKS documents: fetching (bounded, no redirects, no cookies) and turning
//! keys into prepared verification keys that carry their own algorithm.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
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
    pub key: DecodingKey,
    /// The validation for this key's algorithm (built from the key, never from a token header).
    pub validation: Validation,
    /// SHA-256 over kid, algorithm and key material: identifies the key across refreshes.
    pub fingerprint: [u8; 32],
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
fn prepare(raw: &RawJwk, allowed: &[Algorithm], template: &Validation) -> Result<ProviderKey, &'static str> {
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
            (alg, DecodingKey::from_rsa_raw_components(n, e))
        }
        "EC" => {
            let (alg, len, verify_alg) = match raw.crv.as_deref() {
                Some("P-256") => (Algorithm::ES256, 32, &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED),
                Some("P-384") => (Algorithm::ES384, 48, &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED),
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
            // Refuse points that are not on the curve now rather than at every verification.
            aws_lc_rs::signature::ParsedPublicKey::new(verify_alg, &material).map_err(|_| "EC point not on curve")?;
            (alg, DecodingKey::from_ec_der(&material))
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
            aws_lc_rs::signature::ParsedPublicKey::new(&aws_lc_rs::signature::ED25519, &x)
                .map_err(|_| "bad Ed25519 key")?;
            material.extend_from_slice(&x);
            (Algorithm::EdDSA, DecodingKey::from_ed_der(&x))
        }
        _ => return Err("unsupported kty"),
    };
    if !allowed.contains(&alg) {
        return Err("algorithm not allowed for this provider");
    }
    let mut validation = template.clone();
    validation.algorithms = vec![alg];
    let mut fp_input = Vec::with_capacity(material.len() + kid.len() + 16);
    fp_input.extend_from_slice(kid.as_bytes());
    fp_input.push(0);
    fp_input.extend_from_slice(format!("{alg:?}").as_bytes());
    fp_input.push(0);
    fp_input.extend_from_slice(&material);
    Ok(ProviderKey { fingerprint: sha256(&fp_input), kid, alg, key, validation })
}

/// Reads a JWKS document; unusable keys are skipped (logged at debug), a
/// `kid` that appears twice drops every key with that `kid`.
pub(crate) fn parse_jwks(
    provider: &str,
    body: &[u8],
    allowed: &[Algorithm],
    template: &Validation,
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
        match prepare(&raw, allowed, template) {
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
mod tests {
    use super::*;

    fn template() -> Validation {
        Validation::new(Algorithm::RS256)
    }

    fn ec_jwk(kid: &str) -> serde_json::Value {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("gen");
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("parse");
        let pt = kp.public_key().as_ref();
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": crate::jose::B64URL.encode(&pt[1..33]),
            "y": crate::jose::B64URL.encode(&pt[33..65]),
        })
    }

    /// Checklist 26: unknown kty/alg/crv, `use: enc`, duplicate kid and small RSA keys are skipped; the good key works.
    #[test]
    fn checklist_26_bad_keys_skipped_good_key_kept() {
        let good = ec_jwk("good");
        let mut enc = ec_jwk("enc");
        enc["use"] = "enc".into();
        let mut wrong_alg = ec_jwk("wrongalg");
        wrong_alg["alg"] = "ES384".into();
        let mut bad_crv = ec_jwk("badcrv");
        bad_crv["crv"] = "P-521".into();
        let dup1 = ec_jwk("dup");
        let dup2 = ec_jwk("dup");
        let mut off_curve = ec_jwk("offcurve");
        off_curve["y"] = crate::jose::B64URL.encode([7u8; 32]).into();
        let small_rsa =
            serde_json::json!({"kty":"RSA","kid":"small","n": crate::jose::B64URL.encode([0xffu8; 128]),"e":"AQAB"});
        let doc = serde_json::json!({"keys": [
            good, enc, wrong_alg, bad_crv, dup1, dup2, off_curve, small_rsa,
            {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
            {"kty":"XYZ","kid":"unknown"},
            {"kty":"EC","crv":"P-256","x":"AA","y":"AA"},
            "not an object",
        ]});
        let keys = parse_jwks("p", doc.to_string().as_bytes(), &[Algorithm::RS256, Algorithm::ES256], &template())
            .expect("one usable key");
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["good"]);
        assert_eq!(keys["good"].alg, Algorithm::ES256);
        assert_eq!(keys["good"].validation.algorithms, vec![Algorithm::ES256]);
    }

    /// Checklist 26, found by fuzzing (`fuzz/seeds/jwks/regression-*`): a
    /// malformed entry that shares a kid with a good key still makes the kid
    /// ambiguous, so neither is loaded.
    #[test]
    fn checklist_26_a_malformed_entry_with_the_same_kid_drops_the_kid() {
        let good = ec_jwk("k");
        let mut malformed = ec_jwk("k");
        malformed["key_ops"] = "verify".into();
        let doc = serde_json::json!({"keys": [malformed, good, ec_jwk("other")]});
        let keys = parse_jwks("p", doc.to_string().as_bytes(), &[Algorithm::ES256], &template()).expect("other");
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["other"]);
    }

    /// Checklist 26, found by the long fuzz run
    /// (`fuzz/seeds/jwks/regression-zero-modulus`): an all-zero RSA modulus
    /// is skipped, where its size computation used to underflow and panic.
    #[test]
    fn checklist_26_an_all_zero_rsa_modulus_is_skipped() {
        let zero = serde_json::json!({"kty":"RSA","kid":"zero","n":"AAAAAAAAAAAAAAAAAAAAAA","e":"AQ"});
        let doc = serde_json::json!({"keys": [zero, ec_jwk("other")]});
        let keys = parse_jwks("p", doc.to_string().as_bytes(), &[Algorithm::RS256, Algorithm::ES256], &template())
            .expect("other");
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["other"]);
    }

    /// Checklist 23: empty key sets, HTML and invalid JSON are errors (so the last good set is kept).
    #[test]
    fn checklist_23_unusable_documents_are_errors() {
        let allowed = [Algorithm::ES256];
        assert_eq!(parse_jwks("p", br#"{"keys":[]}"#, &allowed, &template()).err(), Some(FetchError::NoUsableKeys));
        assert_eq!(parse_jwks("p", b"<html>oops</html>", &allowed, &template()).err(), Some(FetchError::Json("JWKS")));
        assert_eq!(parse_jwks("p", b"{", &allowed, &template()).err(), Some(FetchError::Json("JWKS")));
    }

    #[test]
    fn disallowed_algorithms_are_not_loaded() {
        let doc = serde_json::json!({"keys": [ec_jwk("k")]});
        assert_eq!(
            parse_jwks("p", doc.to_string().as_bytes(), &[Algorithm::RS256], &template()).err(),
            Some(FetchError::NoUsableKeys)
        );
    }

    #[test]
    fn discovery_issuer_must_match_exactly() {
        let body = br#"{"issuer":"https://idp.example/","jwks_uri":"https://idp.example/keys"}"#;
        assert_eq!(parse_discovery("https://idp.example", body), Err(FetchError::IssuerMismatch));
        assert_eq!(parse_discovery("https://idp.example/", body), Ok("https://idp.example/keys".into()));
        let http_jwks = br#"{"issuer":"https://idp.example","jwks_uri":"http://idp.example/keys"}"#;
        assert_eq!(parse_discovery("https://idp.example", http_jwks), Err(FetchError::JwksUri));
        assert_eq!(discovery_url("https://a/"), "https://a/.well-known/openid-configuration");
    }

    #[test]
    fn cache_control_max_age() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("public, max-age=120"));
        assert_eq!(max_age(&h), Some(Duration::from_secs(120)));
    }
}
