//! `make bench`, the dense curves: what one invocation costs on a busy cluster as its
//! history grows — (a) three HSMs logging about 150 records a second together, (b) one
//! HSM logging about 600 — with 100- and 1,000-record payloads delivered as CloudWatch
//! Logs does (each HSM's records within 30 s, another HSM's payload covering the same
//! seconds), into the in-memory store, whose ledger counts what DynamoDB would be sent
//! and bill (a test holds it to the requests the DynamoDB store sends).
//!
//! At each history point the next few invocations are measured: requests, read and
//! write units, items read, heap peak and time; their mean is compared with the first
//! point's. Every invocation is checked for items read against `5 × batch + 300`, and no
//! record delivered in order may be called late.
//!
//! Then two figures of lateness and rebuilds: a payload held back about two hours at 30k
//! records of history and delivered after 5,000 more, folded in by its own invocation
//! (target: items read ≤ 4 × the records after it + 1,000); and `rederive` of the
//! largest dense cluster (target: heap ≤ 128 MiB), with its throughput.
//!
//! Points: BENCH_DENSE_POINTS (comma-separated record counts; default 1000,10000,100000,
//! 250000 under `cargo bench`, a small smoke run under `cargo test`).

use std::time::{Duration, Instant};

use hsm_audit::config::Config;
use hsm_audit::lambda::ingest_event;
use hsm_audit::store::AuditStore;
use hsm_audit::store::memory::MemoryStore;
use hsm_audit::testkit::bench::{self, Cost, Meter, Proxy};
use hsm_audit::testkit::payload_body;
use hsm_audit::testkit::workload::{WorkloadSpec, generate};

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// Invocations measured at each history point.
const PROBES: usize = 10;

struct Probe {
    records: usize,
    /// Records the invocation's replays folded again (its own among them).
    replayed: usize,
    ledger: Cost,
    heap_peak: usize,
    time: Duration,
}

/// Records a second of a generated workload.
fn rate(spec: &WorkloadSpec) -> f64 {
    let payloads = generate(spec);
    let mut first = i64::MAX;
    let mut last = i64::MIN;
    let mut records = 0;
    for payload in &payloads {
        let body = payload_body(&payload.event);
        for event in body["logEvents"].as_array().into_iter().flatten() {
            let time = event["timestamp"].as_i64().unwrap_or_default();
            first = first.min(time);
            last = last.max(time);
            records += 1;
        }
    }
    records as f64 / ((last - first).max(1) as f64 / 1000.0)
}

/// The workload of a scenario at about `target` records a second.
fn spec_at(hsms: usize, target: f64, records: usize, per_payload: usize) -> WorkloadSpec {
    let mut spec = WorkloadSpec {
        hsms,
        records: 5_000,
        records_per_payload: per_payload,
        app: true,
        delivery_seconds: Some(30),
        ..WorkloadSpec::default()
    };
    let base = rate(&spec);
    spec.speedup = ((target / base).round() as u64).max(1);
    spec.records = records;
    spec
}

struct Curve {
    name: String,
    rate: f64,
    /// (history, mean of the probes there)
    at: Vec<(usize, Vec<Probe>)>,
    worst_items_ratio: f64,
    over_budget: usize,
    late: usize,
    replays: usize,
    deliveries: usize,
}

/// A payload of the sparse workload held back at `history` records and delivered after
/// `after` more: what its own invocation reads.
fn late_payload(
    store: MemoryStore,
    config: &Config,
    history: usize,
    after: usize,
    runtime: &tokio::runtime::Runtime,
) {
    let spec = WorkloadSpec {
        records: history + after + 1_000,
        records_per_payload: 100,
        app: true,
        delivery_seconds: Some(30),
        ..WorkloadSpec::default()
    };
    let payloads = generate(&spec);
    let mut delivered = 0;
    let mut held = None;
    let mut after_it = 0;
    for payload in payloads {
        if held.is_none() && delivered >= history {
            held = Some(payload);
            continue;
        }
        if held.is_some() {
            if after_it >= after {
                break;
            }
            after_it += payload.records;
        }
        delivered += payload.records;
        runtime
            .block_on(ingest_event(payload.event, &store, config))
            .expect("delivery");
    }
    let Some(held) = held else {
        return;
    };
    store.reset();
    let before = counting::start();
    let clock = Instant::now();
    let report = runtime
        .block_on(ingest_event(held.event, &store, config))
        .expect("the late delivery");
    let time = clock.elapsed();
    let ledger = store.cost();
    let counts = report
        .by_cluster
        .values()
        .next()
        .cloned()
        .unwrap_or_default();
    let budget = 4 * after_it as u64 + 1_000;
    println!(
        "\n== a {}-record payload held back at {history} records of history, delivered after {after_it} more: {} late, {} records replayed; items read {} (target <= {budget}: {}), requests {}, read RU {:.1}, write WU {}, heap {:.2} MiB, {:.1} ms",
        held.records,
        counts.late,
        counts.replayed,
        ledger.items_read,
        if ledger.items_read <= budget {
            "HOLDS"
        } else {
            "MISSED"
        },
        ledger.requests,
        ledger.read_units,
        ledger.write_units,
        counting::peak_since(before) as f64 / 1_048_576.0,
        time.as_secs_f64() * 1e3
    );
}

#[allow(clippy::too_many_arguments)]
fn run<S: AuditStore>(
    store: &S,
    meter: &impl Meter,
    config: &Config,
    name: &str,
    hsms: usize,
    target: f64,
    per_payload: usize,
    points: &[usize],
    runtime: &tokio::runtime::Runtime,
) -> Curve {
    let last = points.iter().copied().max().unwrap_or(1_000);
    let spec = spec_at(hsms, target, last + PROBES * per_payload * 2, per_payload);
    let measured_rate = rate(&WorkloadSpec {
        records: 20_000,
        ..spec.clone()
    });
    let payloads = generate(&spec);
    let mut curve = Curve {
        name: name.to_owned(),
        rate: measured_rate,
        at: Vec::new(),
        worst_items_ratio: 0.0,
        over_budget: 0,
        late: 0,
        replays: 0,
        deliveries: 0,
    };
    let mut history = 0;
    let mut next_point = 0;
    let mut probing: Option<(usize, Vec<Probe>)> = None;
    let mut at = Vec::new();
    let (mut deliveries, mut late, mut replays, mut over_budget) = (0, 0, 0, 0);
    let mut worst_items_ratio: f64 = 0.0;
    for payload in payloads {
        if probing.is_none() && next_point < points.len() && history >= points[next_point] {
            probing = Some((history, Vec::new()));
            next_point += 1;
        }
        meter.reset();
        let before = counting::start();
        let clock = Instant::now();
        let report = runtime
            .block_on(ingest_event(payload.event, store, config))
            .expect("delivery");
        let time = clock.elapsed();
        let heap_peak = counting::peak_since(before);
        let ledger = meter.cost();
        history += payload.records;
        deliveries += 1;
        late += report.by_cluster.values().map(|c| c.late).sum::<usize>();
        let replayed = report
            .by_cluster
            .values()
            .map(|c| c.replayed)
            .sum::<usize>();
        replays += usize::from(replayed > 0);
        let budget = 5 * payload.records as u64 + 300;
        // The trail items the delivery's own write reads back are the batch's: the
        // budget is about what the derivation reads beyond them.
        worst_items_ratio =
            worst_items_ratio.max(ledger.items_read as f64 / payload.records.max(1) as f64);
        if ledger.items_read > budget {
            over_budget += 1;
        }
        if let Some((_, probes)) = probing.as_mut() {
            probes.push(Probe {
                records: payload.records,
                replayed,
                ledger,
                heap_peak,
                time,
            });
            if probes.len() == PROBES
                && let Some(done) = probing.take()
            {
                at.push(done);
            }
        }
        if next_point >= points.len() && probing.is_none() && !at.is_empty() {
            break;
        }
    }
    curve.at = at;
    curve.deliveries = deliveries;
    curve.late = late;
    curve.replays = replays;
    curve.over_budget = over_budget;
    curve.worst_items_ratio = worst_items_ratio;
    curve
}

/// `rederive` of a curve's cluster: heap peak and records a second.
fn rederive_of(
    store: &MemoryStore,
    curve: &Curve,
    records: usize,
    runtime: &tokio::runtime::Runtime,
) {
    let config = Config::from_lookup(Some("bench".into()), |_| None).expect("config");
    let before = counting::start();
    let clock = Instant::now();
    let rebuilt = runtime
        .block_on(hsm_audit::pipeline::rederive(
            store,
            &config,
            &WorkloadSpec::default().cluster,
        ))
        .expect("rederive");
    let time = clock.elapsed();
    let heap = counting::peak_since(before) as f64 / 1_048_576.0;
    println!(
        "\n== rederive of {} ({records} records): {} steps, {:.0} records/s, heap peak {heap:.1} MiB (target <= 128: {})",
        curve.name,
        rebuilt.steps,
        records as f64 / time.as_secs_f64(),
        if heap <= 128.0 { "HOLDS" } else { "MISSED" }
    );
}

struct Mean {
    records: f64,
    /// Probes that replayed.
    replays: usize,
    replayed: f64,
    requests: f64,
    read_units: f64,
    write_units: f64,
    items_read: f64,
    heap_mib: f64,
    time_ms: f64,
}

fn mean(probes: &[&Probe]) -> Mean {
    let n = probes.len().max(1) as f64;
    let sum = |f: &dyn Fn(&Probe) -> f64| probes.iter().map(|p| f(p)).sum::<f64>() / n;
    Mean {
        records: sum(&|p| p.records as f64),
        replays: probes.iter().filter(|p| p.replayed > 0).count(),
        replayed: sum(&|p| p.replayed as f64),
        requests: sum(&|p| p.ledger.requests as f64),
        read_units: sum(&|p| p.ledger.read_units),
        write_units: sum(&|p| p.ledger.write_units as f64),
        items_read: sum(&|p| p.ledger.items_read as f64),
        heap_mib: probes.iter().map(|p| p.heap_peak).max().unwrap_or(0) as f64 / 1_048_576.0,
        time_ms: sum(&|p| p.time.as_secs_f64() * 1e3),
    }
}

/// The mean of the probes that replayed (`replaying`) or of those that did not, if any.
fn kind_mean(probes: &[Probe], replaying: bool) -> Option<Mean> {
    let of_kind: Vec<&Probe> = probes
        .iter()
        .filter(|probe| (probe.replayed > 0) == replaying)
        .collect();
    (!of_kind.is_empty()).then(|| mean(&of_kind))
}

/// Each figure of `to` against `from`: requests, read and write units, items read, heap
/// peak and time.
fn ratios(from: &Mean, to: &Mean) -> [(&'static str, f64); 6] {
    let ratio = |a: f64, b: f64| if a > 0.0 { b / a } else { 1.0 };
    [
        ("requests", ratio(from.requests, to.requests)),
        ("read units", ratio(from.read_units, to.read_units)),
        ("write units", ratio(from.write_units, to.write_units)),
        ("items read", ratio(from.items_read, to.items_read)),
        ("heap peak", ratio(from.heap_mib, to.heap_mib)),
        ("time", ratio(from.time_ms, to.time_ms)),
    ]
}

fn worst(figures: &[(&str, f64)]) -> f64 {
    figures.iter().map(|(_, r)| *r).fold(0.0, f64::max)
}

fn listed(figures: &[(&str, f64)]) -> String {
    figures
        .iter()
        .map(|(name, r)| format!("{name} {r:.2}x"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a curve and whether its targets hold.
fn report(curve: &Curve, per_payload: usize, elapsed: Duration) -> bool {
    println!(
        "\n== {} ({:.0} rec/s measured), {per_payload}-record payloads: {} deliveries in {:.0} s, {} replays, {} late",
        curve.name,
        curve.rate,
        curve.deliveries,
        elapsed.as_secs_f64(),
        curve.replays,
        curve.late
    );
    println!(
        "{:>9} {:>7} {:>7} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9}",
        "history",
        "batch",
        "replays",
        "replayed",
        "requests",
        "read RU",
        "write WU",
        "items read",
        "heap MiB",
        "time ms"
    );
    let means: Vec<(usize, Mean)> = curve
        .at
        .iter()
        .map(|(history, probes)| (*history, mean(&probes.iter().collect::<Vec<_>>())))
        .collect();
    for (history, m) in &means {
        println!(
            "{:>9} {:>7.0} {:>5}/{PROBES} {:>8.0} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>9.2} {:>9.1}",
            history,
            m.records,
            m.replays,
            m.replayed,
            m.requests,
            m.read_units,
            m.write_units,
            m.items_read,
            m.heap_mib,
            m.time_ms
        );
    }
    let (Some((h0, first)), Some((h1, last))) = (means.first(), means.last()) else {
        return false;
    };
    let figures = ratios(first, last);
    let ok = worst(&figures) <= 1.5
        && curve.over_budget == 0
        && curve.late == 0
        && last.heap_mib <= 64.0;
    println!(
        "history {h0} -> {h1}: {}; items read at most {:.2} x the batch, {} of {} over 5 x batch + 300; {} late — {}",
        listed(&figures),
        curve.worst_items_ratio,
        curve.over_budget,
        curve.deliveries,
        curve.late,
        if ok { "HOLDS" } else { "MISSED" }
    );
    // An interleaved HSM's invocation either replays its neighbours' records or folds in
    // order and reads almost nothing; the probes of a point take the two in whatever mix
    // the delivery order gives there, and the means follow the mix. Each kind is then
    // also compared with itself.
    if first.replays != last.replays
        && let (Some((_, first_probes)), Some((_, last_probes))) =
            (curve.at.first(), curve.at.last())
    {
        println!(
            "the probes' mix differs: {}/{PROBES} replayed at {h0}, {}/{PROBES} at {h1}; each kind against itself:",
            first.replays, last.replays
        );
        for (kind, replaying) in [("replays", true), ("in order", false)] {
            if let (Some(from), Some(to)) = (
                kind_mean(first_probes, replaying),
                kind_mean(last_probes, replaying),
            ) {
                let figures = ratios(&from, &to);
                println!(
                    "  {kind}, history {h0} -> {h1}: items read {:.0} -> {:.0}; {} — {}",
                    from.items_read,
                    to.items_read,
                    listed(&figures),
                    if worst(&figures) <= 1.5 {
                        "HOLDS"
                    } else {
                        "MISSED"
                    }
                );
            }
        }
    }
    ok
}

const SCENARIOS: [(&str, usize, f64); 2] = [
    ("3 HSMs ~150 rec/s", 3, 150.0),
    ("1 HSM ~600 rec/s", 1, 600.0),
];

/// The same curves on a local server, through the counting proxy at `port`
/// (`AWS_ENDPOINT_URL` names the proxy).
fn on_server(port: u16, points: &[usize], runtime: &tokio::runtime::Runtime) -> bool {
    let mut held = true;
    let client = runtime.block_on(hsm_audit::store::dynamodb::connect());
    for (index, (name, hsms, target)) in SCENARIOS.into_iter().enumerate() {
        for per_payload in [100usize, 1_000] {
            let table = format!(
                "hsm-audit-dense-{index}-{per_payload}-{}",
                std::process::id()
            );
            runtime
                .block_on(hsm_audit::store::dynamodb::create_table(&client, &table))
                .expect("the bench's table");
            let store = hsm_audit::store::dynamodb::DynamoStore::new(client.clone(), table.clone());
            let config = Config::from_lookup(Some(table.clone()), |_| None).expect("config");
            let started = Instant::now();
            let curve = run(
                &store,
                &Proxy { port },
                &config,
                name,
                hsms,
                target,
                per_payload,
                points,
                runtime,
            );
            held &= report(&curve, per_payload, started.elapsed());
            // dynalite holds every table in its heap (a 250k-record curve's: 2–3 GiB); the
            // next curve runs beside less of it. Deleting one that large can outlast the
            // client's timeout (and its retry find the table gone): dynalite goes on with
            // it all the same.
            if let Err(error) = runtime.block_on(client.delete_table().table_name(&table).send())
                && !error
                    .as_service_error()
                    .is_some_and(|error| error.is_resource_not_found_exception())
            {
                println!("(the table {table} is not deleted yet: {error})");
            }
        }
    }
    held
}

fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let points = bench::points(
        "BENCH_DENSE_POINTS",
        if measuring {
            &[1_000, 10_000, 100_000, 250_000]
        } else {
            &[1_000, 3_000]
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut held = true;
    let largest = points.iter().copied().max().unwrap_or(1_000);
    let config = Config::from_lookup(Some("bench".into()), |_| None).expect("config");
    println!("== in memory (the ledger counts what DynamoDB would be sent and bill)");
    late_payload(
        MemoryStore::new(),
        &config,
        if measuring { 30_000 } else { 3_000 },
        if measuring { 5_000 } else { 1_000 },
        &runtime,
    );
    for (name, hsms, target) in SCENARIOS {
        for per_payload in [100usize, 1_000] {
            let started = Instant::now();
            let store = MemoryStore::new();
            let curve = run(
                &store,
                &store,
                &config,
                name,
                hsms,
                target,
                per_payload,
                &points,
                &runtime,
            );
            held &= report(&curve, per_payload, started.elapsed());
            if hsms == 3 && per_payload == 1_000 {
                rederive_of(&store, &curve, largest, &runtime);
            }
        }
    }
    if let Some(port) = std::env::var("BENCH_DENSE_PROXY_PORT")
        .ok()
        .and_then(|port| port.parse().ok())
    {
        let points = bench::points("BENCH_DENSE_SERVER_POINTS", &[1_000, 10_000, 30_000]);
        println!(
            "\n== on the local server, through the counting proxy (scripts/counting_proxy.py)"
        );
        held &= on_server(port, &points, &runtime);
    }
    println!(
        "\ndense curves: {}",
        if held {
            "every target holds"
        } else {
            "a target missed (above)"
        }
    );
}
