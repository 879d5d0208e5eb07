//! The file format: the YAML of a cases file and its conversion to cases.
//! The gateway's own types (`crate::identity`) deserialize themselves; only
//! the file's structure and the defaults of a case's inputs are here.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{Case, CaseCall};
use crate::identity as id;

/// A cases file: default settings and the cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Document {
    #[serde(default)]
    pub(super) settings: BTreeMap<String, Value>,
    pub(super) cases: Vec<Entry>,
}

/// One case as written: its name, settings, exactly one call and the
/// expectation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct Entry {
    pub(super) name: String,
    #[serde(default)]
    settings: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    classify: Option<id::CallInfo>,
    #[serde(default)]
    map_claims: Option<MapClaimsInput>,
    #[serde(default)]
    authorize: Option<AuthorizeInput>,
    #[serde(default)]
    select_credentials: Option<SelectInput>,
    expect: Value,
}

/// `map-claims:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapClaimsInput {
    provider: String,
    claims: Value,
}

/// `authorize:`: a bearer method without required scopes, and no
/// credential, unless given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeInput {
    call: id::CallInfo,
    #[serde(default)]
    classification: Option<id::Classification>,
    #[serde(default)]
    authentication: Option<id::Authentication>,
}

/// `select-credentials:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectInput {
    call: id::CallInfo,
    #[serde(default)]
    principal: Option<id::Principal>,
    #[serde(default)]
    catalogue: Vec<id::CredentialInfo>,
}

/// `call`, if its path is absolute.
fn absolute(call: id::CallInfo) -> Result<id::CallInfo, String> {
    if !call.path.starts_with('/') {
        return Err(format!("call.path {:?} must start with '/'", call.path));
    }
    Ok(call)
}

impl Entry {
    /// The case, with `file_settings` unless it has its own.
    pub(super) fn into_case(self, file_settings: &BTreeMap<String, Value>) -> Result<Case, String> {
        let given = [
            self.classify.is_some(),
            self.map_claims.is_some(),
            self.authorize.is_some(),
            self.select_credentials.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err("needs exactly one of classify, map-claims, authorize, select-credentials".to_owned());
        }
        let call = if let Some(c) = self.classify {
            CaseCall::Classify(absolute(c)?)
        } else if let Some(m) = self.map_claims {
            if !m.claims.is_object() {
                return Err("map-claims.claims must be a map".to_owned());
            }
            CaseCall::MapClaims { provider: m.provider, claims: m.claims.to_string() }
        } else if let Some(a) = self.authorize {
            CaseCall::Authorize(id::AuthzRequest {
                call: absolute(a.call)?,
                classification: a
                    .classification
                    .unwrap_or(id::Classification { class: id::AuthClass::Bearer, required_scopes: vec![] }),
                authentication: a.authentication.unwrap_or_else(id::Authentication::anonymous),
            })
        } else if let Some(s) = self.select_credentials {
            CaseCall::SelectCredentials { call: absolute(s.call)?, principal: s.principal, catalogue: s.catalogue }
        } else {
            return Err("no call".to_owned());
        };
        Ok(Case {
            name: self.name,
            settings: self.settings.unwrap_or_else(|| file_settings.clone()),
            call,
            expect: self.expect,
        })
    }
}
