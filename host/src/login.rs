//! `wasmgate login`, `wasmgate token print` and `wasmgate call`: obtaining,
//! storing and renewing a user's (or a CI job's) tokens for a gateway.
//!
//! - The gateway publishes its login settings at
//!   `/.well-known/wasmgate-login` ([`crate::config::LoginConfig`]).
//! - [`flows`]: OIDC discovery, the device authorization grant (RFC 8628),
//!   client credentials and refresh, with the `oauth2` crate over [`http`].
//! - [`store`]: the credentials file (0600, atomic, locked).
//! - [`access_token`]: a valid access token, renewed when needed so that a
//!   rotated refresh token is never lost, even with many processes at once.
//! - [`cli`]: the commands.
//! - [`testing`]: an in-process OAuth server for tests; never for production.

pub mod cli;
pub mod flows;
pub mod http;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::path::Path;
use std::time::Duration;

use flows::{FlowError, Tokens};
use http::{HttpClient, checked_url};
use store::{CredentialsStore, Entry, Grant, Secret, StoreError, unix_now};

/// An access token closer than this to expiry is renewed first.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// The key of a gateway in the credentials file: its URL, checked (HTTPS,
/// or HTTP on loopback), normalised, without a trailing slash.
pub fn gateway_key(gateway: &str) -> anyhow::Result<String> {
    let url = checked_url("gateway", gateway)?;
    anyhow::ensure!(
        url.query().is_none() && url.fragment().is_none(),
        "gateway {gateway} must not have a query or fragment"
    );
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Why no access token could be produced.
#[derive(Debug, thiserror::Error)]
pub enum AccessTokenError {
    /// Nothing stored for this gateway.
    #[error("not logged in to {0}: run `wasmgate login --gateway {0}`")]
    NotLoggedIn(String),
    /// The stored grant is no longer usable.
    #[error("{reason}; log in again: `wasmgate login --gateway {gateway}`")]
    LoginAgain {
        /// The gateway.
        gateway: String,
        /// Why.
        reason: String,
    },
    /// The credentials file could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Renewed, but the new tokens could not be saved: they are not used,
    /// since the server may already have retired the stored refresh token.
    #[error(
        "the tokens were renewed but could not be saved ({0}); the stored refresh token may no longer work: fix the \
         problem and run `wasmgate login` again if the next command fails"
    )]
    Persist(StoreError),
    /// The authorization server could not be used.
    #[error("{0}")]
    Flow(#[from] FlowError),
}

/// A valid access token for `gateway` (a [`gateway_key`]), renewed if it
/// expires within [`REFRESH_MARGIN`].
///
/// Renewal runs under the file's lock: re-read (another process may have
/// renewed already), renew, persist the new refresh token, unlock, and only
/// then use the new access token. On `invalid_grant` the file is re-read
/// once more before giving up, in case a process that does not share the
/// lock (another host on a shared home folder, an older client) rotated it.
pub async fn access_token(
    http: &HttpClient,
    store: &CredentialsStore,
    gateway: &str,
) -> Result<Secret, AccessTokenError> {
    let snapshot = store.read()?;
    let entry =
        snapshot.credentials.gateways.get(gateway).ok_or_else(|| AccessTokenError::NotLoggedIn(gateway.into()))?;
    if snapshot.loose_mode.is_none() && entry.fresh(unix_now(), REFRESH_MARGIN) {
        return Ok(entry.access_token.clone());
    }

    let lock = store.lock().await?;
    let mut credentials = lock.read()?;
    let entry =
        credentials.gateways.get(gateway).cloned().ok_or_else(|| AccessTokenError::NotLoggedIn(gateway.into()))?;
    if entry.fresh(unix_now(), REFRESH_MARGIN) {
        return Ok(entry.access_token);
    }
    let renewed = match renew(http, gateway, &entry).await {
        Ok(tokens) => renewed_entry(&entry, tokens),
        Err(AccessTokenError::Flow(FlowError::InvalidGrant(description))) => {
            credentials = lock.read()?;
            let latest = credentials.gateways.get(gateway).cloned();
            match latest {
                Some(latest) if latest.fresh(unix_now(), REFRESH_MARGIN) => {
                    tracing::info!(gateway, "refresh token already rotated by another process; using its tokens");
                    return Ok(latest.access_token);
                }
                Some(latest) if latest.refresh_token.is_some() && latest.refresh_token != entry.refresh_token => {
                    tracing::info!(gateway, "refresh token already rotated by another process; renewing with its one");
                    match renew(http, gateway, &latest).await {
                        Ok(tokens) => renewed_entry(&latest, tokens),
                        Err(AccessTokenError::Flow(FlowError::InvalidGrant(d))) => return Err(rejected(gateway, d)),
                        Err(e) => return Err(e),
                    }
                }
                _ => return Err(rejected(gateway, description)),
            }
        }
        Err(e) => return Err(e),
    };
    let access = renewed.access_token.clone();
    credentials.gateways.insert(gateway.to_owned(), renewed);
    lock.write(&credentials).map_err(AccessTokenError::Persist)?;
    drop(lock);
    tracing::debug!(gateway, "access token renewed");
    Ok(access)
}

fn rejected(gateway: &str, description: Option<String>) -> AccessTokenError {
    AccessTokenError::LoginAgain {
        gateway: gateway.into(),
        reason: format!(
            "the refresh token was rejected (invalid_grant{}) and no newer one is stored",
            description.map(|d| format!(": {d}")).unwrap_or_default()
        ),
    }
}

async fn renew(http: &HttpClient, gateway: &str, entry: &Entry) -> Result<Tokens, AccessTokenError> {
    let login_again = |reason: String| AccessTokenError::LoginAgain { gateway: gateway.into(), reason };
    let token_endpoint =
        checked_url("token endpoint", &entry.token_endpoint).map_err(|e| login_again(format!("{e:#}")))?;
    match entry.grant {
        Grant::DeviceCode => {
            let rt = entry
                .refresh_token
                .as_ref()
                .ok_or_else(|| login_again("the access token expired and no refresh token was issued".into()))?;
            Ok(flows::refresh(http, &token_endpoint, &entry.client_id, rt).await?)
        }
        Grant::ClientCredentials => {
            let file = entry
                .client_secret_file
                .as_deref()
                .ok_or_else(|| login_again("no client secret file is recorded".into()))?;
            let secret = read_secret_file(file).map_err(|e| login_again(format!("{e:#}")))?;
            let aud = entry.audience.as_deref();
            Ok(flows::client_credentials(http, &token_endpoint, &entry.client_id, &secret, &entry.scopes, aud).await?)
        }
    }
}

/// `previous` with the new tokens; the refresh token is kept when the
/// server did not rotate it.
fn renewed_entry(previous: &Entry, tokens: Tokens) -> Entry {
    let now = unix_now();
    Entry {
        access_token: tokens.access_token,
        token_type: tokens.token_type,
        expires_at: tokens.expires_in.map(|d| now.saturating_add(d.as_secs())),
        refresh_token: tokens.refresh_token.or_else(|| previous.refresh_token.clone()),
        updated_at: now,
        ..previous.clone()
    }
}

/// Reads a client secret: the file's content without surrounding
/// whitespace. Warns when others can read the file.
pub fn read_secret_file(path: &Path) -> anyhow::Result<Secret> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("client secret file {}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the client secret file is readable by other users; chmod 600 it");
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("client secret file {}: {e}", path.display()))?;
    let secret = text.trim();
    anyhow::ensure!(!secret.is_empty(), "client secret file {} is empty", path.display());
    Ok(Secret::new(secret))
}

#[cfg(test)]
mod tests;
