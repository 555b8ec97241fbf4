//! Counts the DynamoDB SDK's own retries (throttling, 5xx, timeouts), which happen inside
//! one SDK call and are otherwise invisible: a rising count is the early sign of an
//! under-provisioned or failing table, before invocations start to fail.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    InterceptorContext,
};
use aws_sdk_dynamodb::config::retry::{ClassifyRetry, RetryAction};
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

/// Whether an endpoint URL (`http://127.0.0.1:8000`, `http://localhost:8000`) names this
/// machine.
pub fn is_loopback(url: &str) -> bool {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = authority.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// No retry of a connection that a local endpoint refused: nothing listens there, and
/// the standard strategy's backoffs would hold the answer for some twenty seconds. A
/// remote endpoint keeps its retries (a refusal there can be one node's restart).
#[derive(Debug)]
pub struct LocalRefusal;

impl ClassifyRetry for LocalRefusal {
    fn classify_retry(&self, context: &InterceptorContext) -> RetryAction {
        let Some(Err(error)) = context.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> =
            error.as_connector_error().map(|error| error as _);
        while let Some(current) = cause {
            if current
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
            {
                return RetryAction::RetryForbidden;
            }
            cause = current.source();
        }
        RetryAction::NoActionIndicated
    }

    fn name(&self) -> &'static str {
        "hsm-audit-local-refusal"
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_endpoints_are_told_from_remote_ones() {
        for local in [
            "http://127.0.0.1:8000",
            "http://localhost:4566/",
            "http://[::1]:8000",
            "http://127.0.0.2",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in [
            "https://dynamodb.us-east-1.amazonaws.com",
            "http://10.0.0.1:8000",
            "http://localhost.example.com:8000",
        ] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }
}
