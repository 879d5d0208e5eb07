//! One connection of the listener, served until it ends, times out, is
//! evicted or the listener closes it.

use super::*;

/// What every connection of a listener shares.
pub(super) struct ConnContext {
    pub(super) builder: auto::Builder<TokioExecutor>,
    pub(super) front: crate::server::front::Front,
    pub(super) http1: Http1Config,
    pub(super) timeouts: Timeouts,
    /// Every connection's I/O, which an upgraded tunnel keeps after hyper
    /// has let go of the connection.
    pub(super) live: Arc<LiveIo>,
}

impl ConnContext {
    /// Serves one connection until it ends, times out, is evicted, or the
    /// listener shuts down (then gracefully).
    pub(super) async fn serve<S>(
        &self,
        io: S,
        peer: SocketAddr,
        slot: Slot,
        mut stopping: tokio::sync::watch::Receiver<Stage>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = slot.activity().clone();
        let verdict = Arc::new(Verdict::default());
        let service = {
            let (verdict, activity, front) = (verdict.clone(), activity.clone(), self.front.clone());
            let stage = stopping.clone();
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let in_flight = activity.begin();
                let refused = refusal(&req, &verdict, peer);
                let http2 = req.version() == Version::HTTP_2;
                if http2 && *stage.borrow() >= Stage::Draining {
                    // The connection loop sends its GOAWAY.
                    activity.wake();
                }
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                let responding: crate::server::front::Responding = match refused {
                    Some(response) => Box::pin(std::future::ready(response)),
                    None => front.call(req),
                };
                let stage = stage.clone();
                async move {
                    let mut response = responding.await;
                    if !http2
                        && *stage.borrow() >= Stage::Draining
                        && response.status() != StatusCode::SWITCHING_PROTOCOLS
                    {
                        // Draining: the client opens its next call elsewhere.
                        response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, std::convert::Infallible>(response.map(|body| Tracked::new(body, in_flight)))
                }
            })
        };
        let io = Inspected::new(io, &self.http1, verdict).with_activity(activity.clone());
        let io = TokioIo::new(Held::new(io, &self.live));
        let conn = self.builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let mut grace_until = None;
        let mut shutting_down = false;
        let mut watching = true;
        loop {
            if !shutting_down && activity.is_http2() && *stopping.borrow() >= Stage::Draining {
                // Draining: GOAWAY, so the client opens new streams
                // elsewhere and the ones in flight finish.
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            if shutting_down && grace_until.is_none() && activity.is_idle() {
                // After GOAWAY, an HTTP/2 client that never acknowledges
                // would hold the drain: bounded like an idle close.
                grace_until = Some(Instant::now() + CLOSE_GRACE);
            }
            let wake = match grace_until {
                Some(until) => until,
                None => activity.next(&self.timeouts).0,
            };
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = activity.poked() => {
                    if activity.is_evicted() {
                        tracing::debug!(%peer, "closed an idle connection to make room for a new one");
                        return;
                    }
                }
                changed = stopping.changed(), if watching => {
                    let stage = if changed.is_ok() { *stopping.borrow_and_update() } else { Stage::Closing };
                    watching = stage < Stage::Closing;
                    match stage {
                        // HTTP/2 is handled at the top of the loop;
                        // HTTP/1.1 responses say `Connection: close`.
                        Stage::Serving | Stage::Draining => {}
                        Stage::Stopping => {
                            // Not accepting: an HTTP/1.1 connection (or one
                            // not yet known) without a request in flight has
                            // nothing to finish, a slow head included; the
                            // rest finish theirs.
                            if activity.is_idle() && !activity.is_http2() {
                                return;
                            }
                            if !shutting_down {
                                shutting_down = true;
                                conn.as_mut().graceful_shutdown();
                            }
                        }
                        Stage::Closing => {
                            tracing::debug!(%peer, "closing a connection still busy after the grace period");
                            return;
                        }
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    if grace_until.is_some() {
                        return;
                    }
                    // The state may have changed since the deadline was armed.
                    let (due, reason) = activity.next(&self.timeouts);
                    let Some(reason) = reason.filter(|_| due <= Instant::now()) else { continue };
                    crate::metrics::connection_closed(reason.label());
                    tracing::debug!(%peer, reason = reason.label(), "closing the connection");
                    if reason == Reason::Idle && activity.is_http2() {
                        // GOAWAY first, so the client knows no stream was lost.
                        conn.as_mut().graceful_shutdown();
                        grace_until = Some(Instant::now() + CLOSE_GRACE);
                    } else {
                        return;
                    }
                }
            }
        }
    }
}
