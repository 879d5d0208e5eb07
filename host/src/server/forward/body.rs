//! Bodies between the client and the upstream: an idle timeout in both
//! directions, a request size limit, and gRPC responses that end with
//! `grpc-status: 14` (UNAVAILABLE) when the upstream fails mid-stream,
//! where a plain reset would reach the client as INTERNAL.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why a body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// No frame for longer than the idle timeout.
    #[error("body idle for longer than {0:?}")]
    Idle(Duration),
    /// The request body is larger than the route allows.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// The other side failed.
    #[error(transparent)]
    Inner(Box<dyn std::error::Error + Send + Sync>),
}

/// An idle timer that restarts with every frame. `None`: no timeout.
#[derive(Debug)]
struct Idle {
    after: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl Idle {
    fn new(after: Option<Duration>) -> Option<Self> {
        after.map(|after| Self { after, sleep: Box::pin(tokio::time::sleep(after)) })
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.sleep.as_mut().poll(cx).is_ready()
    }

    fn reset(&mut self) {
        self.sleep.as_mut().reset(Instant::now() + self.after);
    }
}

/// The request body as forwarded: counted against the route's limit and
/// timed for idleness. Crossing the limit sets `too_large`, so the pipeline
/// can answer 413 whatever the upstream made of the cut-off body.
#[derive(Debug)]
pub struct RequestBody {
    inner: Body,
    idle: Option<Idle>,
    limit: u64,
    seen: u64,
    too_large: Arc<AtomicBool>,
}

impl RequestBody {
    /// Wraps `inner`; `limit` in bytes.
    pub fn new(inner: Body, idle: Option<Duration>, limit: u64, too_large: Arc<AtomicBool>) -> Self {
        Self { inner, idle: Idle::new(idle), limit, seen: 0, too_large }
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                if let Some(idle) = this.idle.as_mut()
                    && idle.poll_expired(cx)
                {
                    return Poll::Ready(Some(Err(BodyError::Idle(idle.after))));
                }
                Poll::Pending
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Inner(Box::new(e))))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(idle) = this.idle.as_mut() {
                    idle.reset();
                }
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if this.seen > this.limit {
                        this.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream's response body as relayed.
#[derive(Debug)]
pub struct ResponseBody<B> {
    inner: B,
    /// Held while the body streams: the connection it came on is in use.
    _permit: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
    idle: Option<Idle>,
    grpc: bool,
    done: bool,
    route: Arc<str>,
}

impl<B> ResponseBody<B> {
    /// Wraps `inner`; `grpc` turns a failure into UNAVAILABLE trailers.
    pub fn new(
        inner: B,
        idle: Option<Duration>,
        grpc: bool,
        route: Arc<str>,
        permit: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
    ) -> Self {
        Self { inner, _permit: permit, idle: Idle::new(idle), grpc, done: false, route }
    }

    fn fail(
        &mut self,
        kind: &'static str,
        error: &dyn std::fmt::Display,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        crate::metrics::upstream_failure(&self.route, kind);
        tracing::warn!(route = %self.route, kind, error = %error, "upstream body failed after the response head");
        if self.grpc {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("14"));
            trailers.insert("grpc-message", HeaderValue::from_static("upstream stream failed"));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(Some(Err(BodyError::Inner(error.to_string().into()))))
    }
}

impl<B> HttpBody for ResponseBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            if let Some(idle) = this.idle.as_mut()
                && idle.poll_expired(cx)
            {
                let after = idle.after;
                return this.fail("timeout", &BodyError::Idle(after));
            }
            return Poll::Pending;
        }
        match ready!(polled) {
            None => Poll::Ready(None),
            Some(Ok(frame)) => {
                if let Some(idle) = this.idle.as_mut() {
                    idle.reset();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => this.fail("reset", &e),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_request_body_past_the_limit_is_cut_off_and_flagged() {
        let flag = Arc::new(AtomicBool::new(false));
        let body = RequestBody::new(Body::from(vec![0u8; 100]), None, 99, flag.clone());
        assert!(matches!(body.collect().await, Err(BodyError::TooLarge(99))));
        assert!(flag.load(Ordering::Relaxed));
        let flag = Arc::new(AtomicBool::new(false));
        let body = RequestBody::new(Body::from(vec![0u8; 100]), None, 100, flag.clone());
        assert_eq!(body.collect().await.expect("within the limit").to_bytes().len(), 100);
        assert!(!flag.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_stalled_body_hits_the_idle_timeout() {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        tx.try_send(Ok(Frame::data(Bytes::from_static(b"head")))).expect("send");
        let inner = http_body_util::StreamBody::new(rx);
        let mut body = ResponseBody::new(inner, Some(Duration::from_millis(50)), true, Arc::from("r"), None);
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().expect("data"), Bytes::from_static(b"head"));
        // Nothing more arrives: after 50 ms a gRPC stream ends UNAVAILABLE.
        let last = body.frame().await.expect("a frame").expect("trailers");
        assert_eq!(last.trailers_ref().expect("trailers")["grpc-status"], "14");
        assert!(body.frame().await.is_none());
        drop(tx);
    }
}
