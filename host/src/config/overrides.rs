//! Overrides of scalar settings, applied to the YAML tree before it is
//! deserialized: `--set path.to.key=value` flags and
//! `WASMGATE__PATH__TO__KEY=value` environment variables.
//!
//! A value is read as a YAML scalar (`true`, `8080`, `a string`); text that
//! YAML would read as something else (`[::1]:8080`, a flow sequence) is
//! kept as a string. A path names mapping keys separated by `.` (numbers
//! index an existing list entry: `routes.0.timeout_ms`); in an environment
//! variable the separator is `__` and the keys are lowercased
//! (`WASMGATE__DRIVERS__CREDENTIALS__SOCKET`). Missing sections are
//! created, so an unknown key reaches the config types and is refused like
//! an unknown YAML key. Precedence: flag > environment > file.
//!
//! `wasmgate serve` installs its overrides once for the process
//! ([`install`]); [`super::Config::load`] applies them, so a reload that
//! re-reads the file gets the same overrides as the start.

use std::fmt;
use std::sync::OnceLock;

use serde_norway::Value;

/// The prefix of override environment variables.
pub const ENV_PREFIX: &str = "WASMGATE__";

/// Why an override cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// `--set` without `=`, or an empty key.
    #[error("{origin}: expected path.to.key=value")]
    Syntax {
        /// The flag or variable as given (its value left out).
        origin: String,
    },
    /// A key of the path holds a scalar, so it has no keys of its own, or
    /// a list index that does not exist.
    #[error("{origin}: {at} is not a section with a key {key:?}")]
    NotASection {
        /// The flag or variable.
        origin: String,
        /// The path up to the section.
        at: String,
        /// The key looked for in it.
        key: String,
    },
    /// The path names a whole section or list, not a scalar setting.
    #[error("{origin}: {path} is a section, not a scalar setting")]
    NotAScalar {
        /// The flag or variable.
        origin: String,
        /// The path.
        path: String,
    },
}

/// Where an override came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A `WASMGATE__…` environment variable.
    Env,
    /// A `--set` flag (or a named flag such as `--listen`).
    Flag,
}

/// One override.
#[derive(Clone, PartialEq, Eq)]
pub struct Override {
    path: Vec<String>,
    raw: String,
    source: Source,
    /// The flag or variable name, for errors.
    origin: String,
}

impl fmt::Debug for Override {
    // The value may be a secret (`auth.sandbox_secret.value`): never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Override").field("path", &self.path()).field("source", &self.source).finish_non_exhaustive()
    }
}

impl Override {
    /// The dotted path, e.g. `drivers.credentials.socket`.
    pub fn path(&self) -> String {
        self.path.join(".")
    }

    /// Where it came from.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The value as given, unless the path looks like a secret (a key named
    /// `value`, `secret` or `password`), which reads `[redacted]`.
    pub fn shown_value(&self) -> &str {
        if self.path.last().is_some_and(|k| is_secret_key(k)) { REDACTED } else { &self.raw }
    }

    /// The value as a YAML scalar; text YAML reads as a list, a map or a
    /// tagged value stays a string.
    fn value(&self) -> Value {
        if self.raw.is_empty() {
            return Value::String(String::new());
        }
        match serde_norway::from_str::<Value>(&self.raw) {
            Ok(v @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))) => v,
            _ => Value::String(self.raw.clone()),
        }
    }
}

/// What a redacted value reads.
pub const REDACTED: &str = "[redacted]";

fn is_secret_key(key: &str) -> bool {
    matches!(key, "value" | "secret" | "password")
}

/// Overrides in the order they apply (a later one wins over an earlier one
/// of the same path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    entries: Vec<Override>,
}

impl Overrides {
    /// The overrides of `WASMGATE__…` variables (in name order) then of
    /// `--set` flags (in their order), so a flag wins over a variable.
    pub fn new(env: impl IntoIterator<Item = (String, String)>, flags: &[String]) -> Result<Self, OverrideError> {
        let mut vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        vars.sort();
        let mut entries = Vec::with_capacity(vars.len() + flags.len());
        for (name, raw) in vars {
            let path: Vec<String> = name[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                return Err(OverrideError::Syntax { origin: name });
            }
            entries.push(Override { path, raw, source: Source::Env, origin: name });
        }
        for flag in flags {
            entries.push(parse_flag(flag)?);
        }
        Ok(Self { entries })
    }

    /// The overrides of the process environment and `flags`.
    pub fn from_env_and_flags(flags: &[String]) -> Result<Self, OverrideError> {
        Self::new(std::env::vars(), flags)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each override, in the order they apply.
    pub fn iter(&self) -> impl Iterator<Item = &Override> {
        self.entries.iter()
    }

    /// Sets every override in `tree` (a parsed YAML document), creating
    /// missing sections.
    pub fn apply(&self, tree: &mut Value) -> Result<(), OverrideError> {
        self.entries.iter().try_for_each(|o| set(tree, o))
    }
}

/// `path.to.key=value`.
fn parse_flag(flag: &str) -> Result<Override, OverrideError> {
    let syntax = || OverrideError::Syntax { origin: format!("--set {}", flag.split('=').next().unwrap_or_default()) };
    let (key, raw) = flag.split_once('=').ok_or_else(syntax)?;
    let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(syntax());
    }
    Ok(Override { origin: format!("--set {}", path.join(".")), path, raw: raw.to_owned(), source: Source::Flag })
}

fn set(tree: &mut Value, o: &Override) -> Result<(), OverrideError> {
    let mut node = tree;
    for (i, key) in o.path.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(serde_norway::Mapping::new());
        }
        let not_a_section = || OverrideError::NotASection {
            origin: o.origin.clone(),
            at: if i == 0 { "the document".to_owned() } else { o.path[..i].join(".") },
            key: key.clone(),
        };
        node = match node {
            Value::Mapping(m) => m.entry(Value::String(key.clone())).or_insert(Value::Null),
            Value::Sequence(s) => key.parse::<usize>().ok().and_then(|n| s.get_mut(n)).ok_or_else(not_a_section)?,
            _ => return Err(not_a_section()),
        };
    }
    if matches!(node, Value::Mapping(_) | Value::Sequence(_)) {
        return Err(OverrideError::NotAScalar { origin: o.origin.clone(), path: o.path() });
    }
    *node = o.value();
    Ok(())
}

static INSTALLED: OnceLock<Overrides> = OnceLock::new();

/// Installs the process's overrides, which every later [`super::Config::load`]
/// applies (start and reload alike). The first call wins; later ones are
/// ignored and return false.
pub fn install(overrides: Overrides) -> bool {
    INSTALLED.set(overrides).is_ok()
}

/// The installed overrides (none until [`install`]).
pub fn installed() -> &'static Overrides {
    static NONE: Overrides = Overrides { entries: Vec::new() };
    INSTALLED.get().unwrap_or(&NONE)
}

/// `tree` with every secret value replaced by `[redacted]`: inline secrets
/// (`{value: …}`) and keys named `secret` or `password` holding a string.
pub fn redacted(tree: &Value) -> Value {
    match tree {
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| {
                    let secret = k.as_str().is_some_and(is_secret_key) && !matches!(v, Value::Mapping(_));
                    let v = if secret { Value::String(REDACTED.to_owned()) } else { redacted(v) };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Sequence(s) => Value::Sequence(s.iter().map(redacted).collect()),
        Value::Tagged(t) => redacted(&t.value),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(yaml: &str) -> Value {
        serde_norway::from_str(yaml).expect("yaml")
    }

    fn apply(yaml: &str, env: &[(&str, &str)], flags: &[&str]) -> Result<Value, OverrideError> {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        let mut t = tree(yaml);
        Overrides::new(env, &flags)?.apply(&mut t)?;
        Ok(t)
    }

    #[test]
    fn values_are_yaml_scalars() {
        let t = apply("{}", &[], &["a.n=8080", "a.b=true", "a.s=hello world", "a.q='8080'", "a.e=", "a.z=~"])
            .expect("applies");
        assert_eq!(t, tree("a: {n: 8080, b: true, s: hello world, q: '8080', e: '', z: null}"));
    }

    #[test]
    fn text_yaml_reads_as_a_collection_stays_a_string() {
        let t = apply("", &[], &["listen=[::1]:8080", "x.y={a: 1}", "x.t=!file /x"]).expect("applies");
        assert_eq!(t, tree("{listen: '[::1]:8080', x: {y: '{a: 1}', t: '!file /x'}}"));
    }

    #[test]
    fn flags_win_over_env_which_wins_over_the_file() {
        let yaml = "listen: 127.0.0.1:1\nadmin: {listen: 127.0.0.1:2}\n";
        let env = [("WASMGATE__LISTEN", "127.0.0.1:3"), ("WASMGATE__ADMIN__LISTEN", "127.0.0.1:4")];
        let t = apply(yaml, &env, &["listen=127.0.0.1:5"]).expect("applies");
        assert_eq!(t, tree("listen: 127.0.0.1:5\nadmin: {listen: 127.0.0.1:4}\n"));
        // The last of several flags wins.
        let t = apply(yaml, &[], &["listen=127.0.0.1:6", "listen=127.0.0.1:7"]).expect("applies");
        assert_eq!(t["listen"], Value::String("127.0.0.1:7".into()));
    }

    #[test]
    fn env_keys_are_lowercased_and_split_on_double_underscores() {
        let env = [
            ("WASMGATE__DRIVERS__CREDENTIALS__SOCKET", "/run/c.sock"),
            ("WASMGATE__PLUGINS__MAX_MEMORY_BYTES", "1024"),
            ("WASMGATE_LOG", "debug"),
            ("OTHER", "x"),
        ];
        let t = apply("", &env, &[]).expect("applies");
        assert_eq!(t, tree("drivers: {credentials: {socket: /run/c.sock}}\nplugins: {max_memory_bytes: 1024}\n"));
    }

    #[test]
    fn list_entries_are_indexed_by_number() {
        let t = apply("routes: [{name: a}, {name: b}]", &[], &["routes.1.timeout_ms=5"]).expect("applies");
        assert_eq!(t, tree("routes: [{name: a}, {name: b, timeout_ms: 5}]"));
        let err = apply("routes: [{name: a}]", &[], &["routes.3.name=x"]).expect_err("no entry 3");
        assert!(matches!(err, OverrideError::NotASection { .. }), "{err}");
    }

    #[test]
    fn malformed_or_non_scalar_overrides_are_refused() {
        for flag in ["listen", "=x", "a..b=1", ".a=1"] {
            let err = apply("", &[], &[flag]).expect_err(flag);
            assert!(matches!(err, OverrideError::Syntax { .. }), "{flag}: {err}");
        }
        let err = apply("", &[("WASMGATE__A____B", "1")], &[]).expect_err("empty key");
        assert!(matches!(err, OverrideError::Syntax { .. }), "{err}");
        let err = apply("listen: 127.0.0.1:1", &[], &["listen.port=1"]).expect_err("a scalar has no keys");
        assert_eq!(err.to_string(), "--set listen.port: listen is not a section with a key \"port\"");
        let err = apply("admin: {listen: x}", &[], &["admin=1"]).expect_err("a section");
        assert_eq!(err.to_string(), "--set admin: admin is a section, not a scalar setting");
    }

    #[test]
    fn secrets_are_redacted() {
        let t = tree("auth: {sandbox_secret: {value: hunter2}, keys: {k1: {file: /k}}}\nx: {password: p}");
        let shown = serde_json::to_string(&redacted(&t)).expect("json");
        assert!(!shown.contains("hunter2") && !shown.contains("\"p\""), "{shown}");
        assert!(shown.contains("/k"), "file sources are shown: {shown}");
        let o = Overrides::new([], &["auth.sandbox_secret.value=hunter2".to_owned()]).expect("parses");
        let o = o.iter().next().expect("one");
        assert_eq!(o.shown_value(), REDACTED);
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn a_loaded_config_gets_its_overrides_checked_and_its_paths_resolved() {
        use crate::config::{Config, ConfigError};
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("gateway.yaml");
        std::fs::write(&file, "listen: 127.0.0.1:1\n").expect("write");
        let flags = |f: &[&str]| -> Overrides {
            Overrides::new([], &f.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).expect("parses")
        };
        let cfg = Config::load_with(&file, &flags(&["listen=127.0.0.1:2", "drivers.credentials.socket=c.sock"]))
            .expect("loads");
        assert_eq!(cfg.listen.port(), 2);
        let socket = cfg.drivers.credentials.as_ref().map(|d| d.socket.clone()).expect("a credentials driver");
        assert!(socket.is_absolute() && socket.ends_with("c.sock"), "relative to the file's folder: {socket:?}");

        let err = Config::load_with(&file, &flags(&["server.typo=1"])).expect_err("unknown key");
        assert!(matches!(err, ConfigError::OverriddenParse { .. }), "{err:?}");
        assert!(err.to_string().contains("server.typo") && err.to_string().contains("unknown field `typo`"), "{err}");
        let err = Config::load_with(&file, &flags(&["plugins.deadline_ms=0"])).expect_err("invalid value");
        assert!(matches!(err, ConfigError::Policy(_)), "validated like the file: {err:?}");
        // Without overrides, errors keep their line and column.
        std::fs::write(&file, "listen: 127.0.0.1:1\ntypo: 1\n").expect("write");
        let err = Config::load_with(&file, &Overrides::default()).expect_err("unknown key");
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
