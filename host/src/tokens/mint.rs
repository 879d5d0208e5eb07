//! Minting: claims of a [`MintRequest`] signed with the active key.

use serde_json::json;

use super::{GatewayTokenError, GatewayTokens, MAX_MINT_TTL, MintRequest};
use crate::jose;

impl GatewayTokens {
    /// Mints a token signed with the active key, valid from now for `req.ttl`.
    pub fn mint(&self, req: &MintRequest) -> Result<String, GatewayTokenError> {
        self.mint_at(req, jose::now_unix())
    }

    /// Mints a token as if the time were `now` (Unix seconds).
    pub fn mint_at(&self, req: &MintRequest, now: i64) -> Result<String, GatewayTokenError> {
        if req.subject.is_empty() {
            return Err(GatewayTokenError::InvalidRequest("subject is empty"));
        }
        let ttl = req.ttl.as_secs();
        if ttl == 0 || ttl > MAX_MINT_TTL {
            return Err(GatewayTokenError::InvalidRequest("ttl must be between 1 second and 366 days"));
        }
        if req.scopes.iter().any(|s| s.is_empty() || s.chars().any(char::is_whitespace)) {
            return Err(GatewayTokenError::InvalidRequest("scopes must be non-empty and contain no whitespace"));
        }
        let set = self.live.keys.load();
        let key = set.keys.get(&set.active).ok_or(GatewayTokenError::UnknownKid)?;
        let exp = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": req.subject,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": random_jti()?,
        });
        if let Some(t) = &req.tenant {
            claims["tenant"] = t.as_str().into();
        }
        if !req.roles.is_empty() {
            claims["roles"] = req.roles.clone().into();
        }
        if !req.scopes.is_empty() {
            claims["scope"] = req.scopes.join(" ").into();
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("JWT".into());
        header.kid = Some(set.active.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|_| GatewayTokenError::Sign)
    }
}

/// 128 random bits, hex.
fn random_jti() -> Result<String, GatewayTokenError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut b).map_err(|_| GatewayTokenError::Sign)?;
    Ok(hex::encode(b))
}
