//! The generated bindings of `wit/policy.wit`, and the only module that
//! names them: everything else in `plugins` sees the gateway's own types
//! (`crate::identity`, [`GuestErrorKind`]) through the typed conversions,
//! export handles and calls below.

use wasmtime::Store;
use wasmtime::component::{HasSelf, Instance, InstancePre, Linker};

use super::host::{LogLevel, StoreState};
use super::{GuestErrorKind, Interface};
use crate::identity as id;

#[allow(missing_docs, missing_debug_implementations, unused_qualifications, clippy::all)]
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy-bundle",
        // Async so WASI's streams never block a tokio worker; calls run on
        // fibers whose stacks come from the pooling allocator.
        imports: { default: async },
        exports: { default: async },
    });
}

use generated::PolicyBundle;
use generated::exports::wasmgate::policy::{authorizer, claims_mapper, classifier, credential_policy};
use generated::wasmgate::policy::host as host_import;
use generated::wasmgate::policy::types as wit;

// ---- the `host` import ------------------------------------------------------

/// Adds the `host` interface (implemented by [`StoreState`]) to `linker`.
pub(super) fn add_host_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    PolicyBundle::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)
}

impl wit::Host for StoreState {}

impl host_import::Host for StoreState {
    async fn log(&mut self, level: host_import::LogLevel, message: String) {
        self.log_line(level.into(), message);
    }

    async fn get_config(&mut self, key: String) -> Option<String> {
        self.setting(&key)
    }
}

impl From<host_import::LogLevel> for LogLevel {
    fn from(l: host_import::LogLevel) -> Self {
        match l {
            host_import::LogLevel::Trace => Self::Trace,
            host_import::LogLevel::Debug => Self::Debug,
            host_import::LogLevel::Info => Self::Info,
            host_import::LogLevel::Warn => Self::Warn,
            host_import::LogLevel::Error => Self::Error,
        }
    }
}

// ---- the exports ------------------------------------------------------------

/// A component's policy exports, found once when it is loaded: one typed
/// handle per exported interface.
pub(super) struct ExportIndices {
    classifier: Option<classifier::GuestIndices>,
    mapper: Option<claims_mapper::GuestIndices>,
    authorizer: Option<authorizer::GuestIndices>,
    credential: Option<credential_policy::GuestIndices>,
}

impl ExportIndices {
    /// The policy interfaces `pre` exports with the expected types.
    pub(super) fn new(pre: &InstancePre<StoreState>) -> Self {
        Self {
            classifier: classifier::GuestIndices::new(pre).ok(),
            mapper: claims_mapper::GuestIndices::new(pre).ok(),
            authorizer: authorizer::GuestIndices::new(pre).ok(),
            credential: credential_policy::GuestIndices::new(pre).ok(),
        }
    }

    /// Whether `iface` is exported.
    pub(super) fn has(&self, iface: Interface) -> bool {
        match iface {
            Interface::Classifier => self.classifier.is_some(),
            Interface::ClaimsMapper => self.mapper.is_some(),
            Interface::Authorizer => self.authorizer.is_some(),
            Interface::CredentialPolicy => self.credential.is_some(),
        }
    }

    /// Looks up every export in `instance`, which type-checks each.
    pub(super) fn check(&self, store: &mut Store<StoreState>, instance: &Instance) -> wasmtime::Result<()> {
        if let Some(i) = &self.classifier {
            i.load(&mut *store, instance)?;
        }
        if let Some(i) = &self.mapper {
            i.load(&mut *store, instance)?;
        }
        if let Some(i) = &self.authorizer {
            i.load(&mut *store, instance)?;
        }
        if let Some(i) = &self.credential {
            i.load(&mut *store, instance)?;
        }
        Ok(())
    }
}

/// The exports of one instance, once looked up (the lookup type-checks the
/// export, which need not be repeated for every call).
#[derive(Default)]
pub(super) struct InstanceExports {
    classifier: Option<classifier::Guest>,
    mapper: Option<claims_mapper::Guest>,
    authorizer: Option<authorizer::Guest>,
    credential: Option<credential_policy::Guest>,
}

/// The export `slot` caches, looked up through `load` the first time.
fn export<G: Clone>(slot: &mut Option<G>, load: impl FnOnce() -> wasmtime::Result<G>) -> wasmtime::Result<G> {
    if let Some(g) = slot {
        return Ok(g.clone());
    }
    let g = load()?;
    *slot = Some(g.clone());
    Ok(g)
}

/// The export `$field` of `$indices`, or an error if the component lacks
/// it (callers check [`ExportIndices::has`] first).
macro_rules! lookup {
    ($indices:expr, $exports:expr, $store:expr, $instance:expr, $field:ident) => {{
        let Some(indices) = &$indices.$field else {
            wasmtime::bail!("the component does not export this interface");
        };
        export(&mut $exports.$field, || indices.load(&mut *$store, $instance))?
    }};
}

/// What a guest's `policy-error` says: its kind and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GuestError {
    pub(super) kind: GuestErrorKind,
    pub(super) message: String,
}

impl From<wit::PolicyError> for GuestError {
    fn from(e: wit::PolicyError) -> Self {
        let (kind, message) = match e {
            wit::PolicyError::InvalidConfig(m) => (GuestErrorKind::InvalidConfig, m),
            wit::PolicyError::InvalidInput(m) => (GuestErrorKind::InvalidInput, m),
            wit::PolicyError::Internal(m) => (GuestErrorKind::Internal, m),
        };
        Self { kind, message }
    }
}

/// A guest's answer: its result, or the `policy-error` it returned.
pub(super) type Answer<T> = Result<T, GuestError>;

/// The typed calls of one instance, arguments and answers converted:
/// `Err` is a trap (or an export of the wrong type), `Ok(Err)` a
/// `policy-error`.
impl InstanceExports {
    /// `classifier.classify`.
    pub(super) async fn classify(
        &mut self,
        indices: &ExportIndices,
        store: &mut Store<StoreState>,
        instance: &Instance,
        call: &id::CallInfo,
    ) -> wasmtime::Result<Answer<id::Classification>> {
        let g = lookup!(indices, self, store, instance, classifier);
        let arg: wit::CallInfo = call.into();
        Ok(g.call_classify(&mut *store, &arg).await?.map(Into::into).map_err(Into::into))
    }

    /// `claims-mapper.map-claims`.
    pub(super) async fn map_claims(
        &mut self,
        indices: &ExportIndices,
        store: &mut Store<StoreState>,
        instance: &Instance,
        provider: &str,
        claims_json: &str,
    ) -> wasmtime::Result<Answer<id::Principal>> {
        let g = lookup!(indices, self, store, instance, mapper);
        Ok(g.call_map_claims(&mut *store, provider, claims_json).await?.map(Into::into).map_err(Into::into))
    }

    /// `authorizer.authorize`.
    pub(super) async fn authorize(
        &mut self,
        indices: &ExportIndices,
        store: &mut Store<StoreState>,
        instance: &Instance,
        request: &id::AuthzRequest,
    ) -> wasmtime::Result<Answer<id::Decision>> {
        let g = lookup!(indices, self, store, instance, authorizer);
        let arg: wit::AuthzRequest = request.into();
        Ok(g.call_authorize(&mut *store, &arg).await?.map(Into::into).map_err(Into::into))
    }

    /// `credential-policy.select-credentials`.
    pub(super) async fn select_credentials(
        &mut self,
        indices: &ExportIndices,
        store: &mut Store<StoreState>,
        instance: &Instance,
        call: &id::CallInfo,
        principal: Option<&id::Principal>,
        catalogue: &[id::CredentialInfo],
    ) -> wasmtime::Result<Answer<Vec<id::CredentialUse>>> {
        let g = lookup!(indices, self, store, instance, credential);
        let call: wit::CallInfo = call.into();
        let principal: Option<wit::Principal> = principal.map(Into::into);
        let catalogue: Vec<wit::CredentialInfo> = catalogue.iter().map(Into::into).collect();
        let out = g.call_select_credentials(&mut *store, &call, principal.as_ref(), &catalogue).await?;
        Ok(out.map(|uses| uses.into_iter().map(Into::into).collect()).map_err(Into::into))
    }
}

// ---- conversions --------------------------------------------------------------

impl From<&id::CallInfo> for wit::CallInfo {
    fn from(c: &id::CallInfo) -> Self {
        Self {
            protocol: match c.protocol {
                id::Protocol::Http => wit::Protocol::Http,
                id::Protocol::Grpc => wit::Protocol::Grpc,
            },
            http_method: c.http_method.clone(),
            path: c.path.clone(),
            grpc_service: c.grpc_service.clone(),
            grpc_method: c.grpc_method.clone(),
            route: c.route.clone(),
            authority: c.authority.clone(),
        }
    }
}

impl From<wit::AuthClass> for id::AuthClass {
    fn from(c: wit::AuthClass) -> Self {
        match c {
            wit::AuthClass::Unauthenticated => Self::Unauthenticated,
            wit::AuthClass::SandboxSecret => Self::SandboxSecret,
            wit::AuthClass::DualAuth => Self::DualAuth,
            wit::AuthClass::Bearer => Self::Bearer,
        }
    }
}

impl From<id::AuthClass> for wit::AuthClass {
    fn from(c: id::AuthClass) -> Self {
        match c {
            id::AuthClass::Unauthenticated => Self::Unauthenticated,
            id::AuthClass::SandboxSecret => Self::SandboxSecret,
            id::AuthClass::DualAuth => Self::DualAuth,
            id::AuthClass::Bearer => Self::Bearer,
        }
    }
}

impl From<wit::Classification> for id::Classification {
    fn from(c: wit::Classification) -> Self {
        Self { class: c.class.into(), required_scopes: c.required_scopes }
    }
}

impl From<&id::Classification> for wit::Classification {
    fn from(c: &id::Classification) -> Self {
        Self { class: c.class.into(), required_scopes: c.required_scopes.clone() }
    }
}

impl From<id::AuthKind> for wit::CredentialKind {
    fn from(k: id::AuthKind) -> Self {
        match k {
            id::AuthKind::None => Self::None,
            id::AuthKind::SandboxSecret => Self::SandboxSecret,
            id::AuthKind::OidcToken => Self::OidcToken,
            id::AuthKind::GatewayToken => Self::GatewayToken,
        }
    }
}

impl From<id::TokenSource> for wit::TokenSource {
    fn from(s: id::TokenSource) -> Self {
        match s {
            id::TokenSource::None => Self::None,
            id::TokenSource::AuthorizationHeader => Self::AuthorizationHeader,
            id::TokenSource::Cookie => Self::Cookie,
            id::TokenSource::QueryParameter => Self::QueryParameter,
            id::TokenSource::SandboxHeader => Self::SandboxHeader,
        }
    }
}

impl From<&id::Principal> for wit::Principal {
    fn from(p: &id::Principal) -> Self {
        Self {
            subject: p.subject.clone(),
            tenant: p.tenant.clone(),
            roles: p.roles.clone(),
            scopes: p.scopes.clone(),
            groups: p.groups.clone(),
        }
    }
}

impl From<wit::Principal> for id::Principal {
    fn from(p: wit::Principal) -> Self {
        Self { subject: p.subject, tenant: p.tenant, roles: p.roles, scopes: p.scopes, groups: p.groups }
    }
}

impl From<&id::Authentication> for wit::Authentication {
    fn from(a: &id::Authentication) -> Self {
        Self {
            kind: a.kind.into(),
            source: a.source.into(),
            provider: a.provider.clone(),
            principal: a.principal.as_ref().map(Into::into),
        }
    }
}

impl From<&id::AuthzRequest> for wit::AuthzRequest {
    fn from(r: &id::AuthzRequest) -> Self {
        Self {
            call: (&r.call).into(),
            classification: (&r.classification).into(),
            authentication: (&r.authentication).into(),
        }
    }
}

/// The verdict as the guest gave it; the deny reason is cleaned by the caller.
impl From<wit::Decision> for id::Decision {
    fn from(d: wit::Decision) -> Self {
        match d {
            wit::Decision::Allow => Self::Allow,
            wit::Decision::Deny(reason) => Self::Deny(reason),
        }
    }
}

impl From<&id::CredentialInfo> for wit::CredentialInfo {
    fn from(c: &id::CredentialInfo) -> Self {
        Self { name: c.name.clone(), scopes: c.scopes.clone() }
    }
}

impl From<wit::CredentialUse> for id::CredentialUse {
    fn from(u: wit::CredentialUse) -> Self {
        Self { credential: u.credential, header: u.header, prefix: u.prefix }
    }
}
