use std::cell::Cell;

use super::*;
use crate::identity::{AuthClass, AuthKind, Protocol, TokenSource};

fn request() -> AuthzRequest {
    AuthzRequest {
        call: CallInfo::new(Protocol::Grpc, "POST", "/s.v1.S/Get", "grpc", "gw.example"),
        classification: Classification { class: AuthClass::Bearer, required_scopes: vec!["s.read".into()] },
        authentication: Authentication {
            kind: AuthKind::OidcToken,
            source: TokenSource::AuthorizationHeader,
            provider: Some("dev".into()),
            principal: Some(Principal {
                subject: "bob".into(),
                tenant: Some("acme".into()),
                roles: vec!["user".into()],
                scopes: vec!["s.read".into(), "s.write".into()],
                groups: vec!["/eng".into()],
            }),
        },
    }
}

const NOW: i64 = 1_800_000_000;

fn lookup(generation: u64) -> Lookup {
    Lookup { generation, enabled: true, expires_at: Some(NOW + 600), now: NOW }
}

fn trap() -> PolicyError {
    PolicyError::Trap { plugin: "p".into(), detail: "boom".into() }
}

/// Runs one lookup whose component answers `answer`, counting the calls.
async fn decide(
    d: &Decisions,
    lookup: Lookup,
    request: &AuthzRequest,
    asked: &Cell<u32>,
    answer: impl FnOnce() -> Result<Decision, PolicyError>,
) -> Answer {
    d.decide(
        lookup,
        request,
        |_| None,
        move || async move {
            asked.set(asked.get() + 1);
            (answer(), None)
        },
    )
    .await
}

#[tokio::test]
async fn a_decision_is_reused_for_the_same_input_and_asked_again_for_another() {
    let d = Decisions::new(MAX_BYTES);
    let asked = Cell::new(0);
    let r = request();
    let first = decide(&d, lookup(1), &r, &asked, || Ok(Decision::Allow)).await;
    assert!(!first.cached && matches!(first.decision, Ok(Decision::Allow)));
    let second = decide(&d, lookup(1), &r, &asked, || unreachable!("served from the cache")).await;
    assert!(second.cached && matches!(second.decision, Ok(Decision::Allow)));
    assert_eq!(asked.get(), 1);

    let mut other = request();
    other.call.path = "/s.v1.S/Delete".into();
    let third = decide(&d, lookup(1), &other, &asked, || Ok(Decision::Deny("no".into()))).await;
    assert!(!third.cached);
    let again = decide(&d, lookup(1), &other, &asked, || unreachable!("cached")).await;
    assert!(matches!(again.decision, Ok(Decision::Deny(ref reason)) if reason == "no"), "a deny keeps its reason");
    assert_eq!(asked.get(), 2);
}

#[tokio::test]
async fn a_new_policy_generation_asks_again() {
    let d = Decisions::new(MAX_BYTES);
    let asked = Cell::new(0);
    let r = request();
    decide(&d, lookup(1), &r, &asked, || Ok(Decision::Allow)).await;
    let swapped = decide(&d, lookup(2), &r, &asked, || Ok(Decision::Deny("new policy".into()))).await;
    assert!(!swapped.cached && matches!(swapped.decision, Ok(Decision::Deny(_))));
    assert_eq!(asked.get(), 2);
}

#[tokio::test]
async fn a_binding_that_opts_out_is_asked_every_call() {
    let d = Decisions::new(MAX_BYTES);
    let asked = Cell::new(0);
    let r = request();
    let off = Lookup { enabled: false, ..lookup(1) };
    for _ in 0..3 {
        assert!(!decide(&d, off, &r, &asked, || Ok(Decision::Allow)).await.cached);
    }
    assert_eq!(asked.get(), 3);
    assert_eq!(d.cache.iter().count(), 0, "nothing stored either");
}

#[tokio::test]
async fn a_failure_is_never_cached() {
    let d = Decisions::new(MAX_BYTES);
    let asked = Cell::new(0);
    let r = request();
    for _ in 0..2 {
        let failed = decide(&d, lookup(1), &r, &asked, || Err(trap())).await;
        assert!(!failed.cached && failed.decision.is_err());
    }
    assert_eq!(asked.get(), 2);
    decide(&d, lookup(1), &r, &asked, || Ok(Decision::Allow)).await;
    assert!(decide(&d, lookup(1), &r, &asked, || unreachable!("cached")).await.cached);
    assert_eq!(asked.get(), 3);
}

#[tokio::test]
async fn no_decision_outlives_the_token_that_stored_it() {
    let d = Decisions::new(MAX_BYTES);
    let asked = Cell::new(0);
    let r = request();
    let at = |now| Lookup { now, expires_at: Some(NOW + 5), ..lookup(1) };
    decide(&d, at(NOW), &r, &asked, || Ok(Decision::Allow)).await;
    assert!(decide(&d, at(NOW + 4), &r, &asked, || unreachable!("cached")).await.cached);
    let expired = decide(&d, at(NOW + 5), &r, &asked, || Ok(Decision::Allow)).await;
    assert!(!expired.cached, "served at the token's exp");
    assert_eq!(asked.get(), 2);
    // A token already past its exp stores nothing.
    let late = Lookup { now: NOW + 10, expires_at: Some(NOW + 10), ..lookup(3) };
    decide(&d, late, &r, &asked, || Ok(Decision::Allow)).await;
    assert!(!decide(&d, late, &r, &asked, || Ok(Decision::Allow)).await.cached);
    // Without a token (anonymous, sandbox secret) only the generation and the time to live bound it.
    let anonymous = Lookup { expires_at: None, ..lookup(4) };
    decide(&d, anonymous, &r, &asked, || Ok(Decision::Allow)).await;
    assert!(decide(&d, anonymous, &r, &asked, || unreachable!("cached")).await.cached);
}

#[test]
fn every_field_the_authorizer_receives_is_in_the_key() {
    type Change = fn(&mut AuthzRequest);
    fn principal(r: &mut AuthzRequest) -> &mut Principal {
        r.authentication.principal.as_mut().expect("principal")
    }
    let changes: Vec<(&str, Change)> = vec![
        ("protocol", |r| r.call.protocol = Protocol::Http),
        ("http_method", |r| r.call.http_method = "GET".into()),
        ("path", |r| r.call.path.push('x')),
        ("grpc_service", |r| r.call.grpc_service.push('x')),
        ("grpc_method", |r| r.call.grpc_method.push('x')),
        ("route", |r| r.call.route.push('x')),
        ("authority", |r| r.call.authority.push('x')),
        ("class", |r| r.classification.class = AuthClass::DualAuth),
        ("required_scopes", |r| r.classification.required_scopes.push("s.write".into())),
        ("kind", |r| r.authentication.kind = AuthKind::GatewayToken),
        ("source", |r| r.authentication.source = TokenSource::Cookie),
        ("provider", |r| r.authentication.provider = Some("other".into())),
        ("principal", |r| r.authentication.principal = None),
        ("subject", |r| principal(r).subject.push('x')),
        ("tenant", |r| principal(r).tenant = None),
        ("roles", |r| principal(r).roles.push("admin".into())),
        ("scopes", |r| principal(r).scopes.reverse()),
        ("groups", |r| principal(r).groups.clear()),
    ];
    let base = key(7, &request());
    assert_eq!(key(7, &request()), base, "the same input, the same key");
    assert_ne!(key(8, &request()), base, "the generation");
    let mut seen = vec![base];
    for (field, change) in changes {
        let mut r = request();
        change(&mut r);
        let k = key(7, &r);
        assert!(!seen.contains(&k), "{field} is not keyed");
        seen.push(k);
    }
}

#[test]
fn the_key_encoding_is_unambiguous() {
    let with = |f: fn(&mut Principal)| {
        let mut r = request();
        f(r.authentication.principal.as_mut().expect("principal"));
        key(1, &r)
    };
    // Strings that concatenate alike, in one list and across lists.
    assert_ne!(with(|p| p.roles = vec!["ab".into(), "c".into()]), with(|p| p.roles = vec!["a".into(), "bc".into()]));
    assert_ne!(
        with(|p| (p.roles, p.scopes) = (vec!["a".into()], vec![])),
        with(|p| (p.roles, p.scopes) = (vec![], vec!["a".into()]))
    );
    // No entry and an empty one; none and empty.
    assert_ne!(with(|p| p.groups = vec![]), with(|p| p.groups = vec![String::new()]));
    assert_ne!(with(|p| p.tenant = None), with(|p| p.tenant = Some(String::new())));
    let mut r = request();
    r.authentication.provider = None;
    let none = key(1, &r);
    r.authentication.provider = Some(String::new());
    assert_ne!(key(1, &r), none);
    // A long string's length prefix spans several bytes.
    assert_ne!(with(|p| p.subject = "x".repeat(300)), with(|p| p.subject = "x".repeat(301)));
}

#[test]
fn the_cache_is_bounded_in_bytes() {
    let d = Decisions::new(64 << 10);
    for i in 0..2_000 {
        let mut r = request();
        r.call.path = format!("/s.v1.S/M{i}");
        d.put(key(1, &r), Decision::Allow, None, NOW);
    }
    d.cache.run_pending_tasks();
    assert!(d.cache.weighted_size() <= 64 << 10, "{} bytes", d.cache.weighted_size());
    assert!(d.cache.entry_count() < 2_000);
}

/// A policy set whose global authorizer is `binding` (YAML flow map).
async fn policy_set(
    engine: &crate::plugins::PluginEngine,
    binding: &str,
    generation: u64,
) -> crate::plugins::PolicySet {
    let cfg = crate::config::Config::from_yaml(&format!("policy:\n  authorizer: {binding}\n")).expect("config");
    crate::plugins::PolicySet::build(engine, &cfg, generation, None).await.expect("builds")
}

/// Asks `set`'s authorizer through `d`; whether the cache answered.
async fn cached(d: &Decisions, set: &crate::plugins::PolicySet, r: &AuthzRequest) -> bool {
    let a = d.authorize(set.generation(), set.authorizer(Some("acme")), r, Some(now_secs() + 600)).await;
    assert!(a.decision.is_ok(), "{:?}", a.decision);
    a.cached
}

#[tokio::test]
async fn real_authorizers_are_cached_unless_their_binding_opts_out_and_failures_are_asked_again() {
    let engine = crate::plugins::PluginEngine::new(&crate::config::PluginsConfig::default()).expect("engine");
    let d = Decisions::new(MAX_BYTES);
    let mut open = request();
    open.classification = Classification { class: AuthClass::Unauthenticated, required_scopes: vec![] };
    let rbac = policy_set(&engine, "{ plugin: builtin:rbac-authorizer }", 1).await;
    assert!(!cached(&d, &rbac, &open).await);
    assert!(cached(&d, &rbac, &open).await, "the same input again");
    let reloaded = policy_set(&engine, "{ plugin: builtin:rbac-authorizer }", 2).await;
    assert!(!cached(&d, &reloaded, &open).await, "a new generation asks again");

    let off = policy_set(&engine, "{ plugin: builtin:rbac-authorizer, cache_decisions: false }", 3).await;
    assert!(!off.authorizer(None).caches_decisions());
    assert!(!cached(&d, &off, &open).await);
    assert!(!cached(&d, &off, &open).await, "opted out: asked every time");

    // A copy of the misbehaving fixture under a name of its own, so its
    // failure counter counts this test's calls only.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("decisions_trap_probe.wasm");
    std::fs::copy(crate::plugins::fixture_path("misbehaving_authorizer"), &file).expect("copy");
    let probe = policy_set(&engine, &format!("{{ plugin: \"{}\" }}", file.display()), 4).await;
    let mut trap = open.clone();
    trap.call.path = "/v1/trap".into();
    for _ in 0..2 {
        let a = d.authorize(4, probe.authorizer(None), &trap, None).await;
        assert!(!a.cached && matches!(a.decision, Err(PolicyError::Trap { .. })), "{a:?}");
    }
    let line = "wasmgate_policy_failures_total{plugin=\"decisions_trap_probe\",kind=\"trap\"} 2";
    assert!(crate::metrics::render().contains(line), "both calls reached the component");
}
