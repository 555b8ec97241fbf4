//! The typed values every stage shares: audit records, where they came from, and time.

pub mod bounds;
mod names;
mod opcode;
mod record;
mod time;

pub use names::shared_name;
pub use opcode::Opcode;
pub use record::{
    AuditRecord, CertificateRecord, HsmRecord, LUNA_LOGIN, Labeled, LaterFields, LogSource,
    LunaRecord, RecordIdentity, StreamId, TrailEntry,
};
pub use time::Timestamp;
