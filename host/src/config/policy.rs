//! `plugins:` and `policy:` — where policy components come from, their
//! limits, and which component serves which role (globally, per tenant,
//! with an optional shadow). Bindings ([`BindingConfig`]) are also used by
//! identity providers (`claims_mapper`) and routes (`classifier`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Why the `plugins:` or `policy:` section is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyConfigError {
    /// `plugins.deadline_ms` is 0 or above 10 s.
    #[error("plugins.deadline_ms must be within 1..=10000")]
    Deadline,
    /// `plugins.max_memory_bytes` is below 1 MiB.
    #[error("plugins.max_memory_bytes must be at least 1 MiB")]
    MaxMemory,
    /// A key of `policy.tenants` is empty or too long.
    #[error("policy.tenants: tenant name {0:?} must be 1..=256 bytes")]
    TenantName(String),
    /// An entry of `policy.tenants` binds neither role.
    #[error("policy.tenants.{0} overrides nothing")]
    TenantOverridesNothing(String),
    /// `cache_decisions` is set on a binding that is not an authorizer.
    #[error(
        "{0}.cache_decisions: only authorizer bindings have a decision cache (classifications are cached per path \
         and principals per token whatever the binding says)"
    )]
    CacheDecisionsNotAuthorizer(String),
}

/// Limits and sources of policy components.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Folder that relative component paths are resolved against.
    pub dir: Option<PathBuf>,
    /// Deadline of one policy call, milliseconds.
    pub deadline_ms: u64,
    /// Linear memory cap of one instance, bytes.
    pub max_memory_bytes: usize,
    /// Instances that may exist at once across all components.
    pub max_instances: u32,
    /// Reuse an instance for the next call after a call that succeeded
    /// (after any failure the instance is dropped). Off: a fresh instance
    /// per call, so no state can survive between calls.
    pub instance_reuse: bool,
    /// Folder of the precompile cache: compiled components keyed by their
    /// SHA-256 and the engine's compatibility hash, so a restart or a swap
    /// back to a known component skips compilation. Created `0700`; refused
    /// if it is a symlink, not owned by the gateway's user, or open to
    /// group or others (loading a cached artifact runs its native code).
    /// Off when unset.
    pub cache_dir: Option<PathBuf>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            deadline_ms: 50,
            max_memory_bytes: 16 * 1024 * 1024,
            max_instances: 1000,
            instance_reuse: true,
            cache_dir: None,
        }
    }
}

impl PluginsConfig {
    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// Checks the limits.
    pub(super) fn validate(&self) -> Result<(), PolicyConfigError> {
        if self.deadline_ms == 0 || self.deadline_ms > 10_000 {
            return Err(PolicyConfigError::Deadline);
        }
        if self.max_memory_bytes < 1 << 20 {
            return Err(PolicyConfigError::MaxMemory);
        }
        Ok(())
    }
}

/// Which component serves a role, and its settings.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    /// `builtin:NAME` for an embedded default component, or a path to a
    /// `.wasm` component (relative paths are resolved against `plugins.dir`).
    pub plugin: String,
    /// Settings the component reads with `host.get-config`.
    #[serde(default)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// A component evaluated next to this one on live traffic: its answer
    /// is compared, logged and counted, and never changes the outcome.
    #[serde(default)]
    pub shadow: Option<ShadowConfig>,
    /// Authorizer bindings only (refused on any other role): whether the
    /// gateway may reuse this authorizer's allow or deny for a later call
    /// with exactly the same input (the same policy generation, call,
    /// classification and authentication), until the caller's token
    /// expires. Default `true`: the WIT contract requires an authorizer's
    /// answer to be a pure function of its input. Set `false` for a
    /// component that must see every call; failures are never reused.
    #[serde(default)]
    pub cache_decisions: Option<bool>,
}

impl BindingConfig {
    /// A binding of an embedded component with no settings.
    pub fn builtin(name: &str) -> Self {
        Self { plugin: format!("builtin:{name}"), settings: BTreeMap::new(), shadow: None, cache_decisions: None }
    }

    /// Whether an authorizer bound this way may have its decisions cached
    /// (`cache_decisions`, default `true`).
    pub fn caches_decisions(&self) -> bool {
        self.cache_decisions.unwrap_or(true)
    }

    /// Refuses `cache_decisions` on this binding, which serves a role other
    /// than the authorizer; `at` names it (`policy.classifier`, ...).
    pub(super) fn not_an_authorizer(&self, at: impl FnOnce() -> String) -> Result<(), PolicyConfigError> {
        match self.cache_decisions {
            Some(_) => Err(PolicyConfigError::CacheDecisionsNotAuthorizer(at())),
            None => Ok(()),
        }
    }

    /// A setting as the component reads it: strings as they are, other
    /// values as JSON text.
    pub(super) fn setting_text(&self, key: &str) -> Option<String> {
        self.settings.get(key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// The shadow of a binding.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// `builtin:NAME` or a component path, as for the binding itself.
    pub plugin: String,
    /// Its settings; the active binding's settings when absent.
    #[serde(default)]
    pub settings: Option<BTreeMap<String, serde_json::Value>>,
}

/// Per-tenant overrides of the global authorizer and credential policy.
/// The tenant is the one the claims-mapper (or a gateway token) assigned
/// to the principal; calls without a principal or tenant use the global
/// bindings.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicyConfig {
    /// The authorizer for this tenant's principals.
    #[serde(default)]
    pub authorizer: Option<BindingConfig>,
    /// The credential policy for this tenant's principals.
    #[serde(default)]
    pub credential_policy: Option<BindingConfig>,
}

/// The global policy bindings.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The default classifier (routes may override it).
    pub classifier: BindingConfig,
    /// The authorizer.
    pub authorizer: BindingConfig,
    /// The credential policy.
    pub credential_policy: BindingConfig,
    /// Overrides of `authorizer` and `credential_policy` per tenant name.
    pub tenants: BTreeMap<String, TenantPolicyConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            classifier: BindingConfig::builtin("default-classifier"),
            authorizer: BindingConfig::builtin("rbac-authorizer"),
            credential_policy: BindingConfig::builtin("default-credential-policy"),
            tenants: BTreeMap::new(),
        }
    }
}

impl PolicyConfig {
    /// Checks the per-tenant overrides (a usable name, something
    /// overridden), and that only authorizers set `cache_decisions`.
    pub(super) fn validate(&self) -> Result<(), PolicyConfigError> {
        self.classifier.not_an_authorizer(|| "policy.classifier".to_owned())?;
        self.credential_policy.not_an_authorizer(|| "policy.credential_policy".to_owned())?;
        for (tenant, t) in &self.tenants {
            if tenant.is_empty() || tenant.len() > 256 {
                return Err(PolicyConfigError::TenantName(tenant.clone()));
            }
            if t.authorizer.is_none() && t.credential_policy.is_none() {
                return Err(PolicyConfigError::TenantOverridesNothing(tenant.clone()));
            }
            if let Some(b) = &t.credential_policy {
                b.not_an_authorizer(|| format!("policy.tenants.{tenant}.credential_policy"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_limits_and_tenant_overrides_are_checked() {
        assert_eq!(PluginsConfig::default().validate(), Ok(()));
        let plugins =
            |deadline_ms, max_memory_bytes| PluginsConfig { deadline_ms, max_memory_bytes, ..PluginsConfig::default() };
        assert_eq!(plugins(0, 1 << 20).validate(), Err(PolicyConfigError::Deadline));
        assert_eq!(plugins(10_001, 1 << 20).validate(), Err(PolicyConfigError::Deadline));
        assert_eq!(plugins(10_000, (1 << 20) - 1).validate(), Err(PolicyConfigError::MaxMemory));
        let mut policy = PolicyConfig::default();
        policy.tenants.insert("acme".into(), TenantPolicyConfig::default());
        let err = policy.validate().expect_err("overrides nothing");
        assert_eq!(err.to_string(), "policy.tenants.acme overrides nothing");
        policy.tenants.clear();
        let authorizer = Some(BindingConfig::builtin("rbac-authorizer"));
        policy.tenants.insert(String::new(), TenantPolicyConfig { authorizer, credential_policy: None });
        assert_eq!(policy.validate(), Err(PolicyConfigError::TenantName(String::new())));
    }

    #[test]
    fn only_authorizer_bindings_may_set_cache_decisions() {
        let load = |yaml: &str| crate::config::Config::from_yaml(yaml).map(|c| c.policy);
        let p = load("policy:\n  authorizer: { plugin: builtin:rbac-authorizer, cache_decisions: false }\n")
            .expect("an authorizer may opt out");
        assert!(!p.authorizer.caches_decisions());
        assert!(PolicyConfig::default().authorizer.caches_decisions(), "on by default");
        let tenant = "policy:\n  tenants:\n    acme:\n      authorizer: { plugin: builtin:rbac-authorizer, cache_decisions: false }\n";
        assert!(load(tenant).is_ok());
        for (yaml, at) in [
            (
                "policy:\n  classifier: { plugin: builtin:default-classifier, cache_decisions: false }\n",
                "policy.classifier",
            ),
            (
                "policy:\n  tenants:\n    acme:\n      credential_policy: { plugin: builtin:default-credential-policy, cache_decisions: true }\n",
                "policy.tenants.acme.credential_policy",
            ),
            (
                "routes:\n  - name: r\n    match: { path_prefix: /v1 }\n    upstream: \"http://127.0.0.1:1\"\n    classifier: { plugin: builtin:default-classifier, cache_decisions: false }\n",
                "routes.r.classifier",
            ),
        ] {
            let err = load(yaml).expect_err(at).to_string();
            assert!(err.contains(&format!("{at}.cache_decisions: only authorizer bindings")), "{err}");
        }
    }

    #[test]
    fn settings_read_as_the_component_reads_them() {
        let mut b = BindingConfig::builtin("oidc-claims-mapper");
        b.settings.insert("tenant".into(), "acme".into());
        b.settings.insert("n".into(), 3.into());
        assert_eq!(b.setting_text("tenant").as_deref(), Some("acme"));
        assert_eq!(b.setting_text("n").as_deref(), Some("3"));
        assert_eq!(b.setting_text("missing"), None);
    }
}
