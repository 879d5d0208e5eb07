//! wasmgate's default role/scope authorizer component (world
//! `authorizer-plugin`), written with `wasmgate-plugin-sdk` like any other
//! plugin.
//!
//! The decision logic is [`wasmgate_policy_common::authorizer`]; this crate
//! reads the binding's settings once per instance and exports the role.

#![forbid(unsafe_code)]

use wasmgate_plugin_sdk::settings::{self, PerInstance};
use wasmgate_plugin_sdk::{Authorizer, AuthzRequest, Decision, PolicyError};
use wasmgate_policy_common::authorizer::{AuthorizerConfig, AuthzInput};

/// The binding's settings, parsed once per instance: they never change for
/// its life (an instance serves one binding).
static CONFIG: PerInstance<AuthorizerConfig> = PerInstance::new();

/// The component.
struct RbacAuthorizer;

impl Authorizer for RbacAuthorizer {
    fn authorize(request: AuthzRequest) -> Result<Decision, PolicyError> {
        let config = CONFIG.get_or_try_init(|| AuthorizerConfig::from_settings(&settings::raw))?;
        Ok(config.authorize(&AuthzInput::from(&request)))
    }
}

wasmgate_plugin_sdk::export_authorizer!(RbacAuthorizer);
