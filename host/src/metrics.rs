//! Prometheus metrics, exposed in text format on the admin listener.
//!
//! Names follow the Prometheus conventions: base units (`_seconds`),
//! `_total` on counters, a `wasmgate_` prefix (except
//! `http_server_request_duration_seconds`, named by the OpenTelemetry HTTP
//! conventions), and labels whose values come from bounded sets: config
//! names (route, provider, driver), fixed enums (kind, result, status
//! class), never paths, subjects, tenants or token ids. The reference is
//! `docs/observability.md` ("Metrics"); `tests.rs` checks every family
//! against these rules.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

mod histogram;
mod labels;
mod route;
#[cfg(test)]
mod tests;

use histogram::AtomicHistogram;
use labels::*;
pub use route::{RouteMetrics, unrouted};

struct Metrics {
    http_requests: HistogramFamily<RequestLabels>,
    decision_log: Family<DecisionLogLabels, Counter>,
    connections_open: Gauge,
    connections_closed: Family<ReasonLabels, Counter>,
    accept_errors: Family<KindLabels, Counter>,
    upstream_failures: Family<UpstreamFailureLabels, Counter>,
    upstream_duration: HistogramFamily<RouteLabels>,
    upstream_responses: Family<RouteStatusLabels, Counter>,
    shadow: Family<ShadowLabels, Counter>,
    registry: Registry,
    policy_failures: Family<PolicyFailureLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    pipeline: HistogramFamily<RouteLabels>,
    reloads: Family<ResultLabels, Counter>,
    jwks_fetches: Family<ProviderResultLabels, Counter>,
    jwks_keys: Family<ProviderLabels, Gauge>,
    jwks_last_success: Family<ProviderLabels, Gauge<f64, AtomicU64>>,
    driver_calls: Family<DriverCallLabels, Counter>,
    driver_duration: HistogramFamily<DriverMethodLabels>,
    credential_cache: Family<ResultLabels, Counter>,
    credential_refresh_failures: Counter,
    gateway_key_reloads: Family<ResultLabels, Counter>,
    revocation_reloads: Family<ResultLabels, Counter>,
    build_info: Family<BuildLabels, Gauge>,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let mut root = Registry::default();
        // Without the `wasmgate_` prefix: the OpenTelemetry HTTP semantic
        // conventions name it, so dashboards built for other servers work.
        let http_requests = histograms::<RequestLabels>(|| AtomicHistogram::new(&HTTP_DURATION_BUCKETS));
        root.register(
            "http_server_request_duration_seconds",
            "Duration of calls on the main listener, from the request to the response head, by route, method and \
             status class",
            http_requests.clone(),
        );
        let r = root.sub_registry_with_prefix("wasmgate");
        let build_info = Family::<BuildLabels, Gauge>::default();
        r.register(
            "build_info",
            "Always 1: the gateway's version and the WIT package its components are checked against",
            build_info.clone(),
        );
        let policy_failures = Family::<PolicyFailureLabels, Counter>::default();
        r.register(
            "policy_failures",
            "Policy component calls that failed closed, by component and kind",
            policy_failures.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        r.register("decisions", "Gateway decisions by route and outcome", decisions.clone());
        let pipeline = histograms::<RouteLabels>(|| AtomicHistogram::new(&PIPELINE_BUCKETS));
        r.register(
            "pipeline_duration_seconds",
            "Time from the request to the forwarding decision (authentication and policy), by route",
            pipeline.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        r.register("policy_reloads", "Policy reload attempts by result (success, failure)", reloads.clone());
        let shadow = Family::<ShadowLabels, Counter>::default();
        r.register(
            "shadow_evaluations",
            "Shadow policy evaluations by role, active and shadow component, and result (agree, disagree, skipped)",
            shadow.clone(),
        );
        let upstream_failures = Family::<UpstreamFailureLabels, Counter>::default();
        r.register(
            "upstream_failures",
            "Upstream requests that failed, by route and kind (connect, timeout, reset, protocol, too_large, exhausted)",
            upstream_failures.clone(),
        );
        let upstream_duration = histograms::<RouteLabels>(|| AtomicHistogram::new(&UPSTREAM_BUCKETS));
        r.register(
            "upstream_request_duration_seconds",
            "Upstream requests sent, from sending to the response head or the failure, by route",
            upstream_duration.clone(),
        );
        let upstream_responses = Family::<RouteStatusLabels, Counter>::default();
        r.register(
            "upstream_responses",
            "Upstream response heads received, by route and status class (1xx to 5xx)",
            upstream_responses.clone(),
        );
        let connections_open = Gauge::default();
        r.register(
            "connections_open",
            "Client connections of the main listener open now (evicted ones until they are closed)",
            connections_open.clone(),
        );
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        r.register(
            "connections_closed",
            "Client connections the gateway closed on its own, by reason (refused, evicted, tls_handshake_timeout, first_byte_timeout, header_timeout, idle_timeout)",
            connections_closed.clone(),
        );
        let accept_errors = Family::<KindLabels, Counter>::default();
        r.register("accept_errors", "Failed accepts on the main listener, by kind (fd_limit, other)", accept_errors.clone());
        let decision_log = Family::<DecisionLogLabels, Counter>::default();
        r.register(
            "decision_log_records",
            "Decision-log records by sink and result (written, dropped)",
            decision_log.clone(),
        );
        let jwks_fetches = Family::<ProviderResultLabels, Counter>::default();
        r.register(
            "jwks_fetches",
            "JWKS fetches (with discovery) by identity provider and result (success, transport, status, too_large, \
             invalid, no_usable_keys)",
            jwks_fetches.clone(),
        );
        let jwks_keys = Family::<ProviderLabels, Gauge>::default();
        r.register("jwks_keys", "Usable keys in the last key set fetched, by identity provider", jwks_keys.clone());
        let jwks_last_success = Family::<ProviderLabels, Gauge<f64, AtomicU64>>::default();
        r.register(
            "jwks_last_success_timestamp_seconds",
            "When the provider's key set was last fetched successfully (Unix seconds); its age is time() minus this",
            jwks_last_success.clone(),
        );
        let driver_calls = Family::<DriverCallLabels, Counter>::default();
        r.register(
            "driver_calls",
            "Driver calls by driver, gRPC method and result (ok, unavailable, deadline_exceeded, error)",
            driver_calls.clone(),
        );
        let driver_duration = histograms::<DriverMethodLabels>(|| AtomicHistogram::new(&DRIVER_BUCKETS));
        r.register(
            "driver_call_duration_seconds",
            "Duration of driver calls, answered or not, by driver and gRPC method",
            driver_duration.clone(),
        );
        let credential_cache = Family::<ResultLabels, Counter>::default();
        r.register(
            "credential_cache_lookups",
            "Upstream credentials asked of the cache, by result (hit: served from the cache, miss: fetched from \
             the driver or waited for a fetch in flight)",
            credential_cache.clone(),
        );
        let credential_refresh_failures = Counter::default();
        r.register(
            "credential_refresh_failures",
            "Background refreshes of a cached upstream credential ahead of its expiry that failed",
            credential_refresh_failures.clone(),
        );
        let gateway_key_reloads = Family::<ResultLabels, Counter>::default();
        r.register(
            "gateway_key_reloads",
            "Reloads of the gateway-token key folder that changed the key set (success) or were rejected (failure)",
            gateway_key_reloads.clone(),
        );
        let revocation_reloads = Family::<ResultLabels, Counter>::default();
        r.register(
            "revocation_list_reloads",
            "Reloads of the gateway-token revocation list that changed it (success) or were rejected (failure)",
            revocation_reloads.clone(),
        );
        Metrics {
            http_requests,
            decision_log,
            connections_open,
            connections_closed,
            accept_errors,
            upstream_failures,
            upstream_duration,
            upstream_responses,
            shadow,
            registry: root,
            policy_failures,
            decisions,
            pipeline,
            reloads,
            jwks_fetches,
            jwks_keys,
            jwks_last_success,
            driver_calls,
            driver_duration,
            credential_cache,
            credential_refresh_failures,
            gateway_key_reloads,
            revocation_reloads,
            build_info,
        }
    })
}

fn result(result: &str) -> ResultLabels {
    ResultLabels { result: result.to_owned() }
}

/// `1xx` to `5xx`; anything out of range is `5xx`.
fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Sets `wasmgate_build_info{version, wit} 1`: this build's version and the
/// WIT package (`wasmgate:policy@0.1.0`) components are checked against.
pub fn build_info(wit: &str) {
    metrics()
        .build_info
        .get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_owned(), wit: wit.to_owned() })
        .set(1);
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
pub fn reload(result_label: &str) {
    metrics().reloads.get_or_create(&result(result_label)).inc();
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
/// `protocol`, `too_large`, `exhausted`).
pub fn upstream_failure(route: &str, kind: &str) {
    metrics()
        .upstream_failures
        .get_or_create(&UpstreamFailureLabels { route: route.to_owned(), kind: kind.to_owned() })
        .inc();
}

/// Records an upstream request that was sent: its duration to the response
/// head (or to its failure, `status` `None`), and with a response head its
/// status class.
pub fn upstream_request(route: &str, status: Option<http::StatusCode>, seconds: f64) {
    let m = metrics();
    m.upstream_duration.get_or_create(&RouteLabels { route: route.to_owned() }).observe(seconds);
    if let Some(status) = status {
        m.upstream_responses
            .get_or_create(&RouteStatusLabels {
                route: route.to_owned(),
                status_class: status_class(status).to_owned(),
            })
            .inc();
    }
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

/// Records the pipeline's duration (request to forwarding decision) on
/// `route` (empty when none matched).
pub fn pipeline_duration(route: &str, seconds: f64) {
    metrics().pipeline.get_or_create(&RouteLabels { route: route.to_owned() }).observe(seconds);
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
    metrics()
        .http_requests
        .get_or_create(&RequestLabels {
            route: route.to_owned(),
            method: method.to_owned(),
            status_class: status_class(status).to_owned(),
        })
        .observe(seconds);
}

/// Counts a decision-log record a sink wrote or dropped (`written`,
/// `dropped`).
pub fn decision_log(sink: &str, result: &str) {
    metrics().decision_log.get_or_create(&DecisionLogLabels { sink: sink.to_owned(), result: result.to_owned() }).inc();
}

/// Counts `n` decision-log records a sink wrote or dropped at once (none
/// when `n` is 0: no series appears for it).
pub fn decision_logs(sink: &str, result: &str, n: u64) {
    if n > 0 {
        metrics()
            .decision_log
            .get_or_create(&DecisionLogLabels { sink: sink.to_owned(), result: result.to_owned() })
            .inc_by(n);
    }
}

/// Counts a JWKS fetch of identity provider `provider` (`success`, or the
/// failure's kind: `transport`, `status`, `too_large`, `invalid`,
/// `no_usable_keys`).
pub fn jwks_fetch(provider: &str, result: &str) {
    metrics()
        .jwks_fetches
        .get_or_create(&ProviderResultLabels { provider: provider.to_owned(), result: result.to_owned() })
        .inc();
}

/// Records a key set of `keys` usable keys fetched now for `provider`: the
/// key count and the last-success timestamp.
pub fn jwks_keys(provider: &str, keys: usize) {
    let m = metrics();
    let labels = ProviderLabels { provider: provider.to_owned() };
    m.jwks_keys.get_or_create(&labels).set(i64::try_from(keys).unwrap_or(i64::MAX));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    m.jwks_last_success.get_or_create(&labels).set(now);
}

/// Records one driver call: `method` is its gRPC method
/// (`ResolveCredential`), `result` `ok`, `unavailable`,
/// `deadline_exceeded` or `error` (the driver answered an error status).
pub fn driver_call(driver: &str, method: &str, result: &str, seconds: f64) {
    let m = metrics();
    m.driver_calls
        .get_or_create(&DriverCallLabels {
            driver: driver.to_owned(),
            method: method.to_owned(),
            result: result.to_owned(),
        })
        .inc();
    m.driver_duration
        .get_or_create(&DriverMethodLabels { driver: driver.to_owned(), method: method.to_owned() })
        .observe(seconds);
}

/// Counts an upstream credential asked of the cache: `hit` or `miss`.
pub fn credential_cache(result_label: &str) {
    metrics().credential_cache.get_or_create(&result(result_label)).inc();
}

/// Counts a background credential refresh that failed.
pub fn credential_refresh_failure() {
    metrics().credential_refresh_failures.inc();
}

/// Counts a reload of the gateway-token key folder: `success` (the key set
/// changed) or `failure` (rejected; the last good set keeps verifying).
pub fn gateway_key_reload(result_label: &str) {
    metrics().gateway_key_reloads.get_or_create(&result(result_label)).inc();
}

/// Counts a reload of the revocation list: `success` (it changed) or
/// `failure` (rejected; the last good list keeps applying).
pub fn revocation_list_reload(result_label: &str) {
    metrics().revocation_reloads.get_or_create(&result(result_label)).inc();
}

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &metrics().registry);
    out
}
