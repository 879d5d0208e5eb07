//! Write wasmgate policy components in Rust.
//!
//! A policy component implements one or more roles of the contract in
//! `wit/policy.wit` (`wasmgate:policy@0.1.0`). With this crate a component is
//! a type implementing a role trait plus one macro call:
//!
//! ```ignore
//! use wasmgate_plugin_sdk::{settings, AuthClass, Authorizer, AuthzRequest, Decision, PolicyError};
//!
//! struct OnlyAcme;
//!
//! impl Authorizer for OnlyAcme {
//!     fn authorize(request: AuthzRequest) -> Result<Decision, PolicyError> {
//!         if request.classification.class == AuthClass::Unauthenticated {
//!             return Ok(Decision::Allow);
//!         }
//!         let tenant: String = settings::require("tenant")?;
//!         match request.authentication.principal.and_then(|p| p.tenant) {
//!             Some(t) if t == tenant => Ok(Decision::Allow),
//!             _ => Ok(Decision::deny("wrong tenant")),
//!         }
//!     }
//! }
//!
//! wasmgate_plugin_sdk::export_authorizer!(OnlyAcme);
//! ```
//!
//! Build the crate as a `cdylib` for `wasm32-wasip2`; the result is the
//! component. Invoking several `export_*!` macros (for one type or several)
//! makes a component that serves several roles.
//!
//! Besides the bindings the crate offers:
//! - [`settings`]: typed access to the binding's `settings:` map, parsed once
//!   per instance, with `invalid-config` errors that name the key;
//! - [`log`]: the host's log;
//! - [`claims`]: claim paths (`realm_access.roles` or
//!   `["https://example.com/roles"]`) and lookups in verified claims.
//!
//! The helpers that do not call the host are plain Rust and can be
//! unit-tested natively; calling the host (`settings::get`, `log::info`, …)
//! outside a component panics.

pub mod bindings;
pub mod claims;
pub mod log;
pub mod settings;

mod types_ext;

/// Severity of a log line (WIT `host.log-level`).
pub use bindings::base::wasmgate::policy::host::LogLevel;
/// How a method must be authenticated (WIT `auth-class`).
pub use bindings::base::wasmgate::policy::types::AuthClass;
/// The outcome of authentication (WIT `authentication`).
pub use bindings::base::wasmgate::policy::types::Authentication;
/// Everything an authorizer is asked about (WIT `authz-request`).
pub use bindings::base::wasmgate::policy::types::AuthzRequest;
/// The call being decided (WIT `call-info`).
pub use bindings::base::wasmgate::policy::types::CallInfo;
/// A classifier's answer (WIT `classification`).
pub use bindings::base::wasmgate::policy::types::Classification;
/// One entry of the credentials catalogue (WIT `credential-info`).
pub use bindings::base::wasmgate::policy::types::CredentialInfo;
/// Which kind of credential authenticated the call (WIT `credential-kind`).
pub use bindings::base::wasmgate::policy::types::CredentialKind;
/// A credential to inject upstream (WIT `credential-use`).
pub use bindings::base::wasmgate::policy::types::CredentialUse;
/// An authorizer's verdict (WIT `decision`).
pub use bindings::base::wasmgate::policy::types::Decision;
/// A deliberate failure; every variant fails closed (WIT `policy-error`).
pub use bindings::base::wasmgate::policy::types::PolicyError;
/// Who is calling (WIT `principal`).
pub use bindings::base::wasmgate::policy::types::Principal;
/// The wire protocol (WIT `protocol`).
pub use bindings::base::wasmgate::policy::types::Protocol;
/// Where the credential came from (WIT `token-source`).
pub use bindings::base::wasmgate::policy::types::TokenSource;

/// The `classifier` role: decides how a method must be authenticated.
///
/// The gateway caches the answer per component generation, route, HTTP
/// method and path, so it must depend only on those fields of the call and
/// on the settings.
pub trait Classifier {
    /// Classifies one call.
    fn classify(call: CallInfo) -> Result<Classification, PolicyError>;
}

/// The `claims-mapper` role: turns verified token claims into a principal.
pub trait ClaimsMapper {
    /// Maps the claims of a token from the provider named `provider`.
    ///
    /// `claims` is the token's payload, already parsed; if the host's JSON
    /// is not an object the SDK answers `invalid-input` without calling this.
    fn map_claims(provider: &str, claims: &serde_json::Value) -> Result<Principal, PolicyError>;
}

/// The `authorizer` role: allows or denies one call.
pub trait Authorizer {
    /// Decides one call. Return [`Decision::deny`] with a short reason (it is
    /// logged, never shown to the client).
    fn authorize(request: AuthzRequest) -> Result<Decision, PolicyError>;
}

/// The `credential-policy` role: chooses the upstream credentials of a call.
pub trait CredentialPolicy {
    /// Returns the credentials from `catalogue` that this call gets.
    fn select_credentials(
        call: CallInfo,
        principal: Option<Principal>,
        catalogue: Vec<CredentialInfo>,
    ) -> Result<Vec<CredentialUse>, PolicyError>;
}

/// Parses the claims JSON handed to a claims-mapper; used by
/// [`export_claims_mapper!`].
#[doc(hidden)]
pub fn __parse_claims(claims: &str) -> Result<serde_json::Value, PolicyError> {
    match serde_json::from_str::<serde_json::Value>(claims) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        _ => Err(PolicyError::InvalidInput("claims are not a JSON object".to_owned())),
    }
}

/// Exports a type implementing [`Classifier`] as the component's
/// `wasmgate:policy/classifier`. Invoke once, at the crate's top level, with
/// the name of a type in scope.
#[macro_export]
macro_rules! export_classifier {
    ($ty:ident) => {
        const _: () = {
            impl $crate::bindings::classifier_plugin::exports::wasmgate::policy::classifier::Guest for $ty {
                fn classify(
                    call: $crate::CallInfo,
                ) -> ::core::result::Result<$crate::Classification, $crate::PolicyError> {
                    <$ty as $crate::Classifier>::classify(call)
                }
            }
        };
        $crate::bindings::classifier_plugin::export_world!($ty with_types_in $crate::bindings::classifier_plugin);
    };
}

/// Exports a type implementing [`ClaimsMapper`] as the component's
/// `wasmgate:policy/claims-mapper`. Invoke once, at the crate's top level,
/// with the name of a type in scope.
#[macro_export]
macro_rules! export_claims_mapper {
    ($ty:ident) => {
        const _: () = {
            impl $crate::bindings::claims_mapper_plugin::exports::wasmgate::policy::claims_mapper::Guest for $ty {
                fn map_claims(
                    provider: ::std::string::String,
                    claims: ::std::string::String,
                ) -> ::core::result::Result<$crate::Principal, $crate::PolicyError> {
                    let claims = $crate::__parse_claims(&claims)?;
                    <$ty as $crate::ClaimsMapper>::map_claims(&provider, &claims)
                }
            }
        };
        $crate::bindings::claims_mapper_plugin::export_world!($ty with_types_in $crate::bindings::claims_mapper_plugin);
    };
}

/// Exports a type implementing [`Authorizer`] as the component's
/// `wasmgate:policy/authorizer`. Invoke once, at the crate's top level, with
/// the name of a type in scope.
#[macro_export]
macro_rules! export_authorizer {
    ($ty:ident) => {
        const _: () = {
            impl $crate::bindings::authorizer_plugin::exports::wasmgate::policy::authorizer::Guest for $ty {
                fn authorize(
                    request: $crate::AuthzRequest,
                ) -> ::core::result::Result<$crate::Decision, $crate::PolicyError> {
                    <$ty as $crate::Authorizer>::authorize(request)
                }
            }
        };
        $crate::bindings::authorizer_plugin::export_world!($ty with_types_in $crate::bindings::authorizer_plugin);
    };
}

/// Exports a type implementing [`CredentialPolicy`] as the component's
/// `wasmgate:policy/credential-policy`. Invoke once, at the crate's top
/// level, with the name of a type in scope.
#[macro_export]
macro_rules! export_credential_policy {
    ($ty:ident) => {
        const _: () = {
            impl $crate::bindings::credential_policy_plugin::exports::wasmgate::policy::credential_policy::Guest
                for $ty
            {
                fn select_credentials(
                    call: $crate::CallInfo,
                    principal: ::core::option::Option<$crate::Principal>,
                    catalogue: ::std::vec::Vec<$crate::CredentialInfo>,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::CredentialUse>, $crate::PolicyError> {
                    <$ty as $crate::CredentialPolicy>::select_credentials(call, principal, catalogue)
                }
            }
        };
        $crate::bindings::credential_policy_plugin::export_world!(
            $ty with_types_in $crate::bindings::credential_policy_plugin
        );
    };
}
