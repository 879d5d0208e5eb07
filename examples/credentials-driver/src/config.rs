//! The driver's YAML configuration file.
//!
//! ```yaml
//! socket: /run/wasmgate/credentials.sock
//! static:
//!   file: /etc/wasmgate/credentials/static.yaml
//! oauth2:
//!   - name: billing-api
//!     token_url: https://idp.example.com/oauth2/token
//!     client_id: wasmgate
//!     client_secret_file: /etc/wasmgate/credentials/billing-secret
//!     scopes: [billing.read]
//!     audience: https://billing.example.com
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML for this schema.
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole driver configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Unix socket to serve on (`--socket` overrides it).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Static credentials from a watched file.
    #[serde(default, rename = "static")]
    pub static_file: Option<StaticConfig>,
    /// OAuth2 client-credentials sources, one per credential name.
    #[serde(default)]
    pub oauth2: Vec<OAuth2Config>,
}

/// Where the static credentials file is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// The credentials file (see [`crate::statics`]); its folder is watched.
    pub file: PathBuf,
    /// Quiet period after a change before the file is re-read.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
}

fn default_debounce_ms() -> u64 {
    100
}

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStyle {
    /// HTTP Basic (`client_secret_basic`), the default.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    RequestBody,
}

/// One OAuth2 client-credentials source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The credential's name in the catalogue.
    pub name: String,
    /// The token endpoint (`https://`, or `http://` to a loopback address).
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// File holding the client secret; re-read before every token request so
    /// a rotated secret is used without a restart.
    pub client_secret_file: PathBuf,
    /// Scopes requested (and listed in the catalogue).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Optional `audience` form parameter (Auth0, Okta and others).
    #[serde(default)]
    pub audience: Option<String>,
    /// Client authentication style.
    #[serde(default)]
    pub auth_style: AuthStyle,
    /// A new token is fetched in the background this long before the cached
    /// one expires (at most half the token's lifetime).
    #[serde(default = "default_refresh_ahead_secs")]
    pub refresh_ahead_secs: u64,
    /// Lifetime assumed when the endpoint gives no `expires_in`.
    #[serde(default = "default_ttl_secs")]
    pub default_ttl_secs: u64,
    /// Deadline for one token request.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_refresh_ahead_secs() -> u64 {
    60
}
fn default_ttl_secs() -> u64 {
    300
}
fn default_timeout_ms() -> u64 {
    5_000
}

impl Config {
    /// Reads and checks the file at `path`. Relative paths inside it are
    /// taken relative to the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.into(), message },
            other => other,
        })?;
        // Absolute, so nothing depends on the working directory later.
        let file = crate::statics::absolute(path);
        let base = file.parent().unwrap_or(Path::new("/"));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(s) = &mut config.static_file {
            rebase(&mut s.file);
        }
        for o in &mut config.oauth2 {
            rebase(&mut o.client_secret_file);
        }
        if let Some(s) = &mut config.socket {
            rebase(s);
        }
        Ok(config)
    }

    /// Parses and checks YAML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_norway::from_str(text)
            .map_err(|e| ConfigError::Parse { path: PathBuf::new(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for o in &self.oauth2 {
            crate::statics::check_name(&o.name).map_err(ConfigError::Invalid)?;
            if !names.insert(o.name.as_str()) {
                return Err(ConfigError::Invalid(format!("credential {:?} is defined twice", o.name)));
            }
            check_token_url(&o.token_url)?;
            if o.client_id.is_empty() {
                return Err(ConfigError::Invalid(format!("{}: client_id is empty", o.name)));
            }
            if o.timeout_ms == 0 || o.default_ttl_secs == 0 {
                return Err(ConfigError::Invalid(format!("{}: timeout_ms and default_ttl_secs must be > 0", o.name)));
            }
        }
        if self.static_file.is_none() && self.oauth2.is_empty() {
            return Err(ConfigError::Invalid("no credential source: set `static` and/or `oauth2`".into()));
        }
        Ok(())
    }
}

/// Token endpoints must use TLS, except on loopback (tests, local proxies).
fn check_token_url(url: &str) -> Result<(), ConfigError> {
    let parsed: http::Uri =
        url.parse().map_err(|_| ConfigError::Invalid(format!("token_url {url:?} is not a valid URL")))?;
    let host = parsed.host().unwrap_or("");
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        _ => Err(ConfigError::Invalid(format!("token_url {url:?} must be https:// (http:// only to loopback)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_sources() {
        let c = Config::parse(
            "static: {file: creds.yaml}\noauth2:\n  - {name: a, token_url: 'https://idp/t', client_id: c, \
             client_secret_file: s, scopes: [x]}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.oauth2[0].refresh_ahead_secs, 60);
        assert_eq!(c.oauth2[0].auth_style, AuthStyle::Basic);
    }

    #[test]
    fn refuses_cleartext_token_url_off_loopback() {
        let yaml =
            |url: &str| format!("oauth2:\n  - {{name: a, token_url: '{url}', client_id: c, client_secret_file: s}}\n");
        assert!(Config::parse(&yaml("http://idp.example.com/token")).is_err());
        assert!(Config::parse(&yaml("http://127.0.0.1:8080/token")).is_ok());
        assert!(Config::parse(&yaml("http://[::1]:8080/token")).is_ok());
    }

    #[test]
    fn refuses_duplicates_and_empty_config() {
        assert!(Config::parse("{}").is_err());
        let one = "{name: a, token_url: 'https://i/t', client_id: c, client_secret_file: s}";
        assert!(Config::parse(&format!("oauth2: [{one}, {one}]")).is_err());
    }
}
