//! Reads: whole partitions for derivation, and the CLI's access patterns. Every one is a
//! `Query` on the base table with a strongly consistent read.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::request::sdk_error;
use super::store::DynamoStore;
use crate::decode::Quarantined;
use crate::domain::{Alert, ClusterSession, FailedLogin, KeyGeneration, QuorumView, StreamSummary};
use crate::incremental::TailStart;
use crate::model::{Timestamp, TrailEntry};
use crate::store::StoreError;
use crate::store::dynamodb::items::{self, Item};
use crate::store::window::{self, Collected, KeyOf, Paging, Window};

/// A sort-key condition: a prefix, or a closed range.
pub(crate) enum SortKey<'a> {
    Prefix(&'a str),
    Between(String, String),
}

impl DynamoStore {
    /// The items of a stream after its start (sort keys greater than `start.after`,
    /// under `start.prefix`, outside the run it skips), at most `limit`; `true` when more
    /// remain.
    pub(super) async fn query_after(
        &self,
        pk: &str,
        start: &TailStart,
        limit: usize,
    ) -> Result<(Vec<Item>, bool), StoreError> {
        let low = start.after.clone().unwrap_or_else(|| start.prefix.clone());
        // The largest code point sorts after every key under the prefix.
        let high = format!("{}\u{10FFFF}", start.prefix);
        let ranges = match &start.skip {
            Some((first, last)) => vec![(low, first.clone()), (last.clone(), high)],
            None => vec![(low, high)],
        };
        let mut items = Vec::new();
        for (low, high) in ranges {
            let mut from = None;
            loop {
                let page_limit = i32::try_from(limit + 1 - items.len()).unwrap_or(i32::MAX);
                self.counts.count_query();
                let output = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .consistent_read(true)
                    .key_condition_expression("pk = :pk AND sk BETWEEN :low AND :high")
                    .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                    .expression_attribute_values(":low", AttributeValue::S(low.clone()))
                    .expression_attribute_values(":high", AttributeValue::S(high.clone()))
                    .limit(page_limit)
                    .set_exclusive_start_key(from)
                    .send()
                    .await
                    .map_err(|error| sdk_error("Query", error))?;
                items.extend(
                    output
                        .items
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|item| start.reads(&items::sort_key(item))),
                );
                from = output.last_evaluated_key;
                if items.len() > limit {
                    items.truncate(limit);
                    return Ok((items, true));
                }
                if from.is_none() {
                    break;
                }
            }
        }
        Ok((items, false))
    }

    pub(super) async fn query_partition(
        &self,
        pk: &str,
        sort: Option<SortKey<'_>>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        self.query_pages(pk, sort, |page| {
            items.extend(page);
            Ok(())
        })
        .await?;
        Ok(items)
    }

    /// Hands each page of a partition's items to `on_page` as it arrives, so that a caller
    /// converting them keeps one page of the SDK's item maps in memory, not the partition.
    pub(super) async fn query_pages(
        &self,
        pk: &str,
        sort: Option<SortKey<'_>>,
        mut on_page: impl FnMut(Vec<Item>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut start = None;
        loop {
            let (page, next) = self.query_sorted_page(pk, &sort, true, start, None).await?;
            on_page(page)?;
            start = next;
            if start.is_none() {
                return Ok(());
            }
        }
    }

    /// One page of a partition's items from `start` (a previous page's last key), in
    /// sort-key order (`forward`) or its reverse, at most `limit` items (else up to 1 MB),
    /// and the key to go on from, if any.
    pub(super) async fn query_sorted_page(
        &self,
        pk: &str,
        sort: &Option<SortKey<'_>>,
        forward: bool,
        start: Option<Item>,
        limit: Option<i32>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .scan_index_forward(forward)
            .set_limit(limit)
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .set_exclusive_start_key(start);
        request = match sort {
            None => request.key_condition_expression("pk = :pk"),
            Some(SortKey::Prefix(prefix)) => request
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", AttributeValue::S((*prefix).to_owned())),
            Some(SortKey::Between(low, high)) => request
                .key_condition_expression("pk = :pk AND sk BETWEEN :low AND :high")
                .expression_attribute_values(":low", AttributeValue::S(low.clone()))
                .expression_attribute_values(":high", AttributeValue::S(high.clone())),
        };
        self.counts.count_query();
        let output = request
            .send()
            .await
            .map_err(|error| sdk_error("Query", error))?;
        Ok((output.items.unwrap_or_default(), output.last_evaluated_key))
    }

    /// One page of an index of `pk`'s items whose sort attribute lies in `bounds`: keys
    /// only, eventually consistent (an index is never read consistently).
    pub(super) async fn query_index_page(
        &self,
        pk: &str,
        (index, attribute): (&str, &str),
        bounds: (AttributeValue, AttributeValue),
        forward: bool,
        start: Option<Item>,
        limit: Option<i32>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        self.counts.count_query();
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .scan_index_forward(forward)
            .set_limit(limit)
            .key_condition_expression("pk = :pk AND #at BETWEEN :low AND :high")
            .expression_attribute_names("#at", attribute)
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .expression_attribute_values(":low", bounds.0)
            .expression_attribute_values(":high", bounds.1)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|error| sdk_error("Query", error))?;
        Ok((output.items.unwrap_or_default(), output.last_evaluated_key))
    }

    /// The last item of `pk` whose sort key starts with `prefix`: one query, newest first,
    /// one item.
    pub(super) async fn query_last(
        &self,
        pk: &str,
        prefix: &str,
    ) -> Result<Option<Item>, StoreError> {
        let (found, _) = self
            .query_sorted_page(pk, &Some(SortKey::Prefix(prefix)), false, None, Some(1))
            .await?;
        Ok(found.into_iter().next())
    }

    /// One page of a partition after the sort key `after`, and the sort key to continue
    /// from when there is more.
    pub(super) async fn query_page(
        &self,
        pk: &str,
        after: Option<&str>,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let start = after.map(|sk| items::key_item(pk, sk));
        let (page, next) = self.query_sorted_page(pk, &None, true, start, None).await?;
        Ok((page, next.as_ref().map(items::sort_key)))
    }

    /// The trail of a cluster (HSM streams in sequence order, then records without a
    /// sequence number), or of one HSM in sequence order.
    pub async fn trail(
        &self,
        cluster: &str,
        hsm: Option<&str>,
    ) -> Result<Vec<TrailEntry>, StoreError> {
        let mut trail = Vec::new();
        self.trail_pages(cluster, hsm, Window::default(), |page| {
            trail.extend(page);
            Ok::<_, StoreError>(())
        })
        .await?;
        Ok(trail)
    }

    /// The trail (of one HSM) a page at a time, in the trail's order, the records timed in
    /// `window` only. A window asks the `trail_by_time` index which records it holds and
    /// keeps, of each stream, the first and last sort key; then reads each stream between
    /// them, in order. Where an HSM's clock ran backwards within the window's stretch of its
    /// stream, records between them timed outside the window are read and left out.
    pub async fn trail_pages<E: From<StoreError>>(
        &self,
        cluster: &str,
        hsm: Option<&str>,
        window: Window,
        mut out: impl FnMut(Vec<TrailEntry>) -> Result<(), E>,
    ) -> Result<(), E> {
        let pk = items::trail_pk(cluster);
        let prefix = hsm.map(items::hsm_trail_prefix);
        if window.is_open() {
            let whole = prefix.as_deref().map(SortKey::Prefix);
            return self.trail_range(&pk, whole, window, &mut out).await;
        }
        let micros = |time: Option<Timestamp>, default: i64| {
            AttributeValue::N(time.map_or(default, Timestamp::micros).to_string())
        };
        let bounds = (micros(window.from, i64::MIN), micros(window.to, i64::MAX));
        let mut streams: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut start = None;
        loop {
            let (page, next) = self
                .query_index_page(
                    &pk,
                    (items::TRAIL_BY_TIME_INDEX, "usecs"),
                    bounds.clone(),
                    true,
                    start,
                    None,
                )
                .await?;
            for entry in &page {
                let sk = items::sort_key(entry);
                if prefix
                    .as_ref()
                    .is_some_and(|prefix| !sk.starts_with(prefix.as_str()))
                {
                    continue;
                }
                let stream = sk.rfind('#').map_or(sk.as_str(), |at| &sk[..at]).to_owned();
                let span = streams
                    .entry(stream)
                    .or_insert_with(|| (sk.clone(), sk.clone()));
                if sk < span.0 {
                    span.0 = sk;
                } else if sk > span.1 {
                    span.1 = sk;
                }
            }
            start = next;
            if start.is_none() {
                break;
            }
        }
        for (low, high) in streams.into_values() {
            let sort = Some(SortKey::Between(low, high));
            self.trail_range(&pk, sort, window, &mut out).await?;
        }
        Ok(())
    }

    /// Hands on the records of one range of the trail, page by page, those in `window`.
    async fn trail_range<E: From<StoreError>>(
        &self,
        pk: &str,
        sort: Option<SortKey<'_>>,
        window: Window,
        out: &mut impl FnMut(Vec<TrailEntry>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut from = None;
        loop {
            let (page, next) = self.query_sorted_page(pk, &sort, true, from, None).await?;
            let mut entries = items::trail_entries(page)?;
            entries.retain(|entry| window.contains(entry.record.time()));
            out(entries)?;
            from = next;
            if from.is_none() {
                return Ok(());
            }
        }
    }

    /// Sessions of a cluster (or of one user) whose login falls in `[from, to]`.
    pub async fn sessions(
        &self,
        cluster: &str,
        user: Option<&str>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<Vec<ClusterSession>, StoreError> {
        let window = Window { from, to };
        let mut found = Collected::default();
        let mut add = |row| found.add(row);
        match user {
            Some(user) => {
                window::user_sessions(self, cluster, user, window, &Paging::default(), &mut add)
                    .await?;
            }
            None => window::sessions_by_time(self, cluster, window, &mut add).await?,
        }
        Ok(found.sessions)
    }

    /// Generations of one key handle, or of every key of the cluster.
    pub async fn keys(
        &self,
        cluster: &str,
        handle: Option<u64>,
    ) -> Result<Vec<KeyGeneration>, StoreError> {
        let mut found = Collected::default();
        let mut add = |row| found.add(row);
        match handle {
            Some(handle) => {
                let of = KeyOf::Handle(handle);
                window::key_generations(self, cluster, &of, &Paging::default(), &mut add).await?;
            }
            None => window::keys_stored(self, cluster, &mut add).await?,
        }
        let mut keys = found.keys;
        keys.sort_by(KeyGeneration::listing_order);
        Ok(keys)
    }

    pub async fn failed_logins(
        &self,
        cluster: &str,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<Vec<FailedLogin>, StoreError> {
        let mut found = Collected::default();
        window::failed_logins(self, cluster, Window { from, to }, &mut |row| {
            found.add(row)
        })
        .await?;
        Ok(found.failed_logins)
    }

    pub async fn alerts(&self, cluster: &str) -> Result<Vec<Alert>, StoreError> {
        let mut found = Collected::default();
        window::alerts(self, cluster, Window::default(), None, false, &mut |row| {
            found.add(row)
        })
        .await?;
        Ok(found.alerts)
    }

    /// Whether the table holds any record of `cluster`: one item read.
    pub async fn has_cluster(&self, cluster: &str) -> Result<bool, StoreError> {
        let (found, _) = self
            .query_sorted_page(&items::trail_pk(cluster), &None, true, None, Some(1))
            .await?;
        Ok(!found.is_empty())
    }

    pub async fn streams(&self, cluster: &str) -> Result<Vec<StreamSummary>, StoreError> {
        let found = self
            .query_partition(
                &items::cluster_pk(cluster),
                Some(SortKey::Prefix(items::STREAM_PREFIX)),
            )
            .await?;
        items::bodies_from_items(found)
    }

    /// The cluster's quorum tokens and M-value settings, each in time order.
    pub async fn quorum(&self, cluster: &str) -> Result<QuorumView, StoreError> {
        let mut found = Vec::new();
        window::quorum_pages(self, cluster, Window::default(), &mut |page| {
            found.extend(page);
            Ok::<_, StoreError>(())
        })
        .await?;
        items::quorum_from_items(found)
    }

    pub async fn quarantined(&self) -> Result<Vec<Quarantined>, StoreError> {
        let found = self.query_partition(items::QUARANTINE_PK, None).await?;
        found
            .into_iter()
            .filter(items::is_quarantined)
            .map(items::quarantined_from_item)
            .collect()
    }

    /// The whole content of the quarantined input whose SHA-256 is `raw_sha256`, checked
    /// against it; `None` when nothing quarantined has that digest.
    pub async fn quarantined_content(
        &self,
        raw_sha256: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let found = self.query_partition(items::QUARANTINE_PK, None).await?;
        let Some(head) = found.into_iter().find(|item| {
            items::is_quarantined(item)
                && item
                    .get("raw_sha256")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some(raw_sha256)
        }) else {
            return Ok(None);
        };
        if !head.contains_key("raw_parts") {
            // Not cut: `raw` is the content.
            return Ok(Some(items::quarantined_from_item(head)?.raw.into_bytes()));
        }
        let prefix = items::quarantine_parts_prefix(&items::sort_key(&head));
        let parts = self
            .query_partition(items::QUARANTINE_PK, Some(SortKey::Prefix(&prefix)))
            .await?;
        items::quarantined_content(&head, &parts).map(Some)
    }
}
