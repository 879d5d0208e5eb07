//! The token cache: one entry per token, bounded in bytes, and never
//! serving an entry past `exp`, after its key left the key set (or changed
//! material), or after a gateway token's `jti` was revoked; the entry the
//! pipeline keeps the mapped principal in is the one `authenticate` found.

use std::path::Path;

use super::*;
use crate::tokens::{GatewayTokens, MintRequest};

fn oidc_token(v: Result<Verified, AuthError>, what: &str) -> Arc<VerifiedToken> {
    match v {
        Ok(Verified::Oidc { token, .. }) => token,
        other => panic!("{what}: {other:?}"),
    }
}

#[tokio::test]
async fn a_cached_token_is_never_served_past_its_exp() {
    let ec = ec_key("ec-1");
    let idp = Idp::start(&[&ec]).await;
    let mut cfg = auth_cfg(vec![provider("idp", &idp.issuer)]);
    cfg.leeway_seconds = 0;
    let auth = started(&cfg).expect("auth");
    ready(&auth).await;
    let exp = now_unix() + 2;
    let token = sign(&json!({"iss": idp.issuer, "aud": AUD, "sub": "u", "exp": exp}), &ec);
    let first = oidc_token(check(&auth, &token).await, "fresh token");
    let again = oidc_token(check(&auth, &token).await, "cached token");
    assert!(Arc::ptr_eq(&first, &again), "the second call is a cache hit");
    // The entry's moka expiry is a second later than `exp`: the cache's own
    // check must refuse it meanwhile.
    while now_unix() <= exp {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(check(&auth, &token).await.err().map(|e| e.reason()), Some("expired"));
}

/// The same `kid` with new key material (a provider re-keying in place):
/// tokens cached under the old material are not served any more.
#[tokio::test]
async fn a_cached_token_is_dropped_when_its_kid_changes_key_material() {
    let (old, same_kid_new_key, other) = (ec_key("k"), ec_key("k"), ed_key("other"));
    let (idp, auth) = setup(&[&old]).await;
    let token = sign(&claims(&idp.issuer), &old);
    let first = oidc_token(check(&auth, &token).await, "fresh token");
    assert!(Arc::ptr_eq(&first, &oidc_token(check(&auth, &token).await, "cached")));
    idp.set_keys(&[&same_kid_new_key, &other]);
    // A token of an unknown kid makes the provider refetch its keys.
    assert!(check(&auth, &sign(&claims(&idp.issuer), &other)).await.is_ok(), "refetched");
    assert_invalid(&check(&auth, &token).await, "cached token of replaced key material");
    // And a token of the new material under the same kid verifies.
    assert!(check(&auth, &sign(&claims(&idp.issuer), &same_kid_new_key)).await.is_ok());
}

fn mint(gw: &GatewayTokens, subject: &str) -> (String, String) {
    let token = gw
        .mint(&MintRequest {
            subject: subject.into(),
            tenant: None,
            roles: vec![],
            scopes: vec!["a".into()],
            ttl: Duration::from_secs(600),
        })
        .expect("mint");
    let jti = jose::parse(&token).expect("parse").claims["jti"].as_str().expect("jti").to_owned();
    (token, jti)
}

fn reload(auth: &Authenticator, gw: &GatewayTokens) {
    auth.inner.gateway.as_ref().expect("gateway tokens").reload().expect("reload");
    gw.reload().expect("reload minter");
}

fn gateway_in(dir: &Path) -> (Authenticator, GatewayTokens, std::path::PathBuf) {
    let (keys, revoked) = (dir.join("keys"), dir.join("revoked"));
    crate::tokens::files::rotate(&keys, None).expect("first key");
    std::fs::write(&revoked, "# none\n").expect("revoked file");
    let mut cfg = auth_cfg(vec![]);
    cfg.gateway_tokens = Some(GatewayTokensConfig::from_dir(keys.clone(), Some(revoked.clone())));
    let auth = Authenticator::new(&cfg).expect("auth");
    let gw = GatewayTokens::new(cfg.gateway_tokens.as_ref().expect("gw")).expect("minter");
    (auth, gw, keys)
}

#[tokio::test]
async fn a_cached_gateway_token_is_refused_once_its_key_version_is_retired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (auth, gw, keys) = gateway_in(dir.path());
    let (token, _) = mint(&gw, "svc");
    assert!(check(&auth, &token).await.is_ok());
    assert!(check(&auth, &token).await.is_ok(), "served from the cache");
    crate::tokens::files::rotate(&keys, None).expect("rotate");
    reload(&auth, &gw);
    assert!(check(&auth, &token).await.is_ok(), "the old version verifies until retired");
    crate::tokens::files::retire(&keys, "v1").expect("retire");
    reload(&auth, &gw);
    assert!(check(&auth, &token).await.is_err(), "a retired version's cached token is refused");
    let (fresh, _) = mint(&gw, "svc");
    assert!(check(&auth, &fresh).await.is_ok(), "the active version still verifies");
}

#[tokio::test]
async fn a_cached_gateway_token_is_refused_once_its_jti_is_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (auth, gw, _) = gateway_in(dir.path());
    let (token, jti) = mint(&gw, "svc");
    let (other, _) = mint(&gw, "svc");
    assert!(check(&auth, &token).await.is_ok());
    assert!(check(&auth, &token).await.is_ok(), "served from the cache");
    assert!(check(&auth, &other).await.is_ok());
    crate::tokens::files::revoke(&dir.path().join("revoked"), &jti, None, now_unix(), 30).expect("revoke");
    reload(&auth, &gw);
    assert!(check(&auth, &token).await.is_err(), "a revoked jti's cached token is refused");
    assert!(check(&auth, &token).await.is_err(), "and stays refused");
    assert!(check(&auth, &other).await.is_ok(), "other tokens are unaffected");
}

/// Many distinct tokens: the cache's weight stays under its byte bound by
/// evicting, and a token evicted still verifies (the bound never rejects).
#[tokio::test]
async fn the_cache_is_bounded_in_bytes() {
    let ec = ec_key("ec-1");
    let idp = Idp::start(&[&ec]).await;
    let mut cfg = auth_cfg(vec![provider("idp", &idp.issuer)]);
    let bound = 64 * 1024;
    cfg.token_cache.max_bytes = bound;
    let auth = started(&cfg).expect("auth");
    ready(&auth).await;
    let tokens: Vec<String> = (0..400)
        .map(|i| {
            let mut c = claims(&idp.issuer);
            c["sub"] = json!(format!("user-{i}"));
            sign(&c, &ec)
        })
        .collect();
    for t in &tokens {
        oidc_token(check(&auth, t).await, "distinct token");
    }
    auth.inner.cache.settle();
    let (entries, bytes) = auth.token_cache_usage();
    assert!(bytes <= bound, "{bytes} bytes cached over the bound {bound}");
    assert!(entries > 0 && entries < 400, "{entries} entries of 400 tokens");
    for t in &tokens {
        oidc_token(check(&auth, t).await, "verified again after eviction");
    }
}

#[tokio::test]
async fn a_zero_byte_bound_disables_the_cache() {
    let ec = ec_key("ec-1");
    let idp = Idp::start(&[&ec]).await;
    let mut cfg = auth_cfg(vec![provider("idp", &idp.issuer)]);
    cfg.token_cache.max_bytes = 0;
    let auth = started(&cfg).expect("auth");
    ready(&auth).await;
    let token = sign(&claims(&idp.issuer), &ec);
    let first = oidc_token(check(&auth, &token).await, "first");
    let second = oidc_token(check(&auth, &token).await, "second");
    assert!(!Arc::ptr_eq(&first, &second), "verified again, not cached");
    assert_eq!(auth.token_cache_usage(), (0, 0));
}

/// The principal the pipeline keeps in a token's entry comes back with the
/// next hit of that token (one entry, found once per request).
#[tokio::test]
async fn the_mapped_principal_rides_in_the_entry_authenticate_returns() {
    let ec = ec_key("ec-1");
    let (idp, auth) = setup(&[&ec]).await;
    let (a, b) = (
        sign(&claims(&idp.issuer), &ec),
        sign(&json!({"iss": idp.issuer, "aud": AUD, "sub": "b", "exp": now_unix() + 60}), &ec),
    );
    let first = oidc_token(check(&auth, &a).await, "a");
    first.remember_principal(7, Arc::new(Principal { subject: "mapped-a".into(), ..Principal::default() }));
    let hit = oidc_token(check(&auth, &a).await, "a again");
    assert_eq!(hit.mapped_principal(7).map(|p| p.subject.clone()).as_deref(), Some("mapped-a"));
    assert!(hit.mapped_principal(8).is_none(), "another generation maps again");
    let other = oidc_token(check(&auth, &b).await, "b");
    assert!(other.mapped_principal(7).is_none(), "another token has its own entry");
}

/// Weights follow the entry's size: a larger token weighs at least its
/// extra claims twice (the claims and the principal reserved for them).
#[test]
fn an_entry_weighs_its_claims_and_its_principal() {
    let body = json!({"keys": [ec_key("k").jwk]}).to_string();
    let keys = jwks::parse_jwks("idp", body.as_bytes(), &[Algorithm::ES256]).expect("jwks");
    let key = |kid: &str| keys.get(kid).expect("key").clone();
    let entry = |claims: usize| cache::Entry {
        kind: cache::Kind::Oidc {
            token: Arc::new(VerifiedToken::new("x".repeat(claims), "u".into(), 0, "i".into())),
            provider: 0,
            key: key("k"),
        },
        valid_until: 0,
    };
    let (small, large) = (VerifiedCache::weight_of(entry(100)), VerifiedCache::weight_of(entry(1100)));
    assert!(small as usize > 100 + 32, "{small}");
    assert!(large - small >= 2_000, "{small} → {large}");
    let gateway = |roles: usize| cache::Entry {
        kind: cache::Kind::Gateway {
            principal: Box::new(Principal {
                subject: "s".into(),
                roles: vec!["r".repeat(50); roles],
                ..Principal::default()
            }),
            expires_at: 0,
            kid: "v1".into(),
            jti: "j".into(),
        },
        valid_until: 0,
    };
    let (few, many) = (VerifiedCache::weight_of(gateway(1)), VerifiedCache::weight_of(gateway(11)));
    assert!(many - few >= 10 * 50, "{few} → {many}");
}
