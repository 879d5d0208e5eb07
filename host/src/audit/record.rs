//! The decision record: one per call, serialized with serde as one JSON
//! object (a line for `stderr` and `file`, an array element for `http`).

use std::time::SystemTime;

use serde::ser::{SerializeMap, Serializer};

/// One call's decision, as the decision log writes it. Fields without a
/// value (not routed, anonymous, not forwarded, nothing injected) are left
/// out of the JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DecisionRecord {
    /// The call's id, also sent to the client as `x-decision-id`.
    pub decision_id: String,
    /// The W3C trace id of the call's server span, when tracing is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// When the response head was known, RFC 3339 UTC with microseconds.
    #[serde(serialize_with = "rfc3339")]
    pub timestamp: SystemTime,
    /// The route's name, once routed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The request method.
    pub method: String,
    /// The canonical path (as received when the route phase refused it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The method's class (`unauthenticated`, `bearer`, ...), once classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The credential kind that authenticated the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// The identity provider that verified the token (`gateway` for the
    /// gateway's own tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The principal's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The principal's tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `allow`, or the rejection (`unauthorized`, `forbidden`, ...).
    pub outcome: String,
    /// Why the call was refused or failed (never token contents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The HTTP status the client got.
    pub status: u16,
    /// The gRPC status of a gRPC call the gateway answered itself
    /// (trailers-only: a rejection or an upstream failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u16>,
    /// The status the upstream answered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Why the upstream gave no usable response (`connect`, `timeout`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_failure: Option<&'static str>,
    /// Names of the upstream credentials injected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub injected: Vec<String>,
    /// What the authorizer's shadow answered (`allow`, `deny`,
    /// `failed (<kind>)`, `pending`, `skipped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// The policy that decided.
    pub policy: PolicyRevision,
    /// From the request to the response head, microseconds.
    pub duration_us: u64,
    /// Each phase's time, microseconds, in order.
    #[serde(serialize_with = "phases")]
    pub phases_us: Vec<(&'static str, u64)>,
}

/// The policy generation and the components that decided a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PolicyRevision {
    /// The policy set's generation (1 at start, +1 per reload); absent
    /// when the call ended before the policy was loaded for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Every component that answered for this call, in order.
    pub components: Vec<ComponentRef>,
}

/// A component that decided: its role, name and digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComponentRef {
    /// `classifier`, `claims-mapper`, `authorizer` or `credential-policy`.
    pub role: &'static str,
    /// The component's name, as `/admin/plugins` lists it.
    pub name: String,
    /// The sha256 of the component's bytes, hex.
    pub sha256: String,
    /// The answer came from the decision cache (an authorizer's earlier
    /// answer to the same input in the same policy generation), not from
    /// a call to the component; left out when `false`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

fn phases<S: Serializer>(phases: &[(&'static str, u64)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(phases.len()))?;
    for (name, us) in phases {
        map.serialize_entry(name, us)?;
    }
    map.end()
}

fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*t))
}

/// `t` as RFC 3339 UTC with microseconds (`2026-12-01T15:58:22.123456Z`);
/// a time before 1970 reads as the epoch.
pub fn format_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_micros())
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_604_702_123_456);
        assert_eq!(format_rfc3339(t), "2025-12-01T15:58:22.123456Z");
        assert_eq!(format_rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // A leap day.
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_rfc3339(t), "2000-02-29T00:00:00.000000Z");
    }
}
