//! [`Binding`]: a plugin bound to a role with its settings, and the typed
//! calls, one per role. Each runs on an instance of the binding's pool and
//! validates the guest's answer before the gateway sees it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::pool::{InstancePool, on_instance};
use super::wit::GuestError;
use super::{Interface, LoadError, Plugin, PluginEngine, PolicyError, host, validate};
use crate::identity as id;

/// A plugin serving one role with its settings.
#[derive(Clone)]
pub struct Binding {
    /// The plugin, its settings and its idle instances, shared by clones.
    pool: Arc<InstancePool>,
    /// Headers a credential policy may not inject credentials as.
    reserved: Arc<validate::ReservedHeaders>,
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("plugin", &self.pool.plugin().name())
            .field("settings", &self.pool.settings().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Binding {
    /// Binds `plugin` with `settings`.
    pub fn new(engine: &PluginEngine, plugin: Arc<Plugin>, settings: &BTreeMap<String, serde_json::Value>) -> Self {
        let settings = host::Settings::from_json(settings);
        Self { pool: Arc::new(InstancePool::new(engine.shared().clone(), plugin, settings)), reserved: Arc::default() }
    }

    /// The same binding, refusing credentials injected as the headers
    /// `reserved` names (by default those of the default configuration).
    pub(crate) fn with_reserved_headers(mut self, reserved: Arc<validate::ReservedHeaders>) -> Self {
        self.reserved = reserved;
        self
    }

    /// The bound plugin.
    pub fn plugin(&self) -> &Arc<Plugin> {
        self.pool.plugin()
    }

    /// Checks that the plugin exports `iface`.
    pub fn require(&self, iface: Interface) -> Result<(), LoadError> {
        let plugin = self.plugin();
        if plugin.exports().has(iface) {
            Ok(())
        } else {
            Err(LoadError::WrongWorld {
                name: plugin.name().to_owned(),
                detail: format!(
                    "is bound as {} but does not export {} (it exports: {})",
                    iface.role(),
                    iface.wit_name(),
                    plugin.exports()
                ),
            })
        }
    }

    /// Instantiates the plugin and looks up every export it has, which
    /// type-checks each.
    pub(super) async fn check_exports(&self) -> Result<(), PolicyError> {
        let indices = self.plugin().indices();
        on_instance!(&*self.pool, |w| async { indices.check(&mut w.store, &w.instance) })
    }

    fn fail(&self, err: PolicyError) -> PolicyError {
        self.plugin().record_failure(&err);
        err
    }

    fn guest_error(&self, e: GuestError) -> PolicyError {
        self.fail(PolicyError::Guest { plugin: self.plugin().name().to_owned(), kind: e.kind, detail: e.message })
    }

    fn invalid(&self, detail: String) -> PolicyError {
        self.fail(PolicyError::InvalidResult { plugin: self.plugin().name().to_owned(), detail })
    }

    /// `NotBound` unless the plugin exports `iface`.
    fn exported(&self, iface: Interface) -> Result<(), PolicyError> {
        if self.plugin().exports().has(iface) {
            Ok(())
        } else {
            Err(self.fail(PolicyError::NotBound { role: iface.role() }))
        }
    }

    /// Asks the classifier about `call`.
    pub async fn classify(&self, call: &id::CallInfo) -> Result<id::Classification, PolicyError> {
        self.exported(Interface::Classifier)?;
        let indices = self.plugin().indices();
        let out = on_instance!(&*self.pool, |w| w.exports.classify(indices, &mut w.store, &w.instance, call))?;
        let c = out.map_err(|e| self.guest_error(e))?;
        validate::classification(&c).map_err(|d| self.invalid(d))?;
        Ok(c)
    }

    /// Asks the claims-mapper for the principal of `claims_json`.
    pub async fn map_claims(&self, provider: &str, claims_json: &str) -> Result<id::Principal, PolicyError> {
        self.exported(Interface::ClaimsMapper)?;
        let indices = self.plugin().indices();
        let out = on_instance!(&*self.pool, |w| w.exports.map_claims(
            indices,
            &mut w.store,
            &w.instance,
            provider,
            claims_json
        ))?;
        let p = out.map_err(|e| self.guest_error(e))?;
        validate::principal(&p).map_err(|d| self.invalid(d))?;
        Ok(p)
    }

    /// Asks the authorizer about `request`.
    pub async fn authorize(&self, request: &id::AuthzRequest) -> Result<id::Decision, PolicyError> {
        self.exported(Interface::Authorizer)?;
        let indices = self.plugin().indices();
        let out = on_instance!(&*self.pool, |w| w.exports.authorize(indices, &mut w.store, &w.instance, request))?;
        match out.map_err(|e| self.guest_error(e))? {
            id::Decision::Allow => Ok(id::Decision::Allow),
            id::Decision::Deny(reason) => Ok(id::Decision::Deny(validate::reason(reason))),
        }
    }

    /// Asks the credential policy which credentials `call` gets.
    pub async fn select_credentials(
        &self,
        call: &id::CallInfo,
        principal: Option<&id::Principal>,
        catalogue: &[id::CredentialInfo],
    ) -> Result<Vec<id::CredentialUse>, PolicyError> {
        self.exported(Interface::CredentialPolicy)?;
        let indices = self.plugin().indices();
        let out = on_instance!(&*self.pool, |w| w.exports.select_credentials(
            indices,
            &mut w.store,
            &w.instance,
            call,
            principal,
            catalogue
        ))?;
        let uses = out.map_err(|e| self.guest_error(e))?;
        validate::credential_uses(&uses, catalogue, &self.reserved).map_err(|d| self.invalid(d))?;
        Ok(uses)
    }
}

#[cfg(test)]
mod tests;
