//! Certificate-storage audit records: one JSON object a message, written by Client SDK
//! 5's PKCS #11 certificate storage into the log stream named for the cluster.
//!
//! `object_handle` is a 64-bit integer that often exceeds 2^53, so it is read as an
//! integer by serde_json (exact), never through a float.

use serde::Deserialize;

use crate::model::{CertificateRecord, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a certificate-storage audit record: {0}")]
pub struct CertificateParseError(String);

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    object_handle: Option<u64>,
    op_code: String,
    response: String,
    #[serde(default)]
    attributes: Option<Vec<String>>,
    timestamp: i64,
}

/// Cheap test used to pick the parser for a message.
pub fn looks_like_certificate_record(text: &str) -> bool {
    text.trim_start().starts_with('{') && text.contains("\"op_code\"")
}

pub fn parse_certificate_record(text: &str) -> Result<CertificateRecord, CertificateParseError> {
    let wire: Wire = serde_json::from_str(text.trim())
        .map_err(|error| CertificateParseError(error.to_string()))?;
    if wire.op_code.is_empty() {
        return Err(CertificateParseError("field `op_code` is empty".to_owned()));
    }
    Ok(CertificateRecord {
        time: Timestamp::from_millis(wire.timestamp),
        object_handle: wire.object_handle,
        op_code: wire.op_code,
        response: wire.response,
        attributes: wire.attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendor_examples_parse_exactly() {
        let record = parse_certificate_record(
            r#"{"object_handle": 463180677312929947, "op_code": "CreateObject", "response": "OK", "attributes": null, "timestamp": 1725482483671}"#,
        )
        .unwrap();
        assert_eq!(record.object_handle, Some(463180677312929947));
        assert_eq!(record.time.iso(), "2024-09-04T20:41:23.671000Z");
        assert!(record.succeeded());
        let record = parse_certificate_record(
            r#"{"object_handle": 463180678453346687, "op_code": "SetAttributeValues", "response": "OK", "attributes": ["Label"], "timestamp": 1725482488004}"#,
        )
        .unwrap();
        assert_eq!(record.attributes, Some(vec!["Label".to_owned()]));
        let record = parse_certificate_record(
            r#"{"object_handle": null, "op_code": "CreateObject", "response": "MaxObjectsReached", "attributes": null, "timestamp": 1726084937125}"#,
        )
        .unwrap();
        assert_eq!(record.object_handle, None);
        assert!(!record.succeeded());
    }

    #[test]
    fn the_largest_handle_is_exact() {
        let text = format!(
            r#"{{"object_handle": {}, "op_code": "DestroyObject", "response": "OK", "timestamp": 1}}"#,
            u64::MAX
        );
        assert_eq!(
            parse_certificate_record(&text).unwrap().object_handle,
            Some(u64::MAX)
        );
        let beyond = r#"{"object_handle": 18446744073709551616, "op_code": "DestroyObject", "response": "OK", "timestamp": 1}"#;
        assert!(
            parse_certificate_record(beyond).is_err(),
            "a handle beyond 64 bits is refused, not rounded"
        );
        let float = r#"{"object_handle": 4.6e17, "op_code": "DestroyObject", "response": "OK", "timestamp": 1}"#;
        assert!(
            parse_certificate_record(float).is_err(),
            "a float is not a handle"
        );
    }

    #[test]
    fn other_json_is_refused_with_the_reason() {
        let error = parse_certificate_record(r#"{"op_code": "CreateObject"}"#).unwrap_err();
        assert!(error.to_string().contains("response"), "{error}");
        assert!(!looks_like_certificate_record("Time: 01/01/18"));
    }
}
