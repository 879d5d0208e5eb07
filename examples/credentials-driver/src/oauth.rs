//! OAuth2 client credentials (RFC 6749 §4.4) against a token endpoint, with a
//! cached token refreshed ahead of expiry and single-flight fetches.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use oauth2::basic::{BasicClient, BasicTokenType};
use oauth2::{
    AsyncHttpClient, AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RequestTokenError, Scope,
    TokenResponse as _, TokenUrl,
};

use crate::config::{AuthStyle, OAuth2Config};
use crate::statics::check_token;
use crate::token::{Credential, Token, now_ms};

/// Largest token endpoint answer read, bytes.
const MAX_RESPONSE: usize = 64 * 1024;
/// A cached token with less validity left than this is not served.
const MIN_VALIDITY_MS: i64 = 1_000;
/// Pause before another background refresh after one failed.
const REFRESH_RETRY_MS: i64 = 1_000;

/// Why a token could not be obtained. Never contains a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    /// The client secret file cannot be read or is empty.
    #[error("cannot read the client secret from {0}")]
    Secret(PathBuf),
    /// The token endpoint answered with an OAuth2 error (`invalid_client`, ...).
    #[error("token endpoint refused the request: {0}")]
    Refused(String),
    /// Transport failure, timeout or unexpected HTTP answer.
    #[error("token endpoint request failed: {0}")]
    Request(String),
    /// The answer is not a usable token.
    #[error("token endpoint answer is invalid: {0}")]
    Invalid(String),
}

/// The HTTP side of the token requests: the workspace's reqwest (rustls),
/// no redirects, bounded answers.
#[derive(Debug, Clone)]
struct Http(reqwest::Client);

/// A transport failure, as text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(|e| HttpError(e.to_string()))?;
            let mut resp = self.0.execute(request).await.map_err(|e| HttpError(e.without_url().to_string()))?;
            let mut builder = http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                builder = builder.header(k, v);
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| HttpError(e.without_url().to_string()))? {
                if body.len() + chunk.len() > MAX_RESPONSE {
                    return Err(HttpError(format!("answer larger than {MAX_RESPONSE} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            builder.body(body).map_err(|e| HttpError(e.to_string()))
        })
    }
}

#[derive(Debug)]
struct Cached {
    credential: Credential,
    /// When a background refresh starts (Unix ms).
    refresh_at_ms: i64,
}

/// One client-credentials source.
#[derive(Debug)]
pub struct ClientCredentials {
    cfg: OAuth2Config,
    token_url: TokenUrl,
    http: Http,
    cached: ArcSwapOption<Cached>,
    fetch: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    next_refresh_try_ms: AtomicI64,
    requests: AtomicU64,
}

impl ClientCredentials {
    /// Prepares the source; no request is made until the first resolve.
    pub fn new(cfg: OAuth2Config) -> Result<Arc<Self>, OAuthError> {
        let token_url = TokenUrl::new(cfg.token_url.clone()).map_err(|e| OAuthError::Invalid(e.to_string()))?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .build()
            .map_err(|e| OAuthError::Request(e.to_string()))?;
        Ok(Arc::new(Self {
            cfg,
            token_url,
            http: Http(client),
            cached: ArcSwapOption::empty(),
            fetch: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            next_refresh_try_ms: AtomicI64::new(0),
            requests: AtomicU64::new(0),
        }))
    }

    /// The credential's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The scopes requested.
    pub fn scopes(&self) -> &[String] {
        &self.cfg.scopes
    }

    /// How many token requests were sent so far.
    pub fn token_requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    fn usable(&self, now: i64) -> Option<Arc<Cached>> {
        self.cached.load_full().filter(|c| c.credential.expires_at_ms - MIN_VALIDITY_MS > now)
    }

    /// The current token: from the cache while it is valid (starting a
    /// background refresh once it is within `refresh_ahead_secs` of expiry),
    /// else fetched, with concurrent callers sharing one token request.
    pub async fn resolve(self: &Arc<Self>) -> Result<Credential, OAuthError> {
        let now = now_ms();
        if let Some(c) = self.usable(now) {
            if now >= c.refresh_at_ms {
                self.spawn_refresh(now);
            }
            return Ok(c.credential.clone());
        }
        let _guard = self.fetch.lock().await;
        if let Some(c) = self.usable(now_ms()) {
            return Ok(c.credential.clone()); // fetched while we waited
        }
        self.fetch_locked().await
    }

    fn spawn_refresh(self: &Arc<Self>, now: i64) {
        if now < self.next_refresh_try_ms.load(Ordering::Acquire) || self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let _guard = this.fetch.lock().await;
            let due = this.cached.load().as_ref().is_none_or(|c| now_ms() >= c.refresh_at_ms);
            if due && let Err(e) = this.fetch_locked().await {
                tracing::warn!(credential = %this.cfg.name, error = %e, "background token refresh failed");
                this.next_refresh_try_ms.store(now_ms() + REFRESH_RETRY_MS, Ordering::Release);
            }
            this.refreshing.store(false, Ordering::Release);
        });
    }

    async fn fetch_locked(&self) -> Result<Credential, OAuthError> {
        self.requests.fetch_add(1, Ordering::AcqRel);
        let path = &self.cfg.client_secret_file;
        let secret = std::fs::read_to_string(path).map_err(|_| OAuthError::Secret(path.clone()))?;
        let secret = secret.trim_end_matches(['\n', '\r']);
        if secret.is_empty() {
            return Err(OAuthError::Secret(path.clone()));
        }
        let client = BasicClient::new(ClientId::new(self.cfg.client_id.clone()))
            .set_client_secret(ClientSecret::new(secret.to_owned()))
            .set_token_uri(self.token_url.clone())
            .set_auth_type(match self.cfg.auth_style {
                AuthStyle::Basic => AuthType::BasicAuth,
                AuthStyle::RequestBody => AuthType::RequestBody,
            });
        let mut request =
            client.exchange_client_credentials().add_scopes(self.cfg.scopes.iter().cloned().map(Scope::new));
        if let Some(audience) = &self.cfg.audience {
            request = request.add_extra_param("audience", audience.clone());
        }
        let started = now_ms();
        let response =
            tokio::time::timeout(Duration::from_millis(self.cfg.timeout_ms), request.request_async(&self.http))
                .await
                .map_err(|_| OAuthError::Request(format!("no answer within {} ms", self.cfg.timeout_ms)))?
                .map_err(|e| match e {
                    RequestTokenError::ServerResponse(r) => OAuthError::Refused(r.error().to_string()),
                    RequestTokenError::Request(e) => OAuthError::Request(e.to_string()),
                    RequestTokenError::Parse(_, _) => OAuthError::Invalid("not a token response".into()),
                    RequestTokenError::Other(m) => OAuthError::Invalid(m),
                })?;
        let token = response.access_token().secret();
        check_token(token).map_err(OAuthError::Invalid)?;
        let token_type = match response.token_type() {
            BasicTokenType::Bearer => "Bearer".to_owned(),
            BasicTokenType::Mac => "MAC".to_owned(),
            BasicTokenType::Extension(t) => t.clone(),
        };
        let lifetime = response.expires_in().unwrap_or(Duration::from_secs(self.cfg.default_ttl_secs));
        let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 4).min(i64::MAX / 4);
        if lifetime_ms <= MIN_VALIDITY_MS {
            return Err(OAuthError::Invalid("token lifetime is too short".into()));
        }
        let expires_at_ms = started + lifetime_ms;
        let ahead_ms = i64::try_from(self.cfg.refresh_ahead_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let refresh_at_ms = expires_at_ms - ahead_ms.min(lifetime_ms / 2);
        let credential = Credential { token: Token::new(token.clone()), token_type, expires_at_ms };
        self.cached.store(Some(Arc::new(Cached { credential: credential.clone(), refresh_at_ms })));
        tracing::debug!(credential = %self.cfg.name, expires_at_ms, "token fetched");
        Ok(credential)
    }
}
