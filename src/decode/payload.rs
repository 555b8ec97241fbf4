//! The CloudWatch Logs subscription payload as CloudWatch Logs documents it: the types
//! both of its readers produce, the one-pass reader ([`super::payload_json`]) and the
//! serde_json fallback ([`super::awslogs`]), so that neither reader depends on the other.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageType {
    DataMessage,
    ControlMessage,
    #[serde(other)]
    Unknown,
}

/// The decoded subscription payload, as CloudWatch Logs documents it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsPayload {
    pub message_type: MessageType,
    #[serde(default)]
    pub owner: String,
    pub log_group: String,
    pub log_stream: String,
    #[serde(default)]
    pub subscription_filters: Vec<String>,
    pub log_events: Vec<LogEvent>,
    /// Events whose message is not text (invalid UTF-8, a lone surrogate escape): each is
    /// quarantined on its own, the other events of the payload are processed.
    #[serde(skip)]
    pub undecodable: Vec<UndecodableEvent>,
}

/// A log event whose message could not be decoded as text, with the bytes it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndecodableEvent {
    pub id: String,
    pub timestamp: i64,
    pub reason: String,
    /// The message's bytes as sent (escapes resolved, a lone surrogate as WTF-8).
    pub message: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEvent {
    pub id: String,
    pub timestamp: i64,
    pub message: String,
}
