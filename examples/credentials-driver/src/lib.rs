//! The reference wasmgate credentials driver.
//!
//! It serves `credentials.v1.CredentialsDriver` and `grpc.health.v1.Health`
//! on a Unix socket, answering from two kinds of source:
//!
//! - [`statics`]: tokens from a YAML file with expiry, re-read when the file
//!   (or a Kubernetes `..data` symlink swap) changes;
//! - [`oauth`]: OAuth2 client credentials from a token endpoint, cached and
//!   refreshed ahead of expiry, one token request for many concurrent callers.
//!
//! Tokens are held in [`token::Token`], whose `Debug` and `Display` never show
//! them, and are never logged.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use wasmgate_proto::credentials::credentials_driver_server::CredentialsDriverServer;

pub mod config;
pub mod oauth;
pub mod service;
pub mod statics;
pub mod token;

pub use config::Config;
pub use service::CredentialsService;

/// The gRPC service name, reported `SERVING` by the health service (as is `""`).
pub const SERVICE_NAME: &str = <CredentialsDriverServer<CredentialsService> as NamedService>::NAME;

/// Why the driver cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The static credentials file.
    #[error(transparent)]
    Static(#[from] statics::StaticError),
    /// An OAuth2 source.
    #[error("oauth2 source {name}: {source}")]
    OAuth {
        /// The credential name.
        name: String,
        /// The error.
        source: oauth::OAuthError,
    },
}

/// A service built from a configuration, with the folder watch that keeps its
/// static credentials current (dropped, it stops).
#[derive(Debug)]
pub struct Driver {
    /// The gRPC service.
    pub service: CredentialsService,
    /// The static file's folder watch, if a static file is configured.
    pub watch: Option<statics::Watch>,
}

impl Driver {
    /// Loads the sources of `config` and starts watching the static file.
    /// Must be called within a Tokio runtime.
    pub fn start(config: &Config) -> Result<Self, StartError> {
        let (statics, watch) = match &config.static_file {
            Some(s) => {
                let creds = statics::StaticCredentials::load(&s.file)?;
                let watch = creds.watch(Duration::from_millis(s.debounce_ms))?;
                (Some(creds), Some(watch))
            }
            None => (None, None),
        };
        let oauth = config
            .oauth2
            .iter()
            .map(|o| {
                oauth::ClientCredentials::new(o.clone())
                    .map_err(|source| StartError::OAuth { name: o.name.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { service: CredentialsService::new(statics, oauth), watch })
    }
}

/// Binds a Unix listener at `path` with mode `0600`.
///
/// The socket is bound inside a fresh `0700` folder next to `path`, restricted,
/// then renamed into place, so it is never reachable with wider permissions.
/// A stale socket at `path` is replaced; a live one (something accepts on it)
/// or anything that is not a socket is refused. Must be called within a
/// Tokio runtime.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running server", path.display()),
                ));
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let private = tempfile::Builder::new().prefix(".credentials-driver.").tempdir_in(parent)?;
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700))?;
    let staged = private.path().join("sock");
    let listener = UnixListener::bind(&staged)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&staged, path)?;
    Ok(listener)
}

/// Serves `service` and gRPC health on `listener` until `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    service: CredentialsService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    health.set_service_status(SERVICE_NAME, ServingStatus::Serving).await;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(CredentialsDriverServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}
