//! Alerts published to EventBridge (`ALERT_EVENT_BUS`) and Security Hub
//! (`SECURITY_HUB_FINDINGS`), against the local server: a bus with a rule whose target is
//! an SQS queue, read back as a subscriber would, and `GetFindings`. Each alert is one
//! event and one finding, once, whatever the deliveries; a refused publish is sent by the
//! next invocation.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_securityhub::types::{AwsSecurityFinding, SeverityLabel};
use hsm_audit::alerts::StoredAlert;
use hsm_audit::domain::{Alert, AlertKind};
use hsm_audit::lambda::ingest_event;
use hsm_audit::publish::{Publisher, Sink};
use hsm_audit::store::AuditStore;
use hsm_audit::store::dynamodb::DynamoStore;
use hsm_audit::store::dynamodb::items::{self, ViewRow};
use hsm_audit::store::window::ViewOrder;
use hsm_audit::testkit::subscription_event;
use serde_json::Value;

use crate::common::bus::{bus_to_queue, sdk_config};
use crate::common::fault_proxy::{Fault, FaultProxy, Rule};
use crate::common::{Item, client, config_for, endpoint, fresh_store, sample_events, scan_all};

fn events_client(endpoint: &str) -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::new(&sdk_config(endpoint))
}

fn securityhub_client(endpoint: &str) -> aws_sdk_securityhub::Client {
    aws_sdk_securityhub::Client::new(&sdk_config(endpoint))
}

/// `publisher` importing findings into the local server's Security Hub too.
fn with_findings(publisher: Option<Publisher>) -> Option<Publisher> {
    let endpoint = endpoint();
    Some(publisher.unwrap_or_default().with_findings(
        securityhub_client(&endpoint),
        aws_sdk_sts::Client::new(&sdk_config(&endpoint)),
    ))
}

/// The findings of alerts stored in `store`'s table (the local server's Security Hub is
/// shared by every test; the console query names the table).
async fn findings_of(store: &DynamoStore) -> Vec<AwsSecurityFinding> {
    let client = securityhub_client(&endpoint());
    let mut findings = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .get_findings()
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .expect("GetFindings");
        findings.extend(
            page.findings
                .unwrap_or_default()
                .into_iter()
                .filter(|finding| {
                    finding
                        .product_fields()
                        .and_then(|fields| fields.get("hsm-audit/console_query"))
                        .is_some_and(|query| query.contains(&format!("\"{}\"", store.table())))
                }),
        );
        token = page.next_token.filter(|token| !token.is_empty());
        if token.is_none() {
            return findings;
        }
    }
}

/// A bus of its own, and a queue that receives every `hsm-audit` event put on it.
struct LocalBus {
    name: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl LocalBus {
    async fn create(label: &str) -> Self {
        let config = sdk_config(&endpoint());
        let sqs = aws_sdk_sqs::Client::new(&config);
        let name = format!("hsm-audit-test-{label}-{:08x}", fastrand::u32(..));
        let queue_url = bus_to_queue(&config, &name).await;
        Self {
            name,
            sqs,
            queue_url,
        }
    }

    /// A publisher to this bus through `endpoint` (the server, or a proxy in front of it).
    fn publisher(&self, endpoint: &str) -> Option<Publisher> {
        Some(Publisher::default().with_events(events_client(endpoint), &self.name))
    }

    /// The events the queue received since the last call.
    async fn received(&self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let messages = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(600)
                .send()
                .await
                .expect("receive")
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                return events;
            }
            for message in messages {
                let body = message.body.expect("a message body");
                events.push(serde_json::from_str(&body).expect("an event as JSON"));
            }
        }
    }
}

async fn store_publishing_to(label: &str, publisher: Option<Publisher>) -> DynamoStore {
    fresh_store(label).await.with_publisher(publisher)
}

/// The same table through another store (another invocation's).
fn same_table(store: &DynamoStore, publisher: Option<Publisher>) -> DynamoStore {
    DynamoStore::new(client(), store.table()).with_publisher(publisher)
}

/// Ingests every sample event in order; the clusters they touched.
async fn ingest_samples(store: &DynamoStore) -> BTreeSet<String> {
    let config = config_for(store);
    let mut clusters = BTreeSet::new();
    for (name, event) in sample_events() {
        let report = ingest_event(event, store, &config)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        clusters.extend(report.clusters);
    }
    clusters
}

/// The event ids (`detail.id`) received, each with how often.
fn ids(events: &[Value]) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for event in events {
        let id = event["detail"]["id"]
            .as_str()
            .expect("detail.id")
            .to_owned();
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// The alert a `detail` carries, as `hsm-audit alerts` lists it.
fn alert_of(detail: &Value) -> Alert {
    let mut alert = detail.clone();
    if let Some(fields) = alert.as_object_mut() {
        for added in [
            "id",
            "cluster",
            "severity",
            "sequence_range",
            "log_event_ids",
            "cli_command",
            "console_query",
        ] {
            fields.remove(added);
        }
    }
    serde_json::from_value(alert).expect("the detail holds an alert")
}

fn sorted(mut alerts: Vec<Alert>) -> Vec<String> {
    let mut texts: Vec<String> = alerts
        .drain(..)
        .map(|alert| serde_json::to_string(&alert).expect("alert JSON"))
        .collect();
    texts.sort();
    texts
}

#[tokio::test]
async fn every_alert_of_the_samples_is_one_event_and_one_finding_with_their_fields() {
    let bus = LocalBus::create("every").await;
    let store =
        store_publishing_to("publish-every", with_findings(bus.publisher(&endpoint()))).await;
    let clusters = ingest_samples(&store).await;
    let events = bus.received().await;
    let findings = findings_of(&store).await;
    assert!(
        ids(&events).values().all(|count| *count == 1),
        "{:?}",
        ids(&events)
    );
    let mut kinds = BTreeSet::new();
    for cluster in &clusters {
        let stored = store.alerts(cluster).await.expect("alerts");
        let published: Vec<&Value> = events
            .iter()
            .filter(|event| event["detail"]["cluster"] == cluster.as_str())
            .collect();
        let alerts: Vec<Alert> = published
            .iter()
            .map(|event| alert_of(&event["detail"]))
            .collect();
        assert_eq!(sorted(alerts), sorted(stored), "{cluster}");
        for event in published {
            let detail = &event["detail"];
            let kind = detail["kind"].as_str().expect("kind");
            kinds.insert(kind.to_owned());
            assert_eq!(event["source"], "hsm-audit");
            let expected_type = match kind {
                "brute_force" => "Brute force",
                "sequence_gap" => "Sequence gap",
                "conflicting_duplicate" => "Conflicting duplicate",
                "sensitive_operation" => "Sensitive operation",
                "reboot" => "Reboot",
                "abandoned_session" => "Abandoned session",
                "late_record" => "Late record",
                "quorum_lowered" => "Quorum lowered",
                "certificate_storage_error" => "Certificate storage error",
                other => panic!("unexpected kind {other}"),
            };
            assert_eq!(event["detail-type"], expected_type);
            assert!(["LOW", "MEDIUM", "HIGH"].contains(&detail["severity"].as_str().unwrap_or("")));
            let id = detail["id"].as_str().expect("id");
            assert!(id.starts_with("ALERT#"), "{id}");
            assert_eq!(
                detail["console_query"],
                format!(
                    "SELECT * FROM \"{}\" WHERE pk = 'CLUSTER#{cluster}' AND \"sk\" = '{id}'",
                    store.table()
                )
            );
            assert_eq!(
                detail["cli_command"],
                format!("hsm-audit alerts --cluster {cluster} --output json")
            );
            // An alert about one sequenced record names that record's log event.
            if !detail["seq"].is_null() && !detail["reboot_counter"].is_null() {
                let seq = detail["seq"].as_u64().expect("seq");
                assert_eq!(detail["sequence_range"], serde_json::json!([seq, seq]));
                assert_eq!(
                    detail["log_event_ids"].as_array().map(Vec::len),
                    Some(1),
                    "{detail}"
                );
            }
        }
    }
    for kind in ["brute_force", "sensitive_operation", "sequence_gap"] {
        assert!(kinds.contains(kind), "no {kind} event among {kinds:?}");
    }
    // One finding per event, the same alert.
    assert_eq!(findings.len(), events.len());
    let finding_ids: BTreeSet<&str> = findings.iter().filter_map(|f| f.id()).collect();
    assert_eq!(finding_ids.len(), findings.len(), "an Id per alert");
    for finding in &findings {
        assert_finding_matches_its_event(finding, &events);
    }
    // Sent: the outbox is empty, each alert marked once per sink.
    let items = scan_publish_partition(&store).await;
    assert!(
        items
            .iter()
            .all(|(sk, state)| sk.starts_with("SENT#") && state == "sent"),
        "{items:?}"
    );
    assert_eq!(items.len(), events.len() + findings.len());
}

fn assert_finding_matches_its_event(finding: &AwsSecurityFinding, events: &[Value]) {
    let fields = finding.product_fields().expect("product fields");
    let alert_id = fields.get("hsm-audit/alert_id").expect("alert id");
    let event = events
        .iter()
        .find(|event| event["detail"]["id"] == alert_id.as_str())
        .unwrap_or_else(|| panic!("no event for the finding of {alert_id}"));
    let detail = &event["detail"];
    let kind = detail["kind"].as_str().expect("kind");
    let cluster = detail["cluster"].as_str().expect("cluster");
    assert_eq!(finding.schema_version(), Some("2018-10-08"));
    assert_eq!(
        finding.product_arn(),
        Some("arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default")
    );
    assert_eq!(finding.aws_account_id(), Some("123456789012"));
    assert_eq!(
        finding.generator_id(),
        Some(format!("hsm-audit/{kind}").as_str())
    );
    assert_eq!(
        finding.severity().and_then(|severity| severity.label()),
        Some(&SeverityLabel::from(
            detail["severity"].as_str().expect("severity")
        ))
    );
    assert_eq!(finding.first_observed_at(), detail["time"].as_str());
    assert_eq!(
        fields.get("hsm-audit/cluster").map(String::as_str),
        Some(cluster)
    );
    assert_eq!(
        fields.get("hsm-audit/console_query").map(String::as_str),
        detail["console_query"].as_str()
    );
    let resource = &finding.resources()[0];
    assert_eq!(resource.r#type(), Some("Other"));
    let expected_resource = if cluster.starts_with("cluster-") {
        format!("arn:aws:cloudhsm:us-east-1:123456789012:cluster/{cluster}")
    } else {
        cluster.to_owned()
    };
    assert_eq!(resource.id(), Some(expected_resource.as_str()));
    let types = finding.types();
    let requirements = finding
        .compliance()
        .map(|compliance| compliance.related_requirements().to_vec())
        .unwrap_or_default();
    let pci = "Software and Configuration Checks/Industry and Regulatory Standards/PCI-DSS";
    match kind {
        "brute_force" => {
            assert_eq!(types, ["TTPs/Credential Access"]);
            assert_eq!(requirements, ["PCI DSS 10.2.1"]);
        }
        "sequence_gap" => {
            assert_eq!(types, [pci]);
            assert_eq!(requirements, ["PCI DSS 10.2.1", "PCI DSS 10.3.4"]);
        }
        "sensitive_operation" => {
            assert!(types.contains(&pci.to_owned()), "{types:?}");
            let destruction = ["CN_ZEROIZE", "CN_DELETE_USER", "CN_DESTROY_OBJECT"]
                .contains(&detail["opcode"].as_str().unwrap_or_default());
            assert_eq!(
                types.contains(&"Effects/Data Destruction".to_owned()),
                destruction,
                "{detail}"
            );
            assert_eq!(requirements, ["PCI DSS 10.2.1", "PCI DSS 3.6.1"]);
        }
        "abandoned_session" => {
            assert_eq!(types, [pci]);
            assert_eq!(requirements, ["PCI DSS 10.2.1"]);
        }
        other => panic!("the samples raise no {other}"),
    }
}

#[tokio::test]
async fn a_finding_imported_again_is_updated_not_duplicated() {
    let store = store_publishing_to("publish-reimport", with_findings(None)).await;
    let config = config_for(&store);
    let (_, later_layout) = sample_events()
        .into_iter()
        .find(|(name, _)| name.starts_with("13-"))
        .expect("the later-layout sample");
    ingest_event(later_layout, &store, &config)
        .await
        .expect("ingest");
    let first = findings_of(&store).await;
    assert_eq!(first.len(), 2);
    // The same alerts imported again, as a sink that lost its mark would.
    let (alert_items, _) = store
        .view_range(
            "cluster-later",
            ViewOrder::SortKey,
            ("ALERT#", "ALERT#\u{10FFFF}"),
            false,
            None,
            None,
        )
        .await
        .expect("the alert items");
    let alerts: Vec<StoredAlert> = alert_items
        .into_iter()
        .map(|item| {
            let id = items::sort_key(&item);
            let ViewRow::Alert(alert) = items::view_row(item).expect("an alert item") else {
                panic!("not an alert item");
            };
            StoredAlert {
                cluster: "cluster-later".to_owned(),
                table: store.table().to_owned(),
                id,
                alert,
                log_event_ids: Vec::new(),
                archived: false,
            }
        })
        .collect();
    assert_eq!(alerts.len(), 2);
    let publisher = with_findings(None).expect("publisher");
    let outcomes = publisher.send(Sink::Findings, &alerts).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let again = findings_of(&store).await;
    assert_eq!(again.len(), 2);
    let ids = |findings: &[AwsSecurityFinding]| -> BTreeSet<String> {
        findings
            .iter()
            .filter_map(|f| f.id().map(str::to_owned))
            .collect()
    };
    assert_eq!(ids(&again), ids(&first));
}

/// The items of every `PUBLISH#` partition: sort key and `state`.
async fn scan_publish_partition(store: &DynamoStore) -> Vec<(String, String)> {
    let page = store
        .client()
        .scan()
        .table_name(store.table())
        .consistent_read(true)
        .send()
        .await
        .expect("scan");
    assert!(
        page.last_evaluated_key.is_none(),
        "the test tables are small"
    );
    let text = |item: &Item, name: &str| {
        item.get(name)
            .and_then(|value| value.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    page.items
        .unwrap_or_default()
        .iter()
        .filter(|item| text(item, "pk").starts_with("PUBLISH#"))
        .map(|item| (text(item, "sk"), text(item, "state")))
        .collect()
}

#[tokio::test]
async fn a_duplicated_and_a_concurrent_delivery_publish_nothing_twice() {
    let bus = LocalBus::create("twice").await;
    let store = store_publishing_to("publish-twice", bus.publisher(&endpoint())).await;
    let other = same_table(&store, bus.publisher(&endpoint()));
    let config = config_for(&store);
    let (_, user_changes) = sample_events()
        .into_iter()
        .find(|(name, _)| name.starts_with("04-"))
        .expect("the user-management sample");
    // Two invocations with the same delivery at once, then the same delivery again.
    let (first, second) = tokio::join!(
        ingest_event(user_changes.clone(), &store, &config),
        ingest_event(user_changes.clone(), &other, &config)
    );
    first.expect("first");
    second.expect("second");
    ingest_event(user_changes, &store, &config)
        .await
        .expect("again");
    let events = bus.received().await;
    let stored = store.alerts("cluster-demo").await.expect("alerts");
    assert!(!stored.is_empty());
    assert_eq!(events.len(), stored.len(), "{:?}", ids(&events));
    assert!(ids(&events).values().all(|count| *count == 1));
}

#[tokio::test]
async fn two_invocations_draining_one_outbox_at_once_send_each_alert_once() {
    let bus = LocalBus::create("drain").await;
    let refusing = FaultProxy::start(
        &endpoint(),
        vec![Rule::on(
            "PutEvents",
            Fault::Rejected {
                kind: "AccessDeniedException",
                message: "not allowed to put events on this bus",
            },
        )],
    )
    .await;
    let store = store_publishing_to("publish-drain", bus.publisher(&refusing.url())).await;
    ingest_samples(&store).await;
    assert!(bus.received().await.is_empty());
    let clusters = ["cluster-demo", "cluster-later", "luna-service-demo"];
    let mut expected = 0;
    for cluster in clusters {
        expected += store.alerts(cluster).await.expect("alerts").len();
    }
    // Two invocations with a working bus find the same outbox at once.
    let one = same_table(&store, bus.publisher(&endpoint()));
    let other = same_table(&store, bus.publisher(&endpoint()));
    for cluster in clusters {
        let (a, b) = tokio::join!(one.publish_alerts(cluster), other.publish_alerts(cluster));
        assert_eq!(a.failed + b.failed, 0);
    }
    let events = bus.received().await;
    assert_eq!(events.len(), expected, "{:?}", ids(&events));
    assert!(ids(&events).values().all(|count| *count == 1));
}

#[tokio::test]
async fn a_rebuild_derives_every_alert_anew_and_sends_none_again() {
    let bus = LocalBus::create("rebuild").await;
    let store = store_publishing_to("publish-rebuild", bus.publisher(&endpoint())).await;
    ingest_samples(&store).await;
    let sent = bus.received().await.len();
    assert!(sent > 0);
    let config = config_for(&store);
    let rebuilt = hsm_audit::pipeline::rederive(&store, &config, "cluster-demo")
        .await
        .expect("rederive");
    // Every alert was new to the rebuilt views, went through the outbox, and found its
    // mark: sent before.
    assert!(rebuilt.new_alerts.values().sum::<usize>() > 0);
    assert_eq!(bus.received().await.len(), 0);
    let items = scan_publish_partition(&store).await;
    assert!(
        items
            .iter()
            .all(|(sk, state)| sk.starts_with("SENT#") && state == "sent")
    );
}

#[tokio::test]
async fn a_refused_publish_is_sent_by_the_next_invocation() {
    let bus = LocalBus::create("refused").await;
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![
            Rule::on(
                "PutEvents",
                Fault::Rejected {
                    kind: "AccessDeniedException",
                    message: "not allowed to put events on this bus",
                },
            )
            .times(1),
        ],
    )
    .await;
    let store = store_publishing_to("publish-refused", bus.publisher(&proxy.url())).await;
    let config = config_for(&store);
    let (_, user_changes) = sample_events()
        .into_iter()
        .find(|(name, _)| name.starts_with("04-"))
        .expect("the user-management sample");
    ingest_event(user_changes.clone(), &store, &config)
        .await
        .expect("the invocation succeeds: the alerts wait in the outbox");
    assert_eq!(proxy.faults_injected(), 1);
    assert!(bus.received().await.is_empty());
    let (waiting, marks): (Vec<_>, Vec<_>) = scan_publish_partition(&store)
        .await
        .into_iter()
        .partition(|(sk, _)| sk.starts_with("OUTBOX#"));
    assert!(!waiting.is_empty());
    assert!(
        marks.iter().all(|(_, state)| state == "released"),
        "the claims were released: {marks:?}"
    );
    // The next invocation (here the same delivery again) derives nothing new and sends
    // what waits.
    ingest_event(user_changes, &store, &config)
        .await
        .expect("next");
    let events = bus.received().await;
    assert_eq!(events.len(), waiting.len());
    assert!(ids(&events).values().all(|count| *count == 1));
    assert!(
        scan_publish_partition(&store)
            .await
            .iter()
            .all(|(sk, state)| sk.starts_with("SENT#") && state == "sent")
    );
}

#[tokio::test]
async fn an_entry_put_events_refused_is_sent_later_and_the_others_once() {
    let bus = LocalBus::create("partial").await;
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![Rule::on("PutEvents", Fault::FirstEntryRefused).times(1)],
    )
    .await;
    let store = store_publishing_to("publish-partial", bus.publisher(&proxy.url())).await;
    let config = config_for(&store);
    // Two sensitive operations in one delivery: one PutEvents call of two entries.
    let (_, later_layout) = sample_events()
        .into_iter()
        .find(|(name, _)| name.starts_with("13-"))
        .expect("the later-layout sample");
    ingest_event(later_layout.clone(), &store, &config)
        .await
        .expect("first");
    assert_eq!(proxy.faults_injected(), 1);
    assert_eq!(proxy.requests("PutEvents"), 1);
    let stored = store.alerts("cluster-later").await.expect("alerts");
    assert_eq!(stored.len(), 2);
    let first = bus.received().await;
    assert_eq!(first.len(), 1, "the entry taken: {:?}", ids(&first));
    let waiting: Vec<String> = scan_publish_partition(&store)
        .await
        .into_iter()
        .filter(|(sk, _)| sk.starts_with("OUTBOX#"))
        .map(|(sk, _)| sk)
        .collect();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    ingest_event(later_layout, &store, &config)
        .await
        .expect("next");
    let second = bus.received().await;
    assert_eq!(second.len(), 1, "only the refused entry again");
    let mut all = first;
    all.extend(second);
    assert_eq!(ids(&all).len(), 2);
    let alerts: Vec<Alert> = all.iter().map(|event| alert_of(&event["detail"])).collect();
    assert_eq!(sorted(alerts), sorted(stored));
}

#[tokio::test]
async fn without_a_bus_nothing_is_kept_for_publishing() {
    let store = store_publishing_to("publish-none", None).await;
    ingest_samples(&store).await;
    assert!(scan_publish_partition(&store).await.is_empty());
    assert!(!scan_all(&store).await.is_empty());
}

/// A gap's finding is archived when late records close it (the alert is no longer
/// derived), and only then; the other findings stay active.
#[tokio::test]
async fn a_gap_closed_by_late_records_archives_its_finding() {
    let store = store_publishing_to("publish-archive", with_findings(None)).await;
    let config = config_for(&store);
    let record = |seq: u64| {
        let usecs = 1_516_067_329_824_999 + seq as i64 * 1_000_000;
        format!(
            "Time: 01/16/18 01:48:{:02}.824999, usecs:{usecs}\nSequence No : {seq:#x}\n\
             Reboot counter : 0x107\nCommand Type(hex) : CN_MGMT_CMD (0x0)\n\
             Opcode : CN_LOGIN (0xd)\nSession Handle : 0x7014006\n\
             Response : 0:HSM Return: SUCCESS\nLog type : MGMT_USER_DETAILS_LOG (2)\n\
             User Name : admin\nUser Type : CN_CRYPTO_OFFICER (2)",
            49 + seq
        )
    };
    let group = "/aws/cloudhsm/cluster-archive";
    let first: Vec<String> = [0, 1, 5].into_iter().map(record).collect();
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    ingest_event(
        subscription_event(group, "hsm-one", 100, &first),
        &store,
        &config,
    )
    .await
    .expect("the records around the gap");
    let gap_of = |findings: &[AwsSecurityFinding]| -> Vec<(String, String)> {
        findings
            .iter()
            .filter(|finding| {
                finding
                    .title()
                    .is_some_and(|title| title.to_lowercase().contains("gap"))
            })
            .map(|finding| {
                (
                    finding.id().unwrap_or_default().to_owned(),
                    finding
                        .record_state()
                        .map(|state| state.as_str().to_owned())
                        .unwrap_or_default(),
                )
            })
            .collect()
    };
    let open = gap_of(&findings_of(&store).await);
    assert_eq!(open.len(), 1, "one gap, one finding: {open:?}");
    assert_eq!(open[0].1, "ACTIVE");

    let late: Vec<String> = [2, 3, 4].into_iter().map(record).collect();
    let late: Vec<&str> = late.iter().map(String::as_str).collect();
    ingest_event(
        subscription_event(group, "hsm-one", 200, &late),
        &store,
        &config,
    )
    .await
    .expect("the records of the gap, late");
    let closed = gap_of(&findings_of(&store).await);
    assert_eq!(closed, vec![(open[0].0.clone(), "ARCHIVED".to_owned())]);
    let alerts = store.alerts("cluster-archive").await.expect("alerts");
    assert!(
        alerts
            .iter()
            .all(|alert| alert.kind != AlertKind::SequenceGap),
        "{alerts:?}"
    );
    assert!(
        scan_publish_partition(&store)
            .await
            .iter()
            .all(|(sk, _)| !sk.starts_with("OUTBOX#")),
        "nothing left to send"
    );
}
