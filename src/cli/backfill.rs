//! `hsm-audit backfill`: history that predates the subscription, read through the
//! CloudWatch Logs API (`DescribeLogStreams`, then `FilterLogEvents` per stream) and fed
//! through the same pipeline as the Lambda (`store_decoded`, then `derive_clusters`), so a backfilled record is stored exactly as a delivered one would be.
//!
//! Resume: after each stored page, a checkpoint item in the table itself
//! (`pk = BACKFILL#<log group>`, `sk = STREAM#<stream>`) records the last event time
//! stored. The table, not a local file, because the checkpoint must describe the table it
//! was written for: a run from another machine (CloudShell, CI) or against another table
//! resumes correctly, and nothing is left behind on a laptop. A run resumes at the
//! checkpoint's millisecond itself (inclusive): events of that millisecond may not all
//! have been stored, and storing one twice is a no-op.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use indicatif::ProgressBar;

use crate::config::Config;
use crate::decode::{Decoded, LogEvent, LogsPayload, MessageType};
use crate::pipeline::{Report, derive_clusters, stop_at_first, store_decoded};
use crate::store::dynamodb::{DynamoStore, request_error, request_failed};
use crate::store::{RequestFailed, StoreError};

pub const CHECKPOINT_PK_PREFIX: &str = "BACKFILL#";

/// What to read.
#[derive(Debug, Clone)]
pub struct Request {
    pub log_group: String,
    /// Milliseconds since the epoch, inclusive.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Ignore checkpoints and read the whole range again (still idempotent).
    pub restart: bool,
}

/// A stream's checkpoint: the run's start it was taken under and the last event time
/// stored. It is valid for a later run whose start is not earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpoint {
    start_ms: i64,
    last_event_ms: i64,
}

/// Why a backfill stopped (it resumes from its checkpoints when run again).
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("CloudWatch Logs {operation} of {target} failed: {source}")]
    Logs {
        operation: &'static str,
        target: String,
        #[source]
        source: RequestFailed,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn backfill(
    store: &DynamoStore,
    config: &Config,
    logs: &aws_sdk_cloudwatchlogs::Client,
    request: &Request,
) -> Result<Report, BackfillError> {
    let streams = log_streams(logs, &request.log_group).await?;
    let bar = super::input::progress(streams.len(), "backfill", "streams");
    let mut report = Report::default();
    for stream in &streams {
        bar.set_message(stream.clone());
        let stored = backfill_stream(store, logs, request, stream, &bar).await?;
        report.add(stored);
        bar.inc(1);
    }
    bar.set_message("deriving views");
    derive_clusters(store, config, &mut report, stop_at_first).await?;
    bar.finish_and_clear();
    Ok(report)
}

async fn log_streams(
    logs: &aws_sdk_cloudwatchlogs::Client,
    log_group: &str,
) -> Result<Vec<String>, BackfillError> {
    let mut streams = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = logs
            .describe_log_streams()
            .log_group_name(log_group)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|error| BackfillError::Logs {
                operation: "DescribeLogStreams",
                target: log_group.to_owned(),
                source: request_failed(error),
            })?;
        streams.extend(
            page.log_streams()
                .iter()
                .filter_map(|stream| stream.log_stream_name().map(str::to_owned)),
        );
        match page.next_token {
            // A repeated token would loop forever; the API ends with no token.
            Some(next) if !next.is_empty() => token = Some(next),
            _ => break,
        }
    }
    streams.sort();
    streams.dedup();
    Ok(streams)
}

async fn backfill_stream(
    store: &DynamoStore,
    logs: &aws_sdk_cloudwatchlogs::Client,
    request: &Request,
    stream: &str,
    bar: &ProgressBar,
) -> Result<Report, BackfillError> {
    let run_start = request.start_ms.unwrap_or(0);
    let checkpoint = if request.restart {
        None
    } else {
        read_checkpoint(store, &request.log_group, stream).await?
    };
    let from = match checkpoint {
        Some(checkpoint) if checkpoint.start_ms <= run_start => {
            checkpoint.last_event_ms.max(run_start)
        }
        // Taken under a later start: events between this run's start and that one
        // were never read.
        _ => run_start,
    };
    let mut report = Report::default();
    let mut token: Option<String> = None;
    let mut events_read = 0usize;
    loop {
        let page = logs
            .filter_log_events()
            .log_group_name(&request.log_group)
            .log_stream_names(stream)
            .start_time(from)
            .set_end_time(request.end_ms)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|error| BackfillError::Logs {
                operation: "FilterLogEvents",
                target: format!("{} {stream}", request.log_group),
                source: request_failed(error),
            })?;
        let events: Vec<LogEvent> = page
            .events()
            .iter()
            .filter_map(|event| {
                Some(LogEvent {
                    id: event.event_id()?.to_owned(),
                    timestamp: event.timestamp()?,
                    message: event.message()?.to_owned(),
                })
            })
            .collect();
        if let Some(last) = events.iter().map(|event| event.timestamp).max() {
            events_read += events.len();
            let payload = LogsPayload {
                message_type: MessageType::DataMessage,
                owner: String::new(),
                log_group: request.log_group.clone(),
                log_stream: stream.to_owned(),
                subscription_filters: Vec::new(),
                log_events: events,
                undecodable: Vec::new(),
            };
            let stored = store_decoded(store, vec![Decoded::Payload(payload)]).await?;
            report.add(stored);
            let checkpoint = Checkpoint {
                start_ms: run_start,
                last_event_ms: last.max(from),
            };
            write_checkpoint(store, &request.log_group, stream, checkpoint).await?;
            bar.set_message(format!("{stream}: {events_read} events"));
        }
        match page.next_token {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => break,
        }
    }
    Ok(report)
}

fn checkpoint_key(log_group: &str, stream: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "pk".to_owned(),
            AttributeValue::S(format!("{CHECKPOINT_PK_PREFIX}{log_group}")),
        ),
        (
            "sk".to_owned(),
            AttributeValue::S(format!("STREAM#{stream}")),
        ),
    ])
}

async fn read_checkpoint(
    store: &DynamoStore,
    log_group: &str,
    stream: &str,
) -> Result<Option<Checkpoint>, StoreError> {
    let item = store
        .client()
        .get_item()
        .table_name(store.table())
        .set_key(Some(checkpoint_key(log_group, stream)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|error| request_error("GetItem (backfill checkpoint)", error))?
        .item;
    let number = |item: &HashMap<String, AttributeValue>, name: &str| {
        item.get(name)
            .and_then(|value| value.as_n().ok())
            .and_then(|value| value.parse::<i64>().ok())
    };
    Ok(item.and_then(|item| {
        Some(Checkpoint {
            start_ms: number(&item, "start_ms")?,
            last_event_ms: number(&item, "last_event_ms")?,
        })
    }))
}

async fn write_checkpoint(
    store: &DynamoStore,
    log_group: &str,
    stream: &str,
    checkpoint: Checkpoint,
) -> Result<(), StoreError> {
    let mut item = checkpoint_key(log_group, stream);
    // No wall-clock time in the item: a run that finds nothing new must leave the table
    // exactly as it was.
    item.extend([
        (
            "item_type".to_owned(),
            AttributeValue::S("backfill_checkpoint".to_owned()),
        ),
        (
            "log_group".to_owned(),
            AttributeValue::S(log_group.to_owned()),
        ),
        (
            "log_stream".to_owned(),
            AttributeValue::S(stream.to_owned()),
        ),
        (
            "start_ms".to_owned(),
            AttributeValue::N(checkpoint.start_ms.to_string()),
        ),
        (
            "last_event_ms".to_owned(),
            AttributeValue::N(checkpoint.last_event_ms.to_string()),
        ),
    ]);
    store
        .put_unconditionally(item, "PutItem (backfill checkpoint)")
        .await
}
