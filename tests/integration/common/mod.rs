//! Shared by the integration tests: a fresh table on the local DynamoDB server that
//! `make test` starts, and builders of Lambda events.
#![allow(dead_code)]

pub mod bus;
pub mod fault_proxy;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use hsm_audit::config::Config;
use hsm_audit::store::dynamodb::{DynamoStore, create_table};
pub use hsm_audit::testkit::{b64, gzip, subscription_event, unpack};

pub type Item = HashMap<String, AttributeValue>;

/// The local server's address. Tests that need DynamoDB fail loudly without it rather
/// than pass without having run.
pub fn endpoint() -> String {
    std::env::var("HSM_AUDIT_TEST_ENDPOINT").unwrap_or_else(|_| {
        panic!("HSM_AUDIT_TEST_ENDPOINT is not set: run the suite with `make test`, which starts a local DynamoDB")
    })
}

/// A client configuration for the local server at `endpoint`, with test credentials.
fn local_config(endpoint: &str) -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "hsm-audit-tests",
        ))
}

pub fn client() -> Client {
    Client::from_conf(local_config(&endpoint()).build())
}

/// A CloudWatch Logs client of the local server.
pub fn logs_client() -> aws_sdk_cloudwatchlogs::Client {
    use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    aws_sdk_cloudwatchlogs::Client::from_conf(config)
}

/// A client of `endpoint` with a small retry budget and short timeouts, so that fault
/// tests finish quickly, and a retry token bucket of its own (`label`), so that tests
/// running in parallel do not drain each other's.
pub fn client_with_budget(endpoint: &str, label: &str, attempt_timeout: Duration) -> Client {
    let config = local_config(endpoint)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .retry_partition(RetryPartition::new(format!(
            "hsm-audit-test-{label}-{:08x}",
            fastrand::u32(..)
        )))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        )
        .build();
    Client::from_conf(config)
}

/// A table of its own for each test, so that tests run in parallel on one server.
pub async fn fresh_store(label: &str) -> DynamoStore {
    let table = format!("hsm-audit-test-{label}-{:08x}", fastrand::u32(..));
    let client = client();
    create_table(&client, &table)
        .await
        .expect("create the test table");
    DynamoStore::new(client, table)
}

/// The default configuration, but for the allowed lateness: these tests deliver
/// historical samples in any order, which must all be folded in exactly (the tests of
/// late records and of bounded steps set their own).
pub fn config_for(store: &DynamoStore) -> Config {
    config_with_lateness(store, "3153600000")
}

pub fn config_with_lateness(store: &DynamoStore, seconds: &str) -> Config {
    let seconds = seconds.to_owned();
    Config::from_lookup(Some(store.table().to_owned()), move |name| {
        (name == "ALLOWED_LATENESS_SECONDS").then(|| seconds.clone())
    })
    .expect("configuration")
}

/// Every item of the table but the derivation's own bookkeeping, sorted by key: the
/// state two runs are compared by. The lease (its version counts the derivations) and
/// the `STATE#` partition (the checkpoint: where the settle point stands, what the last
/// step wrote) differ between two deliveries that end in the same trail and views, and so
/// do the digest chain and each record's `digest_seq`: the chain records the order in
/// which records were stored, which is the delivery's.
pub async fn scan_all(store: &DynamoStore) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(store.table())
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        items.extend(page.items.unwrap_or_default().into_iter().filter(|item| {
            let text = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
            };
            text("item_type") != Some("lease")
                && !text("pk").is_some_and(|pk| pk.starts_with("STATE#"))
        }));
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    let key = |item: &Item, name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    items.retain(|item| !hsm_audit::digest::is_digest(item));
    for item in &mut items {
        item.remove(hsm_audit::digest::DIGEST_SEQ);
    }
    items.sort_by_key(|item| (key(item, "pk"), key(item, "sk")));
    items
}

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A vendor example record from the fixtures, by file name prefix (`"06-"`).
pub fn seed_record(prefix: &str) -> String {
    let dir = repo_path("tests/fixtures/seed-000");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    names.sort();
    let path = names
        .into_iter()
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no fixture {prefix}*"));
    std::fs::read_to_string(path).expect("read fixture")
}

/// The Lambda events of `events/`, in file order.
pub fn sample_events() -> Vec<(String, serde_json::Value)> {
    let dir = repo_path("events");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("events/")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read event");
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).expect("event JSON"),
            )
        })
        .collect()
}

/// Asserts two table states are equal, naming the items that differ.
pub fn assert_same_state(actual: &[Item], expected: &[Item], context: &str) {
    let key = |item: &Item| {
        let part = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        format!(
            "{}|{}",
            part("pk").unwrap_or_default(),
            part("sk").unwrap_or_default()
        )
    };
    let index = |items: &[Item]| -> std::collections::BTreeMap<String, Item> {
        items.iter().map(|item| (key(item), item.clone())).collect()
    };
    let (actual, expected) = (index(actual), index(expected));
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .collect();
    let extra: Vec<&String> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    let changed: Vec<&String> = expected
        .iter()
        .filter(|(k, item)| actual.get(*k).is_some_and(|other| other != *item))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && changed.is_empty(),
        "{context}: the tables differ: missing {missing:?}, \
         extra {extra:?}, changed {changed:?}"
    );
}

/// Runs the `hsm-audit` binary against `table` at `endpoint`.
pub fn cli(args: &[&str], table: &str, endpoint: &str) -> Output {
    cli_with_env(args, table, endpoint, &[])
}

/// [`cli`] with more environment variables set.
pub fn cli_with_env(args: &[&str], table: &str, endpoint: &str, vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hsm-audit"))
        .envs(vars.iter().copied())
        .args(args)
        .current_dir(repo_path(""))
        .env("TABLE_NAME", table)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        // RUST_LOG asks for the whole error report; these tests choose it themselves.
        .env_remove("RUST_LOG")
        .output()
        .expect("run hsm-audit")
}

/// The JSON a successful run printed.
pub fn json_of(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}
