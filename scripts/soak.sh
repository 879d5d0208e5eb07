#!/usr/bin/env bash
# Soak of the real binary: MINUTES at 60 % of a quickly measured maximum
# (or SOAK_RPS), every request with a bearer token, half of them one repeated
# token and half the next of a pool of distinct tokens (SOAK_POOL, cycled from
# a random offset each window), with
#   - a policy swap every SOAK_SWAP_SECONDS (60): the config file is replaced
#     (written beside, then renamed) with the rbac-authorizer's settings
#     switched between two variants that both allow the token; the script
#     checks that the policy generation in /admin/status moved on;
#   - a key rotation halfway: SIGHUP to the dev issuer, which signs with a new
#     key from then on (the JWKS keeps the old one) and writes the pool again,
#     so the second half presents a kid the gateway has not seen yet.
# Load is `wrk` in windows of SOAK_WINDOW seconds (10), paced by wrk's Lua
# `delay()` and the connection count (adjusted after each window to hold the
# rate). After each window it samples the gateway's RSS, its open file
# descriptors (in the middle of the window), the window's p50/p99 and its
# errors. It fails on any error (a non-2xx/3xx answer or a socket error), on
# RSS above SOAK_RSS_LIMIT_MIB (default: idle RSS + SOAK_CACHE_MIB, 96: what
# the caches may hold), on open fds above idle + 2 per client connection (its
# own and a pooled upstream one) + SOAK_FD_SLACK (16), on idle fds after the
# load (once the upstream pool has reaped its idle connections, 90–180 s) above idle
# fds before + SOAK_FD_SLACK, or
# on a policy swap that was not applied. Not part of CI.
#
# Usage: bash scripts/soak.sh [MINUTES]   (default 30)
# Environment: WASMGATE_BIN (default: cargo build --release), SOAK_RPS,
# SOAK_POOL (10000), SOAK_SWAP_SECONDS, SOAK_WINDOW, SOAK_CACHE_MIB,
# SOAK_RSS_LIMIT_MIB, SOAK_FD_SLACK, SOAK_ALG (RS256 or ES256), BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh

MINUTES=${1:-30}
WINDOW=${SOAK_WINDOW:-10}
SWAP_SECONDS=${SOAK_SWAP_SECONDS:-60}
POOL=${SOAK_POOL:-10000}
ALG=${SOAK_ALG:-RS256}
FD_SLACK=${SOAK_FD_SLACK:-16}
AUD=https://gateway.test/api
TOTAL=$((MINUTES * 60))
[ "$TOTAL" -ge "$WINDOW" ] || bench_die "MINUTES must be at least one window ($WINDOW s)"

bench_need_tools wrk nginx curl python3
bench_release_bin
bench_init
W=$BENCH_WORK
GW_CPU=; LOAD_PIN=
if [ -n "$(bench_pin 1)" ]; then GW_CPU=0; LOAD_PIN=$(bench_pin 1); fi
WRK_BIN=$(command -v wrk)
wrk() { $LOAD_PIN "$WRK_BIN" "$@"; }

UP_PORT=$(free_port); GW_PORT=$(free_port); ADMIN_PORT=$(free_port); ISS_PORT=$(free_port)
bench_header "soak: ${MINUTES} min, windows of ${WINDOW}s, policy swap every ${SWAP_SECONDS}s, key rotation at $((TOTAL / 2))s"

bench_start_nginx "$UP_PORT" "${LOAD_PIN:+1}"
bench_start_issuer issuer "$ISS_PORT" --alg "$ALG" --tokens "$((POOL + 1))" --out "$W/tokens" \
  --audience "$AUD" --role admin --sub soak --ttl "$((MINUTES + 60))m"
ISS=$BENCH_ISSUER; ISS_PID=$BENCH_PID
echo "tokens:   $((POOL + 1)) $ALG, kid $BENCH_KID ($(sed -n 's/.*\(minted in [0-9.]* s\).*/\1/p' "$W/issuer.log"))"

# config VARIANT: the gateway config, authorizer settings variant a or b
# (both allow the role admin), written beside and renamed into place.
config() {
  local settings
  if [ "$1" = a ]; then settings='{ admin-role: admin, user-role: "" }'
  else settings='{ admin-role: admin, user-role: user, admin-methods: ["/admin-only/*"] }'; fi
  mkdir -p "$W/config"   # a folder of its own: the gateway watches the config's folder
  cat >"$W/config/.gateway.yaml.tmp" <<EOF
listen: "127.0.0.1:$GW_PORT"
workers: 1
admin:
  listen: "127.0.0.1:$ADMIN_PORT"
decision_log: { sink: none }
auth:
  providers:
    - name: dev
      issuer: "$ISS"
      audiences: ["$AUD"]
      algorithms: [$ALG]
      claims_mapper: { plugin: builtin:oidc-claims-mapper, settings: { tenant-claim: tenant } }
policy:
  classifier:
    plugin: builtin:default-classifier
    settings:
      methods:
        - { match: "/*", class: bearer }
  authorizer:
    plugin: builtin:rbac-authorizer
    settings: $settings
routes:
  - name: upstream
    match: { path_prefix: / }
    upstream: "http://127.0.0.1:$UP_PORT"
EOF
  mv "$W/config/.gateway.yaml.tmp" "$W/config/gateway.yaml"
}
generation() { curl -s --max-time 2 "http://127.0.0.1:$ADMIN_PORT/admin/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])' 2>/dev/null || echo "?"; }

config a
VARIANT=a
WASMGATE_LOG=warn bench_start_gateway "$W/config/gateway.yaml" "$W/gateway.log" "$GW_CPU"
GW_PID=$BENCH_PID; GW=$BENCH_GW_URL
bench_expect 200 "a pool token" -H "Authorization: Bearer $(sed -n 2p "$W/tokens")" "$GW/api/x"
sleep 1
RSS_IDLE=$(bench_rss_mib "$GW_PID"); FDS_IDLE=$(bench_fds "$GW_PID")
RSS_LIMIT=${SOAK_RSS_LIMIT_MIB:-$(awk -v i="$RSS_IDLE" -v c="${SOAK_CACHE_MIB:-96}" 'BEGIN { printf "%.0f", i + c }')}

# mixed_lua FILE DELAY_MS: every other request the repeated token (line 1),
# the others the next pool token from a random offset; DELAY_MS > 0 paces
# each connection.
mixed_lua() {
  local start=$((RANDOM * 32768 + RANDOM))
  {
    cat <<EOF
local tokens = {}
for line in io.lines("$W/tokens") do tokens[#tokens + 1] = line end
local repeated = tokens[1]
local i = $start % #tokens
local n = 0
request = function()
  n = n + 1
  local t = repeated
  if n % 2 == 1 then
    i = i % (#tokens - 1) + 1
    t = tokens[i + 1]
  end
  return wrk.format("GET", "/api/x", { ["Authorization"] = "Bearer " .. t })
end
EOF
    if [ "$2" -gt 0 ]; then echo "delay = function() return $2 end"; fi
  } >"$1"
}

if [ -n "${SOAK_RPS:-}" ]; then
  RATE=$SOAK_RPS
  echo "rate:     $RATE req/s (SOAK_RPS)"
else
  mixed_lua "$W/max.lua" 0
  bench_wrk_row -t1 -c16 -d5s -s "$W/max.lua" "$GW/api/x"
  [ "$ROW_BAD" = 0 ] && [ "$ROW_ERRORS" = 0 ] || { cat "$W/last-wrk.txt"; bench_die "errors while measuring the maximum"; }
  RATE=$((ROW_RPS * 60 / 100))
  echo "rate:     $RATE req/s = 60 % of the measured maximum $ROW_RPS req/s (wrk -c16, 5 s, mixed tokens)"
fi
[ "$RATE" -ge 1 ] || bench_die "rate must be at least 1 req/s"
CONNS=$(( (RATE + 499) / 500 )); [ "$CONNS" -le 64 ] || CONNS=64
DELAY=$(awk -v c="$CONNS" -v r="$RATE" 'BEGIN { d = int(c * 1000 / r + 0.5); if (d < 1) d = 1; print d }')
echo "gateway:  $GW pid $GW_PID (workers 1${GW_CPU:+, CPU 0}); idle RSS $RSS_IDLE MiB, $FDS_IDLE fds; RSS limit $RSS_LIMIT MiB"
echo

printf '%6s %-14s %5s %8s %8s %8s %7s %8s %5s %4s\n' "t s" "event" "conns" "req/s" "p50 ms" "p99 ms" "errors" "RSS MiB" "fds" "gen"
FAILS=()
FD_LIMIT=
ROTATED=0
P99_MAX=0; RSS_MAX=0; REQUESTS=0
for ((t = 0; t + WINDOW <= TOTAL; t += WINDOW)); do
  event=
  if [ "$t" -gt 0 ] && [ $((t % SWAP_SECONDS)) -lt "$WINDOW" ] && [ $((t / SWAP_SECONDS)) -gt 0 ]; then
    before=$(generation)
    if [ "$VARIANT" = a ]; then VARIANT=b; else VARIANT=a; fi
    config "$VARIANT"
    for _ in $(seq 50); do [ "$(generation)" != "$before" ] && break; sleep 0.1; done
    if [ "$(generation)" = "$before" ]; then
      FAILS+=("t=$t: the policy swap to variant $VARIANT was not applied (generation still $before)")
      event="swap FAILED"
    else
      event="swap->$VARIANT"
    fi
  fi
  if [ "$ROTATED" = 0 ] && [ "$t" -ge $((TOTAL / 2)) ]; then
    ROTATED=1
    kill -HUP "$ISS_PID"
    for _ in $(seq 600); do grep -q 'rotated' "$W/issuer.log" && break; sleep 0.1; done
    grep -q 'rotated' "$W/issuer.log" || bench_die "the dev issuer did not rotate its key"
    event="${event:+$event+}rotate"
  fi
  mixed_lua "$W/window.lua" "$DELAY"
  wrk --latency -t1 -c"$CONNS" -d"${WINDOW}s" --timeout 5s -s "$W/window.lua" "$GW/api/x" >"$W/window.txt" 2>&1 &
  wpid=$!
  sleep "$(awk -v w="$WINDOW" 'BEGIN { print w / 2 }')"
  fds=$(bench_fds "$GW_PID")
  wait "$wpid" || true
  bench_parse_wrk "$(cat "$W/window.txt")"
  rss=$(bench_rss_mib "$GW_PID")
  errors=$((ROW_BAD + ROW_ERRORS))
  REQUESTS=$((REQUESTS + ROW_REQUESTS))
  printf '%6s %-14s %5s %8s %8s %8s %7s %8s %5s %4s\n' "$t" "${event:--}" "$CONNS" "$ROW_RPS" "$ROW_P50" "$ROW_P99" "$errors" "$rss" "$fds" "$(generation)"
  kill -0 "$GW_PID" 2>/dev/null || { FAILS+=("t=$t: the gateway exited"); break; }
  [ "$errors" = 0 ] || { FAILS+=("t=$t: $ROW_BAD non-2xx/3xx answers, $ROW_ERRORS socket errors"); cp "$W/window.txt" "$W/window-$t.txt"; }
  [ "$ROW_REQUESTS" -gt 0 ] || FAILS+=("t=$t: no request completed")
  awk -v r="$rss" -v l="$RSS_LIMIT" 'BEGIN { exit !(r + 0 > l + 0) }' && FAILS+=("t=$t: RSS $rss MiB above the limit $RSS_LIMIT MiB")
  # Each client connection holds one fd and may hold one pooled upstream
  # connection: the limit follows the connection count, so a leak shows as
  # fds beyond idle + 2 per connection, not as the pacing opening more.
  FD_LIMIT=$((FDS_IDLE + 2 * CONNS + FD_SLACK))
  [ "$fds" -le "$FD_LIMIT" ] || FAILS+=("t=$t: $fds open fds, above $FD_LIMIT (idle $FDS_IDLE + 2 x $CONNS connections + $FD_SLACK)")
  P99_MAX=$(awk -v a="$P99_MAX" -v b="$ROW_P99" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
  RSS_MAX=$(awk -v a="$RSS_MAX" -v b="$rss" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
  # Hold the rate: more connections when short of it, fewer when over.
  CONNS=$(awk -v c="$CONNS" -v r="$RATE" -v a="$ROW_RPS" 'BEGIN {
    if (a + 0 > 0 && a < 0.95 * r) c = int(c * r / a) + 1
    else if (a > 1.05 * r) c = int(c * r / a)
    if (c < 1) c = 1; if (c > 256) c = 256; print c }')
done

# Idle upstream connections stay pooled for the pool's idle timeout (90 s);
# hyper's pool reaps them on a timer of that period, so up to 180 s: wait
# for them to close before comparing with the idle count.
FDS_END=$(bench_fds "$GW_PID")
for _ in $(seq 200); do
  [ "$FDS_END" -le $((FDS_IDLE + FD_SLACK)) ] && break
  sleep 1; FDS_END=$(bench_fds "$GW_PID")
done
RSS_END=$(bench_rss_mib "$GW_PID")
[ "$FDS_END" -le $((FDS_IDLE + FD_SLACK)) ] || FAILS+=("idle fds 200 s after the load: $FDS_END, before: $FDS_IDLE")
echo
echo "summary: $REQUESTS requests in $((TOTAL / WINDOW)) windows at ~$RATE req/s; worst window p99 $P99_MAX ms"
echo "         RSS idle $RSS_IDLE MiB, max $RSS_MAX MiB, idle after $RSS_END MiB (limit $RSS_LIMIT MiB)"
echo "         fds idle $FDS_IDLE, under load at most idle + 2 per connection + $FD_SLACK, idle after (pool drained) $FDS_END"
echo "         key rotations: $(grep -c rotated "$W/issuer.log" || true); JWKS fetch and reload lines in the gateway log:"
sed 's/\x1b\[[0-9;]*m//g' "$W/gateway.log" | grep -E 'WARN|ERROR' | cut -c1-200 | sort | uniq -c | sort -rn | head -5 || true
if [ ${#FAILS[@]} -gt 0 ]; then
  for f in "${FAILS[@]}"; do echo "FAIL: $f"; done
  exit 1
fi
echo "PASS"
