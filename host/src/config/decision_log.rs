//! `decision_log:` — where the one decision record of each call goes, what
//! it may show, and how many allowed decisions are kept.
//!
//! Absent, records are JSON lines on stderr (beside the gateway's own log),
//! every decision kept, nothing masked: what an operator collecting a
//! container's output expects, and never a silent loss of the audit trail.

use std::path::PathBuf;

use serde::Deserialize;

use super::SecretSource;

/// The record fields that can be dropped or hashed.
pub const MASKABLE_FIELDS: &[&str] = &["subject", "tenant", "path", "provider", "reason", "injected"];

/// A `decision_log:` setting refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecisionLogConfigError {
    /// A value out of its range.
    #[error("decision_log.{key} must be within {min}..={max}, got {value}")]
    OutOfRange {
        /// The key under `decision_log.`.
        key: &'static str,
        /// The smallest value allowed.
        min: f64,
        /// The largest value allowed.
        max: f64,
        /// The value configured.
        value: f64,
    },
    /// `drop_fields` or `hash_fields` names a field that cannot be masked.
    #[error("decision_log.{key} names {field:?}, which cannot be masked (one of: {})", MASKABLE_FIELDS.join(", "))]
    UnknownField {
        /// `drop_fields` or `hash_fields`.
        key: &'static str,
        /// The name.
        field: String,
    },
    /// A field is both dropped and hashed.
    #[error("decision_log: {0:?} is in both drop_fields and hash_fields")]
    DroppedAndHashed(String),
    /// `hash_fields` without `hash_key`: a plain hash of a subject is
    /// guessable, so hashing is always keyed.
    #[error("decision_log.hash_fields needs hash_key (HMAC-SHA256 key from a secret source)")]
    HashWithoutKey,
    /// The HTTP sink's URL is not `http://` or `https://`.
    #[error("decision_log.sink.http.url must be an http:// or https:// URL, got {0:?}")]
    BadUrl(String),
    /// The file sink has no file name.
    #[error("decision_log.sink.file.path must name a file")]
    NoFile,
}

/// The `decision_log:` section.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionLogConfig {
    /// Where records go: `stderr` (default), `none`, `{file: {...}}` or
    /// `{http: {...}}`.
    pub sink: SinkConfig,
    /// The share of allowed decisions kept, 0.0–1.0 (default 1.0). Denials,
    /// errors and every 5xx are always kept. The choice is made from the
    /// decision id, so it is uniform and needs no extra randomness.
    pub sample_allowed: f64,
    /// Records held for the sink at most; a record that finds the queue
    /// full is dropped and counted, never waited for.
    pub queue_size: usize,
    /// Fields left out of every record (of [`MASKABLE_FIELDS`]).
    pub drop_fields: Vec<String>,
    /// Fields replaced by `HMAC-SHA256(hash_key, value)` in hex (of
    /// [`MASKABLE_FIELDS`]): the same value gives the same hash, so records
    /// can still be correlated, but without the key it cannot be guessed.
    pub hash_fields: Vec<String>,
    /// The HMAC key for `hash_fields`.
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    pub hash_key: Option<SecretSource>,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        Self {
            sink: SinkConfig::Stderr,
            sample_allowed: 1.0,
            queue_size: 10_000,
            drop_fields: Vec::new(),
            hash_fields: Vec::new(),
            hash_key: None,
        }
    }
}

/// Where decision records go.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SinkConfig {
    /// Nowhere: no decision record is written.
    None,
    /// JSON lines on the gateway's stderr.
    Stderr,
    /// JSON lines appended to a file, rotated by size.
    File(FileSinkConfig),
    /// JSON arrays POSTed in batches (OPA's decision-log service style).
    Http(HttpSinkConfig),
}

impl SinkConfig {
    /// The sink's name, as the `sink` label of the decision-log metric.
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Stderr => "stderr",
            Self::File(_) => "file",
            Self::Http(_) => "http",
        }
    }
}

/// `sink: {file: {...}}`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file records are appended to (created 0600 if missing).
    pub path: PathBuf,
    /// Size after which the file is rotated (`path.1`, `path.2`, ...),
    /// bytes; default 100 MiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept besides the current one; default 5. 0 keeps none
    /// (the file is truncated when full).
    #[serde(default = "default_max_files")]
    pub max_files: u32,
}

fn default_max_bytes() -> u64 {
    100 << 20
}

fn default_max_files() -> u32 {
    5
}

/// `sink: {http: {...}}`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where batches are POSTed, as a JSON array of records.
    pub url: String,
    /// Records per batch at most; default 100.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// A partial batch is sent after this long, milliseconds; default 1000.
    #[serde(default = "default_batch_interval_ms")]
    pub batch_interval_ms: u64,
    /// Time one POST may take, milliseconds; default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Further attempts of a failed POST (connection error, timeout, 5xx or
    /// 429) before the batch is dropped and counted; default 3.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// The pause before the first retry, doubling, milliseconds; default 200.
    #[serde(default = "default_retry_base_ms")]
    pub retry_base_ms: u64,
    /// Sent as `Authorization: Bearer ...` when set.
    #[serde(default)]
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    pub bearer_token: Option<SecretSource>,
}

fn default_batch_size() -> usize {
    100
}
fn default_batch_interval_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_max_retries() -> u32 {
    3
}
fn default_retry_base_ms() -> u64 {
    200
}

impl DecisionLogConfig {
    /// Checks ranges, field names and the sink.
    pub fn validate(&self) -> Result<(), DecisionLogConfigError> {
        let range = |key, value: f64, min: f64, max: f64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(DecisionLogConfigError::OutOfRange { key, min, max, value })
            }
        };
        range("sample_allowed", self.sample_allowed, 0.0, 1.0)?;
        range("queue_size", self.queue_size as f64, 1.0, 1_000_000.0)?;
        for (key, fields) in [("drop_fields", &self.drop_fields), ("hash_fields", &self.hash_fields)] {
            if let Some(f) = fields.iter().find(|f| !MASKABLE_FIELDS.contains(&f.as_str())) {
                return Err(DecisionLogConfigError::UnknownField { key, field: f.clone() });
            }
        }
        if let Some(f) = self.hash_fields.iter().find(|f| self.drop_fields.contains(f)) {
            return Err(DecisionLogConfigError::DroppedAndHashed(f.clone()));
        }
        if !self.hash_fields.is_empty() && self.hash_key.is_none() {
            return Err(DecisionLogConfigError::HashWithoutKey);
        }
        match &self.sink {
            SinkConfig::None | SinkConfig::Stderr => {}
            SinkConfig::File(f) => {
                if f.path.file_name().is_none() {
                    return Err(DecisionLogConfigError::NoFile);
                }
                range("sink.file.max_bytes", f.max_bytes as f64, 1.0, u64::MAX as f64)?;
                range("sink.file.max_files", f64::from(f.max_files), 0.0, 1000.0)?;
            }
            SinkConfig::Http(h) => {
                if !(h.url.starts_with("http://") || h.url.starts_with("https://"))
                    || reqwest::Url::parse(&h.url).is_err()
                {
                    return Err(DecisionLogConfigError::BadUrl(h.url.clone()));
                }
                range("sink.http.batch_size", h.batch_size as f64, 1.0, 100_000.0)?;
                range("sink.http.batch_interval_ms", h.batch_interval_ms as f64, 1.0, 3_600_000.0)?;
                range("sink.http.timeout_ms", h.timeout_ms as f64, 1.0, 600_000.0)?;
                range("sink.http.max_retries", f64::from(h.max_retries), 0.0, 100.0)?;
                range("sink.http.retry_base_ms", h.retry_base_ms as f64, 1.0, 600_000.0)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> DecisionLogConfig {
        let de = serde_norway::Deserializer::from_str(yaml);
        serde_norway::with::singleton_map_recursive::deserialize(de).expect("parses")
    }

    #[test]
    fn defaults_are_stderr_everything_kept() {
        let c = DecisionLogConfig::default();
        assert_eq!(c.sink.name(), "stderr");
        assert!((c.sample_allowed - 1.0).abs() < f64::EPSILON);
        c.validate().expect("defaults are valid");
    }

    #[test]
    fn masking_and_ranges_are_checked() {
        let bad = |yaml: &str| parse(yaml).validate().expect_err(yaml).to_string();
        assert!(bad("sample_allowed: 1.5").contains("sample_allowed"));
        assert!(bad("drop_fields: [status]").contains("\"status\""));
        assert!(bad("hash_fields: [subject]").contains("hash_key"));
        assert!(bad("drop_fields: [subject]\nhash_fields: [subject]\nhash_key: {value: k}").contains("both"));
        assert!(bad("sink: {http: {url: \"ftp://x\"}}").contains("url"));
        assert!(bad("sink: {file: {path: /tmp/x, max_bytes: 0}}").contains("max_bytes"));
        parse("sink: {file: {path: /tmp/x}}\nhash_fields: [subject]\nhash_key: {value: k}").validate().expect("valid");
        parse("sink: none").validate().expect("valid");
    }
}
