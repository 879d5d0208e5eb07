//! Strict JWS compact parsing, done before any key lookup.
//!
//! Rules (RFC 8725 and the security checklist): exactly three segments, each
//! canonical unpadded base64url; header and payload are JSON objects without
//! duplicate keys at any depth; `alg` is a string from a closed list (never
//! `none`); headers that would name a key source (`jwk`, `jku`, `x5u`, `x5c`),
//! change processing (`crit`, `b64`) or nest tokens (`cty`) are refused; a
//! `kid` is a short visible-ASCII string used only as an opaque map key.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

/// Canonical unpadded base64url: padding, non-alphabet characters and
/// non-zero trailing bits are all errors.
pub(crate) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Longest accepted `kid`, bytes.
pub(crate) const MAX_KID_LEN: usize = 256;

/// Why a token failed the strict pre-parse. Never carries token contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not exactly three `.`-separated segments.
    #[error("token does not have exactly three segments")]
    Segments,
    /// A segment is empty, padded, or not canonical base64url.
    #[error("token segment is not canonical unpadded base64url")]
    Base64,
    /// Header or payload is not a JSON object (or is malformed JSON).
    #[error("token {0} is not a JSON object")]
    Json(&'static str),
    /// Header or payload repeats a member name.
    #[error("token {0} has duplicate member names")]
    DuplicateKey(&'static str),
    /// `alg` missing, not a string, `none`, or not supported.
    #[error("token algorithm is missing or not allowed")]
    Algorithm,
    /// A header parameter that is never accepted (`jwk`, `jku`, `x5u`, `x5c`, `crit`, `b64`, `cty`).
    #[error("token header parameter {0:?} is not accepted")]
    ForbiddenHeader(&'static str),
    /// `kid` is not a string of at most 256 visible ASCII characters.
    #[error("token kid is malformed")]
    Kid,
    /// `typ` is not a string.
    #[error("token typ is malformed")]
    Typ,
}

/// The header members the gateway uses.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct JwtHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

impl fmt::Debug for JwtHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtHeader")
            .field("alg", &self.alg)
            .field("kid_len", &self.kid.as_ref().map(String::len))
            .field("typ", &self.typ)
            .finish()
    }
}

/// A token that passed the strict pre-parse (signature NOT yet checked).
pub(crate) struct ParsedJwt<'a> {
    pub header: JwtHeader,
    pub claims: Map<String, Value>,
    /// `header.payload`, the signed bytes.
    pub signing_input: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

impl fmt::Debug for ParsedJwt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedJwt")
            .field("header", &self.header)
            .field("claims", &format_args!("[{} members]", self.claims.len()))
            .finish_non_exhaustive()
    }
}

impl ParsedJwt<'_> {
    /// The unverified `iss`, if it is a string.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
}

/// Header parameters whose presence rejects the token.
const FORBIDDEN_HEADERS: [&str; 7] = ["jwk", "jku", "x5u", "x5c", "crit", "b64", "cty"];

/// Algorithms the gateway can verify at all (the key still decides which one applies).
fn parse_alg(s: &str) -> Option<Algorithm> {
    Some(match s {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        _ => return None,
    })
}

/// Parses an algorithm name from configuration (same closed list).
pub(crate) fn alg_from_name(s: &str) -> Option<Algorithm> {
    parse_alg(s)
}

/// True when `kid` is 1..=256 visible ASCII characters.
pub(crate) fn kid_is_valid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KID_LEN && kid.bytes().all(|b| b.is_ascii_graphic())
}

fn decode_segment(seg: &str) -> Result<Vec<u8>, JwtError> {
    if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(JwtError::Base64);
    }
    B64URL.decode(seg).map_err(|_| JwtError::Base64)
}

/// The three decoded segments of a compact JWS, and the signed bytes.
struct Segments<'a> {
    signing_input: &'a str,
    header: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

/// Splits and decodes; an empty payload segment is refused unless
/// `empty_payload` (a JWS may sign nothing; a JWT never does).
fn segments(token: &str, empty_payload: bool) -> Result<Segments<'_>, JwtError> {
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Segments);
    };
    let header = decode_segment(h)?;
    let payload = if empty_payload && p.is_empty() { Vec::new() } else { decode_segment(p)? };
    let signature = decode_segment(s)?;
    Ok(Segments { signing_input: &token[..h.len() + 1 + p.len()], header, payload, signature })
}

/// Strictly parses a compact JWS. Linear in the token length.
pub(crate) fn parse(token: &str) -> Result<ParsedJwt<'_>, JwtError> {
    let seg = segments(token, false)?;
    let header = strict_object(&seg.header, "header")?;
    let claims = strict_object(&seg.payload, "payload")?;
    let header = header_params(&header)?;
    Ok(ParsedJwt { header, claims, signing_input: seg.signing_input, signature: seg.signature })
}

#[cfg(any(test, feature = "testing"))]
/// A compact JWS that passed every rule of [`parse`] but those on the
/// payload (which may be empty and need not be JSON). Signature NOT yet checked.
pub(crate) struct ParsedJws<'a> {
    pub header: JwtHeader,
    pub payload: Vec<u8>,
    /// `header.payload`, the signed bytes.
    pub signing_input: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

#[cfg(any(test, feature = "testing"))]
/// [`parse`] without the payload rules: the signature layer alone, for test
/// vectors and fuzzing whose payloads are not JWT claims.
pub(crate) fn parse_jws(token: &str) -> Result<ParsedJws<'_>, JwtError> {
    let seg = segments(token, true)?;
    let header = header_params(&strict_object(&seg.header, "header")?)?;
    Ok(ParsedJws { header, payload: seg.payload, signing_input: seg.signing_input, signature: seg.signature })
}

/// The header rules: forbidden parameters, `alg`, `kid`, `typ`.
fn header_params(header: &Map<String, Value>) -> Result<JwtHeader, JwtError> {
    for name in FORBIDDEN_HEADERS {
        if header.contains_key(name) {
            return Err(JwtError::ForbiddenHeader(name));
        }
    }
    let alg = match header.get("alg") {
        Some(Value::String(s)) => parse_alg(s).ok_or(JwtError::Algorithm)?,
        _ => return Err(JwtError::Algorithm),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if kid_is_valid(k) => Some(k.clone()),
        Some(_) => return Err(JwtError::Kid),
    };
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(JwtError::Typ),
    };
    Ok(JwtHeader { alg, kid, typ })
}

/// Parses JSON that must be an object, rejecting duplicate member names at any depth.
pub(crate) fn strict_object(bytes: &[u8], what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match StrictValue::deserialize(&mut de) {
        Ok(v) => v.0,
        Err(e) if e.to_string().starts_with(DUPLICATE) => return Err(JwtError::DuplicateKey(what)),
        Err(_) => return Err(JwtError::Json(what)),
    };
    de.end().map_err(|_| JwtError::Json(what))?;
    match value {
        Value::Object(m) => Ok(m),
        _ => Err(JwtError::Json(what)),
    }
}

const DUPLICATE: &str = "duplicate member";

/// A `serde_json::Value` whose maps refuse duplicate keys.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // Built in place: the map's entry API detects a repeated name as it
        // is inserted (no second map to collect into).
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(v) = map.next_value_seed(StrictSeed)?;
            match out.entry(key) {
                Entry::Occupied(_) => return Err(de::Error::custom(DUPLICATE)),
                Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = StrictValue;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<StrictValue, D::Error> {
        StrictValue::deserialize(d)
    }
}

/// Reads an optional NumericDate claim: absent is `None`; anything other
/// than a JSON integer in `0..=i64::MAX` (string, float, bool, null,
/// negative) is an error.
pub(crate) fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => i64::try_from(v).map(Some).map_err(|_| ()),
            None => Err(()),
        },
        Some(_) => Err(()),
    }
}

/// True when `aud` is a non-empty string or a non-empty array of non-empty
/// strings that contains one of `accepted`.
pub(crate) fn audience_matches<S: AsRef<str>>(aud: Option<&Value>, accepted: &[S]) -> bool {
    let ok = |s: &str| !s.is_empty() && accepted.iter().any(|a| a.as_ref() == s);
    match aud {
        Some(Value::String(s)) => ok(s),
        Some(Value::Array(items)) => {
            !items.is_empty()
                && items.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                && items.iter().any(|v| v.as_str().is_some_and(ok))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
