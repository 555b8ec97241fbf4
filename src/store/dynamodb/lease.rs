//! The per-cluster derivation lease on DynamoDB.
//!
//! Decisions:
//! - **Fenced by a version.** The lease item stays in the table and carries a `version`
//!   that every claim and release increments, and a claim is a `PutItem` conditional on
//!   the version it read. A claim whose request lands late (its answer was lost, the
//!   SDK retried, the invocation worked and released) finds a newer version and fails,
//!   instead of taking the lease again for an owner that has moved on. A claim whose
//!   answer was lost but that did land is recognised on the next read (owner and
//!   version are ours).
//! - **Short and renewed.** A holder renews every third of [`DEFAULT_TTL`] from a task
//!   of its own, so a holder that died (timeout, out of memory, crash) blocks its
//!   cluster for at most one TTL, not for a Lambda timeout. A holder that fails to renew
//!   learns it before it writes ([`ClusterLease::is_lost`]) and fails as retryable.
//! - **Fair waiting.** Every waiter polls at the same short jittered interval: a
//!   waiter that has waited long never backs off to seconds while newcomers poll every
//!   few milliseconds, which starved waiters when four invocations shared a cluster.
//! - **Two per cluster.** The derivation lease (`LEASE`) is held for a derivation; the
//!   chain lease (`LEASE#CHAIN`) only while records and their digests are written, so that
//!   writers of one cluster take digest numbers one after another instead of each sending
//!   its transaction to lose the race for the next number (README "Concurrency").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use super::request::request_error;
use super::store::{DynamoStore, RequestCounts};
use crate::store::dynamodb::items::{self, Item};
use crate::store::{ClusterLease, StoreError};

/// How long a claim or a renewal holds the lease. Renewed every third of it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

/// Which of a cluster's leases: the item's sort key in the cluster's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    Derivation,
    Chain,
}

impl LeaseKind {
    fn sort_key(self) -> &'static str {
        match self {
            LeaseKind::Derivation => items::LEASE_SK,
            LeaseKind::Chain => items::CHAIN_LEASE_SK,
        }
    }
}

/// Between two looks at a busy lease: short, and the same for every waiter. Not shorter:
/// twenty waiters of a burst look this often between them, and each look is a request the
/// table serves beside the holder's.
pub(super) fn poll_interval() -> Duration {
    Duration::from_millis(fastrand::u64(150..=300))
}

tokio::task_local! {
    /// When the invocation running in this task must have stopped waiting for leases.
    static DEADLINE: Instant;
}

/// Runs `work` with every wait for a lease ending by `deadline` at the latest: the
/// function's timeout less the time its work after a wait takes, so that a wait that
/// runs out fails the invocation as `Retryable` before Lambda kills it.
pub async fn waiting_until<F: std::future::Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// `wait`, or less when the task's deadline comes sooner.
pub(super) fn within_deadline(wait: Duration) -> Duration {
    DEADLINE
        .try_with(|deadline| wait.min(deadline.saturating_duration_since(Instant::now())))
        .unwrap_or(wait)
}

pub(super) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The lease item as read: who holds it until when, and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaseItem {
    owner: Option<String>,
    expires_at_ms: u64,
    version: u64,
}

impl LeaseItem {
    fn from_item(item: &Item) -> Self {
        let number = |name: &str| {
            item.get(name)
                .and_then(|value| value.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        LeaseItem {
            owner: item
                .get("owner")
                .and_then(|value| value.as_s().ok())
                .cloned(),
            expires_at_ms: number("expires_at_ms"),
            version: number("version"),
        }
    }

    fn held_by_other(&self, owner: &str, now_ms: u64) -> bool {
        self.owner.as_deref().is_some_and(|held| held != owner) && self.expires_at_ms >= now_ms
    }
}

/// What the renewal task and the lease's holder share: the request path and whether
/// the lease is still ours.
#[derive(Clone)]
struct LeaseTable {
    client: Client,
    table: String,
    counts: Arc<RequestCounts>,
    kind: LeaseKind,
}

impl LeaseTable {
    fn key(&self, cluster: &str) -> Item {
        Item::from([
            (
                "pk".to_owned(),
                AttributeValue::S(items::cluster_pk(cluster)),
            ),
            (
                "sk".to_owned(),
                AttributeValue::S(self.kind.sort_key().to_owned()),
            ),
        ])
    }

    async fn read(&self, cluster: &str) -> Result<Option<LeaseItem>, StoreError> {
        self.counts.count_single_item();
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(cluster)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| request_error("GetItem (lease)", error))?;
        Ok(answer.item.as_ref().map(LeaseItem::from_item))
    }

    /// Writes the lease item as `next` if its version is still `read` (absent: no item).
    /// `Ok(false)` when the condition failed.
    async fn write_if(
        &self,
        cluster: &str,
        read: Option<u64>,
        next: &LeaseItem,
        operation: &'static str,
    ) -> Result<bool, StoreError> {
        self.counts.count_single_item();
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.key(cluster)))
            .item("item_type", AttributeValue::S("lease".to_owned()))
            .item(
                "expires_at_ms",
                AttributeValue::N(next.expires_at_ms.to_string()),
            )
            .item("version", AttributeValue::N(next.version.to_string()));
        if let Some(owner) = &next.owner {
            request = request.item("owner", AttributeValue::S(owner.clone()));
        }
        request = match read {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(version) => request
                .condition_expression("version = :read")
                .expression_attribute_values(":read", AttributeValue::N(version.to_string())),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(request_error(operation, error)),
        }
    }

    /// Extends our hold; `Ok(false)` when the lease is no longer ours.
    async fn renew(
        &self,
        cluster: &str,
        owner: &str,
        version: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let next = LeaseItem {
            owner: Some(owner.to_owned()),
            expires_at_ms: now_millis() + ttl_millis(ttl),
            version,
        };
        self.write_if(cluster, Some(version), &next, "PutItem (lease renewal)")
            .await
    }
}

fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// Keeps a held lease alive until released; says whether it was lost meanwhile.
pub struct LeaseKeeper {
    renewal: tokio::task::AbortHandle,
    lost: Arc<AtomicBool>,
    kind: LeaseKind,
}

impl LeaseKeeper {
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

impl DynamoStore {
    fn lease_table(&self, kind: LeaseKind) -> LeaseTable {
        LeaseTable {
            client: self.client.clone(),
            table: self.table.clone(),
            counts: Arc::clone(&self.counts),
            kind,
        }
    }

    /// Waits up to `wait` for the cluster's lease of `kind`.
    pub(super) async fn claim_lease(
        &self,
        cluster: &str,
        kind: LeaseKind,
        wait: Duration,
    ) -> Result<ClusterLease, StoreError> {
        let table = self.lease_table(kind);
        let wait = within_deadline(wait);
        let owner = format!("{:016x}", fastrand::u64(..));
        let started = Instant::now();
        loop {
            let current = table.read(cluster).await?;
            let now = now_millis();
            if let Some(held) = &current
                && held.owner.as_deref() == Some(owner.as_str())
            {
                // Our claim landed though its answer was lost.
                return Ok(self.keep(table, cluster, owner, held.version));
            }
            let free = current
                .as_ref()
                .is_none_or(|held| !held.held_by_other(&owner, now));
            if free {
                let version = current.as_ref().map_or(1, |held| held.version + 1);
                let next = LeaseItem {
                    owner: Some(owner.clone()),
                    expires_at_ms: now + ttl_millis(self.lease_ttl),
                    version,
                };
                let read = current.as_ref().map(|held| held.version);
                if table
                    .write_if(cluster, read, &next, "PutItem (lease)")
                    .await?
                {
                    return Ok(self.keep(table, cluster, owner, version));
                }
                // Someone else's claim won, or ours landed and the SDK's retry of it
                // found the new version: the next read tells which.
                continue;
            }
            if started.elapsed() >= wait {
                return Err(StoreError::LeaseTimeout {
                    cluster: cluster.to_owned(),
                    waited_ms: started.elapsed().as_millis(),
                });
            }
            tokio::time::sleep(poll_interval()).await;
        }
    }

    /// Starts renewing the lease we just took.
    fn keep(&self, table: LeaseTable, cluster: &str, owner: String, version: u64) -> ClusterLease {
        let kind = table.kind;
        let lost = Arc::new(AtomicBool::new(false));
        let ttl = self.lease_ttl;
        let renewal = {
            let lost = Arc::clone(&lost);
            let cluster = cluster.to_owned();
            let owner = owner.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    // A failed request is tried again at the next tick; two missed
                    // ticks leave a third of the TTL, and a lease that ran out is seen
                    // as lost by the condition.
                    match table.renew(&cluster, &owner, version, ttl).await {
                        Ok(true) | Err(_) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::Release);
                            break;
                        }
                    }
                }
            })
            .abort_handle()
        };
        ClusterLease {
            cluster: cluster.to_owned(),
            owner,
            version,
            keeper: Some(Arc::new(LeaseKeeper {
                renewal,
                lost,
                kind,
            })),
        }
    }

    pub(super) async fn release_lease(&self, lease: &ClusterLease) -> Result<(), StoreError> {
        let mut kind = LeaseKind::Derivation;
        if let Some(keeper) = &lease.keeper {
            keeper.renewal.abort();
            kind = keeper.kind;
        }
        let next = LeaseItem {
            owner: None,
            expires_at_ms: 0,
            version: lease.version + 1,
        };
        // A failed condition means the lease ran out and someone took it over: theirs
        // to release, not ours.
        self.lease_table(kind)
            .write_if(
                &lease.cluster,
                Some(lease.version),
                &next,
                "PutItem (lease release)",
            )
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_busy_only_while_another_owner_holds_it_unexpired() {
        let held = LeaseItem {
            owner: Some("a".into()),
            expires_at_ms: 1_000,
            version: 3,
        };
        assert!(held.held_by_other("b", 999));
        assert!(held.held_by_other("b", 1_000));
        assert!(!held.held_by_other("b", 1_001), "expired");
        assert!(!held.held_by_other("a", 999), "ours");
        let released = LeaseItem {
            owner: None,
            ..held
        };
        assert!(!released.held_by_other("b", 0));
    }

    #[test]
    fn waiters_poll_at_one_short_interval() {
        for _ in 0..100 {
            let interval = poll_interval();
            assert!(
                interval >= Duration::from_millis(150) && interval <= Duration::from_millis(300)
            );
        }
    }
}
