//! The credentials file: tokens per gateway, written so that a crash, a full
//! disk or a concurrent `wasmgate` never loses a refresh token.
//!
//! - Every write goes through [`AtomicWrite`]: a fresh temp file in the same
//!   folder (created 0600, exclusive, never following a symlink), fsynced,
//!   renamed over the file, and the folder fsynced: readers see the old file or the new
//!   one, never a torn one, and the result is always 0600.
//! - Writes happen only while holding an advisory lock (`flock`) on a
//!   sibling `.lock` file; [`StoreLock`] is the only way to write, so a
//!   read-refresh-write cycle is serialised across processes.
//! - A symlink at the path is refused, for reads and writes: following it
//!   would let whoever controls the link choose where tokens are read from
//!   or written to, and a rename would silently replace the link anyway.
//!   The file is never touched in that case.
//! - A file that is not a regular file or is owned by another user is
//!   refused; a file readable or writable by group or others (0644) is
//!   rewritten 0600 under the lock, with a warning.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::files::{self, AtomicWrite, WriteError};
use crate::retry::Backoff;

/// The file format version this build writes.
pub const FORMAT_VERSION: u32 = 1;

/// A larger file is refused rather than read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// How long to wait for another process holding the lock.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Why the credentials file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The path is a symbolic link.
    #[error(
        "credentials file {0} is a symbolic link; refusing to use it (point --credentials or WASMGATE_CREDENTIALS \
         at the real file)"
    )]
    Symlink(PathBuf),
    /// The path is not a regular file.
    #[error("credentials file {0} is not a regular file")]
    NotAFile(PathBuf),
    /// The file belongs to another user.
    #[error("credentials file {path} is owned by uid {owner}, not by this user; refusing to use it")]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// The file is too large to be a credentials file.
    #[error("credentials file {0} is larger than 1 MiB; refusing to read it")]
    TooLarge(PathBuf),
    /// The JSON is malformed.
    #[error("credentials file {path} is not valid: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The parser's message (never the content).
        reason: String,
    },
    /// A newer wasmgate wrote the file.
    #[error("credentials file {path} has format version {version}; this wasmgate writes version {FORMAT_VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// Another process kept the lock too long.
    #[error("credentials file {0} stayed locked by another process for 60 s")]
    LockTimeout(PathBuf),
    /// No default location could be determined.
    #[error("cannot find a place for the credentials file: set XDG_CONFIG_HOME, HOME or --credentials")]
    NoDefaultPath,
    /// An I/O error.
    #[error("credentials file {path}: {what}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operation.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { path, what, source }
}

/// A token or other secret: shown as `[redacted]` by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for sending it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How an entry's tokens were obtained, hence how they are renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// The device authorization grant; renewed with the refresh token.
    DeviceCode,
    /// The client-credentials grant; renewed by asking again with the
    /// client secret read from `client_secret_file`.
    ClientCredentials,
}

/// The tokens for one gateway and what is needed to renew them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// How the tokens were obtained.
    pub grant: Grant,
    /// The issuer the endpoints were discovered from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Where tokens are renewed.
    pub token_endpoint: String,
    /// The OAuth client.
    pub client_id: String,
    /// Client credentials only: the file holding the client secret (the
    /// secret itself is never stored here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes requested.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The `audience` parameter sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The access token.
    pub access_token: Secret,
    /// Its type as the server said (`Bearer`).
    #[serde(default)]
    pub token_type: String,
    /// When the access token expires (Unix seconds); unknown when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The refresh token, if the server issued one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// When these tokens were stored (Unix seconds).
    #[serde(default)]
    pub updated_at: u64,
}

impl Entry {
    /// Whether the access token is still good for at least `margin`.
    pub fn fresh(&self, now: u64, margin: Duration) -> bool {
        match self.expires_at {
            Some(exp) => exp > now.saturating_add(margin.as_secs()),
            None => true,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Entries keyed by the gateway's normalised URL.
    #[serde(default)]
    pub gateways: BTreeMap<String, Entry>,
}

impl Default for Credentials {
    fn default() -> Self {
        Self { version: FORMAT_VERSION, gateways: BTreeMap::new() }
    }
}

/// What [`CredentialsStore::read`] found.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The content (empty when the file does not exist).
    pub credentials: Credentials,
    /// The file's mode when group or others have any access to it.
    pub loose_mode: Option<u32>,
}

/// The credentials file at one path.
#[derive(Debug, Clone)]
pub struct CredentialsStore {
    path: PathBuf,
    lock_path: PathBuf,
}

impl CredentialsStore {
    /// The store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut lock = path.clone().into_os_string();
        lock.push(".lock");
        Self { path, lock_path: PathBuf::from(lock) }
    }

    /// `$XDG_CONFIG_HOME/wasmgate/credentials.json`, else
    /// `$HOME/.config/wasmgate/credentials.json`.
    pub fn default_path() -> Result<PathBuf, StoreError> {
        let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let base = non_empty("XDG_CONFIG_HOME")
            .filter(|p| p.is_absolute())
            .or_else(|| non_empty("HOME").map(|h| h.join(".config")))
            .ok_or(StoreError::NoDefaultPath)?;
        Ok(base.join("wasmgate").join("credentials.json"))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file without the lock (a consistent snapshot thanks to the
    /// atomic rename). A missing file reads as empty.
    pub fn read(&self) -> Result<Loaded, StoreError> {
        let mut file = match OpenOptions::new().read(true).custom_flags(nofollow()).open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(e) if is_symlink_error(&e) => return Err(StoreError::Symlink(self.path.clone())),
            Err(e) => return Err(io(&self.path, "open")(e)),
        };
        let meta = file.metadata().map_err(io(&self.path, "stat"))?;
        self.check_owner_and_type(&meta)?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(StoreError::TooLarge(self.path.clone()));
        }
        let mut text = String::new();
        Read::by_ref(&mut file).take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(io(&self.path, "read"))?;
        let credentials: Credentials = serde_json::from_str(&text)
            .map_err(|e| StoreError::Malformed { path: self.path.clone(), reason: e.to_string() })?;
        if credentials.version > FORMAT_VERSION {
            return Err(StoreError::Version { path: self.path.clone(), version: credentials.version });
        }
        let mode = meta.mode() & 0o777;
        Ok(Loaded { credentials, loose_mode: (mode & 0o077 != 0).then_some(mode) })
    }

    fn check_owner_and_type(&self, meta: &std::fs::Metadata) -> Result<(), StoreError> {
        if !meta.file_type().is_file() {
            return Err(StoreError::NotAFile(self.path.clone()));
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(StoreError::Owner { path: self.path.clone(), owner: meta.uid() });
        }
        Ok(())
    }

    /// Takes the advisory lock, waiting up to 60 s for another process.
    /// Creates the folder (0700) if needed.
    pub async fn lock(&self) -> Result<StoreLock<'_>, StoreError> {
        if let Some(dir) = self.dir()
            && !dir.exists()
        {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir, "create folder"))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nofollow())
            .open(&self.lock_path)
            .map_err(|e| {
                if is_symlink_error(&e) {
                    StoreError::Symlink(self.lock_path.clone())
                } else {
                    io(&self.lock_path, "open")(e)
                }
            })?;
        let deadline = Instant::now() + LOCK_WAIT;
        let backoff = Backoff { base: Duration::from_millis(2), cap: Duration::from_millis(50) };
        let mut attempts: u32 = 0;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(StoreLock { store: self, _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&self.lock_path, "lock")(e)),
            }
            if Instant::now() >= deadline {
                return Err(StoreError::LockTimeout(self.path.clone()));
            }
            attempts = attempts.saturating_add(1);
            tokio::time::sleep(backoff.delay(attempts)).await;
        }
    }

    fn dir(&self) -> Option<&Path> {
        self.path.parent().filter(|p| !p.as_os_str().is_empty())
    }

    fn write_atomic_with(
        &self,
        bytes: &[u8],
        write: impl FnOnce(&mut File, &[u8]) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let dir = self.dir().unwrap_or(Path::new("."));
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() => return Err(StoreError::Symlink(self.path.clone())),
            Ok(m) => self.check_owner_and_type(&m)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&self.path, "stat")(e)),
        }
        // Writers hold the lock, so any temp file left is from a crash.
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let prefix = files::temp_prefix(&name);
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        AtomicWrite::new(0o600).write_with(&self.path, |f| write(f, bytes)).map_err(|e| match e {
            WriteError::Io { path, what, source } => StoreError::Io { path, what, source },
            WriteError::Owner { path, source, .. } => StoreError::Io { path, what: "chown", source },
        })
    }
}

/// The advisory lock on a credentials file; released on drop. Only a lock
/// holder can write.
#[derive(Debug)]
pub struct StoreLock<'a> {
    store: &'a CredentialsStore,
    _file: File,
}

impl StoreLock<'_> {
    /// Reads the file; one readable by group or others is rewritten 0600
    /// first, with a warning.
    pub fn read(&self) -> Result<Credentials, StoreError> {
        let loaded = self.store.read()?;
        if let Some(mode) = loaded.loose_mode {
            tracing::warn!(
                path = %self.store.path.display(),
                mode = format_args!("{mode:04o}"),
                "the credentials file was readable by other users; rewriting it with mode 0600 (tokens it held may \
                 have been read: consider logging in again)"
            );
            self.write(&loaded.credentials)?;
        }
        Ok(loaded.credentials)
    }

    /// Replaces the file atomically: temp file, fsync, rename, fsync folder.
    pub fn write(&self, credentials: &Credentials) -> Result<(), StoreError> {
        self.write_with(credentials, |f, b| f.write_all(b))
    }

    fn write_with(
        &self,
        credentials: &Credentials,
        write: impl FnOnce(&mut File, &[u8]) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        if credentials.version > FORMAT_VERSION {
            return Err(StoreError::Version { path: self.store.path.clone(), version: credentials.version });
        }
        let mut bytes = serde_json::to_vec_pretty(credentials)
            .map_err(|e| StoreError::Malformed { path: self.store.path.clone(), reason: e.to_string() })?;
        bytes.push(b'\n');
        self.store.write_atomic_with(&bytes, write)
    }
}

fn nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

fn is_symlink_error(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests;
