#!/usr/bin/env bash
# The whole test suite: the host (unit tests and end-to-end tests against
# the real binary, a real JWKS server and the real sample driver), the
# sample driver, and the policy components' decision logic.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --locked
cargo test --manifest-path plugins/Cargo.toml --locked -p wasmgate-policy-common --target-dir target/plugins-test
