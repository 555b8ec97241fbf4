//! The same items as DynamoDB holds, kept in a map: lets the pipeline be tested
//! without a network. Not a DynamoDB emulator: it does only what [`AuditStore`] needs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use super::items::{self, Item};
use super::{
    AuditStore, ClusterLease, ClusterTrail, DerivedWrite, StoreError, StoredView, TrailOutcome,
};
use crate::decode::Quarantined;
use crate::domain::Derived;
use crate::model::TrailEntry;

#[derive(Debug, Default)]
pub struct MemoryStore {
    items: Mutex<BTreeMap<(String, String), Item>>,
    leases: Mutex<HashSet<String>>,
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
        self.guard().values().cloned().collect()
    }

    /// Items of one partition, in sort-key order.
    pub fn partition(&self, pk: &str) -> Vec<Item> {
        self.guard()
            .iter()
            .filter(|((p, _), _)| p == pk)
            .map(|(_, item)| item.clone())
            .collect()
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Item>> {
        // A panicking test thread cannot leave the map half-written: every write is one insert.
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn put(&self, item: Item) {
        self.guard().insert(key_of(&item), item);
    }
}

impl AuditStore for MemoryStore {
    async fn append_trail(
        &self,
        cluster: &str,
        entries: &[TrailEntry],
    ) -> Result<TrailOutcome, StoreError> {
        let stored: HashMap<_, _> = self
            .partition(&items::trail_pk(cluster))
            .into_iter()
            .filter(items::is_trail_record)
            .map(|item| {
                (
                    items::sort_key(&item),
                    items::content_digest(&item).unwrap_or_default(),
                )
            })
            .collect();
        let (fresh, outcome) = super::classify_entries(entries, &stored);
        for (entry, digest) in fresh {
            self.put(items::trail_item_with_digest(entry, digest)?);
        }
        for conflict in &outcome.conflicts {
            self.put(items::conflict_item(cluster, conflict)?);
        }
        Ok(outcome)
    }

    async fn quarantine(&self, quarantined: &[Quarantined]) -> Result<(), StoreError> {
        for item in quarantined {
            for item in items::quarantine_items(item)? {
                self.put(item);
            }
        }
        Ok(())
    }

    async fn lock_cluster(&self, cluster: &str) -> Result<ClusterLease, StoreError> {
        loop {
            let taken = self
                .leases
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(cluster.to_owned());
            if taken {
                return Ok(ClusterLease {
                    cluster: cluster.to_owned(),
                    owner: "memory".to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn unlock_cluster(&self, lease: &ClusterLease) -> Result<(), StoreError> {
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&lease.cluster);
        Ok(())
    }

    async fn load_trail(&self, cluster: &str) -> Result<ClusterTrail, StoreError> {
        let mut trail = ClusterTrail::default();
        for item in self.partition(&items::trail_pk(cluster)) {
            if items::is_trail_record(&item) {
                trail.entries.push(items::trail_entry_from_item(item)?);
            } else if items::is_conflict(&item) {
                trail.conflicts.push(items::conflict_from_item(item)?);
            }
        }
        Ok(trail)
    }

    async fn replace_derived(
        &self,
        lease: &ClusterLease,
        derived: &Derived,
    ) -> Result<DerivedWrite, StoreError> {
        let pk = items::cluster_pk(&lease.cluster);
        let stored = self.partition(&pk).iter().map(StoredView::of).collect();
        let plan =
            super::plan_derived_write(stored, items::derived_items(&lease.cluster, derived)?);
        let summary = plan.summary();
        for view in plan.deletes {
            self.guard().remove(&key_of(&view.key));
        }
        for item in plan.puts {
            self.put(item);
        }
        Ok(summary)
    }
}
