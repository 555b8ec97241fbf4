//! The same items as DynamoDB holds, kept in a map: lets the pipeline be tested
//! without a network. Not a DynamoDB emulator: it does only what [`AuditStore`] needs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use super::items::{self, Item};
use super::{AuditStore, ClusterLease, StoreError, TrailOutcome};
use crate::decode::Quarantined;
use crate::domain::Conflict;
use crate::incremental::{Checkpoint, ObjectCarry, StepWrite, TailRead, TailStart};
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
            self.put(items::quarantine_item(item)?);
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
                    version: 0,
                    keeper: None,
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

    async fn load_checkpoint(&self, cluster: &str) -> Result<Checkpoint, StoreError> {
        let pieces: Vec<Item> = self
            .partition(&items::state_pk(cluster))
            .into_iter()
            .filter(|item| items::sort_key(item).starts_with(items::CHECKPOINT_PREFIX))
            .collect();
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
        let map = self.guard();
        for start in starts {
            let low = (pk.clone(), start.after.clone().unwrap_or_default());
            let mut taken = 0;
            for ((_, sk), item) in map.range(low..) {
                if !sk.starts_with(&start.prefix) || !items::is_trail_record(item) {
                    if sk.as_str() > start.prefix.as_str() && !sk.starts_with(&start.prefix) {
                        break;
                    }
                    continue;
                }
                if Some(sk) == start.after.as_ref() {
                    continue;
                }
                if taken == per_stream {
                    tail.cut.insert(start.prefix.clone());
                    break;
                }
                tail.entries
                    .push(items::trail_entry_from_item(item.clone())?);
                taken += 1;
            }
        }
        Ok(tail)
    }

    async fn load_objects(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<Vec<(String, ObjectCarry)>, StoreError> {
        let map = self.guard();
        names
            .iter()
            .filter_map(|name| map.get(&key_of(&items::object_key(cluster, name))))
            .map(items::object_from_item)
            .collect()
    }

    async fn write_step(&self, lease: &ClusterLease, write: &StepWrite) -> Result<(), StoreError> {
        for key in &write.deletes {
            self.guard().remove(&key_of(key));
        }
        for item in &write.puts {
            self.put(item.clone());
        }
        for (name, carry) in &write.objects {
            self.put(items::object_item(&lease.cluster, name, carry)?);
        }
        let pieces = items::checkpoint_items(&lease.cluster, &write.checkpoint)?;
        for index in pieces.len()..write.checkpoint.stored_pieces {
            let key = items::key_item(
                &items::state_pk(&lease.cluster),
                &format!("{}{index:04}", items::CHECKPOINT_PREFIX),
            );
            self.guard().remove(&key_of(&key));
        }
        for piece in pieces {
            self.put(piece);
        }
        Ok(())
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

    async fn trail_streams(
        &self,
        cluster: &str,
    ) -> Result<std::collections::BTreeMap<String, Option<String>>, StoreError> {
        let mut streams = std::collections::BTreeMap::new();
        for item in self.partition(&items::trail_pk(cluster)) {
            if items::is_trail_record(&item) {
                let entry = items::trail_entry_from_item(item)?;
                streams
                    .entry(crate::incremental::stream_prefix(&entry))
                    .or_insert_with(|| entry.cloudhsm().map(|_| entry.stream.hsm.clone()));
            }
        }
        Ok(streams)
    }

    async fn conflicts(&self, cluster: &str) -> Result<Vec<Conflict>, StoreError> {
        self.partition(&items::trail_pk(cluster))
            .into_iter()
            .filter(items::is_conflict)
            .map(items::conflict_from_item)
            .collect()
    }
}
