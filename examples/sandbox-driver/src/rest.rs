//! A small REST/JSON facade over the same [`Store`], for curl users.
//!
//! | method   | path                  | gRPC equivalent  |
//! |----------|-----------------------|------------------|
//! | `GET`    | `/v1/sandboxes`       | `ListSandboxes` (`?tenant=` filters) |
//! | `POST`   | `/v1/sandboxes`       | `CreateSandbox` (`{"name", "image"}`) |
//! | `GET`    | `/v1/sandboxes/{id}`  | `GetSandbox`     |
//! | `DELETE` | `/v1/sandboxes/{id}`  | `DeleteSandbox`  |
//! | `GET`    | `/v1/config`          | `GetConfig`      |
//! | `PUT`    | `/v1/config`          | `UpdateConfig` (`{"max_sandboxes", "default_image"}`) |
//! | `GET`    | `/v1/caller`          | `GetCaller`      |
//! | `GET`    | `/v1/healthz`         | gRPC health      |
//!
//! Errors are `{"error": {"code": "NOT_FOUND", "message": "..."}}` with the
//! matching HTTP status (404, 429, 400).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use wasmgate_proto::sandbox::{Caller, DriverConfig, Sandbox, SandboxState};

use crate::state::{Origin, Store, StoreError, caller_from_headers};

/// Builds the REST router over a shared store.
pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/v1/sandboxes", get(list).post(create))
        .route("/v1/sandboxes/{id}", get(get_one).delete(delete))
        .route("/v1/config", get(get_config).put(put_config))
        .route("/v1/caller", get(caller))
        .route("/v1/healthz", get(healthz))
        .with_state(store)
}

/// JSON form of a [`Sandbox`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxJson {
    /// Sandbox id (`sbx-…`).
    pub id: String,
    /// Human-chosen name.
    pub name: String,
    /// Owning tenant, from `x-wasmgate-tenant` at creation.
    pub tenant: String,
    /// Image the sandbox runs.
    pub image: String,
    /// `RUNNING` or `DELETED`.
    pub state: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Creating subject, from `x-wasmgate-subject`.
    pub created_by: String,
}

impl From<Sandbox> for SandboxJson {
    fn from(s: Sandbox) -> Self {
        let state = match SandboxState::try_from(s.state) {
            Ok(SandboxState::Running) => "RUNNING",
            Ok(SandboxState::Deleted) => "DELETED",
            _ => "UNSPECIFIED",
        };
        Self {
            id: s.id,
            name: s.name,
            tenant: s.tenant,
            image: s.image,
            state: state.to_owned(),
            created_at_ms: s.created_at_ms,
            created_by: s.created_by,
        }
    }
}

/// Body of `POST /v1/sandboxes`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateBody {
    /// Sandbox name (required).
    pub name: String,
    /// Image; the configured default when absent or empty.
    #[serde(default)]
    pub image: String,
}

/// JSON form of [`DriverConfig`], the body of `GET`/`PUT /v1/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigJson {
    /// Most sandboxes that may exist at once.
    pub max_sandboxes: u32,
    /// Image used when a create request names none.
    pub default_image: String,
}

/// JSON form of [`Caller`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerJson {
    /// Every `x-wasmgate-*` header received.
    pub identity_headers: BTreeMap<String, String>,
    /// Whether an `authorization` header reached the driver.
    pub authorization_present: bool,
    /// Lowercase names of all headers received, sorted.
    pub header_names: Vec<String>,
}

impl From<Caller> for CallerJson {
    fn from(c: Caller) -> Self {
        Self {
            identity_headers: c.identity_headers.into_iter().collect(),
            authorization_present: c.authorization_present,
            header_names: c.header_names,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    tenant: String,
}

/// A [`StoreError`] rendered as a JSON error response.
#[derive(Debug)]
struct ApiError(StoreError);

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match self.0 {
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            StoreError::ResourceExhausted(_) => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
            StoreError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        };
        error_response(status, code, &self.0.to_string())
    }
}

/// Renders `{"error": {"code", "message"}}` with `status`.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, Json(body)).into_response()
}

async fn list(State(store): State<Arc<Store>>, Query(q): Query<ListQuery>) -> Json<serde_json::Value> {
    let sandboxes: Vec<SandboxJson> = store.list(&q.tenant).await.into_iter().map(Into::into).collect();
    Json(serde_json::json!({ "sandboxes": sandboxes }))
}

async fn create(
    State(store): State<Arc<Store>>,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, Json<SandboxJson>), ApiError> {
    let origin = Origin::from_headers(&headers);
    let sandbox = store.create(&body.name, &body.image, &origin).await?;
    tracing::info!(id = %sandbox.id, tenant = %sandbox.tenant, "created sandbox (REST)");
    Ok((StatusCode::CREATED, Json(sandbox.into())))
}

async fn get_one(State(store): State<Arc<Store>>, Path(id): Path<String>) -> Result<Json<SandboxJson>, ApiError> {
    Ok(Json(store.get(&id).await?.into()))
}

async fn delete(State(store): State<Arc<Store>>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let sandbox = store.delete(&id).await?;
    tracing::info!(id = %sandbox.id, "deleted sandbox (REST)");
    Ok(Json(serde_json::json!({ "deleted": true })))
}

async fn get_config(State(store): State<Arc<Store>>) -> Json<ConfigJson> {
    let c = store.config().await;
    Json(ConfigJson { max_sandboxes: c.max_sandboxes, default_image: c.default_image })
}

async fn put_config(
    State(store): State<Arc<Store>>,
    Json(body): Json<ConfigJson>,
) -> Result<Json<ConfigJson>, ApiError> {
    let c =
        store.set_config(DriverConfig { max_sandboxes: body.max_sandboxes, default_image: body.default_image }).await?;
    Ok(Json(ConfigJson { max_sandboxes: c.max_sandboxes, default_image: c.default_image }))
}

async fn caller(headers: HeaderMap) -> Json<CallerJson> {
    Json(caller_from_headers(&headers).into())
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "SERVING" }))
}
