//! `telemetry:` — OpenTelemetry traces exported over OTLP (gRPC or
//! HTTP/protobuf). Off when absent: no span is then created at all.
//!
//! ```yaml
//! telemetry:
//!   tracing:
//!     endpoint: "http://127.0.0.1:4317"
//!     protocol: grpc          # or http (then e.g. http://127.0.0.1:4318)
//!     sampler: { ratio: 1.0 } # parent-based, trace-id ratio for roots
//!     service_name: wasmgate
//!     batch: { scheduled_delay_ms: 5000, max_queue: 2048 }
//! ```

use serde::Deserialize;

/// A `telemetry:` setting that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TelemetryConfigError {
    /// `endpoint` is not an absolute `http://` or `https://` URL.
    #[error("telemetry.tracing.endpoint must be an absolute http:// or https:// URL, got {0:?}")]
    Endpoint(String),
    /// gRPC export is built without TLS.
    #[error(
        "telemetry.tracing.endpoint {0:?}: OTLP over gRPC is built without TLS; use an http:// endpoint or protocol: http"
    )]
    GrpcTls(String),
    /// `sampler.ratio` outside 0..=1.
    #[error("telemetry.tracing.sampler.ratio must be within 0.0..=1.0, got {0}")]
    Ratio(f64),
    /// `service_name` empty or not printable.
    #[error("telemetry.tracing.service_name must be 1 to 255 printable characters")]
    ServiceName,
    /// A batch limit out of its range.
    #[error("telemetry.tracing.batch.{key} must be within {min}..={max}, got {value}")]
    Batch {
        /// The key under `batch.`.
        key: &'static str,
        /// The smallest value allowed.
        min: u64,
        /// The largest value allowed.
        max: u64,
        /// The value configured.
        value: u64,
    },
}

/// The `telemetry:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Traces over OTLP; no spans at all when absent.
    #[serde(default)]
    pub tracing: Option<TracingConfig>,
}

/// `telemetry.tracing`: where and how spans are exported.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP receiver (an OpenTelemetry Collector, Jaeger, Tempo...).
    /// gRPC: `http://host:4317`. HTTP: the base URL (`/v1/traces` is
    /// appended when the URL has no path) or the full traces URL.
    pub endpoint: String,
    /// `grpc` (default) or `http` (protobuf over HTTP/1.1 or HTTP/2).
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Which traces are kept.
    #[serde(default)]
    pub sampler: SamplerConfig,
    /// The `service.name` resource attribute (`service.version` is the
    /// gateway's version).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The batch span processor.
    #[serde(default)]
    pub batch: BatchConfig,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (tonic).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

/// `telemetry.tracing.sampler`: parent-based; a call whose `traceparent`
/// says sampled (or not) follows its parent, a call without one is kept
/// with probability `ratio` (by trace id).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    /// 0.0 (no root trace) to 1.0 (every root trace).
    pub ratio: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self { ratio: 1.0 }
    }
}

/// `telemetry.tracing.batch`: spans are exported in batches from a bounded
/// queue; when it is full, new spans are dropped (never a slower call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// The longest a finished span waits before its batch is sent, ms.
    pub scheduled_delay_ms: u64,
    /// Finished spans waiting for export, at most.
    pub max_queue: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { scheduled_delay_ms: 5000, max_queue: 2048 }
    }
}

fn default_service_name() -> String {
    "wasmgate".into()
}

impl TelemetryConfig {
    /// Checks every setting.
    pub(super) fn validate(&self) -> Result<(), TelemetryConfigError> {
        let Some(t) = &self.tracing else { return Ok(()) };
        let uri: http::Uri = t.endpoint.parse().map_err(|_| TelemetryConfigError::Endpoint(t.endpoint.clone()))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(_)) => {}
            (Some("https"), Some(_)) if t.protocol == OtlpProtocol::Http => {}
            (Some("https"), Some(_)) => return Err(TelemetryConfigError::GrpcTls(t.endpoint.clone())),
            _ => return Err(TelemetryConfigError::Endpoint(t.endpoint.clone())),
        }
        if !(0.0..=1.0).contains(&t.sampler.ratio) {
            return Err(TelemetryConfigError::Ratio(t.sampler.ratio));
        }
        let name = &t.service_name;
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(TelemetryConfigError::ServiceName);
        }
        let check = |key, value: u64, min, max| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(TelemetryConfigError::Batch { key, min, max, value })
            }
        };
        check("scheduled_delay_ms", t.batch.scheduled_delay_ms, 1, 60_000)?;
        check("max_queue", t.batch.max_queue as u64, 1, 1_000_000)?;
        Ok(())
    }
}

impl TracingConfig {
    /// The URL spans are sent to: for HTTP without a path, the OTLP
    /// traces path is appended.
    pub fn export_url(&self) -> String {
        match self.protocol {
            OtlpProtocol::Grpc => self.endpoint.clone(),
            OtlpProtocol::Http => {
                let has_path = self.endpoint.parse::<http::Uri>().is_ok_and(|u| !matches!(u.path(), "" | "/"));
                if has_path {
                    self.endpoint.clone()
                } else {
                    format!("{}/v1/traces", self.endpoint.trim_end_matches('/'))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> TelemetryConfig {
        serde_norway::from_str(yaml).expect("parse")
    }

    #[test]
    fn defaults_and_validation() {
        let c = parse("tracing: { endpoint: \"http://127.0.0.1:4317\" }");
        let t = c.tracing.as_ref().expect("tracing");
        assert_eq!(t.protocol, OtlpProtocol::Grpc);
        assert_eq!(t.sampler.ratio, 1.0);
        assert_eq!(t.service_name, "wasmgate");
        assert_eq!(t.batch, BatchConfig { scheduled_delay_ms: 5000, max_queue: 2048 });
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(TelemetryConfig::default().validate(), Ok(()));
        for (yaml, want) in [
            ("tracing: { endpoint: \"127.0.0.1:4317\" }", "absolute"),
            ("tracing: { endpoint: \"ftp://x:1\" }", "absolute"),
            ("tracing: { endpoint: \"https://x:4317\" }", "without TLS"),
            ("tracing: { endpoint: \"http://x:4317\", sampler: { ratio: 1.5 } }", "ratio"),
            ("tracing: { endpoint: \"http://x:4317\", service_name: \"\" }", "service_name"),
            ("tracing: { endpoint: \"http://x:4317\", batch: { max_queue: 0 } }", "batch.max_queue"),
        ] {
            let err = parse(yaml).validate().expect_err(yaml).to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
        assert_eq!(parse("tracing: { endpoint: \"https://x\", protocol: http }").validate(), Ok(()));
        assert!(serde_norway::from_str::<TelemetryConfig>("tracing: { endpoint: x, typo: 1 }").is_err());
    }

    #[test]
    fn http_export_url_gets_the_traces_path_when_it_has_none() {
        let t = |endpoint: &str| TracingConfig {
            endpoint: endpoint.into(),
            protocol: OtlpProtocol::Http,
            sampler: SamplerConfig::default(),
            service_name: "s".into(),
            batch: BatchConfig::default(),
        };
        assert_eq!(t("http://c:4318").export_url(), "http://c:4318/v1/traces");
        assert_eq!(t("http://c:4318/").export_url(), "http://c:4318/v1/traces");
        assert_eq!(t("http://c:4318/otlp/v1/traces").export_url(), "http://c:4318/otlp/v1/traces");
    }
}
