//! `hsm-audit export` of the samples through the CLI and the local DynamoDB, validated
//! class by class against OCSF 1.7.0 by `tests/ocsf/validate.py` (pydantic-ocsf's models
//! of the OCSF schema, and no attribute the schema does not define).

use std::collections::BTreeMap;
use std::path::Path;

use hsm_audit::lambda::ingest_event;
use hsm_audit::model::Timestamp;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{cli, config_for, endpoint, fresh_store, json_of, repo_path, sample_events};

const CLUSTERS: [&str; 3] = ["cluster-demo", "cluster-later", "luna-service-demo"];

fn validate(dir: &Path) -> BTreeMap<String, usize> {
    let output = std::process::Command::new(repo_path(".venv/bin/python"))
        .arg(repo_path("tests/ocsf/validate.py"))
        .arg(dir)
        .output()
        .expect("run tests/ocsf/validate.py (make deps installs .venv)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("counts per class")
}

/// `hsm-audit export` of `cluster` into `out`, with `more` arguments: what it printed.
fn export(table: &str, cluster: &str, out: &Path, more: &[&str]) -> Value {
    let out = out.to_str().expect("a UTF-8 path");
    let mut args = vec![
        "export",
        "--cluster",
        cluster,
        "--out",
        out,
        "--output",
        "json",
    ];
    args.extend_from_slice(more);
    json_of(&cli(&args, table, &endpoint()))
}

fn events_in(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("an event per line"))
        .collect()
}

#[tokio::test]
async fn the_samples_export_as_valid_ocsf_one_event_per_record_and_alert() {
    let store = fresh_store("ocsf").await;
    let config = config_for(&store);
    for (name, event) in sample_events() {
        ingest_event(event, &store, &config)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    let out = repo_path(&format!("target/tmp/ocsf-{:08x}", fastrand::u32(..)));
    let mut expected_records = 0;
    let mut expected_alerts = 0;
    for cluster in CLUSTERS {
        let summary = export(store.table(), cluster, &out, &["--format", "ndjson"]);
        let records = store.trail(cluster, None).await.expect("trail").len();
        let alerts = store.alerts(cluster).await.expect("alerts").len();
        assert_eq!(summary["events"], records + alerts, "{cluster}: {summary}");
        assert_eq!(
            summary["by_class"]["detection_finding"], alerts,
            "{summary}"
        );
        expected_records += records;
        expected_alerts += alerts;
    }
    let counts = validate(&out);
    for class in [
        "authentication",
        "account_change",
        "entity_management",
        "api_activity",
        "detection_finding",
    ] {
        assert!(
            counts.get(class).is_some_and(|n| *n > 0),
            "no {class}: {counts:?}"
        );
    }
    assert_eq!(counts["detection_finding"], expected_alerts);
    assert_eq!(
        counts.values().sum::<usize>(),
        expected_records + expected_alerts
    );

    // A failed CloudHSM login: its HSM's sequence, microsecond time and digest.
    let logins = events_in(&out.join("authentication/cluster-demo.ndjson"));
    let failed = logins
        .iter()
        .find(|event| event["status_id"] == 2)
        .expect("a failed login among the samples");
    assert_eq!(failed["activity_id"], 1);
    assert!(failed["user"]["name"].is_string(), "{failed}");
    assert!(failed["metadata"]["sequence"].is_u64(), "{failed}");
    let original = failed["metadata"]["original_time"].as_str().expect("time");
    assert_eq!(original.len(), "2018-01-24T00:39:23.172777Z".len());
    let raw = failed["raw_data"].as_str().expect("raw data");
    assert_eq!(
        failed["raw_data_hash"]["value"],
        hex::encode(Sha256::digest(raw.as_bytes()))
    );
    // Key lifecycle operations name the key handle.
    let keys = events_in(&out.join("entity_management/cluster-demo.ndjson"));
    assert!(
        keys.iter()
            .any(|event| event["activity_id"] == 1 && event["entity"]["uid"].is_string())
    );
    std::fs::remove_dir_all(&out).ok();
}

#[tokio::test]
async fn a_window_exports_only_the_records_and_alerts_in_it() {
    let store = fresh_store("ocsf-window").await;
    let config = config_for(&store);
    for (_, event) in sample_events() {
        ingest_event(event, &store, &config).await.expect("ingest");
    }
    let (from, to) = ("2018-01-24T00:00:00Z", "2018-01-24T23:59:59Z");
    let out = repo_path(&format!("target/tmp/ocsf-window-{:08x}", fastrand::u32(..)));
    let summary = export(
        store.table(),
        "cluster-demo",
        &out,
        &["--from", from, "--to", to],
    );
    let bounds = [from, to].map(|time| Timestamp::parse_user(time).expect("a time"));
    let in_window = |time: Timestamp| (bounds[0]..=bounds[1]).contains(&time);
    let records = store
        .trail("cluster-demo", None)
        .await
        .expect("trail")
        .iter()
        .filter(|entry| in_window(entry.record.time()))
        .count();
    let alerts = store
        .alerts("cluster-demo")
        .await
        .expect("alerts")
        .iter()
        .filter(|alert| in_window(alert.time))
        .count();
    assert!(
        records > 0
            && records
                < store
                    .trail("cluster-demo", None)
                    .await
                    .expect("trail")
                    .len()
    );
    assert_eq!(summary["events"], records + alerts, "{summary}");
    validate(&out);
    std::fs::remove_dir_all(&out).ok();
}
