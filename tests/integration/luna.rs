//! Thales Luna Cloud HSM (DPoD) records, built from the seed's fields and complete action
//! list, through the real handler (CloudWatch subscription), the DPoD file reader (a ZIP
//! holding a JSON array, as the Audit Query API delivers it) and the local DynamoDB; and
//! a property test that the derived views do not depend on the order of a second's records.

use std::io::{Cursor, Write};

use crate::common::*;
use hsm_audit::decode::decode_luna_file;
use hsm_audit::domain::{AlertKind, DeriveConfig, KeyGeneration, KeyState, derive};
use hsm_audit::lambda::ingest_event;
use hsm_audit::model::AuditRecord;
use hsm_audit::pipeline::{ingest, parse_decoded};
use hsm_audit::store::dynamodb::DynamoStore;
use proptest::prelude::*;

/// The seed's complete list of actions recorded by the audit log system.
const ACTIONS: [&str; 45] = [
    "LUNA_CANCEL_CRYPTO_OPERATION",
    "LUNA_CLONE_AS_SOURCE",
    "LUNA_CLONE_AS_TARGET",
    "LUNA_CLONE_AS_TARGET_INIT",
    "LUNA_COPY_OBJECT",
    "LUNA_CREATE_OBJECT",
    "LUNA_DECRYPT",
    "LUNA_DECRYPT_END",
    "LUNA_DECRYPT_INIT",
    "LUNA_DECRYPT_SINGLEPART",
    "LUNA_DERIVE_KEY",
    "LUNA_DERIVE_KEY_AND_WRAP",
    "LUNA_DESTROY_OBJECT",
    "LUNA_DIGEST",
    "LUNA_DIGEST_END",
    "LUNA_DIGEST_INIT",
    "LUNA_DIGEST_KEY",
    "LUNA_DIGEST_KEY_VALUE",
    "LUNA_ENCRYPT",
    "LUNA_ENCRYPT_END",
    "LUNA_ENCRYPT_INIT",
    "LUNA_ENCRYPT_SINGLEPART",
    "LUNA_GENERATE_DOMAIN_PARAM",
    "LUNA_GENERATE_KEY",
    "LUNA_GENERATE_KEY_PAIR",
    "LUNA_GEN_KCV",
    "LUNA_INIT_PIN",
    "LUNA_LOGIN",
    "LUNA_MODIFY_OBJECT",
    "LUNA_PARTITION_INIT",
    "LUNA_PARTITION_ZEROIZE",
    "LUNA_REPLICATE_AS_SOURCE",
    "LUNA_REPLICATE_AS_TARGET",
    "LUNA_REPLICATE_AS_TARGET_INIT",
    "LUNA_SET_PIN",
    "LUNA_SIGN",
    "LUNA_SIGN_END",
    "LUNA_SIGN_INIT",
    "LUNA_SIGN_SINGLEPART",
    "LUNA_UNWRAP_KEY",
    "LUNA_VERIFY",
    "LUNA_VERIFY_END",
    "LUNA_VERIFY_INIT",
    "LUNA_VERIFY_SINGLEPART",
    "LUNA_WRAP_KEY",
];

const SERVICE: &str = "f59a597b-19b9-41df-b479-1530ed60fca3";
const PARTITION: &str = "1334049524932";
const APP: &str = "d5fa3ace-a79f-40ba-8e21-3ebf0bf0250a";
const INTRUDER: &str = "0badc0de-0000-4000-8000-000000000001";
/// 2022-10-30T14:52:47Z.
const T0: i64 = 1_667_141_567;

/// One record as the seed documents it: `meta` a JSON string.
fn record(
    seconds: i64,
    actor: &str,
    action: &str,
    status: &str,
    ouids: &str,
    role: &str,
) -> String {
    let ouids = if ouids.is_empty() {
        "null".to_owned()
    } else {
        format!("\"{ouids}\"")
    };
    let meta = format!(
        r#"{{"clientip":"203.0.113.7","hsmid":"567782","ouids":{ouids},"partid":"{PARTITION}","role":"{role}"}}"#
    );
    serde_json::json!({
        "time": chrono_time(seconds),
        "source": format!("thales/cloudhsm/{PARTITION}"),
        "resourceid": SERVICE,
        "actorid": actor,
        "tenantid": "b863768a-9b90-4a6a-b8ec-01a7b46a6ca3",
        "action": action,
        "status": status,
        "meta": meta,
    })
    .to_string()
}

/// `2022-10-30 14:52:47 UTC`, the time as DPoD export files write it.
fn chrono_time(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // 2022-10-30 is day 19295 since the epoch; the tests stay within that day.
    assert_eq!(days, 19_295, "test times stay on 2022-10-30");
    format!(
        "2022-10-30 {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn ok(seconds: i64, action: &str, ouids: &str) -> String {
    record(seconds, APP, action, "LUNA_RET_OK", ouids, "CO")
}

/// A morning of one application and one intruder on one partition.
fn scenario() -> Vec<String> {
    let mut messages = vec![
        ok(T0, "LUNA_LOGIN", ""),
        ok(T0 + 1, "LUNA_GENERATE_KEY", "0a0100000f000000"),
        ok(T0 + 2, "LUNA_SIGN_INIT", "0a0100000f000000"),
        ok(T0 + 2, "LUNA_SIGN", "0a0100000f000000"),
        ok(T0 + 3, "LUNA_WRAP_KEY", "0a0100000f000000"),
        ok(T0 + 4, "LUNA_MODIFY_OBJECT", "0a0100000f000000"),
        ok(T0 + 5, "LUNA_DESTROY_OBJECT", "0a0100000f000000"),
        ok(T0 + 6, "LUNA_GENERATE_KEY_PAIR", "0b01,0b02"),
        record(
            T0 + 7,
            APP,
            "LUNA_PARTITION_ZEROIZE",
            "LUNA_RET_USER_NOT_AUTHORIZED",
            "",
            "CO",
        ),
        record(T0 + 8, APP, "LUNA_PARTITION_INIT", "LUNA_RET_OK", "", "PO"),
    ];
    // The intruder: five wrong PINs within four minutes.
    for minute in 0..5 {
        messages.push(record(
            T0 + 60 + minute * 60,
            INTRUDER,
            "LUNA_LOGIN",
            "LUNA_RET_PIN_INCORRECT",
            "",
            "CO",
        ));
    }
    // Every action of the seed's list parses and is kept, an hour later (a new session).
    for (index, action) in ACTIONS.iter().enumerate() {
        messages.push(ok(T0 + 3600 + index as i64, action, "0c01"));
    }
    messages
}

fn by_object<'a>(keys: &'a [KeyGeneration], object: &str) -> Vec<&'a KeyGeneration> {
    keys.iter()
        .filter(|key| key.object_id.as_deref() == Some(object))
        .collect()
}

async fn check_views(store: &DynamoStore, cluster: &str) {
    let failed = store
        .failed_logins(cluster, None, None)
        .await
        .expect("failed logins");
    assert_eq!(failed.len(), 5, "{failed:#?}");
    assert!(failed.iter().all(|login| login.brute_force
        && login.user == INTRUDER
        && login.user_type.as_deref() == Some("CO")
        && login.hsm == PARTITION
        && login.response == "LUNA_RET_PIN_INCORRECT"));

    let alerts = store.alerts(cluster).await.expect("alerts");
    let brute: Vec<_> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::BruteForce)
        .collect();
    assert_eq!(brute.len(), 1, "{alerts:#?}");
    assert_eq!(brute[0].user.as_deref(), Some(INTRUDER));
    assert_eq!(
        brute[0].opcode.as_ref().map(|o| o.as_str()),
        Some("LUNA_LOGIN")
    );
    let sensitive: Vec<&str> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::SensitiveOperation)
        .filter_map(|a| a.opcode.as_ref().map(|o| o.as_str()))
        .collect();
    for expected in [
        "LUNA_PARTITION_ZEROIZE",
        "LUNA_PARTITION_INIT",
        "LUNA_WRAP_KEY",
    ] {
        assert!(sensitive.contains(&expected), "{expected}: {sensitive:?}");
    }
    let zeroize = alerts
        .iter()
        .find(|a| a.opcode.as_ref().map(|o| o.as_str()) == Some("LUNA_PARTITION_ZEROIZE"))
        .expect("zeroize alert");
    assert!(
        zeroize
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("failed: LUNA_RET_USER_NOT_AUTHORIZED"),
        "a refused zeroize is alerted with its status"
    );

    let keys = store.keys(cluster, None).await.expect("keys");
    let [key] = by_object(&keys, "0a0100000f000000")[..] else {
        panic!("{keys:#?}")
    };
    assert_eq!(
        (key.handle, key.generation, key.state, key.kind.as_str()),
        (0, 1, KeyState::Destroyed, "secret")
    );
    assert!(key.exported);
    assert_eq!(key.created_by.as_deref(), Some(APP));
    assert_eq!(key.hsms, [PARTITION]);
    let ops: Vec<&str> = key.events.iter().map(|e| e.opcode.as_str()).collect();
    assert_eq!(
        ops,
        [
            "LUNA_GENERATE_KEY",
            "LUNA_SIGN_INIT",
            "LUNA_SIGN",
            "LUNA_WRAP_KEY",
            "LUNA_MODIFY_OBJECT",
            "LUNA_DESTROY_OBJECT"
        ]
    );
    for half in ["0b01", "0b02"] {
        let [pair] = by_object(&keys, half)[..] else {
            panic!("{keys:#?}")
        };
        assert_eq!(
            (pair.kind.as_str(), pair.state),
            ("key_pair", KeyState::Active)
        );
    }
    // The object of the full action list, in alphabetical order: used before any create
    // (generation 0), created by LUNA_COPY_OBJECT, destroyed, generated again.
    let lifecycle = by_object(&keys, "0c01");
    let summary: Vec<_> = lifecycle
        .iter()
        .map(|key| {
            (
                key.generation,
                key.kind.as_str(),
                key.state,
                key.created_opcode.as_ref().map(|o| o.as_str().to_owned()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (0, "unknown", KeyState::Active, None),
            (
                1,
                "object",
                KeyState::Destroyed,
                Some("LUNA_COPY_OBJECT".to_owned())
            ),
            (
                2,
                "secret",
                KeyState::Active,
                Some("LUNA_GENERATE_KEY".to_owned())
            ),
        ]
    );
    assert!(lifecycle[2].exported, "LUNA_WRAP_KEY comes last");

    let sessions = store
        .sessions(cluster, Some(APP), None, None)
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    assert_eq!(sessions[0].ended_by.as_deref(), Some("INACTIVITY"));
    assert_eq!(sessions[0].origin_hsm, PARTITION);
    assert_eq!(sessions[0].user_type.as_deref(), Some("CO"));
    assert_eq!(
        sessions[1].ended_by, None,
        "the last session is within the window of the partition's newest record"
    );
    assert!(
        store
            .sessions(cluster, Some(INTRUDER), None, None)
            .await
            .expect("sessions")
            .is_empty(),
        "failed logins open no session"
    );
    assert!(store.quarantined().await.expect("quarantine").is_empty());
}

#[tokio::test]
async fn luna_records_through_the_subscription_give_failed_logins_lifecycles_and_alerts() {
    let store = fresh_store("luna-cw").await;
    let config = config_for(&store);
    let group = "/dpod/luna/service-1";
    let messages = scenario();
    let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
    let report = ingest_event(
        subscription_event(group, PARTITION, 1000, &refs),
        &store,
        &config,
    )
    .await
    .expect("handled");
    assert_eq!((report.records, report.quarantined), (messages.len(), 0));
    assert_eq!(report.failed_logins, 5);
    check_views(&store, group).await;

    let trail = store.trail(group, None).await.expect("trail");
    assert_eq!(trail.len(), messages.len());
    let AuditRecord::Luna(first) = &trail[0].record else {
        panic!("{:?}", trail[0])
    };
    assert_eq!(first.resource_id.as_deref(), Some(SERVICE));

    let again = ingest_event(
        subscription_event(group, PARTITION, 1000, &refs),
        &store,
        &config,
    )
    .await
    .expect("again");
    assert_eq!((again.stored, again.duplicates), (0, messages.len()));
}

fn zip_of(entry: &str, content: &[u8]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    writer
        .start_file(
            entry,
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .expect("zip entry");
    writer.write_all(content).expect("zip write");
    writer.finish().expect("zip finish").into_inner()
}

#[tokio::test]
async fn a_dpod_zip_export_is_ingested_under_its_service_and_again_is_a_no_op() {
    let store = fresh_store("luna-zip").await;
    let config = config_for(&store);
    let messages = scenario();
    let array = format!("[{}]", messages.join(",\n"));
    let zipped = zip_of("audit-log-export.json", array.as_bytes());

    let decoded = decode_luna_file(&zipped, "export.zip", None, config.max_inflated_bytes);
    let report = ingest(&store, &config, parse_decoded(decoded))
        .await
        .expect("ingested");
    assert_eq!((report.records, report.quarantined), (messages.len(), 0));
    assert!(report.clusters.contains(SERVICE), "{:?}", report.clusters);
    check_views(&store, SERVICE).await;

    let decoded = decode_luna_file(&zipped, "export.zip", None, config.max_inflated_bytes);
    let again = ingest(&store, &config, parse_decoded(decoded))
        .await
        .expect("again");
    assert_eq!((again.stored, again.duplicates), (0, messages.len()));
}

#[tokio::test]
async fn a_payload_mixing_cloudhsm_and_luna_messages_processes_both() {
    let store = fresh_store("luna-mixed").await;
    let config = config_for(&store);
    let group = "/aws/cloudhsm/cluster-both";
    let cluster = "cluster-both";
    let luna_login = ok(T0, "LUNA_LOGIN", "");
    let luna_key = ok(T0 + 1, "LUNA_GENERATE_KEY", "0d01");
    let event = subscription_event(
        group,
        "hsm-mixed",
        1,
        &[
            &seed_record("06-"),
            &luna_login,
            &luna_key,
            &seed_record("07-"),
        ],
    );
    let report = ingest_event(event, &store, &config).await.expect("handled");
    assert_eq!((report.records, report.quarantined), (4, 0));
    let admin = store
        .sessions(cluster, Some("admin"), None, None)
        .await
        .expect("sessions");
    assert_eq!(admin.len(), 1);
    assert_eq!(admin[0].ended_by.as_deref(), Some("CN_LOGOUT"));
    let app = store
        .sessions(cluster, Some(APP), None, None)
        .await
        .expect("sessions");
    assert_eq!(app.len(), 1);
    assert_eq!(app[0].events.len(), 2);
    let keys = store.keys(cluster, None).await.expect("keys");
    assert_eq!(by_object(&keys, "0d01").len(), 1);
    let streams = store.streams(cluster).await.expect("streams");
    assert_eq!(
        streams.iter().map(|s| s.records).sum::<u64>(),
        2,
        "Luna records have no sequence: they are no part of a stream's integrity"
    );
}

/// Records of a few seconds on one object and one actor, with creates, uses and
/// destroys in the same second.
fn second_batch() -> impl Strategy<Value = Vec<String>> {
    let action = prop::sample::select(vec![
        "LUNA_GENERATE_KEY",
        "LUNA_CREATE_OBJECT",
        "LUNA_DERIVE_KEY",
        "LUNA_SIGN",
        "LUNA_WRAP_KEY",
        "LUNA_REPLICATE_AS_TARGET",
        "LUNA_DESTROY_OBJECT",
        "LUNA_LOGIN",
        "LUNA_PARTITION_ZEROIZE",
    ]);
    let status = prop::sample::select(vec!["LUNA_RET_OK", "LUNA_RET_OK", "LUNA_RET_PIN_INCORRECT"]);
    let object = prop::sample::select(vec!["e1", "e2", "e1,e2"]);
    let actor = prop::sample::select(vec![APP, INTRUDER]);
    prop::collection::vec((0i64..3, action, status, object, actor), 1..24).prop_map(|records| {
        records
            .into_iter()
            .map(|(second, action, status, object, actor)| {
                record(T0 + second * 400, actor, action, status, object, "CO")
            })
            .collect()
    })
}

fn derive_file(messages: &[String]) -> hsm_audit::domain::Derived {
    let array = format!("[{}]", messages.join(","));
    let parsed = parse_decoded(decode_luna_file(array.as_bytes(), "f.json", None, 1 << 24));
    assert!(parsed.quarantined.is_empty(), "{:?}", parsed.quarantined);
    let entries: Vec<_> = parsed.records().cloned().collect();
    derive(&entries, &[], &DeriveConfig::default())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn luna_views_do_not_depend_on_the_order_of_a_seconds_records(
        (messages, shuffled) in second_batch().prop_flat_map(|messages| {
            let shuffled = Just(messages.clone()).prop_shuffle();
            (Just(messages), shuffled)
        })
    ) {
        prop_assert_eq!(derive_file(&messages), derive_file(&shuffled));
    }
}
