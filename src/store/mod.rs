//! Where the trail and the derived views live. [`AuditStore`] is the few operations the
//! pipeline needs; [`dynamodb::DynamoStore`] is the real one and [`memory::MemoryStore`]
//! keeps the same items in a map, for pipeline tests without a network.
//!
//! Both hold the same items, built in [`items`], so the item layout is tested once.

mod attributes;
pub mod dynamodb;
pub mod items;
pub mod memory;

use std::collections::HashMap;

use crate::decode::Quarantined;
use crate::domain::{Conflict, Derived};
use crate::model::{RecordIdentity, TrailEntry};

/// Failures of the store. All but [`StoreError::Rejected`] are worth retrying: the data
/// was fine, the dependency was not (bad data never reaches here; it is quarantined or
/// bounded before).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB refused the request as invalid (`ValidationException`: an item over
    /// 400 KB, a key over its limit). The same request fails on every retry, so it is
    /// never retried as if it were throttling; it means a bound was missed.
    #[error("DynamoDB refused {operation} as invalid: {message}")]
    Rejected {
        operation: &'static str,
        message: String,
    },
    #[error("DynamoDB {operation} failed: {message}")]
    Request {
        operation: &'static str,
        message: String,
    },
    #[error("DynamoDB left {remaining} items unprocessed after {attempts} attempts")]
    Unprocessed { remaining: usize, attempts: u32 },
    #[error("could not take the lease on cluster {cluster} within {waited_ms} ms")]
    LeaseTimeout { cluster: String, waited_ms: u128 },
    #[error("stored item {key} is not readable: {message}")]
    Corrupt { key: String, message: String },
}

impl StoreError {
    /// Whether retrying the same request can succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, StoreError::Rejected { .. })
    }
}

/// What appending a batch to the trail did with each entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrailOutcome {
    pub stored: usize,
    pub duplicates: usize,
    pub conflicts: Vec<Conflict>,
}

/// The whole trail of one cluster, as [`crate::domain::derive`] needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterTrail {
    pub entries: Vec<TrailEntry>,
    pub conflicts: Vec<Conflict>,
}

/// Proof of holding a cluster's lease: only its holder rewrites the cluster's views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLease {
    pub cluster: String,
    pub owner: String,
}

/// What replacing a cluster's derived views wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DerivedWrite {
    pub put: usize,
    pub deleted: usize,
    pub unchanged: usize,
    /// Alerts that did not exist before, by kind (`brute_force`, …): what metrics and
    /// alarms count, since an alert already raised must not alarm again.
    pub new_alerts: std::collections::BTreeMap<String, usize>,
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

    async fn load_trail(&self, cluster: &str) -> Result<ClusterTrail, StoreError>;

    /// Makes the cluster's stored views equal to `derived`: writes what changed and
    /// deletes what no longer exists.
    async fn replace_derived(
        &self,
        lease: &ClusterLease,
        derived: &Derived,
    ) -> Result<DerivedWrite, StoreError>;
}

/// Sorts a batch against what the trail already holds (identity sort key → content
/// digest): new entries to write (with their digest, for their items), duplicates to
/// skip, conflicts to record. Within the batch the first delivered entry of an identity
/// counts as stored first.
pub fn classify_entries<'a>(
    entries: &'a [TrailEntry],
    stored: &HashMap<String, String>,
) -> (Vec<(&'a TrailEntry, String)>, TrailOutcome) {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut fresh = Vec::new();
    let mut outcome = TrailOutcome::default();
    for entry in entries {
        let identity = entry.identity();
        let key = items::identity_sk(&identity);
        let digest = entry.record.content_sha256();
        match stored.get(&key).or_else(|| seen.get(&key)) {
            Some(first) if *first == digest => outcome.duplicates += 1,
            Some(first) => {
                let conflict = conflict_of(&identity, entry, first, digest);
                if outcome.conflicts.contains(&conflict) {
                    outcome.duplicates += 1;
                } else {
                    outcome.conflicts.push(conflict);
                }
            }
            None => {
                seen.insert(key, digest.clone());
                fresh.push((entry, digest));
            }
        }
    }
    outcome.stored = fresh.len();
    (fresh, outcome)
}

fn conflict_of(
    identity: &RecordIdentity,
    entry: &TrailEntry,
    stored: &str,
    rejected: String,
) -> Conflict {
    let (hsm, reboot_counter, sequence_no) = match identity {
        RecordIdentity::Sequence {
            hsm,
            reboot_counter,
            sequence_no,
        } => (hsm.clone(), Some(*reboot_counter), Some(*sequence_no)),
        RecordIdentity::LogEvent { stream, .. } => (stream.clone(), None, None),
    };
    Conflict {
        hsm,
        reboot_counter,
        sequence_no,
        time: entry.record.time(),
        stored_sha256: stored.to_owned(),
        rejected_sha256: rejected,
        rejected_log_event_id: entry.log_event_id.clone(),
    }
}

/// A stored view as the write plan needs it: its key (to delete it), what deleting it
/// costs, and a digest of its content (to tell an unchanged wanted item) — not the item,
/// whose maps take many times the memory, read as the cluster's views are on every
/// derivation.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredView {
    pub key: items::Item,
    pub item_type: String,
    pub write_units: u64,
    digest: [u8; 32],
}

impl StoredView {
    pub fn of(item: &items::Item) -> Self {
        StoredView {
            key: items::key_attributes(item),
            item_type: items::type_of(item),
            write_units: items::write_units(item),
            digest: items::item_digest(item),
        }
    }
}

/// The writes that turn a cluster's stored views (`stored`, without the lease item)
/// into `wanted`: items to put (new or changed), views to delete (no longer derived).
pub fn plan_derived_write(stored: Vec<StoredView>, wanted: Vec<items::Item>) -> DerivedPlan {
    let mut stored: HashMap<String, StoredView> = stored
        .into_iter()
        .map(|view| (items::item_key(&view.key), view))
        .collect();
    let wanted: HashMap<String, items::Item> = wanted
        .into_iter()
        .map(|item| (items::item_key(&item), item))
        .collect();
    let mut plan = DerivedPlan::default();
    for (key, item) in wanted {
        match stored.remove(&key) {
            Some(existing) if existing.digest == items::item_digest(&item) => plan.unchanged += 1,
            Some(_) => plan.puts.push(item),
            None => {
                if let Some(kind) = items::alert_kind(&item) {
                    *plan.new_alerts.entry(kind).or_default() += 1;
                }
                plan.puts.push(item);
            }
        }
    }
    plan.deletes = stored.into_values().collect();
    plan
}

#[derive(Debug, Default)]
pub struct DerivedPlan {
    pub puts: Vec<items::Item>,
    pub deletes: Vec<StoredView>,
    pub unchanged: usize,
    pub new_alerts: std::collections::BTreeMap<String, usize>,
}

impl DerivedPlan {
    pub fn summary(&self) -> DerivedWrite {
        DerivedWrite {
            put: self.puts.len(),
            deleted: self.deletes.len(),
            unchanged: self.unchanged,
            new_alerts: self.new_alerts.clone(),
        }
    }
}

#[cfg(test)]
mod plan_tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;

    fn view(sk: &str, item_type: &str, body: &str) -> items::Item {
        [
            ("pk", "CLUSTER#c"),
            ("sk", sk),
            ("item_type", item_type),
            ("kind", "brute_force"),
            ("body", body),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), AttributeValue::S(value.to_owned())))
        .collect()
    }

    #[test]
    fn given_stored_views_when_planned_then_only_changes_are_written_and_gone_views_deleted() {
        let stored = [
            view("SESSION#same", "session", "v1"),
            view("SESSION#changed", "session", "v1"),
            view("KEY#gone", "key", "v1"),
        ];
        let wanted = vec![
            view("SESSION#same", "session", "v1"),
            view("SESSION#changed", "session", "v2"),
            view("ALERT#new", "alert", "v1"),
        ];
        let plan = plan_derived_write(stored.iter().map(StoredView::of).collect(), wanted);

        assert_eq!(plan.unchanged, 1);
        let mut put: Vec<String> = plan.puts.iter().map(items::sort_key).collect();
        put.sort();
        assert_eq!(put, ["ALERT#new", "SESSION#changed"]);
        assert_eq!(plan.deletes.len(), 1);
        assert_eq!(items::sort_key(&plan.deletes[0].key), "KEY#gone");
        assert_eq!(plan.deletes[0].key.len(), 2, "a delete names the key only");
        assert_eq!(plan.deletes[0].item_type, "key");
        assert_eq!(plan.new_alerts.get("brute_force"), Some(&1));
    }
}
