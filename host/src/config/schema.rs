//! The JSON Schema of the config, generated from the config types
//! (`wasmgate config schema`, checked in as `docs/config.schema.json`).

use super::Config;

/// The JSON Schema (draft 2020-12) of the YAML config file, as the config
/// types deserialize it: serde renames, defaults where the type can show
/// them, enums written as one-key maps (`{file: /path}`), and
/// `additionalProperties: false` wherever unknown keys are refused.
pub fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default();
    // `auth` and `routes` are read through `singleton_map_recursive`, which
    // the derive can only be told about by marking them skip-serializing;
    // that mark (`writeOnly`) says nothing about the file.
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for prop in props.values_mut() {
            if let Some(prop) = prop.as_object_mut() {
                prop.remove("writeOnly");
            }
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    #[test]
    fn refuses_unknown_keys_and_names_every_section() {
        let s = super::schema();
        assert_eq!(s["additionalProperties"], false, "{s:#}");
        for key in ["listen", "tls", "admin", "auth", "plugins", "policy", "routes", "drivers", "login", "server"] {
            assert!(s["properties"].get(key).is_some(), "{key} missing");
        }
        assert!(!s.to_string().contains("writeOnly"));
    }
}
