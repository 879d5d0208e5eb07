//! The admin listener: Prometheus metrics, the loaded policy components and
//! a reload trigger. Separate from the main listener and unauthenticated, so
//! it binds loopback by default.

use std::path::PathBuf;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::server::Gateway;

/// The admin routes: `GET /metrics` (Prometheus text), `GET /admin/plugins`
/// and `POST /admin/reload` (reload the policy from `config_path`).
pub fn router(gateway: Gateway, config_path: PathBuf) -> Router {
    let reloader = gateway.clone();
    Router::new()
        .route(
            "/admin/reload",
            post(move || {
                let (gateway, path) = (reloader.clone(), config_path.clone());
                async move {
                    match crate::reload::reload(&gateway, &path).await {
                        Ok(generation) => {
                            crate::metrics::reload("success");
                            (StatusCode::OK, axum::Json(serde_json::json!({ "generation": generation })))
                        }
                        Err(error) => {
                            // `reload` logged the rejection and what keeps serving.
                            crate::metrics::reload("failure");
                            (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(serde_json::json!({ "error": error })))
                        }
                    }
                }
            }),
        )
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
                    let bindings = policy.bindings();
                    let plugins: Vec<_> = policy
                        .plugins()
                        .iter()
                        .map(|l| {
                            let p = &l.plugin;
                            let bound: Vec<_> = bindings
                                .iter()
                                .filter_map(|b| {
                                    let as_shadow = b.shadow.as_deref() == Some(p.name());
                                    (b.plugin == p.name() || as_shadow).then(
                                        || serde_json::json!({ "role": b.role, "scope": b.scope, "shadow": as_shadow }),
                                    )
                                })
                                .collect();
                            let disagreements: u64 = bindings
                                .iter()
                                .filter(|b| b.shadow.as_deref() == Some(p.name()))
                                .filter_map(|b| b.shadow_counts.map(|c| c.disagreements))
                                .sum();
                            let last_error =
                                p.last_error().map(|(error, at)| serde_json::json!({ "error": error, "at_unix": at }));
                            serde_json::json!({
                                "name": p.name(),
                                "source": l.source,
                                "sha256": p.sha256(),
                                "wit": crate::plugins::WIT_PACKAGE,
                                "exports": p.exports().iter().map(|i| i.wit_name()).collect::<Vec<_>>(),
                                "bindings": bound,
                                "loaded_at_unix": l.loaded_at_unix,
                                "golden_cases": l.golden_cases,
                                "last_error": last_error,
                                "shadow_disagreements": disagreements,
                            })
                        })
                        .collect();
                    let status = gateway.reload_status();
                    axum::Json(serde_json::json!({
                        "generation": policy.generation(),
                        "reload": status,
                        "plugins": plugins,
                        "bindings": bindings,
                    }))
                    .into_response()
                }
            }),
        )
}

/// Serves the admin routes on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, gateway: Gateway, config_path: PathBuf) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "admin listener (metrics, plugins)");
    axum::serve(listener, router(gateway, config_path)).await
}
