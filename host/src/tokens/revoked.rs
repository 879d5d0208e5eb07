//! The revocation list: revoked gateway-token `jti`s, from a text file laid
//! out as a mounted ConfigMap would be.
//!
//! One entry per line: `JTI [EXP]`, where `EXP` is the token's `exp` (Unix
//! seconds) so the entry can be pruned once the token is expired anyway
//! (`exp` + leeway). `#` starts a comment; blank lines are ignored. The
//! parser fails closed: the first field of every line is revoked even when
//! the rest of the line is malformed (a warning says so).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::GatewayTokenError;
use super::keys::read_capped;

/// Largest accepted revocation file, bytes (a ConfigMap holds at most 1 MiB).
pub const MAX_REVOKED_FILE_BYTES: u64 = 4 << 20;
/// Longest `jti` accepted in a token, and so in the list.
pub const MAX_JTI_LEN: usize = 256;

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A comment or blank line, kept verbatim when the file is rewritten.
    Other(String),
    /// A revoked `jti`, with the token's `exp` when known.
    Entry {
        /// The revoked `jti`.
        jti: String,
        /// The token's `exp`, Unix seconds.
        exp: Option<i64>,
    },
}

/// Whether `jti` can be written as an entry.
pub fn jti_is_valid(jti: &str) -> bool {
    (1..=MAX_JTI_LEN).contains(&jti.len()) && jti.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

/// Parses the file's text into lines, with warnings for malformed ones.
pub fn parse(text: &str) -> (Vec<Line>, Vec<String>) {
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let content = raw.split('#').next().unwrap_or_default();
        let mut fields = content.split_whitespace();
        let Some(jti) = fields.next() else {
            lines.push(Line::Other(raw.to_owned()));
            continue;
        };
        if jti.len() > MAX_JTI_LEN {
            warnings.push(format!("line {}: jti longer than {MAX_JTI_LEN} bytes ignored (no token carries it)", n + 1));
            lines.push(Line::Other(raw.to_owned()));
            continue;
        }
        let exp = match fields.next() {
            None => None,
            Some(e) => match e.parse::<i64>() {
                Ok(e) => Some(e),
                Err(_) => {
                    warnings.push(format!("line {}: expiry {e:?} is not Unix seconds; revoked without expiry", n + 1));
                    None
                }
            },
        };
        if fields.next().is_some() {
            warnings.push(format!("line {}: extra fields ignored", n + 1));
        }
        lines.push(Line::Entry { jti: jti.to_owned(), exp });
    }
    (lines, warnings)
}

/// Formats lines back into file text.
pub fn format(lines: &[Line]) -> String {
    let mut out = String::new();
    for line in lines {
        match line {
            Line::Other(s) => out.push_str(s),
            Line::Entry { jti, exp: Some(exp) } => out.push_str(&format!("{jti} {exp}")),
            Line::Entry { jti, exp: None } => out.push_str(jti),
        }
        out.push('\n');
    }
    out
}

/// Reads the file's lines; a missing, unreadable or oversized file is an error.
pub fn read_lines(path: &Path) -> Result<(Vec<Line>, Vec<String>), GatewayTokenError> {
    let bytes = read_capped(path, MAX_REVOKED_FILE_BYTES)
        .map_err(|e| GatewayTokenError::Config(format!("revoked_file {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| GatewayTokenError::Config(format!("revoked_file {} is not UTF-8", path.display())))?;
    Ok(parse(&text))
}

/// The set of revoked `jti`s that verification consults.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct RevokedSet {
    jtis: HashMap<Box<str>, Option<i64>>,
}

impl fmt::Debug for RevokedSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RevokedSet({} jtis)", self.jtis.len())
    }
}

impl RevokedSet {
    /// The set of the entries among `lines`.
    pub fn from_lines(lines: &[Line]) -> Self {
        let jtis = lines
            .iter()
            .filter_map(|l| match l {
                Line::Entry { jti, exp } => Some((Box::from(jti.as_str()), *exp)),
                Line::Other(_) => None,
            })
            .collect();
        Self { jtis }
    }

    /// Reads the file; returns the set and the warnings.
    pub fn read(path: &Path) -> Result<(Self, Vec<String>), GatewayTokenError> {
        let (lines, warnings) = read_lines(path)?;
        Ok((Self::from_lines(&lines), warnings))
    }

    /// True when `jti` is revoked.
    pub fn contains(&self, jti: &str) -> bool {
        self.jtis.contains_key(jti)
    }

    /// Number of revoked `jti`s.
    pub fn len(&self) -> usize {
        self.jtis.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.jtis.is_empty()
    }
}

/// Adds `jti` (no-op when already listed, except that a newly known `exp`
/// is recorded) and drops entries whose `exp + leeway` is before `now`.
/// Comments are kept.
pub fn add_and_prune(lines: &mut Vec<Line>, jti: &str, exp: Option<i64>, now: i64, leeway: i64) {
    lines.retain(|l| !matches!(l, Line::Entry { exp: Some(e), .. } if e.saturating_add(leeway) < now));
    let mut found = false;
    for l in lines.iter_mut() {
        if let Line::Entry { jti: j, exp: e } = l
            && j == jti
        {
            found = true;
            if e.is_none() {
                *e = exp;
            }
        }
    }
    if !found {
        lines.push(Line::Entry { jti: jti.to_owned(), exp });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_comments_and_malformed_lines_fail_closed() {
        let text = "# revoked gateway tokens\n\nabc 1800000000\ndef\n  ghi   12x  # bad expiry\njkl 1 2\n#mno\n";
        let (lines, warnings) = parse(text);
        let set = RevokedSet::from_lines(&lines);
        for jti in ["abc", "def", "ghi", "jkl"] {
            assert!(set.contains(jti), "{jti}");
        }
        assert!(!set.contains("mno"), "commented out");
        assert!(!set.contains("1800000000"));
        assert_eq!(set.len(), 4);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(lines[2], Line::Entry { jti: "abc".into(), exp: Some(1_800_000_000) });
        assert_eq!(lines[4], Line::Entry { jti: "ghi".into(), exp: None });
        let long = format!("{}\n", "x".repeat(MAX_JTI_LEN + 1));
        let (lines, warnings) = parse(&long);
        assert!(RevokedSet::from_lines(&lines).is_empty());
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn add_prunes_expired_and_keeps_comments() {
        let (mut lines, _) = parse("# list\nold 100\nkeep 5000\nforever\n");
        add_and_prune(&mut lines, "new", Some(9000), 1000, 30);
        add_and_prune(&mut lines, "forever", Some(7000), 1000, 30);
        assert_eq!(format(&lines), "# list\nkeep 5000\nforever 7000\nnew 9000\n");
        add_and_prune(&mut lines, "new", None, 1000, 30);
        assert_eq!(RevokedSet::from_lines(&lines).len(), 3, "no duplicate");
    }

    #[test]
    fn read_refuses_missing_and_oversized_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("revoked");
        assert!(RevokedSet::read(&p).is_err());
        std::fs::write(&p, vec![b'a'; MAX_REVOKED_FILE_BYTES as usize + 1]).expect("write");
        assert!(RevokedSet::read(&p).is_err());
        std::fs::write(&p, "a\n").expect("write");
        assert!(RevokedSet::read(&p).expect("ok").0.contains("a"));
        assert!(jti_is_valid("3f2a"));
        assert!(!jti_is_valid("") && !jti_is_valid("a b") && !jti_is_valid("a#b"));
    }
}
