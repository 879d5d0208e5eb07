//! Verification: the HS256 signature with the key the `kid` names, then
//! the claims, the time rules and the revocation list.

use aws_lc_rs::hmac;
use serde_json::{Map, Value};

use super::{GatewayTokenError, GatewayTokens, revoked};
use crate::identity::Principal;
use crate::jose::{self, ParsedJwt, TimeError};

impl GatewayTokens {
    /// Verifies `token` at time `now` (Unix seconds); returns the principal and `exp`.
    pub fn verify(&self, token: &str, now: i64) -> Result<(Principal, i64), GatewayTokenError> {
        let parsed = jose::parse(token)?;
        self.verify_parsed(&parsed, now)
    }

    /// The signature layer of [`Self::verify`]: `alg` must be HS256 and
    /// `kid` a current version whose HMAC over `signing_input` is `signature`.
    fn check_signature(
        &self,
        header: &jose::JwtHeader,
        signing_input: &str,
        signature: &[u8],
    ) -> Result<(), GatewayTokenError> {
        if header.alg != jsonwebtoken::Algorithm::HS256 {
            return Err(GatewayTokenError::Algorithm);
        }
        let kid = header.kid.as_deref().ok_or(GatewayTokenError::MissingKid)?;
        self.verify_mac(kid, signing_input.as_bytes(), signature)
    }

    /// The MAC primitive of [`Self::verify`]: key version `kid` must exist and
    /// its HMAC-SHA256 over `message` must equal `tag` (constant time).
    /// Wycheproof vectors and fuzzing only.
    #[doc(hidden)]
    pub fn verify_mac(&self, kid: &str, message: &[u8], tag: &[u8]) -> Result<(), GatewayTokenError> {
        let set = self.live.keys.load();
        let key = set.keys.get(kid).ok_or(GatewayTokenError::UnknownKid)?;
        hmac::verify(&key.hmac, message, tag).map_err(|_| GatewayTokenError::BadSignature)
    }

    /// [`Self::verify`] without the claims: the strict pre-parse minus its
    /// payload rules, then the signature layer. Wycheproof vectors (whose
    /// payloads are not JWT claims) and fuzzing only.
    #[doc(hidden)]
    #[cfg(any(test, feature = "testing"))]
    pub fn verify_jws_signature(&self, token: &str) -> Result<(), GatewayTokenError> {
        let jws = jose::parse_jws(token)?;
        self.check_signature(&jws.header, jws.signing_input, &jws.signature)
    }

    /// Verifies a token that already passed the strict pre-parse.
    pub(crate) fn verify_parsed(
        &self,
        parsed: &ParsedJwt<'_>,
        now: i64,
    ) -> Result<(Principal, i64), GatewayTokenError> {
        self.check_signature(&parsed.header, parsed.signing_input, &parsed.signature)?;
        if parsed.header.typ.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("JWT")) {
            return Err(GatewayTokenError::Typ);
        }
        let c = &parsed.claims;
        if c.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(GatewayTokenError::Issuer);
        }
        if !jose::audience_matches(c.get("aud"), std::slice::from_ref(&self.audience)) {
            return Err(GatewayTokenError::Audience);
        }
        let exp = jose::numeric_date(c, "exp")
            .map_err(|_| GatewayTokenError::Claim("exp"))?
            .ok_or(GatewayTokenError::Claim("exp"))?;
        let nbf = jose::numeric_date(c, "nbf").map_err(|_| GatewayTokenError::Claim("nbf"))?;
        let iat = jose::numeric_date(c, "iat").map_err(|_| GatewayTokenError::Claim("iat"))?;
        jose::check_times(exp, nbf, iat, now, self.leeway, self.max_lifetime)?;
        // Checklist 17: the denylist is by `jti`, so any re-encoding or
        // re-signing of a revoked token is still refused.
        match c.get("jti") {
            Some(Value::String(j)) if !j.is_empty() && j.len() <= revoked::MAX_JTI_LEN => {
                if self.live.revoked.load().contains(j) {
                    return Err(GatewayTokenError::Revoked);
                }
            }
            _ => return Err(GatewayTokenError::Claim("jti")),
        }
        Ok((principal_from(c)?, exp))
    }
}

impl From<TimeError> for GatewayTokenError {
    fn from(e: TimeError) -> Self {
        match e {
            TimeError::Expired => Self::Expired,
            TimeError::NotYetValid => Self::NotYetValid,
            TimeError::IssuedInFuture => Self::IssuedInFuture,
            TimeError::LifetimeTooLong => Self::LifetimeTooLong,
        }
    }
}

fn string_list(c: &Map<String, Value>, name: &'static str) -> Result<Vec<String>, GatewayTokenError> {
    match c.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map(str::to_owned).ok_or(GatewayTokenError::Claim(name))).collect()
        }
        Some(_) => Err(GatewayTokenError::Claim(name)),
    }
}

fn principal_from(c: &Map<String, Value>) -> Result<Principal, GatewayTokenError> {
    let subject = match c.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(GatewayTokenError::Claim("sub")),
    };
    let tenant = match c.get("tenant") {
        None => None,
        Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
        Some(_) => return Err(GatewayTokenError::Claim("tenant")),
    };
    let scopes = match c.get("scope") {
        None => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(_) => return Err(GatewayTokenError::Claim("scope")),
    };
    Ok(Principal { subject, tenant, roles: string_list(c, "roles")?, scopes, groups: Vec::new() })
}
