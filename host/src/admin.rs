//! The admin listeners: Prometheus metrics, the loaded policy components,
//! the gateway's status, and a reload trigger.
//!
//! Read-only endpoints (`GET /metrics`, `GET /admin/plugins`,
//! `GET /admin/status`) are served on `admin.listen`; the mutating one
//! (`POST /admin/reload`) on `admin.control_listen` when it is set, else on
//! `admin.listen` too. With `admin.require_scope` a mutating call needs a
//! bearer token the gateway's own authentication verifies and whose
//! principal has that scope ([`Gateway::authorize_admin`]): 401 without a
//! valid one, 403 without the scope. Separate from the main listener; the
//! read-only endpoints are unauthenticated, so `listen` binds loopback by
//! default.

use std::path::PathBuf;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::config::AdminConfig;
use crate::server::Gateway;
use crate::tasks::Tasks;

/// Binds the admin listener (and the control listener, if configured) and
/// serves them on `tasks` until they stop.
pub async fn start(cfg: &AdminConfig, tasks: &Tasks, gateway: Gateway, config_path: PathBuf) -> std::io::Result<()> {
    let bind = |addr: std::net::SocketAddr, what: &'static str| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind the {what} on {addr}: {e}")))
    };
    let control = control_router(gateway.clone(), config_path, cfg.require_scope.clone());
    let (main, control) = match cfg.control_listen {
        None => (read_only_router(gateway).merge(control), None),
        Some(addr) => (read_only_router(gateway), Some((bind(addr, "admin control listener").await?, control))),
    };
    let listener = bind(cfg.listen, "admin listener").await?;
    let authenticated = cfg.require_scope.is_some();
    let what = if control.is_some() { "metrics, plugins, status" } else { "metrics, plugins, status, reload" };
    tracing::info!(address = %listener.local_addr()?, serves = what, "admin listener");
    tasks.spawn("admin listener", async move {
        if let Err(e) = axum::serve(listener, main).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });
    if let Some((listener, router)) = control {
        tracing::info!(address = %listener.local_addr()?, authenticated, "admin control listener (reload)");
        tasks.spawn("admin control listener", async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "admin control listener stopped");
            }
        });
    }
    Ok(())
}

/// The mutating routes: `POST /admin/reload` (reload the policy from
/// `config_path`), behind `require_scope` when given.
pub fn control_router(gateway: Gateway, config_path: PathBuf, require_scope: Option<String>) -> Router {
    Router::new().route(
        "/admin/reload",
        post(move |headers: HeaderMap| {
            let (gateway, path, scope) = (gateway.clone(), config_path.clone(), require_scope.clone());
            async move {
                if let Some(scope) = &scope {
                    match gateway.authorize_admin(&headers, scope).await {
                        Ok(principal) => {
                            tracing::info!(subject = %principal.subject, scope = %scope, "admin reload requested");
                        }
                        Err(rejection) => {
                            tracing::warn!(outcome = rejection.outcome(), scope = %scope, "admin reload refused");
                            return rejection.into_response(false);
                        }
                    }
                }
                reload(&gateway, &path).await
            }
        }),
    )
}

async fn reload(gateway: &Gateway, path: &std::path::Path) -> Response {
    match crate::reload::reload(gateway, path).await {
        Ok(generation) => {
            crate::metrics::reload("success");
            (StatusCode::OK, axum::Json(serde_json::json!({ "generation": generation }))).into_response()
        }
        Err(error) => {
            // `reload` logged the rejection and what keeps serving.
            crate::metrics::reload("failure");
            (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(serde_json::json!({ "error": error }))).into_response()
        }
    }
}

/// The read-only routes: `GET /metrics` (Prometheus text),
/// `GET /admin/plugins` and `GET /admin/status`.
pub fn read_only_router(gateway: Gateway) -> Router {
    let status_gateway = gateway.clone();
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
            "/admin/status",
            get(move || {
                let gateway = status_gateway.clone();
                async move { axum::Json(status(&gateway)) }
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

/// `GET /admin/status`: readiness, whether shutdown started, the policy
/// generation, the version, the uptime and the reload status.
fn status(gateway: &Gateway) -> serde_json::Value {
    serde_json::json!({
        "ready": gateway.ready(),
        "draining": gateway.draining(),
        "generation": gateway.policy().generation(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": gateway.uptime().as_secs(),
        "workers": tokio::runtime::Handle::current().metrics().num_workers(),
        "reload": gateway.reload_status(),
    })
}
