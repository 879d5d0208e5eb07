//! Component answers confined, through the real binary: a credential policy
//! cannot inject a credential as a header the gateway strips or sets under
//! a non-default configuration, and an identity provider can assert only
//! the tenants its `tenants` lists, with two real issuers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{Value, json};
use wasmgate::demo::{DEMO_AUDIENCE, DevIssuer};
use wasmgate_proto::credentials::credentials_driver_server::{CredentialsDriver, CredentialsDriverServer};
use wasmgate_proto::credentials::{
    CredentialInfo, ListCredentialsRequest, ListCredentialsResponse, ResolveCredentialRequest,
    ResolveCredentialResponse,
};

use crate::support::{self, Env, now, start};

fn http() -> reqwest::Client {
    reqwest::Client::builder().http1_only().build().expect("client")
}

/// A credentials driver with one credential, `cred-a`.
#[derive(Clone, Default)]
struct OneCredential;

#[tonic::async_trait]
impl CredentialsDriver for OneCredential {
    async fn resolve_credential(
        &self,
        request: tonic::Request<ResolveCredentialRequest>,
    ) -> Result<tonic::Response<ResolveCredentialResponse>, tonic::Status> {
        Ok(tonic::Response::new(ResolveCredentialResponse {
            token: format!("secret-of-{}", request.into_inner().name),
            expires_at_ms: 0,
            token_type: "Bearer".into(),
        }))
    }

    async fn list_credentials(
        &self,
        _request: tonic::Request<ListCredentialsRequest>,
    ) -> Result<tonic::Response<ListCredentialsResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListCredentialsResponse {
            credentials: vec![CredentialInfo { name: "cred-a".into(), scopes: vec![] }],
        }))
    }
}

/// An upstream that answers with every header it received, and counts calls.
async fn header_echo() -> (SocketAddr, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let map: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), Value::from(v.to_str().unwrap_or_default())))
                .collect();
            axum::Json(Value::Object(map))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, hits)
}

/// Where each `/echo/NAME` call's credential policy injects `cred-a`.
const INJECTED_AS: &[(&str, &str)] = &[
    ("ok", "x-upstream-token"),
    ("prefix", "x-corp-subject"),
    ("prefix-underscore", "x_corp_tenant"),
    ("also-strip", "x-employee-id"),
    ("also-strip-underscore", "x_employee_id"),
    ("sandbox-header", "x-box-key"),
    ("cookie-name", "corp-session"),
    ("forwarded", "x-forwarded-for"),
    ("override", "x-original-url"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_never_injected_as_headers_the_configured_gateway_strips_or_sets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("credentials.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(CredentialsDriverServer::new(OneCredential))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
    });
    let (upstream, hits) = header_echo().await;
    let sock = support::path_str(&socket);
    let env = start(|y| {
        let rules: String = INJECTED_AS
            .iter()
            .map(|(path, header)| {
                format!(
                    "        - {{ match: \"/echo/{path}\", credential: cred-a, header: \"{header}\", prefix: \"Bearer \" }}\n"
                )
            })
            .collect();
        let y = y
            .replacen(
                "auth:\n",
                "identity_headers:\n  prefix: X-Corp_\n  also_strip: [X-Employee_Id]\nauth:\n  sandbox_secret_header: x-box-key\n  cookie: corp_session\n",
                1,
            )
            .replacen(
                "policy:\n",
                &format!(
                    "drivers:\n  credentials: {{ socket: \"{sock}\", timeout_ms: 1000 }}\npolicy:\n  credential_policy:\n    plugin: builtin:default-credential-policy\n    settings:\n      rules:\n{rules}"
                ),
                1,
            )
            .replace(
                "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
                "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/echo/*\", class: unauthenticated }\n",
            );
        format!("{y}  - name: echo\n    match: {{ path_prefix: /echo }}\n    upstream: \"http://{upstream}\"\n")
    })
    .await;
    let c = http();

    // Allowed: the credential arrives, the gateway's identity headers are
    // under the configured prefix, and the client's spoofed ones are gone.
    let r = c.get(env.url("/echo/ok")).header("x-corp-auth-kind", "oidc").send().await.expect("send");
    assert_eq!(r.status(), 200, "log:\n{}", env.logs());
    let seen: Value = r.json().await.expect("json");
    assert_eq!(seen["x-upstream-token"], "Bearer secret-of-cred-a", "{seen}");
    assert_eq!(seen["x-corp-auth-kind"], "none", "set by the gateway under the configured prefix: {seen}");

    let before = hits.load(Ordering::SeqCst);
    for (path, header) in &INJECTED_AS[1..] {
        let r = c.get(env.url(&format!("/echo/{path}"))).send().await.expect("send");
        assert_eq!(r.status(), 403, "{header} carried a credential; log:\n{}", env.logs());
        let body = r.text().await.expect("body");
        assert!(!body.contains("secret-of"), "{body}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), before, "a refused credential policy never forwards the call");
    let refusals = || INJECTED_AS[1..].iter().map(|(_, h)| format!("header \\\"{h}\\\" may not carry a credential"));
    let logs = crate::decision_log::logs_when(&env, |l| refusals().all(|r| l.contains(&r))).await;
    for (_, header) in &INJECTED_AS[1..] {
        assert!(logs.contains(&format!("header \\\"{header}\\\" may not carry a credential")), "{header}:\n{logs}");
    }
    assert!(!logs.contains("secret-of-cred-a"), "a credential reached the log");
}

/// Provider `dev` (acme's issuer) and provider `globex` (a second issuer),
/// both taking the tenant from the `tenant` claim and each confined to its
/// own tenant; acme's authorizer lets any principal with `sandbox.read`
/// call the admin method, the global one does not.
async fn two_confined_issuers() -> (Env, DevIssuer) {
    let globex = DevIssuer::start().await.expect("second issuer");
    let globex_issuer = globex.issuer().to_owned();
    let env = start(|y| {
        let provider = format!(
            "  providers:\n    - name: globex\n      issuer: \"{globex_issuer}\"\n      audiences: [\"{DEMO_AUDIENCE}\"]\n      algorithms: [ES256]\n      tenants: [globex]\n      claims_mapper:\n        plugin: builtin:oidc-claims-mapper\n        settings:\n          tenant-claim: tenant\n"
        );
        let acme_authorizer = "  tenants:\n    acme:\n      authorizer:\n        plugin: builtin:rbac-authorizer\n        settings: { admin-role: \"\", user-role: \"\", wildcard-scope: \"sandbox:all\" }\nroutes:";
        y.replacen("          tenant-claim: tenant\n", "          tenant-claim: tenant\n      tenants: [acme]\n", 1)
            .replacen("  providers:\n", &provider, 1)
            .replacen("routes:", acme_authorizer, 1)
    })
    .await;
    (env, globex)
}

fn claims(issuer: &DevIssuer, subject: &str, tenant: Option<&str>) -> Value {
    let mut c = json!({
        "iss": issuer.issuer(), "aud": DEMO_AUDIENCE, "sub": subject, "iat": now(), "exp": now() + 600,
        "realm_access": {"roles": ["user"]}, "scope": "sandbox.read",
    });
    if let Some(t) = tenant {
        c["tenant"] = t.into();
    }
    c
}

async fn caller(env: &Env, c: &reqwest::Client, token: &str) -> (u16, Value) {
    let r = c.get(env.url("/v1/caller")).bearer_auth(token).send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn put_config(env: &Env, c: &reqwest::Client, token: &str) -> u16 {
    c.put(env.url("/v1/config"))
        .bearer_auth(token)
        .json(&json!({"max_sandboxes": 7, "default_image": "x"}))
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_cannot_assert_a_tenant_outside_its_providers_tenants() {
    let (env, globex) = two_confined_issuers().await;
    let c = http();
    let acme_user = env.sign(claims(&env.issuer, "bob", Some("acme")));
    let globex_user = globex.sign(&claims(&globex, "gina", Some("globex"))).expect("sign");
    let globex_as_acme = globex.sign(&claims(&globex, "mallory", Some("acme"))).expect("sign");
    let globex_no_tenant = globex.sign(&claims(&globex, "nobody", None)).expect("sign");
    let acme_as_globex = env.sign(claims(&env.issuer, "eve", Some("globex")));

    // Each issuer's own tenant works.
    let (status, body) = caller(&env, &c, &acme_user).await;
    assert_eq!(status, 200, "log:\n{}", env.logs());
    assert_eq!(body["identity_headers"]["x-wasmgate-tenant"], "acme", "{body}");
    let (status, body) = caller(&env, &c, &globex_user).await;
    assert_eq!(status, 200, "log:\n{}", env.logs());
    let ids = &body["identity_headers"];
    assert_eq!(
        (ids["x-wasmgate-tenant"].as_str(), ids["x-wasmgate-provider"].as_str()),
        (Some("globex"), Some("globex"))
    );
    // What is at stake: acme's authorizer lets acme's user call the admin
    // method; the global one refuses globex's user.
    assert_eq!(put_config(&env, &c, &acme_user).await, 200, "log:\n{}", env.logs());
    assert_eq!(put_config(&env, &c, &globex_user).await, 403);

    // globex's issuer minting `tenant: acme` gets neither acme's authorizer
    // nor anything else: 403, twice (the refused principal is not cached),
    // and the same for a principal with no tenant and for the reverse.
    for _ in 0..2 {
        assert_eq!(caller(&env, &c, &globex_as_acme).await.0, 403, "log:\n{}", env.logs());
        assert_eq!(put_config(&env, &c, &globex_as_acme).await, 403, "log:\n{}", env.logs());
    }
    assert_eq!(caller(&env, &c, &globex_no_tenant).await.0, 403);
    assert_eq!(caller(&env, &c, &acme_as_globex).await.0, 403);
    // The allowed principals, now cached, still work.
    assert_eq!(caller(&env, &c, &globex_user).await.0, 200);
    assert_eq!(caller(&env, &c, &acme_user).await.0, 200);

    let logs =
        crate::decision_log::logs_when(&env, |l| l.contains(r#"no tenant, and provider \"globex\" may assert"#)).await;
    assert!(logs.contains(r#"tenant \"acme\" is not allowed for provider \"globex\""#), "{logs}");
    assert!(logs.contains(r#"tenant \"globex\" is not allowed for provider \"dev\""#), "{logs}");
    assert!(logs.contains(r#"no tenant, and provider \"globex\" may assert only the tenants"#), "{logs}");
    assert!(!logs.contains("with no bound"), "both providers are bounded: no warning; log:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_at_start_about_providers_that_can_assert_any_or_the_same_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("wasmgate.yaml");
    // Issuers on ports nothing listens on: keys are fetched in the
    // background, so the gateway starts (not ready) and logs its warnings.
    let (a, b, c) = (support::free_port(), support::free_port(), support::free_port());
    std::fs::write(
        &cfg,
        format!(
            r#"listen: "{}"
auth:
  providers:
    - name: open
      issuer: "http://{a}"
      audiences: [api]
      claims_mapper: {{ plugin: builtin:oidc-claims-mapper, settings: {{ tenant-claim: org }} }}
    - name: acme
      issuer: "http://{b}"
      audiences: [api]
      claims_mapper: {{ plugin: builtin:oidc-claims-mapper, settings: {{ tenant: acme }} }}
    - name: acme-ci
      issuer: "http://{c}"
      audiences: [api]
      tenants: [acme, ci]
      claims_mapper: {{ plugin: builtin:oidc-claims-mapper, settings: {{ tenant-claim: tenant }} }}
"#,
            support::free_port()
        ),
    )
    .expect("write config");
    let log = dir.path().join("wasmgate.log");
    let mut child = std::process::Command::new(support::bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("WASMGATE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start wasmgate");
    let unbounded = r#"provider "open" takes the tenant from claim "org" with no bound"#;
    let shared = r#"providers "acme", "acme-ci" can all assert tenant "acme""#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if (text.contains(unbounded) && text.contains(shared)) || Instant::now() > deadline {
            break text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("gateway exited ({status}); log:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains(unbounded), "{text}");
    assert!(text.contains(shared), "{text}");
    assert!(text.contains("WARN"), "{text}");
    assert!(!text.contains(r#"provider "acme-ci" takes"#) && !text.contains(r#"provider "acme" takes"#), "{text}");
}
