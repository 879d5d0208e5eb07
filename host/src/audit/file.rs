//! The file sink's file: JSON lines appended, rotated by size, a bounded
//! number of rotated files kept, reopened after a write error.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// An append-only file rotated at `max_bytes`: `path` is current, `path.1`
/// the newest rotated one, up to `path.<max_files>`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    /// Open, with its size; `None` after an error until the next write
    /// reopens it.
    file: Option<(File, u64)>,
}

impl RotatingFile {
    /// Nothing is opened until the first write.
    pub fn new(path: PathBuf, max_bytes: u64, max_files: u32) -> Self {
        Self { path, max_bytes, max_files, file: None }
    }

    /// Appends `lines` (whole JSON lines) in one write, rotating first if
    /// they would take the file past `max_bytes` (a file holds at least one
    /// write, however large). On an error (a full disk) nothing of them is
    /// kept as far as the file allows, and the next call reopens the file.
    pub fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        let result = self.try_write(lines);
        if result.is_err() {
            // Cut a partial write off, so the file keeps whole lines.
            if let Some((f, size)) = &self.file {
                let _ = f.set_len(*size);
            }
            self.file = None;
        }
        result
    }

    fn try_write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        let len = lines.len() as u64;
        if let Some((_, size)) = &self.file
            && *size > 0
            && size.saturating_add(len) > self.max_bytes
        {
            self.file = None;
            self.rotate()?;
        }
        let (file, size) = match &mut self.file {
            Some(open) => open,
            None => {
                let f = open(&self.path)?;
                let size = f.metadata()?.len();
                if size > 0 && size.saturating_add(len) > self.max_bytes {
                    drop(f);
                    self.rotate()?;
                    let f = open(&self.path)?;
                    self.file.insert((f, 0))
                } else {
                    self.file.insert((f, size))
                }
            }
        };
        file.write_all(lines)?;
        *size += len;
        Ok(())
    }

    /// `path.N-1` → `path.N`, ..., `path` → `path.1`; the oldest falls off.
    /// With `max_files: 0` the current file is removed.
    fn rotate(&self) -> std::io::Result<()> {
        if self.max_files == 0 {
            return remove_if_present(&self.path);
        }
        remove_if_present(&numbered(&self.path, self.max_files))?;
        for n in (1..self.max_files).rev() {
            rename_if_present(&numbered(&self.path, n), &numbered(&self.path, n + 1))?;
        }
        rename_if_present(&self.path, &numbered(&self.path, 1))
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).create(true).mode(0o600).open(path)
}

/// `path.n`.
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn remove_if_present(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("decisions.log");
        let mut f = RotatingFile::new(path.clone(), 100, 2);
        for i in 0..40 {
            f.write(format!("{{\"n\":{i:04},\"pad\":\"0123456789\"}}\n").as_bytes()).expect("write");
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        assert_eq!(names, ["decisions.log", "decisions.log.1", "decisions.log.2"]);
        for name in &names {
            let text = std::fs::read_to_string(dir.path().join(name)).expect("read");
            assert!(text.len() <= 100, "{name}: {} bytes", text.len());
            assert!(text.lines().all(|l| l.starts_with("{\"n\":") && l.ends_with('}')), "{text}");
        }
        let newest = std::fs::read_to_string(&path).expect("read");
        assert!(newest.ends_with("{\"n\":0039,\"pad\":\"0123456789\"}\n"), "{newest}");
    }

    #[test]
    fn a_full_disk_fails_the_write_and_the_next_write_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("decisions.log");
        std::os::unix::fs::symlink("/dev/full", &path).expect("symlink");
        let mut f = RotatingFile::new(path.clone(), 1 << 20, 2);
        let err = f.write(b"{}\n").expect_err("ENOSPC");
        assert_eq!(err.raw_os_error(), Some(28), "{err}");
        assert!(f.file.is_none(), "reopened on the next write");
        // The disk has room again.
        std::fs::remove_file(&path).expect("unlink");
        f.write(b"{\"ok\":1}\n").expect("write after recovery");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"ok\":1}\n");
    }
}
