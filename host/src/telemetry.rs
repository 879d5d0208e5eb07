//! Logs and traces: the one `tracing` subscriber, OpenTelemetry spans
//! exported over OTLP, and W3C trace-context propagation.
//!
//! [`init_logging`] installs the subscriber before the config is read
//! (text or flat JSON on stderr, [`format`]). Its OpenTelemetry layer is
//! there from the start, but it records nothing until [`start`] plugs an
//! exporter and a sampler in from `telemetry.tracing` ([`export`]); until
//! then, and for good when tracing is not configured, [`on`] is false and
//! the gateway creates no span at all (`tracing::Span::none()`), so tracing
//! off costs one relaxed atomic load per would-be span.
//!
//! Spans of the gateway use the target [`TARGET`]; only they (and the
//! gateway's warnings, as span events) reach the OpenTelemetry layer, and
//! they never reach the log output: a request-scoped log line gets the
//! call's `decision_id` and `trace_id` from [`with_ids`] instead.

mod export;
pub mod format;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use export::{Telemetry, TelemetryError, start};

/// The target of every span the gateway creates.
pub const TARGET: &str = "wasmgate::trace";

/// True once [`start`] has configured an exporter: spans are created.
static ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are created (tracing configured and started).
#[inline]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// A span of the gateway (target [`TARGET`], level INFO) when tracing is
/// on, else `Span::none()` without evaluating the fields.
macro_rules! span {
    ($name:expr $(, $($fields:tt)*)?) => {
        if $crate::telemetry::on() {
            ::tracing::info_span!(target: "wasmgate::trace", $name $(, $($fields)*)?)
        } else {
            ::tracing::Span::none()
        }
    };
}
pub(crate) use span;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text (colours only on a terminal).
    Text,
    /// One flat JSON object per line ([`format::FlatJson`]).
    Json,
}

/// Installs the process's subscriber: `filter` (an `EnvFilter`, `info` if
/// it does not parse) and `format` for log lines on stderr, and the
/// OpenTelemetry layer, inert until [`start`]. Call once, first.
pub fn init_logging(filter: &str, format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The gateway's spans go to OpenTelemetry only, never to the log. The
    // interest is per callsite (cached) and the level hint stays the
    // filter's, so disabled callsites remain one cached check.
    let logged = |m: &tracing::Metadata<'_>| !(m.is_span() && m.target() == TARGET);
    let filter = tracing_subscriber::filter::FilterExt::and(
        filter,
        tracing_subscriber::filter::dynamic_filter_fn(move |m, _| logged(m))
            .with_max_level_hint(tracing::level_filters::LevelFilter::TRACE)
            .with_callsite_filter(move |m| {
                if logged(m) { tracing::subscriber::Interest::always() } else { tracing::subscriber::Interest::never() }
            }),
    );
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match format {
        LogFormat::Text => fmt.event_format(format::WithIds::default()).boxed(),
        LogFormat::Json => {
            fmt.event_format(format::FlatJson).fmt_fields(tracing_subscriber::fmt::format::JsonFields::new()).boxed()
        }
    };
    let otel = export::layer().with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target(TARGET, tracing::Level::INFO)
            .with_target("wasmgate", tracing::Level::WARN),
    );
    let _ = tracing_subscriber::registry().with(otel).with(fmt.with_filter(filter)).try_init();
}

/// The ids of the call being served, for its log lines.
#[derive(Debug, Clone)]
pub struct CallIds {
    /// The call's decision id.
    pub decision_id: String,
    /// The call's trace id, when tracing is on.
    pub trace_id: Option<String>,
}

tokio::task_local! {
    static CALL: CallIds;
}

/// Runs `fut` (one call) with `ids` on every log line it writes.
pub async fn with_ids<F: Future>(ids: CallIds, fut: F) -> F::Output {
    CALL.scope(ids, fut).await
}

/// `f` of the ids of the call the current task serves, if it serves one.
pub(crate) fn current_ids<R>(f: impl FnOnce(&CallIds) -> R) -> Option<R> {
    CALL.try_with(f).ok()
}

fn propagator() -> &'static TraceContextPropagator {
    static P: OnceLock<TraceContextPropagator> = OnceLock::new();
    P.get_or_init(TraceContextPropagator::new)
}

/// The server span of one call (HTTP semantic conventions), child of the
/// client's `traceparent` (and `tracestate`) if it sent a valid one;
/// `Span::none()` when tracing is off. The fields the later phases know
/// (route, status, ...) are recorded into it as they are known.
pub fn server_span(method: &http::Method, headers: &http::HeaderMap) -> Span {
    if !on() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: "wasmgate::trace",
        "server",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        url.path = tracing::field::Empty,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
        error.type = tracing::field::Empty,
        wasmgate.decision_id = tracing::field::Empty,
    );
    let parent = propagator().extract(&opentelemetry_http::HeaderExtractor(headers));
    let _ = span.set_parent(parent);
    span
}

/// The W3C trace id of `span`, hex; `None` when it is disabled.
pub fn trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Replaces the request's `traceparent` and `tracestate` with `span`'s
/// context (the upstream's parent is the gateway's client span). When
/// `span` is disabled (tracing off) the headers are left as they are.
pub fn inject(span: &Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    headers.remove("traceparent");
    headers.remove("tracestate");
    let cx = span.context();
    propagator().inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
    if headers.get("tracestate").is_some_and(|v| v.is_empty()) {
        headers.remove("tracestate");
    }
}

/// Records `value` as `field` of the current span, when tracing is on
/// (for code that runs inside a span it does not hold, e.g. the cache
/// outcome inside `authenticate`).
pub fn record_current(field: &'static str, value: &'static str) {
    if on() {
        Span::current().record(field, value);
    }
}

/// Records the response status on an HTTP span: `http.response.status_code`,
/// and for an error (5xx on a server span; 4xx too on a client span)
/// `error.type` and `otel.status_code=ERROR`.
pub fn record_status(span: &Span, status: u16, server: bool) {
    if span.is_disabled() {
        return;
    }
    // As i64: the OpenTelemetry layer records unsigned integers as text.
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 || (!server && status >= 400) {
        span.record("error.type", status.to_string());
        span.record("otel.status_code", "ERROR");
    }
}

/// Records a failure without a status on a span: `error.type` and
/// `otel.status_code=ERROR`.
pub fn record_error(span: &Span, kind: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("error.type", kind);
    span.record("otel.status_code", "ERROR");
}

/// Renames `span` (its OpenTelemetry name, e.g. `GET route` once the
/// route is known).
pub fn rename(span: &Span, name: String) {
    if span.is_disabled() {
        return;
    }
    span.context().span().update_name(name);
}

/// `host` and `port` of an authority (`host`, `host:port`, `[v6]:port`).
pub fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests;
