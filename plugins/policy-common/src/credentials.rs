//! The default credential policy: config-driven, injects nothing unless a
//! rule says so.
//!
//! Setting `rules` (JSON list, default `[]`), entries:
//! `{"match": PATTERN, "credential": NAME, "header": NAME, "prefix": TEXT,
//! "tenants": [TENANT, ...]}` where
//! - `match` is a method pattern ([`crate::pattern`]);
//! - `credential` names an entry of the credentials catalogue;
//! - `header` (default `authorization`): lowercase token characters, at most
//!   64 bytes, not a hop-by-hop header;
//! - `prefix` (default `Bearer `): at most 64 bytes of visible ASCII and
//!   spaces;
//! - `tenants` (optional): only principals whose tenant is listed get the
//!   credential (callers without a principal or tenant never do).
//!
//! Every rule whose pattern matches the path (not only the most specific)
//! and whose credential is in the catalogue yields a credential use, in rule
//! order. A rule naming a credential missing from the catalogue is skipped
//! with a warning. When several applicable rules set the same header, the
//! first one wins, so a later rule can act as a fallback.

use crate::pattern::MethodPattern;
use crate::settings::{self, Settings, invalid};
use serde::Deserialize;
use wasmgate_plugin_sdk::{CredentialInfo, CredentialUse, LogLevel, PolicyError, Principal};

/// Default header of a rule.
pub const DEFAULT_HEADER: &str = "authorization";
/// Default prefix of a rule.
pub const DEFAULT_PREFIX: &str = "Bearer ";
/// Longest header name and prefix the host accepts (bytes).
pub const MAX_HEADER_BYTES: usize = 64;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn default_header() -> String {
    DEFAULT_HEADER.to_owned()
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    #[serde(rename = "match")]
    pattern: String,
    credential: String,
    #[serde(default = "default_header")]
    header: String,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default)]
    tenants: Option<Vec<String>>,
}

/// One validated rule.
#[derive(Debug, Clone)]
struct Rule {
    pattern: MethodPattern,
    credential: String,
    header: String,
    prefix: String,
    tenants: Option<Vec<String>>,
}

/// The parsed settings of the credential policy.
#[derive(Debug, Clone, Default)]
pub struct CredentialPolicyConfig {
    rules: Vec<Rule>,
}

/// The outcome of one selection: the credentials to inject, and messages
/// for the host's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Credential uses, in rule order.
    pub uses: Vec<CredentialUse>,
    /// Log lines (level, message).
    pub log: Vec<(LogLevel, String)>,
}

fn validate_header(header: &str) -> Result<(), String> {
    let token_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    if header.is_empty() || header.len() > MAX_HEADER_BYTES {
        return Err(format!("header `{header}` must be 1 to 64 bytes"));
    }
    if !header.bytes().all(token_char) {
        return Err(format!("header `{header}` must be lowercase token characters"));
    }
    if HOP_BY_HOP.contains(&header) {
        return Err(format!("header `{header}` is hop-by-hop"));
    }
    Ok(())
}

fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > MAX_HEADER_BYTES {
        return Err(format!("prefix `{prefix}` is longer than 64 bytes"));
    }
    if !prefix.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(format!("prefix `{prefix}` must be visible ASCII and spaces"));
    }
    Ok(())
}

impl CredentialPolicyConfig {
    /// Reads and validates the settings.
    pub fn from_settings(s: &(impl Settings + ?Sized)) -> Result<Self, PolicyError> {
        let entries: Vec<RuleEntry> = settings::json(s, "rules")?.unwrap_or_default();
        let mut rules = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let at = |e: String| invalid("rules", format!("rule {index}: {e}"));
            let pattern = MethodPattern::parse(&entry.pattern).map_err(at)?;
            if entry.credential.is_empty() {
                return Err(at("empty credential name".to_owned()));
            }
            validate_header(&entry.header).map_err(at)?;
            validate_prefix(&entry.prefix).map_err(at)?;
            rules.push(Rule {
                pattern,
                credential: entry.credential,
                header: entry.header,
                prefix: entry.prefix,
                tenants: entry.tenants,
            });
        }
        Ok(Self { rules })
    }

    /// Chooses the credentials for one call.
    pub fn select(&self, path: &str, principal: Option<&Principal>, catalogue: &[CredentialInfo]) -> Selection {
        let mut selection = Selection::default();
        for rule in &self.rules {
            if !rule.pattern.matches(path) {
                continue;
            }
            if let Some(tenants) = &rule.tenants {
                let tenant = principal.and_then(|p| p.tenant.as_deref());
                if !tenant.is_some_and(|t| tenants.iter().any(|allowed| allowed == t)) {
                    continue;
                }
            }
            if !catalogue.iter().any(|c| c.name == rule.credential) {
                selection.log.push((
                    LogLevel::Warn,
                    format!("credential {} is not in the catalogue; rule skipped", rule.credential),
                ));
                continue;
            }
            if selection.uses.iter().any(|u| u.header == rule.header) {
                selection.log.push((
                    LogLevel::Debug,
                    format!(
                        "header {} already set by an earlier rule; credential {} skipped",
                        rule.header, rule.credential
                    ),
                ));
                continue;
            }
            selection.uses.push(CredentialUse {
                credential: rule.credential.clone(),
                header: rule.header.clone(),
                prefix: rule.prefix.clone(),
            });
        }
        selection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue(names: &[&str]) -> Vec<CredentialInfo> {
        names.iter().map(|n| CredentialInfo { name: (*n).to_owned(), scopes: Vec::new() }).collect()
    }

    fn principal(tenant: Option<&str>) -> Principal {
        Principal { tenant: tenant.map(str::to_owned), ..Principal::new("u") }
    }

    fn config(rules: &str) -> CredentialPolicyConfig {
        CredentialPolicyConfig::from_settings(&[("rules", rules)]).expect("valid rules")
    }

    fn use_(credential: &str, header: &str, prefix: &str) -> CredentialUse {
        CredentialUse { credential: credential.into(), header: header.into(), prefix: prefix.into() }
    }

    #[test]
    fn injects_nothing_by_default() {
        let cfg = CredentialPolicyConfig::from_settings(&[]).expect("defaults");
        let s = cfg.select("/x", Some(&principal(None)), &catalogue(&["a"]));
        assert_eq!(s, Selection::default());
    }

    #[test]
    fn matching_rules_with_defaults() {
        let cfg = config(
            r#"[
                {"match": "/storage.v1.Storage/*", "credential": "storage-token"},
                {"match": "/storage.v1.Storage/Get", "credential": "audit", "header": "x-audit", "prefix": ""},
                {"match": "/other", "credential": "other"}
            ]"#,
        );
        let cat = catalogue(&["storage-token", "audit", "other"]);
        let s = cfg.select("/storage.v1.Storage/Get", None, &cat);
        assert_eq!(s.uses, vec![use_("storage-token", "authorization", "Bearer "), use_("audit", "x-audit", ""),]);
        assert!(s.log.is_empty());
        assert!(cfg.select("/storage.v1.Storag", None, &cat).uses.is_empty());
    }

    #[test]
    fn missing_catalogue_entry_is_skipped_with_a_warning() {
        let cfg = config(
            r#"[
                {"match": "/*", "credential": "gone"},
                {"match": "/*", "credential": "fallback"}
            ]"#,
        );
        let s = cfg.select("/x", None, &catalogue(&["fallback"]));
        assert_eq!(s.uses, vec![use_("fallback", "authorization", "Bearer ")]);
        assert_eq!(s.log.len(), 1);
        assert_eq!(s.log[0].0, LogLevel::Warn);
        assert!(s.log[0].1.contains("gone"));
    }

    #[test]
    fn first_rule_wins_per_header() {
        let cfg = config(
            r#"[
                {"match": "/*", "credential": "a"},
                {"match": "/*", "credential": "b"},
                {"match": "/*", "credential": "b", "header": "x-b"}
            ]"#,
        );
        let s = cfg.select("/x", None, &catalogue(&["a", "b"]));
        assert_eq!(s.uses, vec![use_("a", "authorization", "Bearer "), use_("b", "x-b", "Bearer ")]);
        assert_eq!(s.log.len(), 1);
        assert_eq!(s.log[0].0, LogLevel::Debug);
    }

    #[test]
    fn tenant_restricted_rules() {
        let cfg = config(r#"[{"match": "/*", "credential": "acme", "tenants": ["acme", "beta"]}]"#);
        let cat = catalogue(&["acme"]);
        assert_eq!(cfg.select("/x", Some(&principal(Some("acme"))), &cat).uses.len(), 1);
        assert!(cfg.select("/x", Some(&principal(Some("other"))), &cat).uses.is_empty());
        assert!(cfg.select("/x", Some(&principal(None)), &cat).uses.is_empty());
        assert!(cfg.select("/x", None, &cat).uses.is_empty());
        let cfg = config(r#"[{"match": "/*", "credential": "acme", "tenants": []}]"#);
        assert!(cfg.select("/x", Some(&principal(Some("acme"))), &cat).uses.is_empty());
    }

    #[test]
    fn malformed_rules_are_invalid_config() {
        for rules in [
            r#"[{"match": "x", "credential": "a"}]"#,
            r#"[{"match": "/a*b", "credential": "a"}]"#,
            r#"[{"match": "/a", "credential": ""}]"#,
            r#"[{"match": "/a"}]"#,
            r#"[{"match": "/a", "credential": "a", "header": "Authorization"}]"#,
            r#"[{"match": "/a", "credential": "a", "header": "x y"}]"#,
            r#"[{"match": "/a", "credential": "a", "header": ""}]"#,
            r#"[{"match": "/a", "credential": "a", "header": ":path"}]"#,
            r#"[{"match": "/a", "credential": "a", "header": "connection"}]"#,
            r#"[{"match": "/a", "credential": "a", "prefix": "Bearer\n"}]"#,
            r#"[{"match": "/a", "credential": "a", "tenants": "acme"}]"#,
            r#"[{"match": "/a", "credential": "a", "tennants": ["acme"]}]"#,
            r#"{"match": "/a", "credential": "a"}"#,
        ] {
            match CredentialPolicyConfig::from_settings(&[("rules", rules)]) {
                Err(PolicyError::InvalidConfig(m)) => assert!(m.contains("rules"), "{m}"),
                other => panic!("{rules}: {other:?}"),
            }
        }
        let long = format!(r#"[{{"match": "/a", "credential": "a", "header": "{}"}}]"#, "h".repeat(65));
        assert!(CredentialPolicyConfig::from_settings(&[("rules", long.as_str())]).is_err());
        let ok = format!(
            r#"[{{"match": "/a", "credential": "a", "header": "{}", "prefix": "{}"}}]"#,
            "h".repeat(64),
            "p".repeat(64)
        );
        assert!(CredentialPolicyConfig::from_settings(&[("rules", ok.as_str())]).is_ok());
    }
}
