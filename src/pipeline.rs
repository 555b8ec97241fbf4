//! The one code path of the Lambda handler and the CLI: decoded payloads → parsed
//! records (or quarantine) → the trail → each touched cluster's views re-derived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::config::Config;
use crate::decode::{Decoded, LogEvent, LogsPayload, MessageType, Quarantined};
use crate::domain::{AlertKind, Conflict, fold};
use crate::errors::one_line;
use crate::incremental::{
    Arrivals, Checkpoint, FoldPart, Late, ObjectCarry, Objects, Prepared, Previous, Stale, Start,
    StepWrite, due_held, may_start_from_nothing, objects_as_of, plan_write, prepare_in_order,
    prepare_replay, replay_starts,
};
use crate::model::bounds::Unstorable;
use crate::model::{AuditRecord, LogSource, StreamId, Timestamp, TrailEntry, bounds};
use crate::parse::{RecordError, parse_message};
use crate::store::dynamodb::items::{self, state};
use crate::store::{AuditStore, ClusterLease, StoreError};

/// Decoded input split into trail entries by cluster and what must be quarantined.
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: BTreeMap<String, Vec<TrailEntry>>,
    pub quarantined: Vec<Quarantined>,
    pub control_messages: usize,
    pub log_events: usize,
}

impl Parsed {
    pub fn records(&self) -> impl Iterator<Item = &TrailEntry> {
        self.entries.values().flatten()
    }
}

/// Why a log event is quarantined instead of stored.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Unstorable(#[from] Unstorable),
}

/// Parses every log event of every payload. Never fails: what does not parse is
/// quarantined with the reason, beside the records that do.
pub fn parse_decoded(decoded: impl IntoIterator<Item = Decoded>) -> Parsed {
    let mut parsed = Parsed::default();
    for unit in decoded {
        match unit {
            Decoded::Quarantined(item) => parsed.quarantined.push(item),
            Decoded::Payload(payload) => parse_payload(payload, &mut parsed),
        }
    }
    parsed
}

fn parse_payload(payload: LogsPayload, parsed: &mut Parsed) {
    match payload.message_type {
        MessageType::ControlMessage => {
            parsed.control_messages += 1;
            return;
        }
        MessageType::Unknown => {
            let raw = serde_json::to_vec(
                &payload
                    .log_events
                    .iter()
                    .map(|e| &e.message)
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default();
            parsed.quarantined.push(
                Quarantined::new(
                    "unknown messageType: neither DATA_MESSAGE nor CONTROL_MESSAGE",
                    &raw,
                )
                .at(&payload.log_group, &payload.log_stream, None),
            );
            return;
        }
        MessageType::DataMessage => {}
    }
    for event in &payload.undecodable {
        parsed.log_events += 1;
        parsed
            .quarantined
            .push(Quarantined::new(event.reason.clone(), &event.message).at(
                &payload.log_group,
                &payload.log_stream,
                Some(&event.id),
            ));
    }
    // What every record of the payload shares is made once and shared, not copied into
    // each record.
    let source = LogSource::shared(&payload.log_group, &payload.log_stream);
    // The payload's names are the same for every event: checked once.
    let names_storable = bounds::check_name("the log group", &payload.log_group)
        .and_then(|()| bounds::check_name("the log stream", &payload.log_stream));
    let mut entries = Vec::with_capacity(payload.log_events.len());
    for event in payload.log_events {
        parsed.log_events += 1;
        let log_event_time = Timestamp::from_millis(event.timestamp);
        // A match rather than `map_err` and `and_then`: each of those moves the record
        // (a few hundred bytes) once more.
        let refused = match parse_message(&event.message) {
            Ok(mut record) => {
                match check_storable(&mut record, &event, log_event_time, &names_storable) {
                    Ok(()) => {
                        entries.push(TrailEntry {
                            source: Arc::clone(&source),
                            record,
                            log_event_id: event.id,
                            log_event_time,
                            raw: event.message,
                        });
                        continue;
                    }
                    Err(refused) => refused,
                }
            }
            Err(error) => Refused::from(error),
        };
        parsed.quarantined.push(
            Quarantined::new(one_line(&refused), event.message.as_bytes()).at(
                &payload.log_group,
                &payload.log_stream,
                Some(&event.id),
            ),
        );
    }
    if !entries.is_empty() {
        let cluster = parsed
            .entries
            .entry(source.stream.cluster.to_string())
            .or_default();
        // The first payload of a cluster (in the Lambda, nearly always the only one) is
        // moved in whole rather than copied record by record.
        if cluster.is_empty() {
            *cluster = entries;
        } else {
            cluster.append(&mut entries);
        }
    }
}

/// Whether the trail can store a parsed record with its log event, bounding its fields
/// when the message is long; `names_storable` is the payload's log group and stream's.
fn check_storable(
    record: &mut AuditRecord,
    event: &LogEvent,
    log_event_time: Timestamp,
    names_storable: &Result<(), Unstorable>,
) -> Result<(), Refused> {
    // A time the trail cannot store would be written and then fail every later read.
    record.time().check_storable("the record's time")?;
    log_event_time.check_storable("the CloudWatch event timestamp")?;
    // A record's fields come from its message: a short one is bounded already.
    if event.message.len() > bounds::MAX_FIELD_BYTES {
        bounds::bound_record(record)?;
    }
    names_storable.clone()?;
    bounds::check_name("the log event id", &event.id)?;
    Ok(())
}

/// What one run of the pipeline did; the CLI prints it and the Lambda returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub log_events: usize,
    pub records: usize,
    pub stored: usize,
    pub duplicates: usize,
    pub conflicts: usize,
    pub quarantined: usize,
    pub control_messages: usize,
    pub failed_logins: usize,
    pub clusters: BTreeSet<String>,
    /// The same counts per cluster (quarantine without a log group under
    /// [`UNKNOWN_CLUSTER`]), with what re-deriving found: metrics are dimensioned by it.
    pub by_cluster: BTreeMap<String, ClusterReport>,
    /// Log groups and streams the input came from, for the invocation's log span.
    #[serde(skip)]
    pub log_groups: BTreeSet<String>,
    #[serde(skip)]
    pub log_streams: BTreeSet<String>,
    /// What was stored and is not yet derived, by cluster.
    #[serde(skip)]
    pub pending: BTreeMap<String, ClusterBatch>,
}

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
    fn add(&mut self, other: ClusterBatch) {
        self.entries.extend(other.entries);
        self.fresh.extend(other.fresh);
        self.conflicts.extend(other.conflicts);
    }
}

/// Where quarantined input that names no log group is counted.
pub const UNKNOWN_CLUSTER: &str = "unknown";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterReport {
    pub records: usize,
    pub stored: usize,
    pub duplicates: usize,
    pub conflicts: usize,
    pub quarantined: usize,
    pub failed_logins: usize,
    /// Alerts raised by this run, by kind (an alert raised before does not count again).
    pub new_alerts: BTreeMap<String, usize>,
    /// Sequence gaps open after this run; `None` until the cluster was re-derived.
    pub open_gaps: Option<usize>,
    /// Records that arrived later than the allowed lateness, folded in (a `late_record`
    /// alert each).
    pub late: usize,
    /// Records older than the late horizon: in the trail, not in the views until
    /// `rederive` (a `late_record` alert each).
    pub beyond_horizon: usize,
    /// Records timed ahead of the clock, held until it reaches them (a `clock_skew`
    /// alert each).
    pub held: usize,
    /// Records read again from the trail by replays.
    pub replayed: usize,
    /// Records whose own time is more than [`MAX_OFF_LOG_TIME_MICROS`] from the time
    /// CloudWatch Logs gave their log event: an HSM clock that is off, or a delivery held
    /// back.
    pub off_log_time: usize,
}

/// How far a record's time may be from its log event's: CloudWatch Logs stamps an event
/// when the HSM's agent sends it, within seconds of the record.
pub const MAX_OFF_LOG_TIME_MICROS: i64 = 300_000_000;

fn is_off_log_time(entry: &TrailEntry) -> bool {
    (entry.record.time().micros() - entry.log_event_time.micros()).abs() > MAX_OFF_LOG_TIME_MICROS
}

impl ClusterReport {
    fn add(&mut self, other: ClusterReport) {
        self.records += other.records;
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.conflicts += other.conflicts;
        self.quarantined += other.quarantined;
        self.failed_logins += other.failed_logins;
        self.late += other.late;
        self.beyond_horizon += other.beyond_horizon;
        self.held += other.held;
        self.replayed += other.replayed;
        self.off_log_time += other.off_log_time;
        for (kind, count) in other.new_alerts {
            *self.new_alerts.entry(kind).or_default() += count;
        }
        // The later state of the integrity wins: gaps are a level, not a count.
        if other.open_gaps.is_some() {
            self.open_gaps = other.open_gaps;
        }
    }

    pub fn new_alerts_of(&self, kind: AlertKind) -> usize {
        self.new_alerts.get(kind.as_str()).copied().unwrap_or(0)
    }
}

impl Report {
    pub fn add(&mut self, other: Report) {
        self.log_events += other.log_events;
        self.records += other.records;
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.conflicts += other.conflicts;
        self.quarantined += other.quarantined;
        self.control_messages += other.control_messages;
        self.failed_logins += other.failed_logins;
        self.clusters.extend(other.clusters);
        for (cluster, counts) in other.by_cluster {
            self.by_cluster.entry(cluster).or_default().add(counts);
        }
        self.log_groups.extend(other.log_groups);
        self.log_streams.extend(other.log_streams);
        for (cluster, batch) in other.pending {
            self.pending.entry(cluster).or_default().add(batch);
        }
    }

    /// Counts an item stored in the quarantine.
    pub fn add_quarantined(&mut self, item: &Quarantined) {
        self.quarantined += 1;
        self.by_cluster
            .entry(quarantine_cluster(item))
            .or_default()
            .quarantined += 1;
    }

    /// Takes in what re-deriving `cluster` changed.
    pub fn add_derivation(&mut self, cluster: &str, rederived: &Rederived) {
        self.by_cluster
            .entry(cluster.to_owned())
            .or_default()
            .add(ClusterReport {
                new_alerts: rederived.new_alerts.clone(),
                open_gaps: Some(rederived.open_gaps),
                late: rederived.late,
                beyond_horizon: rederived.beyond_horizon,
                held: rederived.held,
                replayed: rederived.replayed,
                ..ClusterReport::default()
            });
    }
}

fn quarantine_cluster(item: &Quarantined) -> String {
    match (&item.log_group, &item.log_stream) {
        (Some(group), stream) => StreamId::from_log(group, stream.as_deref().unwrap_or_default())
            .cluster
            .to_string(),
        (None, _) => UNKNOWN_CLUSTER.to_owned(),
    }
}

/// Stores what was parsed and derives the views of every cluster it touched. A store
/// failure is returned (the caller fails the invocation so that it is retried); every
/// write is idempotent, so a retry converges to the state of one clean delivery.
pub async fn ingest<S: AuditStore>(
    store: &S,
    config: &Config,
    parsed: Parsed,
) -> Result<Report, StoreError> {
    let mut report = store_parsed(store, parsed).await?;
    derive_clusters(store, config, &mut report, stop_at_first).await?;
    Ok(report)
}

/// The failure policy of [`derive_clusters`] for an invocation that fails as a whole:
/// the first cluster that cannot be derived ends it.
pub fn stop_at_first(_cluster: &str, error: StoreError) -> Result<(), StoreError> {
    Err(error)
}

/// Parses decoded input and stores it, without deriving: the CLI stores file after file
/// this way and derives once at the end, and the record-stream handlers record by record.
pub async fn store_decoded<S: AuditStore>(
    store: &S,
    decoded: Vec<Decoded>,
) -> Result<Report, StoreError> {
    store_parsed(store, parse_decoded(decoded)).await
}

/// Derives every cluster the report stored records of and has not derived yet, and
/// adds what that found. A cluster whose derivation fails is handed to `failed`, which
/// ends the run with its error or lets the other clusters be derived (`Ok`).
pub async fn derive_clusters<S: AuditStore>(
    store: &S,
    config: &Config,
    report: &mut Report,
    mut failed: impl FnMut(&str, StoreError) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for (cluster, batch) in std::mem::take(&mut report.pending) {
        match derive_cluster(store, config, &cluster, batch).await {
            Ok(derived) => report.add_derivation(&cluster, &derived),
            Err(error) => failed(&cluster, error)?,
        }
    }
    Ok(())
}

/// Quarantines what must be and appends the records to the trail, without deriving.
pub async fn store_parsed<S: AuditStore>(store: &S, parsed: Parsed) -> Result<Report, StoreError> {
    let mut report = Report {
        log_events: parsed.log_events,
        records: parsed.records().count(),
        control_messages: parsed.control_messages,
        failed_logins: parsed
            .records()
            .filter(|entry| entry.record.is_failed_login())
            .count(),
        ..Report::default()
    };
    // Each name once: a payload's records share theirs.
    for entry in parsed.records() {
        if !report.log_groups.contains(entry.log_group()) {
            report.log_groups.insert(entry.log_group().to_string());
        }
        if !report.log_streams.contains(&*entry.stream().hsm) {
            report.log_streams.insert(entry.stream().hsm.to_string());
        }
    }
    report.log_groups.extend(
        parsed
            .quarantined
            .iter()
            .filter_map(|item| item.log_group.clone()),
    );
    report.log_streams.extend(
        parsed
            .quarantined
            .iter()
            .filter_map(|item| item.log_stream.clone()),
    );
    store.quarantine(&parsed.quarantined).await?;
    for item in &parsed.quarantined {
        report.add_quarantined(item);
    }
    for (cluster, entries) in parsed.entries {
        let outcome = store.append_trail(&cluster, &entries).await?;
        report.stored += outcome.stored;
        report.duplicates += outcome.duplicates;
        report.conflicts += outcome.conflicts.len();
        report.clusters.insert(cluster.clone());
        report
            .by_cluster
            .entry(cluster.clone())
            .or_default()
            .add(ClusterReport {
                records: entries.len(),
                stored: outcome.stored,
                duplicates: outcome.duplicates,
                conflicts: outcome.conflicts.len(),
                failed_logins: entries
                    .iter()
                    .filter(|entry| entry.record.is_failed_login())
                    .count(),
                off_log_time: entries
                    .iter()
                    .filter(|entry| is_off_log_time(entry))
                    .count(),
                ..ClusterReport::default()
            });
        report
            .pending
            .entry(cluster)
            .or_default()
            .add(ClusterBatch {
                entries,
                fresh: outcome.fresh,
                conflicts: outcome.conflicts,
            });
    }
    Ok(report)
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
    fn add(&mut self, write: &StepWrite, prepared: &PreparedCounts) {
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
            cluster, &head, prepared, parts, &objects, &previous, stale, now, config,
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
        let folded = fold(&carry, &carries, part, refused, end, &config.derive);
        carry = folded.carry.clone();
        carries.keys.extend(folded.entities.keys.clone());
        carries
            .certificates
            .extend(folded.entities.certificates.clone());
        carries
            .luna_objects
            .extend(folded.entities.luna_objects.clone());
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
                state::SNAPSHOT_PREFIX,
                &state::snapshot_sk(from),
                true,
                Some(1),
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
            state::SNAPSHOT_PREFIX,
            &format!("{}~", state::SNAPSHOT_PREFIX),
            true,
            Some(1),
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
        .state_range(cluster, state::SNAPSHOT_PREFIX, &high, false, None)
        .await?;
    for item in &found {
        if let Some(snapshot) = state::snapshot_from_item(item, now.micros() / 1_000_000)? {
            return Ok(snapshot);
        }
    }
    Ok(head.clone())
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
    let version_items = store
        .state_range(
            cluster,
            &after(
                state::VERSION_PREFIX,
                base_point.map(|point| Timestamp(point.micros().saturating_add(1))),
            ),
            &format!("{}~", state::VERSION_PREFIX),
            false,
            None,
        )
        .await?;
    // What the head names as garbage is not current, whether or not it is deleted yet.
    let pending: BTreeSet<&String> = head.garbage.iter().collect();
    let current = |item: &items::Item| !pending.contains(&items::sort_key(item));
    let version_items: Vec<items::Item> = version_items.into_iter().filter(current).collect();
    let mut stale = Stale::default();
    let mut versions = Vec::with_capacity(version_items.len());
    for item in &version_items {
        versions.push(state::object_from_item(item)?);
        stale.state.push(items::sort_key(item));
    }
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
            &after(state::LOG_PREFIX, base_point),
            &format!("{}~", state::LOG_PREFIX),
            false,
            None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::LogEvent;
    use crate::testkit::INIT_TOKEN_RECORD;

    fn payload(log_stream: &str, ids: &[String]) -> Decoded {
        payload_at(log_stream, ids, 1_513_717_277_000)
    }

    /// Events whose log event time is `timestamp_ms`; the record is timed
    /// 2017-12-19T21:01:16.962174Z.
    fn payload_at(log_stream: &str, ids: &[String], timestamp_ms: i64) -> Decoded {
        Decoded::Payload(LogsPayload {
            message_type: MessageType::DataMessage,
            owner: String::new(),
            log_group: "/aws/cloudhsm/cluster-1".to_owned(),
            log_stream: log_stream.to_owned(),
            subscription_filters: Vec::new(),
            log_events: ids
                .iter()
                .map(|id| LogEvent {
                    id: id.clone(),
                    timestamp: timestamp_ms,
                    message: INIT_TOKEN_RECORD.to_owned(),
                })
                .collect(),
            undecodable: Vec::new(),
        })
    }

    #[test]
    fn names_too_long_to_store_quarantine_their_events_with_the_reason() {
        let long = "x".repeat(bounds::MAX_FIELD_BYTES + 1);
        let ids = ["1".to_owned(), "2".to_owned()];
        // A stream name too long: every event of the payload is kept in quarantine.
        let parsed = parse_decoded([payload(&long, &ids)]);
        assert_eq!(parsed.records().count(), 0);
        assert_eq!(parsed.quarantined.len(), 2);
        assert!(
            parsed
                .quarantined
                .iter()
                .all(|item| item.reason.contains("the log stream")),
            "{:?}",
            parsed.quarantined
        );
        // An event id too long: that event alone.
        let parsed = parse_decoded([payload("hsm-1", &[long, "2".to_owned()])]);
        assert_eq!(parsed.records().count(), 1);
        assert_eq!(parsed.quarantined.len(), 1);
        assert!(parsed.quarantined[0].reason.contains("the log event id"));
    }

    #[tokio::test]
    async fn records_timed_far_from_their_log_event_are_counted() {
        let store = crate::store::memory::MemoryStore::new();
        let minute = 60_000;
        let parsed = parse_decoded([
            payload_at(
                "hsm-on-time",
                &["1".to_owned()],
                1_513_717_277_000 + 4 * minute,
            ),
            payload_at(
                "hsm-behind",
                &["2".to_owned()],
                1_513_717_277_000 + 6 * minute,
            ),
            payload_at(
                "hsm-ahead",
                &["3".to_owned()],
                1_513_717_277_000 - 6 * minute,
            ),
        ]);
        let report = store_parsed(&store, parsed).await.expect("stored");
        assert_eq!(report.by_cluster["cluster-1"].records, 3);
        assert_eq!(report.by_cluster["cluster-1"].off_log_time, 2);
    }
}
