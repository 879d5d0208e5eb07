use super::*;

fn b64(s: &str) -> String {
    B64URL.encode(s)
}

fn tok(h: &str, p: &str) -> String {
    format!("{}.{}.{}", b64(h), b64(p), b64("sig"))
}

const P: &str = r#"{"iss":"https://i","sub":"s"}"#;

#[test]
fn accepts_a_well_formed_token() {
    let t = tok(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#, P);
    let p = parse(&t).expect("valid");
    assert_eq!(p.header.alg, Algorithm::RS256);
    assert_eq!(p.header.kid.as_deref(), Some("k1"));
    assert_eq!(p.issuer(), Some("https://i"));
    assert_eq!(p.signature, b"sig");
}

/// Checklist 1: `none`, `None`, empty alg and an empty signature are refused by the pre-parse.
#[test]
fn checklist_01_alg_none_variants_rejected() {
    for alg in [r#""none""#, r#""None""#, r#""NONE""#, r#""""#, "null", "1", r#"["RS256"]"#, r#""HS512""#] {
        let t = tok(&format!(r#"{{"alg":{alg}}}"#), P);
        assert_eq!(parse(&t).err(), Some(JwtError::Algorithm), "alg {alg}");
    }
    let t = tok(r#"{"typ":"JWT"}"#, P);
    assert_eq!(parse(&t).err(), Some(JwtError::Algorithm));
    let empty_sig = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(P));
    assert!(parse(&empty_sig).is_err());
}

/// Checklist 4 and 5: `jwk`, `x5c`, `jku`, `x5u` headers reject the token.
#[test]
fn checklist_04_05_key_source_headers_rejected() {
    for h in [
        r#"{"alg":"RS256","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}"#,
        r#"{"alg":"RS256","x5c":["MIIB"]}"#,
        r#"{"alg":"RS256","jku":"http://127.0.0.1:1/jwks"}"#,
        r#"{"alg":"RS256","x5u":"http://127.0.0.1:1/cert"}"#,
    ] {
        assert!(matches!(parse(&tok(h, P)), Err(JwtError::ForbiddenHeader(_))), "{h}");
    }
}

/// Checklist 6: path traversal, metacharacters, NUL, non-string and 10 KB kids are refused.
#[test]
fn checklist_06_malicious_kids_rejected() {
    let long = "a".repeat(10 * 1024);
    for kid in [
        r#""../../etc/passwd x""#.to_owned(),
        r#""k' OR 1=1; --""#.to_owned(),
        r#""k\u0000""#.to_owned(),
        r#""a b""#.to_owned(),
        r#""""#.to_owned(),
        "7".to_owned(),
        format!("\"{long}\""),
    ] {
        let t = tok(&format!(r#"{{"alg":"RS256","kid":{kid}}}"#), P);
        assert_eq!(parse(&t).err(), Some(JwtError::Kid), "kid {}", &kid[..kid.len().min(20)]);
    }
    // Exactly 256 visible characters is still fine (an opaque key that simply won't match).
    let t = tok(&format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(256)), P);
    assert!(parse(&t).is_ok());
}

/// Checklist 13 and 14: `crit`, `b64` and `cty` (nested JWT) are refused.
#[test]
fn checklist_13_14_crit_b64_cty_rejected() {
    for h in [
        r#"{"alg":"RS256","crit":["exp"]}"#,
        r#"{"alg":"RS256","crit":[]}"#,
        r#"{"alg":"RS256","b64":false,"crit":["b64"]}"#,
        r#"{"alg":"RS256","b64":false}"#,
        r#"{"alg":"RS256","cty":"JWT"}"#,
    ] {
        assert!(matches!(parse(&tok(h, P)), Err(JwtError::ForbiddenHeader(_))), "{h}");
    }
}

/// Checklist 15: duplicate member names anywhere in header or payload are refused.
#[test]
fn checklist_15_duplicate_keys_rejected() {
    let t = tok(r#"{"alg":"RS256","alg":"none"}"#, P);
    assert_eq!(parse(&t).err(), Some(JwtError::DuplicateKey("header")));
    let t = tok(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"admin"}"#);
    assert_eq!(parse(&t).err(), Some(JwtError::DuplicateKey("payload")));
    let t = tok(r#"{"alg":"RS256"}"#, r#"{"sub":"a","x":[{"r":1,"r":2}]}"#);
    assert_eq!(parse(&t).err(), Some(JwtError::DuplicateKey("payload")));
    // Escaped spellings of the same name are the same name.
    let t = tok(r#"{"alg":"RS256"}"#, r#"{"sub":"a","s\u0075b":"b"}"#);
    assert_eq!(parse(&t).err(), Some(JwtError::DuplicateKey("payload")));
    // Non-objects and trailing garbage.
    assert!(parse(&tok(r#"["alg"]"#, P)).is_err());
    assert!(parse(&tok(r#"{"alg":"RS256"}"#, "[1]")).is_err());
    assert!(parse(&tok(r#"{"alg":"RS256"}"#, r#"{"a":1} {}"#)).is_err());
}

/// Checklist 16: padding, `+` `/`, whitespace, non-canonical trailing bits, 2 or 4+ segments.
#[test]
fn checklist_16_non_canonical_encodings_rejected() {
    let good = tok(r#"{"alg":"RS256"}"#, P);
    assert!(parse(&good).is_ok());
    let (h, rest) = good.split_once('.').expect("dot");
    // 2 and 4 segments, empty segments.
    assert_eq!(parse(&format!("{h}.{}", b64(P))).err(), Some(JwtError::Segments));
    assert_eq!(parse(&format!("{good}.x")).err(), Some(JwtError::Segments));
    assert_eq!(parse(&format!("{good}.")).err(), Some(JwtError::Segments));
    assert_eq!(parse(&format!(".{rest}")).err(), Some(JwtError::Base64));
    // Padding, standard alphabet, whitespace.
    assert_eq!(parse(&format!("{h}=.{rest}")).err(), Some(JwtError::Base64));
    assert_eq!(parse(&format!("{good}=")).err(), Some(JwtError::Base64));
    let std_alpha = format!("{h}.{rest}").replacen('-', "+", 1).replacen('_', "/", 1);
    if std_alpha != good {
        assert_eq!(parse(&std_alpha).err(), Some(JwtError::Base64));
    }
    assert_eq!(parse(&format!("{good}+/")).err(), Some(JwtError::Base64));
    assert_eq!(parse(&format!(" {good}")).err(), Some(JwtError::Base64));
    assert_eq!(parse(&format!("{h}.{}", rest.replacen('.', " .", 1))).err(), Some(JwtError::Base64));
    // Trailing bits: "sig" encodes as "c2ln"; "c2lo" decodes to the same
    // bytes only if trailing bits were ignored. Use a 2-byte signature.
    let two = B64URL.encode(b"si"); // "c2k"
    assert_eq!(two, "c2k");
    let bad_bits = format!("{h}.{}.c2l", rest.rsplit_once('.').expect("dot").0);
    assert_eq!(parse(&bad_bits).err(), Some(JwtError::Base64));
    let ok_bits = format!("{h}.{}.c2k", rest.rsplit_once('.').expect("dot").0);
    assert!(parse(&ok_bits).is_ok());
    // A single base64 char cannot encode a byte.
    let lone = format!("{h}.{}.c", rest.rsplit_once('.').expect("dot").0);
    assert_eq!(parse(&lone).err(), Some(JwtError::Base64));
}

/// Checklist 29: 100 000 dots (and 1 MB of junk) are refused in linear time.
#[test]
fn checklist_29_many_dots_linear() {
    let dots = ".".repeat(100_000);
    let start = std::time::Instant::now();
    assert_eq!(parse(&dots).err(), Some(JwtError::Segments));
    let junk = format!("{}.{}.{}", "A".repeat(400_000), "A".repeat(400_000), "A".repeat(200_000));
    assert!(parse(&junk).is_err());
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
}

/// Checklist 8: NumericDate claims must be non-negative JSON integers.
#[test]
fn checklist_08_numeric_dates_must_be_integers() {
    let get = |json: &str| {
        let m = strict_object(json.as_bytes(), "payload").expect("object");
        numeric_date(&m, "exp")
    };
    assert_eq!(get(r#"{"exp":1700000000}"#), Ok(Some(1_700_000_000)));
    assert_eq!(get(r#"{}"#), Ok(None));
    for bad in [
        r#"{"exp":"1700000000"}"#,
        r#"{"exp":1700000000.5}"#,
        r#"{"exp":1.7e9}"#,
        r#"{"exp":-1}"#,
        r#"{"exp":true}"#,
        r#"{"exp":null}"#,
        r#"{"exp":[1]}"#,
        r#"{"exp":18446744073709551615}"#,
    ] {
        assert_eq!(get(bad), Err(()), "{bad}");
    }
    // 1e309 overflows f64: the whole payload is refused.
    assert!(strict_object(br#"{"exp":1e309}"#, "payload").is_err());
}

/// Checklist 10: audience matching.
#[test]
fn checklist_10_audience_shapes() {
    let ours = ["api"];
    let v = |s: &str| serde_json::from_str::<Value>(s).expect("json");
    assert!(audience_matches(Some(&v(r#""api""#)), &ours));
    assert!(audience_matches(Some(&v(r#"["other","api"]"#)), &ours));
    assert!(!audience_matches(Some(&v(r#"["other"]"#)), &ours));
    assert!(!audience_matches(Some(&v(r#""""#)), &ours));
    assert!(!audience_matches(Some(&v("[]")), &ours));
    assert!(!audience_matches(Some(&v(r#"["api",7]"#)), &ours));
    assert!(!audience_matches(Some(&v("null")), &ours));
    assert!(!audience_matches(None, &ours));
}
