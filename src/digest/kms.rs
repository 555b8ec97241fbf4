//! Signing digests with an AWS KMS asymmetric key, and reading a key's public half.

use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

use super::DigestSignature;
use super::signature::{PublicKey, SIGNING_ALGORITHM, signed_message};
use crate::store::StoreError;
use crate::store::dynamodb::request_failed;

/// Who signs the digests a store writes.
#[derive(Debug, Clone, Default)]
pub enum DigestSigner {
    /// No key configured: the chain still shows a change inside the table, not a rewrite
    /// of the whole chain by someone who can write it.
    #[default]
    Unsigned,
    /// KMS `Sign` with an `ECC_NIST_P256` key (`SIGN_VERIFY`), `ECDSA_SHA_256` over the
    /// digest's hash in hex ([`signed_message`]).
    Kms { client: Client, key_id: String },
}

impl DigestSigner {
    /// The signer `DIGEST_SIGNING_KEY_ID` names (a key id, ARN or alias), or none.
    pub async fn from_env() -> Self {
        match std::env::var("DIGEST_SIGNING_KEY_ID") {
            Ok(key_id) if !key_id.trim().is_empty() => Self::Kms {
                client: kms_client().await,
                key_id: key_id.trim().to_owned(),
            },
            _ => Self::Unsigned,
        }
    }

    pub async fn sign(&self, hash: &[u8; 32]) -> Result<Option<DigestSignature>, StoreError> {
        let Self::Kms { client, key_id } = self else {
            return Ok(None);
        };
        let output = client
            .sign()
            .key_id(key_id)
            .message(Blob::new(signed_message(hash).into_bytes()))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|error| StoreError::Signing {
                key_id: key_id.clone(),
                source: Box::new(request_failed(error)),
            })?;
        let der = output
            .signature
            .map(Blob::into_inner)
            .ok_or_else(|| StoreError::Signing {
                key_id: key_id.clone(),
                source: "KMS Sign returned no signature".into(),
            })?;
        Ok(Some(DigestSignature {
            der,
            // The key's ARN when KMS names it: an alias can later point elsewhere.
            key_id: output.key_id.unwrap_or_else(|| key_id.clone()),
            algorithm: SIGNING_ALGORITHM.to_owned(),
        }))
    }
}

/// A KMS client from the standard AWS environment (`AWS_ENDPOINT_URL` for a local server).
pub async fn kms_client() -> Client {
    Client::new(&aws_config::from_env().load().await)
}

/// The public key of a KMS signing key, as `GetPublicKey` gives it.
pub async fn public_key(client: &Client, key_id: &str) -> Result<(PublicKey, Vec<u8>), String> {
    let output = client
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|error| {
            format!(
                "KMS GetPublicKey {key_id}: {}",
                crate::errors::one_line(&error)
            )
        })?;
    let der = output
        .public_key
        .map(Blob::into_inner)
        .ok_or_else(|| format!("KMS GetPublicKey {key_id}: no key in the answer"))?;
    let key = PublicKey::from_pem_or_der(&der).map_err(|error| error.to_string())?;
    Ok((key, der))
}
