//! `BatchWriteItem` and `BatchGetItem` with their partial results retried.
//!
//! The SDK already retries throttling and 5xx per request (standard retry mode); what
//! it does not retry are `UnprocessedItems`/`UnprocessedKeys`, which DynamoDB returns
//! with a 200 when a partition is hot. Those are retried here with exponential backoff
//! and full jitter (so concurrent invocations do not retry in lockstep), within a bound;
//! past it the invocation fails and Lambda's own retry takes over.

use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    DeleteRequest, KeysAndAttributes, Put, PutRequest, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, WriteRequest,
};
use futures::{StreamExt, TryStreamExt, stream};

use super::request::{request_error, sdk_error};
use super::store::DynamoStore;
use crate::store::dynamodb::items::{self, Item};
use crate::store::{RequestFailed, StoreError};

/// What conditional puts did: identities written, and identities another writer had
/// taken (with the stored content digest when the answer carried it).
#[derive(Debug, Default)]
pub(super) struct Settled {
    pub written: Vec<String>,
    pub lost: Vec<(String, Option<String>)>,
}

/// DynamoDB's limits per request.
const WRITE_BATCH: usize = 25;
const TRANSACT_ITEMS: usize = 100;
/// A transaction may carry 4 MB; chunks stay below it with room for request overhead.
const TRANSACT_BYTES: usize = 3 * 1024 * 1024;
/// Items per transaction kept for the digest a transaction of new records carries.
pub(super) const DIGEST_RESERVE: usize = 1;
const GET_BATCH: usize = 100;
/// Concurrent batch requests per invocation: enough to hide latency, few enough not to
/// throttle a fresh on-demand table.
const CONCURRENCY: usize = 4;
pub const MAX_ATTEMPTS: u32 = 8;

/// Backoff before retry `attempt` (1-based): full jitter over 50 ms · 2^attempt, capped.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling_ms = (50u64 << attempt.min(7)).min(5_000);
    Duration::from_millis(fastrand::u64(ceiling_ms / 2..=ceiling_ms))
}

impl DynamoStore {
    pub(super) async fn put_all(&self, items: Vec<Item>) -> Result<usize, StoreError> {
        let requests = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(|error| request_error("BatchWriteItem", error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write_all(requests).await
    }

    /// Deletes the items of `keys` (each `pk` and `sk`).
    pub(super) async fn delete_all(&self, keys: Vec<Item>) -> Result<usize, StoreError> {
        let requests = keys
            .into_iter()
            .map(|key| {
                DeleteRequest::builder()
                    .set_key(Some(key))
                    .build()
                    .map(|delete| WriteRequest::builder().delete_request(delete).build())
                    .map_err(|error| request_error("BatchWriteItem", error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write_all(requests).await
    }

    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<usize, StoreError> {
        let count = requests.len();
        // Moved into their batches, not copied: a derivation's puts are the largest thing
        // an invocation holds.
        let mut requests = requests.into_iter();
        let chunks = std::iter::from_fn(move || {
            let chunk: Vec<WriteRequest> = requests.by_ref().take(WRITE_BATCH).collect();
            (!chunk.is_empty()).then_some(chunk)
        });
        stream::iter(chunks)
            .map(|chunk| self.write_chunk(chunk))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(count)
    }

    async fn write_chunk(&self, mut pending: Vec<WriteRequest>) -> Result<(), StoreError> {
        for attempt in 1..=MAX_ATTEMPTS {
            self.counts.count_batch_write();
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(|error| sdk_error("BatchWriteItem", error))?;
            pending = output
                .unprocessed_items
                .and_then(|mut left| left.remove(&self.table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            self.counts.count_retry();
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(StoreError::Unprocessed {
            remaining: pending.len(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Splits items that must not exist yet into transactions: up to [`TRANSACT_ITEMS`]
    /// less `reserve` items (the digest each transaction of new records carries) and
    /// below the size limit, so that one request stores about a hundred new records,
    /// where a batch write cannot carry a condition.
    pub(super) fn transaction_chunks(items: Vec<Item>, reserve: usize) -> Vec<Vec<Item>> {
        let mut chunks: Vec<Vec<Item>> = Vec::new();
        let mut chunk_bytes = 0;
        let room = TRANSACT_ITEMS - reserve;
        for item in items {
            let size = items::item_size(&item);
            match chunks.last_mut() {
                Some(chunk) if chunk.len() < room && chunk_bytes + size <= TRANSACT_BYTES => {
                    chunk_bytes += size;
                    chunk.push(item);
                }
                _ => {
                    chunk_bytes = size;
                    chunks.push(vec![item]);
                }
            }
        }
        chunks
    }

    /// Puts items that must not exist yet (`attribute_not_exists(pk)`) in one transaction.
    /// It is all or nothing: when conditions fail, it reports which keys were taken (with
    /// the stored content digest when DynamoDB returns the item) and writes nothing; the
    /// caller retries the rest.
    pub(super) async fn put_new_chunk(&self, items: Vec<Item>) -> Result<Settled, StoreError> {
        let keys: Vec<String> = items.iter().map(items::sort_key).collect();
        // Transactional writes cost twice the write units of plain ones.
        #[cfg(any(test, feature = "testkit"))]
        let costs = crate::testkit::WriteLedger::costs_of(&items, 2);
        let puts = items
            .into_iter()
            .map(|item| {
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .map(|put| TransactWriteItem::builder().put(put).build())
                    .map_err(|error| request_error("TransactWriteItems", error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for attempt in 1..=MAX_ATTEMPTS {
            self.counts.count_transact_write();
            // The SDK gives the call an idempotency token kept across its own retries: a
            // retry after a lost answer succeeds instead of finding its own writes.
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(puts.clone()))
                .send()
                .await;
            let error = match result {
                Ok(_) => {
                    #[cfg(any(test, feature = "testkit"))]
                    self.ledger.book(costs);
                    return Ok(Settled {
                        written: keys,
                        lost: Vec::new(),
                    });
                }
                Err(error) => error,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) =
                error.as_service_error()
            else {
                return Err(sdk_error("TransactWriteItems", error));
            };
            let reasons = canceled.cancellation_reasons();
            let mut lost = Vec::new();
            let mut invalid = None;
            for (key, reason) in keys.iter().zip(reasons) {
                match reason.code() {
                    Some("ConditionalCheckFailed") => {
                        let digest = reason.item().and_then(items::content_digest);
                        lost.push((key.clone(), digest));
                    }
                    Some("ValidationError") => {
                        invalid = Some(format!(
                            "{key}: {}",
                            reason.message().unwrap_or("invalid item")
                        ));
                        break;
                    }
                    _ => {}
                }
            }
            if let Some(summary) = invalid {
                return Err(StoreError::Rejected {
                    operation: "TransactWriteItems",
                    source: RequestFailed {
                        summary,
                        source: Box::new(error),
                    },
                });
            }
            if !lost.is_empty() {
                return Ok(Settled {
                    written: Vec::new(),
                    lost,
                });
            }
            // Canceled by a concurrent transaction on the same items or by throttling:
            // nothing was written, and trying again can succeed.
            self.counts.count_retry();
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(StoreError::Unprocessed {
            remaining: keys.len(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Reads items by key (consistently: a concurrent invocation's writes must be seen).
    pub(super) async fn get_all(
        &self,
        keys: Vec<Item>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let chunks: Vec<Vec<Item>> = keys.chunks(GET_BATCH).map(<[_]>::to_vec).collect();
        let found = stream::iter(chunks)
            .map(|chunk| self.get_chunk(chunk, projection))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<Vec<Item>>>()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn get_chunk(
        &self,
        mut pending: Vec<Item>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .set_projection_expression(projection.map(str::to_owned))
                .build()
                .map_err(|error| request_error("BatchGetItem", error))?;
            self.counts.count_batch_get();
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|error| sdk_error("BatchGetItem", error))?;
            found.extend(
                output
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default(),
            );
            pending = output
                .unprocessed_keys
                .and_then(|mut left| left.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(found);
            }
            self.counts.count_retry();
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(StoreError::Unprocessed {
            remaining: pending.len(),
            attempts: MAX_ATTEMPTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        for attempt in 1..=20 {
            let delay = backoff(attempt).as_millis() as u64;
            let ceiling = (50u64 << attempt.min(7)).min(5_000);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "attempt {attempt}: {delay}"
            );
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(6)).collect();
        assert!(spread.len() > 1, "jitter must vary the delay");
    }
}
