//! Issue 17: what one hostile record or one unlucky writer does must not poison a
//! cluster, lose its neighbours, leak across users, or overwrite the first stored record.
//! Every test goes through the real handler and store against the local DynamoDB.

use crate::common::*;
use hsm_audit::lambda::ingest_event;

const CLUSTER: &str = "cluster-hostile";
const GROUP: &str = "/aws/cloudhsm/cluster-hostile";
/// 2018-01-16T01:48:49.824999Z, the vendor example's login.
const T0: i64 = 1_516_067_329_824_999;

/// A CloudHSM audit record as the HSM logs it.
fn message(usecs: i64, seq: u64, reboot: u32, opcode: &str, response: &str, user: &str) -> String {
    let code = match opcode {
        "CN_LOGIN" => 0xd,
        "CN_LOGOUT" => 0xe,
        _ => 0x0,
    };
    let time = chrono::DateTime::from_timestamp_micros(usecs)
        .map(|time| time.format("%m/%d/%y %H:%M:%S%.6f").to_string())
        .unwrap_or_else(|| "01/01/70 00:00:00.000000".to_owned());
    format!(
        "Time: {time}, usecs:{usecs}\nSequence No : {seq:#x}\nReboot counter : {reboot:#x}\n\
         Command Type(hex) : CN_MGMT_CMD (0x0)\nOpcode : {opcode} ({code:#x})\n\
         Session Handle : 0x7014006\nResponse : {response}\n\
         Log type : MGMT_USER_DETAILS_LOG (2)\nUser Name : {user}\n\
         User Type : CN_CRYPTO_OFFICER (2)\n"
    )
}

fn login(usecs: i64, seq: u64, reboot: u32, user: &str) -> String {
    message(
        usecs,
        seq,
        reboot,
        "CN_LOGIN",
        "0:HSM Return: SUCCESS",
        user,
    )
}

fn logout(usecs: i64, seq: u64, reboot: u32, user: &str) -> String {
    message(
        usecs,
        seq,
        reboot,
        "CN_LOGOUT",
        "0:HSM Return: SUCCESS",
        user,
    )
}

fn failed_login(usecs: i64, seq: u64, reboot: u32, user: &str) -> String {
    message(
        usecs,
        seq,
        reboot,
        "CN_LOGIN",
        "163:HSM Error: RET_USER_LOGIN_FAILURE",
        user,
    )
}

async fn deliver(
    store: &hsm_audit::store::dynamodb::DynamoStore,
    stream: &str,
    id_base: u64,
    messages: &[String],
) -> hsm_audit::pipeline::Report {
    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
    let event = subscription_event(GROUP, stream, id_base, &messages);
    ingest_event(event, store, &config_for(store))
        .await
        .expect("the delivery is handled")
}

#[tokio::test]
async fn a_user_named_like_a_key_prefix_stays_out_of_another_users_sessions() {
    let store = fresh_store("keys-user").await;
    let mut records = Vec::new();
    for (index, user) in ["alice", "alice#evil", "alice#2018-01-16T01:00:00.000000Z"]
        .into_iter()
        .enumerate()
    {
        let seq = index as u64 * 2;
        records.push(login(T0 + seq as i64, seq, 1, user));
        records.push(logout(T0 + seq as i64 + 1, seq + 1, 1, user));
    }
    deliver(&store, "hsm-a", 1, &records).await;

    let sessions = store
        .sessions(CLUSTER, Some("alice"), None, None)
        .await
        .expect("sessions");
    let users: Vec<&str> = sessions.iter().map(|s| s.user.as_str()).collect();
    assert_eq!(users, ["alice"]);
    let from = hsm_audit::model::Timestamp::from_micros(T0 - 1_000_000);
    let to = hsm_audit::model::Timestamp::from_micros(T0 + 1_000_000);
    let ranged = store
        .sessions(CLUSTER, Some("alice"), Some(from), Some(to))
        .await
        .expect("sessions in a range");
    let users: Vec<&str> = ranged.iter().map(|s| s.user.as_str()).collect();
    assert_eq!(users, ["alice"], "with --from/--to too");
    let evil = store
        .sessions(CLUSTER, Some("alice#evil"), None, None)
        .await
        .expect("sessions");
    assert_eq!(evil.len(), 1);
    assert_eq!(evil[0].user, "alice#evil");
}

#[tokio::test]
async fn an_hsm_named_like_another_hsms_key_prefix_keeps_its_own_trail() {
    let store = fresh_store("keys-hsm").await;
    deliver(&store, "hsm-a", 1, &[login(T0, 0, 1, "admin")]).await;
    deliver(
        &store,
        "hsm-a#x",
        2,
        &[login(T0, 0, 1, "admin"), logout(T0 + 1, 1, 1, "admin")],
    )
    .await;
    let trail = store.trail(CLUSTER, Some("hsm-a")).await.expect("trail");
    assert_eq!(trail.len(), 1);
    assert!(trail.iter().all(|entry| &*entry.stream().hsm == "hsm-a"));
    assert_eq!(
        store
            .trail(CLUSTER, Some("hsm-a#x"))
            .await
            .expect("trail")
            .len(),
        2
    );
}

/// A 300-character stream name used to be cut to 183 characters, `~` and 16 digest
/// digits: a CloudWatch-valid 200-character name equal to that form was the same HSM.
#[tokio::test]
async fn a_long_stream_name_and_a_name_equal_to_its_old_cut_form_stay_two_hsms() {
    let store = fresh_store("keys-long").await;
    let long = "h".repeat(300);
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(long.as_bytes()))
    };
    let old_cut = format!("{}~{}", &long[..183], &digest[..16]);
    assert_eq!(old_cut.len(), 200);
    let first = deliver(&store, &long, 1, &[login(T0, 0, 1, "admin")]).await;
    let second = deliver(&store, &old_cut, 2, &[login(T0 + 5, 0, 1, "other")]).await;
    assert_eq!((first.stored, second.stored), (1, 1));
    assert_eq!((second.conflicts, second.duplicates), (0, 0));
    for (hsm, user) in [(&long, "admin"), (&old_cut, "other")] {
        let trail = store.trail(CLUSTER, Some(hsm)).await.expect("trail");
        assert_eq!(trail.len(), 1, "{hsm}");
        assert_eq!(&*trail[0].stream().hsm, hsm.as_str());
        let sessions = store
            .sessions(CLUSTER, Some(user), None, None)
            .await
            .expect("sessions");
        assert_eq!(sessions.len(), 1, "{user}'s session is kept");
    }
}

#[tokio::test]
async fn long_user_names_sharing_a_start_keep_their_own_sessions() {
    let store = fresh_store("keys-longuser").await;
    let start = "u".repeat(400);
    let (one, two) = (format!("{start}1"), format!("{start}2"));
    deliver(
        &store,
        "hsm-a",
        1,
        &[login(T0, 0, 1, &one), login(T0, 1, 1, &two)],
    )
    .await;
    for user in [&one, &two] {
        let sessions = store
            .sessions(CLUSTER, Some(user), None, None)
            .await
            .expect("sessions");
        assert_eq!(sessions.len(), 1);
        assert_eq!(&sessions[0].user, user);
    }
}

#[tokio::test]
async fn quarantine_entries_of_groups_and_streams_that_join_alike_stay_two() {
    let store = fresh_store("keys-quarantine").await;
    for (group, stream) in [("/aws/cloudhsm/C#s", "x"), ("/aws/cloudhsm/C", "s#x")] {
        let event = subscription_event(group, stream, 7, &["not an audit record"]);
        let report = ingest_event(event, &store, &config_for(&store))
            .await
            .expect("handled");
        assert_eq!(report.quarantined, 1);
    }
    let quarantined = store.quarantined().await.expect("quarantine");
    let mut origins: Vec<(String, String)> = quarantined
        .iter()
        .map(|q| {
            (
                q.log_group.clone().unwrap_or_default(),
                q.log_stream.clone().unwrap_or_default(),
            )
        })
        .collect();
    origins.sort();
    assert_eq!(
        origins,
        [
            ("/aws/cloudhsm/C".to_owned(), "s#x".to_owned()),
            ("/aws/cloudhsm/C#s".to_owned(), "x".to_owned())
        ]
    );
}

/// Issue 17 item 6: two boots of one HSM restart the sequence; a session and a failed
/// login of each boot at the same sequence number and time are two, not one.
#[tokio::test]
async fn sessions_and_failed_logins_of_two_boots_at_one_sequence_and_time_are_kept() {
    let store = fresh_store("keys-boots").await;
    let mut records = Vec::new();
    for boot in [1, 2] {
        records.push(login(T0, 0, boot, "admin"));
        records.push(failed_login(T0 + 10, 1, boot, "admin"));
    }
    let report = deliver(&store, "hsm-a", 1, &records).await;
    assert_eq!(report.stored, 4);
    let sessions = store
        .sessions(CLUSTER, Some("admin"), None, None)
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 2, "one session per boot: {sessions:#?}");
    let failed = store
        .failed_logins(CLUSTER, None, None)
        .await
        .expect("failed logins");
    let mut boots: Vec<u32> = failed.iter().map(|f| f.reboot_counter).collect();
    boots.sort();
    assert_eq!(boots, [1, 2]);
}

/// A subscription event whose log events carry their own CloudWatch timestamps (ms).
fn timed_event(stream: &str, id_base: u64, events: &[(i64, &str)]) -> serde_json::Value {
    let events: Vec<serde_json::Value> = events
        .iter()
        .enumerate()
        .map(|(index, (timestamp, message))| {
            serde_json::json!({"id": (id_base + index as u64).to_string(), "timestamp": timestamp, "message": message})
        })
        .collect();
    let payload = serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": GROUP,
        "logStream": stream,
        "subscriptionFilters": ["hsm-audit"],
        "logEvents": events,
    });
    serde_json::json!({"awslogs": {"data": b64(&gzip(payload.to_string().as_bytes()))}})
}

/// Issue 17 item 2: a time in year 10000 used to be stored and then fail every read.
#[tokio::test]
async fn far_future_times_are_quarantined_and_the_cluster_stays_readable() {
    let store = fresh_store("time").await;
    let year_10000_usecs = 253_402_300_800_000_000;
    let far_record = login(year_10000_usecs, 0, 1, "admin");
    let fine = login(T0, 1, 1, "admin");
    let fine_too = logout(T0 + 5, 2, 1, "admin");
    let event = timed_event(
        "hsm-a",
        1,
        &[
            (T0 / 1000, &far_record),
            (T0 / 1000, &fine),
            (253_402_300_800_000, &fine_too),
        ],
    );
    let report = ingest_event(event, &store, &config_for(&store))
        .await
        .expect("handled");
    assert_eq!((report.stored, report.quarantined), (1, 2));
    let quarantined = store.quarantined().await.expect("quarantine");
    assert_eq!(quarantined.len(), 2);
    assert!(
        quarantined
            .iter()
            .all(|q| q.reason.contains("outside the years 0000 to 9999")),
        "{quarantined:#?}"
    );
    // Later ingests and reads of the cluster still work.
    let later = deliver(&store, "hsm-a", 10, &[logout(T0 + 9, 3, 1, "admin")]).await;
    assert_eq!(later.stored, 1);
    let trail = store.trail(CLUSTER, None).await.expect("the trail reads");
    assert_eq!(trail.len(), 2);
    let sessions = store
        .sessions(CLUSTER, None, None, None)
        .await
        .expect("sessions read");
    assert_eq!(sessions.len(), 1);
}

/// Issue 17 item 3: a 1 MiB user name used to fail the whole payload on every retry.
#[tokio::test]
async fn a_one_mebibyte_user_name_is_bounded_and_the_rest_of_the_payload_lands() {
    let store = fresh_store("bounds").await;
    let huge = "m".repeat(1 << 20);
    let report = deliver(
        &store,
        "hsm-a",
        1,
        &[
            login(T0, 0, 1, &huge),
            logout(T0 + 5, 1, 1, &huge),
            login(T0 + 9, 2, 1, "admin"),
        ],
    )
    .await;
    assert_eq!((report.stored, report.quarantined), (3, 0));
    let trail = store.trail(CLUSTER, None).await.expect("trail");
    assert_eq!(trail.len(), 3);
    let kept = trail[0]
        .cloudhsm()
        .and_then(|record| record.user_name.clone())
        .expect("a user name");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(huge.as_bytes()))
    };
    assert!(kept.len() < 4200, "bounded: {} bytes", kept.len());
    assert!(kept.starts_with("mmmm"));
    assert!(
        kept.ends_with(&format!("…[1048576 bytes, sha256 {digest}]")),
        "{}",
        &kept[4000..]
    );
    let sessions = store
        .sessions(CLUSTER, None, None, None)
        .await
        .expect("sessions");
    assert_eq!(
        sessions.len(),
        2,
        "the long-named user's session and admin's"
    );
    assert!(
        sessions
            .iter()
            .any(|s| s.user == kept && s.end_time.is_some()),
        "the logout closed the long-named user's session"
    );
    // Delivered again: duplicates, not conflicts (the bounded record is what is compared).
    let again = deliver(
        &store,
        "hsm-a",
        1,
        &[login(T0, 0, 1, &huge), logout(T0 + 5, 1, 1, &huge)],
    )
    .await;
    assert_eq!((again.duplicates, again.conflicts), (2, 0));
}

/// A write DynamoDB refuses as invalid is not retryable: retrying cannot make it fit.
#[tokio::test]
async fn an_item_over_the_limit_is_rejected_not_retried() {
    use hsm_audit::model::{AuditRecord, LogSource, Timestamp, TrailEntry};
    use hsm_audit::parse::parse_message;
    use hsm_audit::store::{AuditStore, StoreError};

    let store = fresh_store("rejected").await;
    let Ok(AuditRecord::CloudHsm(mut record)) = parse_message(&login(T0, 0, 1, "admin")) else {
        panic!("the login parses");
    };
    // Built by hand, past the pipeline's bounds: the store's own answer is under test.
    record.user_name = Some("m".repeat(500 * 1024));
    let entry = TrailEntry {
        source: LogSource::shared(GROUP, "hsm-a"),
        record: AuditRecord::CloudHsm(record),
        log_event_id: "1".to_owned(),
        log_event_time: Timestamp::from_micros(T0),
        raw: String::new(),
    };
    let error = store
        .append_trail(CLUSTER, &[entry])
        .await
        .expect_err("an item over 400 KB is refused");
    assert!(
        matches!(error, StoreError::Rejected { .. }),
        "classified as invalid, not throttling: {error}"
    );
    assert!(!error.is_retryable());
}

/// Issue 17 item 1: writers racing to deliver different contents under the same
/// identities. Exactly one content is stored per identity, and every other delivery is a
/// conflict with its alert, whatever the interleaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_conflicting_deliveries_keep_the_first_record_and_record_every_other() {
    const WRITERS: usize = 4;
    const IDENTITIES: u64 = 150;
    let table = fresh_store("race").await.table().to_owned();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let table = table.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            // A store (and client) of its own, as another invocation would have.
            let store = hsm_audit::store::dynamodb::DynamoStore::new(client(), table);
            let user = format!("writer-{writer}");
            let records: Vec<String> = (0..IDENTITIES)
                .map(|seq| {
                    message(
                        T0 + seq as i64,
                        seq,
                        1,
                        "CN_CREATE_USER",
                        "0:HSM Return: SUCCESS",
                        &user,
                    )
                })
                .collect();
            barrier.wait().await;
            deliver(&store, "hsm-a", 1_000 * writer as u64, &records).await
        }));
    }
    let mut conflicts = 0;
    let mut stored = 0;
    for task in tasks {
        let report = task.await.expect("the writer finished");
        conflicts += report.conflicts;
        stored += report.stored;
    }
    let deliveries = WRITERS * IDENTITIES as usize;
    assert_eq!(
        stored, IDENTITIES as usize,
        "one content stored per identity"
    );
    assert_eq!(conflicts, deliveries - IDENTITIES as usize);

    let store = hsm_audit::store::dynamodb::DynamoStore::new(client(), table);
    use hsm_audit::store::AuditStore;
    let entries = store.trail(CLUSTER, None).await.expect("trail");
    let refused = store.conflicts(CLUSTER).await.expect("conflicts");
    assert_eq!(entries.len(), IDENTITIES as usize);
    assert_eq!(refused.len(), deliveries - IDENTITIES as usize);
    // Every conflict cites the digest that is stored for its identity.
    let stored_digests: std::collections::HashMap<u64, String> = entries
        .iter()
        .filter_map(|entry| {
            let record = entry.cloudhsm()?;
            Some((record.sequence_no, entry.record.content_sha256()))
        })
        .collect();
    for conflict in &refused {
        let seq = conflict.sequence_no.expect("a sequenced conflict");
        assert_eq!(Some(&conflict.stored_sha256), stored_digests.get(&seq));
        assert_ne!(conflict.rejected_sha256, conflict.stored_sha256);
    }
    let alerts = store.alerts(CLUSTER).await.expect("alerts");
    let conflict_alerts = alerts
        .iter()
        .filter(|alert| alert.kind == hsm_audit::domain::AlertKind::ConflictingDuplicate)
        .count();
    assert_eq!(conflict_alerts, deliveries - IDENTITIES as usize);
}

/// A subscription event whose inflated payload is `json`, byte for byte.
fn raw_payload_event(json: &[u8]) -> serde_json::Value {
    serde_json::json!({"awslogs": {"data": b64(&gzip(json))}})
}

/// Issue 17 item 4: invalid UTF-8 or a lone surrogate escape in one log event used to
/// quarantine the whole payload; only that event is quarantined now.
#[tokio::test]
async fn an_event_that_is_not_text_is_quarantined_alone() {
    let store = fresh_store("lenient").await;
    let event = |id: u32, message: &str| {
        serde_json::json!({"id": id.to_string(), "timestamp": T0 / 1000, "message": message})
            .to_string()
    };
    let mut json = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"{GROUP}","logStream":"hsm-a","subscriptionFilters":["f"],"logEvents":[{},"#,
        event(1, &login(T0, 0, 1, "admin"))
    )
    .into_bytes();
    json.extend_from_slice(
        b"{\"id\":\"2\",\"timestamp\":1516067329824,\"message\":\"Time: \xff\xfe broken\"},",
    );
    json.extend_from_slice(
        br#"{"id":"3","timestamp":1516067329824,"message":"User Name : \ud800 lone"},"#,
    );
    json.extend_from_slice(format!("{}]}}", event(4, &logout(T0 + 5, 1, 1, "admin"))).as_bytes());
    let report = ingest_event(raw_payload_event(&json), &store, &config_for(&store))
        .await
        .expect("handled");
    assert_eq!((report.stored, report.quarantined), (2, 2));
    let mut quarantined = store.quarantined().await.expect("quarantine");
    quarantined.sort_by(|a, b| a.log_event_id.cmp(&b.log_event_id));
    let ids: Vec<_> = quarantined
        .iter()
        .map(|q| q.log_event_id.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["2", "3"]);
    assert!(quarantined[0].reason.contains("not valid UTF-8"));
    assert!(quarantined[1].reason.contains("lone UTF-16 surrogate"));
    // The bad event's bytes are kept exactly, not only as readable text.
    let content = store
        .quarantined_content(&quarantined[0].raw_sha256)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(content, b"Time: \xff\xfe broken");
    let sessions = store
        .sessions(CLUSTER, Some("admin"), None, None)
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].end_time.is_some(), "the logout was stored too");
}

/// A payload that must be quarantined whole (here: its JSON is cut short) is kept whole:
/// 3,000 records, far past the 16 KiB of `raw`, come back byte for byte through the CLI.
#[tokio::test]
async fn a_payload_quarantined_whole_is_recoverable_in_full() {
    let store = fresh_store("whole").await;
    let records: Vec<String> = (0..3000)
        .map(|seq| login(T0 + seq as i64, seq, 1, "admin"))
        .collect();
    let messages: Vec<&str> = records.iter().map(String::as_str).collect();
    let event = subscription_event(GROUP, "hsm-a", 1, &messages);
    let data = event["awslogs"]["data"].as_str().expect("data").to_owned();
    let whole = unpack(&data);
    let broken = &whole[..whole.len() - 10];
    let report = ingest_event(raw_payload_event(broken), &store, &config_for(&store))
        .await
        .expect("handled");
    assert_eq!((report.stored, report.quarantined), (0, 1));
    let quarantined = store.quarantined().await.expect("quarantine");
    assert_eq!(quarantined.len(), 1);
    assert!(quarantined[0].raw_truncated);
    let export = ["quarantine", "--export", &quarantined[0].raw_sha256];
    let exported = cli(&export, store.table(), &endpoint());
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    // The export is the subscription data as received: base64 of the gzip.
    let inflated = unpack(&exported.stdout);
    assert_eq!(inflated, broken, "every byte of the payload is recoverable");
}
