//! Decision logic of wasmgate's default policy components.
//!
//! The logic works on the types of `wasmgate-plugin-sdk` (the WIT types of
//! `wasmgate:policy@0.1.0`) and reads settings through the [`Settings`]
//! trait, so every rule is unit-tested on the host target without calling
//! the host. The component crates (`default-classifier`,
//! `oidc-claims-mapper`, `rbac-authorizer`, `default-credential-policy`) are
//! written with the SDK like any other plugin: a role trait, an export
//! macro, and the settings source `wasmgate_plugin_sdk::settings::raw`.
#![forbid(unsafe_code)]

pub mod authorizer;
pub mod claims;
pub mod classifier;
pub mod credentials;
pub mod pattern;
pub mod settings;

pub use settings::Settings;
