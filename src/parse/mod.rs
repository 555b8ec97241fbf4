//! Audit record parsers: a log event's message in, a typed [`AuditRecord`] out.
//!
//! One log group can hold several kinds of record (CloudHSM text blocks in the HSM
//! streams, certificate-storage JSON in the stream named for the cluster, Thales Luna
//! JSON forwarded by a team running both vendors), so the parser is chosen per message,
//! by a cheap look at it, never by the stream's name alone.

mod certificate;
mod cloudhsm;
mod luna;

pub use certificate::{
    CertificateParseError, looks_like_certificate_record, parse_certificate_record,
};
use cloudhsm::begins_like_cloudhsm_record;
pub use cloudhsm::{ParseError, looks_like_cloudhsm_record, parse_cloudhsm_record};
pub use luna::{LunaParseError, looks_like_luna_record, luna_record_from_value, parse_luna_record};

use crate::model::AuditRecord;

/// Why a log event's message is not an audit record: the reason it is quarantined for.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("unparseable CloudHSM audit record")]
    CloudHsm(#[source] ParseError),
    #[error(transparent)]
    Luna(LunaParseError),
    #[error(transparent)]
    Certificate(CertificateParseError),
    #[error(
        "not an audit record: neither a CloudHSM audit record, a certificate-storage record nor a Luna record"
    )]
    NotARecord,
}

/// Parses one log event's message.
pub fn parse_message(message: &str) -> Result<AuditRecord, RecordError> {
    // Parsed before the whole of `looks_like_cloudhsm_record` is asked: a record that
    // parses has a `Sequence No`, so the search for it is left to the failures.
    if begins_like_cloudhsm_record(message) {
        match parse_cloudhsm_record(message) {
            Ok(record) => return Ok(AuditRecord::CloudHsm(record)),
            Err(error) if looks_like_cloudhsm_record(message) => {
                return Err(RecordError::CloudHsm(error));
            }
            Err(_) => {}
        }
    }
    if looks_like_luna_record(message) {
        match parse_luna_record(message) {
            Ok(record) => Ok(AuditRecord::Luna(record)),
            // `"LUNA_` may appear inside another JSON record (an attribute value).
            Err(_) if looks_like_certificate_record(message) => parse_certificate_record(message)
                .map(AuditRecord::Certificate)
                .map_err(RecordError::Certificate),
            Err(error) => Err(RecordError::Luna(error)),
        }
    } else if looks_like_certificate_record(message) {
        parse_certificate_record(message)
            .map(AuditRecord::Certificate)
            .map_err(RecordError::Certificate)
    } else {
        Err(RecordError::NotARecord)
    }
}
