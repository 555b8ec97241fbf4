//! `make bench`: how long a new alert takes from its record's arrival (the invocation that
//! brings it starts) to its EventBridge event, against the local server: a bus whose rule
//! targets an SQS queue, polled until the event is there. Each round is one invocation
//! of one `CN_DELETE_USER` record (a sensitive operation: one new alert), the next in its
//! HSM's sequence. The same rounds without a bus give what publishing adds.
//! BENCH_ALERT_ROUNDS (default 30).

use std::time::{Duration, Instant};

use hsm_audit::config::Config;
use hsm_audit::lambda::ingest_event;
use hsm_audit::publish::Publisher;
use hsm_audit::store::dynamodb::{DynamoStore, create_table};
use hsm_audit::testkit::subscription_event;

#[path = "../tests/integration/common/bus.rs"]
mod bus;
use bus::{bus_to_queue, sdk_config};

#[global_allocator]
static ALLOCATOR: hsm_audit::Allocator = hsm_audit::Allocator;

fn delete_user(seq: u64) -> String {
    let micros = 1_516_737_503_451_420 + seq as i64 * 1_000_000;
    format!(
        "Time: 01/23/18 19:58:23.451420, usecs:{micros}\nSequence No : {seq:#x}\nReboot counter : 0x107\n\
         Command Type(hex) : CN_MGMT_CMD (0x0)\nOpcode : CN_DELETE_USER (0xa1)\nSession Handle : 0x7014007\n\
         Response : 0:HSM Return: SUCCESS\nLog type : MGMT_USER_DETAILS_LOG (2)\nUser Name : alice\n\
         User Type : CN_CRYPTO_OFFICER (2)\n"
    )
}

fn summary(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |quantile: f64| times[((times.len() - 1) as f64 * quantile).round() as usize];
    println!(
        "  {label:<46} median {:>6.1} ms  p90 {:>6.1} ms  max {:>6.1} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL: run through scripts/with-local-dynamodb.sh (make bench)");
    // `cargo test --all-targets` runs this too, without `--bench`: a few rounds check that
    // each alert is one event, and the measuring is left to `make bench`.
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let rounds: u64 = match measuring {
        true => std::env::var("BENCH_ALERT_ROUNDS")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(30),
        false => 3,
    };
    let config = sdk_config(&endpoint);
    let name = format!("hsm-audit-bench-alerts-{:08x}", fastrand::u32(..));
    let queue = bus_to_queue(&config, &name).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let mut with_bus = (Vec::new(), Vec::new());
    let mut without_bus = Vec::new();
    for publishing in [true, false] {
        let client = aws_sdk_dynamodb::Client::new(&config);
        let table = format!("{name}-{publishing}");
        create_table(&client, &table).await.expect("table");
        let publisher = publishing.then(|| {
            Publisher::default().with_events(aws_sdk_eventbridge::Client::new(&config), &name)
        });
        let store = DynamoStore::new(client, &table).with_publisher(publisher);
        let settings = Config::from_lookup(Some(table.clone()), |_| None).expect("config");
        for seq in 0..rounds {
            let record = delete_user(seq);
            let event = subscription_event(
                "/aws/cloudhsm/cluster-bench",
                "hsm-bench",
                seq * 10,
                &[record.as_str()],
            );
            let arrived = Instant::now();
            let report = ingest_event(event, &store, &settings)
                .await
                .expect("ingest");
            let answered = arrived.elapsed();
            assert_eq!(
                report.by_cluster["cluster-bench"]
                    .new_alerts_of(hsm_audit::domain::AlertKind::SensitiveOperation),
                1,
                "one new alert a round"
            );
            if !publishing {
                without_bus.push(answered);
                continue;
            }
            loop {
                let messages = sqs
                    .receive_message()
                    .queue_url(&queue)
                    .max_number_of_messages(10)
                    .send()
                    .await
                    .expect("receive")
                    .messages
                    .unwrap_or_default();
                if !messages.is_empty() {
                    assert_eq!(messages.len(), 1, "one event a round");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            with_bus.0.push(answered);
            with_bus.1.push(arrived.elapsed());
        }
    }
    println!(
        "alert latency, {rounds} invocations of one record each raising one alert (local server):"
    );
    summary("arrival -> event in the rule's queue", with_bus.1);
    summary("arrival -> invocation done (PutEvents taken)", with_bus.0);
    summary("the same invocation without a bus", without_bus);
}
