//! The WIT bindings of `wasmgate:policy@0.1.0`, generated once for every
//! component that uses the SDK.
//!
//! Most code never needs this module: the types are re-exported at the crate
//! root and the `export_*!` macros use it. It is public because those macros
//! expand in the component's crate.
//!
//! Layout: [`base`] holds the shared `types` and the `host` import; one
//! module per role world (`classifier_plugin`, …) holds that role's export
//! trait and wit-bindgen's export macro, reusing `base`'s types. wit-bindgen
//! describes a world's exports only inside its export macro, so a component
//! exports exactly the roles whose `export_*!` macros it invokes.

#![allow(missing_docs, missing_debug_implementations, unused_qualifications, clippy::all)]

/// Shared types (`wasmgate:policy/types`) and the host import
/// (`wasmgate:policy/host`).
pub mod base {
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package wasmgate:plugin-sdk;
            world base {
                import wasmgate:policy/types@0.1.0;
                import wasmgate:policy/host@0.1.0;
            }
        ",
        world: "wasmgate:plugin-sdk/base",
        pub_export_macro: true,
        generate_all,
        // Records and variants compare with `==` (so `assert_eq!` works in
        // unit tests); enums already do. Every type also has `Debug`.
        additional_derives: [PartialEq, Eq, Hash],
    });
}

/// The `classifier-plugin` world.
pub mod classifier_plugin {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wasmgate:policy/classifier-plugin",
        with: {
            "wasmgate:policy/types@0.1.0": crate::bindings::base::wasmgate::policy::types,
            "wasmgate:policy/host@0.1.0": crate::bindings::base::wasmgate::policy::host,
        },
        pub_export_macro: true,
        default_bindings_module: "::wasmgate_plugin_sdk::bindings::classifier_plugin",
        export_macro_name: "export_world",
    });
}

/// The `claims-mapper-plugin` world.
pub mod claims_mapper_plugin {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wasmgate:policy/claims-mapper-plugin",
        with: {
            "wasmgate:policy/types@0.1.0": crate::bindings::base::wasmgate::policy::types,
            "wasmgate:policy/host@0.1.0": crate::bindings::base::wasmgate::policy::host,
        },
        pub_export_macro: true,
        default_bindings_module: "::wasmgate_plugin_sdk::bindings::claims_mapper_plugin",
        export_macro_name: "export_world",
    });
}

/// The `authorizer-plugin` world.
pub mod authorizer_plugin {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wasmgate:policy/authorizer-plugin",
        with: {
            "wasmgate:policy/types@0.1.0": crate::bindings::base::wasmgate::policy::types,
            "wasmgate:policy/host@0.1.0": crate::bindings::base::wasmgate::policy::host,
        },
        pub_export_macro: true,
        default_bindings_module: "::wasmgate_plugin_sdk::bindings::authorizer_plugin",
        export_macro_name: "export_world",
    });
}

/// The `credential-policy-plugin` world.
pub mod credential_policy_plugin {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wasmgate:policy/credential-policy-plugin",
        with: {
            "wasmgate:policy/types@0.1.0": crate::bindings::base::wasmgate::policy::types,
            "wasmgate:policy/host@0.1.0": crate::bindings::base::wasmgate::policy::host,
        },
        pub_export_macro: true,
        default_bindings_module: "::wasmgate_plugin_sdk::bindings::credential_policy_plugin",
        export_macro_name: "export_world",
    });
}
