//! A per-tenant claims-mapper (world `claims-mapper-plugin`), written with
//! `wasmgate-plugin-sdk`.
//!
//! Several tenants log in through different identity provider realms, each
//! with its own claim layout. The `tenants` setting maps each token issuer
//! (claim `iss`) to the tenant it belongs to and where that tenant's tokens
//! keep roles and scopes:
//!
//! ```yaml
//! settings:
//!   tenants:
//!     "https://kc.acme.example/realms/acme": { tenant: acme, roles-claim: realm_access.roles, scopes-claim: scope }
//!     "https://login.globex.example/": { tenant: globex, roles-claim: ["https://example.com/roles"], scopes-claim: scp }
//! ```
//!
//! A token from an issuer not listed is refused with `invalid-input`: the
//! gateway fails closed, so an unknown realm never gets a principal.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use wasmgate_plugin_sdk::claims::ClaimPath;
use wasmgate_plugin_sdk::settings::{self, PerInstance};
use wasmgate_plugin_sdk::{ClaimsMapper, PolicyError, Principal};

/// One issuer's entry in `tenants`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Tenant {
    /// The tenant every principal of this issuer acts for.
    tenant: String,
    /// Where the roles are (an array of strings; anything else is ignored);
    /// none if unset.
    roles_claim: Option<ClaimPath>,
    /// Where the scopes are (array or space-separated string); none if unset.
    scopes_claim: Option<ClaimPath>,
    /// Where the groups are (an array of strings); none if unset.
    groups_claim: Option<ClaimPath>,
    /// Where the subject is; `sub` if unset.
    subject_claim: Option<ClaimPath>,
}

/// The parsed `tenants` setting: issuer → tenant layout.
#[derive(Debug)]
struct Config {
    tenants: BTreeMap<String, Tenant>,
}

impl Config {
    fn load() -> Result<Self, PolicyError> {
        let tenants: BTreeMap<String, Tenant> = settings::require("tenants")?;
        if let Some((issuer, _)) = tenants.iter().find(|(_, t)| t.tenant.is_empty()) {
            return Err(PolicyError::invalid_config(format!("tenants: issuer {issuer} has an empty tenant")));
        }
        Ok(Config { tenants })
    }
}

static CONFIG: PerInstance<Config> = PerInstance::new();

struct TenantClaimsMapper;

impl ClaimsMapper for TenantClaimsMapper {
    fn map_claims(_provider: &str, claims: &Value) -> Result<Principal, PolicyError> {
        let config = CONFIG.get_or_try_init(Config::load)?;
        map(config, claims)
    }
}

wasmgate_plugin_sdk::export_claims_mapper!(TenantClaimsMapper);

/// The decision logic, separate from the bindings so it is testable natively.
fn map(config: &Config, claims: &Value) -> Result<Principal, PolicyError> {
    // Error messages never quote claim values: they are logged.
    let issuer = claims.get("iss").and_then(Value::as_str).ok_or_else(|| PolicyError::invalid_input("no iss claim"))?;
    let layout =
        config.tenants.get(issuer).ok_or_else(|| PolicyError::invalid_input("issuer is not a configured tenant"))?;
    let subject = match &layout.subject_claim {
        Some(path) => path.string(claims),
        None => claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty()),
    }
    .ok_or_else(|| PolicyError::invalid_input("subject claim is missing or not a string"))?;
    let strings = |path: &Option<ClaimPath>| path.as_ref().map(|p| p.strings(claims)).unwrap_or_default();
    let scopes = layout.scopes_claim.as_ref().map(|p| p.strings_or_words(claims)).unwrap_or_default();
    Ok(Principal {
        subject: subject.to_owned(),
        tenant: Some(layout.tenant.clone()),
        roles: strings(&layout.roles_claim),
        scopes,
        groups: strings(&layout.groups_claim),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        let tenants = settings::parse(
            "tenants",
            &json!({
                "https://kc.acme.example/realms/acme":
                    {"tenant": "acme", "roles-claim": "realm_access.roles", "scopes-claim": "scope"},
                "https://login.globex.example/":
                    {"tenant": "globex", "roles-claim": ["https://example.com/roles"], "scopes-claim": "scp"},
            })
            .to_string(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        Config { tenants }
    }

    #[test]
    fn maps_each_tenant_with_its_layout() {
        let c = config();
        let p = map(
            &c,
            &json!({"iss": "https://kc.acme.example/realms/acme", "sub": "alice",
                    "realm_access": {"roles": ["user"]}, "scope": "openid sandbox.read"}),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((p.subject.as_str(), p.tenant.as_deref()), ("alice", Some("acme")));
        assert_eq!(p.roles, ["user"]);
        assert_eq!(p.scopes, ["openid", "sandbox.read"]);
        let p = map(
            &c,
            &json!({"iss": "https://login.globex.example/", "sub": "bob",
                    "https://example.com/roles": ["admin"], "scp": ["storage.read"]}),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.tenant.as_deref(), Some("globex"));
        assert_eq!((p.roles, p.scopes), (vec!["admin".to_owned()], vec!["storage.read".to_owned()]));
    }

    #[test]
    fn roles_of_the_wrong_type_are_ignored() {
        let claims =
            json!({"iss": "https://kc.acme.example/realms/acme", "sub": "c", "realm_access": {"roles": "admin"}});
        assert!(map(&config(), &claims).unwrap_or_else(|e| panic!("{e:?}")).roles.is_empty());
    }

    #[test]
    fn fails_closed() {
        let c = config();
        for claims in [
            json!({"iss": "https://evil.example/", "sub": "x"}),
            json!({"sub": "x"}),
            json!({"iss": "https://login.globex.example/"}),
            json!({"iss": "https://login.globex.example/", "sub": 7}),
        ] {
            assert!(matches!(map(&c, &claims), Err(PolicyError::InvalidInput(_))), "{claims}");
        }
    }
}
