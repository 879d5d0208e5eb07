//! The main listener's service: the gateway's own endpoints through the
//! axum router, every other call straight into the pipeline.
//!
//! Only a path the router has a route for can reach one of the gateway's
//! own endpoints; every other path would fall through to the router's
//! fallback, which is the pipeline. Those calls skip the router (its path
//! lookup and its layers of boxed futures) and run the pipeline in one
//! boxed future, allocated once instead of moved through each layer.

use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Request, Response};
use tower::ServiceExt as _;

use super::State;
use super::pipeline;

/// A call's response, boxed.
pub(super) type Responding = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// The gRPC health service's path prefix (`/grpc.health.v1.Health/{method}`).
pub(super) const GRPC_HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// The router and, for the calls it would hand to its fallback anyway,
/// the pipeline.
#[derive(Clone)]
pub(crate) struct Front {
    router: Router,
    state: Arc<State>,
}

impl Front {
    pub(super) fn new(router: Router, state: Arc<State>) -> Self {
        Self { router, state }
    }

    /// Whether `path` may name one of the router's own routes: exactly
    /// `/healthz`, `/readyz` or the login settings, or a method of the
    /// gRPC health service. Anything else reaches the router's fallback.
    fn routed(path: &str) -> bool {
        matches!(path, "/healthz" | "/readyz" | crate::config::LOGIN_WELL_KNOWN_PATH)
            || path.starts_with(GRPC_HEALTH_PREFIX)
    }

    /// Answers one call.
    pub(super) fn call<B>(&self, req: Request<B>) -> Responding
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        if Self::routed(req.uri().path()) {
            let router = self.router.clone();
            Box::pin(async move {
                match router.oneshot(req.map(Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            })
        } else {
            Box::pin(pipeline::handle(self.state.clone(), req.map(Body::new)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Front;

    #[test]
    fn only_the_routers_own_paths_go_through_it() {
        for path in ["/healthz", "/readyz", crate::config::LOGIN_WELL_KNOWN_PATH, "/grpc.health.v1.Health/Check"] {
            assert!(Front::routed(path), "{path}");
        }
        for path in ["/", "/healthz/", "/healthz/x", "//healthz", "/HEALTHZ", "/grpc.health.v1.Health", "/api"] {
            assert!(!Front::routed(path), "{path}");
        }
    }
}
