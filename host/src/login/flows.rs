//! The OAuth 2.0 exchanges, all through the `oauth2` crate: OIDC discovery
//! of the endpoints, the device authorization grant (RFC 8628), the
//! client-credentials grant and refresh.

use std::time::Duration;

use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::url::Url;
use oauth2::{
    ClientId, ClientSecret, DeviceAuthorizationUrl, ErrorResponseType, RefreshToken, RequestTokenError, Scope,
    StandardDeviceAuthorizationResponse, StandardErrorResponse, TokenResponse, TokenUrl,
};
use serde::Deserialize;

use super::http::{HttpClient, HttpError, checked_url};
use super::store::Secret;

/// The gateway's login settings as served at the well-known path. Read
/// leniently: a newer gateway may add keys.
#[derive(Debug, Clone, Deserialize)]
pub struct LoginSettings {
    /// The OIDC issuer to discover endpoints from.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Explicit device authorization endpoint.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// Explicit token endpoint.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The public client users log in with.
    pub client_id: String,
    /// Scopes to request.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The `audience` parameter, if the provider needs one.
    #[serde(default)]
    pub audience: Option<String>,
}

/// Fetches `{gateway}/.well-known/wasmgate-login`.
pub async fn fetch_settings(http: &HttpClient, gateway: &str) -> anyhow::Result<LoginSettings> {
    let url = format!("{gateway}{}", crate::config::LOGIN_WELL_KNOWN_PATH);
    let (status, body) = http.get(&url).await.map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    if status == http::StatusCode::NOT_FOUND {
        anyhow::bail!("the gateway at {gateway} does not offer login ({url} answered 404: no `login:` in its config)");
    }
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    serde_json::from_slice(&body).map_err(|e| anyhow::anyhow!("{url} did not return login settings: {e}"))
}

/// Where to ask for tokens.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The issuer, when the endpoints came from its discovery document.
    pub issuer: Option<String>,
    /// The device authorization endpoint, if known.
    pub device_authorization: Option<Url>,
    /// The token endpoint.
    pub token: Url,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    #[serde(default)]
    token_endpoint: Option<String>,
    #[serde(default)]
    device_authorization_endpoint: Option<String>,
}

/// The endpoints: explicit ones from the settings win, the rest come from
/// the issuer's OIDC discovery document (whose `issuer` must match exactly).
/// Every URL must be HTTPS (or loopback HTTP).
pub async fn endpoints(http: &HttpClient, settings: &LoginSettings) -> anyhow::Result<Endpoints> {
    let mut device = settings.device_authorization_endpoint.clone();
    let mut token = settings.token_endpoint.clone();
    if let Some(issuer) = &settings.issuer
        && (device.is_none() || token.is_none())
    {
        checked_url("issuer", issuer)?;
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let (status, body) = http.get(&url).await.map_err(|e| anyhow::anyhow!("OIDC discovery at {url}: {e}"))?;
        anyhow::ensure!(status.is_success(), "OIDC discovery at {url} answered {status}");
        let doc: Discovery =
            serde_json::from_slice(&body).map_err(|e| anyhow::anyhow!("OIDC discovery at {url}: {e}"))?;
        anyhow::ensure!(
            doc.issuer == *issuer,
            "OIDC discovery at {url} names issuer {:?}, expected {issuer:?}",
            doc.issuer
        );
        device = device.or(doc.device_authorization_endpoint);
        token = token.or(doc.token_endpoint);
    }
    let token = token.ok_or_else(|| anyhow::anyhow!("no token endpoint: set login.token_endpoint or login.issuer"))?;
    Ok(Endpoints {
        issuer: settings.issuer.clone(),
        device_authorization: device.map(|d| checked_url("device authorization endpoint", &d)).transpose()?,
        token: checked_url("token endpoint", &token)?,
    })
}

/// Tokens as a token endpoint returned them.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The access token.
    pub access_token: Secret,
    /// `Bearer`.
    pub token_type: String,
    /// Lifetime, if the server said.
    pub expires_in: Option<Duration>,
    /// A refresh token, if issued (a new one on each refresh when the
    /// server rotates them).
    pub refresh_token: Option<Secret>,
}

impl From<&BasicTokenResponse> for Tokens {
    fn from(t: &BasicTokenResponse) -> Self {
        Self {
            access_token: Secret::new(t.access_token().secret().clone()),
            token_type: t.token_type().as_ref().to_owned(),
            expires_in: t.expires_in(),
            refresh_token: t.refresh_token().map(|r| Secret::new(r.secret().clone())),
        }
    }
}

/// A failed exchange.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The grant (refresh token, device code) is invalid, expired, revoked
    /// or already used.
    #[error("the authorization server rejected the grant (invalid_grant{})", describe(.0))]
    InvalidGrant(Option<String>),
    /// The user denied the request.
    #[error("the login was denied (access_denied)")]
    Denied,
    /// The device code expired before the user approved it.
    #[error("the device code expired before the login was approved; run `wasmgate login` again")]
    Expired,
    /// Another OAuth error.
    #[error("{what}: the authorization server answered {code}{}", describe(.description))]
    Server {
        /// The request.
        what: &'static str,
        /// The OAuth error code.
        code: String,
        /// Its description.
        description: Option<String>,
    },
    /// Anything else: transport, unexpected response.
    #[error("{0}")]
    Other(String),
}

fn describe(d: &Option<String>) -> String {
    d.as_ref().map(|d| format!(": {d}")).unwrap_or_default()
}

fn flow_error<T>(what: &'static str, e: RequestTokenError<HttpError, StandardErrorResponse<T>>) -> FlowError
where
    T: ErrorResponseType + std::fmt::Display + 'static,
{
    match e {
        RequestTokenError::ServerResponse(r) => {
            let code = r.error().to_string();
            let description = r.error_description().cloned();
            match code.as_str() {
                "invalid_grant" => FlowError::InvalidGrant(description),
                "access_denied" => FlowError::Denied,
                "expired_token" => FlowError::Expired,
                _ => FlowError::Server { what, code, description },
            }
        }
        RequestTokenError::Request(e) => FlowError::Other(format!("{what}: {e}")),
        // The body may hold tokens: only the failing field is named.
        RequestTokenError::Parse(e, _body) => {
            FlowError::Other(format!("{what}: unexpected response from the authorization server (at `{}`)", e.path()))
        }
        RequestTokenError::Other(s) => FlowError::Other(format!("{what}: {s}")),
    }
}

fn token_url(url: &Url) -> TokenUrl {
    TokenUrl::from_url(url.clone())
}

/// What the user must do to approve a device login.
#[derive(Debug, Clone)]
pub struct DevicePrompt {
    /// Where to go.
    pub verification_uri: String,
    /// The same with the code filled in, if the server offers it.
    pub verification_uri_complete: Option<String>,
    /// The code to enter.
    pub user_code: String,
    /// How long the code is valid.
    pub expires_in: Duration,
}

/// The device authorization grant: asks for a device code, shows the prompt,
/// then polls the token endpoint at the server's interval — `slow_down`
/// adds 5 s to it and polling stops when the code's `expires_in` has passed.
pub async fn device_flow(
    http: &HttpClient,
    endpoints: &Endpoints,
    settings: &LoginSettings,
    prompt: impl FnOnce(&DevicePrompt),
) -> Result<Tokens, FlowError> {
    let device_url = endpoints.device_authorization.clone().ok_or_else(|| {
        FlowError::Other(
            "the identity provider does not advertise a device authorization endpoint; set \
             login.device_authorization_endpoint in the gateway's config"
                .into(),
        )
    })?;
    let client = BasicClient::new(ClientId::new(settings.client_id.clone()))
        .set_token_uri(token_url(&endpoints.token))
        .set_device_authorization_url(DeviceAuthorizationUrl::from_url(device_url));
    let mut request = client.exchange_device_code().add_scopes(settings.scopes.iter().cloned().map(Scope::new));
    if let Some(aud) = &settings.audience {
        request = request.add_extra_param("audience", aud.clone());
    }
    let details: StandardDeviceAuthorizationResponse =
        request.request_async(http).await.map_err(|e| flow_error("device authorization", e))?;
    prompt(&DevicePrompt {
        verification_uri: details.verification_uri().to_string(),
        verification_uri_complete: details.verification_uri_complete().map(|u| u.secret().clone()),
        user_code: details.user_code().secret().clone(),
        expires_in: details.expires_in(),
    });
    let token = client
        .exchange_device_access_token(&details)
        .request_async(http, tokio::time::sleep, None)
        .await
        .map_err(|e| flow_error("device access token", e))?;
    Ok(Tokens::from(&token))
}

/// The client-credentials grant (for CI).
pub async fn client_credentials(
    http: &HttpClient,
    token_endpoint: &Url,
    client_id: &str,
    secret: &Secret,
    scopes: &[String],
    audience: Option<&str>,
) -> Result<Tokens, FlowError> {
    let client = BasicClient::new(ClientId::new(client_id.to_owned()))
        .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
        .set_token_uri(token_url(token_endpoint));
    let mut request = client.exchange_client_credentials().add_scopes(scopes.iter().cloned().map(Scope::new));
    if let Some(aud) = audience {
        request = request.add_extra_param("audience", aud.to_owned());
    }
    let token = request.request_async(http).await.map_err(|e| flow_error("client credentials", e))?;
    Ok(Tokens::from(&token))
}

/// The refresh-token grant. With rotation the answer carries a new refresh
/// token and the old one is dead from now on.
pub async fn refresh(
    http: &HttpClient,
    token_endpoint: &Url,
    client_id: &str,
    refresh_token: &Secret,
) -> Result<Tokens, FlowError> {
    let client = BasicClient::new(ClientId::new(client_id.to_owned())).set_token_uri(token_url(token_endpoint));
    let rt = RefreshToken::new(refresh_token.expose().to_owned());
    let token = client.exchange_refresh_token(&rt).request_async(http).await.map_err(|e| flow_error("refresh", e))?;
    Ok(Tokens::from(&token))
}
