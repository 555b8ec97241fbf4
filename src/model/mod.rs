//! The typed values every stage shares: audit records, where they came from, and time.

pub mod bounds;
mod opcode;
mod record;
mod time;

pub use opcode::Opcode;
pub use record::{
    AuditRecord, CertificateRecord, HsmRecord, Labeled, LaterFields, LunaRecord, RecordIdentity,
    StreamId, TrailEntry,
};
pub use time::Timestamp;
