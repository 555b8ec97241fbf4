//! Sending new alerts where the security team looks: EventBridge (`ALERT_EVENT_BUS`).
//! With nothing configured there is no [`Publisher`], and the pipeline makes no request
//! it did not make before.
//!
//! Design decision: **an outbox, drained after the step, with a conditional mark per
//! alert and sink.** The derivation step that writes a new alert item also writes an
//! outbox item for it (`store::dynamodb::outbox`), in the same writes that precede its
//! checkpoint: a step that fails is redone and writes it again, so no alert is lost.
//! After the step, one `Query` reads the cluster's outbox; each alert is claimed with a
//! conditional write of its mark (`SENT#…`), sent, and marked sent, or its claim is
//! released so that the next invocation sends it. A retried or concurrent invocation
//! finds the mark and sends nothing twice. The one window left is a process that dies
//! between a successful send and its mark: after the claim expires the alert is sent
//! again (at least once, never lost).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::alerts::StoredAlert;
use crate::alerts::event::{SOURCE, event};
use crate::errors::one_line;

/// `PutEvents` takes at most ten entries a call.
const EVENTS_PER_CALL: usize = 10;

/// Where alerts go; each has its own outbox item and mark per alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sink {
    /// EventBridge `PutEvents` on `ALERT_EVENT_BUS`.
    Events,
}

impl Sink {
    pub fn as_str(self) -> &'static str {
        match self {
            Sink::Events => "events",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        (name == "events").then_some(Sink::Events)
    }
}

/// The configured sinks and their clients, built once.
#[derive(Debug, Clone)]
pub struct Publisher {
    events: Option<EventBus>,
}

#[derive(Debug, Clone)]
struct EventBus {
    client: aws_sdk_eventbridge::Client,
    /// A bus name or ARN, as `PutEvents` takes either.
    bus: String,
}

/// What draining an outbox did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    pub sent: usize,
    /// Left in the outbox for the next invocation: the sink refused or did not answer.
    pub failed: usize,
    /// Sent before (a duplicated or concurrent invocation), or being sent by another.
    pub skipped: usize,
}

impl Publisher {
    /// The publisher `ALERT_EVENT_BUS` asks for (a bus name or ARN), or none.
    pub async fn from_env() -> Option<Self> {
        let bus = std::env::var("ALERT_EVENT_BUS")
            .ok()
            .map(|bus| bus.trim().to_owned())
            .filter(|bus| !bus.is_empty())?;
        let config = aws_config::from_env()
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(15))
                    .build(),
            )
            .load()
            .await;
        Some(Self::events(aws_sdk_eventbridge::Client::new(&config), bus))
    }

    /// A publisher to the EventBridge bus `bus` (a name or ARN) through `client`.
    pub fn events(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            events: Some(EventBus {
                client,
                bus: bus.into(),
            }),
        }
    }

    /// The sinks configured, each an outbox item per new alert.
    pub fn sinks(&self) -> Vec<Sink> {
        self.events.iter().map(|_| Sink::Events).collect()
    }

    /// Sends `alerts` to `sink`: for each, `Ok` or why it was not taken.
    pub async fn send(&self, sink: Sink, alerts: &[StoredAlert]) -> Vec<Result<(), String>> {
        match (sink, &self.events) {
            (Sink::Events, Some(bus)) => bus.put_events(alerts).await,
            (Sink::Events, None) => not_configured(sink, alerts.len()),
        }
    }
}

fn not_configured(sink: Sink, count: usize) -> Vec<Result<(), String>> {
    vec![Err(format!("{} is not configured", sink.as_str())); count]
}

impl EventBus {
    async fn put_events(&self, alerts: &[StoredAlert]) -> Vec<Result<(), String>> {
        let mut outcomes = Vec::with_capacity(alerts.len());
        for chunk in alerts.chunks(EVENTS_PER_CALL) {
            let entries = chunk
                .iter()
                .map(|alert| {
                    let event = event(alert);
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(SOURCE)
                        .detail_type(event.detail_type)
                        .detail(event.detail)
                        .time(DateTime::from_millis(event.time.micros() / 1000))
                        .build()
                })
                .collect();
            let answer = self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await;
            match answer {
                // Entries answer in request order; one with an error code was not taken
                // (a partial failure) while the others were.
                Ok(output) => {
                    let answered = output.entries();
                    outcomes.extend((0..chunk.len()).map(|index| match answered.get(index) {
                        Some(entry) => match entry.error_code() {
                            None => Ok(()),
                            Some(code) => Err(format!(
                                "{code}: {}",
                                entry.error_message().unwrap_or_default()
                            )),
                        },
                        None => Err("PutEvents answered fewer entries than sent".to_owned()),
                    }));
                }
                Err(error) => {
                    let reason = format!("PutEvents: {}", one_line(&error));
                    outcomes.extend(chunk.iter().map(|_| Err(reason.clone())));
                }
            }
        }
        outcomes
    }
}
