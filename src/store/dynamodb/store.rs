//! The DynamoDB store: the client, the lease, and the trail and view writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use tracing::warn;

use super::lease::LeaseKind;
use super::queries::SortKey;
use crate::decode::Quarantined;
use crate::digest::anchor::{Anchor, Anchoring};
use crate::digest::{self, ChainHead, kms::DigestSigner};
use crate::domain::Conflict;
use crate::incremental::{Checkpoint, ObjectCarry, StepWrite, Streams, TailRead, TailStart};
use crate::model::{Timestamp, TrailEntry};
use crate::store::dynamodb::items::{self, Item};
use crate::store::window::ViewOrder;
use crate::store::{
    AuditStore, ClusterLease, RecordPosition, StateRange, StoreError, TrailOutcome,
};

/// DynamoDB requests made, by kind: the benchmark's requests-per-record come from here,
/// since a local server's `ConsumedCapacity` cannot be trusted.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub batch_write: AtomicU64,
    pub batch_get: AtomicU64,
    pub transact_write: AtomicU64,
    pub query: AtomicU64,
    pub single_item: AtomicU64,
    pub retries: AtomicU64,
}

impl RequestCounts {
    pub(super) fn count_batch_write(&self) {
        self.batch_write.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_transact_write(&self) {
        self.transact_write.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_batch_get(&self) {
        self.batch_get.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_query(&self) {
        self.query.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_single_item(&self) {
        self.single_item.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests sent, retries included.
    pub fn total(&self) -> u64 {
        [
            &self.batch_write,
            &self.batch_get,
            &self.transact_write,
            &self.query,
            &self.single_item,
        ]
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .sum()
    }
}

pub struct DynamoStore {
    pub(super) client: Client,
    pub(super) table: String,
    pub(super) counts: Arc<RequestCounts>,
    #[cfg(any(test, feature = "testkit"))]
    pub(super) ledger: crate::testkit::WriteLedger,
    pub(super) lease_wait: Duration,
    pub(super) lease_ttl: Duration,
    /// How long a writer waits for the chain lease before writing without it.
    pub(super) chain_wait: Duration,
    signer: DigestSigner,
    /// Where the chain head is anchored outside the table; none: it is not.
    anchoring: Option<Anchoring>,
    /// Where new alerts are sent (`crate::publish`); none: no outbox.
    pub(super) publisher: Option<Arc<crate::publish::Publisher>>,
}

/// A client from the standard AWS environment (`AWS_ENDPOINT_URL` for a local server),
/// retrying throttling, 5xx and timeouts with the SDK's exponential backoff and jitter.
pub async fn connect() -> Client {
    let config = aws_config::from_env()
        .retry_config(RetryConfig::standard().with_max_attempts(6))
        .timeout_config(timeout_config())
        .load()
        .await;
    let mut builder =
        aws_sdk_dynamodb::config::Builder::from(&config).interceptor(super::retries::RetryCounter);
    if config
        .endpoint_url()
        .is_some_and(super::retries::is_loopback)
    {
        builder = builder.retry_classifier(super::retries::LocalRefusal);
    }
    Client::from_conf(builder.build())
}

/// How long one DynamoDB request may take. Without a bound, a request that hangs (a
/// dead connection, an overloaded endpoint) holds the invocation until Lambda's 120 s
/// timeout kills it, which is reported as a timeout, not as the failing dependency it is;
/// bounded, the attempt is retried and, if the table stays unreachable, the invocation
/// fails as `Retryable` in time. A healthy request takes milliseconds; a full page of a
/// query (1 MB) well under a second.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client's timeouts: [`ATTEMPT_TIMEOUT`] per attempt, and a whole call (all its
/// attempts and backoffs) well inside the Lambda timeout.
fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(Duration::from_secs(25))
        .build()
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            counts: Arc::default(),
            #[cfg(any(test, feature = "testkit"))]
            ledger: crate::testkit::WriteLedger::default(),
            // Both bounded, in the function, by the invocation's deadline as well
            // (`lease::waiting_until`): these are the CLI's.
            lease_wait: Duration::from_secs(110),
            lease_ttl: super::lease::DEFAULT_TTL,
            chain_wait: Duration::from_secs(60),
            signer: DigestSigner::Unsigned,
            anchoring: None,
            publisher: None,
        }
    }

    /// Signs the trail's digests with `signer`.
    pub fn with_signer(mut self, signer: DigestSigner) -> Self {
        self.signer = signer;
        self
    }

    /// Anchors each cluster's chain head outside the table (`digest::anchor`).
    pub fn with_anchoring(mut self, anchoring: Option<Anchoring>) -> Self {
        self.anchoring = anchoring;
        self
    }

    /// Publishes `head` as the cluster's anchor when the last one is an interval old:
    /// the slot is taken in the table with a condition, so one writer publishes it. A
    /// failure is logged, not the delivery's: its records are stored and digested.
    async fn anchor(&self, cluster: &str, head: &ChainHead) {
        let Some(anchoring) = &self.anchoring else {
            return;
        };
        let now = Timestamp::now();
        let due_ms = super::lease::now_millis()
            .saturating_sub(u64::try_from(anchoring.interval.as_millis()).unwrap_or(u64::MAX));
        self.counts.count_single_item();
        let claimed = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(items::anchor_item(cluster, head, now)))
            .condition_expression("attribute_not_exists(pk) OR anchored_at_ms <= :due")
            .expression_attribute_values(":due", AttributeValue::N(due_ms.to_string()))
            .send()
            .await;
        match claimed {
            Ok(_) => {}
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                return;
            }
            Err(error) => {
                warn!(%cluster, error = %crate::errors::one_line(&error), "the chain head was not anchored: its slot could not be taken");
                return;
            }
        }
        if let Err(error) = anchoring.publish(&Anchor::of(cluster, head, now)).await {
            warn!(%cluster, seq = head.seq, error = %crate::errors::one_line(&error), "the chain head was not anchored");
        }
    }

    /// The last digest of the cluster's chain: one query, newest first, one item.
    async fn chain_head(&self, cluster: &str) -> Result<ChainHead, StoreError> {
        let last = self
            .query_last(&items::trail_pk(cluster), digest::DIGEST_PREFIX)
            .await?;
        digest::head_of(last.as_slice())
    }

    /// How long a claim or renewal holds the lease: how long a holder that died blocks
    /// its cluster.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long [`AuditStore::lock_cluster`] waits for a busy lease before failing.
    pub fn with_lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Writes `item` whole, over any item of its key, with no condition: for what no
    /// other writer contends for (a backfill checkpoint). `operation` names the request
    /// in its error.
    pub async fn put_unconditionally(
        &self,
        item: Item,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| super::request_error(operation, error))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn counts(&self) -> &RequestCounts {
        &self.counts
    }

    /// Write cost so far, by `item_type`.
    #[cfg(any(test, feature = "testkit"))]
    pub fn write_costs(&self) -> std::collections::BTreeMap<String, crate::testkit::WriteCost> {
        self.ledger.costs()
    }

    /// Books what writing `written` costs in the benchmark's ledger; a store built without
    /// `testkit` (the Lambda's) keeps none and computes nothing.
    fn account(&self, written: &[Item]) {
        #[cfg(any(test, feature = "testkit"))]
        self.ledger
            .book(crate::testkit::WriteLedger::costs_of(written, 1));
        #[cfg(not(any(test, feature = "testkit")))]
        let _ = written;
    }

    /// Books `count` deletes of views, one unit each, as [`Self::account`] does writes.
    fn account_deletes(&self, count: usize) {
        #[cfg(any(test, feature = "testkit"))]
        self.ledger
            .book(std::iter::repeat_n(("view".to_owned(), 1), count));
        #[cfg(not(any(test, feature = "testkit")))]
        let _ = count;
    }
}

impl DynamoStore {
    /// Writes the new entries with their digests ([`AuditStore::append_trail`]). Every
    /// digest number is taken with a condition, so this stays correct without the chain
    /// lease; the lease only spares concurrent writers from losing that race.
    /// Also returns the chain head after the last digest it wrote, if it wrote one.
    async fn append_chained(
        &self,
        cluster: &str,
        entries: &[TrailEntry],
    ) -> Result<(TrailOutcome, Option<ChainHead>), StoreError> {
        // Identity sort key → digest stored by another writer. A new record is written only
        // if its identity is absent (a condition, in one transaction per chunk, with the
        // chunk's digest): whoever loses the race reads what won and records a conflict,
        // never overwrites it.
        let mut stored_by_others: HashMap<String, String> = HashMap::new();
        let mut written: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut head = self.chain_head(cluster).await?;
        let mut written_head = None;
        let mut stalls = 0;
        'rounds: loop {
            let (fresh, _) = crate::store::classify_entries(entries, &stored_by_others);
            let pending = fresh
                .into_iter()
                .filter(|(entry, _)| !written.contains(&items::identity_sk(&entry.identity())))
                .map(|(entry, digest)| items::trail_item_with_digest(entry, digest))
                .collect::<Result<Vec<_>, _>>()?;
            let remaining = pending.len();
            if remaining == 0 {
                break;
            }
            for mut chunk in Self::transaction_chunks(pending, super::batch::DIGEST_RESERVE) {
                let sealed = digest::seal(cluster, &head, &mut chunk, Timestamp::now());
                let signature = self.signer.sign(&sealed.hash).await?;
                let digest_key = digest::digest_sk(sealed.seq);
                chunk.push(digest::digest_item(&sealed, signature.as_ref()));
                let settled = self.put_new_chunk(chunk).await?;
                if settled.lost.is_empty() {
                    written.extend(settled.written.into_iter().filter(|key| *key != digest_key));
                    head = sealed.head();
                    written_head = Some(head.clone());
                    continue;
                }
                stalls += 1;
                if stalls >= super::batch::MAX_ATTEMPTS {
                    return Err(StoreError::Unprocessed {
                        remaining,
                        attempts: stalls,
                    });
                }
                let mut chain_moved = false;
                let mut unread = Vec::new();
                for (sk, digest) in settled.lost {
                    match digest {
                        _ if sk == digest_key => chain_moved = true,
                        Some(digest) => {
                            stored_by_others.insert(sk, digest);
                        }
                        None => unread.push(sk),
                    }
                }
                let keys: Vec<Item> = unread
                    .into_iter()
                    .map(|sk| items::key_item(&items::trail_pk(cluster), &sk))
                    .collect();
                for item in self.get_all(keys, Some("pk, sk, content_sha256")).await? {
                    stored_by_others.insert(
                        items::sort_key(&item),
                        items::content_digest(&item).unwrap_or_default(),
                    );
                }
                if chain_moved {
                    // Another writer sealed the next digest first: seal after it.
                    tokio::time::sleep(super::batch::backoff(stalls)).await;
                    head = self.chain_head(cluster).await?;
                }
                continue 'rounds;
            }
        }
        let (_, outcome) = crate::store::classify_entries(entries, &stored_by_others);
        let conflicts = outcome
            .conflicts
            .iter()
            .map(|conflict| items::conflict_item(cluster, conflict))
            .collect::<Result<Vec<_>, _>>()?;
        // Conditional too: the trail partition takes no overwriting write (the role denies
        // batch writes there); a conflict recorded before is left as it is.
        for chunk in Self::transaction_chunks(conflicts, 0) {
            self.put_new_chunk(chunk).await?;
        }
        Ok((outcome, written_head))
    }
}

impl AuditStore for DynamoStore {
    async fn append_trail(
        &self,
        cluster: &str,
        entries: &[TrailEntry],
    ) -> Result<TrailOutcome, StoreError> {
        // One writer at a time extends the chain. A chain lease not had in time (a holder
        // writing a bulk ingest) is no reason to fail: the numbers' conditions keep the
        // chain whole, and the writer races as it would without a lease.
        let chain = match self
            .claim_lease(cluster, LeaseKind::Chain, self.chain_wait)
            .await
        {
            Ok(lease) => Some(lease),
            Err(StoreError::LeaseTimeout { .. }) => None,
            Err(error) => return Err(error),
        };
        let appended = self.append_chained(cluster, entries).await;
        let released = match &chain {
            Some(lease) => self.release_lease(lease).await,
            None => Ok(()),
        };
        let (outcome, head) = appended?;
        released?;
        if let Some(head) = head {
            self.anchor(cluster, &head).await;
        }
        Ok(outcome)
    }

    async fn quarantine(&self, quarantined: &[Quarantined]) -> Result<(), StoreError> {
        let mut writes: HashMap<String, Item> = HashMap::new();
        for quarantined in quarantined {
            for item in items::quarantine_items(quarantined)? {
                // One batch may not name the same key twice.
                writes.insert(items::item_key(&item), item);
            }
        }
        let writes: Vec<Item> = writes.into_values().collect();
        self.account(&writes);
        self.put_all(writes).await.map(|_| ())
    }

    async fn lock_cluster(&self, cluster: &str) -> Result<ClusterLease, StoreError> {
        self.claim_lease(cluster, LeaseKind::Derivation, self.lease_wait)
            .await
    }

    async fn unlock_cluster(&self, lease: &ClusterLease) -> Result<(), StoreError> {
        self.release_lease(lease).await
    }

    async fn load_checkpoint(&self, cluster: &str) -> Result<Checkpoint, StoreError> {
        let found = self
            .query_partition(
                &items::state_pk(cluster),
                Some(SortKey::Prefix(items::CHECKPOINT_PREFIX)),
            )
            .await?;
        items::checkpoint_from_items(cluster, &found)
    }

    async fn load_tail(
        &self,
        cluster: &str,
        starts: &[TailStart],
        per_stream: usize,
    ) -> Result<TailRead, StoreError> {
        let mut tail = TailRead::default();
        let pk = items::trail_pk(cluster);
        for start in starts {
            let (found, cut) = self.query_after(&pk, start, per_stream).await?;
            if cut {
                tail.cut.insert(start.prefix.clone());
            }
            tail.entries.extend(items::trail_entries(found)?);
        }
        Ok(tail)
    }

    async fn load_objects(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<Vec<(String, ObjectCarry)>, StoreError> {
        let keys: std::collections::BTreeMap<String, Item> = names
            .iter()
            .map(|name| {
                let key = items::object_key(cluster, name);
                (items::sort_key(&key), key)
            })
            .collect();
        let found = self
            .get_all(
                keys.into_values().collect(),
                Some("pk, sk, object_name, object_carry"),
            )
            .await?;
        items::heads_from_items(&found)
    }

    async fn write_step(
        &self,
        lease: &ClusterLease,
        write: &StepWrite<Item>,
    ) -> Result<(), StoreError> {
        let lost = || StoreError::LeaseLost {
            cluster: lease.cluster.clone(),
        };
        if lease.is_lost() {
            return Err(lost());
        }
        let phases = items::step_phases(&lease.cluster, write)?;
        self.account(&phases.journal);
        self.put_all(phases.journal.clone()).await?;
        self.account_deletes(phases.garbage.len());
        self.delete_all(phases.garbage).await?;
        for phase in [&phases.versions, &phases.heads] {
            self.account(phase);
            self.put_all(phase.clone()).await?;
        }
        // New alerts go to the outbox with the views, and the findings of alerts no longer
        // derived are archived: published after the steps, or by the next invocation when
        // this one is cut off. An archive is stored before its alert goes: a step cut off
        // in between is redone, and removes it again.
        let archives = self
            .archive_items(&lease.cluster, &phases.view_deletes)
            .await?;
        self.account(&archives);
        self.put_all(archives).await?;
        self.account_deletes(phases.view_deletes.len());
        self.delete_all(phases.view_deletes).await?;
        let mut view_puts = phases.view_puts;
        view_puts.extend(self.outbox_items(&lease.cluster, &write.new_alert_items));
        self.account(&view_puts);
        self.put_all(view_puts).await?;
        self.account_deletes(phases.stale.len());
        self.delete_all(phases.stale).await?;
        // Everything before was written under the lease; the head, which makes it the
        // cluster's state, only while it is still held.
        if lease.is_lost() {
            return Err(lost());
        }
        self.account(&phases.checkpoint);
        self.put_all(phases.checkpoint).await?;
        self.delete_all(phases.checkpoint_stale).await?;
        self.account(&phases.after_commit);
        self.put_all(phases.after_commit).await?;
        Ok(())
    }

    async fn state_range(
        &self,
        cluster: &str,
        range: StateRange<'_>,
    ) -> Result<Vec<Item>, StoreError> {
        let pk = items::state_pk(cluster);
        let sort = Some(SortKey::Between(
            range.low.to_owned(),
            range.high.to_owned(),
        ));
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let left = range
                .limit
                .map(|limit| i32::try_from(limit - found.len()).unwrap_or(i32::MAX));
            let (page, next) = self
                .query_sorted_page(&pk, &sort, !range.reverse, start, left)
                .await?;
            found.extend(page);
            start = next;
            if start.is_none() || range.limit.is_some_and(|limit| found.len() >= limit) {
                return Ok(found);
            }
        }
    }

    /// Removes the cluster's views and derivation state a page at a time: a rebuild of any
    /// history holds one page of keys, never the partition's.
    async fn clear_derived(&self, lease: &ClusterLease) -> Result<usize, StoreError> {
        let mut cleared = 0;
        for pk in [
            items::cluster_pk(&lease.cluster),
            items::state_pk(&lease.cluster),
        ] {
            let mut start = None;
            loop {
                let (page, next) = self
                    .query_sorted_page(&pk, &None, true, start, None)
                    .await?;
                let keys: Vec<Item> = page
                    .iter()
                    .filter(|item| !items::sort_key(item).starts_with(items::LEASE_SK))
                    .map(items::key_attributes)
                    .collect();
                cleared += self.delete_all(keys).await?;
                start = next;
                if start.is_none() {
                    break;
                }
            }
        }
        Ok(cleared)
    }

    async fn trail_streams(&self, cluster: &str) -> Result<Streams, StoreError> {
        let mut streams = Streams::new();
        self.query_pages(&items::trail_pk(cluster), None, |page| {
            for item in page {
                items::add_stream(&mut streams, item)?;
            }
            Ok(())
        })
        .await?;
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
        let pk = items::cluster_pk(cluster);
        let limit = limit.map(|limit| i32::try_from(limit).unwrap_or(i32::MAX));
        match order {
            ViewOrder::SortKey => {
                let sort = Some(SortKey::Between(range.0.to_owned(), range.1.to_owned()));
                self.query_sorted_page(&pk, &sort, !reverse, start, limit)
                    .await
            }
            ViewOrder::TimeKey => {
                let bounds = (
                    AttributeValue::S(range.0.to_owned()),
                    AttributeValue::S(range.1.to_owned()),
                );
                self.query_index_page(
                    &pk,
                    (items::BY_TIME_INDEX, items::TIME_KEY),
                    bounds,
                    !reverse,
                    start,
                    limit,
                )
                .await
            }
        }
    }

    async fn view_items(&self, cluster: &str, sks: &[String]) -> Result<Vec<Item>, StoreError> {
        let pk = items::cluster_pk(cluster);
        let keys = sks.iter().map(|sk| items::key_item(&pk, sk)).collect();
        let mut found: HashMap<String, Item> = self
            .get_all(keys, None)
            .await?
            .into_iter()
            .map(|item| (items::sort_key(&item), item))
            .collect();
        Ok(sks.iter().filter_map(|sk| found.remove(sk)).collect())
    }

    async fn publish_alerts(&self, cluster: &str) -> crate::publish::Published {
        self.drain_outbox(cluster).await
    }

    async fn log_event_ids(
        &self,
        cluster: &str,
        records: &[RecordPosition],
    ) -> Result<HashMap<RecordPosition, String>, StoreError> {
        let pk = items::trail_pk(cluster);
        let by_sk: HashMap<String, &RecordPosition> = records
            .iter()
            .map(|position| {
                (
                    items::trail_sk(&position.0, position.1, position.2),
                    position,
                )
            })
            .collect();
        let keys = by_sk.keys().map(|sk| items::key_item(&pk, sk)).collect();
        let found = self.get_all(keys, Some("pk, sk, log_event_id")).await?;
        Ok(found
            .iter()
            .filter_map(items::trail_log_event_id)
            .filter_map(|(sk, id)| by_sk.get(&sk).map(|&position| (position.clone(), id)))
            .collect())
    }

    async fn trail_page(
        &self,
        cluster: &str,
        after: Option<&str>,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        self.query_page(&items::trail_pk(cluster), after).await
    }

    async fn trail_items(&self, cluster: &str, sks: &[String]) -> Result<Vec<Item>, StoreError> {
        let keys = sks
            .iter()
            .map(|sk| items::key_item(&items::trail_pk(cluster), sk))
            .collect();
        self.get_all(keys, None).await
    }

    async fn conflicts(&self, cluster: &str) -> Result<Vec<Conflict>, StoreError> {
        let found = self
            .query_partition(
                &items::trail_pk(cluster),
                Some(SortKey::Prefix(items::CONFLICT_PREFIX)),
            )
            .await?;
        found.into_iter().map(items::conflict_from_item).collect()
    }
}
