//! Claim paths: naming a value inside a token's claims.
//!
//! A path is one segment per nested key, written either as a dotted string
//! (`realm_access.roles`) or as a list of segments
//! (`["https://example.com/roles"]`), which is needed when a key contains a
//! dot. Both forms deserialise into [`ClaimPath`], so a settings struct can
//! simply hold a `ClaimPath` field. The `oidc-claims-mapper` component
//! reads its claim-path settings with this type too.
//!
//! ```
//! use wasmgate_plugin_sdk::claims::ClaimPath;
//! let claims = serde_json::json!({"realm_access": {"roles": ["user", "admin"]}});
//! let path: ClaimPath = "realm_access.roles".parse().unwrap();
//! assert_eq!(path.strings(&claims), ["user", "admin"]);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A path to a value inside a claims object: the keys to follow.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimPath {
    segments: Vec<String>,
}

impl ClaimPath {
    /// A path of dot-separated segments: `realm_access.roles`.
    ///
    /// Errors if a segment is empty (`a..b`, `.a`, ``).
    pub fn dotted(path: &str) -> Result<Self, String> {
        Self::from_segments(path.split('.').map(str::to_owned).collect())
    }

    /// A path of explicit segments: `["https://example.com/roles"]`.
    ///
    /// Errors if the list or a segment is empty.
    pub fn from_segments(segments: Vec<String>) -> Result<Self, String> {
        if segments.is_empty() || segments.iter().any(String::is_empty) {
            return Err(format!("claim path {segments:?} is empty or has an empty segment"));
        }
        Ok(ClaimPath { segments })
    }

    /// Parses a setting's text: a JSON list of segments if it starts with
    /// `[`, a dotted path otherwise.
    pub fn parse_setting(raw: &str) -> Result<Self, String> {
        if raw.trim_start().starts_with('[') {
            let segments: Vec<String> =
                serde_json::from_str(raw).map_err(|e| format!("claim path {raw:?} is not a list of strings: {e}"))?;
            Self::from_segments(segments)
        } else {
            Self::dotted(raw)
        }
    }

    /// The keys this path follows.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The value at this path, if every key along it exists (and every value
    /// on the way is an object).
    pub fn lookup<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        self.segments.iter().try_fold(claims, |value, key| value.as_object()?.get(key))
    }

    /// The string at this path; `None` if it is missing, not a string or
    /// empty.
    pub fn string<'a>(&self, claims: &'a Value) -> Option<&'a str> {
        self.lookup(claims).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// The strings at this path, which must hold an array of strings (the
    /// form of roles and groups claims). Non-string items and empty strings
    /// are dropped and duplicates removed (first occurrence kept); a missing
    /// value or any other type gives none.
    pub fn strings(&self, claims: &Value) -> Vec<String> {
        match self.lookup(claims) {
            Some(Value::Array(items)) => distinct(items.iter().filter_map(Value::as_str)),
            _ => Vec::new(),
        }
    }

    /// Like [`strings`](Self::strings), but a string value is read as
    /// space-separated words too (the form of OAuth's `scope` claim; `scp`
    /// is often an array).
    pub fn strings_or_words(&self, claims: &Value) -> Vec<String> {
        match self.lookup(claims) {
            Some(Value::String(s)) => distinct(s.split(' ')),
            _ => self.strings(claims),
        }
    }
}

/// Non-empty items, first occurrence kept.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !item.is_empty() && !out.iter().any(|o| o == item) {
            out.push(item.to_owned());
        }
    }
    out
}

impl FromStr for ClaimPath {
    type Err = String;

    /// Same as [`ClaimPath::parse_setting`].
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse_setting(s)
    }
}

impl fmt::Display for ClaimPath {
    /// The dotted form if no segment contains a dot, else the JSON list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.iter().any(|s| s.contains('.')) {
            let json = serde_json::to_string(&self.segments).map_err(|_| fmt::Error)?;
            f.write_str(&json)
        } else {
            f.write_str(&self.segments.join("."))
        }
    }
}

impl<'de> Deserialize<'de> for ClaimPath {
    /// Accepts a dotted string or a list of segment strings.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Dotted(String),
            Segments(Vec<String>),
        }
        let form = Form::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom("a claim path must be a dotted string or a list of strings"))?;
        match form {
            Form::Dotted(path) => ClaimPath::parse_setting(&path),
            Form::Segments(segments) => ClaimPath::from_segments(segments),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// The value at the dotted path `path` in `claims` (a convenience for
/// [`ClaimPath::lookup`]); `None` if the path is malformed or missing.
pub fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    ClaimPath::dotted(path).ok()?.lookup(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(s: &str) -> ClaimPath {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn dotted_and_segment_forms() {
        let claims = json!({
            "realm_access": {"roles": ["user"]},
            "https://example.com/roles": ["admin"],
            "a.b": {"c": "dot"},
        });
        assert_eq!(path("realm_access.roles").strings(&claims), ["user"]);
        assert_eq!(path(r#"["https://example.com/roles"]"#).strings(&claims), ["admin"]);
        assert_eq!(path(r#"["a.b", "c"]"#).string(&claims), Some("dot"));
        // The dotted form splits at every dot, so it cannot reach `a.b`.
        assert_eq!(path("a.b.c").lookup(&claims), None);
        assert_eq!(lookup(&claims, "realm_access.roles"), Some(&json!(["user"])));
    }

    #[test]
    fn malformed_paths_are_rejected() {
        assert!(ClaimPath::dotted("").is_err());
        assert!(ClaimPath::dotted("a..b").is_err());
        assert!(ClaimPath::parse_setting("[]").is_err());
        assert!(ClaimPath::parse_setting(r#"["a", ""]"#).is_err());
        assert!(ClaimPath::parse_setting("[1]").is_err());
        assert_eq!(lookup(&json!({}), "a..b"), None);
    }

    #[test]
    fn deserialises_from_either_form() {
        let p: ClaimPath = serde_json::from_value(json!("realm_access.roles")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.segments(), ["realm_access", "roles"]);
        let p: ClaimPath = serde_json::from_value(json!(["x.y"])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.segments(), ["x.y"]);
        assert_eq!(p.to_string(), r#"["x.y"]"#);
        assert_eq!(path("a.b").to_string(), "a.b");
        assert!(serde_json::from_value::<ClaimPath>(json!(3)).is_err());
        assert!(serde_json::from_value::<ClaimPath>(json!("a..b")).is_err());
    }

    #[test]
    fn strings_take_arrays_words_take_text_too() {
        let claims = json!({
            "scope": "openid  sandbox.read sandbox.read",
            "roles": ["a", 1, "", "b", "a", null],
            "n": 5,
            "obj": {"k": "v"},
        });
        assert_eq!(path("scope").strings_or_words(&claims), ["openid", "sandbox.read"]);
        assert!(path("scope").strings(&claims).is_empty());
        assert_eq!(path("roles").strings_or_words(&claims), ["a", "b"]);
        assert_eq!(path("roles").strings(&claims), ["a", "b"]);
        assert!(path("n").strings(&claims).is_empty());
        assert!(path("missing").strings(&claims).is_empty());
        assert!(path("scope.x").strings(&claims).is_empty());
        assert_eq!(path("obj.k").string(&claims), Some("v"));
        assert_eq!(path("n").string(&claims), None);
    }
}
