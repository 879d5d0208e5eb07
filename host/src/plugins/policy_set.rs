//! The snapshot of every policy binding the gateway uses.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::cases::CaseFile;
use super::slot::{Scope, ShadowCounts, Slot};
use super::validate::{self, ReservedHeaders};
use super::{Binding, Interface, Plugin, PluginEngine};
use super::{LoadError, builtin_bytes};
use crate::config::{BindingConfig, Config};
use crate::identity::Principal;

/// Largest component file read, bytes.
const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// A component in a policy set, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    /// The compiled component.
    pub plugin: Arc<Plugin>,
    /// `builtin:NAME` or the path as the config wrote it.
    pub source: String,
    /// When it was compiled and checked (Unix seconds); kept across reloads
    /// that leave the component unchanged.
    pub loaded_at_unix: u64,
    /// Golden cases it passed when loaded (0 without a cases file).
    pub golden_cases: usize,
    cases_sha256: Option<String>,
}

/// A binding as the admin surface shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BindingInfo {
    /// The role (`classifier`, `claims-mapper`, `authorizer`, `credential-policy`).
    pub role: &'static str,
    /// Where it applies.
    pub scope: Scope,
    /// The active component's name.
    pub plugin: String,
    /// The shadow component's name, if any.
    pub shadow: Option<String>,
    /// How the shadow compared so far in this policy generation.
    pub shadow_counts: Option<ShadowCounts>,
}

/// Every binding of one configuration, immutable once built. The server
/// holds the current set behind an atomic pointer; a call uses the set it
/// started with from start to end.
#[derive(Debug)]
pub struct PolicySet {
    generation: u64,
    classifier: Slot,
    route_classifiers: HashMap<String, Slot>,
    mappers: HashMap<String, Slot>,
    authorizer: Slot,
    credential_policy: Slot,
    tenant_authorizers: HashMap<String, Slot>,
    tenant_credential_policies: HashMap<String, Slot>,
    /// Per provider with `tenants` set, the tenants it may assert.
    provider_tenants: HashMap<String, Vec<String>>,
    /// Headers no credential may be injected as.
    reserved: Arc<ReservedHeaders>,
    plugins: Vec<LoadedPlugin>,
}

impl PolicySet {
    /// Loads every component `cfg` names (each distinct one compiled once,
    /// and one unchanged since `previous` taken from it as it is), runs the
    /// golden cases of components that ship them, and checks each component
    /// exports the interface of the role it is bound to.
    pub async fn build(
        engine: &PluginEngine,
        cfg: &Config,
        generation: u64,
        previous: Option<&PolicySet>,
    ) -> Result<Self, LoadError> {
        // The reserved headers mirror what the running gateway strips and
        // sets (identity prefix, `also_strip`, sandbox header, cookie),
        // which is fixed at start: a reload keeps the first set's.
        let reserved = match previous {
            Some(p) => p.reserved.clone(),
            None => Arc::new(ReservedHeaders::from_config(cfg)),
        };
        let previous = previous.map(|p| p.plugins.iter().map(|l| (l.source.clone(), l.clone())).collect());
        let mut loader = Loader {
            engine,
            dir: cfg.plugins.dir.as_deref(),
            previous: previous.unwrap_or_default(),
            loaded: BTreeMap::new(),
            reserved: reserved.clone(),
        };
        let p = &cfg.policy;
        let classifier = loader.slot(&p.classifier, Interface::Classifier, Scope::Global).await?;
        let authorizer = loader.slot(&p.authorizer, Interface::Authorizer, Scope::Global).await?;
        let credential_policy = loader.slot(&p.credential_policy, Interface::CredentialPolicy, Scope::Global).await?;
        let mut route_classifiers = HashMap::new();
        for route in &cfg.routes {
            if let Some(b) = &route.classifier {
                let slot = loader.slot(b, Interface::Classifier, Scope::Route(route.name.clone())).await?;
                route_classifiers.insert(route.name.clone(), slot);
            }
        }
        let mut mappers = HashMap::new();
        let default_mapper = BindingConfig::builtin("oidc-claims-mapper");
        for provider in &cfg.auth.providers {
            let b = provider.claims_mapper.as_ref().unwrap_or(&default_mapper);
            let slot = loader.slot(b, Interface::ClaimsMapper, Scope::Provider(provider.name.clone())).await?;
            mappers.insert(provider.name.clone(), slot);
        }
        let mut tenant_authorizers = HashMap::new();
        let mut tenant_credential_policies = HashMap::new();
        for (tenant, t) in &p.tenants {
            if let Some(b) = &t.authorizer {
                let slot = loader.slot(b, Interface::Authorizer, Scope::Tenant(tenant.clone())).await?;
                tenant_authorizers.insert(tenant.clone(), slot);
            }
            if let Some(b) = &t.credential_policy {
                let slot = loader.slot(b, Interface::CredentialPolicy, Scope::Tenant(tenant.clone())).await?;
                tenant_credential_policies.insert(tenant.clone(), slot);
            }
        }
        let provider_tenants =
            cfg.auth.providers.iter().filter_map(|p| Some((p.name.clone(), p.tenants.clone()?))).collect();
        let mut plugins: Vec<LoadedPlugin> = loader.loaded.into_values().collect();
        plugins.sort_by(|a, b| a.plugin.name().cmp(b.plugin.name()).then(a.source.cmp(&b.source)));
        Ok(Self {
            generation,
            classifier,
            route_classifiers,
            mappers,
            authorizer,
            credential_policy,
            tenant_authorizers,
            tenant_credential_policies,
            provider_tenants,
            reserved,
            plugins,
        })
    }

    /// A number that changes whenever the set is rebuilt.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The classifier of `route` (the global one unless the route has its own).
    pub fn classifier(&self, route: &str) -> &Slot {
        self.route_classifiers.get(route).unwrap_or(&self.classifier)
    }

    /// The claims-mapper of an identity provider.
    pub fn mapper(&self, provider: &str) -> Option<&Slot> {
        self.mappers.get(provider)
    }

    /// Refuses a principal mapped from `provider`'s claims whose tenant the
    /// provider may not assert (`auth.providers[].tenants`), or that has no
    /// tenant while the provider has `tenants`; the reason is for the log.
    /// Call it on every principal a claims-mapper returns, before it is
    /// cached or used: whatever the component said, it is not trusted.
    pub fn confine_tenant(&self, provider: &str, principal: &Principal) -> Result<(), String> {
        match self.provider_tenants.get(provider) {
            Some(tenants) => validate::provider_tenant(provider, tenants, principal),
            None => Ok(()),
        }
    }

    /// The authorizer for a principal of `tenant` (the global one unless
    /// the tenant has its own).
    pub fn authorizer(&self, tenant: Option<&str>) -> &Slot {
        tenant.and_then(|t| self.tenant_authorizers.get(t)).unwrap_or(&self.authorizer)
    }

    /// The credential policy for a principal of `tenant`.
    pub fn credential_policy(&self, tenant: Option<&str>) -> &Slot {
        tenant.and_then(|t| self.tenant_credential_policies.get(t)).unwrap_or(&self.credential_policy)
    }

    /// Every loaded component, by name.
    pub fn plugins(&self) -> &[LoadedPlugin] {
        &self.plugins
    }

    /// Every binding, in a stable order.
    pub fn bindings(&self) -> Vec<BindingInfo> {
        fn sorted(m: &HashMap<String, Slot>) -> Vec<&Slot> {
            let mut v: Vec<_> = m.iter().collect();
            v.sort_by(|a, b| a.0.cmp(b.0));
            v.into_iter().map(|(_, s)| s).collect()
        }
        let mut slots: Vec<&Slot> = vec![&self.classifier, &self.authorizer, &self.credential_policy];
        slots.extend(sorted(&self.route_classifiers));
        slots.extend(sorted(&self.mappers));
        slots.extend(sorted(&self.tenant_authorizers));
        slots.extend(sorted(&self.tenant_credential_policies));
        slots
            .into_iter()
            .map(|s| BindingInfo {
                role: s.role().role(),
                scope: s.scope().clone(),
                plugin: s.active().plugin().name().to_owned(),
                shadow: s.shadow().map(|b| b.plugin().name().to_owned()),
                shadow_counts: s.shadow_counts(),
            })
            .collect()
    }
}

struct Loader<'a> {
    engine: &'a PluginEngine,
    dir: Option<&'a Path>,
    previous: HashMap<String, LoadedPlugin>,
    loaded: BTreeMap<String, LoadedPlugin>,
    reserved: Arc<ReservedHeaders>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Loader<'_> {
    async fn plugin(&mut self, reference: &str) -> Result<Arc<Plugin>, LoadError> {
        if let Some(p) = self.loaded.get(reference) {
            return Ok(p.plugin.clone());
        }
        let loaded = if let Some(name) = reference.strip_prefix("builtin:") {
            match self.previous.get(reference) {
                // Embedded bytes never change within a process.
                Some(prev) => prev.clone(),
                None => {
                    let bytes = builtin_bytes(name).ok_or_else(|| LoadError::Read {
                        path: reference.to_owned(),
                        detail: format!(
                            "no embedded component of that name (embedded: {})",
                            super::BUILTINS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                        ),
                    })?;
                    let plugin = self.engine.load(name, bytes).await?;
                    LoadedPlugin {
                        plugin,
                        source: reference.to_owned(),
                        loaded_at_unix: unix_now(),
                        golden_cases: 0,
                        cases_sha256: None,
                    }
                }
            }
        } else {
            self.load_file(reference).await?
        };
        let plugin = loaded.plugin.clone();
        self.loaded.insert(reference.to_owned(), loaded);
        Ok(plugin)
    }

    /// Loads a component file, or takes it from the previous set if neither
    /// it nor its cases file changed; a new one must pass its golden cases.
    async fn load_file(&mut self, reference: &str) -> Result<LoadedPlugin, LoadError> {
        let path = Path::new(reference);
        let path = match self.dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        };
        let read_err = |detail: String| LoadError::Read { path: path.display().to_string(), detail };
        let size = std::fs::metadata(&path).map_err(|e| read_err(e.to_string()))?.len();
        if size > MAX_COMPONENT_BYTES {
            return Err(read_err(format!("larger than {MAX_COMPONENT_BYTES} bytes")));
        }
        let bytes = std::fs::read(&path).map_err(|e| read_err(e.to_string()))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let cases =
            CaseFile::beside(&path).map_err(|e| LoadError::Cases { name: name.clone(), detail: e.to_string() })?;
        let cases_sha = cases.as_ref().map(|c| c.sha256().to_owned());
        let sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        if let Some(prev) = self.previous.get(reference)
            && prev.plugin.sha256() == sha256
            && prev.cases_sha256 == cases_sha
        {
            return Ok(prev.clone());
        }
        let plugin = self.engine.load_hashed(&name, &bytes, sha256).await?;
        let mut golden_cases = 0;
        if let Some(cases) = &cases {
            for result in cases.run(self.engine, &plugin).await {
                if let Some(detail) = result.failure {
                    return Err(LoadError::GoldenCase { name, case: result.name, detail });
                }
            }
            golden_cases = cases.len();
        }
        Ok(LoadedPlugin {
            plugin,
            source: reference.to_owned(),
            loaded_at_unix: unix_now(),
            golden_cases,
            cases_sha256: cases_sha,
        })
    }

    async fn binding(
        &mut self,
        reference: &str,
        settings: &BTreeMap<String, serde_json::Value>,
        iface: Interface,
    ) -> Result<Binding, LoadError> {
        let plugin = self.plugin(reference).await?;
        let binding = Binding::new(self.engine, plugin, settings).with_reserved_headers(self.reserved.clone());
        binding.require(iface)?;
        Ok(binding)
    }

    async fn slot(&mut self, cfg: &BindingConfig, iface: Interface, scope: Scope) -> Result<Slot, LoadError> {
        let active = self.binding(&cfg.plugin, &cfg.settings, iface).await?;
        let shadow = match &cfg.shadow {
            Some(s) => Some(self.binding(&s.plugin, s.settings.as_ref().unwrap_or(&cfg.settings), iface).await?),
            None => None,
        };
        Ok(Slot::new(iface, scope, active, shadow).with_decision_cache(cfg.caches_decisions()))
    }
}
