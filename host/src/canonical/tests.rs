use proptest::prelude::*;

use super::*;

fn strict(p: &str) -> Result<String, PathError> {
    canonicalize(p, &PathOptions::default())
}

fn with(p: &str, escaped_slashes: EscapedSlashes, merge_slashes: bool) -> Result<String, PathError> {
    canonicalize(p, &PathOptions { escaped_slashes, merge_slashes })
}

#[test]
fn the_bypasses_of_the_report_resolve_to_the_protected_path() {
    for p in [
        "/public/../api/x",
        "/public/%2e%2e/api/x",
        "/public/%2E%2E/api/x",
        "/public/.%2e/api/x",
        "/public/x/../../api/x",
    ] {
        assert_eq!(strict(p).as_deref(), Ok("/api/x"), "{p}");
    }
    assert_eq!(strict("/public/..%2fapi/x"), Err(PathError::EncodedSlash));
    assert_eq!(with("/public/..%2fapi/x", EscapedSlashes::Unescape, true).as_deref(), Ok("/api/x"));
    assert_eq!(with("/public/..%2fapi/x", EscapedSlashes::Keep, true), Err(PathError::AmbiguousDotSegment));
}

#[test]
fn dot_segments_follow_rfc3986_5_2_4() {
    for (input, want) in [
        ("/", "/"),
        ("/a/b/c/./../../g", "/a/g"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/./b/", "/a/b/"),
        ("/.", "/"),
        ("/a/..", "/"),
        ("/a/...", "/a/..."),
        ("/a/.b/..c", "/a/.b/..c"),
        ("/v1/public/../config", "/v1/config"),
    ] {
        assert_eq!(strict(input).as_deref(), Ok(want), "{input}");
    }
}

#[test]
fn climbing_above_the_root_is_refused() {
    for p in ["/..", "/../x", "/a/../..", "/%2e%2e/etc/passwd", "/a/b/../../../c"] {
        assert_eq!(strict(p), Err(PathError::AboveRoot), "{p}");
    }
}

#[test]
fn repeated_slashes_merge_by_default_and_can_be_kept() {
    assert_eq!(strict("//a///b//").as_deref(), Ok("/a/b/"));
    assert_eq!(strict("/public//../api").as_deref(), Ok("/api"), "merged before dot removal, as nginx does");
    assert_eq!(with("/a//b", EscapedSlashes::Reject, false).as_deref(), Ok("/a//b"));
    assert_eq!(with("/public//../api", EscapedSlashes::Reject, false).as_deref(), Ok("/public/api"));
}

#[test]
fn unreserved_escapes_are_decoded_and_the_rest_upper_cased() {
    assert_eq!(strict("/%41%62c/%7e%2d%5f").as_deref(), Ok("/Abc/~-_"));
    assert_eq!(strict("/a%3bb/%c3%a9").as_deref(), Ok("/a%3Bb/%C3%A9"));
    assert_eq!(strict("/100%25").as_deref(), Ok("/100%25"));
    assert_eq!(strict("/%2541").as_deref(), Ok("/%2541"), "an encoded % before non-dot text is data");
}

#[test]
fn refused_forms() {
    for (p, e) in [
        ("", PathError::NotOriginForm),
        ("*", PathError::NotOriginForm),
        ("a/b", PathError::NotOriginForm),
        ("/a%2Fb", PathError::EncodedSlash),
        ("/a%2fb", PathError::EncodedSlash),
        ("/a%5Cb", PathError::EncodedSlash),
        ("/a\\b", PathError::Backslash),
        ("/a%00", PathError::Nul),
        ("/a\0", PathError::Nul),
        ("/a%0d%0aX", PathError::Control),
        ("/a%7f", PathError::Control),
        ("/a\tb", PathError::Control),
        ("/é", PathError::NonAscii),
        ("/a%", PathError::BadEscape),
        ("/a%g1", PathError::BadEscape),
        ("/a%1", PathError::BadEscape),
        ("/a/%u002e%u002e/b", PathError::BadEscape),
        ("/public/..%c0%af../api", PathError::InvalidUtf8),
        ("/a%ff", PathError::InvalidUtf8),
        ("/a%c3", PathError::InvalidUtf8),
        ("/public/%252e%252e/api", PathError::DoubleEncoded),
        ("/a%252fb", PathError::DoubleEncoded),
        ("/a%255Cb", PathError::DoubleEncoded),
        // Spelled with escaped hex digits (found by fuzzing): %25 %32 e is %252e.
        ("/public/%25%32e%25%32e/api", PathError::DoubleEncoded),
        ("/a%25%32%66b", PathError::DoubleEncoded),
        ("/%254e%24/%252%654e2", PathError::DoubleEncoded),
        ("/public/..;/api", PathError::AmbiguousDotSegment),
        ("/public/.;x/api", PathError::AmbiguousDotSegment),
        ("/public/%2e%2e;jsessionid=1/api", PathError::AmbiguousDotSegment),
    ] {
        assert_eq!(strict(p), Err(e), "{p:?}");
    }
}

#[test]
fn escaped_slash_policies() {
    assert_eq!(with("/bucket/a%2fb", EscapedSlashes::Keep, true).as_deref(), Ok("/bucket/a%2Fb"));
    assert_eq!(with("/bucket/a%2fb", EscapedSlashes::Unescape, true).as_deref(), Ok("/bucket/a/b"));
    assert_eq!(with("/a%5Cb", EscapedSlashes::Unescape, true), Err(PathError::EncodedSlash));
    assert_eq!(with("/a%5Cb", EscapedSlashes::Keep, true).as_deref(), Ok("/a%5Cb"));
    assert_eq!(with("/a/.%2e%2Fb", EscapedSlashes::Keep, true), Err(PathError::AmbiguousDotSegment));
    assert_eq!(with("/a/x%2F..", EscapedSlashes::Keep, true), Err(PathError::AmbiguousDotSegment));
    let r = for_routing("/a/..%2Fb", true).expect("opaque routing pass");
    assert!(r.had_escaped_slash);
    assert_eq!(r.path, "/a/..%2Fb");
}

#[test]
fn canonical_paths_are_returned_unchanged() {
    for p in ["/", "/v1/sandboxes", "/v1/sandboxes/", "/a;b=c/d", "/sandbox.v1.SandboxService/GetSandbox"] {
        assert_eq!(strict(p).as_deref(), Ok(p));
    }
}

#[test]
fn grpc_paths_have_exactly_two_plain_segments() {
    assert!(is_grpc_path("/sandbox.v1.SandboxService/GetSandbox"));
    for p in [
        "/svc",
        "/svc/",
        "//m",
        "/svc/m/x",
        "/svc/../m",
        "/../svc/m",
        "/./m",
        "/svc/%41",
        "/svc/m\\",
        "svc/m",
        "/svc/.",
        "/svc/m ",
    ] {
        assert!(!is_grpc_path(p), "{p}");
    }
}

fn modes() -> impl Strategy<Value = PathOptions> {
    (
        prop_oneof![Just(EscapedSlashes::Reject), Just(EscapedSlashes::Keep), Just(EscapedSlashes::Unescape)],
        any::<bool>(),
    )
        .prop_map(|(escaped_slashes, merge_slashes)| PathOptions { escaped_slashes, merge_slashes })
}

/// Paths built from the pieces that matter: separators, dots spelled every
/// way, escapes, parameters and plain text.
fn paths() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/"),
        Just("."),
        Just(".."),
        Just("%2e"),
        Just("%2E"),
        Just("%2f"),
        Just("%5c"),
        Just("%25"),
        Just("%41"),
        Just("%3b"),
        Just(";"),
        Just("a"),
        Just("b"),
        Just("~"),
        Just("%c3%a9"),
    ];
    proptest::collection::vec(piece, 0..14).prop_map(|v| format!("/{}", v.concat()))
}

/// An independent resolver: the WHATWG URL parser (the `url` crate, as `oauth2` re-exports it), which
/// removes dot-segments including `%2e` spellings. Both sides are compared
/// as decoded segment lists.
fn whatwg_segments(path: &str) -> Vec<String> {
    let url = oauth2::url::Url::parse(&format!("http://h{path}")).expect("a valid URL");
    url.path().split('/').skip(1).map(decode_unreserved).collect()
}

fn decode_unreserved(seg: &str) -> String {
    let mut out = String::new();
    let b = seg.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex))
        {
            let v = h << 4 | l;
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                out.push_str(&format!("%{:02X}", v));
            }
            i += 3;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

proptest! {
    #[test]
    fn canonicalization_is_idempotent(p in paths(), opts in modes()) {
        if let Ok(once) = canonicalize(&p, &opts) {
            prop_assert_eq!(canonicalize(&once, &opts), Ok(once.clone()));
            prop_assert!(!once.contains("/./") && !once.contains("/../") && !once.ends_with("/..") && !once.ends_with("/."));
        }
    }

    #[test]
    fn the_result_names_the_resource_an_rfc3986_resolver_finds(p in paths()) {
        // Without merging, escaped slashes or parameters the two must agree
        // on every path the gateway accepts.
        let opts = PathOptions { escaped_slashes: EscapedSlashes::Reject, merge_slashes: false };
        if let Ok(ours) = canonicalize(&p, &opts) {
            prop_assert_eq!(whatwg_segments(&ours), whatwg_segments(&p), "input {}", p);
        }
    }

    #[test]
    fn arbitrary_input_never_panics(p in "\\PC{0,64}", opts in modes()) {
        let _ = canonicalize(&p, &opts);
        let _ = canonicalize(&format!("/{p}"), &opts);
    }
}
