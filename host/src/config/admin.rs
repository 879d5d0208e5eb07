//! `admin:` — the admin listener (metrics, loaded components, reload
//! status). It is not authenticated: keep it on loopback or a private
//! network. Off when the section is absent.

use std::net::SocketAddr;

use serde::Deserialize;

/// The `admin:` section.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address; `127.0.0.1:9901` by default.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}
