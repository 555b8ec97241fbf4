//! The chain head anchored outside the table.
//!
//! Deleting the newest records *and* their digests leaves a chain that is whole, only
//! shorter: nothing in the table can show it. So, at most every `ANCHOR_INTERVAL_SECONDS`
//! per cluster, a writer publishes the number and hash of the newest digest it wrote as a
//! log event in `ANCHOR_LOG_GROUP` (CloudWatch Logs, a log stream per cluster). A log event
//! cannot be edited, and the function's role may only add events there, so a table writer
//! cannot move an anchor back; `hsm-audit verify --anchors` reads them and names a chain
//! that ends before an anchored number (`truncated`) or holds another digest under it.
//!
//! Who anchors when: the table keeps, per cluster, when the last anchor was published
//! (`STATE#<cluster>` / `ANCHOR`); a writer takes the next slot with a condition on it, so
//! concurrent invocations publish one anchor per interval between them. A failed publish
//! fails no delivery (the records are stored and digested); the next write after the
//! interval publishes again.

use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde::{Deserialize, Serialize};

use super::ChainHead;
use crate::model::Timestamp;

pub const FORMAT: &str = "hsm-audit-anchor/1";

/// By default a cluster's chain head is anchored at most every five minutes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// One published anchor: digest `seq` of `cluster` had body hash `sha256` at `anchored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub format: String,
    pub cluster: String,
    pub seq: u64,
    pub sha256: String,
    pub anchored: Timestamp,
}

impl Anchor {
    pub fn of(cluster: &str, head: &ChainHead, anchored: Timestamp) -> Self {
        Self {
            format: FORMAT.to_owned(),
            cluster: cluster.to_owned(),
            seq: head.seq,
            sha256: head.hash.clone(),
            anchored,
        }
    }
}

/// Where anchors go and how often.
#[derive(Debug, Clone)]
pub struct Anchoring {
    client: Client,
    log_group: String,
    pub interval: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("anchors in log group {log_group}: {message}")]
pub struct AnchorError {
    pub log_group: String,
    pub message: String,
}

/// A cluster's log stream in the anchor group. A cluster id is a log group's name or
/// part of one, which never holds the two characters a stream name may not.
pub fn stream_name(cluster: &str) -> String {
    cluster.replace([':', '*'], "_")
}

impl Anchoring {
    pub fn new(client: Client, log_group: impl Into<String>, interval: Duration) -> Self {
        Self {
            client,
            log_group: log_group.into(),
            interval,
        }
    }

    /// The anchoring `ANCHOR_LOG_GROUP` and `ANCHOR_INTERVAL_SECONDS` ask for, or none.
    pub async fn from_env() -> Result<Option<Self>, crate::config::ConfigError> {
        let Some(log_group) = std::env::var("ANCHOR_LOG_GROUP")
            .ok()
            .map(|group| group.trim().to_owned())
            .filter(|group| !group.is_empty())
        else {
            return Ok(None);
        };
        let interval = interval_from(std::env::var("ANCHOR_INTERVAL_SECONDS").ok())?;
        Ok(Some(Self::new(logs_client().await, log_group, interval)))
    }

    pub fn log_group(&self) -> &str {
        &self.log_group
    }

    fn error(&self, message: impl std::fmt::Display) -> AnchorError {
        AnchorError {
            log_group: self.log_group.clone(),
            message: message.to_string(),
        }
    }

    /// Publishes `anchor` as one log event of its cluster's stream, creating the stream the
    /// first time.
    pub async fn publish(&self, anchor: &Anchor) -> Result<(), AnchorError> {
        let stream = stream_name(&anchor.cluster);
        let message = serde_json::to_string(anchor).map_err(|error| self.error(error))?;
        let event = InputLogEvent::builder()
            .timestamp(anchor.anchored.micros() / 1_000)
            .message(message)
            .build()
            .map_err(|error| self.error(error))?;
        for attempt in 0..2 {
            let sent = self
                .client
                .put_log_events()
                .log_group_name(&self.log_group)
                .log_stream_name(&stream)
                .log_events(event.clone())
                .send()
                .await;
            match sent {
                Ok(_) => return Ok(()),
                Err(error)
                    if attempt == 0
                        && error
                            .as_service_error()
                            .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    self.create_stream(&stream).await?;
                }
                Err(error) => {
                    return Err(self.error(crate::errors::one_line(&error)));
                }
            }
        }
        Err(self.error("the log stream could not be created"))
    }

    async fn create_stream(&self, stream: &str) -> Result<(), AnchorError> {
        match self
            .client
            .create_log_stream()
            .log_group_name(&self.log_group)
            .log_stream_name(stream)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Another invocation created it first.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(self.error(crate::errors::one_line(&error))),
        }
    }

    /// Every anchor published for `cluster`, oldest first. A log event that is not an
    /// anchor of this cluster is passed over: the group is not the table's to vouch for.
    pub async fn read(&self, cluster: &str) -> Result<Vec<Anchor>, AnchorError> {
        let stream = stream_name(cluster);
        let mut anchors = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = match self
                .client
                .filter_log_events()
                .log_group_name(&self.log_group)
                .log_stream_names(&stream)
                .set_next_token(token.take())
                .send()
                .await
            {
                Ok(page) => page,
                // No stream yet: nothing was anchored.
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    return Ok(anchors);
                }
                Err(error) => return Err(self.error(crate::errors::one_line(&error))),
            };
            anchors.extend(
                page.events()
                    .iter()
                    .filter_map(|event| event.message())
                    .filter_map(|message| serde_json::from_str::<Anchor>(message).ok())
                    .filter(|anchor| anchor.format == FORMAT && anchor.cluster == cluster),
            );
            match page.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        anchors.sort_by_key(|anchor| (anchor.seq, anchor.anchored));
        Ok(anchors)
    }
}

/// `ANCHOR_INTERVAL_SECONDS`: a non-negative number of seconds (0: every write).
fn interval_from(value: Option<String>) -> Result<Duration, crate::config::ConfigError> {
    match value {
        None => Ok(DEFAULT_INTERVAL),
        Some(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or(crate::config::ConfigError::Invalid {
                name: "ANCHOR_INTERVAL_SECONDS",
                value: text,
                expected: "a non-negative number of seconds",
            }),
    }
}

/// A CloudWatch Logs client from the standard AWS environment, with short timeouts: an
/// anchor is one small request, and the invocation must not wait on it for long.
pub async fn logs_client() -> Client {
    Client::new(&crate::publish::side_request_config().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_read_in_seconds_and_a_bad_one_named() {
        assert_eq!(interval_from(None).expect("default"), DEFAULT_INTERVAL);
        assert_eq!(
            interval_from(Some("0".into())).expect("every write"),
            Duration::ZERO
        );
        assert_eq!(
            interval_from(Some(" 90 ".into())).expect("seconds"),
            Duration::from_secs(90)
        );
        let error = interval_from(Some("soon".into())).expect_err("not a number");
        assert!(error.to_string().contains("ANCHOR_INTERVAL_SECONDS"));
    }

    #[test]
    fn an_anchor_reads_back_as_published_and_streams_are_valid_names() {
        let head = ChainHead {
            seq: 42,
            hash: "ab".repeat(32),
        };
        let anchor = Anchor::of("cluster-a", &head, Timestamp(1_700_000_000_000_000));
        let text = serde_json::to_string(&anchor).expect("JSON");
        assert_eq!(
            serde_json::from_str::<Anchor>(&text).expect("reads"),
            anchor
        );
        assert_eq!(stream_name("weird:name*"), "weird_name_");
    }
}
