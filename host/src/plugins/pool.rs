//! Instances of one binding: a fresh instance in a fresh store per call, or
//! (with `plugins.instance_reuse`) an idle one that completed its previous
//! calls cleanly, recycled once it grows too large or fails.

use std::sync::{Arc, Mutex};

use wasmtime::component::Instance;
use wasmtime::{Store, Trap};

use super::engine::EngineShared;
use super::host::{self, Settings, StoreState};
use super::wit::InstanceExports;
use super::{Plugin, PolicyError, first_line};

/// Idle instances kept per binding at most.
const MAX_WARM_PER_BINDING: usize = 64;

/// An instance with its store, and its exports once looked up.
pub(super) struct Warm {
    pub(super) store: Store<StoreState>,
    pub(super) instance: Instance,
    pub(super) exports: InstanceExports,
}

/// What [`InstancePool::settle`] decided about a call.
pub(super) enum Settled<R> {
    Done(Result<R, PolicyError>),
    Retry,
}

/// Runs `$body` (an expression using `$w: &mut Warm`, awaited) on an
/// instance of `$pool` (an [`InstancePool`]), once more on a fresh instance
/// if [`InstancePool::settle`] says so; evaluates to `Result<_, PolicyError>`.
macro_rules! on_instance {
    ($pool:expr, |$w:ident| $body:expr) => {{
        use $crate::plugins::pool::Settled;
        let pool = $pool;
        match pool.acquire().await {
            Err(e) => Err(e),
            Ok((mut instance, reused)) => {
                let first = {
                    let $w = &mut instance;
                    $body.await
                };
                match pool.settle(instance, reused, first) {
                    Settled::Done(r) => r,
                    Settled::Retry => match pool.fresh().await {
                        Err(e) => Err(e),
                        Ok(mut instance) => {
                            let second = {
                                let $w = &mut instance;
                                $body.await
                            };
                            match pool.settle(instance, false, second) {
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
pub(super) use on_instance;

/// The instances of one plugin bound with one set of settings.
pub(super) struct InstancePool {
    plugin: Arc<Plugin>,
    settings: Arc<Settings>,
    engine: Arc<EngineShared>,
    /// Idle instances kept for reuse (only when `plugins.instance_reuse`).
    idle: Mutex<Vec<Warm>>,
}

impl InstancePool {
    /// An empty pool for `plugin` with `settings`.
    pub(super) fn new(engine: Arc<EngineShared>, plugin: Arc<Plugin>, settings: Settings) -> Self {
        Self { plugin, settings: Arc::new(settings), engine, idle: Mutex::default() }
    }

    /// The plugin.
    pub(super) fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The settings the instances see.
    pub(super) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// How many instances are idle.
    #[cfg(test)]
    pub(super) fn idle_len(&self) -> usize {
        self.idle.lock().map(|w| w.len()).unwrap_or(usize::MAX)
    }

    /// An instance with the deadline and memory cap applied, and whether it
    /// served earlier calls: an idle one that completed its previous calls
    /// cleanly when reuse is on, otherwise a fresh one in a fresh store.
    pub(super) async fn acquire(&self) -> Result<(Warm, bool), PolicyError> {
        if self.engine.reuse
            && let Some(mut w) = self.idle.lock().ok().and_then(|mut w| w.pop())
        {
            host::reset_for_call(&mut w.store);
            return Ok((w, true));
        }
        Ok((self.fresh().await?, false))
    }

    /// What a call on `warm` came to. A reused instance that hit the memory
    /// cap is discarded and the call is to be retried once on a fresh
    /// instance: garbage-collected guests (JavaScript, Python) grow with
    /// every call, so the memory was accumulated by earlier calls, not this
    /// one. Any other failure fails the call and drops the instance.
    pub(super) fn settle<R>(&self, warm: Warm, reused: bool, result: wasmtime::Result<R>) -> Settled<R> {
        match result {
            Ok(r) => {
                self.keep(warm);
                Settled::Done(Ok(r))
            }
            Err(_) if reused && warm.store.data().limit_exceeded() => {
                tracing::debug!(plugin = %self.plugin.name(), "reused instance ran out of memory; retrying on a fresh one");
                Settled::Retry
            }
            Err(e) => Settled::Done(Err(self.classify_failure(&warm.store, &e))),
        }
    }

    /// A new instance in a new store.
    pub(super) async fn fresh(&self) -> Result<Warm, PolicyError> {
        let mut store = host::new_store(
            &self.engine.engine,
            self.engine.limits,
            self.settings.clone(),
            self.plugin.shared_name().clone(),
        );
        match self.plugin.pre().instantiate_async(&mut store).await {
            Ok(instance) => Ok(Warm { store, instance, exports: InstanceExports::default() }),
            Err(e) => Err(self.classify_failure(&store, &e)),
        }
    }

    /// Returns an instance whose call succeeded to the idle pool (with
    /// reuse on), unless the pool is full or the instance has grown past
    /// three quarters of its memory cap.
    fn keep(&self, warm: Warm) {
        if !self.engine.reuse || warm.store.data().largest_memory() > self.engine.limits.max_memory / 4 * 3 {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_WARM_PER_BINDING
        {
            idle.push(warm);
        }
    }

    /// The failure `e` of a call in `store`, counted: the memory cap, the
    /// deadline, or another trap.
    fn classify_failure(&self, store: &Store<StoreState>, e: &wasmtime::Error) -> PolicyError {
        let plugin = self.plugin.name().to_owned();
        let err = if store.data().limit_exceeded() {
            PolicyError::MemoryLimit { plugin }
        } else if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            PolicyError::Timeout { plugin }
        } else {
            PolicyError::Trap { plugin, detail: first_line(e) }
        };
        self.plugin.record_failure(&err);
        err
    }
}
