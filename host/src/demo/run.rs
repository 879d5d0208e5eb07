//! `wasmgate demo` itself: the example drivers in-process, the dev issuer,
//! the gateway, and the instructions printed for the user. Only in builds
//! with the `demo` feature (the default).

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;

use super::{DEMO_AUDIENCE, DevClaims, DevIssuer, demo_config, with_demo_credentials};
use crate::config::Config;
use crate::server::{Gateway, Listener};

/// Starts the reference credentials driver on `socket`, serving one
/// credential `sandbox-api` (a random token, valid 12 hours) from a file in
/// `dir`. The returned value keeps its file watch alive.
async fn start_credentials_driver(
    dir: &std::path::Path,
    socket: &std::path::Path,
) -> anyhow::Result<credentials_driver::Driver> {
    let token = format!("demo-upstream-{}", hex::encode(random_bytes::<12>()?));
    let expires_ms = (std::time::SystemTime::now() + std::time::Duration::from_secs(12 * 3600))
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let file = dir.join("demo-credentials.yaml");
    std::fs::write(
        &file,
        format!(
            "credentials:\n  - name: sandbox-api\n    token: \"{token}\"\n    expires_at: {expires_ms}\n    scopes: [sandbox]\n"
        ),
    )?;
    let cfg = credentials_driver::config::Config::parse(&format!("static: {{ file: \"{}\" }}\n", file.display()))?;
    let driver = credentials_driver::Driver::start(&cfg)?;
    let listener = credentials_driver::bind(socket).context("bind the credentials driver's socket")?;
    let service = driver.service.clone();
    tokio::spawn(async move {
        if let Err(e) = credentials_driver::serve(listener, service, std::future::pending()).await {
            tracing::error!(error = %e, "credentials driver stopped");
        }
    });
    Ok(driver)
}

/// `wasmgate demo`.
pub async fn run(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(listen.ip().is_loopback(), "the demo binds loopback addresses only (got {listen})");
    let dir = tempfile::Builder::new().prefix("wasmgate-demo-").tempdir()?;
    let socket = dir.path().join("sandbox-driver.sock");
    let driver_listener = sandbox_driver::bind(&socket).context("bind the sample driver's socket")?;
    tokio::spawn(async move {
        if let Err(e) = sandbox_driver::serve(driver_listener, std::future::pending()).await {
            tracing::error!(error = %e, "sample driver stopped");
        }
    });

    let credentials_socket = dir.path().join("credentials-driver.sock");
    let _credentials = start_credentials_driver(dir.path(), &credentials_socket).await?;

    let issuer = DevIssuer::start().await?;
    let secret = hex::encode(random_bytes::<16>()?);
    let yaml = with_demo_credentials(&demo_config(listen, issuer.issuer(), &socket, &secret), &credentials_socket);
    // No load balancer waits on the demo's readiness: Ctrl-C stops accepting at once.
    let yaml = format!("shutdown: {{ drain_delay_ms: 0, grace_ms: 5000 }}\n{yaml}");
    let cfg = Config::from_yaml(&yaml)?;
    let telemetry = crate::telemetry::start(&cfg.telemetry)?;
    let gateway = Gateway::new(&cfg).await?;
    let tasks = crate::tasks::Tasks::new();
    gateway.start(&tasks)?;
    let listener = Listener::bind(listen, None).await?;
    let addr = listener.local_addr()?;

    let mint = |subject: &str, roles: &[&str], scope: &str| {
        issuer.mint(&DevClaims {
            subject,
            audience: DEMO_AUDIENCE,
            roles,
            scope,
            tenant: "demo",
            ttl_seconds: 12 * 3600,
        })
    };
    let admin = mint("alice", &["admin"], "sandbox.read sandbox.write sandbox.admin")?;
    let user = mint("bob", &["user"], "sandbox.read sandbox.write")?;
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "wasmgate".into());

    println!("{}", instructions(addr, issuer.issuer(), &socket, &admin, &user, &secret, &exe));
    let (first, second) = crate::cli::shutdown_signals();
    let served = gateway.serve_until(listener, first, second).await;
    tasks.shutdown(std::time::Duration::from_secs(5)).await;
    telemetry.shutdown().await;
    served?;
    drop(dir);
    Ok(ExitCode::SUCCESS)
}

fn instructions(
    addr: SocketAddr,
    issuer: &str,
    socket: &std::path::Path,
    admin: &str,
    user: &str,
    secret: &str,
    exe: &str,
) -> String {
    let gw = format!("http://{addr}");
    let socket = socket.display();
    format!(
        r#"
wasmgate demo is running. DEVELOPMENT ONLY: the issuer below is embedded, its key is
thrown away on exit, and everything listens on loopback.

  gateway         {gw}   (HTTP/1.1 and h2c)
  dev issuer      {issuer}   (OIDC discovery + JWKS)
  sample driver   unix://{socket}
  credentials     the reference credentials driver (one credential, sandbox-api)
  policy          embedded default-classifier, oidc-claims-mapper, rbac-authorizer,
                  default-credential-policy (injects sandbox-api into /v1/caller)

Paste into another terminal (tokens are valid for 12 hours):

ADMIN_TOKEN='{admin}'
USER_TOKEN='{user}'
SANDBOX_SECRET='{secret}'

# 201: a user creates a sandbox (REST facade of the driver, through the gateway)
curl -s -X POST {gw}/v1/sandboxes -H "authorization: Bearer $USER_TOKEN" -H 'content-type: application/json' -d '{{"name":"demo","image":"debian:stable"}}'
# 200: an admin lists sandboxes
curl -s {gw}/v1/sandboxes -H "authorization: Bearer $ADMIN_TOKEN"
# 401: no token (note the WWW-Authenticate challenge)
curl -s -o /dev/null -w '%{{http_code}}\n' {gw}/v1/sandboxes
# 401: a forged token
curl -s -o /dev/null -w '%{{http_code}}\n' {gw}/v1/sandboxes -H "authorization: Bearer ${{ADMIN_TOKEN%?????}}AAAAA"
# 403: a user may not change the driver's config (an admin-only method)
curl -s -o /dev/null -w '%{{http_code}}\n' -X PUT {gw}/v1/config -H "authorization: Bearer $USER_TOKEN" -H 'content-type: application/json' -d '{{"max_sandboxes":5,"default_image":"x"}}'
# 200: the driver sees the gateway's identity headers, never the spoofed one, and
# "authorization_present": true: not the caller's token (removed) but the upstream
# credential sandbox-api, injected from the credentials driver
curl -s {gw}/v1/caller -H "authorization: Bearer $USER_TOKEN" -H 'x-wasmgate-subject: mallory'
# 200: the sandbox secret reaches the methods listed for it
curl -s {gw}/v1/caller -H "x-sandbox-secret: $SANDBOX_SECRET"

# gRPC through the gateway (h2c), with the built-in demo client:
{exe} demo call --gateway {gw} --token "$USER_TOKEN" create --name grpc-demo    # OK
{exe} demo call --gateway {gw} --token "$ADMIN_TOKEN" list                      # OK, two sandboxes
{exe} demo call --gateway {gw} --token "$USER_TOKEN" watch --max-events 2       # server streaming: 2 events, OK
{exe} demo call --gateway {gw} list                                           # Unauthenticated (16)
{exe} demo call --gateway {gw} --token "$USER_TOKEN" update-config --max-sandboxes 5   # PermissionDenied (7)

Press Ctrl-C to stop.
"#
    )
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; N];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut b).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(b)
}
