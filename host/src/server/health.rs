//! `grpc.health.v1.Health`, served by the gateway itself on its main
//! listener, before routing and unauthenticated (like `/healthz` and
//! `/readyz`): no route can shadow it. `Check` and `Watch` for the service
//! `""` or `wasmgate` answer the gateway's readiness ([`super::Gateway::ready`]):
//! `SERVING`, and `NOT_SERVING` while not ready or shutting down. Other
//! services are unknown (`NOT_FOUND` for `Check`, `SERVICE_UNKNOWN` for
//! `Watch`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use super::State;

/// The service names that report the gateway's readiness.
const SERVICES: [&str; 2] = ["", "wasmgate"];

/// How often a `Watch` looks at readiness besides the shutdown signal
/// (provider keys and driver health change on their own).
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The gRPC service the gateway serves itself.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// Says at start which routes match `grpc.health.v1.Health`: the gateway
/// answers those calls itself, so the route never sees them.
pub(super) fn warn_about_shadowed_routes(routes: &[crate::config::RouteConfig]) {
    use crate::config::RouteMatch;
    for r in routes {
        let shadowed = match &r.matches {
            RouteMatch::GrpcService(s) => s == HEALTH_SERVICE,
            RouteMatch::PathPrefix(p) => p.trim_start_matches('/').starts_with(HEALTH_SERVICE),
        };
        if shadowed {
            tracing::warn!(
                route = %r.name,
                "the gateway serves {HEALTH_SERVICE} itself (its own readiness), before routing: calls to it never \
                 reach this route's upstream"
            );
        }
    }
}

/// The `grpc.health.v1.Health` service over the gateway's state.
pub(super) fn service(state: Arc<State>) -> HealthServer<GatewayHealth> {
    HealthServer::new(GatewayHealth { state })
}

/// Answers health checks from the gateway's readiness.
#[derive(Debug, Clone)]
pub(super) struct GatewayHealth {
    state: Arc<State>,
}

fn status(state: &State, service: &str) -> ServingStatus {
    if !SERVICES.contains(&service) {
        ServingStatus::ServiceUnknown
    } else if state.is_ready() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: status.into() }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Health for GatewayHealth {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        match status(&self.state, &request.get_ref().service) {
            ServingStatus::ServiceUnknown => Err(tonic::Status::not_found("unknown service")),
            s => Ok(tonic::Response::new(answer(s))),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let service = request.into_inner().service;
        let state = self.state.clone();
        let draining = state.draining.subscribe();
        let stream = futures::stream::unfold((None, draining), move |(last, mut draining)| {
            let (state, service) = (state.clone(), service.clone());
            async move {
                loop {
                    let now = status(&state, &service);
                    if Some(now) != last {
                        return Some((Ok(answer(now)), (Some(now), draining)));
                    }
                    tokio::select! {
                        changed = draining.changed() => {
                            if changed.is_err() {
                                tokio::time::sleep(WATCH_EVERY).await;
                            }
                        }
                        () = tokio::time::sleep(WATCH_EVERY) => {}
                    }
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}
