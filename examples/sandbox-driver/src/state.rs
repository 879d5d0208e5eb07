//! In-memory driver state shared by the gRPC service and the REST facade.
//!
//! Sandboxes live in a [`BTreeMap`] behind a [`RwLock`]; every change is
//! published on a [`broadcast`] channel so `WatchSandboxes` streams can follow
//! it. Mutations publish while still holding the write lock, and watchers
//! subscribe while holding the read lock, so a watcher's snapshot and its event
//! feed never overlap or leave a gap.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::Stream;
use http::HeaderMap;
use tokio::sync::{RwLock, broadcast, watch};
use wasmgate_proto::sandbox::{Caller, DriverConfig, Sandbox, SandboxEvent, SandboxState, sandbox_event::Kind};

/// Default for [`DriverConfig::max_sandboxes`].
pub const DEFAULT_MAX_SANDBOXES: u32 = 100;
/// Default for [`DriverConfig::default_image`].
pub const DEFAULT_IMAGE: &str = "debian:stable";
/// Header carrying the tenant the gateway authorized the call for.
pub const TENANT_HEADER: &str = "x-wasmgate-tenant";
/// Header carrying the subject (caller identity) the gateway authenticated.
pub const SUBJECT_HEADER: &str = "x-wasmgate-subject";
/// Prefix of every identity header the gateway sets.
pub const IDENTITY_HEADER_PREFIX: &str = "x-wasmgate-";

/// How many events a slow watcher may fall behind before it is cut off.
const EVENT_BUFFER: usize = 1024;

/// Why a store operation failed; mapped to gRPC and HTTP status codes by the
/// front ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// No sandbox has the given id.
    NotFound(String),
    /// Creating another sandbox would exceed `max_sandboxes`.
    ResourceExhausted(u32),
    /// The request itself is malformed.
    InvalidArgument(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(id) => write!(f, "sandbox {id:?} not found"),
            Self::ResourceExhausted(max) => {
                write!(f, "sandbox limit reached (max_sandboxes = {max})")
            }
            Self::InvalidArgument(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for tonic::Status {
    fn from(err: StoreError) -> Self {
        let msg = err.to_string();
        match err {
            StoreError::NotFound(_) => Self::not_found(msg),
            StoreError::ResourceExhausted(_) => Self::resource_exhausted(msg),
            StoreError::InvalidArgument(_) => Self::invalid_argument(msg),
        }
    }
}

/// Who asked for a sandbox to be created, from the gateway-set headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Value of `x-wasmgate-tenant`, empty if absent.
    pub tenant: String,
    /// Value of `x-wasmgate-subject`, empty if absent.
    pub subject: String,
}

impl Origin {
    /// Reads tenant and subject from request headers (empty when absent or
    /// not valid UTF-8).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Self { tenant: get(TENANT_HEADER), subject: get(SUBJECT_HEADER) }
    }
}

/// Describes the caller exactly as the request headers arrived: every
/// `x-wasmgate-*` header, whether `authorization` was present, and the sorted
/// names of all headers. Repeated headers keep their last value.
pub fn caller_from_headers(headers: &HeaderMap) -> Caller {
    let mut caller = Caller::default();
    for (name, value) in headers {
        let name = name.as_str().to_ascii_lowercase();
        if name.starts_with(IDENTITY_HEADER_PREFIX) {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            caller.identity_headers.insert(name.clone(), value);
        }
        if name == "authorization" {
            caller.authorization_present = true;
        }
        caller.header_names.push(name);
    }
    caller.header_names.sort();
    caller.header_names.dedup();
    caller
}

/// The default driver configuration.
pub fn default_config() -> DriverConfig {
    DriverConfig { max_sandboxes: DEFAULT_MAX_SANDBOXES, default_image: DEFAULT_IMAGE.to_owned() }
}

#[derive(Debug)]
struct Inner {
    sandboxes: BTreeMap<String, Sandbox>,
    config: DriverConfig,
    next_id: u64,
}

/// A boxed stream of watch events, ending with an error if the watcher fell
/// too far behind.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<SandboxEvent, tonic::Status>> + Send>>;

/// The driver's in-memory state. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    inner: RwLock<Inner>,
    events: broadcast::Sender<SandboxEvent>,
    closing: watch::Sender<bool>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// Creates an empty store with the default configuration.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (closing, _) = watch::channel(false);
        Self {
            inner: RwLock::new(Inner { sandboxes: BTreeMap::new(), config: default_config(), next_id: 1 }),
            events,
            closing,
        }
    }

    /// Creates a running sandbox owned by `origin`'s tenant. An empty `image`
    /// means the configured default image.
    pub async fn create(&self, name: &str, image: &str, origin: &Origin) -> Result<Sandbox, StoreError> {
        if name.is_empty() {
            return Err(StoreError::InvalidArgument("name must not be empty".into()));
        }
        let mut inner = self.inner.write().await;
        let max = inner.config.max_sandboxes;
        if inner.sandboxes.len() >= usize::try_from(max).unwrap_or(usize::MAX) {
            return Err(StoreError::ResourceExhausted(max));
        }
        let id = format!("sbx-{:06}", inner.next_id);
        inner.next_id += 1;
        let image = if image.is_empty() { inner.config.default_image.clone() } else { image.to_owned() };
        let sandbox = Sandbox {
            id: id.clone(),
            name: name.to_owned(),
            tenant: origin.tenant.clone(),
            image,
            state: SandboxState::Running.into(),
            created_at_ms: now_ms(),
            created_by: origin.subject.clone(),
        };
        inner.sandboxes.insert(id, sandbox.clone());
        self.publish(Kind::Created, sandbox.clone());
        Ok(sandbox)
    }

    /// Returns one sandbox by id.
    pub async fn get(&self, id: &str) -> Result<Sandbox, StoreError> {
        self.inner.read().await.sandboxes.get(id).cloned().ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }

    /// Lists sandboxes in id order; a non-empty `tenant` keeps only that
    /// tenant's.
    pub async fn list(&self, tenant: &str) -> Vec<Sandbox> {
        self.inner
            .read()
            .await
            .sandboxes
            .values()
            .filter(|s| tenant.is_empty() || s.tenant == tenant)
            .cloned()
            .collect()
    }

    /// Deletes a sandbox, returning it in state `DELETED`.
    pub async fn delete(&self, id: &str) -> Result<Sandbox, StoreError> {
        let mut inner = self.inner.write().await;
        let mut sandbox = inner.sandboxes.remove(id).ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        sandbox.state = SandboxState::Deleted.into();
        self.publish(Kind::Deleted, sandbox.clone());
        Ok(sandbox)
    }

    /// Returns the current configuration.
    pub async fn config(&self) -> DriverConfig {
        self.inner.read().await.config.clone()
    }

    /// Replaces the configuration. An empty `default_image` is rejected.
    pub async fn set_config(&self, config: DriverConfig) -> Result<DriverConfig, StoreError> {
        if config.default_image.is_empty() {
            return Err(StoreError::InvalidArgument("default_image must not be empty".into()));
        }
        self.inner.write().await.config = config.clone();
        Ok(config)
    }

    /// Streams one `EXISTING` event per current sandbox, then every
    /// `CREATED`/`DELETED` event, stopping after `max_events` events when it
    /// is non-zero, or when the store is [closed](Self::close). Dropping the
    /// stream (the client went away) releases everything it holds.
    pub async fn watch(&self, max_events: u32) -> EventStream {
        let (existing, rx) = {
            let inner = self.inner.read().await;
            let existing: VecDeque<SandboxEvent> =
                inner.sandboxes.values().map(|s| event(Kind::Existing, s.clone())).collect();
            (existing, self.events.subscribe())
        };
        let state = WatchState {
            existing,
            rx,
            closing: self.closing.subscribe(),
            remaining: (max_events > 0).then_some(max_events),
            done: false,
        };
        Box::pin(futures::stream::unfold(state, WatchState::next))
    }

    /// Ends every watch stream, now and in the future; used on shutdown so
    /// long-lived streams do not hold connections open.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn publish(&self, kind: Kind, sandbox: Sandbox) {
        // An error only means nobody is watching.
        let _ = self.events.send(event(kind, sandbox));
    }
}

struct WatchState {
    existing: VecDeque<SandboxEvent>,
    rx: broadcast::Receiver<SandboxEvent>,
    closing: watch::Receiver<bool>,
    remaining: Option<u32>,
    done: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<SandboxEvent, tonic::Status>, Self)> {
        if self.done || self.remaining == Some(0) || *self.closing.borrow() {
            return None;
        }
        let item = match self.existing.pop_front() {
            Some(ev) => Ok(ev),
            None => tokio::select! {
                received = self.rx.recv() => match received {
                    Ok(ev) => Ok(ev),
                    Err(broadcast::error::RecvError::Closed) => return None,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        self.done = true;
                        Err(tonic::Status::resource_exhausted(format!(
                            "watcher fell {n} events behind; re-watch to resync"
                        )))
                    }
                },
                // Fires on close(); a dropped sender also ends the stream.
                _ = self.closing.wait_for(|closed| *closed) => return None,
            },
        };
        if let Some(n) = self.remaining.as_mut() {
            *n -= 1;
        }
        Some((item, self))
    }
}

fn event(kind: Kind, sandbox: Sandbox) -> SandboxEvent {
    SandboxEvent { kind: kind.into(), sandbox: Some(sandbox) }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::StreamExt as _;
    use http::HeaderValue;

    use super::*;

    #[test]
    fn caller_reports_identity_headers_and_sorted_names() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Wasmgate-Tenant", HeaderValue::from_static("acme"));
        headers.insert("zeta", HeaderValue::from_static("1"));
        headers.append("accept", HeaderValue::from_static("a"));
        headers.append("accept", HeaderValue::from_static("b"));
        headers.insert("authorization", HeaderValue::from_static("Bearer x"));
        let caller = caller_from_headers(&headers);
        assert_eq!(caller.identity_headers.len(), 1);
        assert_eq!(caller.identity_headers["x-wasmgate-tenant"], "acme");
        assert!(caller.authorization_present);
        assert_eq!(caller.header_names, ["accept", "authorization", "x-wasmgate-tenant", "zeta"]);
    }

    #[tokio::test]
    async fn closed_store_ends_watch_streams() {
        let store = Store::new();
        let origin = Origin::default();
        store.create("a", "", &origin).await.unwrap();
        let mut stream = store.watch(0).await;
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.kind(), Kind::Existing);
        store.close();
        assert!(stream.next().await.is_none());
        // Streams opened after close end at once.
        assert!(store.watch(0).await.next().await.is_none());
    }

    #[tokio::test]
    async fn ids_are_sequential_and_survive_deletes() {
        let store = Store::new();
        let origin = Origin::default();
        let a = store.create("a", "", &origin).await.unwrap();
        store.delete(&a.id).await.unwrap();
        let b = store.create("b", "", &origin).await.unwrap();
        assert_eq!((a.id.as_str(), b.id.as_str()), ("sbx-000001", "sbx-000002"));
        assert_eq!(store.delete(&a.id).await, Err(StoreError::NotFound(a.id)));
    }
}
