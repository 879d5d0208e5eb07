//! The admin listener: Prometheus metrics and the loaded policy components.
//! Separate from the main listener and unauthenticated, so it binds loopback
//! by default.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::server::Gateway;

/// The admin routes: `GET /metrics` (Prometheus text) and `GET /admin/plugins`.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    crate::metrics::render(),
                )
            }),
        )
        .route(
            "/admin/plugins",
            get(move || {
                let policy = gateway.policy();
                async move {
                    let plugins: Vec<_> = policy
                        .plugins()
                        .iter()
                        .map(|p| {
                            serde_json::json!({
                                "name": p.name(),
                                "sha256": p.sha256(),
                                "exports": p.exports().iter().map(|i| i.wit_name()).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    axum::Json(serde_json::json!({ "generation": policy.generation(), "plugins": plugins }))
                        .into_response()
                }
            }),
        )
}

/// Serves the admin routes on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, gateway: Gateway) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "admin listener (metrics, plugins)");
    axum::serve(listener, router(gateway)).await
}
