#!/usr/bin/env python3
"""Writes fuzz/keys/ and the hand-made seeds in fuzz/seeds/<target>/.

Deterministic: running it again rewrites the same files. The seeds come from
the Wycheproof JOSE vectors (tests/vectors/wycheproof/), the repository's own
example config and golden-case files, and the attack classes of
docs/security.md. Run from anywhere: python3 fuzz/make_seeds.py
"""

import base64
import hashlib
import hmac
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"
VECTORS = ROOT / "tests" / "vectors" / "wycheproof"
NOW = 1_800_000_000
GATEWAY_V1 = b"fuzz-gateway-key-v1-0123456789abcdef"


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def seeds(target: str, items):
    d = FUZZ / "seeds" / target
    d.mkdir(parents=True, exist_ok=True)
    # Regression seeds (inputs the fuzzer once crashed on) are kept.
    for old in d.glob("seed-*"):
        old.unlink()
    for i, item in enumerate(items):
        data = item if isinstance(item, bytes) else item.encode()
        (d / f"seed-{i:03d}").write_bytes(data)


def hs256(header: dict, payload: dict, key: bytes) -> str:
    h = b64(json.dumps(header, separators=(",", ":")).encode())
    p = b64(json.dumps(payload, separators=(",", ":")).encode())
    tag = hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64(tag)}"


jws_file = json.loads((VECTORS / "json_web_signature_test.json").read_text())
jwk_file = json.loads((VECTORS / "json_web_key_test.json").read_text())

# Keys of the fuzzed verifiers.
es256 = next(g["public"] for g in jws_file["testGroups"] if g["comment"] == "es256")
rs256 = next(g["public"] for g in jws_file["testGroups"] if g["comment"] == "rs256" and "kid" in g.get("public", {})
             and g["public"]["kid"] == "kid-rsa-sign")
aes = next(g["private"] for g in jws_file["testGroups"] if g["comment"] == "hs256")
keys = FUZZ / "keys"
keys.mkdir(exist_ok=True)
(keys / "jwks.json").write_text(json.dumps({"keys": [es256, rs256]}, indent=1) + "\n")
(keys / "gateway-keys.txt").write_text(f"{aes['kid']}:{aes['k']}\nv1:{b64(GATEWAY_V1)}\n")
fuzz_kids = {es256["kid"], rs256["kid"]}
signed = set()
all_jws = []
for g in jws_file["testGroups"] + jwk_file["testGroups"]:
    for t in g["tests"]:
        all_jws.append(t["jws"])
        if t["result"] == "valid" and t["jws"].count(".") == 2:
            try:
                header = json.loads(base64.urlsafe_b64decode(t["jws"].split(".")[0] + "=="))
            except ValueError:
                continue
            if header.get("kid") in fuzz_kids:
                signed.add(t["jws"].rsplit(".", 1)[0])
(keys / "signed-inputs.txt").write_text("".join(f"{s}\n" for s in sorted(signed)))

claims = {"iss": "wasmgate", "aud": "wasmgate", "sub": "alice", "iat": NOW, "nbf": NOW, "exp": NOW + 600,
          "jti": "j1", "tenant": "acme", "roles": ["admin"], "scope": "sandbox:read sandbox:write"}
hdr = {"alg": "HS256", "kid": "v1", "typ": "JWT"}
gateway_tokens = [
    hs256(hdr, claims, GATEWAY_V1),
    hs256(hdr, {**claims, "jti": "revoked-jti"}, GATEWAY_V1),
    hs256(hdr, {**claims, "exp": NOW - 100}, GATEWAY_V1),
    hs256(hdr, {**claims, "exp": str(NOW + 600)}, GATEWAY_V1),
    hs256(hdr, {**claims, "aud": ["x", "wasmgate"]}, GATEWAY_V1),
    hs256({"alg": "HS256", "kid": "v9"}, claims, GATEWAY_V1),
    hs256({"alg": "none", "kid": "v1"}, claims, GATEWAY_V1),
    hs256({"alg": "RS256", "kid": "kid-rsa-sign"}, claims, GATEWAY_V1),
    hs256({"alg": "HS256", "kid": "v1", "jku": "http://127.0.0.1:1/"}, claims, GATEWAY_V1),
    hs256({"alg": "HS256", "kid": "v1", "crit": ["exp"]}, claims, GATEWAY_V1),
]
seeds("jws", all_jws + gateway_tokens + ["a.b.c", "..", "e30.e30.", "e30.e30.e30"])

paths = [
    "/", "/api/x", "/public/../api/x", "/public/%2e%2e/api/x", "/public/..%2fapi/x", "/public/x/../../api/x",
    "/public/%2E%2e/api", "/public/.%2e/api", "/a//b///c", "/a/./b/.", "/a/b/..", "/..", "/a/../..",
    "/%252e%252e/api", "/a%252Fb", "/a/..;x/b", "/a/.;/b", "/a/%2F../b", "/a/..%2F/b", "/api/a%2Fb", "/api/a%5Cb",
    "/a\\b", "/%00", "/a%0a", "/%7euser/%41%42", "/a%2fb%2F%2e%2E/c", "/v1/public/../config", "/a?b#c/../d",
    "/sandbox.v1.Sandbox/Watch", "/a/%zz", "/a/%4", "/x//..//y", "/~!$&'()*+,;=:@/",
]
seeds("canonical_path", [bytes([opt]) + p.encode() for p in paths for opt in (0, 1, 2, 4, 5, 6)])

seeds("identity_headers", [
    b"\x00x-wasmgate-subject:admin\nX_WASMGATE_TENANT:acme\nx-wasmgate_roles:a\nhost:example\nx-remote-user:root",
    b"\x00~\x01\x03\x01\x00\x02\x03:v\n~\x00\x02\x00\x00\x00\x00\x00\x00\x02\x00\x00subject:x\naccept:*/*",
    b"\x01x-corp-id-subject:admin\nX_CORP_ID_TENANT:a\nx_remote_user:root\nx-corp-idx:keep\nx-corp-i:keep",
    b"\x01~\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03roles:x\nx-forwarded-user:u",
    b"\x00X-WasmGate-Auth-Kind:gateway\nx-wasmgate-:empty\nx-wasmgate:short\nx-wasmgatex-y:keep",
])

jwks_docs = [json.dumps({"keys": [g["public"]]}) for g in jws_file["testGroups"] if "public" in g]
jwks_docs += [json.dumps(g["public"]) for g in jwk_file["testGroups"] if "public" in g]
jwks_docs += [json.dumps({"keys": [es256, es256]}), json.dumps({"keys": [es256, {**rs256, "use": "enc"}]}),
              json.dumps({"keys": [{**es256, "key_ops": ["sign"]}, {**rs256, "kid": "r"}]}),
              json.dumps({"keys": [aes, es256]}), '{"keys":[]}', "<html>", json.dumps({"keys": [{"kty": "XYZ"}]})]
seeds("jwks", sorted(set(jwks_docs)))

example = (ROOT / "examples" / "wasmgate.yaml").read_text()
seeds("config", [example, "{}", "server:\n  listen: 127.0.0.1:0\n", "identity_headers:\n  prefix: x-corp-\n",
                 "auth:\n  providers:\n  - name: a\n    issuer: https://a\n    audiences: [x]\n    algorithms: [RS256]\n",
                 "a: &a [*a]\n", "routes: [" * 64])

cases = [p.read_text() for p in sorted(ROOT.glob("examples/plugins/*/*.cases.yaml"))]
seeds("golden_cases", cases + ["cases: []\n", "cases:\n- name: x\n"])

seeds("revoked", [
    "# revoked\nj1 1800000600\nj2\n\n  j3   1800000000 extra\n",
    "j4 notanumber\n#only a comment\n" + "x" * 300 + "\n",
    "a#b 1\n\tc\t2\r\nd\r",
])

entry = {"grant": "device_code", "issuer": "https://idp.example", "token_endpoint": "https://idp.example/token",
         "client_id": "cli", "scopes": ["openid"], "access_token": "at", "token_type": "Bearer",
         "expires_at": NOW, "refresh_token": "rt", "updated_at": NOW - 10}
seeds("credentials", [
    json.dumps({"version": 1, "gateways": {"https://gw.example": entry}}, indent=2),
    json.dumps({"version": 1, "gateways": {"https://gw.example": {**entry, "grant": "client_credentials",
                                                                   "client_secret_file": "/run/secret"}}}),
    json.dumps({"version": 2, "gateways": {}}),
    '{"version":1}',
    "",
])
print("seeds written under", FUZZ / "seeds")
