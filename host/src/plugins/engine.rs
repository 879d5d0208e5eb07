//! The wasmtime engine: the pooling allocator, the linker, the precompile
//! cache, the per-call limits and the epoch ticker that enforces deadlines.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::cache::PrecompileCache;
use super::host::{self, StoreLimits, StoreState};
use super::{Binding, LoadError, Plugin, first_line};
use crate::config::PluginsConfig;

/// How often the epoch advances; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// What every binding of an engine shares.
pub(super) struct EngineShared {
    pub(super) engine: Engine,
    cache: Option<PrecompileCache>,
    linker: Linker<StoreState>,
    /// The limits of every store.
    pub(super) limits: StoreLimits,
    /// Whether idle instances are kept for reuse (`plugins.instance_reuse`).
    pub(super) reuse: bool,
}

/// The wasmtime engine with its linker, limits and epoch ticker.
pub struct PluginEngine {
    shared: Arc<EngineShared>,
    ticker: EpochTicker,
}

impl fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginEngine")
            .field("deadline_ticks", &self.shared.limits.deadline_ticks)
            .field("max_memory", &self.shared.limits.max_memory)
            .finish_non_exhaustive()
    }
}

/// The thread that advances the engine's epoch every [`EPOCH_TICK`]:
/// without it no call ever reaches its deadline (or yields). Started by
/// [`EpochTicker::start`], stopped by [`EpochTicker::shutdown`] or on drop.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread of `engine`.
    fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new().name("wasmgate-epoch".into()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?
        };
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Stops the thread and waits for it; a second call does nothing.
    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl PluginEngine {
    /// Creates the engine: pooling allocator sized from `cfg`, epoch
    /// interruption driven by a 1 ms ticker thread (started here, stopped by
    /// [`PluginEngine::shutdown`] or on drop), and a linker that offers the
    /// `host` interface plus WASI with nothing granted.
    pub fn new(cfg: &PluginsConfig) -> Result<Self, LoadError> {
        let engine = Engine::new(&engine_config(cfg)).map_err(|e| LoadError::Engine(e.to_string()))?;

        let mut linker: Linker<StoreState> = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| LoadError::Engine(e.to_string()))?;

        let cache = match &cfg.cache_dir {
            Some(dir) => Some(PrecompileCache::open(dir, &engine).map_err(|e| LoadError::Engine(e.to_string()))?),
            None => None,
        };

        let tick_ms = EPOCH_TICK.as_millis().max(1) as u64;
        let deadline_ticks = cfg.deadline_ms.div_ceil(tick_ms).max(1);
        let ticker = EpochTicker::start(&engine).map_err(|e| LoadError::Engine(e.to_string()))?;

        Ok(Self {
            shared: Arc::new(EngineShared {
                engine,
                cache,
                linker,
                limits: StoreLimits { deadline_ticks, max_memory: cfg.max_memory_bytes },
                reuse: cfg.instance_reuse,
            }),
            ticker,
        })
    }

    /// Stops the epoch ticker and waits for its thread, as dropping the
    /// engine does. Call it only once no policy call can start: without the
    /// ticker a call never reaches its deadline.
    pub fn shutdown(&mut self) {
        self.ticker.shutdown();
    }

    /// What the engine's bindings share.
    pub(super) fn shared(&self) -> &Arc<EngineShared> {
        &self.shared
    }

    /// Compiles, links, type-checks and pre-instantiates a component, and
    /// instantiates it once to prove instantiation works.
    pub async fn load(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        self.load_hashed(name, bytes, hex::encode(Sha256::digest(bytes))).await
    }

    /// [`PluginEngine::load`] for bytes whose SHA-256 (hex) the caller has
    /// already computed.
    pub(crate) async fn load_hashed(&self, name: &str, bytes: &[u8], sha256: String) -> Result<Arc<Plugin>, LoadError> {
        let component = self.compile(name, bytes, &sha256).await?;
        let pre = self.shared.linker.instantiate_pre(&component).map_err(|e| LoadError::Link {
            name: name.to_owned(),
            detail: format!("{} (a policy component may import only wasmgate:policy/host and WASI)", first_line(&e)),
        })?;
        let plugin = Plugin::new(name, sha256, &component, pre, &self.shared.engine)?;
        // Instantiate once with empty settings: catches traps in start
        // functions and exports whose function types do not match.
        let probe = Binding::new(self, Arc::new(plugin), &BTreeMap::new());
        probe
            .check_exports()
            .await
            .map_err(|e| LoadError::Instantiate { name: name.to_owned(), detail: e.to_string() })?;
        Ok(probe.plugin().clone())
    }

    /// Compiles `bytes` on a blocking thread (compilation takes from
    /// milliseconds to seconds and must not stall request workers), or
    /// takes the compilation from the precompile cache.
    async fn compile(&self, name: &str, bytes: &[u8], sha256: &str) -> Result<Component, LoadError> {
        let shared = self.shared.clone();
        let (bytes, sha256) = (bytes.to_vec(), sha256.to_owned());
        let compiled = tokio::task::spawn_blocking(move || {
            if let Some(cache) = &shared.cache
                && let Some(c) = cache.get(&shared.engine, &sha256)
            {
                return Ok(c);
            }
            let component = Component::new(&shared.engine, &bytes)?;
            if let Some(cache) = &shared.cache {
                cache.put(&sha256, &component);
            }
            Ok::<_, wasmtime::Error>(component)
        })
        .await;
        match compiled {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(LoadError::Compile { name: name.to_owned(), detail: first_line(&e) }),
            Err(e) => Err(LoadError::Compile { name: name.to_owned(), detail: format!("compiler task failed: {e}") }),
        }
    }

    /// Reads and loads a component file.
    pub async fn load_file(&self, path: &std::path::Path) -> Result<Arc<Plugin>, LoadError> {
        let bytes = std::fs::read(path)
            .map_err(|e| LoadError::Read { path: path.display().to_string(), detail: e.to_string() })?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        self.load(&name, &bytes).await
    }
}

/// The engine configuration: epoch interruption, and a pooling allocator
/// sized from `cfg`.
fn engine_config(cfg: &PluginsConfig) -> wasmtime::Config {
    let mut pool = PoolingAllocationConfig::default();
    let instances = cfg.max_instances.max(8);
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_memory_size(cfg.max_memory_bytes)
        .table_elements(20_000);
    // With PAGEMAP_SCAN (Linux 6.7+) a slot is reset by restoring only
    // its dirty pages and stays resident, which halves the cost of a
    // fresh instance here; without it, keeping pages resident means a
    // memset of the whole range, which costs more than it saves.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(wasmtime::Enabled::Yes).linear_memory_keep_resident(4 << 20).table_keep_resident(64 << 10);
    }

    let mut config = wasmtime::Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .max_wasm_stack(512 * 1024)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
}
