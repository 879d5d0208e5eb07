//! Atomic, durable file replacement: readers see the old file or the new
//! one, never a torn one, and a crash leaves at most a temporary file whose
//! name starts with `.` (see [`temp_prefix`]).

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Why a file could not be written. Never contains the contents.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file operation failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operation (`create temp file`, `write`, `fsync`, `rename`, ...).
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The new file could not be given the requested owner.
    #[error("cannot give {path} the owner {uid}:{gid} ({source})")]
    Owner {
        /// The target file.
        path: PathBuf,
        /// The user id asked for.
        uid: u32,
        /// The group id asked for.
        gid: u32,
        /// Why.
        source: io::Error,
    },
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError::Io { path: path.to_owned(), what, source }
}

/// How to write a file atomically: a temporary file named
/// [`temp_prefix`]`…` is created in the target's folder (`0600`, exclusive,
/// never through a symlink), given its owner and exact mode, written,
/// fsynced and renamed over the target; then the folder is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicWrite {
    mode: u32,
    owner: Option<(u32, u32)>,
    replace: bool,
    sync_dir: bool,
}

impl AtomicWrite {
    /// A write giving the file exactly `mode` (the umask does not apply),
    /// replacing an existing file, and fsyncing the folder.
    pub fn new(mode: u32) -> Self {
        Self { mode, owner: None, replace: true, sync_dir: true }
    }

    /// Gives the new file this owner (`uid`, `gid`); `None` keeps the writer's.
    pub fn owner(mut self, owner: Option<(u32, u32)>) -> Self {
        self.owner = owner;
        self
    }

    /// Fails instead of replacing an existing file (for files of a new folder).
    pub fn no_replace(mut self) -> Self {
        self.replace = false;
        self
    }

    /// Leaves the folder's fsync to the caller (one fsync after several files).
    pub fn without_folder_sync(mut self) -> Self {
        self.sync_dir = false;
        self
    }

    /// Replaces `path` with `contents`.
    pub fn write(&self, path: &Path, contents: &[u8]) -> Result<(), WriteError> {
        self.write_with(path, |f| f.write_all(contents))
    }

    /// Replaces `path` with what `write` writes to the temporary file.
    pub fn write_with(&self, path: &Path, write: impl FnOnce(&mut File) -> io::Result<()>) -> Result<(), WriteError> {
        let dir = parent(path);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut tmp = tempfile::Builder::new()
            .prefix(&temp_prefix(&name))
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(io_err(dir, "create temp file"))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid)).map_err(|source| WriteError::Owner {
                path: path.to_owned(),
                uid,
                gid,
                source,
            })?;
        }
        // The umask can only remove bits; this makes the mode exact.
        tmp.as_file().set_permissions(fs::Permissions::from_mode(self.mode)).map_err(io_err(path, "chmod"))?;
        write(tmp.as_file_mut()).map_err(io_err(path, "write"))?;
        tmp.as_file().sync_all().map_err(io_err(path, "fsync"))?;
        if self.replace {
            tmp.persist(path).map_err(|e| io_err(path, "rename")(e.error))?;
        } else {
            tmp.persist_noclobber(path).map_err(|e| io_err(path, "rename")(e.error))?;
        }
        if self.sync_dir {
            sync_dir(dir).map_err(io_err(dir, "fsync folder"))?;
        }
        Ok(())
    }
}

/// The start of the name of a temporary file for `name`: `.NAME.tmp-`. A
/// writer that serialises its writes may delete leftovers with this prefix.
pub fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// fsyncs a folder, making the creations, renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// The folder of `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("metadata").mode() & 0o7777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_with_the_exact_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        AtomicWrite::new(0o640).write(&p, b"one").expect("create");
        assert_eq!((fs::read(&p).expect("read"), mode(&p)), (b"one".to_vec(), 0o640));
        AtomicWrite::new(0o600).write(&p, b"two").expect("replace");
        assert_eq!((fs::read(&p).expect("read"), mode(&p)), (b"two".to_vec(), 0o600));
        assert_eq!(names(dir.path()), ["f"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        fs::write(&p, "old").expect("write");
        let e = AtomicWrite::new(0o600)
            .write_with(&p, |f| {
                f.write_all(b"half")?;
                Err(io::Error::other("disk full"))
            })
            .expect_err("fails");
        assert!(matches!(&e, WriteError::Io { what: "write", .. }), "{e:?}");
        assert_eq!(fs::read_to_string(&p).expect("read"), "old");
        assert_eq!(names(dir.path()), ["f"]);
    }

    #[test]
    fn no_replace_refuses_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        AtomicWrite::new(0o600).no_replace().without_folder_sync().write(&p, b"new").expect("create");
        assert!(AtomicWrite::new(0o600).no_replace().write(&p, b"again").is_err());
        assert_eq!(fs::read_to_string(&p).expect("read"), "new");
        assert_eq!(names(dir.path()), ["f"]);
    }

    #[test]
    fn temporary_files_are_hidden_and_named_after_the_target() {
        assert_eq!(temp_prefix("credentials.json"), ".credentials.json.tmp-");
        assert_eq!(parent(Path::new("f")), Path::new("."));
        assert_eq!(parent(Path::new("/a/f")), Path::new("/a"));
    }
}
