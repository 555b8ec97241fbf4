//! What tests and benchmarks are built from: audit records and trail entries made field
//! by field, Lambda events and failure-queue records, the generated workload, the
//! ledger of what the DynamoDB store's writes cost, and what the benches measure with. Compiled for the crate's own tests
//! and behind the `testkit` feature, which the integration tests and benches enable
//! through the crate's dev-dependency on itself: the Lambda binary carries none of it.

pub mod bench;
mod events;
mod ledger;
mod records;
pub mod workload;

pub use events::{
    awslogs_event, b64, destination_record, gzip, log_event, payload_body, receive_message_output,
    subscription_event, subscription_payload, unpack,
};
pub use ledger::{WriteCost, WriteLedger};
pub use records::{Builder, INIT_TOKEN_RECORD, hsm_record, login, rec};
