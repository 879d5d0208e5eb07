//! Single-flight: concurrent callers that miss share one fetch and its
//! outcome, success or failure.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// One fetch at a time; callers that waited for a fetch in flight get its
/// outcome instead of starting another.
#[derive(Debug)]
pub(super) struct Flight<T, E> {
    /// Completed fetches.
    completed: AtomicU64,
    /// The last fetch's generation and outcome; the lock is held while fetching.
    last: tokio::sync::Mutex<Option<(u64, Result<T, E>)>>,
}

impl<T, E> Default for Flight<T, E> {
    fn default() -> Self {
        Self { completed: AtomicU64::new(0), last: tokio::sync::Mutex::new(None) }
    }
}

impl<T: Clone, E: Clone> Flight<T, E> {
    /// Fetches with `fetch` unless a fetch completed while this caller waited
    /// for the lock (its outcome is returned), or `current` (checked under the
    /// lock) says a fetch is no longer needed.
    pub(super) async fn run<F: Future<Output = Result<T, E>>>(
        &self,
        current: impl FnOnce() -> Option<T>,
        fetch: impl FnOnce() -> F,
    ) -> Result<T, E> {
        let seen = self.completed.load(Ordering::Acquire);
        let mut last = self.last.lock().await;
        if let Some((generation, outcome)) = last.as_ref()
            && *generation != seen
        {
            return outcome.clone();
        }
        if let Some(v) = current() {
            return Ok(v);
        }
        let outcome = fetch().await;
        let generation = self.completed.fetch_add(1, Ordering::AcqRel) + 1;
        *last = Some((generation, outcome.clone()));
        outcome
    }
}
