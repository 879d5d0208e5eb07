#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::drivers::testing::{CountingDriver, TestServer, cache_config, driver_config, eventually, socket_path};

fn resolver(path: &std::path::Path, timeout_ms: u64, cache: &CredentialCacheConfig) -> CredentialResolver {
    let tasks = Tasks::new();
    let driver = Driver::new("credentials", &driver_config(path, timeout_ms));
    driver.start(&tasks);
    let resolver = CredentialResolver::new(driver, cache);
    resolver.start(&tasks);
    resolver
}

fn token(c: &ResolvedCredential) -> &str {
    std::str::from_utf8(c.token().expose()).unwrap()
}

#[test]
fn refresh_in_counts_down_to_skew_before_expiry() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let s = Duration::from_secs;
    assert_eq!(refresh_in(now, now + s(100), s(30)), s(70));
    assert_eq!(refresh_in(now, now + s(30), s(30)), Duration::ZERO);
    assert_eq!(refresh_in(now, now + s(10), s(30)), Duration::ZERO);
    assert_eq!(refresh_in(now, now - s(10), Duration::ZERO), Duration::ZERO);
    assert_eq!(refresh_in(now, SystemTime::UNIX_EPOCH, s(u64::MAX / 2)), Duration::ZERO);
    assert_eq!(refresh_in(now, now + s(5), Duration::ZERO), s(5));
}

#[test]
fn schedule_refreshes_ahead_within_half_the_usable_lifetime() {
    let cfg = CacheSettings::from(&cache_config(30_000, 60_000, 300_000));
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let s = Duration::from_secs;
    // One hour: stale 30 s before expiry, refresh 60 s before that.
    assert_eq!(schedule(t, Some(t + s(3600)), &cfg), (s(3570), s(3510)));
    // Two minutes: usable 90 s, refresh ahead capped at 45 s.
    assert_eq!(schedule(t, Some(t + s(120)), &cfg), (s(90), s(45)));
    // Shorter than the skew: never served from the cache.
    assert_eq!(schedule(t, Some(t + s(10)), &cfg), (Duration::ZERO, Duration::ZERO));
    // No expiry: the default TTL.
    assert_eq!(schedule(t, None, &cfg), (s(300), s(240)));
}

/// Checklist 37: N concurrent refreshes of one credential make one upstream call.
#[tokio::test]
async fn checklist_37_hundred_concurrent_misses_one_driver_call() {
    let (_dir, path) = socket_path();
    let driver = CountingDriver::new(&["github"], 3_600_000).with_delay(100);
    let _server = TestServer::serve(&path, driver.clone()).await;
    let r = resolver(&path, 2_000, &cache_config(30_000, 60_000, 300_000));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.resolve("github").await })
        })
        .collect();
    for t in tasks {
        assert_eq!(token(&t.await.unwrap().unwrap()), "token-1");
    }
    assert_eq!(driver.resolves(), 1);
    // Warm: still one call.
    assert_eq!(token(&r.resolve("github").await.unwrap()), "token-1");
    assert_eq!(driver.resolves(), 1);
}

/// Checklist 37: the waiters share a failed fetch too (no stampede on errors).
#[tokio::test]
async fn checklist_37_concurrent_misses_share_one_failure() {
    let (_dir, path) = socket_path();
    let driver = CountingDriver::new(&[], 0).with_delay(100);
    let _server = TestServer::serve(&path, driver.clone()).await;
    let r = resolver(&path, 2_000, &cache_config(30_000, 60_000, 300_000));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.resolve("nope").await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err(), CredentialError::UnknownCredential { name: "nope".into() });
    }
    assert_eq!(driver.resolves(), 1);
    assert!(r.inner.slots.read().unwrap().is_empty(), "no slot kept for an unknown name");
}

/// Checklist 40: socket missing → a fast typed error, no fallback; the
/// driver appearing later is picked up by the background reconnect.
#[tokio::test]
async fn checklist_40_missing_socket_fails_fast_then_reconnects_in_background() {
    let (_dir, path) = socket_path();
    let r = resolver(&path, 2_000, &cache_config(30_000, 60_000, 300_000));
    let started = Instant::now();
    let err = r.resolve("github").await.unwrap_err();
    assert!(matches!(err, CredentialError::Unavailable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500), "fails fast, not after the deadline");
    assert!(matches!(r.catalogue().await.unwrap_err(), CredentialError::Unavailable { .. }));
    assert!(!r.driver().is_ready());

    let driver = CountingDriver::new(&["github"], 3_600_000);
    let server = TestServer::serve(&path, driver.clone()).await;
    assert!(eventually(|| r.driver().is_ready()).await, "background reconnect");
    assert_eq!(token(&r.resolve("github").await.unwrap()), "token-1");

    // Down again: cached credentials keep being served until they go stale,
    // uncached ones fail with a typed error; back up: the same channel recovers.
    server.stop().await;
    assert_eq!(token(&r.resolve("github").await.unwrap()), "token-1");
    assert!(matches!(r.catalogue().await.unwrap_err(), CredentialError::Unavailable { .. }));
    let _server = TestServer::serve(&path, driver.clone()).await;
    assert!(eventually(|| r.driver().is_ready()).await);
    assert_eq!(r.catalogue().await.unwrap().len(), 1);
}

/// Checklist 40: a hung driver (accepts, never answers) hits the deadline.
#[tokio::test]
async fn checklist_40_hung_driver_hits_deadline() {
    let (_dir, path) = socket_path();
    let _hung = TestServer::hung(&path);
    let r = resolver(&path, 200, &cache_config(30_000, 60_000, 300_000));
    let started = Instant::now();
    let err = r.resolve("github").await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, CredentialError::DeadlineExceeded(Duration::from_millis(200)));
    assert!(took >= Duration::from_millis(190) && took < Duration::from_secs(1), "{took:?}");
    assert!(eventually(|| r.driver().readiness().last_error.is_some_and(|e| e.contains("timed out"))).await);
}

/// Checklist 40: a slow driver hits the deadline, nothing is cached, and no
/// fallback credential is served.
#[tokio::test]
async fn checklist_40_slow_driver_hits_deadline_without_fallback() {
    let (_dir, path) = socket_path();
    let driver = CountingDriver::new(&["github"], 3_600_000).with_delay(1_000);
    let _server = TestServer::serve(&path, driver.clone()).await;
    let r = resolver(&path, 200, &cache_config(30_000, 60_000, 300_000));
    let started = Instant::now();
    assert_eq!(r.resolve("github").await.unwrap_err(), CredentialError::DeadlineExceeded(Duration::from_millis(200)));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(r.inner.slots.read().unwrap().is_empty());
    // Faster again: resolves.
    driver.delay_ms.store(0, Ordering::SeqCst);
    assert!(r.resolve("github").await.is_ok());
}

#[tokio::test]
async fn refresh_ahead_serves_the_current_credential_while_one_refresh_runs() {
    let (_dir, path) = socket_path();
    // Lifetime 2 s, skew 200 ms: usable 1.8 s; refresh 900 ms ahead (capped at half).
    let driver = CountingDriver::new(&["github"], 2_000).with_delay(50);
    let _server = TestServer::serve(&path, driver.clone()).await;
    let r = resolver(&path, 2_000, &cache_config(200, 60_000, 300_000));
    let first = r.resolve("github").await.unwrap();
    assert_eq!(token(&first), "token-1");
    assert!(first.expires_at().is_some());
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for _ in 0..20 {
        assert_eq!(token(&r.resolve("github").await.unwrap()), "token-1", "served while refreshing");
    }
    let mut now = String::new();
    for _ in 0..100 {
        now = String::from_utf8_lossy(r.resolve("github").await.unwrap().token().expose()).into_owned();
        if now == "token-2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(now, "token-2");
    assert_eq!(driver.resolves(), 2, "one background refresh");
}

#[tokio::test]
async fn no_expiry_is_cached_for_the_default_ttl() {
    let (_dir, path) = socket_path();
    let driver = CountingDriver::new(&["github"], 0);
    let _server = TestServer::serve(&path, driver.clone()).await;
    let r = resolver(&path, 2_000, &cache_config(30_000, 0, 300));
    let c = r.resolve("github").await.unwrap();
    assert_eq!(c.expires_at(), None);
    for _ in 0..10 {
        r.resolve("github").await.unwrap();
    }
    assert_eq!(driver.resolves(), 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(token(&r.resolve("github").await.unwrap()), "token-2");
    assert_eq!(driver.resolves(), 2);
}

#[tokio::test]
async fn catalogue_is_cached_and_single_flight() {
    let (_dir, path) = socket_path();
    let driver = CountingDriver::new(&["a", "b"], 0).with_delay(50);
    let _server = TestServer::serve(&path, driver.clone()).await;
    let r = resolver(&path, 2_000, &cache_config(30_000, 60_000, 300_000)); // catalogue TTL 300 ms
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.catalogue().await })
        })
        .collect();
    for t in tasks {
        let c = t.await.unwrap().unwrap();
        assert_eq!(c[1], CredentialInfo { name: "b".into(), scopes: vec!["b.read".into()] });
    }
    assert_eq!(driver.lists(), 1);
    r.catalogue().await.unwrap();
    assert_eq!(driver.lists(), 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    r.catalogue().await.unwrap();
    assert_eq!(driver.lists(), 2);
}

#[test]
fn invalid_answers_are_refused() {
    let now = SystemTime::now();
    let ms = |t: SystemTime| unix_ms(t);
    let answer = |token: &str, ty: &str, exp: i64| ResolveCredentialResponse {
        token: token.into(),
        token_type: ty.into(),
        expires_at_ms: exp,
    };
    let later = ms(now) + 60_000;
    assert!(validate("a", answer("tok", "Bearer", later), now).is_ok());
    assert!(validate("a", answer("tok", "", 0), now).is_ok());
    for (a, why) in [
        (answer("", "Bearer", later), "empty"),
        (answer("to\r\nk", "Bearer", later), "CRLF"),
        (answer(&"x".repeat(MAX_TOKEN + 1), "Bearer", later), "too long"),
        (answer("tok", "Bea rer", later), "type"),
        (answer("tok", "Bearer", -1), "negative"),
        (answer("tok", "Bearer", ms(now) - 1), "expired"),
    ] {
        assert!(matches!(validate("a", a, now), Err(CredentialError::InvalidAnswer { .. })), "{why}");
    }
}

#[test]
fn debug_display_and_errors_never_show_the_token() {
    let c = validate(
        "github",
        ResolveCredentialResponse { token: "ghp_s3cr3t".into(), token_type: "Bearer".into(), expires_at_ms: 0 },
        SystemTime::now(),
    )
    .unwrap();
    for shown in [format!("{c:?}"), format!("{:?}", c.token()), format!("{}", c.token()), format!("{c:#?}")] {
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
    let use_ = CredentialUse { credential: "github".into(), header: "authorization".into(), prefix: "Bearer ".into() };
    let v = c.header_value(&use_).unwrap();
    assert!(!format!("{v:?}").contains("s3cr3t"), "sensitive header values are hidden");
    let err = validate(
        "github",
        ResolveCredentialResponse { token: "s3cr3t\n".into(), token_type: "Bearer".into(), expires_at_ms: 0 },
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(!err.to_string().contains("s3cr3t") && !format!("{err:?}").contains("s3cr3t"));
}

#[test]
fn header_value_is_prefix_then_token_and_checks_the_use() {
    let c = validate(
        "github",
        ResolveCredentialResponse { token: "abc".into(), token_type: "Bearer".into(), expires_at_ms: 0 },
        SystemTime::now(),
    )
    .unwrap();
    let mut use_ =
        CredentialUse { credential: "github".into(), header: "authorization".into(), prefix: "Bearer ".into() };
    let v = c.header_value(&use_).unwrap();
    assert_eq!(v.as_bytes(), b"Bearer abc");
    assert!(v.is_sensitive());
    use_.prefix = String::new();
    assert_eq!(c.header_value(&use_).unwrap().as_bytes(), b"abc");
    use_.prefix = "x\n".into();
    assert!(matches!(c.header_value(&use_), Err(CredentialError::InvalidUse { .. })));
    use_ = CredentialUse { credential: "other".into(), ..use_ };
    assert!(matches!(c.header_value(&use_), Err(CredentialError::InvalidUse { .. })));
}
