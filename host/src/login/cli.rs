//! The commands: `wasmgate login`, `wasmgate token print`, `wasmgate call`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::flows::{self, DevicePrompt};
use super::http::HttpClient;
use super::store::{CredentialsStore, Entry, Grant, unix_now};
use super::{access_token, gateway_key, read_secret_file};

/// Which gateway and which credentials file.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The gateway's URL (HTTPS, or HTTP on loopback).
    #[arg(long, env = "WASMGATE_GATEWAY")]
    pub gateway: String,
    /// The credentials file [default: $XDG_CONFIG_HOME/wasmgate/credentials.json].
    #[arg(long, env = "WASMGATE_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
}

impl Target {
    fn resolve(&self) -> anyhow::Result<(String, CredentialsStore)> {
        let key = gateway_key(&self.gateway)?;
        let path = match &self.credentials {
            Some(p) => p.clone(),
            None => CredentialsStore::default_path()?,
        };
        Ok((key, CredentialsStore::new(path)))
    }
}

/// `wasmgate login`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub target: Target,
    /// Use the client-credentials grant (for CI) instead of the device flow.
    #[arg(long)]
    pub client_credentials: bool,
    /// The client id for --client-credentials [default: the gateway's].
    #[arg(long, requires = "client_credentials")]
    pub client_id: Option<String>,
    /// A file holding the client secret, for --client-credentials. Its path
    /// (not the secret) is stored, to renew tokens later.
    #[arg(long, requires = "client_credentials")]
    pub client_secret_file: Option<PathBuf>,
}

/// `wasmgate token print`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenPrintArgs {
    #[command(flatten)]
    pub target: Target,
}

/// `wasmgate call`.
#[derive(Debug, Clone, clap::Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub target: Target,
    /// The HTTP method [default: GET, or POST with --data].
    #[arg(short = 'X', long = "request")]
    pub method: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The request body (sent as application/json unless -H sets a
    /// content-type).
    #[arg(short = 'd', long = "data")]
    pub data: Option<String>,
    /// The path (and query) on the gateway, e.g. `/v1/sandboxes`.
    pub path: String,
}

/// `wasmgate login --gateway URL`: fetches the gateway's login settings,
/// runs the device flow (or client credentials) and stores the tokens.
pub async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let (gateway, store) = args.target.resolve()?;
    let http = HttpClient::new()?;
    let settings = flows::fetch_settings(&http, &gateway).await?;
    let endpoints = flows::endpoints(&http, &settings).await?;
    let (grant, client_id, client_secret_file, tokens) = if args.client_credentials {
        let file = args.client_secret_file.context("--client-credentials needs --client-secret-file")?;
        let file = std::path::absolute(&file).with_context(|| format!("resolve {}", file.display()))?;
        let secret = read_secret_file(&file)?;
        let client_id = args.client_id.unwrap_or_else(|| settings.client_id.clone());
        let tokens = flows::client_credentials(
            &http,
            &endpoints.token,
            &client_id,
            &secret,
            &settings.scopes,
            settings.audience.as_deref(),
        )
        .await?;
        (Grant::ClientCredentials, client_id, Some(file), tokens)
    } else {
        let tokens = flows::device_flow(&http, &endpoints, &settings, |p| show_prompt(&gateway, p)).await?;
        (Grant::DeviceCode, settings.client_id.clone(), None, tokens)
    };
    let now = unix_now();
    let entry = Entry {
        grant,
        issuer: endpoints.issuer.clone(),
        token_endpoint: endpoints.token.to_string(),
        client_id,
        client_secret_file,
        scopes: settings.scopes.clone(),
        audience: settings.audience.clone(),
        access_token: tokens.access_token,
        token_type: tokens.token_type,
        expires_at: tokens.expires_in.map(|d| now.saturating_add(d.as_secs())),
        refresh_token: tokens.refresh_token,
        updated_at: now,
    };
    let lifetime = entry.expires_at.map(|e| format!(", access token valid for {} s", e - now)).unwrap_or_default();
    let refresh = if entry.refresh_token.is_some() { ", with a refresh token" } else { "" };
    let lock = store.lock().await?;
    let mut credentials = lock.read()?;
    credentials.gateways.insert(gateway.clone(), entry);
    lock.write(&credentials)?;
    drop(lock);
    eprintln!("Logged in to {gateway}{lifetime}{refresh}. Credentials saved to {}.", store.path().display());
    Ok(ExitCode::SUCCESS)
}

fn show_prompt(gateway: &str, p: &DevicePrompt) {
    let mut text = format!("To log in to {gateway}, open {} and enter the code: {}\n", p.verification_uri, p.user_code);
    if let Some(complete) = &p.verification_uri_complete {
        text.push_str(&format!("  (or open {complete})\n"));
    }
    text.push_str(&format!("Waiting for approval (the code expires in {} s)...\n", p.expires_in.as_secs()));
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// `wasmgate token print --gateway URL`: a valid access token on stdout,
/// renewed first if needed.
pub async fn token_print(args: TokenPrintArgs) -> anyhow::Result<ExitCode> {
    let (gateway, store) = args.target.resolve()?;
    let http = HttpClient::new()?;
    let token = access_token(&http, &store, &gateway).await?;
    println!("{}", token.expose());
    Ok(ExitCode::SUCCESS)
}

/// `wasmgate call --gateway URL PATH`: one HTTP call through the gateway
/// with the stored bearer token. The status line goes to stderr, the body to
/// stdout; exits 2 on a status of 400 or more.
pub async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let (gateway, store) = args.target.resolve()?;
    anyhow::ensure!(args.path.starts_with('/'), "the path must start with '/' (got {:?})", args.path);
    let method = match &args.method {
        Some(m) => http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| anyhow::anyhow!("{m:?} is not an HTTP method"))?,
        None if args.data.is_some() => http::Method::POST,
        None => http::Method::GET,
    };
    let mut headers = http::HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h.split_once(':').with_context(|| format!("header {h:?} is not `Name: value`"))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("header {h:?} has an invalid name"))?;
        anyhow::ensure!(name != http::header::AUTHORIZATION, "the authorization header is set from the stored token");
        let value = http::HeaderValue::from_str(value.trim()).with_context(|| format!("header {h:?}"))?;
        headers.append(name, value);
    }
    if args.data.is_some() && !headers.contains_key(http::header::CONTENT_TYPE) {
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    }

    let http = HttpClient::new()?;
    let token = access_token(&http, &store, &gateway).await?;
    let mut request = http
        .reqwest()
        .request(method, format!("{gateway}{}", args.path))
        .headers(headers)
        .bearer_auth(token.expose())
        .timeout(Duration::from_secs(300));
    if let Some(body) = args.data {
        request = request.body(body);
    }
    let mut response = request.send().await.with_context(|| format!("call {gateway}{}", args.path))?;
    let status = response.status();
    eprintln!("HTTP {status}");
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = response.chunk().await.context("read the response")? {
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok(if status.as_u16() >= 400 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
