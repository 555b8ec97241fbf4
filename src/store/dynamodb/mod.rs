//! [`AuditStore`](super::AuditStore) on DynamoDB.

mod batch;
mod queries;
pub mod retries;
mod store;
mod table;

pub use store::{DynamoStore, RequestCounts, WriteCost, connect};
pub use table::{TableSchema, TableSetup, create_table};
