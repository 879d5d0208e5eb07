//! The development issuers' keys: generation, JWT signing with a key pair
//! parsed once (minting many RS256 tokens is bound by the RSA private-key
//! operation, not by re-reading the key for each one), the public JWK and
//! the public key as PEM.

use anyhow::Context;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::DevAlg;

/// A fresh signing key with its `kid` and public JWK, for the test issuers
/// (the login tests' identity provider).
#[cfg(any(test, feature = "testing"))]
pub(crate) struct DevKey {
    pub kid: String,
    pub jwk: Value,
    pub key: jsonwebtoken::EncodingKey,
}

#[cfg(any(test, feature = "testing"))]
impl DevKey {
    /// Generates a P-256 key whose `kid` is `PREFIX-` and 16 hex digits of the key.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn generate(kid_prefix: &str) -> anyhow::Result<Self> {
        Self::generate_for(kid_prefix, DevAlg::Es256)
    }

    /// Generates a key for `alg` (RS256: 2048 bits) whose `kid` is `PREFIX-`
    /// and 16 hex digits of the public key.
    pub(crate) fn generate_for(kid_prefix: &str, alg: DevAlg) -> anyhow::Result<Self> {
        use jsonwebtoken::EncodingKey;
        let key = SigningKey::generate(kid_prefix, alg)?;
        let encoding = match alg {
            DevAlg::Es256 => EncodingKey::from_ec_der(&key.private_der),
            DevAlg::Rs256 => EncodingKey::from_rsa_der(&key.private_der),
        };
        Ok(Self { kid: key.kid, jwk: key.jwk, key: encoding })
    }
}

enum Signer {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
}

/// A key pair parsed once, ready to sign JWTs: the dev issuer's key.
pub(super) struct SigningKey {
    /// The `kid`.
    pub kid: String,
    /// The public JWK, as the JWKS serves it.
    pub jwk: Value,
    alg: DevAlg,
    /// `BASE64URL(header)`, the same for every token of this key.
    header_b64: String,
    signer: Signer,
    /// The public key, X.509 SubjectPublicKeyInfo DER.
    spki_der: Vec<u8>,
    /// The private key as jsonwebtoken reads it: PKCS#1 for RSA, PKCS#8 for EC.
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    private_der: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    // The private key is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a key for `alg` (RS256: 2048 bits) whose `kid` is `PREFIX-`
    /// and 16 hex digits of the public key.
    pub fn generate(kid_prefix: &str, alg: DevAlg) -> anyhow::Result<Self> {
        let (kid, jwk, signer, spki_der, private_der) = match alg {
            DevAlg::Rs256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| anyhow::anyhow!("cannot generate an RSA key"))?;
                let pkcs8 = pair.as_der().map_err(|_| anyhow::anyhow!("cannot encode the generated RSA key"))?;
                let pkcs1 = pkcs8_private_key(pkcs8.as_ref()).context("unexpected PKCS#8 encoding of the RSA key")?;
                let public = pair.public_key();
                let spki = public.as_der().map_err(|_| anyhow::anyhow!("cannot encode the RSA public key"))?;
                let n = public.modulus().big_endian_without_leading_zero().to_vec();
                let e = public.exponent().big_endian_without_leading_zero().to_vec();
                let kid = format!("{kid_prefix}-{}", hex::encode(n.get(..8).unwrap_or_default()));
                let jwk = json!({
                    "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                    "n": URL_SAFE_NO_PAD.encode(&n),
                    "e": URL_SAFE_NO_PAD.encode(&e),
                });
                let (spki, pkcs1) = (spki.as_ref().to_vec(), pkcs1.to_vec());
                (kid, jwk, Signer::Rsa(pair), spki, pkcs1)
            }
            DevAlg::Es256 => {
                let rng = SystemRandom::new();
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                    .map_err(|_| anyhow::anyhow!("cannot parse the generated key"))?;
                let point = pair.public_key().as_ref();
                anyhow::ensure!(point.len() == 65 && point[0] == 4, "unexpected public key encoding");
                let kid = format!("{kid_prefix}-{}", hex::encode(&point[1..9]));
                let jwk = json!({
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                });
                let spki =
                    pair.public_key().as_der().map_err(|_| anyhow::anyhow!("cannot encode the P-256 public key"))?;
                let spki = spki.as_ref().to_vec();
                (kid, jwk, Signer::Ec(pair), spki, pkcs8.as_ref().to_vec())
            }
        };
        let header = json!({ "typ": "JWT", "alg": alg.as_str(), "kid": kid });
        let header_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        Ok(Self { kid, jwk, alg, header_b64, signer, spki_der, private_der })
    }

    /// A compact JWS of `claims`: header `{typ: JWT, alg, kid}`.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let payload = serde_json::to_vec(claims)?;
        let mut out = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 360);
        out.push_str(&self.header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        let signature = self.signature(out.as_bytes())?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut out);
        Ok(out)
    }

    fn signature(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
                Ok(signature)
            }
            Signer::Ec(pair) => {
                Ok(pair.sign(&rng, message).map_err(|_| anyhow::anyhow!("ECDSA signing failed"))?.as_ref().to_vec())
            }
        }
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), the
    /// form HAProxy's `jwt_verify` and OpenSSL read.
    pub fn public_key_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.spki_der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }
}

/// The `privateKey` octets of a PKCS#8 `PrivateKeyInfo` (for RSA: the
/// PKCS#1 `RSAPrivateKey`).
fn pkcs8_private_key(der: &[u8]) -> Option<&[u8]> {
    /// One DER element: (tag, contents, rest).
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, b) = b.split_first()?;
        let (len, b) = if first < 0x80 {
            (usize::from(first), b)
        } else {
            let n = usize::from(first & 0x7f);
            let (len_bytes, b) = b.split_at_checked(n)?;
            (len_bytes.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x)), b)
        };
        let (contents, rest) = b.split_at_checked(len)?;
        Some((tag, contents, rest))
    }
    let (0x30, info, _) = tlv(der)? else { return None };
    let (0x02, _version, rest) = tlv(info)? else { return None };
    let (0x30, _algorithm, rest) = tlv(rest)? else { return None };
    let (0x04, key, _) = tlv(rest)? else { return None };
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pem_is_the_public_key_that_verifies_its_tokens() {
        for alg in [DevAlg::Es256, DevAlg::Rs256] {
            let key = SigningKey::generate("t", alg).expect("key");
            let token = key.sign(&json!({ "sub": "a", "exp": 4_000_000_000_i64 })).expect("sign");
            let pem = key.public_key_pem();
            assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n") && pem.ends_with("-----END PUBLIC KEY-----\n"));
            assert!(pem.lines().all(|l| l.len() <= 64), "{pem}");
            let decoding = match alg {
                DevAlg::Es256 => jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()),
                DevAlg::Rs256 => jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()),
            }
            .expect("PEM parses");
            let mut v = jsonwebtoken::Validation::new(alg.jwt());
            v.validate_aud = false;
            let data = jsonwebtoken::decode::<Value>(&token, &decoding, &v).expect("verifies with the PEM");
            assert_eq!(data.header.kid.as_deref(), Some(key.kid.as_str()));
            assert_eq!(data.claims["sub"], "a");
            // A signature that differs in one character does not verify.
            let (head, sig) = token.rsplit_once('.').expect("three parts");
            let mut bad: Vec<u8> = sig.bytes().collect();
            bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
            let forged = format!("{head}.{}", String::from_utf8(bad).expect("ascii"));
            assert!(jsonwebtoken::decode::<Value>(&forged, &decoding, &v).is_err());
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = SigningKey::generate("t", DevAlg::Es256).expect("key");
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.kid) && !shown.contains(&hex::encode(&key.private_der)), "{shown}");
    }
}
