//! Batches handed over for derivation (`STATE#<cluster>` / `PENDING#<time>#<id>`): an
//! invocation that stored records and finds the cluster's derivation lease busy leaves
//! what its step would take — the trail keys of its entries, which of them it stored,
//! the duplicates it refused — for whoever holds the lease, which derives every batch
//! waiting in one step and removes them once that step is committed
//! (`crate::pipeline::derive_cluster`).

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::{Item, key_item, sort_key, state_pk};
use crate::domain::Conflict;
use crate::model::Timestamp;
use crate::store::StoreError;

pub const PENDING_PREFIX: &str = "PENDING#";

/// A batch stored and not yet derived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedOver {
    /// Its item's sort key: `PENDING#<16 hex digits of the time>#<random>`, oldest first.
    #[serde(skip)]
    pub id: String,
    /// Trail sort keys of the batch's entries (the trail holds them).
    pub entries: Vec<String>,
    /// Of those, the ones its invocation stored.
    pub fresh: Vec<String>,
    pub conflicts: Vec<Conflict>,
}

impl HandedOver {
    /// A new batch's id, in time order.
    pub fn new_id(now: Timestamp) -> String {
        format!(
            "{PENDING_PREFIX}{:016x}#{:016x}",
            now.micros().max(0),
            fastrand::u64(..)
        )
    }
}

pub fn pending_item(cluster: &str, batch: &HandedOver) -> Result<Item, StoreError> {
    let mut item = key_item(&state_pk(cluster), &batch.id);
    let body = serde_json::to_string(batch).map_err(|error| StoreError::Corrupt {
        key: batch.id.clone(),
        source: Box::new(error),
    })?;
    item.insert(
        "item_type".to_owned(),
        AttributeValue::S("pending".to_owned()),
    );
    item.insert("batch".to_owned(), AttributeValue::S(body));
    Ok(item)
}

pub fn pending_from_item(item: &Item) -> Result<HandedOver, StoreError> {
    let id = sort_key(item);
    let body = item
        .get("batch")
        .and_then(|value| value.as_s().ok())
        .map(String::as_str)
        .unwrap_or_default();
    let mut batch: HandedOver =
        serde_json::from_str(body).map_err(|error| StoreError::Corrupt {
            key: id.clone(),
            source: Box::new(error),
        })?;
    batch.id = id;
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back_as_handed_over_and_ids_sort_by_time() {
        let batch = HandedOver {
            id: HandedOver::new_id(Timestamp(5)),
            entries: vec!["HSM#a#RC#00000001#SEQ#0000000000000002".into()],
            fresh: vec!["HSM#a#RC#00000001#SEQ#0000000000000002".into()],
            conflicts: Vec::new(),
        };
        let item = pending_item("c1", &batch).expect("item");
        assert_eq!(pending_from_item(&item).expect("reads"), batch);
        assert!(HandedOver::new_id(Timestamp(5)) < HandedOver::new_id(Timestamp(6)));
        assert!(batch.id.starts_with(PENDING_PREFIX));
    }
}
