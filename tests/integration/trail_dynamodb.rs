//! The trail through the real handler into the local DynamoDB server.

use crate::common::*;
use hsm_audit::lambda::ingest_event;
use hsm_audit::model::Opcode;

const GROUP: &str = "/aws/cloudhsm/cluster-test";

#[tokio::test]
async fn ingesting_the_sample_events_twice_leaves_the_table_unchanged() {
    let store = fresh_store("twice").await;
    let config = config_for(&store);
    for (_, event) in sample_events() {
        ingest_event(event, &store, &config)
            .await
            .expect("first delivery");
    }
    let first = scan_all(&store).await;
    assert!(
        first.len() > 40,
        "the samples hold 32 records and their views: {}",
        first.len()
    );
    let mut duplicates = 0;
    for (_, event) in sample_events() {
        let report = ingest_event(event, &store, &config)
            .await
            .expect("second delivery");
        assert_eq!(report.stored, 0, "nothing is new the second time");
        duplicates += report.duplicates;
    }
    assert!(
        duplicates >= 31,
        "every record is recognised as re-delivered: {duplicates}"
    );
    assert_same_state(&scan_all(&store).await, &first, "after the second delivery");
}

#[tokio::test]
async fn records_keep_their_identity_and_cloudwatch_origin() {
    let store = fresh_store("origin").await;
    let config = config_for(&store);
    let login = seed_record("06-");
    let logout = seed_record("07-");
    let event = subscription_event(GROUP, "hsm-one", 36_000_000_000, &[&login, &logout]);
    let report = ingest_event(event, &store, &config).await.expect("handled");
    assert_eq!(
        (report.records, report.stored, report.quarantined),
        (2, 2, 0)
    );

    let trail = store
        .trail("cluster-test", Some("hsm-one"))
        .await
        .expect("trail");
    assert_eq!(trail.len(), 2);
    assert_eq!(trail[0].cloudhsm().unwrap().opcode, Opcode::Login);
    assert_eq!(trail[0].cloudhsm().unwrap().sequence_no, 0);
    assert_eq!(trail[0].cloudhsm().unwrap().reboot_counter, 0x107);
    assert_eq!(trail[0].log_event_id, "36000000000");
    assert_eq!(trail[0].log_event_time.iso(), "2018-01-16T01:48:49.824000Z");
    assert_eq!(trail[0].raw, login);
    assert_eq!(trail[1].cloudhsm().unwrap().opcode, Opcode::Logout);
    assert!(
        store
            .trail("cluster-test", Some("hsm-other"))
            .await
            .expect("trail")
            .is_empty()
    );
}

#[tokio::test]
async fn every_kind_of_bad_input_is_quarantined_and_the_good_records_kept() {
    let store = fresh_store("bad").await;
    let mut config = config_for(&store);
    config.max_inflated_bytes = 64 * 1024;
    let good = subscription_event(
        GROUP,
        "hsm-good",
        1,
        &[
            &seed_record("06-"),
            "hsm agent restarted",
            &seed_record("07-"),
        ],
    );
    let gz = gzip(good.to_string().as_bytes());
    let bad_events = [
        (
            "invalid base64",
            serde_json::json!({"awslogs": {"data": "!!not base64!!"}}),
        ),
        (
            "not gzip",
            serde_json::json!({"awslogs": {"data": b64(b"plain text")}}),
        ),
        (
            "truncated or corrupt gzip",
            serde_json::json!({"awslogs": {"data": b64(&gz[..gz.len() / 2])}}),
        ),
        (
            "exceeds the cap",
            serde_json::json!({"awslogs": {"data": b64(&gzip(&vec![b' '; 1 << 20]))}}),
        ),
        (
            "invalid JSON",
            serde_json::json!({"awslogs": {"data": b64(&gzip(b"{\"logEvents\": [1,"))}}),
        ),
        (
            "not a CloudWatch Logs subscription payload",
            serde_json::json!({"awslogs": {"data": b64(&gzip(b"{\"hello\": 1}"))}}),
        ),
        ("unrecognised event", serde_json::json!({"Records": "nope"})),
    ];
    for (_, event) in &bad_events {
        let report = ingest_event(event.clone(), &store, &config)
            .await
            .expect("bad input never fails the invocation");
        assert_eq!(report.quarantined, 1);
    }
    let report = ingest_event(good, &store, &config).await.expect("good");
    assert_eq!((report.records, report.quarantined), (2, 1));

    let quarantined = store.quarantined().await.expect("quarantine");
    for (reason, _) in &bad_events {
        assert!(
            quarantined.iter().any(|q| q.reason.contains(reason)),
            "no item with reason {reason:?}: {quarantined:#?}"
        );
    }
    let junk = quarantined
        .iter()
        .find(|q| q.raw == "hsm agent restarted")
        .expect("the non-record message");
    assert!(junk.reason.contains("not an audit record"));
    assert_eq!(junk.log_stream.as_deref(), Some("hsm-good"));
    assert_eq!(junk.log_event_id.as_deref(), Some("2"));
    let bomb = quarantined
        .iter()
        .find(|q| q.reason.contains("exceeds the cap"))
        .expect("bomb");
    assert!(
        bomb.raw_bytes < 16 * 1024,
        "what is kept is the compressed input, not its inflation"
    );
    assert_eq!(
        store
            .trail("cluster-test", None)
            .await
            .expect("trail")
            .len(),
        2,
        "the good records beside the bad one"
    );
}

#[tokio::test]
async fn a_control_message_is_acknowledged_without_writes() {
    let store = fresh_store("control").await;
    let config = config_for(&store);
    let (_, control) = sample_events()
        .into_iter()
        .find(|(name, _)| name.contains("control"))
        .expect("control sample");
    let report = ingest_event(control, &store, &config)
        .await
        .expect("handled");
    assert_eq!(report.control_messages, 1);
    assert!(scan_all(&store).await.is_empty());
}

#[tokio::test]
async fn a_conflicting_duplicate_keeps_the_first_record_and_is_recorded() {
    let store = fresh_store("conflict").await;
    let config = config_for(&store);
    let original = seed_record("06-");
    let forged = original.replace("User Name : admin", "User Name : mallory");
    ingest_event(
        subscription_event(GROUP, "hsm-one", 1, &[&original]),
        &store,
        &config,
    )
    .await
    .expect("first");
    let report = ingest_event(
        subscription_event(GROUP, "hsm-one", 2, &[&forged]),
        &store,
        &config,
    )
    .await
    .expect("second");
    assert_eq!((report.stored, report.conflicts), (0, 1));

    let trail = store.trail("cluster-test", None).await.expect("trail");
    assert_eq!(trail.len(), 1);
    assert_eq!(
        trail[0].cloudhsm().unwrap().user_name.as_deref(),
        Some("admin"),
        "first stored wins"
    );
    let alerts = store.alerts("cluster-test").await.expect("alerts");
    assert!(
        alerts
            .iter()
            .any(|a| a.kind.as_str() == "conflicting_duplicate" && a.seq == Some(0)),
        "{alerts:#?}"
    );
}
