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
///
/// Built once per configuration, looked up in time that grows with the
/// path and the logarithm of the table, not with its size: the exact paths
/// and the prefixes are each sorted, and every prefix knows the longest
/// other prefix that starts it (its parent). A lookup binary-searches the
/// exact paths, then takes the greatest prefix sorted at or before the path
/// and walks up its parents to the first that the path starts with.
///
/// Why that walk is exact: the strings starting with a prefix `q` are one
/// contiguous run in sorted order, beginning at `q`. If `q` starts the path,
/// `q <= path`, so `q <= e` for `e` the greatest prefix `<= path`, and `e`
/// lies in `q`'s run between `q` and the path: `q` starts `e`. So every
/// prefix of the path is `e` or one of its ancestors, and the ancestors are
/// visited longest first.
#[derive(Debug, Clone)]
pub struct PatternTable<T> {
    /// Sorted by path (unique: duplicates are refused).
    exact: Vec<(String, T)>,
    /// Sorted by prefix (unique), each with the position of its parent.
    prefixes: Vec<(String, T)>,
    parents: Vec<Option<usize>>,
}

impl<T> Default for PatternTable<T> {
    fn default() -> Self {
        Self { exact: Vec::new(), prefixes: Vec::new(), parents: Vec::new() }
    }
}

impl<T> PatternTable<T> {
    /// Builds a table from `(pattern, value)` pairs, rejecting malformed and
    /// duplicate patterns.
    pub fn build(entries: impl IntoIterator<Item = (String, T)>) -> Result<Self, String> {
        let mut table = Self::default();
        for (text, value) in entries {
            match MethodPattern::parse(&text)? {
                MethodPattern::Exact(path) => table.exact.push((path, value)),
                MethodPattern::Prefix(prefix) => table.prefixes.push((prefix, value)),
            }
        }
        table.exact.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        table.prefixes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Sorted, a duplicate sits next to its twin.
        let twin = |list: &[(String, T)], star: &str| {
            list.windows(2).find(|w| w[0].0 == w[1].0).map(|w| format!("duplicate pattern `{}{star}`", w[0].0))
        };
        if let Some(e) = twin(&table.exact, "").or_else(|| twin(&table.prefixes, "*")) {
            return Err(e);
        }
        // The ancestors of the prefix at hand, longest last: a prefix sorts
        // before everything it starts, and what lies between it and them
        // starts with it too.
        let mut chain: Vec<usize> = Vec::new();
        table.parents.reserve_exact(table.prefixes.len());
        for (i, (prefix, _)) in table.prefixes.iter().enumerate() {
            while chain.last().is_some_and(|&top| !prefix.starts_with(table.prefixes[top].0.as_str())) {
                chain.pop();
            }
            table.parents.push(chain.last().copied());
            chain.push(i);
        }
        Ok(table)
    }

    /// The value of the most specific pattern matching `path`.
    pub fn lookup(&self, path: &str) -> Option<&T> {
        if let Ok(at) = self.exact.binary_search_by(|(exact, _)| exact.as_str().cmp(path)) {
            return Some(&self.exact[at].1);
        }
        let mut at = self.prefixes.partition_point(|(prefix, _)| prefix.as_str() <= path).checked_sub(1);
        while let Some(i) = at {
            let (prefix, value) = &self.prefixes[i];
            if path.starts_with(prefix.as_str()) {
                return Some(value);
            }
            at = self.parents[i];
        }
        None
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

    /// The lookup as a scan, the way the table was first written: every
    /// exact path, then every prefix longest first.
    fn lookup_linear<'t>(patterns: &[String], values: &'t [String], path: &str) -> Option<&'t String> {
        let pairs = || patterns.iter().zip(values);
        let exact = pairs().find(|(p, _)| MethodPattern::parse(p) == Ok(MethodPattern::Exact(path.to_owned())));
        let mut prefixes: Vec<_> = pairs()
            .filter_map(|(p, v)| match MethodPattern::parse(p) {
                Ok(MethodPattern::Prefix(prefix)) => Some((prefix, v)),
                _ => None,
            })
            .collect();
        prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        exact
            .map(|(_, v)| v)
            .or_else(|| prefixes.into_iter().find(|(p, _)| path.starts_with(p.as_str())).map(|(_, v)| v))
    }

    /// A small deterministic generator (xorshift), so the test needs no
    /// dependency and fails the same way every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        /// Text over a tiny alphabet, so patterns nest and collide often.
        fn text(&mut self, max: usize) -> String {
            (0..self.below(max + 1)).map(|_| ['/', 'a', 'b', 'é'][self.below(4)]).collect()
        }
    }

    #[test]
    fn the_index_finds_what_a_scan_finds() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let mut patterns: Vec<String> = Vec::new();
            for _ in 0..rng.below(16) {
                let star = if rng.below(2) == 0 { "*" } else { "" };
                let p = format!("/{}{star}", rng.text(6));
                if !patterns.contains(&p) {
                    patterns.push(p);
                }
            }
            let values: Vec<String> = (0..patterns.len()).map(|i| format!("v{i}")).collect();
            let t = PatternTable::build(patterns.iter().cloned().zip(values.iter().cloned())).expect("valid");
            for _ in 0..24 {
                let path = match (rng.below(3), patterns.len()) {
                    (0, n) if n > 0 => format!("{}{}", patterns[rng.below(n)].trim_end_matches('*'), rng.text(3)),
                    _ => format!("/{}", rng.text(8)),
                };
                assert_eq!(t.lookup(&path), lookup_linear(&patterns, &values, &path), "{path:?} in {patterns:?}");
            }
        }
    }

    #[test]
    fn ten_thousand_entries_find_the_last_added() {
        let mut entries: Vec<(String, usize)> = (0..10_000).map(|i| (format!("/api/v1/items{i}/*"), i)).collect();
        entries.extend((0..10_000).map(|i| (format!("/svc.v1.Svc/Method{i}"), 10_000 + i)));
        entries.push(("/api/*".into(), 20_000));
        let t = PatternTable::build(entries).expect("valid");
        assert_eq!(t.lookup("/api/v1/items9999/abc/42"), Some(&9_999));
        assert_eq!(t.lookup("/svc.v1.Svc/Method9999"), Some(&19_999));
        assert_eq!(t.lookup("/api/v1/items10000/x"), Some(&20_000));
        assert_eq!(t.lookup("/svc.v1.Svc/Method99999"), None);
    }

    #[test]
    fn empty_set_matches_nothing() {
        let s = PatternSet::default();
        assert!(s.is_empty());
        assert!(!s.matches("/"));
    }
}
