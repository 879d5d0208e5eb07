use std::io;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt as _;

use super::*;

/// A `MakeWriter` collecting every line in memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().map_err(|_| io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Lines {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
    }
}

fn ids() -> CallIds {
    CallIds { decision_id: "d".repeat(32), trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()) }
}

/// Runs `f` with a JSON subscriber and returns each line, parsed.
fn json_lines(f: impl FnOnce()) -> Vec<(String, Value)> {
    let lines = Lines::default();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(lines.clone())
            .event_format(format::FlatJson)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new()),
    );
    tracing::subscriber::with_default(subscriber, f);
    lines
        .text()
        .lines()
        .map(|l| (l.to_owned(), serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))))
        .collect()
}

#[test]
fn json_lines_are_flat_with_the_call_ids_at_the_top_level() {
    let lines = json_lines(|| {
        let span = tracing::info_span!("outer", inside = "span field");
        let _entered = span.enter();
        CALL.sync_scope(ids(), || {
            tracing::info!(route = "api", status = 503u16, ok = false, ratio = 0.5, "upstream \"x\"\nfailed");
        });
        tracing::warn!(level = "mine", "outside a call");
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (raw, first) = &lines[0];
    let obj = first.as_object().expect("object");
    assert_eq!(obj["message"], "upstream \"x\"\nfailed", "{raw}");
    assert_eq!(obj["route"], "api");
    assert_eq!(obj["status"], 503);
    assert_eq!(obj["ok"], false);
    assert_eq!(obj["ratio"], 0.5);
    assert_eq!(obj["level"], "INFO");
    assert_eq!(obj["target"], module_path!());
    assert_eq!(obj["decision_id"], "d".repeat(32));
    assert_eq!(obj["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(obj["timestamp"].as_str().is_some_and(|t| t.len() >= 20), "{raw}");
    // Nothing nested: no `fields`, no `span`/`spans`.
    for nested in ["fields", "span", "spans"] {
        assert!(!obj.contains_key(nested), "{nested} in {raw}");
    }
    assert!(obj.values().all(|v| !v.is_object() && !v.is_array()), "{raw}");

    let (raw, second) = &lines[1];
    let obj = second.as_object().expect("object");
    assert_eq!(obj["level"], "WARN", "{raw}");
    assert_eq!(obj["fields.level"], "mine", "{raw}");
    assert!(!obj.contains_key("decision_id") && !obj.contains_key("trace_id"), "outside a call: {raw}");
}

#[test]
fn an_event_with_its_own_decision_id_keeps_it_once() {
    let lines = json_lines(|| {
        CALL.sync_scope(CallIds { decision_id: "from-scope".into(), trace_id: None }, || {
            tracing::info!(decision_id = "from-event", "decision");
        });
    });
    let (raw, line) = &lines[0];
    assert_eq!(line["decision_id"], "from-event", "{raw}");
    assert_eq!(raw.matches("\"decision_id\"").count(), 1, "{raw}");
    assert!(line.get("trace_id").is_none(), "no trace id when tracing is off: {raw}");
}

#[test]
fn text_lines_of_a_call_end_with_its_ids() {
    let lines = Lines::default();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(lines.clone())
            .with_ansi(false)
            .event_format(format::WithIds::default()),
    );
    tracing::subscriber::with_default(subscriber, || {
        CALL.sync_scope(ids(), || tracing::info!(route = "api", "in a call"));
        tracing::info!("not in a call");
    });
    let text = lines.text();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got.len(), 2, "{text}");
    assert!(
        got[0].ends_with(&format!(
            "in a call route=\"api\" decision_id={} trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
            "d".repeat(32)
        )),
        "{text}"
    );
    assert!(got[1].ends_with("not in a call"), "{text}");
}

#[test]
fn tracing_off_leaves_trace_headers_alone() {
    assert!(!on(), "no test starts tracing in this process");
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    headers.insert("tracestate", http::HeaderValue::from_static("vendor=1"));
    let span = server_span(&http::Method::GET, &headers);
    assert!(span.is_disabled());
    assert_eq!(trace_id(&span), None);
    let before = headers.clone();
    inject(&span, &mut headers);
    assert_eq!(headers, before);
    assert!(span!("authenticate", x = 1).is_disabled());
}

#[test]
fn authorities_split_into_host_and_port() {
    assert_eq!(split_authority("gw.test:8443"), ("gw.test", Some(8443)));
    assert_eq!(split_authority("gw.test"), ("gw.test", None));
    assert_eq!(split_authority("[::1]:80"), ("::1", Some(80)));
    assert_eq!(split_authority("[::1]"), ("::1", None));
    assert_eq!(split_authority("::1"), ("::1", None));
    assert_eq!(split_authority(""), ("", None));
}
