//! How a command fails: by exit code, with the one line a person acts on.

use crate::store::BoxError;

/// Failures, by exit code. A processing failure keeps its type and causes up to here,
/// where it is printed as its chain of causes on one line, and the SDK's whole report
/// of a failed request only when asked for (`-v`, `RUST_LOG`): one line is what a
/// person acts on.
pub(super) enum Failure {
    Usage(String),
    Processing(BoxError),
    /// `verify` found the trail not as its digests say (the report is printed).
    Unverified,
}

pub(super) fn processing(error: impl Into<BoxError>) -> Failure {
    Failure::Processing(error.into())
}

impl From<crate::store::StoreError> for Failure {
    fn from(error: crate::store::StoreError) -> Self {
        processing(error)
    }
}

/// Standard output could not be written (a closed pipe, a full disk).
pub(super) fn written(error: std::io::Error) -> Failure {
    processing(format!("cannot write the output: {error}"))
}
