//! The host interface a policy component runs against: the store state of
//! one call, the `host` import (`log`, `get-config`), the memory limiter,
//! the deadline, and WASI with nothing granted (no environment, files,
//! sockets or stdin; clocks frozen). [`add_to_linker`] offers all of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::wit;

/// Log lines one call may write; more are dropped.
const MAX_LOG_LINES_PER_CALL: u32 = 16;
/// Longest log line kept, bytes.
const MAX_LOG_LINE: usize = 1024;
/// Most table elements an instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Adds what a policy component may import to `linker`: WASI (with the
/// empty context of every store) and the `wasmgate:policy/host` interface.
pub(super) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wit::add_host_to_linker(linker)
}

/// Store data of one policy call.
pub(super) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    settings: Arc<Settings>,
    plugin: Arc<str>,
    log_lines: u32,
    /// Epoch ticks the current call has run.
    ticks: u64,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The limits of every store of an engine.
#[derive(Debug, Clone, Copy)]
pub(super) struct StoreLimits {
    /// Epoch ticks a call may run.
    pub(super) deadline_ticks: u64,
    /// Largest linear memory, bytes.
    pub(super) max_memory: usize,
}

/// A store for calls of `plugin` with `settings`, under `limits`: every
/// epoch tick (1 ms) a running call yields to the async runtime, so a slow
/// or looping component never holds a request worker; once its ticks
/// exceed the deadline it traps.
pub(super) fn new_store(
    engine: &Engine,
    limits: StoreLimits,
    settings: Arc<Settings>,
    plugin: Arc<str>,
) -> Store<StoreState> {
    let state = StoreState {
        wasi: empty_wasi(),
        table: ResourceTable::new(),
        limiter: MemoryLimiter {
            max_memory: limits.max_memory,
            largest: 0,
            max_table_elements: MAX_TABLE_ELEMENTS,
            exceeded: false,
        },
        settings,
        plugin,
        log_lines: 0,
        ticks: 0,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    let deadline = limits.deadline_ticks + 1;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut ctx| {
        let state = ctx.data_mut();
        state.ticks += 1;
        if state.ticks >= deadline {
            return Err(Trap::Interrupt.into());
        }
        Ok(wasmtime::UpdateDeadline::Yield(1))
    });
    store
}

/// Readies a store that served earlier calls for the next one: a new
/// deadline and log budget.
pub(super) fn reset_for_call(store: &mut Store<StoreState>) {
    let state = store.data_mut();
    state.ticks = 0;
    state.log_lines = 0;
    store.set_epoch_deadline(1);
}

impl StoreState {
    /// Whether the instance tried to grow past its memory or table cap.
    pub(super) fn limit_exceeded(&self) -> bool {
        self.limiter.exceeded
    }

    /// The largest linear memory of the instance so far, bytes.
    pub(super) fn largest_memory(&self) -> usize {
        self.limiter.largest
    }

    /// `host.log`: at most [`MAX_LOG_LINES_PER_CALL`] lines of at most
    /// [`MAX_LOG_LINE`] bytes per call, tagged with the component's name.
    pub(super) fn log_line(&mut self, level: LogLevel, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            return;
        }
        let mut msg = message;
        if msg.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
        }
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(target: "wasmgate::plugin", plugin, "{msg}"),
            LogLevel::Debug => tracing::debug!(target: "wasmgate::plugin", plugin, "{msg}"),
            LogLevel::Info => tracing::info!(target: "wasmgate::plugin", plugin, "{msg}"),
            LogLevel::Warn => tracing::warn!(target: "wasmgate::plugin", plugin, "{msg}"),
            LogLevel::Error => tracing::error!(target: "wasmgate::plugin", plugin, "{msg}"),
        }
    }

    /// `host.get-config`: the binding's setting `key`.
    pub(super) fn setting(&self, key: &str) -> Option<String> {
        self.settings.0.get(key).cloned()
    }
}

/// The level of a `host.log` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Caps linear memory and tables of one instance and remembers whether the
/// cap was hit, so the failure is reported as what it is.
struct MemoryLimiter {
    max_memory: usize,
    /// The largest linear memory of the instance so far, bytes.
    largest: usize,
    max_table_elements: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} bytes exceeded", self.max_memory);
        }
        self.largest = self.largest.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            self.exceeded = true;
            wasmtime::bail!("table limit exceeded");
        }
        Ok(true)
    }
}

/// A binding's settings as the `host.get-config` import returns them.
#[derive(Debug, Default)]
pub(super) struct Settings(BTreeMap<String, String>);

impl Settings {
    /// Settings from a binding's configuration: strings as they are, other
    /// values as JSON text.
    pub(super) fn from_json(settings: &BTreeMap<String, serde_json::Value>) -> Self {
        Self(
            settings
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect(),
        )
    }

    /// The setting names.
    pub(super) fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}

/// WASI with nothing granted: no environment, arguments, files, sockets or
/// stdin; stdout and stderr discarded; clocks frozen at zero so policy
/// cannot depend on time.
fn empty_wasi() -> WasiCtx {
    WasiCtx::builder()
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false)
        .build()
}

struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
