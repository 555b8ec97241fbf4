//! Deriving one cluster's views, step by step: the head and what arrived decide between
//! folding in order and replaying from a snapshot, a replay read in parts goes on until
//! it is whole, and a step cut off by a crash is recognised and recovered from.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Config;
use crate::domain::{Conflict, Derived, Emit, StreamCarry, StreamKey, fold};
use crate::incremental::{
    Arrivals, Checkpoint, FoldPart, Late, ObjectCarry, Objects, Prepared, Previous, Stale, Start,
    StepWrite, due_held, may_start_from_nothing, objects_as_of, plan_write, prepare_in_order,
    prepare_replay, replay_starts,
};
use crate::model::{Timestamp, TrailEntry};
use crate::store::dynamodb::items::{self, state};
use crate::store::{AuditStore, ClusterLease, Item, StateRange, StoreError};

/// The records of one cluster a run stored (or found stored), for its derivation step:
/// they name the streams to read, and those behind their stream's position are late.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterBatch {
    pub entries: Vec<TrailEntry>,
    /// Trail sort keys of the entries this run stored.
    pub fresh: BTreeSet<String>,
    pub conflicts: Vec<Conflict>,
}

impl ClusterBatch {
    pub(super) fn add(&mut self, other: ClusterBatch) {
        self.entries.extend(other.entries);
        self.fresh.extend(other.fresh);
        self.conflicts.extend(other.conflicts);
    }
}

/// What deriving a cluster changed, and the state of its integrity afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rederived {
    /// Derivation steps (more than one when a replay was read in parts).
    pub steps: usize,
    /// Steps that replayed from a snapshot (a record behind the head, a step cut off).
    pub replays: usize,
    /// Records read again from the trail by those replays.
    pub replayed: usize,
    pub put: usize,
    pub deleted: usize,
    pub unchanged: usize,
    /// Alerts that did not exist before, by kind: what metrics and alarms count.
    pub new_alerts: BTreeMap<String, usize>,
    /// Sequence gaps still open in the cluster's trail.
    pub open_gaps: usize,
    /// Records that arrived later than the allowed lateness, folded in.
    pub late: usize,
    /// Records older than the late horizon, left out until `rederive`.
    pub beyond_horizon: usize,
    /// Records held for a clock ahead of the invocation's.
    pub held: usize,
}

impl Rederived {
    fn add(&mut self, write: &StepWrite<Item>, prepared: &PreparedCounts) {
        self.steps += 1;
        self.replays += usize::from(prepared.replay);
        self.replayed += prepared.replayed;
        self.put += write.puts.len() + write.objects.len();
        self.deleted += write.deletes.len();
        self.unchanged += write.unchanged;
        for (kind, count) in &write.new_alerts {
            *self.new_alerts.entry(kind.clone()).or_default() += count;
        }
        self.open_gaps = write.open_gaps;
        self.late += prepared.late;
        self.beyond_horizon += prepared.beyond_horizon;
        self.held += prepared.held;
    }
}

/// What a prepared step says of itself, kept for the report once it is folded.
struct PreparedCounts {
    replay: bool,
    replayed: usize,
    late: usize,
    beyond_horizon: usize,
    held: usize,
    replaying: bool,
    point: Timestamp,
}

impl PreparedCounts {
    fn of(prepared: &Prepared) -> Self {
        let beyond_horizon = prepared
            .late
            .iter()
            .filter(|(_, late)| *late == Late::BeyondHorizon)
            .count();
        PreparedCounts {
            replay: prepared.replay,
            replayed: prepared.replayed,
            late: prepared.late.len() - beyond_horizon,
            beyond_horizon,
            held: prepared.skewed.len(),
            replaying: prepared.replaying,
            point: prepared.point,
        }
    }
}

/// Folds what `batch` brought into the cluster's views, under the cluster's lease
/// ([`crate::incremental`] says how, and what it reads).
pub async fn derive_cluster<S: AuditStore>(
    store: &S,
    config: &Config,
    cluster: &str,
    batch: ClusterBatch,
) -> Result<Rederived, StoreError> {
    let lease = store.lock_cluster(cluster).await?;
    let result = derive_steps(store, config, &lease, batch, false).await;
    let released = store.unlock_cluster(&lease).await;
    let derived = result?;
    released.map(|()| derived)
}

/// Rebuilds a cluster's views from its whole trail, for a change of the derivation's
/// rules: removes them and the derivation state a page at a time, then replays the
/// trail from its start, a bounded part of each stream at a time. Late records and
/// failed steps need none of it: each invocation folds them in itself.
pub async fn rederive<S: AuditStore>(
    store: &S,
    config: &Config,
    cluster: &str,
) -> Result<Rederived, StoreError> {
    let lease = store.lock_cluster(cluster).await?;
    let result = async {
        let streams = store.trail_streams(cluster).await?;
        let conflicts = store.conflicts(cluster).await?;
        store.clear_derived(&lease).await?;
        // The first stored record of each stream names it for the replay.
        let firsts: Vec<String> = streams.keys().cloned().collect();
        let mut entries = Vec::new();
        for prefix in firsts {
            let start = crate::incremental::TailStart {
                prefix,
                after: None,
                skip: None,
            };
            let tail = store.load_tail(cluster, &[start], 1).await?;
            entries.extend(tail.entries);
        }
        let fresh = entries
            .iter()
            .map(|entry| items::identity_sk(&entry.identity()))
            .collect();
        let batch = ClusterBatch {
            entries,
            fresh,
            conflicts,
        };
        derive_steps(store, config, &lease, batch, true).await
    }
    .await;
    let released = store.unlock_cluster(&lease).await;
    let derived = result?;
    released.map(|()| derived)
}

/// Steps until the batch is folded in (and any replay it started is read to its end).
/// `from_nothing`: the first step replays the whole trail (a rebuild).
async fn derive_steps<S: AuditStore>(
    store: &S,
    config: &Config,
    lease: &ClusterLease,
    mut batch: ClusterBatch,
    mut from_nothing: bool,
) -> Result<Rederived, StoreError> {
    let cluster = lease.cluster.as_str();
    let mut derived = Rederived::default();
    let mut per_stream = config.tail_records_per_stream;
    loop {
        let mut head = store.load_checkpoint(cluster).await?;
        let now = Timestamp::now();
        if head.point.is_none() && head.intent.is_none() && !from_nothing {
            head = recover_head(store, cluster, head, &batch, now).await?;
        }
        head.replaying |= std::mem::take(&mut from_nothing);
        let due_keys = due_held(&head, now, config);
        let due = if due_keys.is_empty() {
            Vec::new()
        } else {
            items::trail_entries(store.trail_items(cluster, &due_keys).await?)?
        };
        take_in_ended_streams(
            store,
            cluster,
            &mut head.carry.integrity,
            stream_keys(batch.entries.iter().chain(&due)),
            &[],
        )
        .await?;
        let arrivals = Arrivals::sort(&head, &batch.entries, &batch.fresh, due, now, config);
        let (prepared, objects, previous, stale) = match crate::incremental::start(&head, &arrivals)
        {
            // Refused duplicates are recorded (their alerts) even when nothing is new;
            // alerts an earlier invocation could not send are sent all the same.
            Start::Nothing if batch.conflicts.is_empty() => {
                store.publish_alerts(cluster).await;
                return Ok(derived);
            }
            Start::Nothing | Start::InOrder => {
                let prepared = prepare_in_order(&head, &arrivals, now, config);
                let heads: BTreeMap<String, ObjectCarry> = store
                    .load_objects(cluster, &prepared.object_names())
                    .await?
                    .into_iter()
                    .collect();
                let objects = Objects {
                    at_start: heads
                        .iter()
                        .map(|(name, carry)| (name.clone(), Some(carry.clone())))
                        .collect(),
                    heads,
                };
                (
                    prepared,
                    objects,
                    Previous::of_head(&head),
                    Stale::default(),
                )
            }
            Start::Replay(from) => {
                replay(
                    store, cluster, config, &head, &arrivals, from, per_stream, now,
                )
                .await?
            }
        };
        let parts = fold_parts(&prepared, &objects, &batch.conflicts, config);
        let counts = PreparedCounts::of(&prepared);
        let write = plan_write(
            |derived: &Derived| items::laid_out_views(cluster, derived),
            &head,
            prepared,
            parts,
            &objects,
            &previous,
            stale,
            now,
            config,
        )?;
        store.write_step(lease, &write).await?;
        derived.add(&write, &counts);
        if !counts.replaying {
            // After the steps: what is not sent now stays in the outbox they wrote.
            store.publish_alerts(cluster).await;
            return Ok(derived);
        }
        // A cut stream whose records read all share one time moves nothing: read more of
        // it next time, so that every step moves on.
        if head.replaying && head.point == Some(counts.point) {
            per_stream = per_stream.saturating_mul(2);
        }
        // The rest is read from where this step ended; its records were taken in.
        batch = ClusterBatch::default();
    }
}

/// Folds a prepared step: at once, or a replay part by part between its splits (the
/// state at each is kept as a snapshot).
fn fold_parts(
    prepared: &Prepared,
    objects: &Objects,
    conflicts: &[Conflict],
    config: &Config,
) -> Vec<FoldPart> {
    let mut carry = prepared.base.carry.clone();
    let mut carries = objects.carries();
    let mut rest = prepared.fold.as_slice();
    let ends = prepared
        .splits
        .iter()
        .map(|split| split.at)
        .chain([prepared.point]);
    let mut parts = Vec::new();
    let last = prepared.splits.len();
    for (index, end) in ends.enumerate() {
        let cut = if index == last {
            rest.len()
        } else {
            rest.partition_point(|entry| entry.record.time() < end)
        };
        let (part, after) = rest.split_at(cut);
        rest = after;
        let refused: &[Conflict] = if index == last { conflicts } else { &[] };
        let emit = if prepared.replay {
            Emit::Known
        } else {
            Emit::Changed
        };
        let folded = fold(&carry, &carries, part, refused, end, &config.derive, emit);
        carry = folded.carry.clone();
        carries.keys.extend(folded.entities.keys.clone());
        carries
            .certificates
            .extend(folded.entities.certificates.clone());
        carries
            .luna_objects
            .extend(folded.entities.luna_objects.clone());
        carries.streams.extend(folded.entities.streams.clone());
        parts.push(FoldPart { point: end, folded });
    }
    parts
}

/// The latest state at or before `from`: the head, a snapshot, or nothing at all while
/// the cluster is younger than the horizon. `None`: every state kept is later.
async fn state_at<S: AuditStore>(
    store: &S,
    cluster: &str,
    config: &Config,
    head: &Checkpoint,
    from: Option<Timestamp>,
    now: Timestamp,
) -> Result<Option<Checkpoint>, StoreError> {
    if let (Some(point), Some(from)) = (head.point, from)
        && point <= from
    {
        return Ok(Some(head.clone()));
    }
    if let Some(from) = from {
        let found = store
            .state_range(
                cluster,
                StateRange::last(state::SNAPSHOT_PREFIX, &state::snapshot_sk(from)),
            )
            .await?;
        if let Some(item) = found.first()
            && let Some(snapshot) = state::snapshot_from_item(item, now.micros() / 1_000_000)?
        {
            return Ok(Some(snapshot));
        }
    }
    Ok(may_start_from_nothing(head, now, config).then(Checkpoint::default))
}
/// A cluster without a head is new — or its head was deleted, restored from an old backup
/// of another format, or written by an older version: then it is rebuilt, never
/// restarted. From the latest snapshot when one is kept, else from nothing over every
/// stream of the trail (a trail that holds more than this batch is not a new cluster's).
async fn recover_head<S: AuditStore>(
    store: &S,
    cluster: &str,
    head: Checkpoint,
    batch: &ClusterBatch,
    now: Timestamp,
) -> Result<Checkpoint, StoreError> {
    let latest = store
        .state_range(
            cluster,
            StateRange::last(
                state::SNAPSHOT_PREFIX,
                &format!("{}~", state::SNAPSHOT_PREFIX),
            ),
        )
        .await?;
    if let Some(item) = latest.first()
        && let Some(snapshot) = state::snapshot_from_item(item, now.micros() / 1_000_000)?
    {
        tracing::warn!(cluster, "no head: going on from the latest snapshot");
        return Ok(Checkpoint {
            replaying: true,
            stored_pieces: head.stored_pieces,
            ..snapshot
        });
    }
    let ours: BTreeSet<String> = batch
        .entries
        .iter()
        .map(|entry| items::identity_sk(&entry.identity()))
        .collect();
    let (page, _) = store.trail_page(cluster, None).await?;
    let older = page
        .iter()
        .any(|item| items::is_trail_record(item) && !ours.contains(&items::sort_key(item)));
    if !older {
        return Ok(head);
    }
    tracing::warn!(
        cluster,
        "no head for a trail that exists: rebuilding from its start"
    );
    Ok(Checkpoint {
        replaying: true,
        streams: store.trail_streams(cluster).await?,
        stored_pieces: head.stored_pieces,
        ..Checkpoint::default()
    })
}

/// The earliest state kept: the oldest snapshot not expired, else the head.
async fn earliest_state<S: AuditStore>(
    store: &S,
    cluster: &str,
    head: &Checkpoint,
    now: Timestamp,
) -> Result<Checkpoint, StoreError> {
    let high = format!("{}~", state::SNAPSHOT_PREFIX);
    let found = store
        .state_range(cluster, StateRange::all(state::SNAPSHOT_PREFIX, &high))
        .await?;
    for item in &found {
        if let Some(snapshot) = state::snapshot_from_item(item, now.micros() / 1_000_000)? {
            return Ok(snapshot);
        }
    }
    Ok(head.clone())
}

/// The (hsm, boot) streams of the CloudHSM records among `entries`.
fn stream_keys<'a>(entries: impl IntoIterator<Item = &'a TrailEntry>) -> BTreeSet<StreamKey> {
    entries
        .into_iter()
        .filter_map(|entry| {
            let record = entry.cloudhsm()?;
            Some((entry.stream().hsm.to_string(), record.reboot_counter))
        })
        .collect()
}

/// Takes into `integrity` the ended streams among `named` that it does not hold, as they
/// stood where `versions` (the object versions stored after a replay's start, oldest
/// first; none for the head) put them: a record of an old boot is then known as folded,
/// or folded onto what its stream held, like any other.
async fn take_in_ended_streams<S: AuditStore>(
    store: &S,
    cluster: &str,
    integrity: &mut crate::domain::IntegrityCarry,
    named: BTreeSet<StreamKey>,
    versions: &[(String, Option<ObjectCarry>)],
) -> Result<(), StoreError> {
    let names: Vec<String> = integrity
        .ended_not_held(&named)
        .iter()
        .map(|(hsm, boot)| StreamCarry::object_name(hsm, *boot))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let heads: BTreeMap<String, ObjectCarry> = store
        .load_objects(cluster, &names)
        .await?
        .into_iter()
        .collect();
    let wanted: BTreeSet<&String> = names.iter().collect();
    let versions: Vec<(String, Option<ObjectCarry>)> = versions
        .iter()
        .filter(|(name, _)| wanted.contains(name))
        .cloned()
        .collect();
    let streams: Vec<StreamCarry> = objects_as_of(&heads, &versions)
        .into_values()
        .filter_map(|carry| match carry {
            Some(ObjectCarry::Stream(stream)) => Some(stream),
            _ => None,
        })
        .collect();
    integrity.take_ended(&streams);
    Ok(())
}

/// The object versions stored after `base_point` (the states objects had before the
/// steps since changed them), oldest first, with their sort keys; what the head names as
/// garbage apart.
async fn object_versions_after<S: AuditStore>(
    store: &S,
    cluster: &str,
    head: &Checkpoint,
    base_point: Option<Timestamp>,
) -> Result<Vec<(String, (String, Option<ObjectCarry>))>, StoreError> {
    let low = match base_point {
        Some(point) => format!(
            "{}{}",
            state::VERSION_PREFIX,
            state::point_key(Timestamp(point.micros().saturating_add(1)))
        ),
        None => state::VERSION_PREFIX.to_owned(),
    };
    let found = store
        .state_range(
            cluster,
            StateRange::all(&low, &format!("{}~", state::VERSION_PREFIX)),
        )
        .await?;
    let garbage: BTreeSet<&String> = head.garbage.iter().collect();
    found
        .iter()
        .map(|item| (items::sort_key(item), item))
        .filter(|(sk, _)| !garbage.contains(sk))
        .map(|(sk, item)| Ok((sk, state::object_from_item(item)?)))
        .collect()
}

/// Prepares a replay from the latest state at or before `from`: reads the trail after
/// it, the objects as they stood then, and what the steps since wrote.
#[allow(clippy::too_many_arguments)]
async fn replay<S: AuditStore>(
    store: &S,
    cluster: &str,
    config: &Config,
    head: &Checkpoint,
    arrivals: &Arrivals,
    mut from: Option<Timestamp>,
    per_stream: usize,
    now: Timestamp,
) -> Result<(Prepared, Objects, Previous, Stale), StoreError> {
    let mut arrivals = arrivals.clone();
    let mut beyond: Vec<TrailEntry> = Vec::new();
    let prepared = loop {
        let (base, at_earliest) = match state_at(store, cluster, config, head, from, now).await? {
            Some(base) => (base, false),
            None => {
                let earliest = earliest_state(store, cluster, head, now).await?;
                let boundary = earliest.point.unwrap_or(Timestamp::MIN);
                let (old, present): (Vec<_>, Vec<_>) = std::mem::take(&mut arrivals.present)
                    .into_iter()
                    .partition(|entry| entry.record.time() < boundary);
                beyond.extend(old);
                arrivals.present = present;
                // Older than every state kept: taken as folded when they were stored.
                arrivals
                    .unsure
                    .retain(|entry| entry.record.time() >= boundary);
                (earliest, true)
            }
        };
        let starts = replay_starts(&base, head, &arrivals);
        let mut tail = store.load_tail(cluster, &starts, per_stream).await?;
        if at_earliest {
            // Nothing earlier is kept: what the trail holds before it cannot be replayed.
            let boundary = base.point.unwrap_or(Timestamp::MIN);
            let limit = Timestamp(now.micros().saturating_add(config.clock_skew_micros));
            let (old, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut tail.entries)
                .into_iter()
                .partition(|entry| entry.record.time() < boundary && entry.record.time() <= limit);
            beyond.extend(old);
            tail.entries = rest;
        }
        let mut base = base;
        let named = stream_keys(
            tail.entries
                .iter()
                .chain(&arrivals.present)
                .chain(&arrivals.future)
                .chain(&arrivals.unsure),
        );
        if !base.carry.integrity.ended_not_held(&named).is_empty() && base.point.is_some() {
            let versions = object_versions_after(store, cluster, head, base.point).await?;
            let versions: Vec<(String, Option<ObjectCarry>)> =
                versions.into_iter().map(|(_, version)| version).collect();
            take_in_ended_streams(store, cluster, &mut base.carry.integrity, named, &versions)
                .await?;
        }
        match prepare_replay(head, base, tail, &arrivals, beyond.clone(), now, config) {
            Ok(prepared) => break prepared,
            Err(earlier) => from = Some(from.map_or(earlier, |from| from.min(earlier))),
        }
    };
    let base_point = prepared.base.point;
    let after = |prefix: &str, point: Option<Timestamp>| {
        point.map_or_else(
            || prefix.to_owned(),
            |point| format!("{prefix}{}", state::point_key(point)),
        )
    };
    let heads: BTreeMap<String, ObjectCarry> = store
        .load_objects(cluster, &prepared.object_names())
        .await?
        .into_iter()
        .collect();
    let mut stale = Stale::default();
    let mut versions = Vec::new();
    for (sk, version) in object_versions_after(store, cluster, head, base_point).await? {
        versions.push(version);
        stale.state.push(sk);
    }
    // What the head names as garbage is not current, whether or not it is deleted yet.
    let pending: BTreeSet<&String> = head.garbage.iter().collect();
    let current = |item: &items::Item| !pending.contains(&items::sort_key(item));
    // From nothing, no object has a carry yet (what their heads hold is what is replayed).
    let at_start = if base_point.is_some() {
        objects_as_of(&heads, &versions)
    } else {
        BTreeMap::new()
    };
    let objects = Objects { at_start, heads };
    let log_items = store
        .state_range(
            cluster,
            StateRange::all(
                &after(state::LOG_PREFIX, base_point),
                &format!("{}~", state::LOG_PREFIX),
            ),
        )
        .await?;
    let log_items: Vec<items::Item> = log_items.into_iter().filter(current).collect();
    let logs = state::logs_from_items(&log_items)?;
    let cut_off = head
        .intent
        .as_ref()
        .filter(|intent| intent.step != head.step)
        .map(|intent| intent.step);
    let previous = Previous::of_logs(head, &logs, base_point, cut_off);
    let later = |point: Timestamp| base_point.is_none_or(|base| point > base);
    for item in &log_items {
        let sk = items::sort_key(item);
        if state::point_of(&sk).is_some_and(later) {
            stale.state.push(sk);
        }
    }
    let mut snapshots: BTreeSet<Timestamp> = logs
        .iter()
        .map(|log| log.point)
        .filter(|point| later(*point))
        .collect();
    snapshots.extend(head.point.filter(|point| later(*point)));
    stale.snapshots = snapshots.into_iter().collect();
    Ok((prepared, objects, previous, stale))
}
