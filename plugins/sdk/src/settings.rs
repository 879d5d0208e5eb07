//! Typed access to the binding's settings (`host.get-config`).
//!
//! A binding's `settings:` map in the gateway config is what the component
//! sees. The host hands strings over as written and every other value
//! (number, boolean, list, map) as its JSON text; [`get`] undoes that, so a
//! setting deserialises into any `serde` type: `String`, `u32`, `bool`,
//! `Vec<String>`, a `#[derive(Deserialize)]` struct or map, …
//!
//! Settings never change for the life of an instance (an instance serves one
//! binding), so the host is asked at most once per key and instance, and
//! [`PerInstance`] keeps a parsed configuration for the instance's life.
//! A malformed setting is an `invalid-config` error naming the key, which
//! the gateway treats as a failure (fail closed).
//!
//! Calling [`raw`], [`get`], [`get_or`] or [`require`] outside a component
//! panics; [`parse`] is pure and testable natively.

use std::sync::{Mutex, OnceLock};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::PolicyError;
use crate::bindings::base::wasmgate::policy::host;

/// Raw answers of `host.get-config`, per key, for this instance. A
/// component reads a handful of keys, so a list is smaller code than a map.
static RAW: Mutex<Vec<(String, Option<String>)>> = Mutex::new(Vec::new());

/// The setting `key` as the host returns it (`None` if it is not set),
/// asking the host once per key and instance.
pub fn raw(key: &str) -> Option<String> {
    let mut cache = RAW.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, value)) = cache.iter().find(|(k, _)| k == key) {
        return value.clone();
    }
    let value = host::get_config(key);
    cache.push((key.to_owned(), value.clone()));
    value
}

/// The setting `key` as a `T`, or `None` if it is not set.
///
/// Errors: `invalid-config("setting `key`: …")` if the value does not
/// deserialise into `T`.
pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>, PolicyError> {
    raw(key).map(|raw| parse(key, &raw)).transpose()
}

/// The setting `key` as a `T`, or `default` if it is not set.
pub fn get_or<T: DeserializeOwned>(key: &str, default: T) -> Result<T, PolicyError> {
    Ok(get(key)?.unwrap_or(default))
}

/// The setting `key` as a `T`; `invalid-config("setting `key` is not set")`
/// if it is missing.
pub fn require<T: DeserializeOwned>(key: &str) -> Result<T, PolicyError> {
    get(key)?.ok_or_else(|| PolicyError::InvalidConfig(format!("setting `{key}` is not set")))
}

/// Interprets `raw`, the host's text for the setting `key`, as a `T`.
///
/// The text is read as JSON first (how the host passes lists, maps, numbers
/// and booleans). If that does not give a `T`, the text itself is tried as a
/// string value, which is how the host passes strings: so `T = String`
/// accepts `admin`, `123` and `true` alike, and an enum with
/// `#[serde(rename_all = "kebab-case")]` accepts `dual-auth`.
pub fn parse<T: DeserializeOwned>(key: &str, raw: &str) -> Result<T, PolicyError> {
    let json_error = match serde_json::from_str::<Value>(raw) {
        Ok(value) => match T::deserialize(value) {
            Ok(parsed) => return Ok(parsed),
            Err(e) => Some(e),
        },
        Err(_) => None,
    };
    match T::deserialize(Value::String(raw.to_owned())) {
        Ok(parsed) => Ok(parsed),
        // Report the error of the reading that was plausibly meant: the
        // JSON one if the text is JSON, the string one otherwise.
        Err(string_error) => {
            Err(PolicyError::InvalidConfig(format!("setting `{key}`: {}", json_error.unwrap_or(string_error))))
        }
    }
}

/// A value computed once per instance (typically the component's parsed
/// configuration), including a failure to compute it.
///
/// ```ignore
/// static CONFIG: PerInstance<Config> = PerInstance::new();
/// let config = CONFIG.get_or_try_init(Config::load)?;
/// ```
///
/// A failed initialisation is kept too and returned on every later call: the
/// settings cannot change for this instance, so retrying cannot help.
#[derive(Debug)]
pub struct PerInstance<T> {
    cell: OnceLock<Result<T, PolicyError>>,
}

impl<T> PerInstance<T> {
    /// An empty cell, for a `static`.
    pub const fn new() -> Self {
        PerInstance { cell: OnceLock::new() }
    }

    /// The value, computing it with `init` on first use.
    pub fn get_or_try_init(&self, init: impl FnOnce() -> Result<T, PolicyError>) -> Result<&T, PolicyError> {
        self.cell.get_or_init(init).as_ref().map_err(Clone::clone)
    }
}

impl<T> Default for PerInstance<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    fn config_error<T: DeserializeOwned + std::fmt::Debug>(raw: &str) -> String {
        match parse::<T>("k", raw) {
            Err(PolicyError::InvalidConfig(m)) => m,
            other => panic!("expected invalid-config, got {other:?}"),
        }
    }

    #[test]
    fn strings_arrive_as_written() {
        assert_eq!(parse::<String>("k", "admin").ok(), Some("admin".to_owned()));
        assert_eq!(parse::<String>("k", "123").ok(), Some("123".to_owned()));
        assert_eq!(parse::<String>("k", "true").ok(), Some("true".to_owned()));
        assert_eq!(parse::<String>("k", "").ok(), Some(String::new()));
        // A string that happens to be JSON text of a string stays verbatim
        // only if it is not valid JSON; `"x"` is JSON for x.
        assert_eq!(parse::<String>("k", "\"x\"").ok(), Some("x".to_owned()));
    }

    #[test]
    fn other_values_arrive_as_json() {
        assert_eq!(parse::<u32>("k", "42").ok(), Some(42));
        assert_eq!(parse::<bool>("k", "false").ok(), Some(false));
        assert_eq!(parse::<Vec<String>>("k", r#"["a","b"]"#).ok(), Some(vec!["a".to_owned(), "b".to_owned()]));
        let map = parse::<BTreeMap<String, u8>>("k", r#"{"x":1}"#).ok();
        assert_eq!(map.and_then(|m| m.get("x").copied()), Some(1));
    }

    #[test]
    fn enums_accept_bare_strings() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(rename_all = "kebab-case")]
        enum Mode {
            DualAuth,
            Bearer,
        }
        assert_eq!(parse::<Mode>("k", "dual-auth").ok(), Some(Mode::DualAuth));
        assert_eq!(parse::<Mode>("k", "bearer").ok(), Some(Mode::Bearer));
        assert!(config_error::<Mode>("nope").contains("unknown variant"));
    }

    #[test]
    fn errors_name_the_key_and_the_problem() {
        let m = config_error::<u32>("forty");
        assert!(m.starts_with("setting `k`: "), "{m}");
        let m = config_error::<Vec<String>>(r#"["a", 1]"#);
        assert!(m.contains("invalid type: integer"), "{m}");
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Entry {
            name: String,
        }
        let m = config_error::<Entry>(r#"{"name":"a","nmae":"b"}"#);
        assert!(m.contains("unknown field `nmae`"), "{m}");
    }

    #[test]
    fn per_instance_computes_once_and_keeps_failures() {
        let cell: PerInstance<u32> = PerInstance::new();
        let mut calls = 0;
        assert_eq!(
            cell.get_or_try_init(|| {
                calls += 1;
                Ok(7)
            })
            .ok(),
            Some(&7)
        );
        assert_eq!(cell.get_or_try_init(|| Ok(8)).ok(), Some(&7));
        assert_eq!(calls, 1);
        let failed: PerInstance<u32> = PerInstance::default();
        assert!(failed.get_or_try_init(|| Err(PolicyError::invalid_config("bad"))).is_err());
        assert!(matches!(failed.get_or_try_init(|| Ok(1)), Err(PolicyError::InvalidConfig(m)) if m == "bad"));
    }
}
