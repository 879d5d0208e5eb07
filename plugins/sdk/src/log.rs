//! Writing to the gateway's log (`host.log`).
//!
//! Lines are tagged with the component's name by the host, truncated to
//! 1 KiB and rate limited per call. Never log token contents or secrets.
//! Calling these outside a component (e.g. in a native unit test) panics.

use crate::LogLevel;
use crate::bindings::base::wasmgate::policy::host;

/// Writes `message` at `level`.
pub fn log(level: LogLevel, message: &str) {
    host::log(level, message);
}

/// Writes `message` at `trace` level.
pub fn trace(message: &str) {
    log(LogLevel::Trace, message);
}

/// Writes `message` at `debug` level.
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// Writes `message` at `info` level.
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// Writes `message` at `warn` level.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Writes `message` at `error` level.
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}
