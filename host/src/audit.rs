//! Audit-grade decision logs: one [`DecisionRecord`] per call, masked as
//! configured, written by a sink (`stderr`, `file`, `http`) behind a
//! bounded queue.
//!
//! The request path only builds the record and offers it to the queue
//! ([`DecisionLog::submit`], a `try_send`): a full queue or a failing sink
//! never slows or fails a call; the record is dropped and counted
//! (`wasmgate_decision_log_records_total{result="dropped"}`). The writer
//! runs on a thread of its own (started by [`DecisionLog::start`] on the
//! gateway's [`Tasks`]), masks and serializes each record, and at shutdown
//! writes what the queue still holds, within a bounded time.

mod file;
mod http;
mod mask;
mod record;

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

pub use record::{ComponentRef, DecisionRecord, PolicyRevision, format_rfc3339};

use crate::config::{DecisionLogConfig, SinkConfig};
use crate::tasks::{Stop, Tasks};

/// How long the last flush at shutdown may take (within the 5 s the
/// gateway gives its tasks).
const FINAL_FLUSH: Duration = Duration::from_secs(3);

/// A failing file sink says so in the log once per this long at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Records the stderr and file sinks write in one go, at most.
const WRITE_BATCH: usize = 256;

/// After a batch smaller than [`WRITE_BATCH`], the file and stderr writers
/// wait this long before looking again, so that under load they wake a
/// few hundred times a second, each time for a batch, instead of once per
/// call (each wake-up is a context switch on a core the calls need).
const BATCH_PAUSE: Duration = Duration::from_millis(5);

/// Why the decision log cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A secret (`hash_key`, `bearer_token`) cannot be read.
    #[error("decision_log: {0}")]
    Secret(crate::config::ConfigError),
    /// The HTTP sink's client cannot be built.
    #[error("{0}")]
    Http(String),
    /// The writer thread cannot be started.
    #[error("decision_log: cannot start the writer: {0}")]
    Start(std::io::Error),
}

/// The writer's part, until [`DecisionLog::start`] takes it.
struct Writer {
    rx: mpsc::Receiver<DecisionRecord>,
    sink: Sink,
    masker: mask::Masker,
    /// When a failed write was last logged, and the drops since.
    warned: Option<std::time::Instant>,
    unwarned: u64,
}

enum Sink {
    Stderr,
    File(file::RotatingFile),
    Http(Box<http::HttpSink>, Duration),
}

/// The gateway's decision log: the queue and, once started, its writer.
pub struct DecisionLog {
    /// `None` for `sink: none`.
    tx: Option<mpsc::Sender<DecisionRecord>>,
    writer: Mutex<Option<Writer>>,
    sink: &'static str,
    /// Allowed decisions kept: those whose id's first 64 bits fall below it.
    sample_threshold: u64,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog").field("sink", &self.sink).finish_non_exhaustive()
    }
}

impl DecisionLog {
    /// The log `cfg` describes; nothing runs until [`DecisionLog::start`].
    pub fn new(cfg: &DecisionLogConfig) -> Result<Self, AuditError> {
        let sample_threshold = if cfg.sample_allowed >= 1.0 {
            u64::MAX
        } else {
            // Rounding cannot matter at this scale; 0.0 keeps none.
            (cfg.sample_allowed.max(0.0) * u64::MAX as f64) as u64
        };
        let sink_name = cfg.sink.name();
        let sink = match &cfg.sink {
            SinkConfig::None => {
                return Ok(Self { tx: None, writer: Mutex::new(None), sink: sink_name, sample_threshold });
            }
            SinkConfig::Stderr => Sink::Stderr,
            SinkConfig::File(f) => Sink::File(file::RotatingFile::new(f.path.clone(), f.max_bytes, f.max_files)),
            SinkConfig::Http(h) => {
                let bearer = h.bearer_token.as_ref().map(|s| s.resolve()).transpose().map_err(AuditError::Secret)?;
                let sink = http::HttpSink::new(h, bearer).map_err(AuditError::Http)?;
                Sink::Http(Box::new(sink), Duration::from_millis(h.batch_interval_ms))
            }
        };
        let key = cfg.hash_key.as_ref().map(|s| s.resolve()).transpose().map_err(AuditError::Secret)?;
        let masker = mask::Masker::new(&cfg.drop_fields, &cfg.hash_fields, key.as_ref());
        let (tx, rx) = mpsc::channel(cfg.queue_size.max(1));
        Ok(Self {
            tx: Some(tx),
            writer: Mutex::new(Some(Writer { rx, sink, masker, warned: None, unwarned: 0 })),
            sink: sink_name,
            sample_threshold,
        })
    }

    /// Whether a call's record is written at all: never with `sink: none`;
    /// a clean allow (`allowed`: allowed and nothing failed after) that is
    /// not a 5xx only if sampled (by its decision id, a random hex number);
    /// every other always.
    pub fn wants(&self, decision_id: &str, allowed: bool, status: u16) -> bool {
        if self.tx.is_none() {
            return false;
        }
        if !allowed || status >= 500 || self.sample_threshold == u64::MAX {
            return true;
        }
        let bits = decision_id.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0);
        bits < self.sample_threshold
    }

    /// Offers `record` to the queue; when it is full (or the writer is
    /// gone) the record is dropped and counted. Never waits.
    pub fn submit(&self, record: DecisionRecord) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(record).is_err() {
            crate::metrics::decision_log(self.sink, "dropped");
        }
    }

    /// Starts the writer on a thread of its own, tracked by `tasks`; it
    /// writes until `tasks` stop, then what the queue still holds (for at
    /// most a few seconds). A second call does nothing.
    pub fn start(&self, tasks: &Tasks) -> Result<(), AuditError> {
        let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) else { return Ok(()) };
        let sink = self.sink;
        tasks
            .spawn_thread("decision-log", move |stop| {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "decision log: no runtime for the writer; records are dropped");
                        return;
                    }
                };
                rt.block_on(writer.run(sink, stop));
            })
            .map_err(AuditError::Start)
    }
}

impl Writer {
    async fn run(mut self, sink: &'static str, stop: Stop) {
        {
            let work = self.work(sink);
            tokio::pin!(work);
            tokio::select! {
                () = &mut work => {}
                () = stop.stopped() => {}
            }
        }
        // What is still queued, then the last batch, within bounded time.
        self.rx.close();
        let flush = async {
            while let Ok(r) = self.rx.try_recv() {
                self.take(sink, r).await;
            }
            if let Sink::Http(h, _) = &mut self.sink {
                h.flush().await;
            }
        };
        if tokio::time::timeout(FINAL_FLUSH, flush).await.is_err() {
            tracing::warn!("decision log: the last flush ran out of time; the rest is dropped");
        }
        let mut left = 0;
        while self.rx.try_recv().is_ok() {
            left += 1;
        }
        if let Sink::Http(h, _) = &mut self.sink {
            h.abandon();
        }
        for _ in 0..left {
            crate::metrics::decision_log(sink, "dropped");
        }
    }

    /// Writes records as they come; the HTTP sink also sends a partial
    /// batch once its interval has passed.
    async fn work(&mut self, sink: &'static str) {
        let interval = match &self.sink {
            Sink::Http(_, every) => *every,
            _ => Duration::from_secs(3600),
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                got = self.rx.recv() => match got {
                    Some(r) => {
                        if self.take(sink, r).await < WRITE_BATCH && !matches!(self.sink, Sink::Http(..)) {
                            tokio::time::sleep(BATCH_PAUSE).await;
                        }
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    if let Sink::Http(h, _) = &mut self.sink
                        && !h.is_empty()
                    {
                        h.flush().await;
                    }
                }
            }
        }
    }

    /// Masks, serializes and writes `first` and whatever else is queued
    /// (up to [`WRITE_BATCH`]); returns how many records it took.
    async fn take(&mut self, sink: &'static str, first: DecisionRecord) -> usize {
        let mut records = Vec::with_capacity(16);
        records.push(first);
        while records.len() < WRITE_BATCH {
            match self.rx.try_recv() {
                Ok(r) => records.push(r),
                Err(_) => break,
            }
        }
        let taken = records.len();
        let lines: Vec<Vec<u8>> = records
            .into_iter()
            .filter_map(|mut r| {
                if !self.masker.is_noop() {
                    self.masker.apply(&mut r);
                }
                match serde_json::to_vec(&r) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        tracing::error!(error = %e, "decision record not serializable; dropped");
                        crate::metrics::decision_log(sink, "dropped");
                        None
                    }
                }
            })
            .collect();
        match &mut self.sink {
            Sink::Stderr => {
                use std::io::Write as _;
                // A line per write: beside the gateway's own log lines on
                // the same stream, never interleaved within one.
                let (mut written, mut dropped) = (0, 0);
                for mut line in lines {
                    line.push(b'\n');
                    if std::io::stderr().lock().write_all(&line).is_ok() {
                        written += 1;
                    } else {
                        dropped += 1;
                    }
                }
                crate::metrics::decision_logs(sink, "written", written);
                crate::metrics::decision_logs(sink, "dropped", dropped);
            }
            Sink::File(f) => {
                let lines: Vec<Vec<u8>> = lines
                    .into_iter()
                    .map(|mut l| {
                        l.push(b'\n');
                        l
                    })
                    .collect();
                let (written, err) = f.append(&lines);
                if let Some(e) = err {
                    // Once per WARN_EVERY at most: a full disk fails every
                    // write, and the log may be on the same disk.
                    self.unwarned += (lines.len() - written) as u64;
                    if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        tracing::warn!(error = %e, dropped = self.unwarned, "decision log: file write failed; records dropped");
                        self.warned = Some(std::time::Instant::now());
                        self.unwarned = 0;
                    }
                }
                crate::metrics::decision_logs(sink, "written", written as u64);
                crate::metrics::decision_logs(sink, "dropped", (lines.len() - written) as u64);
            }
            Sink::Http(h, _) => {
                let mut due = false;
                for line in lines {
                    due |= h.push(line);
                }
                if due {
                    h.flush().await;
                }
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(yaml: &str) -> DecisionLog {
        let de = serde_norway::Deserializer::from_str(yaml);
        let cfg: DecisionLogConfig = serde_norway::with::singleton_map_recursive::deserialize(de).expect("config");
        DecisionLog::new(&cfg).expect("log")
    }

    #[test]
    fn sampling_keeps_every_denial_and_error_and_a_share_of_allows() {
        let half = log("sample_allowed: 0.5");
        let ids: Vec<String> =
            (0..1000u64).map(|i| format!("{:016x}{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i)).collect();
        let kept = ids.iter().filter(|id| half.wants(id, true, 200)).count();
        assert!((400..600).contains(&kept), "about half kept: {kept}");
        assert!(ids.iter().all(|id| half.wants(id, false, 403)), "denials always kept");
        assert!(ids.iter().all(|id| half.wants(id, true, 502)), "5xx always kept");
        let none = log("sample_allowed: 0.0");
        assert!(!ids.iter().any(|id| none.wants(id, true, 200)));
        assert!(ids.iter().all(|id| log("{}").wants(id, true, 200)), "default keeps all");
        assert!(!log("sink: none").wants(&ids[0], false, 403));
    }

    #[test]
    fn a_full_queue_drops_without_waiting() {
        let log = log("queue_size: 2");
        let r = || DecisionRecord {
            decision_id: String::new(),
            trace_id: None,
            timestamp: std::time::SystemTime::UNIX_EPOCH,
            route: None,
            method: "GET".into(),
            path: None,
            class: None,
            credential: None,
            provider: None,
            subject: None,
            tenant: None,
            outcome: "no_route".into(),
            reason: None,
            status: 404,
            grpc_status: None,
            upstream_status: None,
            upstream_failure: None,
            injected: Vec::new(),
            shadow: None,
            policy: PolicyRevision::default(),
            duration_us: 0,
            phases_us: Vec::new(),
        };
        let dropped = || {
            let sample = "wasmgate_decision_log_records_total{sink=\"stderr\",result=\"dropped\"}";
            crate::metrics::render()
                .lines()
                .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse::<u64>().ok()))
                .unwrap_or(0)
        };
        let before = dropped();
        // Not started: nothing drains the queue; the third is dropped.
        for _ in 0..3 {
            log.submit(r());
        }
        let writer = log.writer.lock().expect("lock").take().expect("not started");
        assert_eq!(writer.rx.len(), 2);
        assert!(dropped() > before, "the drop is counted");
    }
}
