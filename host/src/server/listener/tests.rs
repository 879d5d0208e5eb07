use super::*;

#[test]
fn the_connection_limit_is_at_most_half_the_open_file_limit() {
    assert_eq!(connection_limit(10_000, Some(1_048_576)), 10_000);
    assert_eq!(connection_limit(10_000, Some(256)), 128);
    assert_eq!(connection_limit(10_000, Some(1)), 1);
    assert_eq!(connection_limit(10_000, None), 10_000, "unlimited");
}

#[test]
fn accept_errors_are_classified_and_their_warning_throttled() {
    let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
    let enfile = std::io::Error::from_raw_os_error(rustix::io::Errno::NFILE.raw_os_error());
    assert!(is_fd_limit(&emfile) && is_fd_limit(&enfile));
    assert!(!is_per_connection(&emfile));
    let aborted = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
    assert!(is_per_connection(&aborted) && !is_fd_limit(&aborted));
    let mut log = Throttled::new(Duration::from_secs(5));
    let t = Instant::now();
    assert_eq!(log.ready_at(t), Some(0), "the first one is logged");
    assert_eq!((log.ready_at(t), log.ready_at(t + Duration::from_secs(4))), (None, None));
    assert_eq!(log.ready_at(t + Duration::from_secs(5)), Some(2), "the next says how many were left out");
    assert_eq!(log.ready_at(t + Duration::from_secs(6)), None);
}

#[tokio::test]
async fn the_drain_waits_for_io_that_outlives_its_connection_task() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let live = LiveIo::new();
    let (client, server) = tokio::io::duplex(64);
    let mut held = Held::new(server, &live);
    let other = Held::new(tokio::io::duplex(8).0, &live);
    assert_eq!(live.count(), 2);
    drop(other);
    assert_eq!(live.count(), 1);
    // I/O passes through unchanged.
    let mut client = client;
    client.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    held.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"ping");
    // An upgraded tunnel keeps its I/O: the drain waits until it is dropped.
    let drained = tokio::spawn({
        let live = live.clone();
        async move { live.drained().await }
    });
    tokio::task::yield_now().await;
    assert!(!drained.is_finished(), "still one alive");
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), drained).await.expect("drained once dropped").expect("join");
    assert_eq!(live.count(), 0);
}
