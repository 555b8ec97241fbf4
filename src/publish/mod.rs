//! Sending new alerts where the security team looks: EventBridge (`ALERT_EVENT_BUS`) and
//! Security Hub (`SECURITY_HUB_FINDINGS=true`). With neither configured there is no
//! [`Publisher`], and the pipeline makes no request it did not make before.
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

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::alerts::StoredAlert;
use crate::alerts::event::{SOURCE, event};
use crate::alerts::finding::{FindingTarget, finding, finding_id};
use crate::errors::one_line;
use crate::model::Timestamp;

/// `PutEvents` takes at most ten entries a call.
const EVENTS_PER_CALL: usize = 10;

/// `BatchImportFindings` takes at most a hundred findings a call.
const FINDINGS_PER_CALL: usize = 100;

/// Where alerts go; each has its own outbox item and mark per alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sink {
    /// EventBridge `PutEvents` on `ALERT_EVENT_BUS`.
    Events,
    /// Security Hub `BatchImportFindings` into the account's default product.
    Findings,
}

impl Sink {
    pub fn as_str(self) -> &'static str {
        match self {
            Sink::Events => "events",
            Sink::Findings => "findings",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Sink::Events, Sink::Findings]
            .into_iter()
            .find(|sink| sink.as_str() == name)
    }
}

/// The configured sinks and their clients, built once.
#[derive(Debug, Clone, Default)]
pub struct Publisher {
    events: Option<EventBus>,
    findings: Option<SecurityHub>,
}

#[derive(Debug, Clone)]
struct EventBus {
    client: aws_sdk_eventbridge::Client,
    /// A bus name or ARN, as `PutEvents` takes either.
    bus: String,
}

#[derive(Debug, Clone)]
struct SecurityHub {
    client: aws_sdk_securityhub::Client,
    /// Asked once for the account the credentials belong to: the product ARN and every
    /// finding name it, and no setting needs to repeat it.
    sts: aws_sdk_sts::Client,
    account: OnceLock<String>,
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

/// The AWS configuration of requests beside the table's (alert sinks, anchors): a few
/// quick attempts, so that a slow sink or log group holds the invocation seconds, not
/// its timeout.
pub(crate) async fn side_request_config() -> aws_config::SdkConfig {
    aws_config::from_env()
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(15))
                .build(),
        )
        .load()
        .await
}

impl Publisher {
    /// The publisher `ALERT_EVENT_BUS` (a bus name or ARN) and `SECURITY_HUB_FINDINGS`
    /// (`true`) ask for, or none.
    pub async fn from_env() -> Option<Self> {
        let bus = std::env::var("ALERT_EVENT_BUS")
            .ok()
            .map(|bus| bus.trim().to_owned())
            .filter(|bus| !bus.is_empty());
        let findings = std::env::var("SECURITY_HUB_FINDINGS")
            .is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"));
        if bus.is_none() && !findings {
            return None;
        }
        let config = side_request_config().await;
        let mut publisher = Self::default();
        if let Some(bus) = bus {
            publisher = publisher.with_events(aws_sdk_eventbridge::Client::new(&config), bus);
        }
        if findings {
            publisher = publisher.with_findings(
                aws_sdk_securityhub::Client::new(&config),
                aws_sdk_sts::Client::new(&config),
            );
        }
        Some(publisher)
    }

    /// Sends events to the EventBridge bus `bus` (a name or ARN) through `client`.
    pub fn with_events(
        mut self,
        client: aws_sdk_eventbridge::Client,
        bus: impl Into<String>,
    ) -> Self {
        self.events = Some(EventBus {
            client,
            bus: bus.into(),
        });
        self
    }

    /// Imports findings through `client`, into the default product of the account `sts`
    /// names, in the client's region.
    pub fn with_findings(
        mut self,
        client: aws_sdk_securityhub::Client,
        sts: aws_sdk_sts::Client,
    ) -> Self {
        self.findings = Some(SecurityHub {
            client,
            sts,
            account: OnceLock::new(),
        });
        self
    }

    /// The sinks configured, each an outbox item per new alert.
    pub fn sinks(&self) -> Vec<Sink> {
        let events = self.events.as_ref().map(|_| Sink::Events);
        let findings = self.findings.as_ref().map(|_| Sink::Findings);
        events.into_iter().chain(findings).collect()
    }

    /// Sends `alerts` to `sink`: for each, `Ok` or why it was not taken.
    pub async fn send(&self, sink: Sink, alerts: &[StoredAlert]) -> Vec<Result<(), String>> {
        match (sink, &self.events, &self.findings) {
            (Sink::Events, Some(bus), _) => bus.put_events(alerts).await,
            (Sink::Findings, _, Some(hub)) => hub.import(alerts).await,
            _ => all_failed(format!("{} is not configured", sink.as_str()), alerts.len()),
        }
    }
}

/// The same failure for each of `count` alerts.
fn all_failed(reason: String, count: usize) -> Vec<Result<(), String>> {
    vec![Err(reason); count]
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
                Err(error) => outcomes.extend(all_failed(
                    format!("PutEvents: {}", one_line(&error)),
                    chunk.len(),
                )),
            }
        }
        outcomes
    }
}

impl SecurityHub {
    async fn target(&self) -> Result<FindingTarget, String> {
        let region = self
            .client
            .config()
            .region()
            .map(|region| region.to_string())
            .ok_or("no AWS region configured for Security Hub")?;
        let account = match self.account.get() {
            Some(account) => account.clone(),
            None => {
                let identity = self
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|error| format!("GetCallerIdentity: {}", one_line(&error)))?;
                let account = identity
                    .account
                    .ok_or("GetCallerIdentity named no account")?;
                self.account.get_or_init(|| account).clone()
            }
        };
        Ok(FindingTarget { account, region })
    }

    async fn import(&self, alerts: &[StoredAlert]) -> Vec<Result<(), String>> {
        let target = match self.target().await {
            Ok(target) => target,
            Err(reason) => return all_failed(reason, alerts.len()),
        };
        let now = Timestamp::now();
        let mut outcomes = Vec::with_capacity(alerts.len());
        for chunk in alerts.chunks(FINDINGS_PER_CALL) {
            let findings = chunk
                .iter()
                .map(|alert| finding(alert, &target, now))
                .collect();
            let answer = self
                .client
                .batch_import_findings()
                .set_findings(Some(findings))
                .send()
                .await;
            match answer {
                // Refused findings are named by their id, not by position.
                Ok(output) => {
                    let refused: HashMap<&str, String> = output
                        .failed_findings()
                        .iter()
                        .map(|failed| {
                            (
                                failed.id().unwrap_or_default(),
                                format!(
                                    "{}: {}",
                                    failed.error_code().unwrap_or_default(),
                                    failed.error_message().unwrap_or_default()
                                ),
                            )
                        })
                        .collect();
                    outcomes.extend(chunk.iter().map(|alert| {
                        match refused.get(finding_id(alert).as_str()) {
                            Some(reason) => Err(reason.clone()),
                            None => Ok(()),
                        }
                    }));
                }
                Err(error) => outcomes.extend(all_failed(
                    format!("BatchImportFindings: {}", one_line(&error)),
                    chunk.len(),
                )),
            }
        }
        outcomes
    }
}
