//! Decision logic of wasmgate's default policy components.
//!
//! This crate has no WIT bindings: it works on plain Rust mirrors of the
//! contract's types ([`types`]) and reads settings through the [`Settings`]
//! trait, so every rule is unit-tested on the host target. The component
//! crates (`default-classifier`, `oidc-claims-mapper`, `rbac-authorizer`,
//! `default-credential-policy`) only convert between the WIT types and these.
#![forbid(unsafe_code)]

pub mod authorizer;
pub mod claims;
pub mod classifier;
pub mod credentials;
pub mod pattern;
pub mod settings;
pub mod types;

pub use settings::Settings;
pub use types::*;
