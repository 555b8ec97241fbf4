//! Errors flattened at the edges — the CLI's message, the Lambda's error response, log
//! lines — and only there: inside, every error keeps its type and its causes.

use std::error::Error;

use crate::store::RequestFailed;

/// An error and its causes on one line, `: `-separated, each cause once (an error that
/// already shows its cause is not followed by it again). A failed request ends the line:
/// below it lies the SDK's whole report ([`sdk_report`]).
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut current = error;
    while !current.is::<RequestFailed>()
        && let Some(cause) = current.source()
    {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        current = cause;
    }
    line.replace('\n', " ")
}

/// The SDK's whole report of the failed request behind `error`, if one is.
pub fn sdk_report(error: &(dyn Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(failed) = error.downcast_ref::<RequestFailed>() {
            return Some(failed.report());
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[derive(Debug, thiserror::Error)]
    #[error("the SDK's own wording")]
    struct SdkError;

    #[test]
    fn each_cause_shows_once_and_the_request_ends_the_line() {
        let error = StoreError::Request {
            operation: "PutItem",
            source: RequestFailed {
                summary: "ThrottlingException: slow down".into(),
                source: Box::new(SdkError),
            },
        };
        assert_eq!(
            one_line(&error),
            "DynamoDB PutItem failed: ThrottlingException: slow down"
        );
        assert!(sdk_report(&error).is_some_and(|report| report.contains("the SDK's own wording")));
        let corrupt = StoreError::Corrupt {
            key: "k".into(),
            source: "no carry".into(),
        };
        assert_eq!(
            one_line(&corrupt),
            "stored item k is not readable: no carry"
        );
        assert!(!corrupt.is_retryable());
        assert_eq!(sdk_report(&corrupt), None);
    }
}
