//! HTTP/2 upstream connections, aware of the peer's stream limit.
//!
//! hyper's pooled client keeps one HTTP/2 connection per upstream and, once
//! the peer's `SETTINGS_MAX_CONCURRENT_STREAMS` is reached, queues every
//! further call inside the connection until a stream ends: 200 long-lived
//! streams from one client stall every other call on the route. This pool
//! (on the `h2` crate, which reports the peer's limit) instead opens another
//! connection when every open one is full, up to `max_connections`; beyond
//! that up to `max_pending` calls wait for a free stream, and the rest are
//! refused at once.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;

/// Where the pool connects.
#[derive(Debug, Clone)]
pub enum Dial {
    /// A Unix socket.
    Unix(Arc<PathBuf>),
    /// A TCP `host:port`.
    Tcp(Arc<str>),
}

/// Why no stream could be had or the call failed before its head.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection could be made.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Every connection is full and so is the wait queue.
    #[error("every upstream connection carries all the streams its peer allows, and the wait queue is full")]
    Exhausted,
    /// The HTTP/2 layer failed.
    #[error(transparent)]
    H2(#[from] h2::Error),
}

#[derive(Debug)]
struct Conn {
    send: h2::client::SendRequest<Bytes>,
    streams: AtomicUsize,
    dead: Arc<AtomicBool>,
}

impl Conn {
    fn has_room(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
            && self.streams.load(Ordering::Acquire) < self.send.current_max_send_streams()
    }
}

#[derive(Debug, Default)]
struct Conns {
    open: Vec<Arc<Conn>>,
    connecting: usize,
}

/// The pool of one route's upstream.
#[derive(Debug)]
pub struct H2Pool {
    dial: Dial,
    conns: Mutex<Conns>,
    freed: Notify,
    waiting: AtomicUsize,
    max_connections: usize,
    max_pending: usize,
}

/// One stream slot on a connection, freed when the call is done with it
/// in both directions.
#[derive(Debug)]
struct Slot {
    conn: Arc<Conn>,
    pool: Arc<H2Pool>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.conn.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.pool.trim();
        }
        self.pool.freed.notify_waiters();
    }
}

impl H2Pool {
    /// A pool dialing `dial`.
    pub fn new(dial: Dial, max_connections: usize, max_pending: usize) -> Arc<Self> {
        Arc::new(Self {
            dial,
            conns: Mutex::default(),
            freed: Notify::new(),
            waiting: AtomicUsize::new(0),
            max_connections: max_connections.max(1),
            max_pending,
        })
    }

    /// Keeps at most one idle connection: the others a burst opened are
    /// dropped from the pool, and close once their last stream is gone.
    fn trim(&self) {
        let Ok(mut conns) = self.conns.lock() else { return };
        let mut idle_kept = false;
        conns.open.retain(|c| {
            if c.dead.load(Ordering::Acquire) {
                return false;
            }
            if c.streams.load(Ordering::Acquire) > 0 {
                return true;
            }
            !std::mem::replace(&mut idle_kept, true)
        });
    }

    async fn slot(self: &Arc<Self>) -> Result<Slot, PoolError> {
        let mut queued = false;
        let result = loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let dial = {
                let mut conns = self.conns.lock().map_err(|_| PoolError::Exhausted)?;
                conns.open.retain(|c| !c.dead.load(Ordering::Acquire));
                if let Some(conn) = conns.open.iter().find(|c| c.has_room()) {
                    conn.streams.fetch_add(1, Ordering::AcqRel);
                    break Ok(Slot { conn: conn.clone(), pool: self.clone() });
                }
                let can_dial = conns.open.len() + conns.connecting < self.max_connections;
                if can_dial {
                    conns.connecting += 1;
                }
                can_dial
            };
            if dial {
                let made = self.connect().await;
                let mut conns = self.conns.lock().map_err(|_| PoolError::Exhausted)?;
                conns.connecting -= 1;
                match made {
                    Ok(conn) => {
                        conn.streams.fetch_add(1, Ordering::AcqRel);
                        conns.open.push(conn.clone());
                        drop(conns);
                        self.freed.notify_waiters();
                        break Ok(Slot { conn, pool: self.clone() });
                    }
                    Err(e) => break Err(e),
                }
            }
            if !queued {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_pending {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(PoolError::Exhausted);
                }
                queued = true;
            }
            notified.await;
        };
        if queued {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        result
    }

    async fn connect(self: &Arc<Self>) -> Result<Arc<Conn>, PoolError> {
        let mut builder = h2::client::Builder::new();
        // Until the peer's SETTINGS arrive, assume the limit most servers
        // announce; the peer's own value replaces it.
        builder.initial_max_send_streams(100);
        let dead = Arc::new(AtomicBool::new(false));
        let send = match &self.dial {
            Dial::Unix(path) => {
                let io = UnixStream::connect(&**path).await.map_err(PoolError::Connect)?;
                let (send, conn) = builder.handshake::<_, Bytes>(io).await?;
                self.drive(conn, dead.clone());
                send
            }
            Dial::Tcp(hostport) => {
                let io = tokio::time::timeout(std::time::Duration::from_secs(5), TcpStream::connect(&**hostport))
                    .await
                    .map_err(|_| PoolError::Connect(std::io::ErrorKind::TimedOut.into()))?
                    .map_err(PoolError::Connect)?;
                let _ = io.set_nodelay(true);
                let (send, conn) = builder.handshake::<_, Bytes>(io).await?;
                self.drive(conn, dead.clone());
                send
            }
        };
        Ok(Arc::new(Conn { send, streams: AtomicUsize::new(0), dead }))
    }

    /// Runs a connection until it ends; then it takes no more streams.
    fn drive<T>(self: &Arc<Self>, mut conn: h2::client::Connection<T, Bytes>, dead: Arc<AtomicBool>)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let pool = Arc::downgrade(self);
        conn.set_target_window_size(4 << 20);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
            dead.store(true, Ordering::Release);
            if let Some(pool) = pool.upgrade() {
                pool.freed.notify_waiters();
            }
        });
    }

    /// Sends `req` on a stream of a connection with room, opening one when
    /// every connection is full.
    pub async fn send<B>(self: &Arc<Self>, req: Request<B>) -> Result<Response<ResponseBody>, PoolError>
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display + Send,
    {
        let slot = Arc::new(self.slot().await?);
        let (parts, body) = req.into_parts();
        let head = Request::from_parts(parts, ());
        let end_of_stream = body.is_end_stream();
        let mut send = slot.conn.send.clone().ready().await?;
        let (response, stream) = send.send_request(head, end_of_stream)?;
        if !end_of_stream {
            tokio::spawn(pump(body, stream, slot.clone()));
        }
        let response = response.await?;
        let (parts, recv) = response.into_parts();
        Ok(Response::from_parts(parts, ResponseBody { recv, data_done: false, _slot: slot }))
    }
}

/// Copies a request body onto its stream, as the peer's flow control allows.
async fn pump<B>(mut body: B, mut stream: h2::SendStream<Bytes>, _slot: Arc<Slot>)
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    loop {
        match body.frame().await {
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "request body failed; resetting the upstream stream");
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
            Some(Ok(frame)) => {
                let frame = match frame.into_data() {
                    Ok(mut data) => {
                        while !data.is_empty() {
                            stream.reserve_capacity(data.len());
                            let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                                Some(Ok(n)) => n,
                                _ => return,
                            };
                            let chunk = data.split_to(granted.min(data.len()));
                            if stream.send_data(chunk, false).is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                    Err(frame) => frame,
                };
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = stream.send_trailers(trailers);
                    return;
                }
            }
        }
    }
}

/// An upstream response body: data, then trailers, with flow-control
/// capacity handed back as the client reads.
#[derive(Debug)]
pub struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
    _slot: Arc<Slot>,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match this.recv.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => this.data_done = true,
            }
        }
        match this.recv.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}
