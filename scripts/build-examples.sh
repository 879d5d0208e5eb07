#!/usr/bin/env bash
# Builds the example policy components in examples/plugins/ and puts each,
# with its golden cases file, in target/example-plugins/:
#   tenant_claims_mapper.wasm  (Rust, wasmgate-plugin-sdk)
#   js_authorizer.wasm         (JavaScript, componentize-js)
#   py_classifier.wasm         (Python, componentize-py)
# plus NAME.cases.yaml beside each, for `wasmgate plugin test`.
#
# Needs rustup/cargo, Node 20 + npm and Python 3.11 + pip. Installs what else
# it needs: the wasm32-wasip2 target, the JS example's node_modules (npm ci)
# and a venv with the pinned componentize-py in target/venv-componentize.
# Work whose inputs did not change since the last run is skipped.
#
#   scripts/build-examples.sh            build all three
#   PYTHON=python3.11 scripts/build-examples.sh
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/example-plugins
stamps=$out/.stamps
python=${PYTHON:-python3}
mkdir -p "$out" "$stamps"

# A digest of the named files (missing files count as empty).
digest() {
    local f
    for f in "$@"; do
        printf '%s\n' "$f"
        if [[ -f $f ]]; then sha256sum <"$f"; fi
    done | sha256sum | cut -d' ' -f1
}

# up_to_date NAME DIGEST ARTIFACT: true if ARTIFACT exists and NAME's stamp
# holds DIGEST.
up_to_date() {
    [[ -f $3 && -f $stamps/$1 && $(cat "$stamps/$1") == "$2" ]]
}

report() {
    printf '%10d  %s\n' "$(stat -c %s "$1")" "${1#"$root"/}"
}

# --- Rust: tenant-claims-mapper (cargo does its own up-to-date checks) -------
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
ex=examples/plugins/tenant-claims-mapper
cargo build --quiet --release --target wasm32-wasip2 --manifest-path "$ex/Cargo.toml" \
    --target-dir "$root/target/example-plugins-cargo"
cp "$root/target/example-plugins-cargo/wasm32-wasip2/release/tenant_claims_mapper.wasm" "$out/"
cp "$ex/tenant_claims_mapper.cases.yaml" "$out/"

# --- JavaScript: js-authorizer ---------------------------------------------------
ex=examples/plugins/js-authorizer
deps=$(digest "$ex/package.json" "$ex/package-lock.json")
if [[ ! -d $ex/node_modules || ! -f $stamps/js-deps || $(cat "$stamps/js-deps") != "$deps" ]]; then
    (cd "$ex" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$deps" >"$stamps/js-deps"
fi
src=$(digest "$ex/authorizer.js" "$ex/package.json" "$ex/package-lock.json" wit/policy.wit)
if ! up_to_date js "$src" "$out/js_authorizer.wasm"; then
    # Every WASI feature componentize-js can drop is dropped: the gateway
    # links only an empty WASI.
    (cd "$ex" && ./node_modules/.bin/componentize-js authorizer.js --wit ../../../wit \
        --world-name authorizer-plugin --disable stdio random clocks http fetch-event \
        --out "$out/js_authorizer.wasm" >/dev/null)
    echo "$src" >"$stamps/js"
fi
cp "$ex/js_authorizer.cases.yaml" "$out/"

# --- Python: py-classifier -------------------------------------------------------
ex=examples/plugins/py-classifier
venv=$root/target/venv-componentize
deps=$(digest "$ex/requirements.txt")
if [[ ! -x $venv/bin/componentize-py || ! -f $stamps/py-deps || $(cat "$stamps/py-deps") != "$deps" ]]; then
    [[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$ex/requirements.txt"
    echo "$deps" >"$stamps/py-deps"
fi
src=$(digest "$ex/app.py" "$ex/requirements.txt" wit/policy.wit)
if ! up_to_date py "$src" "$out/py_classifier.wasm"; then
    (cd "$ex" && "$venv/bin/componentize-py" -d ../../../wit -w classifier-plugin \
        componentize app -o "$out/py_classifier.wasm" >/dev/null)
    echo "$src" >"$stamps/py"
fi
cp "$ex/py_classifier.cases.yaml" "$out/"

for name in tenant_claims_mapper js_authorizer py_classifier; do
    report "$out/$name.wasm"
done
