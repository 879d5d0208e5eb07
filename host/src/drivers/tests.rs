#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use super::testing::{CountingDriver, TestServer, driver_config, eventually, socket_path};
use super::*;

/// The drivers of `cfg`, their health watches started.
fn started(cfg: &DriversConfig) -> Drivers {
    let drivers = Drivers::new(cfg);
    drivers.start(&Tasks::new());
    drivers
}

#[test]
fn backoff_doubles_from_interval_and_caps() {
    let backoff = Backoff { base: Duration::from_millis(100), cap: Duration::from_millis(1000) };
    let p = RetryPolicy { attempts: 5, backoff };
    let waits: Vec<u128> = (1..=6).map(|n| p.backoff(n).as_millis()).collect();
    assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(p.backoff(0), Duration::from_millis(100));
    assert_eq!(p.backoff(u32::MAX), Duration::from_millis(1000));
}

#[tokio::test]
async fn health_watch_reports_readiness_and_recovers_with_the_same_channel() {
    let (_dir, path) = socket_path();
    let driver = Driver::new("credentials", &driver_config(&path, 500));
    driver.start(&Tasks::new());
    assert!(!driver.is_ready());
    // Socket missing: start-up waiting gives up after the configured attempts.
    let started = Instant::now();
    let err = driver.wait_ready().await.unwrap_err();
    assert!(matches!(err, DriverError::Unavailable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let r = driver.readiness();
    assert!(!r.ready && r.required && r.last_error.is_some() && r.socket == path, "{r:?}");

    // The driver appears: the background watch sees it.
    let server = TestServer::serve(&path, CountingDriver::new(&["a"], 0)).await;
    assert!(eventually(|| driver.is_ready()).await);
    assert!(driver.wait_ready().await.is_ok());
    assert_eq!(driver.readiness().last_error, None);

    // It goes away and comes back: readiness follows.
    server.stop().await;
    assert!(eventually(|| !driver.is_ready()).await);
    let _server = TestServer::serve(&path, CountingDriver::new(&["a"], 0)).await;
    assert!(eventually(|| driver.is_ready()).await);
}

#[tokio::test]
async fn drivers_start_exposes_the_resolver_and_required_readiness() {
    let none = started(&DriversConfig::default());
    assert!(none.credentials().is_none() && none.readiness().is_empty() && none.is_ready());

    let (_dir, path) = socket_path();
    let cfg = DriversConfig { credentials: Some(driver_config(&path, 500)), ..DriversConfig::default() };
    let drivers = started(&cfg);
    assert!(drivers.credentials().is_some());
    assert!(!drivers.is_ready());
    assert!(drivers.wait_ready().await.is_err());
    let _server = TestServer::serve(&path, CountingDriver::new(&["a"], 0)).await;
    assert!(drivers.wait_ready().await.is_ok() || eventually(|| drivers.is_ready()).await);
    assert!(eventually(|| drivers.is_ready()).await);
    let r = drivers.readiness();
    assert_eq!((r.len(), r[0].name.as_str(), r[0].ready), (1, "credentials", true));

    // Not required: down, yet the gateway is ready.
    let (_dir2, missing) = socket_path();
    let mut optional = driver_config(&missing, 500);
    optional.required = false;
    let drivers = started(&DriversConfig { credentials: Some(optional), ..DriversConfig::default() });
    assert!(drivers.is_ready() && drivers.wait_ready().await.is_ok());
    assert!(!drivers.readiness()[0].ready);
}

#[tokio::test]
async fn upstream_drivers_are_health_checked_and_count_for_readiness() {
    let (_dir, path) = socket_path();
    let mut upstreams = std::collections::BTreeMap::new();
    upstreams.insert("sandbox".to_owned(), driver_config(&path, 500));
    let drivers = started(&DriversConfig { upstreams, ..DriversConfig::default() });
    assert!(drivers.credentials().is_none());
    assert!(!drivers.is_ready(), "a required upstream driver that is down makes the gateway unready");
    let _server = TestServer::serve(&path, CountingDriver::new(&[], 0)).await;
    assert!(eventually(|| drivers.is_ready()).await);
    let r = drivers.readiness();
    assert_eq!((r.len(), r[0].name.as_str(), r[0].ready), (1, "sandbox", true));
}

/// `wasmgate_driver_calls_total{driver,method,result}` and the duration
/// histogram count every call by its outcome: answered, error status,
/// unreachable, past its deadline. (Metrics are process-wide: the drivers'
/// names are unique to this test.)
#[tokio::test]
async fn driver_calls_are_counted_by_driver_method_and_result() {
    use wasmgate_proto::credentials::ResolveCredentialRequest;
    use wasmgate_proto::credentials::credentials_driver_client::CredentialsDriverClient;

    let resolve = |driver: Driver, name: &'static str| async move {
        let mut client = CredentialsDriverClient::new(driver.channel());
        let request = driver.request(ResolveCredentialRequest { name: name.to_owned() });
        driver.call("ResolveCredential", client.resolve_credential(request)).await.map(|_| ())
    };
    let (_dir, path) = socket_path();
    let _server = TestServer::serve(&path, CountingDriver::new(&["a"], 0)).await;
    let up = Driver::new("metrics-up", &driver_config(&path, 500));
    resolve(up.clone(), "a").await.unwrap();
    assert!(matches!(resolve(up, "unknown").await, Err(DriverError::Status { .. })));
    let (_gone_dir, gone) = socket_path();
    let missing = Driver::new("metrics-missing", &driver_config(&gone, 500));
    assert!(matches!(resolve(missing, "a").await, Err(DriverError::Unavailable { .. })));
    let (_hung_dir, hung_path) = socket_path();
    let _hung = TestServer::hung(&hung_path);
    let hung = Driver::new("metrics-hung", &driver_config(&hung_path, 200));
    assert!(matches!(resolve(hung, "a").await, Err(DriverError::DeadlineExceeded { .. })));

    let text = crate::metrics::render();
    for (driver, result) in [
        ("metrics-up", "ok"),
        ("metrics-up", "error"),
        ("metrics-missing", "unavailable"),
        ("metrics-hung", "deadline_exceeded"),
    ] {
        let line = format!(
            "wasmgate_driver_calls_total{{driver=\"{driver}\",method=\"ResolveCredential\",result=\"{result}\"}} 1\n"
        );
        assert!(text.contains(&line), "{line}in\n{text}");
    }
    let timed = "wasmgate_driver_call_duration_seconds_count{driver=\"metrics-up\",method=\"ResolveCredential\"} 2\n";
    assert!(text.contains(timed), "{text}");
}
