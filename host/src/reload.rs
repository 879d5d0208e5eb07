//! Live policy reload: the config file's folder and the plugin folder are
//! watched (folders, not files, so a Kubernetes ConfigMap's `..data`
//! symlink swap is seen), and SIGHUP forces a reload. Changes are debounced;
//! a candidate that fails is rejected with its reason while the last good
//! policy set keeps serving, and repeated failures back off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::metrics;
use crate::server::Gateway;

/// Quiet time after the last change before a reload starts. A ConfigMap
/// update or a `mv` lands its events within a millisecond or two; a file
/// copied in place (not atomically) that is caught half-written fails as a
/// candidate and is retried when its last write arrives.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Longest wait after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts watching; reloads run on a background task for the life of the
/// process.
pub fn spawn(gateway: Gateway, config_path: PathBuf, plugin_dir: Option<PathBuf>) -> notify::Result<()> {
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    let config_name = config_path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let watched_plugins = plugin_dir.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && !matches!(event.kind, EventKind::Access(_))
            && event.paths.iter().any(|p| relevant(p, &config_name, watched_plugins.as_deref()))
        {
            let _ = tx.send(());
        }
    })?;
    let config_dir = config_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    watcher.watch(config_dir, RecursiveMode::NonRecursive)?;
    if let Some(dir) = &plugin_dir
        && dir != config_dir
    {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(run(gateway, config_path, rx, watcher));
    Ok(())
}

/// Whether a change at `path` can change the policy: the config file, a
/// component in the plugin folder, or a Kubernetes `..data` swap. Anything
/// else in those folders (a log file, an editor's swap file) is ignored.
fn relevant(path: &Path, config_name: &std::ffi::OsStr, plugin_dir: Option<&Path>) -> bool {
    let Some(name) = path.file_name() else { return false };
    if name == config_name || name.to_string_lossy().starts_with("..") {
        return true;
    }
    let in_plugin_dir = plugin_dir.is_some_and(|d| path.parent() == Some(d));
    let name = name.to_string_lossy();
    in_plugin_dir && (name.ends_with(".wasm") || name.ends_with(".cases.yaml")) && !name.starts_with('.')
}

async fn run(
    gateway: Gateway,
    config_path: PathBuf,
    mut changes: mpsc::UnboundedReceiver<()>,
    _watcher: notify::RecommendedWatcher,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut failures: u32 = 0;
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        tokio::select! {
            change = changes.recv() => if change.is_none() { return },
            _ = hangup => tracing::info!("SIGHUP: reloading policy"),
        }
        // Debounce: editors and ConfigMap updates write several events.
        loop {
            match tokio::time::timeout(DEBOUNCE, changes.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        match reload(&gateway, &config_path).await {
            Ok(generation) => {
                failures = 0;
                metrics::reload("success");
                tracing::info!(generation, "policy reloaded");
            }
            Err(reason) => {
                failures = failures.saturating_add(1);
                metrics::reload("failure");
                let backoff = backoff(failures);
                tracing::error!(%reason, retry_after_ms = backoff.as_millis() as u64, "policy reload rejected; the previous policy keeps serving");
                // Changes made meanwhile stay queued and are handled next.
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Reads the config file and reloads the policy from it; the error says why
/// a candidate was rejected.
pub async fn reload(gateway: &Gateway, config_path: &Path) -> Result<u64, String> {
    let cfg = Config::load(config_path).map_err(|e| e.to_string())?;
    gateway.reload_policy(&cfg).await.map_err(|e| e.to_string())
}

/// 0.5 s after the first failure, doubling up to 30 s.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    (Duration::from_millis(500) * 2u32.pow(exp)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_that_can_change_policy_count() {
        let cfg = std::ffi::OsStr::new("wasmgate.yaml");
        let plugins = Path::new("/etc/wasmgate/plugins");
        assert!(relevant(Path::new("/etc/wasmgate/wasmgate.yaml"), cfg, Some(plugins)));
        assert!(relevant(Path::new("/etc/wasmgate/..data"), cfg, Some(plugins)));
        assert!(relevant(Path::new("/etc/wasmgate/plugins/authz.wasm"), cfg, Some(plugins)));
        assert!(!relevant(Path::new("/etc/wasmgate/wasmgate.log"), cfg, Some(plugins)));
        assert!(!relevant(Path::new("/etc/wasmgate/plugins/.authz.wasm.swp"), cfg, Some(plugins)));
        assert!(!relevant(Path::new("/etc/wasmgate/other/authz.wasm"), cfg, Some(plugins)));
        assert!(relevant(Path::new("/etc/wasmgate/plugins/authz.cases.yaml"), cfg, Some(plugins)));
        assert!(!relevant(Path::new("/etc/wasmgate/plugins/.authz.wasm.tmp"), cfg, Some(plugins)));
        assert!(!relevant(Path::new("/etc/wasmgate/plugins/notes.yaml"), cfg, Some(plugins)));
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }
}
