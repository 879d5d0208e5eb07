//! Where the paths in a config file point.
//!
//! Every relative path in the file is taken relative to the file's folder
//! and made absolute once, when the file is loaded, so the gateway never
//! depends on its working directory and the folder watches compare event
//! paths with the same absolute paths they watch (notify reports absolute
//! paths). The folders leading to a path are resolved through symlinks
//! (canonical); the last component is kept as written, because in a
//! Kubernetes volume it is often a symlink the kubelet swaps
//! (`gateway.yaml -> ..data/gateway.yaml`, `plugins -> ..data/plugins`), and
//! pinning its current target would read a deleted folder after the next
//! update.

use std::path::{Component, Path, PathBuf};

use super::{Config, SecretSource};

/// The config file as the gateway keeps it: its folder absolute and
/// canonical, its name as given (it may be a symlink that is swapped).
pub fn config_file(path: &Path) -> PathBuf {
    absolute(path)
}

/// `p` made absolute against the working directory, as [`anchor`] does.
pub fn absolute(p: &Path) -> PathBuf {
    anchor(&cwd(), p)
}

/// The folder relative paths in the config file at `path` are resolved
/// against: the file's folder, absolute and canonical when it exists.
pub fn base_dir(path: &Path) -> PathBuf {
    let file = config_file(path);
    file.parent().map(Path::to_owned).unwrap_or_else(cwd)
}

/// `p` made absolute against `base` (when relative), with every folder
/// leading to it resolved through symlinks when it exists and the last
/// component kept as written. A path ending in `..` is resolved whole.
pub fn anchor(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() { p.to_owned() } else { base.join(p) };
    let joined = std::path::absolute(&joined).unwrap_or(joined);
    if matches!(joined.components().next_back(), Some(Component::ParentDir)) {
        return canonical(&joined);
    }
    match (joined.parent(), joined.file_name()) {
        (Some(parent), Some(name)) => canonical(parent).join(name),
        _ => canonical(&joined),
    }
}

/// `p` resolved through symlinks as far as it exists, the rest lexically.
fn canonical(p: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut existing = p;
    loop {
        if let Ok(c) = std::fs::canonicalize(existing) {
            let mut out = c;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    other => out.push(other),
                }
            }
            return out;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return normalize(p),
        }
    }
}

/// Resolves every path of `cfg` against `base` (the config file's folder):
/// TLS files, secrets read from files, the gateway-token key folder and
/// revocation file, the plugin folder (the config file's folder when
/// unset, so relative component paths never depend on the working
/// directory), the precompile cache and driver sockets.
pub(super) fn resolve(cfg: &mut Config, base: &Path) {
    let at = |p: &mut PathBuf| *p = anchor(base, p);
    if let Some(tls) = cfg.tls.as_mut() {
        at(&mut tls.cert);
        at(&mut tls.key);
    }
    if let Some(s) = cfg.auth.sandbox_secret.as_mut() {
        secret(base, s);
    }
    if let Some(g) = cfg.auth.gateway_tokens.as_mut() {
        for p in [&mut g.keys_dir, &mut g.revoked_file].into_iter().flatten() {
            at(p);
        }
        for s in g.keys.values_mut() {
            secret(base, s);
        }
    }
    match cfg.plugins.dir.as_mut() {
        Some(d) => at(d),
        None => cfg.plugins.dir = Some(base.to_owned()),
    }
    if let Some(d) = cfg.plugins.cache_dir.as_mut() {
        at(d);
    }
    let drivers = &mut cfg.drivers;
    for d in drivers.credentials.iter_mut().chain(drivers.upstreams.values_mut()) {
        at(&mut d.socket);
    }
    decision_log(cfg, base);
}

/// The decision-log file and the secrets of `decision_log:`.
fn decision_log(cfg: &mut Config, base: &Path) {
    let log = &mut cfg.decision_log;
    if let super::SinkConfig::File(f) = &mut log.sink {
        f.path = anchor(base, &f.path);
    }
    if let super::SinkConfig::Http(h) = &mut log.sink
        && let Some(t) = h.bearer_token.as_mut()
    {
        secret(base, t);
    }
    if let Some(k) = log.hash_key.as_mut() {
        secret(base, k);
    }
}

fn secret(base: &Path, s: &mut SecretSource) {
    if let SecretSource::File(p) = s {
        *p = anchor(base, p);
    }
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
}

/// `.` and `..` removed lexically, for paths that do not exist (yet).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_absolute_under_the_canonical_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = std::fs::canonicalize(dir.path()).expect("canonical");
        std::fs::create_dir(real.join("etc")).expect("mkdir");
        std::os::unix::fs::symlink(real.join("etc"), real.join("link")).expect("symlink");
        let base = real.join("link");
        assert_eq!(anchor(&base, Path::new("plugins")), real.join("etc/plugins"), "the folder is canonical");
        assert_eq!(anchor(&base, Path::new("./plugins/")), real.join("etc/plugins"));
        assert_eq!(anchor(&base, Path::new("../etc/x")), real.join("etc/x"));
        assert_eq!(anchor(&base, Path::new("/abs/none/x")), Path::new("/abs/none/x"), "absolute, not existing");
        assert_eq!(anchor(&base, Path::new("a/../b")), real.join("etc/b"), "lexically, when a/ does not exist");
        assert_eq!(anchor(&base, Path::new("..")), real, "a path ending in .. is resolved whole");
        // The last component is kept even when it is a symlink (a ..data swap replaces its target).
        assert_eq!(anchor(&real, Path::new("link")), real.join("link"));
    }

    #[test]
    fn a_config_file_named_without_a_folder_lives_in_the_working_directory() {
        let cwd = std::fs::canonicalize(std::env::current_dir().expect("cwd")).expect("canonical");
        assert_eq!(config_file(Path::new("gateway.yaml")), cwd.join("gateway.yaml"));
        assert_eq!(config_file(Path::new("./gateway.yaml")), cwd.join("gateway.yaml"));
        assert_eq!(base_dir(Path::new("gateway.yaml")), cwd);
    }

    #[test]
    fn every_path_of_a_config_is_resolved() {
        let yaml = r#"
tls: { cert: tls/cert.pem, key: /abs/key.pem }
auth:
  sandbox_secret: { file: secrets/sandbox }
  gateway_tokens:
    keys_dir: keys
    revoked_file: revoked/list
plugins: { cache_dir: cache }
drivers:
  credentials: { socket: run/creds.sock }
  upstreams:
    sandbox: { socket: run/sandbox.sock }
"#;
        let mut cfg = Config::from_yaml(yaml).expect("valid");
        let base = Path::new("/srv/gw");
        resolve(&mut cfg, base);
        let tls = cfg.tls.as_ref().expect("tls");
        assert_eq!(
            (tls.cert.as_path(), tls.key.as_path()),
            (Path::new("/srv/gw/tls/cert.pem"), Path::new("/abs/key.pem"))
        );
        assert!(
            matches!(&cfg.auth.sandbox_secret, Some(SecretSource::File(p)) if p == Path::new("/srv/gw/secrets/sandbox"))
        );
        let g = cfg.auth.gateway_tokens.as_ref().expect("gateway tokens");
        assert_eq!(g.keys_dir.as_deref(), Some(Path::new("/srv/gw/keys")));
        assert_eq!(g.revoked_file.as_deref(), Some(Path::new("/srv/gw/revoked/list")));
        assert_eq!(cfg.plugins.dir.as_deref(), Some(base), "relative components resolve against the config's folder");
        assert_eq!(cfg.plugins.cache_dir.as_deref(), Some(Path::new("/srv/gw/cache")));
        let d = &cfg.drivers;
        assert_eq!(d.credentials.as_ref().map(|c| c.socket.as_path()), Some(Path::new("/srv/gw/run/creds.sock")));
        assert_eq!(d.upstreams["sandbox"].socket, Path::new("/srv/gw/run/sandbox.sock"));
    }
}
