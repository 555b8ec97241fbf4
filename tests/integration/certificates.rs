//! Certificate-storage records (the JSON stream named for the cluster) and HSM
//! replacement, through the real handler and the local DynamoDB.

use crate::common::*;
use hsm_audit::domain::{AlertKind, KeyState};
use hsm_audit::lambda::ingest_event;
use hsm_audit::model::AuditRecord;

const GROUP: &str = "/aws/cloudhsm/cluster-certs";
const CLUSTER: &str = "cluster-certs";
const HANDLE: u64 = 463180677312929947;

fn cert(handle: Option<u64>, op: &str, response: &str, attributes: &str, millis: i64) -> String {
    let handle = handle.map_or_else(|| "null".to_owned(), |h| h.to_string());
    format!(
        r#"{{"object_handle": {handle}, "op_code": "{op}", "response": "{response}", "attributes": {attributes}, "timestamp": {millis}}}"#
    )
}

#[tokio::test]
async fn certificate_records_form_lifecycles_and_nothing_is_quarantined() {
    let store = fresh_store("certs").await;
    let config = config_for(&store);
    let messages = [
        cert(Some(HANDLE), "CreateObject", "OK", "null", 1725482483671),
        cert(
            Some(463180678453346687),
            "SetAttributeValues",
            "OK",
            r#"["Label"]"#,
            1725482488004,
        ),
        cert(
            Some(HANDLE),
            "SetAttributeValues",
            "OK",
            r#"["Label", "Id"]"#,
            1725482489000,
        ),
        cert(
            None,
            "CreateObject",
            "MaxObjectsReached",
            "null",
            1726084937125,
        ),
        cert(Some(HANDLE), "DestroyObject", "OK", "null", 1726084999000),
    ];
    let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
    let report = ingest_event(
        subscription_event(GROUP, CLUSTER, 100, &refs),
        &store,
        &config,
    )
    .await
    .expect("handled");
    assert_eq!((report.records, report.quarantined), (5, 0));
    assert!(store.quarantined().await.expect("quarantine").is_empty());

    let lifecycle = store.keys(CLUSTER, Some(HANDLE)).await.expect("key");
    assert_eq!(lifecycle.len(), 1);
    let generation = &lifecycle[0];
    assert_eq!(
        (generation.kind.as_str(), generation.state),
        ("certificate", KeyState::Destroyed)
    );
    let ops: Vec<&str> = generation
        .events
        .iter()
        .map(|e| e.opcode.as_str())
        .collect();
    assert_eq!(ops, ["CreateObject", "SetAttributeValues", "DestroyObject"]);
    assert_eq!(
        generation.events[1].attributes,
        Some(vec!["Label".to_owned(), "Id".to_owned()])
    );

    let alerts = store.alerts(CLUSTER).await.expect("alerts");
    let storage: Vec<_> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::CertificateStorageError)
        .collect();
    assert_eq!(storage.len(), 1);
    assert!(
        storage[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("MaxObjectsReached")
    );

    let again = ingest_event(
        subscription_event(GROUP, CLUSTER, 100, &refs),
        &store,
        &config,
    )
    .await
    .expect("again");
    assert_eq!(
        (again.stored, again.duplicates),
        (0, 5),
        "log event ids make re-delivery a no-op"
    );
}

#[tokio::test]
async fn handles_beyond_two_to_the_53_round_trip_exactly() {
    let store = fresh_store("bighandles").await;
    let config = config_for(&store);
    let messages = [
        cert(Some(HANDLE), "CreateObject", "OK", "null", 1),
        cert(Some(u64::MAX), "CreateObject", "OK", "null", 2),
    ];
    let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
    ingest_event(
        subscription_event(GROUP, CLUSTER, 1, &refs),
        &store,
        &config,
    )
    .await
    .expect("handled");
    let trail = store.trail(CLUSTER, None).await.expect("trail");
    let handles: Vec<Option<u64>> = trail
        .iter()
        .map(|entry| match &entry.record {
            AuditRecord::Certificate(record) => record.object_handle,
            AuditRecord::CloudHsm(_) | AuditRecord::Luna(_) => None,
        })
        .collect();
    assert_eq!(handles, [Some(HANDLE), Some(u64::MAX)]);
    assert_eq!(
        store.keys(CLUSTER, Some(u64::MAX)).await.expect("key")[0].handle,
        u64::MAX
    );
    assert_eq!(
        store.keys(CLUSTER, Some(HANDLE)).await.expect("key")[0].handle,
        HANDLE
    );
    assert!(
        store
            .keys(CLUSTER, Some(HANDLE + 1))
            .await
            .expect("key")
            .is_empty(),
        "no float rounding merged them"
    );
}

#[tokio::test]
async fn a_payload_mixing_text_records_and_certificate_records_processes_both() {
    let store = fresh_store("mixed").await;
    let config = config_for(&store);
    let create = cert(Some(HANDLE), "CreateObject", "OK", "null", 1725482483671);
    let event = subscription_event(
        GROUP,
        "hsm-mixed",
        1,
        &[&seed_record("06-"), &create, &seed_record("07-")],
    );
    let report = ingest_event(event, &store, &config).await.expect("handled");
    assert_eq!((report.records, report.quarantined), (3, 0));
    assert_eq!(
        store
            .sessions(CLUSTER, Some("admin"), None, None)
            .await
            .expect("sessions")
            .len(),
        1
    );
    assert_eq!(
        store.keys(CLUSTER, Some(HANDLE)).await.expect("keys")[0].kind,
        "certificate"
    );
}

/// A replaced HSM's successor writes a new stream from sequence 0: neither its start nor
/// the old stream's end is a gap, and a key made on the old HSM ends on the new one.
#[tokio::test]
async fn hsm_replacement_is_neither_a_gap_nor_a_loss() {
    let store = fresh_store("replace").await;
    let config = config_for(&store);
    let record = |seq: u64, usecs: i64, opcode: &str, handle: u64, extra: &str| {
        format!(
            "Time: 01/24/18 00:39:23.172777, usecs:{usecs}\nSequence No : {seq:#x}\nReboot counter : 0x107\nCommand Type(hex) : CN_MGMT_CMD (0x0)\nOpcode : {opcode} (0x0)\nSession Handle : {handle:#x}\nResponse : 0:HSM Return: SUCCESS\n{extra}"
        )
    };
    let login = "Log type : MGMT_USER_DETAILS_LOG (2)\nUser Name : testuser\nUser Type : CN_CRYPTO_USER (1)";
    let key =
        "Log type : MGMT_KEY_DETAILS_LOG (1)\nPriv/Secret Key Handle : 42\nPublic Key Handle : 0";
    let old = [
        record(0, 1_000_000, "CN_LOGIN", 0xc008002, login),
        record(1, 2_000_000, "CN_GENERATE_KEY", 0xc008004, key),
        record(2, 3_000_000, "CN_LOGOUT", 0xc008004, login),
    ];
    let new = [
        record(0, 10_000_000, "CN_LOGIN", 0x7004004, login),
        record(1, 11_000_000, "CN_DESTROY_OBJECT", 0x7004003, key),
        record(2, 12_000_000, "CN_LOGOUT", 0x7004003, login),
    ];
    let old_refs: Vec<&str> = old.iter().map(String::as_str).collect();
    let new_refs: Vec<&str> = new.iter().map(String::as_str).collect();
    ingest_event(
        subscription_event(GROUP, "hsm-old", 1, &old_refs),
        &store,
        &config,
    )
    .await
    .expect("old");
    ingest_event(
        subscription_event(GROUP, "hsm-new", 10, &new_refs),
        &store,
        &config,
    )
    .await
    .expect("new");

    let alerts = store.alerts(CLUSTER).await.expect("alerts");
    assert!(
        alerts.iter().all(|a| a.kind != AlertKind::SequenceGap),
        "{alerts:#?}"
    );
    let key = store.keys(CLUSTER, Some(42)).await.expect("key");
    assert_eq!(key.len(), 1);
    assert_eq!(key[0].state, KeyState::Destroyed);
    assert_eq!(key[0].created_by.as_deref(), Some("testuser"));
    let sessions = store
        .sessions(CLUSTER, Some("testuser"), None, None)
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 2);
    assert!(
        sessions
            .iter()
            .all(|s| s.ended_by.as_deref() == Some("CN_LOGOUT"))
    );
    let streams = store.streams(CLUSTER).await.expect("streams");
    assert!(
        streams.iter().all(|s| s.first_seq == 0 && s.missing == 0),
        "{streams:#?}"
    );
}
