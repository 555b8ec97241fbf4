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
pub use cloudhsm::{ParseError, looks_like_cloudhsm_record, parse_cloudhsm_record};
pub use luna::{LunaParseError, looks_like_luna_record, luna_record_from_value, parse_luna_record};

use crate::model::AuditRecord;

/// Parses one log event's message; the error is the reason to quarantine it.
pub fn parse_message(message: &str) -> Result<AuditRecord, String> {
    if looks_like_cloudhsm_record(message) {
        parse_cloudhsm_record(message)
            .map(AuditRecord::CloudHsm)
            .map_err(|error| format!("unparseable CloudHSM audit record: {error}"))
    } else if looks_like_luna_record(message) {
        match parse_luna_record(message) {
            Ok(record) => Ok(AuditRecord::Luna(record)),
            // `"LUNA_` may appear inside another JSON record (an attribute value).
            Err(_) if looks_like_certificate_record(message) => parse_certificate_record(message)
                .map(AuditRecord::Certificate)
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    } else if looks_like_certificate_record(message) {
        parse_certificate_record(message)
            .map(AuditRecord::Certificate)
            .map_err(|error| error.to_string())
    } else {
        Err(
            "not an audit record: neither a CloudHSM audit record, a certificate-storage record nor a Luna record"
                .to_owned(),
        )
    }
}
