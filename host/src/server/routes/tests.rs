//! Route table tests.

use proptest::prelude::*;

use super::*;

fn route(m: RouteMatch) -> RouteConfig {
    RouteConfig {
        name: "r".into(),
        matches: m,
        upstream: "unix:///tmp/x.sock".into(),
        upstream_protocol: None,
        keep_authorization: false,
        allow_query_token: false,
        allow_upgrade: false,
        timeout_ms: 1000,
        classifier: None,
        paths: Default::default(),
        stream_idle_timeout_ms: 0,
        max_request_body_bytes: 1 << 20,
        max_connections: 8,
        max_pending: 8,
        upstream_host: Default::default(),
    }
}

fn table(cfgs: &[RouteConfig]) -> RouteTable {
    RouteTable::new(cfgs, &PathOptions::default()).expect("valid")
}

#[test]
fn grpc_service_matches_whole_service_names() {
    let t = table(&[route(RouteMatch::GrpcService("sandbox.v1.SandboxService".into()))]);
    assert!(t.find("/sandbox.v1.SandboxService/GetSandbox").is_some());
    assert!(t.find("/sandbox.v1.SandboxServiceX/GetSandbox").is_none());
    assert!(t.find("/sandbox.v1.SandboxService/").is_none());
    assert!(t.find("/sandbox.v1.SandboxService/a/b").is_none());
    assert_eq!(t.routes()[0].protocol, UpstreamProtocol::H2);
}

#[test]
fn path_prefix_matches_whole_segments() {
    let t = table(&[route(RouteMatch::PathPrefix("/v1".into()))]);
    assert!(t.find("/v1").is_some());
    assert!(t.find("/v1/x").is_some());
    assert!(t.find("/v1x").is_none());
    assert_eq!(t.routes()[0].protocol, UpstreamProtocol::Http1);
}

#[test]
fn upstreams_parse() {
    let mut r = route(RouteMatch::PathPrefix("/".into()));
    r.upstream = "http://127.0.0.1:9000".into();
    assert_eq!(Route::new(&r, &PathOptions::default()).expect("valid").target, Target::Tcp("127.0.0.1:9000".into()));
    r.upstream = "unix://relative.sock".into();
    assert!(Route::new(&r, &PathOptions::default()).is_err());
}

#[test]
fn requests_route_on_their_canonical_path() {
    let public = RouteConfig { name: "public".into(), ..route(RouteMatch::PathPrefix("/public".into())) };
    let api = RouteConfig { name: "api".into(), ..route(RouteMatch::PathPrefix("/api".into())) };
    let t = table(&[public, api]);
    let (_, r, p) = t.resolve("/public/../api/x").expect("resolves");
    assert_eq!((r.cfg.name.as_str(), p.as_str()), ("api", "/api/x"));
    let (_, r, p) = t.resolve("/public//%2e%2e/api/x").expect("resolves");
    assert_eq!((r.cfg.name.as_str(), p.as_str()), ("api", "/api/x"));
    assert_eq!(t.resolve("/public/..%2fapi/x").err(), Some(Unresolved::Path(PathError::EncodedSlash)));
    assert_eq!(t.resolve("/nowhere/../x").err(), Some(Unresolved::NoRoute("/x".into())));
    assert_eq!(t.resolve("/..").err(), Some(Unresolved::Path(PathError::AboveRoot)));
}

#[test]
fn a_route_that_reads_escaped_slashes_differently_must_still_match() {
    let mut files = RouteConfig { name: "files".into(), ..route(RouteMatch::PathPrefix("/files".into())) };
    files.paths.escaped_slashes = Some(canonical::EscapedSlashes::Unescape);
    let api = RouteConfig { name: "api".into(), ..route(RouteMatch::PathPrefix("/api".into())) };
    let mut keep = RouteConfig { name: "blobs".into(), ..route(RouteMatch::PathPrefix("/blobs".into())) };
    keep.paths.escaped_slashes = Some(canonical::EscapedSlashes::Keep);
    let t = table(&[files, api, keep]);
    let (_, r, p) = t.resolve("/files/a%2Fb").expect("unescaped on its route");
    assert_eq!((r.cfg.name.as_str(), p.as_str()), ("files", "/files/a/b"));
    // Decoded, this path leaves the route it was matched on.
    assert_eq!(t.resolve("/files/..%2Fapi/x").err(), Some(Unresolved::Ambiguous));
    let (_, r, p) = t.resolve("/blobs/a%2fb").expect("kept on its route");
    assert_eq!((r.cfg.name.as_str(), p.as_str()), ("blobs", "/blobs/a%2Fb"));
    assert_eq!(t.resolve("/blobs/..%2F..%2Fapi").err(), Some(Unresolved::Path(PathError::AmbiguousDotSegment)));
    assert_eq!(t.resolve("/api/a%2Fb").err(), Some(Unresolved::Path(PathError::EncodedSlash)));
}

#[test]
fn first_match_wins_across_kinds_and_depths() {
    let cfgs = [
        RouteConfig { name: "deep".into(), ..route(RouteMatch::PathPrefix("/a/b/".into())) },
        RouteConfig { name: "grpc".into(), ..route(RouteMatch::GrpcService("a".into())) },
        RouteConfig { name: "shallow".into(), ..route(RouteMatch::PathPrefix("/a".into())) },
        RouteConfig { name: "all".into(), ..route(RouteMatch::PathPrefix("/".into())) },
        RouteConfig { name: "late".into(), ..route(RouteMatch::PathPrefix("/z".into())) },
    ];
    let t = table(&cfgs);
    let name = |p: &str| t.find(p).map(|(_, r)| r.cfg.name.as_str());
    assert_eq!(name("/a/b/c"), Some("deep"));
    assert_eq!(name("/a/b"), Some("deep"));
    assert_eq!(name("/a/M"), Some("grpc"));
    assert_eq!(name("/a/M/x"), Some("shallow"));
    assert_eq!(name("/a"), Some("shallow"));
    assert_eq!(name("/ab"), Some("all"));
    // An earlier catch-all hides a later route.
    assert_eq!(name("/z/x"), Some("all"));
    assert_eq!(name(""), Some("all"));
}

#[test]
fn ten_thousand_routes_find_the_last_one() {
    let mut cfgs: Vec<_> = (0..10_000)
        .map(|i| RouteConfig { name: format!("r{i}"), ..route(RouteMatch::PathPrefix(format!("/api/r{i}"))) })
        .collect();
    cfgs.push(RouteConfig { name: "svc".into(), ..route(RouteMatch::GrpcService("pkg.v1.Svc".into())) });
    let t = table(&cfgs);
    assert_eq!(t.find("/api/r9999/items/42").map(|(i, _)| i), Some(9_999));
    assert_eq!(t.find("/pkg.v1.Svc/Get").map(|(i, _)| i), Some(10_000));
    assert!(t.find("/api/r10000").is_none());
    assert!(t.find("/api").is_none());
}

/// Text over a small alphabet, so generated prefixes, services and paths
/// collide often: leading, trailing and doubled slashes included.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(vec!['/', '/', 'a', 'b', '.']), 0..max)
        .prop_map(|v| v.into_iter().collect())
}

fn route_match() -> impl Strategy<Value = RouteMatch> {
    prop_oneof![
        text(8).prop_map(RouteMatch::PathPrefix),
        text(8).prop_map(|p| RouteMatch::PathPrefix(format!("/{p}"))),
        text(6).prop_map(RouteMatch::GrpcService),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_index_finds_what_trying_every_route_in_order_finds(
        matches in proptest::collection::vec(route_match(), 0..12),
        probes in proptest::collection::vec((any::<proptest::sample::Index>(), text(8), text(10)), 1..16),
    ) {
        let cfgs: Vec<_> = matches.into_iter().map(route).collect();
        let t = table(&cfgs);
        for (pick, suffix, other) in probes {
            // A path built on one of the routes, and an unrelated one.
            let base = match cfgs.get(pick.index(cfgs.len().max(1))).map(|c| &c.matches) {
                Some(RouteMatch::PathPrefix(p)) => p.clone(),
                Some(RouteMatch::GrpcService(s)) => format!("/{s}"),
                None => String::new(),
            };
            for path in [format!("{base}{suffix}"), format!("{base}/{suffix}"), other.clone(), format!("/{other}")] {
                let got = t.find(&path).map(|(i, _)| i);
                let want = t.find_linear(&path).map(|(i, _)| i);
                prop_assert_eq!(got, want, "path {:?} routes {:?}", path, cfgs.iter().map(|c| &c.matches).collect::<Vec<_>>());
            }
        }
    }
}
