//! The `credentials.v1.CredentialsDriver` gRPC service over the sources.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tonic::{Request, Response, Status};
use wasmgate_proto::credentials::credentials_driver_server::CredentialsDriver;
use wasmgate_proto::credentials::{
    CredentialInfo, ListCredentialsRequest, ListCredentialsResponse, ResolveCredentialRequest,
    ResolveCredentialResponse,
};

use crate::oauth::ClientCredentials;
use crate::statics::{Lookup, StaticCredentials, check_name};
use crate::token::{Credential, now_ms};

/// Answers from the configured sources. An OAuth2 source hides a static
/// entry of the same name.
///
/// | answer | gRPC status |
/// |---|---|
/// | unknown name | `NOT_FOUND` |
/// | static entry past `expires_at` | `FAILED_PRECONDITION` |
/// | token endpoint down or refusing | `UNAVAILABLE` |
/// | malformed name | `INVALID_ARGUMENT` |
#[derive(Debug, Clone, Default)]
pub struct CredentialsService {
    statics: Option<Arc<StaticCredentials>>,
    oauth: Arc<HashMap<String, Arc<ClientCredentials>>>,
}

impl CredentialsService {
    /// A service over a static file (if any) and OAuth2 sources.
    pub fn new(statics: Option<Arc<StaticCredentials>>, oauth: Vec<Arc<ClientCredentials>>) -> Self {
        let oauth = oauth.into_iter().map(|o| (o.name().to_owned(), o)).collect();
        Self { statics, oauth: Arc::new(oauth) }
    }

    /// Resolves `name` (the gRPC method without the transport).
    pub async fn resolve(&self, name: &str) -> Result<Credential, Status> {
        check_name(name).map_err(|_| Status::invalid_argument("malformed credential name"))?;
        if let Some(source) = self.oauth.get(name) {
            return source.resolve().await.map_err(|e| {
                tracing::warn!(credential = name, error = %e, "client-credentials token unavailable");
                Status::unavailable(e.to_string())
            });
        }
        match self.statics.as_ref().map_or(Lookup::Unknown, |s| s.resolve(name, now_ms())) {
            Lookup::Found(c) => Ok(c),
            Lookup::Expired => Err(Status::failed_precondition(format!("credential {name:?} has expired"))),
            Lookup::Unknown => Err(Status::not_found(format!("unknown credential {name:?}"))),
        }
    }

    /// Every credential name with its scopes, sorted by name.
    pub fn list(&self) -> Vec<CredentialInfo> {
        let mut all: BTreeMap<String, Vec<String>> =
            self.statics.as_ref().map(|s| s.list().into_iter().collect()).unwrap_or_default();
        for (name, o) in self.oauth.iter() {
            all.insert(name.clone(), o.scopes().to_vec());
        }
        all.into_iter().map(|(name, scopes)| CredentialInfo { name, scopes }).collect()
    }
}

#[tonic::async_trait]
impl CredentialsDriver for CredentialsService {
    async fn resolve_credential(
        &self,
        request: Request<ResolveCredentialRequest>,
    ) -> Result<Response<ResolveCredentialResponse>, Status> {
        let name = request.into_inner().name;
        let c = self.resolve(&name).await?;
        tracing::debug!(credential = %name, expires_at_ms = c.expires_at_ms, "credential resolved");
        Ok(Response::new(ResolveCredentialResponse {
            token: c.token.expose().to_owned(),
            expires_at_ms: c.expires_at_ms,
            token_type: c.token_type,
        }))
    }

    async fn list_credentials(
        &self,
        _request: Request<ListCredentialsRequest>,
    ) -> Result<Response<ListCredentialsResponse>, Status> {
        Ok(Response::new(ListCredentialsResponse { credentials: self.list() }))
    }
}
