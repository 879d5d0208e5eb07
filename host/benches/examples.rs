//! Per-call latency of the three example plugins (Rust claims-mapper,
//! JavaScript authorizer, Python classifier), side by side in one run, each
//! on one of its own golden cases with instance reuse as in the gateway
//! (the case's check is included and costs well under a microsecond).
//! Also prints each component's size and its load time (compile, link,
//! type-check, instantiate once), which is what a hot swap of it costs
//! without the precompile cache, and how 2000 consecutive calls spread
//! (median against the rare calls that pay for a recycled instance).
//!
//! Needs the examples built: `bash scripts/build-examples.sh`, then
//! `cargo bench -p wasmgate --bench examples`. `WASMGATE_EXAMPLES_DIR`
//! overrides `target/example-plugins`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    // default, where that makes every call a fresh instance. Each example
    // is also measured with a fresh instance per call
    // (`plugins.instance_reuse: false`): the difference is what one
    // instantiation costs.
    let roomy = PluginsConfig { max_memory_bytes: 64 << 20, ..PluginsConfig::default() };
    let engines = [
        ("64 MiB cap, reuse", PluginEngine::new(&roomy).expect("engine")),
        (
            "64 MiB cap, fresh instance per call",
            PluginEngine::new(&PluginsConfig { instance_reuse: false, ..roomy.clone() }).expect("engine"),
        ),
        ("16 MiB default cap, reuse", PluginEngine::new(&PluginsConfig::default()).expect("engine")),
    ];
    let mut group = c.benchmark_group("example-plugins");
    let runs = EXAMPLES
        .iter()
        .flat_map(|e| [(&engines[0], e), (&engines[1], e)])
        .chain(std::iter::once((&engines[2], &EXAMPLES[2])));
    for ((cap, engine), (label, file, case)) in runs {
        let label = format!("{label} ({cap})");
        let path = dir().join(format!("{file}.wasm"));
        if !path.exists() {
            eprintln!("{label}: {} missing, skipped: run `bash scripts/build-examples.sh` first", path.display());
            continue;
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let started = Instant::now();
        let plugin = rt.block_on(engine.load_file(&path)).expect("loads");
        let load = started.elapsed();
        println!("{label}: {size} bytes, loaded (compile + instantiate) in {:.0} ms", load.as_secs_f64() * 1e3);
        let cases = CaseFile::load(&cases_path_for(&path)).expect("cases");
        let bound = cases.bind(engine, &plugin, Some(case)).expect("case exists");
        rt.block_on(bound.run()).expect("the case passes");
        spread(&rt, &label, &bound);
        group.bench_function(&label, |b| b.to_async(&rt).iter(|| async { bound.run().await.expect("passes") }));
    }
    group.finish();
}

/// Prints how 2000 consecutive calls spread: a reused instance that is
/// recycled (grown past 3/4 of its cap, or retried after hitting it) shows
/// as rare slow calls on top of a fast median.
fn spread(rt: &tokio::runtime::Runtime, label: &str, bound: &wasmgate::plugins::BoundCase) {
    let mut took: Vec<Duration> = (0..2000)
        .map(|_| {
            let started = Instant::now();
            rt.block_on(bound.run()).expect("passes");
            started.elapsed()
        })
        .collect();
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    let mean = took.iter().map(Duration::as_secs_f64).sum::<f64>() / took.len() as f64 * 1e6;
    println!(
        "{label}: 2000 calls: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs, mean {mean:.1} µs",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
