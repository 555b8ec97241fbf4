//! The clusters a table holds, to name them when `--cluster` names none of them. No item
//! lists them: this scans, which the CLI alone does (the function's role has no Scan).

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::store::StoreError;
use crate::store::dynamodb::{DynamoStore, items, request_error};

/// Pages of the table read. A scan reads every item, trail records included: bounded,
/// a mistyped `--cluster` costs little on a large table.
const MAX_PAGES: usize = 16;

/// The clusters whose records the first [`MAX_PAGES`] pages of the table hold, and
/// whether those were the whole table.
pub(super) async fn known(store: &DynamoStore) -> Result<(BTreeSet<String>, bool), StoreError> {
    let mut clusters = BTreeSet::new();
    let mut start = None;
    for _ in 0..MAX_PAGES {
        let output = store
            .client()
            .scan()
            .table_name(store.table())
            .projection_expression("#cluster")
            .filter_expression("begins_with(pk, :trail)")
            .expression_attribute_names("#cluster", "cluster")
            .expression_attribute_values(":trail", AttributeValue::S(items::trail_pk("")))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|error| request_error("Scan", error))?;
        clusters.extend(
            output
                .items
                .unwrap_or_default()
                .iter()
                .filter_map(|item| item.get("cluster")?.as_s().ok().cloned()),
        );
        start = output.last_evaluated_key;
        if start.is_none() {
            return Ok((clusters, true));
        }
    }
    Ok((clusters, false))
}
