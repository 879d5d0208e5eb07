//! The precompile cache: compiled components on disk, keyed by the
//! component's SHA-256 and the engine's compatibility hash.
//!
//! Loading a cached artifact maps its native code into the process, so the
//! folder is as sensitive as the binary itself: it must be a real directory
//! owned by the gateway's user and closed to group and others (`0700`), and
//! every artifact a regular file owned by that user and not writable by
//! anyone else. Anything else is refused. Writes go through a temporary
//! file and a rename, so a crash never leaves a torn artifact; an artifact
//! that fails to load (a torn write from an older version, another engine
//! configuration) is compiled again and replaced.

use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Why the cache folder cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("plugins.cache_dir {path}: {detail}")]
pub struct CacheError {
    path: PathBuf,
    detail: String,
}

/// An open precompile cache.
#[derive(Debug, Clone)]
pub(crate) struct PrecompileCache {
    dir: PathBuf,
    engine_hash: String,
    uid: u32,
}

impl PrecompileCache {
    /// Opens (creating it `0700` if missing) and checks the cache folder.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, CacheError> {
        let err = |detail: String| CacheError { path: dir.to_owned(), detail };
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err(format!("cannot create it: {e}")))?;
        }
        let uid = rustix::process::geteuid().as_raw();
        let meta = fs::symlink_metadata(dir).map_err(|e| err(e.to_string()))?;
        if meta.file_type().is_symlink() {
            return Err(err("is a symlink; give the real folder".to_owned()));
        }
        if !meta.is_dir() {
            return Err(err("is not a directory".to_owned()));
        }
        if meta.uid() != uid {
            return Err(err(format!("is owned by uid {}, not by the gateway's uid {uid}", meta.uid())));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!("has mode {mode:04o}; it must be 0700 (chmod 700 it)")));
        }
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self { dir: dir.to_owned(), engine_hash: format!("{:016x}", hasher.finish()), uid })
    }

    fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_hash))
    }

    /// The cached compilation of the component whose bytes hash to
    /// `sha256`, if there is a usable one.
    pub(crate) fn get(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path_of(sha256);
        let meta = fs::symlink_metadata(&path).ok()?;
        if !meta.file_type().is_file() || meta.uid() != self.uid || meta.permissions().mode() & 0o022 != 0 {
            tracing::warn!(path = %path.display(), "ignoring a precompiled artifact that is not a regular file owned by the gateway and closed to others");
            return None;
        }
        let bytes = fs::read(&path).ok()?;
        // SAFETY: `Component::deserialize` trusts its input to be an artifact
        // this wasmtime produced. The bytes come from a file the gateway
        // wrote itself (temporary file + rename) in a folder checked above to
        // be owned by its user and closed to everyone else, and wasmtime
        // checks the artifact's header against this engine's configuration
        // before using it.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &bytes) };
        match component {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "precompiled artifact unusable; compiling again");
                None
            }
        }
    }

    /// Stores the compilation of `sha256`. Failures are logged, not fatal:
    /// the cache only saves time.
    pub(crate) fn put(&self, sha256: &str, component: &Component) {
        if let Err(e) = self.try_put(sha256, component) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not store a precompiled component");
        }
    }

    fn try_put(&self, sha256: &str, component: &Component) -> anyhow::Result<()> {
        let bytes = component.serialize()?;
        crate::files::AtomicWrite::new(0o600).write(&self.path_of(sha256), &bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::default()
    }

    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_folder_open_to_others_or_a_symlink_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let open = root.path().join("open");
        fs::create_dir(&open).expect("mkdir");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).expect("chmod");
        let msg = PrecompileCache::open(&open, &engine()).expect_err("0755 refused").to_string();
        assert!(msg.contains("0755") && msg.contains("0700"), "{msg}");

        let real = root.path().join("real");
        fs::DirBuilder::new().mode(0o700).create(&real).expect("mkdir");
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let msg = PrecompileCache::open(&link, &engine()).expect_err("symlink refused").to_string();
        assert!(msg.contains("symlink"), "{msg}");
    }

    #[test]
    fn a_missing_folder_is_created_0700_and_artifacts_round_trip() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/b");
        let engine = engine();
        let cache = PrecompileCache::open(&dir, &engine).expect("created");
        assert_eq!(fs::metadata(&dir).expect("meta").permissions().mode() & 0o777, 0o700);
        let component = Component::new(&engine, EMPTY_COMPONENT).expect("empty component compiles");
        assert!(cache.get(&engine, "abc").is_none());
        cache.put("abc", &component);
        let file = cache.path_of("abc");
        assert_eq!(fs::metadata(&file).expect("stored").permissions().mode() & 0o777, 0o600);
        assert!(cache.get(&engine, "abc").is_some(), "loads back");

        // A torn or foreign artifact is ignored, not trusted.
        fs::write(&file, b"garbage").expect("overwrite");
        assert!(cache.get(&engine, "abc").is_none());
        // One writable by others is refused without being read.
        cache.put("abc", &component);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(cache.get(&engine, "abc").is_none());
    }
}
