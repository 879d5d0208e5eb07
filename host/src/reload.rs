//! Live policy reload: the config file's folder and the plugin folder are
//! watched (folders, not files, so a Kubernetes ConfigMap's `..data`
//! symlink swap is seen), and SIGHUP forces a reload. Changes are debounced;
//! a candidate that fails is rejected with its reason while the last good
//! policy set keeps serving, and repeated failures back off.
//!
//! A reload applies the policy: `policy`, each route's `classifier`, each
//! identity provider's `claims_mapper` and `tenants`. Every other change to
//! the file (the listener, TLS, routes, providers, drivers, ...) needs a
//! restart: each reload compares the file with the one the gateway started
//! with, logs `restart required: <keys>` and shows the keys in the reload
//! status (`restart_required` in `/admin/plugins`) until the file matches
//! again. Nothing in the file is ignored silently.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::EventKind;

use crate::config::Config;
use crate::config::paths;
use crate::files::{self, FolderWatch, WatchError};
use crate::metrics;
use crate::plugins::{LoadError, PolicySet};
use crate::retry::Backoff;
use crate::server::{Gateway, StartError};
use crate::tasks::Tasks;

/// Quiet time after the last change before a reload starts. A ConfigMap
/// update or a `mv` lands its events within a millisecond or two; a file
/// copied in place (not atomically) that is caught half-written fails as a
/// candidate and is retried when its last write arrives.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// The wait after repeated failures: 500 ms doubling up to 30 s.
const BACKOFF: Backoff = Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(30) };

/// Starts watching; reloads run on a task of `tasks` until they stop.
/// Both folders are resolved to absolute paths (their parent folders
/// canonical) here, whatever the caller passes, and events are matched
/// against those: notify reports absolute paths.
pub fn start(
    tasks: &Tasks,
    gateway: Gateway,
    config_path: PathBuf,
    plugin_dir: Option<PathBuf>,
) -> Result<(), WatchError> {
    let watched = Watched::new(&config_path, plugin_dir.as_deref());
    let mut folders = vec![watched.config_dir.clone()];
    folders.extend(watched.plugin_dir.clone());
    let config_path = paths::config_file(&config_path);
    match std::fs::read_to_string(&config_path) {
        Ok(text) => gateway.remember_started_config(text),
        Err(e) => tracing::warn!(
            config = %config_path.display(),
            error = %e,
            "cannot read the config file again: changes that need a restart will not be reported"
        ),
    }
    tracing::debug!(config = %config_path.display(), plugins = ?watched.plugin_dir, "watching for policy changes");
    let watch = files::watch_folders(&folders, DEBOUNCE, move |event| {
        !matches!(event.kind, EventKind::Access(_)) && event.paths.iter().any(|p| watched.relevant(p))
    })?;
    tasks.spawn("policy reload", run(gateway, config_path, watch));
    Ok(())
}

/// What the watch reacts to: the config file, components and cases files in
/// the plugin folder, and Kubernetes `..data` swaps in either folder.
#[derive(Debug, Clone)]
struct Watched {
    config_dir: PathBuf,
    config_name: std::ffi::OsString,
    plugin_dir: Option<PathBuf>,
}

impl Watched {
    fn new(config_path: &Path, plugin_dir: Option<&Path>) -> Self {
        let config_path = paths::config_file(config_path);
        let config_dir = config_path.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("/"));
        let config_name = config_path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let plugin_dir = plugin_dir.map(|d| paths::anchor(&config_dir, d));
        Self { config_dir, config_name, plugin_dir }
    }

    /// Whether a change at `path` can change the policy. Anything else in
    /// those folders (a log file, an editor's swap file, a temporary file
    /// starting with `.`) is ignored.
    fn relevant(&self, path: &Path) -> bool {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return false };
        let in_config = same_dir(parent, &self.config_dir);
        let in_plugins = self.plugin_dir.as_deref().is_some_and(|d| same_dir(parent, d));
        let name_text = name.to_string_lossy();
        if name_text.starts_with("..") {
            return in_config || in_plugins;
        }
        if in_config && name == self.config_name {
            return true;
        }
        in_plugins
            && (name_text.ends_with(".wasm") || name_text.ends_with(".cases.yaml"))
            && !name_text.starts_with('.')
    }
}

/// The same folder, written the same way or resolving to the same one.
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

async fn run(gateway: Gateway, config_path: PathBuf, mut changes: FolderWatch) {
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
            // Debounced: editors and ConfigMap updates write several events.
            changed = changes.changed() => if !changed { return },
            _ = hangup => tracing::info!("SIGHUP: reloading policy"),
        }
        let retry = BACKOFF.delay(failures.saturating_add(1));
        match reload_logged(&gateway, &config_path, Some(retry)).await {
            Ok(_) => {
                failures = 0;
                metrics::reload("success");
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                metrics::reload("failure");
                // Changes made meanwhile stay queued and are handled next.
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// Reads the config file and reloads the policy from it; the error says why
/// a candidate was rejected. Logs `policy reloaded` with what changed
/// (component, old and new SHA-256) or `policy reload rejected` with what
/// keeps serving.
pub async fn reload(gateway: &Gateway, config_path: &Path) -> Result<u64, String> {
    reload_logged(gateway, config_path, None).await
}

async fn reload_logged(gateway: &Gateway, config_path: &Path, retry: Option<Duration>) -> Result<u64, String> {
    let before = gateway.policy();
    let result = match Config::load(config_path) {
        Err(e) => {
            let reason = e.to_string();
            gateway.note_reload_error(&reason, true);
            Err(reason)
        }
        Ok(cfg) => {
            // What the policy reload below cannot apply is said, never dropped.
            check_restart_required(gateway, config_path);
            match gateway.reload_policy(&cfg).await {
                Ok(generation) => Ok(generation),
                Err(e) => {
                    let reason = explain(&e, &cfg, &before);
                    if reason != e.to_string() {
                        gateway.note_reload_error(&reason, false);
                    }
                    Err(reason)
                }
            }
        }
    };
    match &result {
        Ok(generation) => {
            let after = gateway.policy();
            let changes = changes(&before, &after);
            tracing::info!(generation, changes = changes.join("; ").as_str(), "policy reloaded");
        }
        Err(reason) => {
            let kept = serving(&before);
            let retry_after_ms = retry.map(|r| r.as_millis() as u64);
            tracing::error!(
                reason = reason.as_str(),
                generation = before.generation(),
                kept = kept.join("; ").as_str(),
                retry_after_ms,
                "policy reload rejected; the previous policy keeps serving"
            );
        }
    }
    result
}

/// Compares the config file with the one the gateway started with, and
/// records the keys only a restart applies in the reload status: a warning
/// `restart required: <keys>` when there are any, a note when the file
/// matches again.
fn check_restart_required(gateway: &Gateway, config_path: &Path) {
    let Some(started) = gateway.started_config() else { return };
    let now = match std::fs::read_to_string(config_path) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the config file to compare it with the running one");
            return;
        }
    };
    let keys = restart_required(started, &now);
    let before = gateway.reload_status().restart_required;
    if !keys.is_empty() {
        let joined = keys.join(", ");
        tracing::warn!(
            keys = joined.as_str(),
            "restart required: {joined} (changed in the config file; a reload applies only the policy, so these \
             keep the values the gateway started with until it is restarted)"
        );
    } else if !before.is_empty() {
        tracing::info!(
            before = before.join(", ").as_str(),
            "restart no longer required: the config file matches the running config again"
        );
    }
    gateway.note_restart_required(keys);
}

/// The keys of the config text `now` that differ from `started` and that a
/// reload does not apply, in the file's order: top-level keys, nested ones
/// where both sides are maps (`server.http1.max_headers`), and routes and
/// identity providers by name (`routes[api].timeout_ms`) while the list of
/// names is the same; `routes` itself when routes were added, removed or
/// reordered. What reload applies is left out ([`applied_by_reload`]). A
/// missing key, `null` and `{}` are the same; anything else is compared as
/// written, so writing out a default counts as a change. Text that is not
/// YAML gives nothing (the loader refuses it before this is asked).
pub fn restart_required(started: &str, now: &str) -> Vec<String> {
    let parse = |text: &str| {
        let mut v: serde_norway::Value = serde_norway::from_str(text).ok()?;
        let _ = v.apply_merge();
        Some(v)
    };
    let (Some(a), Some(b)) = (parse(started), parse(now)) else { return Vec::new() };
    let mut out = Vec::new();
    diff("", Some(&a), Some(&b), &mut out);
    out
}

/// Whether a reload applies the key at `path` (list entries written
/// `[name]`): the policy bindings, wherever they are.
fn applied_by_reload(path: &str) -> bool {
    let generic: String = {
        let mut g = String::with_capacity(path.len());
        let mut depth = 0;
        for c in path.chars() {
            match c {
                '[' => {
                    depth += 1;
                    g.push('[');
                }
                ']' => {
                    depth -= 1;
                    g.push(']');
                }
                _ if depth > 0 => {}
                c => g.push(c),
            }
        }
        g
    };
    matches!(
        generic.as_str(),
        "policy" | "routes[].classifier" | "auth.providers[].claims_mapper" | "auth.providers[].tenants"
    )
}

/// The lists whose entries are named, compared entry by entry.
const NAMED_LISTS: [&str; 2] = ["routes", "auth.providers"];

fn diff(path: &str, a: Option<&serde_norway::Value>, b: Option<&serde_norway::Value>, out: &mut Vec<String>) {
    use serde_norway::Value;
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Mapping(m)) => m.is_empty(),
        _ => false,
    };
    if (empty(a) && empty(b)) || a == b || applied_by_reload(path) {
        return;
    }
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    let as_map = |v: Option<&Value>| match v {
        Some(Value::Mapping(m)) => Some(m.clone()),
        None | Some(Value::Null) => Some(serde_norway::Mapping::new()),
        _ => None,
    };
    match (as_map(a), as_map(b)) {
        // A section added or removed is named, not each key in it.
        (Some(x), Some(y)) if path.is_empty() || (!x.is_empty() && !y.is_empty()) => {
            let mut keys: Vec<&Value> = y.keys().collect();
            keys.extend(x.keys().filter(|k| !y.contains_key(*k)));
            for key in keys {
                let name = match key {
                    Value::String(s) => s.clone(),
                    other => serde_norway::to_string(other).unwrap_or_default().trim().to_owned(),
                };
                diff(&join(&name), x.get(key), y.get(key), out);
            }
        }
        _ => match (a, b) {
            (Some(Value::Sequence(x)), Some(Value::Sequence(y))) if NAMED_LISTS.contains(&path) => {
                let names = |list: &[Value]| -> Option<Vec<String>> {
                    list.iter().map(|e| e.get("name").and_then(Value::as_str).map(str::to_owned)).collect()
                };
                match (names(x), names(y)) {
                    (Some(nx), Some(ny)) if nx == ny => {
                        for ((ex, ey), name) in x.iter().zip(y).zip(&ny) {
                            diff(&format!("{path}[{name}]"), Some(ex), Some(ey), out);
                        }
                    }
                    _ => out.push(path.to_owned()),
                }
            }
            _ => out.push(path.to_owned()),
        },
    }
}

/// What differs between two policy sets, one entry per component: added,
/// removed, replaced (old and new SHA-256), or re-checked against a new
/// cases file; or that only bindings or settings changed.
fn changes(before: &PolicySet, after: &PolicySet) -> Vec<String> {
    let mut out = Vec::new();
    for a in after.plugins() {
        match before.plugins().iter().find(|b| b.source == a.source) {
            None => out.push(format!("added {} (sha256 {})", a.source, a.plugin.sha256())),
            Some(b) if b.plugin.sha256() != a.plugin.sha256() => {
                out.push(format!("{}: sha256 {} -> {}", a.source, b.plugin.sha256(), a.plugin.sha256()))
            }
            Some(b) if !Arc::ptr_eq(&b.plugin, &a.plugin) => out.push(format!(
                "{}: sha256 {} unchanged, checked against a new cases file ({} cases)",
                a.source,
                a.plugin.sha256(),
                a.golden_cases
            )),
            Some(_) => {}
        }
    }
    for b in before.plugins() {
        if !after.plugins().iter().any(|a| a.source == b.source) {
            out.push(format!("removed {} (sha256 {})", b.source, b.plugin.sha256()));
        }
    }
    if out.is_empty() {
        out.push("no component changed (config: bindings or settings)".to_owned());
    }
    out
}

/// The components of the serving set, for a rejection's log line.
fn serving(set: &PolicySet) -> Vec<String> {
    set.plugins().iter().map(|l| format!("{} (sha256 {})", l.source, l.plugin.sha256())).collect()
}

/// The rejection's reason; a golden-case failure of a component whose
/// `NAME.wasm` and `NAME.cases.yaml` did not change together says so,
/// with how far apart they were replaced.
fn explain(e: &StartError, cfg: &Config, serving: &PolicySet) -> String {
    let reason = e.to_string();
    let StartError::Plugin(LoadError::GoldenCase { name, .. }) = e else { return reason };
    let Some(component) = component_file(cfg, serving, name) else { return reason };
    let serving_sha = serving
        .plugins()
        .iter()
        .find(|l| l.plugin.name() == name.as_str() && !l.source.starts_with("builtin:"))
        .map(|l| l.plugin.sha256().to_owned());
    match pair_mismatch(&component, serving_sha.as_deref()) {
        Some(why) => format!("{reason}; {why}"),
        None => reason,
    }
}

/// Why a component file and the cases file beside it, one of which fails
/// the other, look like a pair replaced at different times: which of the
/// two is new (the component's SHA-256 against the serving one's), and how
/// far apart they were replaced; with what to do about it.
fn pair_mismatch(component: &Path, serving_sha: Option<&str>) -> Option<String> {
    let cases = crate::plugins::cases_path_for(component);
    let sha = std::fs::read(component).ok().map(|b| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&b))
    })?;
    let (wasm, yaml) = (display_name(component), display_name(&cases));
    let which = match serving_sha {
        Some(old) if old == sha => format!("{wasm} is the serving version (sha256 {old}) and {yaml} is new"),
        _ => format!("{wasm} is new (sha256 {sha}){}", apart(component, &cases)),
    };
    Some(format!(
        "{wasm} and {yaml} do not match: {which}. To replace both, rename {yaml} and {wasm} into place within {} \
         ms of each other, or swap the folder at once (a `..data` swap); the previous pair keeps serving and the \
         complete pair is taken on the next attempt",
        DEBOUNCE.as_millis()
    ))
}

/// The component file the config names for component `name`.
fn component_file(cfg: &Config, serving: &PolicySet, name: &str) -> Option<PathBuf> {
    let source = serving
        .plugins()
        .iter()
        .find(|l| l.plugin.name() == name && !l.source.starts_with("builtin:"))
        .map(|l| l.source.clone())
        .or_else(|| {
            let dir = cfg.plugins.dir.as_deref()?;
            let file = dir.join(format!("{name}.wasm"));
            file.exists().then(|| file.display().to_string())
        })?;
    let path = Path::new(&source);
    Some(match cfg.plugins.dir.as_deref() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_owned(),
    })
}

fn display_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// ", replaced N ms after/before NAME.cases.yaml", from the files' change
/// times (a rename sets them), when both exist.
fn apart(component: &Path, cases: &Path) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let ctime =
        |p: &Path| std::fs::metadata(p).ok().map(|m| m.ctime() as i128 * 1_000 + m.ctime_nsec() as i128 / 1_000_000);
    match (ctime(component), ctime(cases)) {
        (Some(c), Some(k)) if c >= k => format!(", replaced {} ms after {}", c - k, display_name(cases)),
        (Some(c), Some(k)) => format!(", replaced {} ms before {}", k - c, display_name(cases)),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
