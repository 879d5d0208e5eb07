//! The gateway's background tasks, started from one place and stopped
//! together: JWKS refresh, the folder watchers, driver health watches,
//! credential refreshes, the epoch ticker, the admin listener.
//!
//! Whoever starts the gateway (`wasmgate serve`, the demo, a test) makes
//! one [`Tasks`], hands it to each part's `start`, and calls
//! [`Tasks::shutdown`] once. Constructors never spawn: a part that was
//! built but not started does nothing in the background.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A set of background tasks with one stop.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    stop: CancellationToken,
    tracker: TaskTracker,
}

/// A task's view of the stop: `stopped().await` resolves once shutdown
/// began; `is_stopped()` is for threads that poll.
#[derive(Debug, Clone)]
pub struct Stop(CancellationToken);

impl Stop {
    /// Resolves when the tasks are asked to stop.
    pub async fn stopped(&self) {
        self.0.cancelled().await;
    }

    /// Whether the tasks were asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.0.is_cancelled()
    }
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` until it ends or the set stops, whichever is first.
    /// Must be called within a Tokio runtime.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => tracing::debug!(task = name, "background task stopped"),
                () = task => {}
            }
        });
    }

    /// Runs `task` on a thread of its own (for work that must go on while
    /// every runtime worker is busy, such as the epoch ticker); it must
    /// return soon after [`Stop::is_stopped`] turns true.
    pub fn spawn_thread<F>(&self, name: &'static str, task: F) -> std::io::Result<()>
    where
        F: FnOnce(Stop) + Send + 'static,
    {
        let stop = Stop(self.stop.clone());
        // The tracker counts the thread until it returns.
        let token = self.tracker.token();
        std::thread::Builder::new().name(format!("wasmgate-{name}")).spawn(move || {
            task(stop);
            drop(token);
        })?;
        Ok(())
    }

    /// The stop, for a task that ends on its own terms (finishing what it
    /// is doing) rather than being dropped at the next await.
    pub fn stop(&self) -> Stop {
        Stop(self.stop.clone())
    }

    /// Whether shutdown began.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Stops every task and waits up to `grace` for them to end; returns
    /// how many were still running then.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            let left = self.tracker.len();
            tracing::warn!(left, "background tasks still running after shutdown");
            return left;
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn shutdown_stops_tasks_and_threads_and_waits_for_them() {
        let tasks = Tasks::new();
        let dropped = Arc::new(AtomicBool::new(false));
        struct OnDrop(Arc<AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let guard = OnDrop(dropped.clone());
        tasks.spawn("forever", async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        let thread_done = Arc::new(AtomicBool::new(false));
        let done = thread_done.clone();
        tasks
            .spawn_thread("ticker", move |stop| {
                while !stop.is_stopped() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                done.store(true, Ordering::SeqCst);
            })
            .expect("thread");
        tasks.spawn("short", async {});
        assert!(!tasks.is_stopping());
        assert_eq!(tasks.shutdown(Duration::from_secs(5)).await, 0);
        assert!(dropped.load(Ordering::SeqCst), "the pending task was dropped");
        assert!(thread_done.load(Ordering::SeqCst), "the thread returned");
        assert!(tasks.is_stopping() && tasks.stop().is_stopped());
    }

    #[tokio::test]
    async fn a_task_that_ignores_the_stop_is_reported() {
        let tasks = Tasks::new();
        tasks.spawn_thread("stubborn", |_| std::thread::sleep(Duration::from_millis(500))).expect("thread");
        assert_eq!(tasks.shutdown(Duration::from_millis(50)).await, 1);
    }
}
