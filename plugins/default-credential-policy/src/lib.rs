//! wasmgate's default credential policy component (world
//! `credential-policy-plugin`): injects nothing unless its `rules` setting
//! says so. Written with `wasmgate-plugin-sdk` like any other plugin.
//!
//! The decision logic is [`wasmgate_policy_common::credentials`]; this crate
//! reads the binding's settings once per instance, exports the role and
//! writes the selection's log lines to the gateway's log.

#![forbid(unsafe_code)]

use wasmgate_plugin_sdk::settings::{self, PerInstance};
use wasmgate_plugin_sdk::{CallInfo, CredentialInfo, CredentialPolicy, CredentialUse, PolicyError, Principal, log};
use wasmgate_policy_common::credentials::CredentialPolicyConfig;

/// The binding's settings, parsed once per instance: they never change for
/// its life (an instance serves one binding).
static CONFIG: PerInstance<CredentialPolicyConfig> = PerInstance::new();

/// The component.
struct DefaultCredentialPolicy;

impl CredentialPolicy for DefaultCredentialPolicy {
    fn select_credentials(
        call: CallInfo,
        principal: Option<Principal>,
        catalogue: Vec<CredentialInfo>,
    ) -> Result<Vec<CredentialUse>, PolicyError> {
        let config = CONFIG.get_or_try_init(|| CredentialPolicyConfig::from_settings(&settings::raw))?;
        let selection = config.select(&call.path, principal.as_ref(), &catalogue);
        for (level, message) in &selection.log {
            log::log(*level, message);
        }
        Ok(selection.uses)
    }
}

wasmgate_plugin_sdk::export_credential_policy!(DefaultCredentialPolicy);
