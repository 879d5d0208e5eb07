//! `login:` — what `wasmgate login` needs to obtain tokens for this gateway.
//!
//! The gateway publishes these settings, unauthenticated, at
//! [`WELL_KNOWN_PATH`]; the CLI reads them and runs the OAuth 2.0 device
//! authorization grant (or the client-credentials grant) against the
//! identity provider. Nothing here is secret: the client is a public client.

use serde::{Deserialize, Serialize};

/// Why the `login:` section is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginConfigError {
    /// `client_id` is empty.
    #[error("login: client_id must not be empty")]
    NoClientId,
    /// Neither `issuer` nor both endpoints.
    #[error("login: set issuer, or both device_authorization_endpoint and token_endpoint")]
    NoEndpoints,
    /// An issuer or endpoint that is not an absolute HTTP(S) URL.
    #[error("login: {key} must be an absolute http(s) URL, got {value:?}")]
    NotHttp {
        /// The key under `login.`.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// A scope that is empty or holds whitespace.
    #[error("login: scope {0:?} must be one non-empty word")]
    Scope(String),
}

/// Where the gateway serves its login settings.
pub const WELL_KNOWN_PATH: &str = "/.well-known/wasmgate-login";

/// The `login:` section, served as JSON at [`WELL_KNOWN_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// The OIDC issuer; the CLI discovers the endpoints from
    /// `{issuer}/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The device authorization endpoint (RFC 8628), overriding discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// The token endpoint, overriding discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// The OAuth client id users log in with (a public client).
    pub client_id: String,
    /// Scopes to request (e.g. `openid offline_access sandbox.read`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// An `audience` parameter sent with token requests, for providers that
    /// need one to issue JWT access tokens (Auth0 and others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

impl LoginConfig {
    /// Checks the section: an issuer or both endpoints, absolute HTTP(S)
    /// URLs, a client id.
    pub(super) fn validate(&self) -> Result<(), LoginConfigError> {
        if self.client_id.trim().is_empty() {
            return Err(LoginConfigError::NoClientId);
        }
        if self.issuer.is_none() && (self.device_authorization_endpoint.is_none() || self.token_endpoint.is_none()) {
            return Err(LoginConfigError::NoEndpoints);
        }
        for (key, value) in [
            ("issuer", &self.issuer),
            ("device_authorization_endpoint", &self.device_authorization_endpoint),
            ("token_endpoint", &self.token_endpoint),
        ] {
            if let Some(v) = value
                && !(v.starts_with("https://") || v.starts_with("http://"))
            {
                return Err(LoginConfigError::NotHttp { key, value: v.clone() });
            }
        }
        if let Some(s) = self.scopes.iter().find(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            return Err(LoginConfigError::Scope(s.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<LoginConfig, String> {
        let cfg: LoginConfig = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    #[test]
    fn login_config_needs_an_issuer_or_both_endpoints() {
        assert!(parse("issuer: https://id.example\nclient_id: cli").is_ok());
        assert!(
            parse("device_authorization_endpoint: https://id/d\ntoken_endpoint: https://id/t\nclient_id: cli").is_ok()
        );
        assert!(parse("token_endpoint: https://id/t\nclient_id: cli").is_err());
        assert!(parse("issuer: https://id.example\nclient_id: ''").is_err());
        assert!(parse("issuer: id.example\nclient_id: cli").is_err());
        assert!(parse("issuer: https://id.example\nclient_id: cli\nscopes: ['a b']").is_err());
        assert!(parse("issuer: https://id.example\nclient_id: cli\nclient_secret: x").is_err(), "unknown keys");
    }

    #[test]
    fn login_config_serializes_only_what_is_set() {
        let cfg = parse("issuer: https://id.example\nclient_id: cli\nscopes: [openid, offline_access]").expect("valid");
        let json = serde_json::to_value(&cfg).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"issuer": "https://id.example", "client_id": "cli", "scopes": ["openid", "offline_access"]})
        );
    }
}
