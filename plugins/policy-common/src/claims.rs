//! The default OIDC claims mapper (Keycloak layout out of the box).
//!
//! Settings (all optional):
//! - `subject-claim` (path, default `sub`): must hold a non-empty string of
//!   at most 256 bytes, else the claims are rejected (`invalid-input`).
//! - `roles-claims` (JSON list of paths, default `["realm_access.roles"]`):
//!   each must hold an array of strings.
//! - `clients` (JSON list of client ids, default `[]`): adds
//!   `resource_access.<client>.roles` for each (client ids may contain dots).
//! - `scopes-claim` (path, default: both `scope` and `scp`): a
//!   space-separated string or an array of strings.
//! - `groups-claim` (path, default `groups`): an array of strings.
//! - `tenant` (string): a fixed tenant for every principal of this binding;
//!   wins over `tenant-claim`.
//! - `tenant-claim` (path): a claim holding the tenant as a string; missing
//!   or not a usable string → no tenant.
//!
//! # Claim paths
//! A path is the SDK's [`ClaimPath`]: it names a value inside the claims
//! object, one segment per nested object key. It is written either
//! - as a string of dot-separated segments: `realm_access.roles`; or
//! - as a JSON array of segments, needed whenever a key contains a dot or
//!   starts with `[`: `["https://example.com/roles"]`,
//!   `["resource_access", "my.client", "roles"]`.
//!
//! Inside `roles-claims` both forms can be mixed:
//! `[["https://example.com/roles"], "realm_access.roles"]`. A path written
//! as a string (a single-path setting such as `scopes-claim`,
//! `groups-claim`, `subject-claim` or `tenant-claim`, or an entry of
//! `roles-claims`) that starts with `[` is read as a JSON array of segments,
//! otherwise as a dotted string ([`ClaimPath::parse_setting`]). Empty
//! segments are rejected.
//!
//! # Hostile tokens
//! A value of the wrong type at a configured path is ignored; non-string
//! array items, empty strings and strings longer than 256 bytes are skipped;
//! each of roles, scopes and groups keeps at most 256 distinct entries, in
//! first-seen order.

use crate::settings::{self, Settings, invalid};
use serde_json::Value;
use wasmgate_plugin_sdk::claims::ClaimPath;
use wasmgate_plugin_sdk::{PolicyError, Principal};

/// Longest string kept (bytes).
pub const MAX_STRING_BYTES: usize = 256;
/// Most entries kept per list.
pub const MAX_ENTRIES: usize = 256;

#[derive(Debug, Clone)]
enum TenantSource {
    Fixed(String),
    Claim(ClaimPath),
    Unset,
}

/// The parsed settings of the claims mapper.
#[derive(Debug, Clone)]
pub struct MapperConfig {
    subject: ClaimPath,
    roles: Vec<ClaimPath>,
    scopes: Vec<ClaimPath>,
    groups: ClaimPath,
    tenant: TenantSource,
}

fn path_setting(s: &(impl Settings + ?Sized), key: &str, default: &str) -> Result<ClaimPath, PolicyError> {
    match s.get(key) {
        Some(raw) => ClaimPath::parse_setting(&raw),
        None => ClaimPath::dotted(default),
    }
    .map_err(|e| invalid(key, e))
}

impl MapperConfig {
    /// Reads and validates the settings.
    pub fn from_settings(s: &(impl Settings + ?Sized)) -> Result<Self, PolicyError> {
        let subject = path_setting(s, "subject-claim", "sub")?;
        let groups = path_setting(s, "groups-claim", "groups")?;
        let scopes = match s.get("scopes-claim") {
            Some(raw) => {
                vec![ClaimPath::parse_setting(&raw).map_err(|e| invalid("scopes-claim", e))?]
            }
            None => vec![ClaimPath::dotted("scope"), ClaimPath::dotted("scp")]
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(|e| invalid("scopes-claim", e))?,
        };
        let mut roles = match settings::json::<Vec<ClaimPath>>(s, "roles-claims")? {
            Some(paths) => paths,
            None => vec![ClaimPath::dotted("realm_access.roles").map_err(|e| invalid("roles-claims", e))?],
        };
        let clients: Vec<String> = settings::json(s, "clients")?.unwrap_or_default();
        for client in clients {
            let path = ClaimPath::from_segments(vec!["resource_access".to_owned(), client, "roles".to_owned()])
                .map_err(|e| invalid("clients", e))?;
            roles.push(path);
        }
        let tenant = match (s.get("tenant"), s.get("tenant-claim")) {
            (Some(fixed), _) if fixed.is_empty() => {
                return Err(invalid("tenant", "must not be empty"));
            }
            (Some(fixed), _) => TenantSource::Fixed(fixed),
            (None, Some(raw)) => {
                TenantSource::Claim(ClaimPath::parse_setting(&raw).map_err(|e| invalid("tenant-claim", e))?)
            }
            (None, None) => TenantSource::Unset,
        };
        Ok(Self { subject, roles, scopes, groups, tenant })
    }

    /// Maps verified claims, given as JSON text, to a principal: parses
    /// them and calls [`map`](Self::map).
    pub fn map_claims(&self, claims: &str) -> Result<Principal, PolicyError> {
        let claims: Value = serde_json::from_str(claims)
            .map_err(|_| PolicyError::InvalidInput("claims are not valid JSON".to_owned()))?;
        self.map(&claims)
    }

    /// Maps verified claims (a JSON object) to a principal.
    pub fn map(&self, claims: &Value) -> Result<Principal, PolicyError> {
        if !claims.is_object() {
            return Err(PolicyError::InvalidInput("claims are not a JSON object".to_owned()));
        }
        let subject = match self.subject.lookup(claims) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_STRING_BYTES => s.clone(),
            Some(Value::String(s)) if !s.is_empty() => {
                return Err(PolicyError::InvalidInput(format!("subject claim longer than {MAX_STRING_BYTES} bytes")));
            }
            _ => {
                return Err(PolicyError::InvalidInput("subject claim missing, empty or not a string".to_owned()));
            }
        };
        let mut roles = Bounded::default();
        for path in &self.roles {
            if let Some(Value::Array(items)) = path.lookup(claims) {
                roles.extend_values(items);
            }
        }
        let mut scopes = Bounded::default();
        for path in &self.scopes {
            match path.lookup(claims) {
                Some(Value::String(s)) => {
                    for scope in s.split_ascii_whitespace() {
                        if scopes.full() {
                            break;
                        }
                        scopes.push(scope);
                    }
                }
                Some(Value::Array(items)) => scopes.extend_values(items),
                _ => {}
            }
        }
        let mut groups = Bounded::default();
        if let Some(Value::Array(items)) = self.groups.lookup(claims) {
            groups.extend_values(items);
        }
        let tenant = match &self.tenant {
            TenantSource::Fixed(t) => Some(t.clone()),
            TenantSource::Claim(path) => match path.lookup(claims) {
                Some(Value::String(t)) if !t.is_empty() && t.len() <= MAX_STRING_BYTES => Some(t.clone()),
                _ => None,
            },
            TenantSource::Unset => None,
        };
        Ok(Principal { subject, tenant, roles: roles.0, scopes: scopes.0, groups: groups.0 })
    }
}

/// A de-duplicated, order-preserving list with the size limits applied.
#[derive(Debug, Default)]
struct Bounded(Vec<String>);

impl Bounded {
    fn full(&self) -> bool {
        self.0.len() >= MAX_ENTRIES
    }

    fn push(&mut self, item: &str) {
        if self.full() || item.is_empty() || item.len() > MAX_STRING_BYTES || self.0.iter().any(|have| have == item) {
            return;
        }
        self.0.push(item.to_owned());
    }

    fn extend_values(&mut self, items: &[Value]) {
        for item in items {
            if self.full() {
                break;
            }
            if let Value::String(s) = item {
                self.push(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapper(settings: &[(&str, &str)]) -> MapperConfig {
        MapperConfig::from_settings(settings).expect("valid settings")
    }

    fn map(settings: &[(&str, &str)], claims: &Value) -> Principal {
        mapper(settings).map_claims(&claims.to_string()).expect("valid claims")
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn keycloak() -> Value {
        json!({
            "sub": "f1d2-user",
            "iss": "https://kc.example/realms/r",
            "realm_access": {"roles": ["user", "offline_access", "user"]},
            "resource_access": {
                "gateway": {"roles": ["admin", "user"]},
                "my.client": {"roles": ["deployer"]},
                "other": {"roles": ["ignored"]}
            },
            "scope": "openid profile storage.read:/a",
            "groups": ["/team-a", "/team-b"],
            "tenant_id": "acme"
        })
    }

    #[test]
    fn keycloak_defaults() {
        let p = map(&[], &keycloak());
        assert_eq!(p.subject, "f1d2-user");
        assert_eq!(p.tenant, None);
        assert_eq!(p.roles, strings(&["user", "offline_access"]));
        assert_eq!(p.scopes, strings(&["openid", "profile", "storage.read:/a"]));
        assert_eq!(p.groups, strings(&["/team-a", "/team-b"]));
    }

    #[test]
    fn client_roles_are_added_in_order_and_deduplicated() {
        let p = map(&[("clients", r#"["gateway", "my.client"]"#)], &keycloak());
        assert_eq!(p.roles, strings(&["user", "offline_access", "admin", "deployer"]));
    }

    #[test]
    fn namespaced_roles_claim_via_segments() {
        let claims = json!({
            "sub": "u",
            "https://example.com/roles": ["admin"],
            "https://example.com": {"roles": ["wrong"]},
            "realm_access": {"roles": ["user"]}
        });
        let s = [("roles-claims", r#"[["https://example.com/roles"], "realm_access.roles"]"#)];
        assert_eq!(map(&s, &claims).roles, strings(&["admin", "user"]));
        // The dotted form splits at every dot and finds nothing there.
        let s = [("roles-claims", r#"["https://example.com/roles"]"#)];
        assert_eq!(map(&s, &claims).roles, Vec::<String>::new());
    }

    #[test]
    fn single_path_settings_accept_segment_arrays() {
        let claims = json!({
            "sub": "u",
            "https://example.com/groups": ["g1"],
            "https://example.com/tenant": "t1",
            "https://example.com/scp": ["s1"],
            "ext": {"uid": "u2"}
        });
        let s = [
            ("groups-claim", r#"["https://example.com/groups"]"#),
            ("tenant-claim", r#"["https://example.com/tenant"]"#),
            ("scopes-claim", r#"["https://example.com/scp"]"#),
            ("subject-claim", "ext.uid"),
        ];
        let p = map(&s, &claims);
        assert_eq!(p.subject, "u2");
        assert_eq!(p.groups, strings(&["g1"]));
        assert_eq!(p.tenant.as_deref(), Some("t1"));
        assert_eq!(p.scopes, strings(&["s1"]));
    }

    #[test]
    fn scope_string_array_and_scp() {
        let p = map(&[], &json!({"sub": "u", "scope": ["a", "b", "a"]}));
        assert_eq!(p.scopes, strings(&["a", "b"]));
        let p = map(&[], &json!({"sub": "u", "scope": "  a\tb  a "}));
        assert_eq!(p.scopes, strings(&["a", "b"]));
        let p = map(&[], &json!({"sub": "u", "scp": "x y"}));
        assert_eq!(p.scopes, strings(&["x", "y"]));
        let p = map(&[], &json!({"sub": "u", "scope": "a", "scp": ["a", "b"]}));
        assert_eq!(p.scopes, strings(&["a", "b"]));
        // A configured scopes-claim replaces both defaults.
        let s = [("scopes-claim", "perms")];
        let p = map(&s, &json!({"sub": "u", "scope": "a", "perms": "p"}));
        assert_eq!(p.scopes, strings(&["p"]));
    }

    #[test]
    fn wrong_types_are_ignored() {
        let claims = json!({
            "sub": "u",
            "realm_access": {"roles": 7},
            "resource_access": {"gateway": "admin"},
            "scope": {"a": true},
            "groups": "not-a-list",
            "tenant_id": 42
        });
        let s = [("clients", r#"["gateway"]"#), ("tenant-claim", "tenant_id")];
        let p = map(&s, &claims);
        assert!(p.roles.is_empty() && p.scopes.is_empty() && p.groups.is_empty());
        assert_eq!(p.tenant, None);
        let claims = json!({"sub": "u", "realm_access": ["user"]});
        assert!(map(&[], &claims).roles.is_empty());
        let claims =
            json!({"sub": "u", "realm_access": {"roles": ["user", 1, null, {"x": 1}, ["admin"], "", "admin"]}});
        assert_eq!(map(&[], &claims).roles, strings(&["user", "admin"]));
    }

    #[test]
    fn limits_apply() {
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        let exact = "y".repeat(MAX_STRING_BYTES);
        let many: Vec<String> = (0..1000).map(|i| format!("r{i}")).collect();
        let claims = json!({
            "sub": "u",
            "realm_access": {"roles": many},
            "groups": [long.clone(), exact.clone()],
            "scope": format!("{long} {exact} {}", many.join(" ")),
        });
        let p = map(&[], &claims);
        assert_eq!(p.roles.len(), MAX_ENTRIES);
        assert_eq!(p.roles.first().map(String::as_str), Some("r0"));
        assert_eq!(p.roles.last().map(String::as_str), Some("r255"));
        assert_eq!(p.groups, vec![exact.clone()]);
        assert_eq!(p.scopes.len(), MAX_ENTRIES);
        assert_eq!(p.scopes.first(), Some(&exact));
        // Duplicates do not use up the budget.
        let dups = vec!["same"; 5000];
        let claims = json!({"sub": "u", "groups": dups, "realm_access": {"roles": ["a"]}});
        assert_eq!(map(&[], &claims).groups, strings(&["same"]));
    }

    #[test]
    fn subject_rules() {
        let m = mapper(&[]);
        for bad in [
            json!({}),
            json!({"sub": ""}),
            json!({"sub": 5}),
            json!({"sub": null}),
            json!({"sub": "x".repeat(MAX_STRING_BYTES + 1)}),
        ] {
            assert!(matches!(m.map_claims(&bad.to_string()), Err(PolicyError::InvalidInput(_))), "{bad}");
        }
        for bad in ["[]", "\"sub\"", "{", "null"] {
            assert!(matches!(m.map_claims(bad), Err(PolicyError::InvalidInput(_))));
        }
    }

    #[test]
    fn parsed_claims_must_be_an_object() {
        let m = mapper(&[]);
        assert_eq!(m.map(&json!({"sub": "u"})).map(|p| p.subject), Ok("u".to_owned()));
        for bad in [json!([]), json!("sub"), json!(null), json!(1)] {
            assert!(matches!(m.map(&bad), Err(PolicyError::InvalidInput(_))), "{bad}");
        }
    }

    #[test]
    fn roles_claims_entries_are_sdk_claim_paths() {
        let claims = json!({"sub": "u", "a.b": {"roles": ["dotted-key"]}, "a": {"b": {"roles": ["nested"]}}});
        // A string entry starting with `[` is a segment list, as in the
        // single-path settings (`ClaimPath::parse_setting`).
        let s = [("roles-claims", r#"["[\"a.b\", \"roles\"]", "a.b.roles"]"#)];
        assert_eq!(map(&s, &claims).roles, strings(&["dotted-key", "nested"]));
    }

    #[test]
    fn tenant_fixed_wins_over_claim() {
        let s = [("tenant", "fixed"), ("tenant-claim", "tenant_id")];
        assert_eq!(map(&s, &keycloak()).tenant.as_deref(), Some("fixed"));
        let s = [("tenant-claim", "tenant_id")];
        assert_eq!(map(&s, &keycloak()).tenant.as_deref(), Some("acme"));
        let s = [("tenant-claim", "missing")];
        assert_eq!(map(&s, &keycloak()).tenant, None);
    }

    #[test]
    fn malformed_settings_are_invalid_config() {
        for (key, value) in [
            ("roles-claims", "realm_access.roles"),
            ("roles-claims", "[1]"),
            ("roles-claims", r#"["a..b"]"#),
            ("roles-claims", "[[]]"),
            ("clients", r#""gateway""#),
            ("clients", r#"[""]"#),
            ("scopes-claim", ""),
            ("scopes-claim", "[\"a\""),
            ("groups-claim", "a."),
            ("subject-claim", "[]"),
            ("tenant-claim", "[\"\"]"),
            ("tenant", ""),
        ] {
            match MapperConfig::from_settings(&[(key, value)]) {
                Err(PolicyError::InvalidConfig(m)) => assert!(m.contains(key), "{m}"),
                other => panic!("{key}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn error_messages_do_not_echo_claims() {
        let m = mapper(&[]);
        let secret = "eyJhbGciOi-secret";
        for claims in [format!("{{\"sub\": {secret}"), format!("[\"{secret}\"]")] {
            match m.map_claims(&claims) {
                Err(PolicyError::InvalidInput(msg)) => assert!(!msg.contains(secret)),
                other => panic!("{other:?}"),
            }
        }
    }
}
