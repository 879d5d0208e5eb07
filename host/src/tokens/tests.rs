use std::collections::BTreeMap;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;

use super::*;
use crate::config::{GatewayTokensConfig, SecretSource};
use crate::jose::{self as jwt, B64URL, now_unix};

const K1: &str = "0123456789abcdef0123456789abcdef-v1";
const K2: &str = "0123456789abcdef0123456789abcdef-v2";
const NOW: i64 = 1_800_000_000;

fn cfg(active: &str, keys: &[(&str, &str)]) -> GatewayTokensConfig {
    GatewayTokensConfig::inline(
        active,
        keys.iter().map(|(k, v)| ((*k).to_owned(), SecretSource::Value((*v).to_owned()))).collect::<BTreeMap<_, _>>(),
    )
}

fn tokens() -> GatewayTokens {
    GatewayTokens::new(&cfg("v1", &[("v1", K1), ("v2", K2)])).expect("config")
}

fn req() -> MintRequest {
    MintRequest {
        subject: "alice".into(),
        tenant: Some("acme".into()),
        roles: vec!["admin".into()],
        scopes: vec!["sandbox:read".into(), "sandbox:write".into()],
        ttl: Duration::from_secs(600),
    }
}

/// Signs arbitrary header/payload JSON with `key` (HS256).
fn hs256(header: &str, payload: &str, key: &[u8]) -> String {
    let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
    format!("{input}.{}", B64URL.encode(tag.as_ref()))
}

fn payload(extra: &str) -> String {
    format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"alice","iat":{NOW},"exp":{},"jti":"j1"{extra}}}"#, NOW + 600)
}

#[test]
fn mint_then_verify_round_trip() {
    let t = tokens();
    let tok = t.mint_at(&req(), NOW).expect("mint");
    let (p, exp) = t.verify(&tok, NOW + 1).expect("verify");
    assert_eq!(exp, NOW + 600);
    assert_eq!(p.subject, "alice");
    assert_eq!(p.tenant.as_deref(), Some("acme"));
    assert_eq!(p.roles, vec!["admin"]);
    assert_eq!(p.scopes, vec!["sandbox:read", "sandbox:write"]);
    let parsed = jwt::parse(&tok).expect("parse");
    assert_eq!(parsed.header.kid.as_deref(), Some("v1"));
    assert_eq!(parsed.header.typ.as_deref(), Some("JWT"));
    let jti = parsed.claims["jti"].as_str().expect("jti");
    assert_eq!(jti.len(), 32);
    assert_ne!(jti, jwt::parse(&t.mint_at(&req(), NOW).expect("mint")).expect("p").claims["jti"]);
}

#[test]
fn expiry_and_time_rules() {
    let t = tokens();
    let tok = t.mint_at(&req(), NOW).expect("mint");
    assert!(t.verify(&tok, NOW + 600 + 30).is_ok(), "inside leeway");
    assert_eq!(t.verify(&tok, NOW + 600 + 31).err(), Some(GatewayTokenError::Expired));
    assert_eq!(t.verify(&tok, NOW - 31).err(), Some(GatewayTokenError::NotYetValid));
    let strict = tokens().with_limits(0, 300);
    assert_eq!(strict.verify(&tok, NOW).err(), Some(GatewayTokenError::LifetimeTooLong));
}

/// Checklist 18: unknown or retired kid, wrong alg, missing kid, other key: rejected.
#[test]
fn checklist_18_wrong_keys_rejected() {
    let t = tokens();
    let good = hs256(r#"{"alg":"HS256","kid":"v2"}"#, &payload(""), K2.as_bytes());
    assert!(t.verify(&good, NOW).is_ok());
    let unknown = hs256(r#"{"alg":"HS256","kid":"v9"}"#, &payload(""), K2.as_bytes());
    assert_eq!(t.verify(&unknown, NOW).err(), Some(GatewayTokenError::UnknownKid));
    let no_kid = hs256(r#"{"alg":"HS256"}"#, &payload(""), K1.as_bytes());
    assert_eq!(t.verify(&no_kid, NOW).err(), Some(GatewayTokenError::MissingKid));
    let cross = hs256(r#"{"alg":"HS256","kid":"v1"}"#, &payload(""), K2.as_bytes());
    assert_eq!(t.verify(&cross, NOW).err(), Some(GatewayTokenError::BadSignature));
    let rs = hs256(r#"{"alg":"RS256","kid":"v1"}"#, &payload(""), K1.as_bytes());
    assert_eq!(t.verify(&rs, NOW).err(), Some(GatewayTokenError::Algorithm));
    // Retired: v2 removed from the config.
    let retired = GatewayTokens::new(&cfg("v1", &[("v1", K1)])).expect("config");
    assert_eq!(retired.verify(&good, NOW).err(), Some(GatewayTokenError::UnknownKid));
    // Short or empty keys are refused at start.
    assert!(GatewayTokens::new(&cfg("v1", &[("v1", "short")])).is_err());
    assert!(GatewayTokens::new(&cfg("v1", &[("v1", "")])).is_err());
    assert!(GatewayTokens::new(&cfg("v3", &[("v1", K1)])).is_err());
}

/// Checklist 8 and 9 for gateway tokens: exp required and integer; iss/aud/jti/sub enforced.
#[test]
fn checklist_08_09_gateway_claims_enforced() {
    let t = tokens();
    let h = r#"{"alg":"HS256","kid":"v1"}"#;
    let sign = |p: &str| hs256(h, p, K1.as_bytes());
    let cases: [(String, GatewayTokenError); 9] = [
        (r#"{"iss":"wasmgate","aud":"wasmgate","sub":"a","jti":"j"}"#.into(), GatewayTokenError::Claim("exp")),
        (
            format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"a","jti":"j","exp":"{}"}}"#, NOW + 60),
            GatewayTokenError::Claim("exp"),
        ),
        (
            format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"a","jti":"j","exp":{}.0}}"#, NOW + 60),
            GatewayTokenError::Claim("exp"),
        ),
        (
            format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"a","jti":"j","exp":{},"nbf":null}}"#, NOW + 60),
            GatewayTokenError::Claim("nbf"),
        ),
        (
            format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"a","jti":"j","exp":{},"iat":true}}"#, NOW + 60),
            GatewayTokenError::Claim("iat"),
        ),
        (format!(r#"{{"aud":"wasmgate","sub":"a","jti":"j","exp":{}}}"#, NOW + 60), GatewayTokenError::Issuer),
        (format!(r#"{{"iss":"wasmgate","sub":"a","jti":"j","exp":{}}}"#, NOW + 60), GatewayTokenError::Audience),
        (
            format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"a","exp":{}}}"#, NOW + 60),
            GatewayTokenError::Claim("jti"),
        ),
        (
            format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"","jti":"j","exp":{}}}"#, NOW + 60),
            GatewayTokenError::Claim("sub"),
        ),
    ];
    for (p, want) in cases {
        assert_eq!(t.verify(&sign(&p), NOW).err(), Some(want), "{p}");
    }
}

/// Checklist 19: a token HMAC-signed with the sandbox secret is not a gateway token.
#[test]
fn checklist_19_sandbox_secret_is_not_an_hmac_key() {
    let t = tokens();
    let sandbox = b"the-sandbox-secret-that-is-32-bytes-long";
    for kid in ["v1", "v2", "sandbox"] {
        let tok = hs256(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#), &payload(""), sandbox);
        assert!(t.verify(&tok, NOW).is_err(), "kid {kid}");
    }
}

#[test]
fn mint_request_validation_and_debug() {
    let t = tokens();
    let mut r = req();
    r.ttl = Duration::ZERO;
    assert!(t.mint_at(&r, NOW).is_err());
    let mut r = req();
    r.scopes = vec!["a b".into()];
    assert!(t.mint_at(&r, NOW).is_err());
    assert!(!format!("{t:?}").contains("0123456789abcdef"));
}

/// A key folder with `active` and the given versions, and an empty revocation file.
fn folder(active: &str, keys: &[(&str, &str)]) -> (tempfile::TempDir, GatewayTokensConfig) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kd = dir.path().join("keys");
    std::fs::create_dir(&kd).expect("mkdir");
    std::fs::write(kd.join("active"), format!("{active}\n")).expect("write");
    for (v, k) in keys {
        std::fs::write(kd.join(v), k).expect("write");
    }
    let revoked = dir.path().join("revoked");
    std::fs::write(&revoked, "").expect("write");
    let cfg = GatewayTokensConfig::from_dir(kd, Some(revoked));
    (dir, cfg)
}

fn jti_of(token: &str) -> String {
    jwt::parse(token).expect("parse").claims["jti"].as_str().expect("jti").to_owned()
}

/// Checklist 17: a revoked token, re-encoded or re-signed with any current key, stays rejected.
#[test]
fn checklist_17_revoked_jti_rejected_however_reencoded_or_resigned() {
    let (dir, c) = folder("v1", &[("v1", K1), ("v2", K2)]);
    let t = GatewayTokens::new(&c).expect("folder config");
    let tok = t.mint_at(&req(), NOW).expect("mint");
    let other = t.mint_at(&req(), NOW).expect("mint");
    assert!(t.verify(&tok, NOW).is_ok());
    let jti = jti_of(&tok);
    std::fs::write(dir.path().join("revoked"), format!("# revoked\n{jti} {}\n", NOW + 600)).expect("write");
    t.reload().expect("reload");
    assert!(t.is_revoked(&jti));
    assert_eq!(t.verify(&tok, NOW).err(), Some(GatewayTokenError::Revoked));
    assert!(t.verify(&other, NOW).is_ok(), "only that jti");
    let p = payload("").replace("\"j1\"", &format!("{jti:?}"));
    let resigned = hs256(r#"{"alg":"HS256","kid":"v2"}"#, &p, K2.as_bytes());
    assert_eq!(t.verify(&resigned, NOW).err(), Some(GatewayTokenError::Revoked), "re-signed with another key");
    let reencoded = hs256(r#"{"typ":"JWT", "kid":"v1","alg":"HS256"}"#, &p.replace(',', ", "), K1.as_bytes());
    assert_eq!(t.verify(&reencoded, NOW).err(), Some(GatewayTokenError::Revoked), "re-encoded header and payload");
    let later = p.replace(&format!("\"iat\":{NOW}"), &format!("\"iat\":{}", NOW + 1));
    let reissued = hs256(r#"{"alg":"HS256","kid":"v1"}"#, &later, K1.as_bytes());
    assert_eq!(t.verify(&reissued, NOW + 1).err(), Some(GatewayTokenError::Revoked), "other claims, same jti");
}

/// Checklist 18 after a reload: a retired version stops verifying; a bad
/// update is refused and the last good keys keep verifying.
#[test]
fn checklist_18_retired_key_rejected_after_reload_and_bad_updates_refused() {
    let (dir, c) = folder("v2", &[("v1", K1), ("v2", K2)]);
    let kd = dir.path().join("keys");
    let t = GatewayTokens::new(&c).expect("folder config");
    let old = hs256(r#"{"alg":"HS256","kid":"v1"}"#, &payload(""), K1.as_bytes());
    let new = t.mint_at(&req(), NOW).expect("mint");
    assert_eq!(jwt::parse(&new).expect("parse").header.kid.as_deref(), Some("v2"));
    assert!(t.verify(&old, NOW).is_ok() && t.verify(&new, NOW).is_ok());
    std::fs::remove_file(kd.join("v1")).expect("retire v1");
    t.reload().expect("reload");
    assert_eq!(t.verify(&old, NOW).err(), Some(GatewayTokenError::UnknownKid), "retired");
    assert_eq!(t.key_versions(), ["v2"]);
    // Bad updates: a short key, an active version that does not exist, no active file.
    std::fs::write(kd.join("v3"), "short").expect("write");
    assert!(t.reload().is_err());
    std::fs::remove_file(kd.join("v3")).expect("rm");
    std::fs::write(kd.join("active"), "v9").expect("write");
    assert!(t.reload().is_err());
    std::fs::remove_file(kd.join("active")).expect("rm");
    assert!(t.reload().is_err());
    assert!(t.verify(&new, NOW).is_ok(), "the last good set keeps verifying");
    assert_eq!(t.active_version(), "v2");
    // A key equal to a forbidden secret (the sandbox secret) is refused on reload too.
    std::fs::write(kd.join("active"), "v2").expect("write");
    t.forbid_key(jwt::sha256(K1.as_bytes())).expect("no current key equals it");
    std::fs::write(kd.join("v1"), K1).expect("write");
    assert!(t.reload().is_err());
    assert_eq!(t.key_versions(), ["v2"]);
}

#[test]
fn unreadable_sources_are_start_errors() {
    let (dir, c) = folder("v1", &[("v1", K1)]);
    assert!(GatewayTokens::new(&c).is_ok());
    let mut missing_dir = c.clone();
    missing_dir.keys_dir = Some(dir.path().join("nope"));
    assert!(GatewayTokens::new(&missing_dir).is_err());
    let mut missing_list = c.clone();
    missing_list.revoked_file = Some(dir.path().join("nope"));
    assert!(GatewayTokens::new(&missing_list).is_err());
    let mut both = c;
    both.active_key = Some("v1".into());
    assert!(GatewayTokens::new(&both).is_err());
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The watcher sees Kubernetes `..data` swaps of the key folder and
/// in-place renames of the revocation file, and ignores a bad update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reloads_rotation_retirement_and_revocation_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kd = dir.path().join("keys");
    let ts = kd.join("..2025_06_01_00_00_00.1");
    std::fs::create_dir_all(&ts).expect("mkdir");
    std::fs::write(ts.join("active"), "v1\n").expect("write");
    std::fs::write(ts.join("v1"), K1).expect("write");
    for name in ["active", "v1"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), kd.join(name)).expect("link");
    }
    std::os::unix::fs::symlink("..2025_06_01_00_00_00.1", kd.join("..data")).expect("link");
    let revoked = dir.path().join("lists").join("revoked");
    std::fs::create_dir(dir.path().join("lists")).expect("mkdir");
    std::fs::write(&revoked, "").expect("write");
    let t = GatewayTokens::new(&GatewayTokensConfig::from_dir(kd.clone(), Some(revoked.clone()))).expect("cfg");
    t.watch(&crate::tasks::Tasks::new()).expect("watch");
    let now = now_unix();
    let old = t.mint_at(&req(), now).expect("mint");

    files::rotate(&kd, None).expect("rotate");
    eventually("v2 active", || t.active_version() == "v2").await;
    let new = t.mint_at(&req(), now).expect("mint");
    assert!(t.verify(&old, now).is_ok(), "the old version verifies until retired");

    files::retire(&kd, "v1").expect("retire");
    eventually("v1 retired", || t.verify(&old, now) == Err(GatewayTokenError::UnknownKid)).await;

    files::revoke(&revoked, &jti_of(&new), Some(now + 600), now, 30).expect("revoke");
    eventually("revoked", || t.verify(&new, now) == Err(GatewayTokenError::Revoked)).await;

    // A bad Secret update (active names a missing version) is refused.
    let bad = kd.join("..bad");
    std::fs::create_dir(&bad).expect("mkdir");
    std::fs::write(bad.join("active"), "v7").expect("write");
    std::os::unix::fs::symlink("..bad", kd.join("..data_tmp")).expect("link");
    std::fs::rename(kd.join("..data_tmp"), kd.join("..data")).expect("swap");
    tokio::time::sleep(RELOAD_DEBOUNCE * 6).await;
    assert_eq!(t.active_version(), "v2");
    assert_eq!(t.verify(&new, now), Err(GatewayTokenError::Revoked));
    assert!(t.mint_at(&req(), now).is_ok_and(|tok| t.verify(&tok, now).is_ok()), "v2 still signs and verifies");
}
