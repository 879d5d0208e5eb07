//! The `sandbox.v1.SandboxService` gRPC implementation.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use wasmgate_proto::sandbox::{
    Caller, CreateSandboxRequest, DeleteSandboxRequest, DeleteSandboxResponse, DriverConfig, GetCallerRequest,
    GetConfigRequest, GetSandboxRequest, ListSandboxesRequest, ListSandboxesResponse, Sandbox, UpdateConfigRequest,
    WatchSandboxesRequest, sandbox_service_server::SandboxService,
};

use crate::state::{EventStream, Origin, Store, caller_from_headers};

/// Serves [`SandboxService`] from a shared [`Store`].
#[derive(Debug, Clone)]
pub struct SandboxGrpc {
    store: Arc<Store>,
}

impl SandboxGrpc {
    /// Wraps a shared store.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl SandboxService for SandboxGrpc {
    async fn create_sandbox(&self, request: Request<CreateSandboxRequest>) -> Result<Response<Sandbox>, Status> {
        let origin = Origin::from_headers(request.metadata().as_ref());
        let req = request.into_inner();
        let sandbox = self.store.create(&req.name, &req.image, &origin).await?;
        tracing::info!(id = %sandbox.id, tenant = %sandbox.tenant, "created sandbox");
        Ok(Response::new(sandbox))
    }

    async fn get_sandbox(&self, request: Request<GetSandboxRequest>) -> Result<Response<Sandbox>, Status> {
        Ok(Response::new(self.store.get(&request.into_inner().id).await?))
    }

    async fn list_sandboxes(
        &self,
        request: Request<ListSandboxesRequest>,
    ) -> Result<Response<ListSandboxesResponse>, Status> {
        let sandboxes = self.store.list(&request.into_inner().tenant).await;
        Ok(Response::new(ListSandboxesResponse { sandboxes }))
    }

    async fn delete_sandbox(
        &self,
        request: Request<DeleteSandboxRequest>,
    ) -> Result<Response<DeleteSandboxResponse>, Status> {
        let sandbox = self.store.delete(&request.into_inner().id).await?;
        tracing::info!(id = %sandbox.id, "deleted sandbox");
        Ok(Response::new(DeleteSandboxResponse { deleted: true }))
    }

    type WatchSandboxesStream = EventStream;

    async fn watch_sandboxes(
        &self,
        request: Request<WatchSandboxesRequest>,
    ) -> Result<Response<Self::WatchSandboxesStream>, Status> {
        let max_events = request.into_inner().max_events;
        Ok(Response::new(self.store.watch(max_events).await))
    }

    async fn get_config(&self, _request: Request<GetConfigRequest>) -> Result<Response<DriverConfig>, Status> {
        Ok(Response::new(self.store.config().await))
    }

    async fn update_config(&self, request: Request<UpdateConfigRequest>) -> Result<Response<DriverConfig>, Status> {
        let config = request.into_inner().config.ok_or_else(|| Status::invalid_argument("config is required"))?;
        Ok(Response::new(self.store.set_config(config).await?))
    }

    async fn get_caller(&self, request: Request<GetCallerRequest>) -> Result<Response<Caller>, Status> {
        Ok(Response::new(caller_from_headers(request.metadata().as_ref())))
    }
}
