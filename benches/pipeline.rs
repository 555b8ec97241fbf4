//! `make bench`: the pipeline's stages on one generated workload, in one run, as ratios
//! to the floor (base64 + gunzip with the product's own decoder), then the DynamoDB cost
//! of ingesting the same workload into the local server (requests counted in the client,
//! write units computed from item sizes by DynamoDB's rules).
//!
//! Sizes: BENCH_RECORDS (default 20000), BENCH_PAYLOAD_RECORDS (1000), BENCH_ROUNDS (5),
//! BENCH_DYNAMODB_RECORDS (5000: the local server is slow, and the cost per record is
//! what is measured). BENCH_LARGEST_PAYLOAD=FILE also writes the largest payload
//! CloudWatch sends (~1 MiB of log events from one HSM) for the memory measurement.
//! BENCH_PROFILE_PARSE=1 runs decode + parse alone, BENCH_ROUNDS times, and prints
//! nothing more: for a profiler.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use hsm_audit::config::{Config, DEFAULT_MAX_INFLATED_BYTES};
use hsm_audit::decode::{decode_event, inflate_capped};
use hsm_audit::domain::{DeriveConfig, derive};
use hsm_audit::pipeline::parse_decoded;
use hsm_audit::store::dynamodb::items::{derived_items, trail_item};
use hsm_audit::testkit::workload::{GeneratedPayload, WorkloadSpec, generate};

#[global_allocator]
static ALLOCATOR: hsm_audit::Allocator = hsm_audit::Allocator;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn data_of(payload: &GeneratedPayload) -> &str {
    payload
        .event
        .pointer("/awslogs/data")
        .and_then(|data| data.as_str())
        .unwrap_or_default()
}

/// The floor: what any processor of these payloads must do.
fn floor(payloads: &[GeneratedPayload]) {
    for payload in payloads {
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(data_of(payload))
            .unwrap_or_default();
        black_box(
            inflate_capped(&compressed, DEFAULT_MAX_INFLATED_BYTES)
                .map(|bytes| bytes.len())
                .unwrap_or_default(),
        );
    }
}

/// The floor plus reading the subscription JSON: what parsing the records adds is the
/// difference to the next stage.
fn decode(payloads: &[GeneratedPayload]) -> usize {
    payloads
        .iter()
        .map(|payload| {
            let delivery = decode_event(&payload.event, DEFAULT_MAX_INFLATED_BYTES);
            black_box(delivery.into_decoded().len())
        })
        .sum()
}

fn decode_parse(payloads: &[GeneratedPayload]) -> usize {
    let mut records = 0;
    for payload in payloads {
        let parsed =
            parse_decoded(decode_event(&payload.event, DEFAULT_MAX_INFLATED_BYTES).into_decoded());
        records += parsed.records().count();
        black_box(&parsed);
    }
    records
}

/// Decode, parse, derive the payload's views and build every item the store would write.
fn decode_parse_domain(payloads: &[GeneratedPayload], config: &DeriveConfig) -> usize {
    let mut items = 0;
    for payload in payloads {
        let parsed =
            parse_decoded(decode_event(&payload.event, DEFAULT_MAX_INFLATED_BYTES).into_decoded());
        for (cluster, entries) in &parsed.entries {
            items += entries
                .iter()
                .filter_map(|entry| trail_item(entry).ok())
                .count();
            let derived = derive(entries, &[], config);
            items += derived_items(cluster, &derived)
                .map(|built| built.len())
                .unwrap_or_default();
        }
    }
    items
}

/// The fastest of `rounds` runs: the least disturbed by the other load of a shared machine.
fn best_of(rounds: usize, mut run: impl FnMut()) -> Duration {
    (0..rounds.max(1))
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: then it only checks that
    // every stage works, on a small workload, and leaves the measuring to `make bench`.
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let spec = WorkloadSpec {
        records: if measuring {
            env_number("BENCH_RECORDS", 20_000)
        } else {
            2_000
        },
        records_per_payload: env_number("BENCH_PAYLOAD_RECORDS", 1000),
        ..WorkloadSpec::default()
    };
    let rounds = if measuring {
        env_number("BENCH_ROUNDS", 5)
    } else {
        1
    };
    let payloads = generate(&spec);
    let records: usize = payloads.iter().map(|payload| payload.records).sum();
    let inflated: usize = payloads.iter().map(|payload| payload.inflated_bytes).sum();
    let compressed: usize = payloads
        .iter()
        .map(|payload| payload.compressed_bytes)
        .sum();
    println!(
        "workload: {records} records in {} payloads of up to {} records, {:.1} MB inflated, {:.1} MB gzipped, {} HSMs, {} users",
        payloads.len(),
        spec.records_per_payload,
        inflated as f64 / 1e6,
        compressed as f64 / 1e6,
        spec.hsms,
        spec.users
    );

    let config = DeriveConfig::default();
    // Under a profiler (`perf record`, `valgrind --tool=callgrind`), only the stage the
    // profile is about.
    if std::env::var_os("BENCH_PROFILE_PARSE").is_some() {
        for _ in 0..rounds {
            black_box(decode_parse(&payloads));
        }
        return;
    }
    let stages: [(&str, Duration); 4] = [
        (
            "floor: base64 + gunzip",
            best_of(rounds, || floor(&payloads)),
        ),
        (
            "decode: floor + subscription JSON",
            best_of(rounds, || {
                black_box(decode(&payloads));
            }),
        ),
        (
            "decode + parse",
            best_of(rounds, || {
                black_box(decode_parse(&payloads));
            }),
        ),
        (
            "decode + parse + domain + write plan",
            best_of(rounds, || {
                black_box(decode_parse_domain(&payloads, &config));
            }),
        ),
    ];
    let floor_rate = records as f64 / stages[0].1.as_secs_f64();
    println!(
        "\n{:<40} {:>12} {:>14} {:>10} {:>16}",
        "stage (best of rounds)", "time", "records/s", "MB/s", "share of floor"
    );
    for (name, time) in &stages {
        let seconds = time.as_secs_f64();
        let rate = records as f64 / seconds;
        println!(
            "{name:<40} {:>10.1}ms {:>14.0} {:>10.1} {:>16.2}",
            seconds * 1e3,
            rate,
            inflated as f64 / 1e6 / seconds,
            rate / floor_rate
        );
    }

    let all = parse_decoded(payloads.iter().flat_map(|payload| {
        decode_event(&payload.event, DEFAULT_MAX_INFLATED_BYTES).into_decoded()
    }));
    let history: Vec<_> = all.records().cloned().collect();
    let whole = best_of(rounds, || {
        black_box(derive(&history, &[], &config));
    });
    println!(
        "\nderive over the whole history ({} records, what each invocation re-derives): {:.1} ms ({:.0} records/s)",
        history.len(),
        whole.as_secs_f64() * 1e3,
        history.len() as f64 / whole.as_secs_f64()
    );

    if let Ok(path) = std::env::var("BENCH_LARGEST_PAYLOAD") {
        write_largest_payload(&path);
    }
    if let Ok(dir) = std::env::var("BENCH_WORKLOAD_DIR") {
        write_workload(&dir, &payloads);
    }
    let endpoint = std::env::var("HSM_AUDIT_TEST_ENDPOINT")
        .ok()
        .filter(|_| measuring);
    if let Some(endpoint) = endpoint {
        let limit = env_number("BENCH_DYNAMODB_RECORDS", 5000);
        let mut subset = Vec::new();
        let mut count = 0;
        for payload in &payloads {
            if count >= limit {
                break;
            }
            count += payload.records;
            subset.push(payload.clone());
        }
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        runtime.block_on(dynamodb_cost(&endpoint, &subset, count));
    } else {
        println!(
            "\nDynamoDB cost: measured by `make bench` (it starts a local server and runs with --bench)"
        );
    }
}

/// The workload as Lambda event files, for scripts/bench.sh to measure the memory of a
/// derivation over its whole history through the release CLI.
fn write_workload(dir: &str, payloads: &[GeneratedPayload]) {
    std::fs::create_dir_all(dir).expect("create the workload directory");
    for (index, payload) in payloads.iter().enumerate() {
        std::fs::write(
            format!("{dir}/payload-{index:04}.json"),
            payload.event.to_string(),
        )
        .expect("write a workload payload");
    }
    println!("workload written to {dir}/ ({} files)", payloads.len());
}

/// CloudWatch Logs puts at most 1,048,576 bytes of events (26 bytes of overhead each)
/// in one batch: with ~430-byte records that is about 2,300 records of one stream.
fn write_largest_payload(path: &str) {
    let spec = WorkloadSpec {
        hsms: 1,
        records: 2300,
        records_per_payload: 2300,
        seed: 11,
        ..WorkloadSpec::default()
    };
    let largest = generate(&spec)
        .into_iter()
        .max_by_key(|payload| payload.inflated_bytes)
        .expect("a payload");
    std::fs::write(path, largest.event.to_string()).expect("write the largest payload");
    println!(
        "
largest payload: {} records, {:.2} MB inflated, {:.2} MB gzipped, written to {path}",
        largest.records,
        largest.inflated_bytes as f64 / 1e6,
        largest.compressed_bytes as f64 / 1e6
    );
}

async fn dynamodb_cost(endpoint: &str, payloads: &[GeneratedPayload], records: usize) {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    use hsm_audit::store::dynamodb::{DynamoStore, create_table};

    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
            .build(),
    );
    let table = format!("hsm-audit-bench-{:08x}", fastrand::u32(..));
    create_table(&client, &table)
        .await
        .expect("create the bench table");
    let store = DynamoStore::new(client, &table);
    let config = Config::from_lookup(Some(table.clone()), |_| None).expect("config");
    let mut per_payload = Vec::new();
    let started = Instant::now();
    for payload in payloads {
        let before = store.counts().total();
        hsm_audit::lambda::ingest_event(payload.event.clone(), &store, &config)
            .await
            .expect("ingest");
        per_payload.push((payload.records, store.counts().total() - before));
    }
    let elapsed = started.elapsed();
    let counts = store.counts();
    let load =
        |count: &std::sync::atomic::AtomicU64| count.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "\nDynamoDB cost of ingesting the workload, one invocation per payload ({:.1} s against the local server):",
        elapsed.as_secs_f64()
    );
    println!(
        "  requests: {} = {:.3} per record (TransactWriteItems {}, BatchWriteItem {}, BatchGetItem {}, Query {}, single-item {}, retries {})",
        counts.total(),
        counts.total() as f64 / records as f64,
        load(&counts.transact_write),
        load(&counts.batch_write),
        load(&counts.batch_get),
        load(&counts.query),
        load(&counts.single_item),
        load(&counts.retries)
    );
    if let (Some(first), Some(last)) = (per_payload.first(), per_payload.last()) {
        println!(
            "  requests per record, first payload: {:.3}; last payload (most history to re-derive): {:.3}",
            first.1 as f64 / first.0 as f64,
            last.1 as f64 / last.0 as f64
        );
    }
    let costs = store.write_costs();
    let total_units: u64 = costs.values().map(|cost| cost.write_units).sum();
    println!(
        "  write units: {total_units} = {:.3} per record (1 per started KiB per item written or deleted; no index)",
        total_units as f64 / records as f64
    );
    let by_type: BTreeMap<_, _> = costs.into_iter().collect();
    for (item_type, cost) in by_type {
        println!(
            "    {item_type:<24} {:>8} items {:>8} WCU  {:.3} WCU/record",
            cost.items,
            cost.write_units,
            cost.write_units as f64 / records as f64
        );
    }
}
