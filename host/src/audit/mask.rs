//! Masking: fields of a record dropped or replaced by a keyed hash, as
//! `decision_log.drop_fields` and `hash_fields` say.
//!
//! The hash is HMAC-SHA256 under `decision_log.hash_key`, in hex: the same
//! subject gives the same value in every record (so an auditor can follow
//! one caller), but without the key nobody can confirm a guess, as they
//! could with a plain SHA-256 of a user name or e-mail address.

use aws_lc_rs::hmac;

use super::record::DecisionRecord;
use crate::config::SecretValue;

/// A maskable field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Subject,
    Tenant,
    Path,
    Provider,
    Reason,
    Injected,
}

impl Field {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "subject" => Self::Subject,
            "tenant" => Self::Tenant,
            "path" => Self::Path,
            "provider" => Self::Provider,
            "reason" => Self::Reason,
            "injected" => Self::Injected,
            _ => return None,
        })
    }
}

/// What to drop and what to hash, with the key.
pub struct Masker {
    drop: Vec<Field>,
    hash: Vec<Field>,
    key: Option<hmac::Key>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("drop", &self.drop)
            .field("hash", &self.hash)
            .field("key", &self.key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Masker {
    /// From the configured names (already checked by the config) and the
    /// key (required when anything is hashed; without it a hashed field is
    /// dropped instead, never written in clear).
    pub fn new(drop: &[String], hash: &[String], key: Option<&SecretValue>) -> Self {
        Self {
            drop: drop.iter().filter_map(|n| Field::parse(n)).collect(),
            hash: hash.iter().filter_map(|n| Field::parse(n)).collect(),
            key: key.map(|k| hmac::Key::new(hmac::HMAC_SHA256, k.expose())),
        }
    }

    /// Whether the masker changes anything.
    pub fn is_noop(&self) -> bool {
        self.drop.is_empty() && self.hash.is_empty()
    }

    /// `value`'s keyed hash, hex.
    fn digest(&self, value: &str) -> Option<String> {
        self.key.as_ref().map(|k| hex::encode(hmac::sign(k, value.as_bytes()).as_ref()))
    }

    /// Drops and hashes the configured fields of `r`.
    pub fn apply(&self, r: &mut DecisionRecord) {
        for f in &self.drop {
            drop_field(r, *f);
        }
        for f in &self.hash {
            match f {
                Field::Injected => {
                    let hashed: Option<Vec<String>> = r.injected.iter().map(|v| self.digest(v)).collect();
                    r.injected = hashed.unwrap_or_default();
                }
                other => {
                    let slot = match other {
                        Field::Subject => &mut r.subject,
                        Field::Tenant => &mut r.tenant,
                        Field::Path => &mut r.path,
                        Field::Provider => &mut r.provider,
                        Field::Reason => &mut r.reason,
                        Field::Injected => continue,
                    };
                    *slot = slot.as_deref().and_then(|v| self.digest(v));
                }
            }
        }
    }
}

fn drop_field(r: &mut DecisionRecord, f: Field) {
    match f {
        Field::Subject => r.subject = None,
        Field::Tenant => r.tenant = None,
        Field::Path => r.path = None,
        Field::Provider => r.provider = None,
        Field::Reason => r.reason = None,
        Field::Injected => r.injected.clear(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::audit::record::PolicyRevision;

    fn record() -> DecisionRecord {
        DecisionRecord {
            decision_id: "00".repeat(16),
            trace_id: None,
            timestamp: SystemTime::UNIX_EPOCH,
            route: Some("api".into()),
            method: "GET".into(),
            path: Some("/v1/x".into()),
            class: Some("bearer".into()),
            credential: Some("oidc-token".into()),
            provider: Some("dev".into()),
            subject: Some("alice@example.com".into()),
            tenant: Some("acme".into()),
            outcome: "allow".into(),
            reason: None,
            status: 200,
            grpc_status: None,
            upstream_status: Some(200),
            upstream_failure: None,
            injected: vec!["sandbox-api".into()],
            shadow: None,
            policy: PolicyRevision::default(),
            duration_us: 10,
            phases_us: vec![("sanitize", 1)],
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn dropped_fields_are_absent_from_the_json() {
        let m = Masker::new(&names(&["subject", "injected"]), &[], None);
        let mut r = record();
        m.apply(&mut r);
        let json = serde_json::to_value(&r).expect("json");
        assert!(json.get("subject").is_none() && json.get("injected").is_none(), "{json}");
        assert_eq!(json["tenant"], "acme");
        assert!(!serde_json::to_string(&r).expect("json").contains("alice"));
    }

    #[test]
    fn hashed_fields_are_keyed_stable_and_never_the_plain_sha256() {
        let key = SecretValue::new(b"audit-key".to_vec());
        let m = Masker::new(&[], &names(&["subject", "injected"]), Some(&key));
        let (mut a, mut b) = (record(), record());
        m.apply(&mut a);
        m.apply(&mut b);
        let subject = a.subject.clone().expect("hashed, not dropped");
        assert_eq!(a.subject, b.subject, "the same subject hashes the same");
        assert_eq!(subject.len(), 64);
        let expected = hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"audit-key"), b"alice@example.com"));
        assert_eq!(subject, expected);
        use sha2::Digest as _;
        let plain = hex::encode(sha2::Sha256::digest(b"alice@example.com"));
        assert_ne!(subject, plain, "a plain hash could be confirmed by guessing");
        assert_ne!(a.injected, vec!["sandbox-api".to_owned()]);
        // Another key, another value.
        let other = Masker::new(&[], &names(&["subject"]), Some(&SecretValue::new(b"k2".to_vec())));
        let mut c = record();
        other.apply(&mut c);
        assert_ne!(c.subject, a.subject);
    }

    #[test]
    fn a_hashed_field_without_a_key_is_dropped_never_written_in_clear() {
        let m = Masker::new(&[], &names(&["subject"]), None);
        let mut r = record();
        m.apply(&mut r);
        assert_eq!(r.subject, None);
        assert!(!m.is_noop() && format!("{m:?}").contains("Masker"));
    }
}
