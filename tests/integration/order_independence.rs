//! Any delivery order, any duplication, concurrent invocations: the same table.
//! Property test through the real handler and the local DynamoDB.

use crate::common::*;
use hsm_audit::lambda::ingest_event;
use hsm_audit::store::dynamodb::DynamoStore;
use proptest::prelude::*;

/// A clean, in-order, single delivery of the sample events.
async fn reference_state() -> Vec<Item> {
    let store = fresh_store("reference").await;
    let config = config_for(&store);
    for (_, event) in sample_events() {
        ingest_event(event, &store, &config)
            .await
            .expect("reference delivery");
    }
    scan_all(&store).await
}

/// Delivers `order` (indexes into the samples, repeats allowed) as two concurrent
/// streams of invocations, as two Lambda instances would.
async fn deliver(store: &DynamoStore, order: &[usize], split: usize) {
    let config = config_for(store);
    let events = sample_events();
    let (left, right) = order.split_at(split.min(order.len()));
    let run = |indexes: Vec<usize>| {
        let events = &events;
        let config = &config;
        async move {
            for index in indexes {
                ingest_event(events[index].1.clone(), store, config)
                    .await
                    .expect("delivery");
            }
        }
    };
    tokio::join!(run(left.to_vec()), run(right.to_vec()));
}

fn deliveries() -> impl Strategy<Value = (Vec<usize>, usize)> {
    let count = sample_events().len();
    (
        Just((0..count).collect::<Vec<_>>()).prop_shuffle(),
        proptest::collection::vec(0..count, 0..6),
        0..count,
    )
        .prop_map(|(mut order, repeats, split)| {
            // Repeats land at deterministic but varied places: after the i-th delivery.
            for (offset, index) in repeats.into_iter().enumerate() {
                let position = (offset * 7 + index) % (order.len() + 1);
                order.insert(position, index);
            }
            (order, split)
        })
}

#[test]
fn any_order_duplication_and_concurrency_converge_to_one_state() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let expected = runtime.block_on(reference_state());
    assert!(expected.iter().any(|item| {
        item.get("item_type")
            .and_then(|t| t.as_s().ok())
            .is_some_and(|t| t == "session")
    }));
    let config = ProptestConfig {
        cases: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |((order, split) in deliveries())| {
        let state = runtime.block_on(async {
            let store = fresh_store("shuffled").await;
            deliver(&store, &order, split).await;
            scan_all(&store).await
        });
        prop_assert!(state == expected, "delivery order {order:?} split at {split} diverged");
    });
}

#[tokio::test]
async fn a_logout_delivered_before_its_login_still_closes_the_session() {
    let store = fresh_store("logout-first").await;
    let config = config_for(&store);
    let group = "/aws/cloudhsm/cluster-order";
    ingest_event(
        subscription_event(group, "hsm-one", 10, &[&seed_record("07-")]),
        &store,
        &config,
    )
    .await
    .expect("logout");
    let open = store
        .sessions("cluster-order", None, None, None)
        .await
        .expect("sessions");
    assert!(open.is_empty(), "a logout alone opens nothing: {open:?}");
    ingest_event(
        subscription_event(group, "hsm-one", 1, &[&seed_record("06-")]),
        &store,
        &config,
    )
    .await
    .expect("login");
    let sessions = store
        .sessions("cluster-order", Some("admin"), None, None)
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].ended_by.as_deref(), Some("CN_LOGOUT"));
    assert_eq!(
        sessions[0].end_time.map(|t| t.iso()).as_deref(),
        Some("2018-01-16T01:49:55.993404Z")
    );
}
