//! The default components, built from `plugins/` by `build.rs` and embedded
//! in the binary so the gateway runs with no plugin folder.

use std::path::PathBuf;

/// The embedded components, by their `builtin:` name.
pub const BUILTINS: &[(&str, &[u8])] = &[
    ("default-classifier", include_bytes!(concat!(env!("WASMGATE_COMPONENTS_DIR"), "/default_classifier.wasm"))),
    ("oidc-claims-mapper", include_bytes!(concat!(env!("WASMGATE_COMPONENTS_DIR"), "/oidc_claims_mapper.wasm"))),
    ("rbac-authorizer", include_bytes!(concat!(env!("WASMGATE_COMPONENTS_DIR"), "/rbac_authorizer.wasm"))),
    (
        "default-credential-policy",
        include_bytes!(concat!(env!("WASMGATE_COMPONENTS_DIR"), "/default_credential_policy.wasm")),
    ),
];

/// The bytes of an embedded component.
pub fn builtin_bytes(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Where build.rs put a test fixture component (`misbehaving_authorizer`,
/// `wrong_world`, ...). For tests and benchmarks of this build only.
pub fn fixture_path(artifact: &str) -> PathBuf {
    PathBuf::from(env!("WASMGATE_COMPONENTS_DIR")).join(format!("{artifact}.wasm"))
}
