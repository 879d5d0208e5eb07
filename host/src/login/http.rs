//! HTTP for the login flows: the workspace reqwest (rustls) adapted to the
//! `oauth2` crate's [`AsyncHttpClient`] trait.
//!
//! `oauth2` 5 ships an adapter for reqwest 0.12 only; implementing the
//! one-method trait over reqwest 0.13 keeps a single HTTP/TLS stack in the
//! binary and lets us set what the flows need: no redirects (a token
//! request must never be replayed elsewhere), timeouts and a response size
//! cap.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::url::{Host, Url};
use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};

/// Responses larger than this are refused.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A failed HTTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request could not be sent or the response read.
    #[error("{0}")]
    Transport(String),
    /// The response was larger than 1 MiB.
    #[error("response larger than 1 MiB")]
    TooLarge,
}

/// The client used by `wasmgate login`, `token` and `call`.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    /// A client with rustls, no redirects, 10 s to connect and 30 s per
    /// request.
    pub fn new() -> Result<Self, HttpError> {
        let inner = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("wasmgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Transport(e.to_string()))?;
        Ok(Self { inner })
    }

    /// The underlying client, for calls through the gateway.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.inner
    }

    /// GETs `url` and returns the status and the body (at most 1 MiB).
    pub async fn get(&self, url: &str) -> Result<(http::StatusCode, Vec<u8>), HttpError> {
        let response = self
            .inner
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| HttpError::Transport(without_url(&e)))?;
        let status = response.status();
        Ok((status, read_capped(response).await?))
    }
}

/// Reads a body up to 1 MiB.
pub async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| HttpError::Transport(without_url(&e)))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's message with the cause chain; URLs here never carry secrets.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(|e| HttpError::Transport(e.to_string()))?;
            let response = self.inner.execute(request).await.map_err(|e| HttpError::Transport(without_url(&e)))?;
            let mut builder = http::Response::builder().status(response.status()).version(response.version());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = read_capped(response).await?;
            builder.body(body).map_err(|e| HttpError::Transport(e.to_string()))
        })
    }
}

/// Parses `url` and checks it is HTTPS, or plain HTTP to a loopback host
/// (tokens and client secrets are never sent in the clear over a network).
pub fn checked_url(what: &str, url: &str) -> anyhow::Result<Url> {
    let parsed = Url::parse(url).map_err(|e| anyhow::anyhow!("{what} {url:?} is not a valid URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => anyhow::bail!("{what} {url} must use https (plain http is accepted for loopback hosts only)"),
        other => anyhow::bail!("{what} {url} has unsupported scheme {other:?}"),
    }
    anyhow::ensure!(
        parsed.username().is_empty() && parsed.password().is_none(),
        "{what} {url} must not contain credentials"
    );
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        assert!(checked_url("gateway", "https://gw.example").is_ok());
        assert!(checked_url("gateway", "http://127.0.0.1:8080").is_ok());
        assert!(checked_url("gateway", "http://[::1]:8080/").is_ok());
        assert!(checked_url("gateway", "http://localhost:8080").is_ok());
        assert!(checked_url("gateway", "http://gw.example").is_err());
        assert!(checked_url("gateway", "ftp://gw.example").is_err());
        assert!(checked_url("gateway", "https://user:pw@gw.example").is_err());
        assert!(checked_url("gateway", "gw.example").is_err());
    }
}
