//! hsm-audit: CloudHSM audit logs, delivered by a CloudWatch Logs subscription, turned
//! into a queryable compliance trail.
//!
//! The flow shows in the modules: [`decode`] (subscription payloads, capped inflation)
//! → [`parse`] (audit records) → [`domain`] (sessions, key lifecycles, failed logins,
//! alerts; pure) → [`store`] (the trail and the derived views). [`pipeline`] ties them
//! together for both the Lambda handler and the CLI. Every write of new records seals a
//! [`digest`] into a chain that [`verify`] checks the stored trail against. [`report`]
//! turns the views into the document an auditor is handed.

pub mod cli;
pub mod config;
pub mod decode;
pub mod digest;
pub mod domain;
pub mod errors;
pub mod incremental;
pub mod lambda;
pub mod metrics;
pub mod model;
pub mod parse;
pub mod pipeline;
pub mod report;
pub mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod verify;

/// mimalloc rather than the system allocator, for every binary of the crate (the Lambda,
/// the CLI, tests and benches alike, so the benchmark measures what runs): a record costs
/// a few small allocations to parse and many more to derive, and with glibc's allocator
/// those were a fifth of the parse path and more of the derivation (README,
/// "Performance", has both measurements and the artifact sizes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
