//! Tamper evidence for the trail: a chain of digests, optionally signed.
//!
//! Every write of new records to a cluster's trail writes, in the same transaction, one
//! digest item: it lists each record it stores by sort key with the SHA-256 of the
//! record's whole item in [`canonical`] form, and carries the SHA-256 of the previous
//! digest's body. A record item names its digest (`digest_seq`), and that attribute is
//! inside the record's hash. Digests are numbered 1, 2, 3… per cluster; a writer takes
//! the next number with a condition that it is still free, so two concurrent writers
//! never fork the chain (the loser re-reads the head and seals again). Nothing already
//! digested is rewritten: a late record goes into the digest of the write that stores
//! it, which names it like any other.
//!
//! The digest's body is JSON kept verbatim in the item (`body`), so its hash is the
//! SHA-256 of those bytes, not of a re-serialization. With a KMS key configured the
//! hash is signed ([`signature`] says how); [`verify`] recomputes
//! everything from the stored items and needs only the public key.
//! `docs/tamper-evidence.md` states the canonical form, the chaining rule and the threat
//! model.

pub mod anchor;
pub mod canonical;
pub mod kms;
pub mod signature;
pub mod verify;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::model::Timestamp;
use crate::store::StoreError;
use crate::store::dynamodb::items::{self, Item};

pub const DIGEST_PREFIX: &str = "DIGEST#";
pub const DIGEST_ITEM_TYPE: &str = "trail_digest";
/// The record attribute naming the digest that stored it.
pub const DIGEST_SEQ: &str = "digest_seq";
pub const FORMAT: &str = "hsm-audit-digest/1";
/// The `previous` of digest 1.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a digest says, as its `body` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestBody {
    pub format: String,
    pub cluster: String,
    pub seq: u64,
    /// Hex SHA-256 of the previous digest's body; [`GENESIS`] for digest 1.
    pub previous: String,
    /// When the digest was sealed (wall clock of the writer).
    pub sealed: Timestamp,
    /// The earliest and latest audit time of its records.
    pub first_time: Timestamp,
    pub last_time: Timestamp,
    /// Its records in sort-key order.
    pub records: Vec<DigestedRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestedRecord {
    pub sk: String,
    /// Hex SHA-256 of the record's item in canonical form.
    pub sha256: String,
}

/// A digest as stored (the item) and as exported (one JSON file): the body verbatim, its
/// hash, and the signature over that hash when the chain is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDigest {
    pub seq: u64,
    pub body: String,
    /// Hex SHA-256 of `body`, as the writer computed it.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_algorithm: Option<String>,
}

/// A signature made by [`kms::DigestSigner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSignature {
    pub der: Vec<u8>,
    pub key_id: String,
    pub algorithm: String,
}

/// The last digest of a cluster's chain: the next one is `seq + 1` and links to `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

impl ChainHead {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// A digest sealed over records, not yet signed nor written.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub cluster: String,
    pub seq: u64,
    pub body: String,
    pub hash: [u8; 32],
    pub first_time: Timestamp,
    pub last_time: Timestamp,
    pub records: usize,
}

impl Sealed {
    /// The head of the chain once this digest is written.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: hex::encode(self.hash),
        }
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Hex SHA-256 of a record item in canonical form.
pub fn leaf(item: &Item) -> String {
    hex::encode(sha256(&canonical::canonical_item(item)))
}

pub fn digest_sk(seq: u64) -> String {
    format!("{DIGEST_PREFIX}{seq:016x}")
}

/// Seals `records` (new trail items of `cluster`) as the digest after `head`: names the
/// digest in each record, then lists them with their hashes.
pub fn seal(cluster: &str, head: &ChainHead, records: &mut [Item], sealed: Timestamp) -> Sealed {
    let seq = head.seq + 1;
    let mut listed = Vec::with_capacity(records.len());
    let (mut first_time, mut last_time) = (Timestamp::MAX, Timestamp::MIN);
    for record in records.iter_mut() {
        record.insert(DIGEST_SEQ.to_owned(), AttributeValue::N(seq.to_string()));
        let time = record_time(record);
        first_time = first_time.min(time);
        last_time = last_time.max(time);
        listed.push(DigestedRecord {
            sk: items::sort_key(record),
            sha256: leaf(record),
        });
    }
    listed.sort_unstable_by(|a, b| a.sk.cmp(&b.sk));
    let body = DigestBody {
        format: FORMAT.to_owned(),
        cluster: cluster.to_owned(),
        seq,
        previous: head.hash.clone(),
        sealed,
        first_time,
        last_time,
        records: listed,
    };
    // Serializing a struct of strings, numbers and times cannot fail.
    let body = serde_json::to_string(&body).unwrap_or_default();
    Sealed {
        cluster: cluster.to_owned(),
        seq,
        hash: sha256(body.as_bytes()),
        body,
        first_time,
        last_time,
        records: records.len(),
    }
}

/// A record item's audit time (`usecs`, which every kind of trail item has).
pub fn record_time(item: &Item) -> Timestamp {
    Timestamp::from_micros(
        item.get("usecs")
            .and_then(|value| value.as_n().ok())
            .and_then(|number| number.parse().ok())
            .unwrap_or_default(),
    )
}

/// The record item's `digest_seq`, when it has a readable one.
pub fn digest_seq_of(item: &Item) -> Option<u64> {
    item.get(DIGEST_SEQ)?.as_n().ok()?.parse().ok()
}

/// The digest's item: the body verbatim, with readable summary attributes beside it for
/// the console (only `body`, `sha256` and the signature are relied on).
pub fn digest_item(sealed: &Sealed, signature: Option<&DigestSignature>) -> Item {
    let mut item = items::key_item(&items::trail_pk(&sealed.cluster), &digest_sk(sealed.seq));
    let mut put = |name: &str, value: AttributeValue| {
        item.insert(name.to_owned(), value);
    };
    put("item_type", AttributeValue::S(DIGEST_ITEM_TYPE.to_owned()));
    put("seq", AttributeValue::N(sealed.seq.to_string()));
    put("records", AttributeValue::N(sealed.records.to_string()));
    put(
        "first_time",
        AttributeValue::S(sealed.first_time.to_string()),
    );
    put("last_time", AttributeValue::S(sealed.last_time.to_string()));
    put("body", AttributeValue::S(sealed.body.clone()));
    put("sha256", AttributeValue::S(hex::encode(sealed.hash)));
    if let Some(signature) = signature {
        put(
            "signature",
            AttributeValue::S(base64::engine::general_purpose::STANDARD.encode(&signature.der)),
        );
        put("key_id", AttributeValue::S(signature.key_id.clone()));
        put(
            "signing_algorithm",
            AttributeValue::S(signature.algorithm.clone()),
        );
    }
    item
}

pub fn is_digest(item: &Item) -> bool {
    items::sort_key(item).starts_with(DIGEST_PREFIX)
}

/// The number a digest's sort key gives it (`DIGEST#<16 hex digits>`).
pub fn seq_of_key(sk: &str) -> Option<u64> {
    u64::from_str_radix(sk.strip_prefix(DIGEST_PREFIX)?, 16).ok()
}

/// A digest item read back, numbered by its key: the place it holds in the chain, which a
/// copied item's `seq` attribute and body would misname. Only a missing `body` or a key
/// that is no digest number makes it unreadable; whether what it holds is right is
/// [`verify`]'s question.
pub fn stored_digest(item: &Item) -> Result<StoredDigest, StoreError> {
    let text = |name: &str| item.get(name).and_then(|value| value.as_s().ok()).cloned();
    let corrupt = |message: &str| StoreError::Corrupt {
        key: items::item_key(item),
        source: message.into(),
    };
    Ok(StoredDigest {
        seq: seq_of_key(&items::sort_key(item))
            .ok_or_else(|| corrupt("digest key without a readable number"))?,
        body: text("body").ok_or_else(|| corrupt("digest without a body"))?,
        sha256: text("sha256").unwrap_or_default(),
        signature: text("signature"),
        key_id: text("key_id"),
        signing_algorithm: text("signing_algorithm"),
    })
}

/// The chain head among a query's items (the digest with the highest number), or the
/// genesis when there is none.
pub fn head_of(found: &[Item]) -> Result<ChainHead, StoreError> {
    match found.iter().rev().find(|item| is_digest(item)) {
        None => Ok(ChainHead::genesis()),
        Some(item) => {
            let digest = stored_digest(item)?;
            Ok(ChainHead {
                seq: digest.seq,
                hash: hex::encode(sha256(digest.body.as_bytes())),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(sk: &str, usecs: i64) -> Item {
        let mut item = items::key_item("TRAIL#c1", sk);
        item.insert("usecs".to_owned(), AttributeValue::N(usecs.to_string()));
        item.insert("raw".to_owned(), AttributeValue::S(format!("record {sk}")));
        item
    }

    #[test]
    fn a_seal_names_its_digest_in_each_record_and_lists_them_in_key_order() {
        let mut records = vec![record("HSM#b#2", 20), record("HSM#a#1", 10)];
        let sealed = seal("c1", &ChainHead::genesis(), &mut records, Timestamp(5));
        let body: DigestBody = serde_json::from_str(&sealed.body).expect("body is JSON");
        assert_eq!(body.seq, 1);
        assert_eq!(body.previous, GENESIS);
        assert_eq!(
            (body.first_time, body.last_time),
            (Timestamp(10), Timestamp(20))
        );
        let keys: Vec<&str> = body.records.iter().map(|r| r.sk.as_str()).collect();
        assert_eq!(keys, ["HSM#a#1", "HSM#b#2"]);
        assert!(records.iter().all(|item| digest_seq_of(item) == Some(1)));
        // The listed hash covers the digest's number in the record.
        assert_eq!(body.records[0].sha256, leaf(&records[1]));
        assert_eq!(sealed.hash, sha256(sealed.body.as_bytes()));
    }

    #[test]
    fn the_next_seal_links_to_the_head_it_was_given() {
        let mut first = vec![record("HSM#a#1", 10)];
        let one = seal("c1", &ChainHead::genesis(), &mut first, Timestamp(1));
        let mut second = vec![record("HSM#a#2", 11)];
        let two = seal("c1", &one.head(), &mut second, Timestamp(2));
        let body: DigestBody = serde_json::from_str(&two.body).expect("body is JSON");
        assert_eq!(body.seq, 2);
        assert_eq!(body.previous, hex::encode(one.hash));
        let stored = [digest_item(&one, None), digest_item(&two, None)];
        assert_eq!(head_of(&stored).expect("readable"), two.head());
    }
}
