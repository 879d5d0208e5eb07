//! Method patterns, shared by every component that matches call paths.
//!
//! A pattern is either
//! - an exact path, e.g. `/sandbox.v1.SandboxService/GetSandbox` or
//!   `/v1/health`, matching only that path; or
//! - a prefix ending in `*`, e.g. `/sandbox.v1.SandboxService/*` or
//!   `/v1/public/*`, matching every path that starts with the text before
//!   the `*`, compared literally (no segment logic: `/v1/pub*` matches
//!   `/v1/public`).
//!
//! Patterns must start with `/` and may hold a `*` only as the last
//! character. When several patterns of a table match, the most specific
//! wins: an exact match beats any prefix, and among prefixes the longest
//! wins.

use std::collections::BTreeSet;

/// One parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodPattern {
    /// Matches exactly this path.
    Exact(String),
    /// Matches every path starting with this text.
    Prefix(String),
}

impl MethodPattern {
    /// Parses a pattern, explaining what is wrong with a malformed one.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("pattern `{pattern}` must start with `/`"));
        }
        match pattern.find('*') {
            None => Ok(Self::Exact(pattern.to_owned())),
            Some(at) if at + 1 == pattern.len() => Ok(Self::Prefix(pattern[..at].to_owned())),
            Some(_) => Err(format!("pattern `{pattern}` may only hold `*` as its last character")),
        }
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(exact) => path == exact,
            Self::Prefix(prefix) => path.starts_with(prefix.as_str()),
        }
    }
}

/// Patterns, each with a value, looked up by most specific match.
#[derive(Debug, Clone)]
pub struct PatternTable<T> {
    exact: Vec<(String, T)>,
    /// Longest prefix first.
    prefixes: Vec<(String, T)>,
}

impl<T> Default for PatternTable<T> {
    fn default() -> Self {
        Self { exact: Vec::new(), prefixes: Vec::new() }
    }
}

impl<T> PatternTable<T> {
    /// Builds a table from `(pattern, value)` pairs, rejecting malformed and
    /// duplicate patterns.
    pub fn build(entries: impl IntoIterator<Item = (String, T)>) -> Result<Self, String> {
        let mut seen = BTreeSet::new();
        let mut table = Self::default();
        for (text, value) in entries {
            let pattern = MethodPattern::parse(&text)?;
            if !seen.insert(text.clone()) {
                return Err(format!("duplicate pattern `{text}`"));
            }
            match pattern {
                MethodPattern::Exact(path) => table.exact.push((path, value)),
                MethodPattern::Prefix(prefix) => table.prefixes.push((prefix, value)),
            }
        }
        // Stable: equal lengths cannot both match differently-spelled
        // prefixes of the same path, so the order among them is moot.
        table.prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(table)
    }

    /// The value of the most specific pattern matching `path`.
    pub fn lookup(&self, path: &str) -> Option<&T> {
        self.exact
            .iter()
            .find(|(exact, _)| exact == path)
            .or_else(|| self.prefixes.iter().find(|(prefix, _)| path.starts_with(prefix.as_str())))
            .map(|(_, value)| value)
    }

    /// Whether any pattern matches `path`.
    pub fn matches(&self, path: &str) -> bool {
        self.lookup(path).is_some()
    }

    /// Whether the table has no pattern.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

/// A set of patterns without values.
pub type PatternSet = PatternTable<()>;

impl PatternSet {
    /// Builds a set from pattern texts (malformed or duplicate → error).
    pub fn from_patterns(patterns: impl IntoIterator<Item = String>) -> Result<Self, String> {
        Self::build(patterns.into_iter().map(|p| (p, ())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(patterns: &[&str]) -> PatternTable<String> {
        PatternTable::build(patterns.iter().map(|p| ((*p).to_owned(), (*p).to_owned()))).expect("valid patterns")
    }

    #[test]
    fn parse_accepts_exact_and_prefix() {
        assert_eq!(MethodPattern::parse("/v1/health"), Ok(MethodPattern::Exact("/v1/health".into())));
        assert_eq!(
            MethodPattern::parse("/sandbox.v1.SandboxService/*"),
            Ok(MethodPattern::Prefix("/sandbox.v1.SandboxService/".into()))
        );
        assert_eq!(MethodPattern::parse("/*"), Ok(MethodPattern::Prefix("/".into())));
    }

    #[test]
    fn parse_rejects_malformed() {
        for bad in ["", "*", "v1/health", "/v1/*/x", "/v1/**", "/*x", " /v1"] {
            assert!(MethodPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn prefix_is_literal() {
        let p = MethodPattern::parse("/v1/pub*").expect("valid");
        assert!(p.matches("/v1/public/x"));
        assert!(p.matches("/v1/pub"));
        assert!(!p.matches("/v1/pu"));
        let p = MethodPattern::parse("/v1/public/*").expect("valid");
        assert!(!p.matches("/v1/public"));
        assert!(p.matches("/v1/public/"));
    }

    #[test]
    fn exact_beats_any_prefix() {
        let t = table(&["/svc/*", "/svc/Get", "/*", "/svc/Ge*"]);
        assert_eq!(t.lookup("/svc/Get").map(String::as_str), Some("/svc/Get"));
    }

    #[test]
    fn longest_prefix_wins_regardless_of_order() {
        let t = table(&["/*", "/svc/*", "/svc/Ge*"]);
        assert_eq!(t.lookup("/svc/GetX").map(String::as_str), Some("/svc/Ge*"));
        assert_eq!(t.lookup("/svc/Put").map(String::as_str), Some("/svc/*"));
        assert_eq!(t.lookup("/other").map(String::as_str), Some("/*"));
        let t = table(&["/svc/Ge*", "/svc/*", "/*"]);
        assert_eq!(t.lookup("/svc/GetX").map(String::as_str), Some("/svc/Ge*"));
    }

    #[test]
    fn no_match_and_case_sensitivity() {
        let t = table(&["/svc/Get", "/svc/*"]);
        assert_eq!(t.lookup("/SVC/Get"), None);
        assert_eq!(t.lookup("/sv"), None);
        assert!(!t.matches(""));
    }

    #[test]
    fn duplicates_rejected_but_exact_and_prefix_of_same_text_allowed() {
        assert!(PatternSet::from_patterns(["/a".to_owned(), "/a".to_owned()]).is_err());
        assert!(PatternSet::from_patterns(["/a*".to_owned(), "/a*".to_owned()]).is_err());
        let s = PatternSet::from_patterns(["/a".to_owned(), "/a*".to_owned()]).expect("valid");
        assert!(s.matches("/a") && s.matches("/ab"));
    }

    #[test]
    fn empty_set_matches_nothing() {
        let s = PatternSet::default();
        assert!(s.is_empty());
        assert!(!s.matches("/"));
    }
}
