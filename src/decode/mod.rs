//! From what arrives (a Lambda event, a file) to CloudWatch Logs payloads: base64,
//! capped gunzip, JSON. Nothing here fails a whole batch: what cannot be decoded becomes
//! a [`Quarantined`] item with its reason, beside the payloads that could.

mod awslogs;
mod input;
mod kinesis;
mod luna_files;
mod payload;
mod payload_json;
mod quarantine;

pub use awslogs::{DecodeError, decode_awslogs_data, inflate_capped};
pub use input::{Decoded, Delivery, RawTextSource, decode_document, decode_event, split_raw_text};
pub use kinesis::StreamRecord;
pub use luna_files::{decode_luna_file, looks_like_luna_file};
pub use payload::{LogEvent, LogsPayload, MessageType, UndecodableEvent};
pub use quarantine::Quarantined;
