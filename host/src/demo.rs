//! `wasmgate demo`: the whole gateway on loopback with nothing external —
//! a development OIDC issuer, the sample sandbox driver on a temporary Unix
//! socket and the embedded default components — and copy-paste commands
//! that show an allowed call, a 401 and a 403.

mod issuer;

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use tonic::metadata::MetadataValue;
use wasmgate_proto::sandbox::sandbox_service_client::SandboxServiceClient;
use wasmgate_proto::sandbox::{
    CreateSandboxRequest, DeleteSandboxRequest, DriverConfig, GetCallerRequest, GetConfigRequest, GetSandboxRequest,
    ListSandboxesRequest, UpdateConfigRequest, WatchSandboxesRequest,
};

pub(crate) use issuer::DevKey;
pub use issuer::{DevAlg, DevClaims, DevIssuer, DevIssuerArgs, dev_issuer};

use crate::config::Config;
use crate::server::{Gateway, Listener};

/// The audience of demo tokens.
pub const DEMO_AUDIENCE: &str = "wasmgate-demo";

/// The demo's policy: which methods need what, and who may call them.
/// Shared with the end-to-end tests so both exercise the same setup.
pub fn demo_config(listen: SocketAddr, issuer: &str, driver_socket: &std::path::Path, secret: &str) -> String {
    let sock = driver_socket.display();
    format!(
        r#"
listen: "{listen}"
auth:
  sandbox_secret: {{ value: "{secret}" }}
  providers:
    - name: dev
      issuer: "{issuer}"
      audiences: ["{DEMO_AUDIENCE}"]
      algorithms: [ES256]
      jwks: {{ refresh_seconds: 300, cooldown_seconds: 5 }}
      claims_mapper:
        plugin: builtin:oidc-claims-mapper
        settings:
          tenant-claim: tenant
policy:
  classifier:
    plugin: builtin:default-classifier
    settings:
      wildcard-scope: "sandbox:all"
      methods:
        - {{ match: "/grpc.health.v1.Health/*", class: unauthenticated }}
        - {{ match: "/v1/healthz", class: unauthenticated }}
        - {{ match: "/sandbox.v1.SandboxService/GetCaller", class: dual-auth, scopes: [sandbox.read] }}
        - {{ match: "/sandbox.v1.SandboxService/GetSandbox", class: dual-auth, scopes: [sandbox.read] }}
        - {{ match: "/sandbox.v1.SandboxService/ListSandboxes", class: bearer, scopes: [sandbox.read] }}
        - {{ match: "/sandbox.v1.SandboxService/WatchSandboxes", class: bearer, scopes: [sandbox.read] }}
        - {{ match: "/sandbox.v1.SandboxService/GetConfig", class: bearer, scopes: [sandbox.read] }}
        - {{ match: "/sandbox.v1.SandboxService/CreateSandbox", class: bearer, scopes: [sandbox.write] }}
        - {{ match: "/sandbox.v1.SandboxService/DeleteSandbox", class: bearer, scopes: [sandbox.write] }}
        - {{ match: "/sandbox.v1.SandboxService/UpdateConfig", class: bearer, scopes: [sandbox.admin] }}
        - {{ match: "/v1/caller", class: dual-auth, scopes: [sandbox.read] }}
        - {{ match: "/v1/sandboxes", class: bearer, scopes: [sandbox.read] }}
        - {{ match: "/v1/sandboxes/*", class: bearer, scopes: [sandbox.read] }}
        - {{ match: "/v1/config", class: bearer, scopes: [sandbox.read] }}
  authorizer:
    plugin: builtin:rbac-authorizer
    settings:
      admin-role: admin
      user-role: user
      wildcard-scope: "sandbox:all"
      admin-methods: ["/sandbox.v1.SandboxService/UpdateConfig", "/v1/config"]
      sandbox-methods: ["/sandbox.v1.SandboxService/GetCaller", "/sandbox.v1.SandboxService/GetSandbox", "/v1/caller"]
routes:
  - name: sandbox-grpc
    match: {{ grpc_service: sandbox.v1.SandboxService }}
    upstream: "unix://{sock}"
  - name: health-grpc
    match: {{ grpc_service: grpc.health.v1.Health }}
    upstream: "unix://{sock}"
  - name: sandbox-rest
    match: {{ path_prefix: /v1 }}
    upstream: "unix://{sock}"
"#
    )
}

/// Adds the credentials driver on `socket` to a [`demo_config`] and a
/// credential policy that injects credential `sandbox-api` as
/// `Authorization: Bearer …` into calls to `/v1/caller`.
pub fn with_demo_credentials(yaml: &str, socket: &std::path::Path) -> String {
    let driver = format!(
        "drivers:\n  credentials: {{ socket: \"{}\", timeout_ms: 1000 }}\npolicy:\n  credential_policy:\n    plugin: builtin:default-credential-policy\n    settings:\n      rules:\n        - {{ match: /v1/caller, credential: sandbox-api, header: authorization, prefix: \"Bearer \" }}\n",
        socket.display()
    );
    yaml.replacen("policy:\n", &driver, 1)
}

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
    let cfg = Config::from_yaml(&yaml)?;
    let gateway = Gateway::new(&cfg).await?;
    let tasks = crate::tasks::Tasks::new();
    gateway.start(&tasks);
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
    let served = gateway.serve(listener, crate::cli::shutdown_signal()).await;
    tasks.shutdown(std::time::Duration::from_secs(5)).await;
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

/// `wasmgate demo call`: a small gRPC client for the sandbox API.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The gateway's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// A bearer token.
    #[arg(long, env = "WASMGATE_TOKEN")]
    token: Option<String>,
    /// The sandbox secret (sent in x-sandbox-secret).
    #[arg(long)]
    secret: Option<String>,
    #[command(subcommand)]
    method: CallMethod,
}

#[derive(Debug, clap::Subcommand)]
enum CallMethod {
    /// ListSandboxes.
    List,
    /// CreateSandbox.
    Create {
        /// Name.
        #[arg(long, default_value = "demo")]
        name: String,
    },
    /// GetSandbox.
    Get {
        /// Sandbox id.
        id: String,
    },
    /// DeleteSandbox.
    Delete {
        /// Sandbox id.
        id: String,
    },
    /// WatchSandboxes (server streaming).
    Watch {
        /// Stop after this many events.
        #[arg(long, default_value_t = 0)]
        max_events: u32,
    },
    /// GetConfig.
    GetConfig,
    /// UpdateConfig.
    UpdateConfig {
        /// New maximum.
        #[arg(long)]
        max_sandboxes: u32,
    },
    /// GetCaller.
    Caller,
}

/// Runs one demo gRPC call and prints the answer or the status.
pub async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let channel = tonic::transport::Endpoint::from_shared(args.gateway.clone())?
        .connect()
        .await
        .with_context(|| format!("connect to {}", args.gateway))?;
    let token = args.token.clone();
    let secret = args.secret.clone();
    let mut client = SandboxServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(t) = &token {
            let v: MetadataValue<_> = format!("Bearer {t}")
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("token is not a valid header value"))?;
            req.metadata_mut().insert("authorization", v);
        }
        if let Some(s) = &secret {
            let v: MetadataValue<_> =
                s.parse().map_err(|_| tonic::Status::invalid_argument("secret is not a valid header value"))?;
            req.metadata_mut().insert("x-sandbox-secret", v);
        }
        Ok(req)
    });
    let result: Result<(), tonic::Status> = async {
        match args.method {
            CallMethod::List => {
                println!("{:#?}", client.list_sandboxes(ListSandboxesRequest::default()).await?.into_inner())
            }
            CallMethod::Create { name } => println!(
                "{:#?}",
                client.create_sandbox(CreateSandboxRequest { name, image: String::new() }).await?.into_inner()
            ),
            CallMethod::Get { id } => {
                println!("{:#?}", client.get_sandbox(GetSandboxRequest { id }).await?.into_inner())
            }
            CallMethod::Delete { id } => {
                println!("{:#?}", client.delete_sandbox(DeleteSandboxRequest { id }).await?.into_inner())
            }
            CallMethod::Watch { max_events } => {
                let mut stream = client.watch_sandboxes(WatchSandboxesRequest { max_events }).await?.into_inner();
                while let Some(event) = stream.message().await? {
                    println!("{event:?}");
                }
            }
            CallMethod::GetConfig => println!("{:#?}", client.get_config(GetConfigRequest {}).await?.into_inner()),
            CallMethod::UpdateConfig { max_sandboxes } => println!(
                "{:#?}",
                client
                    .update_config(UpdateConfigRequest {
                        config: Some(DriverConfig { max_sandboxes, default_image: "debian:stable".into() }),
                    })
                    .await?
                    .into_inner()
            ),
            CallMethod::Caller => println!("{:#?}", client.get_caller(GetCallerRequest {}).await?.into_inner()),
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            println!("status: OK");
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => {
            println!("status: {:?} ({}) {}", status.code(), status.code() as i32, status.message());
            Ok(ExitCode::from(2))
        }
    }
}
