#!/usr/bin/env bash
# Hostile clients against the real binary on loopback, one attack at a time,
# each bounded in time (about 1.5 minutes in all):
#   (1) slowloris: connections that send a request head a byte at a time,
#       for longer than server.http1.header_read_timeout_seconds (30 s);
#   (2) silent sockets: 3x server.max_connections connections that send
#       nothing, re-opened as the gateway closes them;
#   (3) HTTP/2 stream exhaustion: connections each opening more streams than
#       server.http2.max_concurrent_streams allows, every one a gRPC
#       server-streaming call (WatchSandboxes) that stays open, upstream too.
# During each attack a normal client makes sequential calls and the script
# prints their latency (p50/p99/max, failures): HTTP/1.1 GET /v1/healthz on
# a new connection each (Python), and a gRPC unary GetCaller over h2c with a
# bearer token, a new connection each (curl). It also prints the gateway's
# file descriptors (peak, sampled every 0.2 s) and its connection metrics.
#
# The gateway runs with the demo's routes and policy (sandbox driver over a
# Unix socket, dev OIDC issuer), `server.max_connections: 1000` so that the
# silent sockets go past it, and every other limit at its default.
#
# Usage: bash scripts/abuse.sh [seconds_per_attack]   (slowloris runs 15 s longer)
#   BIN_DIR=target/debug bash scripts/abuse.sh   # use already-built binaries
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_ATTACK=${1:-20}
SLOWLORIS_SECONDS=$((SECONDS_PER_ATTACK + 15))
MAX_CONNECTIONS=1000
SILENT=$((3 * MAX_CONNECTIONS))
SLOWLORIS=500
H2_CONNECTIONS=4
H2_STREAMS=300   # per connection; the gateway allows 256 at once

# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh
if [ -n "${BIN_DIR:-}" ]; then
  WASMGATE_BIN=$BIN_DIR/wasmgate
elif [ -x target/release/wasmgate ] && [ -x target/release/sandbox-driver ]; then
  WASMGATE_BIN=$PWD/target/release/wasmgate
fi
bench_release_bin sandbox-driver
BIN=$(dirname "$WASMGATE_BIN")
command -v curl >/dev/null || { echo "curl is required" >&2; exit 1; }
# The attackers hold thousands of sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

bench_init
WORK=$BENCH_WORK

ISSUER_PORT=$(free_port)
GW_PORT=$(free_port)
ADMIN_PORT=$(free_port)

bench_start_driver "$WORK/driver.sock"
bench_start_issuer issuer "$ISSUER_PORT" --tokens 1 --out "$WORK/tokens"

cat >"$WORK/wasmgate.yaml" <<EOF
listen: 127.0.0.1:$GW_PORT
server:
  max_connections: $MAX_CONNECTIONS
admin:
  listen: 127.0.0.1:$ADMIN_PORT
auth:
  providers:
    - name: dev
      issuer: "http://127.0.0.1:$ISSUER_PORT"
      audiences: [wasmgate-demo]
      algorithms: [ES256]
      claims_mapper: { plugin: builtin:oidc-claims-mapper, settings: { tenant-claim: tenant } }
policy:
  classifier:
    plugin: builtin:default-classifier
    settings:
      methods:
        - { match: "/v1/healthz", class: unauthenticated }
        - { match: "/sandbox.v1.SandboxService/GetCaller", class: bearer, scopes: [sandbox.read] }
        - { match: "/sandbox.v1.SandboxService/WatchSandboxes", class: bearer, scopes: [sandbox.read] }
  authorizer:
    plugin: builtin:rbac-authorizer
routes:
  - name: sandbox-grpc
    match: { grpc_service: sandbox.v1.SandboxService }
    upstream: "unix://$WORK/driver.sock"
  - name: sandbox-rest
    match: { path_prefix: /v1 }
    upstream: "unix://$WORK/driver.sock"
EOF

WASMGATE_LOG=info bench_start_gateway "$WORK/wasmgate.yaml" "$WORK/gateway.log"
GW=$BENCH_PID
TOKEN=$(head -1 "$WORK/tokens")
printf '\0\0\0\0\0' >"$WORK/empty.grpc"

cat >"$WORK/abuse.py" <<'PY'
"""Attackers and the normal client. Only the standard library."""
import socket, struct, sys, threading, time

HOST = "127.0.0.1"

def now():
    return time.monotonic()

# ---- attackers; each runs until `stop` is set ----

def slowloris(port, n, stop, stats):
    """n connections each sending a request head a byte every 5 s, re-opened when closed."""
    socks = []
    def opened():
        s = socket.create_connection((HOST, port))
        s.setblocking(False)
        s.send(b"GET /v1/healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
        stats["opened"] += 1
        return s
    while len(socks) < n and not stop.is_set():
        try:
            socks.append(opened())
        except OSError:
            stats["connect_failed"] += 1
            time.sleep(0.01)
    while not stop.wait(5):
        for i, s in enumerate(socks):
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    raise OSError("closed")
            except BlockingIOError:
                pass
            except OSError:
                stats["closed_by_gateway"] += 1
                s.close()
                try:
                    socks[i] = opened()
                except OSError:
                    stats["connect_failed"] += 1
                continue
            try:
                s.send(b"x")
            except OSError:
                pass
    for s in socks:
        s.close()

def silent(port, n, stop, stats):
    """n connections that send nothing, re-opened as the gateway closes them."""
    socks = []
    while not stop.is_set():
        while len(socks) < n and not stop.is_set():
            try:
                s = socket.create_connection((HOST, port))
                s.setblocking(False)
                socks.append(s)
                stats["opened"] += 1
            except OSError:
                stats["connect_failed"] += 1
                time.sleep(0.01)
                break
        alive = []
        for s in socks:
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    raise OSError("closed")
                alive.append(s)
            except BlockingIOError:
                alive.append(s)
            except OSError:
                stats["closed_by_gateway"] += 1
                s.close()
        socks = alive
        stop.wait(0.2)
    for s in socks:
        s.close()

def hpack_int(first, prefix, value):
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)

def hpack(fields):
    """Literals without indexing, new names, no Huffman (RFC 7541 6.2.2)."""
    out = b""
    for name, value in fields:
        n, v = name.encode(), value.encode()
        out += b"\x00" + hpack_int(0, 7, len(n)) + n + hpack_int(0, 7, len(v)) + v
    return out

def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload

def h2_streams(port, token, conns, streams, stop, stats):
    """conns connections, each opening `streams` WatchSandboxes calls that stay open."""
    block = hpack([(":method", "POST"), (":scheme", "http"), (":authority", f"{HOST}:{port}"),
                   (":path", "/sandbox.v1.SandboxService/WatchSandboxes"),
                   ("content-type", "application/grpc"), ("te", "trailers"),
                   ("authorization", f"Bearer {token}")])
    def send(s, lock, data):
        with lock:
            s.sendall(data)
    def reader(s, lock):
        buf = b""
        while not stop.is_set():
            try:
                data = s.recv(65536)
            except OSError:
                return
            if not data:
                stats["closed_by_gateway"] += 1
                return
            buf += data
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                kind, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                payload, buf = buf[9:9 + length], buf[9 + length:]
                if kind == 0x4 and not flags & 0x1:
                    send(s, lock, frame(0x4, 0x1, 0, b""))      # SETTINGS ACK
                elif kind == 0x6 and not flags & 0x1:
                    send(s, lock, frame(0x6, 0x1, 0, payload))  # PING ACK
                elif kind == 0x1 and sid:
                    stats["streams_answered"] += 1
                elif kind == 0x3:
                    code = int.from_bytes(payload, "big")
                    name = {0x5: "stream_closed", 0x7: "refused_stream", 0x8: "cancel"}.get(code, f"code_{code}")
                    stats[f"rst_{name}"] = stats.get(f"rst_{name}", 0) + 1
                elif kind == 0x7:
                    stats["goaway"] += 1
    socks, threads = [], []
    for _ in range(conns):
        s, lock = socket.create_connection((HOST, port)), threading.Lock()
        send(s, lock, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, b""))
        t = threading.Thread(target=reader, args=(s, lock), daemon=True)
        t.start()
        out = b""
        for i in range(streams):
            sid = 1 + 2 * i
            out += frame(0x1, 0x4, sid, block) + frame(0x0, 0x1, sid, b"\0\0\0\0\0")
        send(s, lock, out)
        stats["streams_opened"] += streams
        socks.append(s)
        threads.append(t)
    stop.wait()
    for s in socks:
        s.close()

# ---- the normal client ----

def http1_latency(port, n):
    """n sequential GET /v1/healthz, each on a new connection; latencies in ms, failures."""
    lat, failed = [], 0
    for _ in range(n):
        t = now()
        try:
            with socket.create_connection((HOST, port), timeout=5) as s:
                s.sendall(b"GET /v1/healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                lat.append((now() - t) * 1000)
            else:
                failed += 1
        except OSError:
            failed += 1
    return lat, failed

def summary(lat, failed):
    if not lat:
        return f"all {failed} failed"
    lat = sorted(lat)
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    return f"p50 {pick(0.5):7.2f} ms  p99 {pick(0.99):7.2f} ms  max {lat[-1]:7.2f} ms  failed {failed}/{len(lat) + failed}"

if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if mode == "latency":
        print(summary(*http1_latency(port, int(sys.argv[3]))))
        sys.exit(0)
    if mode == "grpc-summary":
        # curl lines: HTTP status, gs=<grpc-status, from the headers or the
        # trailers>, body bytes, seconds. Success: 200, status 0, a message.
        lat, failed = [], 0
        for line in sys.stdin:
            code, gs, size, secs = (line.split() + ["", "", "0", "0"])[:4]
            if code == "200" and gs == "gs=0" and int(size) > 0:
                lat.append(float(secs) * 1000)
            else:
                failed += 1
        print(summary(lat, failed))
        sys.exit(0)
    seconds = float(sys.argv[3])
    stop = threading.Event()
    stats = {k: 0 for k in ("opened", "connect_failed", "closed_by_gateway", "streams_opened",
                            "streams_answered", "goaway")}
    if mode == "slowloris":
        target = lambda: slowloris(port, int(sys.argv[4]), stop, stats)
    elif mode == "silent":
        target = lambda: silent(port, int(sys.argv[4]), stop, stats)
    else:
        target = lambda: h2_streams(port, sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), stop, stats)
    t = threading.Thread(target=target, daemon=True)
    t.start()
    time.sleep(seconds)
    stop.set()
    t.join(10)
    print("attacker: " + ", ".join(f"{k} {v}" for k, v in stats.items() if v))
PY

fds() { bench_fds "$GW"; }
fd_kinds() { # the gateway's sockets by kind: TCP (clients, the admin listener), Unix (the driver)
  local inodes tcp unix
  inodes=$(ls -l "/proc/$GW/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]/\1/p' | sort -u)
  tcp=$(awk 'NR > 1 {print $10}' /proc/net/tcp /proc/net/tcp6 | sort -u | comm -12 - <(echo "$inodes") | wc -l)
  unix=$(awk 'NR > 1 {print $7}' /proc/net/unix | sort -u | comm -12 - <(echo "$inodes") | wc -l)
  echo "$tcp TCP, $unix Unix sockets"
}
metrics() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" \
    | awk '/^wasmgate_(connections_open|connections_closed_total|accept_errors_total)/ {printf "%s ", $0} END {print ""}'
}
grpc_latency() { # n: sequential unary GetCaller calls over h2c, a new connection each
  local n=$1
  for _ in $(seq "$n"); do
    curl -s --max-time 5 --http2-prior-knowledge -o /dev/null \
      -w '%{http_code} gs=%header{grpc-status} %{size_download} %{time_total}\n' \
      -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $TOKEN" \
      --data-binary @"$WORK/empty.grpc" "http://127.0.0.1:$GW_PORT/sandbox.v1.SandboxService/GetCaller" || true
  done | python3 "$WORK/abuse.py" grpc-summary
}
normal() { # label
  echo "  normal HTTP/1.1 (200 calls, new connection each): $(python3 "$WORK/abuse.py" latency "$GW_PORT" 200)"
  echo "  normal gRPC unary over h2c (100 calls, curl):     $(grpc_latency 100)"
}

attack() { # name, seconds, attacker args...
  local name=$1 seconds=$2; shift 2
  echo
  echo "== $name (${seconds}s)"
  local base; base=$(fds)
  python3 "$WORK/abuse.py" "$@" >"$WORK/attacker.out" 2>&1 & local attacker=$!
  : >"$WORK/fds"
  ( while kill -0 "$attacker" 2>/dev/null; do fds >>"$WORK/fds"; sleep 0.2; done ) & local sampler=$!
  sleep 4   # let the attack build up
  normal
  local during; during=$(metrics)
  wait "$attacker" || true
  wait "$sampler" 2>/dev/null || true
  cat "$WORK/attacker.out" | sed 's/^/  /'
  echo "  gateway fds: $base before, peak $(sort -n "$WORK/fds" | tail -1) during, $(fds) after ($(fd_kinds))"
  echo "  metrics during (after the normal calls): $during"
  echo "  metrics after: $(metrics)"
}

echo "wasmgate $("$BIN/wasmgate" --version 2>/dev/null || echo) from $BIN; server.max_connections $MAX_CONNECTIONS, other limits at their defaults"
grep -m1 'open-file limit' "$WORK/gateway.log" | sed 's/\x1b\[[0-9;]*m//g; s/^/gateway log: /' || true
echo
echo "== baseline, no attack"
echo "  gateway fds: $(fds)"
normal

attack "slowloris: $SLOWLORIS connections, a head byte every 5 s, re-opened as closed" "$SLOWLORIS_SECONDS" \
  slowloris "$GW_PORT" "$SLOWLORIS_SECONDS" "$SLOWLORIS"
attack "silent sockets: $SILENT connections (max_connections $MAX_CONNECTIONS), re-opened as closed" "$SECONDS_PER_ATTACK" \
  silent "$GW_PORT" "$SECONDS_PER_ATTACK" "$SILENT"
attack "HTTP/2 stream exhaustion: $H2_CONNECTIONS connections x $H2_STREAMS open WatchSandboxes streams" "$SECONDS_PER_ATTACK" \
  h2 "$GW_PORT" "$SECONDS_PER_ATTACK" "$TOKEN" "$H2_CONNECTIONS" "$H2_STREAMS"

echo
echo "== after the attacks"
sleep 2
echo "  gateway fds: $(fds)"
normal
echo
echo "gateway warnings:"
grep -E "WARN|ERROR" "$WORK/gateway.log" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-220 | sort | uniq -c | sort -rn | head -8 || true
