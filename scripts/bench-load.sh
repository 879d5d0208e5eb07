#!/usr/bin/env bash
# Load benchmark of the real binary on loopback, side by side in one run:
#   (a) a method classified `unauthenticated` (no token; classifier cached,
#       authorizer still runs),
#   (b) the full pipeline with one repeated valid ES256 token,
#   (c) the full pipeline with many distinct valid tokens (each verified and
#       mapped once, then served from the caches),
# all three forwarded to the same upstream handler of the sample driver over
# a Unix socket. Also prints the idle RSS of `wasmgate serve`.
#
# Usage: bash scripts/bench-load.sh [duration_seconds] [connections] [distinct_tokens]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-32}
TOKENS=${3:-2000}
THREADS=1   # wrk threads; the machine has 2 cores and the gateway needs them

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null 2>&1
  else
    echo "wrk is required (apt-get install wrk)" >&2; exit 1
  fi
fi

cargo build --release -q -p wasmgate -p sandbox-driver
BIN=target/release

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ISSUER_PORT=$(free_port)
GW_PORT=$(free_port)

"$BIN/sandbox-driver" --socket "$WORK/driver.sock" 2>"$WORK/driver.log" & PIDS+=($!)
"$BIN/wasmgate" dev-issuer --port "$ISSUER_PORT" --tokens "$TOKENS" --out "$WORK/tokens" >"$WORK/issuer.out" 2>"$WORK/issuer.log" & PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/tokens" ] && [ -S "$WORK/driver.sock" ] && break; sleep 0.1; done

cat >"$WORK/wasmgate.yaml" <<EOF
listen: 127.0.0.1:$GW_PORT
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
        - { match: "/open/*", class: unauthenticated }
        - { match: "/secure/*", class: bearer, scopes: [sandbox.read] }
  authorizer:
    plugin: builtin:rbac-authorizer
routes:
  - name: bench
    match: { path_prefix: / }
    upstream: "unix://$WORK/driver.sock"
EOF

WASMGATE_LOG=warn "$BIN/wasmgate" serve --config "$WORK/wasmgate.yaml" 2>"$WORK/gateway.log" & GW=$!; PIDS+=($GW)
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$GW_PORT/readyz" >/dev/null && break; sleep 0.05; done
curl -sf "http://127.0.0.1:$GW_PORT/readyz" >/dev/null || { echo "gateway not ready"; cat "$WORK/gateway.log"; exit 1; }
sleep 1
echo "idle RSS of wasmgate serve: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$GW/status)"

TOKEN=$(head -1 "$WORK/tokens")
# Sanity: each scenario gets the upstream's answer (404 from the driver's
# REST facade for an unknown path), not a gateway rejection.
code_a=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT/open/x")
code_b=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/secure/x")
code_n=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT/secure/x")
echo "sanity: open=$code_a secure+token=$code_b secure-without-token=$code_n (expect 404 404 401)"

cat >"$WORK/distinct.lua" <<EOF
local tokens = {}
for line in io.lines("$WORK/tokens") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/secure/x", { ["authorization"] = "Bearer " .. tokens[i] })
end
EOF

run() { # connections, name, wrk args...
  local conns=$1 name=$2; shift 2
  local out rps p50 p99
  out=$(wrk -t"$THREADS" -c"$conns" -d"${DURATION}s" --latency "$@")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf "%-34s %12s %10s %10s\n" "$name" "$rps" "$p50" "$p99"
}

# Every scenario gets the same upstream answer (the driver's JSON 404 for an
# unknown path), so the scenarios differ only in what the gateway does.
scenarios() { # connections
  run "$1" "(a) unauthenticated method" "http://127.0.0.1:$GW_PORT/open/x"
  run "$1" "(b) full pipeline, one token" -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/secure/x"
  run "$1" "(c) full pipeline, $TOKENS tokens" -s "$WORK/distinct.lua" "http://127.0.0.1:$GW_PORT/secure/x"
}

echo
echo "wrk, HTTP/1.1 keep-alive, ${DURATION}s per row; upstream = sample driver over a Unix socket"
echo "-- light load: 1 connection, one request at a time (added latency per request)"
printf "%-34s %12s %10s %10s\n" "scenario" "requests/s" "p50" "p99"
scenarios 1
echo "-- saturation: $CONNS connections (throughput on this machine's 2 cores, shared with wrk and the driver)"
printf "%-34s %12s %10s %10s\n" "scenario" "requests/s" "p50" "p99"
scenarios "$CONNS"
echo
echo "RSS after load: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$GW/status)"
grep -E "ERROR|WARN" "$WORK/gateway.log" | head -5 || true
