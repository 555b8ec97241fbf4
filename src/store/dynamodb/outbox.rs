//! The alert outbox and the marks that keep an alert from being sent twice
//! ([`crate::publish`] says why this way), under `PUBLISH#<cluster>`:
//! - `OUTBOX#<sink>#<alert sort key>`: an alert not yet sent to that sink, with the alert
//!   item as it was written, written by the step that wrote the alert;
//! - `OUTBOX#<sink>#ARCHIVE#<alert sort key>`: an alert a later step no longer derives
//!   (a gap closed, a burst or gap superseded by its grown self), for the findings sink:
//!   its finding is imported again as archived. No mark: importing it twice is the same;
//!   once sent, the alert's own mark goes, so that the alert derived again is sent again;
//! - `SENT#<sink>#<alert sort key>`: `state` `claimed` (by `owner`, until
//!   `claimed_until_ms`) while being sent, `sent` once the sink took it, `released`
//!   when it did not (claimable again at once).
//!
//! A partition of its own, apart from the views and the derivation state: a rebuild
//! (`rederive`) clears those and derives every alert anew, and the marks it leaves here
//! keep what was sent before from being sent again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use tracing::warn;

use super::lease::now_millis;
use super::queries::SortKey;
use super::request::sdk_error;
use super::store::DynamoStore;
use crate::alerts::{StoredAlert, involved_records};
use crate::model::Timestamp;
use crate::publish::{Published, Publisher, Sink};
use crate::store::dynamodb::items::{self, Item, ViewRow};
use crate::store::{AuditStore, StoreError};

const OUTBOX_PREFIX: &str = "OUTBOX#";
const ARCHIVE_PREFIX: &str = "ARCHIVE#";
const SENT_PREFIX: &str = "SENT#";

/// How long a claim keeps others from sending an alert: well over a send's timeouts, so
/// that only a publisher that died leaves it to expire.
const CLAIM_MILLIS: u64 = 120_000;

fn publish_pk(cluster: &str) -> String {
    format!("PUBLISH#{}", items::key_part(cluster))
}

fn text(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// An outbox item as read: which sink, which alert.
struct Pending {
    key: Item,
    sink: Sink,
    alert: StoredAlert,
}

/// What a claim found.
enum Claim {
    Ours,
    /// The mark says sent: the outbox item is left over from a redone step.
    Sent,
    /// Another publisher holds the claim.
    Busy,
}

impl DynamoStore {
    /// Sends new alerts with `publisher` (none: no outbox, no request).
    pub fn with_publisher(mut self, publisher: Option<Publisher>) -> Self {
        self.publisher = publisher.map(Arc::new);
        self
    }

    /// The outbox items of a step's new alert items, one per sink.
    pub(super) fn outbox_items(&self, cluster: &str, alerts: &[Item]) -> Vec<Item> {
        let Some(publisher) = &self.publisher else {
            return Vec::new();
        };
        let pk = publish_pk(cluster);
        let mut out = Vec::new();
        for sink in publisher.sinks() {
            for alert in alerts {
                out.push(outbox_item(&pk, sink, alert, false));
            }
        }
        out
    }

    /// The outbox items that archive the findings of `removed` view keys that are alerts:
    /// read before they go (one batch read, only when a step removes an alert and
    /// findings are imported).
    pub(super) async fn archive_items(
        &self,
        cluster: &str,
        removed: &[Item],
    ) -> Result<Vec<Item>, StoreError> {
        let findings = self
            .publisher
            .as_ref()
            .is_some_and(|publisher| publisher.sinks().contains(&Sink::Findings));
        let alerts: Vec<Item> = removed
            .iter()
            .filter(|key| items::sort_key(key).starts_with(items::ALERT_PREFIX))
            .cloned()
            .collect();
        if !findings || alerts.is_empty() {
            return Ok(Vec::new());
        }
        let pk = publish_pk(cluster);
        Ok(self
            .get_all(alerts, None)
            .await?
            .iter()
            .map(|alert| outbox_item(&pk, Sink::Findings, alert, true))
            .collect())
    }

    /// Sends what the cluster's outbox holds: one `Query` when it is empty. Every failure
    /// is logged and leaves the alert in the outbox for the next invocation.
    pub(super) async fn drain_outbox(&self, cluster: &str) -> Published {
        let Some(publisher) = self.publisher.clone() else {
            return Published::default();
        };
        match self.try_drain_outbox(&publisher, cluster).await {
            Ok(published) => published,
            Err(error) => {
                let error = crate::errors::one_line(&error);
                warn!(cluster, error, "alerts left in the outbox");
                Published {
                    failed: 1,
                    ..Published::default()
                }
            }
        }
    }

    async fn try_drain_outbox(
        &self,
        publisher: &Publisher,
        cluster: &str,
    ) -> Result<Published, StoreError> {
        let pk = publish_pk(cluster);
        let mut by_sink: BTreeMap<Sink, Vec<Pending>> = BTreeMap::new();
        for item in self
            .query_partition(&pk, Some(SortKey::Prefix(OUTBOX_PREFIX)))
            .await?
        {
            if let Some(pending) = self.pending(cluster, item)? {
                by_sink.entry(pending.sink).or_default().push(pending);
            }
        }
        let mut published = Published::default();
        let owner = format!("{:016x}", fastrand::u64(..));
        for (sink, pending) in by_sink {
            let (archives, pending): (Vec<Pending>, Vec<Pending>) =
                pending.into_iter().partition(|entry| entry.alert.archived);
            let mut ours = Vec::new();
            let mut done = Vec::new();
            let mut unsent = BTreeSet::new();
            for entry in pending {
                match self.claim(&pk, sink, &entry.alert.id, &owner).await? {
                    Claim::Ours => ours.push(entry),
                    Claim::Sent => {
                        published.skipped += 1;
                        done.push(entry.key);
                    }
                    Claim::Busy => published.skipped += 1,
                }
            }
            self.add_log_event_ids(cluster, &mut ours).await?;
            let mut marks = Vec::new();
            for (entry, outcome) in send_each(publisher, sink, ours).await {
                let mark_sk = mark_sk(sink, &entry.alert.id);
                match outcome {
                    Ok(()) => {
                        published.sent += 1;
                        let mut mark = mark(&pk, &mark_sk, "sent");
                        mark.insert("owner".to_owned(), text(owner.as_str()));
                        mark.insert("sent_at".to_owned(), text(Timestamp::now().iso()));
                        marks.push(mark);
                        done.push(entry.key);
                    }
                    Err(reason) => {
                        published.failed += 1;
                        unsent.insert(entry.alert.id.clone());
                        warn_unsent(cluster, sink, &entry.alert.id, &reason, "alert not sent");
                        self.release(&pk, &mark_sk, &owner).await?;
                    }
                }
            }
            self.put_all(marks).await?;
            // An archive after its alert's own send, never before it: imported the other
            // way round, the finding would end active.
            let archives: Vec<Pending> = archives
                .into_iter()
                .filter(|entry| !unsent.contains(&entry.alert.id))
                .collect();
            if !archives.is_empty() {
                for (entry, outcome) in send_each(publisher, sink, archives).await {
                    match outcome {
                        Ok(()) => {
                            published.sent += 1;
                            done.push(items::key_item(&pk, &mark_sk(sink, &entry.alert.id)));
                            done.push(entry.key);
                        }
                        Err(reason) => {
                            published.failed += 1;
                            warn_unsent(
                                cluster,
                                sink,
                                &entry.alert.id,
                                &reason,
                                "finding not archived",
                            );
                        }
                    }
                }
            }
            self.delete_all(done).await?;
        }
        Ok(published)
    }

    fn pending(&self, cluster: &str, mut item: Item) -> Result<Option<Pending>, StoreError> {
        let sink = item
            .get("sink")
            .and_then(|value| value.as_s().ok())
            .and_then(|name| Sink::from_name(name));
        let archived = item
            .get("archived")
            .is_some_and(|value| value.as_bool().is_ok_and(|archived| *archived));
        let alert_item = match item.remove("alert") {
            Some(AttributeValue::M(alert)) => alert,
            _ => Item::new(),
        };
        let id = items::sort_key(&alert_item);
        let key = items::key_attributes(&item);
        // An outbox item of a sink this deployment no longer has waits for it to return.
        let Some(sink) = sink else {
            return Ok(None);
        };
        let ViewRow::Alert(alert) = items::view_row(alert_item)? else {
            return Err(StoreError::Corrupt {
                key: items::item_key(&item),
                source: "an outbox item without its alert".into(),
            });
        };
        Ok(Some(Pending {
            key,
            sink,
            alert: StoredAlert {
                cluster: cluster.to_owned(),
                table: self.table.clone(),
                id,
                alert,
                log_event_ids: Vec::new(),
                archived,
            },
        }))
    }

    /// Looks up the log event ids of the records the alerts are about: one batch read.
    async fn add_log_event_ids(
        &self,
        cluster: &str,
        pending: &mut [Pending],
    ) -> Result<(), StoreError> {
        let positions: BTreeSet<_> = pending
            .iter()
            .flat_map(|entry| involved_records(&entry.alert.alert))
            .collect();
        if positions.is_empty() {
            return Ok(());
        }
        let positions: Vec<_> = positions.into_iter().collect();
        let ids: HashMap<_, _> = self.log_event_ids(cluster, &positions).await?;
        for entry in pending {
            entry.alert.log_event_ids = involved_records(&entry.alert.alert)
                .iter()
                .filter_map(|position| ids.get(position).cloned())
                .collect();
        }
        Ok(())
    }

    /// Claims the alert's mark for `owner`: a conditional write that succeeds for one
    /// publisher, unless the alert was sent or another's claim has not expired.
    async fn claim(
        &self,
        pk: &str,
        sink: Sink,
        alert_id: &str,
        owner: &str,
    ) -> Result<Claim, StoreError> {
        let now = now_millis();
        let mut mark = mark(pk, &mark_sk(sink, alert_id), "claimed");
        mark.insert("owner".to_owned(), text(owner));
        mark.insert(
            "claimed_until_ms".to_owned(),
            AttributeValue::N((now + CLAIM_MILLIS).to_string()),
        );
        let refused = self
            .put_mark_if(
                mark,
                "attribute_not_exists(pk) OR #state = :released \
                 OR (#state = :claimed AND claimed_until_ms < :now)",
                &[
                    (":claimed", text("claimed")),
                    (":released", text("released")),
                    (":now", AttributeValue::N(now.to_string())),
                ],
            )
            .await?;
        Ok(match refused {
            None => Claim::Ours,
            Some(before) => {
                let sent = before
                    .get("state")
                    .is_some_and(|state| state.as_s().is_ok_and(|state| state == "sent"));
                if sent { Claim::Sent } else { Claim::Busy }
            }
        })
    }

    /// Gives up our claim, so that the next invocation sends the alert at once. A put,
    /// not a delete: the function's role deletes nothing but through `BatchWriteItem`.
    async fn release(&self, pk: &str, mark_sk: &str, owner: &str) -> Result<(), StoreError> {
        let mark = mark(pk, mark_sk, "released");
        // Refused: ours no longer (it expired and another publisher claimed it).
        self.put_mark_if(
            mark,
            "#owner = :owner AND #state = :claimed",
            &[(":owner", text(owner)), (":claimed", text("claimed"))],
        )
        .await?;
        Ok(())
    }

    /// Puts `mark` if `condition` holds (`#state` and `#owner` name those attributes);
    /// `Some` with the mark as it was when it did not.
    async fn put_mark_if(
        &self,
        mark: Item,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<Option<Item>, StoreError> {
        self.counts.count_single_item();
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(mark))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, attribute) in [("#state", "state"), ("#owner", "owner")] {
            if condition.contains(name) {
                request = request.expression_attribute_names(name, attribute);
            }
        }
        for (name, value) in values {
            request = request.expression_attribute_values(*name, value.clone());
        }
        match request.send().await {
            Ok(_) => Ok(None),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(refused)) => {
                    Ok(Some(refused.item().cloned().unwrap_or_default()))
                }
                _ => Err(sdk_error("PutItem (alert mark)", error)),
            },
        }
    }
}

/// A send that failed, for the operator: the next invocation retries it.
fn warn_unsent(cluster: &str, sink: Sink, alert: &str, reason: &str, what: &str) {
    warn!(
        cluster,
        sink = sink.as_str(),
        alert,
        reason,
        "{what}; the next invocation retries it"
    );
}

/// Sends the entries' alerts to `sink` in one call: each entry with its outcome.
async fn send_each(
    publisher: &Publisher,
    sink: Sink,
    entries: Vec<Pending>,
) -> Vec<(Pending, Result<(), String>)> {
    let alerts: Vec<StoredAlert> = entries.iter().map(|entry| entry.alert.clone()).collect();
    let outcomes = publisher.send(sink, &alerts).await;
    entries.into_iter().zip(outcomes).collect()
}

/// The outbox item that sends `alert` to `sink` (`archived`: its finding archived).
fn outbox_item(pk: &str, sink: Sink, alert: &Item, archived: bool) -> Item {
    let sk = format!(
        "{OUTBOX_PREFIX}{}#{}{}",
        sink.as_str(),
        if archived { ARCHIVE_PREFIX } else { "" },
        items::sort_key(alert)
    );
    let mut item = items::key_item(pk, &sk);
    item.insert("item_type".to_owned(), text("outbox"));
    item.insert("sink".to_owned(), text(sink.as_str()));
    item.insert("alert".to_owned(), AttributeValue::M(alert.clone()));
    if archived {
        item.insert("archived".to_owned(), AttributeValue::Bool(true));
    }
    item
}

/// A mark in `state`, its owner and claim added by the caller.
fn mark(pk: &str, sk: &str, state: &str) -> Item {
    let mut mark = items::key_item(pk, sk);
    mark.insert("item_type".to_owned(), text("publish_mark"));
    mark.insert("state".to_owned(), text(state));
    mark
}

fn mark_sk(sink: Sink, alert_id: &str) -> String {
    format!("{SENT_PREFIX}{}#{alert_id}", sink.as_str())
}
