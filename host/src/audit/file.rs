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

    /// Appends `lines` (each a whole JSON line, newline included), as few
    /// writes as fit, rotating whenever the next line would take the file
    /// past `max_bytes` (a file holds at least one line, however long).
    /// Returns how many were written and, if a write failed (a full disk),
    /// why: the rest are not written, and the next call reopens the file.
    pub fn append(&mut self, lines: &[Vec<u8>]) -> (usize, Option<std::io::Error>) {
        let mut written = 0;
        let mut buf = Vec::new();
        while written < lines.len() {
            let size = match self.ready(lines[written].len() as u64) {
                Ok(size) => size,
                Err(e) => return (written, Some(self.failed(e))),
            };
            // As many lines as fit beside what the file holds; at least one.
            buf.clear();
            let mut n = 0;
            for line in &lines[written..] {
                if n > 0 && size + (buf.len() + line.len()) as u64 > self.max_bytes {
                    break;
                }
                buf.extend_from_slice(line);
                n += 1;
            }
            if let Err(e) = self.write_all(&buf) {
                return (written, Some(self.failed(e)));
            }
            written += n;
        }
        (written, None)
    }

    /// Appends one write (whole lines), rotating first if it would take
    /// the file past `max_bytes`.
    #[cfg(test)]
    pub fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        self.ready(lines.len() as u64)?;
        self.write_all(lines).map_err(|e| self.failed(e))
    }

    /// The file open, rotated first if `next` more bytes would take it past
    /// `max_bytes`; its size.
    fn ready(&mut self, next: u64) -> std::io::Result<u64> {
        if self.file.is_none() {
            let f = open(&self.path)?;
            let size = f.metadata()?.len();
            self.file = Some((f, size));
        }
        let size = self.file.as_ref().map_or(0, |(_, s)| *s);
        if size > 0 && size.saturating_add(next) > self.max_bytes {
            self.file = None;
            self.rotate()?;
            self.file = Some((open(&self.path)?, 0));
            return Ok(0);
        }
        Ok(size)
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let Some((file, size)) = &mut self.file else { return Err(std::io::ErrorKind::NotConnected.into()) };
        file.write_all(bytes)?;
        *size += bytes.len() as u64;
        Ok(())
    }

    /// After an error: a partial write cut off (so the file keeps whole
    /// lines, as far as the file system allows), the file closed to be
    /// reopened by the next write.
    fn failed(&mut self, e: std::io::Error) -> std::io::Error {
        if let Some((f, size)) = self.file.take() {
            let _ = f.set_len(size);
        }
        e
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
    fn a_batch_of_lines_is_split_across_rotations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.log");
        let mut f = RotatingFile::new(path.clone(), 50, 3);
        let lines: Vec<Vec<u8>> =
            (0..10).map(|i| format!("{{\"line\":{i:02},\"x\":\"abc\"}}\n").into_bytes()).collect();
        assert_eq!(lines[0].len(), 22);
        let (n, err) = f.append(&lines);
        assert_eq!((n, err.map(|e| e.to_string())), (10, None));
        // Two lines per file: the newest four files hold the last eight.
        assert_eq!(std::fs::read(&path).expect("read"), [lines[8].clone(), lines[9].clone()].concat());
        assert_eq!(std::fs::read(numbered(&path, 3)).expect("read"), [lines[2].clone(), lines[3].clone()].concat());
        assert!(!numbered(&path, 4).exists());
    }

    #[test]
    fn a_full_disk_fails_the_write_and_the_next_write_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("decisions.log");
        std::os::unix::fs::symlink("/dev/full", &path).expect("symlink");
        let mut f = RotatingFile::new(path.clone(), 1 << 20, 2);
        let err = f.write(b"{}\n").expect_err("ENOSPC");
        let (n, again) = f.append(&[b"{}\n".to_vec()]);
        assert_eq!((n, again.and_then(|e| e.raw_os_error())), (0, Some(28)));
        assert_eq!(err.raw_os_error(), Some(28), "{err}");
        assert!(f.file.is_none(), "reopened on the next write");
        // The disk has room again.
        std::fs::remove_file(&path).expect("unlink");
        f.write(b"{\"ok\":1}\n").expect("write after recovery");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"ok\":1}\n");
    }
}
