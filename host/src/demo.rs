//! `wasmgate demo`: the whole gateway on loopback with nothing external —
//! a development OIDC issuer, the sample sandbox driver on a temporary Unix
//! socket and the embedded default components — and copy-paste commands
//! that show an allowed call, a 401 and a 403.
//!
//! The in-process example drivers come with the default `demo` feature; a
//! build without it has no example code, and `wasmgate demo` says so
//! (`wasmgate dev-issuer` and `wasmgate demo call` stay). The dev key that
//! only tests use (`DevKey::generate`) is behind the `testing` feature.

mod issuer;
#[cfg(feature = "demo")]
mod run;

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use tonic::metadata::MetadataValue;
use wasmgate_proto::sandbox::sandbox_service_client::SandboxServiceClient;
use wasmgate_proto::sandbox::{
    CreateSandboxRequest, DeleteSandboxRequest, DriverConfig, GetCallerRequest, GetConfigRequest, GetSandboxRequest,
    ListSandboxesRequest, UpdateConfigRequest, WatchSandboxesRequest,
};

#[cfg(any(test, feature = "testing"))]
pub(crate) use issuer::DevKey;
pub use issuer::{DevAlg, DevClaims, DevIssuer, DevIssuerArgs, dev_issuer};
#[cfg(feature = "demo")]
pub use run::run;

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

/// `wasmgate demo` in a build without the `demo` feature: the example
/// drivers it runs are not in this binary.
#[cfg(not(feature = "demo"))]
pub async fn run(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let _ = listen;
    anyhow::bail!(
        "`wasmgate demo` is not built in: this wasmgate was built without the `demo` feature (the example drivers \
         it runs); build with `--features demo`, or use `wasmgate dev-issuer` and your own drivers"
    )
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
