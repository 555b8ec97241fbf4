//! The CloudWatch Logs subscription payload: `base64(gzip(json))`.
//!
//! The runtime's own `AwsLogs` deserializer is not used on purpose: it fails the whole
//! invocation on a bad payload (before our code could quarantine it) and inflates
//! without a cap, so a 1 MiB payload could inflate to a GiB inside a 128 MB Lambda.

use std::io::Read;

use base64::Engine;
use flate2::read::MultiGzDecoder;
use serde::Deserialize;

use super::payload::{LogEvent, LogsPayload, MessageType, UndecodableEvent};

/// Why a payload could not be decoded; each message names the step and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid base64: {0}")]
    InvalidBase64(String),
    #[error("not gzip data: the payload does not start with the gzip magic bytes 1f 8b")]
    NotGzip,
    #[error("truncated or corrupt gzip data: {0}")]
    CorruptGzip(String),
    #[error("inflated payload exceeds the cap of {cap} bytes (MAX_INFLATED_BYTES); refused")]
    TooLarge { cap: usize },
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("JSON is not a CloudWatch Logs subscription payload: {0}")]
    NotSubscriptionPayload(String),
}

/// Decodes the `awslogs.data` string of a subscription event.
pub fn decode_awslogs_data(
    data: &str,
    max_inflated_bytes: usize,
) -> Result<LogsPayload, DecodeError> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(data.trim().as_bytes())
        .map_err(|error| DecodeError::InvalidBase64(error.to_string()))?;
    let inflated = inflate_capped(&compressed, max_inflated_bytes)?;
    parse_payload(&inflated)
}

/// Gunzips `compressed`, streaming, and refuses as soon as the output passes `cap`
/// bytes: the buffer never grows beyond `cap + 1` bytes, whatever the compression ratio.
pub fn inflate_capped(compressed: &[u8], cap: usize) -> Result<Vec<u8>, DecodeError> {
    if !compressed.starts_with(&[0x1f, 0x8b]) {
        return Err(DecodeError::NotGzip);
    }
    let limit = cap.saturating_add(1);
    let mut inflated = Vec::new();
    inflated.reserve_exact(initial_capacity(compressed).min(limit));
    let mut decoder = MultiGzDecoder::new(compressed);
    let mut chunk = vec![0u8; INFLATE_CHUNK.min(limit)];
    loop {
        let read = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(DecodeError::CorruptGzip(error.to_string())),
        };
        if read > cap - inflated.len() {
            return Err(DecodeError::TooLarge { cap });
        }
        let spare = inflated.capacity() - inflated.len();
        if spare < read {
            // `read_to_end` (and `Vec`'s own growth) doubles the capacity, which near the
            // cap would reserve up to twice the cap: a bomb could make a 128 MB Lambda
            // allocate 2 x MAX_INFLATED_BYTES before being refused. Doubling is kept
            // (amortised copies) but never past the cap's budget.
            let budget = limit - inflated.len();
            let wanted = inflated.len().max(read).max(INFLATE_CHUNK);
            inflated.reserve_exact(wanted.min(budget));
        }
        inflated.extend_from_slice(&chunk[..read]);
    }
    Ok(inflated)
}

/// Bytes inflated per read: large enough to keep the decoder's overhead small, small
/// enough to be a rounding error beside the cap.
const INFLATE_CHUNK: usize = 64 * 1024;

/// How much to reserve before inflating: the size the gzip trailer announces (ISIZE, the
/// last member's length mod 2^32), so that an honest payload is inflated into a single
/// allocation. It is only a hint: an attacker controls it, hence the cap on top and the
/// bounded growth when it lies.
fn initial_capacity(compressed: &[u8]) -> usize {
    const GZIP_MINIMUM: usize = 18;
    if compressed.len() < GZIP_MINIMUM {
        return 0;
    }
    let trailer = &compressed[compressed.len() - 4..];
    let announced = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    usize::try_from(announced).unwrap_or(usize::MAX)
}

/// Straight into the typed payload (one pass, no intermediate `Value`): by the one-pass
/// reader of [`super::payload_json`], else by serde_json. Only when that fails is the
/// JSON read again: leniently, in case one event's message is not text (then only that
/// event is set apart), else to tell invalid JSON from JSON of another shape.
pub(crate) fn parse_payload(json: &[u8]) -> Result<LogsPayload, DecodeError> {
    if let Some(payload) = super::payload_json::read_payload(json) {
        return Ok(payload);
    }
    serde_json::from_slice::<LogsPayload>(json).or_else(|typed_error| {
        if let Ok(payload) = serde_json::from_slice::<LenientPayload>(json) {
            return Ok(payload.into_payload());
        }
        Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(json) {
                Ok(_) => DecodeError::NotSubscriptionPayload(typed_error.to_string()),
                Err(syntax_error) => DecodeError::InvalidJson(syntax_error.to_string()),
            },
        )
    })
}

/// The payload with every message read as bytes: serde_json reads a string as bytes
/// without requiring UTF-8, and a lone surrogate escape as its WTF-8 encoding.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LenientPayload {
    message_type: MessageType,
    #[serde(default)]
    owner: String,
    log_group: String,
    log_stream: String,
    #[serde(default)]
    subscription_filters: Vec<String>,
    log_events: Vec<LenientEvent>,
}

#[derive(Deserialize)]
struct LenientEvent {
    id: String,
    timestamp: i64,
    message: MessageBytes,
}

struct MessageBytes(Vec<u8>);

impl<'de> Deserialize<'de> for MessageBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl serde::de::Visitor<'_> for BytesVisitor {
            type Value = MessageBytes;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<MessageBytes, E> {
                Ok(MessageBytes(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(
                self,
                bytes: Vec<u8>,
            ) -> Result<MessageBytes, E> {
                Ok(MessageBytes(bytes))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<MessageBytes, E> {
                Ok(MessageBytes(text.as_bytes().to_vec()))
            }
        }
        deserializer.deserialize_bytes(BytesVisitor)
    }
}

impl LenientPayload {
    fn into_payload(self) -> LogsPayload {
        let mut log_events = Vec::with_capacity(self.log_events.len());
        let mut undecodable = Vec::new();
        for event in self.log_events {
            match String::from_utf8(event.message.0) {
                Ok(message) => log_events.push(LogEvent {
                    id: event.id,
                    timestamp: event.timestamp,
                    message,
                }),
                Err(error) => undecodable.push(UndecodableEvent {
                    id: event.id,
                    timestamp: event.timestamp,
                    reason: not_text_reason(error.utf8_error(), error.as_bytes()),
                    message: error.into_bytes(),
                }),
            }
        }
        LogsPayload {
            message_type: self.message_type,
            owner: self.owner,
            log_group: self.log_group,
            log_stream: self.log_stream,
            subscription_filters: self.subscription_filters,
            log_events,
            undecodable,
        }
    }
}

fn not_text_reason(error: std::str::Utf8Error, bytes: &[u8]) -> String {
    let at = error.valid_up_to();
    // A surrogate code point (U+D800..U+DFFF) encodes as ED A0..BF xx: what an unpaired
    // `\uD800` escape becomes.
    if bytes.get(at) == Some(&0xED) && bytes.get(at + 1).is_some_and(|b| (0xA0..=0xBF).contains(b))
    {
        format!("log event message has a lone UTF-16 surrogate escape at byte {at}: not text")
    } else {
        format!("log event message is not valid UTF-8 (invalid byte at offset {at})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{b64, gzip};

    const PAYLOAD: &str = r#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"/aws/cloudhsm/c","logStream":"hsm-1","subscriptionFilters":["f"],"logEvents":[{"id":"1","timestamp":5,"message":"m"}]}"#;

    #[test]
    fn decodes_a_subscription_payload() {
        let payload = decode_awslogs_data(&b64(&gzip(PAYLOAD.as_bytes())), 1 << 20).unwrap();
        assert_eq!(payload.message_type, MessageType::DataMessage);
        assert_eq!(payload.log_stream, "hsm-1");
        assert_eq!(payload.log_events[0].message, "m");
    }

    #[test]
    fn each_bad_layer_has_its_own_reason() {
        assert!(matches!(
            decode_awslogs_data("%%%", 1024),
            Err(DecodeError::InvalidBase64(_))
        ));
        assert_eq!(
            decode_awslogs_data(&b64(b"plain text"), 1024),
            Err(DecodeError::NotGzip)
        );
        let gz = gzip(PAYLOAD.as_bytes());
        assert!(matches!(
            decode_awslogs_data(&b64(&gz[..gz.len() / 2]), 1 << 20),
            Err(DecodeError::CorruptGzip(_))
        ));
        assert!(matches!(
            decode_awslogs_data(&b64(&gzip(b"{not json")), 1024),
            Err(DecodeError::InvalidJson(_))
        ));
        assert!(matches!(
            decode_awslogs_data(&b64(&gzip(br#"{"hello":1}"#)), 1024),
            Err(DecodeError::NotSubscriptionPayload(_))
        ));
    }

    #[test]
    fn inflation_stops_at_the_cap() {
        let bomb = gzip(&vec![0u8; 4 << 20]);
        assert!(
            bomb.len() < 16 << 10,
            "4 MiB of zeros compresses to a few KiB"
        );
        assert_eq!(
            inflate_capped(&bomb, 1 << 20),
            Err(DecodeError::TooLarge { cap: 1 << 20 })
        );
        assert_eq!(inflate_capped(&bomb, 4 << 20).map(|v| v.len()), Ok(4 << 20));
    }

    #[test]
    fn one_event_that_is_not_text_is_set_apart_and_the_others_decode() {
        let mut json = br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"/aws/cloudhsm/c","logStream":"hsm-1","subscriptionFilters":["f"],"logEvents":[{"id":"1","timestamp":5,"message":"good"},{"id":"2","timestamp":6,"message":"bad "#.to_vec();
        json.extend_from_slice(b"\xff\xfe");
        json.extend_from_slice(br#""},{"id":"3","timestamp":7,"message":"lone \ud800 x"},{"id":"4","timestamp":8,"message":"pair \ud83d\ude00"}]}"#);
        let payload = decode_awslogs_data(&b64(&gzip(&json)), 1 << 20).unwrap();
        let ids: Vec<&str> = payload.log_events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["1", "4"]);
        assert_eq!(payload.log_events[1].message, "pair 😀");
        assert_eq!(payload.undecodable.len(), 2);
        assert_eq!(payload.undecodable[0].id, "2");
        assert_eq!(payload.undecodable[0].message, b"bad \xff\xfe");
        assert!(payload.undecodable[0].reason.contains("not valid UTF-8"));
        assert_eq!(payload.undecodable[1].id, "3");
        assert!(
            payload.undecodable[1]
                .reason
                .contains("lone UTF-16 surrogate")
        );
        assert_eq!(payload.undecodable[1].message, b"lone \xed\xa0\x80 x");
    }

    #[test]
    fn unknown_message_types_are_not_fatal() {
        let json = PAYLOAD.replace("DATA_MESSAGE", "SOMETHING_NEW");
        let payload = decode_awslogs_data(&b64(&gzip(json.as_bytes())), 1 << 20).unwrap();
        assert_eq!(payload.message_type, MessageType::Unknown);
    }
}
