#!/usr/bin/env bash
# wasmgate side by side with HAProxy 2.6 (`jwt_verify` + ACLs, the peer in
# ../shared/peers/haproxy), in one run, on this machine:
#   - one upstream for both: nginx answering `200 ok` to every path (1 worker),
#   - HAProxy with `nbthread 1` and wasmgate with `workers: 1` (release
#     build), both pinned to CPU 0; wrk/h2load and nginx pinned to CPU 1,
#   - RS256 tokens from `wasmgate dev-issuer` (HAProxy gets its public key as
#     PEM and pins its kid), the role `admin` required by both
#     (rbac-authorizer `admin-role: admin`, `user-role: ""`), `/public/*`
#     unauthenticated on both.
# Rows (requests/s, p50, p99 for each, then the ratio wasmgate/HAProxy):
# HTTP/1.1 with `wrk -t1 -c16` (no-auth, one repeated token, distinct tokens
# each seen once, an invalid-signature flood, ES256 distinct tokens for
# wasmgate only); h2c with `h2load -c16 -m8` (no-auth, repeated token); a
# fixed rate (60 % of HAProxy's repeated-token maximum, h2load --h1 --rps)
# for the upstream alone, via HAProxy and via wasmgate; the decision log
# (sink none vs file); wasmgate's RSS. Then scripts/bench-config-size.sh if
# present. Every row is preceded by a sanity request, and a row whose
# answers are not what it expects (200, or 401 for the flood) fails the run.
#
# Usage: bash scripts/bench-peers.sh [DURATION_SECONDS]   (default 5)
# Environment: WASMGATE_BIN (default: cargo build --release), BENCH_TOKENS
# (distinct tokens to mint; default 30000 per second of DURATION, more than
# HAProxy serves), BENCH_CONNS (16), HAPROXY_PEER_DIR, BENCH_KEEP=1 (keep the
# work folder with the logs).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh

DURATION=${1:-5}
CONNS=${BENCH_CONNS:-16}
TOKENS=${BENCH_TOKENS:-$((30000 * DURATION))}
AUD=https://gateway.test/api
ROLE=admin
PEER_DIR=${HAPROXY_PEER_DIR:-$REPO/../shared/peers/haproxy}

bench_need_tools wrk h2load haproxy nginx curl python3 taskset
bench_release_bin
[ -x "$PEER_DIR/start.sh" ] || [ -f "$PEER_DIR/start.sh" ] || bench_die "no HAProxy peer in $PEER_DIR (set HAPROXY_PEER_DIR)"
bench_init
W=$BENCH_WORK
[ "$(nproc)" -ge 2 ] || echo "WARNING: fewer than 2 cores: nothing is pinned, figures are not comparable" >&2
PROXY_PIN=$(bench_pin 0)
LOAD_PIN=$(bench_pin 1)
FAILED=0

UP_PORT=$(free_port); HA_PORT=$(free_port); GW_PORT=$(free_port)
RS_PORT=$(free_port); ES_PORT=$(free_port)

bench_header "wasmgate vs HAProxy, ${DURATION}s per row, $CONNS connections"
echo

# ---- upstream, issuers, HAProxy, gateway ----
bench_start_nginx "$UP_PORT" 1
UP=http://127.0.0.1:$UP_PORT

bench_start_issuer es "$ES_PORT" --alg ES256 --tokens $((TOKENS + 1)) --out "$W/es.tokens" \
  --audience "$AUD" --role "$ROLE" --sub bench --ttl 2h
ES_ISS=$BENCH_ISSUER
bench_start_issuer rs "$RS_PORT" --alg RS256 --tokens $((TOKENS + 1)) --out "$W/rs.tokens" \
  --public-key-pem "$W/rs.pem" --audience "$AUD" --role "$ROLE" --sub bench --ttl 2h
RS_ISS=$BENCH_ISSUER; RS_KID=$BENCH_KID
echo "tokens:   $((TOKENS + 1)) RS256 and $((TOKENS + 1)) ES256 (dev-issuer: $(sed -n 's/.*\(minted in [0-9.]* s\).*/\1/p' "$W/rs.log") RS256, $(sed -n 's/.*\(minted in [0-9.]* s\).*/\1/p' "$W/es.log") ES256, on $(nproc) cores)"

TOKEN=$(head -1 "$W/rs.tokens")            # the repeated token; the distinct rows skip it
SPARE=$(tail -1 "$W/rs.tokens")            # for sanity checks: never reached by wrk (more tokens than requests)
ES_SPARE=$(tail -1 "$W/es.tokens")
# The same token with one signature character changed (not the last: its low bits may be padding).
BAD=$(python3 -c 'import sys; t = sys.argv[1]; i = len(t) - 20; print(t[:i] + ("A" if t[i] != "A" else "B") + t[i + 1:])' "$TOKEN")

export HAPROXY_STATE_DIR=$W/haproxy
JWT_KID=$RS_KID JWT_ROLE=$ROLE HAPROXY_THREADS=1 $PROXY_PIN bash "$PEER_DIR/start.sh" "$HA_PORT" "$UP_PORT" "$W/rs.pem" "$RS_ISS" "$AUD" >"$W/haproxy-start.log" 2>&1 \
  || { cat "$W/haproxy-start.log" >&2; bench_die "HAProxy did not start"; }
bench_on_exit "bash '$PEER_DIR/stop.sh' '$HA_PORT'"
HA_PID=$(cat "$HAPROXY_STATE_DIR/$HA_PORT/haproxy.pid")
[ -n "$PROXY_PIN" ] && taskset -a -p -c 0 "$HA_PID" >/dev/null
HA=http://127.0.0.1:$HA_PORT

# gateway_config FILE [DECISION_LOG_YAML]  (FILE under $W/config: the gateway watches its config's folder)
mkdir -p "$W/config"
gateway_config() {
  cat >"$1" <<EOF
listen: "127.0.0.1:$GW_PORT"
workers: 1
auth:
  providers:
    - name: rs
      issuer: "$RS_ISS"
      audiences: ["$AUD"]
      algorithms: [RS256]
      claims_mapper: { plugin: builtin:oidc-claims-mapper, settings: { tenant-claim: tenant } }
    - name: es
      issuer: "$ES_ISS"
      audiences: ["$AUD"]
      algorithms: [ES256]
      claims_mapper: { plugin: builtin:oidc-claims-mapper, settings: { tenant-claim: tenant } }
policy:
  classifier:
    plugin: builtin:default-classifier
    settings:
      methods:
        - { match: "/public", class: unauthenticated }
        - { match: "/public/*", class: unauthenticated }
        - { match: "/*", class: bearer }
  authorizer:
    plugin: builtin:rbac-authorizer
    settings: { admin-role: "$ROLE", user-role: "" }
routes:
  - name: upstream
    match: { path_prefix: / }
    upstream: "http://127.0.0.1:$UP_PORT"
${2:-}
EOF
}
gateway_config "$W/config/gateway.yaml"
bench_start_gateway "$W/config/gateway.yaml" "$W/gateway.log" "${PROXY_PIN:+0}"
GW_PID=$BENCH_PID; GW=$BENCH_GW_URL
sleep 1
RSS_IDLE=$(bench_rss_mib "$GW_PID")

echo "upstream: nginx $UP (CPU 1); HAProxy $HA pid $HA_PID; wasmgate $GW pid $GW_PID (both CPU 0)"
echo "load:     wrk -t1 -c$CONNS -d${DURATION}s, h2load -c16 -m8 -D $DURATION (CPU 1)"
echo

# ---- rows ----
distinct_lua() { # TOKEN_FILE LUA_FILE: each request the next token of the file, its first line skipped
  cat >"$2" <<EOF
local tokens = {}
local first = true
for line in io.lines("$1") do
  if first then first = false else tokens[#tokens + 1] = line end
end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", "/api/x", { ["Authorization"] = "Bearer " .. tokens[i] })
end
EOF
}
distinct_lua "$W/rs.tokens" "$W/rs.lua"
distinct_lua "$W/es.tokens" "$W/es.lua"

printf '%-34s | %27s | %27s | %s\n' "" "wasmgate" "HAProxy 2.6" ""
printf '%-34s | %9s %8s %8s | %9s %8s %8s | %s\n' "path" "req/s" "p50 ms" "p99 ms" "req/s" "p50 ms" "p99 ms" "ratio"

# check_row LABEL EXPECT: after a row, its answers must be all 2xx (EXPECT=200) or all errors (401).
NOTES=()
check_row() {
  local label=$1 expect=$2
  if [ "$ROW_ERRORS" != 0 ]; then NOTES+=("$label: $ROW_ERRORS socket errors"); fi
  if [ "$expect" = 200 ] && [ "$ROW_BAD" != 0 ]; then
    NOTES+=("FAIL $label: $ROW_BAD non-2xx/3xx responses of $ROW_REQUESTS"); FAILED=1
  elif [ "$expect" != 200 ] && [ "$ROW_BAD" -lt "$ROW_REQUESTS" ]; then
    NOTES+=("FAIL $label: only $ROW_BAD of $ROW_REQUESTS answers were errors, all should be $expect"); FAILED=1
  fi
  if [ "$ROW_REQUESTS" = 0 ]; then NOTES+=("FAIL $label: no request completed"); FAILED=1; fi
}
# wrk_side NAME URL EXPECT SANITY_CURL_ARGS -- WRK_ARGS: sanity request, then the row; sets S_* for the side.
wrk_side() {
  local name=$1 url=$2 expect=$3; shift 3
  local sanity=()
  while [ "$1" != -- ]; do sanity+=("$1"); shift; done; shift
  bench_expect "$expect" "$name" "${sanity[@]}" "$url"
  bench_wrk_row -t1 -c"$CONNS" -d"${DURATION}s" "$@" "$url"
  check_row "$name" "$expect"
}
# The load generators run pinned to CPU 1.
WRK_BIN=$(command -v wrk); H2LOAD_BIN=$(command -v h2load)
wrk() { $LOAD_PIN "$WRK_BIN" "$@"; }
h2load() { $LOAD_PIN "$H2LOAD_BIN" "$@"; }

row() { # LABEL GW_RPS GW_P50 GW_P99 HA_RPS HA_P50 HA_P99
  printf '%-34s | %9s %8s %8s | %9s %8s %8s | %s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$(bench_ratio "$2" "$5")"
}

# both LABEL PATH EXPECT SANITY... -- WRK_ARGS...
both() {
  local label=$1 path=$2 expect=$3; shift 3
  local args=("$@")
  wrk_side "$label (wasmgate)" "$GW$path" "$expect" "${args[@]}"
  local g=("$ROW_RPS" "$ROW_P50" "$ROW_P99")
  wrk_side "$label (HAProxy)" "$HA$path" "$expect" "${args[@]}"
  row "$label" "${g[@]}" "$ROW_RPS" "$ROW_P50" "$ROW_P99"
  LAST_GW_RPS=${g[0]}; LAST_HA_RPS=$ROW_RPS
}

both "no-auth /public/x" /public/x 200 --
both "one valid RS256 token repeated" /api/x 200 -H "Authorization: Bearer $TOKEN" -- -H "Authorization: Bearer $TOKEN"
HA_REPEATED=$LAST_HA_RPS
GW_REPEATED=$LAST_GW_RPS

wrk_side "distinct RS256 (wasmgate)" "$GW/api/x" 200 -H "Authorization: Bearer $SPARE" -- -s "$W/rs.lua"
g=("$ROW_RPS" "$ROW_P50" "$ROW_P99"); used=$ROW_REQUESTS
RSS_DISTINCT=$(bench_rss_mib "$GW_PID")
wrk_side "distinct RS256 (HAProxy)" "$HA/api/x" 200 -H "Authorization: Bearer $SPARE" -- -s "$W/rs.lua"
row "distinct RS256 tokens, each once" "${g[@]}" "$ROW_RPS" "$ROW_P50" "$ROW_P99"
for n in "$used" "$ROW_REQUESTS"; do
  [ "$n" -lt "$TOKENS" ] || NOTES+=("WARNING distinct RS256: $n requests but $TOKENS tokens: tokens were reused; raise BENCH_TOKENS")
done

both "invalid-signature flood (401)" /api/x 401 -H "Authorization: Bearer $BAD" -- -H "Authorization: Bearer $BAD"

wrk_side "distinct ES256 (wasmgate)" "$GW/api/x" 200 -H "Authorization: Bearer $ES_SPARE" -- -s "$W/es.lua"
row "distinct ES256 tokens (wasmgate)" "$ROW_RPS" "$ROW_P50" "$ROW_P99" "-" "-" "-"
[ "$ROW_REQUESTS" -lt "$TOKENS" ] || NOTES+=("WARNING distinct ES256: $ROW_REQUESTS requests but $TOKENS tokens: tokens were reused")
RSS_AFTER=$(bench_rss_mib "$GW_PID")

# h2c: HAProxy's peer bind auto-detects the HTTP/2 preface (h2c with prior knowledge); checked here.
HA_H2=$(curl -s -o /dev/null --max-time 5 -w '%{http_version} %{http_code}' --http2-prior-knowledge "$HA/public/x" || true)
GW_H2=$(curl -s -o /dev/null --max-time 5 -w '%{http_version} %{http_code}' --http2-prior-knowledge "$GW/public/x" || true)
[ "$GW_H2" = "2 200" ] || bench_die "wasmgate does not answer h2c with prior knowledge: '$GW_H2'"
h2_side() { # NAME URL H2LOAD_ARGS...
  local name=$1 url=$2; shift 2
  bench_h2load_row -c16 -m8 -D "$DURATION" "$@" "$url"
  check_row "$name" 200
}
h2_both() { # LABEL PATH H2LOAD_ARGS...
  local label=$1 path=$2; shift 2
  h2_side "$label (wasmgate)" "$GW$path" "$@"
  local g=("$ROW_RPS" "$ROW_P50" "$ROW_P99")
  if [ "$HA_H2" = "2 200" ]; then
    h2_side "$label (HAProxy)" "$HA$path" "$@"
    row "$label" "${g[@]}" "$ROW_RPS" "$ROW_P50" "$ROW_P99"
  else
    row "$label" "${g[@]}" "n/a" "-" "-"
    NOTES+=("HAProxy's frontend did not answer h2c (got '$HA_H2'): its h2c columns are skipped")
  fi
}
h2_both "h2c no-auth /public/x" /public/x
h2_both "h2c one token repeated" /api/x -H "Authorization: Bearer $TOKEN"

echo
# ---- fixed rate ----
RATE=$((HA_REPEATED * 60 / 100))
PER_CLIENT=$(( (RATE + 15) / 16 ))
if [ "$PER_CLIENT" -lt 1 ]; then PER_CLIENT=1; fi
echo "fixed rate: $((PER_CLIENT * 16)) req/s (60 % of HAProxy's repeated-token maximum), HTTP/1.1, h2load --h1 -c16 --rps $PER_CLIENT, one token repeated"
printf '%-34s | %9s %8s %8s | %s\n' "path" "req/s" "p50 ms" "p99 ms" "added p50 / p99 ms"
fixed() { # LABEL URL
  bench_h2load_row --h1 -c16 --rps "$PER_CLIENT" -D "$DURATION" -H "Authorization: Bearer $TOKEN" "$2"
  check_row "fixed rate $1" 200
}
fixed "upstream alone" "$UP/api/x"; U50=$ROW_P50; U99=$ROW_P99
printf '%-34s | %9s %8s %8s | %s\n' "upstream alone (nginx)" "$ROW_RPS" "$ROW_P50" "$ROW_P99" "-"
added() { awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN { printf "%+.2f / %+.2f", a - b, c - d }'; }
fixed "via HAProxy" "$HA/api/x"
printf '%-34s | %9s %8s %8s | %s\n' "via HAProxy" "$ROW_RPS" "$ROW_P50" "$ROW_P99" "$(added "$ROW_P50" "$U50" "$ROW_P99" "$U99")"
fixed "via wasmgate" "$GW/api/x"
printf '%-34s | %9s %8s %8s | %s\n' "via wasmgate" "$ROW_RPS" "$ROW_P50" "$ROW_P99" "$(added "$ROW_P50" "$U50" "$ROW_P99" "$U99") (added by gateway)"

# ---- decision log: sink none vs file, repeated token ----
echo
bench_stop "$GW_PID"
decision_row() { # LABEL
  bench_expect 200 "$1" -H "Authorization: Bearer $TOKEN" "$GW/api/x"
  bench_wrk_row -t1 -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" "$GW/api/x"
  check_row "decision log $1" 200
}
gateway_config "$W/config/gateway-none.yaml" "decision_log: { sink: none }"
bench_start_gateway "$W/config/gateway-none.yaml" "$W/gateway-none.log" "${PROXY_PIN:+0}"; pid=$BENCH_PID
decision_row "sink none"; NONE=("$ROW_RPS" "$ROW_P50" "$ROW_P99")
bench_stop "$pid"
gateway_config "$W/config/gateway-file.yaml" "decision_log: { sink: { file: { path: \"$W/decisions.jsonl\" } } }"
WASMGATE_LOG=info bench_start_gateway "$W/config/gateway-file.yaml" "$W/gateway-file.log" "${PROXY_PIN:+0}"; pid=$BENCH_PID
decision_row "sink file"; FILE=("$ROW_RPS" "$ROW_P50" "$ROW_P99")
bench_stop "$pid"
echo "decision log, one token repeated (log level info): file $(wc -l <"$W/decisions.jsonl" 2>/dev/null || echo 0) records"
printf '%-34s | %9s %8s %8s\n' "sink none" "${NONE[@]}"
printf '%-34s | %9s %8s %8s\n' "sink file" "${FILE[@]}"
echo "file / none: $(bench_ratio "${FILE[0]}" "${NONE[0]}")   (default config, stderr to a file, above: $GW_REPEATED req/s)"

echo
echo "wasmgate RSS: idle $RSS_IDLE MiB; after $used distinct RS256 tokens $RSS_DISTINCT MiB; after the ES256 row $RSS_AFTER MiB"
for n in "${NOTES[@]}"; do echo "note: $n"; done

if [ -f scripts/bench-config-size.sh ]; then
  echo
  WASMGATE_BIN=$WASMGATE_BIN bash scripts/bench-config-size.sh || { echo "FAIL: bench-config-size.sh failed"; FAILED=1; }
fi
if [ "$FAILED" != 0 ]; then
  echo "FAIL: some rows did not get the answers they expect (see the notes; logs: BENCH_KEEP=1 keeps $W)" >&2
  exit 1
fi
