//! [`AuditStore`](super::AuditStore) on DynamoDB, and the layout of its items.

mod attributes;
mod batch;
pub mod items;
mod lease;
mod outbox;
mod queries;
mod request;
pub mod retries;
mod store;
mod table;

pub use lease::{DEFAULT_TTL as DEFAULT_LEASE_TTL, LeaseKeeper, waiting_until};
pub(crate) use request::{request_error, request_failed};
pub use store::{DynamoStore, RequestCounts, connect};
pub use table::{TableSchema, TableSetup, create_table};
