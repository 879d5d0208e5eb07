//! The key set and the revocation set the watcher swaps in.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use aws_lc_rs::hmac;

use super::GatewayTokenError;
use super::keys::KeyMaterial;
use super::revoked::RevokedSet;
use crate::jose;

/// One key version: the HMAC key that verifies, the key that signs, and
/// the SHA-256 of its bytes (to compare key sets and refuse the sandbox secret).
pub(super) struct GatewayKey {
    pub(super) hmac: hmac::Key,
    pub(super) encoding: jsonwebtoken::EncodingKey,
    pub(super) digest: [u8; 32],
}

/// The keys that verify, and the version that signs.
pub(super) struct KeySet {
    pub(super) active: String,
    pub(super) keys: HashMap<String, GatewayKey>,
}

impl KeySet {
    pub(super) fn build(m: &KeyMaterial, forbidden: Option<&[u8; 32]>) -> Result<Self, GatewayTokenError> {
        let mut keys = HashMap::new();
        for (version, secret) in &m.keys {
            let bytes = secret.expose();
            let digest = jose::sha256(bytes);
            if forbidden.is_some_and(|f| bool::from(subtle::ConstantTimeEq::ct_eq(&digest[..], &f[..]))) {
                return Err(GatewayTokenError::Config(format!("key {version:?} equals the sandbox secret")));
            }
            let key = GatewayKey {
                hmac: hmac::Key::new(hmac::HMAC_SHA256, bytes),
                encoding: jsonwebtoken::EncodingKey::from_secret(bytes),
                digest,
            };
            keys.insert(version.clone(), key);
        }
        Ok(Self { active: m.active.clone(), keys })
    }

    /// `active=v2 versions=[v1, v2]`.
    fn describe(&self) -> String {
        let mut versions: Vec<_> = self.keys.keys().map(String::as_str).collect();
        versions.sort_unstable();
        format!("active={} versions=[{}]", self.active, versions.join(", "))
    }

    fn same_as(&self, other: &Self) -> bool {
        self.active == other.active
            && self.keys.len() == other.keys.len()
            && self.keys.iter().all(|(v, k)| other.keys.get(v).is_some_and(|o| o.digest == k.digest))
    }
}

/// The state the watcher swaps.
pub(super) struct Live {
    pub(super) keys: ArcSwap<KeySet>,
    pub(super) revoked: ArcSwap<RevokedSet>,
    pub(super) keys_dir: Option<PathBuf>,
    pub(super) revoked_file: Option<PathBuf>,
    /// SHA-256 of a secret no key may equal (the sandbox secret).
    pub(super) forbidden: OnceLock<[u8; 32]>,
}

impl Live {
    /// Rebuilds the key set from the folder; `Some(description)` when it changed.
    pub(super) fn reload_keys(&self) -> Result<Option<String>, GatewayTokenError> {
        let Some(dir) = &self.keys_dir else { return Ok(None) };
        let material = KeyMaterial::read_dir(dir)?;
        let set = KeySet::build(&material, self.forbidden.get())?;
        if set.same_as(&self.keys.load()) {
            return Ok(None);
        }
        for s in &material.skipped {
            tracing::warn!(entry = %s, "key folder entry ignored");
        }
        let change = set.describe();
        self.keys.store(Arc::new(set));
        Ok(Some(change))
    }

    /// Rebuilds the revocation set from its file; `Some(description)` when it changed.
    pub(super) fn reload_revoked(&self) -> Result<Option<String>, GatewayTokenError> {
        let Some(path) = &self.revoked_file else { return Ok(None) };
        let (set, warnings) = RevokedSet::read(path)?;
        if set == **self.revoked.load() {
            return Ok(None);
        }
        for w in &warnings {
            tracing::warn!(warning = %w, "revocation list line");
        }
        let change = format!("{} revoked jtis", set.len());
        self.revoked.store(Arc::new(set));
        Ok(Some(change))
    }
}
