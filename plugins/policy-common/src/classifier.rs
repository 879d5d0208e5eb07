//! The default classifier: a table of method patterns.
//!
//! Settings:
//! - `methods` (JSON list, default `[]`): entries
//!   `{"match": PATTERN, "class": CLASS, "scopes": [SCOPE, ...]}` where CLASS
//!   is `unauthenticated`, `sandbox-secret`, `dual-auth` or `bearer` and
//!   `scopes` is optional (default `[]`). See [`crate::pattern`] for PATTERN.
//! - `wildcard-scope` (string, default `wasmgate:all`).
//!
//! The most specific matching entry decides. A path that matches nothing is
//! `bearer` requiring the wildcard scope: only callers holding it get
//! through, so a forgotten method is closed by default.

use crate::pattern::PatternTable;
use crate::settings::{self, Settings, invalid};
use serde::Deserialize;
use wasmgate_plugin_sdk::{AuthClass, Classification, PolicyError};

/// Default of the `wildcard-scope` setting (classifier and authorizer).
pub const DEFAULT_WILDCARD_SCOPE: &str = "wasmgate:all";

/// How `class` is written in `methods`: the WIT names (`dual-auth`).
#[derive(Deserialize)]
#[serde(remote = "AuthClass", rename_all = "kebab-case")]
enum AuthClassName {
    Unauthenticated,
    SandboxSecret,
    DualAuth,
    Bearer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MethodEntry {
    #[serde(rename = "match")]
    pattern: String,
    #[serde(with = "AuthClassName")]
    class: AuthClass,
    #[serde(default)]
    scopes: Vec<String>,
}

/// The parsed settings of the classifier.
#[derive(Debug, Clone)]
pub struct ClassifierConfig {
    table: PatternTable<Classification>,
    wildcard_scope: String,
}

impl ClassifierConfig {
    /// Reads and validates the settings.
    pub fn from_settings(s: &(impl Settings + ?Sized)) -> Result<Self, PolicyError> {
        let wildcard_scope = wildcard_scope(s)?;
        let entries: Vec<MethodEntry> = settings::json(s, "methods")?.unwrap_or_default();
        let mut rows = Vec::with_capacity(entries.len());
        for entry in entries {
            for scope in &entry.scopes {
                settings::validate_scope(scope).map_err(|e| invalid("methods", format!("`{}`: {e}", entry.pattern)))?;
            }
            if !entry.scopes.is_empty() && matches!(entry.class, AuthClass::Unauthenticated | AuthClass::SandboxSecret)
            {
                // Such scopes would never be checked: refuse rather than
                // give a false sense of protection.
                return Err(invalid(
                    "methods",
                    format!("`{}`: scopes cannot apply to class {}", entry.pattern, entry.class),
                ));
            }
            rows.push((entry.pattern, Classification { class: entry.class, required_scopes: entry.scopes }));
        }
        let table = PatternTable::build(rows).map_err(|e| invalid("methods", e))?;
        Ok(Self { table, wildcard_scope })
    }

    /// Classifies a call by its path.
    pub fn classify(&self, path: &str) -> Classification {
        self.table.lookup(path).cloned().unwrap_or_else(|| Classification {
            class: AuthClass::Bearer,
            required_scopes: vec![self.wildcard_scope.clone()],
        })
    }
}

/// Reads the `wildcard-scope` setting (shared with the authorizer).
pub fn wildcard_scope(s: &(impl Settings + ?Sized)) -> Result<String, PolicyError> {
    let scope = settings::string(s, "wildcard-scope", DEFAULT_WILDCARD_SCOPE);
    settings::validate_scope(&scope).map_err(|e| invalid("wildcard-scope", e))?;
    Ok(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METHODS: &str = r#"[
        {"match": "/v1/health", "class": "unauthenticated"},
        {"match": "/v1/public/*", "class": "unauthenticated"},
        {"match": "/sandbox.v1.SandboxService/*", "class": "dual-auth", "scopes": ["sandbox.use"]},
        {"match": "/sandbox.v1.SandboxService/GetSandbox", "class": "sandbox-secret"},
        {"match": "/sandbox.v1.SandboxService/Create*", "class": "bearer", "scopes": ["sandbox.create", "sandbox.use"]}
    ]"#;

    fn classify(settings: &[(&str, &str)], path: &str) -> Classification {
        ClassifierConfig::from_settings(settings).expect("valid settings").classify(path)
    }

    fn class(c: AuthClass, scopes: &[&str]) -> Classification {
        Classification { class: c, required_scopes: scopes.iter().map(|s| (*s).to_owned()).collect() }
    }

    fn config_error(settings: &[(&str, &str)]) -> String {
        match ClassifierConfig::from_settings(settings) {
            Err(PolicyError::InvalidConfig(m)) => m,
            other => panic!("expected invalid-config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_deny_everything_without_the_wildcard_scope() {
        let c = classify(&[], "/anything");
        assert_eq!(c, class(AuthClass::Bearer, &["wasmgate:all"]));
    }

    #[test]
    fn custom_wildcard_scope_is_required_for_unmatched_paths() {
        let c = classify(&[("wildcard-scope", "gw:admin")], "/x");
        assert_eq!(c, class(AuthClass::Bearer, &["gw:admin"]));
        assert!(config_error(&[("wildcard-scope", "")]).contains("wildcard-scope"));
        assert!(config_error(&[("wildcard-scope", "a b")]).contains("whitespace"));
    }

    #[test]
    fn every_class_and_precedence() {
        let s = [("methods", METHODS)];
        assert_eq!(classify(&s, "/v1/health"), class(AuthClass::Unauthenticated, &[]));
        assert_eq!(classify(&s, "/v1/public/docs"), class(AuthClass::Unauthenticated, &[]));
        // Exact beats the service prefix.
        assert_eq!(classify(&s, "/sandbox.v1.SandboxService/GetSandbox"), class(AuthClass::SandboxSecret, &[]));
        // Longer prefix beats the service prefix.
        assert_eq!(
            classify(&s, "/sandbox.v1.SandboxService/CreateSandbox"),
            class(AuthClass::Bearer, &["sandbox.create", "sandbox.use"])
        );
        assert_eq!(
            classify(&s, "/sandbox.v1.SandboxService/ListSandboxes"),
            class(AuthClass::DualAuth, &["sandbox.use"])
        );
        // Near misses fall through to the default.
        assert_eq!(classify(&s, "/v1/health/"), class(AuthClass::Bearer, &["wasmgate:all"]));
        assert_eq!(classify(&s, "/v1/public"), class(AuthClass::Bearer, &["wasmgate:all"]));
    }

    #[test]
    fn scopes_default_to_empty() {
        let s = [("methods", r#"[{"match": "/a", "class": "bearer"}]"#)];
        assert_eq!(classify(&s, "/a"), class(AuthClass::Bearer, &[]));
    }

    #[test]
    fn rejects_malformed_methods() {
        let cases = [
            (r#"[{"match": "/a", "class": "root"}]"#, "unknown variant"),
            (r#"[{"match": "a", "class": "bearer"}]"#, "must start with"),
            (r#"[{"match": "/a/*/b", "class": "bearer"}]"#, "last character"),
            (r#"[{"match": "/a", "class": "bearer"}, {"match": "/a", "class": "dual-auth"}]"#, "duplicate"),
            (r#"[{"match": "/a", "class": "bearer", "scope": ["x"]}]"#, "unknown field"),
            (r#"[{"class": "bearer"}]"#, "missing field"),
            (r#"[{"match": "/a", "class": "bearer", "scopes": [""]}]"#, "empty scope"),
            (r#"[{"match": "/a", "class": "bearer", "scopes": [1]}]"#, "invalid type"),
            (r#"[{"match": "/a", "class": "unauthenticated", "scopes": ["x"]}]"#, "cannot apply"),
            (r#"[{"match": "/a", "class": "sandbox-secret", "scopes": ["x"]}]"#, "cannot apply"),
            (r#"{"match": "/a"}"#, "invalid type"),
            ("not json", "expected"),
        ];
        for (methods, needle) in cases {
            let message = config_error(&[("methods", methods)]);
            assert!(message.contains(needle), "{methods}: {message}");
            assert!(message.contains("`methods`"), "{message}");
        }
    }

    #[test]
    fn empty_methods_list_is_the_default() {
        assert_eq!(classify(&[("methods", "[]")], "/v1/health"), class(AuthClass::Bearer, &["wasmgate:all"]));
    }
}
