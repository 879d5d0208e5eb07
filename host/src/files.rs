//! Files the gateway and its CLI write or watch.
//!
//! - [`AtomicWrite`]: the one atomic, durable file replacement (a temporary
//!   file in the same folder, exact mode bits, fsync, rename, fsync of the
//!   folder). Used by the key and revocation commands and the login store.
//! - [`watch_folders`]: the one folder watch with a debounce, which reports
//!   each burst of changes once. Folders are watched, not files, so the
//!   kubelet's atomic `..data` symlink swap of a Secret or ConfigMap is seen
//!   ([`is_kubelet_swap`]).

mod atomic;
mod watch;

pub use atomic::{AtomicWrite, WriteError, sync_dir, temp_prefix};
pub use watch::{FolderWatch, WatchError, folder_of, is_kubelet_swap, not_a_read, watch_folders};
