//! `hsm-audit verify` and `hsm-audit digests`: the trail checked against its digest chain
//! through the store port, one page at a time.
//!
//! One pass over the cluster's trail partition, in key order: the digests come first
//! (`DIGEST#…` sorts before `HSM#…` and `LOG_EVENT#…`) and are checked as a chain; then
//! each record against the digest it names, whose list is read on demand and kept in a
//! small cache (a stream's records sit in a run of digests, so each is read about once
//! per stream). Memory holds one page, the cache, and two counters per digest; digests
//! that end short of records are read again with their records by key, to name what was
//! deleted. With exported digests (`--digests DIR`), the chain is checked on the files
//! and the table's digests are compared with them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::digest::anchor::Anchor;
use crate::digest::signature::PublicKey;
use crate::digest::verify::{
    ChainCheck, DigestList, Finding, RecordTally, missing_records, numbered_elsewhere,
};
use crate::digest::{self, DIGEST_PREFIX, DigestBody, StoredDigest, sha256};
use crate::model::Timestamp;
use crate::store::dynamodb::items::{self, Item};
use crate::store::{AuditStore, StoreError};

/// Findings kept in a report; past it only their number (a table rewritten wholesale
/// must not take the verifier's memory with it).
const MAX_FINDINGS: usize = 10_000;

/// Digest lists kept between pages.
const CACHED_LISTS: usize = 256;

#[derive(Debug, Default)]
pub struct VerifyOptions {
    /// The signer's public key: every digest must carry its valid signature.
    pub public_key: Option<PublicKey>,
    /// Record findings only for records (deleted ones: digests) timed in this period.
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Digests exported by `hsm-audit digests`, trusted over the table's.
    pub exported: Option<PathBuf>,
    /// Chain heads published outside the table (`digest::anchor`), oldest first: the
    /// table's chain must reach the newest and hold each under its number.
    pub anchors: Option<Vec<Anchor>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub cluster: String,
    /// True when nothing was found wrong.
    pub clean: bool,
    pub digests: u64,
    pub records: u64,
    /// Whether signatures were checked (a public key was given).
    pub signatures_checked: bool,
    /// Anchors the chain was checked against (`verify --anchors`).
    pub anchors_checked: u64,
    pub findings: Vec<Finding>,
    /// Findings past the first [`MAX_FINDINGS`], counted only.
    pub findings_omitted: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read exported digests in {path}: {message}")]
    Export { path: String, message: String },
}

/// Findings with a cap and the period filter.
struct Findings {
    kept: Vec<Finding>,
    omitted: u64,
}

impl Findings {
    fn push(&mut self, finding: Finding) {
        if self.kept.len() < MAX_FINDINGS {
            self.kept.push(finding);
        } else {
            self.omitted += 1;
        }
    }
}

fn in_period(options: &VerifyOptions, first: Timestamp, last: Timestamp) -> bool {
    options.from.is_none_or(|from| last >= from) && options.to.is_none_or(|to| first <= to)
}

/// The digests exported to `dir`, by number.
fn exported_digests(dir: &Path) -> Result<BTreeMap<u64, PathBuf>, VerifyError> {
    let error = |message: String| VerifyError::Export {
        path: dir.display().to_string(),
        message,
    };
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| error(e.to_string()))? {
        let path = entry.map_err(|e| error(e.to_string()))?.path();
        let seq = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix("digest-")?.strip_suffix(".json"))
            .and_then(|seq| seq.parse::<u64>().ok());
        if let Some(seq) = seq {
            files.insert(seq, path);
        }
    }
    Ok(files)
}

fn read_exported(path: &Path) -> Result<StoredDigest, VerifyError> {
    let text = std::fs::read(path).map_err(|e| VerifyError::Export {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    serde_json::from_slice(&text).map_err(|e| VerifyError::Export {
        path: path.display().to_string(),
        message: format!("not an exported digest: {e}"),
    })
}

/// A digest item as stored, or why it cannot be read (a finding, not an error: the
/// table may have been tampered with).
fn table_digest(item: &Item) -> Result<StoredDigest, Finding> {
    digest::stored_digest(item).map_err(|error| Finding::DigestAltered {
        digest: digest::seq_of_key(&items::sort_key(item)).unwrap_or_default(),
        reason: error.to_string(),
    })
}

struct Verifier<'a, S> {
    store: &'a S,
    cluster: &'a str,
    options: &'a VerifyOptions,
    exported: BTreeMap<u64, PathBuf>,
    /// Hex SHA-256 of each exported digest's body, from the chain pass over the files:
    /// the table's digests are compared with these, not by reading the files again.
    exported_hashes: HashMap<u64, String>,
    lists: HashMap<u64, Option<Arc<DigestList>>>,
    /// Anchored digest number → the hash of the table's digest under it.
    anchored_hashes: HashMap<u64, Option<String>>,
    /// The highest digest number in the table.
    table_last: u64,
    chain: ChainCheck,
    tally: RecordTally,
    findings: Findings,
}

impl<S: AuditStore> Verifier<'_, S> {
    /// The body of the table's digest `seq`, read by key, when there is a readable one.
    async fn table_body(&self, seq: u64) -> Result<Option<String>, VerifyError> {
        Ok(self
            .store
            .trail_items(self.cluster, &[digest::digest_sk(seq)])
            .await?
            .first()
            .and_then(|item| digest::stored_digest(item).ok())
            .map(|stored| stored.body))
    }

    /// What digest `seq` lists: from the export when it has it, else from the table.
    async fn list(&mut self, seq: u64) -> Result<Option<Arc<DigestList>>, VerifyError> {
        if let Some(list) = self.lists.get(&seq) {
            return Ok(list.clone());
        }
        let body = match self.exported.get(&seq) {
            Some(path) => Some(read_exported(path)?.body),
            None => self.table_body(seq).await?,
        };
        let list = body
            .and_then(|body| serde_json::from_str::<DigestBody>(&body).ok())
            .map(|body| Arc::new(DigestList::of(seq, &body)));
        if self.lists.len() >= CACHED_LISTS {
            self.lists.clear();
        }
        self.lists.insert(seq, list.clone());
        Ok(list)
    }

    /// Keeps what the anchor check needs of a digest of the table.
    fn note_table_digest(&mut self, digest: &StoredDigest) {
        self.table_last = self.table_last.max(digest.seq);
        if let Some(hash) = self.anchored_hashes.get_mut(&digest.seq) {
            *hash = Some(hex::encode(sha256(digest.body.as_bytes())));
        }
    }

    /// The chain against its anchors: a chain that ends before the newest anchored number
    /// was truncated; an anchored number whose digest hashes otherwise holds another
    /// digest than the one anchored (unless that digest is named already). A number the
    /// chain lacks in its middle is the chain check's `missing_digests`.
    fn against_anchors(&self) -> Vec<Finding> {
        let Some(anchors) = &self.options.anchors else {
            return Vec::new();
        };
        let mut findings = Vec::new();
        if let Some(newest) = anchors.iter().max_by_key(|anchor| anchor.seq)
            && newest.seq > self.table_last
        {
            findings.push(Finding::Truncated {
                first: self.table_last + 1,
                last: newest.seq,
                anchored: newest.anchored,
            });
        }
        let named: std::collections::HashSet<u64> = self
            .findings
            .kept
            .iter()
            .filter_map(Finding::digest)
            .collect();
        let mut differing: Vec<&Anchor> = anchors
            .iter()
            .filter(|anchor| {
                matches!(self.anchored_hashes.get(&anchor.seq),
                    Some(Some(hash)) if *hash != anchor.sha256)
            })
            .filter(|anchor| !named.contains(&anchor.seq))
            .collect();
        differing.sort_by_key(|anchor| anchor.seq);
        differing.dedup_by_key(|anchor| anchor.seq);
        findings.extend(differing.into_iter().map(|anchor| Finding::DigestAltered {
            digest: anchor.seq,
            reason: format!("it differs from the anchor published {}", anchor.anchored),
        }));
        findings
    }

    /// The digest whose body `digest` holds byte for byte when that body names another
    /// number: read from the export when it has it, else from the table.
    async fn copy_of(&self, digest: &StoredDigest) -> Result<Option<u64>, VerifyError> {
        let Some(named) = numbered_elsewhere(digest) else {
            return Ok(None);
        };
        let hash = hex::encode(sha256(digest.body.as_bytes()));
        let original = match self.exported_hashes.get(&named) {
            Some(exported) => Some(exported.clone()),
            None => self
                .table_body(named)
                .await?
                .map(|body| hex::encode(sha256(body.as_bytes()))),
        };
        Ok((original == Some(hash)).then_some(named))
    }

    async fn check_digest(&mut self, digest: &StoredDigest) -> Result<(), VerifyError> {
        let copy_of = self.copy_of(digest).await?;
        let mut found = Vec::new();
        if let Some(body) = self.chain.check(digest, copy_of, &mut found) {
            self.tally.listed(digest.seq, body.records.len());
        }
        for finding in found {
            self.findings.push(finding);
        }
        Ok(())
    }

    /// A digest of the table when digests were exported: the copy decides.
    async fn compare_with_export(
        &mut self,
        digest: &StoredDigest,
        exported_max: u64,
    ) -> Result<(), VerifyError> {
        match self.exported_hashes.get(&digest.seq) {
            Some(exported) => {
                if *exported != hex::encode(sha256(digest.body.as_bytes())) {
                    let finding = match self.copy_of(digest).await? {
                        Some(of) => Finding::Replayed {
                            digest: digest.seq,
                            of,
                        },
                        None => Finding::DigestAltered {
                            digest: digest.seq,
                            reason: "it differs from the exported copy".to_owned(),
                        },
                    };
                    self.findings.push(finding);
                }
            }
            None if digest.seq <= exported_max => self.findings.push(Finding::DigestAltered {
                digest: digest.seq,
                reason: "the export does not have it".to_owned(),
            }),
            None => self.check_digest(digest).await?,
        }
        Ok(())
    }

    async fn check_records(&mut self, records: Vec<Item>) -> Result<(), VerifyError> {
        for record in records {
            let list = match digest::digest_seq_of(&record) {
                Some(seq) => self.list(seq).await?,
                None => None,
            };
            let finding = self.tally.check(&record, list.as_deref());
            let time = digest::record_time(&record);
            if let Some(finding) = finding
                && in_period(self.options, time, time)
            {
                self.findings.push(finding);
            }
        }
        Ok(())
    }
}

/// Checks the cluster's trail against its digests. `on_page` hears the records checked
/// so far after each page (for a progress display).
pub async fn verify_trail<S: AuditStore>(
    store: &S,
    cluster: &str,
    options: &VerifyOptions,
    mut on_page: impl FnMut(u64),
) -> Result<VerifyReport, VerifyError> {
    let exported = match &options.exported {
        Some(dir) => exported_digests(dir)?,
        None => BTreeMap::new(),
    };
    let exported_max = exported.keys().next_back().copied().unwrap_or(0);
    let mut verifier = Verifier {
        store,
        cluster,
        options,
        exported,
        exported_hashes: HashMap::new(),
        lists: HashMap::new(),
        anchored_hashes: options
            .anchors
            .iter()
            .flatten()
            .map(|anchor| (anchor.seq, None))
            .collect(),
        table_last: 0,
        chain: ChainCheck::new(options.public_key.clone()),
        tally: RecordTally::default(),
        findings: Findings {
            kept: Vec::new(),
            omitted: 0,
        },
    };
    let exported_paths: Vec<PathBuf> = verifier.exported.values().cloned().collect();
    for path in exported_paths {
        let digest = read_exported(&path)?;
        verifier.check_digest(&digest).await?;
        verifier
            .exported_hashes
            .insert(digest.seq, hex::encode(sha256(digest.body.as_bytes())));
    }
    let mut in_table: Vec<u64> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) = store.trail_page(cluster, after.as_deref()).await?;
        let mut records = Vec::new();
        for item in page {
            if digest::is_digest(&item) {
                match table_digest(&item) {
                    Ok(stored) => {
                        verifier.note_table_digest(&stored);
                        if options.exported.is_some() {
                            in_table.push(stored.seq);
                            verifier.compare_with_export(&stored, exported_max).await?;
                        } else {
                            verifier.check_digest(&stored).await?;
                        }
                    }
                    Err(finding) => verifier.findings.push(finding),
                }
            } else if items::is_trail_record(&item) {
                records.push(item);
            }
        }
        verifier.check_records(records).await?;
        on_page(verifier.tally.records);
        match next {
            Some(sk) => after = Some(sk),
            None => break,
        }
    }
    if options.exported.is_some() {
        let dropped: Vec<u64> = verifier
            .exported
            .keys()
            .filter(|seq| in_table.binary_search(seq).is_err())
            .copied()
            .collect();
        for seq in dropped {
            verifier.findings.push(Finding::MissingDigests {
                first: seq,
                last: seq,
            });
        }
    }
    for finding in verifier.against_anchors() {
        verifier.findings.push(finding);
    }
    for seq in verifier.tally.short() {
        let Some(list) = verifier.list(seq).await? else {
            continue;
        };
        if !in_period(options, list.first_time, list.last_time) {
            continue;
        }
        let mut keys: Vec<String> = list.records.keys().cloned().collect();
        keys.sort_unstable();
        let found = store.trail_items(cluster, &keys).await?;
        for finding in missing_records(&list, &found) {
            verifier.findings.push(finding);
        }
    }
    let findings = verifier.findings;
    Ok(VerifyReport {
        cluster: cluster.to_owned(),
        clean: findings.kept.is_empty(),
        digests: verifier.chain.checked,
        records: verifier.tally.records,
        signatures_checked: options.public_key.is_some(),
        anchors_checked: options
            .anchors
            .as_ref()
            .map_or(0, |anchors| anchors.len() as u64),
        findings: findings.kept,
        findings_omitted: findings.omitted,
    })
}

/// Writes each digest of the cluster to `dir` as `digest-<number>.json` (what
/// `verify --digests` reads); returns how many. Files already there are rewritten with
/// the table's content, so export to a fresh directory (or an Object Lock bucket's sync
/// of one) to keep the old copies as evidence.
pub async fn export_digests<S: AuditStore>(
    store: &S,
    cluster: &str,
    dir: &Path,
) -> Result<u64, VerifyError> {
    let error = |message: String| VerifyError::Export {
        path: dir.display().to_string(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
    let mut written = 0;
    // Digests sort right after this key and before every record.
    let mut after = Some(DIGEST_PREFIX.to_owned());
    while let Some(start) = after.take() {
        let (page, next) = store.trail_page(cluster, Some(&start)).await?;
        let mut past_digests = false;
        for item in page {
            if !digest::is_digest(&item) {
                past_digests = true;
                break;
            }
            let digest = digest::stored_digest(&item)?;
            let path = dir.join(format!("digest-{:020}.json", digest.seq));
            let text = serde_json::to_vec_pretty(&digest).map_err(|e| error(e.to_string()))?;
            std::fs::write(&path, text).map_err(|e| error(format!("{}: {e}", path.display())))?;
            written += 1;
        }
        if !past_digests {
            after = next;
        }
    }
    Ok(written)
}
