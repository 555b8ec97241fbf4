//! The Lambda handler: a thin edge over [`crate::pipeline`]. One function serves every
//! delivery of the subscription — a direct subscription event, a Kinesis Data Streams
//! batch, a Firehose data-transformation batch — which [`decode_event`] tells apart once,
//! by the event's shape; each is answered in the shape its source expects.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::Value;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::Config;
use crate::decode::{Delivery, Quarantined, StreamRecord, decode_event};
use crate::errors::one_line;
use crate::pipeline::{
    Report, derive_clusters, ingest, parse_decoded, stop_at_first, store_decoded,
};
use crate::store::dynamodb::waiting_until;
use crate::store::{AuditStore, StoreError};

/// Why an invocation failed. Bad input never is a reason (it is quarantined and the
/// invocation succeeds, since retrying cannot fix it); only a failing dependency is.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HandlerError {
    /// Whether a retry of the invocation can succeed.
    pub fn is_retryable(&self) -> bool {
        let HandlerError::Store(error) = self;
        error.is_retryable()
    }

    /// The error type of the function's error response. Lambda retries the event, then
    /// hands it to the on-failure destination; the type tells an operator reading either
    /// whether a retry can succeed, and if not, why.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::Store(StoreError::Rejected { .. }) => "Rejected",
            HandlerError::Store(StoreError::Corrupt { .. }) => "Corrupt",
            HandlerError::Store(_) => "Retryable",
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: one_line(&error),
        }
    }
}

/// What the function returns, in the shape its event source expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// CloudWatch Logs ignores the result; it is there for people invoking by hand.
    Subscription(Report),
    Kinesis(KinesisResponse),
    Firehose(FirehoseResponse),
}

/// `ReportBatchItemFailures`: Lambda retries the batch from the lowest reported
/// sequence number; an empty list is a complete success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KinesisResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FirehoseResponse {
    pub records: Vec<FirehoseRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirehoseRecord {
    #[serde(rename = "recordId")]
    pub record_id: String,
    pub result: String,
    pub data: String,
}

/// An invocation's answer and what it did (for metrics and the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub response: Response,
    pub report: Report,
}

/// Decodes `event` once and processes the delivery it is.
pub async fn process_event<S: AuditStore>(
    event: Value,
    store: &S,
    config: &Config,
) -> Result<Handled, HandlerError> {
    let delivery = decode_event(&event, config.max_inflated_bytes);
    drop(event);
    process_delivery(delivery, store, config).await
}

/// What [`process_event`] did, without the answer: for callers that answer no event
/// source (tests, the benchmark).
pub async fn ingest_event<S: AuditStore>(
    event: Value,
    store: &S,
    config: &Config,
) -> Result<Report, HandlerError> {
    Ok(process_event(event, store, config).await?.report)
}

/// Stores a delivery and derives the views it touched, answering as its source expects.
pub async fn process_delivery<S: AuditStore>(
    delivery: Delivery,
    store: &S,
    config: &Config,
) -> Result<Handled, HandlerError> {
    match delivery {
        Delivery::Kinesis(records) => process_kinesis(records, store, config).await,
        Delivery::Firehose(records) => process_firehose(records, store, config).await,
        delivery @ (Delivery::Subscription(_) | Delivery::Unrecognised(_)) => {
            let report = ingest(store, config, parse_decoded(delivery.into_decoded())).await?;
            Ok(Handled {
                response: Response::Subscription(report.clone()),
                report,
            })
        }
    }
}

/// Kinesis: records are stored one by one in shard order. The first record whose store
/// write fails, and every record after it, are reported failed (nothing after it is
/// attempted, so that per-shard order holds when Lambda retries from there). A record
/// that cannot be decoded is quarantined with its reason, the rest of the batch lands,
/// and it is reported failed too: Lambda then retries from it (the repeats are
/// idempotent) until `MaximumRetryAttempts`, and puts it in the failure queue, where an
/// operator sees it beside the quarantine item.
async fn process_kinesis<S: AuditStore>(
    records: Vec<StreamRecord>,
    store: &S,
    config: &Config,
) -> Result<Handled, HandlerError> {
    let ids: Vec<Option<String>> = records.iter().map(|record| record.id.clone()).collect();
    let mut report = Report::default();
    let mut failed_from: Option<usize> = None;
    let mut first_record_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_error = None;
    let mut undecodable = Vec::new();
    for (index, record) in records.into_iter().enumerate() {
        if record.is_undecodable() {
            undecodable.push(index);
        }
        let error = match store_decoded(store, record.decoded).await {
            Ok(stored) => {
                for cluster in &stored.clusters {
                    first_record_of.entry(cluster.clone()).or_insert(index);
                }
                report.add(stored);
                continue;
            }
            Err(error) if !error.is_retryable() => {
                // Reported, the record would hold the shard through every retry, each
                // failing alike: it is quarantined whole instead, to be replayed once
                // whatever refused it is fixed.
                error!(record = index, error = %one_line(&error), retryable = false, "storing a Kinesis record failed and a retry cannot fix it; it is quarantined, not reported");
                let label = record.id.as_deref().unwrap_or("without an id");
                let item = Quarantined::new(
                    format!("Kinesis record {label}: {}", one_line(&error)),
                    record.data.as_deref().unwrap_or_default().as_bytes(),
                );
                match store.quarantine(std::slice::from_ref(&item)).await {
                    Ok(()) => {
                        report.add_quarantined(&item);
                        continue;
                    }
                    Err(quarantine_error) => quarantine_error,
                }
            }
            Err(error) => error,
        };
        warn!(record = index, error = %one_line(&error), "storing a Kinesis record failed; it and the rest of the batch are reported failed");
        failed_from = Some(index);
        last_error = Some(error);
        break;
    }
    derive_clusters(store, config, &mut report, |cluster, error| {
        if !error.is_retryable() {
            // The records are in the trail; reporting them would hold the shard through
            // retries that fail alike. The views lag until the cause is fixed and the
            // cluster rederived.
            error!(%cluster, error = %one_line(&error), retryable = false, "re-deriving failed and a retry cannot fix it; the records are not reported");
            return Ok(());
        }
        // The records are in the trail, but the views lag: retrying from the cluster's
        // first record of the batch re-derives it (idempotently).
        warn!(%cluster, error = %one_line(&error), "re-deriving failed; the cluster's records are reported failed");
        let first = first_record_of.get(cluster).copied().unwrap_or(0);
        failed_from = Some(failed_from.map_or(first, |failed| failed.min(first)));
        last_error = Some(error);
        Ok(())
    })
    .await?;
    let mut failures: Vec<BatchItemFailure> = undecodable
        .into_iter()
        .filter(|index| failed_from.is_none_or(|from| *index < from))
        .filter_map(|index| ids[index].clone())
        .map(|id| BatchItemFailure {
            item_identifier: id,
        })
        .collect();
    if let Some(from) = failed_from {
        for id in &ids[from..] {
            match id {
                Some(id) => failures.push(BatchItemFailure {
                    item_identifier: id.clone(),
                }),
                // A failed record that cannot be named: only failing the whole batch
                // makes Lambda retry it.
                None => {
                    if let Some(error) = last_error.take() {
                        return Err(error.into());
                    }
                }
            }
        }
    }
    Ok(Handled {
        response: Response::Kinesis(KinesisResponse {
            batch_item_failures: failures,
        }),
        report,
    })
}

/// Firehose: every record is stored, then passed through unchanged (`Ok`), so the
/// delivery stream still archives the raw payloads. Undecodable records are quarantined
/// and passed through too. A store failure fails the invocation: Firehose retries the
/// whole batch, and every write is idempotent.
async fn process_firehose<S: AuditStore>(
    records: Vec<StreamRecord>,
    store: &S,
    config: &Config,
) -> Result<Handled, HandlerError> {
    let mut report = Report::default();
    let mut response = FirehoseResponse::default();
    for record in records {
        response.records.push(FirehoseRecord {
            record_id: record.id.unwrap_or_default(),
            result: "Ok".to_owned(),
            data: record.data.unwrap_or_default(),
        });
        report.add(store_decoded(store, record.decoded).await?);
    }
    derive_clusters(store, config, &mut report, stop_at_first).await?;
    Ok(Handled {
        response: Response::Firehose(response),
        report,
    })
}

/// How long before the function's deadline an invocation stops waiting for a lease: what
/// it still does after the wait (a derivation step, the release) must fit in it.
pub const AFTER_WAITS: Duration = Duration::from_secs(10);

/// The instant an invocation must be done by, from the runtime's deadline (milliseconds
/// since the epoch).
pub fn deadline_of(deadline_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        });
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// One invocation as the runtime sees it: the event decoded, a span naming its sources,
/// the delivery processed, one summary log line and the EMF metrics lines. Waits for
/// the cluster's leases end [`AFTER_WAITS`] before `deadline` (the function's timeout).
pub async fn serve_invocation<S: AuditStore>(
    event: Value,
    request_id: &str,
    deadline: Instant,
    store: &S,
    config: &Config,
) -> Result<Response, HandlerError> {
    let delivery = decode_event(&event, config.max_inflated_bytes);
    drop(event);
    // The sources are known once the records are parsed; they are recorded on the span
    // then, so the summary line (and any later one) carries them.
    let span = info_span!(
        "invocation",
        request_id,
        delivery = delivery.kind(),
        log_groups = tracing::field::Empty,
        log_streams = tracing::field::Empty,
    );
    let retries_before = crate::store::dynamodb::retries::sdk_retries();
    let waits_end = deadline
        .checked_sub(AFTER_WAITS)
        .unwrap_or_else(Instant::now);
    let result = waiting_until(waits_end, process_delivery(delivery, store, config))
        .instrument(span.clone())
        .await;
    let retries = crate::store::dynamodb::retries::sdk_retries().saturating_sub(retries_before);
    let _entered = span.enter();
    match result {
        Ok(handled) => {
            let report = &handled.report;
            span.record("log_groups", join(&report.log_groups).as_str());
            span.record("log_streams", join(&report.log_streams).as_str());
            // The test hook of `Config::panic_on_log_group` (never set in a deployment).
            if let Some(group) = &config.panic_on_log_group
                && report.log_groups.contains(group)
            {
                panic!("HSM_AUDIT_PANIC_ON_LOG_GROUP: a test panic for log group {group}");
            }
            let failed = match &handled.response {
                Response::Kinesis(response) => response.batch_item_failures.len(),
                _ => 0,
            };
            info!(
                log_events = report.log_events,
                records = report.records,
                stored = report.stored,
                duplicates = report.duplicates,
                conflicts = report.conflicts,
                quarantined = report.quarantined,
                failed_logins = report.failed_logins,
                batch_item_failures = failed,
                dynamodb_retries = retries,
                clusters = ?report.clusters,
                "invocation processed"
            );
            crate::metrics::emit(report, retries, &config.metrics_service);
            Ok(handled.response)
        }
        Err(error) => {
            if error.is_retryable() {
                warn!(error = %one_line(&error), dynamodb_retries = retries, "invocation failed; it will be retried");
            } else {
                error!(error = %one_line(&error), error_type = error.error_type(), retryable = false, dynamodb_retries = retries, "invocation failed and a retry cannot fix it");
            }
            crate::metrics::emit(&Report::default(), retries, &config.metrics_service);
            Err(error)
        }
    }
}

/// A set as one comma-separated string: searchable in CloudWatch Logs Insights
/// (`filter span.log_groups like /cluster-demo/`) without JSON-in-JSON quoting.
fn join(names: &std::collections::BTreeSet<String>) -> String {
    names
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}
