//! Record-stream deliveries of a CloudWatch Logs subscription: a Kinesis Data Streams
//! event (the subscription targets a stream, Lambda reads it) and a Firehose
//! data-transformation event. Each record's data is the same `base64(gzip(json))` as
//! `awslogs.data`, so it decodes the same way; what differs is that the response must
//! name records, which is why each record keeps its identifier and original data.

use serde_json::Value;

use super::{Decoded, Quarantined, decode_awslogs_data};

/// How a Lambda event delivers subscription payloads, told apart by shape alone: the
/// same function serves a direct subscription, a Kinesis stream and Firehose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventShape {
    Subscription,
    Kinesis,
    Firehose,
    Unknown,
}

pub(super) fn event_shape(event: &Value) -> EventShape {
    if event.pointer("/awslogs/data").is_some() {
        return EventShape::Subscription;
    }
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        // An empty batch does not occur in practice; treating it as Kinesis answers it
        // with an empty (all-successful) `batchItemFailures`.
        let kinesis = records.iter().all(|record| {
            record.get("kinesis").is_some()
                || record.get("eventSource").and_then(Value::as_str) == Some("aws:kinesis")
        });
        if kinesis {
            return EventShape::Kinesis;
        }
    }
    if event.get("records").is_some_and(Value::is_array)
        && (event.get("deliveryStreamArn").is_some() || event.get("invocationId").is_some())
    {
        return EventShape::Firehose;
    }
    EventShape::Unknown
}

/// One record of a Kinesis or Firehose event, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Kinesis `sequenceNumber` or Firehose `recordId`: what the response names.
    pub id: Option<String>,
    /// The record's data as received, which Firehose expects back unchanged.
    pub data: Option<String>,
    pub decoded: Vec<Decoded>,
}

impl StreamRecord {
    /// The record's data itself could not be decoded (not base64, not gzip, not a
    /// subscription payload): it was quarantined whole, not event by event.
    pub fn is_undecodable(&self) -> bool {
        self.decoded
            .iter()
            .any(|unit| matches!(unit, Decoded::Quarantined(_)))
    }
}

/// The records of a Kinesis Data Streams event, in delivery (shard) order.
pub(super) fn kinesis_records(event: &Value, max_inflated_bytes: usize) -> Vec<StreamRecord> {
    records_of(event, "Records", "Kinesis", max_inflated_bytes, |record| {
        (
            record
                .pointer("/kinesis/sequenceNumber")
                .and_then(Value::as_str),
            record.pointer("/kinesis/data"),
        )
    })
}

/// The records of a Firehose data-transformation event.
pub(super) fn firehose_records(event: &Value, max_inflated_bytes: usize) -> Vec<StreamRecord> {
    records_of(event, "records", "Firehose", max_inflated_bytes, |record| {
        (
            record.get("recordId").and_then(Value::as_str),
            record.get("data"),
        )
    })
}

fn records_of<'a>(
    event: &'a Value,
    member: &str,
    source: &str,
    max_inflated_bytes: usize,
    fields: impl Fn(&'a Value) -> (Option<&'a str>, Option<&'a Value>),
) -> Vec<StreamRecord> {
    let records = event
        .get(member)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    records
        .iter()
        .map(|record| {
            let (id, data) = fields(record);
            let label = id.unwrap_or("without an id");
            let decoded = match data.map(|data| (data, data.as_str())) {
                Some((_, Some(text))) => match decode_awslogs_data(text, max_inflated_bytes) {
                    Ok(payload) => Decoded::Payload(payload),
                    // The record's id goes into the reason: it finds the record in the
                    // stream (or the Firehose backup) while it is retained.
                    Err(error) => Decoded::Quarantined(Quarantined::new(
                        format!("{source} record {label}: {error}"),
                        text.as_bytes(),
                    )),
                },
                Some((value, None)) => Decoded::Quarantined(Quarantined::new(
                    format!("{source} record {label}: data is not a string"),
                    value.to_string().as_bytes(),
                )),
                None => Decoded::Quarantined(Quarantined::new(
                    format!("{source} record {label}: no data"),
                    record.to_string().as_bytes(),
                )),
            };
            StreamRecord {
                id: id.map(str::to_owned),
                data: data.and_then(Value::as_str).map(str::to_owned),
                decoded: vec![decoded],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testkit::{b64, gzip};

    fn data() -> String {
        let json = r#"{"messageType":"DATA_MESSAGE","logGroup":"/aws/cloudhsm/c","logStream":"hsm-1","logEvents":[]}"#;
        b64(&gzip(json.as_bytes()))
    }

    #[test]
    fn shapes_are_told_apart() {
        assert_eq!(
            event_shape(&json!({"awslogs": {"data": "x"}})),
            EventShape::Subscription
        );
        let kinesis = json!({"Records": [{"kinesis": {"data": data(), "sequenceNumber": "1"}, "eventSource": "aws:kinesis"}]});
        assert_eq!(event_shape(&kinesis), EventShape::Kinesis);
        let firehose = json!({"invocationId": "i", "deliveryStreamArn": "arn", "records": [{"recordId": "r", "data": data()}]});
        assert_eq!(event_shape(&firehose), EventShape::Firehose);
        let sqs = json!({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]});
        assert_eq!(event_shape(&sqs), EventShape::Unknown);
    }

    #[test]
    fn each_record_keeps_its_id_and_data_and_bad_ones_are_quarantined() {
        let event = json!({"Records": [
            {"kinesis": {"data": data(), "sequenceNumber": "1"}},
            {"kinesis": {"data": "bm90IGd6aXA=", "sequenceNumber": "2"}},
            {"kinesis": {"sequenceNumber": "3"}},
        ]});
        let records = kinesis_records(&event, 1024);
        assert_eq!(records.len(), 3);
        assert!(matches!(
            records[0].decoded.as_slice(),
            [Decoded::Payload(_)]
        ));
        assert_eq!(records[1].id.as_deref(), Some("2"));
        assert_eq!(records[1].data.as_deref(), Some("bm90IGd6aXA="));
        let [Decoded::Quarantined(item)] = records[1].decoded.as_slice() else {
            panic!("{records:?}")
        };
        assert!(item.reason.contains("Kinesis record 2"), "{}", item.reason);
        assert!(item.reason.contains("not gzip"), "{}", item.reason);
        let [Decoded::Quarantined(item)] = records[2].decoded.as_slice() else {
            panic!("{records:?}")
        };
        assert!(item.reason.contains("no data"), "{}", item.reason);
    }

    #[test]
    fn firehose_records_are_read_by_record_id() {
        let event = json!({"invocationId": "i", "records": [{"recordId": "r1", "data": data()}]});
        let records = firehose_records(&event, 1024);
        assert_eq!(records[0].id.as_deref(), Some("r1"));
        assert_eq!(records[0].data, Some(data()));
        assert!(matches!(
            records[0].decoded.as_slice(),
            [Decoded::Payload(_)]
        ));
    }
}
