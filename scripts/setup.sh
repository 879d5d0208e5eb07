#!/usr/bin/env bash
# Installs what a fresh machine lacks for building and testing wasmgate:
# the pinned toolchain's components and the wasm32-wasip2 target (rustup does
# not add targets to an already-installed toolchain on its own), and nginx
# (Debian's nginx-light), the real upstream the end-to-end tests put behind
# the gateway.
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
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
  else
    echo "setup: nginx is missing; install Debian's nginx-light (the e2e tests need it)" >&2
    exit 1
  fi
fi
