//! Forwarding to upstreams over Unix sockets or TCP, HTTP/1.1 or h2, with
//! bodies and trailers streamed in both directions.
//!
//! Failures are reported for what they are: an upstream that cannot be
//! reached is 503, one that does not answer in time 504, one that answers
//! with something that is not a valid response (malformed, oversized, reset
//! before its head) 502; each with its cause in the log and in
//! `wasmgate_upstream_failures_total{route,kind}`.

mod body;
mod h2pool;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::UnixStream;
use tokio::sync::Semaphore;

use super::headers::strip_hop_by_hop;
use super::reject::Rejection;
use super::routes::{Route, Target};
use crate::config::{UpstreamHost, UpstreamProtocol};

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
    /// HTTP/1.1 over a Unix socket.
    Unix(Client<UnixConnector, body::RequestBody>),
    /// HTTP/1.1 over TCP.
    Tcp(Client<HttpConnector, body::RequestBody>),
    /// HTTP/2, over either.
    H2(Arc<h2pool::H2Pool>),
}

/// Why an upstream request has no response to relay.
#[derive(Debug)]
pub struct SendError {
    /// What the client gets.
    pub rejection: Rejection,
    /// The upstream's failure, when it was the upstream's.
    pub failure: Option<Failure>,
    /// For the decision record.
    pub reason: String,
}

/// What went wrong with an upstream request: the `kind` label of the
/// upstream failure metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection (refused, no socket, connect timeout): 503.
    Connect,
    /// No response head within `timeout_ms`: 504.
    Timeout,
    /// The connection or stream was closed or reset before a response: 502.
    Reset,
    /// Not a valid HTTP response: 502.
    Protocol,
    /// A response head larger than the gateway reads: 502.
    TooLarge,
    /// Every connection the route may open is busy and so is the wait
    /// queue: 503 (gRPC `RESOURCE_EXHAUSTED`) at once.
    Exhausted,
}

impl Failure {
    /// The metric and log label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Protocol => "protocol",
            Self::TooLarge => "too_large",
            Self::Exhausted => "exhausted",
        }
    }

    fn rejection(self) -> Rejection {
        match self {
            Self::Connect => Rejection::Unavailable,
            Self::Timeout => Rejection::UpstreamTimeout,
            Self::Reset | Self::Protocol | Self::TooLarge => Rejection::BadGateway,
            Self::Exhausted => Rejection::UpstreamExhausted,
        }
    }

    fn of_h2(e: &h2pool::PoolError) -> Self {
        match e {
            h2pool::PoolError::Connect(_) => Self::Connect,
            h2pool::PoolError::Exhausted => Self::Exhausted,
            h2pool::PoolError::H2(e) if e.is_reset() || e.is_go_away() || e.is_io() => Self::Reset,
            h2pool::PoolError::H2(_) => Self::Protocol,
        }
    }

    /// Reads the cause off a client error and its sources.
    fn of(e: &hyper_util::client::legacy::Error) -> Self {
        if e.is_connect() {
            return Self::Connect;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(h) = s.downcast_ref::<hyper::Error>() {
                if h.is_parse_too_large() {
                    return Self::TooLarge;
                }
                if h.is_parse() || h.is_parse_status() {
                    return Self::Protocol;
                }
                if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                    return Self::Reset;
                }
            }
            if let Some(h2) = s.downcast_ref::<h2::Error>() {
                return if h2.is_reset() || h2.is_go_away() || h2.is_io() { Self::Reset } else { Self::Protocol };
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                if matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof) {
                    return Self::Reset;
                }
            }
            source = s.source();
        }
        Self::Protocol
    }
}

/// A pooled client for one route's upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    transport: Transport,
    authority: Option<Authority>,
    version: Version,
    timeout: Option<Duration>,
    idle: Option<Duration>,
    max_body: u64,
    host: UpstreamHost,
    /// HTTP/1.1: one connection per request in flight, at most this many.
    connections: Option<Arc<Semaphore>>,
    /// Requests that may wait for a connection, beyond those.
    pending: Option<Arc<Semaphore>>,
    route: Arc<str>,
    /// The route's per-call series.
    metrics: Arc<crate::metrics::RouteMetrics>,
}

impl Upstream {
    /// A client for `route`.
    pub fn new(route: &Route) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(route.cfg.max_connections);
        let authority = match &route.target {
            Target::Unix(_) => None,
            Target::Tcp(hostport) => Authority::try_from(hostport.as_str()).ok(),
        };
        let (transport, version) = match (&route.target, route.protocol) {
            (target, UpstreamProtocol::H2) => {
                let dial = match target {
                    Target::Unix(path) => h2pool::Dial::Unix(Arc::new(path.clone())),
                    Target::Tcp(hostport) => h2pool::Dial::Tcp(Arc::from(hostport.as_str())),
                };
                let pool = h2pool::H2Pool::new(dial, route.cfg.max_connections, route.cfg.max_pending);
                (Transport::H2(pool), Version::HTTP_2)
            }
            (Target::Unix(path), UpstreamProtocol::Http1) => {
                (Transport::Unix(builder.build(UnixConnector(Arc::new(path.clone())))), Version::HTTP_11)
            }
            (Target::Tcp(_), UpstreamProtocol::Http1) => {
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                http.set_connect_timeout(Some(Duration::from_secs(5)));
                (Transport::Tcp(builder.build(http)), Version::HTTP_11)
            }
        };
        let http1 = version == Version::HTTP_11;
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        Self {
            transport,
            authority,
            version,
            timeout: ms(route.cfg.timeout_ms),
            idle: ms(route.cfg.stream_idle_timeout_ms),
            max_body: route.cfg.max_request_body_bytes,
            host: route.cfg.upstream_host,
            connections: http1.then(|| Arc::new(Semaphore::new(route.cfg.max_connections))),
            pending: http1.then(|| Arc::new(Semaphore::new(route.cfg.max_pending))),
            route: Arc::from(route.cfg.name.as_str()),
            metrics: crate::metrics::RouteMetrics::new(&route.cfg.name),
        }
    }

    /// The span of one upstream request (HTTP client semantic
    /// conventions), child of the current span; `Span::none()` when tracing
    /// is off.
    pub fn client_span(&self, method: &http::Method) -> tracing::Span {
        let span = crate::telemetry::span!(
            "upstream",
            otel.name = %method,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            server.address = tracing::field::Empty,
            server.port = tracing::field::Empty,
            network.transport = tracing::field::Empty,
            network.protocol.version = if self.version == Version::HTTP_2 { "2" } else { "1.1" },
            wasmgate.route = &*self.route,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        if !span.is_disabled() {
            match &self.authority {
                Some(a) => {
                    span.record("server.address", a.host());
                    if let Some(port) = a.port_u16() {
                        span.record("server.port", i64::from(port));
                    }
                }
                None => {
                    span.record("network.transport", "unix");
                }
            }
        }
        span
    }

    /// The route's per-call series.
    pub fn metrics(&self) -> &crate::metrics::RouteMetrics {
        &self.metrics
    }

    /// The largest request body the route forwards, bytes.
    pub fn max_request_body_bytes(&self) -> u64 {
        self.max_body
    }

    /// Sends `req` upstream. The request's headers must already be final
    /// (identity headers set, credentials removed); hop-by-hop headers are
    /// removed here, in both directions. With `upgrade` (the client's side
    /// of an HTTP/1.1 WebSocket upgrade the route allows), the upgrade is
    /// offered upstream, and if the upstream accepts it the two connections
    /// are joined.
    pub async fn send(
        &self,
        req: Request<Body>,
        client_authority: Option<&str>,
        grpc: bool,
        upgrade: Option<(hyper::upgrade::OnUpgrade, HeaderValue)>,
    ) -> Result<Response<Body>, SendError> {
        // HTTP/1.1 upstreams: a connection per request in flight, capped;
        // a bounded number wait for one; past both, 503 at once.
        let connection = match (&self.connections, &self.pending) {
            (Some(connections), Some(pending)) => match connections.clone().try_acquire_owned() {
                Ok(permit) => Some(Arc::new(permit)),
                Err(_) => {
                    let Ok(_waiting) = pending.try_acquire() else {
                        return Err(self.failed(Failure::Exhausted, &"connection limit and wait queue full"));
                    };
                    match connections.clone().acquire_owned().await {
                        Ok(permit) => Some(Arc::new(permit)),
                        Err(_) => return Err(self.failed(Failure::Connect, &"upstream closed")),
                    }
                }
            },
            _ => None,
        };
        let tunnel_permit = connection.clone();

        let (mut parts, body) = req.into_parts();
        let path_and_query = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let client = client_authority.and_then(|a| Authority::try_from(a).ok());
        let upstream = self.authority.clone();
        let authority = match self.host {
            UpstreamHost::Upstream => upstream.or(client),
            UpstreamHost::Client => client.or(upstream),
        }
        .unwrap_or_else(|| Authority::from_static("localhost"));
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(authority.clone());
        uri.path_and_query = Some(path_and_query);
        parts.uri = Uri::from_parts(uri).map_err(|_| SendError {
            rejection: Rejection::BadRequest,
            failure: None,
            reason: "the upstream target is not a valid URI".into(),
        })?;
        parts.version = self.version;
        strip_hop_by_hop(&mut parts.headers);
        let (client_upgrade, protocol) = upgrade.unzip();
        if let Some(protocol) = &protocol {
            parts.headers.insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(http::header::UPGRADE, protocol.clone());
        }
        if self.version == Version::HTTP_11 {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(http::header::HOST, v);
            }
        } else {
            parts.headers.remove(http::header::HOST);
        }
        let too_large = Arc::new(AtomicBool::new(false));
        let body = body::RequestBody::new(body, self.idle, self.max_body, too_large.clone());
        let req = Request::from_parts(parts, body);
        let sent = std::time::Instant::now();

        let fut = async {
            let (failure, error): (Failure, Box<dyn std::fmt::Display + Send>) = match &self.transport {
                Transport::Unix(c) => match c.request(req).await {
                    Ok(resp) => return Ok(resp.map(|b| self.relay(b, grpc, connection))),
                    Err(e) => (Failure::of(&e), Box::new(e)),
                },
                Transport::Tcp(c) => match c.request(req).await {
                    Ok(resp) => return Ok(resp.map(|b| self.relay(b, grpc, connection))),
                    Err(e) => (Failure::of(&e), Box::new(e)),
                },
                Transport::H2(pool) => match pool.send(req).await {
                    Ok(resp) => return Ok(resp.map(|b| self.relay(b, grpc, connection))),
                    Err(e) => (Failure::of_h2(&e), Box::new(e)),
                },
            };
            Err((failure, error))
        };
        let result = match self.timeout {
            Some(t) => tokio::time::timeout(t, fut).await.map_err(|_| ()),
            None => Ok(fut.await),
        };
        let status = match &result {
            Ok(Ok(resp)) => Some(resp.status()),
            _ => None,
        };
        self.metrics.upstream_request(status, sent.elapsed().as_secs_f64());
        let mut resp = match result {
            Ok(Ok(resp)) => resp,
            Ok(Err(_)) if too_large.load(Ordering::Relaxed) => {
                tracing::info!(route = %self.route, limit = self.max_body, "request body over the route's limit");
                return Err(SendError {
                    rejection: Rejection::PayloadTooLarge,
                    failure: None,
                    reason: "request body over the route's max_request_body_bytes".into(),
                });
            }
            Ok(Err((failure, e))) => return Err(self.failed(failure, &e)),
            Err(()) => return Err(self.failed(Failure::Timeout, &"no response head within timeout_ms")),
        };
        let upstream_protocol = resp.headers().get(http::header::UPGRADE).cloned();
        strip_hop_by_hop(resp.headers_mut());
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let (Some(client), Some(accepted)) = (client_upgrade, upstream_protocol) else {
                // The gateway negotiated no upgrade: a 101 it relayed would
                // be a response the client cannot use.
                return Err(self.failed(Failure::Protocol, &"101 Switching Protocols without an upgrade request"));
            };
            if protocol.as_ref().is_none_or(|p| !p.as_bytes().eq_ignore_ascii_case(accepted.as_bytes())) {
                return Err(self.failed(Failure::Protocol, &"101 to a protocol the client did not ask for"));
            }
            let upstream = hyper::upgrade::on(&mut resp);
            resp.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
            resp.headers_mut().insert(http::header::UPGRADE, accepted);
            tokio::spawn(tunnel(client, upstream, self.route.clone(), tunnel_permit));
        }
        Ok(resp)
    }

    /// The client's view of an upstream response body.
    fn relay<B>(&self, body: B, grpc: bool, permit: Option<Arc<tokio::sync::OwnedSemaphorePermit>>) -> Body
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        Body::new(body::ResponseBody::new(body, self.idle, grpc, self.route.clone(), permit))
    }

    fn failed(&self, failure: Failure, error: &dyn std::fmt::Display) -> SendError {
        crate::metrics::upstream_failure(&self.route, failure.as_str());
        tracing::warn!(route = %self.route, kind = failure.as_str(), error = %error, "upstream request failed");
        SendError {
            rejection: failure.rejection(),
            failure: Some(failure),
            reason: format!("upstream {}: {error}", failure.as_str()),
        }
    }
}

/// Joins an upgraded client connection to the upgraded upstream one, both
/// ways, until either side closes. `_permit` keeps the upstream connection
/// counted against `max_connections` meanwhile.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    route: Arc<str>,
    _permit: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(%route, error = %e, "upgrade failed");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(%route, bytes_up = up, bytes_down = down, "upgraded connection closed"),
        Err(e) => tracing::debug!(%route, error = %e, "upgraded connection ended with an error"),
    }
}
