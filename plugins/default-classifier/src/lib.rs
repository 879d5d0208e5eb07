//! wasmgate's default classifier component (world `classifier-plugin`),
//! written with `wasmgate-plugin-sdk` like any other plugin.
//!
//! The decision logic is [`wasmgate_policy_common::classifier`]; this crate
//! reads the binding's settings once per instance and exports the role.

#![forbid(unsafe_code)]

use wasmgate_plugin_sdk::settings::{self, PerInstance};
use wasmgate_plugin_sdk::{CallInfo, Classification, Classifier, PolicyError};
use wasmgate_policy_common::classifier::ClassifierConfig;

/// The binding's settings, parsed once per instance: they never change for
/// its life (an instance serves one binding).
static CONFIG: PerInstance<ClassifierConfig> = PerInstance::new();

/// The component.
struct DefaultClassifier;

impl Classifier for DefaultClassifier {
    fn classify(call: CallInfo) -> Result<Classification, PolicyError> {
        let config = CONFIG.get_or_try_init(|| ClassifierConfig::from_settings(&settings::raw))?;
        Ok(config.classify(&call.path))
    }
}

wasmgate_plugin_sdk::export_classifier!(DefaultClassifier);
