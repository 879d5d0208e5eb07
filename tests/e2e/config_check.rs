//! `wasmgate config check`, `serve --dry-run`, overrides, the config's JSON
//! Schema, completions and the man page: the real binary on real files.

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message as _;
use prost_types::{FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto, ServiceDescriptorProto};
use serde_json::Value;

use crate::support;

/// The exit code, stdout and stderr of the binary with `args`, `env` set
/// and every inherited `WASMGATE__…` variable removed.
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(support::bin());
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("WASMGATE__")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run wasmgate");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{stdout}"))
}

/// A folder with the demo config (nothing listens: `config check` never
/// connects) as `wasmgate.yaml`, changed by `edit`.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(edit: impl FnOnce(String) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = wasmgate::demo::demo_config(
            "127.0.0.1:18080".parse().expect("addr"),
            "http://127.0.0.1:9/realms/dev",
            &dir.path().join("driver.sock"),
            support::SECRET,
        );
        std::fs::write(dir.path().join("wasmgate.yaml"), edit(yaml)).expect("write config");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> String {
        support::path_str(&self.path("wasmgate.yaml"))
    }

    /// `config check` of the config, text then JSON; both exit alike.
    fn check(&self, extra: &[&str], env: &[(&str, &str)]) -> (i32, String, Value) {
        let config = self.config();
        let mut args = vec!["config", "check", config.as_str()];
        args.extend_from_slice(extra);
        let (code, text, err) = run(&args, env);
        args.extend_from_slice(&["--output", "json"]);
        let (json_code, out, _) = run(&args, env);
        assert_eq!(code, json_code, "text and JSON exit alike; text:\n{text}\n{err}\njson:\n{out}");
        let doc = json(&out);
        assert_eq!(doc["ok"], code == 0, "{doc:#}");
        (code, text, doc)
    }
}

fn errors(doc: &Value) -> String {
    doc["errors"].to_string()
}

#[test]
fn a_good_config_passes_every_check() {
    let d = Dir::new(|y| y);
    let (code, text, doc) = d.check(&[], &[]);
    assert_eq!(code, 0, "{text}");
    for needle in ["ok    config", "component default-classifier", "component rbac-authorizer", "binding classifier"] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    assert!(text.contains("config ok"), "{text}");
    assert_eq!(doc["errors"], serde_json::json!([]), "{doc:#}");
    let checks = doc["checks"].as_array().expect("checks");
    assert!(checks.iter().all(|c| c["ok"] == true), "{doc:#}");
    assert!(checks.iter().any(|c| c["name"] == "component oidc-claims-mapper"), "{doc:#}");
    // The merged config, its inline secret redacted.
    assert_eq!(doc["config"]["listen"], "127.0.0.1:18080", "{doc:#}");
    assert_eq!(doc["config"]["auth"]["sandbox_secret"]["value"], "[redacted]", "{doc:#}");
    assert!(!doc.to_string().contains(support::SECRET), "the secret never shows:\n{doc:#}");
}

#[test]
fn a_broken_component_fails_with_its_reason() {
    let d = Dir::new(|y| y.replace("plugin: builtin:rbac-authorizer", "plugin: broken.wasm"));
    std::fs::write(d.path("broken.wasm"), b"not a component").expect("write");
    let (code, text, doc) = d.check(&[], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("FAIL  gateway") && text.contains("broken"), "{text}");
    assert!(errors(&doc).contains("broken"), "{doc:#}");
}

#[test]
fn a_failing_golden_case_fails_with_the_case_named() {
    let d = Dir::new(|y| y.replace("plugin: builtin:rbac-authorizer", "plugin: authz.wasm"));
    std::fs::write(d.path("authz.wasm"), wasmgate::plugins::builtin_bytes("rbac-authorizer").expect("embedded"))
        .expect("write");
    let cases = "settings: { admin-role: admin, user-role: user }\ncases:\n  - name: anonymous may configure\n    \
                 authorize:\n      call: { path: /v1/config }\n      classification: { class: bearer, \
                 required-scopes: [sandbox.admin] }\n    expect: allow\n";
    std::fs::write(d.path("authz.cases.yaml"), cases).expect("write");
    let (code, text, doc) = d.check(&[], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("anonymous may configure"), "{text}");
    assert!(errors(&doc).contains("anonymous may configure"), "{doc:#}");
}

#[test]
fn unknown_keys_fail_from_the_file_and_from_set() {
    let d = Dir::new(|y| y.replacen("policy:", "plugins:\n  max_memroy_bytes: 1\npolicy:", 1));
    let (code, text, doc) = d.check(&[], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("unknown field `max_memroy_bytes`"), "{text}");
    assert!(errors(&doc).contains("max_memroy_bytes"), "{doc:#}");

    let d = Dir::new(|y| y);
    let (code, text, doc) = d.check(&["--set", "server.no_such_key=1"], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("unknown field `no_such_key`") && text.contains("server.no_such_key"), "{text}");
    assert!(errors(&doc).contains("no_such_key"), "{doc:#}");
    let (code, _, doc) = d.check(&[], &[("WASMGATE__NO_SUCH_SECTION", "1")]);
    assert_eq!(code, 1);
    assert!(errors(&doc).contains("no_such_section"), "{doc:#}");
}

#[test]
fn flags_win_over_env_which_wins_over_the_file() {
    let d = Dir::new(|y| y.replacen("policy:", "admin: { listen: \"127.0.0.1:19001\" }\npolicy:", 1));
    let env = [("WASMGATE__LISTEN", "127.0.0.1:18082"), ("WASMGATE__ADMIN__LISTEN", "127.0.0.1:19002")];
    let (code, text, doc) = d.check(&["--listen", "127.0.0.1:18083"], &env);
    assert_eq!(code, 0, "{text}");
    assert_eq!(doc["config"]["listen"], "127.0.0.1:18083", "the flag wins: {doc:#}");
    assert_eq!(doc["config"]["admin"]["listen"], "127.0.0.1:19002", "the env wins over the file: {doc:#}");
    assert!(text.contains("override  listen = 127.0.0.1:18083 (from the flag)"), "{text}");
    assert!(text.contains("override  admin.listen = 127.0.0.1:19002 (from the environment)"), "{text}");
    let listed: Vec<&str> =
        doc["overrides"].as_array().expect("overrides").iter().filter_map(|o| o["path"].as_str()).collect();
    assert_eq!(listed, ["admin.listen", "listen", "listen"], "{doc:#}");

    // A named flag is a `--set`; a `--set` of the same key after it wins.
    let sock = "/run/wasmgate/credentials.sock";
    let (code, _, doc) = d.check(
        &["--credentials-driver-socket", "/x.sock", "--set", &format!("drivers.credentials.socket={sock}")],
        &[],
    );
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["config"]["drivers"]["credentials"]["socket"], sock, "{doc:#}");
    // A value that fails validation fails the check like the file would.
    let (code, _, doc) = d.check(&["--set", "listen=not-an-address"], &[]);
    assert_eq!(code, 1);
    assert!(errors(&doc).contains("listen"), "{doc:#}");
}

/// The sandbox service's methods as the descriptor set lists them, with
/// `extra` added, and the health service.
fn descriptors(dir: &Dir, extra: &[&str]) -> String {
    let method = |name: &str| MethodDescriptorProto { name: Some(name.to_owned()), ..Default::default() };
    let service = |name: &str, methods: &[&str]| ServiceDescriptorProto {
        name: Some(name.to_owned()),
        method: methods.iter().map(|m| method(m)).collect(),
        ..Default::default()
    };
    let mut sandbox = vec![
        "GetCaller",
        "GetSandbox",
        "ListSandboxes",
        "WatchSandboxes",
        "GetConfig",
        "CreateSandbox",
        "DeleteSandbox",
        "UpdateConfig",
    ];
    sandbox.extend_from_slice(extra);
    let set = FileDescriptorSet {
        file: vec![
            FileDescriptorProto {
                name: Some("sandbox.proto".into()),
                package: Some("sandbox.v1".into()),
                service: vec![service("SandboxService", &sandbox)],
                ..Default::default()
            },
            FileDescriptorProto {
                name: Some("health.proto".into()),
                package: Some("grpc.health.v1".into()),
                service: vec![service("Health", &["Check", "Watch"])],
                ..Default::default()
            },
        ],
    };
    let path = dir.path("upstreams.binpb");
    std::fs::write(&path, set.encode_to_vec()).expect("write descriptors");
    support::path_str(&path)
}

#[test]
fn every_routed_grpc_method_must_be_classified_explicitly() {
    let d = Dir::new(|y| y);
    let all = descriptors(&d, &[]);
    let (code, text, doc) = d.check(&["--upstream-descriptors", &all], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ok    grpc methods: 8 method(s)"), "{text}");
    assert!(
        text.contains("/sandbox.v1.SandboxService/GetCaller: dual-auth [sandbox.read] — entry /sandbox.v1.SandboxService/GetCaller"),
        "{text}"
    );
    // The health service is in the descriptors but routed nowhere (the
    // gateway answers it itself): not listed.
    assert!(!text.contains("grpc.health.v1.Health/"), "{text}");
    let methods = doc["grpc"]["methods"].as_array().expect("methods");
    assert_eq!(methods.len(), 8, "{doc:#}");
    assert!(methods.iter().all(|m| m["explicit"] == true), "{doc:#}");

    // A method the upstream added that no entry lists: the fallthrough decides it.
    let more = descriptors(&d, &["ResizeSandbox"]);
    let (code, text, doc) = d.check(&["--upstream-descriptors", &more], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("/sandbox.v1.SandboxService/ResizeSandbox: bearer [sandbox:all] — UNCLASSIFIED"), "{text}");
    let errs = doc["errors"].as_array().expect("errors");
    assert_eq!(errs.len(), 1, "only the new method: {doc:#}");
    assert!(errs[0].as_str().is_some_and(|e| e.contains("/sandbox.v1.SandboxService/ResizeSandbox")), "{doc:#}");
    let resize = methods_named(&doc, "/sandbox.v1.SandboxService/ResizeSandbox");
    assert_eq!(resize["explicit"], false, "{doc:#}");
    assert_eq!(resize["entry"], Value::Null, "{doc:#}");

    // A routed service the descriptors do not define, and a file that is no descriptor set.
    let d2 = Dir::new(|y| {
        format!(
            "{y}  - name: missing\n    match: {{ grpc_service: other.v1.Missing }}\n    upstream: \"http://127.0.0.1:9\"\n"
        )
    });
    let (code, _, doc) = d2.check(&["--upstream-descriptors", &all], &[]);
    assert_eq!(code, 1);
    assert!(errors(&doc).contains("other.v1.Missing"), "{doc:#}");
    std::fs::write(d.path("junk.binpb"), b"\xff\xff\xff").expect("write");
    let (code, _, doc) = d.check(&["--upstream-descriptors", &support::path_str(&d.path("junk.binpb"))], &[]);
    assert_eq!(code, 1);
    assert!(errors(&doc).contains("FileDescriptorSet"), "{doc:#}");
}

fn methods_named<'a>(doc: &'a Value, method: &str) -> &'a Value {
    doc["grpc"]["methods"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["method"] == method))
        .unwrap_or_else(|| panic!("{method} not listed: {doc:#}"))
}

#[test]
fn a_custom_classifier_is_listed_unverified() {
    let d = Dir::new(|y| y.replace("plugin: builtin:default-classifier", "plugin: classifier.wasm"));
    std::fs::write(
        d.path("classifier.wasm"),
        wasmgate::plugins::builtin_bytes("default-classifier").expect("embedded"),
    )
    .expect("write");
    let all = descriptors(&d, &["ResizeSandbox"]);
    let (code, text, doc) = d.check(&["--upstream-descriptors", &all], &[]);
    assert_eq!(code, 0, "cannot be checked, so not a failure:\n{text}");
    assert!(text.contains("unverified (custom classifier)"), "{text}");
    assert!(doc["warnings"].to_string().contains("cannot be checked"), "{doc:#}");
    let resize = methods_named(&doc, "/sandbox.v1.SandboxService/ResizeSandbox");
    assert_eq!(resize["explicit"], Value::Null, "{doc:#}");
    assert_eq!(resize["class"], "bearer [sandbox:all]", "its answer is still shown: {doc:#}");
}

#[test]
fn serve_dry_run_checks_and_exits_without_serving() {
    let d = Dir::new(|y| y);
    let config = d.config();
    let (code, out, err) = run(&["serve", "--config", &config, "--dry-run"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("config ok"), "{out}");
    assert!(!err.contains("wasmgate serving"), "it never listens: {err}");
    let (code, out, _) = run(&["serve", "--config", &config, "--dry-run", "--set", "plugins.deadline_ms=0"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL  config"), "{out}");
}

#[test]
fn completions_and_the_man_page() {
    for (shell, needle) in [
        ("bash", "_wasmgate()"),
        ("zsh", "#compdef wasmgate"),
        ("fish", "complete -c wasmgate"),
        ("elvish", "wasmgate"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let (code, out, err) = run(&["completions", shell], &[]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(needle), "{shell}: {needle} missing");
        assert!(out.contains("upstream-descriptors"), "{shell} completes config check's flags");
    }
    let (code, out, err) = run(&["completions", "man"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(".ie") || out.contains(".TH wasmgate"), "roff:\n{out}");
    assert!(out.contains("completions") && out.contains("serve"), "{out}");
    let (code, _, err) = run(&["completions", "tcsh"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("bash") && err.contains("man"), "lists what it accepts: {err}");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_owned()
}

fn generated_schema() -> Value {
    let (code, out, err) = run(&["config", "schema"], &[]);
    assert_eq!(code, 0, "{err}");
    json(&out)
}

#[test]
fn the_checked_in_schema_is_the_generated_one() {
    let path = repo().join("docs/config.schema.json");
    let checked_in: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("docs/config.schema.json"))
        .expect("checked-in schema is JSON");
    assert!(
        checked_in == generated_schema(),
        "docs/config.schema.json is stale: regenerate it with `wasmgate config schema > docs/config.schema.json`"
    );
}

/// Every shipped gateway config and the demo's: the schema accepts them,
/// and refuses an unknown key and a wrongly typed value as the gateway does.
#[test]
fn shipped_configs_validate_against_the_schema() {
    let schema = generated_schema();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let yaml_to_json = |text: &str| -> Value { serde_norway::from_str(text).expect("yaml") };
    let mut configs = vec![(
        "examples/wasmgate.yaml".to_owned(),
        std::fs::read_to_string(repo().join("examples/wasmgate.yaml")).expect("example"),
    )];
    let d = Dir::new(|y| y);
    configs.push(("demo config".to_owned(), std::fs::read_to_string(d.path("wasmgate.yaml")).expect("demo")));
    configs.push((
        "demo config with credentials".to_owned(),
        wasmgate::demo::with_demo_credentials(&configs[1].1, Path::new("/run/c.sock")),
    ));
    for (name, text) in &configs {
        let doc = yaml_to_json(text);
        let problems: Vec<String> =
            validator.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(problems.is_empty(), "{name} does not validate:\n{}", problems.join("\n"));
    }
    let mut typo = yaml_to_json(&configs[0].1);
    typo["plugins"]["max_memroy_bytes"] = 1.into();
    assert!(!validator.is_valid(&typo), "an unknown key is refused");
    let mut wrong = yaml_to_json(&configs[0].1);
    wrong["plugins"]["deadline_ms"] = "soon".into();
    assert!(!validator.is_valid(&wrong), "a wrongly typed value is refused");
    let mut secret = yaml_to_json(&configs[0].1);
    secret["auth"]["sandbox_secret"] = serde_json::json!({"vault": "x"});
    assert!(!validator.is_valid(&secret), "a secret source is a one-key map of file, env or value");
}

#[test]
fn plugin_commands_and_token_mint_print_json() {
    let wasm = support::fixture("misbehaving_authorizer");
    let wasm = support::path_str(&wasm);
    let (code, out, _) = run(&["plugin", "check", &wasm, "--output", "json"], &[]);
    assert_eq!(code, 0, "{out}");
    let doc = json(&out);
    assert_eq!(doc["ok"], true, "{doc:#}");
    assert!(doc["exports"].to_string().contains("authorizer"), "{doc:#}");
    assert_eq!(doc["sha256"].as_str().map(str::len), Some(64), "{doc:#}");

    let wrong = support::path_str(&support::fixture("wrong_world"));
    let (code, out, _) = run(&["plugin", "check", &wrong, "--output", "json"], &[]);
    assert_eq!(code, 1);
    assert!(json(&out)["errors"].to_string().contains("exports none of the policy interfaces"), "{out}");

    let d = Dir::new(|y| y);
    std::fs::write(d.path("authz.wasm"), wasmgate::plugins::builtin_bytes("rbac-authorizer").expect("embedded"))
        .expect("write");
    let cases = "settings: { admin-role: admin, user-role: user }\ncases:\n  - name: open method\n    authorize:\n      \
                 call: { path: /v1/healthz }\n      classification: { class: unauthenticated }\n    expect: allow\n  \
                 - name: anonymous may configure\n    authorize:\n      call: { path: /v1/config }\n      \
                 classification: { class: bearer, required-scopes: [sandbox.admin] }\n    expect: allow\n";
    std::fs::write(d.path("authz.cases.yaml"), cases).expect("write");
    let authz = support::path_str(&d.path("authz.wasm"));
    let (code, out, _) = run(&["plugin", "test", &authz, "--output", "json"], &[]);
    assert_eq!(code, 1, "{out}");
    let doc = json(&out);
    assert_eq!((doc["passed"].as_u64(), doc["failed"].as_u64()), (Some(1), Some(1)), "{doc:#}");
    assert_eq!(doc["results"][1]["name"], "anonymous may configure", "{doc:#}");
    assert!(doc["results"][1]["failure"].is_string(), "{doc:#}");

    // token mint: a key folder, given as serve would get it from the
    // environment, then one document with the token and its ids.
    let keys = d.path("keys");
    std::fs::create_dir(&keys).expect("keys dir");
    let cfg = d.path("tokens.yaml");
    std::fs::write(&cfg, "auth:\n  gateway_tokens:\n    issuer: wasmgate\n").expect("write");
    let cfg = support::path_str(&cfg);
    let keys = support::path_str(&keys);
    let env = [("WASMGATE__AUTH__GATEWAY_TOKENS__KEYS_DIR", keys.as_str())];
    let (code, _, err) = run(&["keys", "rotate", "--config", &cfg], &env);
    assert_eq!(code, 0, "{err}");
    let mint = ["token", "mint", "--config", &cfg, "--subject", "ci", "--output", "json"];
    let (code, _, err) = run(&mint, &[]);
    assert_ne!(code, 0, "without the variable there are no keys: {err}");
    let (code, out, err) = run(&mint, &env);
    assert_eq!(code, 0, "{err}");
    let doc = json(&out);
    assert_eq!(doc["token"].as_str().map(|t| t.split('.').count()), Some(3), "{doc:#}");
    assert!(doc["jti"].is_string() && doc["exp"].is_number() && doc["kid"].is_string(), "{doc:#}");
}

/// The names of the components `/admin/plugins` lists, and the generation.
async fn loaded(admin: std::net::SocketAddr) -> Option<(u64, Vec<String>)> {
    let r = reqwest::get(format!("http://{admin}/admin/plugins")).await.ok()?;
    let doc: Value = r.json().await.ok()?;
    let names = doc["plugins"].as_array()?.iter().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect();
    Some((doc["generation"].as_u64()?, names))
}

/// `serve` takes its overrides from flags and the environment, and a reload
/// that re-reads the file applies them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_overrides_hold_across_a_reload() {
    let d = Dir::new(|y| y);
    let (listen, admin) = (support::free_port(), support::free_port());
    let authz = support::path_str(&support::fixture("misbehaving_authorizer"));
    let log = d.path("serve.log");
    let mut child = Command::new(support::bin())
        .args(["serve", "--config", &d.config(), "--listen", &listen.to_string()])
        .args(["--set", &format!("policy.authorizer.plugin={authz}")])
        .env("WASMGATE__ADMIN__LISTEN", admin.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("serve");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(&mut child);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    // The admin listener exists only because of the environment variable.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let first = loop {
        if let Some(l) = loaded(admin).await {
            break l;
        }
        assert!(child.0.try_wait().ok().flatten().is_none(), "serve exited; log:\n{}", logs());
        assert!(std::time::Instant::now() < deadline, "no admin listener on {admin}; log:\n{}", logs());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(first.1.iter().any(|n| n == "misbehaving_authorizer"), "the --set authorizer: {first:?}");
    assert!(!first.1.iter().any(|n| n == "rbac-authorizer"), "not the file's: {first:?}");
    assert!(logs().contains(&listen.to_string()), "listens where --listen says; log:\n{}", logs());

    let r = reqwest::Client::new().post(format!("http://{admin}/admin/reload")).send().await.expect("reload");
    assert_eq!(r.status(), 200, "log:\n{}", logs());
    let (generation, names) = loaded(admin).await.expect("plugins after reload");
    assert!(generation > first.0, "a new policy generation: {generation} after {}", first.0);
    assert!(names.iter().any(|n| n == "misbehaving_authorizer"), "the override holds after reload: {names:?}");
    assert!(!names.iter().any(|n| n == "rbac-authorizer"), "{names:?}");
}
