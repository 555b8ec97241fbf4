//! `make bench`, the history curve: what one invocation costs as the cluster's history
//! grows. A workload with interactive sessions on three HSMs, an application's session
//! that stays logged in throughout and uses three keys over and over (the long session
//! and the busy keys), is ingested payload by payload into the in-memory store, which
//! counts the requests and capacity units DynamoDB would be sent (`MemoryStore::ledger`;
//! a test checks it against the requests the DynamoDB store sends). At each point of
//! history one 100-record and one 1,000-record payload are measured: requests by
//! operation, read and write units, items read, the heap allocated at the peak of the
//! invocation, and its time in process.
//!
//! Points: BENCH_HISTORY_POINTS (comma-separated record counts; default 1000,10000,
//! 100000,1000000 under `cargo bench`, a small smoke run under `cargo test`).

use std::time::{Duration, Instant};

use hsm_audit::config::Config;
use hsm_audit::lambda::ingest_event;
use hsm_audit::store::memory::{Ledger, MemoryStore};
use hsm_audit::testkit::workload::{GeneratedPayload, WorkloadSpec, generate};
use hsm_audit::testkit::{bench, payload_body};
use hsm_audit::verify::{VerifyOptions, verify_trail};

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// One invocation, measured.
struct Probe {
    history: usize,
    records: usize,
    ledger: Ledger,
    heap_peak: usize,
    time: Duration,
}

/// The log events of several payloads of one stream as one payload.
fn merged(parts: &[&GeneratedPayload]) -> serde_json::Value {
    let mut events = Vec::new();
    let mut body = serde_json::Value::Null;
    for part in parts {
        let mut payload = payload_body(&part.event);
        if let Some(list) = payload
            .get_mut("logEvents")
            .and_then(|list| list.as_array_mut())
        {
            events.append(list);
        }
        body = payload;
    }
    body["logEvents"] = serde_json::Value::Array(events);
    hsm_audit::testkit::awslogs_event(body.to_string().as_bytes())
}

fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let points = bench::points(
        "BENCH_HISTORY_POINTS",
        if measuring {
            &[1_000, 10_000, 100_000, 1_000_000]
        } else {
            &[1_000, 4_000]
        },
    );
    let last = points.iter().copied().max().unwrap_or(1_000);
    let spec = WorkloadSpec {
        records: last + 20_000,
        records_per_payload: 100,
        app: true,
        delivery_seconds: Some(30),
        ..WorkloadSpec::default()
    };
    let payloads = generate(&spec);
    let mut per_stream: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for payload in &payloads {
        *per_stream.entry(payload.log_stream.as_str()).or_default() += payload.records;
    }
    let busiest = per_stream
        .iter()
        .max_by_key(|(_, records)| **records)
        .map(|(stream, _)| (*stream).to_owned())
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = MemoryStore::new();
    let config = Config::from_lookup(Some("bench".into()), |_| None).expect("config");
    let mut probes: Vec<Probe> = Vec::new();
    let mut verified: Vec<(u64, u64, usize, Duration)> = Vec::new();
    let mut delivered = vec![false; payloads.len()];
    let mut history = 0;
    let mut next = 0;
    println!(
        "== history curve: one invocation into a cluster of growing history ({} HSMs, {} users, an application session; allowed lateness {} s)",
        spec.hsms,
        spec.users,
        config.derive.allowed_lateness_micros / 1_000_000
    );
    let started = Instant::now();
    let deliver = |event: serde_json::Value| {
        runtime
            .block_on(ingest_event(event, &store, &config))
            .expect("delivery");
    };
    for &point in &points {
        while history < point && next < payloads.len() {
            if !delivered[next] {
                deliver(payloads[next].event.clone());
                delivered[next] = true;
                history += payloads[next].records;
            }
            next += 1;
        }
        // The busiest stream's next payloads, merged until they hold 100 records, then
        // the following ones until 1,000: what a CloudWatch delivery of that size carries.
        let mut probes_here = Vec::new();
        let mut taken: Vec<usize> = Vec::new();
        for size in [100usize, 1_000] {
            let mut parts: Vec<usize> = Vec::new();
            let mut records = 0;
            for index in next..payloads.len() {
                if records >= size {
                    break;
                }
                if !delivered[index]
                    && !taken.contains(&index)
                    && payloads[index].log_stream == busiest
                {
                    parts.push(index);
                    records += payloads[index].records;
                }
            }
            if parts.is_empty() {
                break;
            }
            let event = merged(
                &parts
                    .iter()
                    .map(|&index| &payloads[index])
                    .collect::<Vec<_>>(),
            );
            taken.extend(&parts);
            probes_here.push((records, event));
        }
        for (records, event) in probes_here {
            store.reset_ledger();
            let before = counting::start();
            let clock = Instant::now();
            deliver(event);
            let time = clock.elapsed();
            probes.push(Probe {
                history,
                records,
                ledger: store.ledger(),
                heap_peak: counting::peak_since(before),
                time,
            });
            history += records;
        }
        for index in taken {
            delivered[index] = true;
        }
        // `verify` over the whole trail: time grows with the history, memory must not.
        let before = counting::start();
        let clock = Instant::now();
        let report = runtime
            .block_on(verify_trail(
                &store,
                &spec.cluster,
                &VerifyOptions::default(),
                |_| {},
            ))
            .expect("verify");
        assert!(report.clean, "the bench's trail verifies clean");
        verified.push((
            report.records,
            report.digests,
            counting::peak_since(before),
            clock.elapsed(),
        ));
    }
    println!(
        "built in {:.0} s\n\n{:>9} {:>7} {:>8} {:>9} {:>9} {:>10} {:>10} {:>11} {:>9}  requests by operation",
        started.elapsed().as_secs_f64(),
        "history",
        "payload",
        "requests",
        "read RU",
        "write WU",
        "items read",
        "heap MiB",
        "time ms",
        "req/rec"
    );
    for probe in &probes {
        let ledger = &probe.ledger;
        let operations: Vec<String> = ledger
            .requests
            .iter()
            .map(|(operation, count)| format!("{operation} {count}"))
            .collect();
        println!(
            "{:>9} {:>7} {:>8} {:>9.1} {:>9} {:>10} {:>10.2} {:>11.1} {:>9.3}  {}",
            probe.history,
            probe.records,
            ledger.total_requests(),
            ledger.read_units,
            ledger.write_units,
            ledger.items_read,
            probe.heap_peak as f64 / 1_048_576.0,
            probe.time.as_secs_f64() * 1e3,
            ledger.total_requests() as f64 / probe.records as f64,
            operations.join(", ")
        );
    }
    println!(
        "\nlargest history against the smallest, per payload size (target: every figure within 1.5x):"
    );
    for size in [100usize, 1_000] {
        let of_size: Vec<&Probe> = probes
            .iter()
            .filter(|p| p.records.abs_diff(size) * 10 < size * 5)
            .collect();
        let (Some(first), Some(last)) = (of_size.first(), of_size.last()) else {
            continue;
        };
        let ratio = |a: f64, b: f64| if a > 0.0 { b / a } else { 1.0 };
        let figures = [
            (
                "requests",
                ratio(
                    first.ledger.total_requests() as f64,
                    last.ledger.total_requests() as f64,
                ),
            ),
            (
                "read units",
                ratio(first.ledger.read_units, last.ledger.read_units),
            ),
            (
                "write units",
                ratio(
                    first.ledger.write_units as f64,
                    last.ledger.write_units as f64,
                ),
            ),
            (
                "items read",
                ratio(
                    first.ledger.items_read as f64,
                    last.ledger.items_read as f64,
                ),
            ),
            (
                "heap peak",
                ratio(first.heap_peak as f64, last.heap_peak as f64),
            ),
            (
                "time",
                ratio(first.time.as_secs_f64(), last.time.as_secs_f64()),
            ),
        ];
        let worst = figures.iter().map(|(_, r)| *r).fold(0.0, f64::max);
        let text: Vec<String> = figures
            .iter()
            .map(|(name, r)| format!("{name} {r:.2}x"))
            .collect();
        println!(
            "  {size}-record payload, history {} -> {}: {} — {}",
            first.history,
            last.history,
            text.join(", "),
            if worst <= 1.5 { "HOLDS" } else { "MISSED" }
        );
    }
    println!(
        "\n== verify: the whole trail against its digest chain (records, digests, heap peak MiB, time s)"
    );
    for (records, digests, heap_peak, time) in &verified {
        println!(
            "{records:>9} {digests:>7} {:>9.2} {:>8.2}",
            *heap_peak as f64 / 1_048_576.0,
            time.as_secs_f64()
        );
    }
}
