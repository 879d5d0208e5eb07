//! The main listener: one TCP socket serving HTTP/1.1 and HTTP/2 (h2c with
//! prior knowledge on cleartext, ALPN on TLS), with graceful shutdown.
//!
//! Limits come from `server:` ([`ServerConfig`]). HTTP/1.1 framing is
//! checked on the raw bytes ([`framing`]) and a connection that carried a
//! malformed head gets 400/431 and is closed before anything is routed;
//! HTTP/2 abuse (rapid reset, CONTINUATION floods, malformed header blocks)
//! is bounded by h2's limits, set from `server.http2`. How many connections
//! may be open and how long one may stay silent, mid-head or idle is
//! [`connections`]' business; at start the soft open-file limit is raised to
//! the hard one.
//!
//! Shutdown ([`Drain`]) goes in stages: when the shutdown future resolves
//! the listener keeps accepting and serving for the drain delay, every
//! HTTP/1.1 response then says `Connection: close` and HTTP/2 connections
//! get a GOAWAY, so clients move to another instance; then it stops
//! accepting, idle connections close, and calls and streams in flight
//! (upgraded tunnels included) get the grace period; the rest are closed.

mod accept;
mod conn;
mod connections;
mod framing;
mod live;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::{Http1Config, ServerConfig};
use accept::{connection_limit, is_fd_limit, is_per_connection, raise_fd_limit};
use conn::ConnContext;
use connections::{Admission, CLOSING_PACE, Connections, Reason, Slot, Timeouts, Tracked};
use framing::{Inspected, Verdict};
use live::{Held, LiveIo};

/// PEM certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// A bound listener.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("addr", &self.tcp.local_addr().ok()).field("tls", &self.tls.is_some()).finish()
    }
}

impl Listener {
    /// Binds `addr`, with TLS when `tls` is given.
    pub async fn bind(addr: SocketAddr, tls: Option<&TlsFiles>) -> Result<Self, super::StartError> {
        let tls = tls.map(acceptor).transpose()?;
        let tcp = listen(addr).map_err(|e| super::StartError::Listen(format!("cannot bind {addr}: {e}")))?;
        Ok(Self { tcp, tls })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Whether TLS is on.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` resolves, then drains as `drain` says;
    /// when `abort` resolves, every connection closes at once.
    pub(super) async fn serve(
        self,
        front: super::front::Front,
        limits: &ServerConfig,
        drain: Drain,
        shutdown: impl Future<Output = ()> + Send,
        abort: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let fd_limit = raise_fd_limit();
        let max = connection_limit(limits.max_connections, fd_limit);
        let timeouts = Timeouts::new(
            limits.first_byte_timeout(),
            limits.http1.header_read_timeout(),
            limits.http1.idle_timeout(),
            limits.http2.idle_timeout(),
        );
        let connections = Connections::new(max, timeouts);
        let live = LiveIo::new();
        let ctx = Arc::new(ConnContext {
            builder: builder(limits),
            front,
            http1: limits.http1.clone(),
            timeouts,
            live: live.clone(),
        });
        let (stage, stopping) = tokio::sync::watch::channel(Stage::Serving);
        // Resolves when accepting stops: the drain delay after `shutdown`.
        let stop_accepting = async {
            shutdown.await;
            stage.send_replace(Stage::Draining);
            tracing::info!(
                drain_delay_ms = millis(drain.delay),
                open = connections.live(),
                "draining: still accepting and serving for the drain delay; responses now close their connections"
            );
            tokio::time::sleep(drain.delay).await;
        };
        tokio::pin!(stop_accepting);
        tokio::pin!(abort);
        let mut aborted = false;
        let mut accept_failures = Throttled::new(LOG_EVERY);
        let mut refusals = Throttled::new(LOG_EVERY);
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok(a) => {
                        backoff = ACCEPT_BACKOFF_MIN;
                        a
                    }
                    Err(e) if is_per_connection(&e) => continue,
                    Err(e) => {
                        // Out of file descriptors and the like: the pending
                        // connection stays queued and accept fails again at
                        // once, so back off (never a hot loop), make room if
                        // a connection is idle, and log at most every 5 s.
                        let fd_limit = is_fd_limit(&e);
                        crate::metrics::accept_error(if fd_limit { "fd_limit" } else { "other" });
                        if let Some(suppressed) = accept_failures.ready() {
                            tracing::warn!(error = %e, suppressed, open = connections.live(), "accept failed; backing off");
                        }
                        if fd_limit && connections.evict_one() {
                            crate::metrics::connection_closed("evicted");
                        }
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = &mut stop_accepting => break,
                            () = &mut abort => {
                                aborted = true;
                                break;
                            }
                        }
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        continue;
                    }
                },
                () = &mut stop_accepting => break,
                () = &mut abort => {
                    aborted = true;
                    break;
                }
            };
            let slot = match connections.admit() {
                Admission::Admitted(slot) => slot,
                Admission::Evicted(slot) => {
                    crate::metrics::connection_closed("evicted");
                    // Accept no faster than evicted connections close, so
                    // descriptors stay near the limit.
                    let paced = connections.closing_below(CLOSING_PACE);
                    let _ = tokio::time::timeout(PACE_WAIT, paced).await;
                    slot
                }
                Admission::Refused => {
                    // Accept and close at once: the client learns now, not
                    // after a queue timeout.
                    crate::metrics::connection_closed("refused");
                    if let Some(suppressed) = refusals.ready() {
                        tracing::warn!(
                            %peer,
                            max_connections = connections.max(),
                            suppressed,
                            "connection limit reached and every connection busy; refusing new connections"
                        );
                    }
                    drop(stream);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let ctx = ctx.clone();
            let stopping = stopping.clone();
            match &self.tls {
                None => {
                    tokio::spawn(async move { ctx.serve(stream, peer, slot, stopping).await });
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let activity = slot.activity().clone();
                        let mut stopped = stopping.clone();
                        let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                        let tls = tokio::select! {
                            r = handshake => match r {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    crate::metrics::connection_closed("tls_handshake_timeout");
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            },
                            () = activity.evicted() => return,
                            _ = stopped.wait_for(|s| *s >= Stage::Stopping) => return,
                        };
                        activity.start_http();
                        ctx.serve(tls, peer, slot, stopping).await;
                    });
                }
            }
        }
        drop(self.tcp);
        stage.send_replace(Stage::Stopping);
        tracing::info!(
            grace_ms = millis(drain.grace),
            open = connections.live(),
            "stopped accepting; calls and streams in flight have the grace period to finish"
        );
        let drained = async {
            connections.drained().await;
            live.drained().await;
        };
        // Told to stop now: nothing waits.
        let finished = !aborted
            && tokio::select! {
                r = tokio::time::timeout(drain.grace, drained) => r.is_ok(),
                () = &mut abort => {
                    aborted = true;
                    false
                }
            };
        if !finished {
            tracing::warn!(
                grace_ms = millis(drain.grace),
                open = connections.live(),
                tunnels_and_connections = live.count(),
                "{}",
                if aborted {
                    "told to stop now; closing every connection"
                } else {
                    "still open after the grace period; closing them"
                }
            );
            stage.send_replace(Stage::Closing);
            // The connection tasks return at once; upgraded tunnels end
            // with the process.
            let _ = tokio::time::timeout(CLOSE_WAIT, connections.drained()).await;
        } else {
            tracing::info!("every connection finished");
        }
        Ok(())
    }
}

/// How long the accept loop waits at most for evicted connections to close.
const PACE_WAIT: Duration = Duration::from_millis(100);
/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP/2 connection closed for idleness may take to finish
/// after its GOAWAY.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long the listener waits for connection tasks to return once told to
/// close after the grace period.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Accept backoff on errors, doubling from the first to the second.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A repeated warning is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// How the listener stops once its shutdown future resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Drain {
    /// Accepting and serving go on this long (readiness is already off).
    pub delay: Duration,
    /// Then calls and streams in flight get this long to finish.
    pub grace: Duration,
}

/// Where the listener is in its life; only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Accepting and serving.
    Serving,
    /// Shutting down, still accepting: HTTP/1.1 responses close their
    /// connection, HTTP/2 connections get a GOAWAY.
    Draining,
    /// Not accepting: idle connections close, the rest finish in the grace
    /// period.
    Stopping,
    /// The grace period is over: every connection closes now.
    Closing,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A listening socket with a deep accept queue (the kernel caps it at
/// `net.core.somaxconn`), so a burst of connections waits there instead of
/// being dropped and retried by its clients a second later.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The accept queue's length.
const LISTEN_BACKLOG: u32 = 4096;

/// hyper's connection builder with the configured limits.
fn builder(limits: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let (h1, h2) = (&limits.http1, &limits.http2);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The listener times heads and idle keep-alives itself (from the
        // connection's start, protocol detection included); hyper's own
        // timer, which starts when hyper begins a head, is only a backstop
        // that never fires first.
        .header_read_timeout(h1.header_read_timeout() + h1.idle_timeout() + Duration::from_secs(1))
        // hyper answers 431 once this much is buffered without a complete head.
        .max_buf_size(h1.max_request_head_bytes)
        .max_headers(h1.max_headers)
        .ignore_invalid_headers(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(h2.max_concurrent_streams)
        .max_pending_accept_reset_streams(h2.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(h2.max_local_error_reset_streams)
        .max_header_list_size(h2.max_header_list_size)
        .keep_alive_interval(Some(h2.keep_alive_interval()))
        .keep_alive_timeout(h2.keep_alive_timeout());
    builder
}

/// A warning logged at most once per period, with how many were left out.
#[derive(Debug)]
struct Throttled {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn new(every: Duration) -> Self {
        Self { every, last: None, suppressed: 0 }
    }

    /// `Some(left out since the last one)` when it is time to log.
    fn ready(&mut self) -> Option<u64> {
        self.ready_at(Instant::now())
    }

    fn ready_at(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.duration_since(last) < self.every) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The answer to a request refused before routing: an HTTP/1.x request on a
/// connection whose bytes broke the framing rules (see [`framing`]), or an
/// HTTP/2 request without `:path` (h2 lets one through when `:authority` is
/// absent too).
fn refusal(req: &Request<Incoming>, verdict: &Verdict, peer: SocketAddr) -> Option<Response<Body>> {
    if req.version() == Version::HTTP_2 {
        if req.uri().path_and_query().is_none() && req.method() != Method::CONNECT {
            tracing::info!(%peer, "refused an HTTP/2 request without :path");
            return Some(refuse(StatusCode::BAD_REQUEST, false));
        }
        return None;
    }
    let violation = verdict.get()?;
    tracing::info!(%peer, reason = violation.reason(), "refused a malformed HTTP/1.1 request; closing the connection");
    Some(refuse(violation.status(), true))
}

fn refuse(status: StatusCode, close: bool) -> Response<Body> {
    let text = if status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE {
        "request header fields too large\n"
    } else {
        "bad request\n"
    };
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if close {
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, super::StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let err = |m: String| super::StartError::Listen(m);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| err(format!("cannot read {}: {e}", files.cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("bad certificate in {}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(err(format!("no certificate in {}", files.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| err(format!("bad key in {}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests;
