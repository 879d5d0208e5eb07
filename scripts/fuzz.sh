#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for SECONDS each (default 60), one
# after the other, and prints per target: executions, crashes, corpus size.
# Exits non-zero when any target crashed (a crash is a failed property or a
# panic; the input is saved under fuzz/artifacts/TARGET/).
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Environment:
#   FUZZ_TARGETS      the targets to run, space-separated (default: all)
#   FUZZ_MERGE=1      afterwards, minimize each target's corpus into
#                     fuzz/corpus/TARGET (what is committed)
#   FUZZ_TARGET_DIR   cargo target dir of the instrumented build (default
#                     ~/.cache/wasmgate/fuzz-target, kept across clones so a
#                     fresh clone only rebuilds the wasmgate crate)
#
# Uses cargo-fuzz with the pinned stable toolchain and `--sanitizer none`
# (no nightly needed), installing cargo-fuzz from crates.io if missing.
# See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-60}
all="jws canonical_path identity_headers jwks config golden_cases revoked credentials"
read -r -a targets <<<"${FUZZ_TARGETS:-$all}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi
# The fuzz crate resolves its dependencies exactly as the workspace does:
# its lock file is the workspace's (plus libfuzzer-sys, pinned in
# fuzz/Cargo.toml), so it is derived here rather than committed.
cp Cargo.lock fuzz/Cargo.lock
cargo metadata --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/wasmgate/fuzz-target}
# The policy components embedded by host/build.rs do not depend on these
# flags: reuse the workspace build's when there is one.
export WASMGATE_PLUGINS_TARGET_DIR=${WASMGATE_PLUGINS_TARGET_DIR:-$root/target/plugins}
# Release, debug assertions, no sanitizer (stable); 16 codegen units keep a
# cold build of wasmtime and friends within a few minutes on two cores.
build=(-O -a -s none --codegen-units 16)

start=$(date +%s)
cargo fuzz build "${build[@]}"
built=$(date +%s)
echo "fuzz: built ${#targets[@]} targets in $((built - start)) s"
# Run the binaries just built (not `cargo fuzz run`, which would rebuild
# whenever a source file changed meanwhile).
bin=$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release

work=fuzz/work
mkdir -p "$work"
failed=0
total_execs=0
total_crashes=0
rows=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="$work/$t.log"
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  rc=0
  "$bin/$t" "$work/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -artifact_prefix="fuzz/artifacts/$t/" \
    -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs=${execs:-0}
  corpus=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  after=$(find "fuzz/artifacts/$t" -type f | wc -l)
  crashes=$((after - before))
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1 # failed without an artifact (e.g. the build): count it
  fi
  if [ "$crashes" -ne 0 ]; then
    failed=1
    grep -E "panicked|SUMMARY|ERROR|Test unit written" "$log" | head -5 >&2 || true
  fi
  total_execs=$((total_execs + execs))
  total_crashes=$((total_crashes + crashes))
  rows+=("$(printf '%-18s %12s %8s %8s' "$t" "$execs" "$crashes" "$corpus")")
  printf 'fuzz: %-18s executions %-10s crashes %-3s corpus %-6s (%s s, log %s)\n' \
    "$t" "$execs" "$crashes" "$corpus" "$secs" "$log"
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    merged="$work/$t.merged"
    rm -rf "$merged" && mkdir -p "$merged"
    "$bin/$t" -merge=1 -timeout=10 -max_len=65536 "$merged" "fuzz/corpus/$t" "$work/$t" \
      >"$work/$t.merge.log" 2>&1
    rm -rf "fuzz/corpus/$t" && mv "$merged" "fuzz/corpus/$t"
  fi
done

echo
printf '%-18s %12s %8s %8s\n' target executions crashes corpus
for r in "${rows[@]}"; do echo "$r"; done
printf '%-18s %12s %8s\n' TOTAL "$total_execs" "$total_crashes"
echo "fuzz: ${#targets[@]} targets x ${secs} s, $(($(date +%s) - start)) s in all (build $((built - start)) s)"
exit "$failed"
