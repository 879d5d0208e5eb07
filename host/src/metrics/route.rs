//! One route's per-call metrics, resolved once: a call records into
//! handles it already holds, with no label strings to build and no family
//! lookup, and the histograms take no lock.
//!
//! Series still appear on first use, as with [`super::http_request`] and
//! the other label-taking functions, which record into the same series.

use std::sync::{Arc, LazyLock, OnceLock, RwLock};

use prometheus_client::metrics::counter::Counter;

use super::histogram::AtomicHistogram;
use super::labels::*;
use super::{metrics, status_class};

/// The standard methods, in the order of [`method_index`]; `_OTHER` last.
const METHODS: [&str; 10] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn method_index(method: &http::Method) -> usize {
    match *method {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        http::Method::CONNECT => 5,
        http::Method::OPTIONS => 6,
        http::Method::TRACE => 7,
        http::Method::PATCH => 8,
        _ => 9,
    }
}

fn class_index(status: http::StatusCode) -> usize {
    CLASSES.iter().position(|c| *c == status_class(status)).unwrap_or(4)
}

/// The per-call series of one route (`""`: no route matched).
#[derive(Debug)]
pub struct RouteMetrics {
    route: String,
    pipeline: OnceLock<AtomicHistogram>,
    upstream: OnceLock<AtomicHistogram>,
    responses: [OnceLock<Counter>; 5],
    requests: [[OnceLock<AtomicHistogram>; 5]; 10],
    /// Decisions by outcome (a small closed set of static strings).
    decisions: RwLock<Vec<(&'static str, Counter)>>,
}

/// The series of calls no route matched.
pub fn unrouted() -> &'static RouteMetrics {
    static UNROUTED: LazyLock<RouteMetrics> = LazyLock::new(|| RouteMetrics::build(""));
    &UNROUTED
}

impl RouteMetrics {
    /// The handles of route `route`'s series.
    pub fn new(route: &str) -> Arc<Self> {
        Arc::new(Self::build(route))
    }

    fn build(route: &str) -> Self {
        Self {
            route: route.to_owned(),
            pipeline: OnceLock::new(),
            upstream: OnceLock::new(),
            responses: Default::default(),
            requests: Default::default(),
            decisions: RwLock::new(Vec::new()),
        }
    }

    fn route_labels(&self) -> RouteLabels {
        RouteLabels { route: self.route.clone() }
    }

    /// Like [`super::pipeline_duration`].
    pub fn pipeline_duration(&self, seconds: f64) {
        self.pipeline.get_or_init(|| metrics().pipeline.get_or_create_owned(&self.route_labels())).observe(seconds);
    }

    /// Like [`super::decision`].
    pub fn decision(&self, outcome: &'static str) {
        if let Ok(known) = self.decisions.read()
            && let Some((_, c)) = known.iter().find(|(o, _)| *o == outcome)
        {
            c.inc();
            return;
        }
        let counter = metrics()
            .decisions
            .get_or_create_owned(&DecisionLabels { route: self.route.clone(), outcome: outcome.to_owned() });
        counter.inc();
        if let Ok(mut known) = self.decisions.write()
            && !known.iter().any(|(o, _)| *o == outcome)
        {
            known.push((outcome, counter));
        }
    }

    /// Like [`super::http_request`].
    pub fn http_request(&self, method: &http::Method, status: http::StatusCode, seconds: f64) {
        let (m, c) = (method_index(method), class_index(status));
        self.requests[m][c]
            .get_or_init(|| {
                metrics().http_requests.get_or_create_owned(&RequestLabels {
                    route: self.route.clone(),
                    method: METHODS[m].to_owned(),
                    status_class: CLASSES[c].to_owned(),
                })
            })
            .observe(seconds);
    }

    /// Like [`super::upstream_request`].
    pub fn upstream_request(&self, status: Option<http::StatusCode>, seconds: f64) {
        self.upstream
            .get_or_init(|| metrics().upstream_duration.get_or_create_owned(&self.route_labels()))
            .observe(seconds);
        if let Some(status) = status {
            let c = class_index(status);
            self.responses[c]
                .get_or_init(|| {
                    metrics().upstream_responses.get_or_create_owned(&RouteStatusLabels {
                        route: self.route.clone(),
                        status_class: CLASSES[c].to_owned(),
                    })
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_record_into_the_same_series_as_the_label_functions() {
        let route = "route-metrics-test";
        let m = RouteMetrics::new(route);
        m.decision("allow");
        m.decision("allow");
        super::super::decision(route, "allow");
        m.http_request(&http::Method::GET, http::StatusCode::OK, 0.001);
        m.http_request(&http::Method::from_bytes(b"BREW").expect("method"), http::StatusCode::IM_A_TEAPOT, 0.001);
        m.upstream_request(Some(http::StatusCode::BAD_GATEWAY), 0.002);
        m.pipeline_duration(0.000_01);
        let text = super::super::render();
        let line = |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).map(str::to_owned);
        assert_eq!(
            line(&format!("wasmgate_decisions_total{{route=\"{route}\",outcome=\"allow\"}}")).as_deref(),
            Some(format!("wasmgate_decisions_total{{route=\"{route}\",outcome=\"allow\"}} 3").as_str())
        );
        assert!(
            line(&format!(
                "http_server_request_duration_seconds_count{{route=\"{route}\",method=\"GET\",status_class=\"2xx\"}} 1"
            ))
            .is_some(),
            "{text}"
        );
        assert!(line(&format!("http_server_request_duration_seconds_count{{route=\"{route}\",method=\"_OTHER\",status_class=\"4xx\"}} 1")).is_some(), "{text}");
        assert!(
            line(&format!("wasmgate_upstream_responses_total{{route=\"{route}\",status_class=\"5xx\"}} 1")).is_some(),
            "{text}"
        );
        assert!(line(&format!("wasmgate_pipeline_duration_seconds_count{{route=\"{route}\"}} 1")).is_some(), "{text}");
    }
}
