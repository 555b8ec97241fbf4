//! Digest signatures: ECDSA over NIST P-256 with SHA-256 (KMS `ECC_NIST_P256`,
//! `ECDSA_SHA_256`, message type `RAW`) of the digest's hash written as 64 lower-case hex
//! characters, checked with the public key alone: a PEM or DER file, or what KMS
//! `GetPublicKey` returns. The hex text, not the 32 bytes with message type `DIGEST`: it is
//! what `openssl dgst -sha256 -verify` checks as it stands, and a KMS emulator that
//! ignores the message type (moto's) signs it the same way AWS does.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

/// The one signing algorithm digests are signed with.
pub const SIGNING_ALGORITHM: &str = "ECDSA_SHA_256";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "not an ECC_NIST_P256 public key (SubjectPublicKeyInfo, PEM or DER): {0}; hsm-audit signs and verifies digests with ECDSA_SHA_256 only"
    )]
    Unreadable(String),
}

/// A digest signer's public key.
#[derive(Debug, Clone)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// From `-----BEGIN PUBLIC KEY-----` PEM, or DER (what `GetPublicKey` returns).
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, KeyError> {
        let key = match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN") => VerifyingKey::from_public_key_pem(text)
                .map_err(|error| KeyError::Unreadable(error.to_string()))?,
            _ => VerifyingKey::from_public_key_der(bytes)
                .map_err(|error| KeyError::Unreadable(error.to_string()))?,
        };
        Ok(Self(key))
    }

    /// Whether `signature` (ASN.1 DER, as KMS returns it) signs the digest hash `hash`.
    pub fn verifies(&self, hash: &[u8; 32], signature: &[u8]) -> bool {
        DerSignature::try_from(signature).is_ok_and(|signature| {
            self.0
                .verify(signed_message(hash).as_bytes(), &signature)
                .is_ok()
        })
    }
}

/// What is signed for a digest whose body hashes to `hash`: the hash in hex.
pub fn signed_message(hash: &[u8; 32]) -> String {
    hex::encode(hash)
}

#[cfg(test)]
pub(crate) mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    use super::*;

    /// A fixed key for tests that need a signer without KMS.
    pub(crate) fn test_key(seed: u8) -> SigningKey {
        let mut bytes = [seed; 32];
        bytes[0] = 1;
        SigningKey::from_slice(&bytes).expect("a valid scalar")
    }

    pub(crate) fn sign(key: &SigningKey, hash: &[u8; 32]) -> Vec<u8> {
        let signature: DerSignature = key.sign(signed_message(hash).as_bytes());
        signature.to_bytes().to_vec()
    }

    pub(crate) fn public_der(key: &SigningKey) -> Vec<u8> {
        key.verifying_key()
            .to_public_key_der()
            .expect("encodes")
            .into_vec()
    }

    #[test]
    fn a_signature_verifies_with_its_key_only_and_for_its_hash_only() {
        let (ours, theirs) = (test_key(7), test_key(9));
        let hash = [3u8; 32];
        let signature = sign(&ours, &hash);
        let public = PublicKey::from_pem_or_der(&public_der(&ours)).expect("reads DER");
        assert!(public.verifies(&hash, &signature));
        assert!(!public.verifies(&[4u8; 32], &signature));
        assert!(!public.verifies(&hash, &sign(&theirs, &hash)));
        assert!(!public.verifies(&hash, b"not DER"));
    }

    #[test]
    fn pem_and_der_are_the_same_key() {
        let key = test_key(5);
        let pem = key
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("encodes");
        let hash = [8u8; 32];
        let public = PublicKey::from_pem_or_der(pem.as_bytes()).expect("reads PEM");
        assert!(public.verifies(&hash, &sign(&key, &hash)));
        assert!(PublicKey::from_pem_or_der(b"-----BEGIN PUBLIC KEY-----\nxx\n").is_err());
    }
}
