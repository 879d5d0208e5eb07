//! The WebAssembly component host and the policy set.
//!
//! - [`PluginEngine`] owns the wasmtime engine (pooling allocator, epoch
//!   interruption), the linker (the `host` interface and an empty WASI) and
//!   the per-call limits.
//! - [`Plugin`] is one compiled, type-checked, pre-instantiated component and
//!   the interfaces it exports.
//! - [`Binding`] is a plugin bound to a role with its settings; its methods
//!   run one policy call each, in a fresh store, and validate the result.
//! - [`Slot`] is the binding serving a role in one scope (global, a route,
//!   a provider, a tenant) with an optional shadow binding evaluated next to
//!   it.
//! - [`PolicySet`] is the immutable snapshot of every slot the gateway
//!   uses; the server swaps whole snapshots.
//! - [`CaseFile`] holds a component's golden cases; a candidate that fails
//!   one is rejected.
//!
//! Every failure (trap, deadline, memory cap, `policy-error`, malformed
//! result) is returned as a [`PolicyError`] and counted; callers fail closed.
//!
//! Inside: `host` is the host interface (store state, the `host` import,
//! limits, the empty WASI), `engine` the wasmtime engine and its epoch
//! ticker, `plugin` a compiled component, `pool` a binding's instances,
//! `calls` the typed calls, and `wit` the generated bindings, which no
//! other module names.

mod builtin;
mod cache;
mod calls;
mod cases;
mod engine;
mod host;
mod plugin;
mod policy_set;
mod pool;
mod slot;
pub(crate) mod validate;
mod wit;

pub use builtin::{BUILTINS, builtin_bytes, fixture_path};
pub use cache::CacheError;
pub use calls::Binding;
pub use cases::{BoundCase, CaseFile, CaseResult, CasesError, cases_candidates_for, cases_path_for};
pub use engine::PluginEngine;
pub use plugin::{Exports, Interface, Plugin};
pub use policy_set::{BindingInfo, LoadedPlugin, PolicySet};
pub use slot::{MAX_SHADOW_IN_FLIGHT, Scope, ShadowCounts, ShadowRun, Slot};

/// The WIT package every policy interface belongs to.
pub const WIT_PACKAGE: &str = "wasmgate:policy@0.1.0";

/// Why a policy call or a component load failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The component ran past its deadline.
    #[error("policy component {plugin} exceeded its deadline")]
    Timeout {
        /// Component name.
        plugin: String,
    },
    /// The component tried to grow memory beyond its cap.
    #[error("policy component {plugin} exceeded its memory limit")]
    MemoryLimit {
        /// Component name.
        plugin: String,
    },
    /// The component trapped (panic, unreachable, bad memory access...).
    #[error("policy component {plugin} trapped: {detail}")]
    Trap {
        /// Component name.
        plugin: String,
        /// The trap, for logs.
        detail: String,
    },
    /// The component returned `err(policy-error)`.
    #[error("policy component {plugin} returned an error: {kind}: {detail}")]
    Guest {
        /// Component name.
        plugin: String,
        /// Which `policy-error` case it returned.
        kind: GuestErrorKind,
        /// Its message, for logs.
        detail: String,
    },
    /// The component returned something the host does not accept.
    #[error("policy component {plugin} returned an invalid result: {detail}")]
    InvalidResult {
        /// Component name.
        plugin: String,
        /// What was wrong.
        detail: String,
    },
    /// No component serves this role.
    #[error("no policy component serves {role}")]
    NotBound {
        /// The role.
        role: &'static str,
    },
}

impl PolicyError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::Trap { .. } => "trap",
            Self::Guest { .. } => "guest_error",
            Self::InvalidResult { .. } => "invalid_result",
            Self::NotBound { .. } => "not_bound",
        }
    }
}

/// The case of a `policy-error` a component returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestErrorKind {
    /// `invalid-config`: the binding's settings are unusable.
    InvalidConfig,
    /// `invalid-input`: the component cannot answer for this input.
    InvalidInput,
    /// `internal`: anything else.
    Internal,
}

impl GuestErrorKind {
    /// Every kind, in WIT order.
    pub const ALL: [GuestErrorKind; 3] = [Self::InvalidConfig, Self::InvalidInput, Self::Internal];

    /// The WIT name (`invalid-config`, `invalid-input`, `internal`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidConfig => "invalid-config",
            Self::InvalidInput => "invalid-input",
            Self::Internal => "internal",
        }
    }

    /// The kind named `name` (its WIT name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for GuestErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first line of `e` (with its causes), at most 512 bytes: what a
/// message about a wasmtime error keeps.
fn first_line(e: &impl std::fmt::Display) -> String {
    let s = format!("{e:#}");
    let line = s.lines().next().unwrap_or_default();
    let mut out = line.to_owned();
    if out.len() > 512 {
        let mut cut = 512;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Why a component could not be loaded or bound.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The engine could not be created.
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    /// The bytes are not a valid component (or failed to compile).
    #[error("{name}: not a valid WebAssembly component: {detail}")]
    Compile {
        /// Component name.
        name: String,
        /// Compiler message.
        detail: String,
    },
    /// The component imports something the host does not provide.
    #[error("{name}: cannot be linked: {detail}")]
    Link {
        /// Component name.
        name: String,
        /// Linker message.
        detail: String,
    },
    /// The component exports none of the policy interfaces, or not the one a binding needs.
    #[error("{name}: {detail}")]
    WrongWorld {
        /// Component name.
        name: String,
        /// What it exports and what was expected.
        detail: String,
    },
    /// Instantiation trapped or an export has the wrong type.
    #[error("{name}: instantiation failed: {detail}")]
    Instantiate {
        /// Component name.
        name: String,
        /// The error.
        detail: String,
    },
    /// The golden cases file beside the component is unusable.
    #[error("{name}: {detail}")]
    Cases {
        /// Component name.
        name: String,
        /// What is wrong with the file.
        detail: String,
    },
    /// The component failed one of its golden cases.
    #[error("{name}: golden case {case:?} failed: {detail}")]
    GoldenCase {
        /// Component name.
        name: String,
        /// The case's name.
        case: String,
        /// Expected and actual.
        detail: String,
    },
    /// The component file could not be read.
    #[error("cannot read component {path}: {detail}")]
    Read {
        /// The path.
        path: String,
        /// The error.
        detail: String,
    },
}
