# Shared functions of the benchmark and soak scripts (bench-peers.sh,
# soak.sh, bench-load.sh, abuse.sh). Source it; it sets no options of its own.
#
# Processes started here are killed on exit: call bench_init once (it makes
# $BENCH_WORK, a temporary folder removed on exit, and sets the EXIT trap),
# then bench_track PID / bench_on_exit 'command' for anything else to undo.
# Functions that start a process set BENCH_PID (never call them in $(...):
# the process would belong to a subshell).
#
# Row parsers set ROW_RPS, ROW_P50, ROW_P99 (milliseconds, 2 decimals),
# ROW_REQUESTS, ROW_BAD (non-2xx/3xx responses) and ROW_ERRORS (socket
# errors: connect/read/write/timeout, or h2load's failed + errored).

BENCH_PIDS=()
BENCH_EXIT=()

bench_cleanup() {
  local i p
  for ((i = ${#BENCH_EXIT[@]} - 1; i >= 0; i--)); do eval "${BENCH_EXIT[i]}" >/dev/null 2>&1 || true; done
  for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${BENCH_PIDS[@]}"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ -n "${BENCH_WORK:-}" ] && [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$BENCH_WORK"; fi
}

# bench_init: a work folder ($BENCH_WORK) and the EXIT trap. BENCH_KEEP=1 keeps the folder.
bench_init() {
  BENCH_WORK=$(mktemp -d "${TMPDIR:-/tmp}/wasmgate-bench.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_track() { BENCH_PIDS+=("$@"); }
bench_on_exit() { BENCH_EXIT+=("$1"); }

bench_die() { echo "FAIL: $*" >&2; exit 1; }

# bench_need_tools CMD...: each command present, else installed with apt-get
# when running as root (wrk, haproxy, h2load from nghttp2-client, nginx
# from nginx-light), else an error naming the package.
bench_need_tools() {
  local cmd pkg missing=()
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 && continue
    case $cmd in
      h2load) pkg=nghttp2-client ;;
      nginx) pkg=nginx-light ;;
      taskset) pkg=util-linux ;;
      *) pkg=$cmd ;;
    esac
    missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt-get)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 \
      || bench_die "apt-get install ${missing[*]} failed"
  else
    bench_die "missing tools; install: apt-get install ${missing[*]}"
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# bench_wait_http URL [tries of 0.05 s]: until URL answers 2xx.
bench_wait_http() {
  local url=$1 tries=${2:-200}
  for _ in $(seq "$tries"); do curl -sf -o /dev/null "$url" && return 0; sleep 0.05; done
  return 1
}

# bench_status [curl args...] URL: the HTTP status code, 000 when no answer.
bench_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }

# bench_expect CODE LABEL [curl args...] URL: fail loudly unless the answer is CODE.
bench_expect() {
  local want=$1 label=$2 got; shift 2
  got=$(bench_status "$@")
  [ "$got" = "$want" ] || bench_die "sanity check '$label': expected HTTP $want, got $got"
}

# bench_pin CPU: the prefix that pins a command to CPU (empty when taskset is
# missing or the machine has a single core).
bench_pin() {
  if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -gt "$1" ]; then echo "taskset -a -c $1"; fi
}

# bench_start_issuer NAME PORT ARGS...: `$WASMGATE_BIN dev-issuer --port PORT ARGS`
# with its output in $BENCH_WORK/NAME.{out,log}; waits for its summary line,
# which comes once the tokens (--out) and the PEM (--public-key-pem) are
# written. Sets BENCH_PID, BENCH_ISSUER (the URL) and BENCH_KID.
bench_start_issuer() {
  local name=$1 port=$2; shift 2
  "$WASMGATE_BIN" dev-issuer --port "$port" "$@" >"$BENCH_WORK/$name.out" 2>"$BENCH_WORK/$name.log" &
  BENCH_PID=$!; bench_track "$BENCH_PID"
  local tries=${BENCH_ISSUER_WAIT:-6000}   # 0.1 s each: minting 150 000 RS256 tokens takes a while
  for _ in $(seq "$tries"); do
    grep -q 'DEVELOPMENT ONLY' "$BENCH_WORK/$name.log" 2>/dev/null && break
    kill -0 "$BENCH_PID" 2>/dev/null || { cat "$BENCH_WORK/$name.log" >&2; bench_die "dev-issuer $name exited"; }
    sleep 0.1
  done
  grep -q 'DEVELOPMENT ONLY' "$BENCH_WORK/$name.log" || bench_die "dev-issuer $name did not finish minting"
  BENCH_ISSUER=$(head -1 "$BENCH_WORK/$name.out")
  BENCH_KID=$(sed -n 's/.*kid=\([^,]*\),.*/\1/p' "$BENCH_WORK/$name.log" | head -1)
}

# bench_start_driver SOCKET: the sample sandbox driver ($SANDBOX_DRIVER_BIN) on a Unix socket.
bench_start_driver() {
  "$SANDBOX_DRIVER_BIN" --socket "$1" 2>"$BENCH_WORK/driver.log" &
  BENCH_PID=$!; bench_track "$BENCH_PID"
  for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
  bench_die "sandbox driver did not create $1"
}

# bench_start_nginx PORT [CPU]: nginx answering `200 ok` to every path, one
# worker, in the foreground with its own prefix under $BENCH_WORK, pinned to
# CPU when given. Keep-alive connections are never closed by request count.
bench_start_nginx() {
  local port=$1 cpu=${2:-} dir="$BENCH_WORK/nginx-$1"
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  server {
    listen 127.0.0.1:$port;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
EOF
  nginx -t -p "$dir" -c "$dir/nginx.conf" >/dev/null 2>&1 || { nginx -t -p "$dir" -c "$dir/nginx.conf"; bench_die "nginx config"; }
  $( [ -n "$cpu" ] && bench_pin "$cpu" ) nginx -p "$dir" -c "$dir/nginx.conf" 2>"$dir/logs/stderr.log" &
  BENCH_PID=$!; bench_track "$BENCH_PID"
  bench_wait_http "http://127.0.0.1:$port/" || { cat "$dir/logs/"* >&2; bench_die "nginx did not answer on $port"; }
}

# bench_start_gateway CONFIG LOG [CPU]: `$WASMGATE_BIN serve` (environment
# as the caller set it), pinned to CPU when given; waits for /readyz on the
# config's `listen:`. Sets BENCH_PID and BENCH_GW_URL.
bench_start_gateway() {
  local config=$1 log=$2 cpu=${3:-} listen
  listen=$(sed -n 's/^listen: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$config" | head -1)
  $( [ -n "$cpu" ] && bench_pin "$cpu" ) "$WASMGATE_BIN" serve --config "$config" 2>"$log" &
  BENCH_PID=$!; bench_track "$BENCH_PID"
  BENCH_GW_URL="http://$listen"
  if ! bench_wait_http "$BENCH_GW_URL/readyz" 400; then
    sed 's/\x1b\[[0-9;]*m//g' "$log" | tail -20 >&2
    bench_die "gateway not ready on $listen"
  fi
}

# bench_stop PID: stop one process started here and wait for it.
bench_stop() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}

# bench_rss_mib PID / bench_fds PID: resident memory (MiB, 1 decimal) and open fds.
bench_rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
bench_fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# bench_ms VALUE: wrk's `512.00us` / `1.20ms` / `1.02s` / `2.00m` in milliseconds.
bench_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    if (v == "") print "?"; else printf "%.2f", n }'
}

# bench_wrk_row WRK_ARGS...: runs `wrk --latency WRK_ARGS` and parses it.
# Its full output is kept in $BENCH_WORK/last-wrk.txt.
bench_wrk_row() {
  local out
  out=$(wrk --latency "$@" 2>&1) || true
  printf '%s\n' "$out" >"$BENCH_WORK/last-wrk.txt"
  bench_parse_wrk "$out"
}

# bench_parse_wrk TEXT: sets the ROW_ variables from wrk's output.
bench_parse_wrk() {
  local out=$1
  ROW_RPS=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  ROW_P50=$(bench_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  ROW_P99=$(bench_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  ROW_REQUESTS=$(awk '/requests in/ {print $1}' <<<"$out")
  ROW_BAD=$(awk '/Non-2xx or 3xx responses/ {print $NF}' <<<"$out")
  ROW_ERRORS=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out")
  ROW_RPS=${ROW_RPS:-0}; ROW_REQUESTS=${ROW_REQUESTS:-0}; ROW_BAD=${ROW_BAD:-0}; ROW_ERRORS=${ROW_ERRORS:-0}
}

# bench_h2load_row H2LOAD_ARGS...: runs `h2load --log-file ... H2LOAD_ARGS`;
# requests/s from its summary, p50/p99 from the per-request log.
bench_h2load_row() {
  local out log="$BENCH_WORK/h2load.log"
  rm -f "$log"
  out=$(h2load --log-file="$log" "$@" 2>&1) || true
  printf '%s\n' "$out" >"$BENCH_WORK/last-h2load.txt"
  ROW_RPS=$(awk '/^finished in/ {gsub(",", ""); printf "%.0f", $4}' <<<"$out")
  ROW_REQUESTS=$(awk '/^requests:/ {print $8}' <<<"$out")   # succeeded
  ROW_ERRORS=$(awk '/^requests:/ {print $10 + $12 + $14}' <<<"$out")   # failed + errored + timeout
  ROW_BAD=$(awk '/^status codes:/ {gsub(",", ""); print $7 + $9}' <<<"$out")   # 4xx + 5xx
  read -r ROW_P50 ROW_P99 < <(bench_percentiles "$log" 3 0.001)
  ROW_RPS=${ROW_RPS:-0}; ROW_REQUESTS=${ROW_REQUESTS:-0}; ROW_BAD=${ROW_BAD:-0}; ROW_ERRORS=${ROW_ERRORS:-0}
}

# bench_percentiles FILE COLUMN SCALE: "p50 p99" of a numeric column, times SCALE, 2 decimals.
bench_percentiles() {
  if [ ! -s "$1" ]; then echo "? ?"; return; fi
  cut -f"$2" "$1" | sort -n | awk -v s="$3" '{ v[NR] = $1 } END {
    if (NR == 0) { print "? ?"; exit }
    i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
    i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
    printf "%.2f %.2f\n", v[i50] * s, v[i99] * s }'
}

# bench_ratio A B: A/B with 2 decimals and an x, or "-" when either is missing or 0.
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "-" }'; }

# bench_header TITLE: date, cores, CPU, kernel and tool versions.
bench_header() {
  echo "== $1"
  echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "machine:  $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), kernel $(uname -r)"
  echo "wasmgate: $("$WASMGATE_BIN" --version 2>/dev/null | head -1) ($WASMGATE_BIN)"
  if command -v haproxy >/dev/null 2>&1; then echo "haproxy:  $(haproxy -v 2>/dev/null | head -1)"; fi
  if command -v nginx >/dev/null 2>&1; then echo "nginx:    $(nginx -v 2>&1 | head -1)"; fi
  echo "load:     $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); $(h2load --version 2>/dev/null | head -1)"
}

# bench_release_bin: sets WASMGATE_BIN (default: a release build of this
# checkout, built when missing or older than the sources) and
# SANDBOX_DRIVER_BIN beside it unless given.
bench_release_bin() {
  if [ -z "${WASMGATE_BIN:-}" ]; then
    cargo build --release -q -p wasmgate ${1:+-p "$1"}
    WASMGATE_BIN=$PWD/target/release/wasmgate
  fi
  [ -x "$WASMGATE_BIN" ] || bench_die "WASMGATE_BIN=$WASMGATE_BIN is not an executable"
  SANDBOX_DRIVER_BIN=${SANDBOX_DRIVER_BIN:-$(dirname "$WASMGATE_BIN")/sandbox-driver}
}
