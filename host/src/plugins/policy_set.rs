//! The snapshot of every policy binding the gateway uses.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::engine::{Binding, Interface, Plugin, PluginEngine};
use super::{LoadError, builtin_bytes};
use crate::config::{BindingConfig, Config};

/// Every binding of one configuration, immutable once built. The server
/// holds the current set behind an atomic pointer; a call uses the set it
/// started with from start to end.
#[derive(Debug)]
pub struct PolicySet {
    generation: u64,
    classifier: Binding,
    route_classifiers: HashMap<String, Binding>,
    mappers: HashMap<String, Binding>,
    authorizer: Binding,
    credential_policy: Binding,
    plugins: Vec<Arc<Plugin>>,
}

impl PolicySet {
    /// Loads every component `cfg` names (each distinct one compiled once)
    /// and checks each exports the interface of the role it is bound to.
    pub async fn build(engine: &PluginEngine, cfg: &Config, generation: u64) -> Result<Self, LoadError> {
        let mut loader = Loader { engine, dir: cfg.plugins.dir.as_deref(), loaded: HashMap::new() };
        let classifier = loader.bind(&cfg.policy.classifier, Interface::Classifier).await?;
        let authorizer = loader.bind(&cfg.policy.authorizer, Interface::Authorizer).await?;
        let credential_policy = loader.bind(&cfg.policy.credential_policy, Interface::CredentialPolicy).await?;
        let mut route_classifiers = HashMap::new();
        for route in &cfg.routes {
            if let Some(b) = &route.classifier {
                route_classifiers.insert(route.name.clone(), loader.bind(b, Interface::Classifier).await?);
            }
        }
        let mut mappers = HashMap::new();
        let default_mapper = BindingConfig::builtin("oidc-claims-mapper");
        for p in &cfg.auth.providers {
            let b = p.claims_mapper.as_ref().unwrap_or(&default_mapper);
            mappers.insert(p.name.clone(), loader.bind(b, Interface::ClaimsMapper).await?);
        }
        let mut plugins: Vec<Arc<Plugin>> = loader.loaded.into_values().collect();
        plugins.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(Self { generation, classifier, route_classifiers, mappers, authorizer, credential_policy, plugins })
    }

    /// A number that changes whenever the set is rebuilt.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The classifier of `route` (the global one unless the route has its own).
    pub fn classifier(&self, route: &str) -> &Binding {
        self.route_classifiers.get(route).unwrap_or(&self.classifier)
    }

    /// The claims-mapper of an identity provider.
    pub fn mapper(&self, provider: &str) -> Option<&Binding> {
        self.mappers.get(provider)
    }

    /// The authorizer.
    pub fn authorizer(&self) -> &Binding {
        &self.authorizer
    }

    /// The credential policy.
    pub fn credential_policy(&self) -> &Binding {
        &self.credential_policy
    }

    /// Every loaded component.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }
}

struct Loader<'a> {
    engine: &'a PluginEngine,
    dir: Option<&'a Path>,
    loaded: HashMap<String, Arc<Plugin>>,
}

impl Loader<'_> {
    async fn plugin(&mut self, reference: &str) -> Result<Arc<Plugin>, LoadError> {
        if let Some(p) = self.loaded.get(reference) {
            return Ok(p.clone());
        }
        let plugin = if let Some(name) = reference.strip_prefix("builtin:") {
            let bytes = builtin_bytes(name).ok_or_else(|| LoadError::Read {
                path: reference.to_owned(),
                detail: format!(
                    "no embedded component of that name (embedded: {})",
                    super::BUILTINS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            })?;
            self.engine.load(name, bytes).await?
        } else {
            let path = Path::new(reference);
            let path = match self.dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path.to_owned(),
            };
            self.engine.load_file(&path).await?
        };
        self.loaded.insert(reference.to_owned(), plugin.clone());
        Ok(plugin)
    }

    async fn bind(&mut self, cfg: &BindingConfig, iface: Interface) -> Result<Binding, LoadError> {
        let plugin = self.plugin(&cfg.plugin).await?;
        let binding = Binding::new(self.engine, plugin, &cfg.settings);
        binding.require(iface)?;
        Ok(binding)
    }
}
