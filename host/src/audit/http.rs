//! The HTTP sink: records POSTed as JSON arrays in batches, in the style of
//! OPA's decision-log service. A batch that keeps failing (connection
//! refused, timeout, 5xx, 429) is retried with back-off a bounded number of
//! times, then dropped and counted; a 4xx other than 429 is not retried.

use std::time::Duration;

use crate::config::{HttpSinkConfig, SecretValue};
use crate::retry::Backoff;

/// Records waiting to be sent, serialized, and how to send them.
#[derive(Debug)]
pub struct HttpSink {
    client: reqwest::Client,
    url: reqwest::Url,
    bearer: Option<SecretValue>,
    batch_size: usize,
    max_retries: u32,
    backoff: Backoff,
    /// Serialized records of the batch being filled (or being sent: a
    /// batch leaves only once sent or dropped, so a send cut short at
    /// shutdown keeps it for the last flush).
    batch: Vec<Vec<u8>>,
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Sent,
    /// Worth another try.
    Retry(String),
    /// Not: the receiver refuses the batch itself.
    Refused(String),
}

impl HttpSink {
    /// From the config; `bearer` is the resolved `bearer_token`.
    pub fn new(cfg: &HttpSinkConfig, bearer: Option<SecretValue>) -> Result<Self, String> {
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| format!("decision_log.sink.http.url: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms))
            .build()
            .map_err(|e| format!("decision-log HTTP client: {e}"))?;
        Ok(Self {
            client,
            url,
            bearer,
            batch_size: cfg.batch_size,
            max_retries: cfg.max_retries,
            backoff: Backoff {
                base: Duration::from_millis(cfg.retry_base_ms),
                cap: Duration::from_millis(cfg.retry_base_ms.saturating_mul(32)),
            },
            batch: Vec::with_capacity(cfg.batch_size),
        })
    }

    /// Adds a serialized record; true when a full batch is due.
    pub fn push(&mut self, record: Vec<u8>) -> bool {
        self.batch.push(record);
        self.batch.len() >= self.batch_size
    }

    /// Whether records wait to be sent.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Sends what the batch holds, `batch_size` records per POST, each
    /// retried; each counted written or dropped once its POST is done.
    /// Records leave the batch only then: a flush cut short (at shutdown)
    /// leaves the rest for the last one.
    pub async fn flush(&mut self) {
        while !self.batch.is_empty() {
            let n = self.batch.len().min(self.batch_size);
            let written = self.send(json_array(&self.batch[..n]), n).await;
            let result = if written { "written" } else { "dropped" };
            for _ in 0..n {
                crate::metrics::decision_log("http", result);
            }
            self.batch.drain(..n);
        }
    }

    /// POSTs one batch of `n` records, retrying; whether it was accepted.
    async fn send(&self, body: Vec<u8>, n: usize) -> bool {
        let mut failures = 0u32;
        loop {
            match self.attempt(body.clone()).await {
                Attempt::Sent => return true,
                Attempt::Refused(why) => {
                    tracing::warn!(records = n, reason = %why, "decision-log receiver refused a batch; dropped");
                    return false;
                }
                Attempt::Retry(why) if failures >= self.max_retries => {
                    tracing::warn!(records = n, reason = %why, attempts = failures + 1, "decision-log batch dropped after its retries");
                    return false;
                }
                Attempt::Retry(why) => {
                    failures += 1;
                    tracing::debug!(records = n, reason = %why, "decision-log batch failed; retrying");
                    for _ in 0..n {
                        crate::metrics::decision_log("http", "retried");
                    }
                    tokio::time::sleep(self.backoff.delay(failures)).await;
                }
            }
        }
    }

    /// Counts what the batch still holds as dropped (a last flush that ran
    /// out of time).
    pub fn abandon(&mut self) {
        for _ in 0..self.batch.len() {
            crate::metrics::decision_log("http", "dropped");
        }
        self.batch.clear();
    }

    async fn attempt(&self, body: Vec<u8>) -> Attempt {
        let mut req =
            self.client.post(self.url.clone()).header(http::header::CONTENT_TYPE, "application/json").body(body);
        if let Some(token) = &self.bearer {
            let mut value = b"Bearer ".to_vec();
            value.extend_from_slice(token.expose());
            match http::HeaderValue::from_bytes(&value) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    req = req.header(http::header::AUTHORIZATION, v);
                }
                Err(_) => return Attempt::Refused("bearer_token is not a valid header value".into()),
            }
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => Attempt::Sent,
            Ok(r) if r.status().is_server_error() || r.status() == http::StatusCode::TOO_MANY_REQUESTS => {
                Attempt::Retry(format!("status {}", r.status().as_u16()))
            }
            Ok(r) => Attempt::Refused(format!("status {}", r.status().as_u16())),
            // Without the URL: it may carry credentials.
            Err(e) => Attempt::Retry(if e.is_timeout() {
                "timeout".to_owned()
            } else if e.is_connect() {
                "connect".to_owned()
            } else {
                "request failed".to_owned()
            }),
        }
    }
}

/// `[r1,r2,...]` from serialized records.
fn json_array(records: &[Vec<u8>]) -> Vec<u8> {
    let len = records.iter().map(|r| r.len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(batch_size: usize) -> HttpSinkConfig {
        HttpSinkConfig {
            url: "http://127.0.0.1:1/".into(),
            batch_size,
            batch_interval_ms: 1000,
            timeout_ms: 1000,
            max_retries: 1,
            retry_base_ms: 1,
            bearer_token: None,
        }
    }

    #[test]
    fn batches_fill_to_their_size_and_serialize_as_one_json_array() {
        let mut sink = HttpSink::new(&cfg(3), None).expect("sink");
        assert!(sink.is_empty());
        assert!(!sink.push(br#"{"a":1}"#.to_vec()));
        assert!(!sink.push(br#"{"a":2}"#.to_vec()));
        assert!(sink.push(br#"{"a":3}"#.to_vec()), "the third record fills the batch");
        let body: serde_json::Value = serde_json::from_slice(&json_array(&sink.batch)).expect("a JSON array");
        assert_eq!(body, serde_json::json!([{"a":1},{"a":2},{"a":3}]));
        assert_eq!(json_array(&[]), b"[]");
    }

    #[tokio::test]
    async fn a_flush_posts_batch_size_records_at_a_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let batch: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
                    seen.lock().expect("lock").push(batch.len());
                    http::StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let mut sink = HttpSink::new(&HttpSinkConfig { url: format!("http://{addr}/"), ..cfg(2) }, None).expect("sink");
        for i in 0..5 {
            sink.push(format!("{{\"n\":{i}}}").into_bytes());
        }
        sink.flush().await;
        assert!(sink.is_empty());
        assert_eq!(*sizes.lock().expect("lock"), [2, 2, 1]);
    }

    #[tokio::test]
    async fn a_batch_nobody_receives_is_dropped_after_its_retries() {
        // Port 1: nothing listens there.
        let mut sink = HttpSink::new(&cfg(10), None).expect("sink");
        sink.push(b"{}".to_vec());
        assert!(matches!(sink.attempt(b"[{}]".to_vec()).await, Attempt::Retry(_)));
        sink.flush().await;
        assert!(sink.is_empty(), "dropped, not kept forever");
    }
}
