//! JWT verification cost: cold verification (bypassing the verified-token
//! cache) of RS256, ES256 and EdDSA OIDC tokens and HS256 gateway tokens
//! (inline keys; keys from a folder with 10 000 revoked jtis), and a cache hit.
//!
//! `cold_vs_raw` sets the whole cold path of a distinct RS256 (ES256) token
//! beside the bare aws-lc signature check of the same bytes, and prints
//! their ratio (the goal of issue 13: at most 1.15 for RS256).
//!
//! A JWKS server runs on 127.0.0.1 inside the benchmark; keys are generated
//! at start.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wasmgate::auth::{Authenticator, Verified};
use wasmgate::config::{AuthConfig, GatewayTokensConfig, JwksConfig, ProviderConfig, SecretSource};
use wasmgate::identity::AuthClass;
use wasmgate::tokens::{GatewayTokens, MintRequest};

/// PKCS#8 → PKCS#1 `RSAPrivateKey` (jsonwebtoken's aws-lc backend signs with PKCS#1).
fn pkcs8_to_pkcs1(der: &[u8]) -> Vec<u8> {
    fn tlv(b: &[u8]) -> (&[u8], &[u8]) {
        let (len, hdr) = if b[1] < 0x80 {
            (b[1] as usize, 2)
        } else {
            let n = (b[1] & 0x7f) as usize;
            (b[2..2 + n].iter().fold(0usize, |a, &x| (a << 8) | x as usize), 2 + n)
        };
        (&b[hdr..hdr + len], &b[hdr + len..])
    }
    let (seq, _) = tlv(der);
    let (_, rest) = tlv(seq);
    let (_, rest) = tlv(rest);
    tlv(rest).0.to_vec()
}

struct Key {
    kid: &'static str,
    alg: Algorithm,
    enc: EncodingKey,
    jwk: Value,
    /// What aws-lc verifies with: PKCS#1 `RSAPublicKey` DER, an uncompressed
    /// EC point, or the Ed25519 key.
    public: Vec<u8>,
}

fn keys() -> Vec<Key> {
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let rsa_pub = rsa.public_key();
    let ec_doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("ec");
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_doc.as_ref()).expect("ec");
    let pt = ec.public_key().as_ref();
    let ed_doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed");
    let ed = Ed25519KeyPair::from_pkcs8(ed_doc.as_ref()).expect("ed");
    vec![
        Key {
            kid: "rsa",
            alg: Algorithm::RS256,
            enc: EncodingKey::from_rsa_der(&pkcs8_to_pkcs1(rsa.as_der().expect("der").as_ref())),
            jwk: json!({"kty":"RSA","kid":"rsa","alg":"RS256",
                "n": B64.encode(rsa_pub.modulus().big_endian_without_leading_zero()),
                "e": B64.encode(rsa_pub.exponent().big_endian_without_leading_zero())}),
            public: rsa_pub.as_ref().to_vec(),
        },
        Key {
            kid: "ec",
            alg: Algorithm::ES256,
            enc: EncodingKey::from_ec_der(ec_doc.as_ref()),
            jwk: json!({"kty":"EC","crv":"P-256","kid":"ec","x":B64.encode(&pt[1..33]),"y":B64.encode(&pt[33..65])}),
            public: pt.to_vec(),
        },
        Key {
            kid: "ed",
            alg: Algorithm::EdDSA,
            enc: EncodingKey::from_ed_der(ed_doc.as_ref()),
            jwk: json!({"kty":"OKP","crv":"Ed25519","kid":"ed","x":B64.encode(ed.public_key().as_ref())}),
            public: ed.public_key().as_ref().to_vec(),
        },
    ]
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let keys = keys();
    let jwks = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    let issuer = rt.block_on(async move {
        let app = axum::Router::new().route("/jwks", axum::routing::get(move || async move { axum::Json(jwks) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        issuer
    });
    let gateway = GatewayTokensConfig::inline(
        "v1",
        BTreeMap::from([("v1".to_owned(), SecretSource::Value("benchmark-gateway-key-0123456789abcdef".into()))]),
    );
    let cfg = AuthConfig {
        providers: vec![ProviderConfig {
            name: "bench".into(),
            issuer: issuer.clone(),
            audiences: vec!["api".into()],
            algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            jwks_url: Some(format!("{issuer}/jwks")),
            required_typ: None,
            jwks: JwksConfig::default(),
            claims_mapper: None,
            tenants: None,
        }],
        gateway_tokens: Some(gateway.clone()),
        ..AuthConfig::default()
    };
    let auth = rt.block_on(async {
        let auth = Authenticator::new(&cfg).expect("authenticator");
        auth.start(&wasmgate::tasks::Tasks::new()).expect("start");
        while !auth.ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        auth
    });
    let claims = json!({"iss": issuer, "aud": "api", "sub": "user-1", "iat": now(), "exp": now() + 3600,
        "scope": "sandbox:read sandbox:write", "email": "user@example.com", "groups": ["a", "b"]});

    let mut group = c.benchmark_group("verify_cold");
    for k in &keys {
        let mut h = Header::new(k.alg);
        h.kid = Some(k.kid.into());
        let token = jsonwebtoken::encode(&h, &claims, &k.enc).expect("sign");
        group.bench_function(format!("{:?}", k.alg), |b| {
            b.iter(|| {
                let r = futures::executor::block_on(auth.verify_bearer_uncached(&token));
                assert!(matches!(r, Ok(Verified::Oidc { .. })));
            })
        });
    }
    let gw = GatewayTokens::new(&gateway).expect("gateway tokens");
    let gw_token = gw
        .mint(&MintRequest {
            subject: "svc".into(),
            tenant: Some("t".into()),
            roles: vec!["r".into()],
            scopes: vec!["s".into()],
            ttl: Duration::from_secs(3600),
        })
        .expect("mint");
    group.bench_function("HS256 gateway", |b| {
        b.iter(|| {
            let r = futures::executor::block_on(auth.verify_bearer_uncached(&gw_token));
            assert!(matches!(r, Ok(Verified::Gateway { .. })));
        })
    });
    // Keys from a folder and 10 000 revoked jtis: the revocation check on
    // the verification path.
    let dir = tempfile::tempdir().expect("tempdir");
    let keys_dir = dir.path().join("keys");
    std::fs::create_dir(&keys_dir).expect("mkdir");
    std::fs::write(keys_dir.join("active"), "v1").expect("write");
    std::fs::write(keys_dir.join("v1"), "benchmark-gateway-key-0123456789abcdef").expect("write");
    let revoked = dir.path().join("revoked");
    let list: String = (0..10_000).map(|i| format!("{i:032x} 4102444800\n")).collect();
    std::fs::write(&revoked, list).expect("write");
    let folder_cfg = AuthConfig {
        gateway_tokens: Some(GatewayTokensConfig::from_dir(keys_dir, Some(revoked))),
        ..AuthConfig::default()
    };
    let folder_auth = rt.block_on(async {
        let auth = Authenticator::new(&folder_cfg).expect("authenticator");
        auth.start(&wasmgate::tasks::Tasks::new()).expect("start");
        auth
    });
    group.bench_function("HS256 gateway, 10k revoked", |b| {
        b.iter(|| {
            let r = futures::executor::block_on(folder_auth.verify_bearer_uncached(&gw_token));
            assert!(matches!(r, Ok(Verified::Gateway { .. })));
        })
    });
    group.finish();

    cold_vs_raw(c, &auth, &keys, &claims);

    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec".into());
    let token = jsonwebtoken::encode(&h, &claims, &keys[1].enc).expect("sign");
    let mut headers = http::HeaderMap::new();
    headers
        .insert(http::header::AUTHORIZATION, http::HeaderValue::from_str(&format!("Bearer {token}")).expect("header"));
    let presented = auth.extract(&headers, &http::Uri::from_static("/"), false);
    assert!(rt.block_on(auth.authenticate(AuthClass::Bearer, &presented)).is_ok());
    c.bench_function("cache_hit/authenticate", |b| {
        b.iter(|| {
            // The future completes without yielding: poll it directly.
            let r = futures::executor::block_on(auth.authenticate(AuthClass::Bearer, &presented));
            assert!(matches!(r, Ok(Verified::Oidc { .. })));
        })
    });
    // A repeated gateway token: served from the verified-token cache after
    // its key version and jti are checked against the live sets.
    let mut gw_headers = http::HeaderMap::new();
    gw_headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&format!("Bearer {gw_token}")).expect("header"),
    );
    let gw_presented = folder_auth.extract(&gw_headers, &http::Uri::from_static("/"), false);
    assert!(rt.block_on(folder_auth.authenticate(AuthClass::Bearer, &gw_presented)).is_ok());
    c.bench_function("cache_hit/authenticate gateway token, 10k revoked", |b| {
        b.iter(|| {
            let r = futures::executor::block_on(folder_auth.authenticate(AuthClass::Bearer, &gw_presented));
            assert!(matches!(r, Ok(Verified::Gateway { .. })));
        })
    });
    c.bench_function("extract/authorization", |b| {
        b.iter(|| auth.extract(&headers, &http::Uri::from_static("/"), false))
    });
}

/// Distinct tokens for the cold path: each iteration takes the next one,
/// so nothing about one token can be reused for the next.
const DISTINCT: usize = 256;

/// `header.payload` and the decoded signature of a compact JWS.
fn signed_parts(token: &str) -> (Vec<u8>, Vec<u8>) {
    let (input, sig) = token.rsplit_once('.').expect("three segments");
    (input.as_bytes().to_vec(), B64.decode(sig).expect("signature"))
}

/// The cold path of distinct RS256 and ES256 tokens through the verifier
/// the server uses (pre-parse, kid lookup, decode, signature, claims, with
/// the verified-token cache bypassed) beside aws-lc alone on the same bytes:
/// with the key parsed on every call (`UnparsedPublicKey`) and parsed once
/// (`ParsedPublicKey`).
fn cold_vs_raw(c: &mut Criterion, auth: &Authenticator, keys: &[Key], claims: &Value) {
    let mut group = c.benchmark_group("cold_vs_raw");
    for key in keys.iter().filter(|k| matches!(k.alg, Algorithm::RS256 | Algorithm::ES256)) {
        let name = format!("{:?}", key.alg);
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.into());
        let tokens: Vec<String> = (0..DISTINCT)
            .map(|i| {
                let mut claims = claims.clone();
                claims["jti"] = format!("{i:032x}").into();
                jsonwebtoken::encode(&header, &claims, &key.enc).expect("sign")
            })
            .collect();
        let parts: Vec<_> = tokens.iter().map(|t| signed_parts(t)).collect();
        let (unparsed, parsed) = match key.alg {
            Algorithm::RS256 => {
                let n = key.jwk["n"].as_str().and_then(|n| B64.decode(n).ok()).expect("n");
                let e = key.jwk["e"].as_str().and_then(|e| B64.decode(e).ok()).expect("e");
                let parsed = RsaPublicKeyComponents { n: &n, e: &e }
                    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                    .expect("rsa key");
                (UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public.clone()), parsed)
            }
            _ => (
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public.clone()),
                ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.public).expect("ec key"),
            ),
        };
        let ours = cycle(&tokens, |t| {
            let r = futures::executor::block_on(auth.verify_bearer_uncached(t));
            assert!(matches!(r, Ok(Verified::Oidc { .. })));
        });
        let raw_unparsed = cycle(&parts, |(m, s)| unparsed.verify(m, s).expect("verify"));
        let raw_parsed = cycle(&parts, |(m, s)| parsed.verify_sig(m, s).expect("verify"));
        group.bench_function(format!("{name} wasmgate cold"), |b| b.iter(&ours));
        group.bench_function(format!("{name} aws-lc UnparsedPublicKey"), |b| b.iter(&raw_unparsed));
        group.bench_function(format!("{name} aws-lc ParsedPublicKey"), |b| b.iter(&raw_parsed));
        let (o, u, p) = (median_ns(&ours), median_ns(&raw_unparsed), median_ns(&raw_parsed));
        println!(
            "cold_vs_raw/{name}: wasmgate {o:.0} ns, aws-lc unparsed {u:.0} ns, parsed {p:.0} ns: \
             ratio {:.3} (vs unparsed), {:.3} (vs parsed)",
            o / u,
            o / p
        );
    }
    group.finish();
}

/// A closure that handles the next item of `items` at each call.
fn cycle<'a, T>(items: &'a [T], f: impl Fn(&'a T) + 'a) -> impl Fn() + 'a {
    let next = std::cell::Cell::new(0usize);
    move || {
        let i = next.get();
        next.set((i + 1) % items.len());
        f(&items[i]);
    }
}

/// Median time of one call over 41 batches of `DISTINCT` calls (a rough
/// figure next to criterion's, for the printed ratio).
fn median_ns(f: &impl Fn()) -> f64 {
    let mut batches: Vec<f64> = (0..41)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..DISTINCT {
                f();
            }
            start.elapsed().as_nanos() as f64 / DISTINCT as f64
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}

criterion_group!(benches, bench);
criterion_main!(benches);
