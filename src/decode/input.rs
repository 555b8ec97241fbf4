//! Recognising what arrived: a Lambda event, a file of any accepted kind. Every shape
//! becomes [`LogsPayload`]s, and anything unrecognised a [`Quarantined`] item.

use serde_json::Value;

use super::kinesis::{EventShape, StreamRecord, event_shape, firehose_records, kinesis_records};
use super::{
    DecodeError, LogEvent, LogsPayload, MessageType, Quarantined, decode_awslogs_data,
    inflate_capped,
};

/// One unit of input after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Payload(LogsPayload),
    Quarantined(Quarantined),
}

/// Where records given as plain text (or as `aws logs filter-log-events` output, which
/// names no log group) belong, since the text does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawTextSource {
    pub log_group: Option<String>,
    pub log_stream: Option<String>,
}

/// A Lambda event, decoded once and told apart by its shape: one function serves a
/// direct subscription, a Kinesis stream and Firehose. (A file given to the CLI is one
/// batch whatever it holds: [`decode_document`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A CloudWatch Logs subscription event: its payload, or why it is not one.
    Subscription(Vec<Decoded>),
    /// The records of a Kinesis Data Streams event, in shard order: the response names
    /// the ones that failed.
    Kinesis(Vec<StreamRecord>),
    /// The records of a Firehose data-transformation event: the response hands each back.
    Firehose(Vec<StreamRecord>),
    /// An event of no shape the function is subscribed with, quarantined whole.
    Unrecognised(Quarantined),
}

impl Delivery {
    /// For the invocation's log: which kind of delivery it was.
    pub fn kind(&self) -> &'static str {
        match self {
            Delivery::Subscription(_) => "subscription",
            Delivery::Kinesis(_) => "kinesis",
            Delivery::Firehose(_) => "firehose",
            Delivery::Unrecognised(_) => "unrecognised",
        }
    }

    /// Every payload and quarantine item, record boundaries dropped: for processing the
    /// delivery as one batch.
    pub fn into_decoded(self) -> Vec<Decoded> {
        match self {
            Delivery::Subscription(decoded) => decoded,
            Delivery::Kinesis(records) | Delivery::Firehose(records) => records
                .into_iter()
                .flat_map(|record| record.decoded)
                .collect(),
            Delivery::Unrecognised(item) => vec![Decoded::Quarantined(item)],
        }
    }
}

/// Decodes a Lambda invocation event: a CloudWatch Logs subscription event gives one
/// payload, a Kinesis or Firehose event one per record; anything else is quarantined
/// whole.
pub fn decode_event(event: &Value, max_inflated_bytes: usize) -> Delivery {
    match event_shape(event) {
        EventShape::Subscription => Delivery::Subscription(
            event
                .pointer("/awslogs/data")
                .map(|data| decode_data_value(data, max_inflated_bytes))
                .into_iter()
                .collect(),
        ),
        EventShape::Kinesis => Delivery::Kinesis(kinesis_records(event, max_inflated_bytes)),
        EventShape::Firehose => Delivery::Firehose(firehose_records(event, max_inflated_bytes)),
        EventShape::Unknown => Delivery::Unrecognised(Quarantined::new(
            "unrecognised event: not a CloudWatch Logs subscription event (no awslogs.data), \
             nor a Kinesis or Firehose event of subscription records",
            event.to_string().as_bytes(),
        )),
    }
}

fn decode_data_value(data: &Value, max_inflated_bytes: usize) -> Decoded {
    match data.as_str() {
        Some(text) => match decode_awslogs_data(text, max_inflated_bytes) {
            Ok(payload) => Decoded::Payload(payload),
            Err(error) => {
                Decoded::Quarantined(Quarantined::new(error.to_string(), text.as_bytes()))
            }
        },
        None => quarantine_value("awslogs.data is not a string", data),
    }
}

fn quarantine_value(reason: &str, value: &Value) -> Decoded {
    Decoded::Quarantined(Quarantined::new(reason, value.to_string().as_bytes()))
}

/// Decodes a file given to the CLI: a Lambda event, a gzipped or plain subscription
/// payload, `aws logs filter-log-events` output, or raw audit record text.
pub fn decode_document(
    bytes: &[u8],
    name: &str,
    source: &RawTextSource,
    max_inflated_bytes: usize,
) -> Result<Vec<Decoded>, String> {
    let inflated;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        match inflate_capped(bytes, max_inflated_bytes) {
            Ok(data) => {
                inflated = data;
                &inflated[..]
            }
            Err(error) => {
                return Ok(vec![Decoded::Quarantined(Quarantined::new(
                    error.to_string(),
                    bytes,
                ))]);
            }
        }
    } else {
        bytes
    };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => decode_json_document(&value, source, max_inflated_bytes),
        Err(json_error) => {
            // A subscription payload with one event that is not text: the others count.
            if let Ok(payload) = super::awslogs::parse_payload(bytes) {
                return Ok(vec![Decoded::Payload(payload)]);
            }
            let text = String::from_utf8_lossy(bytes);
            if crate::parse::looks_like_cloudhsm_record(&text) {
                raw_text_payload(&text, name, source).map(|payload| vec![Decoded::Payload(payload)])
            } else {
                let reason = DecodeError::InvalidJson(json_error.to_string()).to_string();
                Ok(vec![Decoded::Quarantined(Quarantined::new(
                    format!("{reason}; and not raw audit record text either"),
                    bytes,
                ))])
            }
        }
    }
}

fn decode_json_document(
    value: &Value,
    source: &RawTextSource,
    max_inflated_bytes: usize,
) -> Result<Vec<Decoded>, String> {
    decode_json_value(value, source, max_inflated_bytes, 0)
}

/// How deep failure-queue wrappers may nest (an array of `receive-message` outputs whose
/// bodies are destination records): enough for every real shape, and a bound on the
/// recursion for a hostile one.
const MAX_WRAPPER_DEPTH: usize = 4;

fn decode_json_value(
    value: &Value,
    source: &RawTextSource,
    max_inflated_bytes: usize,
    depth: usize,
) -> Result<Vec<Decoded>, String> {
    if value.get("logEvents").is_some() {
        return Ok(vec![
            match serde_json::from_value::<LogsPayload>(value.clone()) {
                Ok(payload) => Decoded::Payload(payload),
                Err(error) => quarantine_value(
                    &DecodeError::NotSubscriptionPayload(error.to_string()).to_string(),
                    value,
                ),
            },
        ]);
    }
    if let Some(events) = value.get("events").and_then(Value::as_array) {
        return filter_log_events_payloads(events, source);
    }
    if let Some(wrapped) = failure_queue_wrapper(value) {
        if depth >= MAX_WRAPPER_DEPTH {
            return Ok(vec![quarantine_value(
                &format!(
                    "failure-queue records nested deeper than {MAX_WRAPPER_DEPTH} levels; \
                     not a shape the Lambda on-failure destination or `aws sqs` writes"
                ),
                value,
            )]);
        }
        let mut decoded = Vec::new();
        for inner in wrapped {
            match inner {
                Ok(inner) => decoded.extend(decode_json_value(
                    &inner,
                    source,
                    max_inflated_bytes,
                    depth + 1,
                )?),
                Err(item) => decoded.push(Decoded::Quarantined(*item)),
            }
        }
        return Ok(decoded);
    }
    Ok(decode_event(value, max_inflated_bytes).into_decoded())
}

/// What the failure queue holds, unwrapped one level, so that an operator can replay it
/// with `hsm-audit ingest` (idempotently: the original event comes out unchanged):
///
/// - a JSON array of any accepted documents (several records saved together);
/// - `aws sqs receive-message` output, `{"Messages": [{"Body": "...", ...}]}`, or one
///   such message: each body is JSON text;
/// - the record the Lambda on-failure destination sends for an asynchronous invocation,
///   `{"requestContext": ..., "requestPayload": <the original event>, ...}`.
///
/// `None` when `value` is none of these; each element is the inner JSON, or the
/// quarantine item of an element that is not JSON.
fn failure_queue_wrapper(value: &Value) -> Option<Vec<Result<Value, Box<Quarantined>>>> {
    if let Some(elements) = value.as_array() {
        return Some(elements.iter().cloned().map(Ok).collect());
    }
    if let Some(messages) = value.get("Messages").and_then(Value::as_array) {
        return Some(messages.iter().map(sqs_message_body).collect());
    }
    if value.get("Body").is_some() && value.get("MessageId").is_some() {
        return Some(vec![sqs_message_body(value)]);
    }
    let destination_record =
        value.get("requestContext").is_some() || value.get("responseContext").is_some();
    if destination_record && let Some(payload) = value.get("requestPayload") {
        return Some(vec![Ok(payload.clone())]);
    }
    None
}

/// An SQS message's body, parsed; a body that is not JSON is quarantined under the
/// message's id, which finds it in the queue while it is retained.
fn sqs_message_body(message: &Value) -> Result<Value, Box<Quarantined>> {
    let id = message
        .get("MessageId")
        .and_then(Value::as_str)
        .unwrap_or("without an id");
    match message.get("Body") {
        Some(Value::String(body)) => serde_json::from_str(body).map_err(|error| {
            Box::new(Quarantined::new(
                format!("SQS message {id}: body is not JSON: {error}"),
                body.as_bytes(),
            ))
        }),
        Some(other) => Err(Box::new(Quarantined::new(
            format!("SQS message {id}: Body is not a string"),
            other.to_string().as_bytes(),
        ))),
        None => Err(Box::new(Quarantined::new(
            format!("SQS message {id}: no Body"),
            message.to_string().as_bytes(),
        ))),
    }
}

/// `aws logs filter-log-events` output: events of several streams, without the group.
fn filter_log_events_payloads(
    events: &[Value],
    source: &RawTextSource,
) -> Result<Vec<Decoded>, String> {
    let log_group = source.log_group.clone().ok_or(
        "`aws logs filter-log-events` output does not name its log group: pass --log-group",
    )?;
    let mut payloads: Vec<LogsPayload> = Vec::new();
    let mut decoded = Vec::new();
    for event in events {
        let fields = (
            event.get("logStreamName").and_then(Value::as_str),
            event.get("eventId").and_then(Value::as_str),
            event.get("timestamp").and_then(Value::as_i64),
            event.get("message").and_then(Value::as_str),
        );
        let (Some(stream), Some(id), Some(timestamp), Some(message)) = fields else {
            decoded.push(quarantine_value(
                "filter-log-events entry lacks logStreamName, eventId, timestamp or message",
                event,
            ));
            continue;
        };
        let log_event = LogEvent {
            id: id.to_owned(),
            timestamp,
            message: message.to_owned(),
        };
        match payloads
            .iter_mut()
            .find(|payload| payload.log_stream == stream)
        {
            Some(payload) => payload.log_events.push(log_event),
            None => payloads.push(data_message(&log_group, stream, vec![log_event])),
        }
    }
    decoded.extend(payloads.into_iter().map(Decoded::Payload));
    Ok(decoded)
}

fn data_message(log_group: &str, log_stream: &str, log_events: Vec<LogEvent>) -> LogsPayload {
    LogsPayload {
        message_type: MessageType::DataMessage,
        owner: String::new(),
        log_group: log_group.to_owned(),
        log_stream: log_stream.to_owned(),
        subscription_filters: Vec::new(),
        log_events,
        undecodable: Vec::new(),
    }
}

/// Raw audit text, as copied from the console or a log export: one payload for the
/// stream named on the command line. Event ids name the file and the record's position,
/// so ingesting the same file again is recognised as re-delivery.
fn raw_text_payload(text: &str, name: &str, source: &RawTextSource) -> Result<LogsPayload, String> {
    let (Some(log_group), Some(log_stream)) = (&source.log_group, &source.log_stream) else {
        return Err(format!(
            "{name}: raw audit text does not say its cluster and HSM: pass --log-group and --log-stream"
        ));
    };
    let log_events = split_raw_text(text)
        .into_iter()
        .enumerate()
        .map(|(index, record)| LogEvent {
            id: format!("{name}#{index}"),
            timestamp: record_millis(record).unwrap_or_default(),
            message: record.to_owned(),
        })
        .collect();
    Ok(data_message(log_group, log_stream, log_events))
}

fn record_millis(record: &str) -> Option<i64> {
    let after = &record[record.find("usecs:")? + "usecs:".len()..];
    let digits: &str = after
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?;
    digits.parse::<i64>().ok().map(|micros| micros / 1000)
}

/// Splits text holding several audit records: each starts at a line beginning `Time:`.
pub fn split_raw_text(text: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("Time:") {
            starts.push(offset + (line.len() - line.trim_start().len()));
        }
        offset += line.len();
    }
    let mut records = Vec::with_capacity(starts.len());
    for (index, start) in starts.iter().enumerate() {
        let end = starts.get(index + 1).copied().unwrap_or(text.len());
        let record = text[*start..end].trim_end();
        if !record.is_empty() {
            records.push(record);
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, awslogs_event, gzip, receive_message_output};

    const RECORD: &str =
        "Time: 01/16/18 01:48:49.824999, usecs:1516067329824999\nSequence No : 0x0\n";

    #[test]
    fn a_lambda_event_without_awslogs_is_quarantined_whole() {
        let delivery = decode_event(&serde_json::json!({"hello": "world"}), 1024);
        let Delivery::Unrecognised(item) = &delivery else {
            panic!("{delivery:?}")
        };
        assert!(item.reason.contains("no awslogs.data"));
        assert!(item.raw.contains("hello"));
    }

    #[test]
    fn undecodable_data_is_quarantined_with_the_data() {
        let event = serde_json::json!({"awslogs": {"data": "bm90IGd6aXA="}});
        let delivery = decode_event(&event, 1024);
        let Delivery::Subscription(decoded) = &delivery else {
            panic!("{delivery:?}")
        };
        let [Decoded::Quarantined(item)] = decoded.as_slice() else {
            panic!("{decoded:?}")
        };
        assert!(item.reason.contains("not gzip"), "{}", item.reason);
        assert_eq!(item.raw, "bm90IGd6aXA=");
    }

    #[test]
    fn raw_text_splits_at_each_time_line() {
        let text = format!("\n{RECORD}{RECORD}  Time: x usecs:2000\nflat\n");
        let records = split_raw_text(&text);
        assert_eq!(records.len(), 3);
        assert!(records[2].starts_with("Time: x"));
        assert_eq!(record_millis(records[0]), Some(1516067329824));
    }

    #[test]
    fn raw_text_needs_its_group_and_stream() {
        let error = decode_document(RECORD.as_bytes(), "f.txt", &RawTextSource::default(), 1024)
            .unwrap_err();
        assert!(error.contains("--log-group"));
        let source = RawTextSource {
            log_group: Some("/aws/cloudhsm/c".into()),
            log_stream: Some("hsm-1".into()),
        };
        let decoded = decode_document(RECORD.as_bytes(), "f.txt", &source, 1024).unwrap();
        let [Decoded::Payload(payload)] = decoded.as_slice() else {
            panic!("{decoded:?}")
        };
        assert_eq!(payload.log_events[0].id, "f.txt#0");
    }

    #[test]
    fn filter_log_events_output_is_grouped_by_stream() {
        let output = serde_json::json!({"events": [
            {"logStreamName": "hsm-1", "eventId": "1", "timestamp": 1, "message": "a"},
            {"logStreamName": "hsm-2", "eventId": "2", "timestamp": 2, "message": "b"},
            {"logStreamName": "hsm-1", "eventId": "3", "timestamp": 3, "message": "c"},
            {"eventId": "4"}
        ]});
        let source = RawTextSource {
            log_group: Some("g".into()),
            log_stream: None,
        };
        let decoded = decode_document(output.to_string().as_bytes(), "f", &source, 1024).unwrap();
        assert_eq!(decoded.len(), 3, "{decoded:?}");
        assert!(matches!(&decoded[0], Decoded::Quarantined(_)));
        let Decoded::Payload(first) = &decoded[1] else {
            panic!()
        };
        assert_eq!(first.log_events.len(), 2);
    }

    #[test]
    fn a_gzipped_payload_file_is_read_directly() {
        let json =
            r#"{"messageType":"DATA_MESSAGE","logGroup":"g","logStream":"s","logEvents":[]}"#;
        let decoded =
            decode_document(&gzip(json.as_bytes()), "f", &RawTextSource::default(), 1024).unwrap();
        assert!(matches!(decoded.as_slice(), [Decoded::Payload(_)]));
        let event = awslogs_event(json.as_bytes());
        let decoded = decode_document(
            event.to_string().as_bytes(),
            "f",
            &RawTextSource::default(),
            1024,
        )
        .unwrap();
        assert!(matches!(decoded.as_slice(), [Decoded::Payload(_)]));
    }

    fn subscription_event(stream: &str) -> Value {
        testkit::subscription_event("/aws/cloudhsm/c", stream, 1, &["m"])
    }

    fn destination_record(event: &Value) -> Value {
        testkit::destination_record(event, "DynamoDB BatchWriteItem failed: throttled")
    }

    fn decode(value: &Value) -> Vec<Decoded> {
        decode_document(
            value.to_string().as_bytes(),
            "dlq.json",
            &RawTextSource::default(),
            1 << 20,
        )
        .unwrap()
    }

    #[test]
    fn a_failure_destination_record_replays_its_original_event() {
        let event = subscription_event("hsm-1");
        let direct = decode(&event);
        assert!(matches!(direct.as_slice(), [Decoded::Payload(_)]));
        assert_eq!(decode(&destination_record(&event)), direct);
    }

    #[test]
    fn receive_message_output_and_arrays_of_records_replay_every_event() {
        let (one, two) = (subscription_event("hsm-1"), subscription_event("hsm-2"));
        let mut direct = decode(&one);
        direct.extend(decode(&two));
        let bodies = [
            destination_record(&one).to_string(),
            destination_record(&two).to_string(),
        ];
        assert_eq!(decode(&receive_message_output(&bodies)), direct);
        let array = serde_json::json!([destination_record(&one), destination_record(&two)]);
        assert_eq!(decode(&array), direct);
        let single = &receive_message_output(&bodies[..1])["Messages"][0];
        assert_eq!(decode(single), decode(&one));
        let outputs = serde_json::json!([
            receive_message_output(&bodies[..1]),
            receive_message_output(&bodies[1..])
        ]);
        assert_eq!(decode(&outputs), direct);
    }

    #[test]
    fn a_body_that_is_not_json_is_quarantined_under_its_message_id() {
        let good = destination_record(&subscription_event("hsm-1")).to_string();
        let output = receive_message_output(&[good, "not json".to_owned()]);
        let decoded = decode(&output);
        let [Decoded::Payload(_), Decoded::Quarantined(item)] = decoded.as_slice() else {
            panic!("{decoded:?}")
        };
        assert!(
            item.reason.contains("SQS message 00000001-"),
            "{}",
            item.reason
        );
        assert!(item.reason.contains("not JSON"), "{}", item.reason);
        assert_eq!(item.raw, "not json");
    }

    #[test]
    fn a_destination_record_of_a_bad_event_is_quarantined_like_the_event() {
        let record = destination_record(&serde_json::json!({"awslogs": {"data": "bm90IGd6aXA="}}));
        let decoded = decode(&record);
        let [Decoded::Quarantined(item)] = decoded.as_slice() else {
            panic!("quarantined")
        };
        assert!(item.reason.contains("not gzip"), "{}", item.reason);
        let record = destination_record(&serde_json::json!({"hello": "world"}));
        let decoded = decode(&record);
        let [Decoded::Quarantined(item)] = decoded.as_slice() else {
            panic!("quarantined")
        };
        assert!(
            item.reason.contains("unrecognised event"),
            "{}",
            item.reason
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut value = destination_record(&subscription_event("hsm-1"));
        for _ in 0..MAX_WRAPPER_DEPTH {
            value = serde_json::json!([value]);
        }
        let decoded = decode(&value);
        let [Decoded::Quarantined(item)] = decoded.as_slice() else {
            panic!("quarantined")
        };
        assert!(item.reason.contains("nested deeper"), "{}", item.reason);
        let mut value = destination_record(&subscription_event("hsm-1"));
        for _ in 0..MAX_WRAPPER_DEPTH - 1 {
            value = serde_json::json!([value]);
        }
        assert!(matches!(decode(&value).as_slice(), [Decoded::Payload(_)]));
    }
}
