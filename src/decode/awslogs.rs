//! The CloudWatch Logs subscription payload: `base64(gzip(json))`.
//!
//! The runtime's own `AwsLogs` deserializer is not used on purpose: it fails the whole
//! invocation on a bad payload (before our code could quarantine it) and inflates
//! without a cap, so a 1 MiB payload could inflate to a GiB inside a 128 MB Lambda.

use std::io::Read;

use base64::Engine;
use flate2::read::MultiGzDecoder;
use serde::Deserialize;

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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageType {
    DataMessage,
    ControlMessage,
    #[serde(other)]
    Unknown,
}

/// The decoded subscription payload, as CloudWatch Logs documents it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsPayload {
    pub message_type: MessageType,
    #[serde(default)]
    pub owner: String,
    pub log_group: String,
    pub log_stream: String,
    #[serde(default)]
    pub subscription_filters: Vec<String>,
    pub log_events: Vec<LogEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEvent {
    pub id: String,
    pub timestamp: i64,
    pub message: String,
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

/// Straight into the typed payload (one pass, no intermediate `Value`); only when that
/// fails is the JSON read again, to tell invalid JSON from JSON of another shape.
fn parse_payload(json: &[u8]) -> Result<LogsPayload, DecodeError> {
    serde_json::from_slice::<LogsPayload>(json).map_err(
        |typed_error| match serde_json::from_slice::<serde::de::IgnoredAny>(json) {
            Ok(_) => DecodeError::NotSubscriptionPayload(typed_error.to_string()),
            Err(syntax_error) => DecodeError::InvalidJson(syntax_error.to_string()),
        },
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};

    use super::*;

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

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
    fn unknown_message_types_are_not_fatal() {
        let json = PAYLOAD.replace("DATA_MESSAGE", "SOMETHING_NEW");
        let payload = decode_awslogs_data(&b64(&gzip(json.as_bytes())), 1 << 20).unwrap();
        assert_eq!(payload.message_type, MessageType::Unknown);
    }
}
