//! Reading a binding's settings.
//!
//! The host's `get-config` returns string settings as they are and any other
//! value (list, map, number, boolean) as its JSON text. Lists and maps are
//! therefore parsed as JSON; a setting that was written as a YAML string
//! holding JSON text parses the same way.

use serde::de::DeserializeOwned;
use wasmgate_plugin_sdk::PolicyError;

/// A source of settings: `wasmgate_plugin_sdk::settings::raw` in a
/// component, a list of pairs in tests.
pub trait Settings {
    /// The raw value of `key`, `None` when it is not set.
    fn get(&self, key: &str) -> Option<String>;
}

impl<F> Settings for F
where
    F: Fn(&str) -> Option<String>,
{
    fn get(&self, key: &str) -> Option<String> {
        self(key)
    }
}

/// Settings from a fixed list of pairs (handy in tests and examples).
impl Settings for [(&str, &str)] {
    fn get(&self, key: &str) -> Option<String> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned())
    }
}

impl<const N: usize> Settings for [(&str, &str); N] {
    fn get(&self, key: &str) -> Option<String> {
        Settings::get(self.as_slice(), key)
    }
}

/// Builds an `invalid-config` error about `key`.
pub fn invalid(key: &str, message: impl std::fmt::Display) -> PolicyError {
    PolicyError::InvalidConfig(format!("setting `{key}`: {message}"))
}

/// Parses the JSON setting `key`, `Ok(None)` when it is not set.
pub fn json<T: DeserializeOwned>(settings: &(impl Settings + ?Sized), key: &str) -> Result<Option<T>, PolicyError> {
    match settings.get(key) {
        None => Ok(None),
        Some(raw) => serde_json::from_str(&raw).map(Some).map_err(|e| invalid(key, e)),
    }
}

/// The string setting `key`, or `default` when it is not set.
pub fn string(settings: &(impl Settings + ?Sized), key: &str, default: &str) -> String {
    settings.get(key).unwrap_or_else(|| default.to_owned())
}

/// Checks that a scope name is usable: non-empty, no whitespace or control
/// characters.
pub fn validate_scope(scope: &str) -> Result<(), String> {
    if scope.is_empty() {
        return Err("empty scope".to_owned());
    }
    if scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("scope `{scope}` contains whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_setting_absent_present_and_malformed() {
        let s = [("list", r#"["a","b"]"#), ("bad", "[1,")];
        assert_eq!(json::<Vec<String>>(&s, "missing"), Ok(None));
        assert_eq!(json::<Vec<String>>(&s, "list"), Ok(Some(vec!["a".to_owned(), "b".to_owned()])));
        assert!(matches!(
            json::<Vec<String>>(&s, "bad"),
            Err(PolicyError::InvalidConfig(m)) if m.contains("`bad`")
        ));
    }

    #[test]
    fn string_setting_defaults() {
        let s = [("k", "v")];
        assert_eq!(string(&s, "k", "d"), "v");
        assert_eq!(string(&s, "other", "d"), "d");
    }

    #[test]
    fn closures_are_settings() {
        let f = |k: &str| (k == "x").then(|| "1".to_owned());
        assert_eq!(f.get("x").as_deref(), Some("1"));
        assert_eq!(f.get("y"), None);
    }
}
