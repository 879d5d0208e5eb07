#!/usr/bin/env bash
# Builds wasmgate's default policy components (plugins/) for wasm32-wasip2,
# the same way host/build.rs does, and lists the resulting components.
#
#   scripts/build-plugins.sh           build into plugins/target
#   scripts/build-plugins.sh --check   also run fmt, clippy and the unit tests
#   TARGET_DIR=/some/dir scripts/build-plugins.sh
set -euo pipefail

cd "$(dirname "$0")/.."
manifest=plugins/Cargo.toml
target_dir=${TARGET_DIR:-plugins/target}

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

if [[ ${1:-} == --check ]]; then
    cargo fmt --manifest-path "$manifest" --all --check
    cargo clippy --manifest-path "$manifest" --target wasm32-wasip2 --all-targets \
        --target-dir "$target_dir" -- -D warnings
    cargo test --manifest-path "$manifest" -p wasmgate-policy-common \
        --target-dir "$target_dir"
fi

cargo build --release --target wasm32-wasip2 --manifest-path "$manifest" \
    --target-dir "$target_dir"

out="$target_dir/wasm32-wasip2/release"
status=0
for name in default_classifier oidc_claims_mapper rbac_authorizer \
    default_credential_policy misbehaving_authorizer wrong_world; do
    if [[ -f "$out/$name.wasm" ]]; then
        printf '%8d  %s\n' "$(stat -c %s "$out/$name.wasm")" "$out/$name.wasm"
    else
        echo "missing: $out/$name.wasm" >&2
        status=1
    fi
done
exit "$status"
