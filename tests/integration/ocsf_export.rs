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

/// The Parquet files under `dir`, each with its path relative to `dir`.
fn parquet_files(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read the export") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "parquet") {
                let relative = path
                    .strip_prefix(dir)
                    .expect("under the export")
                    .to_string_lossy()
                    .into_owned();
                found.push((relative, path));
            }
        }
    }
    found.sort();
    found
}

fn without_empties(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(name, value)| (name, without_empties(value)))
                .filter(|(_, value)| {
                    !value.is_null() && value.as_object().is_none_or(|map| !map.is_empty())
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_empties).collect()),
        other => other,
    }
}

/// A Parquet file read back: its rows as JSON objects (Arrow's JSON writer).
fn rows_of(path: &Path) -> Vec<Value> {
    let file = std::fs::File::open(path).expect("open the Parquet file");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a Parquet file")
        .build()
        .expect("a reader");
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    for batch in reader {
        writer.write(&batch.expect("a batch")).expect("as JSON");
    }
    writer.finish().expect("finished");
    String::from_utf8(writer.into_inner())
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a row"))
        .collect()
}

/// The Parquet export holds the NDJSON export's events, in Security Lake's partitions
/// (class, region, account, the event's day), read back with the Parquet reader: per
/// class, the same events, each whole.
#[tokio::test]
async fn the_parquet_export_reads_back_as_the_ndjson_events_in_security_lake_partitions() {
    let store = fresh_store("ocsf-parquet").await;
    let config = config_for(&store);
    for (name, event) in sample_events() {
        ingest_event(event, &store, &config)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    let out = repo_path(&format!(
        "target/tmp/ocsf-parquet-{:08x}",
        fastrand::u32(..)
    ));
    let ndjson = out.join("ndjson");
    let parquet = out.join("parquet");
    let cluster = "cluster-demo";
    export(store.table(), cluster, &ndjson, &["--format", "ndjson"]);
    let summary = export(
        store.table(),
        cluster,
        &parquet,
        &[
            "--format",
            "parquet",
            "--account",
            "123456789012",
            "--region",
            "eu-west-1",
        ],
    );
    assert_eq!(summary["format"], "parquet", "{summary}");
    let files = parquet_files(&parquet);
    assert!(!files.is_empty());
    // Each event whole (serde_json's maps are sorted, so equal events print equal), but
    // for its empty objects (Parquet has no empty group: the export leaves them out) and
    // nulls (a null column reads back as no attribute).
    let key = |event: &Value| without_empties(event.clone()).to_string();
    let mut from_parquet: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (relative, path) in &files {
        let parts: Vec<&str> = relative.split('/').collect();
        assert_eq!(parts.len(), 5, "{relative}");
        assert_eq!(&parts[1..3], ["region=eu-west-1", "accountId=123456789012"]);
        assert_eq!(parts[4], "cluster-demo.parquet");
        let rows = rows_of(path);
        assert!(!rows.is_empty(), "{relative}");
        for row in &rows {
            let day = Timestamp(row["time"].as_i64().expect("a time") * 1_000).iso();
            assert_eq!(parts[3], format!("eventDay={}", day[..10].replace('-', "")));
        }
        from_parquet
            .entry(parts[0].to_owned())
            .or_default()
            .extend(rows.iter().map(key));
    }
    let mut from_ndjson: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for entry in std::fs::read_dir(&ndjson).expect("the NDJSON export") {
        let class = entry.expect("a class folder").path();
        let name = class
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        from_ndjson.entry(name).or_default().extend(
            events_in(&class.join("cluster-demo.ndjson"))
                .iter()
                .map(key),
        );
    }
    for events in from_parquet.values_mut().chain(from_ndjson.values_mut()) {
        events.sort();
    }
    assert_eq!(
        from_parquet.keys().collect::<Vec<_>>(),
        from_ndjson.keys().collect::<Vec<_>>()
    );
    assert!(from_parquet.len() >= 4, "{:?}", from_parquet.keys());
    for (class, events) in &from_ndjson {
        let read_back = &from_parquet[class];
        assert_eq!(read_back.len(), events.len(), "{class}");
        for (read, written) in read_back.iter().zip(events) {
            assert_eq!(read, written, "{class}");
        }
    }
}
