//! The checker: runs golden cases against a component and compares each
//! outcome with its expectation.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::{Case, CaseCall, CaseFile};
use crate::identity as id;
use crate::plugins::{Binding, GuestErrorKind, Plugin, PluginEngine, PolicyError};

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// `None` if it passed, otherwise what differed.
    pub failure: Option<String>,
}

impl CaseFile {
    /// Runs every case against `plugin`, each with its settings, and
    /// reports each outcome in file order.
    pub async fn run(&self, engine: &PluginEngine, plugin: &Arc<Plugin>) -> Vec<CaseResult> {
        let mut out = Vec::with_capacity(self.cases.len());
        for case in &self.cases {
            let failure = run_case(engine, plugin, case).await.err();
            out.push(CaseResult { name: case.name.clone(), failure });
        }
        out
    }
}

/// One case bound to a component, to run repeatedly on the same binding
/// (so instances are reused as in the gateway): for benchmarks.
#[derive(Debug)]
pub struct BoundCase {
    binding: Binding,
    case: Case,
}

impl BoundCase {
    /// Runs the case once; `Err` describes a mismatch.
    pub async fn run(&self) -> Result<(), String> {
        check_case(&self.binding, &self.case).await
    }
}

impl CaseFile {
    /// Binds the case named `name` (the first case if `None`) to `plugin`.
    pub fn bind(&self, engine: &PluginEngine, plugin: &Arc<Plugin>, name: Option<&str>) -> Option<BoundCase> {
        let case = match name {
            Some(n) => self.cases.iter().find(|c| c.name == n)?,
            None => self.cases.first()?,
        };
        Some(BoundCase { binding: Binding::new(engine, plugin.clone(), &case.settings), case: case.clone() })
    }
}

async fn run_case(engine: &PluginEngine, plugin: &Arc<Plugin>, case: &Case) -> Result<(), String> {
    check_case(&Binding::new(engine, plugin.clone(), &case.settings), case).await
}

async fn check_case(binding: &Binding, case: &Case) -> Result<(), String> {
    binding.require(case.call.interface()).map_err(|e| e.to_string())?;
    match &case.call {
        CaseCall::Classify(call) => {
            let got = binding.classify(call).await;
            compare(&case.expect, got, |expect, c| {
                let want: id::Classification = from_value(expect)?;
                let same = want.class == c.class && set(&want.required_scopes) == set(&c.required_scopes);
                Ok(same.then_some(()).ok_or_else(|| {
                    format!(
                        "expected {{class: {}, required-scopes: {:?}}}, got {{class: {}, required-scopes: {:?}}}",
                        want.class.as_str(),
                        want.required_scopes,
                        c.class.as_str(),
                        c.required_scopes
                    )
                }))
            })
        }
        CaseCall::MapClaims { provider, claims } => {
            let got = binding.map_claims(provider, claims).await;
            compare(&case.expect, got, |expect, p| {
                let want: id::Principal = from_value(expect)?;
                let same = want.subject == p.subject
                    && want.tenant == p.tenant
                    && set(&want.roles) == set(&p.roles)
                    && set(&want.scopes) == set(&p.scopes)
                    && set(&want.groups) == set(&p.groups);
                Ok(same.then_some(()).ok_or_else(|| format!("expected {}, got {}", show(&want), show(p))))
            })
        }
        CaseCall::Authorize(request) => {
            let got = binding.authorize(request).await;
            compare(&case.expect, got, |expect, d| {
                let ok = match (expect, d) {
                    (Value::String(s), id::Decision::Allow) if s == "allow" => true,
                    (Value::String(s), id::Decision::Deny(_)) if s == "deny" => true,
                    (Value::Object(m), id::Decision::Deny(reason)) if m.len() == 1 && m.contains_key("deny") => {
                        let want = m["deny"].as_str().ok_or("`deny:` takes a string")?;
                        reason.contains(want)
                    }
                    (Value::String(s), _) if s == "allow" || s == "deny" => false,
                    (Value::Object(m), _) if m.len() == 1 && m.contains_key("deny") => false,
                    _ => return Err("authorize expects `allow`, `deny`, {deny: TEXT} or an error".to_owned()),
                };
                let got = match d {
                    id::Decision::Allow => "allow".to_owned(),
                    id::Decision::Deny(r) => format!("deny({r:?})"),
                };
                Ok(ok.then_some(()).ok_or_else(|| format!("expected {}, got {got}", compact(expect))))
            })
        }
        CaseCall::SelectCredentials { call, principal, catalogue } => {
            let got = binding.select_credentials(call, principal.as_ref(), catalogue).await;
            compare(&case.expect, got, |expect, uses| {
                let want: Vec<id::CredentialUse> = from_value(expect)?;
                let show = |u: &[id::CredentialUse]| {
                    u.iter().map(|u| format!("{}→{}:{:?}", u.credential, u.header, u.prefix)).collect::<Vec<_>>()
                };
                Ok((want == *uses)
                    .then_some(())
                    .ok_or_else(|| format!("expected {:?}, got {:?}", show(&want), show(uses))))
            })
        }
    }
}

/// Compares a call's outcome with `expect`: the error forms are handled
/// here, anything else by `check`, which returns `Err` if `expect` itself is
/// malformed and `Ok(Err)` on a mismatch.
fn compare<T>(
    expect: &Value,
    got: Result<T, PolicyError>,
    check: impl FnOnce(&Value, &T) -> Result<Result<(), String>, String>,
) -> Result<(), String> {
    let wanted_error = match expect {
        Value::String(s) if s == "error" => Some(None),
        Value::Object(m) if m.len() == 1 && m.contains_key("error") => {
            let name = m["error"].as_str().ok_or("`error:` takes invalid-config, invalid-input or internal")?;
            let kind = GuestErrorKind::from_name(name)
                .ok_or_else(|| format!("unknown error kind {name:?} (invalid-config, invalid-input or internal)"))?;
            Some(Some(kind))
        }
        _ => None,
    };
    match (wanted_error, got) {
        (Some(None), Err(_)) => Ok(()),
        (Some(Some(kind)), Err(PolicyError::Guest { kind: got, .. })) if got == kind => Ok(()),
        (Some(_), Err(e)) => Err(format!("expected {}, got the failure: {e}", compact(expect))),
        (Some(_), Ok(_)) => Err(format!("expected {}, but the call succeeded", compact(expect))),
        (None, Err(e)) => Err(format!("expected {}, got the failure: {e}", compact(expect))),
        (None, Ok(v)) => check(expect, &v)?,
    }
}

fn set(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn show(p: &id::Principal) -> String {
    format!(
        "{{subject: {:?}, tenant: {:?}, roles: {:?}, scopes: {:?}, groups: {:?}}}",
        p.subject, p.tenant, p.roles, p.scopes, p.groups
    )
}

fn from_value<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("malformed expectation: {e}"))
}
