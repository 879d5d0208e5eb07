//! The first hour of an operator and a plugin author, through the real
//! binary:
//! - a gateway started from its own folder with a relative `--config` and a
//!   relative `plugins.dir` swaps a component, a golden-cases file and a
//!   Kubernetes `..data` layout live, and a config file that is itself a
//!   `..data` symlink keeps reloading across ConfigMap-style swaps;
//! - `wasmgate keys rotate` starts a key folder, and errors say once what
//!   failed and what to run;
//! - the "Run it in a gateway" recipe of `docs/plugins.md`, read from the
//!   doc itself (by its `<!-- … -->` markers), with the authorizer built from
//!   the doc's own source, allows, denies and swaps live.

use std::future::Future;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, Env, free_port, start_in_dir};

fn http() -> reqwest::Client {
    reqwest::Client::builder().http1_only().build().expect("client")
}

/// Writes `dir/name` the way an operator or a ConfigMap does: beside, then
/// renamed over.
fn put(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

fn rbac_bytes() -> Vec<u8> {
    wasmgate::plugins::builtin_bytes("rbac-authorizer").expect("embedded").to_vec()
}

/// Allows everything but its misbehaviour paths.
fn allow_all_bytes() -> Vec<u8> {
    std::fs::read(support::fixture("misbehaving_authorizer")).expect("fixture")
}

async fn put_config(env: &Env, c: &reqwest::Client, token: &str) -> u16 {
    c.put(env.url("/v1/config"))
        .bearer_auth(token)
        .json(&serde_json::json!({"max_sandboxes": 7, "default_image": "x"}))
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

async fn admin_status(c: &reqwest::Client, admin: std::net::SocketAddr) -> Value {
    c.get(format!("http://{admin}/admin/plugins")).send().await.expect("admin").json().await.expect("json")
}

/// Polls `check` every 20 ms for up to `secs` seconds.
async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The demo config with an admin listener, `plugins: {dir: plugins}` (as
/// written: relative) and the authorizer bound to `plugins/authz.wasm`.
fn relative_plugins(yaml: String, admin: std::net::SocketAddr) -> String {
    yaml.replacen("policy:", &format!("admin: {{ listen: \"{admin}\" }}\nplugins:\n  dir: plugins\npolicy:"), 1)
        .replace("plugin: builtin:rbac-authorizer", "plugin: authz.wasm")
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
}

/// A Kubernetes atomic-writer update of `dir`: a complete new `..NAME`
/// folder with `files`, one rename of `..data` onto it, the old folder
/// removed.
fn data_swap(dir: &Path, name: &str, files: &[(&str, &[u8])]) {
    let new = dir.join(name);
    std::fs::create_dir(&new).expect("mkdir");
    for (file, bytes) in files {
        std::fs::write(new.join(file), bytes).expect("write");
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    symlink(name, &dir.join("..data_tmp"));
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("atomic swap");
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).expect("remove the old version");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_config_swaps_components_cases_and_data_layouts_live() {
    let admin = free_port();
    let env = start_in_dir(
        "gateway.yaml",
        |y| relative_plugins(y, admin),
        |dir, _| {
            std::fs::create_dir(dir.join("plugins")).expect("mkdir");
            put(&dir.join("plugins"), "authz.wasm", &rbac_bytes());
        },
    )
    .await;
    let plugins = env.dir().join("plugins");
    let (c, user) = (http(), env.user());
    assert_eq!(put_config(&env, &c, &user).await, 403, "rbac: a user may not call an admin method");

    // A component renamed into the relative folder serves the next call.
    put(&plugins, "authz.wasm", &allow_all_bytes());
    let live = eventually(10, || async { put_config(&env, &c, &user).await == 200 }).await;
    assert!(live, "the swap was not seen; log:\n{}", env.logs());
    let logs = env.logs();
    assert!(logs.contains("policy reloaded") && logs.contains("authz.wasm: sha256 "), "{logs}");

    // An invalid one is noticed by the watch alone and rejected with its reason.
    put(&plugins, "authz.wasm", b"not a component");
    let rejected = eventually(10, || async {
        admin_status(&c, admin).await["reload"]["consecutive_failures"].as_u64() >= Some(1)
    })
    .await;
    assert!(rejected, "an invalid component was not noticed; log:\n{}", env.logs());
    let status = admin_status(&c, admin).await;
    assert!(status["reload"]["last_error"].as_str().is_some_and(|e| e.contains("authz")), "{status}");
    assert_eq!(put_config(&env, &c, &user).await, 200, "the last good component keeps serving");
    assert!(env.logs().contains("kept=\"authz.wasm (sha256 "), "a rejection says what it kept; {}", env.logs());
    put(&plugins, "authz.wasm", &allow_all_bytes());
    let recovered = eventually(10, || async {
        admin_status(&c, admin).await["reload"]["consecutive_failures"].as_u64() == Some(0)
    })
    .await;
    assert!(recovered, "{}", env.logs());

    // A cases file the serving component fails is rejected, and says the pair does not match.
    let cases = "cases:\n  - name: users may not change the config\n    authorize:\n      call: { path: /v1/config, http-method: PUT }\n      authentication: { kind: oidc-token, source: authorization-header, provider: dev, principal: { subject: bob, roles: [user] } }\n    expect: deny\n";
    put(&plugins, "authz.cases.yaml", cases.as_bytes());
    let rejected = eventually(10, || async {
        let status = admin_status(&c, admin).await;
        status["reload"]["last_error"].as_str().is_some_and(|e| e.contains("users may not change the config"))
    })
    .await;
    assert!(rejected, "a failing cases file was not noticed; log:\n{}", env.logs());
    let status = admin_status(&c, admin).await;
    let error = status["reload"]["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("authz.wasm and authz.cases.yaml do not match")
            && error.contains("authz.wasm is the serving version"),
        "{error}"
    );
    assert_eq!(put_config(&env, &c, &user).await, 200);
    // One it passes is taken.
    put(&plugins, "authz.cases.yaml", cases.replace("expect: deny", "expect: allow").as_bytes());
    let taken = eventually(10, || async {
        let status = admin_status(&c, admin).await;
        let authz = status["plugins"].as_array().and_then(|v| v.iter().find(|p| p["name"] == "authz").cloned());
        authz.is_some_and(|p| p["golden_cases"] == 1)
    })
    .await;
    assert!(taken, "a passing cases file was not taken; log:\n{}", env.logs());
    assert!(env.logs().contains("checked against a new cases file"), "{}", env.logs());
    std::fs::remove_file(plugins.join("authz.cases.yaml")).expect("rm");

    // The same relative folder turned into a `..data` layout, then updated by one `..data` swap.
    data_swap(&plugins, "..v1", &[("authz.wasm", &rbac_bytes())]);
    symlink("..data/authz.wasm", &plugins.join(".authz.link"));
    std::fs::rename(plugins.join(".authz.link"), plugins.join("authz.wasm")).expect("rename");
    let live = eventually(10, || async { put_config(&env, &c, &user).await == 403 }).await;
    assert!(live, "the ..data layout was not picked up; log:\n{}", env.logs());
    data_swap(&plugins, "..v2", &[("authz.wasm", &allow_all_bytes())]);
    let live = eventually(10, || async { put_config(&env, &c, &user).await == 200 }).await;
    assert!(live, "the ..data swap was not picked up; log:\n{}", env.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_config_that_is_a_data_symlink_reloads_across_configmap_updates() {
    let admin = free_port();
    let env = start_in_dir(
        "gateway.yaml",
        |y| relative_plugins(y, admin),
        |dir, yaml| {
            std::fs::create_dir(dir.join("plugins")).expect("mkdir");
            put(&dir.join("plugins"), "authz.wasm", &rbac_bytes());
            put(&dir.join("plugins"), "allow.wasm", &allow_all_bytes());
            // gateway.yaml -> ..data/gateway.yaml, as a mounted ConfigMap.
            data_swap(dir, "..c1", &[("gateway.yaml", yaml.as_bytes())]);
            symlink("..data/gateway.yaml", &dir.join("gateway.yaml"));
        },
    )
    .await;
    let yaml = std::fs::read_to_string(env.dir().join("gateway.yaml")).expect("config");
    let (c, user) = (http(), env.user());
    assert_eq!(put_config(&env, &c, &user).await, 403);

    let allow = yaml.replace("plugin: authz.wasm", "plugin: allow.wasm");
    data_swap(env.dir(), "..c2", &[("gateway.yaml", allow.as_bytes())]);
    let live = eventually(10, || async { put_config(&env, &c, &user).await == 200 }).await;
    assert!(live, "the config update was not picked up; log:\n{}", env.logs());
    // The watch survived the first update.
    data_swap(env.dir(), "..c3", &[("gateway.yaml", yaml.as_bytes())]);
    let live = eventually(10, || async { put_config(&env, &c, &user).await == 403 }).await;
    assert!(live, "the second config update was not picked up; log:\n{}", env.logs());
    let status = admin_status(&c, admin).await;
    assert_eq!(status["reload"]["consecutive_failures"], 0, "{status}");
}

/// Runs the binary in `dir`; (success, stdout, stderr).
fn wasmgate(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(support::bin()).args(args).current_dir(dir).output().expect("run wasmgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn keys_rotate_starts_a_key_folder_and_errors_say_once_what_failed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();

    // A missing folder: created 0700 with v1 and active, 0600.
    let (ok, out, err) = wasmgate(d, &["keys", "rotate", "--keys-dir", "keys"]);
    assert!(ok, "{err}");
    assert_eq!(out, "v1\n");
    assert!(err.contains("created the key folder keys") && err.contains("wasmgate token mint"), "{err}");
    let keys = d.join("keys");
    assert_eq!((mode(&keys), mode(&keys.join("v1")), mode(&keys.join("active"))), (0o700, 0o600, 0o600));
    assert_eq!(std::fs::read_to_string(keys.join("active")).expect("active"), "v1\n");

    // Tokens from it, through a relative config; then the next version.
    std::fs::write(d.join("gateway.yaml"), "auth:\n  gateway_tokens:\n    keys_dir: keys\n").expect("write");
    let (ok, token, err) = wasmgate(d, &["token", "mint", "--config", "gateway.yaml", "--subject", "alice"]);
    assert!(ok && token.split('.').count() == 3, "{err}");
    assert!(err.contains("kid=v1"), "{err}");
    let (ok, out, err) = wasmgate(d, &["keys", "rotate", "--config", "gateway.yaml"]);
    assert!(ok && out == "v2\n", "{out} {err}");
    assert!(err.contains("v1 still verifies"), "{err}");

    // An empty folder gets its first key too.
    std::fs::create_dir(d.join("empty")).expect("mkdir");
    let (ok, out, err) = wasmgate(d, &["keys", "rotate", "--keys-dir", "empty"]);
    assert!(ok && out == "v1\n", "{err}");

    // Errors: what failed, once, and what to run.
    let (ok, _, err) = wasmgate(d, &["keys", "retire", "--keys-dir", "missing", "v1"]);
    assert!(!ok);
    assert!(err.starts_with("error: missing"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "said once: {err}");
    std::fs::create_dir(d.join("half")).expect("mkdir");
    std::fs::write(d.join("half/v1"), "0123456789abcdef0123456789abcdef").expect("write");
    let (ok, _, err) = wasmgate(d, &["keys", "rotate", "--keys-dir", "half"]);
    assert!(!ok);
    assert!(err.contains("\"active\"") && err.contains("wasmgate keys rotate --keys-dir"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "said once: {err}");
    std::fs::write(d.join("nokeys.yaml"), "listen: 127.0.0.1:0\nauth:\n  gateway_tokens:\n    keys_dir: nokeys\n")
        .expect("write");
    for args in
        [&["serve", "--config", "nokeys.yaml"][..], &["token", "mint", "--config", "nokeys.yaml", "--subject", "a"][..]]
    {
        let (ok, _, err) = wasmgate(d, args);
        assert!(!ok);
        assert!(err.contains("does not exist") && err.contains("wasmgate keys rotate --config nokeys.yaml"), "{err}");
    }
}

// ---- the "Run it in a gateway" recipe of docs/plugins.md ------------------

const PLUGINS_MD: &str = include_str!("../../docs/plugins.md");

/// The fenced block right after `<!-- MARKER -->` in docs/plugins.md.
fn doc_block(marker: &str) -> String {
    let tag = format!("<!-- {marker} -->");
    let at = PLUGINS_MD.find(&tag).unwrap_or_else(|| panic!("docs/plugins.md has no {tag}"));
    let rest = &PLUGINS_MD[at + tag.len()..];
    let fence = rest.find("```").expect("a fenced block after the marker");
    let body = fence + rest[fence..].find('\n').expect("the fence's line") + 1;
    let end = body + rest[body..].find("\n```").expect("the closing fence");
    format!("{}\n", &rest[body..end])
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ is in the repository").to_owned()
}

/// `target/first-hour`: crates built here are kept between runs, so cargo
/// rebuilds only what changed.
fn work_root() -> PathBuf {
    let target = Path::new(support::bin()).ancestors().nth(2).expect("target folder").to_owned();
    let dir = target.join("first-hour");
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// Writes `text` unless the file already holds it (cargo goes by mtimes).
fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
}

/// A plugin crate `root/NAME` from the doc's Cargo.toml and `lib_rs`, with
/// the wasmgate checkout at `root/wasmgate` (the doc's `../wasmgate`).
fn plugin_crate(root: &Path, name: &str, lib_rs: &str) -> PathBuf {
    let checkout = root.join("wasmgate");
    if checkout.symlink_metadata().is_err() {
        std::os::unix::fs::symlink(repo_root(), &checkout).expect("link the checkout");
    }
    let dir = root.join(name);
    write_if_changed(&dir.join("Cargo.toml"), &doc_block("first-hour: Cargo.toml"));
    write_if_changed(&dir.join("src/lib.rs"), lib_rs);
    // The versions the SDK is built with here, so no registry is needed.
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(repo_root().join("plugins/Cargo.lock"), dir.join("Cargo.lock")).expect("lock file");
    }
    dir
}

/// A shell-like word list: `'…'`, `"…"` (with `$NAME` expanded), bare words
/// (`$NAME` expanded); a word starting with `#` ends the line (the rest is
/// returned as the comment).
fn words(line: &str, vars: &std::collections::HashMap<String, String>) -> (Vec<String>, String) {
    let expand = |s: &str| {
        let mut out = s.to_owned();
        for (k, v) in vars {
            out = out.replace(&format!("${k}"), v);
        }
        out
    };
    let (mut out, mut cur, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '#' if !in_word => return (out, chars.collect::<String>().trim().to_owned()),
            ' ' | '\t' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                let mut quoted = String::new();
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    quoted.push(c);
                }
                cur.push_str(&expand(&quoted));
            }
            '$' => {
                in_word = true;
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_') {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
                cur.push_str(vars.get(&name).unwrap_or_else(|| panic!("${name} is not set")));
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    (out, String::new())
}

/// Runs the recipe's commands the way a shell would, for the commands the
/// recipe uses; any other command fails the test, so the doc cannot drift
/// into something this test does not run.
struct Shell {
    cwd: PathBuf,
    vars: std::collections::HashMap<String, String>,
    /// Text of the doc → what it means here (ports, socket paths).
    substitutions: Vec<(String, String)>,
    children: Vec<Child>,
    client: reqwest::Client,
}

impl Drop for Shell {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Shell {
    fn substitute(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (from, to) in &self.substitutions {
            out = out.replace(from, to);
        }
        out
    }

    fn path(&self, p: &str) -> PathBuf {
        self.cwd.join(p)
    }

    /// Runs every line of `block`; curl lines must answer the status in
    /// their comment, within `patience` (a swap is live a little later).
    async fn run(&mut self, block: &str, patience: Duration) {
        let block = self.substitute(block);
        for line in block.lines() {
            for command in line.split(" && ") {
                self.command(command.trim(), patience).await;
            }
        }
    }

    async fn command(&mut self, line: &str, patience: Duration) {
        let (capture, line) = match line.split_once("=$(") {
            Some((name, rest)) if name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') => {
                (Some(name.to_owned()), rest.strip_suffix(')').expect("a $( … ) capture").to_owned())
            }
            _ => (None, line.to_owned()),
        };
        let (mut w, comment) = words(&line, &self.vars);
        if w.is_empty() {
            return;
        }
        let background = w.last().is_some_and(|l| l == "&");
        if background {
            w.pop();
        }
        let mut stderr_to = None;
        if let Some(i) = w.iter().position(|x| x == "2>") {
            stderr_to = Some(self.path(&w[i + 1]));
            w.drain(i..i + 2);
        }
        let args: Vec<&str> = w.iter().skip(1).map(String::as_str).collect();
        match (w[0].as_str(), args.as_slice()) {
            ("mkdir", ["-p", dirs @ ..]) => {
                for d in dirs {
                    std::fs::create_dir_all(self.path(d)).expect("mkdir");
                }
            }
            ("cd", [d]) => self.cwd = self.path(d),
            ("cp", [from, to]) => {
                let (from, mut to) = (self.path(from), self.path(to));
                if to.is_dir() {
                    to = to.join(from.file_name().expect("a file"));
                }
                std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("cp {}: {e}", from.display()));
            }
            ("mv", [from, to]) => std::fs::rename(self.path(from), self.path(to)).expect("mv"),
            ("sandbox-driver", ["--socket", socket]) => {
                assert!(background, "the driver runs in the background");
                let listener = sandbox_driver::bind(Path::new(socket)).expect("bind the driver");
                tokio::spawn(async move {
                    let _ = sandbox_driver::serve(listener, std::future::pending()).await;
                });
            }
            ("wasmgate", args) if background => {
                let stderr = match &stderr_to {
                    Some(f) => Stdio::from(std::fs::File::create(f).expect("log file")),
                    None => Stdio::null(),
                };
                let child = Command::new(support::bin())
                    .args(args)
                    .current_dir(&self.cwd)
                    .env("WASMGATE_LOG", "info")
                    .stdout(Stdio::null())
                    .stderr(stderr)
                    .spawn()
                    .expect("start wasmgate");
                self.children.push(child);
            }
            ("wasmgate", args) => {
                let out = Command::new(support::bin()).args(args).current_dir(&self.cwd).output().expect("run");
                let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                assert!(out.status.success(), "`{line}` failed:\n{stdout}{stderr}");
                if let Some(name) = &capture {
                    self.vars.insert(name.clone(), stdout.trim().to_owned());
                }
            }
            ("curl", args) => self.curl(args, &comment, patience).await,
            _ => panic!("the recipe runs a command this test does not know: `{line}`"),
        }
    }

    /// `curl -s -o /dev/null -w '%{http_code}\n' [-H 'NAME: VALUE'] URL   # CODE: …`
    async fn curl(&self, args: &[&str], comment: &str, patience: Duration) {
        let expected: u16 = comment
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| s.len() == 3)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a curl line says the status it gives: {args:?} # {comment}"));
        let (mut headers, mut url, mut i) = (Vec::new(), None, 0);
        while i < args.len() {
            match args[i] {
                "-s" => {}
                "-o" | "-w" => i += 1,
                "-H" => {
                    i += 1;
                    let (k, v) = args[i].split_once(": ").expect("NAME: VALUE");
                    headers.push((k.to_owned(), v.to_owned()));
                }
                u if u.starts_with("http://") => url = Some(u.to_owned()),
                other => panic!("curl option {other} is not handled"),
            }
            i += 1;
        }
        let url = url.expect("a URL");
        let deadline = Instant::now() + patience;
        loop {
            let mut req = self.client.get(&url);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let got = req.send().await.expect("send").status().as_u16();
            if got == expected {
                return;
            }
            assert!(Instant::now() < deadline, "GET {url} answered {got}, the doc says {expected} ({comment})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Builds a plugin crate as the doc's build block says, with cargo's own
/// environment kept out (as `host/build.rs` does for the plugins).
fn build(dir: &Path, block: &str) {
    for line in block.lines() {
        let (w, _) = words(line, &Default::default());
        let Some((cmd, args)) = w.split_first() else { continue };
        let status = match cmd.as_str() {
            "cargo" => {
                let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
                for (key, _) in std::env::vars_os() {
                    let key = key.to_string_lossy().into_owned();
                    if key.starts_with("CARGO_") && key != "CARGO_HOME"
                        || key == "RUSTFLAGS"
                        || key.starts_with("RUSTC_")
                    {
                        c.env_remove(key);
                    }
                }
                c.args(args).current_dir(dir).status().expect("run cargo")
            }
            "wasmgate" => {
                let out = Command::new(support::bin()).args(args).current_dir(dir).output().expect("run");
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(text.contains("usable policy component") && text.contains("authorizer"), "{text}");
                out.status
            }
            other => panic!("the build block runs a command this test does not know: {other}"),
        };
        assert!(status.success(), "`{line}` failed in {}", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_guide_recipe_allows_denies_and_swaps_live() {
    // The authorizer exactly as the guide writes it, and the change the
    // guide suggests for the swap (let another tenant in).
    let root = work_root();
    let lib_rs = doc_block("first-hour: src/lib.rs");
    let listed = "Some(t) if tenants.contains(&t) => Decision::Allow,";
    assert!(lib_rs.contains(listed), "the guide's decision changed; update this test's edit");
    let v2 = lib_rs.replace(listed, "Some(t) if tenants.contains(&t) || t == \"globex\" => Decision::Allow,");
    let build_block = doc_block("first-hour: build");
    build(&plugin_crate(&root, "only-acme", &lib_rs), &build_block);
    build(&plugin_crate(&root, "only-acme-v2", &v2), "cargo build --release --target wasm32-wasip2\n");

    // The folder holding `only-acme/`, as the recipe starts.
    let home = tempfile::tempdir().expect("tempdir");
    let link = |to: &str| {
        let tmp = home.path().join(".only-acme");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(root.join(to), &tmp).expect("link");
        std::fs::rename(&tmp, home.path().join("only-acme")).expect("rename");
    };
    link("only-acme");
    let addr = free_port();
    let socket = home.path().join("sandbox.sock");
    let substitutions = vec![
        ("127.0.0.1:8080".to_owned(), addr.to_string()),
        ("/tmp/wasmgate-sandbox.sock".to_owned(), socket.display().to_string()),
    ];
    for (block, names) in [
        ("run-it: gateway.yaml", &substitutions[..]),
        ("run-it: start", &substitutions[1..]),
        ("run-it: calls", &substitutions[..1]),
        ("run-it: swap", &substitutions[..1]),
    ] {
        for (from, _) in names {
            assert!(doc_block(block).contains(from.as_str()), "{block} no longer names {from}");
        }
    }
    let mut sh = Shell {
        cwd: home.path().to_owned(),
        vars: Default::default(),
        substitutions,
        children: Vec::new(),
        client: http(),
    };
    sh.run(&doc_block("run-it: setup"), Duration::ZERO).await;
    let config = sh.substitute(&doc_block("run-it: gateway.yaml"));
    std::fs::write(sh.cwd.join("gateway.yaml"), config).expect("write gateway.yaml");
    sh.run(&doc_block("run-it: start"), Duration::ZERO).await;
    let log = sh.cwd.join("gateway.log");
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let ready = eventually(60, || async { logs().contains("wasmgate serving") }).await;
    assert!(ready, "the gateway did not start:\n{}", logs());
    sh.run(&doc_block("run-it: calls"), Duration::ZERO).await;
    // The decision record the guide shows: every field it shows, in one
    // record (the writer runs beside the call: wait for it).
    let shown: Value = serde_json::from_str(doc_block("run-it: deny log").trim()).expect("a JSON record");
    let shown = shown.as_object().expect("an object").clone();
    let matches =
        || crate::decision_log::records(&logs()).iter().any(|r| shown.iter().all(|(k, v)| r.get(k) == Some(v)));
    let found = eventually(10, || async { matches() }).await;
    assert!(found, "the guide shows `{shown:?}`; the log has:\n{}", logs());

    // The rebuilt plugin, swapped in with the recipe's commands.
    link("only-acme-v2");
    sh.run(&doc_block("run-it: swap"), Duration::from_secs(10)).await;
    let logs = logs();
    assert!(logs.contains("policy reloaded") && logs.contains("only_acme.wasm: sha256 "), "{logs}");
}
