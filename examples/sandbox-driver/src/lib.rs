//! A sample sandbox compute driver for wasmgate.
//!
//! It serves, on one Unix domain socket and one HTTP server (HTTP/1.1 and
//! cleartext HTTP/2 with prior knowledge, auto-detected per connection):
//!
//! - the gRPC `sandbox.v1.SandboxService` ([`grpc::SandboxGrpc`]),
//! - standard gRPC health `grpc.health.v1.Health`, reporting `SERVING` for
//!   `""` and `"sandbox.v1.SandboxService"`,
//! - a REST/JSON facade under `/v1/` ([`rest`]).
//!
//! All state is in memory ([`state::Store`]).

use std::fs::Permissions;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::UnixListener;
use tonic_health::ServingStatus;
use wasmgate_proto::sandbox::sandbox_service_server::SandboxServiceServer;

pub mod grpc;
pub mod rest;
pub mod state;

pub use state::Store;

/// How long in-flight requests may take to finish after shutdown is
/// requested, before their connections are dropped.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// gRPC service name reported `SERVING` by the health service.
pub const SANDBOX_SERVICE_NAME: &str = "sandbox.v1.SandboxService";

/// Binds a Unix listener at `path`, first removing a stale socket file left
/// there, and restricts the socket to owner and group (mode `0660`).
///
/// Refuses to remove anything at `path` that is not a socket. Must be called
/// within a Tokio runtime.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Builds the combined router: gRPC sandbox service, gRPC health, and the
/// REST facade, all over `store`.
///
/// Unknown paths get gRPC `UNIMPLEMENTED` when the request is gRPC
/// (`content-type: application/grpc…`), else a JSON 404.
pub async fn router(store: Arc<Store>) -> Router {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    health.set_service_status(SANDBOX_SERVICE_NAME, ServingStatus::Serving).await;
    tonic::service::Routes::new(SandboxServiceServer::new(grpc::SandboxGrpc::new(store.clone())))
        .add_service(health_service)
        .into_axum_router()
        .merge(rest::router(store))
        .fallback(fallback)
}

async fn fallback(req: Request<Body>) -> Response {
    let is_grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if is_grpc {
        tonic::Status::unimplemented(format!("{} is not implemented", req.uri().path()))
            .into_http::<Body>()
            .into_response()
    } else {
        rest::error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("no route for {} {}", req.method(), req.uri().path()),
        )
    }
}

/// Serves a fresh, empty [`Store`] on `listener` until `shutdown` completes.
///
/// See [`serve_with_store`].
pub async fn serve(listener: UnixListener, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
    serve_with_store(listener, Arc::new(Store::new()), shutdown).await
}

/// Serves [`router`] over `store` on `listener` (HTTP/1.1 and HTTP/2 prior
/// knowledge) until `shutdown` completes; then stops accepting, ends open
/// watch streams, and waits up to [`DRAIN_TIMEOUT`] for in-flight requests.
///
/// Per-connection errors are logged, not returned; the socket file is left
/// for the caller to remove.
pub async fn serve_with_store(
    listener: UnixListener,
    store: Arc<Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(store.clone()).await;
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // E.g. out of file descriptors: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(app.clone());
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining connections");
    store.close();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("drain timeout; dropping remaining connections");
        }
    }
    Ok(())
}
