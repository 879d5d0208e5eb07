//! Live reload of the key folder and the revocation file.
//!
//! The folders are watched, not the files ([`crate::files::watch_folders`]),
//! so the atomic `..data` symlink swap of a Kubernetes Secret or ConfigMap
//! update is seen (the visible names never change; only `..data` is renamed
//! over). Events are debounced; then the key set and the revocation set are
//! rebuilt off the request path and each is swapped in atomically. A bad
//! update is rejected with its reason in the log and the last good set
//! keeps verifying. A resync every minute covers a lost watch (e.g. a
//! folder that was replaced).

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{GatewayTokenError, Live};
use crate::config::paths;
use crate::files::{self, FolderWatch, WatchError};

/// Quiet time after the last change before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// Reload even without events this often.
const RESYNC: Duration = Duration::from_secs(60);

/// Starts watching on `tasks`; stops with them or when `live` is dropped.
pub(super) fn spawn(tasks: &crate::tasks::Tasks, live: &Arc<Live>) -> Result<(), GatewayTokenError> {
    // Absolute (`Config::load` already made them so; a config built in
    // code may not have), so the watch never depends on the working directory.
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = &live.keys_dir {
        dirs.push(paths::absolute(d));
    }
    if let Some(f) = &live.revoked_file {
        dirs.push(files::folder_of(&paths::absolute(f)));
    }
    if dirs.is_empty() {
        return Ok(());
    }
    // Reads (our own, when reloading) never trigger a reload; a finished write does.
    let watch = files::watch_folders(&dirs, DEBOUNCE, files::not_a_read).map_err(|e| {
        GatewayTokenError::Config(match e {
            WatchError::NoRuntime => "watching the key folder needs a tokio runtime".into(),
            WatchError::Create(e) => format!("cannot watch the key folder: {e}"),
            e @ WatchError::Watch { .. } => e.to_string(),
        })
    })?;
    tasks.spawn("gateway key watch", run(Arc::downgrade(live), watch));
    Ok(())
}

async fn run(live: Weak<Live>, mut watch: FolderWatch) {
    let mut last = Outcomes::default();
    loop {
        tokio::select! {
            changed = watch.changed() => if !changed { return },
            () = tokio::time::sleep(RESYNC) => {},
        }
        let Some(live) = live.upgrade() else { return };
        let outcome = tokio::task::spawn_blocking(move || (live.reload_keys(), live.reload_revoked())).await;
        let Ok((keys, revoked)) = outcome else { continue };
        count(&keys, crate::metrics::gateway_key_reload);
        count(&revoked, crate::metrics::revocation_list_reload);
        last.report("keys", keys);
        last.report("revocation list", revoked);
    }
}

/// Counts a reload that changed a set (`success`) or was rejected
/// (`failure`); one that found nothing new is not a reload.
fn count(result: &Result<Option<String>, GatewayTokenError>, metric: fn(&str)) {
    match result {
        Ok(None) => {}
        Ok(Some(_)) => metric("success"),
        Err(_) => metric("failure"),
    }
}
/// The last outcome per source, so an unchanged state is not logged again
/// at every resync.
#[derive(Default)]
struct Outcomes {
    errors: std::collections::HashMap<&'static str, String>,
}

impl Outcomes {
    fn report(&mut self, what: &'static str, result: Result<Option<String>, GatewayTokenError>) {
        match result {
            Ok(None) => {
                self.errors.remove(what);
            }
            Ok(Some(change)) => {
                self.errors.remove(what);
                tracing::info!(%change, "gateway token {what} reloaded");
            }
            Err(e) => {
                let reason = e.to_string();
                if self.errors.get(what) != Some(&reason) {
                    tracing::error!(%reason, "gateway token {what} update rejected; the last good set keeps verifying");
                    self.errors.insert(what, reason);
                }
            }
        }
    }
}
