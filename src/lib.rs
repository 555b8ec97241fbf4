//! hsm-audit: CloudHSM audit logs, delivered by a CloudWatch Logs subscription, turned
//! into a queryable compliance trail.
//!
//! The flow shows in the modules: [`decode`] (subscription payloads, capped inflation)
//! → [`parse`] (audit records) → [`domain`] (sessions, key lifecycles, failed logins,
//! alerts; pure) → [`store`] (the trail and the derived views). [`pipeline`] ties them
//! together for both the Lambda handler and the CLI. Every write of new records seals a
//! [`digest`] into a chain that [`verify`] checks the stored trail against. [`report`]
//! turns the views into the document an auditor is handed.

pub mod alerts;
pub mod cli;
pub mod config;
pub mod decode;
pub mod digest;
pub mod domain;
pub mod errors;
pub mod incremental;
pub mod keys;
pub mod lambda;
pub mod metrics;
pub mod model;
pub mod ocsf;
pub mod parse;
pub mod pipeline;
pub mod publish;
pub mod report;
pub mod store;
mod swar;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod verify;

/// The allocator the Lambda and the CLI install, and the benches too, so that they
/// measure what runs: mimalloc rather than the system's. A record costs a few small
/// allocations to parse and many more to derive, and glibc's allocator spent a fifth of
/// the parse path and more of the derivation on them (`docs/performance.md` has the
/// measurements and the artifact sizes).
pub use mimalloc::MiMalloc as Allocator;
