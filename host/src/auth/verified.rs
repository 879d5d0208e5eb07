//! [`VerifiedToken`]: what an OIDC token verified as, and the slot where
//! the pipeline keeps the principal the claims mapper made of it, so a
//! token is cached once (verification and mapping in one entry of the
//! token cache) and its principal is found without a second lookup.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::identity::Principal;

/// A verified OIDC token. `Debug` shows the claims only as their length.
pub struct VerifiedToken {
    /// The payload, re-serialised from the strictly parsed object (never the raw token).
    pub claims_json: String,
    /// `sub`.
    pub subject: String,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// `iss`.
    pub issuer: String,
    /// The principal mapped from the claims, with the policy generation
    /// that mapped it.
    mapped: ArcSwapOption<Mapped>,
}

/// A principal and the policy generation whose claims mapper made it.
struct Mapped {
    generation: u64,
    principal: Arc<Principal>,
}

impl VerifiedToken {
    /// A verified token with no principal mapped yet.
    pub fn new(claims_json: String, subject: String, expires_at: i64, issuer: String) -> Self {
        Self { claims_json, subject, expires_at, issuer, mapped: ArcSwapOption::empty() }
    }

    /// The principal the claims mapper of policy `generation` made of this
    /// token, if that generation mapped it; `None` for any other generation
    /// (a hot-swapped mapper maps again).
    pub fn mapped_principal(&self, generation: u64) -> Option<Arc<Principal>> {
        let mapped = self.mapped.load();
        mapped.as_ref().filter(|m| m.generation == generation).map(|m| m.principal.clone())
    }

    /// Remembers the principal policy `generation` mapped; a call finishing
    /// on an older generation does not replace a newer one's principal.
    pub fn remember_principal(&self, generation: u64, principal: Arc<Principal>) {
        if self.mapped.load().as_ref().is_some_and(|m| m.generation > generation) {
            return;
        }
        self.mapped.store(Some(Arc::new(Mapped { generation, principal })));
    }

    /// Heap bytes held by the token's own fields (not the mapped principal).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.claims_json.capacity() + self.subject.capacity() + self.issuer.capacity()
    }
}

impl Clone for VerifiedToken {
    /// A copy of the verified claims, with the same mapped principal.
    fn clone(&self) -> Self {
        Self {
            claims_json: self.claims_json.clone(),
            subject: self.subject.clone(),
            expires_at: self.expires_at,
            issuer: self.issuer.clone(),
            mapped: ArcSwapOption::new(self.mapped.load_full()),
        }
    }
}

impl PartialEq for VerifiedToken {
    /// Equal when the verified claims are (the mapped principal is a cache).
    fn eq(&self, other: &Self) -> bool {
        self.claims_json == other.claims_json
            && self.subject == other.subject
            && self.expires_at == other.expires_at
            && self.issuer == other.issuer
    }
}

impl Eq for VerifiedToken {}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("claims_json", &format_args!("[{} bytes]", self.claims_json.len()))
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .field("issuer", &self.issuer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(subject: &str) -> Arc<Principal> {
        Arc::new(Principal { subject: subject.into(), ..Principal::default() })
    }

    #[test]
    fn a_mapped_principal_is_served_only_to_the_generation_that_mapped_it() {
        let t = VerifiedToken::new("{}".into(), "u".into(), 0, "i".into());
        assert!(t.mapped_principal(1).is_none(), "nothing mapped yet");
        t.remember_principal(1, principal("by-1"));
        assert_eq!(t.mapped_principal(1).map(|p| p.subject.clone()).as_deref(), Some("by-1"));
        assert!(t.mapped_principal(2).is_none(), "a new generation maps again");
        assert!(t.mapped_principal(0).is_none());
        t.remember_principal(2, principal("by-2"));
        assert_eq!(t.mapped_principal(2).map(|p| p.subject.clone()).as_deref(), Some("by-2"));
        assert!(t.mapped_principal(1).is_none(), "the old generation's principal is gone");
        // A call that finishes late on generation 1 does not displace generation 2.
        t.remember_principal(1, principal("late"));
        assert_eq!(t.mapped_principal(2).map(|p| p.subject.clone()).as_deref(), Some("by-2"));
        assert!(t.mapped_principal(1).is_none());
    }

    #[test]
    fn debug_and_equality_ignore_the_mapped_principal_and_hide_the_claims() {
        let a = VerifiedToken::new(r#"{"secret":"x"}"#.into(), "u".into(), 5, "i".into());
        let b = a.clone();
        a.remember_principal(1, principal("p"));
        assert_eq!(a, b);
        let shown = format!("{a:?}");
        assert!(!shown.contains("secret") && shown.contains("[14 bytes]"), "{shown}");
    }
}
