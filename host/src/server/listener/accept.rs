//! The open-file limit and accept errors: how many connections the
//! descriptors allow, and which accept failures are about one connection.

/// Raises the soft open-file limit to the hard one and says what it got;
/// the limit in effect, if known.
pub(super) fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    // An unlimited hard limit is not a value setrlimit takes for files.
    let target = maximum.unwrap_or(1 << 20);
    match current {
        Some(soft) if soft < target => match setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum }) {
            Ok(()) => {
                tracing::info!(
                    from = soft,
                    to = target,
                    "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
                );
                Some(target)
            }
            Err(e) => {
                tracing::warn!(limit = soft, hard = target, error = %e, "cannot raise the open-file limit (RLIMIT_NOFILE)");
                Some(soft)
            }
        },
        Some(soft) => {
            tracing::info!(limit = soft, "open-file limit (RLIMIT_NOFILE) already at its hard limit");
            Some(soft)
        }
        None => {
            tracing::info!("open-file limit (RLIMIT_NOFILE) is unlimited");
            None
        }
    }
}

/// `server.max_connections`, lowered to half the open-file limit: each
/// proxied HTTP/1.1 request may hold a second descriptor upstream.
pub(super) fn connection_limit(configured: usize, fd_limit: Option<u64>) -> usize {
    let Some(half) = fd_limit.map(|l| usize::try_from(l / 2).unwrap_or(usize::MAX)) else { return configured };
    if configured > half {
        tracing::warn!(
            max_connections = configured,
            fd_limit = half * 2,
            "server.max_connections is more than half the open-file limit; using {} instead",
            half.max(1)
        );
        half.max(1)
    } else {
        configured
    }
}

/// An accept error about one pending connection (it is gone): try again at
/// once.
pub(super) fn is_per_connection(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::Interrupted
    )
}

/// Out of file descriptors, the process's or the system's.
pub(super) fn is_fd_limit(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(Errno::from_io_error(e), Some(Errno::MFILE | Errno::NFILE))
}
