//! Builds the policy components in `plugins/` for `wasm32-wasip2` and puts
//! them in `OUT_DIR`, where `src/plugins/builtin.rs` embeds the defaults and
//! the tests find the fixtures.
//!
//! The components are a separate cargo workspace with its own target
//! directory under this build's target directory, so the nested cargo never
//! waits on the outer one's lock. If `rustup` is present and the target is
//! missing, it is installed first: a fresh machine needs nothing by hand.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const ARTIFACTS: &[&str] = &[
    "default_classifier",
    "oidc_claims_mapper",
    "rbac_authorizer",
    "default_credential_policy",
    "misbehaving_authorizer",
    "wrong_world",
    "versioned_mapper",
    "trap_on_instantiate",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ lives in the workspace root").to_path_buf();
    let plugins = root.join("plugins");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed={}", plugins.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", plugins.join("Cargo.lock").display());
    for entry in walk(&plugins) {
        println!("cargo:rerun-if-changed={}", entry.display());
    }
    println!("cargo:rerun-if-env-changed=WASMGATE_PLUGINS_TARGET_DIR");

    ensure_target();

    // <workspace target>/plugins, derived from OUT_DIR
    // (<target>/<profile>/build/wasmgate-<hash>/out).
    let target_dir = env::var_os("WASMGATE_PLUGINS_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        out_dir.ancestors().nth(4).map(|t| t.join("plugins")).unwrap_or_else(|| out_dir.join("plugins-target"))
    });

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&plugins);
    // The outer build's settings must not leak into the guest build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME"
            || key == "RUSTFLAGS"
            || key == "RUSTC_WRAPPER"
            || key == "RUSTC_WORKSPACE_WRAPPER"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd.status().expect("failed to run cargo for the plugins workspace");
    assert!(status.success(), "building the policy components in plugins/ failed (see the output above)");

    let built = target_dir.join(TARGET).join("release");
    let dest = out_dir.join("components");
    std::fs::create_dir_all(&dest).expect("create OUT_DIR/components");
    for name in ARTIFACTS {
        let from = built.join(format!("{name}.wasm"));
        let to = dest.join(format!("{name}.wasm"));
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
    println!("cargo:rustc-env=WASMGATE_COMPONENTS_DIR={}", dest.display());
}

/// Installs the wasm32-wasip2 target through rustup when it is missing.
fn ensure_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot.is_some_and(|s| s.join("lib/rustlib").join(TARGET).exists());
    if installed {
        return;
    }
    let ok = Command::new("rustup").args(["target", "add", TARGET]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "the {TARGET} target is missing and `rustup target add {TARGET}` failed");
}

/// The entries of `dir` but build output; cargo scans listed directories recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        out.push(path);
    }
    out
}
