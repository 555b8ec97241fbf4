//! Where the trail and the derived views live. [`AuditStore`] is the few operations the
//! pipeline needs; [`dynamodb::DynamoStore`] is the real one and [`memory::MemoryStore`]
//! keeps the same items in a map, for pipeline tests and the benchmark's largest history
//! without a network.
//!
//! Both hold DynamoDB's items, laid out in [`dynamodb::items`], so the item layout is
//! tested once.

pub mod dynamodb;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;

use std::collections::{BTreeSet, HashMap};

use crate::decode::Quarantined;
use crate::domain::Conflict;
use crate::incremental::{Checkpoint, ObjectCarry, StepWrite, TailRead, TailStart};
use crate::model::TrailEntry;
use crate::store::dynamodb::items::Item;

/// An error kept as its cause: what a failure came from, for whoever must flatten it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Failures of the store, each with its cause as [`std::error::Error::source`]. Bad data
/// never reaches here (it is quarantined or bounded before); whether a retry can succeed
/// is [`StoreError::is_retryable`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB refused the request as invalid (`ValidationException`: an item over
    /// 400 KB, a key over its limit). The same request fails on every retry, so it is
    /// never retried as if it were throttling; it means a bound was missed.
    #[error("DynamoDB refused {operation} as invalid: {source}")]
    Rejected {
        operation: &'static str,
        #[source]
        source: RequestFailed,
    },
    /// The request failed on its way or at the service (throttling, 5xx, timeouts, no
    /// connection), after the SDK's own retries.
    #[error("DynamoDB {operation} failed: {source}")]
    Request {
        operation: &'static str,
        #[source]
        source: RequestFailed,
    },
    #[error("DynamoDB left {remaining} items unprocessed after {attempts} attempts")]
    Unprocessed { remaining: usize, attempts: u32 },
    #[error("could not take the lease on cluster {cluster} within {waited_ms} ms")]
    LeaseTimeout { cluster: String, waited_ms: u128 },
    #[error("the lease on cluster {cluster} ran out before its views were written")]
    LeaseLost { cluster: String },
    /// KMS did not sign a digest (throttled, unreachable, or the key refused): nothing of
    /// the write was stored, and a retry may succeed.
    #[error("KMS could not sign the trail digest with {key_id}: {source}")]
    Signing {
        key_id: String,
        #[source]
        source: BoxError,
    },
    /// An item that cannot be read back (or written) as the layout says: the same on
    /// every retry, until someone repairs it or the code that wrote it.
    #[error("stored item {key} is not readable: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Whether retrying the same request can succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            StoreError::Rejected { .. } | StoreError::Corrupt { .. }
        )
    }
}

/// A failed request as the one line a person can act on — `ValidationException:
/// TableName must be at least 3 characters long` — with the SDK's error kept as its
/// source: its whole report (request, response, causes) is [`RequestFailed::report`].
#[derive(Debug, thiserror::Error)]
#[error("{summary}")]
pub struct RequestFailed {
    pub(crate) summary: String,
    #[source]
    pub(crate) source: BoxError,
}

impl RequestFailed {
    /// The SDK's whole report of the failure (its causes, and its `Debug` of the request
    /// and response), for `hsm-audit -v` and the logs' debug level.
    pub fn report(&self) -> String {
        aws_sdk_dynamodb::error::DisplayErrorContext(self.source.as_ref()).to_string()
    }
}

/// Where a CloudHSM record sits in the trail: HSM, reboot counter, sequence number.
pub type RecordPosition = (String, u32, u64);

/// What appending a batch to the trail did with each entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrailOutcome {
    pub stored: usize,
    pub duplicates: usize,
    pub conflicts: Vec<Conflict>,
    /// Trail sort keys of the entries stored by this call.
    pub fresh: BTreeSet<String>,
}

/// Proof of holding a cluster's lease: only its holder rewrites the cluster's views.
#[derive(Clone)]
pub struct ClusterLease {
    pub cluster: String,
    pub owner: String,
    /// The lease item's version this hold wrote: its fencing token.
    pub version: u64,
    /// Renews the hold until it is released (DynamoDB; `None` in memory).
    pub keeper: Option<std::sync::Arc<dynamodb::LeaseKeeper>>,
}

impl ClusterLease {
    /// Whether the hold ran out before it was released (a renewal found the lease taken
    /// over): its holder must not write.
    pub fn is_lost(&self) -> bool {
        self.keeper.as_ref().is_some_and(|keeper| keeper.is_lost())
    }
}

impl std::fmt::Debug for ClusterLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLease")
            .field("cluster", &self.cluster)
            .field("owner", &self.owner)
            .field("version", &self.version)
            .field("lost", &self.is_lost())
            .finish()
    }
}

#[allow(async_fn_in_trait)]
pub trait AuditStore {
    /// Adds entries of one cluster not yet in its trail. An identity already stored with
    /// the same content is a duplicate (a no-op); with other content, a conflict, which
    /// is recorded and does not replace what was stored first.
    async fn append_trail(
        &self,
        cluster: &str,
        entries: &[TrailEntry],
    ) -> Result<TrailOutcome, StoreError>;

    async fn quarantine(&self, items: &[Quarantined]) -> Result<(), StoreError>;

    /// Waits for the cluster's lease, so that one invocation at a time derives its views.
    async fn lock_cluster(&self, cluster: &str) -> Result<ClusterLease, StoreError>;

    async fn unlock_cluster(&self, lease: &ClusterLease) -> Result<(), StoreError>;

    /// Where the cluster's derivation stands; the default for a cluster never derived.
    async fn load_checkpoint(&self, cluster: &str) -> Result<Checkpoint, StoreError>;

    /// The records of each stream after its start, in stream order, at most
    /// `per_stream` of each (streams cut there are named).
    async fn load_tail(
        &self,
        cluster: &str,
        starts: &[TailStart],
        per_stream: usize,
    ) -> Result<TailRead, StoreError>;

    /// The heads of the named objects that have one.
    async fn load_objects(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<Vec<(String, ObjectCarry)>, StoreError>;

    /// Writes a step phase by phase ([`dynamodb::items::state::StepPhases`]): each only
    /// once the one before it is stored, the head only while the lease is held.
    async fn write_step(&self, lease: &ClusterLease, write: &StepWrite) -> Result<(), StoreError>;

    /// The items of the cluster's derivation state (`STATE#<cluster>`) whose sort keys lie
    /// in `[low, high]`, in sort-key order or (with `reverse`) its reverse, at most `limit`
    /// of them (else all, page by page): snapshots, step logs, object versions.
    async fn state_range(
        &self,
        cluster: &str,
        low: &str,
        high: &str,
        reverse: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError>;

    /// Removes every derived view and the derivation state of the cluster, page by page.
    async fn clear_derived(&self, lease: &ClusterLease) -> Result<usize, StoreError>;

    /// Every stream of the cluster's trail: its sort-key prefix, and its HSM for an HSM's
    /// stream. Reads the whole trail, page by page (a rebuild's first step).
    async fn trail_streams(
        &self,
        cluster: &str,
    ) -> Result<std::collections::BTreeMap<String, Option<String>>, StoreError>;

    /// One page (up to 1 MB) of the raw items of the cluster's trail partition, in sort-key
    /// order after `after`, and the sort key to continue from when there is more: what
    /// `verify` reads, a page at a time.
    async fn trail_page(
        &self,
        cluster: &str,
        after: Option<&str>,
    ) -> Result<(Vec<Item>, Option<String>), StoreError>;

    /// Raw items of the cluster's trail partition by sort key (those that exist).
    async fn trail_items(&self, cluster: &str, sks: &[String]) -> Result<Vec<Item>, StoreError>;

    /// The refused conflicting duplicates recorded in the cluster's trail.
    async fn conflicts(&self, cluster: &str) -> Result<Vec<Conflict>, StoreError>;

    /// One page of the cluster's view items whose sort key starts with `prefix`
    /// (`KEY#`, `SESSION#`, `ALERT#`, …), after `start` (the cursor a previous page
    /// returned), in sort-key order or (with `reverse`) its reverse, and the cursor of
    /// the next page while one remains: a reader of every key holds a page at a time,
    /// never the partition, and may await between pages.
    async fn view_page(
        &self,
        cluster: &str,
        prefix: &str,
        reverse: bool,
        start: Option<dynamodb::items::Item>,
    ) -> Result<(Vec<dynamodb::items::Item>, Option<dynamodb::items::Item>), StoreError>;

    /// The CloudWatch log event ids of the given trail records (HSM, reboot counter,
    /// sequence number); records not in the trail are left out.
    async fn log_event_ids(
        &self,
        cluster: &str,
        records: &[RecordPosition],
    ) -> Result<HashMap<RecordPosition, String>, StoreError>;

    /// Sends the cluster's alerts that await it to the configured sinks
    /// ([`crate::publish`]); a store without sinks sends nothing and asks nothing.
    async fn publish_alerts(&self, _cluster: &str) -> crate::publish::Published {
        crate::publish::Published::default()
    }
}

/// Sorts a batch against what the trail already holds (identity sort key → content
/// digest) by the domain's rule ([`crate::domain::classify_delivery`]): new entries to
/// write (with their digest, for their items), and the outcome.
pub fn classify_entries<'a>(
    entries: &'a [TrailEntry],
    stored: &HashMap<String, String>,
) -> (Vec<(&'a TrailEntry, String)>, TrailOutcome) {
    let classified =
        crate::domain::classify_delivery(entries, stored, dynamodb::items::identity_sk);
    let mut outcome = TrailOutcome {
        stored: classified.fresh.len(),
        duplicates: classified.duplicates,
        conflicts: classified.conflicts,
        fresh: BTreeSet::new(),
    };
    let fresh = classified
        .fresh
        .into_iter()
        .map(|(key, entry, digest)| {
            outcome.fresh.insert(key);
            (entry, digest)
        })
        .collect();
    (fresh, outcome)
}

/// The heads among object items (an object without a carry has no head).
pub fn heads_from_items(found: &[Item]) -> Result<Vec<(String, ObjectCarry)>, StoreError> {
    let mut heads = Vec::new();
    for item in found {
        if let (name, Some(carry)) = dynamodb::items::object_from_item(item)? {
            heads.push((name, carry));
        }
    }
    Ok(heads)
}
