//! A burst on one cluster through the function's entry point: the deliveries a cluster's
//! HSMs send after an outage, each its own invocation (its own client, as a Lambda
//! instance has), all at once against the local server.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hsm_audit::lambda::{ingest_event, serve_invocation};
use hsm_audit::store::dynamodb::DynamoStore;
use hsm_audit::testkit::workload::{WorkloadSpec, generate};
use hsm_audit::verify::{VerifyOptions, verify_trail};

use crate::common::*;

const CLUSTER: &str = "cluster-burst";

/// 4 HSMs × 5 consecutive deliveries of 150 records each, in the order they were sent.
fn burst() -> Vec<serde_json::Value> {
    let payloads = generate(&WorkloadSpec {
        cluster: CLUSTER.into(),
        hsms: 4,
        users: 12,
        records: 6_000,
        records_per_payload: 150,
        seed: 28,
        ..WorkloadSpec::default()
    });
    let mut per_hsm: std::collections::HashMap<String, usize> = Default::default();
    let burst: Vec<serde_json::Value> = payloads
        .into_iter()
        .filter(|payload| payload.records == 150)
        .filter(|payload| {
            let sent = per_hsm.entry(payload.log_stream.clone()).or_default();
            *sent += 1;
            *sent <= 5
        })
        .map(|payload| payload.event)
        .collect();
    assert_eq!(burst.len(), 20, "5 full deliveries of each of 4 HSMs");
    burst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_deliveries_on_one_cluster_all_succeed_first_time() {
    let events = burst();

    let serial = fresh_store("burst-serial").await;
    let config = config_for(&serial);
    let serial_started = Instant::now();
    for event in &events {
        ingest_event(event.clone(), &serial, &config)
            .await
            .expect("serial delivery");
    }
    let serial_wall = serial_started.elapsed();
    let expected = scan_all(&serial).await;

    let table = fresh_store("burst-concurrent").await.table().to_owned();
    let started = Instant::now();
    let invocations: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let (event, table) = (event.clone(), table.clone());
            tokio::spawn(async move {
                let store = DynamoStore::new(client(), table);
                let config = config_for(&store);
                let asked = Instant::now();
                // The template's function timeout.
                let deadline = asked + Duration::from_secs(120);
                let result =
                    serve_invocation(event, &format!("burst-{index}"), deadline, &store, &config)
                        .await;
                let counts = store.counts();
                let requests = (counts.total(), counts.retries.load(Ordering::Relaxed));
                (index, result.map(|_| ()), asked.elapsed(), requests)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failed = Vec::new();
    let (mut requests, mut retries) = (0, 0);
    for invocation in invocations {
        let (index, result, latency, (sent, retried)) = invocation.await.expect("invocation task");
        latencies.push(latency);
        requests += sent;
        retries += retried;
        if let Err(error) = result {
            failed.push(format!("delivery {index}: {error}"));
        }
    }
    let wall = started.elapsed();
    latencies.sort_unstable();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    eprintln!(
        "20 concurrent deliveries: {} ok, wall {wall:?}, latency min {:?} p50 {:?} p90 {:?} \
         max {:?}; {requests} requests, {retries} retried; the same serially: {serial_wall:?}",
        20 - failed.len(),
        latencies[0],
        percentile(50),
        percentile(90),
        latencies[latencies.len() - 1]
    );
    assert!(failed.is_empty(), "failed on the first try: {failed:#?}");
    // Every invocation ends inside the function's timeout.
    assert!(latencies[latencies.len() - 1] < Duration::from_secs(120));

    let store = DynamoStore::new(client(), table);
    assert_same_state(&scan_all(&store).await, &expected, "concurrent vs serial");
    let report = verify_trail(&store, CLUSTER, &VerifyOptions::default(), |_| {})
        .await
        .expect("verify runs");
    assert!(report.clean, "{:#?}", report.findings);
    assert_eq!(report.records, 3_000);
}
