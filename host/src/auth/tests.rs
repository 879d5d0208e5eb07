//! End-to-end tests of [`Authenticator`] against a real JWKS server on
//! 127.0.0.1, with keys generated at test time. Each item of the security
//! checklist, `docs/security.md`, is named in its test's name.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Uri};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::*;
use crate::config::{GatewayTokensConfig, JwksConfig, ProviderConfig, SecretSource};
use crate::identity::AuthClass;
use crate::jose::{B64URL, now_unix};

mod token_cache;

// ---------------------------------------------------------------- keys

struct TestKey {
    kid: String,
    alg: Algorithm,
    enc: EncodingKey,
    jwk: Value,
}

/// Extracts the PKCS#1 `RSAPrivateKey` from a PKCS#8 document (what
/// jsonwebtoken's aws-lc backend expects for RSA signing keys).
fn pkcs8_to_pkcs1(der: &[u8]) -> Vec<u8> {
    fn tlv(b: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = b[0];
        let (len, hdr) = if b[1] < 0x80 {
            (b[1] as usize, 2)
        } else {
            let n = (b[1] & 0x7f) as usize;
            (b[2..2 + n].iter().fold(0usize, |a, &x| (a << 8) | x as usize), 2 + n)
        };
        (tag, &b[hdr..hdr + len], &b[hdr + len..])
    }
    let (_, seq, _) = tlv(der);
    let (_, _version, rest) = tlv(seq);
    let (_, _alg, rest) = tlv(rest);
    let (tag, octets, _) = tlv(rest);
    assert_eq!(tag, 0x04);
    octets.to_vec()
}

fn rsa_key(kid: &str) -> TestKey {
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let pkcs8 = kp.as_der().expect("der");
    let pubkey = kp.public_key();
    let n = B64URL.encode(pubkey.modulus().big_endian_without_leading_zero());
    let e = B64URL.encode(pubkey.exponent().big_endian_without_leading_zero());
    TestKey {
        kid: kid.into(),
        alg: Algorithm::RS256,
        enc: EncodingKey::from_rsa_der(&pkcs8_to_pkcs1(pkcs8.as_ref())),
        jwk: json!({"kty":"RSA","kid":kid,"use":"sig","alg":"RS256","n":n,"e":e}),
    }
}

fn ec_key(kid: &str) -> TestKey {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("ec");
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("ec parse");
    let pt = kp.public_key().as_ref();
    TestKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        enc: EncodingKey::from_ec_der(doc.as_ref()),
        // No `alg`: derived from the curve.
        jwk: json!({"kty":"EC","crv":"P-256","kid":kid,"x":B64URL.encode(&pt[1..33]),"y":B64URL.encode(&pt[33..65])}),
    }
}

fn ed_key(kid: &str) -> TestKey {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed");
    let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("ed parse");
    TestKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        enc: EncodingKey::from_ed_der(doc.as_ref()),
        jwk: json!({"kty":"OKP","crv":"Ed25519","kid":kid,"x":B64URL.encode(kp.public_key().as_ref())}),
    }
}

/// RSA generation is the slow part: do it once.
fn shared_rsa() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| rsa_key("rsa-1"))
}

fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        _ => "other",
    }
}

/// Signs raw header and payload JSON text with `key`.
fn sign_raw(header: &str, payload: &str, key: &TestKey) -> String {
    let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key.enc, key.alg).expect("sign");
    format!("{input}.{sig}")
}

/// Signs claims with a standard header (`alg`, `kid`) using jsonwebtoken.
fn sign(claims: &Value, key: &TestKey) -> String {
    let mut h = jsonwebtoken::Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&h, claims, &key.enc).expect("encode")
}

fn hs256(header: &str, payload: &str, secret: &[u8]) -> String {
    let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", B64URL.encode(tag.as_ref()))
}

// ---------------------------------------------------------------- IdP

#[derive(Default)]
struct IdpState {
    issuer: Mutex<String>,
    /// The issuer the discovery document claims (defaults to `issuer`).
    discovery_issuer: Mutex<Option<String>>,
    jwks: Mutex<Value>,
    /// Non-200 status or raw body to answer with instead of the JWKS.
    jwks_override: Mutex<Option<(u16, String)>>,
    jwks_delay_ms: AtomicUsize,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    other_hits: AtomicUsize,
}

struct Idp {
    issuer: String,
    state: Arc<IdpState>,
}

impl Idp {
    async fn start(keys: &[&TestKey]) -> Self {
        let state = Arc::new(IdpState::default());
        *state.jwks.lock().expect("lock") = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        let app = Router::new()
            .route("/.well-known/openid-configuration", axum::routing::get(discovery))
            .route("/jwks", axum::routing::get(jwks_handler))
            .fallback(other)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        *state.issuer.lock().expect("lock") = issuer.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { issuer, state }
    }

    fn set_keys(&self, keys: &[&TestKey]) {
        *self.state.jwks.lock().expect("lock") =
            json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }

    fn set_override(&self, o: Option<(u16, String)>) {
        *self.state.jwks_override.lock().expect("lock") = o;
    }

    fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
}

async fn discovery(State(s): State<Arc<IdpState>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let issuer = s.issuer.lock().expect("lock").clone();
    let claimed = s.discovery_issuer.lock().expect("lock").clone().unwrap_or_else(|| issuer.clone());
    axum::Json(json!({"issuer": claimed, "jwks_uri": format!("{issuer}/jwks")})).into_response()
}

async fn jwks_handler(State(s): State<Arc<IdpState>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let delay = s.jwks_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    let o = s.jwks_override.lock().expect("lock").clone();
    if let Some((status, body)) = o {
        return (StatusCode::from_u16(status).expect("status"), body).into_response();
    }
    let doc = s.jwks.lock().expect("lock").clone();
    axum::Json(doc).into_response()
}

async fn other(State(s): State<Arc<IdpState>>) -> Response {
    s.other_hits.fetch_add(1, Ordering::SeqCst);
    (StatusCode::OK, "{}").into_response()
}

// ---------------------------------------------------------------- config

const AUD: &str = "api";
const GW_KEY: &str = "gateway-hmac-key-version-1-0123456789abcdef";
const SANDBOX: &str = "sandbox-secret-value-0123456789";

fn provider(name: &str, issuer: &str) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        issuer: issuer.into(),
        audiences: vec![AUD.into()],
        algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
        jwks_url: None,
        required_typ: None,
        jwks: JwksConfig {
            refresh_seconds: 300,
            cooldown_seconds: 0,
            max_staleness_seconds: 3600,
            fetch_timeout_ms: 2_000,
            max_body_bytes: 64 * 1024,
        },
        claims_mapper: None,
        tenants: None,
    }
}

fn auth_cfg(providers: Vec<ProviderConfig>) -> AuthConfig {
    AuthConfig {
        sandbox_secret: Some(SecretSource::Value(SANDBOX.into())),
        cookie: Some("session".into()),
        query_parameter: Some("access_token".into()),
        providers,
        gateway_tokens: Some(GatewayTokensConfig::inline(
            "v1",
            BTreeMap::from([("v1".to_owned(), SecretSource::Value(GW_KEY.into()))]),
        )),
        ..AuthConfig::default()
    }
}

async fn ready(auth: &Authenticator) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !auth.ready() {
        assert!(Instant::now() < deadline, "providers not ready: {:?}", auth.readiness());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One provider with the given keys, ready.
async fn setup(keys: &[&TestKey]) -> (Idp, Authenticator) {
    let idp = Idp::start(keys).await;
    let auth = started(&auth_cfg(vec![provider("idp", &idp.issuer)])).expect("auth");
    ready(&auth).await;
    (idp, auth)
}

fn claims(issuer: &str) -> Value {
    let now = now_unix();
    json!({"iss": issuer, "aud": AUD, "sub": "user-1", "iat": now, "exp": now + 600, "scope": "read"})
}

fn bearer(token: &str) -> Presented {
    let mut h = HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("hv"));
    presented(h)
}

fn presented(h: HeaderMap) -> Presented {
    let cfg = ExtractConfig {
        sandbox_header: HeaderName::from_static("x-sandbox-secret"),
        cookie: Some("session".into()),
        query_parameter: Some("access_token".into()),
        max_token_bytes: 8 * 1024,
    };
    extract::extract(&cfg, &h, &Uri::from_static("/"), false)
}

async fn check(auth: &Authenticator, token: &str) -> Result<Verified, AuthError> {
    auth.authenticate(AuthClass::Bearer, &bearer(token)).await
}

#[track_caller]
fn assert_invalid(r: &Result<Verified, AuthError>, what: &str) {
    match r {
        Err(e) => assert_eq!(e.kind(), AuthFailureKind::InvalidToken, "{what}: {e}"),
        Ok(a) => panic!("{what}: accepted {a:?}"),
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn valid_rs256_es256_eddsa_tokens_accepted() {
    let (rsa, ec, ed) = (shared_rsa(), ec_key("ec-1"), ed_key("ed-1"));
    let (idp, auth) = setup(&[rsa, &ec, &ed]).await;
    assert_eq!(auth.readiness()[0].key_count, 3);
    for key in [rsa, &ec, &ed] {
        let token = sign(&claims(&idp.issuer), key);
        match check(&auth, &token).await {
            Ok(Verified::Oidc { provider, token, source }) => {
                assert_eq!(&*provider, "idp");
                assert_eq!(token.subject, "user-1");
                assert_eq!(token.issuer, idp.issuer);
                assert_eq!(source, TokenSource::AuthorizationHeader);
                let v: Value = serde_json::from_str(&token.claims_json).expect("claims json");
                assert_eq!(v["scope"], "read");
                assert!(!format!("{token:?}").contains("user-1\",\"") && !format!("{token:?}").contains("scope"));
            }
            other => panic!("{}: {other:?}", alg_name(key.alg)),
        }
    }
    // Also from the cookie.
    let mut h = HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        HeaderValue::from_str(&format!("session={}", sign(&claims(&idp.issuer), &ec))).expect("hv"),
    );
    assert!(matches!(
        auth.authenticate(AuthClass::Bearer, &auth.extract(&h, &Uri::from_static("/"), false)).await,
        Ok(Verified::Oidc { source: TokenSource::Cookie, .. })
    ));
}

#[tokio::test]
async fn repeated_token_served_from_cache() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    let p = bearer(&sign(&claims(&idp.issuer), &ec));
    let Ok(Verified::Oidc { token: first, .. }) = auth.authenticate(AuthClass::Bearer, &p).await else {
        panic!("first verification failed");
    };
    let n = 2_000;
    let start = Instant::now();
    for _ in 0..n {
        let Ok(Verified::Oidc { token, .. }) = auth.authenticate(AuthClass::Bearer, &p).await else {
            panic!("cache hit failed");
        };
        assert!(Arc::ptr_eq(&first, &token), "served from the cache, not re-verified");
    }
    let per_hit = start.elapsed() / n;
    // Generous bound for unoptimised test builds; the benchmark reports the real figure.
    assert!(per_hit < Duration::from_micros(50), "cache hit took {per_hit:?}");
}

/// Checklist 1: `alg: none` / `None` / empty, empty signature: rejected before any key lookup.
#[tokio::test]
async fn checklist_01_alg_none_rejected_before_key_lookup() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    let hits = idp.jwks_hits();
    let payload = claims(&idp.issuer).to_string();
    for alg in ["none", "None", "NONE", ""] {
        for sig in ["", "c2ln"] {
            let t = format!(
                "{}.{}.{sig}",
                B64URL.encode(format!(r#"{{"alg":"{alg}","kid":"unknown-kid"}}"#)),
                B64URL.encode(&payload)
            );
            assert_invalid(&check(&auth, &t).await, alg);
        }
    }
    assert_eq!(idp.jwks_hits(), hits, "no key lookup or refetch happened");
}

/// Checklist 2: RS256→HS256 with the public key as HMAC secret; HS* never configurable for providers.
#[tokio::test]
async fn checklist_02_rs256_to_hs256_confusion_rejected() {
    let rsa = shared_rsa();
    let (idp, auth) = setup(&[rsa]).await;
    let payload = claims(&idp.issuer).to_string();
    let n = B64URL.decode(rsa.jwk["n"].as_str().expect("n")).expect("n bytes");
    let secrets: Vec<Vec<u8>> =
        vec![n.clone(), rsa.jwk.to_string().into_bytes(), rsa.jwk["n"].as_str().expect("n").as_bytes().to_vec()];
    for secret in secrets {
        let t = hs256(r#"{"alg":"HS256","kid":"rsa-1"}"#, &payload, &secret);
        let r = check(&auth, &t).await;
        assert_invalid(&r, "HS256 with public key");
        assert_eq!(r.err().map(|e| e.reason()), Some("algorithm_mismatch"));
    }
    // A key advertised with one algorithm is never used with another of its family.
    let mut p = provider("idp2", "https://other.example");
    p.algorithms = vec!["RS256".into(), "HS256".into()];
    assert!(matches!(started(&auth_cfg(vec![p])), Err(AuthError::Config(_))));
}

/// Checklist 3: gateway kid in an OIDC token and vice versa; the validators never share keys.
#[tokio::test]
async fn checklist_03_gateway_and_oidc_validators_mutually_exclusive() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    let now = now_unix();
    // An OIDC-issuer token carrying the gateway's kid, HMAC-signed with the gateway key.
    let p = json!({"iss": idp.issuer, "aud": AUD, "sub": "x", "exp": now + 60, "jti": "j"}).to_string();
    let t = hs256(r#"{"alg":"HS256","kid":"v1"}"#, &p, GW_KEY.as_bytes());
    assert_invalid(&check(&auth, &t).await, "gateway-signed token with OIDC issuer");
    // An OIDC-signed token naming the gateway issuer and the OIDC kid.
    let p = json!({"iss": "wasmgate", "aud": "wasmgate", "sub": "x", "exp": now + 60, "jti": "j"});
    let t = sign(&p, &ec);
    assert_invalid(&check(&auth, &t).await, "OIDC-signed token with gateway issuer");
    // Same, kid rewritten to the gateway's key version.
    let t = sign_raw(r#"{"alg":"ES256","kid":"v1"}"#, &p.to_string(), &ec);
    assert_invalid(&check(&auth, &t).await, "OIDC-signed token with gateway kid");
    // An OIDC token whose kid is the gateway version: unknown at the provider.
    let t = sign_raw(r#"{"alg":"ES256","kid":"v1"}"#, &claims(&idp.issuer).to_string(), &ec);
    assert_eq!(check(&auth, &t).await.err().map(|e| e.reason()), Some("unknown_kid"));
}

/// Checklist 4 and 5: embedded `jwk`/`x5c` and remote `jku`/`x5u` headers: rejected, zero outbound requests.
#[tokio::test]
async fn checklist_04_05_embedded_and_remote_key_headers_rejected_without_fetching() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    let (jwks, disc) = (idp.jwks_hits(), idp.state.discovery_hits.load(Ordering::SeqCst));
    let attacker = ec_key("attacker");
    let payload = claims(&idp.issuer).to_string();
    let headers = [
        json!({"alg":"ES256","kid":"attacker","jwk": attacker.jwk}),
        json!({"alg":"ES256","kid":"ec-1","jwk": attacker.jwk}),
        json!({"alg":"ES256","kid":"attacker","x5c": ["MIIBszCCAVmgAwIBAgIU"]}),
        json!({"alg":"ES256","kid":"attacker","jku": format!("{}/evil-jwks", idp.issuer)}),
        json!({"alg":"ES256","kid":"ec-1","jku": format!("{}/evil-jwks", idp.issuer)}),
        json!({"alg":"ES256","kid":"attacker","x5u": format!("{}/evil-cert", idp.issuer)}),
    ];
    for h in headers {
        // Signed with the attacker's key and, to be sure, with the real one.
        for key in [&attacker, &ec] {
            let t = sign_raw(&h.to_string(), &payload, key);
            assert_invalid(&check(&auth, &t).await, &h.to_string());
        }
    }
    assert_eq!(idp.state.other_hits.load(Ordering::SeqCst), 0, "jku/x5u never fetched");
    assert_eq!(idp.jwks_hits(), jwks, "no JWKS refetch either");
    assert_eq!(idp.state.discovery_hits.load(Ordering::SeqCst), disc);
}

/// Checklist 6: `kid` with `../`, SQL/shell metacharacters, NUL, 10 KB: opaque map key only, rejected.
#[tokio::test]
async fn checklist_06_hostile_kids_rejected() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    let payload = claims(&idp.issuer).to_string();
    let long = "k".repeat(10 * 1024);
    for kid in [
        "../../../../etc/passwd",
        "/dev/zero",
        "ec-1'; DROP TABLE keys;--",
        "$(touch /tmp/pwned)",
        "`id`|ls",
        "ec-1\u{0}",
        "ec-1\n",
        long.as_str(),
    ] {
        let h = json!({"alg":"ES256","kid":kid}).to_string();
        let t = sign_raw(&h, &payload, &ec);
        assert_invalid(&check(&auth, &t).await, &kid[..kid.len().min(30)]);
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());
}

/// Checklist 7: ECDSA `r = s = 0`, `r = n`, `s = n` (CVE-2022-21449 class): rejected.
#[tokio::test]
async fn checklist_07_ecdsa_degenerate_signatures_rejected() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    let good = sign(&claims(&idp.issuer), &ec);
    assert!(check(&auth, &good).await.is_ok());
    let (input, sig) = good.rsplit_once('.').expect("dot");
    let sig = B64URL.decode(sig).expect("sig");
    let n: [u8; 32] = hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
        .expect("hex")
        .try_into()
        .expect("32");
    let (r, s) = (&sig[..32], &sig[32..]);
    let zero = [0u8; 32];
    let cases: [(&[u8], &[u8]); 5] = [(&zero, &zero), (&n, s), (r, &n), (&n, &n), (&zero, s)];
    for (i, (r, s)) in cases.iter().enumerate() {
        let forged = format!("{input}.{}", B64URL.encode([*r, *s].concat()));
        assert_invalid(&check(&auth, &forged).await, &format!("case {i}"));
    }
    // Wrong length (DER-encoded or truncated) signatures too.
    let forged = format!("{input}.{}", B64URL.encode(&sig[..63]));
    assert_invalid(&check(&auth, &forged).await, "short");
}

/// Checklist 8: `exp`/`nbf`/`iat` as strings, negative, `1e309`, floats, booleans, null: rejected.
#[tokio::test]
async fn checklist_08_wrongly_typed_time_claims_rejected() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    let now = now_unix();
    let base = |extra: &str| format!(r#"{{"iss":"{}","aud":"api","sub":"u"{extra}}}"#, idp.issuer);
    let good = base(&format!(r#","exp":{}"#, now + 60));
    assert!(check(&auth, &sign_raw(r#"{"alg":"ES256","kid":"ec-1"}"#, &good, &ec)).await.is_ok());
    let exp = now + 60;
    for extra in [
        format!(r#","exp":"{exp}""#),
        r#","exp":-1"#.to_owned(),
        r#","exp":1e309"#.to_owned(),
        format!(r#","exp":{exp}.5"#),
        format!(r#","exp":{exp}.0"#),
        r#","exp":true"#.to_owned(),
        r#","exp":null"#.to_owned(),
        format!(r#","exp":[{exp}]"#),
        format!(r#","exp":{exp},"nbf":"0""#),
        format!(r#","exp":{exp},"nbf":null"#),
        format!(r#","exp":{exp},"nbf":-5"#),
        format!(r#","exp":{exp},"iat":false"#),
        format!(r#","exp":{exp},"iat":"{now}""#),
        format!(r#","exp":{exp},"iat":1.5"#),
    ] {
        let t = sign_raw(r#"{"alg":"ES256","kid":"ec-1"}"#, &base(&extra), &ec);
        assert_invalid(&check(&auth, &t).await, &extra);
    }
}

/// Checklist 9: missing `exp`, `iss` or `aud`: rejected.
#[tokio::test]
async fn checklist_09_missing_required_claims_rejected() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    for missing in ["exp", "iss", "aud", "sub"] {
        let mut c = claims(&idp.issuer);
        c.as_object_mut().expect("obj").remove(missing);
        assert_invalid(&check(&auth, &sign(&c, &ec)).await, missing);
    }
}

/// Checklist 10: `aud` array containing ours accepted; array without ours, `""`, `[]` rejected.
#[tokio::test]
async fn checklist_10_audience_rules() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    let with = |aud: Value| {
        let mut c = claims(&idp.issuer);
        c["aud"] = aud;
        sign(&c, &ec)
    };
    assert!(check(&auth, &with(json!(["other", AUD]))).await.is_ok());
    assert!(check(&auth, &with(json!(AUD))).await.is_ok());
    for bad in [json!(["other"]), json!(""), json!([]), json!(null), json!("API"), json!([AUD, 5])] {
        assert_invalid(&check(&auth, &with(bad.clone())).await, &bad.to_string());
    }
}

/// Checklist 11: `iss` differing by trailing slash, case, scheme; A's claims with B's key: rejected.
#[tokio::test]
async fn checklist_11_issuer_exact_match_and_cross_provider_keys() {
    let (ka, kb) = (ec_key("a-key"), ec_key("b-key"));
    let (a, b) = (Idp::start(&[&ka]).await, Idp::start(&[&kb]).await);
    let auth = started(&auth_cfg(vec![provider("a", &a.issuer), provider("b", &b.issuer)])).expect("auth");
    ready(&auth).await;
    assert!(check(&auth, &sign(&claims(&a.issuer), &ka)).await.is_ok());
    assert!(check(&auth, &sign(&claims(&b.issuer), &kb)).await.is_ok());
    let variants = [
        format!("{}/", a.issuer),
        a.issuer.to_uppercase(),
        a.issuer.replace("http://", "https://"),
        a.issuer.replace("127.0.0.1", "localhost"),
        format!(" {}", a.issuer),
    ];
    for iss in variants {
        let r = check(&auth, &sign(&claims(&iss), &ka)).await;
        assert_invalid(&r, &iss);
        assert_eq!(r.err().map(|e| e.reason()), Some("unknown_issuer"));
    }
    // Claims of issuer A signed by B's key (with B's kid): A never looks at B's keys.
    let r = check(&auth, &sign(&claims(&a.issuer), &kb)).await;
    assert_eq!(r.err().map(|e| e.reason()), Some("unknown_kid"));
    // Same, but B's key published under A's kid name: signature fails.
    let forged = sign_raw(r#"{"alg":"ES256","kid":"a-key"}"#, &claims(&a.issuer).to_string(), &kb);
    assert_eq!(check(&auth, &forged).await.err().map(|e| e.reason()), Some("bad_signature"));
}

/// Checklist 12: an ID token presented where an access token (`typ: at+jwt`) is required: rejected.
#[tokio::test]
async fn checklist_12_required_typ_enforced() {
    let ec = ec_key("ec-1");
    let idp = Idp::start(&[&ec]).await;
    let mut p = provider("idp", &idp.issuer);
    p.required_typ = Some("at+jwt".into());
    let auth = started(&auth_cfg(vec![p])).expect("auth");
    ready(&auth).await;
    let payload = claims(&idp.issuer).to_string();
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let t = sign_raw(&format!(r#"{{"alg":"ES256","kid":"ec-1","typ":"{typ}"}}"#), &payload, &ec);
        assert!(check(&auth, &t).await.is_ok(), "{typ}");
    }
    for h in [
        r#"{"alg":"ES256","kid":"ec-1","typ":"JWT"}"#,
        r#"{"alg":"ES256","kid":"ec-1"}"#,
        r#"{"alg":"ES256","kid":"ec-1","typ":"id+jwt"}"#,
    ] {
        let r = check(&auth, &sign_raw(h, &payload, &ec)).await;
        assert_eq!(r.err().map(|e| e.reason()), Some("typ_mismatch"), "{h}");
    }
}

/// Checklist 13-16 through the whole pipeline with valid signatures: `crit`, `b64:false`,
/// `cty: JWT`, duplicate members, non-canonical base64 and wrong segment counts.
#[tokio::test]
async fn checklist_13_14_15_16_header_and_encoding_abuse_rejected() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    let payload = claims(&idp.issuer).to_string();
    // 13, 14
    for h in [
        r#"{"alg":"ES256","kid":"ec-1","crit":["exp"],"exp":1}"#,
        r#"{"alg":"ES256","kid":"ec-1","b64":false,"crit":["b64"]}"#,
        r#"{"alg":"ES256","kid":"ec-1","cty":"JWT"}"#,
    ] {
        let r = check(&auth, &sign_raw(h, &payload, &ec)).await;
        assert_eq!(r.err().map(|e| e.reason()), Some("malformed_token"), "{h}");
    }
    // 15
    let dup_payload = payload.replacen('{', r#"{"sub":"admin","#, 1);
    let r = check(&auth, &sign_raw(r#"{"alg":"ES256","kid":"ec-1"}"#, &dup_payload, &ec)).await;
    assert_eq!(r.err().map(|e| e.reason()), Some("malformed_token"));
    let r = check(&auth, &sign_raw(r#"{"alg":"ES256","kid":"ec-1","kid":"ec-1"}"#, &payload, &ec)).await;
    assert_eq!(r.err().map(|e| e.reason()), Some("malformed_token"));
    // 16
    let good = sign(&claims(&idp.issuer), &ec);
    assert!(check(&auth, &good).await.is_ok());
    let (h, rest) = good.split_once('.').expect("dot");
    for bad in [
        format!("{h}=.{rest}"),
        format!("{good}.extra"),
        rest.to_owned(),
        format!("{h}.{}", rest.replacen('.', ".=", 1)),
    ] {
        // Padding inside a header value is already a malformed request (RFC 6750
        // b64token); either way it is a 401, never a pass.
        let kind = check(&auth, &bad).await.err().map(|e| e.kind());
        assert!(matches!(kind, Some(AuthFailureKind::InvalidToken | AuthFailureKind::InvalidRequest)), "{kind:?}");
    }
}

/// Checklist 19: sandbox secret near-miss, prefix, empty, used as an HMAC key: rejected.
#[tokio::test]
async fn checklist_19_sandbox_secret_rules() {
    let auth = started(&auth_cfg(vec![])).expect("auth");
    let with_secret = |v: &[u8]| {
        let mut h = HeaderMap::new();
        h.insert("x-sandbox-secret", HeaderValue::from_bytes(v).expect("hv"));
        auth.extract(&h, &Uri::from_static("/"), false)
    };
    assert!(matches!(
        auth.authenticate(AuthClass::SandboxSecret, &with_secret(SANDBOX.as_bytes())).await,
        Ok(Verified::SandboxSecret)
    ));
    let near = format!("{}X", &SANDBOX[..SANDBOX.len() - 1]);
    for bad in [near.as_str(), &SANDBOX[..5], &format!("{SANDBOX}x"), ""] {
        let r = auth.authenticate(AuthClass::SandboxSecret, &with_secret(bad.as_bytes())).await;
        assert_eq!(r.err().map(|e| e.kind()), Some(AuthFailureKind::InvalidToken), "{bad:?}");
    }
    // The sandbox secret as an HMAC key for a gateway-shaped token, or as a bearer token.
    let now = now_unix();
    let p = json!({"iss":"wasmgate","aud":"wasmgate","sub":"x","exp":now+60,"jti":"j"}).to_string();
    for kid in ["v1", "sandbox"] {
        let t = hs256(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#), &p, SANDBOX.as_bytes());
        assert_invalid(&check(&auth, &t).await, kid);
    }
    assert_invalid(&check(&auth, SANDBOX).await, "secret as bearer");
    // Configuring the sandbox secret as a gateway key is refused outright.
    let mut cfg = auth_cfg(vec![]);
    if let Some(g) = cfg.gateway_tokens.as_mut() {
        g.keys.insert("v2".into(), SecretSource::Value(SANDBOX.into()));
    }
    assert!(matches!(started(&cfg), Err(AuthError::Config(_))));
    // Not configured: fail closed.
    let mut cfg = auth_cfg(vec![]);
    cfg.sandbox_secret = None;
    let open = started(&cfg).expect("auth");
    let r = open.authenticate(AuthClass::SandboxSecret, &with_secret(SANDBOX.as_bytes())).await;
    assert_eq!(r.err().map(|e| e.reason()), Some("sandbox_secret_not_configured"));
}

/// Checklist 29: 1 MB `Authorization` header, 100 000 dots: rejected before parsing, bounded work.
#[tokio::test]
async fn checklist_29_huge_credentials_rejected_early() {
    let auth = started(&auth_cfg(vec![])).expect("auth");
    let start = Instant::now();
    for token in ["A".repeat(1 << 20), ".".repeat(100_000), format!("a.{}b", ".".repeat(100_000))] {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("hv"));
        let p = auth.extract(&h, &Uri::from_static("/"), false);
        let r = auth.authenticate(AuthClass::Bearer, &p).await;
        assert_eq!(r.err().map(|e| e.reason()), Some("token_too_large"));
        assert!(!format!("{p:?}").contains("AAAA"));
    }
    // Even when the limit is raised, 100 000 dots are refused in linear time.
    let mut cfg = auth_cfg(vec![]);
    cfg.max_token_bytes = 2 << 20;
    let big = started(&cfg).expect("auth");
    let r = big.verify_bearer_uncached(&".".repeat(100_000)).await;
    assert_eq!(r.err().map(|e| e.reason()), Some("malformed_token"));
    let r = big.verify_bearer_uncached(&format!("{}.{}.{}", "A".repeat(700_000), "A".repeat(300_000), "A")).await;
    assert_eq!(r.err().map(|e| e.reason()), Some("malformed_token"));
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
}

#[tokio::test]
async fn gateway_token_accepted_by_gateway_validator_only() {
    let auth = started(&auth_cfg(vec![])).expect("auth");
    let gw = GatewayTokens::new(auth_cfg(vec![]).gateway_tokens.as_ref().expect("gw")).expect("gw");
    let token = gw
        .mint(&crate::tokens::MintRequest {
            subject: "svc".into(),
            tenant: Some("t1".into()),
            roles: vec!["ops".into()],
            scopes: vec!["a".into(), "b".into()],
            ttl: Duration::from_secs(60),
        })
        .expect("mint");
    match check(&auth, &token).await {
        Ok(Verified::Gateway { principal, source, .. }) => {
            assert_eq!(principal.subject, "svc");
            assert_eq!(principal.tenant.as_deref(), Some("t1"));
            assert_eq!(principal.scopes, vec!["a", "b"]);
            assert_eq!(source, TokenSource::AuthorizationHeader);
        }
        other => panic!("{other:?}"),
    }
    // The same claims with an OIDC issuer are not accepted by anyone.
    let mut cfg = auth_cfg(vec![provider("idp", "http://127.0.0.1:9")]);
    cfg.providers[0].jwks.fetch_timeout_ms = 200;
    let with_idp = started(&cfg).expect("auth");
    let p = json!({"iss":"http://127.0.0.1:9","aud":AUD,"sub":"x","exp":now_unix()+60,"jti":"j"}).to_string();
    let t = hs256(r#"{"alg":"HS256","kid":"v1"}"#, &p, GW_KEY.as_bytes());
    let r = check(&with_idp, &t).await;
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test]
async fn classes_and_credential_conflicts() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    let token = sign(&claims(&idp.issuer), &ec);
    let mut h = HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("hv"));
    // Unauthenticated ignores even garbage.
    assert!(matches!(auth.authenticate(AuthClass::Unauthenticated, &bearer("garbage")).await, Ok(Verified::Anonymous)));
    // Dual auth: bearer when no sandbox secret is presented.
    let p = auth.extract(&h, &Uri::from_static("/"), false);
    assert!(matches!(auth.authenticate(AuthClass::DualAuth, &p).await, Ok(Verified::Oidc { .. })));
    // Dual auth with a wrong sandbox secret: no fallback to the (valid) bearer.
    h.insert("x-sandbox-secret", HeaderValue::from_static("wrong"));
    let p = auth.extract(&h, &Uri::from_static("/"), false);
    let r = auth.authenticate(AuthClass::DualAuth, &p).await;
    assert_eq!(r.err().map(|e| e.reason()), Some("sandbox_secret_mismatch"));
    h.insert("x-sandbox-secret", HeaderValue::from_static(SANDBOX));
    let p = auth.extract(&h, &Uri::from_static("/"), false);
    assert!(matches!(auth.authenticate(AuthClass::DualAuth, &p).await, Ok(Verified::SandboxSecret)));
    // Sandbox-secret class ignores the bearer; bearer class ignores the secret.
    assert!(matches!(auth.authenticate(AuthClass::SandboxSecret, &p).await, Ok(Verified::SandboxSecret)));
    assert!(matches!(auth.authenticate(AuthClass::Bearer, &p).await, Ok(Verified::Oidc { .. })));
    // Two places → invalid_request.
    let uri: Uri = format!("/x?access_token={token}").parse().expect("uri");
    let p = auth.extract(&h, &uri, true);
    let r = auth.authenticate(AuthClass::Bearer, &p).await;
    assert_eq!(r.err().map(|e| e.kind()), Some(AuthFailureKind::InvalidRequest));
    // Two Authorization headers → invalid_request.
    let mut h2 = HeaderMap::new();
    h2.append(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("hv"));
    h2.append(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("hv"));
    let r = auth.authenticate(AuthClass::Bearer, &auth.extract(&h2, &Uri::from_static("/"), false)).await;
    assert_eq!(r.err().map(|e| e.kind()), Some(AuthFailureKind::InvalidRequest));
    // Nothing → Missing.
    let r = auth.authenticate(AuthClass::Bearer, &Presented::default()).await;
    assert_eq!(r.err().map(|e| e.kind()), Some(AuthFailureKind::Missing));
    let r = auth.authenticate(AuthClass::SandboxSecret, &Presented::default()).await;
    assert_eq!(r.err().map(|e| e.kind()), Some(AuthFailureKind::Missing));
}

/// Checklist 25: a token signed with a brand-new key is accepted after one refetch;
/// tokens of a removed key are no longer served from the cache.
#[tokio::test]
async fn checklist_25_rotation_refetch_and_cache_invalidation() {
    let (old, new) = (ec_key("old"), ed_key("new"));
    let (idp, auth) = setup(&[&old]).await;
    let old_token = sign(&claims(&idp.issuer), &old);
    assert!(check(&auth, &old_token).await.is_ok());
    idp.set_keys(&[&new]);
    let hits = idp.jwks_hits();
    let new_token = sign(&claims(&idp.issuer), &new);
    assert!(check(&auth, &new_token).await.is_ok(), "accepted after refetch");
    assert_eq!(idp.jwks_hits(), hits + 1, "exactly one refetch");
    assert!(check(&auth, &new_token).await.is_ok());
    assert_eq!(idp.jwks_hits(), hits + 1, "no more fetches once known");
    // The old key is gone: its cached token is not served any more.
    let r = check(&auth, &old_token).await;
    assert_eq!(r.err().map(|e| e.reason()), Some("unknown_kid"));
}

/// Checklist 24: random `kid`s at a high rate: single-flight, at most one fetch per cooldown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checklist_24_unknown_kids_single_flight_and_cooldown() {
    let ec = ec_key("ec-1");
    let idp = Idp::start(&[&ec]).await;
    let mut p = provider("idp", &idp.issuer);
    p.jwks.cooldown_seconds = 60;
    let auth = started(&auth_cfg(vec![p])).expect("auth");
    ready(&auth).await;
    idp.state.jwks_delay_ms.store(200, Ordering::SeqCst);
    let hits = idp.jwks_hits();
    let payload = claims(&idp.issuer).to_string();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let auth = auth.clone();
            let t = sign_raw(&format!(r#"{{"alg":"ES256","kid":"random-{i}"}}"#), &payload, &ec);
            tokio::spawn(async move { check(&auth, &t).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.expect("join");
        assert_eq!(r.err().map(|e| e.reason()), Some("unknown_kid"));
    }
    assert_eq!(idp.jwks_hits(), hits + 1, "one fetch for 50 concurrent unknown kids");
    // Within the cooldown: no fetch at all, and no waiting for one.
    let start = Instant::now();
    for i in 0..50 {
        let t = sign_raw(&format!(r#"{{"alg":"ES256","kid":"later-{i}"}}"#), &payload, &ec);
        assert!(check(&auth, &t).await.is_err());
    }
    assert_eq!(idp.jwks_hits(), hits + 1, "cooldown honoured");
    assert!(start.elapsed() < Duration::from_millis(150));
    // Known keys keep working meanwhile.
    assert!(check(&auth, &sign(&claims(&idp.issuer), &ec)).await.is_ok());
}

/// Checklist 21 and 27: JWKS unreachable at start: 503 for that provider, readiness false;
/// other providers, gateway tokens and the sandbox secret keep working.
#[tokio::test]
async fn checklist_21_27_unreachable_jwks_fails_closed_without_stalling_others() {
    let ec = ec_key("ec-1");
    let good = Idp::start(&[&ec]).await;
    // A port with nothing listening.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let mut down = provider("down", &dead);
    down.jwks.fetch_timeout_ms = 300;
    let auth = started(&auth_cfg(vec![provider("good", &good.issuer), down])).expect("auth");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !auth.readiness().iter().any(|s| s.name == "good" && s.has_keys)
        || !auth.readiness().iter().any(|s| s.name == "down" && s.last_refresh_error.is_some())
    {
        assert!(Instant::now() < deadline, "{:?}", auth.readiness());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!auth.ready());
    let s = auth.readiness();
    let down_status = s.iter().find(|s| s.name == "down").expect("down");
    assert!(!down_status.has_keys && down_status.key_count == 0);
    let r = check(&auth, &sign(&claims(&dead), &ec)).await;
    assert_eq!(r.as_ref().err().map(|e| e.kind()), Some(AuthFailureKind::Unavailable), "{r:?}");
    // Several bad tokens at once while fetches fail: no crash, typed errors.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let auth = auth.clone();
            let t = sign(&claims(&dead), &ec);
            tokio::spawn(async move { check(&auth, &t).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.expect("join").is_err());
    }
    let start = Instant::now();
    assert!(check(&auth, &sign(&claims(&good.issuer), &ec)).await.is_ok());
    assert!(start.elapsed() < Duration::from_millis(250), "good provider not stalled");
}

/// Checklist 22 and 23: after a warm start, 500 / HTML / empty / oversized answers keep the
/// last good keys; past the maximum staleness the provider fails closed.
#[tokio::test]
async fn checklist_22_23_bad_answers_keep_last_good_keys_until_max_staleness() {
    let ec = ec_key("ec-1");
    let idp = Idp::start(&[&ec]).await;
    let mut p = provider("idp", &idp.issuer);
    p.jwks.max_staleness_seconds = 2;
    p.jwks.max_body_bytes = 4096;
    let auth = started(&auth_cfg(vec![p])).expect("auth");
    ready(&auth).await;
    let warm = Instant::now();
    let payload = claims(&idp.issuer).to_string();
    let huge = format!(r#"{{"keys":[{}], "pad":"{}"}}"#, ec.jwk, "x".repeat(10 * 1024));
    for (i, (status, body)) in [
        (500, "oops".to_owned()),
        (200, "<html>login</html>".to_owned()),
        (200, r#"{"keys":[]}"#.to_owned()),
        (200, "{".to_owned()),
        (200, huge),
    ]
    .into_iter()
    .enumerate()
    {
        idp.set_override(Some((status, body)));
        // An unknown kid forces a fetch (cooldown 0 here).
        let t = sign_raw(&format!(r#"{{"alg":"ES256","kid":"probe-{i}"}}"#), &payload, &ec);
        assert!(check(&auth, &t).await.is_err());
        let st = &auth.readiness()[0];
        assert!(st.has_keys && st.last_refresh_error.is_some(), "case {i}: {st:?}");
        assert!(check(&auth, &sign(&claims(&idp.issuer), &ec)).await.is_ok(), "case {i}");
    }
    // Past the maximum staleness, even the cached token is refused with 503.
    let cached = sign(&claims(&idp.issuer), &ec);
    assert!(check(&auth, &cached).await.is_ok());
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(warm.elapsed()) + Duration::from_millis(200)).await;
    assert!(!auth.ready());
    let r = check(&auth, &cached).await;
    assert_eq!(r.err().map(|e| e.kind()), Some(AuthFailureKind::Unavailable));
    // Recovery.
    idp.set_override(None);
    assert!(check(&auth, &cached).await.is_ok());
    assert!(auth.ready());
}

#[tokio::test]
async fn discovery_with_mismatched_issuer_loads_no_keys() {
    let ec = ec_key("ec-1");
    let idp = Idp::start(&[&ec]).await;
    *idp.state.discovery_issuer.lock().expect("lock") = Some(format!("{}/", idp.issuer));
    let mut p = provider("idp", &idp.issuer);
    p.jwks.fetch_timeout_ms = 500;
    let auth = started(&auth_cfg(vec![p])).expect("auth");
    let r = check(&auth, &sign(&claims(&idp.issuer), &ec)).await;
    assert_eq!(r.err().map(|e| e.kind()), Some(AuthFailureKind::Unavailable));
    assert_eq!(idp.jwks_hits(), 0);
    assert!(auth.readiness()[0].last_refresh_error.as_deref().is_some_and(|e| e.contains("issuer")));
}

/// Checklist 28: `exp` just inside/outside leeway, `nbf`/`iat` in the future, lifetime over the maximum.
#[tokio::test]
async fn checklist_28_time_rules_with_leeway() {
    let ec = ec_key("ec-1");
    let idp = Idp::start(&[&ec]).await;
    let mut cfg = auth_cfg(vec![provider("idp", &idp.issuer)]);
    cfg.leeway_seconds = 30;
    cfg.max_token_lifetime_seconds = 3600;
    let auth = started(&cfg).expect("auth");
    ready(&auth).await;
    let now = now_unix();
    let tok = |exp: i64, nbf: Option<i64>, iat: Option<i64>| {
        let mut c = json!({"iss": idp.issuer, "aud": AUD, "sub": "u", "exp": exp});
        if let Some(n) = nbf {
            c["nbf"] = n.into();
        }
        if let Some(i) = iat {
            c["iat"] = i.into();
        }
        sign(&c, &ec)
    };
    assert!(check(&auth, &tok(now - 20, None, None)).await.is_ok(), "inside leeway");
    assert_eq!(check(&auth, &tok(now - 40, None, None)).await.err().map(|e| e.reason()), Some("expired"));
    assert_eq!(
        check(&auth, &tok(now + 60, Some(now + 45), None)).await.err().map(|e| e.reason()),
        Some("not_yet_valid")
    );
    assert!(check(&auth, &tok(now + 60, Some(now + 15), None)).await.is_ok());
    assert_eq!(
        check(&auth, &tok(now + 60, None, Some(now + 45))).await.err().map(|e| e.reason()),
        Some("issued_in_future")
    );
    assert_eq!(
        check(&auth, &tok(now + 7200, None, Some(now))).await.err().map(|e| e.reason()),
        Some("lifetime_too_long")
    );
    assert_eq!(check(&auth, &tok(now + 7200, None, None)).await.err().map(|e| e.reason()), Some("lifetime_too_long"));
}

#[test]
fn errors_map_to_three_outcomes_and_never_show_tokens() {
    let e = AuthError::InvalidToken(TokenRejection::Malformed(JwtError::Segments));
    assert_eq!(e.kind(), AuthFailureKind::InvalidToken);
    assert_eq!(AuthError::Missing.kind(), AuthFailureKind::Missing);
    assert_eq!(AuthError::InvalidRequest("x").kind(), AuthFailureKind::InvalidRequest);
    assert_eq!(AuthError::Unavailable { provider: "p".into() }.kind(), AuthFailureKind::Unavailable);
    let v = VerifiedToken::new(r#"{"secret":"claim"}"#.into(), "s".into(), 1, "i".into());
    assert!(!format!("{v:?}").contains("claim\""));
}

#[test]
fn new_without_runtime_is_refused_only_when_providers_exist() {
    assert!(started(&auth_cfg(vec![])).is_ok());
    assert!(matches!(started(&auth_cfg(vec![provider("p", "https://idp.example")])), Err(AuthError::Config(_))));
}

#[tokio::test]
async fn token_without_kid_uses_the_only_key_else_rejected() {
    let (a, b) = (ec_key("a"), ed_key("b"));
    let (idp, auth) = setup(&[&a]).await;
    let payload = claims(&idp.issuer).to_string();
    assert!(check(&auth, &sign_raw(r#"{"alg":"ES256"}"#, &payload, &a)).await.is_ok());
    idp.set_keys(&[&a, &b]);
    // Force the new two-key set in through an unknown kid (cooldown 0 here).
    let probe = sign_raw(r#"{"alg":"ES256","kid":"probe"}"#, &payload, &a);
    assert!(check(&auth, &probe).await.is_err());
    assert_eq!(auth.readiness()[0].key_count, 2);
    let r = check(&auth, &sign_raw(r#"{"alg":"ES256","typ":"JWT"}"#, &payload, &a)).await;
    assert_eq!(r.err().map(|e| e.reason()), Some("missing_kid"));
}

#[test]
fn authenticator_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Authenticator>();
    assert_traits::<Presented>();
    assert_traits::<Verified>();
}

/// An authenticator with its background work (JWKS refresh, key watch)
/// started, as the gateway starts it.
fn started(cfg: &AuthConfig) -> Result<Authenticator, AuthError> {
    let auth = Authenticator::new(cfg)?;
    auth.start(&Tasks::new())?;
    Ok(auth)
}

/// `wasmgate_jwks_fetches_total{provider,result}` counts each fetch with
/// its failure's kind; the key count and last-success time follow the last
/// good set. (Metrics are process-wide: these providers' names are unique.)
#[tokio::test]
async fn jwks_fetches_are_counted_by_provider_and_result() {
    let ec = ec_key("ec-1");
    let idp = Idp::start(&[&ec]).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let mut p = provider("metrics-idp", &idp.issuer);
    p.jwks.max_body_bytes = 4096;
    let mut down = provider("metrics-dead", &dead);
    down.jwks.fetch_timeout_ms = 300;
    let auth = started(&auth_cfg(vec![p, down])).expect("auth");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !auth.readiness().iter().any(|s| s.name == "metrics-idp" && s.has_keys)
        || !auth.readiness().iter().any(|s| s.name == "metrics-dead" && s.last_refresh_error.is_some())
    {
        assert!(Instant::now() < deadline, "{:?}", auth.readiness());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let payload = claims(&idp.issuer).to_string();
    let huge = format!(r#"{{"keys":[{}], "pad":"{}"}}"#, ec.jwk, "x".repeat(10 * 1024));
    for (i, (status, body)) in [
        (500, "oops".to_owned()),
        (200, "<html>login</html>".to_owned()),
        (200, r#"{"keys":[]}"#.to_owned()),
        (200, huge),
    ]
    .into_iter()
    .enumerate()
    {
        idp.set_override(Some((status, body)));
        let t = sign_raw(&format!(r#"{{"alg":"ES256","kid":"metrics-probe-{i}"}}"#), &payload, &ec);
        assert!(check(&auth, &t).await.is_err());
    }
    let text = crate::metrics::render();
    let count = |provider: &str, result: &str| {
        let line = format!("wasmgate_jwks_fetches_total{{provider=\"{provider}\",result=\"{result}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&line)).unwrap_or_else(|| panic!("no {line}in\n{text}")).to_owned()
    };
    assert_eq!(count("metrics-idp", "success"), "1");
    for result in ["status", "invalid", "no_usable_keys", "too_large"] {
        assert_eq!(count("metrics-idp", result), "1", "{result}");
    }
    assert_ne!(count("metrics-dead", "transport"), "0");
    assert!(text.contains("wasmgate_jwks_keys{provider=\"metrics-idp\"} 1\n"), "{text}");
    assert!(!text.contains("wasmgate_jwks_keys{provider=\"metrics-dead\"}"), "no key set fetched: {text}");
    assert!(text.contains("wasmgate_jwks_last_success_timestamp_seconds{provider=\"metrics-idp\"} "), "{text}");
}
