//! Static credentials from a YAML file, re-read when it changes.
//!
//! ```yaml
//! credentials:
//!   - name: github
//!     token_file: github-token          # relative to this file's folder
//!     token_type: Bearer                # the default
//!     expires_at: 2030-01-01T00:00:00Z  # RFC 3339, or Unix milliseconds
//!     scopes: [repo]
//!   - name: legacy-api
//!     token: "dev-only-inline-token"
//! ```
//!
//! The file's folder (and each `token_file`'s) is watched rather than the
//! file itself, so editors that replace the file and Kubernetes' `..data`
//! symlink swap are both seen. A file that fails to load leaves the last good
//! set in place. An entry past its `expires_at` is never served.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher as _};
use serde::Deserialize;

use crate::token::{Credential, Token};

/// Longest credential name accepted.
const MAX_NAME: usize = 128;
/// Longest token accepted, bytes.
const MAX_TOKEN: usize = 16 * 1024;

/// Why the static credentials file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML for this schema.
    #[error("invalid credentials file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// An entry is invalid (the message never contains a token).
    #[error("credential {name:?}: {message}")]
    Entry {
        /// The entry's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The folder watcher could not start.
    #[error("cannot watch {path}: {source}")]
    Watch {
        /// The folder.
        path: PathBuf,
        /// The watcher's error.
        source: notify::Error,
    },
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A valid credential.
    Found(Credential),
    /// The credential exists but its `expires_at` has passed.
    Expired,
    /// No such credential in the file.
    Unknown,
}

#[derive(Debug)]
struct Entry {
    credential: Credential,
    scopes: Vec<String>,
}

#[derive(Debug, Default)]
struct Entries {
    by_name: HashMap<String, Entry>,
    token_files: Vec<PathBuf>,
}

/// The credentials of one file, swapped whole on each successful reload.
#[derive(Debug)]
pub struct StaticCredentials {
    path: PathBuf,
    entries: ArcSwap<Entries>,
    reloads: AtomicU64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    credentials: Vec<EntryDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryDoc {
    name: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default = "default_token_type")]
    token_type: String,
    #[serde(default)]
    expires_at: Option<ExpiresAt>,
    #[serde(default)]
    scopes: Vec<String>,
}

fn default_token_type() -> String {
    "Bearer".to_owned()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresAt {
    UnixMs(i64),
    Rfc3339(String),
}

/// Checks a credential name: 1 to 128 characters of `[A-Za-z0-9._:/-]`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'));
    if ok { Ok(()) } else { Err(format!("credential name {name:?} is not 1-{MAX_NAME} of [A-Za-z0-9._:/-]")) }
}

/// Checks that a token can travel in an HTTP header: 1 to 16 KiB of visible
/// ASCII (spaces allowed inside).
pub fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(format!("token must be 1-{MAX_TOKEN} bytes"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic() || b == b' ') || token.starts_with(' ') || token.ends_with(' ') {
        return Err("token must be visible ASCII".to_owned());
    }
    Ok(())
}

fn parse_expiry(name: &str, e: &ExpiresAt) -> Result<i64, StaticError> {
    let bad = |message: String| StaticError::Entry { name: name.to_owned(), message };
    match e {
        ExpiresAt::UnixMs(ms) if *ms > 0 => Ok(*ms),
        ExpiresAt::UnixMs(_) => Err(bad("expires_at must be positive Unix milliseconds".into())),
        ExpiresAt::Rfc3339(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|e| bad(format!("expires_at {s:?} is not RFC 3339: {e}")))?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| bad(format!("expires_at {s:?} is out of range")))
        }
    }
}

/// `path` made absolute, its folder resolved through symlinks; the name is
/// kept as written, because in a Kubernetes volume it is a symlink the
/// kubelet swaps (`creds.yaml -> ..data/creds.yaml`).
pub fn absolute(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir).map(|d| d.join(name)).unwrap_or(abs),
        _ => abs,
    }
}

fn read_token_file(path: &Path) -> Result<String, std::io::Error> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn load_entries(path: &Path) -> Result<Entries, StaticError> {
    let text = std::fs::read_to_string(path).map_err(|source| StaticError::Read { path: path.into(), source })?;
    let doc: FileDoc =
        serde_norway::from_str(&text).map_err(|e| StaticError::Parse { path: path.into(), message: e.to_string() })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Entries::default();
    for e in doc.credentials {
        let bad = |message: String| StaticError::Entry { name: e.name.clone(), message };
        check_name(&e.name).map_err(bad)?;
        let token = match (e.token, &e.token_file) {
            (Some(t), None) => t,
            (None, Some(f)) => {
                let f = if f.is_relative() { base.join(f) } else { f.clone() };
                let t = read_token_file(&f).map_err(|source| StaticError::Read { path: f.clone(), source })?;
                out.token_files.push(f);
                t
            }
            _ => return Err(bad("set exactly one of token and token_file".into())),
        };
        check_token(&token).map_err(bad)?;
        if e.token_type.is_empty() || !e.token_type.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(bad("token_type must be a non-empty word".into()));
        }
        let expires_at_ms = e.expires_at.as_ref().map(|x| parse_expiry(&e.name, x)).transpose()?.unwrap_or(0);
        let entry = Entry {
            credential: Credential { token: Token::new(token), token_type: e.token_type, expires_at_ms },
            scopes: e.scopes,
        };
        if out.by_name.insert(e.name.clone(), entry).is_some() {
            return Err(bad("defined twice".into()));
        }
    }
    Ok(out)
}

impl StaticCredentials {
    /// Loads the file at `path`; fails if it cannot be read or is invalid.
    /// The path is made absolute first (see [`absolute`]), so the watch and
    /// every reload read the same file whatever the working directory.
    pub fn load(path: &Path) -> Result<Arc<Self>, StaticError> {
        let path = absolute(path);
        let entries = load_entries(&path)?;
        Ok(Arc::new(Self { path, entries: ArcSwap::from_pointee(entries), reloads: AtomicU64::new(0) }))
    }

    /// Re-reads the file. On error the previous credentials stay in place.
    /// Returns how many credentials are now loaded.
    pub fn reload(&self) -> Result<usize, StaticError> {
        let entries = load_entries(&self.path)?;
        let n = entries.by_name.len();
        self.entries.store(Arc::new(entries));
        self.reloads.fetch_add(1, Ordering::Release);
        Ok(n)
    }

    /// How many successful reloads happened since [`load`](Self::load).
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Acquire)
    }

    /// Whether `name` is defined in the file (expired or not).
    pub fn contains(&self, name: &str) -> bool {
        self.entries.load().by_name.contains_key(name)
    }

    /// Looks `name` up at `now_ms` (Unix milliseconds).
    pub fn resolve(&self, name: &str, now_ms: i64) -> Lookup {
        match self.entries.load().by_name.get(name) {
            None => Lookup::Unknown,
            Some(e) if e.credential.expires_at_ms != 0 && e.credential.expires_at_ms <= now_ms => Lookup::Expired,
            Some(e) => Lookup::Found(e.credential.clone()),
        }
    }

    /// Every name with its scopes.
    pub fn list(&self) -> Vec<(String, Vec<String>)> {
        self.entries.load().by_name.iter().map(|(n, e)| (n.clone(), e.scopes.clone())).collect()
    }

    /// The folders whose changes trigger a reload: the file's, the folder of
    /// the file's resolved target when it is a symlink, and each
    /// `token_file`'s.
    fn folders(&self) -> BTreeSet<PathBuf> {
        let mut files = vec![self.path.clone()];
        files.extend(self.entries.load().token_files.iter().cloned());
        let mut out = BTreeSet::new();
        for f in files {
            let canonical = std::fs::canonicalize(&f).ok();
            for p in std::iter::once(f).chain(canonical) {
                if let Some(dir) = p.parent() {
                    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
                    out.insert(dir.to_owned());
                }
            }
        }
        out
    }

    /// Starts watching: any change in a watched folder re-reads the file after
    /// `debounce` of quiet. Dropping the returned [`Watch`] stops it. Must be
    /// called within a Tokio runtime.
    pub fn watch(self: &Arc<Self>, debounce: Duration) -> Result<Watch, StaticError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        })
        .map_err(|source| StaticError::Watch { path: self.path.clone(), source })?;
        for dir in self.folders() {
            watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .map_err(|source| StaticError::Watch { path: dir.clone(), source })?;
        }
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let a burst of events (a symlink swap is several) settle.
                loop {
                    tokio::time::sleep(debounce).await;
                    let mut more = false;
                    while rx.try_recv().is_ok() {
                        more = true;
                    }
                    if !more {
                        break;
                    }
                }
                match this.reload() {
                    Ok(n) => {
                        tracing::info!(file = %this.path.display(), credentials = n, "static credentials reloaded")
                    }
                    Err(e) => tracing::warn!(error = %e, "static credentials not reloaded; keeping the last good set"),
                }
            }
        });
        Ok(Watch { _watcher: watcher, task })
    }
}

/// A running folder watch; dropping it stops the watch.
#[derive(Debug)]
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    #[test]
    fn paths_are_absolute_with_a_canonical_folder() {
        let cwd = std::fs::canonicalize(std::env::current_dir().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(absolute(Path::new("creds.yaml")), cwd.join("creds.yaml"));
        assert_eq!(absolute(Path::new("./creds.yaml")), cwd.join("creds.yaml"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let real = std::fs::canonicalize(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&real, real.join("link")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(absolute(&real.join("link/creds.yaml")), real.join("creds.yaml"), "the folder is resolved");
        assert_eq!(absolute(&real.join("link")), real.join("link"), "the name is kept");
    }

    #[test]
    fn loads_inline_file_tokens_and_both_expiry_forms() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), "tok", "from-file\n");
        let f = write(
            dir.path(),
            "c.yaml",
            "credentials:\n  - {name: a, token: inline, expires_at: 2030-01-01T00:00:00Z, scopes: [x]}\n  \
             - {name: b, token_file: tok, token_type: Token, expires_at: 1000}\n  - {name: c, token: forever}\n",
        );
        let s = StaticCredentials::load(&f).unwrap_or_else(|e| panic!("{e}"));
        let Lookup::Found(a) = s.resolve("a", 0) else { panic!("a") };
        assert_eq!((a.token.expose(), a.expires_at_ms, a.token_type.as_str()), ("inline", 1_893_456_000_000, "Bearer"));
        let Lookup::Found(b) = s.resolve("b", 999) else { panic!("b") };
        assert_eq!((b.token.expose(), b.token_type.as_str()), ("from-file", "Token"));
        assert_eq!(s.resolve("b", 1000), Lookup::Expired);
        assert!(matches!(s.resolve("c", i64::MAX), Lookup::Found(c) if c.expires_at_ms == 0));
        assert_eq!(s.resolve("nope", 0), Lookup::Unknown);
    }

    #[test]
    fn invalid_entries_are_refused_without_echoing_tokens() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (yaml, why) in [
            ("credentials: [{name: a}]", "no token"),
            ("credentials: [{name: a, token: x, token_file: y}]", "both"),
            ("credentials: [{name: 'a b', token: x}]", "bad name"),
            ("credentials: [{name: a, token: \"sec\\nret\"}]", "control char"),
            ("credentials: [{name: a, token: x, expires_at: tomorrow}]", "bad date"),
            ("credentials: [{name: a, token: x}, {name: a, token: y}]", "duplicate"),
            ("credentials: [{name: a, token: x, extra: 1}]", "unknown field"),
        ] {
            let f = write(dir.path(), "c.yaml", yaml);
            let err = StaticCredentials::load(&f).map(|_| ()).expect_err(why).to_string();
            assert!(!err.contains("sec\nret"), "{why}: {err}");
        }
    }
}
