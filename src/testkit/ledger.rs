//! What the DynamoDB store's writes cost, by item type: the benchmark reports write units
//! per record from it, computed from item sizes by DynamoDB's rules, since a local
//! server's `ConsumedCapacity` is not faithful. Only a store built with the `testkit`
//! feature keeps one.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::store::dynamodb::items::{self, Item};

/// Items written (put or deleted) and the write capacity units that costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCost {
    pub items: u64,
    pub write_units: u64,
}

#[derive(Debug, Default)]
pub struct WriteLedger {
    costs: Mutex<BTreeMap<String, WriteCost>>,
}

impl WriteLedger {
    /// `(item type, write units)` of each of `written`, `factor` units per unit (2 in a
    /// transaction).
    pub fn costs_of(written: &[Item], factor: u64) -> Vec<(String, u64)> {
        written
            .iter()
            .map(|item| (items::type_of(item), factor * items::write_units(item)))
            .collect()
    }

    /// Books writes: `(item type, write units)` of each item written or deleted.
    pub fn book(&self, writes: impl IntoIterator<Item = (String, u64)>) {
        let mut costs = self
            .costs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (item_type, write_units) in writes {
            let cost = costs.entry(item_type).or_default();
            cost.items += 1;
            cost.write_units += write_units;
        }
    }

    /// Write cost so far, by `item_type`.
    pub fn costs(&self) -> BTreeMap<String, WriteCost> {
        self.costs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}
