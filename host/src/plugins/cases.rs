//! Golden cases: inputs and expected outputs a component ships beside it
//! (`NAME.cases.yaml` next to `NAME.wasm`). A hot-swap candidate is only
//! swapped in if every case passes; `wasmgate plugin test` runs them for
//! plugin authors' CI. The format is documented in `docs/plugins.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::PolicyError;
use super::engine::{Binding, Interface, Plugin, PluginEngine};
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

/// A parsed cases file.
#[derive(Debug, Clone)]
pub struct CaseFile {
    path: PathBuf,
    sha256: String,
    cases: Vec<Case>,
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

    /// Parses cases-file text; `path` is for messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, CasesError> {
        use sha2::Digest;
        let invalid = |detail: String| CasesError::Invalid { path: path.to_owned(), detail };
        let raw: RawFile = serde_norway::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.cases.is_empty() {
            return Err(invalid("no cases".to_owned()));
        }
        let mut names = BTreeSet::new();
        let mut cases = Vec::with_capacity(raw.cases.len());
        for (i, c) in raw.cases.into_iter().enumerate() {
            let name = c.name.clone();
            if name.is_empty() {
                return Err(invalid(format!("case #{} has an empty name", i + 1)));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(format!("case {name:?} appears twice")));
            }
            let case = c.into_case(&raw.settings).map_err(|d| invalid(format!("case {name:?}: {d}")))?;
            cases.push(case);
        }
        Ok(Self { path: path.to_owned(), sha256: hex::encode(sha2::Sha256::digest(text.as_bytes())), cases })
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
            let kind = m["error"].as_str().ok_or("`error:` takes invalid-config, invalid-input or internal")?;
            if !matches!(kind, "invalid-config" | "invalid-input" | "internal") {
                return Err(format!("unknown error kind {kind:?} (invalid-config, invalid-input or internal)"));
            }
            Some(Some(kind))
        }
        _ => None,
    };
    match (wanted_error, got) {
        (Some(None), Err(_)) => Ok(()),
        (Some(Some(kind)), Err(PolicyError::Guest { detail, .. })) if detail.starts_with(&format!("{kind}:")) => Ok(()),
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
