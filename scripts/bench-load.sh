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
#   WASMGATE_BIN=path/wasmgate uses a built binary (and sandbox-driver beside it)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh
DURATION=${1:-10}
CONNS=${2:-32}
TOKENS=${3:-2000}
THREADS=1   # wrk threads; the machine has 2 cores and the gateway needs them

bench_need_tools wrk
bench_release_bin sandbox-driver   # WASMGATE_BIN=... uses a built binary (sandbox-driver beside it)
bench_init
WORK=$BENCH_WORK

ISSUER_PORT=$(free_port)
GW_PORT=$(free_port)

bench_start_driver "$WORK/driver.sock"
bench_start_issuer issuer "$ISSUER_PORT" --tokens "$TOKENS" --out "$WORK/tokens"

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

WASMGATE_LOG=warn bench_start_gateway "$WORK/wasmgate.yaml" "$WORK/gateway.log"
GW=$BENCH_PID
sleep 1
echo "idle RSS of wasmgate serve: $(bench_rss_mib "$GW") MiB"

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
  bench_wrk_row -t"$THREADS" -c"$conns" -d"${DURATION}s" "$@"
  # wrk's own units, as before the shared parser
  local p50 p99
  p50=$(awk '$1=="50%" {print $2}' "$BENCH_WORK/last-wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$BENCH_WORK/last-wrk.txt")
  printf "%-34s %12s %10s %10s\n" "$name" "$(awk '/Requests\/sec/ {print $2}' "$BENCH_WORK/last-wrk.txt")" "$p50" "$p99"
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
echo "RSS after load: $(bench_rss_mib "$GW") MiB"
grep -E "ERROR|WARN" "$WORK/gateway.log" | head -5 || true
