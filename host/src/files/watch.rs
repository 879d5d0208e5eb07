//! One folder watch with a debounce: raw `notify` events that pass a
//! filter are collected until `debounce` has passed without another, then
//! reported once. A burst that arrives while the consumer is busy is kept
//! (one pending report), so no change is lost and none is reported twice.
//!
//! Folders are watched, not files: a Kubernetes Secret or ConfigMap update
//! renames the `..data` symlink over its old target (the visible names
//! never change), which only a folder watch sees; [`is_kubelet_swap`] tells
//! such entries apart for filters that otherwise look at names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// There is no tokio runtime to debounce on.
    #[error("watching needs a tokio runtime")]
    NoRuntime,
    /// The platform watcher could not be created.
    #[error("cannot create a file watcher: {0}")]
    Create(#[source] notify::Error),
    /// A folder could not be watched.
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
}

/// A running watch. [`FolderWatch::changed`] waits for the next burst;
/// dropping it (or [`FolderWatch::stop`]) stops the watch.
#[derive(Debug)]
pub struct FolderWatch {
    bursts: mpsc::Receiver<()>,
    task: tokio::task::AbortHandle,
    _watcher: notify::RecommendedWatcher,
}

impl FolderWatch {
    /// Waits until a burst of changes has settled; false once the watch has
    /// ended (it never does on its own while the watcher lives).
    pub async fn changed(&mut self) -> bool {
        self.bursts.recv().await.is_some()
    }

    /// Stops watching.
    pub fn stop(self) {}
}

impl Drop for FolderWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches each of `folders` (non-recursively; duplicates once) and
/// reports, on the current tokio runtime, each burst of events for which
/// `relevant` is true once `debounce` has passed without another.
/// `relevant` runs on the watcher's thread; keep it cheap.
pub fn watch_folders(
    folders: &[PathBuf],
    debounce: Duration,
    relevant: impl Fn(&notify::Event) -> bool + Send + 'static,
) -> Result<FolderWatch, WatchError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| WatchError::NoRuntime)?;
    let (raw_tx, mut raw) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && relevant(&event)
        {
            let _ = raw_tx.send(());
        }
    })
    .map_err(WatchError::Create)?;
    let mut watched: Vec<&PathBuf> = Vec::new();
    for folder in folders {
        if watched.contains(&folder) {
            continue;
        }
        watcher
            .watch(folder, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Watch { path: folder.clone(), source })?;
        watched.push(folder);
    }
    let (tx, bursts) = mpsc::channel::<()>(1);
    let task = handle.spawn(async move {
        while raw.recv().await.is_some() {
            loop {
                match tokio::time::timeout(debounce, raw.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                return;
            }
        }
    });
    Ok(FolderWatch { bursts, task: task.abort_handle(), _watcher: watcher })
}

/// The folder to watch for a file: its parent (`/` for a bare root).
pub fn folder_of(file: &Path) -> PathBuf {
    file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("/")).to_owned()
}

/// Whether `path` is an entry of the kubelet's atomic writer (`..data`,
/// `..data_tmp`, `..TIMESTAMP`): its rename is how every file of a Secret
/// or ConfigMap changes at once.
pub fn is_kubelet_swap(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".."))
}

/// A filter for [`watch_folders`]: every event but a read (our own reads,
/// when reloading, must not trigger a reload); a finished write counts.
pub fn not_a_read(event: &notify::Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(50);

    async fn next(w: &mut FolderWatch, within: Duration) -> bool {
        tokio::time::timeout(within, w.changed()).await.unwrap_or(false)
    }

    #[tokio::test]
    async fn a_burst_of_changes_is_reported_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w =
            watch_folders(&[dir.path().to_owned(), dir.path().to_owned()], DEBOUNCE, not_a_read).expect("watch");
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("f{i}")), "x").expect("write");
        }
        assert!(next(&mut w, Duration::from_secs(5)).await, "one report");
        assert!(!next(&mut w, DEBOUNCE * 6).await, "and only one");
        std::fs::write(dir.path().join("f0"), "y").expect("write");
        assert!(next(&mut w, Duration::from_secs(5)).await, "a later change is reported again");
    }

    /// The kubelet's update: a new timestamp folder, then `..data_tmp`
    /// renamed over `..data`.
    #[tokio::test]
    async fn a_kubelet_data_swap_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("..1")).expect("mkdir");
        std::fs::write(d.join("..1/key"), "a").expect("write");
        std::os::unix::fs::symlink("..1", d.join("..data")).expect("link");
        std::os::unix::fs::symlink("..data/key", d.join("key")).expect("link");
        let swaps = |e: &notify::Event| e.paths.iter().any(|p| is_kubelet_swap(p));
        let mut w = watch_folders(&[d.to_owned()], DEBOUNCE, swaps).expect("watch");
        std::fs::create_dir(d.join("..2")).expect("mkdir");
        std::fs::write(d.join("..2/key"), "b").expect("write");
        std::os::unix::fs::symlink("..2", d.join("..data_tmp")).expect("link");
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).expect("swap");
        assert!(next(&mut w, Duration::from_secs(5)).await);
        assert_eq!(std::fs::read_to_string(d.join("key")).expect("read"), "b");
    }

    #[tokio::test]
    async fn filtered_events_are_not_reported_and_errors_name_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = watch_folders(&[dir.path().to_owned()], DEBOUNCE, |_| false).expect("watch");
        std::fs::write(dir.path().join("f"), "x").expect("write");
        assert!(!next(&mut w, DEBOUNCE * 6).await);
        w.stop();
        let missing = dir.path().join("missing");
        let e = watch_folders(std::slice::from_ref(&missing), DEBOUNCE, not_a_read).expect_err("no such folder");
        assert!(e.to_string().contains(&*missing.to_string_lossy()), "{e}");
    }

    #[test]
    fn helpers() {
        assert_eq!(folder_of(Path::new("/a/b")), Path::new("/a"));
        assert_eq!(folder_of(Path::new("/")), Path::new("/"));
        assert!(is_kubelet_swap(Path::new("/k/..data")) && is_kubelet_swap(Path::new("..2025_01_01")));
        assert!(!is_kubelet_swap(Path::new("/k/.hidden")) && !is_kubelet_swap(Path::new("/k/active")));
        assert!(watch_folders(&[], DEBOUNCE, not_a_read).is_err(), "no runtime outside tokio");
    }
}
