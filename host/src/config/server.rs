//! `server:` — limits of the main listener: connections, timeouts and
//! HTTP/1.1 and HTTP/2 serving; and `tls:`, its certificate and key.
//!
//! Every limit has a safe default; `docs/config.md` (`## server`) says what
//! a client gets when it crosses one. Out-of-range values are refused at
//! start, so a typo can neither disable a limit nor make hyper panic.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A `server:` limit out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server.{key} must be within {min}..={max}, got {value}")]
pub struct ServerConfigError {
    /// The key under `server.`, e.g. `http1.max_headers`.
    pub key: &'static str,
    /// The smallest value allowed.
    pub min: u64,
    /// The largest value allowed.
    pub max: u64,
    /// The value configured.
    pub value: u64,
}

/// The `tls:` section: certificate and key of the main listener (PEM
/// files); cleartext (with h2c) when absent.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The `server:` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Client connections open at once, at most (lowered at start to half
    /// the open-file limit if that is smaller). At the limit a new
    /// connection takes the place of the connection idle the longest (no
    /// request in flight: silent, mid-head, keep-alive idle, HTTP/2 without
    /// streams), which is closed; when every connection has a request in
    /// flight, the new one is accepted and closed at once.
    pub max_connections: usize,
    /// Time a new connection has to send its first byte (after the TLS
    /// handshake, with TLS), seconds; then it is closed.
    pub first_byte_timeout_seconds: u64,
    /// HTTP/1.1 (and 1.0) connections.
    pub http1: Http1Config,
    /// HTTP/2 connections (h2c with prior knowledge, or `h2` by ALPN).
    pub http2: Http2Config,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            first_byte_timeout_seconds: 10,
            http1: Http1Config::default(),
            http2: Http2Config::default(),
        }
    }
}

/// HTTP/1.1 limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Http1Config {
    /// Largest request head (request line and header section, line ends
    /// included), bytes; hyper's read buffer is capped at the same size. A
    /// larger head gets 431 and the connection is closed.
    pub max_request_head_bytes: usize,
    /// Most header fields in one request; more get 431.
    pub max_headers: usize,
    /// Time a client has to send a complete request head, seconds; then the
    /// connection is closed (slow-loris). The first head of a connection is
    /// timed from the connection's start (protocol detection included; the
    /// HTTP/2 client preface counts as a head), a later one from its first
    /// byte.
    pub header_read_timeout_seconds: u64,
    /// Time a keep-alive connection may wait for its next request, seconds,
    /// from the end of the last response; then it is closed.
    pub idle_timeout_seconds: u64,
}

impl Default for Http1Config {
    fn default() -> Self {
        Self {
            max_request_head_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout_seconds: 30,
            idle_timeout_seconds: 30,
        }
    }
}

impl Http1Config {
    /// The header read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_seconds)
    }

    /// The keep-alive idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }
}

/// HTTP/2 limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Config {
    /// Streams a client may have open at once on one connection
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`); more are refused.
    pub max_concurrent_streams: u32,
    /// Streams the client opened and reset before the gateway accepted them
    /// that may wait at once (the rapid-reset bound, CVE-2023-44487); beyond
    /// it the connection gets GOAWAY `ENHANCE_YOUR_CALM`.
    pub max_pending_accept_reset_streams: usize,
    /// Streams the gateway may reset because the client broke the protocol
    /// (malformed headers, flow-control misuse, ...) on one connection; beyond
    /// it the connection gets GOAWAY `ENHANCE_YOUR_CALM`.
    pub max_local_error_reset_streams: usize,
    /// Largest decoded header list of one request
    /// (`SETTINGS_MAX_HEADER_LIST_SIZE`), bytes, counted as RFC 9113 does
    /// (name + value + 32 per field). A larger list gets 431; far larger
    /// ones, or a header block spread over more CONTINUATION frames than this
    /// size needs, get GOAWAY (the CONTINUATION flood bound, CVE-2024-27316).
    pub max_header_list_size: u32,
    /// Time a connection may stay without an open stream, seconds; then it
    /// gets GOAWAY and is closed.
    pub idle_timeout_seconds: u64,
    /// The gateway sends a PING after this long without a frame from the
    /// client, seconds.
    pub keep_alive_interval_seconds: u64,
    /// A PING not acknowledged within this long closes the connection,
    /// seconds.
    pub keep_alive_timeout_seconds: u64,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 256,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            max_header_list_size: 64 * 1024,
            idle_timeout_seconds: 300,
            keep_alive_interval_seconds: 30,
            keep_alive_timeout_seconds: 20,
        }
    }
}

impl Http2Config {
    /// The idle timeout (no open stream).
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    /// The PING keep-alive interval.
    pub fn keep_alive_interval(&self) -> Duration {
        Duration::from_secs(self.keep_alive_interval_seconds)
    }

    /// The PING keep-alive timeout.
    pub fn keep_alive_timeout(&self) -> Duration {
        Duration::from_secs(self.keep_alive_timeout_seconds)
    }
}

impl ServerConfig {
    /// The first-byte timeout.
    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_secs(self.first_byte_timeout_seconds)
    }
}

impl ServerConfig {
    /// Checks every limit is within its range.
    pub(super) fn validate(&self) -> Result<(), ServerConfigError> {
        let h1 = &self.http1;
        let h2 = &self.http2;
        check("max_connections", self.max_connections as u64, 1, 1_000_000)?;
        check("first_byte_timeout_seconds", self.first_byte_timeout_seconds, 1, 600)?;
        check("http1.max_request_head_bytes", h1.max_request_head_bytes as u64, 8 * 1024, 1024 * 1024)?;
        check("http1.max_headers", h1.max_headers as u64, 1, 1000)?;
        check("http1.header_read_timeout_seconds", h1.header_read_timeout_seconds, 1, 600)?;
        check("http1.idle_timeout_seconds", h1.idle_timeout_seconds, 1, 3600)?;
        check("http2.max_concurrent_streams", u64::from(h2.max_concurrent_streams), 1, 10_000)?;
        check("http2.max_pending_accept_reset_streams", h2.max_pending_accept_reset_streams as u64, 1, 10_000)?;
        check("http2.max_local_error_reset_streams", h2.max_local_error_reset_streams as u64, 1, 100_000)?;
        check("http2.max_header_list_size", u64::from(h2.max_header_list_size), 4 * 1024, 1024 * 1024)?;
        check("http2.idle_timeout_seconds", h2.idle_timeout_seconds, 1, 86_400)?;
        check("http2.keep_alive_interval_seconds", h2.keep_alive_interval_seconds, 1, 3600)?;
        check("http2.keep_alive_timeout_seconds", h2.keep_alive_timeout_seconds, 1, 600)?;
        Ok(())
    }
}

fn check(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ServerConfigError> {
    if (min..=max).contains(&value) { Ok(()) } else { Err(ServerConfigError { key, min, max, value }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ServerConfig, String> {
        let cfg: ServerConfig = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let cfg = parse("{}").expect("empty section");
        assert_eq!(cfg, ServerConfig::default());
        assert_eq!(cfg.http1.max_request_head_bytes, 65536);
        assert_eq!(cfg.http1.max_headers, 100);
        assert_eq!(cfg.http1.header_read_timeout(), Duration::from_secs(30));
        assert_eq!(cfg.http2.max_concurrent_streams, 256);
        assert_eq!(cfg.http2.max_pending_accept_reset_streams, 20);
        assert_eq!(cfg.http2.max_local_error_reset_streams, 1024);
        assert_eq!(cfg.http2.max_header_list_size, 65536);
        assert_eq!(cfg.max_connections, 10_000);
        assert_eq!(cfg.first_byte_timeout(), Duration::from_secs(10));
        assert_eq!(cfg.http1.idle_timeout(), Duration::from_secs(30));
        assert_eq!(cfg.http2.idle_timeout(), Duration::from_secs(300));
        assert_eq!(cfg.http2.keep_alive_interval(), Duration::from_secs(30));
        assert_eq!(cfg.http2.keep_alive_timeout(), Duration::from_secs(20));
        cfg.validate().expect("defaults are valid");
    }

    #[test]
    fn limits_can_be_set_and_are_range_checked() {
        let cfg = parse("http1: { max_request_head_bytes: 16384 }\nhttp2: { max_concurrent_streams: 64 }\n")
            .expect("valid limits");
        assert_eq!(cfg.http1.max_request_head_bytes, 16384);
        assert_eq!(cfg.http1.max_headers, 100, "unset keys keep their default");
        assert_eq!(cfg.http2.max_concurrent_streams, 64);
        // hyper panics on a read buffer below 8 KiB: refused here instead.
        let err = parse("http1: { max_request_head_bytes: 4096 }").expect_err("too small");
        assert!(err.contains("server.http1.max_request_head_bytes"), "{err}");
        let typed = ServerConfig { max_connections: 0, ..ServerConfig::default() }.validate();
        let expected = ServerConfigError { key: "max_connections", min: 1, max: 1_000_000, value: 0 };
        assert_eq!(typed, Err(expected));
        assert!(parse("http2: { max_concurrent_streams: 0 }").is_err());
        assert!(parse("http2: { max_pending_accept_reset_streams: 0 }").is_err());
        assert!(parse("http2: { max_header_list_size: 100 }").is_err());
        assert!(parse("http1: { header_read_timeout_seconds: 0 }").is_err());
        assert!(parse("http1: { max_header: 10 }").is_err(), "unknown keys are errors");
        let cfg = parse(
            "max_connections: 64\nfirst_byte_timeout_seconds: 2\nhttp1: { idle_timeout_seconds: 5 }\n\
             http2: { idle_timeout_seconds: 60, keep_alive_interval_seconds: 10, keep_alive_timeout_seconds: 5 }\n",
        )
        .expect("connection limits");
        assert_eq!((cfg.max_connections, cfg.first_byte_timeout_seconds), (64, 2));
        assert_eq!(cfg.http1.idle_timeout_seconds, 5);
        assert_eq!(
            (
                cfg.http2.idle_timeout_seconds,
                cfg.http2.keep_alive_interval_seconds,
                cfg.http2.keep_alive_timeout_seconds
            ),
            (60, 10, 5)
        );
        for zero in [
            "max_connections: 0",
            "first_byte_timeout_seconds: 0",
            "http1: { idle_timeout_seconds: 0 }",
            "http2: { idle_timeout_seconds: 0 }",
            "http2: { keep_alive_interval_seconds: 0 }",
            "http2: { keep_alive_timeout_seconds: 0 }",
        ] {
            let err = parse(zero).expect_err(zero);
            assert!(err.contains("must be within"), "{zero}: {err}");
        }
    }
}
