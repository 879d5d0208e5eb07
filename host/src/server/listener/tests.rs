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
