#!/usr/bin/env bash
# The whole test suite: the host (unit tests and end-to-end tests against
# the real binary, a real JWKS server and the real sample driver), the
# sample driver, the policy components' decision logic and the plugin SDK,
# and the three example plugins (Rust, JavaScript, Python) built from source
# and run against their golden cases with `wasmgate plugin test`. Ends with
# one summary line over every test binary and cases file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
cargo test --manifest-path plugins/Cargo.toml --locked -p wasmgate-policy-common -p wasmgate-plugin-sdk --lib \
  --target-dir target/plugins-test 2>&1 | tee -a "$log"
bash scripts/build-examples.sh 2>&1 | tee -a "$log"
cargo build --locked -q -p wasmgate
for wasm in target/example-plugins/*.wasm; do
  out=$(target/debug/wasmgate plugin test "$wasm") && rc=0 || rc=$?
  printf '%s\n' "$out" | tee -a "$log"
  # Counted like a test binary in the summary below.
  printf '%s\n' "$out" | awk -v rc="$rc" '/^[0-9]+ passed, [0-9]+ failed/ { printf "test result: %s. %d passed; %d failed\n", rc == 0 ? "ok" : "FAILED", $1, $3; found = 1 }
    END { if (!found) print "test result: FAILED. 0 passed; 1 failed" }' | tee -a "$log"
done
status=0
grep -q '^test result: FAILED' "$log" && status=1
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit $status
