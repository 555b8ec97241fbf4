//! What a small delivery costs as a cluster's open state grows (issue 28): sessions that
//! never log out, and an HSM's many reboots. A 3-record delivery (a login, a command and a
//! logout) is measured on a fresh cluster and on clusters that hold 5,000 and 50,000
//! sessions never logged out (left behind a day before: the session horizon has passed,
//! then once more with the horizon off, as a cluster before it was) and 1,000 (HSM, reboot)
//! streams. Costs are the in-memory store's ledger, which counts what DynamoDB would be
//! sent and bill (a test holds it to what the DynamoDB store sends), and — with
//! `BENCH_OPEN_STATE_PROXY_PORT`, as `make bench` runs it — the same cases again on the
//! local server through the counting proxy (`scripts/counting_proxy.py`), a table each;
//! heap by a counting allocator.
//!
//! Run: `cargo bench --bench open_state` (part of `make bench`).

use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use hsm_audit::config::Config;
use hsm_audit::lambda::ingest_event;
use hsm_audit::store::AuditStore;
use hsm_audit::store::dynamodb::{DynamoStore, create_table};
use hsm_audit::store::memory::MemoryStore;
use hsm_audit::testkit::bench::{Cost, Meter, Proxy};
use hsm_audit::testkit::workload::user_record;
use hsm_audit::testkit::{awslogs_event, log_event, subscription_payload};

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

const CLUSTER: &str = "cluster-open";
const HSM: &str = "hsm-open0001";
const DAY: i64 = 86_400_000_000;
/// 2025-01-01T00:00:00Z: the records' clock, well behind the invocation's.
const START: i64 = 1_735_689_600_000_000;
const LOGIN: (&str, u32) = ("CN_LOGIN", 0xd);
const COMMAND: (&str, u32) = ("CN_FIPS_RAND", 0x7);
const LOGOUT: (&str, u32) = ("CN_LOGOUT", 0xe);

/// Builds payloads of one HSM's stream, numbering its records and their event ids.
struct Stream {
    boot: u32,
    seq: u64,
    event_id: u64,
}

impl Stream {
    /// The HSM's stream at its first boot.
    fn new() -> Self {
        Stream {
            boot: 1,
            seq: 0,
            event_id: 0,
        }
    }

    fn payload(&mut self, records: &[(i64, (&str, u32), u64, String)]) -> serde_json::Value {
        let events: Vec<serde_json::Value> = records
            .iter()
            .map(|(time, (opcode, code), handle, user)| {
                let message = user_record(*time, self.boot, self.seq, opcode, *code, *handle, user);
                self.seq += 1;
                self.event_id += 1;
                log_event(self.event_id, time / 1000, &message)
            })
            .collect();
        let payload = subscription_payload(&format!("/aws/cloudhsm/{CLUSTER}"), HSM, events);
        awslogs_event(payload.to_string().as_bytes())
    }

    fn reboot(&mut self) {
        self.boot += 1;
        self.seq = 0;
    }
}

fn small_delivery(at: i64) -> Vec<(i64, (&'static str, u32), u64, String)> {
    let user = "probe".to_owned();
    vec![
        (at, LOGIN, 0x7f0, user.clone()),
        (at + 1_000_000, COMMAND, 0x7f0, user.clone()),
        (at + 2_000_000, LOGOUT, 0x7f0, user),
    ]
}

/// One measured delivery.
struct Probe {
    ledger: Cost,
    heap_peak: usize,
    time: Duration,
}

/// Where the cases run: a fresh store for each (`fresh`, given the case's name and
/// whether the session horizon is on), and what counts what it is sent.
struct Place<'p, S> {
    fresh: &'p dyn Fn(&str, bool) -> (S, Config),
    meter: for<'a> fn(&'a S, &'a Proxy) -> &'a dyn Meter,
    proxy: Proxy,
}

impl<S: AuditStore> Place<'_, S> {
    fn deliver(&self, store: &S, config: &Config, event: serde_json::Value, runtime: &Runtime) {
        runtime
            .block_on(ingest_event(event, store, config))
            .expect("delivery");
    }

    fn measure(
        &self,
        store: &S,
        config: &Config,
        event: serde_json::Value,
        runtime: &Runtime,
    ) -> Probe {
        let meter = (self.meter)(store, &self.proxy);
        meter.reset();
        let before = counting::start();
        let clock = Instant::now();
        self.deliver(store, config, event, runtime);
        let time = clock.elapsed();
        let heap_peak = counting::peak_since(before);
        Probe {
            ledger: meter.cost(),
            heap_peak,
            time,
        }
    }

    /// A fresh cluster: the small delivery alone.
    fn fresh_cluster(&self, runtime: &Runtime) -> Probe {
        let (store, config) = (self.fresh)("fresh", true);
        let mut stream = Stream::new();
        self.measure(
            &store,
            &config,
            stream.payload(&small_delivery(START + 2 * DAY)),
            runtime,
        )
    }

    /// A cluster whose `sessions` logins (of 20 application users, each under a handle of
    /// its own, as applications that crash without logging out leave them) never log out,
    /// two days before `at`, then a record at `at - 2 min` that lets the horizon act and
    /// one at `at - 1 min`: the small delivery at `at`.
    fn with_open_sessions(&self, sessions: usize, horizon: bool, runtime: &Runtime) -> Probe {
        let (store, config) = (self.fresh)(&format!("sessions-{sessions}"), horizon);
        let mut stream = Stream::new();
        let logins: Vec<_> = (0..sessions)
            .map(|index| {
                let time = START + index as i64 * 1_000;
                (
                    time,
                    LOGIN,
                    0x10_0000 + (index as u64) * 16,
                    format!("app-{:02}", index % 20),
                )
            })
            .collect();
        for chunk in logins.chunks(1_000) {
            self.deliver(&store, &config, stream.payload(chunk), runtime);
        }
        let at = START + 2 * DAY;
        // The step that abandons them writes an alert for each; the one after it is
        // measured, as every later one would be.
        for before in [120_000_000, 60_000_000] {
            let keeper = vec![(at - before, COMMAND, 0x1, "keeper".to_owned())];
            self.deliver(&store, &config, stream.payload(&keeper), runtime);
        }
        self.measure(
            &store,
            &config,
            stream.payload(&small_delivery(at)),
            runtime,
        )
    }

    /// A cluster whose HSM rebooted `boots` times, a record each boot.
    fn with_streams(&self, boots: usize, runtime: &Runtime) -> Probe {
        let (store, config) = (self.fresh)(&format!("boots-{boots}"), true);
        let mut stream = Stream::new();
        for boot in 0..boots {
            let time = START + boot as i64 * 60_000_000;
            self.deliver(
                &store,
                &config,
                stream.payload(&[(time, COMMAND, 0x1, "ops".to_owned())]),
                runtime,
            );
            stream.reboot();
        }
        let at = START + boots as i64 * 60_000_000 + DAY;
        self.measure(
            &store,
            &config,
            stream.payload(&small_delivery(at)),
            runtime,
        )
    }

    /// Every case, a row each against the fresh cluster; whether every target holds. The
    /// horizon-off rows show what the horizon saves (they are not targets) and run where
    /// `horizon_off` asks.
    fn cases(
        &self,
        sessions: &[usize],
        boots: usize,
        horizon_off: bool,
        runtime: &Runtime,
    ) -> bool {
        header();
        let fresh = self.fresh_cluster(runtime);
        row("nothing before it", &fresh, &fresh);
        let mut held = true;
        for &count in sessions {
            held &= row(
                &format!("{count} sessions never logged out"),
                &self.with_open_sessions(count, true, runtime),
                &fresh,
            );
            if horizon_off {
                row(
                    "… with SESSION_HORIZON_SECONDS=0",
                    &self.with_open_sessions(count, false, runtime),
                    &fresh,
                );
            }
        }
        held &= row(
            &format!("{boots} (HSM, reboot) streams"),
            &self.with_streams(boots, runtime),
            &fresh,
        );
        held
    }
}

fn header() {
    println!(
        "{:<44} {:>8} {:>9} {:>9} {:>10} {:>9} {:>8}",
        "a 3-record delivery on a cluster with",
        "requests",
        "read RU",
        "write WU",
        "items read",
        "heap MiB",
        "ms"
    );
}

fn row(name: &str, probe: &Probe, fresh: &Probe) -> bool {
    let cost = &probe.ledger;
    let ratio = |a: f64, b: f64| a / b.max(f64::MIN_POSITIVE);
    let ratios = [
        ratio(cost.read_units, fresh.ledger.read_units),
        ratio(cost.write_units as f64, fresh.ledger.write_units as f64),
        ratio(
            cost.items_read as f64,
            fresh.ledger.items_read.max(1) as f64,
        ),
        ratio(probe.heap_peak as f64, fresh.heap_peak as f64),
    ];
    let holds = ratios.iter().all(|&r| r <= 1.5);
    println!(
        "{name:<44} {:>8} {:>9.1} {:>9} {:>10} {:>9.2} {:>8.1}   RU {:.2}x WU {:.2}x items {:.2}x heap {:.2}x {}",
        cost.requests,
        cost.read_units,
        cost.write_units,
        cost.items_read,
        probe.heap_peak as f64 / 1_048_576.0,
        probe.time.as_secs_f64() * 1e3,
        ratios[0],
        ratios[1],
        ratios[2],
        ratios[3],
        if holds { "HOLDS" } else { "MISSED" }
    );
    holds
}

fn config(table: &str, horizon: bool) -> Config {
    Config::from_lookup(Some(table.to_owned()), |name| {
        (name == "SESSION_HORIZON_SECONDS" && !horizon).then(|| "0".to_owned())
    })
    .expect("config")
}

fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (sessions, boots) = if measuring {
        (vec![5_000, 50_000], 1_000)
    } else {
        (vec![500], 50)
    };
    let in_memory = Place {
        fresh: &|_, horizon| (MemoryStore::new(), config("bench", horizon)),
        meter: |store, _| store,
        proxy: Proxy { port: 0 },
    };
    println!("== in memory (the ledger counts what DynamoDB would be sent and bill)");
    let mut held = in_memory.cases(&sessions, boots, true, &runtime);
    if let Some(port) = std::env::var("BENCH_OPEN_STATE_PROXY_PORT")
        .ok()
        .and_then(|port| port.parse().ok())
    {
        let client = runtime.block_on(hsm_audit::store::dynamodb::connect());
        let fresh = |case: &str, horizon: bool| {
            let table = format!("hsm-audit-open-{case}-{horizon}-{}", std::process::id());
            runtime
                .block_on(create_table(&client, &table))
                .expect("the bench's table");
            (
                DynamoStore::new(client.clone(), table.clone()),
                config(&table, horizon),
            )
        };
        let on_server = Place {
            fresh: &fresh,
            meter: |_, proxy| proxy,
            proxy: Proxy { port },
        };
        println!("\n== on the local server, through the counting proxy");
        held &= on_server.cases(&sessions, boots, false, &runtime);
    }
    println!(
        "\nopen state: {}",
        if held {
            "every target holds"
        } else {
            "a target missed (above)"
        }
    );
}
