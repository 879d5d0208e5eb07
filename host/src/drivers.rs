//! Drivers on Unix sockets: one connect-with-retry helper for all of them.
//!
//! A [`Driver`] is a lazily (re)connecting tonic [`Channel`] over a Unix
//! socket, a deadline for every call, and a background task that checks the
//! driver's gRPC health (`grpc.health.v1`) and so keeps its readiness for
//! `/readyz`. A driver that is down fails calls fast with a typed
//! [`DriverError`] (the server answers 503 / `UNAVAILABLE`) while the task
//! reconnects in the background with back-off; the same channel recovers when
//! the driver comes back. [`Drivers`] starts every configured driver.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::config::{DriverConfig, DriversConfig, RetryConfig};
use crate::retry::Backoff;
use crate::tasks::Tasks;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

/// Retry with exponential back-off: `attempts` tries, the first retry after
/// `interval`, doubling up to `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries before giving up (at start-up; background retries never stop).
    pub attempts: u32,
    /// First back-off and longest back-off.
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// The pause after the `failures`-th consecutive failure (1-based):
    /// `interval · 2^(failures-1)`, at most `max_backoff`.
    pub fn backoff(&self, failures: u32) -> Duration {
        self.backoff.delay(failures)
    }
}

impl From<&RetryConfig> for RetryPolicy {
    fn from(c: &RetryConfig) -> Self {
        Self {
            attempts: c.attempts,
            backoff: Backoff {
                base: Duration::from_millis(c.interval_ms),
                cap: Duration::from_millis(c.max_backoff_ms),
            },
        }
    }
}

/// Why a driver call failed. Messages never carry credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The driver cannot be reached (socket missing, refused, connection lost).
    #[error("driver {driver} is unavailable: {reason}")]
    Unavailable {
        /// The driver's name.
        driver: String,
        /// Why, for the log.
        reason: String,
    },
    /// The driver did not answer within the deadline (hung or slow).
    #[error("driver {driver} did not answer within {timeout:?}")]
    DeadlineExceeded {
        /// The driver's name.
        driver: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The driver answered with a gRPC error status.
    #[error("driver {driver} answered {code:?}: {message}")]
    Status {
        /// The driver's name.
        driver: String,
        /// The status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
}

impl DriverError {
    /// The `result` label of `wasmgate_driver_calls_total`: `unavailable`,
    /// `deadline_exceeded` or `error` (the driver answered an error status).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "unavailable",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::Status { .. } => "error",
        }
    }
}

/// A driver's readiness, for `/readyz` and the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverReadiness {
    /// The driver's name (`credentials`).
    pub name: String,
    /// Its socket.
    pub socket: PathBuf,
    /// Whether the gateway is not ready while this driver is down.
    pub required: bool,
    /// Whether the last health check (or call) succeeded.
    pub ready: bool,
    /// The last failure, while not ready.
    pub last_error: Option<String>,
    /// When readiness last changed or was checked.
    pub checked_at: Option<SystemTime>,
}

/// A lazily connecting tonic channel to the Unix socket at `socket`.
///
/// No connection is made until the first call; after a failure the next call
/// connects again, so the channel recovers when the driver comes back.
/// `connect_timeout` bounds one connection attempt. Must be called within a
/// Tokio runtime.
pub fn uds_channel(socket: &Path, connect_timeout: Duration) -> Channel {
    let path: Arc<Path> = Arc::from(socket);
    // The URI is required by the HTTP/2 client but never resolved.
    Endpoint::from_static("http://driver.invalid").connect_timeout(connect_timeout).connect_with_connector_lazy(
        tower::service_fn(move |_: Uri| {
            let path = Arc::clone(&path);
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(&*path).await?)) }
        }),
    )
}

#[derive(Debug)]
struct Health {
    last_error: Option<String>,
    checked_at: Option<SystemTime>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    socket: PathBuf,
    required: bool,
    timeout: Duration,
    retry: RetryPolicy,
    health_interval: Duration,
    channel: Channel,
    ready: AtomicBool,
    health: Mutex<Health>,
    kick: Notify,
}

impl Shared {
    fn set(&self, result: Result<(), String>) {
        let ready = result.is_ok();
        let was = self.ready.swap(ready, Ordering::AcqRel);
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        h.checked_at = Some(SystemTime::now());
        match result {
            Ok(()) => {
                if !was {
                    tracing::info!(driver = %self.name, "driver ready");
                }
                h.last_error = None;
            }
            Err(e) => {
                if was || h.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(driver = %self.name, error = %e, "driver not ready");
                }
                h.last_error = Some(e);
            }
        }
    }

    /// One gRPC health check (`""`, the server as a whole). A driver without
    /// the health service counts as ready once it answers at all.
    async fn check(&self) -> Result<(), String> {
        let mut client = HealthClient::new(self.channel.clone());
        let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
        request.set_timeout(self.timeout);
        match tokio::time::timeout(self.timeout, client.check(request)).await {
            Err(_) => Err(format!("health check timed out after {:?}", self.timeout)),
            Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
            Ok(Ok(r)) => Err(format!("health status {}", r.get_ref().status().as_str_name())),
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => Ok(()),
            Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded || caused_by::<tonic::TimeoutExpired>(&s) => {
                Err(format!("health check timed out after {:?}", self.timeout))
            }
            Ok(Err(s)) => Err(status_reason(&s)),
        }
    }

    /// The health watch; ends when the last clone of the driver is dropped.
    async fn watch(this: std::sync::Weak<Self>) {
        let mut failures = 0u32;
        while let Some(shared) = this.upgrade() {
            let result = shared.check().await;
            failures = if result.is_ok() { 0 } else { failures.saturating_add(1) };
            shared.set(result);
            let wait = if failures == 0 { shared.health_interval } else { shared.retry.backoff(failures) };
            let kicked = Arc::clone(&shared);
            drop(shared);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = kicked.kick.notified() => {}
            }
        }
    }
}

/// Transport errors carry the cause in their source chain; tonic's own
/// message is just "transport error".
fn status_reason(s: &tonic::Status) -> String {
    let mut reason = format!("{:?}: {}", s.code(), s.message());
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(s);
    while let Some(e) = source {
        reason.push_str(": ");
        reason.push_str(&e.to_string());
        source = e.source();
    }
    reason
}

/// One driver: channel, deadline, and background health watch. Clones share
/// them; the watch stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Driver {
    shared: Arc<Shared>,
}

impl Driver {
    /// The driver named `name` (for logs and readiness), with its lazy
    /// channel; nothing runs until [`start`](Self::start). Must be called
    /// within a Tokio runtime.
    pub fn new(name: impl Into<String>, cfg: &DriverConfig) -> Self {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let shared = Arc::new(Shared {
            name: name.into(),
            socket: cfg.socket.clone(),
            required: cfg.required,
            timeout,
            retry: RetryPolicy::from(&cfg.connect),
            health_interval: Duration::from_millis(cfg.health_interval_ms),
            channel: uds_channel(&cfg.socket, timeout),
            ready: AtomicBool::new(false),
            health: Mutex::new(Health { last_error: Some("not checked yet".into()), checked_at: None }),
            kick: Notify::new(),
        });
        Self { shared }
    }

    /// Starts the health watch on `tasks`; it checks at once. Never waits
    /// for the driver; see [`wait_ready`](Self::wait_ready).
    pub fn start(&self, tasks: &Tasks) {
        tasks.spawn("driver health", Shared::watch(Arc::downgrade(&self.shared)));
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The driver's name.
    pub fn name(&self) -> &str {
        &self.shared().name
    }

    /// The channel, for a generated client. Prefer [`call`](Self::call),
    /// which applies the deadline and maps errors.
    pub fn channel(&self) -> Channel {
        self.shared().channel.clone()
    }

    /// The deadline of every call.
    pub fn timeout(&self) -> Duration {
        self.shared().timeout
    }

    /// Whether the last health check (or call) succeeded.
    pub fn is_ready(&self) -> bool {
        self.shared().ready.load(Ordering::Acquire)
    }

    /// The driver's readiness.
    pub fn readiness(&self) -> DriverReadiness {
        let s = self.shared();
        let h = s.health.lock().unwrap_or_else(PoisonError::into_inner);
        DriverReadiness {
            name: s.name.clone(),
            socket: s.socket.clone(),
            required: s.required,
            ready: s.ready.load(Ordering::Acquire),
            last_error: h.last_error.clone(),
            checked_at: h.checked_at,
        }
    }

    /// Waits until the driver is healthy, checking up to `connect.attempts`
    /// times with back-off. The background watch goes on either way.
    pub async fn wait_ready(&self) -> Result<(), DriverError> {
        let s = self.shared();
        let mut last = String::new();
        for attempt in 1..=s.retry.attempts {
            if self.is_ready() {
                return Ok(());
            }
            match s.check().await {
                Ok(()) => {
                    s.set(Ok(()));
                    return Ok(());
                }
                Err(e) => last = e,
            }
            if attempt < s.retry.attempts {
                tokio::time::sleep(s.retry.backoff(attempt)).await;
            }
        }
        Err(DriverError::Unavailable { driver: s.name.clone(), reason: last })
    }

    /// A request carrying the deadline (`grpc-timeout`).
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.set_timeout(self.timeout());
        r
    }

    /// Runs one call of gRPC method `method` (`ResolveCredential`, for the
    /// metrics) with the deadline and maps its failure. A transport
    /// failure marks the driver not ready and wakes the health watch at once.
    pub async fn call<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, DriverError> {
        let s = self.shared();
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(s.timeout, call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Err(_) => Err(DriverError::DeadlineExceeded { driver: s.name.clone(), timeout: s.timeout }),
            Ok(Err(status)) => Err(self.map_status(&status)),
        };
        let outcome = result.as_ref().map_or_else(DriverError::kind, |_| "ok");
        crate::metrics::driver_call(&s.name, method, outcome, started.elapsed().as_secs_f64());
        result
    }

    fn map_status(&self, status: &tonic::Status) -> DriverError {
        let s = self.shared();
        let driver = s.name.clone();
        match status.code() {
            // The channel enforces the `grpc-timeout` we send, as Cancelled.
            tonic::Code::DeadlineExceeded => DriverError::DeadlineExceeded { driver, timeout: s.timeout },
            _ if caused_by::<tonic::TimeoutExpired>(status) => {
                DriverError::DeadlineExceeded { driver, timeout: s.timeout }
            }
            code if code == tonic::Code::Unavailable || is_transport(status) => {
                let reason = status_reason(status);
                if is_transport(status) {
                    s.set(Err(reason.clone()));
                    s.kick.notify_one();
                }
                DriverError::Unavailable { driver, reason }
            }
            code => DriverError::Status { driver, code, message: status.message().to_owned() },
        }
    }
}

/// Whether a status was produced by the client transport (no answer from
/// the driver), rather than sent by the driver.
fn is_transport(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// Whether `E` is in the status's source chain.
fn caused_by<E: std::error::Error + 'static>(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<E>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Every configured driver, started. Drivers only connect and watch
/// health; what speaks a driver's protocol (the credential resolver, the
/// forwarder) is built by whoever starts the gateway.
#[derive(Debug, Default)]
pub struct Drivers {
    drivers: Vec<Driver>,
    credentials: Option<Driver>,
}

impl Drivers {
    /// The configured drivers (see [`Driver::new`]); nothing runs until
    /// [`start`](Self::start). Must be called within a Tokio runtime.
    pub fn new(cfg: &DriversConfig) -> Self {
        let mut drivers = Vec::new();
        let credentials = cfg.credentials.as_ref().map(|d| {
            let driver = Driver::new("credentials", d);
            drivers.push(driver.clone());
            driver
        });
        drivers.extend(cfg.upstreams.iter().map(|(name, d)| Driver::new(name.clone(), d)));
        Self { drivers, credentials }
    }

    /// Starts every driver's health watch; never waits for them.
    pub fn start(&self, tasks: &Tasks) {
        self.drivers.iter().for_each(|d| d.start(tasks));
    }

    /// The credentials driver, when one is configured.
    pub fn credentials(&self) -> Option<&Driver> {
        self.credentials.as_ref()
    }

    /// Every driver's readiness.
    pub fn readiness(&self) -> Vec<DriverReadiness> {
        self.drivers.iter().map(Driver::readiness).collect()
    }

    /// Whether every required driver is ready.
    pub fn is_ready(&self) -> bool {
        self.drivers.iter().all(|d| !d.shared().required || d.is_ready())
    }

    /// Waits for every required driver (see [`Driver::wait_ready`]); the
    /// first that stays down is the error.
    pub async fn wait_ready(&self) -> Result<(), DriverError> {
        for d in self.drivers.iter().filter(|d| d.shared().required) {
            d.wait_ready().await?;
        }
        Ok(())
    }
}
