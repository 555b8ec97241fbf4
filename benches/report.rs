//! `make bench`, the report at scale: a cluster with 100,000 keys and 50,000 sessions
//! (their events, failed logins, alerts, six HSM streams with gaps) is written into the
//! in-memory store as the derivation lays it out; then `hsm-audit report`'s reading and
//! rendering run over it page by page, as they do over DynamoDB. Measured: the time of
//! the HTML report and of the whole inventory as CSV, the heap allocated at their peak
//! above the store's own (counting allocator), the files' sizes.
//!
//! Sizes: BENCH_REPORT_KEYS and BENCH_REPORT_SESSIONS (defaults 100,000 and 50,000 under
//! `cargo bench`, a small smoke run under `cargo test`).

use std::time::Instant;

use hsm_audit::domain::{
    Alert, AlertKind, ClusterSession, Derived, FailedLogin, KeyEvent, KeyGeneration, KeyState,
    SessionEvent, StreamSummary,
};
use hsm_audit::incremental::StepWrite;
use hsm_audit::model::{Opcode, Timestamp};
use hsm_audit::report::rows::{INVENTORY_COLUMNS, RowFormat, RowWriter};
use hsm_audit::report::{Limits, MICROS_PER_DAY, Options, html, read};
use hsm_audit::store::AuditStore;
use hsm_audit::store::dynamodb::items::{Item, derived_items};
use hsm_audit::store::memory::MemoryStore;

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

const CLUSTER: &str = "cluster-bench";
const HSMS: [&str; 6] = [
    "hsm-a0001",
    "hsm-b0002",
    "hsm-c0003",
    "hsm-d0004",
    "hsm-e0005",
    "hsm-f0006",
];
/// 2024-01-01T00:00:00Z: the workload spans the year after it.
const START: i64 = 1_704_067_200_000_000;
const CHUNK: usize = 5_000;

fn size(name: &str, measuring: (usize, usize)) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(if std::env::args().any(|arg| arg == "--bench") {
            measuring.0
        } else {
            measuring.1
        })
}

fn at(n: usize, total: usize) -> Timestamp {
    Timestamp(START + (n as i64) * (365 * MICROS_PER_DAY / total.max(1) as i64))
}

fn key_event(time: Timestamp, opcode: Opcode, seq: u64, user: &str) -> KeyEvent {
    KeyEvent {
        time,
        hsm: HSMS[seq as usize % HSMS.len()].to_owned(),
        seq: Some(seq),
        reboot_counter: Some(1),
        opcode,
        success: true,
        response_code: Some(0),
        response: None,
        user: Some(user.to_owned()),
        attributes: None,
        log_event_id: None,
    }
}

fn keys(range: std::ops::Range<usize>, total: usize) -> Vec<KeyGeneration> {
    range
        .map(|n| {
            let user = format!("user{:03}", n % 300);
            let created = at(n, total);
            let mut key = KeyGeneration::blank(n as u64 + 1, None, 1, "secret");
            key.created_time = Some(created);
            key.created_by = Some(user.clone());
            key.created_opcode = Some(Opcode::GenerateKey);
            key.hsms = HSMS[..3].iter().map(|hsm| (*hsm).to_owned()).collect();
            key.exported = n % 50 == 0;
            key.events = vec![
                key_event(created, Opcode::GenerateKey, 2 * n as u64, &user),
                key_event(
                    Timestamp(created.0 + 60_000_000),
                    Opcode::Other("CN_ENCRYPT".into()),
                    2 * n as u64 + 1,
                    &user,
                ),
            ];
            if n % 10 == 0 {
                key.state = KeyState::Destroyed;
                key.events.push(key_event(
                    Timestamp(created.0 + 120_000_000),
                    Opcode::DestroyObject,
                    2 * n as u64 + 1,
                    &user,
                ));
            }
            key
        })
        .collect()
}

fn sessions(range: std::ops::Range<usize>, total: usize) -> Vec<ClusterSession> {
    range
        .map(|n| {
            let login = at(n, total);
            let hsm = HSMS[n % HSMS.len()];
            let events = [Opcode::Login, Opcode::GenerateKey, Opcode::Logout]
                .into_iter()
                .enumerate()
                .map(|(step, opcode)| SessionEvent {
                    time: Timestamp(login.0 + step as i64 * 30_000_000),
                    hsm: hsm.to_owned(),
                    seq: (3 * n + step) as u64,
                    reboot_counter: Some(1),
                    opcode,
                    success: true,
                    target_user: None,
                    key_handles: vec![n as u64 + 1],
                    object_ids: Vec::new(),
                    log_event_id: None,
                })
                .collect();
            ClusterSession {
                user: format!("user{:03}", n % 300),
                user_type: Some("CN_CRYPTO_USER".into()),
                login_time: login,
                end_time: Some(Timestamp(login.0 + 600_000_000)),
                ended_by: Some("CN_LOGOUT".into()),
                origin_hsm: hsm.to_owned(),
                origin_seq: 3 * n as u64,
                origin_reboot_counter: 1,
                mirror_hsms: if n % 3 == 0 {
                    vec![HSMS[(n + 1) % HSMS.len()].to_owned()]
                } else {
                    Vec::new()
                },
                events,
            }
        })
        .collect()
}

/// Failed logins (every 10th of a burst) and sensitive-operation alerts, one for every
/// 10 sessions; gaps in two streams.
fn the_rest(sessions: usize) -> Derived {
    let failed_logins = (0..sessions / 10)
        .map(|n| FailedLogin {
            time: at(n * 10, sessions),
            hsm: HSMS[n % HSMS.len()].to_owned(),
            seq: n as u64,
            reboot_counter: 1,
            user: format!("user{:03}", n % 300),
            user_type: Some("CN_CRYPTO_USER".into()),
            response_code: 163,
            response: "wrong password".into(),
            hsm_response: "HSM Error: RET_USER_LOGIN_FAILURE".into(),
            brute_force: n % 10 == 0,
            opcode: None,
            log_event_id: None,
        })
        .collect();
    let mut alerts: Vec<Alert> = (0..sessions / 10)
        .map(|n| Alert {
            kind: AlertKind::SensitiveOperation,
            time: at(n * 10, sessions),
            hsm: Some(HSMS[n % HSMS.len()].to_owned()),
            reboot_counter: Some(1),
            from: None,
            to: None,
            seq: Some(n as u64),
            user: Some(format!("user{:03}", n % 300)),
            opcode: Some(Opcode::WrapKey),
            detail: None,
        })
        .collect();
    let streams = HSMS
        .iter()
        .map(|hsm| StreamSummary {
            hsm: (*hsm).to_owned(),
            reboot_counter: 1,
            first_seq: 0,
            last_seq: 100_000,
            records: if hsm.ends_with('1') { 99_990 } else { 100_001 },
            missing: if hsm.ends_with('1') { 11 } else { 0 },
            first_time: Timestamp(START),
            last_time: at(sessions, sessions),
        })
        .collect();
    alerts.push(Alert {
        kind: AlertKind::SequenceGap,
        time: Timestamp(START + MICROS_PER_DAY),
        hsm: Some(HSMS[0].to_owned()),
        reboot_counter: Some(1),
        from: Some(500),
        to: Some(510),
        seq: None,
        user: None,
        opcode: None,
        detail: Some("11 records missing".into()),
    });
    Derived {
        failed_logins,
        alerts,
        streams,
        ..Derived::default()
    }
}

fn step_of(derived: &Derived) -> StepWrite<Item> {
    StepWrite {
        puts: derived_items(CLUSTER, derived).expect("items"),
        ..StepWrite::default()
    }
}

async fn fill(store: &MemoryStore, key_total: usize, session_total: usize) {
    let lease = store.lock_cluster(CLUSTER).await.expect("lease");
    let mut start = 0;
    while start < key_total.max(session_total) {
        let end = start + CHUNK;
        let derived = Derived {
            keys: keys(start.min(key_total)..end.min(key_total), key_total),
            sessions: sessions(
                start.min(session_total)..end.min(session_total),
                session_total,
            ),
            ..Derived::default()
        };
        let step = step_of(&derived);
        store.write_step(&lease, &step).await.expect("write");
        start = end;
    }
    let step = step_of(&the_rest(session_total));
    store.write_step(&lease, &step).await.expect("write");
    store.unlock_cluster(&lease).await.expect("unlock");
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let key_total = size("BENCH_REPORT_KEYS", (100_000, 2_000));
    let session_total = size("BENCH_REPORT_SESSIONS", (50_000, 1_000));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = MemoryStore::new();
    runtime.block_on(fill(&store, key_total, session_total));
    let options = Options {
        cluster: CLUSTER.into(),
        from: None,
        to: None,
        max_key_age_micros: 180 * MICROS_PER_DAY,
        as_of: Timestamp(START + 400 * MICROS_PER_DAY),
        generated_at: Timestamp(START + 400 * MICROS_PER_DAY),
    };
    let dir = std::env::temp_dir().join(format!("hsm-audit-bench-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!(
        "report of {key_total} keys and {session_total} sessions ({} view items in the store)",
        store
            .partition(&hsm_audit::store::dynamodb::items::cluster_pk(CLUSTER))
            .len()
    );

    let html_path = dir.join("report.html");
    let before = counting::start();
    let clock = Instant::now();
    let report = runtime
        .block_on(read::build(&store, options.clone(), Limits::default()))
        .expect("report");
    let file = std::fs::File::create(&html_path).expect("file");
    let mut writer = std::io::BufWriter::new(file);
    html::write(&report, &mut writer).expect("html");
    drop(writer);
    let html_time = clock.elapsed();
    let html_peak = counting::peak_since(before);
    assert_eq!(report.keys.total, key_total);
    assert_eq!(report.sessions.total, session_total);
    drop(report);
    let html_bytes = std::fs::metadata(&html_path).map_or(0, |m| m.len() as usize);
    println!(
        "html  {:>8.2} s  heap peak {:>7.1} MiB  file {:>6.1} MiB",
        html_time.as_secs_f64(),
        mib(html_peak),
        mib(html_bytes)
    );

    let csv_path = dir.join("inventory.csv");
    let before = counting::start();
    let clock = Instant::now();
    let file = std::fs::File::create(&csv_path).expect("file");
    let mut rows = RowWriter::new(std::io::BufWriter::new(file), RowFormat::Csv, CLUSTER);
    let written = runtime
        .block_on(read::export_keys(&store, options, &mut rows))
        .expect("csv");
    rows.finish(&INVENTORY_COLUMNS).expect("csv");
    let csv_time = clock.elapsed();
    let csv_peak = counting::peak_since(before);
    assert_eq!(written, key_total);
    let csv_bytes = std::fs::metadata(&csv_path).map_or(0, |m| m.len() as usize);
    println!(
        "csv   {:>8.2} s  heap peak {:>7.1} MiB  file {:>6.1} MiB  ({written} keys)",
        csv_time.as_secs_f64(),
        mib(csv_peak),
        mib(csv_bytes)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
