use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// Label names that would carry unbounded or personal values.
const FORBIDDEN_LABELS: &[&str] = &[
    "path",
    "url",
    "uri",
    "subject",
    "sub",
    "user",
    "tenant",
    "token",
    "jti",
    "kid",
    "client_ip",
    "ip",
    "credential",
    "key",
    "query",
];

/// Records one sample in every family, so each renders its labels.
fn touch_every_family() {
    build_info("wasmgate:policy@0.1.0");
    policy_failure("authz", "trap");
    decision("api", "allow");
    reload("success");
    shadow("authorizer", "rbac", "candidate", "agree");
    upstream_failure("api", "connect");
    upstream_request("api", Some(http::StatusCode::BAD_GATEWAY), 0.002);
    upstream_request("api", None, 0.002);
    connection_started();
    connection_ended();
    connection_closed("refused");
    accept_error("other");
    pipeline_duration("api", 3e-5);
    http_request("api", &http::Method::GET, http::StatusCode::OK, 0.001);
    decision_log("stderr", "written");
    jwks_fetch("dev", "success");
    jwks_keys("dev", 2);
    driver_call("credentials", "ResolveCredential", "ok", 0.001);
    credential_cache("hit");
    credential_refresh_failure();
    gateway_key_reload("success");
    revocation_list_reload("failure");
}

/// Each family's type (from `# TYPE`) and the names and label names of its
/// samples, from the rendered text.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    samples: BTreeSet<String>,
    labels: BTreeSet<String>,
}

fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            current = name.to_owned();
            out.entry(current.clone()).or_default().kind = kind.to_owned();
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).expect("a sample");
            let family = out.get_mut(&current).expect("samples follow their # TYPE");
            family.samples.insert(line[..name_end].to_owned());
            if let Some(labels) = line[name_end..].strip_prefix('{') {
                let labels = &labels[..labels.find('}').expect("closing brace")];
                for pair in labels.split("\",") {
                    family.labels.insert(pair.split_once('=').expect("name=value").0.to_owned());
                }
            }
        }
    }
    out
}

fn snake_case(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.contains("__")
}

#[test]
fn every_family_follows_the_naming_rules() {
    touch_every_family();
    let text = render();
    let families = families(&text);
    assert!(families.len() >= 20, "{text}");
    for (name, f) in &families {
        assert!(snake_case(name), "{name}: snake_case");
        assert!(
            name.starts_with("wasmgate_") || name == "http_server_request_duration_seconds",
            "{name}: the wasmgate_ prefix"
        );
        for unit in ["_ms", "_milliseconds", "_microseconds", "_us", "_minutes", "_hours", "_kilobytes"] {
            assert!(!name.contains(&format!("{unit}_")) && !name.ends_with(unit), "{name}: base units only");
        }
        assert!(!f.samples.is_empty(), "{name}: touched, so it has samples:\n{text}");
        match f.kind.as_str() {
            "counter" => {
                assert!(!name.ends_with("_total"), "{name}: registered without _total (it is added once)");
                assert_eq!(f.samples, BTreeSet::from([format!("{name}_total")]), "{name}: samples end in _total");
            }
            "gauge" => {
                assert!(!name.ends_with("_total"), "{name}: a gauge is not a _total");
                assert!(!name.contains("timestamp") || name.ends_with("_timestamp_seconds"), "{name}");
                assert_eq!(f.samples, BTreeSet::from([name.clone()]), "{name}");
            }
            "histogram" => {
                assert!(name.ends_with("_duration_seconds"), "{name}: histograms here are durations in seconds");
                let parts = ["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}"));
                assert_eq!(f.samples, BTreeSet::from(parts), "{name}");
            }
            other => panic!("{name}: unexpected type {other}"),
        }
        for label in &f.labels {
            assert!(snake_case(label), "{name}: label {label} is snake_case");
            assert!(!FORBIDDEN_LABELS.contains(&label.as_str()), "{name}: label {label} is high-cardinality");
        }
    }
    // Sanity of the check itself: it sees labels.
    assert!(families["wasmgate_upstream_responses"].labels.contains("status_class"), "{text}");
}

#[test]
fn the_families_of_issue_12_exist() {
    touch_every_family();
    let families = families(&render());
    for name in [
        "http_server_request_duration_seconds",
        "wasmgate_build_info",
        "wasmgate_pipeline_duration_seconds",
        "wasmgate_upstream_request_duration_seconds",
        "wasmgate_upstream_failures",
        "wasmgate_upstream_responses",
        "wasmgate_jwks_fetches",
        "wasmgate_jwks_keys",
        "wasmgate_jwks_last_success_timestamp_seconds",
        "wasmgate_driver_calls",
        "wasmgate_driver_call_duration_seconds",
        "wasmgate_credential_cache_lookups",
        "wasmgate_credential_refresh_failures",
        "wasmgate_gateway_key_reloads",
        "wasmgate_revocation_list_reloads",
        "wasmgate_decision_log_records",
    ] {
        assert!(families.contains_key(name), "{name} missing");
    }
    assert!(!families.contains_key("wasmgate_pipeline_seconds"), "the old name is gone");
}

#[test]
fn every_family_is_in_the_metrics_reference() {
    touch_every_family();
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/observability.md");
    let doc = std::fs::read_to_string(doc_path).expect("the metrics reference");
    for (name, f) in families(&render()) {
        let shown = if f.kind == "counter" { format!("{name}_total") } else { name.clone() };
        assert!(doc.contains(&format!("`{shown}")), "{shown} is not documented in {doc_path}");
    }
}

#[test]
fn the_pipeline_buckets_cover_a_microsecond_to_a_second() {
    assert_eq!(PIPELINE_BUCKETS.first(), Some(&1e-6));
    assert_eq!(PIPELINE_BUCKETS.last(), Some(&1.0));
    assert!(PIPELINE_BUCKETS.windows(2).all(|w| w[0] < w[1] && w[1] / w[0] <= 2.5 + 1e-9), "no gap wider than 2.5x");
    pipeline_duration("bucket-test", 0.0004);
    let text = render();
    let bucket = |le: &str| {
        let prefix = format!("wasmgate_pipeline_duration_seconds_bucket{{le=\"{le}\",route=\"bucket-test\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("{prefix}\n{text}")).to_owned()
    };
    assert_eq!(bucket("0.00025"), "0");
    assert_eq!(bucket("0.0005"), "1");
}

#[test]
fn upstream_responses_count_by_status_class() {
    for status in [200, 204, 503, 504, 502] {
        upstream_request("class-test", Some(http::StatusCode::from_u16(status).expect("status")), 0.01);
    }
    upstream_request("class-test", None, 0.01);
    let text = render();
    let line =
        |class: &str| format!("wasmgate_upstream_responses_total{{route=\"class-test\",status_class=\"{class}\"}}");
    assert!(text.contains(&format!("{} 2\n", line("2xx"))), "{text}");
    assert!(text.contains(&format!("{} 3\n", line("5xx"))), "{text}");
    assert!(
        text.contains("wasmgate_upstream_request_duration_seconds_count{route=\"class-test\"} 6\n"),
        "failures are timed too: {text}"
    );
}
