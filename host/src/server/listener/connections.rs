//! Client connections: how many may be open, and how long one may stay
//! without doing anything useful.
//!
//! Every accepted connection takes a slot in [`Connections`] and carries an
//! [`Activity`], updated by its I/O (bytes read, request heads completed,
//! fed by the framing scanner) and by its service (requests in flight until
//! their response body ends). From that the connection's task computes one
//! deadline at a time ([`deadline`]):
//!
//! - no byte yet: `server.first_byte_timeout_seconds` from the start of HTTP
//!   (accept, or the end of the TLS handshake);
//! - the first request head (or the HTTP/2 client preface) incomplete:
//!   `server.http1.header_read_timeout_seconds` from that same start, so the
//!   protocol detection of hyper-util's auto builder is timed too; a later
//!   head from its first byte;
//! - no request in flight: `server.http1.idle_timeout_seconds` (HTTP/1.1
//!   keep-alive) or `server.http2.idle_timeout_seconds` (an HTTP/2
//!   connection without open streams) from the last activity;
//! - a request in flight: no connection deadline (the route's timeouts
//!   bound the request).
//!
//! At `server.max_connections` a new connection takes the slot of the
//! connection idle the longest (approximately: the oldest among a few dozen
//! slots from a rotating hand), which is closed at once; only when every
//! connection sampled has a request in flight is the new one refused,
//! accepted and closed at once. See `docs/config.md` for why.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http_body::Frame;
use tokio::sync::Notify;

/// How many occupied slots one eviction looks at.
const EVICTION_SAMPLE: usize = 64;
/// Connections evicted but not yet closed, at most; past it new connections
/// are refused rather than admitted over the limit.
const MAX_CLOSING: usize = 64;
/// With this many evicted connections not yet closed the accept loop waits
/// for them (briefly) before it accepts again.
pub(super) const CLOSING_PACE: usize = 8;
/// "Not inside a request head."
const NONE: u64 = u64::MAX;

/// The connection timeouts, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timeouts {
    pub(super) first_byte: u64,
    pub(super) head: u64,
    pub(super) idle_http1: u64,
    pub(super) idle_http2: u64,
}

impl Timeouts {
    pub(super) fn new(first_byte: Duration, head: Duration, idle_http1: Duration, idle_http2: Duration) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4);
        Self { first_byte: ms(first_byte), head: ms(head), idle_http1: ms(idle_http1), idle_http2: ms(idle_http2) }
    }

    /// How often a busy connection re-checks: never later than a deadline
    /// that starts when it stops being busy.
    fn recheck(&self) -> u64 {
        self.first_byte.min(self.head).min(self.idle_http1).min(self.idle_http2).max(1)
    }
}

/// Why the gateway closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    FirstByte,
    Header,
    Idle,
}

impl Reason {
    /// The metric label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::FirstByte => "first_byte_timeout",
            Self::Header => "header_timeout",
            Self::Idle => "idle_timeout",
        }
    }
}

/// One connection's state, as its deadline needs it; times in milliseconds
/// since the listener's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub(super) in_flight: usize,
    pub(super) bytes_seen: bool,
    /// When HTTP started (accept, or the end of the TLS handshake).
    pub(super) http_start: u64,
    /// When the request head being read started, if one is.
    pub(super) head_since: Option<u64>,
    /// The last head completed, request started or response ended.
    pub(super) last_active: u64,
    pub(super) http2: bool,
}

/// The next deadline of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deadline {
    /// A request is in flight: re-check at this time.
    Busy(u64),
    /// Close the connection for this reason at this time.
    At(u64, Reason),
}

/// The deadline of a connection in state `s` at time `now`.
pub(super) fn deadline(s: &Snapshot, t: &Timeouts, now: u64) -> Deadline {
    if s.in_flight > 0 {
        return Deadline::Busy(now.saturating_add(t.recheck()));
    }
    let (mut at, mut reason) = match s.head_since {
        Some(since) => (since.max(s.last_active).saturating_add(t.head), Reason::Header),
        None => {
            let idle = if s.http2 { t.idle_http2 } else { t.idle_http1 };
            (s.last_active.saturating_add(idle), Reason::Idle)
        }
    };
    let first_byte = s.http_start.saturating_add(t.first_byte);
    if !s.bytes_seen && first_byte < at {
        (at, reason) = (first_byte, Reason::FirstByte);
    }
    Deadline::At(at, reason)
}

/// What a connection's I/O and service report, shared with its task and,
/// for eviction, with the accept loop.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    timeouts: Timeouts,
    in_flight: AtomicUsize,
    bytes_seen: AtomicBool,
    http_start: AtomicU64,
    head_since: AtomicU64,
    last_active: AtomicU64,
    http2: AtomicBool,
    /// The deadline the task sleeps until.
    armed: AtomicU64,
    /// Set under the [`Connections`] lock.
    evicted: AtomicBool,
    poke: Notify,
}

impl Activity {
    fn new(epoch: Instant, timeouts: &Timeouts) -> Self {
        let now = ms_since(epoch);
        Self {
            epoch,
            timeouts: *timeouts,
            in_flight: AtomicUsize::new(0),
            bytes_seen: AtomicBool::new(false),
            http_start: AtomicU64::new(now),
            head_since: AtomicU64::new(now),
            last_active: AtomicU64::new(now),
            http2: AtomicBool::new(false),
            armed: AtomicU64::new(NONE),
            evicted: AtomicBool::new(false),
            poke: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        ms_since(self.epoch)
    }

    /// HTTP starts now (after a TLS handshake): the first-byte and first
    /// head timeouts count from here.
    pub(super) fn start_http(&self) {
        let now = self.now();
        self.http_start.store(now, Ordering::Relaxed);
        self.head_since.store(now, Ordering::Relaxed);
        self.last_active.store(now, Ordering::Relaxed);
    }

    /// Bytes were read. `in_head`: the scanner is inside a request head;
    /// `head_done`: at least one head (or the HTTP/2 preface) completed in
    /// these bytes; `http2`: the connection speaks HTTP/2.
    pub(crate) fn read(&self, in_head: bool, head_done: bool, http2: bool) {
        if !self.bytes_seen.load(Ordering::Relaxed) {
            self.bytes_seen.store(true, Ordering::Relaxed);
        }
        if http2 && !self.http2.load(Ordering::Relaxed) {
            self.http2.store(true, Ordering::Relaxed);
        }
        let now = self.now();
        if head_done {
            self.last_active.store(now, Ordering::Relaxed);
        }
        let since = self.head_since.load(Ordering::Relaxed);
        if in_head && (since == NONE || head_done) {
            self.head_since.store(now, Ordering::Relaxed);
            self.hurry(now.saturating_add(self.timeouts.head));
        } else if !in_head && since != NONE && head_done {
            self.head_since.store(NONE, Ordering::Relaxed);
            // The HTTP/2 preface: idle from now on, until a stream opens.
            self.hurry(now.saturating_add(self.idle_timeout()));
        }
    }

    fn idle_timeout(&self) -> u64 {
        if self.http2.load(Ordering::Relaxed) { self.timeouts.idle_http2 } else { self.timeouts.idle_http1 }
    }

    /// Wakes the task if a deadline at `at` comes before the one it sleeps
    /// until (a timeout shorter than the one armed now). Deadlines that
    /// move later need no wake: the task re-checks when the armed one
    /// passes.
    fn hurry(&self, at: u64) {
        if at < self.armed.load(Ordering::Relaxed) {
            self.poke.notify_one();
        }
    }

    /// A request starts; it is in flight until the guard (kept in its
    /// response body) is dropped.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.last_active.store(self.now(), Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn snapshot(&self) -> Snapshot {
        let head_since = self.head_since.load(Ordering::Relaxed);
        Snapshot {
            in_flight: self.in_flight.load(Ordering::Acquire),
            bytes_seen: self.bytes_seen.load(Ordering::Relaxed),
            http_start: self.http_start.load(Ordering::Relaxed),
            head_since: (head_since != NONE).then_some(head_since),
            last_active: self.last_active.load(Ordering::Relaxed),
            http2: self.http2.load(Ordering::Relaxed),
        }
    }

    /// The next deadline, armed: `(when, reason)`, no reason for a re-check.
    pub(super) fn next(&self, timeouts: &Timeouts) -> (Instant, Option<Reason>) {
        let now = self.now();
        let (at, reason) = match deadline(&self.snapshot(), timeouts, now) {
            Deadline::Busy(at) => (at, None),
            Deadline::At(at, reason) => (at, Some(reason)),
        };
        self.armed.store(at, Ordering::Relaxed);
        (self.epoch + Duration::from_millis(at), reason)
    }

    /// Whether the connection speaks HTTP/2.
    pub(super) fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// Whether the connection was evicted to make room for another.
    pub(super) fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Resolves when the task should look at its state again (eviction, or
    /// an earlier deadline).
    pub(super) async fn poked(&self) {
        self.poke.notified().await;
    }

    /// Resolves once the connection is evicted.
    pub(super) async fn evicted(&self) {
        while !self.is_evicted() {
            self.poke.notified().await;
        }
    }

    /// Wakes the connection's task to look at its state again.
    pub(super) fn wake(&self) {
        self.poke.notify_one();
    }

    /// Whether no request is in flight.
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
}

/// A request in flight on its connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.now();
        self.0.last_active.store(now, Ordering::Relaxed);
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.hurry(now.saturating_add(self.0.idle_timeout()));
        }
    }
}

/// A response body that keeps its request in flight until it ends or is
/// dropped.
pub(super) struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl Tracked {
    pub(super) fn new(body: Body, in_flight: InFlight) -> Self {
        Self { body, _in_flight: in_flight }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub(super) struct Connections {
    epoch: Instant,
    max: usize,
    timeouts: Timeouts,
    table: Mutex<Table>,
    drained: Notify,
    /// An evicted connection closed.
    closed: Notify,
}

#[derive(Debug, Default)]
struct Table {
    slots: Vec<Option<Arc<Activity>>>,
    free: Vec<usize>,
    live: usize,
    /// Evicted, not yet closed.
    closing: usize,
    /// Where the next eviction starts looking.
    hand: usize,
}

/// What [`Connections::admit`] decided.
#[derive(Debug)]
pub(super) enum Admission {
    /// Below the limit.
    Admitted(Slot),
    /// At the limit: the connection idle the longest was evicted.
    Evicted(Slot),
    /// At the limit, nothing idle to evict: close the new connection.
    Refused,
}

/// A connection's place in [`Connections`], released on drop.
#[derive(Debug)]
pub(super) struct Slot {
    connections: Arc<Connections>,
    activity: Arc<Activity>,
    index: usize,
}

impl Slot {
    pub(super) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.connections.lock();
        if self.activity.is_evicted() {
            table.closing -= 1;
            self.connections.closed.notify_waiters();
        } else {
            table.slots[self.index] = None;
            table.free.push(self.index);
            table.live -= 1;
        }
        let empty = table.live == 0 && table.closing == 0;
        drop(table);
        crate::metrics::connection_ended();
        if empty {
            self.connections.drained.notify_waiters();
        }
    }
}

impl Connections {
    pub(super) fn new(max: usize, timeouts: Timeouts) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            max: max.max(1),
            timeouts,
            table: Mutex::new(Table::default()),
            drained: Notify::new(),
            closed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The limit.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Connections open (admitted and not evicted).
    pub(super) fn live(&self) -> usize {
        self.lock().live
    }

    /// Takes a slot for a connection accepted now.
    pub(super) fn admit(self: &Arc<Self>) -> Admission {
        let mut table = self.lock();
        let evicted = if table.live < self.max {
            false
        } else if table.closing < MAX_CLOSING && Self::evict_locked(&mut table) {
            true
        } else {
            return Admission::Refused;
        };
        let activity = Arc::new(Activity::new(self.epoch, &self.timeouts));
        let index = match table.free.pop() {
            Some(i) => {
                table.slots[i] = Some(activity.clone());
                i
            }
            None => {
                table.slots.push(Some(activity.clone()));
                table.slots.len() - 1
            }
        };
        table.live += 1;
        drop(table);
        crate::metrics::connection_started();
        let slot = Slot { connections: self.clone(), activity, index };
        if evicted { Admission::Evicted(slot) } else { Admission::Admitted(slot) }
    }

    /// Evicts the connection idle the longest, if one is idle (out of file
    /// descriptors, say).
    pub(super) fn evict_one(&self) -> bool {
        let mut table = self.lock();
        table.closing < MAX_CLOSING && Self::evict_locked(&mut table)
    }

    /// Looks at up to [`EVICTION_SAMPLE`] occupied slots from the hand and
    /// evicts the one idle the longest.
    fn evict_locked(table: &mut Table) -> bool {
        let len = table.slots.len();
        if len == 0 {
            return false;
        }
        let (mut seen, mut best): (usize, Option<(usize, u64)>) = (0, None);
        let mut i = table.hand % len;
        for _ in 0..len {
            if let Some(a) = &table.slots[i] {
                seen += 1;
                let since = a.last_active.load(Ordering::Relaxed);
                if a.is_idle() && best.is_none_or(|(_, b)| since < b) {
                    best = Some((i, since));
                }
            }
            i = (i + 1) % len;
            if seen == EVICTION_SAMPLE {
                break;
            }
        }
        table.hand = i;
        let Some((victim, _)) = best else { return false };
        let Some(activity) = table.slots[victim].take() else { return false };
        activity.evicted.store(true, Ordering::Release);
        activity.poke.notify_one();
        table.free.push(victim);
        table.live -= 1;
        table.closing += 1;
        true
    }

    /// Resolves once fewer than `n` evicted connections are still closing.
    pub(super) async fn closing_below(&self, n: usize) {
        loop {
            let closed = self.closed.notified();
            if self.lock().closing < n {
                return;
            }
            closed.await;
        }
    }

    /// Resolves once every connection has closed.
    pub(super) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            {
                let table = self.lock();
                if table.live == 0 && table.closing == 0 {
                    return;
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests;
