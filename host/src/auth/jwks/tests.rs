use super::*;

fn ec_jwk(kid: &str) -> serde_json::Value {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("gen");
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("parse");
    let pt = kp.public_key().as_ref();
    serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": crate::jose::B64URL.encode(&pt[1..33]),
        "y": crate::jose::B64URL.encode(&pt[33..65]),
    })
}

/// Checklist 26: unknown kty/alg/crv, `use: enc`, duplicate kid and small RSA keys are skipped; the good key works.
#[test]
fn checklist_26_bad_keys_skipped_good_key_kept() {
    let good = ec_jwk("good");
    let mut enc = ec_jwk("enc");
    enc["use"] = "enc".into();
    let mut wrong_alg = ec_jwk("wrongalg");
    wrong_alg["alg"] = "ES384".into();
    let mut bad_crv = ec_jwk("badcrv");
    bad_crv["crv"] = "P-521".into();
    let dup1 = ec_jwk("dup");
    let dup2 = ec_jwk("dup");
    let mut off_curve = ec_jwk("offcurve");
    off_curve["y"] = crate::jose::B64URL.encode([7u8; 32]).into();
    let small_rsa =
        serde_json::json!({"kty":"RSA","kid":"small","n": crate::jose::B64URL.encode([0xffu8; 128]),"e":"AQAB"});
    let doc = serde_json::json!({"keys": [
        good, enc, wrong_alg, bad_crv, dup1, dup2, off_curve, small_rsa,
        {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
        {"kty":"XYZ","kid":"unknown"},
        {"kty":"EC","crv":"P-256","x":"AA","y":"AA"},
        "not an object",
    ]});
    let keys =
        parse_jwks("p", doc.to_string().as_bytes(), &[Algorithm::RS256, Algorithm::ES256]).expect("one usable key");
    assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["good"]);
    assert_eq!(keys["good"].alg, Algorithm::ES256);
}

/// Checklist 26, found by fuzzing (`fuzz/seeds/jwks/regression-*`): a
/// malformed entry that shares a kid with a good key still makes the kid
/// ambiguous, so neither is loaded.
#[test]
fn checklist_26_a_malformed_entry_with_the_same_kid_drops_the_kid() {
    let good = ec_jwk("k");
    let mut malformed = ec_jwk("k");
    malformed["key_ops"] = "verify".into();
    let doc = serde_json::json!({"keys": [malformed, good, ec_jwk("other")]});
    let keys = parse_jwks("p", doc.to_string().as_bytes(), &[Algorithm::ES256]).expect("other");
    assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["other"]);
}

/// Checklist 26, found by the long fuzz run
/// (`fuzz/seeds/jwks/regression-zero-modulus`): an all-zero RSA modulus
/// is skipped, where its size computation used to underflow and panic.
#[test]
fn checklist_26_an_all_zero_rsa_modulus_is_skipped() {
    let zero = serde_json::json!({"kty":"RSA","kid":"zero","n":"AAAAAAAAAAAAAAAAAAAAAA","e":"AQ"});
    let doc = serde_json::json!({"keys": [zero, ec_jwk("other")]});
    let keys = parse_jwks("p", doc.to_string().as_bytes(), &[Algorithm::RS256, Algorithm::ES256]).expect("other");
    assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["other"]);
}

/// Checklist 23: empty key sets, HTML and invalid JSON are errors (so the last good set is kept).
#[test]
fn checklist_23_unusable_documents_are_errors() {
    let allowed = [Algorithm::ES256];
    assert_eq!(parse_jwks("p", br#"{"keys":[]}"#, &allowed).err(), Some(FetchError::NoUsableKeys));
    assert_eq!(parse_jwks("p", b"<html>oops</html>", &allowed).err(), Some(FetchError::Json("JWKS")));
    assert_eq!(parse_jwks("p", b"{", &allowed).err(), Some(FetchError::Json("JWKS")));
}

#[test]
fn disallowed_algorithms_are_not_loaded() {
    let doc = serde_json::json!({"keys": [ec_jwk("k")]});
    assert_eq!(parse_jwks("p", doc.to_string().as_bytes(), &[Algorithm::RS256]).err(), Some(FetchError::NoUsableKeys));
}

#[test]
fn discovery_issuer_must_match_exactly() {
    let body = br#"{"issuer":"https://idp.example/","jwks_uri":"https://idp.example/keys"}"#;
    assert_eq!(parse_discovery("https://idp.example", body), Err(FetchError::IssuerMismatch));
    assert_eq!(parse_discovery("https://idp.example/", body), Ok("https://idp.example/keys".into()));
    let http_jwks = br#"{"issuer":"https://idp.example","jwks_uri":"http://idp.example/keys"}"#;
    assert_eq!(parse_discovery("https://idp.example", http_jwks), Err(FetchError::JwksUri));
    assert_eq!(discovery_url("https://a/"), "https://a/.well-known/openid-configuration");
}

#[test]
fn cache_control_max_age() {
    let mut h = http::HeaderMap::new();
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("public, max-age=120"));
    assert_eq!(max_age(&h), Some(Duration::from_secs(120)));
}

fn rsa_jwk(kp: &aws_lc_rs::rsa::KeyPair, kid: &str, alg: &str) -> serde_json::Value {
    use aws_lc_rs::signature::KeyPair as _;
    let public = kp.public_key();
    serde_json::json!({
        "kty": "RSA", "kid": kid, "alg": alg,
        "n": crate::jose::B64URL.encode(public.modulus().big_endian_without_leading_zero()),
        "e": crate::jose::B64URL.encode(public.exponent().big_endian_without_leading_zero()),
    })
}

/// Checklist 2: a key verifies under its own algorithm only (the parsed
/// key is bound to it when the set is read): an RS256 key refuses a PSS
/// signature by the same private key and vice versa, and any changed byte
/// of message or signature fails.
#[test]
fn checklist_02_a_prepared_key_verifies_under_its_own_algorithm_only() {
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaEncoding};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let sign = |enc: &'static dyn RsaEncoding| {
        let mut s = vec![0; kp.public_modulus_len()];
        kp.sign(enc, &rng, b"signed bytes", &mut s).expect("sign");
        s
    };
    let (pkcs1, pss) = (sign(&RSA_PKCS1_SHA256), sign(&RSA_PSS_SHA256));
    let doc = serde_json::json!({"keys": [rsa_jwk(&kp, "rs", "RS256"), rsa_jwk(&kp, "ps", "PS256")]});
    let keys = parse_jwks("p", doc.to_string().as_bytes(), &[Algorithm::RS256, Algorithm::PS256]).expect("keys");
    let (rs, ps) = (&keys["rs"], &keys["ps"]);
    assert_eq!((rs.alg, ps.alg), (Algorithm::RS256, Algorithm::PS256));
    assert!(rs.verify(b"signed bytes", &pkcs1));
    assert!(!rs.verify(b"signed bytes", &pss), "PSS signature under an RS256 key");
    assert!(ps.verify(b"signed bytes", &pss));
    assert!(!ps.verify(b"signed bytes", &pkcs1), "PKCS#1 signature under a PS256 key");
    assert!(!rs.verify(b"signed bytez", &pkcs1));
    let mut flipped = pkcs1.clone();
    flipped[100] ^= 1;
    assert!(!rs.verify(b"signed bytes", &flipped));
    assert!(!rs.verify(b"signed bytes", &pkcs1[1..]), "short signature");
    assert!(!rs.verify(b"signed bytes", &[]), "empty signature");
}

/// An EC key verifies its own P1363 signatures and nothing else.
#[test]
fn an_ec_key_verifies_fixed_length_signatures() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("gen");
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("parse");
    let pt = kp.public_key().as_ref();
    let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "ec",
        "x": crate::jose::B64URL.encode(&pt[1..33]), "y": crate::jose::B64URL.encode(&pt[33..65])});
    let keys =
        parse_jwks("p", serde_json::json!({"keys": [jwk]}).to_string().as_bytes(), &[Algorithm::ES256]).expect("key");
    let signature = kp.sign(&rng, b"msg").expect("sign");
    assert!(keys["ec"].verify(b"msg", signature.as_ref()));
    assert!(!keys["ec"].verify(b"msh", signature.as_ref()));
    assert!(!keys["ec"].verify(b"msg", &[0u8; 64]), "all-zero signature");
}
