//! A failed SDK request as a [`StoreError`]: the one line a person can act on, the SDK's
//! error kept as its source. Shared by every AWS client the store and the CLI call
//! (DynamoDB, KMS, CloudWatch Logs), so it depends on none of them but the error types.

use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};

use crate::store::{RequestFailed, StoreError};

/// A failed request as a [`StoreError::Request`], the SDK's error kept as its source.
pub(crate) fn request_error<E>(operation: &'static str, error: E) -> StoreError
where
    E: RequestFailure + Send + Sync + 'static,
{
    StoreError::Request {
        operation,
        source: request_failed(error),
    }
}

/// The one line a person can act on — the service's error code and message, or the
/// chain of causes when there is no answer — and the error itself.
pub(crate) fn request_failed<E>(error: E) -> RequestFailed
where
    E: RequestFailure + Send + Sync + 'static,
{
    let summary = match error.code_and_message() {
        Some((code, Some(message))) => format!("{code}: {message}"),
        Some((code, None)) => code,
        None => crate::errors::one_line(&error),
    };
    RequestFailed {
        summary,
        source: Box::new(error),
    }
}

/// The errors a request can end in: the service's answer (with an error code), or one
/// that never reached it (a request that could not be built, a timeout, no connection).
pub(crate) trait RequestFailure: std::error::Error {
    /// The service's error code and message, when it answered with an error.
    fn code_and_message(&self) -> Option<(String, Option<String>)>;
}

impl<E, R> RequestFailure for SdkError<E, R>
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    fn code_and_message(&self) -> Option<(String, Option<String>)> {
        self.code()
            .map(|code| (code.to_owned(), self.message().map(str::to_owned)))
    }
}

impl RequestFailure for BuildError {
    fn code_and_message(&self) -> Option<(String, Option<String>)> {
        None
    }
}

/// A failed SDK call as a [`StoreError`]: a `ValidationException` is
/// [`StoreError::Rejected`] (never worth a retry), anything else a retryable request error.
pub(crate) fn sdk_error<E, R>(operation: &'static str, error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if error
        .code_and_message()
        .is_some_and(|(code, _)| code == "ValidationException")
    {
        return StoreError::Rejected {
            operation,
            source: request_failed(error),
        };
    }
    request_error(operation, error)
}
