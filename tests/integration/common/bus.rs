//! An EventBridge bus of its own whose rule sends hsm-audit's events to a new SQS queue:
//! where the publish tests and the alert-latency bench (`benches/alerts.rs`, which
//! includes this file) read what the function published, from the local server.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_eventbridge::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_eventbridge::types::Target;
use aws_sdk_sqs::types::QueueAttributeName;

/// The local server's configuration at `endpoint`, for any service's client.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test",
            "test",
            None,
            None,
            "hsm-audit-tests",
        )))
        .build()
}

/// Creates the bus `name`, a queue of the same name and a rule sending events whose
/// source is `hsm-audit` to it: the queue's URL.
pub async fn bus_to_queue(config: &SdkConfig, name: &str) -> String {
    let events = aws_sdk_eventbridge::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    events
        .create_event_bus()
        .name(name)
        .send()
        .await
        .expect("create the bus");
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create the queue")
        .queue_url
        .expect("queue url");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
        .expect("queue arn");
    events
        .put_rule()
        .name("hsm-audit-alerts")
        .event_bus_name(name)
        .event_pattern(r#"{"source": ["hsm-audit"]}"#)
        .send()
        .await
        .expect("put the rule");
    events
        .put_targets()
        .rule("hsm-audit-alerts")
        .event_bus_name(name)
        .targets(
            Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("put the target");
    url
}
