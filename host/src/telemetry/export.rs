//! The OpenTelemetry tracer provider, its OTLP exporter (gRPC over tonic,
//! or HTTP/protobuf over the workspace's reqwest client) and the sampler.
//!
//! The provider and the `tracing` layer over it exist from
//! [`super::init_logging`] on, before the config is read; its span
//! processor and sampler are late-bound: empty (nothing sampled, nothing
//! exported) until [`start`] sets them once from `telemetry.tracing`.
//! Changing `telemetry:` therefore needs a restart.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{SamplingDecision, SamplingResult};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, ShouldSample, Span, SpanData,
    SpanProcessor,
};
use tracing_subscriber::Registry;

use crate::config::{OtlpProtocol, TelemetryConfig, TracingConfig};

/// The layer type: OpenTelemetry over the registry.
type OtelLayer = tracing_opentelemetry::OpenTelemetryLayer<Registry, SdkTracer>;

/// The processor and sampler [`start`] sets.
static PROCESSOR: OnceLock<BatchSpanProcessor> = OnceLock::new();
static SAMPLER: OnceLock<Sampler> = OnceLock::new();
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The exporter could not be built (e.g. an endpoint it refuses).
    #[error("telemetry.tracing: cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The HTTP client could not be built.
    #[error("telemetry.tracing: cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// Called outside the async runtime the exporters run on.
    #[error("telemetry.tracing: not started from within the async runtime")]
    NoRuntime,
    /// Tracing was already started in this process.
    #[error("telemetry.tracing: already started")]
    AlreadyStarted,
}

/// The span processor of the provider: the batch processor once set.
#[derive(Debug)]
struct LateProcessor;

impl SpanProcessor for LateProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some(p) = PROCESSOR.get() {
            p.on_start(span, cx);
        }
    }

    fn on_end(&self, span: SpanData) {
        if let Some(p) = PROCESSOR.get() {
            p.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        PROCESSOR.get().map_or(Ok(()), BatchSpanProcessor::force_flush)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        PROCESSOR.get().map_or(Ok(()), |p| p.shutdown_with_timeout(timeout))
    }
}

/// The provider's sampler: records nothing until [`start`] sets one.
#[derive(Debug, Clone)]
struct LateSampler;

impl ShouldSample for LateSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: opentelemetry::trace::TraceId,
        name: &str,
        span_kind: &opentelemetry::trace::SpanKind,
        attributes: &[KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        match SAMPLER.get() {
            Some(s) => s.should_sample(parent_context, trace_id, name, span_kind, attributes, links),
            None => SamplingResult {
                decision: SamplingDecision::Drop,
                attributes: Vec::new(),
                trace_state: Default::default(),
            },
        }
    }
}

fn provider() -> &'static SdkTracerProvider {
    PROVIDER.get_or_init(|| {
        SdkTracerProvider::builder().with_span_processor(LateProcessor).with_sampler(LateSampler).build()
    })
}

/// The OpenTelemetry layer, over the late-bound provider.
pub(super) fn layer() -> OtelLayer {
    let tracer = provider().tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("wasmgate").with_version(env!("CARGO_PKG_VERSION")).build(),
    );
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
}

/// Tracing while `serve` runs: [`Telemetry::shutdown`] exports what is
/// still queued.
#[derive(Debug)]
pub struct Telemetry {
    started: bool,
}

/// Starts exporting spans as `cfg.tracing` says; with no `tracing`, spans
/// stay off. Call from within the async runtime (the exporters run on it).
pub fn start(cfg: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let Some(t) = &cfg.tracing else { return Ok(Telemetry { started: false }) };
    if PROCESSOR.get().is_some() {
        return Err(TelemetryError::AlreadyStarted);
    }
    // Both exporters run their I/O on the runtime.
    tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
    let exporter = exporter(t)?;
    let mut processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(t.batch.max_queue)
                .with_max_export_batch_size(t.batch.max_queue.min(512))
                .with_scheduled_delay(Duration::from_millis(t.batch.scheduled_delay_ms))
                .build(),
        )
        .build();
    processor.set_resource(
        &Resource::builder_empty()
            .with_service_name(t.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    // Make sure the provider (and the layer's tracer) exist.
    let _ = provider();
    PROCESSOR.set(processor).map_err(|_| TelemetryError::AlreadyStarted)?;
    let _ = SAMPLER.set(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(t.sampler.ratio))));
    super::ON.store(true, Ordering::Relaxed);
    tracing::info!(endpoint = %t.export_url(), protocol = ?t.protocol, ratio = t.sampler.ratio, "exporting traces");
    Ok(Telemetry { started: true })
}

fn exporter(t: &TracingConfig) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let timeout = Duration::from_secs(10);
    let builder = opentelemetry_otlp::SpanExporter::builder();
    Ok(match t.protocol {
        OtlpProtocol::Grpc => builder.with_tonic().with_endpoint(t.export_url()).with_timeout(timeout).build()?,
        OtlpProtocol::Http => {
            let client = ReqwestExport {
                client: reqwest::Client::builder().timeout(timeout).build()?,
                runtime: tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?,
            };
            builder
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(t.export_url())
                .with_timeout(timeout)
                .build()?
        }
    })
}

impl Telemetry {
    /// Stops creating spans and exports every span still queued (waits
    /// for the exporter, at most its timeout), so none is lost on SIGTERM.
    pub async fn shutdown(self) {
        if !self.started {
            return;
        }
        super::ON.store(false, Ordering::Relaxed);
        // Blocking: it waits for the batch thread, whose export may need
        // the runtime's I/O.
        let done = tokio::task::spawn_blocking(|| {
            let p = provider();
            let _ = p.force_flush();
            p.shutdown()
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "traces not all exported at shutdown"),
            Err(e) => tracing::warn!(error = %e, "traces not all exported at shutdown"),
        }
    }
}

/// `opentelemetry_http::HttpClient` over the workspace's reqwest client.
/// The batch processor exports from its own thread, outside the runtime:
/// each request runs on the runtime through `runtime`.
#[derive(Debug, Clone)]
struct ReqwestExport {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl HttpClient for ReqwestExport {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let runtime = self.runtime.clone();
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let (status, headers, body) = runtime
                .spawn(async move {
                    let response = client.execute(request).await?.error_for_status()?;
                    let (status, headers) = (response.status(), response.headers().clone());
                    Ok::<_, reqwest::Error>((status, headers, response.bytes().await?))
                })
                .await??;
            let mut response = Response::builder().status(status).body(body)?;
            *response.headers_mut() = headers;
            Ok(response)
        })
    }
}
