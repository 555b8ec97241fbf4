//! Counts the DynamoDB SDK's own retries (throttling, 5xx, timeouts), which happen inside
//! one SDK call and are otherwise invisible: a rising count is the early sign of an
//! under-provisioned or failing table, before invocations start to fail.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

// Process-wide: a Lambda process serves one invocation at a time, so the difference of
// two readings around an invocation is that invocation's retries.
static OPERATIONS: AtomicU64 = AtomicU64::new(0);
static ATTEMPTS: AtomicU64 = AtomicU64::new(0);

/// Retries made by the SDK so far in this process: attempts beyond the first of each call.
pub fn sdk_retries() -> u64 {
    let operations = OPERATIONS.load(Ordering::Relaxed);
    ATTEMPTS.load(Ordering::Relaxed).saturating_sub(operations)
}

#[derive(Debug, Default)]
pub struct RetryCounter;

impl Intercept for RetryCounter {
    fn name(&self) -> &'static str {
        "hsm-audit-retry-counter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        OPERATIONS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
