//! Golden cases: inputs and expected outputs a component ships beside it
//! (`NAME.cases.yaml` next to `NAME.wasm`). A hot-swap candidate is only
//! swapped in if every case passes; `wasmgate plugin test` runs them for
//! plugin authors' CI. The format is documented in `docs/plugins.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{Binding, Interface, Plugin, PluginEngine};
use super::{GuestErrorKind, PolicyError};
use crate::identity as id;

/// Largest cases file read, bytes.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Why a cases file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    /// The file could not be read.
    #[error("cannot read golden cases {path}: {detail}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The file is not a valid cases file.
    #[error("invalid golden cases {path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Where a component's cases file is expected: `NAME.cases.yaml` beside
/// `NAME.wasm`.
pub fn cases_path_for(component: &Path) -> PathBuf {
    component.with_extension("cases.yaml")
}

/// Where `wasmgate plugin check` and `plugin test` look for a component's
/// cases file, in order: `NAME.cases.yaml` beside `NAME.wasm`, then, for a
/// component in a cargo target folder (`CRATE/target/wasm32-wasip2/release/NAME.wasm`),
/// in the folder holding `target/` (the crate or workspace), named after the
/// artifact (`only_acme.cases.yaml`) or the package (`only-acme.cases.yaml`).
pub fn cases_candidates_for(component: &Path) -> Vec<PathBuf> {
    let mut out = vec![cases_path_for(component)];
    let Some(stem) = component.file_stem().map(|s| s.to_string_lossy().into_owned()) else { return out };
    let crate_dir =
        component.ancestors().skip(1).find(|a| a.file_name().is_some_and(|n| n == "target")).and_then(Path::parent);
    if let Some(dir) = crate_dir {
        for name in [stem.clone(), stem.replace('_', "-")] {
            let p = dir.join(format!("{name}.cases.yaml"));
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// A parsed cases file.
#[derive(Debug, Clone)]
pub struct CaseFile {
    path: PathBuf,
    sha256: String,
    cases: Vec<Case>,
    warnings: Vec<String>,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    settings: BTreeMap<String, Value>,
    call: CaseCall,
    expect: Value,
}

#[derive(Debug, Clone)]
enum CaseCall {
    Classify(id::CallInfo),
    MapClaims { provider: String, claims: String },
    Authorize(id::AuthzRequest),
    SelectCredentials { call: id::CallInfo, principal: Option<id::Principal>, catalogue: Vec<id::CredentialInfo> },
}

impl CaseCall {
    fn interface(&self) -> Interface {
        match self {
            Self::Classify(_) => Interface::Classifier,
            Self::MapClaims { .. } => Interface::ClaimsMapper,
            Self::Authorize(_) => Interface::Authorizer,
            Self::SelectCredentials { .. } => Interface::CredentialPolicy,
        }
    }
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// `None` if it passed, otherwise what differed.
    pub failure: Option<String>,
}

impl CaseFile {
    /// Reads and checks a cases file.
    pub fn load(path: &Path) -> Result<Self, CasesError> {
        let read_err = |detail: String| CasesError::Read { path: path.to_owned(), detail };
        let meta = std::fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(read_err(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
        Self::parse(path, &text)
    }

    /// Reads the cases file beside `component`, if there is one.
    pub fn beside(component: &Path) -> Result<Option<Self>, CasesError> {
        let path = cases_path_for(component);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Self::load(&path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CasesError::Read { path, detail: e.to_string() }),
        }
    }

    /// The first of [`cases_candidates_for`] that exists, if any.
    pub fn find(component: &Path) -> Result<Option<Self>, CasesError> {
        for path in cases_candidates_for(component) {
            match std::fs::symlink_metadata(&path) {
                Ok(_) => return Self::load(&path).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CasesError::Read { path, detail: e.to_string() }),
            }
        }
        Ok(None)
    }

    /// Parses cases-file text; `path` is for messages. Inputs the gateway
    /// can never send are refused (a principal on a call without a token,
    /// a gRPC call that is not `POST`, …); combinations it never produces
    /// but that a case may test on purpose (a bearer method without a
    /// token) are accepted with a warning ([`CaseFile::warnings`]).
    pub fn parse(path: &Path, text: &str) -> Result<Self, CasesError> {
        use sha2::Digest;
        let invalid = |detail: String| CasesError::Invalid { path: path.to_owned(), detail };
        let raw: RawFile = serde_norway::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.cases.is_empty() {
            return Err(invalid("no cases".to_owned()));
        }
        let mut names = BTreeSet::new();
        let mut cases = Vec::with_capacity(raw.cases.len());
        let mut warnings = Vec::new();
        for (i, c) in raw.cases.into_iter().enumerate() {
            let name = c.name.clone();
            if name.is_empty() {
                return Err(invalid(format!("case #{} has an empty name", i + 1)));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(format!("case {name:?} appears twice")));
            }
            let case = c.into_case(&raw.settings).map_err(|d| invalid(format!("case {name:?}: {d}")))?;
            let found = check_inputs(&case.call).map_err(|d| invalid(format!("case {name:?}: {d}")))?;
            warnings.extend(found.into_iter().map(|w| format!("case {name:?}: {w}")));
            cases.push(case);
        }
        Ok(Self { path: path.to_owned(), sha256: hex::encode(sha2::Sha256::digest(text.as_bytes())), cases, warnings })
    }

    /// Inputs the gateway never produces but that were accepted, one line
    /// per case and finding.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The file the cases came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the file's text.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// How many cases there are.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether there are none (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// Runs every case against `plugin`, each with its settings, and
    /// reports each outcome in file order.
    pub async fn run(&self, engine: &PluginEngine, plugin: &Arc<Plugin>) -> Vec<CaseResult> {
        let mut out = Vec::with_capacity(self.cases.len());
        for case in &self.cases {
            let failure = run_case(engine, plugin, case).await.err();
            out.push(CaseResult { name: case.name.clone(), failure });
        }
        out
    }
}

/// One case bound to a component, to run repeatedly on the same binding
/// (so instances are reused as in the gateway): for benchmarks.
#[derive(Debug)]
pub struct BoundCase {
    binding: Binding,
    case: Case,
}

impl BoundCase {
    /// Runs the case once; `Err` describes a mismatch.
    pub async fn run(&self) -> Result<(), String> {
        check_case(&self.binding, &self.case).await
    }
}

impl CaseFile {
    /// Binds the case named `name` (the first case if `None`) to `plugin`.
    pub fn bind(&self, engine: &PluginEngine, plugin: &Arc<Plugin>, name: Option<&str>) -> Option<BoundCase> {
        let case = match name {
            Some(n) => self.cases.iter().find(|c| c.name == n)?,
            None => self.cases.first()?,
        };
        Some(BoundCase { binding: Binding::new(engine, plugin.clone(), &case.settings), case: case.clone() })
    }
}

async fn run_case(engine: &PluginEngine, plugin: &Arc<Plugin>, case: &Case) -> Result<(), String> {
    check_case(&Binding::new(engine, plugin.clone(), &case.settings), case).await
}

async fn check_case(binding: &Binding, case: &Case) -> Result<(), String> {
    binding.require(case.call.interface()).map_err(|e| e.to_string())?;
    match &case.call {
        CaseCall::Classify(call) => {
            let got = binding.classify(call).await;
            compare(&case.expect, got, |expect, c| {
                let want = classification_from(expect)?;
                let same = want.class == c.class && set(&want.required_scopes) == set(&c.required_scopes);
                Ok(same.then_some(()).ok_or_else(|| {
                    format!(
                        "expected {{class: {}, required-scopes: {:?}}}, got {{class: {}, required-scopes: {:?}}}",
                        want.class.as_str(),
                        want.required_scopes,
                        c.class.as_str(),
                        c.required_scopes
                    )
                }))
            })
        }
        CaseCall::MapClaims { provider, claims } => {
            let got = binding.map_claims(provider, claims).await;
            compare(&case.expect, got, |expect, p| {
                let want: id::Principal = from_value::<RawPrincipal>(expect)?.into();
                let same = want.subject == p.subject
                    && want.tenant == p.tenant
                    && set(&want.roles) == set(&p.roles)
                    && set(&want.scopes) == set(&p.scopes)
                    && set(&want.groups) == set(&p.groups);
                Ok(same.then_some(()).ok_or_else(|| format!("expected {}, got {}", show(&want), show(p))))
            })
        }
        CaseCall::Authorize(request) => {
            let got = binding.authorize(request).await;
            compare(&case.expect, got, |expect, d| {
                let ok = match (expect, d) {
                    (Value::String(s), id::Decision::Allow) if s == "allow" => true,
                    (Value::String(s), id::Decision::Deny(_)) if s == "deny" => true,
                    (Value::Object(m), id::Decision::Deny(reason)) if m.len() == 1 && m.contains_key("deny") => {
                        let want = m["deny"].as_str().ok_or("`deny:` takes a string")?;
                        reason.contains(want)
                    }
                    (Value::String(s), _) if s == "allow" || s == "deny" => false,
                    (Value::Object(m), _) if m.len() == 1 && m.contains_key("deny") => false,
                    _ => return Err("authorize expects `allow`, `deny`, {deny: TEXT} or an error".to_owned()),
                };
                let got = match d {
                    id::Decision::Allow => "allow".to_owned(),
                    id::Decision::Deny(r) => format!("deny({r:?})"),
                };
                Ok(ok.then_some(()).ok_or_else(|| format!("expected {}, got {got}", compact(expect))))
            })
        }
        CaseCall::SelectCredentials { call, principal, catalogue } => {
            let got = binding.select_credentials(call, principal.as_ref(), catalogue).await;
            compare(&case.expect, got, |expect, uses| {
                let want: Vec<RawCredentialUse> = from_value(expect)?;
                let want: Vec<id::CredentialUse> = want.into_iter().map(Into::into).collect();
                let show = |u: &[id::CredentialUse]| {
                    u.iter().map(|u| format!("{}→{}:{:?}", u.credential, u.header, u.prefix)).collect::<Vec<_>>()
                };
                Ok((want == *uses)
                    .then_some(())
                    .ok_or_else(|| format!("expected {:?}, got {:?}", show(&want), show(uses))))
            })
        }
    }
}

/// Compares a call's outcome with `expect`: the error forms are handled
/// here, anything else by `check`, which returns `Err` if `expect` itself is
/// malformed and `Ok(Err)` on a mismatch.
fn compare<T>(
    expect: &Value,
    got: Result<T, PolicyError>,
    check: impl FnOnce(&Value, &T) -> Result<Result<(), String>, String>,
) -> Result<(), String> {
    let wanted_error = match expect {
        Value::String(s) if s == "error" => Some(None),
        Value::Object(m) if m.len() == 1 && m.contains_key("error") => {
            let name = m["error"].as_str().ok_or("`error:` takes invalid-config, invalid-input or internal")?;
            let kind = GuestErrorKind::from_name(name)
                .ok_or_else(|| format!("unknown error kind {name:?} (invalid-config, invalid-input or internal)"))?;
            Some(Some(kind))
        }
        _ => None,
    };
    match (wanted_error, got) {
        (Some(None), Err(_)) => Ok(()),
        (Some(Some(kind)), Err(PolicyError::Guest { kind: got, .. })) if got == kind => Ok(()),
        (Some(_), Err(e)) => Err(format!("expected {}, got the failure: {e}", compact(expect))),
        (Some(_), Ok(_)) => Err(format!("expected {}, but the call succeeded", compact(expect))),
        (None, Err(e)) => Err(format!("expected {}, got the failure: {e}", compact(expect))),
        (None, Ok(v)) => check(expect, &v)?,
    }
}

fn set(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn show(p: &id::Principal) -> String {
    format!(
        "{{subject: {:?}, tenant: {:?}, roles: {:?}, scopes: {:?}, groups: {:?}}}",
        p.subject, p.tenant, p.roles, p.scopes, p.groups
    )
}

fn from_value<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("malformed expectation: {e}"))
}

fn classification_from(v: &Value) -> Result<id::Classification, String> {
    Ok(from_value::<RawClassification>(v)?.into())
}

// ---- inputs the gateway can send ------------------------------------------

/// Refuses inputs no gateway can send; returns warnings for combinations a
/// gateway never produces but an author may test on purpose, as defence in
/// depth (a bearer method without a token reaches no authorizer: the
/// gateway answers 401 first).
fn check_inputs(call: &CaseCall) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    match call {
        CaseCall::Classify(c) => check_call(c, &mut warnings)?,
        CaseCall::MapClaims { .. } => {}
        CaseCall::Authorize(r) => {
            check_call(&r.call, &mut warnings)?;
            super::validate::classification(&r.classification).map_err(|e| format!("classification: {e}"))?;
            check_authentication(&r.authentication)?;
            warnings.extend(class_and_kind(r.classification.class, &r.authentication));
        }
        CaseCall::SelectCredentials { call, principal, .. } => {
            check_call(call, &mut warnings)?;
            if let Some(p) = principal {
                super::validate::principal(p).map_err(|e| format!("principal: {e}"))?;
            }
        }
    }
    Ok(warnings)
}

fn check_call(c: &id::CallInfo, warnings: &mut Vec<String>) -> Result<(), String> {
    match c.protocol {
        id::Protocol::Grpc => {
            if c.http_method != "POST" {
                return Err(format!("call.http-method {:?}: gRPC calls are always POST", c.http_method));
            }
            if !crate::canonical::is_grpc_path(&c.path) {
                return Err(format!("call.path {:?} is not a gRPC path (/package.Service/Method)", c.path));
            }
            let mut it = c.path.trim_start_matches('/').splitn(2, '/');
            let (service, method) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
            if c.grpc_service != service || c.grpc_method != method {
                return Err(format!(
                    "call.grpc-service/grpc-method {:?}/{:?} differ from the path {:?} (the gateway derives them from it; \
                     leave them out)",
                    c.grpc_service, c.grpc_method, c.path
                ));
            }
        }
        id::Protocol::Http => {
            if !c.grpc_service.is_empty() || !c.grpc_method.is_empty() {
                return Err("call.grpc-service and grpc-method are set only for gRPC calls (protocol: grpc)".to_owned());
            }
        }
    }
    if c.http_method.is_empty() || !c.http_method.bytes().all(|b| b.is_ascii_uppercase()) {
        warnings.push(format!("call.http-method {:?} is not an upper-case method name such as GET", c.http_method));
    }
    match crate::canonical::canonicalize(&c.path, &crate::canonical::PathOptions::default()) {
        Ok(canonical) if canonical != c.path => warnings.push(format!(
            "call.path {:?} is not canonical: with the default `requests.paths` the gateway passes it as {canonical:?}",
            c.path
        )),
        Ok(_) => {}
        Err(e) => warnings.push(format!(
            "call.path {:?}: with the default `requests.paths` the gateway refuses it before any policy ({e})",
            c.path
        )),
    }
    Ok(())
}

/// What `authentication` can be: none (nothing presented), the sandbox
/// secret (no principal), or a verified token with the principal it maps to.
fn check_authentication(a: &id::Authentication) -> Result<(), String> {
    use id::{CredentialKind as K, TokenSource as S};
    let token_source = matches!(a.source, S::AuthorizationHeader | S::Cookie | S::QueryParameter);
    let kind = a.kind.as_str();
    match a.kind {
        K::None | K::SandboxSecret if a.principal.is_some() => {
            return Err(format!(
                "authentication kind {kind} never carries a principal: the gateway passes one only with oidc-token or \
                 gateway-token"
            ));
        }
        K::None if a.source != S::None => {
            return Err("authentication kind none (nothing presented) has source none".to_owned());
        }
        K::SandboxSecret if a.source != S::SandboxHeader => {
            return Err("authentication kind sandbox-secret has source sandbox-header".to_owned());
        }
        K::OidcToken | K::GatewayToken if !token_source => {
            return Err(format!(
                "authentication kind {kind} has source authorization-header, cookie or query-parameter"
            ));
        }
        K::OidcToken | K::GatewayToken if a.principal.is_none() => {
            return Err(format!(
                "authentication kind {kind} needs a principal: the gateway asks the authorizer about a token only \
                 once it has one (a token that maps to none is refused with 403 before)"
            ));
        }
        _ => {}
    }
    if a.provider.is_some() && a.kind != K::OidcToken {
        return Err(format!("authentication kind {kind} has no provider: only oidc-token names one"));
    }
    if let Some(p) = &a.principal {
        super::validate::principal(p).map_err(|e| format!("principal: {e}"))?;
    }
    Ok(())
}

/// A classification and an authentication the gateway never combines: it
/// authenticates by class, so e.g. a bearer method reaches the authorizer
/// only with a verified token.
fn class_and_kind(class: id::AuthClass, a: &id::Authentication) -> Option<String> {
    use id::{AuthClass as C, CredentialKind as K};
    let kind = a.kind.as_str();
    let possible = matches!(
        (class, a.kind),
        (C::Unauthenticated, K::None)
            | (C::SandboxSecret, K::SandboxSecret)
            | (C::Bearer, K::OidcToken | K::GatewayToken)
            | (C::DualAuth, K::SandboxSecret | K::OidcToken | K::GatewayToken)
    );
    if !possible {
        let needs = match class {
            C::Unauthenticated => "none (the gateway authenticates nothing on an unauthenticated method)",
            C::SandboxSecret => "sandbox-secret",
            C::Bearer => "oidc-token or gateway-token (without one the gateway answers 401 before the authorizer)",
            C::DualAuth => "sandbox-secret, oidc-token or gateway-token",
        };
        return Some(format!(
            "the gateway never asks the authorizer about a {} method with authentication kind {kind}: it is always {needs}",
            class.as_str()
        ));
    }
    if a.kind == K::OidcToken && a.provider.is_none() {
        return Some("authentication kind oidc-token without a provider: the gateway always names it".to_owned());
    }
    None
}

// ---- the file format ------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    settings: BTreeMap<String, Value>,
    cases: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCase {
    name: String,
    #[serde(default)]
    settings: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    classify: Option<RawCall>,
    #[serde(default)]
    map_claims: Option<RawMapClaims>,
    #[serde(default)]
    authorize: Option<RawAuthorize>,
    #[serde(default)]
    select_credentials: Option<RawSelect>,
    expect: Value,
}

impl RawCase {
    fn into_case(self, file_settings: &BTreeMap<String, Value>) -> Result<Case, String> {
        let given = [
            self.classify.is_some(),
            self.map_claims.is_some(),
            self.authorize.is_some(),
            self.select_credentials.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err("needs exactly one of classify, map-claims, authorize, select-credentials".to_owned());
        }
        let call = if let Some(c) = self.classify {
            CaseCall::Classify(c.into_call()?)
        } else if let Some(m) = self.map_claims {
            if !m.claims.is_object() {
                return Err("map-claims.claims must be a map".to_owned());
            }
            CaseCall::MapClaims { provider: m.provider, claims: m.claims.to_string() }
        } else if let Some(a) = self.authorize {
            CaseCall::Authorize(id::AuthzRequest {
                call: a.call.into_call()?,
                classification: a
                    .classification
                    .map(Into::into)
                    .unwrap_or(id::Classification { class: id::AuthClass::Bearer, required_scopes: vec![] }),
                authentication: a.authentication.map(Into::into).unwrap_or_else(id::Authentication::anonymous),
            })
        } else if let Some(s) = self.select_credentials {
            CaseCall::SelectCredentials {
                call: s.call.into_call()?,
                principal: s.principal.map(Into::into),
                catalogue: s
                    .catalogue
                    .into_iter()
                    .map(|c| id::CredentialInfo { name: c.name, scopes: c.scopes })
                    .collect(),
            }
        } else {
            return Err("no call".to_owned());
        };
        Ok(Case {
            name: self.name,
            settings: self.settings.unwrap_or_else(|| file_settings.clone()),
            call,
            expect: self.expect,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawProtocol {
    Http,
    Grpc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCall {
    #[serde(default)]
    protocol: Option<RawProtocol>,
    #[serde(default)]
    http_method: Option<String>,
    path: String,
    #[serde(default)]
    grpc_service: Option<String>,
    #[serde(default)]
    grpc_method: Option<String>,
    #[serde(default)]
    route: String,
    #[serde(default)]
    authority: String,
}

impl RawCall {
    fn into_call(self) -> Result<id::CallInfo, String> {
        if !self.path.starts_with('/') {
            return Err(format!("call.path {:?} must start with '/'", self.path));
        }
        let grpc = matches!(self.protocol, Some(RawProtocol::Grpc));
        let (service, method) = if grpc {
            let mut it = self.path.trim_start_matches('/').splitn(2, '/');
            (it.next().unwrap_or_default().to_owned(), it.next().unwrap_or_default().to_owned())
        } else {
            (String::new(), String::new())
        };
        Ok(id::CallInfo {
            protocol: if grpc { id::Protocol::Grpc } else { id::Protocol::Http },
            http_method: self.http_method.unwrap_or_else(|| if grpc { "POST" } else { "GET" }.to_owned()),
            grpc_service: self.grpc_service.unwrap_or(service),
            grpc_method: self.grpc_method.unwrap_or(method),
            path: self.path,
            route: self.route,
            authority: self.authority,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapClaims {
    provider: String,
    claims: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorize {
    call: RawCall,
    #[serde(default)]
    classification: Option<RawClassification>,
    #[serde(default)]
    authentication: Option<RawAuthentication>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelect {
    call: RawCall,
    #[serde(default)]
    principal: Option<RawPrincipal>,
    #[serde(default)]
    catalogue: Vec<RawCredentialInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawClass {
    Unauthenticated,
    SandboxSecret,
    DualAuth,
    Bearer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawClassification {
    class: RawClass,
    #[serde(default)]
    required_scopes: Vec<String>,
}

impl From<RawClassification> for id::Classification {
    fn from(c: RawClassification) -> Self {
        let class = match c.class {
            RawClass::Unauthenticated => id::AuthClass::Unauthenticated,
            RawClass::SandboxSecret => id::AuthClass::SandboxSecret,
            RawClass::DualAuth => id::AuthClass::DualAuth,
            RawClass::Bearer => id::AuthClass::Bearer,
        };
        Self { class, required_scopes: c.required_scopes }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawKind {
    #[default]
    None,
    SandboxSecret,
    OidcToken,
    GatewayToken,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawSource {
    #[default]
    None,
    AuthorizationHeader,
    Cookie,
    QueryParameter,
    SandboxHeader,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthentication {
    #[serde(default)]
    kind: RawKind,
    #[serde(default)]
    source: RawSource,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    principal: Option<RawPrincipal>,
}

impl From<RawAuthentication> for id::Authentication {
    fn from(a: RawAuthentication) -> Self {
        let kind = match a.kind {
            RawKind::None => id::CredentialKind::None,
            RawKind::SandboxSecret => id::CredentialKind::SandboxSecret,
            RawKind::OidcToken => id::CredentialKind::OidcToken,
            RawKind::GatewayToken => id::CredentialKind::GatewayToken,
        };
        let source = match a.source {
            RawSource::None => id::TokenSource::None,
            RawSource::AuthorizationHeader => id::TokenSource::AuthorizationHeader,
            RawSource::Cookie => id::TokenSource::Cookie,
            RawSource::QueryParameter => id::TokenSource::QueryParameter,
            RawSource::SandboxHeader => id::TokenSource::SandboxHeader,
        };
        Self { kind, source, provider: a.provider, principal: a.principal.map(Into::into) }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    subject: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

impl From<RawPrincipal> for id::Principal {
    fn from(p: RawPrincipal) -> Self {
        Self { subject: p.subject, tenant: p.tenant, roles: p.roles, scopes: p.scopes, groups: p.groups }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentialInfo {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentialUse {
    credential: String,
    header: String,
    prefix: String,
}

impl From<RawCredentialUse> for id::CredentialUse {
    fn from(u: RawCredentialUse) -> Self {
        Self { credential: u.credential, header: u.header, prefix: u.prefix }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PluginsConfig;
    use crate::plugins::builtin_bytes;

    const RBAC_CASES: &str = r#"
settings:
  admin-methods: ["/admin/*"]
cases:
  - name: user calls a user method
    authorize:
      call: { path: /v1/things }
      authentication:
        kind: oidc-token
        source: authorization-header
        principal: { subject: alice, roles: [user] }
    expect: allow
  - name: user calls an admin method
    authorize:
      call: { path: /admin/x }
      authentication: { kind: oidc-token, source: authorization-header, principal: { subject: alice, roles: [user] } }
    expect: { deny: "admin method" }
  - name: no credential
    authorize: { call: { path: /v1/things } }
    expect: deny
  - name: malformed settings fail
    settings: { admin-methods: 7 }
    authorize: { call: { path: /v1/things } }
    expect: { error: invalid-config }
"#;

    async fn rbac() -> (PluginEngine, Arc<Plugin>) {
        let engine = PluginEngine::new(&PluginsConfig::default()).expect("engine");
        let plugin = engine.load("rbac", builtin_bytes("rbac-authorizer").expect("embedded")).await.expect("loads");
        (engine, plugin)
    }

    #[tokio::test]
    async fn passing_cases_pass_and_a_wrong_expectation_is_reported() {
        let (engine, plugin) = rbac().await;
        let file = CaseFile::parse(Path::new("rbac.cases.yaml"), RBAC_CASES).expect("parses");
        let results = file.run(&engine, &plugin).await;
        assert_eq!(results.len(), 4);
        for r in &results {
            assert!(r.failure.is_none(), "{}: {:?}", r.name, r.failure);
        }

        let wrong = RBAC_CASES.replace("expect: allow", "expect: deny");
        let file = CaseFile::parse(Path::new("rbac.cases.yaml"), &wrong).expect("parses");
        let results = file.run(&engine, &plugin).await;
        let failure = results[0].failure.as_deref().expect("mismatch reported");
        assert!(failure.contains("expected \"deny\", got allow"), "{failure}");
        assert!(results[1..].iter().all(|r| r.failure.is_none()));
    }

    #[tokio::test]
    async fn a_case_for_an_interface_the_component_lacks_fails() {
        let (engine, plugin) = rbac().await;
        let text = "cases:\n  - name: c\n    classify: { path: /x }\n    expect: { class: bearer }\n";
        let file = CaseFile::parse(Path::new("x.cases.yaml"), text).expect("parses");
        let failure = file.run(&engine, &plugin).await[0].failure.clone().expect("fails");
        assert!(failure.contains("does not export"), "{failure}");
    }

    #[test]
    fn inputs_the_gateway_never_sends_are_refused() {
        let p = Path::new("x.cases.yaml");
        let tok = "source: authorization-header, principal: { subject: a }";
        let refused = [
            ("a principal without a credential", "authorize: { call: { path: /x }, authentication: { principal: { subject: a } } }".to_owned(), "never carries a principal"),
            ("a sandbox-secret caller with a principal", "authorize: { call: { path: /x }, authentication: { kind: sandbox-secret, source: sandbox-header, principal: { subject: a } } }".to_owned(), "never carries a principal"),
            ("nothing presented, from a header", "authorize: { call: { path: /x }, authentication: { source: authorization-header } }".to_owned(), "source none"),
            ("a token without its principal", "authorize: { call: { path: /x }, authentication: { kind: oidc-token, source: cookie, provider: kc } }".to_owned(), "needs a principal"),
            ("a token from the sandbox header", "authorize: { call: { path: /x }, authentication: { kind: gateway-token, source: sandbox-header, principal: { subject: a } } }".to_owned(), "has source"),
            ("a gateway token with a provider", format!("authorize: {{ call: {{ path: /x }}, authentication: {{ kind: gateway-token, provider: kc, {tok} }} }}"), "only oidc-token"),
            ("a principal the host would refuse", "authorize: { call: { path: /x }, authentication: { kind: oidc-token, source: cookie, provider: kc, principal: { subject: a, roles: [\"a b\"] } } }".to_owned(), "roles[0]"),
            ("an empty subject", "select-credentials: { call: { path: /x }, principal: { subject: \"\" } }".to_owned(), "subject is empty"),
            ("a gRPC GET", "classify: { protocol: grpc, http-method: GET, path: /a.B/C }".to_owned(), "always POST"),
            ("a gRPC call off a gRPC path", "classify: { protocol: grpc, path: /v1/things/1 }".to_owned(), "not a gRPC path"),
            ("a gRPC service other than the path's", "classify: { protocol: grpc, path: /a.B/C, grpc-service: x.Y }".to_owned(), "differ from the path"),
            ("an HTTP call with a gRPC method", "classify: { path: /x, grpc-method: C }".to_owned(), "only for gRPC"),
            ("too many required scopes", format!("authorize: {{ call: {{ path: /x }}, classification: {{ class: bearer, required-scopes: [{}] }} }}", (0..65).map(|i| format!("s{i}")).collect::<Vec<_>>().join(", ")), "required scopes"),
        ];
        for (what, call, expected) in refused {
            let text = format!("cases:\n  - name: c\n    {call}\n    expect: allow\n");
            let err = CaseFile::parse(p, &text).expect_err(what).to_string();
            assert!(err.contains(expected) && err.contains("case \"c\""), "{what}: {err}");
        }
    }

    #[test]
    fn combinations_the_gateway_never_produces_are_accepted_with_a_warning() {
        let p = Path::new("x.cases.yaml");
        let text = r#"
cases:
  - { name: no token, authorize: { call: { path: /x } }, expect: deny }
  - name: secret on a bearer method
    authorize: { call: { path: /x }, authentication: { kind: sandbox-secret, source: sandbox-header } }
    expect: deny
  - name: no provider
    authorize: { call: { path: /x }, authentication: { kind: oidc-token, source: cookie, principal: { subject: a } } }
    expect: deny
  - { name: dot segments, classify: { path: /a/../b }, expect: error }
  - { name: open, authorize: { call: { path: /x }, classification: { class: unauthenticated } }, expect: allow }
  - name: token
    authorize:
      call: { protocol: grpc, path: /a.B/C }
      authentication: { kind: gateway-token, source: authorization-header, principal: { subject: a } }
    expect: allow
"#;
        let file = CaseFile::parse(p, text).expect("accepted");
        let w = file.warnings();
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].starts_with("case \"no token\"") && w[0].contains("401"), "{}", w[0]);
        assert!(w[1].starts_with("case \"secret on a bearer method\"") && w[1].contains("sandbox-secret"), "{}", w[1]);
        assert!(w[2].contains("without a provider"), "{}", w[2]);
        assert!(w[3].starts_with("case \"dot segments\"") && w[3].contains("\"/b\""), "{}", w[3]);
    }

    #[test]
    fn cases_are_found_beside_the_component_then_beside_the_crate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let krate = dir.path().join("only-acme");
        let release = krate.join("target/wasm32-wasip2/release");
        std::fs::create_dir_all(&release).expect("mkdir");
        let wasm = release.join("only_acme.wasm");
        assert_eq!(
            cases_candidates_for(&wasm),
            [
                release.join("only_acme.cases.yaml"),
                krate.join("only_acme.cases.yaml"),
                krate.join("only-acme.cases.yaml")
            ]
        );
        assert!(CaseFile::find(&wasm).expect("none").is_none());
        let text = "cases:\n  - { name: c, classify: { path: /x }, expect: error }\n";
        std::fs::write(krate.join("only-acme.cases.yaml"), text).expect("write");
        let found = CaseFile::find(&wasm).expect("readable").expect("found beside the crate");
        assert_eq!(found.path(), krate.join("only-acme.cases.yaml"));
        std::fs::write(release.join("only_acme.cases.yaml"), text).expect("write");
        let found = CaseFile::find(&wasm).expect("readable").expect("found");
        assert_eq!(found.path(), release.join("only_acme.cases.yaml"), "beside the component first");
        assert_eq!(cases_candidates_for(Path::new("/p/authz.wasm")), [PathBuf::from("/p/authz.cases.yaml")]);
    }

    #[test]
    fn malformed_files_are_refused_with_the_case_named() {
        let p = Path::new("x.cases.yaml");
        assert!(CaseFile::parse(p, "cases: []").is_err());
        let two_calls = "cases:\n  - name: a\n    classify: { path: /x }\n    authorize: { call: { path: /x } }\n    expect: allow\n";
        let msg = CaseFile::parse(p, two_calls).expect_err("two calls").to_string();
        assert!(msg.contains("\"a\"") && msg.contains("exactly one"), "{msg}");
        let dup = "cases:\n  - { name: a, classify: { path: /x }, expect: error }\n  - { name: a, classify: { path: /x }, expect: error }\n";
        assert!(CaseFile::parse(p, dup).expect_err("duplicate").to_string().contains("twice"));
        let unknown = "cases:\n  - { name: a, clasify: { path: /x }, expect: error }\n";
        assert!(CaseFile::parse(p, unknown).is_err());
        let grpc = "cases:\n  - { name: g, classify: { protocol: grpc, path: /a.B/C }, expect: error }\n";
        let file = CaseFile::parse(p, grpc).expect("parses");
        let CaseCall::Classify(call) = &file.cases[0].call else { panic!("classify") };
        assert_eq!(
            (call.grpc_service.as_str(), call.grpc_method.as_str(), call.http_method.as_str()),
            ("a.B", "C", "POST")
        );
    }
}
