//! wasmgate's default OIDC claims mapper component (world
//! `claims-mapper-plugin`), with Keycloak's claim layout as the default,
//! written with `wasmgate-plugin-sdk` like any other plugin.
//!
//! The decision logic is [`wasmgate_policy_common::claims`]; this crate
//! reads the binding's settings once per instance and exports the role.

#![forbid(unsafe_code)]

use serde_json::Value;
use wasmgate_plugin_sdk::settings::{self, PerInstance};
use wasmgate_plugin_sdk::{ClaimsMapper, PolicyError, Principal};
use wasmgate_policy_common::claims::MapperConfig;

/// The binding's settings, parsed once per instance: they never change for
/// its life (an instance serves one binding).
static CONFIG: PerInstance<MapperConfig> = PerInstance::new();

/// The component.
struct OidcClaimsMapper;

impl ClaimsMapper for OidcClaimsMapper {
    /// The settings are those of the binding serving `provider`, so the
    /// provider name itself is not needed.
    fn map_claims(_provider: &str, claims: &Value) -> Result<Principal, PolicyError> {
        let config = CONFIG.get_or_try_init(|| MapperConfig::from_settings(&settings::raw))?;
        config.map(claims)
    }
}

wasmgate_plugin_sdk::export_claims_mapper!(OidcClaimsMapper);
