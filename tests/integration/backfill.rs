//! `hsm-audit backfill` against the local server's CloudWatch Logs API (moto serves it
//! on the same port as DynamoDB): the sample records put into a log group, backfilled,
//! give the table that subscription delivery of the same log events gives; a second run
//! changes nothing.

use std::collections::BTreeMap;

use crate::common::*;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use hsm_audit::decode::{MessageType, decode_awslogs_data};
use hsm_audit::lambda::ingest_event;
use serde_json::json;

/// Puts the messages of every sample data payload into `log_group`, stream by stream.
/// Timestamps are recent ones (CloudWatch Logs refuses events older than 14 days); the
/// record's own time is its `usecs`, so nothing derived depends on them.
async fn put_samples(logs: &aws_sdk_cloudwatchlogs::Client, log_group: &str) {
    logs.create_log_group()
        .log_group_name(log_group)
        .send()
        .await
        .expect("create log group");
    let mut by_stream: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, event) in sample_events() {
        let data = event["awslogs"]["data"].as_str().expect("awslogs.data");
        let payload = decode_awslogs_data(data, 1 << 24).unwrap_or_else(|e| panic!("{name}: {e}"));
        // A control message is the subscription's own, not an event of the log group.
        if payload.message_type != MessageType::DataMessage {
            continue;
        }
        by_stream
            .entry(payload.log_stream)
            .or_default()
            .extend(payload.log_events.into_iter().map(|event| event.message));
    }
    let base = chrono::Utc::now().timestamp_millis() - 3_600_000;
    for (stream, messages) in by_stream {
        logs.create_log_stream()
            .log_group_name(log_group)
            .log_stream_name(&stream)
            .send()
            .await
            .expect("create log stream");
        let events: Vec<InputLogEvent> = messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| {
                InputLogEvent::builder()
                    .timestamp(base + index as i64)
                    .message(message)
                    .build()
                    .expect("log event")
            })
            .collect();
        let put = logs
            .put_log_events()
            .log_group_name(log_group)
            .log_stream_name(&stream)
            .set_log_events(Some(events))
            .send()
            .await
            .expect("put log events");
        assert!(put.rejected_log_events_info().is_none(), "{put:?}");
    }
}

/// The subscription events CloudWatch Logs would deliver for what the group holds: one
/// per stream, with the ids and timestamps the service assigned.
async fn subscription_events(
    logs: &aws_sdk_cloudwatchlogs::Client,
    log_group: &str,
) -> Vec<serde_json::Value> {
    let page = logs
        .filter_log_events()
        .log_group_name(log_group)
        .send()
        .await
        .expect("filter log events");
    assert!(page.next_token().is_none(), "the samples fit one page");
    let mut by_stream: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for event in page.events() {
        by_stream
            .entry(event.log_stream_name().expect("stream").to_owned())
            .or_default()
            .push(json!({
                "id": event.event_id().expect("id"),
                "timestamp": event.timestamp().expect("timestamp"),
                "message": event.message().expect("message"),
            }));
    }
    by_stream
        .into_iter()
        .map(|(stream, events)| {
            let payload = json!({
                "messageType": "DATA_MESSAGE",
                "owner": "123456789012",
                "logGroup": log_group,
                "logStream": stream,
                "subscriptionFilters": ["hsm-audit"],
                "logEvents": events,
            });
            json!({"awslogs": {"data": b64(&gzip(payload.to_string().as_bytes()))}})
        })
        .collect()
}

fn run_backfill(table: &str, log_group: &str) -> serde_json::Value {
    let args = ["backfill", "--output", "json", "--log-group", log_group];
    json_of(&cli(&args, table, &endpoint()))
}

fn is_checkpoint(item: &Item) -> bool {
    item.get("pk")
        .and_then(|value| value.as_s().ok())
        .is_some_and(|pk| pk.starts_with("BACKFILL#"))
}

#[tokio::test]
async fn backfill_gives_the_table_of_subscription_delivery_and_runs_again_as_a_no_op() {
    let cluster = format!("cluster-backfill-{:08x}", fastrand::u32(..));
    let log_group = format!("/aws/cloudhsm/{cluster}");
    let logs = logs_client();
    put_samples(&logs, &log_group).await;

    let delivered = fresh_store("delivered").await;
    let config = config_for(&delivered);
    for event in subscription_events(&logs, &log_group).await {
        ingest_event(event, &delivered, &config)
            .await
            .expect("delivery");
    }
    let expected = scan_all(&delivered).await;

    let backfilled = fresh_store("backfilled").await;
    let first = run_backfill(backfilled.table(), &log_group);
    assert!(
        first["stored"].as_u64().is_some_and(|stored| stored > 0),
        "{first}"
    );
    let state = scan_all(&backfilled).await;
    let (checkpoints, rest): (Vec<Item>, Vec<Item>) =
        state.iter().cloned().partition(is_checkpoint);
    assert_same_state(&rest, &expected, "backfill vs subscription");
    let streams = logs
        .describe_log_streams()
        .log_group_name(&log_group)
        .send()
        .await
        .expect("streams")
        .log_streams()
        .len();
    assert_eq!(checkpoints.len(), streams, "one checkpoint per stream");
    let sessions = backfilled
        .sessions(&cluster, None, None, None)
        .await
        .expect("sessions");
    assert!(!sessions.is_empty());

    let second = run_backfill(backfilled.table(), &log_group);
    assert_eq!(second["stored"], 0, "{second}");
    assert_eq!(
        scan_all(&backfilled).await,
        state,
        "a second run changes nothing"
    );
}
