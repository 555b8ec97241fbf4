//! The DynamoDB store: the client, the lease, and the trail and view writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::types::AttributeValue;

use super::batch::backoff;
use crate::decode::Quarantined;
use crate::domain::Derived;
use crate::model::TrailEntry;
use crate::store::items::{self, Item};
use crate::store::{
    AuditStore, ClusterLease, ClusterTrail, DerivedWrite, StoreError, StoredView, TrailOutcome,
};

/// A lease outlives the Lambda timeout (60 s), so a holder that died has surely stopped
/// writing by the time another invocation takes the lease over.
const LEASE_SECONDS: u64 = 120;

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
    pub(super) counts: RequestCounts,
    ledger: std::sync::Mutex<BTreeMap<String, WriteCost>>,
    lease_wait: Duration,
}

/// Items written (put or deleted) and the write capacity units that costs, computed from
/// item sizes since a local server's `ConsumedCapacity` is not faithful.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCost {
    pub items: u64,
    pub write_units: u64,
}

pub(crate) fn request_error(operation: &'static str, error: impl std::error::Error) -> StoreError {
    StoreError::Request {
        operation,
        message: aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string(),
    }
}

/// A failed SDK call as a [`StoreError`]: a `ValidationException` is
/// [`StoreError::Rejected`] (never worth a retry), anything else a retryable request error.
pub(crate) fn sdk_error<E, R>(
    operation: &'static str,
    error: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> StoreError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    if error.code() == Some("ValidationException") {
        return StoreError::Rejected {
            operation,
            message: aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string(),
        };
    }
    request_error(operation, error)
}

/// A client from the standard AWS environment (`AWS_ENDPOINT_URL` for a local server),
/// retrying throttling, 5xx and timeouts with the SDK's exponential backoff and jitter.
pub async fn connect() -> Client {
    let config = aws_config::from_env()
        .retry_config(RetryConfig::standard().with_max_attempts(6))
        .timeout_config(timeout_config())
        .load()
        .await;
    let config = aws_sdk_dynamodb::config::Builder::from(&config)
        .interceptor(super::retries::RetryCounter)
        .build();
    Client::from_conf(config)
}

/// How long one DynamoDB request may take. Without a bound, a request that hangs (a
/// dead connection, an overloaded endpoint) holds the invocation until Lambda's 60 s
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

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            counts: RequestCounts::default(),
            ledger: std::sync::Mutex::default(),
            lease_wait: Duration::from_secs(45),
        }
    }

    /// How long [`AuditStore::lock_cluster`] waits for a busy lease before failing.
    pub fn with_lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn counts(&self) -> &RequestCounts {
        &self.counts
    }

    /// Write cost so far, by `item_type`.
    pub fn write_costs(&self) -> BTreeMap<String, WriteCost> {
        self.ledger
            .lock()
            .map(|ledger| ledger.clone())
            .unwrap_or_default()
    }

    fn account(&self, items: &[Item]) {
        self.book(
            items
                .iter()
                .map(|item| (items::type_of(item), items::write_units(item))),
        );
    }

    /// Books writes in the ledger: `(item type, write units)` of each item written or deleted.
    pub(super) fn book(&self, writes: impl IntoIterator<Item = (String, u64)>) {
        if let Ok(mut ledger) = self.ledger.lock() {
            for (item_type, write_units) in writes {
                let cost = ledger.entry(item_type).or_default();
                cost.items += 1;
                cost.write_units += write_units;
            }
        }
    }

    async fn try_lease(&self, lease: &ClusterLease) -> Result<bool, StoreError> {
        let now = now_seconds();
        self.counts.count_single_item();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(items::cluster_pk(&lease.cluster)))
            .item("sk", AttributeValue::S(items::LEASE_SK.to_owned()))
            .item("item_type", AttributeValue::S("lease".to_owned()))
            .item("owner", AttributeValue::S(lease.owner.clone()))
            .item(
                "expires_at",
                AttributeValue::N((now + LEASE_SECONDS).to_string()),
            )
            // Our own owner counts as free: when an attempt took the lease but its answer
            // was lost (a timeout), the SDK's retry finds the lease held by us, and
            // waiting for it would wait for ourselves until it expired.
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now OR #owner = :owner",
            )
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(request_error("PutItem (lease)", error)),
        }
    }
}

impl AuditStore for DynamoStore {
    async fn append_trail(
        &self,
        cluster: &str,
        entries: &[TrailEntry],
    ) -> Result<TrailOutcome, StoreError> {
        // Identity sort key → digest stored by another writer. A new record is written only
        // if its identity is absent (a condition, in one transaction per chunk): whoever
        // loses the race reads what won and records a conflict, never overwrites it.
        let mut stored_by_others: HashMap<String, String> = HashMap::new();
        let mut written: std::collections::HashSet<String> = std::collections::HashSet::new();
        for attempt in 1..=super::batch::MAX_ATTEMPTS {
            let (fresh, _) = crate::store::classify_entries(entries, &stored_by_others);
            let pending = fresh
                .into_iter()
                .filter(|(entry, _)| !written.contains(&items::identity_sk(&entry.identity())))
                .map(|(entry, digest)| items::trail_item_with_digest(entry, digest))
                .collect::<Result<Vec<_>, _>>()?;
            if pending.is_empty() {
                break;
            }
            if attempt == super::batch::MAX_ATTEMPTS {
                return Err(StoreError::Unprocessed {
                    remaining: pending.len(),
                    attempts: attempt,
                });
            }
            let settled = self.put_new_all(pending).await?;
            written.extend(settled.written);
            if settled.lost.is_empty() {
                continue;
            }
            let mut unread = Vec::new();
            for (sk, digest) in settled.lost {
                match digest {
                    Some(digest) => {
                        stored_by_others.insert(sk, digest);
                    }
                    None => unread.push(sk),
                }
            }
            let keys: Vec<Item> = unread
                .into_iter()
                .map(|sk| {
                    HashMap::from([
                        ("pk".to_owned(), AttributeValue::S(items::trail_pk(cluster))),
                        ("sk".to_owned(), AttributeValue::S(sk)),
                    ])
                })
                .collect();
            for item in self.get_all(keys, "pk, sk, content_sha256").await? {
                stored_by_others.insert(
                    items::sort_key(&item),
                    items::content_digest(&item).unwrap_or_default(),
                );
            }
        }
        let (_, outcome) = crate::store::classify_entries(entries, &stored_by_others);
        let conflicts = outcome
            .conflicts
            .iter()
            .map(|conflict| items::conflict_item(cluster, conflict))
            .collect::<Result<Vec<_>, _>>()?;
        self.account(&conflicts);
        self.put_all(conflicts).await?;
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
        let lease = ClusterLease {
            cluster: cluster.to_owned(),
            owner: format!("{:016x}", fastrand::u64(..)),
        };
        let started = Instant::now();
        let mut attempt = 0;
        while !self.try_lease(&lease).await? {
            if started.elapsed() >= self.lease_wait {
                return Err(StoreError::LeaseTimeout {
                    cluster: cluster.to_owned(),
                    waited_ms: started.elapsed().as_millis(),
                });
            }
            attempt += 1;
            tokio::time::sleep(backoff(attempt.min(5))).await;
        }
        Ok(lease)
    }

    async fn unlock_cluster(&self, lease: &ClusterLease) -> Result<(), StoreError> {
        self.counts.count_single_item();
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(items::cluster_pk(&lease.cluster)))
            .key("sk", AttributeValue::S(items::LEASE_SK.to_owned()))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .send()
            .await;
        match result {
            // Someone took over an expired lease: theirs to release, not ours.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(request_error("DeleteItem (lease)", error)),
            Ok(_) => Ok(()),
        }
    }

    async fn load_trail(&self, cluster: &str) -> Result<ClusterTrail, StoreError> {
        let mut trail = ClusterTrail::default();
        // Page by page: the SDK's item maps take several times the memory of the records
        // they hold, and the whole trail is read on every derivation.
        self.query_pages(&items::trail_pk(cluster), None, |page| {
            for item in page {
                if items::is_trail_record(&item) {
                    trail.entries.push(items::trail_entry_from_item(item)?);
                } else if items::is_conflict(&item) {
                    trail.conflicts.push(items::conflict_from_item(item)?);
                }
            }
            Ok(())
        })
        .await?;
        Ok(trail)
    }

    async fn replace_derived(
        &self,
        lease: &ClusterLease,
        derived: &Derived,
    ) -> Result<DerivedWrite, StoreError> {
        let mut stored = Vec::new();
        self.query_pages(&items::cluster_pk(&lease.cluster), None, |page| {
            stored.extend(
                page.iter()
                    .filter(|item| items::sort_key(item) != items::LEASE_SK)
                    .map(StoredView::of),
            );
            Ok(())
        })
        .await?;
        let plan = crate::store::plan_derived_write(
            stored,
            items::derived_items(&lease.cluster, derived)?,
        );
        let summary = plan.summary();
        self.book(
            plan.deletes
                .iter()
                .map(|view| (view.item_type.clone(), view.write_units)),
        );
        self.account(&plan.puts);
        self.delete_all(plan.deletes.into_iter().map(|view| view.key).collect())
            .await?;
        self.put_all(plan.puts).await?;
        Ok(summary)
    }
}
