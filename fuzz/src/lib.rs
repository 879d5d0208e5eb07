//! The bodies of the libFuzzer targets in `fuzz_targets/` (one function per
//! target), with the properties each one checks. A property that fails
//! panics, which libFuzzer reports as a crash and saves under
//! `fuzz/artifacts/<target>/`. See docs/fuzzing.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use wasmgate::auth::testing::{self, JwsVerifier, OIDC_ALGORITHMS};
use wasmgate::canonical::{self, EscapedSlashes, PathOptions};
use wasmgate::config::{Config, GatewayTokensConfig, IdentityHeadersConfig};
use wasmgate::login::store::{Credentials, CredentialsStore};
use wasmgate::plugins::CaseFile;
use wasmgate::server::IdentityHeaders;
use wasmgate::tokens::GatewayTokens;
use wasmgate::tokens::revoked::{self, RevokedSet};

/// The verification time of the gateway-token seeds (their `exp` is later).
pub const NOW: i64 = 1_800_000_000;

/// Public keys of the Wycheproof JOSE vectors (`tests/vectors/wycheproof/`):
/// the seeds signed with them are the vectors' JWS strings.
const JWKS: &str = include_str!("../keys/jwks.json");

/// Gateway HMAC keys as `version:base64url` lines: `kid-aes-sign` is the
/// Wycheproof HS256 key, `v1` signs the claims-bearing seed tokens.
const GATEWAY_KEYS: &str = include_str!("../keys/gateway-keys.txt");

/// The revocation list of the fuzzed gateway (a seed token carries this jti).
pub const REVOKED_JTI: &str = "revoked-jti";

fn utf8(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

struct Gateway {
    _dir: tempfile::TempDir,
    tokens: GatewayTokens,
    keys: BTreeMap<String, Vec<u8>>,
}

fn gateway() -> &'static Gateway {
    static G: OnceLock<Gateway> = OnceLock::new();
    G.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let kd = dir.path().join("keys");
        std::fs::create_dir(&kd).expect("mkdir");
        let mut keys = BTreeMap::new();
        for line in GATEWAY_KEYS.lines().filter(|l| !l.trim().is_empty()) {
            let (version, b64) = line.split_once(':').expect("version:key");
            let key = URL_SAFE_NO_PAD.decode(b64.trim()).expect("base64url key");
            assert!(key.last() != Some(&b'\n'), "key files lose a trailing newline");
            std::fs::write(kd.join(version), &key).expect("write key");
            keys.insert(version.to_owned(), key);
        }
        std::fs::write(kd.join("active"), "v1\n").expect("write active");
        let revoked = dir.path().join("revoked");
        std::fs::write(&revoked, format!("{REVOKED_JTI} {}\n", NOW + 3600)).expect("write revoked");
        let tokens = GatewayTokens::new(&GatewayTokensConfig::from_dir(kd, Some(revoked))).expect("gateway keys");
        Gateway { _dir: dir, tokens, keys }
    })
}

fn oidc() -> &'static JwsVerifier {
    static V: OnceLock<JwsVerifier> = OnceLock::new();
    V.get_or_init(|| JwsVerifier::from_jwks(JWKS.as_bytes(), &OIDC_ALGORITHMS).expect("fuzz JWKS"))
}

/// Signing inputs (`header.payload`) that the seeds carry valid signatures for.
fn signed_inputs() -> &'static BTreeSet<String> {
    static S: OnceLock<BTreeSet<String>> = OnceLock::new();
    S.get_or_init(|| {
        include_str!("../keys/signed-inputs.txt").lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
    })
}

/// The order n of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use aws_lc_rs::hmac;
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg).as_ref().to_vec()
}

/// JWS: the strict pre-parse of every bearer token, the OIDC and
/// gateway-token signature layers, and full gateway-token verification.
///
/// - A token the pre-parse accepts has exactly three segments, each the
///   canonical unpadded base64url encoding of its bytes (re-encoding gives
///   the same text), an `alg` from the closed list and a well-formed `kid`;
///   the payload-less pre-parse accepts it too.
/// - The gateway's HMAC layer accepts exactly when an independent HMAC over
///   the signing input with the key its `kid` names equals the signature.
/// - The OIDC layer accepts only signing inputs a seed was validly signed
///   over (a fuzzer cannot forge signatures; anything else is a bypass).
/// - Full gateway verification never accepts a revoked `jti`, a token the
///   signature layer refuses, or a token without `exp`.
pub fn jws(data: &[u8]) {
    let Some(token) = utf8(data) else { return };
    let parsed = testing::parse_token(token);
    let jws = testing::parse_jws(token);
    if let Ok(p) = &parsed {
        let segs: Vec<&str> = token.split('.').collect();
        assert_eq!(segs.len(), 3, "accepted a token without three segments");
        for s in &segs {
            let bytes = URL_SAFE_NO_PAD.decode(s).expect("accepted segment is base64url");
            assert_eq!(URL_SAFE_NO_PAD.encode(&bytes), *s, "accepted a non-canonical segment");
        }
        assert_eq!(p.signing_input_len, segs[0].len() + 1 + segs[1].len());
        assert!(OIDC_ALGORITHMS.contains(&p.alg.as_str()) || p.alg == "HS256", "alg {}", p.alg);
        if let Some(kid) = &p.kid {
            assert!((1..=256).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_graphic()));
        }
        assert!(jws.is_ok(), "the payload-less pre-parse is weaker than the full one");
    }

    let g = gateway();
    let sig_layer = g.tokens.verify_jws_signature(token);
    let expected = jws.as_ref().ok().and_then(|j| {
        let (input, _) = token.rsplit_once('.')?;
        let key = g.keys.get(j.kid.as_deref()?)?;
        Some(j.alg == "HS256" && hmac_sha256(key, input.as_bytes()) == j.signature)
    });
    assert_eq!(sig_layer.is_ok(), expected == Some(true), "gateway HMAC layer disagrees with HMAC: {sig_layer:?}");

    if oidc().verify_jws(token).is_ok() {
        let (input, _) = token.rsplit_once('.').expect("three segments");
        assert!(signed_inputs().contains(input), "OIDC signature layer accepted an input no seed signed");
        let j = jws.as_ref().expect("accepted tokens parse");
        if j.alg == "ES256" {
            // CVE-2022-21449 class: r and s must both be in [1, n-1].
            let (r, s) = j.signature.split_at(32);
            assert_eq!(j.signature.len(), 64, "ES256 signature length");
            for v in [r, s] {
                assert!(v.iter().any(|&b| b != 0) && v < &P256_ORDER[..], "ES256 r or s out of range");
            }
        }
    }

    if let Ok((principal, exp)) = g.tokens.verify(token, NOW) {
        assert!(sig_layer.is_ok(), "full verification accepted what the signature layer refused");
        let claims: Value = serde_json::from_slice(&jws.as_ref().expect("parsed").payload).expect("claims");
        assert_ne!(claims.get("jti").and_then(Value::as_str), Some(REVOKED_JTI), "revoked jti accepted");
        assert_eq!(claims.get("exp").and_then(Value::as_i64), Some(exp));
        assert!(exp >= NOW - 30, "expired token accepted");
        assert!(!principal.subject.is_empty());
    }
}

/// The options a canonical-path input is tried under: from its first byte.
fn path_options(b: u8) -> PathOptions {
    let escaped_slashes = match b % 3 {
        0 => EscapedSlashes::Reject,
        1 => EscapedSlashes::Keep,
        _ => EscapedSlashes::Unescape,
    };
    PathOptions { escaped_slashes, merge_slashes: b & 4 == 0 }
}

/// The decoded segments of a path, as bytes.
fn decoded_segments<'a>(segments: impl Iterator<Item = &'a str>) -> Vec<Vec<u8>> {
    segments.map(|s| percent_encoding::percent_decode_str(s).collect()).collect()
}

/// An independent RFC 3986 resolution (the `url` crate's WHATWG path
/// parser, which removes dot-segments including `%2e` spellings) of what
/// the canonicalizer is specified to resolve: `%2F` decoded first under
/// `unescape`, repeated slashes merged first when merging.
fn reference_segments(path: &str, opts: &PathOptions) -> Option<Vec<Vec<u8>>> {
    let mut p = path.to_owned();
    if opts.escaped_slashes == EscapedSlashes::Unescape {
        p = p.replace("%2F", "/").replace("%2f", "/");
    }
    if opts.merge_slashes {
        let mut merged = String::with_capacity(p.len());
        for c in p.chars() {
            if !(c == '/' && merged.ends_with('/')) {
                merged.push(c);
            }
        }
        p = merged;
    }
    // `?` and `#` are path data here (the query was split off before); a
    // URL parser would also trim a trailing raw space.
    let p = p.replace('?', "%3F").replace('#', "%23").replace(' ', "%20");
    // The `url` crate (2.5) never lets `..` remove a Windows-drive-letter
    // segment (`F:`), even in an http URL; RFC 3986 has no such rule.
    let drive = |seg: &str| matches!(seg.as_bytes(), [a, b':' | b'|'] if a.is_ascii_alphabetic());
    if p.split('/').any(drive) {
        return None;
    }
    // Not `join`: a path starting with `//` would be read as an authority.
    let url = url::Url::parse(&format!("http://h{p}")).ok()?;
    Some(decoded_segments(url.path_segments()?))
}

/// Canonical path: idempotent, structurally canonical, and resolving to the
/// same resource as an independent RFC 3986 resolver.
///
/// - `canonicalize(canonicalize(p)) == canonicalize(p)`;
/// - the result starts with `/`, has no `.`/`..` segment (in any
///   spelling), no empty segment but a trailing one when merging, no
///   lower-case or unreserved escape, only ASCII without controls;
/// - under `keep`, no segment hides a dot-segment behind `%2F`/`%5C`;
/// - its decoded segments equal the reference resolver's for the input.
pub fn canonical_path(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let Some(path) = utf8(rest) else { return };
    let opts = path_options(first);
    let Ok(c) = canonical::canonicalize(path, &opts) else { return };
    assert_eq!(canonical::canonicalize(&c, &opts).as_deref(), Ok(c.as_str()), "not idempotent: {path:?} -> {c:?}");
    assert!(c.starts_with('/'), "{c:?}");
    // ASCII without controls (a raw space never gets this far: the HTTP
    // parsers refuse it in a request target).
    assert!(c.bytes().all(|b| b.is_ascii() && !b.is_ascii_control()), "{c:?}");
    let segs: Vec<&str> = c[1..].split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(s).collect();
        assert!(decoded != b"." && decoded != b"..", "dot-segment left in {c:?}");
        if opts.merge_slashes {
            assert!(!s.is_empty() || i == segs.len() - 1, "empty segment left in {c:?}");
        }
        let bytes = s.as_bytes();
        for (j, _) in s.match_indices('%') {
            let esc = &bytes[j + 1..(j + 3).min(bytes.len())];
            assert!(esc.len() == 2 && esc.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)), "{c:?}");
            let v = u8::from_str_radix(std::str::from_utf8(esc).unwrap_or("zz"), 16).unwrap_or(0);
            assert!(!(v.is_ascii_alphanumeric() || b"-._~".contains(&v)), "unreserved escape left in {c:?}");
        }
        if opts.escaped_slashes == EscapedSlashes::Keep {
            let upstream = s.replace("%2F", "/").replace("%5C", "/");
            assert!(!upstream.split('/').any(|p| p == "." || p == ".."), "{c:?} hides a dot-segment");
        }
    }
    if let Some(reference) = reference_segments(path, &opts) {
        let ours = decoded_segments(c[1..].split('/'));
        assert_eq!(ours, reference, "{path:?} -> {c:?} resolves elsewhere under RFC 3986");
    }
}

/// The fold two header names a server may treat alike share.
fn fold(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Identity-header sanitizer: after `strip`, no header whose name is the
/// prefix (or an `also_strip` name) in any case or `_`/`-` spelling is
/// left, every other header is left with all its values, and the
/// gateway's own identity headers set afterwards are the only ones under
/// the prefix.
///
/// Input: byte 0 picks the config (the default one, or a mixed-case
/// prefix with `_`); then lines `NAME:VALUE`, where a name starting with
/// `~` gets the prefix prepended in a case and `_`/`-` spelling drawn from
/// the following bytes.
pub fn identity_headers(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let cfg = if first & 1 == 0 {
        IdentityHeadersConfig::default()
    } else {
        IdentityHeadersConfig { prefix: "X_Corp-Id_".into(), also_strip: vec!["X_Remote_User".into()] }
    };
    let prefix = fold(&cfg.prefix);
    let exact: Vec<String> = cfg.also_strip.iter().map(|s| fold(s)).collect();
    let doomed = |n: &str| fold(n).starts_with(&prefix) || exact.contains(&fold(n));

    let mut headers = HeaderMap::new();
    for line in rest.split(|&b| b == b'\n') {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let name = match name.split_first() {
            Some((b'~', spelling)) => {
                let mut n: Vec<u8> = cfg.prefix.bytes().collect();
                for (i, b) in n.iter_mut().enumerate() {
                    let bits = spelling.get(i).copied().unwrap_or(0);
                    if bits & 1 == 1 {
                        b.make_ascii_uppercase();
                    } else {
                        b.make_ascii_lowercase();
                    }
                    if *b == b'-' && bits & 2 == 2 {
                        *b = b'_';
                    } else if *b == b'_' && bits & 2 == 2 {
                        *b = b'-';
                    }
                }
                n.extend_from_slice(spelling.get(n.len()..).unwrap_or_default());
                n
            }
            _ => name.to_vec(),
        };
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&name), HeaderValue::from_bytes(value)) else { continue };
        headers.append(name, value);
    }

    let before = headers.clone();
    let stripper = IdentityHeaders::new(&cfg);
    stripper.strip(&mut headers);
    for name in headers.keys() {
        assert!(!doomed(name.as_str()), "{name} survived the sanitizer");
    }
    for name in before.keys() {
        if !doomed(name.as_str()) {
            let kept: Vec<_> = headers.get_all(name).iter().collect();
            let sent: Vec<_> = before.get_all(name).iter().collect();
            assert_eq!(kept, sent, "{name} was changed though it is not an identity header");
        }
    }
    let auth = wasmgate::identity::Authentication::anonymous();
    stripper.set_identity(&mut headers, &auth);
    let ours: Vec<&str> = headers.keys().map(HeaderName::as_str).filter(|n| fold(n).starts_with(&prefix)).collect();
    assert_eq!(ours, [format!("{prefix}auth-kind").as_str()], "identity headers after set_identity");
}

/// JWKS parser: never panics; what it loads has a valid `kid`, an allowed
/// algorithm, `use` absent or `sig`, `key_ops` absent or with `verify`, and
/// a `kid` that appears once in the document.
pub fn jwks(data: &[u8]) {
    let Ok(v) = JwsVerifier::from_jwks(data, &OIDC_ALGORITHMS) else { return };
    let doc: Value = serde_json::from_slice(data).expect("a loaded JWKS is JSON");
    let raw = doc.get("keys").and_then(Value::as_array).expect("keys");
    for (kid, alg) in v.keys() {
        assert!((1..=256).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_graphic()), "kid {kid:?}");
        assert!(OIDC_ALGORITHMS.contains(&alg.as_str()), "alg {alg}");
        let same: Vec<&Value> = raw.iter().filter(|k| k.get("kid").and_then(Value::as_str) == Some(&kid)).collect();
        assert_eq!(same.len(), 1, "kid {kid:?} appears {} times but was loaded", same.len());
        let k = same[0];
        assert!(k.get("use").is_none_or(|u| u == "sig"), "{kid}: use {:?}", k.get("use"));
        if let Some(ops) = k.get("key_ops") {
            assert!(ops.as_array().is_some_and(|o| o.iter().any(|x| x == "verify")), "{kid}: key_ops {ops}");
        }
        assert_ne!(k.get("kty").and_then(Value::as_str), Some("oct"), "an HMAC key loaded from a JWKS");
    }
    // The loaded keys verify (or refuse) without panicking.
    for (kid, _) in v.keys() {
        let _ = v.verify_raw(&kid, b"payload", &[0u8; 64]);
    }
}

/// Config: `Config::from_yaml` never panics, and a config it accepts passes
/// its own validation again.
pub fn config(data: &[u8]) {
    let Some(text) = utf8(data) else { return };
    if let Ok(cfg) = Config::from_yaml(text) {
        assert!(cfg.validate().is_ok(), "an accepted config fails its own validation");
    }
}

/// Golden-case files: `CaseFile::parse` never panics; an accepted file has
/// at least one case and the SHA-256 of its text.
pub fn golden_cases(data: &[u8]) {
    let Some(text) = utf8(data) else { return };
    if let Ok(f) = CaseFile::parse(Path::new("fuzz.cases.yaml"), text) {
        assert!(!f.is_empty());
        assert_eq!(f.sha256().len(), 64);
    }
}

/// Revocation file: fails closed (every line whose first field, before
/// `#`, is a plausible `jti` revokes it), and rewriting the file (what
/// `wasmgate token revoke` does) neither loses nor adds a revocation.
pub fn revoked(data: &[u8]) {
    let Some(text) = utf8(data) else { return };
    let (lines, _warnings) = revoked::parse(text);
    let set = RevokedSet::from_lines(&lines);
    for raw in text.lines() {
        let content = raw.split('#').next().unwrap_or_default();
        if let Some(jti) = content.split_whitespace().next()
            && jti.len() <= revoked::MAX_JTI_LEN
        {
            assert!(set.contains(jti), "line {raw:?} does not revoke {jti:?}");
        }
    }
    let rewritten = revoked::format(&lines);
    let (again, _) = revoked::parse(&rewritten);
    assert!(RevokedSet::from_lines(&again) == set, "rewriting the revocation file changed the set");
}

fn credentials_path() -> &'static Path {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &P.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.json");
        (dir, path)
    })
    .1
}

/// Credentials file: the real reader (`CredentialsStore::read`, on a 0600
/// file) never panics, and what it returns survives the JSON round trip
/// the writer does.
pub fn credentials(data: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = credentials_path();
    std::fs::write(path, data).expect("write credentials file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let Ok(loaded) = CredentialsStore::new(path).read() else { return };
    assert_eq!(loaded.loose_mode, None);
    let text = serde_json::to_string(&loaded.credentials).expect("serialize");
    let back: Credentials = serde_json::from_str(&text).expect("what the writer writes, the reader reads");
    assert_eq!(back, loaded.credentials);
}
