//! The integration tests, as one test binary: each module links the whole AWS SDK, and
//! one link instead of twelve keeps the suite's build time and disk use small.
//! `tests/memory_bounds.rs` stays a binary of its own: its counting global allocator
//! must see no other test's allocations.

mod common;

mod backfill;
mod certificates;
mod cli;
mod concurrency;
mod console_queries;
mod domain_scenarios;
mod fault_injection;
mod fuzz_decode;
mod hostile_input;
mod import_cycles;
mod incremental;
mod kinesis;
mod later_layout;
mod lease;
mod luna;
mod ocsf_export;
mod order_independence;
mod parse_corpus;
mod publish;
mod report;
mod runbook;
mod seed_examples;
mod tamper;
mod trail_dynamodb;
mod windows;
