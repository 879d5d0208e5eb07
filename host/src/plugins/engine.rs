//! The wasmtime engine, compiled plugins and per-call execution.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Instance, InstancePre, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{
    self, Host, LogLevel, PolicyBundle, authorizer, claims_mapper, classifier, credential_policy, wit,
};
use super::cache::PrecompileCache;
use super::validate;
use super::{LoadError, PolicyError};
use crate::config::PluginsConfig;
use crate::identity as id;
use crate::metrics;

/// What [`Binding::settle`] decided about a call.
enum Settled<R> {
    Done(Result<R, PolicyError>),
    Retry,
}

/// Runs `$body` (an expression using `$w: &mut Warm`, awaited) on an
/// instance of `$binding`, once more on a fresh instance if
/// [`Binding::settle`] says so; evaluates to `Result<_, PolicyError>`.
macro_rules! on_instance {
    ($binding:expr, |$w:ident| $body:expr) => {{
        let binding = $binding;
        match binding.acquire().await {
            Err(e) => Err(e),
            Ok((mut instance, reused)) => {
                let first = {
                    let $w = &mut instance;
                    $body.await
                };
                match binding.settle(instance, reused, first) {
                    Settled::Done(r) => r,
                    Settled::Retry => match binding.fresh().await {
                        Err(e) => Err(e),
                        Ok(mut instance) => {
                            let second = {
                                let $w = &mut instance;
                                $body.await
                            };
                            match binding.settle(instance, false, second) {
                                Settled::Done(r) => r,
                                Settled::Retry => unreachable!("a fresh instance is never retried"),
                            }
                        }
                    },
                }
            }
        }
    }};
}

/// How often the epoch advances; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Log lines one call may write; more are dropped.
const MAX_LOG_LINES_PER_CALL: u32 = 16;
/// Longest log line kept, bytes.
const MAX_LOG_LINE: usize = 1024;

/// A policy interface a component can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interface {
    /// `classifier`
    Classifier,
    /// `claims-mapper`
    ClaimsMapper,
    /// `authorizer`
    Authorizer,
    /// `credential-policy`
    CredentialPolicy,
}

impl Interface {
    /// Every interface, in WIT order.
    pub const ALL: [Interface; 4] =
        [Interface::Classifier, Interface::ClaimsMapper, Interface::Authorizer, Interface::CredentialPolicy];

    /// The fully qualified WIT name.
    pub fn wit_name(self) -> &'static str {
        match self {
            Self::Classifier => "wasmgate:policy/classifier@0.1.0",
            Self::ClaimsMapper => "wasmgate:policy/claims-mapper@0.1.0",
            Self::Authorizer => "wasmgate:policy/authorizer@0.1.0",
            Self::CredentialPolicy => "wasmgate:policy/credential-policy@0.1.0",
        }
    }

    /// The short name used in config and messages.
    pub fn role(self) -> &'static str {
        match self {
            Self::Classifier => "classifier",
            Self::ClaimsMapper => "claims-mapper",
            Self::Authorizer => "authorizer",
            Self::CredentialPolicy => "credential-policy",
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.role())
    }
}

/// Which policy interfaces a component exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exports(Vec<Interface>);

impl Exports {
    /// Whether `iface` is exported.
    pub fn has(&self, iface: Interface) -> bool {
        self.0.contains(&iface)
    }

    /// The exported interfaces.
    pub fn iter(&self) -> impl Iterator<Item = Interface> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for Exports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        let names: Vec<_> = self.0.iter().map(|i| i.role()).collect();
        f.write_str(&names.join(", "))
    }
}

/// Store data of one policy call.
struct StoreState {
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

impl wit::Host for StoreState {}

impl Host for StoreState {
    async fn log(&mut self, level: LogLevel, message: String) {
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

    async fn get_config(&mut self, key: String) -> Option<String> {
        self.settings.0.get(&key).cloned()
    }
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
struct Settings(BTreeMap<String, String>);

impl Settings {
    fn from_json(settings: &BTreeMap<String, serde_json::Value>) -> Self {
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
}

struct EngineShared {
    engine: Engine,
    cache: Option<PrecompileCache>,
    linker: Linker<StoreState>,
    deadline_ticks: u64,
    max_memory: usize,
    reuse: bool,
}

/// The wasmtime engine with its linker, limits and epoch ticker.
pub struct PluginEngine {
    shared: Arc<EngineShared>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginEngine")
            .field("deadline_ticks", &self.shared.deadline_ticks)
            .field("max_memory", &self.shared.max_memory)
            .finish_non_exhaustive()
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl PluginEngine {
    /// Creates the engine: pooling allocator sized from `cfg`, epoch
    /// interruption driven by a 1 ms ticker thread, and a linker that offers
    /// the `host` interface plus WASI with nothing granted.
    pub fn new(cfg: &PluginsConfig) -> Result<Self, LoadError> {
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
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(4 << 20)
                .table_keep_resident(64 << 10);
        }

        let mut config = wasmtime::Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .max_wasm_stack(512 * 1024)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;

        let mut linker: Linker<StoreState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| LoadError::Engine(e.to_string()))?;
        PolicyBundle::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Engine(e.to_string()))?;

        let cache = match &cfg.cache_dir {
            Some(dir) => Some(PrecompileCache::open(dir, &engine).map_err(|e| LoadError::Engine(e.to_string()))?),
            None => None,
        };

        let tick_ms = EPOCH_TICK.as_millis().max(1) as u64;
        let deadline_ticks = cfg.deadline_ms.div_ceil(tick_ms).max(1);
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wasmgate-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| LoadError::Engine(e.to_string()))?
        };

        Ok(Self {
            shared: Arc::new(EngineShared {
                engine,
                cache,
                linker,
                deadline_ticks,
                max_memory: cfg.max_memory_bytes,
                reuse: cfg.instance_reuse,
            }),
            stop,
            ticker: Some(ticker),
        })
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

        let classifier = classifier::GuestIndices::new(&pre).ok();
        let mapper = claims_mapper::GuestIndices::new(&pre).ok();
        let authorizer = authorizer::GuestIndices::new(&pre).ok();
        let credential = credential_policy::GuestIndices::new(&pre).ok();
        let mut exports = Vec::new();
        for (iface, present) in [
            (Interface::Classifier, classifier.is_some()),
            (Interface::ClaimsMapper, mapper.is_some()),
            (Interface::Authorizer, authorizer.is_some()),
            (Interface::CredentialPolicy, credential.is_some()),
        ] {
            if present {
                exports.push(iface);
            }
        }
        if exports.is_empty() {
            let found: Vec<String> =
                component.component_type().exports(&self.shared.engine).map(|(n, _)| n.to_owned()).collect();
            let expected: Vec<&str> = Interface::ALL.iter().map(|i| i.wit_name()).collect();
            return Err(LoadError::WrongWorld {
                name: name.to_owned(),
                detail: format!(
                    "exports none of the policy interfaces (expected at least one of {}; it exports {})",
                    expected.join(", "),
                    if found.is_empty() { "nothing".to_owned() } else { found.join(", ") }
                ),
            });
        }

        let plugin = Plugin {
            name: name.into(),
            sha256,
            last_error: std::sync::Mutex::default(),
            exports: Exports(exports),
            pre,
            classifier,
            mapper,
            authorizer,
            credential,
        };
        // Instantiate once with empty settings: catches traps in start
        // functions and exports whose function types do not match.
        let probe = Binding::new(self, Arc::new(plugin), &BTreeMap::new());
        let p = &probe.plugin;
        let probed: Result<(), PolicyError> = on_instance!(&probe, |w| async {
            if let Some(i) = &p.classifier {
                i.load(&mut w.store, &w.instance)?;
            }
            if let Some(i) = &p.mapper {
                i.load(&mut w.store, &w.instance)?;
            }
            if let Some(i) = &p.authorizer {
                i.load(&mut w.store, &w.instance)?;
            }
            if let Some(i) = &p.credential {
                i.load(&mut w.store, &w.instance)?;
            }
            Ok(())
        });
        probed.map_err(|e| LoadError::Instantiate { name: name.to_owned(), detail: e.to_string() })?;
        Ok(probe.plugin)
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

/// A compiled, linked and pre-instantiated component.
pub struct Plugin {
    name: Arc<str>,
    sha256: String,
    /// The last failed call: what happened, and when (Unix seconds).
    last_error: std::sync::Mutex<Option<(String, u64)>>,
    exports: Exports,
    pre: InstancePre<StoreState>,
    classifier: Option<classifier::GuestIndices>,
    mapper: Option<claims_mapper::GuestIndices>,
    authorizer: Option<authorizer::GuestIndices>,
    credential: Option<credential_policy::GuestIndices>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("exports", &self.exports)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The component's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the component bytes, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The policy interfaces it exports.
    pub fn exports(&self) -> &Exports {
        &self.exports
    }

    /// The last call of this component that failed (fail closed), and when
    /// (Unix seconds).
    pub fn last_error(&self) -> Option<(String, u64)> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn record_failure(&self, err: &PolicyError) {
        metrics::policy_failure(&self.name, err.kind());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some((err.to_string(), now));
        }
    }
}

/// A plugin serving one role with its settings.
#[derive(Clone)]
pub struct Binding {
    plugin: Arc<Plugin>,
    settings: Arc<Settings>,
    engine: Arc<EngineShared>,
    /// Idle instances kept for reuse (only when `plugins.instance_reuse`).
    warm: Arc<std::sync::Mutex<Vec<Warm>>>,
    /// Headers a credential policy may not inject credentials as.
    reserved: Arc<validate::ReservedHeaders>,
}

/// An instance with its store, and its exports once looked up (the lookup
/// type-checks the export, which need not be repeated for every call).
struct Warm {
    store: Store<StoreState>,
    instance: Instance,
    classifier: Option<classifier::Guest>,
    mapper: Option<claims_mapper::Guest>,
    authorizer: Option<authorizer::Guest>,
    credential: Option<credential_policy::Guest>,
}

impl Warm {
    fn new(store: Store<StoreState>, instance: Instance) -> Self {
        Self { store, instance, classifier: None, mapper: None, authorizer: None, credential: None }
    }
}

/// The export `slot` caches, looked up through `load` the first time.
fn export<G: Clone>(slot: &mut Option<G>, load: impl FnOnce() -> wasmtime::Result<G>) -> wasmtime::Result<G> {
    if let Some(g) = slot {
        return Ok(g.clone());
    }
    let g = load()?;
    *slot = Some(g.clone());
    Ok(g)
}

/// Idle instances kept per binding at most.
const MAX_WARM_PER_BINDING: usize = 64;

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("plugin", &self.plugin.name)
            .field("settings", &self.settings.0.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Binding {
    /// Binds `plugin` with `settings`.
    pub fn new(engine: &PluginEngine, plugin: Arc<Plugin>, settings: &BTreeMap<String, serde_json::Value>) -> Self {
        Self {
            plugin,
            settings: Arc::new(Settings::from_json(settings)),
            engine: engine.shared.clone(),
            warm: Arc::default(),
            reserved: Arc::default(),
        }
    }

    /// The same binding, refusing credentials injected as the headers
    /// `reserved` names (by default those of the default configuration).
    pub(crate) fn with_reserved_headers(mut self, reserved: Arc<validate::ReservedHeaders>) -> Self {
        self.reserved = reserved;
        self
    }

    /// The bound plugin.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Checks that the plugin exports `iface`.
    pub fn require(&self, iface: Interface) -> Result<(), LoadError> {
        if self.plugin.exports.has(iface) {
            Ok(())
        } else {
            Err(LoadError::WrongWorld {
                name: self.plugin.name.to_string(),
                detail: format!(
                    "is bound as {} but does not export {} (it exports: {})",
                    iface.role(),
                    iface.wit_name(),
                    self.plugin.exports
                ),
            })
        }
    }

    /// An instance with the deadline and memory cap applied, and whether it
    /// served earlier calls: an idle one that completed its previous calls
    /// cleanly when reuse is on, otherwise a fresh one in a fresh store.
    async fn acquire(&self) -> Result<(Warm, bool), PolicyError> {
        if self.engine.reuse
            && let Some(mut w) = self.warm.lock().ok().and_then(|mut w| w.pop())
        {
            let state = w.store.data_mut();
            state.ticks = 0;
            state.log_lines = 0;
            w.store.set_epoch_deadline(1);
            return Ok((w, true));
        }
        Ok((self.fresh().await?, false))
    }

    /// What a call on `warm` came to. A reused instance that hit the memory
    /// cap is discarded and the call is to be retried once on a fresh
    /// instance: garbage-collected guests (JavaScript, Python) grow with
    /// every call, so the memory was accumulated by earlier calls, not this
    /// one. Any other failure fails the call and drops the instance.
    fn settle<R>(&self, warm: Warm, reused: bool, result: wasmtime::Result<R>) -> Settled<R> {
        match result {
            Ok(r) => {
                self.keep(warm);
                Settled::Done(Ok(r))
            }
            Err(_) if reused && warm.store.data().limiter.exceeded => {
                tracing::debug!(plugin = %self.plugin.name, "reused instance ran out of memory; retrying on a fresh one");
                Settled::Retry
            }
            Err(e) => Settled::Done(Err(self.classify_failure(&warm.store, &e))),
        }
    }

    /// A new instance in a new store.
    async fn fresh(&self) -> Result<Warm, PolicyError> {
        let mut store = self.new_store();
        match self.plugin.pre.instantiate_async(&mut store).await {
            Ok(instance) => Ok(Warm::new(store, instance)),
            Err(e) => Err(self.classify_failure(&store, &e)),
        }
    }

    /// Returns an instance whose call succeeded to the idle pool (with
    /// reuse on), unless the pool is full or the instance has grown past
    /// three quarters of its memory cap.
    fn keep(&self, warm: Warm) {
        if !self.engine.reuse || warm.store.data().limiter.largest > self.engine.max_memory / 4 * 3 {
            return;
        }
        if let Ok(mut idle) = self.warm.lock()
            && idle.len() < MAX_WARM_PER_BINDING
        {
            idle.push(warm);
        }
    }

    fn new_store(&self) -> Store<StoreState> {
        let shared = &*self.engine;
        let state = StoreState {
            wasi: empty_wasi(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_memory: shared.max_memory,
                largest: 0,
                max_table_elements: 100_000,
                exceeded: false,
            },
            settings: self.settings.clone(),
            plugin: self.plugin.name.clone(),
            log_lines: 0,
            ticks: 0,
        };
        let mut store = Store::new(&shared.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every epoch tick (1 ms) a running call yields to the async
        // runtime, so a slow or looping component never holds a request
        // worker; once its ticks exceed the deadline it traps.
        let deadline = shared.deadline_ticks + 1;
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

    fn classify_failure(&self, store: &Store<StoreState>, e: &wasmtime::Error) -> PolicyError {
        let plugin = self.plugin.name.to_string();
        let err = if store.data().limiter.exceeded {
            PolicyError::MemoryLimit { plugin }
        } else if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            PolicyError::Timeout { plugin }
        } else {
            PolicyError::Trap { plugin, detail: first_line(e) }
        };
        self.plugin.record_failure(&err);
        err
    }

    fn fail(&self, err: PolicyError) -> PolicyError {
        self.plugin.record_failure(&err);
        err
    }

    fn guest_error(&self, e: &wit::PolicyError) -> PolicyError {
        self.fail(PolicyError::Guest { plugin: self.plugin.name.to_string(), detail: bindings::policy_error_text(e) })
    }

    fn invalid(&self, detail: String) -> PolicyError {
        self.fail(PolicyError::InvalidResult { plugin: self.plugin.name.to_string(), detail })
    }

    fn not_bound(&self, role: &'static str) -> PolicyError {
        self.fail(PolicyError::NotBound { role })
    }

    /// Asks the classifier about `call`.
    pub async fn classify(&self, call: &id::CallInfo) -> Result<id::Classification, PolicyError> {
        let Some(indices) = &self.plugin.classifier else {
            return Err(self.not_bound("classifier"));
        };
        let arg: wit::CallInfo = call.into();
        let out = on_instance!(self, |w| async {
            let g = export(&mut w.classifier, || indices.load(&mut w.store, &w.instance))?;
            g.call_classify(&mut w.store, &arg).await
        })?;
        match out {
            Ok(c) => {
                let c = id::Classification {
                    class: bindings::auth_class_from_wit(c.class),
                    required_scopes: c.required_scopes,
                };
                validate::classification(&c).map_err(|d| self.invalid(d))?;
                Ok(c)
            }
            Err(e) => Err(self.guest_error(&e)),
        }
    }

    /// Asks the claims-mapper for the principal of `claims_json`.
    pub async fn map_claims(&self, provider: &str, claims_json: &str) -> Result<id::Principal, PolicyError> {
        let Some(indices) = &self.plugin.mapper else {
            return Err(self.not_bound("claims-mapper"));
        };
        let out = on_instance!(self, |w| async {
            let g = export(&mut w.mapper, || indices.load(&mut w.store, &w.instance))?;
            g.call_map_claims(&mut w.store, provider, claims_json).await
        })?;
        match out {
            Ok(p) => {
                let p: id::Principal = p.into();
                validate::principal(&p).map_err(|d| self.invalid(d))?;
                Ok(p)
            }
            Err(e) => Err(self.guest_error(&e)),
        }
    }

    /// Asks the authorizer about `request`.
    pub async fn authorize(&self, request: &id::AuthzRequest) -> Result<id::Decision, PolicyError> {
        let Some(indices) = &self.plugin.authorizer else {
            return Err(self.not_bound("authorizer"));
        };
        let arg: wit::AuthzRequest = request.into();
        let out = on_instance!(self, |w| async {
            let g = export(&mut w.authorizer, || indices.load(&mut w.store, &w.instance))?;
            g.call_authorize(&mut w.store, &arg).await
        })?;
        match out {
            Ok(wit::Decision::Allow) => Ok(id::Decision::Allow),
            Ok(wit::Decision::Deny(reason)) => Ok(id::Decision::Deny(validate::reason(reason))),
            Err(e) => Err(self.guest_error(&e)),
        }
    }

    /// Asks the credential policy which credentials `call` gets.
    pub async fn select_credentials(
        &self,
        call: &id::CallInfo,
        principal: Option<&id::Principal>,
        catalogue: &[id::CredentialInfo],
    ) -> Result<Vec<id::CredentialUse>, PolicyError> {
        let Some(indices) = &self.plugin.credential else {
            return Err(self.not_bound("credential-policy"));
        };
        let call_arg: wit::CallInfo = call.into();
        let principal_arg: Option<wit::Principal> = principal.map(Into::into);
        let catalogue_arg: Vec<wit::CredentialInfo> = catalogue.iter().map(Into::into).collect();
        let out = on_instance!(self, |w| async {
            let g = export(&mut w.credential, || indices.load(&mut w.store, &w.instance))?;
            g.call_select_credentials(&mut w.store, &call_arg, principal_arg.as_ref(), &catalogue_arg).await
        })?;
        match out {
            Ok(uses) => {
                let uses: Vec<id::CredentialUse> = uses
                    .into_iter()
                    .map(|u| id::CredentialUse { credential: u.credential, header: u.header, prefix: u.prefix })
                    .collect();
                validate::credential_uses(&uses, catalogue, &self.reserved).map_err(|d| self.invalid(d))?;
                Ok(uses)
            }
            Err(e) => Err(self.guest_error(&e)),
        }
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

fn first_line(e: &impl fmt::Display) -> String {
    let s = format!("{e:#}");
    let line = s.lines().next().unwrap_or_default();
    let mut out = line.to_owned();
    if out.len() > 512 {
        let mut cut = 512;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::{builtin_bytes, fixture_path};

    fn request(path: &str) -> id::AuthzRequest {
        id::AuthzRequest {
            call: id::CallInfo {
                protocol: id::Protocol::Http,
                http_method: "GET".into(),
                path: path.into(),
                grpc_service: String::new(),
                grpc_method: String::new(),
                route: "r".into(),
                authority: "a".into(),
            },
            classification: id::Classification { class: id::AuthClass::Unauthenticated, required_scopes: vec![] },
            authentication: id::Authentication::anonymous(),
        }
    }

    async fn misbehaving(reuse: bool) -> (PluginEngine, Binding) {
        let cfg = PluginsConfig {
            instance_reuse: reuse,
            deadline_ms: 20,
            max_memory_bytes: 4 << 20,
            ..PluginsConfig::default()
        };
        let engine = PluginEngine::new(&cfg).expect("engine");
        let plugin = engine.load_file(&fixture_path("misbehaving_authorizer")).await.expect("fixture loads");
        let binding = Binding::new(&engine, plugin, &BTreeMap::new());
        (engine, binding)
    }

    fn warm(b: &Binding) -> usize {
        b.warm.lock().map(|w| w.len()).unwrap_or(usize::MAX)
    }

    #[tokio::test]
    async fn failures_are_classified_and_the_next_call_gets_a_fresh_instance() {
        for reuse in [true, false] {
            let (_engine, b) = misbehaving(reuse).await;
            assert_eq!(b.authorize(&request("/ok")).await.expect("allowed"), id::Decision::Allow);
            assert_eq!(warm(&b), usize::from(reuse), "a successful instance is kept only with reuse");
            let started = std::time::Instant::now();
            assert!(matches!(b.authorize(&request("/loop")).await, Err(PolicyError::Timeout { .. })));
            assert!(started.elapsed() < Duration::from_secs(2), "deadline enforced: {:?}", started.elapsed());
            assert_eq!(warm(&b), 0, "the instance that timed out is not reused");
            assert!(matches!(b.authorize(&request("/grow")).await, Err(PolicyError::MemoryLimit { .. })));
            assert!(matches!(b.authorize(&request("/trap")).await, Err(PolicyError::Trap { .. })));
            assert_eq!(warm(&b), 0);
            assert_eq!(b.authorize(&request("/ok")).await.expect("allowed after traps"), id::Decision::Allow);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn checklist_30_a_looping_component_yields_and_never_holds_the_worker() {
        let cfg = PluginsConfig { deadline_ms: 300, ..PluginsConfig::default() };
        let engine = PluginEngine::new(&cfg).expect("engine");
        let plugin = engine.load_file(&fixture_path("misbehaving_authorizer")).await.expect("fixture loads");
        let b = Binding::new(&engine, plugin, &BTreeMap::new());
        // One worker thread: the timer only fires if the loop yields.
        let other = async {
            let started = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            started.elapsed()
        };
        let looping = request("/loop");
        let started = std::time::Instant::now();
        let (looped, waited) = tokio::join!(b.authorize(&looping), other);
        assert!(matches!(looped, Err(PolicyError::Timeout { .. })), "{looped:?}");
        assert!(waited < Duration::from_millis(100), "the worker was held for {waited:?}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "deadline: {took:?}");
    }

    #[tokio::test]
    async fn wrong_world_and_wrong_role_are_refused_with_the_reason() {
        let engine = PluginEngine::new(&PluginsConfig::default()).expect("engine");
        let err = engine.load_file(&fixture_path("wrong_world")).await.expect_err("not a policy component");
        let msg = err.to_string();
        assert!(msg.contains("exports none of the policy interfaces") && msg.contains("wasi:cli/run"), "{msg}");
        let err = engine.load("junk", b"\0asm not really").await.expect_err("not wasm");
        assert!(matches!(err, LoadError::Compile { .. }), "{err}");
        let classifier = engine.load("c", builtin_bytes("default-classifier").expect("embedded")).await.expect("loads");
        let b = Binding::new(&engine, classifier, &BTreeMap::new());
        let msg = b.require(Interface::Authorizer).expect_err("wrong role").to_string();
        assert!(msg.contains("does not export wasmgate:policy/authorizer@0.1.0"), "{msg}");
        assert!(matches!(b.authorize(&request("/x")).await, Err(PolicyError::NotBound { .. })));
    }

    #[tokio::test]
    async fn guest_errors_fail_closed() {
        let engine = PluginEngine::new(&PluginsConfig::default()).expect("engine");
        let plugin = engine.load("c", builtin_bytes("default-classifier").expect("embedded")).await.expect("loads");
        let settings: BTreeMap<String, serde_json::Value> =
            [("methods".to_owned(), serde_json::json!("not a list"))].into_iter().collect();
        let b = Binding::new(&engine, plugin, &settings);
        let err = b.classify(&request("/x").call).await.expect_err("bad settings");
        assert!(matches!(err, PolicyError::Guest { .. }), "{err}");
    }
}
