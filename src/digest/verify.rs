//! The checks `hsm-audit verify` makes, free of I/O: the chain of digests one by one in
//! number order ([`ChainCheck`]), then each record against the digest it names
//! ([`RecordTally`]). [`crate::verify`] feeds them from the store page by page.

use std::collections::HashMap;

use base64::Engine;
use serde::Serialize;

use super::signature::PublicKey;
use super::{DigestBody, GENESIS, StoredDigest, leaf, sha256};
use crate::model::Timestamp;
use crate::store::dynamodb::items::{self, Item};

/// One thing `verify` found wrong, named by record identity (sort key) or digest number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// A record's content differs from what its digest recorded.
    Modified { sk: String, digest: u64 },
    /// A record its digest lists is not in the trail.
    Deleted { sk: String, digest: u64 },
    /// A record no digest vouches for: it names none, or one that does not list it.
    Added { sk: String, digest: Option<u64> },
    /// A digest whose stored body does not hash to its stored hash, cannot be read, or
    /// differs from the exported copy.
    DigestAltered { digest: u64, reason: String },
    /// A digest whose `previous` is not the hash of the digest before it.
    BrokenLink { digest: u64 },
    /// Digest `digest` holds, verbatim, the body of digest `of`: a copy put in its place
    /// (whatever was there is gone, so the link after it is not reported again).
    Replayed { digest: u64, of: u64 },
    /// Digest numbers absent from the chain (dropped digests).
    MissingDigests { first: u64, last: u64 },
    /// The chain ends before digest `last`, which was anchored outside the table at
    /// `anchored`: digests `first` to `last`, and the records they listed, are gone.
    Truncated {
        first: u64,
        last: u64,
        anchored: Timestamp,
    },
    /// A digest whose signature does not verify with the given public key.
    BadSignature { digest: u64 },
    /// A digest without a signature, when a public key was given.
    Unsigned { digest: u64 },
}

impl Finding {
    /// The digest a finding about a digest names.
    pub fn digest(&self) -> Option<u64> {
        match self {
            Finding::DigestAltered { digest, .. }
            | Finding::BrokenLink { digest }
            | Finding::Replayed { digest, .. }
            | Finding::BadSignature { digest }
            | Finding::Unsigned { digest } => Some(*digest),
            Finding::Modified { .. }
            | Finding::Deleted { .. }
            | Finding::Added { .. }
            | Finding::MissingDigests { .. }
            | Finding::Truncated { .. } => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Finding::Modified { sk, digest } => {
                format!("modified: {sk} differs from what digest {digest} recorded")
            }
            Finding::Deleted { sk, digest } => {
                format!("deleted: {sk}, listed in digest {digest}, is not in the trail")
            }
            Finding::Added { sk, digest: None } => {
                format!("added: {sk} is in no digest")
            }
            Finding::Added {
                sk,
                digest: Some(digest),
            } => format!("added: {sk} names digest {digest}, which does not list it"),
            Finding::DigestAltered { digest, reason } => {
                format!("digest {digest} altered: {reason}")
            }
            Finding::Replayed { digest, of } => {
                format!("replayed: digest {digest} is a copy of digest {of}")
            }
            Finding::BrokenLink { digest } => format!(
                "broken link: digest {digest} does not carry the hash of digest {}",
                digest.saturating_sub(1)
            ),
            Finding::MissingDigests { first, last } if first == last => {
                format!("missing digest: {first}")
            }
            Finding::MissingDigests { first, last } => {
                format!("missing digests: {first} to {last}")
            }
            Finding::Truncated {
                first,
                last,
                anchored,
            } => format!(
                "truncated: the chain ends before digest {first}; digests {first} to {last} \
                 (anchored {anchored}) and the records they listed are gone"
            ),
            Finding::BadSignature { digest } => {
                format!("bad signature: digest {digest} is not signed by the given key")
            }
            Finding::Unsigned { digest } => format!("unsigned: digest {digest} has no signature"),
        }
    }
}

/// Checks digests in number order: each body against its stored hash, its link to the
/// one before, its signature when a key is given.
pub struct ChainCheck {
    key: Option<PublicKey>,
    last: Option<(u64, String)>,
    /// The last digest checked was a copy of another: the next link, made to what the
    /// copy replaced, is not a finding of its own.
    last_replaced: bool,
    pub checked: u64,
}

impl ChainCheck {
    pub fn new(key: Option<PublicKey>) -> Self {
        Self {
            key,
            last: None,
            last_replaced: false,
            checked: 0,
        }
    }

    /// The number of the last digest checked.
    pub fn last_seq(&self) -> u64 {
        self.last.as_ref().map_or(0, |(seq, _)| *seq)
    }

    /// Checks the next digest; its body when it can be read. `copy_of`: the number of
    /// another digest whose body this one's is, byte for byte (the caller looks it up when
    /// [`numbered_elsewhere`] says the body names another number).
    pub fn check(
        &mut self,
        digest: &StoredDigest,
        copy_of: Option<u64>,
        findings: &mut Vec<Finding>,
    ) -> Option<DigestBody> {
        self.checked += 1;
        let seq = digest.seq;
        let hash = sha256(digest.body.as_bytes());
        let hex_hash = hex::encode(hash);
        if digest.sha256 != hex_hash {
            findings.push(Finding::DigestAltered {
                digest: seq,
                reason: "its body does not hash to its stored sha256".to_owned(),
            });
        }
        let body = match serde_json::from_str::<DigestBody>(&digest.body) {
            Ok(body) if body.seq == seq => Some(body),
            Ok(body) => {
                findings.push(match copy_of {
                    Some(of) => Finding::Replayed { digest: seq, of },
                    None => Finding::DigestAltered {
                        digest: seq,
                        reason: format!("its body is numbered {}", body.seq),
                    },
                });
                None
            }
            Err(error) => {
                findings.push(Finding::DigestAltered {
                    digest: seq,
                    reason: format!("its body is not a digest: {error}"),
                });
                None
            }
        };
        let (last_seq, last_hash) = self.last.clone().unwrap_or_else(|| (0, GENESIS.to_owned()));
        if seq > last_seq + 1 {
            findings.push(Finding::MissingDigests {
                first: last_seq + 1,
                last: seq - 1,
            });
        } else if let Some(body) = &body
            && body.previous != last_hash
            && !self.last_replaced
        {
            findings.push(Finding::BrokenLink { digest: seq });
        }
        self.last_replaced = copy_of.is_some();
        if let Some(key) = &self.key {
            match digest.signature.as_deref().map(|text| {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap_or_default()
            }) {
                None => findings.push(Finding::Unsigned { digest: seq }),
                Some(signature) if !key.verifies(&hash, &signature) => {
                    findings.push(Finding::BadSignature { digest: seq })
                }
                Some(_) => {}
            }
        }
        self.last = Some((seq, hex_hash));
        body
    }
}

/// The number a digest's body names when it is not the number the digest is stored
/// under: a copy of that digest, or a body edited.
pub fn numbered_elsewhere(digest: &StoredDigest) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Numbered {
        seq: u64,
    }
    serde_json::from_str::<Numbered>(&digest.body)
        .ok()
        .map(|body| body.seq)
        .filter(|seq| *seq != digest.seq)
}

/// What one digest lists: sort key → record hash, and its time range.
#[derive(Debug, Clone)]
pub struct DigestList {
    pub seq: u64,
    pub records: HashMap<String, String>,
    pub first_time: Timestamp,
    pub last_time: Timestamp,
}

impl DigestList {
    /// The list of the digest stored as number `seq` (which its body may misname).
    pub fn of(seq: u64, body: &DigestBody) -> Self {
        Self {
            seq,
            records: body
                .records
                .iter()
                .map(|record| (record.sk.clone(), record.sha256.clone()))
                .collect(),
            first_time: body.first_time,
            last_time: body.last_time,
        }
    }
}

/// Tallies records against the digests they name: a record listed with its hash counts
/// for its digest; one listed with another hash is modified; one not listed is added. A
/// digest that ends with fewer records counted than it lists lost some
/// ([`RecordTally::short`]); which, the caller reads by key.
#[derive(Debug, Default)]
pub struct RecordTally {
    /// Digest number → (records listed, records counted).
    counts: HashMap<u64, (usize, usize)>,
    pub records: u64,
}

impl RecordTally {
    /// Notes what a digest lists (the chain pass reads every digest).
    pub fn listed(&mut self, seq: u64, records: usize) {
        self.counts.entry(seq).or_default().0 = records;
    }

    /// Checks one record item; `list` is the digest it names, when that exists.
    pub fn check(&mut self, record: &Item, list: Option<&DigestList>) -> Option<Finding> {
        self.records += 1;
        let sk = items::sort_key(record);
        let Some(list) = list else {
            return Some(Finding::Added {
                sk,
                digest: super::digest_seq_of(record),
            });
        };
        let counts = self.counts.entry(list.seq).or_default();
        counts.0 = list.records.len();
        match list.records.get(&sk) {
            None => Some(Finding::Added {
                sk,
                digest: Some(list.seq),
            }),
            Some(expected) => {
                counts.1 += 1;
                (*expected != leaf(record)).then_some(Finding::Modified {
                    sk,
                    digest: list.seq,
                })
            }
        }
    }

    /// Digests that list more records than were found naming them, in number order.
    pub fn short(&self) -> Vec<u64> {
        let mut short: Vec<u64> = self
            .counts
            .iter()
            .filter(|(_, (listed, counted))| counted < listed)
            .map(|(seq, _)| *seq)
            .collect();
        short.sort_unstable();
        short
    }
}

/// For a digest short of records: each listed record absent from `found` (the items read
/// by key) is deleted; one present but unlike its hash (it names another digest, so the
/// tally did not count it here) is modified.
pub fn missing_records(list: &DigestList, found: &[Item]) -> Vec<Finding> {
    let found: HashMap<String, &Item> = found
        .iter()
        .map(|item| (items::sort_key(item), item))
        .collect();
    let mut listed: Vec<(&String, &String)> = list.records.iter().collect();
    listed.sort_unstable();
    listed
        .into_iter()
        .filter_map(|(sk, expected)| match found.get(sk) {
            None => Some(Finding::Deleted {
                sk: sk.clone(),
                digest: list.seq,
            }),
            Some(item) if leaf(item) != *expected => Some(Finding::Modified {
                sk: sk.clone(),
                digest: list.seq,
            }),
            Some(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::super::signature::tests::{public_der, sign, test_key};
    use super::super::tests::record;
    use super::super::{ChainHead, Sealed, seal};
    use super::*;

    fn stored(sealed: &Sealed, signature: Option<Vec<u8>>) -> StoredDigest {
        StoredDigest {
            seq: sealed.seq,
            body: sealed.body.clone(),
            sha256: hex::encode(sealed.hash),
            signature: signature.map(|der| base64::engine::general_purpose::STANDARD.encode(der)),
            key_id: None,
            signing_algorithm: None,
        }
    }

    /// Three digests of two records each, and the records as sealed.
    fn chain() -> (Vec<Sealed>, Vec<Item>) {
        let mut head = ChainHead::genesis();
        let (mut digests, mut all) = (Vec::new(), Vec::new());
        for n in 0..3 {
            let mut records = vec![
                record(&format!("HSM#a#{n}"), n),
                record(&format!("HSM#b#{n}"), n),
            ];
            let sealed = seal("c1", &head, &mut records, Timestamp(n));
            head = sealed.head();
            digests.push(sealed);
            all.extend(records);
        }
        (digests, all)
    }

    fn check_chain(digests: &[StoredDigest], key: Option<PublicKey>) -> Vec<Finding> {
        let mut chain = ChainCheck::new(key);
        let mut findings = Vec::new();
        for digest in digests {
            chain.check(digest, None, &mut findings);
        }
        findings
    }

    #[test]
    fn an_untouched_signed_chain_has_no_findings() {
        let key = test_key(1);
        let (digests, _) = chain();
        let stored: Vec<StoredDigest> = digests
            .iter()
            .map(|d| stored(d, Some(sign(&key, &d.hash))))
            .collect();
        let public = PublicKey::from_pem_or_der(&public_der(&key)).ok();
        assert_eq!(check_chain(&stored, public), []);
    }

    #[test]
    fn an_edited_body_a_dropped_digest_and_another_signer_are_each_named() {
        let (ours, theirs) = (test_key(1), test_key(2));
        let (digests, _) = chain();
        let mut stored: Vec<StoredDigest> = digests
            .iter()
            .map(|d| stored(d, Some(sign(&ours, &d.hash))))
            .collect();
        let public = || PublicKey::from_pem_or_der(&public_der(&ours)).ok();

        // Rewriting digest 2's body and its hash breaks digest 3's link and its signature.
        let mut edited = stored.clone();
        edited[1].body = edited[1].body.replace("HSM#a#1", "HSM#a#9");
        edited[1].sha256 = hex::encode(sha256(edited[1].body.as_bytes()));
        assert_eq!(
            check_chain(&edited, public()),
            [
                Finding::BadSignature { digest: 2 },
                Finding::BrokenLink { digest: 3 }
            ]
        );

        let dropped = [stored[0].clone(), stored[2].clone()];
        assert_eq!(
            check_chain(&dropped, public()),
            [Finding::MissingDigests { first: 2, last: 2 }]
        );

        stored[2].signature =
            Some(base64::engine::general_purpose::STANDARD.encode(sign(&theirs, &digests[2].hash)));
        assert_eq!(
            check_chain(&stored, public()),
            [Finding::BadSignature { digest: 3 }]
        );
        stored[2].signature = None;
        assert_eq!(
            check_chain(&stored, public()),
            [Finding::Unsigned { digest: 3 }]
        );
        // Without a key, signatures are not the question.
        assert_eq!(check_chain(&stored, None), []);
    }

    #[test]
    fn a_digest_copied_under_another_number_is_named_replayed_once() {
        let (digests, _) = chain();
        let stored: Vec<StoredDigest> = digests.iter().map(|d| stored(d, None)).collect();
        let check = |chain: &[StoredDigest]| {
            let mut check = ChainCheck::new(None);
            let mut findings = Vec::new();
            for digest in chain {
                let copy_of = numbered_elsewhere(digest);
                check.check(digest, copy_of, &mut findings);
            }
            findings
        };
        // Digest 1 copied as a new digest 4.
        let mut appended = stored.clone();
        appended.push(StoredDigest {
            seq: 4,
            ..stored[0].clone()
        });
        assert_eq!(numbered_elsewhere(&appended[3]), Some(1));
        assert_eq!(check(&appended), [Finding::Replayed { digest: 4, of: 1 }]);
        // Digest 1 copied over digest 2: digest 3's link to what was there is not a
        // second finding.
        let mut replaced = stored.clone();
        replaced[1] = StoredDigest {
            seq: 2,
            ..stored[0].clone()
        };
        assert_eq!(check(&replaced), [Finding::Replayed { digest: 2, of: 1 }]);
        // A body renumbered by hand is no copy of anything.
        let mut renumbered = stored.clone();
        renumbered[2].body = renumbered[2].body.replace("\"seq\":3", "\"seq\":1");
        renumbered[2].sha256 = hex::encode(sha256(renumbered[2].body.as_bytes()));
        let mut check = ChainCheck::new(None);
        let mut findings = Vec::new();
        for digest in &renumbered {
            check.check(digest, None, &mut findings);
        }
        assert_eq!(
            findings,
            [Finding::DigestAltered {
                digest: 3,
                reason: "its body is numbered 1".to_owned()
            }]
        );
        assert_eq!(numbered_elsewhere(&stored[2]), None);
    }

    #[test]
    fn records_are_tallied_against_the_digest_they_name() {
        let (digests, records) = chain();
        let lists: Vec<DigestList> = digests
            .iter()
            .map(|d| DigestList::of(d.seq, &serde_json::from_str(&d.body).expect("body")))
            .collect();
        let list_of = |item: &Item| {
            super::super::digest_seq_of(item).and_then(|seq| lists.get(seq as usize - 1))
        };
        let mut tally = RecordTally::default();
        let mut findings = Vec::new();
        let mut tampered = records.clone();
        tampered[0].insert("raw".to_owned(), AttributeValue::S("edited".to_owned()));
        // HSM#a#2 claims digest 1.
        tampered[4].insert(
            super::super::DIGEST_SEQ.to_owned(),
            AttributeValue::N("1".to_owned()),
        );
        tampered.remove(3); // HSM#b#1, listed in digest 2
        tampered.push(record("HSM#a#forged", 1));
        for item in &tampered {
            findings.extend(tally.check(item, list_of(item)));
        }
        assert_eq!(
            findings,
            [
                Finding::Modified {
                    sk: "HSM#a#0".to_owned(),
                    digest: 1
                },
                Finding::Added {
                    sk: "HSM#a#2".to_owned(),
                    digest: Some(1)
                },
                Finding::Added {
                    sk: "HSM#a#forged".to_owned(),
                    digest: None
                },
            ]
        );
        assert_eq!(tally.short(), [2, 3]);
        let found: Vec<Item> = tampered.clone();
        assert_eq!(
            missing_records(&lists[1], &found),
            [Finding::Deleted {
                sk: "HSM#b#1".to_owned(),
                digest: 2
            }]
        );
        assert_eq!(
            missing_records(&lists[2], &found),
            [Finding::Modified {
                sk: "HSM#a#2".to_owned(),
                digest: 3
            }]
        );
    }
}
