//! Lambda events and the failure queue's records, as AWS sends them, built from log
//! events: what the decode tests, the integration tests and the workload feed the
//! handler.

use std::io::Write;

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The payload a subscription's `data` (base64 of the gzip) carries: the inverse of
/// `b64(&gzip(payload))`.
pub fn unpack(data: impl AsRef<[u8]>) -> Vec<u8> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64 data");
    let mut payload = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut payload,
    )
    .expect("gzip data");
    payload
}

/// `{"awslogs": {"data": base64(gzip(payload))}}`: how the subscription delivers a payload.
pub fn awslogs_event(payload: &[u8]) -> Value {
    json!({"awslogs": {"data": b64(&gzip(payload))}})
}

/// The payload inside an `{"awslogs": {"data": …}}` event, as JSON.
pub fn payload_body(event: &Value) -> Value {
    let data = event
        .pointer("/awslogs/data")
        .and_then(Value::as_str)
        .unwrap_or_default();
    serde_json::from_slice(&unpack(data)).expect("json")
}

/// A subscription's payload before compression: `events` of one stream.
pub fn subscription_payload(log_group: &str, log_stream: &str, events: Vec<Value>) -> Value {
    json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": log_group,
        "logStream": log_stream,
        "subscriptionFilters": ["hsm-audit"],
        "logEvents": events,
    })
}

/// A log event as a subscription carries it: the id CloudWatch Logs gives it (56 digits),
/// its time in milliseconds.
pub fn log_event(id: u64, millis: i64, message: &str) -> Value {
    json!({"id": format!("{id:056}"), "timestamp": millis, "message": message})
}

/// A CloudWatch Logs subscription event for `messages` of one stream; event ids are
/// derived from `id_base` and the position.
pub fn subscription_event(
    log_group: &str,
    log_stream: &str,
    id_base: u64,
    messages: &[&str],
) -> Value {
    let events: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(index, message)| {
            json!({"id": format!("{}", id_base + index as u64), "timestamp": 1_516_067_329_824i64, "message": message})
        })
        .collect();
    let payload = subscription_payload(log_group, log_stream, events);
    awslogs_event(payload.to_string().as_bytes())
}

/// What the on-failure destination of an asynchronous invocation sends to SQS when
/// `event` failed with `error_message`.
pub fn destination_record(event: &Value, error_message: &str) -> Value {
    json!({
        "version": "1.0",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:hsm-audit:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "Retryable", "errorMessage": error_message}
    })
}

/// `aws sqs receive-message` output holding `bodies`, message ids `0000000<index>-…`.
pub fn receive_message_output(bodies: &[String]) -> Value {
    let messages: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| {
            json!({
                "MessageId": format!("0000000{index}-6b8c-xmpl-a8d4-1d5e8d4a8b9c"),
                "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                "MD5OfBody": "fafb00f5732ab283681e124bf8747ed1",
                "Body": body,
            })
        })
        .collect();
    json!({ "Messages": messages })
}
