//! The same items as DynamoDB holds, kept in a map: lets the pipeline be tested
//! without a network, and the benchmark build a history of a million records. Not a
//! DynamoDB emulator: it does only what [`AuditStore`] needs, and keeps a [`Ledger`] of the
//! requests and capacity units the DynamoDB store would spend on the same calls (its
//! batch sizes, its pages; units by DynamoDB's rules from item sizes), which a test
//! checks against the requests the DynamoDB store sends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

mod packed;

use self::packed::{Packed, pack, unpack};
use super::dynamodb::items::{self, Item};
use super::{AuditStore, ClusterLease, RecordPosition, StateRange, StoreError, TrailOutcome};
use crate::decode::Quarantined;
use crate::digest;
use crate::domain::Conflict;
use crate::incremental::{Checkpoint, ObjectCarry, StepWrite, Streams, TailRead, TailStart};
use crate::model::{Timestamp, TrailEntry};
use crate::store::window::ViewOrder;

#[derive(Debug, Default)]
pub struct MemoryStore {
    items: Mutex<BTreeMap<(String, String), Packed>>,
    leases: Mutex<HashSet<String>>,
    ledger: Mutex<Ledger>,
    /// Item writes (puts and deletes of a step) left before the next one fails, as a
    /// process cut off between two writes would: see [`MemoryStore::fail_after_writes`].
    writes_left: Mutex<Option<usize>>,
}

/// What the DynamoDB store would have spent on the calls made so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// Requests by DynamoDB operation.
    pub requests: BTreeMap<&'static str, u64>,
    /// Strongly consistent reads: 1 unit per started 4 KB of each item read by key, of
    /// each query page's items together.
    pub read_units: f64,
    /// 1 unit per started KB of each item written or deleted; 2 in a transaction.
    pub write_units: u64,
    pub items_read: u64,
}

impl Ledger {
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// DynamoDB's limits per request, as the DynamoDB store batches.
const WRITE_BATCH: usize = 25;
const GET_BATCH: usize = 100;
const TRANSACTION: usize = 100;
const PAGE_BYTES: usize = 1 << 20;

fn read_units(bytes: usize) -> f64 {
    bytes.div_ceil(4096).max(1) as f64
}

fn key_of(item: &Item) -> (String, String) {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    (text("pk"), text("sk"))
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every item, in key order: what a full-table scan would show.
    pub fn snapshot(&self) -> Vec<Item> {
        self.guard().values().map(unpack).collect()
    }

    /// Items of one partition, in sort-key order.
    pub fn partition(&self, pk: &str) -> Vec<Item> {
        self.guard()
            .iter()
            .filter(|((p, _), _)| p == pk)
            .map(|(_, item)| unpack(item))
            .collect()
    }

    /// Visits each item of `pk`, unpacked one at a time: a partition's whole history is
    /// never held at once (as the DynamoDB store reads it a page at a time).
    fn each_in(
        &self,
        pk: &str,
        mut visit: impl FnMut(Item) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let map = self.guard();
        for (_, packed) in map
            .range((pk.to_owned(), String::new())..)
            .take_while(|((p, _), _)| p == pk)
        {
            visit(unpack(packed))?;
        }
        Ok(())
    }

    /// Removes the items of `pk` whose sort key starts with `prefix`, as an operator with
    /// write access to the table could (a deleted checkpoint, a wiped state): returns how many.
    pub fn remove_prefix(&self, pk: &str, prefix: &str) -> usize {
        let mut map = self.guard();
        let before = map.len();
        map.retain(|(p, sk), _| p != pk || !sk.starts_with(prefix));
        before - map.len()
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Packed>> {
        // A panicking test thread cannot leave the map half-written: every write is one insert.
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the DynamoDB store spends to take a lease: it reads the item, then claims it.
    fn book_claim(&self) {
        self.count("GetItem", 1);
        self.count("PutItem", 1);
        let mut book = self.book();
        book.read_units += 1.0;
        book.write_units += 1;
    }

    /// …and to release it.
    fn book_release(&self) {
        self.count("PutItem", 1);
        self.book().write_units += 1;
    }

    /// The cluster's lease if no one holds it.
    fn try_lock(&self, cluster: &str) -> Option<ClusterLease> {
        let taken = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cluster.to_owned());
        if !taken {
            return None;
        }
        self.book_claim();
        Some(ClusterLease {
            cluster: cluster.to_owned(),
            owner: "memory".to_owned(),
            version: 0,
            keeper: None,
        })
    }

    fn put(&self, item: Item) {
        let packed = pack(&item);
        self.guard().insert(key_of(&item), packed);
    }

    /// Makes the write of a step's items fail after `writes` more of them are stored (a
    /// timeout, an out-of-memory kill, a lost lease between any two writes): the fault
    /// the crash-recovery tests inject. It fires once.
    pub fn fail_after_writes(&self, writes: usize) {
        *self.writes_left.lock().unwrap_or_else(|p| p.into_inner()) = Some(writes);
    }

    /// Takes one write from the budget [`Self::fail_after_writes`] set.
    fn spend_write(&self) -> Result<(), StoreError> {
        let mut left = self.writes_left.lock().unwrap_or_else(|p| p.into_inner());
        match *left {
            Some(0) => {
                *left = None;
                Err(StoreError::Request {
                    operation: "BatchWriteItem",
                    source: super::RequestFailed {
                        summary: "injected: the process was cut off".to_owned(),
                        source: "injected fault".into(),
                    },
                })
            }
            Some(n) => {
                *left = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Stores a phase of a step: its deletes, then its puts, each write from the budget.
    fn write_phase(&self, puts: &[Item], deletes: &[Item]) -> Result<(), StoreError> {
        self.book_writes(puts, deletes.len());
        for key in deletes {
            self.spend_write()?;
            self.guard().remove(&key_of(key));
        }
        for item in puts {
            self.spend_write()?;
            self.put(item.clone());
        }
        Ok(())
    }

    /// The requests and units spent since the last reset.
    pub fn ledger(&self) -> Ledger {
        self.book().clone()
    }

    pub fn reset_ledger(&self) {
        *self.book() = Ledger::default();
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, operation: &'static str, requests: usize) {
        if requests > 0 {
            *self.book().requests.entry(operation).or_default() += requests as u64;
        }
    }

    /// Writes (puts, or deletes of `keys`) as the DynamoDB store batches them.
    fn book_writes(&self, written: &[Item], deletes: usize) {
        self.count("BatchWriteItem", written.len().div_ceil(WRITE_BATCH));
        self.count("BatchWriteItem", deletes.div_ceil(WRITE_BATCH));
        let units: u64 = written.iter().map(items::write_units).sum();
        self.book().write_units += units + deletes as u64;
    }

    /// One query's pages: 1 MB each.
    fn book_query(&self, found: &[Item]) {
        let bytes: usize = found.iter().map(items::item_size).sum();
        self.count("Query", bytes.div_ceil(PAGE_BYTES).max(1));
        let mut book = self.book();
        book.read_units += read_units(bytes);
        book.items_read += found.len() as u64;
    }

    /// Items by key, a hundred a request, each read whole.
    fn book_gets(&self, keys: usize, found: &[Item]) {
        self.count("BatchGetItem", keys.div_ceil(GET_BATCH));
        let mut book = self.book();
        // A key that does not exist is billed a unit too.
        book.read_units += found
            .iter()
            .map(|item| read_units(items::item_size(item)))
            .sum::<f64>()
            + keys.saturating_sub(found.len()) as f64;
        book.items_read += found.len() as u64;
    }

    /// The last item of `pk` whose sort key starts with `prefix`: read from the end, as
    /// DynamoDB's reverse `Query` does, not by walking every item under the prefix (the
    /// trail's digests grow with the history).
    fn last_in(&self, pk: &str, prefix: &str) -> Option<Item> {
        let past_prefix = format!("{prefix}{}", char::MAX);
        self.guard()
            .range((pk.to_owned(), prefix.to_owned())..(pk.to_owned(), past_prefix))
            .next_back()
            .map(|(_, item)| unpack(item))
    }

    /// The items of `pk` under these sort keys, in that order (those that exist), billed
    /// as a `BatchGetItem`.
    fn get_keys(&self, pk: &str, sks: &[String]) -> Vec<Item> {
        let found: Vec<Item> = {
            let map = self.guard();
            sks.iter()
                .filter_map(|sk| map.get(&(pk.to_owned(), sk.clone())).map(unpack))
                .collect()
        };
        self.book_gets(sks.len(), &found);
        found
    }

    /// Items of `pk` whose sort key starts with `prefix`, in order.
    fn range(&self, pk: &str, prefix: &str) -> Vec<Item> {
        self.guard()
            .range((pk.to_owned(), prefix.to_owned())..)
            .take_while(|((p, sk), _)| p == pk && sk.starts_with(prefix))
            .map(|(_, item)| unpack(item))
            .collect()
    }
}

impl AuditStore for MemoryStore {
    async fn append_trail(
        &self,
        cluster: &str,
        entries: &[TrailEntry],
    ) -> Result<TrailOutcome, StoreError> {
        // The DynamoDB store takes and releases the chain lease around the write.
        self.book_claim();
        self.book_release();
        let pk = items::trail_pk(cluster);
        let identities: std::collections::BTreeSet<String> = entries
            .iter()
            .map(|entry| items::identity_sk(&entry.identity()))
            .collect();
        let stored: HashMap<String, String> = {
            let map = self.guard();
            identities
                .iter()
                .filter_map(|sk| {
                    let item = unpack(map.get(&(pk.clone(), sk.clone()))?);
                    Some((sk.clone(), items::content_digest(&item).unwrap_or_default()))
                })
                .collect()
        };
        let (fresh, outcome) = super::classify_entries(entries, &stored);
        // The DynamoDB store reads the chain's head, then writes every identity it does not
        // know to be stored conditionally, with a digest, 99 a transaction; when some were
        // stored already, their transactions fail and the fresh ones go again.
        let last_digest = self.last_in(&pk, digest::DIGEST_PREFIX);
        self.book_query(last_digest.as_slice());
        let mut head = digest::head_of(last_digest.as_slice())?;
        let per_transaction = TRANSACTION - 1;
        self.count(
            "TransactWriteItems",
            identities.len().div_ceil(per_transaction),
        );
        if !stored.is_empty() {
            self.count("TransactWriteItems", fresh.len().div_ceil(per_transaction));
        }
        let records = fresh
            .into_iter()
            .map(|(entry, digest)| items::trail_item_with_digest(entry, digest))
            .collect::<Result<Vec<_>, _>>()?;
        let mut written = Vec::with_capacity(records.len() + records.len() / per_transaction + 1);
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let mut chunk: Vec<Item> = records.by_ref().take(per_transaction).collect();
            let sealed = digest::seal(cluster, &head, &mut chunk, Timestamp::now());
            chunk.push(digest::digest_item(&sealed, None));
            head = sealed.head();
            written.extend(chunk);
        }
        self.book().write_units += 2 * written.iter().map(items::write_units).sum::<u64>();
        let conflicts = outcome
            .conflicts
            .iter()
            .map(|conflict| items::conflict_item(cluster, conflict))
            .collect::<Result<Vec<_>, _>>()?;
        self.count("TransactWriteItems", conflicts.len().div_ceil(TRANSACTION));
        self.book().write_units += 2 * conflicts.iter().map(items::write_units).sum::<u64>();
        for item in written.into_iter().chain(conflicts) {
            self.put(item);
        }
        Ok(outcome)
    }

    async fn quarantine(&self, quarantined: &[Quarantined]) -> Result<(), StoreError> {
        let mut written = Vec::new();
        for item in quarantined {
            written.extend(items::quarantine_items(item)?);
        }
        self.book_writes(&written, 0);
        for item in written {
            self.put(item);
        }
        Ok(())
    }

    async fn lock_cluster(&self, cluster: &str) -> Result<ClusterLease, StoreError> {
        loop {
            if let Some(lease) = self.try_lock(cluster) {
                return Ok(lease);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn unlock_cluster(&self, lease: &ClusterLease) -> Result<(), StoreError> {
        self.book_release();
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&lease.cluster);
        Ok(())
    }

    async fn load_checkpoint(&self, cluster: &str) -> Result<Checkpoint, StoreError> {
        let pieces = self.range(&items::state_pk(cluster), items::CHECKPOINT_PREFIX);
        self.book_query(&pieces);
        items::checkpoint_from_items(cluster, &pieces)
    }

    async fn load_tail(
        &self,
        cluster: &str,
        starts: &[TailStart],
        per_stream: usize,
    ) -> Result<TailRead, StoreError> {
        let pk = items::trail_pk(cluster);
        let mut tail = TailRead::default();
        for start in starts {
            let low = start.after.clone().unwrap_or_else(|| start.prefix.clone());
            // As the DynamoDB store's query: one more than the cap tells whether more remain.
            let found: Vec<Item> = self
                .guard()
                .range((pk.clone(), low)..)
                .take_while(|((p, sk), _)| *p == pk && sk.starts_with(&start.prefix))
                .filter(|((_, sk), _)| start.reads(sk))
                .take(per_stream + 1)
                .map(|(_, item)| unpack(item))
                .collect();
            // The DynamoDB store reads a stream with a skipped run as two ranges.
            match &start.skip {
                Some((first, _)) => {
                    let before = found
                        .iter()
                        .take_while(|item| items::sort_key(item) < *first)
                        .count();
                    self.book_query(&found[..before]);
                    self.book_query(&found[before..]);
                }
                None => self.book_query(&found),
            }
            if found.len() > per_stream {
                tail.cut.insert(start.prefix.clone());
            }
            tail.entries
                .extend(items::trail_entries(found.into_iter().take(per_stream))?);
        }
        Ok(tail)
    }

    async fn load_objects(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<Vec<(String, ObjectCarry)>, StoreError> {
        let found: Vec<Item> = {
            let map = self.guard();
            names
                .iter()
                .filter_map(|name| {
                    map.get(&key_of(&items::object_key(cluster, name)))
                        .map(unpack)
                })
                .collect()
        };
        self.book_gets(names.len(), &found);
        items::heads_from_items(&found)
    }

    async fn write_step(
        &self,
        lease: &ClusterLease,
        write: &StepWrite<Item>,
    ) -> Result<(), StoreError> {
        let phases = items::step_phases(&lease.cluster, write)?;
        self.write_phase(&phases.journal, &[])?;
        self.write_phase(&[], &phases.garbage)?;
        self.write_phase(&phases.versions, &[])?;
        self.write_phase(&phases.heads, &[])?;
        self.write_phase(&phases.view_puts, &phases.view_deletes)?;
        self.write_phase(&[], &phases.stale)?;
        self.write_phase(&phases.checkpoint, &phases.checkpoint_stale)?;
        self.write_phase(&phases.after_commit, &[])
    }

    async fn state_range(
        &self,
        cluster: &str,
        range: StateRange<'_>,
    ) -> Result<Vec<Item>, StoreError> {
        let pk = items::state_pk(cluster);
        let found: Vec<Item> = {
            let map = self.guard();
            let rows = map
                .range((pk.clone(), range.low.to_owned())..=(pk.clone(), range.high.to_owned()))
                .map(|(_, item)| unpack(item));
            let limit = range.limit.unwrap_or(usize::MAX);
            if range.reverse {
                rows.rev().take(limit).collect()
            } else {
                rows.take(limit).collect()
            }
        };
        self.book_query(&found);
        Ok(found)
    }

    async fn clear_derived(&self, lease: &ClusterLease) -> Result<usize, StoreError> {
        let pks = [
            items::cluster_pk(&lease.cluster),
            items::state_pk(&lease.cluster),
        ];
        let mut map = self.guard();
        let before = map.len();
        map.retain(|(pk, sk), _| !pks.contains(pk) || sk == items::LEASE_SK);
        Ok(before - map.len())
    }

    async fn trail_streams(&self, cluster: &str) -> Result<Streams, StoreError> {
        let mut streams = Streams::new();
        self.each_in(&items::trail_pk(cluster), |item| {
            items::add_stream(&mut streams, item)
        })?;
        Ok(streams)
    }

    async fn view_range(
        &self,
        cluster: &str,
        order: ViewOrder,
        range: (&str, &str),
        reverse: bool,
        start: Option<Item>,
        limit: Option<usize>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        use std::ops::Bound::{Excluded, Included};
        let pk = items::cluster_pk(cluster);
        let limit = limit.unwrap_or(usize::MAX);
        // As DynamoDB, a page ends at 1 MB of items (or at the limit).
        let mut bytes = 0;
        let mut fits = |item: &Item| {
            bytes += items::item_size(item);
            bytes <= PAGE_BYTES
        };
        let page: Vec<Item> = match order {
            ViewOrder::SortKey => {
                let low = Included((pk.clone(), range.0.to_owned()));
                let high = Included((pk, range.1.to_owned()));
                let map = self.guard();
                let found = match (start.as_ref().map(key_of), reverse) {
                    (None, _) => map.range((low, high)),
                    (Some(at), false) => map.range((Excluded(at), high)),
                    (Some(at), true) => map.range((low, Excluded(at))),
                };
                let found = found.map(|(_, packed)| unpack(packed));
                if reverse {
                    found
                        .rev()
                        .take(limit)
                        .take_while(|item| fits(item))
                        .collect()
                } else {
                    found.take(limit).take_while(|item| fits(item)).collect()
                }
            }
            ViewOrder::TimeKey => {
                // The index, as DynamoDB keeps it: the items that have a time key, by it
                // (then by sort key), keys only.
                let time_key = |item: &Item| {
                    item.get(items::TIME_KEY)
                        .and_then(|value| value.as_s().ok())
                        .cloned()
                };
                let mut index: Vec<(String, String, Item)> = Vec::new();
                self.each_in(&pk, |item| {
                    if let Some(at) = time_key(&item)
                        && (range.0..=range.1).contains(&at.as_str())
                    {
                        let mut entry = items::key_attributes(&item);
                        entry.insert(items::TIME_KEY.to_owned(), item[items::TIME_KEY].clone());
                        index.push((at, items::sort_key(&item), entry));
                    }
                    Ok(())
                })?;
                index.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
                if reverse {
                    index.reverse();
                }
                let after = start
                    .as_ref()
                    .and_then(|start| Some((time_key(start)?, items::sort_key(start))));
                let skip = after.map_or(0, |(at, sk)| {
                    index
                        .iter()
                        .position(|(a, s, _)| (a, s) == (&at, &sk))
                        .map_or(0, |position| position + 1)
                });
                index
                    .into_iter()
                    .skip(skip)
                    .map(|(_, _, entry)| entry)
                    .take(limit)
                    .take_while(|item| fits(item))
                    .collect()
            }
        };
        self.book_query(&page);
        // Like DynamoDB, a page names where to go on, and the page after it may be empty.
        let next = page.last().map(|item| {
            let mut next = items::key_attributes(item);
            if let Some(at) = item.get(items::TIME_KEY) {
                next.insert(items::TIME_KEY.to_owned(), at.clone());
            }
            next
        });
        Ok((page, next))
    }

    async fn view_items(&self, cluster: &str, sks: &[String]) -> Result<Vec<Item>, StoreError> {
        Ok(self.get_keys(&items::cluster_pk(cluster), sks))
    }

    async fn log_event_ids(
        &self,
        cluster: &str,
        records: &[RecordPosition],
    ) -> Result<HashMap<RecordPosition, String>, StoreError> {
        let pk = items::trail_pk(cluster);
        let mut found = Vec::new();
        let mut ids = HashMap::new();
        for position in records {
            let (hsm, boot, seq) = position;
            let key = (pk.clone(), items::trail_sk(hsm, *boot, *seq));
            let Some(item) = self.guard().get(&key).map(unpack) else {
                continue;
            };
            if let Some((_, id)) = items::trail_log_event_id(&item) {
                ids.insert(position.clone(), id);
            }
            found.push(item);
        }
        self.book_gets(records.len(), &found);
        Ok(ids)
    }

    async fn trail_page(
        &self,
        cluster: &str,
        after: Option<&str>,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let pk = items::trail_pk(cluster);
        let start = (pk.clone(), after.unwrap_or_default().to_owned());
        let mut page = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        let map = self.guard();
        for ((_, sk), packed) in map.range(start..).take_while(|((p, _), _)| *p == pk) {
            if page.is_empty() && after == Some(sk.as_str()) {
                continue;
            }
            if bytes >= PAGE_BYTES {
                more = true;
                break;
            }
            let item = unpack(packed);
            bytes += items::item_size(&item);
            page.push(item);
        }
        drop(map);
        let next = if more {
            page.last().map(items::sort_key)
        } else {
            None
        };
        self.book_query(&page);
        Ok((page, next))
    }

    async fn trail_items(&self, cluster: &str, sks: &[String]) -> Result<Vec<Item>, StoreError> {
        Ok(self.get_keys(&items::trail_pk(cluster), sks))
    }

    async fn conflicts(&self, cluster: &str) -> Result<Vec<Conflict>, StoreError> {
        let mut conflicts = Vec::new();
        self.each_in(&items::trail_pk(cluster), |item| {
            if items::is_conflict(&item) {
                conflicts.push(items::conflict_from_item(item)?);
            }
            Ok(())
        })?;
        Ok(conflicts)
    }
}
