//! The file operations behind `wasmgate keys rotate|retire` and
//! `wasmgate token revoke`: every change is atomic and durable.
//!
//! A plain folder is changed file by file with [`AtomicWrite`]: a temporary
//! file (name starting with `.`, so the gateway never reads it) is written
//! beside the target, given the target's mode and owner, fsynced and renamed
//! over it, then the folder is fsynced. A folder laid out as Kubernetes projects a Secret or
//! ConfigMap (`NAME -> ..data/NAME`, `..data -> ..TIMESTAMP/`) is changed
//! the way the kubelet does it: a complete new `..TIMESTAMP` folder, then one
//! atomic rename of the `..data` symlink, so the gateway sees every file of
//! the update at once. Any other symlink at a target path is refused: it
//! points at something this command does not manage, and replacing it with
//! a file would silently detach it. Changes to one folder are serialised
//! with an advisory lock on the folder.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::GatewayTokenError;
use super::keys::{ACTIVE_FILE, KeyMaterial};
use super::revoked;
use crate::files::{self, AtomicWrite, WriteError};

/// The Kubernetes atomic-writer symlink.
const DATA_LINK: &str = "..data";
const DATA_TMP_LINK: &str = "..data_tmp";

/// Why a key or revocation file could not be changed. Never contains key bytes.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A file operation failed. (The I/O error is part of the message, not
    /// a separate cause, so a printed error chain says it once.)
    #[error("{path}: {error}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The change is not allowed (retiring the active key, a foreign symlink, ...).
    #[error("{0}")]
    Refused(String),
    /// The current key folder is not valid.
    #[error(transparent)]
    Keys(#[from] GatewayTokenError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AdminError + '_ {
    move |error| AdminError::Io { path: path.to_owned(), error }
}

/// One change to a file of a folder.
#[derive(Debug)]
enum Change {
    /// New contents; `mode` and `owner` when the file does not exist yet
    /// (an existing file keeps its own).
    Write {
        contents: Vec<u8>,
        mode: u32,
        owner: Option<(u32, u32)>,
    },
    Remove,
}

/// What `keys rotate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The new, now active, version.
    pub active: String,
    /// The previously active version (still verifies until retired); none
    /// when the folder was created or was empty.
    pub previous: Option<String>,
    /// Whether the folder itself was created (`0700`).
    pub created_folder: bool,
}

/// `wasmgate keys rotate`: adds a new version holding 32 random bytes (as 64
/// hex characters), then makes it active. A missing folder is created
/// (`0700`, with its parents) and a missing or empty one gets its first
/// version (`v1` unless `version` is given) and `active`, both `0600`.
/// Otherwise the folder must be valid before.
pub fn rotate(dir: &Path, version: Option<&str>) -> Result<Rotated, AdminError> {
    let created_folder = create_folder(dir)?;
    let _lock = lock(dir)?;
    if !has_entries(dir)? {
        let version = version.unwrap_or("v1").to_owned();
        check_version_name(&version)?;
        let key = random_key()?;
        let changes = [
            (version.as_str(), Change::Write { contents: key.into_bytes(), mode: 0o600, owner: None }),
            (ACTIVE_FILE, Change::Write { contents: format!("{version}\n").into_bytes(), mode: 0o600, owner: None }),
        ];
        apply(dir, &changes)?;
        return Ok(Rotated { active: version, previous: None, created_folder });
    }
    let current = KeyMaterial::read_dir(dir).map_err(|e| {
        AdminError::Refused(format!(
            "{e}. A key folder holds `active` (the name of the version that signs) and one file per version; \
             fix it, or run `wasmgate keys rotate --keys-dir DIR` on a new or empty folder to start one"
        ))
    })?;
    let version = match version {
        Some(v) => v.to_owned(),
        None => next_version(&current.keys),
    };
    check_version_name(&version)?;
    if current.keys.contains_key(&version) || dir.join(&version).symlink_metadata().is_ok() {
        return Err(AdminError::Refused(format!("version {version:?} already exists")));
    }
    let key = random_key()?;
    let owner = owner_of(&dir.join(ACTIVE_FILE));
    let changes = [
        (version.as_str(), Change::Write { contents: key.into_bytes(), mode: 0o600, owner }),
        (ACTIVE_FILE, Change::Write { contents: format!("{version}\n").into_bytes(), mode: 0o644, owner }),
    ];
    apply(dir, &changes)?;
    Ok(Rotated { active: version, previous: Some(current.active), created_folder: false })
}

fn check_version_name(version: &str) -> Result<(), AdminError> {
    if super::keys::version_name_is_valid(version) {
        return Ok(());
    }
    Err(AdminError::Refused(format!(
        "{version:?} is not a valid version name ([A-Za-z0-9._-], 1 to 64, not starting with `.`, not `active`)"
    )))
}

/// Creates `dir` (and missing parents) `0700` if it does not exist; true
/// if it did not. Anything at `dir` that is not a folder is refused.
fn create_folder(dir: &Path) -> Result<bool, AdminError> {
    use std::os::unix::fs::DirBuilderExt as _;
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(false),
        Ok(_) => Err(AdminError::Refused(format!("{} exists and is not a folder", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            Ok(true)
        }
        Err(e) => Err(io(dir)(e)),
    }
}

/// Whether `dir` has any entry whose name does not start with `.` (a
/// Kubernetes `..data` layout counts by the names it projects).
fn has_entries(dir: &Path) -> Result<bool, AdminError> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `wasmgate keys retire VERSION`: removes a version; tokens whose `kid`
/// names it stop verifying once the gateway has reloaded the folder.
pub fn retire(dir: &Path, version: &str) -> Result<(), AdminError> {
    let _lock = lock(dir)?;
    let current = KeyMaterial::read_dir(dir)?;
    if version == current.active {
        return Err(AdminError::Refused(format!(
            "{version:?} is the active version; rotate first (`wasmgate keys rotate`), then retire it"
        )));
    }
    if !current.keys.contains_key(version) {
        return Err(AdminError::Refused(format!("no key version {version:?} in {}", dir.display())));
    }
    apply(dir, &[(version, Change::Remove)])
}

/// `wasmgate token revoke JTI`: adds `jti` (with the token's `exp` when
/// given) to the revocation file, creating it (0644) when missing, and
/// prunes entries whose `exp + leeway` has passed. Returns false when the
/// `jti` was already listed.
pub fn revoke(path: &Path, jti: &str, exp: Option<i64>, now: i64, leeway: i64) -> Result<bool, AdminError> {
    if !revoked::jti_is_valid(jti) {
        return Err(AdminError::Refused(format!(
            "a jti is 1 to {} printable characters without spaces or '#'",
            revoked::MAX_JTI_LEN
        )));
    }
    let (dir, name) = split(path)?;
    let _lock = lock(&dir)?;
    let mut lines = match path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![revoked::Line::Other(
            "# Revoked gateway tokens: one `JTI [EXP]` per line (EXP = the token's exp, Unix seconds).".to_owned(),
        )],
        Err(e) => return Err(io(path)(e)),
        Ok(_) => revoked::read_lines(path)?.0,
    };
    let was_listed = revoked::RevokedSet::from_lines(&lines).contains(jti);
    revoked::add_and_prune(&mut lines, jti, exp, now, leeway);
    let contents = revoked::format(&lines).into_bytes();
    apply(&dir, &[(name.as_str(), Change::Write { contents, mode: 0o644, owner: None })])?;
    Ok(!was_listed)
}

fn split(path: &Path) -> Result<(PathBuf, String), AdminError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| AdminError::Refused(format!("{} has no file name", path.display())))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok((dir.to_owned(), name.to_owned()))
}

/// `v{N+1}` for the highest `vN` among the versions (`v1` when none).
fn next_version(keys: &BTreeMap<String, crate::config::SecretValue>) -> String {
    let max = keys.keys().filter_map(|k| k.strip_prefix('v')?.parse::<u64>().ok()).max().unwrap_or(0);
    format!("v{}", max.saturating_add(1))
}

fn random_key() -> Result<String, AdminError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| AdminError::Refused("the system random generator failed".to_owned()))?;
    Ok(hex::encode(b))
}

fn owner_of(path: &Path) -> Option<(u32, u32)> {
    fs::metadata(path).ok().map(|m| (m.uid(), m.gid()))
}

/// An exclusive advisory lock on the folder, held until dropped.
fn lock(dir: &Path) -> Result<File, AdminError> {
    let f = File::open(dir).map_err(io(dir))?;
    f.lock().map_err(io(dir))?;
    Ok(f)
}

fn sync_dir(dir: &Path) -> Result<(), AdminError> {
    files::sync_dir(dir).map_err(io(dir))
}

/// Whether `dir` is a Kubernetes projected-volume layout.
fn is_projected(dir: &Path) -> bool {
    dir.join(DATA_LINK).symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
}

fn apply(dir: &Path, changes: &[(&str, Change)]) -> Result<(), AdminError> {
    if is_projected(dir) { apply_projected(dir, changes) } else { apply_plain(dir, changes) }
}

fn apply_plain(dir: &Path, changes: &[(&str, Change)]) -> Result<(), AdminError> {
    // Check every target first, so a refusal changes nothing.
    for (name, _) in changes {
        plain_target(&dir.join(name))?;
    }
    for (name, change) in changes {
        let target = dir.join(name);
        let existing = plain_target(&target)?;
        match change {
            Change::Write { contents, mode, owner } => {
                let (mode, owner) = match &existing {
                    Some(m) => (m.mode() & 0o7777, Some((m.uid(), m.gid()))),
                    None => (*mode, *owner),
                };
                write_file(dir, name, contents, mode, owner, true)?;
            }
            Change::Remove => {
                if existing.is_some() {
                    fs::remove_file(&target).map_err(io(&target))?;
                }
            }
        }
        sync_dir(dir)?;
    }
    Ok(())
}

/// The metadata of a regular file at `target` (None when absent); symlinks
/// and other kinds of files are refused.
fn plain_target(target: &Path) -> Result<Option<fs::Metadata>, AdminError> {
    match target.symlink_metadata() {
        Ok(m) if m.file_type().is_symlink() => Err(AdminError::Refused(format!(
            "{} is a symlink outside a Kubernetes `..data` layout; refusing to replace it",
            target.display()
        ))),
        Ok(m) if !m.is_file() => Err(AdminError::Refused(format!("{} is not a regular file", target.display()))),
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(target)(e)),
    }
}

/// Writes `dir/name` through a temporary file ([`AtomicWrite`]); `rename`
/// replaces the target atomically, otherwise the file is created in place
/// (in a new folder). The caller fsyncs the folder.
fn write_file(
    dir: &Path,
    name: &str,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    rename: bool,
) -> Result<(), AdminError> {
    let mut write = AtomicWrite::new(mode).owner(owner).without_folder_sync();
    if !rename {
        write = write.no_replace();
    }
    write.write(&dir.join(name), contents).map_err(|e| match e {
        WriteError::Owner { path, uid, gid, source } => AdminError::Refused(format!(
            "cannot give {} the owner {uid}:{gid} of the file it replaces ({source}); run as that user",
            path.display()
        )),
        WriteError::Io { path, source, .. } => AdminError::Io { path, error: source },
    })
}

fn apply_projected(dir: &Path, changes: &[(&str, Change)]) -> Result<(), AdminError> {
    let data_link = dir.join(DATA_LINK);
    let old = fs::read_link(&data_link).map_err(io(&data_link))?;
    let old_dir = dir.join(&old);
    // Every visible name must be the projection of `..data/NAME`.
    for (name, _) in changes {
        let visible = dir.join(name);
        match fs::read_link(&visible) {
            Ok(t) if t == Path::new(DATA_LINK).join(name) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => {
                return Err(AdminError::Refused(format!(
                    "{} is not a `..data/{name}` link although the folder has a Kubernetes `..data` layout",
                    visible.display()
                )));
            }
        }
    }
    let new_dir = tempfile::Builder::new()
        .prefix(&format!("..wasmgate_{}_", crate::jose::now_unix()))
        .permissions(fs::Permissions::from_mode(0o755))
        .tempdir_in(dir)
        .map_err(io(dir))?;
    let change_of = |n: &str| changes.iter().find(|(c, _)| *c == n).map(|(_, c)| c);
    for entry in fs::read_dir(&old_dir).map_err(io(&old_dir))? {
        let entry = entry.map_err(io(&old_dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let meta = entry.metadata().map_err(io(&entry.path()))?;
        if name.starts_with('.') || !meta.is_file() || change_of(&name).is_some() {
            continue;
        }
        let contents = fs::read(entry.path()).map_err(io(&entry.path()))?;
        let owner = Some((meta.uid(), meta.gid()));
        write_file(new_dir.path(), &name, &contents, meta.mode() & 0o7777, owner, false)?;
    }
    for (name, change) in changes {
        if let Change::Write { contents, mode, owner } = change {
            let (mode, owner) = match fs::metadata(old_dir.join(name)) {
                Ok(m) => (m.mode() & 0o7777, Some((m.uid(), m.gid()))),
                Err(_) => (*mode, *owner),
            };
            write_file(new_dir.path(), name, contents, mode, owner, false)?;
        }
    }
    sync_dir(new_dir.path())?;
    // New names become visible before the swap (dangling until then), so the
    // swap alone makes the update complete.
    for (name, change) in changes {
        let visible = dir.join(name);
        if matches!(change, Change::Write { .. }) && visible.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(name), &visible).map_err(io(&visible))?;
        }
    }
    let new_dir = new_dir.keep();
    let new_name = new_dir.file_name().map(PathBuf::from).unwrap_or_default();
    let tmp_link = dir.join(DATA_TMP_LINK);
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&new_name, &tmp_link).map_err(io(&tmp_link))?;
    fs::rename(&tmp_link, &data_link).map_err(io(&data_link))?;
    sync_dir(dir)?;
    for (name, change) in changes {
        if matches!(change, Change::Remove) {
            let visible = dir.join(name);
            fs::remove_file(&visible).map_err(io(&visible))?;
        }
    }
    if old.file_name().is_some_and(|n| n.to_string_lossy().starts_with("..")) && old.components().count() == 1 {
        fs::remove_dir_all(&old_dir).map_err(io(&old_dir))?;
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests;
