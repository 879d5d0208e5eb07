//! `config check --upstream-descriptors FILE`: is every method of every
//! routed gRPC service classified by an explicit entry?
//!
//! The methods come from a serialized protobuf `FileDescriptorSet`. For the
//! embedded `builtin:default-classifier` the answer is exact: its settings'
//! `methods` table is read with the component's own rules (an exact
//! pattern, else the longest `*` prefix), and a method that no entry matches
//! is one the default-deny fallthrough decides (`bearer` with the wildcard
//! scope). A custom classifier cannot say whether an answer came from an
//! explicit entry or from its own fallback: its methods are still run
//! through it and listed with their class, marked unverified (a warning,
//! not a failure).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use prost::Message;

use crate::config::{BindingConfig, Config, RouteMatch};
use crate::identity::{CallInfo, Protocol};
use crate::plugins::PolicySet;

/// The embedded classifier, whose table this check can read.
const DEFAULT_CLASSIFIER: &str = "builtin:default-classifier";

/// One method of a routed service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MethodCoverage {
    /// The route that serves it.
    pub route: String,
    /// `/pkg.Service/Method`.
    pub method: String,
    /// The classifier's answer when called for it (`bearer [scope]`), or
    /// why it failed (which the gateway reads as the strictest class).
    pub class: String,
    /// The `methods` entry that classifies it; none for the fallthrough.
    pub entry: Option<String>,
    /// Whether an explicit entry classifies it: unknown (`null`) for a
    /// custom classifier.
    pub explicit: Option<bool>,
}

/// The outcome over every gRPC route.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Coverage {
    /// Every method of every routed service, by route then method.
    pub methods: Vec<MethodCoverage>,
    /// What makes the check fail: unclassified methods and routed services
    /// the descriptors do not define.
    pub errors: Vec<String>,
    /// What it could not check.
    pub warnings: Vec<String>,
}

/// The methods of every service in a serialized `FileDescriptorSet`, by
/// full service name (`pkg.Service`).
pub fn services(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let set = prost_types::FileDescriptorSet::decode(bytes.as_slice())
        .with_context(|| format!("{} is not a serialized protobuf FileDescriptorSet", path.display()))?;
    let mut out = BTreeMap::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            let name =
                if package.is_empty() { service.name().to_owned() } else { format!("{package}.{}", service.name()) };
            let methods: &mut Vec<String> = out.entry(name).or_default();
            methods.extend(service.method.iter().map(|m| m.name().to_owned()));
        }
    }
    Ok(out)
}

/// Checks every `grpc_service` route of `cfg` against `services`, calling
/// each route's classifier in `policy` for every method.
pub async fn check(cfg: &Config, policy: &PolicySet, services: &BTreeMap<String, Vec<String>>) -> Coverage {
    let mut out = Coverage::default();
    for route in &cfg.routes {
        let RouteMatch::GrpcService(service) = &route.matches else { continue };
        let Some(methods) = services.get(service) else {
            out.errors.push(format!(
                "route {:?} routes the gRPC service {service}, which the descriptor set does not define",
                route.name
            ));
            continue;
        };
        let binding = route.classifier.as_ref().unwrap_or(&cfg.policy.classifier);
        let table = if binding.plugin == DEFAULT_CLASSIFIER {
            match MethodTable::of(binding) {
                Ok(t) => Some(t),
                Err(e) => {
                    out.errors.push(format!("route {:?}: the classifier's `methods` cannot be read: {e}", route.name));
                    continue;
                }
            }
        } else {
            out.warnings.push(format!(
                "route {:?}: the classifier {} is not {DEFAULT_CLASSIFIER}, so whether its answers come from an \
                 explicit entry cannot be checked; they are listed unverified",
                route.name, binding.plugin
            ));
            None
        };
        let slot = policy.classifier(&route.name);
        for method in methods {
            let path = format!("/{service}/{method}");
            let call = CallInfo::new(Protocol::Grpc, "POST", path.clone(), route.name.clone(), String::new());
            let class = match slot.classify(&call).await {
                Ok(c) if c.required_scopes.is_empty() => c.class.as_str().to_owned(),
                Ok(c) => format!("{} [{}]", c.class.as_str(), c.required_scopes.join(" ")),
                Err(e) => format!("error: {e}"),
            };
            let entry = table.as_ref().and_then(|t| t.lookup(&path));
            let explicit = table.as_ref().map(|_| entry.is_some());
            if explicit == Some(false) {
                out.errors.push(format!(
                    "route {:?}: {path} is not classified by an explicit entry (the default-deny fallthrough \
                     decides: {class})",
                    route.name
                ));
            }
            out.methods.push(MethodCoverage { route: route.name.clone(), method: path, class, entry, explicit });
        }
    }
    out
}

/// The default classifier's `methods` patterns, matched as it matches them.
struct MethodTable {
    exact: Vec<String>,
    /// Without the `*`, longest first.
    prefixes: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(rename = "match")]
    pattern: String,
}

impl MethodTable {
    /// Reads `methods` as the component does: a list, or its JSON text.
    fn of(binding: &BindingConfig) -> Result<Self, String> {
        let entries: Vec<Entry> = match binding.settings.get("methods") {
            None => Vec::new(),
            Some(serde_json::Value::String(text)) => serde_json::from_str(text).map_err(|e| e.to_string())?,
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| e.to_string())?,
        };
        let mut t = Self { exact: Vec::new(), prefixes: Vec::new() };
        for e in entries {
            match e.pattern.strip_suffix('*') {
                Some(prefix) => t.prefixes.push(prefix.to_owned()),
                None => t.exact.push(e.pattern),
            }
        }
        t.prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Ok(t)
    }

    /// The pattern that classifies `path`, as written in `methods`.
    fn lookup(&self, path: &str) -> Option<String> {
        if self.exact.iter().any(|e| e == path) {
            return Some(path.to_owned());
        }
        self.prefixes.iter().find(|p| path.starts_with(p.as_str())).map(|p| format!("{p}*"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(methods: serde_json::Value) -> MethodTable {
        let mut b = BindingConfig::builtin("default-classifier");
        b.settings.insert("methods".into(), methods);
        MethodTable::of(&b).expect("readable")
    }

    #[test]
    fn the_most_specific_entry_classifies_and_nothing_else_does() {
        let t = table(serde_json::json!([
            {"match": "/s.v1.S/*", "class": "bearer"},
            {"match": "/s.v1.S/Get", "class": "unauthenticated"},
            {"match": "/s.v1.S/List*", "class": "bearer"},
        ]));
        assert_eq!(t.lookup("/s.v1.S/Get").as_deref(), Some("/s.v1.S/Get"));
        assert_eq!(t.lookup("/s.v1.S/ListAll").as_deref(), Some("/s.v1.S/List*"));
        assert_eq!(t.lookup("/s.v1.S/Delete").as_deref(), Some("/s.v1.S/*"));
        assert_eq!(t.lookup("/other.Svc/Get"), None);
    }

    #[test]
    fn methods_as_json_text_read_like_a_list() {
        let t = table(serde_json::Value::String(r#"[{"match": "/a.B/C", "class": "bearer"}]"#.into()));
        assert!(t.lookup("/a.B/C").is_some() && t.lookup("/a.B/D").is_none());
    }
}
