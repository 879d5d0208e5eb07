use super::*;

#[test]
fn a_grpc_call_gets_its_service_and_method_from_the_path() {
    let c = CallInfo::new(Protocol::Grpc, "POST", "/pkg.v1.Svc/Do", "r", "a");
    assert_eq!((c.grpc_service.as_str(), c.grpc_method.as_str()), ("pkg.v1.Svc", "Do"));
    assert_eq!((c.route.as_str(), c.authority.as_str(), c.path.as_str()), ("r", "a", "/pkg.v1.Svc/Do"));
    let h = CallInfo::new(Protocol::Http, "GET", "/pkg.v1.Svc/Do", "", "");
    assert_eq!((h.grpc_service.as_str(), h.grpc_method.as_str()), ("", ""));
    assert_eq!(CallInfo::grpc_parts("/a.B/C/D"), ("a.B", "C/D"));
    assert_eq!(CallInfo::grpc_parts("/a.B"), ("a.B", ""));
    assert_eq!(CallInfo::grpc_parts(""), ("", ""));
}

#[test]
fn call_info_deserializes_with_protocol_dependent_defaults() {
    let http: CallInfo = serde_norway::from_str("{ path: /x }").expect("http");
    assert_eq!(http, CallInfo::new(Protocol::Http, "GET", "/x", "", ""));
    let grpc: CallInfo = serde_norway::from_str("{ protocol: grpc, path: /a.B/C, route: r }").expect("grpc");
    assert_eq!(grpc, CallInfo::new(Protocol::Grpc, "POST", "/a.B/C", "r", ""));
    let given: CallInfo =
        serde_norway::from_str("{ protocol: grpc, http-method: GET, path: /a.B/C, grpc-service: x.Y, grpc-method: Z }")
            .expect("explicit");
    assert_eq!(
        (given.http_method.as_str(), given.grpc_service.as_str(), given.grpc_method.as_str()),
        ("GET", "x.Y", "Z")
    );
    let err = serde_norway::from_str::<CallInfo>("{ path: /x, verb: GET }").expect_err("unknown field").to_string();
    assert!(err.contains("unknown field `verb`"), "{err}");
    assert!(serde_norway::from_str::<CallInfo>("{ route: r }").is_err(), "path is required");
}

#[test]
fn the_vocabulary_deserializes_in_kebab_case_with_defaults() {
    let a: Authentication = serde_norway::from_str("{}").expect("anonymous");
    assert_eq!(a, Authentication::anonymous());
    let a: Authentication = serde_norway::from_str(
        "{ kind: oidc-token, source: authorization-header, provider: kc, principal: { subject: s, roles: [r] } }",
    )
    .expect("token");
    assert_eq!(
        (a.kind, a.source, a.provider.as_deref()),
        (AuthKind::OidcToken, TokenSource::AuthorizationHeader, Some("kc"))
    );
    assert_eq!(a.principal, Some(Principal { subject: "s".into(), roles: vec!["r".into()], ..Principal::default() }));
    let c: Classification = serde_norway::from_str("{ class: dual-auth, required-scopes: [a] }").expect("class");
    assert_eq!(c, Classification { class: AuthClass::DualAuth, required_scopes: vec!["a".into()] });
    assert!(serde_norway::from_str::<Classification>("{ class: open }").is_err());
    assert!(serde_norway::from_str::<Principal>("{ subject: s, tenants: [t] }").is_err());
    let u: CredentialUse = serde_norway::from_str("{ credential: c, header: h, prefix: p }").expect("use");
    assert_eq!(u, CredentialUse { credential: "c".into(), header: "h".into(), prefix: "p".into() });
    let i: CredentialInfo = serde_norway::from_str("{ name: n }").expect("info");
    assert_eq!(i, CredentialInfo { name: "n".into(), scopes: vec![] });
}
