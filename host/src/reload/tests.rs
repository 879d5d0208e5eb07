use super::*;

#[test]
fn only_changes_that_can_change_policy_count() {
    let w = Watched {
        config_dir: PathBuf::from("/etc/wasmgate"),
        config_name: "wasmgate.yaml".into(),
        plugin_dir: Some(PathBuf::from("/etc/wasmgate/plugins")),
    };
    assert!(w.relevant(Path::new("/etc/wasmgate/wasmgate.yaml")));
    assert!(w.relevant(Path::new("/etc/wasmgate/..data")));
    assert!(w.relevant(Path::new("/etc/wasmgate/plugins/..data")));
    assert!(w.relevant(Path::new("/etc/wasmgate/plugins/authz.wasm")));
    assert!(!w.relevant(Path::new("/etc/wasmgate/wasmgate.log")));
    assert!(!w.relevant(Path::new("/etc/wasmgate/plugins/.authz.wasm.swp")));
    assert!(!w.relevant(Path::new("/etc/wasmgate/other/authz.wasm")));
    assert!(!w.relevant(Path::new("/etc/wasmgate/other/wasmgate.yaml")), "another folder's file of that name");
    assert!(!w.relevant(Path::new("/elsewhere/..data")));
    assert!(w.relevant(Path::new("/etc/wasmgate/plugins/authz.cases.yaml")));
    assert!(!w.relevant(Path::new("/etc/wasmgate/plugins/.authz.wasm.tmp")));
    assert!(!w.relevant(Path::new("/etc/wasmgate/plugins/notes.yaml")));
}

#[test]
fn a_relative_config_and_plugin_folder_match_the_absolute_paths_notify_reports() {
    // `serve --config gateway.yaml` with `plugins: {dir: plugins}`, from its working directory.
    let cwd = std::fs::canonicalize(std::env::current_dir().expect("cwd")).expect("canonical");
    for (config, dir) in [("gateway.yaml", "plugins"), ("./gateway.yaml", "./plugins"), ("gateway.yaml", "plugins/")] {
        let w = Watched::new(Path::new(config), Some(Path::new(dir)));
        assert!(w.relevant(&cwd.join("plugins/authz.wasm")), "{config} {dir}: {w:?}");
        assert!(w.relevant(&cwd.join("plugins/authz.cases.yaml")), "{config} {dir}");
        assert!(w.relevant(&cwd.join("plugins/..data")), "{config} {dir}");
        assert!(w.relevant(&cwd.join("gateway.yaml")), "{config} {dir}");
        assert!(!w.relevant(&cwd.join("elsewhere/authz.wasm")), "{config} {dir}");
    }
}

#[test]
fn a_half_replaced_pair_is_named_with_the_file_that_is_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wasm, cases) = (dir.path().join("authz.wasm"), dir.path().join("authz.cases.yaml"));
    std::fs::write(&cases, "cases: []").expect("write");
    std::thread::sleep(Duration::from_millis(30));
    std::fs::write(&wasm, b"v2").expect("write");
    let v2 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"v2"))
    };
    let why = pair_mismatch(&wasm, Some("0123")).expect("explained");
    assert!(why.starts_with("authz.wasm and authz.cases.yaml do not match: authz.wasm is new"), "{why}");
    assert!(why.contains(&v2) && why.contains("ms after authz.cases.yaml"), "{why}");
    assert!(why.contains("within 20 ms") && why.contains("..data"), "says what to do: {why}");
    let why = pair_mismatch(&wasm, Some(&v2)).expect("explained");
    assert!(why.contains("authz.wasm is the serving version") && why.contains("authz.cases.yaml is new"), "{why}");
    assert!(pair_mismatch(&dir.path().join("gone.wasm"), None).is_none());
}

async fn policy(
    engine: &crate::plugins::PluginEngine,
    dir: &Path,
    authorizer: &str,
    generation: u64,
    previous: Option<&PolicySet>,
) -> PolicySet {
    let yaml =
        format!("plugins: {{ dir: \"{}\" }}\npolicy:\n  authorizer: {{ plugin: \"{authorizer}\" }}\n", dir.display());
    let cfg = Config::from_yaml(&yaml).expect("config");
    PolicySet::build(engine, &cfg, generation, previous).await.expect("builds")
}

fn sha_of(set: &PolicySet, source: &str) -> String {
    set.plugins().iter().find(|l| l.source == source).expect("loaded").plugin.sha256().to_owned()
}

#[tokio::test]
async fn the_reload_line_names_each_changed_component_with_both_digests() {
    let engine = crate::plugins::PluginEngine::new(&crate::config::PluginsConfig::default()).expect("engine");
    let dir = tempfile::tempdir().expect("tempdir");
    let rbac = crate::plugins::builtin_bytes("rbac-authorizer").expect("embedded");
    std::fs::write(dir.path().join("authz.wasm"), rbac).expect("write");
    let one = policy(&engine, dir.path(), "authz.wasm", 1, None).await;
    let same = policy(&engine, dir.path(), "authz.wasm", 2, Some(&one)).await;
    assert_eq!(changes(&one, &same), ["no component changed (config: bindings or settings)"]);
    let old = sha_of(&one, "authz.wasm");

    let open = "cases:\n  - { name: open, authorize: { call: { path: /x }, classification: { class: unauthenticated } }, expect: allow }\n";
    std::fs::write(dir.path().join("authz.cases.yaml"), open).expect("write");
    let rechecked = policy(&engine, dir.path(), "authz.wasm", 3, Some(&same)).await;
    assert_eq!(
        changes(&same, &rechecked),
        [format!("authz.wasm: sha256 {old} unchanged, checked against a new cases file (1 cases)")]
    );
    std::fs::remove_file(dir.path().join("authz.cases.yaml")).expect("rm");

    let fixture = std::fs::read(crate::plugins::fixture_path("misbehaving_authorizer")).expect("fixture");
    std::fs::write(dir.path().join("authz.wasm"), &fixture).expect("write");
    let swapped = policy(&engine, dir.path(), "authz.wasm", 4, Some(&rechecked)).await;
    let new = sha_of(&swapped, "authz.wasm");
    assert_ne!(old, new);
    assert_eq!(changes(&rechecked, &swapped), [format!("authz.wasm: sha256 {old} -> {new}")]);
    assert!(serving(&swapped).contains(&format!("authz.wasm (sha256 {new})")), "what a rejection keeps");

    let builtin = policy(&engine, dir.path(), "builtin:rbac-authorizer", 5, Some(&swapped)).await;
    let rbac_sha = sha_of(&builtin, "builtin:rbac-authorizer");
    assert_eq!(
        changes(&swapped, &builtin),
        [format!("added builtin:rbac-authorizer (sha256 {rbac_sha})"), format!("removed authz.wasm (sha256 {new})")]
    );
}

const STARTED: &str = r#"
listen: "127.0.0.1:8080"
auth:
  providers:
    - name: dev
      issuer: "http://127.0.0.1:9000"
      audiences: [api]
      claims_mapper: { plugin: builtin:oidc-claims-mapper }
plugins: { deadline_ms: 50 }
policy:
  authorizer: { plugin: builtin:rbac-authorizer }
routes:
  - name: api
    match: { path_prefix: /v1 }
    upstream: "http://127.0.0.1:9001"
  - name: grpc
    match: { grpc_service: a.v1.Svc }
    upstream: "http://127.0.0.1:9002"
"#;

fn edited(pairs: &[(&str, &str)]) -> Vec<String> {
    let now = pairs.iter().fold(STARTED.to_owned(), |text, (from, to)| {
        assert!(text.contains(from), "{from:?} not in the config");
        text.replacen(from, to, 1)
    });
    restart_required(STARTED, &now)
}

#[test]
fn what_reload_applies_needs_no_restart() {
    assert!(restart_required(STARTED, STARTED).is_empty());
    let reformatted = STARTED.replace("plugins: { deadline_ms: 50 }", "# limits\nplugins:\n  deadline_ms: 50");
    assert!(restart_required(STARTED, &reformatted).is_empty(), "only values count, not layout or comments");
    assert!(edited(&[("builtin:rbac-authorizer", "authz.wasm")]).is_empty(), "policy");
    let classifier = "    upstream: \"http://127.0.0.1:9001\"\n    classifier: { plugin: c.wasm }\n";
    assert!(edited(&[("    upstream: \"http://127.0.0.1:9001\"\n", classifier)]).is_empty(), "a route's classifier");
    let mapper = "claims_mapper: { plugin: m.wasm }\n      tenants: [acme]";
    assert!(edited(&[("claims_mapper: { plugin: builtin:oidc-claims-mapper }", mapper)]).is_empty(), "a mapper");
    assert!(edited(&[("listen:", "server: {}\nlisten:")]).is_empty(), "an empty section is the default");
}

#[test]
fn every_other_change_is_named_down_to_its_key() {
    assert_eq!(edited(&[("127.0.0.1:8080", "0.0.0.0:8080")]), ["listen"]);
    assert_eq!(
        edited(&[(
            "    upstream: \"http://127.0.0.1:9002\"\n",
            "    upstream: \"http://127.0.0.1:9002\"\n    timeout_ms: 5\n"
        )]),
        ["routes[grpc].timeout_ms"]
    );
    assert_eq!(edited(&[("http://127.0.0.1:9000", "http://127.0.0.1:9999")]), ["auth.providers[dev].issuer"]);
    assert_eq!(edited(&[("deadline_ms: 50", "deadline_ms: 80")]), ["plugins.deadline_ms"]);
    assert_eq!(edited(&[("deadline_ms: 50", "deadline_ms: 50, dir: /p")]), ["plugins.dir"], "the watched folder");
    assert_eq!(edited(&[("listen:", "tls: { cert: c.pem, key: k.pem }\nlisten:")]), ["tls"], "a section added");
    assert_eq!(
        edited(&[("listen:", "server: { http1: { max_headers: 50 } }\nlisten:")]),
        ["server"],
        "a section added is named once"
    );
    assert_eq!(edited(&[("listen:", "telemetry: { sampler: always }\nlisten:")]), ["telemetry"], "a new section");
    assert_eq!(
        edited(&[("127.0.0.1:8080", "127.0.0.1:8081"), ("audiences: [api]", "audiences: [api, other]")]),
        ["listen", "auth.providers[dev].audiences"],
        "in the file's order"
    );
    assert_eq!(edited(&[("plugins: { deadline_ms: 50 }\n", "")]), ["plugins"], "a section removed");
}

#[test]
fn routes_added_removed_or_reordered_are_the_routes_key() {
    let extra = "  - name: new\n    match: { path_prefix: /new }\n    upstream: \"http://127.0.0.1:9003\"\n";
    assert_eq!(restart_required(STARTED, &format!("{STARTED}{extra}")), ["routes"]);
    let reordered =
        STARTED.replace("name: api", "name: tmp").replace("name: grpc", "name: api").replace("name: tmp", "name: grpc");
    assert_eq!(restart_required(STARTED, &reordered), ["routes"]);
    assert!(restart_required(STARTED, "listen: [unclosed").is_empty(), "the loader refuses what is not YAML");
}

#[test]
fn applied_keys_are_the_policy_bindings() {
    for path in ["policy", "routes[api].classifier", "auth.providers[dev].claims_mapper", "auth.providers[x.y].tenants"]
    {
        assert!(applied_by_reload(path), "{path}");
    }
    for path in
        ["policy2", "routes", "routes[api]", "routes[api].upstream", "auth.providers[dev].issuer", "plugins.dir"]
    {
        assert!(!applied_by_reload(path), "{path}");
    }
}

#[test]
fn backoff_doubles_up_to_a_cap() {
    assert_eq!(BACKOFF.delay(1), Duration::from_millis(500));
    assert_eq!(BACKOFF.delay(2), Duration::from_secs(1));
    assert_eq!(BACKOFF.delay(4), Duration::from_secs(4));
    assert_eq!(BACKOFF.delay(50), Duration::from_secs(30));
}
