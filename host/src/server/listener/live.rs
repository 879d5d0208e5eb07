//! Connections' I/O counted while alive, so the drain waits for upgraded
//! tunnels that outlive their connection task.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

/// Counts connections' I/O alive: a connection's, or an upgraded tunnel's
/// that outlives its connection task.
#[derive(Debug, Default)]
pub(super) struct LiveIo {
    count: std::sync::atomic::AtomicUsize,
    none: tokio::sync::Notify,
}

impl LiveIo {
    pub(super) fn new() -> Arc<Self> {
        Arc::default()
    }

    pub(super) fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves once no connection's I/O is alive.
    pub(super) async fn drained(&self) {
        loop {
            let notified = self.none.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A connection's I/O, counted in [`LiveIo`] until dropped.
pub(super) struct Held<S> {
    io: S,
    live: Arc<LiveIo>,
}

impl<S> Held<S> {
    pub(super) fn new(io: S, live: &Arc<LiveIo>) -> Self {
        live.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self { io, live: live.clone() }
    }
}

impl<S> Drop for Held<S> {
    fn drop(&mut self) {
        if self.live.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            self.live.none.notify_waiters();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
