//! Forwarding to upstreams over Unix sockets or TCP, HTTP/1.1 or h2, with
//! bodies and trailers streamed in both directions.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::UnixStream;

use super::headers::strip_hop_by_hop;
use super::reject::Rejection;
use super::routes::{Route, Target};
use crate::config::UpstreamProtocol;

/// Connects every request of a client to one Unix socket.
#[derive(Debug, Clone)]
struct UnixConnector(Arc<PathBuf>);

impl tower::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(&*path).await?)) })
    }
}

#[derive(Debug, Clone)]
enum Transport {
    Unix(Client<UnixConnector, Body>),
    Tcp(Client<HttpConnector, Body>),
}

/// A pooled client for one route's upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    transport: Transport,
    authority: Option<Authority>,
    version: Version,
    timeout: Duration,
    route: String,
}

impl Upstream {
    /// A client for `route`.
    pub fn new(route: &Route) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder.timer(TokioTimer::new()).pool_timer(TokioTimer::new()).pool_idle_timeout(Duration::from_secs(90));
        let version = match route.protocol {
            UpstreamProtocol::H2 => {
                builder
                    .http2_only(true)
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .http2_keep_alive_timeout(Duration::from_secs(10));
                Version::HTTP_2
            }
            UpstreamProtocol::Http1 => Version::HTTP_11,
        };
        let (transport, authority) = match &route.target {
            Target::Unix(path) => (Transport::Unix(builder.build(UnixConnector(Arc::new(path.clone())))), None),
            Target::Tcp(hostport) => {
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                http.set_connect_timeout(Some(Duration::from_secs(5)));
                (Transport::Tcp(builder.build(http)), Authority::try_from(hostport.as_str()).ok())
            }
        };
        Self {
            transport,
            authority,
            version,
            timeout: Duration::from_millis(route.cfg.timeout_ms),
            route: route.cfg.name.clone(),
        }
    }

    /// Sends `req` upstream. The request's headers must already be final
    /// (identity headers set, credentials removed); hop-by-hop headers are
    /// removed here, in both directions.
    pub async fn send(
        &self,
        mut req: Request<Body>,
        client_authority: Option<&str>,
    ) -> Result<Response<Body>, Rejection> {
        let path_and_query = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let authority = match &self.authority {
            Some(a) => a.clone(),
            None => client_authority
                .and_then(|a| Authority::try_from(a).ok())
                .unwrap_or_else(|| Authority::from_static("localhost")),
        };
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(authority.clone());
        uri.path_and_query = Some(path_and_query);
        *req.uri_mut() = Uri::from_parts(uri).map_err(|_| Rejection::Unavailable)?;
        *req.version_mut() = self.version;
        strip_hop_by_hop(req.headers_mut());
        if self.version == Version::HTTP_11 {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        } else {
            req.headers_mut().remove(http::header::HOST);
        }

        let fut = async {
            match &self.transport {
                Transport::Unix(c) => c.request(req).await,
                Transport::Tcp(c) => c.request(req).await,
            }
        };
        let resp = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                tracing::warn!(route = %self.route, error = %e, "upstream request failed");
                return Err(Rejection::Unavailable);
            }
            Err(_) => {
                tracing::warn!(route = %self.route, "upstream did not answer in time");
                return Err(Rejection::UpstreamTimeout);
            }
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}
