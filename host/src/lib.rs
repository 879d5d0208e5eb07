//! wasmgate: an API gateway whose authorization policy runs as
//! hot-swappable WebAssembly components.
//!
//! The crate is split by concern; each module exposes a small API:
//! - [`canonical`]: the one canonical request path every later step uses.
//! - [`config`]: the YAML configuration.
//! - [`identity`]: the shared vocabulary of calls and callers.
//! - [`drivers`]: drivers on Unix sockets (connect, retry, deadline, health).
//! - [`credentials`]: upstream credentials from the credentials driver, cached.
//! - [`auth`]: OIDC providers, JWKS caching, JWT verification, sandbox secret.
//! - [`tokens`]: the gateway's own HMAC tokens.
//! - [`jose`]: the JWT primitives `auth` and `tokens` share (strict JWS
//!   parsing, base64url, time rules, SHA-256); a leaf.
//! - [`plugins`]: the WebAssembly component host and the policy set.
//! - [`server`]: listeners, the request pipeline, forwarding, error mapping.
//! - [`reload`]: live policy reload (folder watch, SIGHUP).
//! - [`admin`]: the admin listener (metrics, loaded components).
//! - [`audit`]: decision records, their masking and sinks.
//! - [`login`]: `wasmgate login`, `token print`, `call`: OAuth flows and the
//!   credentials file.
//! - [`metrics`]: Prometheus metrics.
//! - [`files`]: the one atomic file write and the one debounced folder watch.
//! - [`retry`]: the one exponential back-off.
//! - [`tasks`]: background tasks, started from one place and stopped together.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod canonical;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod drivers;
pub mod files;
pub mod identity;
pub mod jose;
pub mod login;
pub mod metrics;
pub mod plugins;
pub mod reload;
pub mod retry;
pub mod server;
pub mod tasks;
pub mod telemetry;
pub mod tokens;
