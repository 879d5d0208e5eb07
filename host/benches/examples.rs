//! Per-call latency of the three example plugins (Rust claims-mapper,
//! JavaScript authorizer, Python classifier), side by side in one run, each
//! on one of its own golden cases with instance reuse as in the gateway
//! (the case's check is included and costs well under a microsecond).
//! Also prints each component's size and its load time (compile, link,
//! type-check, instantiate once), which is what a hot swap of it costs
//! without the precompile cache.
//!
//! Needs the examples built: `bash scripts/build-examples.sh`, then
//! `cargo bench -p wasmgate --bench examples`. `WASMGATE_EXAMPLES_DIR`
//! overrides `target/example-plugins`.

use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use wasmgate::config::PluginsConfig;
use wasmgate::plugins::{CaseFile, PluginEngine, cases_path_for};

const EXAMPLES: &[(&str, &str, &str)] = &[
    ("rust tenant-claims-mapper", "tenant_claims_mapper", "acme keycloak token gets the acme tenant and realm roles"),
    ("js authorizer", "js_authorizer", "user reads a resource of their own tenant"),
    ("python classifier", "py_classifier", "longest prefix wins"),
];

fn dir() -> PathBuf {
    std::env::var_os("WASMGATE_EXAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/example-plugins"))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // 64 MiB: garbage-collected guests start at 9 (JS) and 12 MiB (Python)
    // of linear memory, and an instance that grows past 3/4 of the cap is
    // not reused. The Python classifier is also measured at the 16 MiB
    // default, where that makes every call a fresh instance.
    let roomy = PluginsConfig { max_memory_bytes: 64 << 20, ..PluginsConfig::default() };
    let engines = [
        ("64 MiB", PluginEngine::new(&roomy).expect("engine")),
        ("16 MiB default", PluginEngine::new(&PluginsConfig::default()).expect("engine")),
    ];
    let mut group = c.benchmark_group("example-plugins");
    let runs = EXAMPLES.iter().map(|e| (&engines[0], e)).chain(std::iter::once((&engines[1], &EXAMPLES[2])));
    for ((cap, engine), (label, file, case)) in runs {
        let label = format!("{label} ({cap} cap)");
        let path = dir().join(format!("{file}.wasm"));
        assert!(path.exists(), "{} missing: run `bash scripts/build-examples.sh` first", path.display());
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let started = Instant::now();
        let plugin = rt.block_on(engine.load_file(&path)).expect("loads");
        let load = started.elapsed();
        println!("{label}: {size} bytes, loaded (compile + instantiate) in {:.0} ms", load.as_secs_f64() * 1e3);
        let cases = CaseFile::load(&cases_path_for(&path)).expect("cases");
        let bound = cases.bind(engine, &plugin, Some(case)).expect("case exists");
        rt.block_on(bound.run()).expect("the case passes");
        group.bench_function(&label, |b| b.to_async(&rt).iter(|| async { bound.run().await.expect("passes") }));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
