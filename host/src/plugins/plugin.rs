//! A compiled component and the policy interfaces it exports.

use std::fmt;
use std::sync::Mutex;

use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre};

use super::host::StoreState;
use super::wit::ExportIndices;
use super::{LoadError, PolicyError};
use crate::metrics;

/// A policy interface a component can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interface {
    /// `classifier`
    Classifier,
    /// `claims-mapper`
    ClaimsMapper,
    /// `authorizer`
    Authorizer,
    /// `credential-policy`
    CredentialPolicy,
}

impl Interface {
    /// Every interface, in WIT order.
    pub const ALL: [Interface; 4] =
        [Interface::Classifier, Interface::ClaimsMapper, Interface::Authorizer, Interface::CredentialPolicy];

    /// The fully qualified WIT name.
    pub fn wit_name(self) -> &'static str {
        match self {
            Self::Classifier => "wasmgate:policy/classifier@0.1.0",
            Self::ClaimsMapper => "wasmgate:policy/claims-mapper@0.1.0",
            Self::Authorizer => "wasmgate:policy/authorizer@0.1.0",
            Self::CredentialPolicy => "wasmgate:policy/credential-policy@0.1.0",
        }
    }

    /// The short name used in config and messages.
    pub fn role(self) -> &'static str {
        match self {
            Self::Classifier => "classifier",
            Self::ClaimsMapper => "claims-mapper",
            Self::Authorizer => "authorizer",
            Self::CredentialPolicy => "credential-policy",
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.role())
    }
}

/// Which policy interfaces a component exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exports(Vec<Interface>);

impl Exports {
    /// Whether `iface` is exported.
    pub fn has(&self, iface: Interface) -> bool {
        self.0.contains(&iface)
    }

    /// The exported interfaces.
    pub fn iter(&self) -> impl Iterator<Item = Interface> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for Exports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        let names: Vec<_> = self.0.iter().map(|i| i.role()).collect();
        f.write_str(&names.join(", "))
    }
}

/// A compiled, linked and pre-instantiated component.
pub struct Plugin {
    name: std::sync::Arc<str>,
    sha256: String,
    /// The last failed call: what happened, and when (Unix seconds).
    last_error: Mutex<Option<(String, u64)>>,
    exports: Exports,
    pre: InstancePre<StoreState>,
    /// The typed handles of `exports`.
    indices: ExportIndices,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("exports", &self.exports)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin `pre` (of `component`) makes, with the policy interfaces
    /// it exports; refused if it exports none.
    pub(super) fn new(
        name: &str,
        sha256: String,
        component: &Component,
        pre: InstancePre<StoreState>,
        engine: &Engine,
    ) -> Result<Self, LoadError> {
        let indices = ExportIndices::new(&pre);
        let exports: Vec<Interface> = Interface::ALL.into_iter().filter(|i| indices.has(*i)).collect();
        if exports.is_empty() {
            let found: Vec<String> = component.component_type().exports(engine).map(|(n, _)| n.to_owned()).collect();
            let expected: Vec<&str> = Interface::ALL.iter().map(|i| i.wit_name()).collect();
            return Err(LoadError::WrongWorld {
                name: name.to_owned(),
                detail: format!(
                    "exports none of the policy interfaces (expected at least one of {}; it exports {})",
                    expected.join(", "),
                    if found.is_empty() { "nothing".to_owned() } else { found.join(", ") }
                ),
            });
        }
        Ok(Self { name: name.into(), sha256, last_error: Mutex::default(), exports: Exports(exports), pre, indices })
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the component bytes, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The policy interfaces it exports.
    pub fn exports(&self) -> &Exports {
        &self.exports
    }

    /// The last call of this component that failed (fail closed), and when
    /// (Unix seconds).
    pub fn last_error(&self) -> Option<(String, u64)> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// The name, shared with every store of the component.
    pub(super) fn shared_name(&self) -> &std::sync::Arc<str> {
        &self.name
    }

    /// The pre-instantiated component.
    pub(super) fn pre(&self) -> &InstancePre<StoreState> {
        &self.pre
    }

    /// The typed handles of its exports.
    pub(super) fn indices(&self) -> &ExportIndices {
        &self.indices
    }

    /// Counts `err` and remembers it as the last error.
    pub(super) fn record_failure(&self, err: &PolicyError) {
        metrics::policy_failure(&self.name, err.kind());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some((err.to_string(), now));
        }
    }
}
