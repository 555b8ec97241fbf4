//! `make bench`, time windows (issue 25): what a window query reads against what it
//! returns, what the two time indexes cost in write units per record, and the peak RSS of
//! the whole-cluster listings.
//!
//! A cluster of the generated workload (3 HSMs at the default pace, about a million
//! records a month, so an hour holds ~1,400 records; 1,000-record payloads) is ingested
//! payload by payload through `ingest_event`. At each history point
//! (BENCH_WINDOWS_POINTS; default 30000,250000 under `cargo bench`, a small run under
//! `cargo test`) one hour in the middle of the history is read through the functions the
//! CLI calls — `sessions`, `keys`, `failed-logins`, `alerts` (all, and one kind through
//! the index) and `trail` with `--from/--to` — and what each read (items, requests, read
//! units) is compared with the rows it handed on: target items read ≤ 3 × returned + 200.
//!
//! On a local server (BENCH_WINDOWS_PROXY_PORT: the counting proxy, which
//! `AWS_ENDPOINT_URL` names; `scripts/bench.sh` runs dynalite behind it) every payload is
//! ingested through the proxy (dynalite has no `TransactWriteItems`: the proxy answers
//! them), which also counts the indexes' write units: their ratio to the records up to the
//! first point is the indexes' cost. With BENCH_WINDOWS_CLI (a release `hsm-audit`) that
//! binary also lists `sessions`, `keys` and `trail` of the whole cluster at each point,
//! reading the server at BENCH_WINDOWS_SERVER (else the proxy), output to /dev/null, under
//! GNU time: peak RSS, target ≤ 64 MiB. Without the proxy the windows are read from the
//! in-memory store, its ledger counting (no trail window: it is the DynamoDB store's).

use std::time::Instant;

use hsm_audit::config::Config;
use hsm_audit::lambda::ingest_event;
use hsm_audit::model::Timestamp;
use hsm_audit::store::dynamodb::DynamoStore;
use hsm_audit::store::memory::MemoryStore;
use hsm_audit::store::window::{self, Window};
use hsm_audit::store::{AuditStore, StoreError};
use hsm_audit::testkit::bench::{self, Cost, Meter, Proxy};
use hsm_audit::testkit::payload_body;
use hsm_audit::testkit::workload::{GeneratedPayload, WorkloadSpec, generate};

const HOUR_MICROS: i64 = 3_600_000_000;

/// The first and last record time of a payload, in microseconds.
fn span_of(payload: &GeneratedPayload) -> (i64, i64) {
    payload_body(&payload.event)["logEvents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|event| event["timestamp"].as_i64())
        .fold((i64::MAX, i64::MIN), |(first, last), ms| {
            (first.min(ms * 1000), last.max(ms * 1000))
        })
}

/// One window query's figures.
struct Measured {
    name: &'static str,
    returned: usize,
    read: Cost,
}

impl Measured {
    fn budget(&self) -> f64 {
        3.0 * self.returned as f64 + 200.0
    }
}

/// Runs `query`, counting the rows it hands on and what the meter saw it read.
async fn measure<F>(name: &'static str, meter: &dyn Meter, query: F) -> Measured
where
    F: AsyncFnOnce(&mut usize) -> Result<(), StoreError>,
{
    meter.reset();
    let mut returned = 0;
    query(&mut returned).await.expect(name);
    Measured {
        name,
        returned,
        read: meter.cost(),
    }
}

/// The window queries of the CLI's list commands over `window`.
async fn windows<S: AuditStore>(
    store: &S,
    trail: Option<&DynamoStore>,
    meter: &dyn Meter,
    cluster: &str,
    window: Window,
) -> Vec<Measured> {
    let mut measured = vec![
        measure("sessions", meter, async |returned: &mut usize| {
            window::sessions_by_time(store, cluster, window, &mut |_| {
                *returned += 1;
                Ok::<(), StoreError>(())
            })
            .await
        })
        .await,
        measure("keys (key events)", meter, async |returned: &mut usize| {
            window::keys_by_time(store, cluster, window, &mut |_| {
                *returned += 1;
                Ok::<(), StoreError>(())
            })
            .await
        })
        .await,
        measure("failed-logins", meter, async |returned: &mut usize| {
            window::failed_logins(store, cluster, window, &mut |_| {
                *returned += 1;
                Ok::<(), StoreError>(())
            })
            .await
        })
        .await,
        measure("alerts", meter, async |returned: &mut usize| {
            window::alerts(store, cluster, window, None, false, &mut |_| {
                *returned += 1;
                Ok::<(), StoreError>(())
            })
            .await
        })
        .await,
        measure(
            "alerts --kind sensitive_operation",
            meter,
            async |returned: &mut usize| {
                let kind = Some("sensitive_operation");
                window::alerts(store, cluster, window, kind, false, &mut |_| {
                    *returned += 1;
                    Ok::<(), StoreError>(())
                })
                .await
            },
        )
        .await,
    ];
    if let Some(trail) = trail {
        measured.push(
            measure("trail", meter, async |returned: &mut usize| {
                trail
                    .trail_pages(cluster, None, window, |page| {
                        *returned += page.len();
                        Ok::<(), StoreError>(())
                    })
                    .await
            })
            .await,
        );
    }
    measured
}

/// Prints the window queries at one history point; whether every one is within budget.
fn report(history: usize, window: Window, measured: &[Measured]) -> bool {
    let hour = |time: Option<Timestamp>| time.map(Timestamp::iso).unwrap_or_default();
    println!(
        "\n== one-hour window {} .. {} at {history} records of history",
        hour(window.from),
        hour(window.to)
    );
    println!(
        "{:<34} {:>9} {:>10} {:>9} {:>9} {:>12} {:>8}",
        "query", "returned", "items read", "requests", "read RU", "budget", ""
    );
    let mut held = true;
    for m in measured {
        let holds = m.read.items_read as f64 <= m.budget();
        held &= holds;
        println!(
            "{:<34} {:>9} {:>10} {:>9} {:>9.1} {:>12.0} {:>8}",
            m.name,
            m.returned,
            m.read.items_read,
            m.read.requests,
            m.read.read_units,
            m.budget(),
            if holds { "HOLDS" } else { "MISSED" }
        );
    }
    held
}

/// The one hour in the middle of what was ingested.
fn middle_hour(first: i64, last: i64) -> Window {
    let from = first + (last - first - HOUR_MICROS).max(0) / 2;
    Window {
        from: Some(Timestamp(from)),
        to: Some(Timestamp(from + HOUR_MICROS)),
    }
}

/// Peak RSS of `hsm-audit <args>` against the table on `endpoint`, output to /dev/null,
/// by GNU time (a small parent, as `scripts/bench.sh` measures the other commands).
fn peak_rss(cli: &str, endpoint: &str, table: &str, args: &[&str]) -> Option<f64> {
    let report = std::env::temp_dir().join(format!("hsm-audit-windows-{}.rss", std::process::id()));
    let status = std::process::Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(cli)
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("TABLE_NAME", table)
        // The allocator's option template.yaml sets for the Lambda, as for the other peaks.
        .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
        .stdout(std::process::Stdio::null())
        .status()
        .ok()?;
    let kib: f64 = std::fs::read_to_string(&report)
        .ok()?
        .split_whitespace()
        .last()?
        .parse()
        .ok()?;
    let _ = std::fs::remove_file(&report);
    status.success().then_some(kib / 1024.0)
}

/// The whole-cluster listings' peak RSS at `history` records.
fn listings_rss(cli: &str, endpoint: &str, table: &str, cluster: &str, history: usize) -> bool {
    println!("\n== whole-cluster listings at {history} records ({cli}), output to /dev/null");
    let mut held = true;
    for command in ["sessions", "keys", "trail"] {
        let started = Instant::now();
        match peak_rss(cli, endpoint, table, &[command, "--cluster", cluster]) {
            Some(mib) => {
                held &= mib <= 64.0;
                println!(
                    "hsm-audit {command:<8} --cluster {cluster}: peak RSS {mib:.1} MiB (target <= 64: {}), {:.0} s",
                    if mib <= 64.0 { "HOLDS" } else { "MISSED" },
                    started.elapsed().as_secs_f64()
                );
            }
            None => {
                held = false;
                println!(
                    "hsm-audit {command}: not measured (it failed, or GNU time is missing: apt-get install time)"
                );
            }
        }
    }
    held
}

/// Where a run ingests and reads.
struct Server {
    proxied: DynamoStore,
    proxy: Proxy,
    table: String,
}

fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let points = bench::points(
        "BENCH_WINDOWS_POINTS",
        if measuring {
            &[30_000, 250_000]
        } else {
            &[3_000]
        },
    );
    let last = points.iter().copied().max().unwrap_or(3_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let spec = WorkloadSpec {
        records: last + 1_000,
        records_per_payload: 1_000,
        app: true,
        ..WorkloadSpec::default()
    };
    let cluster = spec.cluster.clone();
    let server = std::env::var("BENCH_WINDOWS_PROXY_PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .map(|port| {
            let client = runtime.block_on(hsm_audit::store::dynamodb::connect());
            let table = format!("hsm-audit-windows-{}", std::process::id());
            // Created through the proxy, which learns the table's indexes from it.
            runtime
                .block_on(hsm_audit::store::dynamodb::create_table(&client, &table))
                .expect("the bench's table");
            Server {
                proxied: DynamoStore::new(client, table.clone()),
                proxy: Proxy { port },
                table,
            }
        });
    let memory = MemoryStore::new();
    let config = Config::from_lookup(
        Some(server.as_ref().map_or("bench".into(), |s| s.table.clone())),
        |_| None,
    )
    .expect("config");
    println!(
        "== time windows: {} (3 HSMs, default pace, 1,000-record payloads), points {points:?}",
        if server.is_some() {
            "on the local server, through the counting proxy"
        } else {
            "in memory (the ledger counts what DynamoDB would be sent and bill)"
        }
    );

    let cli = std::env::var("BENCH_WINDOWS_CLI").ok();
    // Reads need no emulated transaction: the listings can read the server itself.
    let reader = std::env::var("BENCH_WINDOWS_SERVER")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_default();
    let mut held = true;
    let (mut first, mut latest) = (i64::MAX, i64::MIN);
    let mut history = 0;
    let mut next_point = 0;
    let started = Instant::now();
    if let Some(server) = &server {
        server.proxy.reset();
    }
    for payload in generate(&spec) {
        if next_point == points.len() {
            break;
        }
        let (from, to) = span_of(&payload);
        first = first.min(from);
        latest = latest.max(to);
        let records = payload.records;
        let delivered = match &server {
            Some(server) => runtime.block_on(ingest_event(payload.event, &server.proxied, &config)),
            None => runtime.block_on(ingest_event(payload.event, &memory, &config)),
        };
        delivered.expect("delivery");
        history += records;
        if history < points[next_point] {
            continue;
        }
        println!(
            "\n{history} records ingested ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
        if next_point == 0
            && let Some(server) = &server
        {
            let [table, index, by_time, trail] = server.proxy.totals([
                "write_units",
                "index_write_units",
                "index_write_units:by_time",
                "index_write_units:trail_by_time",
            ]);
            let per_record = |units: f64| units / history as f64;
            println!(
                "write units per record while ingesting {history} records: table {:.2}, the time indexes {:.2} (+{:.0} %; by_time {:.2}, trail_by_time {:.2}), together {:.2}",
                per_record(table),
                per_record(index),
                100.0 * index / table.max(1.0),
                per_record(by_time),
                per_record(trail),
                per_record(table + index)
            );
        }
        let window = middle_hour(first, latest);
        let measured = match &server {
            Some(server) => runtime.block_on(windows(
                &server.proxied,
                Some(&server.proxied),
                &server.proxy,
                &cluster,
                window,
            )),
            None => runtime.block_on(windows(&memory, None, &memory, &cluster, window)),
        };
        held &= report(history, window, &measured);
        if let (Some(server), Some(cli)) = (&server, &cli) {
            held &= listings_rss(cli, &reader, &server.table, &cluster, history);
        }
        next_point += 1;
    }
    println!(
        "\ntime windows: {}",
        if held {
            "every target holds"
        } else {
            "a target missed (above)"
        }
    );
}
