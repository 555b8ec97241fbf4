//! The derivation lease against the local server: one holder at a time, fair to
//! waiters, quick to recover from a holder that died, and never taken again by a claim
//! that lands after its holder released it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use hsm_audit::store::AuditStore;
use hsm_audit::store::dynamodb::DynamoStore;

use crate::common::{client, fresh_store};

fn store_on(table: &str, ttl: Duration) -> DynamoStore {
    DynamoStore::new(client(), table)
        .with_lease_ttl(ttl)
        .with_lease_wait(Duration::from_secs(30))
}

async fn lease_item(table: &str, cluster: &str) -> crate::common::Item {
    client()
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("CLUSTER#{cluster}")))
        .key("sk", AttributeValue::S("LEASE".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get lease")
        .item
        .expect("the lease item stays after release")
}

/// The four-writers case of the issue: every contender gets the lease in turn, none
/// waits out the lease wait, and no two ever hold it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contenders_each_get_the_lease_in_turn_and_never_two_at_once() {
    let table = fresh_store("lease-fair").await.table().to_owned();
    let holders = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (table, holders, most) = (table.clone(), holders.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            let store = store_on(&table, Duration::from_secs(5));
            let mut waits = Vec::new();
            for _ in 0..4 {
                let asked = Instant::now();
                let lease = store.lock_cluster("c").await.expect("the lease in time");
                waits.push(asked.elapsed());
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(60)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                assert!(!lease.is_lost());
                store.unlock_cluster(&lease).await.expect("release");
            }
            waits
        }));
    }
    let mut longest = Duration::ZERO;
    for task in tasks {
        for wait in task.await.expect("contender") {
            longest = longest.max(wait);
        }
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "two holders at once");
    // 24 holds of 60 ms and a few requests each: no waiter waits for a backoff of
    // seconds while others take the lease again and again.
    assert!(
        longest < Duration::from_secs(15),
        "a waiter waited {longest:?}"
    );
}

/// A holder that died (its process gone: no release, no renewal) blocks the cluster for
/// one lease TTL, not for a Lambda timeout.
#[tokio::test]
async fn a_dead_holder_blocks_the_cluster_for_one_ttl_only() {
    let table = fresh_store("lease-dead").await.table().to_owned();
    let ttl = Duration::from_secs(2);
    let dying = table.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let lease = runtime.block_on(store_on(&dying, ttl).lock_cluster("c"));
        assert!(lease.is_ok());
        // The runtime is dropped with the renewal task in it: the process died.
    })
    .join()
    .expect("the dying holder");

    let asked = Instant::now();
    let lease = store_on(&table, ttl)
        .lock_cluster("c")
        .await
        .expect("taken over");
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "the dead hold was honoured"
    );
    // Far below a Lambda timeout, with room for a loaded machine's slow requests.
    assert!(waited < ttl * 5, "waited {waited:?} for a {ttl:?} lease");
    assert!(!lease.is_lost());
}

/// A live holder renews: a contender does not take a lease whose holder works longer
/// than its TTL. The TTL leaves a loaded machine's slow requests room (a renewal every
/// two seconds, each may take four before the lease runs out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_holder_keeps_the_lease_past_its_ttl() {
    let table = fresh_store("lease-renew").await.table().to_owned();
    let ttl = Duration::from_secs(6);
    let holder = store_on(&table, ttl);
    let lease = holder.lock_cluster("c").await.expect("lease");
    let contender = store_on(&table, ttl).with_lease_wait(ttl * 2 + Duration::from_millis(500));
    let refused = contender.lock_cluster("c").await;
    assert!(refused.is_err(), "taken from a holder that renews");
    assert!(!lease.is_lost());
    holder.unlock_cluster(&lease).await.expect("release");
    contender
        .lock_cluster("c")
        .await
        .expect("free after release");
}

/// The claim of a holder that has released, landing late (its answer was lost and the
/// SDK retried, or it sat in the network): it names the version it read, which the
/// claim and the release have moved on from, so the lease stays free.
#[tokio::test]
async fn a_claim_landing_after_its_release_does_not_take_the_lease_again() {
    let table = fresh_store("lease-late").await.table().to_owned();
    let store = store_on(&table, Duration::from_secs(30));
    let before = client()
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("CLUSTER#c".into()))
        .key("sk", AttributeValue::S("LEASE".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get")
        .item;
    assert!(before.is_none(), "no lease before the first claim");
    let lease = store.lock_cluster("c").await.expect("lease");
    store.unlock_cluster(&lease).await.expect("release");
    let released = lease_item(&table, "c").await;
    assert!(!released.contains_key("owner"));

    // The first claim's request, replayed as it would land late: it read no lease item.
    let late = client()
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("CLUSTER#c".into()))
        .item("sk", AttributeValue::S("LEASE".into()))
        .item("owner", AttributeValue::S(lease.owner.clone()))
        .item("version", AttributeValue::N("1".into()))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    assert!(late.is_err(), "the late claim's condition fails");
    assert_eq!(lease_item(&table, "c").await, released);

    // No wait: one read and one claim, which a lease still held would refuse.
    store_on(&table, Duration::from_secs(30))
        .with_lease_wait(Duration::ZERO)
        .lock_cluster("c")
        .await
        .expect("free at once");
}
