//! Key sets: inline from the config, or read from a folder laid out as a
//! mounted Kubernetes Secret — a file `active` naming the active version and
//! one file per version holding that version's key.
//!
//! Names starting with `.` (the Secret's `..data` and `..TIMESTAMP`
//! entries, temporary files of `wasmgate keys rotate`, editors' swap files)
//! are never keys. A version file is read through symlinks (the Secret's
//! `v1 -> ..data/v1`).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::Path;

use super::{GatewayTokenError, MIN_KEY_BYTES};
use crate::config::SecretValue;

/// The file of the key folder that names the active version.
pub const ACTIVE_FILE: &str = "active";
/// Largest accepted key file, bytes.
pub const MAX_KEY_FILE_BYTES: u64 = 1024;
/// Longest version name.
pub const MAX_VERSION_LEN: usize = 64;

/// Whether `name` can name a key version: `[A-Za-z0-9._-]{1,64}`, not
/// starting with `.`, and not `active`.
pub fn version_name_is_valid(name: &str) -> bool {
    (1..=MAX_VERSION_LEN).contains(&name.len())
        && !name.starts_with('.')
        && name != ACTIVE_FILE
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A complete, checked key set: the active version and every version's key.
/// `Debug` shows versions only.
pub struct KeyMaterial {
    /// The version that signs new tokens.
    pub active: String,
    /// Every version that verifies, with its key.
    pub keys: BTreeMap<String, SecretValue>,
    /// Entries of the folder that were not used as keys, and why (for logs).
    pub skipped: Vec<String>,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("active", &self.active)
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl KeyMaterial {
    /// Checks names, key lengths and that the active version is present.
    pub fn new(active: String, keys: BTreeMap<String, SecretValue>) -> Result<Self, GatewayTokenError> {
        for (version, key) in &keys {
            if !version_name_is_valid(version) {
                return Err(GatewayTokenError::Config(format!("key version {version:?} is not a valid version name")));
            }
            if key.expose().len() < MIN_KEY_BYTES {
                return Err(GatewayTokenError::Config(format!(
                    "key {version:?} is shorter than {MIN_KEY_BYTES} bytes"
                )));
            }
        }
        if !keys.contains_key(&active) {
            return Err(GatewayTokenError::Config(format!("active key {active:?} is not among the keys")));
        }
        Ok(Self { active, keys, skipped: Vec::new() })
    }

    /// Reads a key folder. The whole set is refused when the folder cannot be
    /// read, `active` is missing or names no key, or a key file is too short
    /// or too large.
    pub fn read_dir(dir: &Path) -> Result<Self, GatewayTokenError> {
        let cfg = |m: String| GatewayTokenError::Config(format!("keys_dir {}: {m}", dir.display()));
        let entries = std::fs::read_dir(dir).map_err(|e| cfg(format!("cannot read the folder: {e}")))?;
        let mut keys = BTreeMap::new();
        let mut skipped = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| cfg(format!("cannot list the folder: {e}")))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                skipped.push(format!("{name:?}: not UTF-8"));
                continue;
            };
            if name.starts_with('.') || name == ACTIVE_FILE {
                continue;
            }
            if !version_name_is_valid(name) {
                skipped.push(format!("{name:?}: not a version name ([A-Za-z0-9._-], 1 to 64)"));
                continue;
            }
            let path = entry.path();
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    skipped.push(format!("{name:?}: not a file"));
                    continue;
                }
                // A dangling symlink: a Secret update in progress.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    skipped.push(format!("{name:?}: dangling link"));
                    continue;
                }
                Err(e) => return Err(cfg(format!("key {name:?}: {e}"))),
            }
            let bytes = read_capped(&path, MAX_KEY_FILE_BYTES).map_err(|e| cfg(format!("key {name:?}: {e}")))?;
            keys.insert(name.to_owned(), SecretValue::new(trim_newline(bytes)));
        }
        let active_path = dir.join(ACTIVE_FILE);
        let active = read_capped(&active_path, 256).map_err(|e| cfg(format!("file {ACTIVE_FILE:?}: {e}")))?;
        let active =
            String::from_utf8(active).map_err(|_| cfg(format!("file {ACTIVE_FILE:?} is not UTF-8")))?.trim().to_owned();
        if keys.is_empty() {
            return Err(cfg("holds no key version".to_owned()));
        }
        let mut material = Self::new(active, keys).map_err(|e| match e {
            GatewayTokenError::Config(m) => cfg(m),
            other => other,
        })?;
        material.skipped = skipped;
        Ok(material)
    }
}

/// Reads at most `max` bytes; a longer file is refused.
pub(crate) fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {max} bytes")));
    }
    Ok(buf)
}

/// Removes one trailing `\n` or `\r\n` (as a Secret created from a file
/// written by an editor often has).
pub(crate) fn trim_newline(mut b: Vec<u8>) -> Vec<u8> {
    if b.last() == Some(&b'\n') {
        b.pop();
        if b.last() == Some(&b'\r') {
            b.pop();
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &[u8] = b"0123456789abcdef0123456789abcdef-v1";
    const K2: &[u8] = b"0123456789abcdef0123456789abcdef-v2";

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).expect("write");
    }

    #[test]
    fn version_names() {
        for ok in ["v1", "2025-06-01", "key_A.2", &"a".repeat(64)] {
            assert!(version_name_is_valid(ok), "{ok}");
        }
        for bad in ["", ".v1", "..data", "active", "v 1", "v/1", "../x", "v1\0", &"a".repeat(65), "ключ"] {
            assert!(!version_name_is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn reads_a_folder_and_skips_what_is_not_a_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "active", b"v2\n");
        write(d, "v1", &[K1, b"\n"].concat());
        write(d, "v2", &[K2, b"\r\n"].concat());
        write(d, ".v3.tmp", b"partial");
        write(d, "not a version", K1);
        std::fs::create_dir(d.join("..2025_01_01")).expect("mkdir");
        std::fs::create_dir(d.join("sub")).expect("mkdir");
        let m = KeyMaterial::read_dir(d).expect("valid folder");
        assert_eq!(m.active, "v2");
        assert_eq!(m.keys.keys().collect::<Vec<_>>(), ["v1", "v2"]);
        assert_eq!(m.keys["v1"].expose(), K1, "one trailing newline removed");
        assert_eq!(m.keys["v2"].expose(), K2, "CRLF removed");
        assert_eq!(m.skipped.len(), 2, "{:?}", m.skipped);
        assert!(!format!("{m:?}").contains("0123456789abcdef"), "Debug shows no key");
    }

    #[test]
    fn follows_the_kubernetes_secret_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ts = d.join("..2025_06_01_12_00_00.123");
        std::fs::create_dir(&ts).expect("mkdir");
        std::fs::write(ts.join("active"), "v1").expect("write");
        std::fs::write(ts.join("v1"), K1).expect("write");
        std::os::unix::fs::symlink("..2025_06_01_12_00_00.123", d.join("..data")).expect("symlink");
        std::os::unix::fs::symlink("..data/active", d.join("active")).expect("symlink");
        std::os::unix::fs::symlink("..data/v1", d.join("v1")).expect("symlink");
        std::os::unix::fs::symlink("..data/gone", d.join("gone")).expect("dangling symlink");
        let m = KeyMaterial::read_dir(d).expect("valid Secret mount");
        assert_eq!(m.active, "v1");
        assert_eq!(m.keys.len(), 1);
    }

    #[test]
    fn bad_folders_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let err = |d: &Path| KeyMaterial::read_dir(d).expect_err("must be refused").to_string();
        assert!(err(&d.join("missing")).contains("cannot read the folder"));
        write(d, "v1", K1);
        assert!(err(d).contains("active"), "no active file");
        write(d, "active", b"v9");
        assert!(err(d).contains("\"v9\" is not among the keys"));
        write(d, "active", b"v1");
        write(d, "v2", b"short\n");
        assert!(err(d).contains("shorter than 32 bytes"));
        write(d, "v2", &vec![b'k'; MAX_KEY_FILE_BYTES as usize + 1]);
        assert!(err(d).contains("larger than"));
        write(d, "v2", &[b'k'; 32]);
        assert!(KeyMaterial::read_dir(d).is_ok(), "exactly 32 bytes is enough");
        write(d, "active", b"");
        assert!(KeyMaterial::read_dir(d).is_err(), "empty active");
        let empty = tempfile::tempdir().expect("tempdir");
        write(empty.path(), "active", b"v1");
        assert!(err(empty.path()).contains("no key version"));
    }
}
