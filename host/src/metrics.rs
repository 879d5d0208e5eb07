//! Prometheus metrics, exposed in text format on the admin listener.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyFailureLabels {
    plugin: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    route: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    role: String,
    active: String,
    shadow: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamFailureLabels {
    route: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLogLabels {
    sink: String,
    result: String,
}

/// The OpenTelemetry default buckets for HTTP durations, in seconds.
const HTTP_DURATION_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

struct Metrics {
    http_requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    decision_log: Family<DecisionLogLabels, Counter>,
    connections_open: Gauge,
    connections_closed: Family<ReasonLabels, Counter>,
    accept_errors: Family<KindLabels, Counter>,
    upstream_failures: Family<UpstreamFailureLabels, Counter>,
    shadow: Family<ShadowLabels, Counter>,
    registry: Registry,
    policy_failures: Family<PolicyFailureLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    pipeline_seconds: Histogram,
    reloads: Family<ReloadLabels, Counter>,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("wasmgate");
        let policy_failures = Family::<PolicyFailureLabels, Counter>::default();
        registry.register(
            "policy_failures",
            "Policy component calls that failed closed, by component and kind",
            policy_failures.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register("decisions", "Gateway decisions by route and outcome", decisions.clone());
        let pipeline_seconds = Histogram::new([5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2]);
        registry.register(
            "pipeline_seconds",
            "Time from request to forwarding decision (authentication and policy)",
            pipeline_seconds.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("policy_reloads", "Policy reload attempts by result", reloads.clone());
        let shadow = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "shadow_evaluations",
            "Shadow policy evaluations by role, active and shadow component, and result (agree, disagree, skipped)",
            shadow.clone(),
        );
        let upstream_failures = Family::<UpstreamFailureLabels, Counter>::default();
        registry.register(
            "upstream_failures",
            "Upstream requests that failed, by route and kind (connect, timeout, reset, protocol, too_large, exhausted)",
            upstream_failures.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections of the main listener open now (evicted ones until they are closed)",
            connections_open.clone(),
        );
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Client connections the gateway closed on its own, by reason (refused, evicted, tls_handshake_timeout, first_byte_timeout, header_timeout, idle_timeout)",
            connections_closed.clone(),
        );
        let accept_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "accept_errors",
            "Failed accepts on the main listener, by kind (fd_limit, other)",
            accept_errors.clone(),
        );
        let decision_log = Family::<DecisionLogLabels, Counter>::default();
        registry.register(
            "decision_log_records",
            "Decision-log records by sink and result (written, dropped)",
            decision_log.clone(),
        );
        // Without the `wasmgate_` prefix: the OpenTelemetry HTTP semantic
        // conventions name it, so dashboards built for other servers work.
        let http_requests = Family::<RequestLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(HTTP_DURATION_BUCKETS)) as fn() -> Histogram,
        );
        root.register(
            "http_server_request_duration_seconds",
            "Duration of calls on the main listener, from the request to the response head, by route, method and \
             status class",
            http_requests.clone(),
        );
        Metrics {
            http_requests,
            decision_log,
            connections_open,
            connections_closed,
            accept_errors,
            upstream_failures,
            shadow,
            registry: root,
            policy_failures,
            decisions,
            pipeline_seconds,
            reloads,
        }
    })
}

/// Counts a policy call that failed closed.
pub fn policy_failure(plugin: &str, kind: &str) {
    metrics()
        .policy_failures
        .get_or_create(&PolicyFailureLabels { plugin: plugin.to_owned(), kind: kind.to_owned() })
        .inc();
}

/// Counts a decision (`allow`, `unauthenticated`, `forbidden`, `unavailable`, ...).
pub fn decision(route: &str, outcome: &str) {
    metrics().decisions.get_or_create(&DecisionLabels { route: route.to_owned(), outcome: outcome.to_owned() }).inc();
}

/// Counts a policy reload attempt (`success` or `failure`).
pub fn reload(result: &str) {
    metrics().reloads.get_or_create(&ReloadLabels { result: result.to_owned() }).inc();
}

/// Counts a shadow evaluation (`agree`, `disagree` or `skipped`).
pub fn shadow(role: &str, active: &str, shadow: &str, result: &str) {
    metrics()
        .shadow
        .get_or_create(&ShadowLabels {
            role: role.to_owned(),
            active: active.to_owned(),
            shadow: shadow.to_owned(),
            result: result.to_owned(),
        })
        .inc();
}

/// Counts an upstream request that failed (`connect`, `timeout`, `reset`,
/// `protocol`, `too_large`).
pub fn upstream_failure(route: &str, kind: &str) {
    metrics()
        .upstream_failures
        .get_or_create(&UpstreamFailureLabels { route: route.to_owned(), kind: kind.to_owned() })
        .inc();
}

/// Counts a client connection admitted by the main listener.
pub fn connection_started() {
    metrics().connections_open.inc();
}

/// Counts a client connection of the main listener closed.
pub fn connection_ended() {
    metrics().connections_open.dec();
}

/// Counts a client connection the gateway closed on its own (`refused`,
/// `evicted`, `tls_handshake_timeout`, `first_byte_timeout`,
/// `header_timeout`, `idle_timeout`).
pub fn connection_closed(reason: &str) {
    metrics().connections_closed.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
}

/// Counts a failed accept (`fd_limit`, `other`).
pub fn accept_error(kind: &str) {
    metrics().accept_errors.get_or_create(&KindLabels { kind: kind.to_owned() }).inc();
}

/// Records the pipeline's duration.
pub fn pipeline_duration(seconds: f64) {
    metrics().pipeline_seconds.observe(seconds);
}

/// Records one call of the main listener, when its response head is
/// known: route (empty when none matched), method (`_OTHER` for one
/// outside the standard set) and status class (`2xx` ...).
pub fn http_request(route: &str, method: &http::Method, status: http::StatusCode, seconds: f64) {
    let method = match *method {
        http::Method::GET
        | http::Method::HEAD
        | http::Method::POST
        | http::Method::PUT
        | http::Method::DELETE
        | http::Method::CONNECT
        | http::Method::OPTIONS
        | http::Method::TRACE
        | http::Method::PATCH => method.as_str(),
        _ => "_OTHER",
    };
    let status_class = match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    metrics()
        .http_requests
        .get_or_create(&RequestLabels {
            route: route.to_owned(),
            method: method.to_owned(),
            status_class: status_class.to_owned(),
        })
        .observe(seconds);
}

/// Counts a decision-log record a sink wrote or dropped (`written`,
/// `dropped`).
pub fn decision_log(sink: &str, result: &str) {
    metrics().decision_log.get_or_create(&DecisionLogLabels { sink: sink.to_owned(), result: result.to_owned() }).inc();
}

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &metrics().registry);
    out
}
