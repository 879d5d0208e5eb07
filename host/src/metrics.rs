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
struct KindLabels {
    kind: String,
}

struct Metrics {
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
        let mut registry = Registry::with_prefix("wasmgate");
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
        Metrics {
            connections_open,
            connections_closed,
            accept_errors,
            upstream_failures,
            shadow,
            registry,
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

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &metrics().registry);
    out
}
