//! Incremental derivation: what one invocation reads, folds and writes, so that its cost
//! depends on what it was given and on what is open, never on the cluster's history.
//!
//! Design decision: **event time, a settle point, and an unsettled tail re-folded from
//! it.**
//! - *State.* Per cluster, one checkpoint ([`Checkpoint`], item `STATE#<cluster>` /
//!   `CHECKPOINT#…`) holds the domain's [`Carry`] as of a settle point `S`: every record
//!   timed before `S` is folded into it (open and recently cut sessions, the failed
//!   logins of the last brute-force window and each user's open burst, every stream's
//!   summary and open gaps, the earliest record of each HSM, open Luna sessions). Keys,
//!   certificates and Luna objects are as many as there are objects, so each has its own
//!   carry item (`OBJ#KEY#<handle>`, …), read only when a batch names it.
//! - *Where a stream stands.* A stream's settled records are a prefix of it: for an
//!   HSM, up to the last sequence number the carry holds of its latest boot; for a
//!   stream without sequence numbers (certificate storage, Luna), up to the sort key the
//!   checkpoint names. The records after it — the tail — are one key-condition `Query`
//!   per stream.
//! - *A step.* Read the checkpoint, the tails of the streams the batch names and of the
//!   streams that still had unsettled records, and the carries of the objects they name;
//!   fold the tail from the carry ([`crate::domain::fold`]); write the views it touches,
//!   the touched objects' carries and the new checkpoint, whose settle point moved to
//!   `min(newest record, now + 5 min) − allowed lateness` (never back). Views of
//!   unsettled records are provisional: the next step folds them again with whatever
//!   arrived meanwhile, and removes what it no longer derives. The checkpoint keeps the
//!   last step's item keys and digests for that, and to skip rewriting unchanged items.
//! - *Order within a stream.* A stream's time only moves forward, so "timed before `S`"
//!   is a prefix of it; should a clock go back, `S` is lowered until it is.
//! - *Late records.* A record timed before the settle point when it arrives (more than
//!   the allowed lateness behind the cluster's newest record, default 5 minutes), or
//!   filling a gap already settled, is stored and counted in its stream's integrity
//!   (a gap it fills closes), raises a `late_record` alert, and is left out of sessions,
//!   key lifecycles and failed logins until `hsm-audit rederive --cluster C` rebuilds the
//!   views from the trail — never a silently wrong view.
//! - *Bounded steps.* A stream's tail is read at most [`TAIL_RECORDS_PER_STREAM`] records
//!   at a time; when one is cut there, the settle point stays at the last record read
//!   and the step repeats. A backfill into a new cluster, and `rederive`, go this way
//!   with bounded memory.
//! - *Concurrency.* Steps of one cluster run under its lease (fenced, renewed:
//!   `store::dynamodb::lease`); a holder that lost it does not write.
//! - *Reference.* [`crate::domain::derive`] is the fold of everything at once from an
//!   empty carry; the property tests compare the stored views after any delivery with
//!   it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain::{
    Alert, AlertKind, Carry, DeriveConfig, EntityCarries, EntityIds, Folded, KeyGeneration,
    entity_ids, late_record_alert,
};
use crate::model::{Timestamp, TrailEntry};
use crate::store::StoreError;
use crate::store::dynamodb::items::{self, Item, ViewItem, ViewOf};

/// The most records of one stream a step reads by default (`TAIL_RECORDS_PER_STREAM`):
/// its memory stays bounded whatever arrived at once (a backfill, a rebuild).
pub const TAIL_RECORDS_PER_STREAM: usize = 5_000;

/// Records are trusted to be at most this far ahead of the clock when the settle point
/// is chosen: a clock running ahead, or a hostile far-future time, must not settle (and
/// so make late) every record after it.
const CLOCK_SKEW_MICROS: i64 = 300_000_000;

/// Where a cluster's incremental derivation stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub carry: Carry,
    /// Every record timed before this is folded into `carry`.
    pub settled_before: Option<Timestamp>,
    /// The newest record time seen in the cluster.
    pub newest: Option<Timestamp>,
    /// Streams without sequence numbers: the trail sort key of the last settled record.
    pub log_positions: BTreeMap<String, String>,
    /// Streams (trail sort-key prefixes) that hold records not yet settled, with the
    /// HSM of each HSM stream.
    pub unsettled: BTreeMap<String, Option<String>>,
    /// Every item the last step wrote: sort key → (digest, whether a later step may
    /// remove it).
    pub written: BTreeMap<String, (String, bool)>,
    /// How many items the checkpoint was read from (pieces beyond the new count go).
    #[serde(skip)]
    pub stored_pieces: usize,
}

/// Where a stream's tail starts: its sort-key prefix and the last settled key in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailStart {
    pub prefix: String,
    pub after: Option<String>,
}

/// The tail as read: records in stream order, and the streams cut at the per-stream cap.
#[derive(Debug, Clone, Default)]
pub struct TailRead {
    pub entries: Vec<TrailEntry>,
    pub cut: BTreeSet<String>,
}

/// The HSM of an entry's stream, when it is an HSM's (sequence-numbered) stream.
fn stream_hsm(entry: &TrailEntry) -> Option<String> {
    entry.cloudhsm().map(|_| entry.stream().hsm.to_string())
}

/// The trail sort-key prefix of an entry's stream.
pub fn stream_prefix(entry: &TrailEntry) -> String {
    match entry.cloudhsm() {
        Some(_) => items::hsm_trail_prefix(&entry.stream().hsm),
        None => items::log_stream_prefix(&entry.stream().hsm),
    }
}

impl Checkpoint {
    /// The tails to read: the streams `batch` names and those still unsettled.
    pub fn tail_starts<'a>(
        &self,
        batch: impl IntoIterator<Item = &'a TrailEntry>,
    ) -> Vec<TailStart> {
        let mut streams = self.unsettled.clone();
        for entry in batch {
            streams
                .entry(stream_prefix(entry))
                .or_insert_with(|| stream_hsm(entry));
        }
        streams
            .into_iter()
            .map(|(prefix, hsm)| {
                let after = match (&hsm, self.log_positions.get(&prefix)) {
                    (Some(hsm), _) => self
                        .carry
                        .integrity
                        .last_position(hsm)
                        .map(|(boot, seq)| items::trail_sk(hsm, boot, seq)),
                    (None, position) => position.cloned(),
                };
                TailStart { prefix, after }
            })
            .collect()
    }
}

/// One step, prepared: what to fold, what is late, where to settle.
#[derive(Debug, Clone)]
pub struct Step {
    /// The checkpoint's carry with the late records counted in their streams.
    pub carry: Carry,
    pub fold: Vec<TrailEntry>,
    pub late: Vec<TrailEntry>,
    pub settle_before: Timestamp,
    pub newest: Timestamp,
    pub log_positions: BTreeMap<String, String>,
    pub unsettled: BTreeMap<String, Option<String>>,
}

/// Sorts the tail and the batch into what to fold and what is late, and chooses the
/// settle point. `fresh` names the batch records stored by this invocation (by trail
/// sort key): a record behind its stream's position is late only if it is new.
pub fn prepare_step(
    checkpoint: &Checkpoint,
    tail: &TailRead,
    batch: &[TrailEntry],
    fresh: &BTreeSet<String>,
    config: &DeriveConfig,
    now: Timestamp,
) -> Step {
    let mut carry = checkpoint.carry.clone();
    let settled = checkpoint.settled_before.unwrap_or(Timestamp(i64::MIN));
    let mut late = Vec::new();
    let mut log_positions = checkpoint.log_positions.clone();
    let in_tail: BTreeSet<String> = tail
        .entries
        .iter()
        .map(|entry| items::identity_sk(&entry.identity()))
        .collect();
    // Batch records behind their stream's position: settled already, or late.
    for entry in batch {
        let sk = items::identity_sk(&entry.identity());
        if in_tail.contains(&sk) {
            continue;
        }
        let admitted = match entry.cloudhsm() {
            Some(record) => carry.integrity.admit(
                &entry.stream().hsm,
                record.reboot_counter,
                record.sequence_no,
                record.time,
            ),
            None => fresh.contains(&sk),
        };
        if admitted
            && !late
                .iter()
                .any(|seen: &TrailEntry| seen.identity() == entry.identity())
        {
            late.push(entry.clone());
        }
    }
    let mut fold = Vec::new();
    let mut newest = checkpoint.newest.unwrap_or(Timestamp(i64::MIN));
    for entry in &tail.entries {
        newest = newest.max(entry.record.time());
        if entry.record.time() < settled {
            // After its stream's position but timed before the settle point: a stream
            // that appeared late, or a clock that went back.
            if let Some(record) = entry.cloudhsm() {
                carry.integrity.admit(
                    &entry.stream().hsm,
                    record.reboot_counter,
                    record.sequence_no,
                    record.time,
                );
            } else {
                advance(&mut log_positions, entry);
            }
            late.push(entry.clone());
        } else {
            fold.push(entry.clone());
        }
    }
    for entry in batch {
        newest = newest.max(entry.record.time());
    }
    let horizon = newest.min(Timestamp(now.micros().saturating_add(CLOCK_SKEW_MICROS)));
    let lateness = config
        .allowed_lateness_micros
        .max(config.mirror_window_micros);
    let mut settle_before = Timestamp(horizon.micros().saturating_sub(lateness)).max(settled);
    // A stream cut at the cap holds more records after the last one read, timed at or
    // after it: nothing from that time on can settle yet.
    let mut last_read: BTreeMap<String, Timestamp> = BTreeMap::new();
    for entry in &fold {
        let prefix = stream_prefix(entry);
        if tail.cut.contains(&prefix) {
            let last = last_read.entry(prefix).or_insert(entry.record.time());
            *last = (*last).max(entry.record.time());
        }
    }
    for last in last_read.values() {
        settle_before = settle_before.min(*last);
    }
    settle_before = prefix_point(&fold, settle_before);
    let mut unsettled = BTreeMap::new();
    for entry in &fold {
        let prefix = stream_prefix(entry);
        if entry.record.time() < settle_before {
            if entry.cloudhsm().is_none() {
                advance(&mut log_positions, entry);
            }
        } else {
            unsettled.insert(prefix, stream_hsm(entry));
        }
    }
    for entry in &tail.entries {
        let prefix = stream_prefix(entry);
        if tail.cut.contains(&prefix) {
            unsettled.insert(prefix, stream_hsm(entry));
        }
    }
    Step {
        carry,
        fold,
        late,
        settle_before,
        newest,
        log_positions,
        unsettled,
    }
}

fn advance(positions: &mut BTreeMap<String, String>, entry: &TrailEntry) {
    let sk = items::identity_sk(&entry.identity());
    let position = positions.entry(stream_prefix(entry)).or_default();
    if sk > *position {
        *position = sk;
    }
}

/// Lowers `point` until the records timed before it are a prefix of each stream (the
/// fold's carry is a state "after every record before the point", and each stream's
/// position is one key).
fn prefix_point(fold: &[TrailEntry], mut point: Timestamp) -> Timestamp {
    loop {
        let mut lowest = point;
        for stream in fold.chunk_by(|a, b| stream_prefix(a) == stream_prefix(b)) {
            if let Some(cut) = stream.iter().position(|entry| entry.record.time() >= point) {
                for entry in &stream[cut..] {
                    lowest = lowest.min(entry.record.time());
                }
            }
        }
        if lowest == point {
            return point;
        }
        point = lowest;
    }
}

/// Everything one step writes.
#[derive(Debug, Clone, Default)]
pub struct StepWrite {
    pub puts: Vec<Item>,
    /// Keys (`pk`, `sk`) of views the previous step wrote and this one no longer derives.
    pub deletes: Vec<Item>,
    /// Carries of the objects the step touched, changed.
    pub objects: Vec<(String, ObjectCarry)>,
    pub checkpoint: Checkpoint,
    /// Alert items that did not exist before, by kind.
    pub new_alerts: BTreeMap<String, usize>,
    /// Those alert items themselves: what is published ([`crate::publish`]).
    pub new_alert_items: Vec<Item>,
    pub unchanged: usize,
    pub open_gaps: usize,
}

/// The carry of one object, as stored under `OBJ#<object>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ObjectCarry {
    Key(crate::domain::KeyCarry),
    Certificate(KeyGeneration),
    Luna(KeyGeneration),
}

impl ObjectCarry {
    /// The object names of every carry the records need.
    pub fn names(ids: &EntityIds) -> Vec<String> {
        ids.keys
            .iter()
            .map(|handle| format!("KEY#{handle}"))
            .chain(
                ids.certificates
                    .iter()
                    .map(|handle| format!("CERT#{handle}")),
            )
            .chain(ids.luna_objects.iter().map(|id| format!("LUNA#{id}")))
            .collect()
    }

    /// Assembles the loaded carries (object name → carry) into the domain's form.
    pub fn assemble(loaded: impl IntoIterator<Item = (String, ObjectCarry)>) -> EntityCarries {
        let mut carries = EntityCarries::default();
        for (name, carry) in loaded {
            match carry {
                ObjectCarry::Key(carry) => {
                    if let Some(handle) = name.strip_prefix("KEY#").and_then(|h| h.parse().ok()) {
                        carries.keys.insert(handle, carry);
                    }
                }
                ObjectCarry::Certificate(generation) => {
                    carries.certificates.insert(generation.handle, generation);
                }
                ObjectCarry::Luna(generation) => {
                    if let Some(id) = generation.object_id.clone() {
                        carries.luna_objects.insert(id, generation);
                    }
                }
            }
        }
        carries
    }

    fn split(carries: EntityCarries) -> Vec<(String, ObjectCarry)> {
        let mut out = Vec::new();
        for (handle, carry) in carries.keys {
            out.push((format!("KEY#{handle}"), ObjectCarry::Key(carry)));
        }
        for (handle, generation) in carries.certificates {
            out.push((
                format!("CERT#{handle}"),
                ObjectCarry::Certificate(generation),
            ));
        }
        for (id, generation) in carries.luna_objects {
            out.push((format!("LUNA#{id}"), ObjectCarry::Luna(generation)));
        }
        out
    }
}

/// The carries of the objects a step's records name.
pub fn object_names(step: &Step) -> Vec<String> {
    ObjectCarry::names(&entity_ids(&step.fold))
}

/// What a step writes: its views (unchanged ones skipped, ones the previous step wrote
/// provisionally and this one no longer derives deleted), the late records' alerts, the
/// touched objects' carries and the new checkpoint.
pub fn plan_write(
    cluster: &str,
    checkpoint: &Checkpoint,
    step: Step,
    folded: Folded,
    loaded: &EntityCarries,
) -> Result<StepWrite, StoreError> {
    let settle = step.settle_before;
    let mut views = items::view_items(cluster, &folded.derived)?;
    let late_alerts: Vec<Alert> = step
        .late
        .iter()
        .map(|entry| late_record_alert(entry, checkpoint.settled_before.unwrap_or(settle)))
        .collect();
    for alert in &late_alerts {
        views.extend(items::view_items(
            cluster,
            &crate::domain::Derived {
                alerts: vec![alert.clone()],
                ..Default::default()
            },
        )?);
    }
    let open_gaps = folded
        .derived
        .alerts
        .iter()
        .filter(|alert| alert.kind == AlertKind::SequenceGap)
        .count();
    let mut write = StepWrite {
        open_gaps,
        ..StepWrite::default()
    };
    let mut written = BTreeMap::new();
    for view in views {
        let provisional = is_provisional(&view, settle, &folded, loaded);
        let sk = items::sort_key(&view.item);
        let digest = hex::encode(&items::item_digest(&view.item)[..8]);
        let unchanged = checkpoint
            .written
            .get(&sk)
            .is_some_and(|(before, _)| *before == digest);
        if !checkpoint.written.contains_key(&sk)
            && let Some(kind) = items::alert_kind(&view.item)
        {
            *write.new_alerts.entry(kind).or_default() += 1;
            write.new_alert_items.push(view.item.clone());
        }
        if unchanged {
            write.unchanged += 1;
        } else {
            write.puts.push(view.item);
        }
        written.insert(sk, (digest, provisional));
    }
    let pk = items::cluster_pk(cluster);
    for (sk, (_, provisional)) in &checkpoint.written {
        if *provisional && !written.contains_key(sk) {
            write.deletes.push(items::key_item(&pk, sk));
        }
    }
    let before = ObjectCarry::split(loaded.clone());
    for (name, carry) in ObjectCarry::split(folded.entities) {
        let same = before
            .iter()
            .any(|(old_name, old)| *old_name == name && *old == carry);
        if !same {
            write.objects.push((name, carry));
        }
    }
    write.checkpoint = Checkpoint {
        carry: folded.carry,
        settled_before: Some(settle),
        newest: Some(step.newest),
        log_positions: step.log_positions,
        unsettled: step.unsettled,
        written,
        stored_pieces: checkpoint.stored_pieces,
    };
    Ok(write)
}

/// Whether a later step may replace the item with another key or drop it: the views of
/// records not yet settled, and what always follows the whole carry.
fn is_provisional(
    view: &ViewItem,
    settle: Timestamp,
    folded: &Folded,
    loaded: &EntityCarries,
) -> bool {
    match &view.of {
        ViewOf::SessionHead { login_time } => *login_time >= settle,
        ViewOf::KeyHead {
            created_time,
            generation,
            first_event,
        } => match created_time {
            Some(created) => *created >= settle,
            None => {
                let carried = view
                    .object
                    .as_deref()
                    .is_some_and(|object| carried_generation(loaded, object) == Some(*generation));
                !carried && first_event.is_none_or(|first| first >= settle)
            }
        },
        ViewOf::Event { time } | ViewOf::Quorum { time } => *time >= settle,
        ViewOf::FailedLogin | ViewOf::Stream => false,
        ViewOf::Alert { kind, time, user } => match kind {
            AlertKind::SequenceGap | AlertKind::Reboot => true,
            AlertKind::BruteForce => user
                .as_ref()
                .is_some_and(|user| folded.open_bursts.contains(&(user.clone(), *time))),
            AlertKind::ConflictingDuplicate | AlertKind::LateRecord => false,
            _ => *time >= settle,
        },
    }
}

fn carried_generation(loaded: &EntityCarries, object: &str) -> Option<u32> {
    if let Some(handle) = object.strip_prefix("KEY#") {
        let handle: u64 = handle.parse().ok()?;
        return loaded
            .keys
            .get(&handle)?
            .last
            .as_ref()
            .map(|g| g.generation);
    }
    if let Some(handle) = object.strip_prefix("CERT#") {
        let handle: u64 = handle.parse().ok()?;
        return loaded.certificates.get(&handle).map(|g| g.generation);
    }
    let id = object.strip_prefix("LUNA#")?;
    loaded.luna_objects.get(id).map(|g| g.generation)
}
