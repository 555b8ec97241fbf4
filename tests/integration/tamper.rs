//! Tamper evidence against the local server: a trail whose digests are signed with a KMS
//! key (moto's `SIGN_VERIFY` ECC_NIST_P256 key), verified clean, then tampered with in each
//! way a table writer could — and `verify` names each finding.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use base64::Engine;
use hsm_audit::digest::anchor::Anchoring;
use hsm_audit::digest::kms::{DigestSigner, public_key};
use hsm_audit::digest::signature::PublicKey;
use hsm_audit::digest::verify::Finding;
use hsm_audit::digest::{self, DigestBody};
use hsm_audit::lambda::ingest_event;
use hsm_audit::store::dynamodb::DynamoStore;
use hsm_audit::store::dynamodb::items::trail_pk;
use hsm_audit::verify::{VerifyOptions, VerifyReport, export_digests, verify_trail};

use crate::common::*;

const CLUSTER: &str = "cluster-demo";

fn kms() -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

async fn signing_key(kms: &aws_sdk_kms::Client) -> String {
    kms.create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .expect("create a signing key")
        .key_metadata
        .expect("key metadata")
        .key_id
}

struct Signed {
    store: DynamoStore,
    kms: aws_sdk_kms::Client,
    public_key: PublicKey,
    public_der: Vec<u8>,
}

/// The sample events through the handler, with digests signed by a fresh KMS key;
/// `redeliver` sends them all a second time.
async fn signed_trail(label: &str, redeliver: bool) -> Signed {
    let kms = kms();
    let key_id = signing_key(&kms).await;
    let store = fresh_store(label).await.with_signer(DigestSigner::Kms {
        client: kms.clone(),
        key_id: key_id.clone(),
    });
    let config = config_for(&store);
    let mut events = sample_events();
    // Late and out of order: the second half first.
    let half = events.len() / 2;
    events.rotate_left(half);
    let rounds = if redeliver { 2 } else { 1 };
    for _ in 0..rounds {
        for (name, event) in &events {
            ingest_event(event.clone(), &store, &config)
                .await
                .unwrap_or_else(|error| panic!("{name}: {error:?}"));
        }
    }
    let (public_key, public_der) = public_key(&kms, &key_id).await.expect("public key");
    Signed {
        store,
        kms,
        public_key,
        public_der,
    }
}

async fn verify(signed: &Signed, exported: Option<PathBuf>) -> VerifyReport {
    let options = VerifyOptions {
        public_key: Some(signed.public_key.clone()),
        exported,
        ..VerifyOptions::default()
    };
    verify_trail(&signed.store, CLUSTER, &options, |_| {})
        .await
        .expect("verify runs")
}

/// The trail partition's items: digests, then records.
async fn trail_items(store: &DynamoStore) -> (Vec<Item>, Vec<Item>) {
    let output = store
        .client()
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(trail_pk(CLUSTER)))
        .send()
        .await
        .expect("query the trail");
    let items = output.items.unwrap_or_default();
    assert!(
        output.last_evaluated_key.is_none(),
        "the samples fit a page"
    );
    let digests = items
        .iter()
        .filter(|i| digest::is_digest(i))
        .cloned()
        .collect();
    let records = items
        .into_iter()
        .filter(hsm_audit::store::dynamodb::items::is_trail_record)
        .collect();
    (digests, records)
}

fn text(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// Overwrites an item as anyone with write access to the table could.
async fn put(store: &DynamoStore, item: Item) {
    store
        .put_unconditionally(item, "PutItem (tampering)")
        .await
        .expect("put");
}

#[tokio::test]
async fn an_untouched_signed_trail_verifies_clean_also_after_late_records_and_redelivery() {
    let signed = signed_trail("verify-clean", true).await;
    let report = verify(&signed, None).await;
    assert!(report.clean, "{:?}", report.findings);
    assert!(report.signatures_checked);
    let (digests, records) = trail_items(&signed.store).await;
    assert_eq!(report.records, records.len() as u64);
    assert_eq!(report.digests, digests.len() as u64);
    assert!(
        report.digests >= 10,
        "a digest per delivery that stored records"
    );
    // Redelivery stored nothing new, so it sealed no digest: every listed record is one
    // record, listed once.
    let listed: usize = digests
        .iter()
        .map(|d| {
            serde_json::from_str::<DigestBody>(&text(d, "body"))
                .expect("body")
                .records
                .len()
        })
        .sum();
    assert_eq!(listed, records.len());
    assert!(digests.iter().all(|d| !text(d, "signature").is_empty()));
}

#[tokio::test]
async fn each_kind_of_tampering_is_named_and_verify_fails() {
    let signed = signed_trail("verify-tamper", false).await;
    let store = &signed.store;
    let (digests, records) = trail_items(store).await;
    let record_in = |seq: u64| {
        records
            .iter()
            .find(|r| digest::digest_seq_of(r) == Some(seq))
            .cloned()
            .expect("a record of the digest")
    };

    // 1. One attribute of a stored record changed.
    let mut modified = record_in(1);
    modified.insert(
        "user_name".to_owned(),
        AttributeValue::S("mallory".to_owned()),
    );
    let modified_sk = text(&modified, "sk");
    put(store, modified).await;

    // 2. A record deleted.
    let deleted = record_in(3);
    let deleted_sk = text(&deleted, "sk");
    delete(store, &deleted_sk).await;

    // 3. A forged record with a plausible identity: the next sequence number of an HSM,
    //    naming a real digest.
    let mut forged = record_in(4);
    let forged_sk = format!("{}0", text(&forged, "sk"));
    forged.insert("sk".to_owned(), AttributeValue::S(forged_sk.clone()));
    put(store, forged).await;

    // 4. A digest's body edited (one listed hash replaced) with its stored hash
    //    recomputed: its signature and the next digest's link no longer hold.
    let mut edited = digests[4].clone();
    let body = text(&edited, "body");
    let first = serde_json::from_str::<DigestBody>(&body)
        .expect("body")
        .records[0]
        .clone();
    let (relisted_sk, first_hash) = (first.sk, first.sha256);
    let body = body.replace(&first_hash, &"0".repeat(64));
    edited.insert(
        "sha256".to_owned(),
        AttributeValue::S(hex::encode(digest::sha256(body.as_bytes()))),
    );
    edited.insert("body".to_owned(), AttributeValue::S(body));
    put(store, edited).await;

    // 5. A digest dropped.
    let dropped = digests[6].clone();
    let dropped_seq = 7;
    delete(store, &text(&dropped, "sk")).await;

    // 6. A digest re-signed with another KMS key.
    let other_key = signing_key(&signed.kms).await;
    let mut resigned = digests[8].clone();
    let hash = digest::sha256(text(&resigned, "body").as_bytes());
    let signature = DigestSigner::Kms {
        client: signed.kms.clone(),
        key_id: other_key.clone(),
    }
    .sign(&hash)
    .await
    .expect("sign with the other key")
    .expect("a signature")
    .der;
    resigned.insert(
        "signature".to_owned(),
        AttributeValue::S(base64::engine::general_purpose::STANDARD.encode(&signature)),
    );
    resigned.insert("key_id".to_owned(), AttributeValue::S(other_key));
    put(store, resigned).await;

    let report = verify(&signed, None).await;
    assert!(!report.clean);
    let has = |finding: &Finding| report.findings.contains(finding);
    let expected = [
        Finding::Modified {
            sk: modified_sk,
            digest: 1,
        },
        Finding::Deleted {
            sk: deleted_sk,
            digest: 3,
        },
        Finding::Added {
            sk: forged_sk,
            digest: Some(4),
        },
        // Which side changed, the record or its listing, verify cannot tell.
        Finding::Modified {
            sk: relisted_sk,
            digest: 5,
        },
        Finding::BadSignature { digest: 5 },
        Finding::BrokenLink { digest: 6 },
        Finding::MissingDigests {
            first: dropped_seq,
            last: dropped_seq,
        },
        Finding::BadSignature { digest: 9 },
    ];
    for finding in &expected {
        assert!(has(finding), "{finding:?} not in {:#?}", report.findings);
    }
    // The dropped digest's records are vouched for by nothing now.
    let orphans = records
        .iter()
        .filter(|r| digest::digest_seq_of(r) == Some(dropped_seq))
        .count();
    let added = report
        .findings
        .iter()
        .filter(|f| matches!(f, Finding::Added { digest: Some(seq), .. } if *seq == dropped_seq))
        .count();
    assert_eq!(added, orphans);
    assert_eq!(
        report.findings.len(),
        expected.len() + orphans,
        "nothing else: {:#?}",
        report.findings
    );
}

#[tokio::test]
async fn exported_digests_and_the_public_key_alone_verify_the_table() {
    let signed = signed_trail("verify-export", false).await;
    let dir = std::env::temp_dir().join(format!("hsm-audit-digests-{:08x}", fastrand::u32(..)));
    let written = export_digests(&signed.store, CLUSTER, &dir)
        .await
        .expect("export");
    let (digests, _) = trail_items(&signed.store).await;
    assert_eq!(written, digests.len() as u64);

    // Offline: the public key from a file, no KMS call.
    let key_file = dir.join("public-key.der");
    std::fs::write(&key_file, &signed.public_der).expect("write the key");
    let offline = VerifyOptions {
        public_key: Some(
            PublicKey::from_pem_or_der(&std::fs::read(&key_file).expect("read")).expect("key"),
        ),
        exported: Some(dir.clone()),
        ..VerifyOptions::default()
    };
    let report = verify_trail(&signed.store, CLUSTER, &offline, |_| {})
        .await
        .expect("verify");
    assert!(report.clean, "{:?}", report.findings);
    // A third party's check, from the rules of docs/tamper-evidence.md alone, agrees.
    let (clean, independent) = verify_independently(&signed.store, &key_file);
    assert!(clean, "{independent}");
    assert_eq!(independent["records"], report.records);
    assert_eq!(independent["digests"], report.digests);

    // A whole chain rewritten in the table (bodies and hashes consistent, signatures
    // dropped) still differs from the export.
    let mut rewritten = digests[1].clone();
    let body = text(&rewritten, "body").replace("\"sealed\"", "\"sealed\" ");
    rewritten.insert(
        "sha256".to_owned(),
        AttributeValue::S(hex::encode(digest::sha256(body.as_bytes()))),
    );
    rewritten.insert("body".to_owned(), AttributeValue::S(body));
    put(&signed.store, rewritten).await;
    let (clean, independent) = verify_independently(&signed.store, &key_file);
    assert!(!clean);
    assert_eq!(
        independent["findings"],
        serde_json::json!([
            "bad or missing signature on digest 2",
            "broken link at digest 3"
        ])
    );
    let report = verify(&signed, Some(dir.clone())).await;
    assert_eq!(
        report.findings,
        [Finding::DigestAltered {
            digest: 2,
            reason: "it differs from the exported copy".to_owned()
        }]
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `scripts/verify_independently.py` (the rules of docs/tamper-evidence.md, no hsm-audit code) on the table:
/// whether it exits 0, and what it printed.
fn verify_independently(
    store: &DynamoStore,
    key_file: &std::path::Path,
) -> (bool, serde_json::Value) {
    let output = std::process::Command::new(repo_path(".venv/bin/python"))
        .arg(repo_path("scripts/verify_independently.py"))
        .args([
            "--table",
            store.table(),
            "--cluster",
            CLUSTER,
            "--public-key",
        ])
        .arg(key_file)
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("run scripts/verify_independently.py (make deps installs .venv)");
    let printed = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON from verify_independently.py: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), printed)
}

/// The CLI as scripts use it: `ingest` signs nothing without a key and `verify` exits 0 on
/// the untouched trail, 3 with the finding in its JSON once a record is edited.
#[tokio::test]
async fn the_cli_verify_exits_3_and_names_the_edited_record() {
    let store = fresh_store("verify-cli").await;
    let ingest = crate::common::cli(&["ingest", "events/"], store.table(), &endpoint());
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    let verify = || {
        crate::common::cli(
            &["verify", "--cluster", CLUSTER, "--output", "json"],
            store.table(),
            &endpoint(),
        )
    };
    let clean = verify();
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&clean.stdout).expect("JSON");
    assert_eq!(report["clean"], true);
    assert_eq!(report["signatures_checked"], false);

    let (_, records) = trail_items(&store).await;
    let mut edited = records[0].clone();
    edited.insert("opcode".to_owned(), AttributeValue::S("CN_NOP".to_owned()));
    let sk = text(&edited, "sk");
    put(&store, edited).await;
    let tampered = verify();
    assert_eq!(tampered.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&tampered.stdout).expect("JSON");
    assert_eq!(report["clean"], false);
    assert_eq!(report["findings"][0]["kind"], "modified");
    assert_eq!(report["findings"][0]["sk"], sk.as_str());
    // A period before every record reports none of them.
    let before = crate::common::cli(
        &[
            "verify",
            "--cluster",
            CLUSTER,
            "--to",
            "2000-01-01",
            "--output",
            "json",
        ],
        store.table(),
        &endpoint(),
    );
    assert_eq!(
        before.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&before.stdout)
    );
}

/// A table whose every write anchors its chain head in a log group of the local server's
/// CloudWatch Logs (interval 0), holding the sample events.
async fn anchored_trail(label: &str) -> (DynamoStore, Anchoring) {
    let group = format!("/hsm-audit/test-anchors-{:08x}", fastrand::u32(..));
    logs_client()
        .create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .expect("create the anchor log group");
    let anchoring = Anchoring::new(logs_client(), group, Duration::ZERO);
    let store = fresh_store(label)
        .await
        .with_anchoring(Some(anchoring.clone()));
    let config = config_for(&store);
    for (name, event) in sample_events() {
        ingest_event(event, &store, &config)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error:?}"));
    }
    (store, anchoring)
}

async fn verify_with_anchors(store: &DynamoStore, anchoring: &Anchoring) -> VerifyReport {
    let options = VerifyOptions {
        anchors: Some(anchoring.read(CLUSTER).await.expect("read anchors")),
        ..VerifyOptions::default()
    };
    verify_trail(store, CLUSTER, &options, |_| {})
        .await
        .expect("verify runs")
}

async fn delete(store: &DynamoStore, sk: &str) {
    store
        .client()
        .delete_item()
        .table_name(store.table())
        .set_key(Some(hsm_audit::store::dynamodb::items::key_item(
            &trail_pk(CLUSTER),
            sk,
        )))
        .send()
        .await
        .expect("delete");
}

#[tokio::test]
async fn deleting_the_newest_digests_with_their_records_is_named_truncated_by_the_anchors() {
    let (store, anchoring) = anchored_trail("verify-anchors").await;
    let clean = verify_with_anchors(&store, &anchoring).await;
    assert!(clean.clean, "{:?}", clean.findings);
    let anchors = anchoring.read(CLUSTER).await.expect("anchors");
    let (digests, records) = trail_items(&store).await;
    let last = digests.len() as u64;
    assert_eq!(clean.digests, last);
    assert_eq!(clean.anchors_checked, anchors.len() as u64);
    assert_eq!(
        anchors.last().map(|anchor| anchor.seq),
        Some(last),
        "every write anchored its head"
    );

    // The newest three digests, and every record they listed.
    let gone = (last - 2)..=last;
    for record in &records {
        if digest::digest_seq_of(record).is_some_and(|seq| gone.contains(&seq)) {
            delete(&store, &text(record, "sk")).await;
        }
    }
    for seq in gone.clone() {
        delete(&store, &digest::digest_sk(seq)).await;
    }

    // The table alone cannot tell: what is left is a whole, shorter chain.
    let alone = verify_trail(&store, CLUSTER, &VerifyOptions::default(), |_| {})
        .await
        .expect("verify runs");
    assert!(alone.clean, "{:?}", alone.findings);

    let report = verify_with_anchors(&store, &anchoring).await;
    assert_eq!(
        report.findings,
        [Finding::Truncated {
            first: last - 2,
            last,
            anchored: anchors.last().expect("an anchor").anchored,
        }]
    );

    // The new head rewritten to match (this chain is unsigned): its body hashes to its
    // stored hash and links to nothing after it, so only its anchor can tell.
    let rewritten_seq = anchors
        .iter()
        .map(|anchor| anchor.seq)
        .filter(|seq| *seq < last - 2)
        .max()
        .expect("an earlier anchor");
    let (digests, _) = trail_items(&store).await;
    let mut rewritten = digests[rewritten_seq as usize - 1].clone();
    let body = text(&rewritten, "body").replace("\"sealed\"", "\"sealed\" ");
    rewritten.insert(
        "sha256".to_owned(),
        AttributeValue::S(hex::encode(digest::sha256(body.as_bytes()))),
    );
    rewritten.insert("body".to_owned(), AttributeValue::S(body));
    put(&store, rewritten).await;
    let report = verify_with_anchors(&store, &anchoring).await;
    assert_eq!(report.findings.len(), 2, "{:#?}", report.findings);
    assert!(matches!(report.findings[0], Finding::Truncated { .. }));
    assert!(
        matches!(&report.findings[1], Finding::DigestAltered { digest, reason }
            if *digest == rewritten_seq && reason.contains("differs from the anchor")),
        "{:#?}",
        report.findings
    );

    // The CLI, as a script runs it: exit 3, the finding with its range in the JSON.
    let output = cli_with_env(
        &[
            "verify",
            "--cluster",
            CLUSTER,
            "--anchors",
            "--output",
            "json",
        ],
        store.table(),
        &endpoint(),
        &[("ANCHOR_LOG_GROUP", anchoring.log_group())],
    );
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(printed["findings"][0]["kind"], "truncated");
    assert_eq!(printed["findings"][0]["first"], last - 2);
    assert_eq!(printed["findings"][0]["last"], last);
    assert_eq!(printed["findings"][1]["kind"], "digest_altered");
    assert_eq!(printed["findings"].as_array().map(Vec::len), Some(2));
    // Without the anchors the CLI, like the table, sees nothing.
    let unanchored = cli(
        &["verify", "--cluster", CLUSTER, "--output", "json"],
        store.table(),
        &endpoint(),
    );
    assert_eq!(unanchored.status.code(), Some(0));
}

#[tokio::test]
async fn a_digest_copied_under_another_number_is_named_replayed_and_nothing_else() {
    let signed = signed_trail("verify-replay", false).await;
    let store = &signed.store;
    let (digests, records) = trail_items(store).await;
    let last = digests.len() as u64;
    let dir = std::env::temp_dir().join(format!("hsm-audit-replay-{:08x}", fastrand::u32(..)));
    export_digests(store, CLUSTER, &dir).await.expect("export");

    // Digest 2 copied, signature and all, as a new digest after the last.
    let mut appended = digests[1].clone();
    appended.insert(
        "sk".to_owned(),
        AttributeValue::S(digest::digest_sk(last + 1)),
    );
    put(store, appended).await;
    let report = verify(&signed, None).await;
    assert_eq!(
        report.findings,
        [Finding::Replayed {
            digest: last + 1,
            of: 2
        }]
    );

    // Digest 2 copied over digest 5: named once as what it is; the records digest 5
    // listed are vouched for by nothing now, and nothing is called missing.
    delete(store, &digest::digest_sk(last + 1)).await;
    let mut replaced = digests[1].clone();
    replaced.insert("sk".to_owned(), AttributeValue::S(digest::digest_sk(5)));
    put(store, replaced).await;
    let orphans: Vec<Finding> = records
        .iter()
        .filter(|record| digest::digest_seq_of(record) == Some(5))
        .map(|record| Finding::Added {
            sk: text(record, "sk"),
            digest: Some(5),
        })
        .collect();
    assert!(!orphans.is_empty());
    let mut expected = vec![Finding::Replayed { digest: 5, of: 2 }];
    expected.extend(orphans);
    assert_eq!(verify(&signed, None).await.findings, expected);
    // Against the export: a replay, not a missing digest; the export's digest 5 still
    // vouches for its records.
    assert_eq!(
        verify(&signed, Some(dir.clone())).await.findings,
        [Finding::Replayed { digest: 5, of: 2 }]
    );
    std::fs::remove_dir_all(&dir).ok();
}
