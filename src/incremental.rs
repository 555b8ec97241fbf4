//! Incremental derivation: what one invocation reads, folds and writes, so that its cost
//! is set by its batch and by what its records affect — never by the cluster's history,
//! its arrival rate or how late a record comes — and the views always equal
//! [`crate::domain::derive`] of every stored record.
//!
//! Design decision: **a head folded in time order, snapshots to rewind to, and a replay
//! from the snapshot before whatever arrives behind the head** (Flink's retractions and
//! Kafka Streams' versioned stores, kept exact instead of bounded by a grace period).
//! - *Head.* Per cluster, one checkpoint ([`Checkpoint`], `STATE#<cluster>` /
//!   `CHECKPOINT#…`) holds the domain's [`Carry`] after every record it folded, and its
//!   `point`: every record it folded is timed before it. Keys, certificates and Luna
//!   objects each keep their carry in an item of their own (`OBJ#…`), read only when a
//!   batch names them.
//! - *In order.* A batch whose records are all timed at or after the head's point is
//!   folded onto the head as it is, from memory: nothing of the trail is read again,
//!   whatever the rate.
//! - *Behind the head* (another HSM's payload covering the same seconds, a stalled
//!   delivery, a retry hours later). Every step keeps a copy of the head it leaves
//!   (`SNAP#<point>`), the state of each object before it changed it (`OBJV#…`) and the
//!   keys of the views it wrote (`LOG#…`), for the late horizon (`LATE_HORIZON_SECONDS`,
//!   default 7 days; DynamoDB's time to live removes them). A record behind the head
//!   rewinds to the latest snapshot at or before it and replays every stream of the
//!   cluster from where that snapshot stood: the records read are those after the late
//!   record, not the history. The replay rewrites the views that changed and removes
//!   those that the logs since the snapshot name and it no longer derives.
//! - *Late is a fact, not a state.* A record more than the allowed lateness behind the
//!   cluster's newest record is folded in like any other, and keeps a `late_record` alert
//!   (how late, which stream) so that the delay stays visible. Only a record older than
//!   every snapshot (the horizon) cannot be replayed: it is stored, counted in its
//!   stream's integrity, and raises a `late_record` alert that says `rederive` is needed.
//! - *Time that lies moves nothing but itself.* A record timed more than
//!   `CLOCK_SKEW_SECONDS` ahead of the invocation's clock is held (its trail key kept in
//!   the head, a `clock_skew` alert with its skew) and folded when the clock reaches it,
//!   so that it cannot push the head ahead of every record after it.
//! - *Bounded reads.* A replay reads at most `TAIL_RECORDS_PER_STREAM` records of a
//!   stream at a time; a stream cut there ends the step at the time it was cut at (the
//!   head is marked `replaying`) and the next step goes on from there. A cut is never
//!   lateness.
//! - *A crash anywhere.* A step writes, each phase after the one before is stored: its
//!   intent and its log (the view keys it will write), the versions of the objects it
//!   changes, their heads, its views, what it made stale, the head (the commit), then its
//!   snapshot. A step whose intent is not the head's was cut off: the next step replays
//!   from where it started, reads its log (so that its views are checked and removed
//!   when not derived again) and its versions (so that its objects are not folded
//!   twice).
//! - *Concurrency.* Steps of one cluster run under its lease (fenced, renewed:
//!   `store::dynamodb::lease`); a holder that lost it does not commit.
//! - *Reference.* [`crate::domain::derive`] is the fold of everything at once from an
//!   empty carry; the property tests compare the stored views after any delivery with it.
//!
//! About 900 lines in one file on purpose: the design above and the state it describes
//! (the head, what arrived, how a step starts and what it folds) read together; what a
//! step writes and the object carries are in `incremental/`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::domain::{Carry, entity_ids};
use crate::keys;
use crate::model::{Timestamp, TrailEntry};

mod objects;
mod write;

pub use self::objects::{ObjectCarry, Objects, objects_as_of};
pub use self::write::{FoldPart, LaidOut, Previous, Stale, StepWrite, ViewOf, plan_write};

/// The most records of one stream a replay reads at once by default
/// (`TAIL_RECORDS_PER_STREAM`): its memory stays bounded whatever it must replay.
pub const TAIL_RECORDS_PER_STREAM: usize = 5_000;

/// How long snapshots, step logs and object versions are kept by default
/// (`LATE_HORIZON_SECONDS`): longer than the 6 hours an asynchronous invocation is
/// retried, and than a weekend's stalled delivery.
pub const LATE_HORIZON_SECONDS: i64 = 7 * 86_400;

/// How far ahead of the invocation's clock a record may be timed and still be folded
/// at once, by default (`CLOCK_SKEW_SECONDS`).
pub const CLOCK_SKEW_SECONDS: i64 = 300;

/// One step's name: a counter (the head's plus one) and a random part, so that a step
/// redone after a crash never shares the name of the one cut off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepId(pub u64);

impl StepId {
    fn next(self) -> Self {
        StepId((((self.0 >> 32) + 1) << 32) | u64::from(fastrand::u32(..)))
    }
}

/// What a later step may do with an item a step wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    /// Evidence of a delivery (a late record, a refused duplicate, a skewed clock): no
    /// replay derives it again, so none removes it.
    Kept,
    /// Derived from records: a replay over them removes it when it no longer derives it.
    Rederived,
    /// Derived from what is open (growing bursts): any later step that no longer
    /// derives it removes it.
    Provisional,
    /// Removed by the step (kept in its log, so that a replay after a crash removes it
    /// too).
    Deleted,
}

/// A cluster's trail streams: sort-key prefix → its HSM, for an HSM's stream.
pub type Streams = BTreeMap<String, Option<String>>;

/// Item sort key → (digest, what may remove it).
pub type Written = BTreeMap<String, (String, Removal)>;

/// Where a cluster's derivation stands: its head.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub carry: Carry,
    /// Every record folded into `carry` is timed before this; `None`: nothing folded.
    pub point: Option<Timestamp>,
    /// The newest record time seen in the cluster (records held for their clock apart).
    pub newest: Option<Timestamp>,
    /// Streams without sequence numbers: the trail sort key of the last folded record.
    pub log_positions: BTreeMap<String, String>,
    /// Every stream of the cluster's trail (sort-key prefix → its HSM, for an HSM's
    /// stream): what a replay reads.
    #[serde(default)]
    pub streams: Streams,
    /// HSM streams that hold records not folded yet at keys before their last folded one
    /// (their sequence and their clock disagree): the key their tail is read after.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resume: BTreeMap<String, String>,
    /// The logs and object versions this head's step made stale (`LOG#`, `OBJV#` keys):
    /// the next step that writes deletes them first, and a replay reads past them. Named
    /// here, not deleted after the commit, so that a step cut off while deleting them
    /// leaves none that a later replay could take for current.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub garbage: Vec<String>,
    /// What the last step wrote, but for session and key events (no later step in order
    /// writes them again).
    pub written: Written,
    /// Records timed ahead of the clock, not folded yet: trail sort key → time.
    pub held: BTreeMap<String, Timestamp>,
    pub step: StepId,
    /// A replay was cut at `point`: records after it remain to be read.
    pub replaying: bool,
    /// The invocation clock of the cluster's first step (micros): within the horizon of
    /// it, a replay may start from nothing.
    pub since_micros: Option<i64>,
    /// How many items the head was read from (pieces beyond the new count go).
    #[serde(skip)]
    pub stored_pieces: usize,
    /// The intent stored beside the head: a step other than `step` was cut off.
    #[serde(skip)]
    pub intent: Option<Intent>,
}

/// What a step is about to write, stored before it writes anything else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub step: StepId,
    /// The point of the state the step started from (`None`: from nothing).
    pub from: Option<Timestamp>,
}

/// What one step wrote, kept for the horizon under `LOG#<point>#<step>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLog {
    pub point: Timestamp,
    pub step: StepId,
    pub written: Written,
}

/// Where a stream's tail starts: its sort-key prefix and the last folded key in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailStart {
    pub prefix: String,
    pub after: Option<String>,
    /// A run of keys (first, last) not to read: the batch's own records, in memory.
    pub skip: Option<(String, String)>,
}

impl TailStart {
    /// Whether the key is read: after the start, outside the skipped run.
    pub fn reads(&self, sk: &str) -> bool {
        self.after.as_deref().is_none_or(|after| sk > after)
            && self
                .skip
                .as_ref()
                .is_none_or(|(first, last)| sk < first.as_str() || sk > last.as_str())
    }
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
        Some(_) => keys::hsm_trail_prefix(&entry.stream().hsm),
        None => keys::log_stream_prefix(&entry.stream().hsm),
    }
}

fn trail_key(entry: &TrailEntry) -> String {
    keys::identity_sk(&entry.identity())
}

impl Checkpoint {
    /// Whether `entry` is folded into this state (or held, or counted as beyond the
    /// horizon). A record of a stream without sequence numbers at or before its stream's
    /// position is taken as folded unless this invocation stored it (`fresh`).
    fn holds(&self, entry: &TrailEntry, fresh: &BTreeSet<String>) -> bool {
        let sk = trail_key(entry);
        if self.held.contains_key(&sk) {
            return true;
        }
        match entry.cloudhsm() {
            Some(record) => self.carry.integrity.holds(
                &entry.stream().hsm,
                record.reboot_counter,
                record.sequence_no,
            ),
            None => {
                !fresh.contains(&sk)
                    && self
                        .log_positions
                        .get(&stream_prefix(entry))
                        .is_some_and(|position| sk <= *position)
            }
        }
    }

    /// The step this head's intent names, when it is not the head's own: it was cut
    /// off, and what it started from.
    pub fn cut_off(&self) -> Option<Option<Timestamp>> {
        self.intent
            .as_ref()
            .filter(|intent| intent.step != self.step)
            .map(|intent| intent.from)
    }

    /// The streams this state knows, with the HSM of each HSM stream.
    fn streams(&self) -> Streams {
        let mut streams = self.streams.clone();
        streams.extend(
            self.carry
                .integrity
                .hsms()
                .map(|hsm| (keys::hsm_trail_prefix(hsm), Some(hsm.to_owned()))),
        );
        for prefix in self.log_positions.keys() {
            streams.insert(prefix.clone(), None);
        }
        streams
    }

    /// The key a stream's tail is read after.
    fn position(&self, prefix: &str, hsm: Option<&str>) -> Option<String> {
        match hsm {
            Some(_) if self.resume.contains_key(prefix) => self.resume.get(prefix).cloned(),
            Some(hsm) => self
                .carry
                .integrity
                .last_position(hsm)
                .map(|(boot, seq)| keys::trail_sk(hsm, boot, seq)),
            None => self.log_positions.get(prefix).cloned(),
        }
    }
}

/// The records of a batch (and the held records now due) that the head does not hold,
/// each once: those timed ahead of the clock apart.
#[derive(Debug, Clone, Default)]
pub struct Arrivals {
    pub present: Vec<TrailEntry>,
    pub future: Vec<TrailEntry>,
    /// Re-delivered records of streams without sequence numbers at or before their
    /// position, timed before the head's point: folded, or stored by an invocation cut
    /// off before its step's intent — the position cannot tell. Replayed (to no change
    /// when they were folded), never called late.
    pub unsure: Vec<TrailEntry>,
}

impl Arrivals {
    pub fn sort(
        head: &Checkpoint,
        batch: &[TrailEntry],
        fresh: &BTreeSet<String>,
        due: Vec<TrailEntry>,
        now: Timestamp,
        config: &Config,
    ) -> Self {
        let limit = Timestamp(now.micros().saturating_add(config.clock_skew_micros));
        let mut seen = BTreeSet::new();
        let mut arrivals = Arrivals::default();
        let mut unfolded = Vec::new();
        for entry in batch {
            // Every folded record is timed before the head's point.
            let after_point = head.point.is_none_or(|point| entry.record.time() >= point);
            if after_point || !head.holds(entry, fresh) {
                unfolded.push(entry.clone());
            } else if entry.cloudhsm().is_none()
                && !head.held.contains_key(&trail_key(entry))
                && seen.insert(trail_key(entry))
            {
                arrivals.unsure.push(entry.clone());
            }
        }
        let unfolded = unfolded.into_iter().chain(due);
        for entry in unfolded {
            if !seen.insert(trail_key(&entry)) {
                continue;
            }
            if entry.record.time() > limit {
                arrivals.future.push(entry);
            } else {
                arrivals.present.push(entry);
            }
        }
        arrivals
    }

    fn earliest(&self) -> Option<Timestamp> {
        self.present
            .iter()
            .chain(&self.unsure)
            .map(|entry| entry.record.time())
            .min()
    }
}

/// The held records whose time the clock has reached.
pub fn due_held(head: &Checkpoint, now: Timestamp, config: &Config) -> Vec<String> {
    let limit = Timestamp(now.micros().saturating_add(config.clock_skew_micros));
    head.held
        .iter()
        .filter(|(_, time)| **time <= limit)
        .map(|(sk, _)| sk.clone())
        .collect()
}

/// How a step starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Nothing to fold (a redelivery, or only records for later).
    Nothing,
    /// Every record at or after the head's point: fold them onto the head.
    InOrder,
    /// Replay from the latest state at or before this time.
    Replay(Option<Timestamp>),
}

pub fn start(head: &Checkpoint, arrivals: &Arrivals) -> Start {
    let cut_off = head.cut_off();
    let earliest = arrivals.earliest();
    if cut_off.is_none() && !head.replaying {
        if arrivals.present.is_empty() && arrivals.unsure.is_empty() {
            return if arrivals.future.is_empty() {
                Start::Nothing
            } else {
                Start::InOrder
            };
        }
        if head
            .point
            .is_none_or(|point| earliest.is_some_and(|t| t >= point))
        {
            return Start::InOrder;
        }
    }
    // `None` outside: nothing asks to start early yet; inside: from nothing at all.
    let mut from: Option<Option<Timestamp>> = earliest.map(Some);
    let mut start_by = |point: Option<Timestamp>| {
        from = Some(from.map_or(point, |from| min_point(from, point)));
    };
    if let Some(cut_off) = cut_off {
        start_by(cut_off);
    }
    if head.replaying {
        start_by(head.point);
    }
    Start::Replay(from.unwrap_or(head.point))
}

/// The earlier of two points, `None` (before everything) being the earliest.
fn min_point(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => None,
    }
}

/// Whether a replay may start from nothing: the cluster is new, or younger than the
/// horizon (its every record is still within reach of a replay).
pub fn may_start_from_nothing(head: &Checkpoint, now: Timestamp, config: &Config) -> bool {
    head.point.is_none()
        || head
            .since_micros
            .is_some_and(|since| since >= now.micros().saturating_sub(config.late_horizon_micros))
}

/// Why a record is not folded in the views where it belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Late {
    /// Folded in, more than the allowed lateness behind the cluster's newest record.
    Folded { behind_micros: i64 },
    /// Older than every snapshot: not in the views until `rederive`.
    BeyondHorizon,
}

/// One step, prepared: what to fold from which state, and what to say of the rest.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The state folded from, with held and unreachable records counted in their
    /// streams' integrity.
    pub base: Checkpoint,
    pub replay: bool,
    pub fold: Vec<TrailEntry>,
    /// The new head's point.
    pub point: Timestamp,
    pub replaying: bool,
    pub late: Vec<(TrailEntry, Late)>,
    /// Records newly held for their clock, with how far ahead of it they are.
    pub skewed: Vec<(TrailEntry, i64)>,
    pub held: BTreeMap<String, Timestamp>,
    pub newest: Option<Timestamp>,
    pub log_positions: BTreeMap<String, String>,
    pub streams: Streams,
    /// Records read again from the trail.
    pub replayed: usize,
    /// Where a replay's fold is split, each with where the streams without sequence
    /// numbers stand there: the earliest record it was started for, and every
    /// [`SNAPSHOT_EVERY_RECORDS`] records. The states there are kept as snapshots of their
    /// own, so that the next payload of another HSM covering the same seconds rewinds a
    /// few hundred records, not to where this replay started.
    pub splits: Vec<Split>,
    /// HSM streams with records read but not folded (timed at or after the point, or
    /// beyond a cut): the key before the first of them.
    pub unfolded: BTreeMap<String, String>,
}

/// Where a step's fold is split, and what a state kept there needs to go on from it.
#[derive(Debug, Clone)]
pub struct Split {
    pub at: Timestamp,
    /// Where the streams without sequence numbers stand.
    pub log_positions: BTreeMap<String, String>,
    /// HSM streams' records not folded by `at`: the key before the first of each.
    pub unfolded: BTreeMap<String, String>,
}

/// The key just before `entry`'s in its HSM stream (`None` for other records).
fn key_before(entry: &TrailEntry) -> Option<String> {
    let record = entry.cloudhsm()?;
    let hsm = &entry.stream().hsm;
    Some(match (record.reboot_counter, record.sequence_no) {
        (boot, 0) if boot > 0 => keys::trail_sk(hsm, boot - 1, u64::MAX),
        (_, 0) => keys::hsm_trail_prefix(hsm),
        (boot, seq) => keys::trail_sk(hsm, boot, seq - 1),
    })
}

/// Keeps, per stream, the earliest of the keys.
fn keep_earliest(earliest: &mut BTreeMap<String, String>, prefix: String, key: String) {
    earliest
        .entry(prefix)
        .and_modify(|kept| {
            if key < *kept {
                kept.clone_from(&key);
            }
        })
        .or_insert(key);
}

/// The streams whose tails must be read from before their last folded record in
/// `carry`: those where a record not folded has an earlier key.
pub fn resume_of(
    unfolded: &BTreeMap<String, String>,
    carry: &Carry,
    streams: &Streams,
) -> BTreeMap<String, String> {
    unfolded
        .iter()
        .filter(|(prefix, before)| {
            streams
                .get(*prefix)
                .and_then(Option::as_deref)
                .and_then(|hsm| {
                    carry
                        .integrity
                        .last_position(hsm)
                        .map(|(boot, seq)| (hsm, boot, seq))
                })
                .is_some_and(|(hsm, boot, seq)| **before < keys::trail_sk(hsm, boot, seq))
        })
        .map(|(prefix, before)| (prefix.clone(), before.clone()))
        .collect()
}

impl Prepared {
    /// The carries of the objects the step's records name, and of the ended streams its
    /// base holds (taken in for records of theirs, folded or only counted).
    pub fn object_names(&self) -> Vec<String> {
        let mut ids = entity_ids(&self.fold);
        let integrity = &self.base.carry.integrity;
        ids.streams.extend(integrity.ended_keys());
        ids.streams
            .retain(|(hsm, boot)| integrity.may_have_ended(hsm, *boot));
        ObjectCarry::names(&ids)
    }
}

/// What the arrivals are against the head: which are late, which timed ahead (held, with
/// what the head held before), and the newest record time seen.
struct Lateness {
    late: Vec<(TrailEntry, Late)>,
    newest: Option<Timestamp>,
    held: BTreeMap<String, Timestamp>,
    skewed: Vec<(TrailEntry, i64)>,
}

/// Sorts what is late among the arrivals and holds what is timed ahead.
fn lateness(
    head: &Checkpoint,
    arrivals: &Arrivals,
    base: &mut Checkpoint,
    now: Timestamp,
    config: &Config,
) -> Lateness {
    let mut held = head.held.clone();
    let mut skewed = Vec::new();
    let mut newest = head.newest;
    let mut late = Vec::new();
    for entry in &arrivals.present {
        let time = entry.record.time();
        if let Some(behind) = head
            .newest
            .map(|newest| newest.micros().saturating_sub(time.micros()))
            .filter(|behind| *behind > config.derive.allowed_lateness_micros)
        {
            late.push((
                entry.clone(),
                Late::Folded {
                    behind_micros: behind,
                },
            ));
        }
        newest = Some(newest.map_or(time, |newest| newest.max(time)));
        held.remove(&trail_key(entry));
    }
    for entry in &arrivals.future {
        hold(entry, base, &mut held);
        skewed.push((
            entry.clone(),
            entry.record.time().micros().saturating_sub(now.micros()),
        ));
    }
    Lateness {
        late,
        newest,
        held,
        skewed,
    }
}

/// Keeps a record out of the fold: counted in its stream's integrity (it is in the
/// trail), its key kept until its time comes.
fn hold(entry: &TrailEntry, base: &mut Checkpoint, held: &mut BTreeMap<String, Timestamp>) {
    count_in_integrity(entry, base);
    held.insert(trail_key(entry), entry.record.time());
}

fn count_in_integrity(entry: &TrailEntry, base: &mut Checkpoint) {
    if let Some(record) = entry.cloudhsm() {
        base.carry.integrity.admit(
            &entry.stream().hsm,
            record.reboot_counter,
            record.sequence_no,
            record.time,
        );
    }
}

/// A step that folds the arrivals onto the head.
pub fn prepare_in_order(
    head: &Checkpoint,
    arrivals: &Arrivals,
    now: Timestamp,
    config: &Config,
) -> Prepared {
    let mut base = head.clone();
    let Lateness {
        late,
        newest,
        held,
        skewed,
    } = lateness(head, arrivals, &mut base, now, config);
    let mut fold = arrivals.present.clone();
    fold.sort_by_key(|entry| entry.record.time());
    let last = fold.last().map(|entry| next_micro(entry.record.time()));
    let point = match (head.point, last) {
        (Some(point), Some(last)) => point.max(last),
        (point, last) => point.or(last).unwrap_or(Timestamp::MIN),
    };
    let mut log_positions = head.log_positions.clone();
    for entry in &fold {
        advance(&mut log_positions, entry);
    }
    let streams = known_streams(head, &base, arrivals.present.iter().chain(&arrivals.future));
    Prepared {
        splits: split_points(&fold, head, None, None, &BTreeMap::new()),
        unfolded: BTreeMap::new(),
        streams,
        base,
        replay: false,
        fold,
        point,
        replaying: false,
        late,
        skewed,
        held,
        newest,
        log_positions,
        replayed: 0,
    }
}

fn next_micro(time: Timestamp) -> Timestamp {
    Timestamp(time.micros().saturating_add(1))
}

/// The tails a replay from `base` reads: every stream the base, the head or the
/// arrivals know, from where the base stood (streams it did not know, from their start).
///
/// An HSM stream whose arrivals are one unbroken run of sequence numbers is not read over
/// that run: the replay takes those records from memory.
pub fn replay_starts(base: &Checkpoint, head: &Checkpoint, arrivals: &Arrivals) -> Vec<TailStart> {
    let mut runs: BTreeMap<String, Vec<(u32, u64)>> = BTreeMap::new();
    for entry in &arrivals.present {
        if let Some(record) = entry.cloudhsm() {
            runs.entry(stream_prefix(entry))
                .or_default()
                .push((record.reboot_counter, record.sequence_no));
        }
    }
    known_streams(head, base, arrivals.present.iter().chain(&arrivals.future))
        .into_iter()
        .map(|(prefix, hsm)| {
            let after = base.position(&prefix, hsm.as_deref());
            let skip = hsm
                .as_deref()
                .zip(runs.get_mut(&prefix))
                .and_then(|(hsm, run)| {
                    run.sort_unstable();
                    let unbroken = run
                        .windows(2)
                        .all(|pair| pair[0].0 == pair[1].0 && pair[0].1 + 1 == pair[1].1);
                    let (first, last) = (run.first()?, run.last()?);
                    let first = keys::trail_sk(hsm, first.0, first.1);
                    let after_start = after.as_ref().is_none_or(|after| first > *after);
                    (unbroken && after_start).then(|| (first, keys::trail_sk(hsm, last.0, last.1)))
                });
            TailStart {
                after,
                prefix,
                skip,
            }
        })
        .collect()
}

/// A replay from `base` over the tails read after it. `Err(time)`: a record read is timed
/// before the base (a stream whose clock went back), so the replay must start at or
/// before `time`.
#[allow(clippy::too_many_arguments)]
pub fn prepare_replay(
    head: &Checkpoint,
    base: Checkpoint,
    tail: TailRead,
    arrivals: &Arrivals,
    beyond: Vec<TrailEntry>,
    now: Timestamp,
    config: &Config,
) -> Result<Prepared, Timestamp> {
    let mut base = base;
    let mut tail = tail;
    // A stream read from before its last folded record (see `resume`) yields records the
    // base holds: they are not read again.
    tail.entries.retain(|entry| {
        entry.cloudhsm().is_none_or(|record| {
            base.held.contains_key(&trail_key(entry))
                || !base.carry.integrity.holds(
                    &entry.stream().hsm,
                    record.reboot_counter,
                    record.sequence_no,
                )
        })
    });
    let limit = Timestamp(now.micros().saturating_add(config.clock_skew_micros));
    let base_point = base.point.unwrap_or(Timestamp::MIN);
    // A cut stream holds more records after the last one read, timed at or after it:
    // the step ends before that time.
    let mut cut_at: Option<Timestamp> = None;
    let mut unfolded = BTreeMap::new();
    for stream in tail
        .entries
        .chunk_by(|a, b| stream_prefix(a) == stream_prefix(b))
    {
        if let Some(last) = stream.last()
            && tail.cut.contains(&stream_prefix(last))
        {
            if last.cloudhsm().is_some() {
                keep_earliest(&mut unfolded, stream_prefix(last), trail_key(last));
            }
            let time = stream
                .iter()
                .map(|entry| entry.record.time())
                .max()
                .unwrap_or(base_point);
            cut_at = Some(cut_at.map_or(time, |cut: Timestamp| cut.min(time)));
        }
    }
    // An arrival behind its stream's position in the base (a stream whose sequence and
    // time disagree) is not read after it: it is replayed all the same.
    let read: BTreeSet<String> = tail.entries.iter().map(trail_key).collect();
    let beyond_keys: BTreeSet<String> = beyond.iter().map(trail_key).collect();
    tail.entries.extend(
        arrivals
            .present
            .iter()
            .chain(&arrivals.unsure)
            .filter(|entry| {
                let sk = trail_key(entry);
                !read.contains(&sk) && !beyond_keys.contains(&sk)
            })
            .cloned(),
    );
    if let Some(earliest) = tail
        .entries
        .iter()
        .map(|entry| entry.record.time())
        .filter(|time| *time < base_point && *time <= limit)
        .min()
    {
        return Err(earliest);
    }
    let Lateness {
        mut late,
        newest,
        mut held,
        mut skewed,
    } = lateness(head, arrivals, &mut base, now, config);
    for entry in beyond {
        count_in_integrity(&entry, &mut base);
        late.retain(|(other, _)| other.identity() != entry.identity());
        late.push((entry, Late::BeyondHorizon));
    }
    let replayed = tail.entries.len();
    let mut fold = Vec::new();
    for entry in tail.entries {
        let sk = trail_key(&entry);
        if beyond_keys.contains(&sk) {
            continue;
        }
        if entry.record.time() > limit {
            if !held.contains_key(&sk) {
                skewed.push((
                    entry.clone(),
                    entry.record.time().micros().saturating_sub(now.micros()),
                ));
            }
            hold(&entry, &mut base, &mut held);
            continue;
        }
        if cut_at.is_some_and(|cut| entry.record.time() >= cut) {
            if let Some(before) = key_before(&entry) {
                keep_earliest(&mut unfolded, stream_prefix(&entry), before);
            }
            continue;
        }
        held.remove(&sk);
        fold.push(entry);
    }
    fold.sort_by_key(|entry| entry.record.time());
    let last = fold.last().map(|entry| next_micro(entry.record.time()));
    let point = match cut_at {
        Some(cut) => cut.max(base_point),
        None => [Some(base_point), last, head.point]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(base_point),
    };
    let splits = split_points(&fold, &base, arrivals.earliest(), cut_at, &unfolded);
    let mut log_positions = base.log_positions.clone();
    for entry in &fold {
        advance(&mut log_positions, entry);
    }
    let streams = known_streams(head, &base, arrivals.present.iter().chain(&arrivals.future));
    Ok(Prepared {
        splits,
        streams,
        base,
        replay: true,
        fold,
        point,
        replaying: cut_at.is_some(),
        late,
        skewed,
        held,
        newest,
        log_positions,
        replayed,
        unfolded,
    })
}

/// How many records a replay folds between two snapshots it keeps.
pub const SNAPSHOT_EVERY_RECORDS: usize = 250;

/// Where a step's fold (sorted by time) is split: where its batch starts and every
/// [`SNAPSHOT_EVERY_RECORDS`] records, at times strictly inside the fold, each with the
/// positions of the streams without sequence numbers there and the first key of each
/// HSM stream not folded by then (`unfolded`: of the records read but not folded at all).
fn split_points(
    fold: &[TrailEntry],
    base: &Checkpoint,
    batch_start: Option<Timestamp>,
    end: Option<Timestamp>,
    unfolded: &BTreeMap<String, String>,
) -> Vec<Split> {
    let base_point = base.point.unwrap_or(Timestamp::MIN);
    let mut wanted: BTreeSet<Timestamp> = fold
        .iter()
        .skip(SNAPSHOT_EVERY_RECORDS)
        .step_by(SNAPSHOT_EVERY_RECORDS)
        .map(|entry| entry.record.time())
        .collect();
    wanted.extend(batch_start);
    let first = fold.first().map(|entry| entry.record.time());
    wanted.retain(|split| {
        *split > base_point
            && first.is_some_and(|first| *split > first)
            && end.is_none_or(|end| *split < end)
    });
    let mut positions = base.log_positions.clone();
    let mut entries = fold.iter().peekable();
    let mut splits = Vec::new();
    for at in wanted.iter().copied() {
        while let Some(entry) = entries.next_if(|entry| entry.record.time() < at) {
            advance(&mut positions, entry);
        }
        splits.push(Split {
            at,
            log_positions: positions.clone(),
            unfolded: BTreeMap::new(),
        });
    }
    // What is not folded by each split: the records after it, latest split first.
    let mut after = unfolded.clone();
    let mut rest = fold;
    for split in splits.iter_mut().rev() {
        let cut = rest.partition_point(|entry| entry.record.time() < split.at);
        for entry in &rest[cut..] {
            if let Some(before) = key_before(entry) {
                keep_earliest(&mut after, stream_prefix(entry), before);
            }
        }
        rest = &rest[..cut];
        split.unfolded = after.clone();
    }
    splits
}

/// The streams the head, the base and `entries` know.
fn known_streams<'a>(
    head: &Checkpoint,
    base: &Checkpoint,
    entries: impl Iterator<Item = &'a TrailEntry>,
) -> Streams {
    let mut streams = head.streams();
    streams.append(&mut base.streams());
    for entry in entries {
        streams
            .entry(stream_prefix(entry))
            .or_insert_with(|| stream_hsm(entry));
    }
    streams
}

fn advance(positions: &mut BTreeMap<String, String>, entry: &TrailEntry) {
    if entry.cloudhsm().is_some() {
        return;
    }
    let sk = trail_key(entry);
    let position = positions.entry(stream_prefix(entry)).or_default();
    if sk > *position {
        *position = sk;
    }
}

#[cfg(test)]
mod tests;
