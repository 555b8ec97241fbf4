//! Kinesis Data Streams and Firehose delivery of the subscription: the same table as
//! direct delivery, poisoned records quarantined and reported while the rest of the batch
//! lands, store failures reported per record from the first failing one on, and a record
//! whose write a retry cannot fix quarantined instead of holding the shard.

use crate::common::fault_proxy::{Fault, FaultProxy, Rule};
use crate::common::*;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use hsm_audit::lambda::{Response, ingest_event, process_event};
use hsm_audit::store::dynamodb::DynamoStore;
use serde_json::{Value, json};

/// The `awslogs.data` of each sample event: exactly what CloudWatch Logs puts into a
/// Kinesis record or a Firehose record for the same log events.
fn sample_data() -> Vec<String> {
    sample_events()
        .into_iter()
        .map(|(name, event)| {
            event["awslogs"]["data"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no awslogs.data"))
                .to_owned()
        })
        .collect()
}

fn sequence_number(index: usize) -> String {
    format!("49590338271490256608559692538361571095921575989136{index:06}")
}

fn kinesis_event(data: &[String]) -> Value {
    let records: Vec<Value> = data
        .iter()
        .enumerate()
        .map(|(index, data)| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "hsm-audit",
                    "sequenceNumber": sequence_number(index),
                    "data": data,
                    "approximateArrivalTimestamp": 1_516_067_329.824,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{}", sequence_number(index)),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/hsm-audit",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/hsm-audit",
            })
        })
        .collect();
    json!({ "Records": records })
}

fn firehose_event(data: &[String]) -> Value {
    let records: Vec<Value> = data
        .iter()
        .enumerate()
        .map(|(index, data)| {
            json!({"recordId": format!("record-{index}"), "approximateArrivalTimestamp": 1_516_067_329_824i64, "data": data})
        })
        .collect();
    json!({
        "invocationId": "invocation-1",
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/hsm-audit",
        "region": "us-east-1",
        "records": records,
    })
}

/// The runtime's own types accept the clean events: their shape is the one Lambda sends.
/// (Those types decode base64 while deserialising, so a batch with one bad record would
/// fail whole in them: one reason the handler reads events as plain JSON.)
#[test]
fn the_events_have_the_shape_lambda_sends() {
    let data = sample_data();
    serde_json::from_value::<aws_lambda_events::kinesis::KinesisEvent>(kinesis_event(&data))
        .expect("a Kinesis event");
    serde_json::from_value::<aws_lambda_events::firehose::KinesisFirehoseEvent>(firehose_event(
        &data,
    ))
    .expect("a Firehose event");
}

async fn direct_state() -> (DynamoStore, Vec<Item>) {
    let store = fresh_store("direct").await;
    let config = config_for(&store);
    for (name, event) in sample_events() {
        ingest_event(event, &store, &config)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    let state = scan_all(&store).await;
    (store, state)
}

fn failures(response: &Response) -> Vec<String> {
    let Response::Kinesis(response) = response else {
        panic!("not a Kinesis response: {response:?}")
    };
    let text = serde_json::to_value(response).expect("serialise");
    // The shape Lambda reads, exactly: anything else fails the whole batch.
    let listed: Vec<Value> = response
        .batch_item_failures
        .iter()
        .map(|failure| json!({"itemIdentifier": failure.item_identifier}))
        .collect();
    assert_eq!(text, json!({ "batchItemFailures": listed }));
    response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn a_kinesis_batch_of_the_samples_gives_the_table_of_direct_delivery() {
    let (direct, expected) = direct_state().await;
    let store = fresh_store("kinesis").await;
    let config = config_for(&store);
    let handled = process_event(kinesis_event(&sample_data()), &store, &config)
        .await
        .expect("handled");
    assert_eq!(failures(&handled.response), Vec::<String>::new());
    assert!(handled.report.records > 0);
    let sessions = store
        .sessions("cluster-demo", None, None, None)
        .await
        .expect("sessions");
    assert!(!sessions.is_empty());
    assert_eq!(
        sessions,
        direct
            .sessions("cluster-demo", None, None, None)
            .await
            .expect("sessions")
    );
    assert_same_state(&scan_all(&store).await, &expected, "cli vs handler");
}

#[tokio::test]
async fn a_poisoned_record_is_quarantined_and_reported_and_the_rest_of_the_batch_lands() {
    let (_, expected) = direct_state().await;
    let mut data = sample_data();
    data.insert(2, "this is not base64!".to_owned());
    data.insert(5, b64(&gzip(b"{\"not\": \"a subscription payload\"")));
    data.insert(7, b64(b"plain, not gzip"));
    let store = fresh_store("poison").await;
    let config = config_for(&store);
    let handled = process_event(kinesis_event(&data), &store, &config)
        .await
        .expect("bad data never fails the invocation");
    assert_eq!(
        failures(&handled.response),
        [2, 5, 7].map(sequence_number),
        "exactly the poisoned records are reported, so Lambda retries and then dead-letters them"
    );

    let quarantined = store.quarantined().await.expect("quarantine");
    for (index, reason) in [(2, "invalid base64"), (5, "invalid JSON"), (7, "not gzip")] {
        let label = format!("Kinesis record {}", sequence_number(index));
        assert!(
            quarantined
                .iter()
                .any(|item| item.reason.contains(&label) && item.reason.contains(reason)),
            "no quarantine item {label}: {reason}: {quarantined:#?}"
        );
    }
    // Everything else is exactly what direct delivery stored.
    let without_poison: Vec<Item> = scan_all(&store)
        .await
        .into_iter()
        .filter(|item| {
            let reason = item.get("reason").and_then(|value| value.as_s().ok());
            !reason.is_some_and(|reason| reason.starts_with("Kinesis record"))
        })
        .collect();
    assert_eq!(without_poison, expected);

    // Lambda retries the batch from the first reported record: the repeat changes nothing.
    let before = scan_all(&store).await;
    let retried = process_event(kinesis_event(&data), &store, &config)
        .await
        .expect("the retry is handled too");
    assert_eq!(failures(&retried.response), [2, 5, 7].map(sequence_number));
    assert_eq!(scan_all(&store).await, before);
}

/// A store on a port nothing listens on, retrying once: DynamoDB "down".
fn unreachable_store() -> DynamoStore {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("port").port();
    drop(listener);
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .build();
    DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), "unreachable")
}

/// DynamoDB refuses a record's trail write as invalid: every retry would fail alike, so
/// the record is quarantined whole (its data, to replay once the cause is fixed) instead
/// of being reported, and the shard moves on; the rest of the batch lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_a_retry_cannot_fix_is_quarantined_and_not_reported() {
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![
            Rule::on(
                "TransactWriteItems",
                Fault::Rejected {
                    kind: "com.amazon.coral.validate#ValidationException",
                    message: "Item size has exceeded the maximum allowed size",
                },
            )
            .times(1),
        ],
    )
    .await;
    let table = fresh_store("kinesis-rejected").await.table().to_owned();
    let store = DynamoStore::new(
        client_with_budget(
            &proxy.url(),
            "kinesis-rejected",
            std::time::Duration::from_secs(5),
        ),
        table,
    );
    let config = config_for(&store);
    let data = sample_data();
    let handled = process_event(kinesis_event(&data), &store, &config)
        .await
        .expect("a record that cannot be stored does not fail the batch");
    assert_eq!(failures(&handled.response), Vec::<String>::new());
    let refused: Vec<_> = store
        .quarantined()
        .await
        .expect("quarantine")
        .into_iter()
        .filter(|item| {
            item.reason
                .contains("refused TransactWriteItems as invalid")
        })
        .collect();
    let [item] = refused.as_slice() else {
        panic!("one record quarantined for the refusal: {refused:#?}")
    };
    let index = (0..data.len())
        .find(|index| {
            item.reason
                .starts_with(&format!("Kinesis record {}: ", sequence_number(*index)))
        })
        .unwrap_or_else(|| panic!("the reason names the record: {}", item.reason));
    assert_eq!(item.raw, data[index], "its data, to replay");
    assert!(handled.report.stored > 0, "the rest of the batch lands");
}

#[tokio::test]
async fn a_store_failure_reports_every_record_from_the_first_failing_one() {
    let store = unreachable_store();
    let config = config_for(&store);
    let mut data = sample_data();
    data.truncate(4);
    // A poisoned record first: its quarantine write fails too, and is reported.
    data.insert(0, "poison".to_owned());
    let handled = process_event(kinesis_event(&data), &store, &config)
        .await
        .expect("partial failure is a response, not an error");
    let expected: Vec<String> = (0..data.len()).map(sequence_number).collect();
    assert_eq!(failures(&handled.response), expected);
}

#[tokio::test]
async fn firehose_records_are_stored_and_passed_through() {
    let (direct, _) = direct_state().await;
    let mut data = sample_data();
    data.push("not base64 either!".to_owned());
    let store = fresh_store("firehose").await;
    let config = config_for(&store);
    let handled = process_event(firehose_event(&data), &store, &config)
        .await
        .expect("handled");
    let Response::Firehose(response) = &handled.response else {
        panic!("{:?}", handled.response)
    };
    let records: Vec<Value> = data
        .iter()
        .enumerate()
        .map(|(index, data)| json!({"recordId": format!("record-{index}"), "result": "Ok", "data": data}))
        .collect();
    assert_eq!(
        serde_json::to_value(response).expect("serialise"),
        json!({ "records": records }),
        "the shape Firehose reads"
    );
    assert_eq!(response.records.len(), data.len());
    for (index, record) in response.records.iter().enumerate() {
        assert_eq!(record.record_id, format!("record-{index}"));
        assert_eq!(record.result, "Ok");
        assert_eq!(record.data, data[index]);
    }
    assert_eq!(
        store
            .sessions("cluster-demo", None, None, None)
            .await
            .expect("sessions"),
        direct
            .sessions("cluster-demo", None, None, None)
            .await
            .expect("sessions")
    );
    let quarantined = store.quarantined().await.expect("quarantine");
    assert!(
        quarantined
            .iter()
            .any(|item| item.reason.starts_with("Firehose record record-"))
    );

    let error = process_event(firehose_event(&data), &unreachable_store(), &config).await;
    assert!(
        error.is_err(),
        "a store failure fails a Firehose invocation"
    );
}

#[tokio::test]
async fn the_cli_ingests_a_kinesis_event_file() {
    let (_, expected) = direct_state().await;
    let store = fresh_store("cli-kinesis").await;
    let dir = std::env::temp_dir().join(format!("hsm-audit-kinesis-{:08x}", fastrand::u32(..)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("kinesis-event.json");
    std::fs::write(&file, kinesis_event(&sample_data()).to_string()).expect("write");
    let file = file.to_str().expect("a UTF-8 temporary path");
    let output = cli(
        &["ingest", "--output", "json", file],
        store.table(),
        &endpoint(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_same_state(&scan_all(&store).await, &expected, "cli vs handler");
}
