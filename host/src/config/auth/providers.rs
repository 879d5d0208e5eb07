//! `auth.providers[]` — one OIDC identity provider each: its issuer and
//! audiences, its JWKS cache, its claims-mapper, and the tenants it may
//! assert (with the startup warnings about providers that are unbounded).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::AuthConfigError;
use crate::config::BindingConfig;

/// One OIDC identity provider.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A short name used in logs, metrics and bindings.
    pub name: String,
    /// The exact `iss` value (no normalisation: a trailing slash matters).
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// Algorithms accepted from this provider's keys.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The JWKS URL; discovered from `{issuer}/.well-known/openid-configuration` when absent.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// When set, the token's `typ` header must equal this (e.g. `at+jwt`,
    /// RFC 9068), compared case-insensitively, so ID tokens are refused.
    #[serde(default)]
    pub required_typ: Option<String>,
    /// JWKS cache behaviour.
    #[serde(default)]
    pub jwks: JwksConfig,
    /// The claims-mapper binding for this provider; the built-in
    /// `oidc-claims-mapper` with default settings when absent.
    #[serde(default)]
    pub claims_mapper: Option<BindingConfig>,
    /// The tenants this provider may assert. When set, a principal mapped
    /// from its claims whose tenant is not listed, or that has no tenant,
    /// is refused (403), whatever the claims-mapper returned. Unset: no
    /// bound (a startup warning says so if the mapper may take the tenant
    /// from a claim).
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned()]
}

/// JWKS caching and refresh.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JwksConfig {
    /// Background refresh interval, seconds (shortened by `Cache-Control: max-age`, never below the cooldown).
    pub refresh_seconds: u64,
    /// Minimum time between two fetches triggered by unknown `kid`s, seconds.
    pub cooldown_seconds: u64,
    /// Last-good keys are used up to this long after the last successful fetch, seconds.
    pub max_staleness_seconds: u64,
    /// Timeout of one fetch, milliseconds.
    pub fetch_timeout_ms: u64,
    /// Largest accepted JWKS or discovery document, bytes.
    pub max_body_bytes: usize,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            refresh_seconds: 300,
            cooldown_seconds: 10,
            max_staleness_seconds: 24 * 3600,
            fetch_timeout_ms: 5_000,
            max_body_bytes: 256 * 1024,
        }
    }
}

impl ProviderConfig {
    /// Checks what needs no other provider: an audience, an algorithm, an
    /// HTTP(S) issuer.
    pub(super) fn validate_alone(&self) -> Result<(), AuthConfigError> {
        if self.audiences.is_empty() {
            return Err(AuthConfigError::NoAudience(self.name.clone()));
        }
        if self.algorithms.is_empty() {
            return Err(AuthConfigError::NoAlgorithm(self.name.clone()));
        }
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://")) {
            return Err(AuthConfigError::IssuerNotHttp(self.name.clone()));
        }
        Ok(())
    }

    /// Checks `tenants`, when set: not empty, usable names, each once.
    pub(super) fn validate_tenants(&self) -> Result<(), AuthConfigError> {
        let Some(tenants) = &self.tenants else { return Ok(()) };
        if tenants.is_empty() {
            return Err(AuthConfigError::EmptyTenants(self.name.clone()));
        }
        for (i, t) in tenants.iter().enumerate() {
            if t.is_empty() || t.len() > 256 || !t.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                return Err(AuthConfigError::TenantName { provider: self.name.clone(), tenant: t.clone() });
            }
            if tenants[..i].contains(t) {
                return Err(AuthConfigError::DuplicateTenant { provider: self.name.clone(), tenant: t.clone() });
            }
        }
        Ok(())
    }

    fn tenant_bound(&self) -> TenantBound<'_> {
        if let Some(t) = &self.tenants {
            return TenantBound::Only(t.iter().map(String::as_str).collect());
        }
        // Without a binding: the built-in mapper with no settings, no tenant.
        let Some(mapper) = &self.claims_mapper else { return TenantBound::NoTenant };
        if mapper.plugin != "builtin:oidc-claims-mapper" {
            return TenantBound::Any(None);
        }
        match (mapper.settings.get("tenant"), mapper.setting_text("tenant-claim")) {
            (Some(serde_json::Value::String(t)), _) => TenantBound::Only(vec![t.as_str()]),
            (Some(_), claim) => TenantBound::Any(claim),
            (None, Some(claim)) => TenantBound::Any(Some(claim)),
            (None, None) => TenantBound::NoTenant,
        }
    }
}

/// What a provider's principals may carry as their tenant, as far as the
/// configuration tells.
enum TenantBound<'a> {
    /// Only these (`tenants`, or the built-in mapper's fixed `tenant`).
    Only(Vec<&'a str>),
    /// None: the built-in mapper with neither `tenant` nor `tenant-claim`.
    NoTenant,
    /// Any: from a claim (`tenant-claim` named here) or decided by a custom
    /// component.
    Any(Option<String>),
}

/// Providers that can assert any tenant, two providers that can assert the
/// same tenant, and a pinned mapper whose tenant its provider's `tenants`
/// refuses.
pub(super) fn tenant_warnings(providers: &[ProviderConfig]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut asserted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in providers {
        match p.tenant_bound() {
            TenantBound::Only(tenants) => {
                for t in tenants {
                    asserted.entry(t).or_default().push(&p.name);
                }
            }
            TenantBound::NoTenant => {}
            TenantBound::Any(Some(claim)) => warnings.push(format!(
                "provider {:?} takes the tenant from claim {claim:?} with no bound: its issuer can assert any \
                 tenant and get that tenant's policy and upstream credentials; list the tenants it may assert \
                 in its `tenants`, or pin the claims-mapper's `tenant` setting",
                p.name
            )),
            TenantBound::Any(None) => warnings.push(format!(
                "provider {:?} has no `tenants` and its claims-mapper is not pinned by a `tenant` setting: \
                 whatever tenant the mapper returns is trusted; list the tenants it may assert in its `tenants`",
                p.name
            )),
        }
        if let (Some(tenants), Some(mapper)) = (&p.tenants, &p.claims_mapper)
            && mapper.plugin == "builtin:oidc-claims-mapper"
            && let Some(pinned) = mapper.setting_text("tenant")
            && !tenants.contains(&pinned)
        {
            warnings.push(format!(
                "provider {:?}: its claims-mapper pins tenant {pinned:?}, which its `tenants` {tenants:?} does \
                 not allow: every principal of this provider will be refused",
                p.name
            ));
        }
    }
    for (tenant, providers) in asserted {
        if providers.len() > 1 {
            warnings.push(format!(
                "providers {} can all assert tenant {tenant:?}: each of their issuers can act for that tenant",
                providers.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    warnings
}
