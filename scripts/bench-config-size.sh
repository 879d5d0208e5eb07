#!/usr/bin/env bash
# What the size of the config costs (issue 13, item 6): requests/s of the
# real binary with
#   - 1 route and 1 classifier entry,
#   - 10 000 routes (and 1 classifier entry),
#   - 10 000 classifier entries (and 1 route),
# each on one path repeated, and on distinct paths (a wrk Lua script that
# gives every request a new id under the last-added route or entry: each is
# a classification-cache miss). The last-added route and entry are the ones
# hit, the worst case of a scan. Calls are `unauthenticated` (no token), so
# the rows differ only in routing and classification.
#
# The gateway runs with `workers: 1` pinned to core 0 (`taskset -a -c 0`);
# wrk (`-t1 -c16`) and the upstream, the sample driver over a Unix socket,
# share core 1.
#
# Usage: bash scripts/bench-config-size.sh [DURATION]
#   DURATION        seconds per cell (default 5)
#   WASMGATE_BIN    a wasmgate binary to use instead of building release;
#                   the sandbox-driver is taken from beside it
#                   (or SANDBOX_DRIVER_BIN), built if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5}
N=10000

for tool in wrk taskset curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    if [ "$tool" = wrk ] && [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null 2>&1
    else
      echo "$tool is required" >&2; exit 1
    fi
  fi
done
if [ "$(nproc)" -lt 2 ]; then echo "needs 2 cores (gateway on 0, wrk and upstream on 1)" >&2; exit 1; fi

if [ -n "${WASMGATE_BIN:-}" ]; then
  GATEWAY=$WASMGATE_BIN
  DRIVER=${SANDBOX_DRIVER_BIN:-$(dirname "$GATEWAY")/sandbox-driver}
  if [ ! -x "$DRIVER" ]; then
    cargo build --release -q -p sandbox-driver
    DRIVER=target/release/sandbox-driver
  fi
else
  cargo build --release -q -p wasmgate -p sandbox-driver
  GATEWAY=target/release/wasmgate
  DRIVER=target/release/sandbox-driver
fi
[ -x "$GATEWAY" ] || { echo "no wasmgate binary at $GATEWAY" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
GW=
cleanup() {
  for p in "${PIDS[@]}" $GW; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GW_PORT=$(free_port)
SOCK="$WORK/driver.sock"

taskset -c 1 "$DRIVER" --socket "$SOCK" 2>"$WORK/driver.log" & PIDS+=($!)
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "sandbox-driver did not start"; cat "$WORK/driver.log"; exit 1; }

# config ROUTES ENTRIES: routes /svc0 .. /svc{ROUTES-1}, classifier entries
# /svc0/* .. /svc{ENTRIES-1}/*, each `unauthenticated`. With one route it
# is `/` (every entry reaches the upstream); with one entry it is `/*`.
config() {
  local routes=$1 entries=$2 i
  {
    echo "listen: 127.0.0.1:$GW_PORT"
    echo "workers: 1"
    echo "policy:"
    echo "  classifier:"
    echo "    plugin: builtin:default-classifier"
    echo "    settings:"
    echo "      methods:"
    if [ "$entries" = 1 ]; then
      echo '        - { match: "/*", class: unauthenticated }'
    else
      for ((i = 0; i < entries; i++)); do
        echo "        - { match: \"/svc$i/*\", class: unauthenticated }"
      done
    fi
    echo "routes:"
    if [ "$routes" = 1 ]; then
      echo "  - { name: all, match: { path_prefix: / }, upstream: \"unix://$SOCK\" }"
    else
      for ((i = 0; i < routes; i++)); do
        echo "  - { name: r$i, match: { path_prefix: /svc$i }, upstream: \"unix://$SOCK\" }"
      done
    fi
  } >"$WORK/wasmgate.yaml"
}

wrk_rps() { # wrk args...
  taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" "$@" | awk '/Requests\/sec/ {print $2}'
}

# row NAME ROUTES ENTRIES LAST: LAST is the index of the route and entry hit.
row() {
  local name=$1 last=$4 same distinct direct via
  config "$2" "$3"
  WASMGATE_LOG=warn taskset -a -c 0 "$GATEWAY" serve --config "$WORK/wasmgate.yaml" 2>"$WORK/gateway.log" & GW=$!
  # A big config takes a moment to load.
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$GW_PORT/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$GW_PORT/readyz" >/dev/null || { echo "gateway not ready"; cat "$WORK/gateway.log"; exit 1; }
  # Sanity: the gateway hands back the upstream's own answer, not a
  # rejection of its own (both would be a 404 for this path).
  direct=$(curl -s --unix-socket "$SOCK" "http://x/svc$last/items/1")
  via=$(curl -s "http://127.0.0.1:$GW_PORT/svc$last/items/1")
  if [ "$direct" != "$via" ]; then
    echo "sanity failed for '$name': upstream said '$direct', gateway said '$via'"; cat "$WORK/gateway.log"; exit 1
  fi
  cat >"$WORK/distinct.lua" <<EOF
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/svc$last/items/" .. i)
end
EOF
  same=$(wrk_rps "http://127.0.0.1:$GW_PORT/svc$last/items/1")
  distinct=$(wrk_rps -s "$WORK/distinct.lua" "http://127.0.0.1:$GW_PORT/")
  kill "$GW"; wait "$GW" 2>/dev/null || true; GW=
  grep -E "ERROR|WARN" "$WORK/gateway.log" | head -3 || true
  printf "%-36s %14s %16s\n" "$name" "$same" "$distinct"
  echo "$same $distinct" >>"$WORK/rows"
}

echo "wrk -t1 -c16, ${DURATION}s per cell, HTTP/1.1 keep-alive; gateway workers: 1 on core 0, wrk and the sample driver on core 1"
printf "%-36s %14s %16s\n" "config" "same path" "distinct paths"
row "1 route + 1 classifier entry" 1 1 0
row "$N routes" "$N" 1 $((N - 1))
row "$N classifier entries" 1 "$N" $((N - 1))
# Each row against the first (target: >= 1/1.1 = 0.91 of it).
awk 'NR == 1 { s = $1; d = $2; next }
     { printf "ratio to the one-entry row, row %d: same %.2f, distinct %.2f\n", NR, $1 / s, $2 / d }' "$WORK/rows"
