//! One canonical request path, computed once per call before routing.
//!
//! The route match, the classifier, the authorizer, the credential policy,
//! the decision log and the forwarded request itself all use the path this
//! module returns, so an upstream that resolves dot-segments or escapes on
//! its own (nginx, Tomcat, most frameworks) cannot read a request
//! differently from the policy that allowed it.
//!
//! What [`canonicalize`] does, in order:
//! - refuses a path that is not origin-form (`/...`), raw control and
//!   non-ASCII bytes, a literal `\`, a malformed escape, an encoded NUL or
//!   control character, escaped bytes that are not UTF-8 (`%c0%af`), and a
//!   double-encoded `.`, `/` or `\` (`%252e`);
//! - decodes escaped unreserved characters (RFC 3986 §6.2.2.2) and
//!   upper-cases the remaining escapes (§6.2.2.1);
//! - applies the escaped-slash policy to `%2F` and `%5C` (reject by default);
//! - merges repeated slashes (on by default);
//! - removes dot-segments (§5.2.4), including those spelled `%2e`, and
//!   refuses one that climbs above the root, and a dot-segment carrying
//!   path parameters (`..;x`, which Tomcat and Spring read as `..`).
//!
//! The query string is not part of the path and is never rewritten here.

use std::fmt;

use serde::Deserialize;

/// What happens to `%2F` (an encoded `/`) and `%5C` (an encoded `\`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// 400, never forwarded (the default): most upstreams decode them into
    /// separators after the policy has run.
    #[default]
    Reject,
    /// Kept as opaque data inside a segment and forwarded encoded. Only for
    /// upstreams that never decode `%2F` into a separator (object stores
    /// whose keys contain `/`). A segment that would become a dot-segment
    /// once decoded (`..%2F`) is still refused.
    Keep,
    /// `%2F` is decoded to `/` before dot-segments are removed, so the
    /// policy sees the path a decoding upstream would see; `%5C` is still
    /// refused.
    Unescape,
}

/// How paths are canonicalized; the defaults are the strict ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PathOptions {
    /// The escaped-slash policy.
    pub escaped_slashes: EscapedSlashes,
    /// Merge repeated slashes (`/a//b` is `/a/b`), as nginx does by default.
    pub merge_slashes: bool,
}

impl Default for PathOptions {
    fn default() -> Self {
        Self { escaped_slashes: EscapedSlashes::Reject, merge_slashes: true }
    }
}

/// Why a path is refused (400, never forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not `/`-rooted (asterisk-form, empty, or a relative reference).
    #[error("the path is not origin-form")]
    NotOriginForm,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-escape")]
    BadEscape,
    /// `%2F` or `%5C` where the policy refuses them.
    #[error("encoded slash or backslash")]
    EncodedSlash,
    /// A literal `\`.
    #[error("backslash in the path")]
    Backslash,
    /// `%00` or a raw NUL.
    #[error("NUL in the path")]
    Nul,
    /// A control character, raw or encoded.
    #[error("control character in the path")]
    Control,
    /// A raw byte outside ASCII (it must be percent-encoded).
    #[error("raw non-ASCII byte in the path")]
    NonAscii,
    /// Escaped bytes that do not decode as UTF-8 (overlong forms such as
    /// `%c0%af`, which some decoders read as `/`).
    #[error("escaped bytes are not UTF-8")]
    InvalidUtf8,
    /// A `..` with nothing left to remove.
    #[error("the path climbs above the root")]
    AboveRoot,
    /// `%25` followed by an encoded `.`, `/` or `\`.
    #[error("double-encoded dot or slash")]
    DoubleEncoded,
    /// A dot-segment with path parameters (`..;x`), or one hidden behind a
    /// kept escaped slash (`..%2F`).
    #[error("ambiguous dot-segment")]
    AmbiguousDotSegment,
}

/// Canonicalizes `path` (the path of the request target, without the
/// query). The result is itself canonical: `canonicalize(canonicalize(p))`
/// is `canonicalize(p)`.
pub fn canonicalize(path: &str, opts: &PathOptions) -> Result<String, PathError> {
    let mode = match opts.escaped_slashes {
        EscapedSlashes::Reject => SlashMode::Reject,
        EscapedSlashes::Keep => SlashMode::Keep,
        EscapedSlashes::Unescape => SlashMode::Unescape,
    };
    canonicalize_with(path, opts.merge_slashes, mode).map(|c| c.path)
}

/// A canonical path and whether it kept an escaped slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Canonical {
    pub(crate) path: String,
    pub(crate) had_escaped_slash: bool,
}

/// How escaped slashes are treated in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlashMode {
    Reject,
    Keep,
    Unescape,
    /// Kept as data with no further check: for the routing pass only, whose
    /// result is never forwarded (the route's own options decide then).
    Opaque,
}

/// The routing pass: escaped slashes are opaque data, everything else as
/// the options say. Its result only picks a route.
pub(crate) fn for_routing(path: &str, merge_slashes: bool) -> Result<Canonical, PathError> {
    canonicalize_with(path, merge_slashes, SlashMode::Opaque)
}

/// The forwarding pass, under a route's options.
pub(crate) fn for_route(path: &str, opts: &PathOptions) -> Result<Canonical, PathError> {
    let mode = match opts.escaped_slashes {
        EscapedSlashes::Reject => SlashMode::Reject,
        EscapedSlashes::Keep => SlashMode::Keep,
        EscapedSlashes::Unescape => SlashMode::Unescape,
    };
    canonicalize_with(path, opts.merge_slashes, mode)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `path` is canonical as it stands under every mode: only
/// unreserved and sub-delim characters, no escapes, no empty, `.` or `..`
/// segments and no `;` after a dot. Most real paths are, and skip the copy.
fn already_canonical(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    let mut seg_start = 1;
    for i in 1..=path.len() {
        let end = i == path.len() || path[i] == b'/';
        if !end {
            let b = path[i];
            if !(is_unreserved(b) || b"!$&'()*+,;=:@".contains(&b)) {
                return false;
            }
            continue;
        }
        let seg = &path[seg_start..i];
        let dotty = seg.first() == Some(&b'.') && {
            let head = seg.split(|&b| b == b';').next().unwrap_or_default();
            head == b"." || head == b".."
        };
        // An empty segment is fine only as the trailing slash.
        if dotty || (seg.is_empty() && i != path.len()) {
            return false;
        }
        seg_start = i + 1;
    }
    true
}

fn canonicalize_with(path: &str, merge_slashes: bool, mode: SlashMode) -> Result<Canonical, PathError> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if already_canonical(raw) {
        return Ok(Canonical { path: path.to_owned(), had_escaped_slash: false });
    }

    // Pass 1: escapes normalized, unreserved characters decoded, escaped
    // slashes handled. Bytes stay ASCII throughout.
    let mut norm = Vec::with_capacity(raw.len());
    let mut had_escaped_slash = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            0 => return Err(PathError::Nul),
            0x01..=0x1f | 0x7f => return Err(PathError::Control),
            0x80..=0xff => return Err(PathError::NonAscii),
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let (Some(hi), Some(lo)) =
                    (raw.get(i + 1).copied().and_then(hex), raw.get(i + 2).copied().and_then(hex))
                else {
                    return Err(PathError::BadEscape);
                };
                let v = hi << 4 | lo;
                match v {
                    0 => return Err(PathError::Nul),
                    0x01..=0x1f | 0x7f => return Err(PathError::Control),
                    b'%' => {
                        // `%25` followed by the text of an encoded dot,
                        // slash or backslash decodes, once more, into one.
                        let next = (raw.get(i + 3).copied().and_then(hex), raw.get(i + 4).copied().and_then(hex));
                        if let (Some(h2), Some(l2)) = next
                            && matches!(h2 << 4 | l2, b'.' | b'/' | b'\\')
                        {
                            return Err(PathError::DoubleEncoded);
                        }
                        norm.extend_from_slice(b"%25");
                    }
                    b'/' | b'\\' => match mode {
                        SlashMode::Reject => return Err(PathError::EncodedSlash),
                        SlashMode::Unescape if v == b'/' => norm.push(b'/'),
                        SlashMode::Unescape => return Err(PathError::EncodedSlash),
                        SlashMode::Keep | SlashMode::Opaque => {
                            had_escaped_slash = true;
                            norm.extend_from_slice(if v == b'/' { b"%2F" } else { b"%5C" });
                        }
                    },
                    v if is_unreserved(v) => norm.push(v),
                    v => {
                        norm.extend_from_slice(&[b'%', UPPER_HEX[usize::from(v >> 4)], UPPER_HEX[usize::from(v & 15)]])
                    }
                }
                i += 3;
            }
            _ => {
                norm.push(b);
                i += 1;
            }
        }
    }

    // `%25` followed by the text of an encoded dot or slash only once the
    // escapes after it were decoded (`%25%32e` is `%252e`): double encoding
    // too, and refusing it keeps the result idempotent (found by fuzzing).
    if norm.windows(5).any(|w| {
        w.starts_with(b"%25")
            && hex(w[3]).zip(hex(w[4])).is_some_and(|(h, l)| matches!(h << 4 | l, b'.' | b'/' | b'\\'))
    }) {
        return Err(PathError::DoubleEncoded);
    }

    // Pass 2: segments, with repeated slashes merged and dot-segments
    // removed (RFC 3986 §5.2.4 on a path that starts with `/`).
    let body = &norm[1..];
    let mut out: Vec<&[u8]> = Vec::new();
    let pieces: Vec<&[u8]> = body.split(|&b| b == b'/').collect();
    let last = pieces.len() - 1;
    let mut trailing_slash = false;
    for (n, seg) in pieces.into_iter().enumerate() {
        let is_last = n == last;
        if seg.is_empty() {
            if is_last {
                trailing_slash = true;
            } else if !merge_slashes {
                out.push(seg);
            }
            continue;
        }
        let head = seg.split(|&b| b == b';').next().unwrap_or_default();
        if seg != head && (head == b"." || head == b"..") {
            return Err(PathError::AmbiguousDotSegment);
        }
        if mode == SlashMode::Keep && hides_dot_segment(seg) {
            return Err(PathError::AmbiguousDotSegment);
        }
        match seg {
            b"." => trailing_slash = is_last,
            b".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = is_last;
            }
            _ => {
                out.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(norm.len());
    for seg in &out {
        path.push('/');
        // Only ASCII was pushed in pass 1.
        path.push_str(std::str::from_utf8(seg).map_err(|_| PathError::NonAscii)?);
    }
    if out.is_empty() || trailing_slash {
        path.push('/');
    }
    if std::str::from_utf8(&percent_encoding::percent_decode_str(&path).collect::<Vec<u8>>()).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    Ok(Canonical { path, had_escaped_slash })
}

/// Whether a segment with kept `%2F`/`%5C` escapes would hold a `.` or `..`
/// piece once an upstream decoded them into separators.
fn hides_dot_segment(seg: &[u8]) -> bool {
    let text = String::from_utf8_lossy(seg);
    if !text.contains("%2F") && !text.contains("%5C") {
        return false;
    }
    text.replace("%5C", "%2F").split("%2F").any(|p| p == "." || p == "..")
}

/// A `/<service>/<method>` gRPC path: exactly two non-empty segments, no
/// escapes, no dot-segments, nothing but visible ASCII.
pub fn is_grpc_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    let mut segs = rest.split('/');
    let (Some(service), Some(method), None) = (segs.next(), segs.next(), segs.next()) else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_graphic() && b != b'%' && b != b'\\')
    };
    ok(service) && ok(method)
}

impl fmt::Display for Canonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

#[cfg(test)]
mod tests;
