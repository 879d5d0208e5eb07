//! The I/O wrapper that feeds every byte hyper reads to a [`Scanner`], and
//! the graceful close of a connection refused for a framing violation.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::super::connections::Activity;
use super::{Scanner, Verdict};
use crate::config::Http1Config;

/// How long, and how many bytes, a refused connection is read and
/// discarded after the response, so the client sees the response.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// A connection's I/O as hyper sees it, with every byte read also fed to a
/// [`Scanner`]; violations go to the shared [`Verdict`] before hyper gets
/// the bytes.
#[derive(Debug)]
pub(in super::super) struct Inspected<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// Always `Some` until dropped.
    io: Option<T>,
    scanner: Scanner,
    verdict: Arc<Verdict>,
    /// Told about every read, for the connection's timeouts.
    activity: Option<Arc<Activity>>,
    heads: u64,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Inspected<T> {
    pub(in super::super) fn new(io: T, limits: &Http1Config, verdict: Arc<Verdict>) -> Self {
        Self { io: Some(io), scanner: Scanner::new(limits), verdict, activity: None, heads: 0 }
    }

    /// Reports reads, head starts and completions to `activity`.
    pub(in super::super) fn with_activity(mut self, activity: Arc<Activity>) -> Self {
        self.activity = Some(activity);
        self
    }

    fn io(&mut self) -> io::Result<&mut T> {
        self.io.as_mut().ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Inspected<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(this.io()?).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if let Err(v) = this.scanner.feed(read) {
            this.verdict.set(v);
        }
        if let Some(activity) = &this.activity
            && !read.is_empty()
        {
            let heads = this.scanner.heads();
            activity.read(this.scanner.in_head(), heads != this.heads, this.scanner.is_http2());
            this.heads = heads;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Inspected<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().io()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().io()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().io()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().io()?).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Inspected<T> {
    fn drop(&mut self) {
        if self.verdict.get().is_some()
            && let Some(io) = self.io.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(linger(io));
        }
    }
}

/// Closes a refused connection gracefully: shut down the gateway's half,
/// then read and discard what the client still sends (bounded in time and
/// bytes), so that closing does not reset the connection before the client
/// has read the response.
async fn linger<T: AsyncRead + AsyncWrite + Unpin>(mut io: T) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        let _ = io.shutdown().await;
        let mut buf = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
