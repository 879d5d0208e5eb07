//! Log line formats: [`FlatJson`] for `--log-format json`, [`WithIds`]
//! for text. Both add the serving call's `decision_id` and `trace_id`
//! ([`super::with_ids`]) to every line the call writes, unless the event
//! has a field of that name itself (the decision record does).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// One JSON object per line, every field at the top level:
/// `{"timestamp":…,"level":"INFO","target":…,"message":…,<event
/// fields>…,"decision_id":…,"trace_id":…}`. An event field named like one
/// of the first three keys is written as `fields.<name>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":");
        let mut ts = String::with_capacity(32);
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        json_str(&mut line, &ts);
        line.push_str(",\"level\":");
        json_str(&mut line, event.metadata().level().as_str());
        line.push_str(",\"target\":");
        json_str(&mut line, event.metadata().target());
        let mut visitor = JsonVisitor { out: &mut line, has_decision_id: false, has_trace_id: false };
        event.record(&mut visitor);
        let (has_decision_id, has_trace_id) = (visitor.has_decision_id, visitor.has_trace_id);
        super::current_ids(|ids| {
            if !has_decision_id {
                line.push_str(",\"decision_id\":");
                json_str(&mut line, &ids.decision_id);
            }
            if let (false, Some(trace_id)) = (has_trace_id, &ids.trace_id) {
                line.push_str(",\"trace_id\":");
                json_str(&mut line, trace_id);
            }
        });
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Writes `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct JsonVisitor<'a> {
    out: &'a mut String,
    has_decision_id: bool,
    has_trace_id: bool,
}

impl JsonVisitor<'_> {
    fn key(&mut self, field: &Field) {
        let name = field.name();
        match name {
            "decision_id" => self.has_decision_id = true,
            "trace_id" => self.has_trace_id = true,
            _ => {}
        }
        self.out.push(',');
        if matches!(name, "timestamp" | "level" | "target") {
            json_str(self.out, &format!("fields.{name}"));
        } else {
            json_str(self.out, name);
        }
        self.out.push(':');
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        json_str(self.out, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            json_str(self.out, &value.to_string());
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.key(field);
        json_str(self.out, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        json_str(self.out, &format!("{value:?}"));
    }
}

/// tracing-subscriber's text format, with ` decision_id=… trace_id=…`
/// appended to the lines of a call (uncoloured, as the ids are written
/// after the line is formatted).
#[derive(Debug, Default)]
pub struct WithIds {
    inner: tracing_subscriber::fmt::format::Format,
}

impl<S, N> FormatEvent<S, N> for WithIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let fields = event.metadata().fields();
        let has_decision_id = fields.field("decision_id").is_some();
        let has_trace_id = fields.field("trace_id").is_some();
        let ids = super::current_ids(|ids| {
            let mut tail = String::new();
            if !has_decision_id {
                let _ = write!(tail, " decision_id={}", ids.decision_id);
            }
            if let (false, Some(trace_id)) = (has_trace_id, &ids.trace_id) {
                let _ = write!(tail, " trace_id={trace_id}");
            }
            tail
        });
        let Some(tail) = ids.filter(|t| !t.is_empty()) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let mut writer = writer;
        let body = line.strip_suffix('\n').unwrap_or(&line);
        writeln!(writer, "{body}{tail}")
    }
}
