//! `admin:` — the admin listeners: read-only endpoints (metrics, loaded
//! components, status) on `listen`, and the mutating ones (reload) on
//! `control_listen` when it is set (otherwise on `listen` too). The
//! read-only listener is not authenticated: keep it on loopback or a
//! private network. With `require_scope`, a mutating call must carry a
//! bearer token the gateway's own authentication verifies (an OIDC
//! provider's or a gateway token) and whose principal has that scope. Off
//! when the section is absent.

use std::net::SocketAddr;

use serde::Deserialize;

/// `admin:` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminConfigError {
    /// `control_listen` is the same address as `listen`.
    #[error("admin.control_listen must differ from admin.listen ({0}); leave it out to serve both on one listener")]
    SameListener(SocketAddr),
    /// `require_scope` is empty or not a single scope token.
    #[error("admin.require_scope must be one scope: printable, no spaces, at most 256 bytes")]
    BadScope,
    /// `require_scope` is set but nothing could verify a token.
    #[error("admin.require_scope needs a way to verify bearer tokens: an auth.providers entry or auth.gateway_tokens")]
    ScopeWithoutAuthentication,
}

/// The `admin:` section.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the read-only endpoints (and of the mutating ones when
    /// `control_listen` is absent); `127.0.0.1:9901` by default.
    #[serde(default = "default_admin_listen")]
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// Address of the mutating endpoints (`POST /admin/reload`); when set
    /// they are served only there.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub control_listen: Option<SocketAddr>,
    /// The scope a bearer token must grant to call a mutating endpoint;
    /// unauthenticated when absent.
    #[serde(default)]
    pub require_scope: Option<String>,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

impl AdminConfig {
    pub(super) fn validate(&self) -> Result<(), AdminConfigError> {
        if self.control_listen == Some(self.listen) {
            return Err(AdminConfigError::SameListener(self.listen));
        }
        if let Some(scope) = &self.require_scope
            && (scope.is_empty() || scope.len() > 256 || !scope.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(AdminConfigError::BadScope);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(yaml: &str) -> AdminConfig {
        serde_norway::from_str(yaml).expect("admin section")
    }

    #[test]
    fn one_listener_by_default_and_a_split_when_asked() {
        let a = admin("{}");
        assert_eq!((a.listen, a.control_listen, a.require_scope.as_deref()), (default_admin_listen(), None, None));
        assert_eq!(a.validate(), Ok(()));
        let a = admin("{ listen: \"0.0.0.0:9901\", control_listen: \"127.0.0.1:9902\", require_scope: gw:admin }");
        assert_eq!(a.validate(), Ok(()));
        assert_eq!(a.require_scope.as_deref(), Some("gw:admin"));
    }

    #[test]
    fn the_same_address_twice_and_bad_scopes_are_refused() {
        let a = admin("{ listen: \"127.0.0.1:9901\", control_listen: \"127.0.0.1:9901\" }");
        assert!(matches!(a.validate(), Err(AdminConfigError::SameListener(_))));
        for scope in ["\"\"", "\"a b\"", "\"x\\ty\""] {
            let a = admin(&format!("{{ require_scope: {scope} }}"));
            assert_eq!(a.validate(), Err(AdminConfigError::BadScope), "{scope}");
        }
    }
}
