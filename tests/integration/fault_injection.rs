//! A failing DynamoDB, through a fault-injecting proxy in front of the local server:
//! throttling, 5xx, partial batch writes, timeouts and a refused connection are retried
//! within a bounded budget; past it the invocation fails as `Retryable`, and delivering
//! the same event again converges to exactly the state of one clean delivery.
//! Nothing is lost and nothing is duplicated.

use std::time::Duration;

use crate::common::fault_proxy::{Fault, FaultProxy, Rule};
use crate::common::*;
use aws_sdk_dynamodb::types::AttributeValue;
use hsm_audit::lambda::{HandlerError, ingest_event};
use hsm_audit::pipeline::Report;
use hsm_audit::store::dynamodb::{DynamoStore, create_table};
use hsm_audit::testkit::{destination_record, receive_message_output};
use lambda_runtime::Diagnostic;

const GROUP: &str = "/aws/cloudhsm/cluster-faults";
/// Longer than any healthy request to the local server, even on a loaded machine.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// Every vendor example record and one message that is not a record, in one event: its
/// delivery takes every kind of request (quarantine, trail reads and writes in more than
/// one batch, the lease, the trail query, view deletes and puts).
fn big_event() -> serde_json::Value {
    let mut messages: Vec<String> = (0..32)
        .map(|index| seed_record(&format!("{index:02}-")))
        .collect();
    messages.insert(7, "hsm agent restarted".to_owned());
    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
    subscription_event(GROUP, "hsm-abcde123456", 48_000_000_000, &messages)
}

async fn new_table(label: &str) -> String {
    let table = format!("hsm-audit-test-{label}-{:08x}", fastrand::u32(..));
    create_table(&client(), &table)
        .await
        .expect("create the test table");
    table
}

/// A store on `table` whose requests go through `proxy`.
fn store_via(proxy: &FaultProxy, table: &str, label: &str) -> DynamoStore {
    DynamoStore::new(
        client_with_budget(&proxy.url(), label, ATTEMPT_TIMEOUT),
        table,
    )
    .with_lease_wait(Duration::from_secs(20))
}

/// A store on `table` straight to the server, as a later, healthy invocation.
fn healthy_store(table: &str) -> DynamoStore {
    DynamoStore::new(client(), table).with_lease_wait(Duration::from_secs(20))
}

/// The table after one clean delivery of `events`: what every faulty run must end at.
async fn clean_state(events: &[serde_json::Value]) -> Vec<Item> {
    let store = fresh_store("clean").await;
    let config = config_for(&store);
    for event in events {
        ingest_event(event.clone(), &store, &config)
            .await
            .expect("clean delivery");
    }
    scan_all(&store).await
}

fn assert_retryable(error: HandlerError) {
    let message = error.to_string();
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "Retryable", "{message}");
    assert!(
        diagnostic.error_message.contains("DynamoDB"),
        "{}",
        diagnostic.error_message
    );
}

/// What a lease left by a failed invocation looks like once it has expired (120 s
/// later): the test does not wait for the clock.
async fn expire_leases(table: &str) {
    let client = client();
    let page = client
        .scan()
        .table_name(table)
        .filter_expression("sk = :lease")
        .expression_attribute_values(":lease", AttributeValue::S("LEASE".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("scan leases");
    for lease in page.items.unwrap_or_default() {
        client
            .update_item()
            .table_name(table)
            .key("pk", lease["pk"].clone())
            .key("sk", lease["sk"].clone())
            .update_expression("SET expires_at_ms = :past")
            .expression_attribute_values(":past", AttributeValue::N("0".into()))
            .send()
            .await
            .expect("expire lease");
    }
}

async fn deliver(store: &DynamoStore, event: &serde_json::Value) -> Result<Report, HandlerError> {
    let config = config_for(store);
    ingest_event(event.clone(), store, &config).await
}

#[tokio::test]
async fn throttling_and_5xx_are_retried_by_the_sdk_and_leave_no_duplicates() {
    let events = vec![big_event()];
    let clean = clean_state(&events).await;
    // At most two faults per operation: with three attempts per call, each call that
    // meets them still succeeds, whatever the order of concurrent requests.
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![
            Rule::on("BatchWriteItem", Fault::ProvisionedThroughputExceeded).times(2),
            Rule::on("TransactWriteItems", Fault::Throttling).times(2),
            Rule::on("Query", Fault::ServerError(500)).times(1),
            Rule::on("Query", Fault::ServerError(503)).times(1),
            Rule::on("PutItem", Fault::Throttling).times(1),
            Rule::on("GetItem", Fault::ServerError(500)).times(1),
        ],
    )
    .await;
    let table = new_table("throttled").await;
    let store = store_via(&proxy, &table, "throttled");
    let report = deliver(&store, &events[0])
        .await
        .expect("retried within the budget");
    assert_eq!((report.records, report.quarantined), (32, 1));

    let faults = proxy.faults();
    assert_eq!(faults.get("ProvisionedThroughputExceeded"), Some(&2));
    assert_eq!(faults.get("Throttling"), Some(&3));
    assert_eq!(faults.get("ServerError500"), Some(&2));
    assert_eq!(faults.get("ServerError503"), Some(&1));
    // Each fault cost exactly one more attempt: the SDK retried it, nothing else did.
    let counts = store.counts();
    let load = |count: &std::sync::atomic::AtomicU64| {
        count.load(std::sync::atomic::Ordering::Relaxed) as u32
    };
    assert_eq!(
        proxy.requests("BatchWriteItem"),
        load(&counts.batch_write) + 2
    );
    assert_eq!(
        proxy.requests("TransactWriteItems"),
        load(&counts.transact_write) + 2
    );
    assert_eq!(
        proxy.requests("Query") + proxy.requests("PutItem") + proxy.requests("GetItem"),
        load(&counts.query) + load(&counts.single_item) + 4
    );
    assert_same_state(&scan_all(&healthy_store(&table)).await, &clean, "");
}

#[tokio::test]
async fn unprocessed_items_are_retried_by_the_store_until_written() {
    let events = vec![big_event()];
    let clean = clean_state(&events).await;
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![Rule::on("BatchWriteItem", Fault::HalfUnprocessed).times(5)],
    )
    .await;
    let table = new_table("unprocessed").await;
    let store = store_via(&proxy, &table, "unprocessed");
    deliver(&store, &events[0])
        .await
        .expect("unprocessed items retried");
    assert_eq!(proxy.faults().get("HalfUnprocessed"), Some(&5));
    assert!(proxy.held_back_items() >= 5);
    // Every partial answer was retried once by the store (with its jittered backoff),
    // none of them by the SDK, for which a 200 is a success.
    assert_eq!(
        store
            .counts()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    assert_same_state(&scan_all(&healthy_store(&table)).await, &clean, "");
}

/// The done-when: a delivery fails midway (at every point in turn: the first
/// request, the trail, the lease, the views, the release), the invocation fails as
/// `Retryable`, the same event is delivered again, and the table equals one clean
/// delivery's.
#[tokio::test]
async fn a_delivery_failing_midway_then_redelivered_equals_one_clean_delivery() {
    let event = big_event();
    let clean = clean_state(std::slice::from_ref(&event)).await;
    let counting = FaultProxy::start(&endpoint(), Vec::new()).await;
    let table = new_table("count").await;
    deliver(&store_via(&counting, &table, "count"), &event)
        .await
        .expect("no faults");
    let requests = counting.total_requests();
    assert!(requests >= 8, "a delivery takes {requests} requests");

    let faults = [
        Fault::ServerError(500),
        Fault::ProvisionedThroughputExceeded,
        Fault::ServerError(503),
        Fault::Throttling,
        Fault::Hangup,
    ];
    for healthy in 0..requests {
        let fault = faults[healthy as usize % faults.len()].clone();
        let proxy =
            FaultProxy::start(&endpoint(), vec![Rule::any(fault.clone()).after(healthy)]).await;
        let table = new_table("midway").await;
        let error = deliver(&store_via(&proxy, &table, "midway"), &event)
            .await
            .expect_err("every request after the first {healthy} fails");
        assert_retryable(error);
        assert!(proxy.faults_injected() >= 1);

        expire_leases(&table).await;
        let report = deliver(&healthy_store(&table), &event)
            .await
            .expect("the re-delivery succeeds");
        assert_eq!(report.records, 32);
        assert_same_state(
            &scan_all(&healthy_store(&table)).await,
            &clean,
            &format!("failing after {healthy} requests with {fault:?}, then re-delivering"),
        );
    }
}

#[tokio::test]
async fn unprocessed_items_that_never_clear_fail_the_invocation_as_retryable() {
    let event = big_event();
    let clean = clean_state(std::slice::from_ref(&event)).await;
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![Rule::on("BatchWriteItem", Fault::HalfUnprocessed)],
    )
    .await;
    let table = new_table("stuck").await;
    let store = store_via(&proxy, &table, "stuck");
    let error = deliver(&store, &event)
        .await
        .expect_err("a partition that stays hot");
    assert!(error.to_string().contains("unprocessed"), "{error}");
    assert_retryable(error);
    expire_leases(&table).await;
    deliver(&healthy_store(&table), &event)
        .await
        .expect("re-delivered");
    assert_same_state(&scan_all(&healthy_store(&table)).await, &clean, "");
}

/// Slow requests: each operation's first request is held past the client's attempt
/// timeout. The SDK gives up on the attempt and retries; the slow request still lands
/// after its retry (a lease taken, a batch written twice), which must change nothing.
#[tokio::test]
async fn timeouts_are_retried_and_a_request_that_lands_late_changes_nothing() {
    let events = vec![big_event()];
    let clean = clean_state(&events).await;
    let proxy = FaultProxy::start(
        &endpoint(),
        ["TransactWriteItems", "PutItem", "Query", "BatchWriteItem"]
            .into_iter()
            .map(|operation| Rule::on(operation, Fault::Delay).times(1))
            .collect(),
    )
    .await;
    let table = new_table("slow").await;
    let store = store_via(&proxy, &table, "slow");
    deliver(&store, &events[0]).await.expect("timeouts retried");
    assert_eq!(proxy.faults().get("Delay"), Some(&4));
    proxy.settled().await;
    // The late lease request lands after the lease was released and takes it again,
    // for nobody: it blocks the cluster's next derivation until it expires (120 s),
    // which delays that invocation (it fails `Retryable` and is retried) but changes
    // no record and no view.
    let items: Vec<Item> = scan_all(&healthy_store(&table))
        .await
        .into_iter()
        .filter(|item| item.get("sk") != Some(&AttributeValue::S("LEASE".into())))
        .collect();
    assert_same_state(&items, &clean, "");
}

/// A request that took effect but whose answer came too late: the SDK sends it again.
/// A lease taken that way is the invocation's own (not another's to wait for), a
/// release that already happened is done, and writes made twice are one. The lease's
/// claim and release are its two `PutItem`s.
#[tokio::test]
async fn requests_whose_answer_came_too_late_are_retried_idempotently() {
    let events = vec![big_event()];
    let clean = clean_state(&events).await;
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![
            Rule::on("PutItem", Fault::SlowAnswer).times(2),
            Rule::on("BatchWriteItem", Fault::SlowAnswer).times(1),
        ],
    )
    .await;
    let table = new_table("late").await;
    let store = DynamoStore::new(
        client_with_budget(&proxy.url(), "late", ATTEMPT_TIMEOUT),
        &table,
    )
    // Less than the lease's TTL: waiting for a lease we hold ourselves would fail.
    .with_lease_wait(ATTEMPT_TIMEOUT);
    deliver(&store, &events[0])
        .await
        .expect("a lease taken by a timed-out attempt is ours");
    assert_eq!(proxy.faults().get("SlowAnswer"), Some(&3));
    assert_same_state(&scan_all(&healthy_store(&table)).await, &clean, "");
}

#[tokio::test]
async fn a_store_that_never_answers_in_time_fails_the_invocation_as_retryable() {
    let event = big_event();
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![Rule::on("TransactWriteItems", Fault::Delay)],
    )
    .await;
    let table = new_table("hung").await;
    let store = DynamoStore::new(
        client_with_budget(&proxy.url(), "hung", ATTEMPT_TIMEOUT),
        &table,
    );
    let error = deliver(&store, &event).await.expect_err("timed out");
    assert!(error.to_string().contains("TransactWriteItems"), "{error}");
    assert_retryable(error);
    assert_eq!(
        proxy.requests("TransactWriteItems"),
        3,
        "three attempts, no more"
    );
}

#[tokio::test]
async fn a_refused_connection_fails_the_invocation_as_retryable() {
    let event = big_event();
    let clean = clean_state(std::slice::from_ref(&event)).await;
    // A port that was just free and has nobody listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let table = new_table("refused").await;
    let store = DynamoStore::new(
        client_with_budget(
            &format!("http://127.0.0.1:{closed}"),
            "refused",
            ATTEMPT_TIMEOUT,
        ),
        &table,
    );
    let error = deliver(&store, &event).await.expect_err("refused");
    assert_retryable(error);
    assert!(scan_all(&healthy_store(&table)).await.is_empty());
    deliver(&healthy_store(&table), &event)
        .await
        .expect("delivered once the table is reachable");
    assert_same_state(&scan_all(&healthy_store(&table)).await, &clean, "");
}

/// Bad data through the same faulty path is still quarantined and the invocation
/// succeeds: the error classes do not mix.
#[tokio::test]
async fn bad_data_is_quarantined_and_succeeds_even_while_the_store_is_throttled() {
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![Rule::on("BatchWriteItem", Fault::Throttling).times(1)],
    )
    .await;
    let table = new_table("badthrottled").await;
    let store = store_via(&proxy, &table, "badthrottled");
    let report = deliver(
        &store,
        &serde_json::json!({"awslogs": {"data": b64(b"not gzip")}}),
    )
    .await
    .expect("bad data never fails an invocation");
    assert_eq!(report.quarantined, 1);
    let items = scan_all(&healthy_store(&table)).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["pk"], AttributeValue::S("QUARANTINE".into()));
}

/// DynamoDB's 400 KB item limit: a CloudWatch log event can be 256 KiB, and what is
/// stored for it must still fit, parsed or not.
#[tokio::test]
async fn a_256_kib_message_is_stored_or_quarantined_within_the_item_limit() {
    let store = fresh_store("huge").await;
    let config = config_for(&store);
    let limit = 256 * 1024 - 26;
    let record = seed_record("06-");
    let padding = limit - record.len() - "Unknown Field : \n".len();
    let parses = format!("{record}Unknown Field : {}\n", "x".repeat(padding));
    let garbage = "y".repeat(limit);
    assert!(parses.len() <= limit && garbage.len() <= limit);
    let event = subscription_event(GROUP, "hsm-huge", 1, &[&parses, &garbage]);
    let report = ingest_event(event, &store, &config).await.expect("stored");
    assert_eq!((report.records, report.quarantined), (1, 1));
    let items = scan_all(&store).await;
    let mut sizes: Vec<(String, usize)> = items
        .iter()
        .map(|item| {
            let size: usize = item
                .iter()
                .map(|(name, value)| name.len() + attribute_size(value))
                .sum();
            (item["item_type"].as_s().cloned().unwrap_or_default(), size)
        })
        .collect();
    sizes.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    assert!(sizes[0].1 < 400 * 1000, "{sizes:?}");
    assert!(sizes.iter().any(|(kind, _)| kind == "audit_record"));
    assert!(sizes.iter().any(|(kind, _)| kind == "quarantined"));
}

/// A record whose fields are long enough to break DynamoDB's key limits (a user name of
/// 2 KiB would make a 1 KiB sort key for its session) must not fail the batch forever.
#[tokio::test]
async fn a_record_with_an_overlong_user_name_does_not_block_the_batch() {
    let store = fresh_store("longname").await;
    let config = config_for(&store);
    let long = seed_record("06-").replace(
        "User Name : admin",
        &format!("User Name : {}", "u".repeat(2048)),
    );
    let event = subscription_event(GROUP, "hsm-long", 1, &[&long, &seed_record("07-")]);
    let report = ingest_event(event, &store, &config).await;
    let report = report.expect("a hostile field is data, not a store failure");
    assert_eq!(report.records + report.quarantined, 2);
    let long_user = "u".repeat(2048);
    let sessions = store
        .sessions("cluster-faults", Some(&long_user), None, None)
        .await
        .expect("sessions");
    assert_eq!(
        sessions.len(),
        1,
        "the session is stored and found by its full user name"
    );
    assert_eq!(
        sessions[0].user, long_user,
        "the item keeps the whole name; only its key is cut"
    );
}

/// The failure queue replayed: a failed invocation's event, as the on-failure destination
/// wrote it to SQS and `aws sqs receive-message` printed it, given to `hsm-audit ingest`'s
/// code path, ends at the state of a direct delivery; replaying it twice changes nothing.
#[tokio::test]
async fn replaying_the_failure_queue_equals_a_direct_delivery() {
    let event = big_event();
    let clean = clean_state(std::slice::from_ref(&event)).await;
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![Rule::any(Fault::ServerError(500)).after(3)],
    )
    .await;
    let table = new_table("dlq").await;
    let error = deliver(&store_via(&proxy, &table, "dlq"), &event)
        .await
        .expect_err("the table fails midway");
    let message = error.to_string();
    assert_retryable(error);
    let received = receive_message_output(&[destination_record(&event, &message).to_string()]);
    expire_leases(&table).await;
    let store = healthy_store(&table);
    let config = config_for(&store);
    for _ in 0..2 {
        let decoded = hsm_audit::decode::decode_document(
            received.to_string().as_bytes(),
            "dlq.json",
            &hsm_audit::decode::RawTextSource::default(),
            config.max_inflated_bytes,
        )
        .expect("a failure-queue record is a document");
        let parsed = hsm_audit::pipeline::parse_decoded(decoded);
        assert_eq!(parsed.log_events, 33);
        hsm_audit::pipeline::ingest(&store, &config, parsed)
            .await
            .expect("replayed");
        assert_same_state(
            &scan_all(&store).await,
            &clean,
            "replayed from the failure queue",
        );
    }
}

fn attribute_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number.len(),
        AttributeValue::B(blob) => blob.as_ref().len(),
        AttributeValue::L(list) => list.iter().map(attribute_size).sum::<usize>() + 3,
        AttributeValue::M(map) => {
            map.iter()
                .map(|(name, value)| name.len() + attribute_size(value))
                .sum::<usize>()
                + 3
        }
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(String::len).sum(),
        _ => 1,
    }
}
