#!/usr/bin/env bash
# Installs what a fresh machine lacks for building and testing wasmgate:
# the pinned toolchain's components and the wasm32-wasip2 target (rustup does
# not add targets to an already-installed toolchain on its own).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v rustup >/dev/null 2>&1; then
  rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
  installed=$(rustup target list --installed)
  grep -qx wasm32-wasip2 <<<"$installed" || rustup target add wasm32-wasip2
  components=$(rustup component list --installed)
  for c in rustfmt clippy; do
    grep -q "^$c" <<<"$components" || rustup component add "$c"
  done
fi
