#!/usr/bin/env bash
# The whole test suite: the host (unit tests and end-to-end tests against
# the real binary, a real JWKS server and the real sample driver), the
# sample driver, and the policy components' decision logic. Ends with one
# summary line over every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
cargo test --manifest-path plugins/Cargo.toml --locked -p wasmgate-policy-common --lib \
  --target-dir target/plugins-test 2>&1 | tee -a "$log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
