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

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::domain::{
    Alert, AlertKind, Carry, Derived, EntityCarries, EntityIds, Folded, KeyGeneration, entity_ids,
};
use crate::keys;
use crate::model::{Timestamp, TrailEntry};

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
    /// Derived from what is open (gaps, reboots, growing bursts): any later step that
    /// no longer derives it removes it.
    Provisional,
    /// Removed by the step (kept in its log, so that a replay after a crash removes it
    /// too).
    Deleted,
}

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
    pub streams: BTreeMap<String, Option<String>>,
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
    fn streams(&self) -> BTreeMap<String, Option<String>> {
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
    pub streams: BTreeMap<String, Option<String>>,
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
    streams: &BTreeMap<String, Option<String>>,
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
    /// The carries of the objects the step's records name.
    pub fn object_names(&self) -> Vec<String> {
        ObjectCarry::names(&entity_ids(&self.fold))
    }
}

/// Sorts what is late among the arrivals and holds what is timed ahead.
fn lateness(
    head: &Checkpoint,
    arrivals: &Arrivals,
    base: &mut Checkpoint,
    held: &mut BTreeMap<String, Timestamp>,
    skewed: &mut Vec<(TrailEntry, i64)>,
    now: Timestamp,
    config: &Config,
) -> (Vec<(TrailEntry, Late)>, Option<Timestamp>) {
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
        hold(entry, base, held);
        skewed.push((
            entry.clone(),
            entry.record.time().micros().saturating_sub(now.micros()),
        ));
    }
    (late, newest)
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
    let mut held = head.held.clone();
    let mut skewed = Vec::new();
    let (late, newest) = lateness(
        head,
        arrivals,
        &mut base,
        &mut held,
        &mut skewed,
        now,
        config,
    );
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
    let mut held = head.held.clone();
    let mut skewed = Vec::new();
    let (mut late, newest) = lateness(
        head,
        arrivals,
        &mut base,
        &mut held,
        &mut skewed,
        now,
        config,
    );
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
) -> BTreeMap<String, Option<String>> {
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

/// What the steps since a replay's start wrote: the digest each item has now, and the
/// items the replay removes when it does not derive them again.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub digests: BTreeMap<String, String>,
    pub removable: BTreeSet<String>,
}

impl Previous {
    /// From the head alone, for a step in order: what the last step wrote that only it
    /// may replace.
    pub fn of_head(head: &Checkpoint) -> Self {
        let mut previous = Previous::default();
        for (sk, (digest, removal)) in &head.written {
            previous.digests.insert(sk.clone(), digest.clone());
            if *removal == Removal::Provisional {
                previous.removable.insert(sk.clone());
            }
        }
        previous
    }

    /// From the logs of the steps that ended at or after `from` (in point order): of the
    /// step that ended at `from`, what only it may replace; of every later one, all it
    /// derived; of a step cut off (`cut_off`), what it removed as well, and none of its
    /// digests (it may have stored none of what its log names).
    /// The head's own record of its step comes first: a log may be gone with its horizon.
    pub fn of_logs(
        head: &Checkpoint,
        logs: &[StepLog],
        from: Option<Timestamp>,
        cut_off: Option<StepId>,
    ) -> Self {
        let mut previous = Previous::of_head(head);
        let (cut, committed): (Vec<&StepLog>, Vec<&StepLog>) =
            logs.iter().partition(|log| cut_off == Some(log.step));
        for log in committed {
            let after = from.is_none_or(|from| log.point > from);
            for (sk, (digest, removal)) in &log.written {
                let removable = match removal {
                    Removal::Kept | Removal::Deleted => false,
                    Removal::Rederived => after,
                    Removal::Provisional => true,
                };
                if *removal != Removal::Deleted {
                    previous.digests.insert(sk.clone(), digest.clone());
                }
                if removable {
                    previous.removable.insert(sk.clone());
                } else if *removal != Removal::Deleted {
                    previous.removable.remove(sk);
                }
            }
        }
        // Last, whatever its points: what a step cut off may have overwritten, after any
        // earlier step's digest of it.
        for log in cut {
            for (sk, (_, removal)) in &log.written {
                if *removal != Removal::Kept {
                    previous.digests.remove(sk);
                    previous.removable.insert(sk.clone());
                }
            }
        }
        previous
    }
}

/// What a replay found stored after its start, to remove once it has written.
#[derive(Debug, Clone, Default)]
pub struct Stale {
    /// Sort keys of the logs and object versions of steps after the start.
    pub state: Vec<String>,
    /// Points of the snapshots of steps after the start.
    pub snapshots: Vec<Timestamp>,
}

/// What a view is, for deciding whether a later step may replace or remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewOf {
    SessionHead {
        login_time: Timestamp,
    },
    KeyHead {
        created_time: Option<Timestamp>,
        generation: u32,
        first_event: Option<Timestamp>,
    },
    /// An event of a session or key: the record's time.
    Event {
        time: Timestamp,
    },
    /// A quorum token or M-value setting: the time of the record that starts it.
    Quorum {
        time: Timestamp,
    },
    FailedLogin,
    Alert {
        kind: AlertKind,
        time: Timestamp,
        user: Option<String>,
    },
    Stream,
}

/// One view as the store lays it out: its sort key, a digest of its stored form (a view
/// whose digest a step wrote before is not written again), what it is, and the stored
/// form itself, which the plan carries to the store untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct LaidOut<T> {
    pub sk: String,
    pub digest: String,
    pub of: ViewOf,
    pub stored: T,
}

/// Everything one step writes; `T` is a view as the store lays it out.
#[derive(Debug, Clone, Default)]
pub struct StepWrite<T> {
    pub intent: Intent,
    /// One log per state the step ends a fold at (its split, if any, and its end).
    pub logs: Vec<StepLog>,
    pub puts: Vec<T>,
    /// Sort keys of views written before that this step no longer derives.
    pub deletes: Vec<String>,
    /// Carries of the objects the step changed.
    pub objects: Vec<(String, ObjectCarry)>,
    /// Objects' carries before a fold of the step changed them (`None`: they had none),
    /// under the point that fold ended at.
    pub versions: Vec<(Timestamp, String, Option<ObjectCarry>)>,
    /// States the step passed through, kept as snapshots beside its head's.
    pub snapshots: Vec<Checkpoint>,
    /// What the head before this step named as its garbage: deleted first.
    pub garbage: Vec<String>,
    pub stale_snapshots: Vec<Timestamp>,
    pub checkpoint: Checkpoint,
    /// Time to live of the snapshot, log and versions (seconds since the epoch).
    pub expires_at: i64,
    /// Alert items that did not exist before, by kind.
    pub new_alerts: BTreeMap<String, usize>,
    /// Those alerts themselves: what is published ([`crate::publish`]).
    pub new_alert_items: Vec<T>,
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

    fn split(carries: EntityCarries) -> BTreeMap<String, ObjectCarry> {
        let mut out = BTreeMap::new();
        for (handle, carry) in carries.keys {
            out.insert(format!("KEY#{handle}"), ObjectCarry::Key(carry));
        }
        for (handle, generation) in carries.certificates {
            out.insert(
                format!("CERT#{handle}"),
                ObjectCarry::Certificate(generation),
            );
        }
        for (id, generation) in carries.luna_objects {
            out.insert(format!("LUNA#{id}"), ObjectCarry::Luna(generation));
        }
        out
    }
}

/// Objects as of a replay's start: their heads, replaced by the first version stored
/// after the start (the state before the first step after it changed them).
pub fn objects_as_of(
    heads: &BTreeMap<String, ObjectCarry>,
    versions_after: &[(String, Option<ObjectCarry>)],
) -> BTreeMap<String, Option<ObjectCarry>> {
    let mut as_of: BTreeMap<String, Option<ObjectCarry>> = heads
        .iter()
        .map(|(name, carry)| (name.clone(), Some(carry.clone())))
        .collect();
    let mut seen = BTreeSet::new();
    for (name, carry) in versions_after {
        if seen.insert(name.clone()) {
            as_of.insert(name.clone(), carry.clone());
        }
    }
    as_of
}

/// What is stored of a step's objects: their heads now, and their state at its start.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub heads: BTreeMap<String, ObjectCarry>,
    pub at_start: BTreeMap<String, Option<ObjectCarry>>,
}

impl Objects {
    pub fn carries(&self) -> EntityCarries {
        ObjectCarry::assemble(
            self.at_start
                .iter()
                .filter_map(|(name, carry)| carry.clone().map(|carry| (name.clone(), carry))),
        )
    }
}

/// One fold of a step, ending at `point`.
pub struct FoldPart {
    pub point: Timestamp,
    pub folded: Folded,
}

/// What a step writes: its views (unchanged ones skipped, and what the steps it replays
/// or follows wrote and it no longer derives removed), the alerts of late and skewed
/// records, the objects it changed with their versions, its logs and the new head.
/// `parts` are the step's folds in time order: one, or one more than a replay's splits.
/// `lay_out` is the store's: it turns derived views into its items, their keys and
/// digests.
#[allow(clippy::too_many_arguments)]
pub fn plan_write<T: Clone + Default, E>(
    lay_out: impl Fn(&Derived) -> Result<Vec<LaidOut<T>>, E>,
    head: &Checkpoint,
    prepared: Prepared,
    parts: Vec<FoldPart>,
    objects: &Objects,
    previous: &Previous,
    stale: Stale,
    now: Timestamp,
    config: &Config,
) -> Result<StepWrite<T>, E> {
    let point = prepared.point;
    let step = head.step.next();
    let evidence: Vec<Alert> = prepared
        .late
        .iter()
        .map(|(entry, late)| late_record_alert(entry, late, prepared.base.point))
        .chain(
            prepared
                .skewed
                .iter()
                .map(|(entry, ahead)| clock_skew_alert(entry, *ahead)),
        )
        .collect();
    let mut write = StepWrite::<T> {
        expires_at: now.micros() / 1_000_000 + config.late_horizon_micros / 1_000_000,
        ..StepWrite::default()
    };
    // What the step leaves stored: each later fold's views over the earlier's, whose
    // views of what was open then it derives anew.
    let mut stored: BTreeMap<String, (LaidOut<T>, Removal)> = BTreeMap::new();
    let mut at_start = objects.at_start.clone();
    let mut carry = None;
    let last = parts.len().saturating_sub(1);
    let mut splits = prepared.splits.iter();
    for (index, part) in parts.into_iter().enumerate() {
        let mut views = lay_out(&part.folded.derived)?;
        if index == last {
            views.extend(lay_out(&Derived {
                alerts: evidence.clone(),
                ..Default::default()
            })?);
            write.open_gaps = part
                .folded
                .derived
                .alerts
                .iter()
                .filter(|alert| alert.kind == AlertKind::SequenceGap)
                .count();
        }
        stored.retain(|_, (_, removal)| *removal != Removal::Provisional);
        let mut logged = Written::new();
        for view in views {
            let removal = removal(&view.of, part.point, &part.folded);
            logged.insert(view.sk.clone(), (view.digest.clone(), removal));
            stored.insert(view.sk.clone(), (view, removal));
        }
        for (name, carry) in ObjectCarry::split(part.folded.entities) {
            let before = at_start.get(&name).cloned().flatten();
            if before.as_ref() != Some(&carry) {
                write.versions.push((part.point, name.clone(), before));
            }
            at_start.insert(name, Some(carry));
        }
        if index < last
            && let Some(split) = splits.next()
        {
            write.snapshots.push(Checkpoint {
                carry: part.folded.carry.clone(),
                point: Some(part.point),
                newest: prepared.newest,
                log_positions: split.log_positions.clone(),
                resume: resume_of(&split.unfolded, &part.folded.carry, &prepared.streams),
                garbage: Vec::new(),
                streams: prepared.streams.clone(),
                written: Written::new(),
                held: prepared.held.clone(),
                step,
                replaying: false,
                since_micros: head.since_micros.or(Some(now.micros())),
                stored_pieces: 0,
                intent: None,
            });
        }
        write.logs.push(StepLog {
            point: part.point,
            step,
            written: logged,
        });
        carry = Some(part.folded.carry);
    }
    let mut head_written = Written::new();
    for (sk, (view, removal)) in stored.iter() {
        let before = previous.digests.get(sk);
        if before.is_none()
            && let ViewOf::Alert { kind, .. } = view.of
        {
            *write
                .new_alerts
                .entry(kind.as_str().to_owned())
                .or_default() += 1;
            write.new_alert_items.push(view.stored.clone());
        }
        if before == Some(&view.digest) {
            write.unchanged += 1;
        } else {
            write.puts.push(view.stored.clone());
        }
        if !matches!(view.of, ViewOf::Event { .. }) {
            head_written.insert(sk.clone(), (view.digest.clone(), *removal));
        }
    }
    if let Some(log) = write.logs.last_mut() {
        for sk in &previous.removable {
            if !stored.contains_key(sk) {
                write.deletes.push(sk.clone());
                log.written
                    .insert(sk.clone(), (String::new(), Removal::Deleted));
            }
        }
    }
    for (name, carry) in at_start {
        if let Some(carry) = carry
            && objects.heads.get(&name) != Some(&carry)
            && write
                .versions
                .iter()
                .any(|(_, changed, _)| *changed == name)
        {
            write.objects.push((name, carry));
        }
    }
    write.garbage = head.garbage.clone();
    write.stale_snapshots = stale.snapshots;
    write.intent = Intent {
        step,
        from: prepared.base.point,
    };
    let carry = carry.unwrap_or_else(|| prepared.base.carry.clone());
    write.checkpoint = Checkpoint {
        garbage: stale.state,
        resume: resume_of(&prepared.unfolded, &carry, &prepared.streams),
        carry,
        point: Some(point),
        newest: prepared.newest,
        log_positions: prepared.log_positions,
        streams: prepared.streams,
        written: head_written,
        held: prepared.held,
        step,
        replaying: prepared.replaying,
        since_micros: head.since_micros.or(Some(now.micros())),
        stored_pieces: head.stored_pieces,
        intent: None,
    };
    Ok(write)
}

/// What may remove a view later: evidence of a delivery never; views of what is open
/// (gaps, reboots, a brute-force burst that may still grow) any later step; every
/// other view a replay over its records.
fn removal(view: &ViewOf, point: Timestamp, folded: &Folded) -> Removal {
    match view {
        ViewOf::Alert { kind, time, user } => match kind {
            AlertKind::ConflictingDuplicate | AlertKind::LateRecord | AlertKind::ClockSkew => {
                Removal::Kept
            }
            AlertKind::SequenceGap | AlertKind::Reboot => Removal::Provisional,
            AlertKind::BruteForce
                if user
                    .as_ref()
                    .is_some_and(|user| folded.open_bursts.contains(&(user.clone(), *time))) =>
            {
                Removal::Provisional
            }
            _ if *time >= point => Removal::Provisional,
            _ => Removal::Rederived,
        },
        _ => Removal::Rederived,
    }
}

/// An alert for a record that arrived late: folded in (how late, which stream), or
/// older than the horizon and left out until `hsm-audit rederive`.
fn late_record_alert(entry: &TrailEntry, late: &Late, from: Option<Timestamp>) -> Alert {
    let (hsm, reboot_counter, seq) = entry.identity().into_parts();
    let detail = match late {
        Late::Folded { behind_micros } => format!(
            "arrived {} s behind the cluster's newest record (log event {}); folded in by replaying from {}",
            behind_micros / 1_000_000,
            entry.log_event_id,
            from.map_or_else(|| "the start".to_owned(), Timestamp::iso),
        ),
        Late::BeyondHorizon => format!(
            "older than every snapshot the late horizon keeps (log event {}): in the trail and its stream's integrity, not in sessions, key lifecycles or failed logins until `hsm-audit rederive`",
            entry.log_event_id
        ),
    };
    Alert {
        kind: AlertKind::LateRecord,
        time: entry.record.time(),
        hsm: Some(hsm),
        reboot_counter,
        from: None,
        to: None,
        seq,
        user: None,
        opcode: None,
        detail: Some(detail),
    }
}

/// An alert for a record timed ahead of the invocation's clock: held out of the views
/// until the clock reaches it.
fn clock_skew_alert(entry: &TrailEntry, ahead_micros: i64) -> Alert {
    let (hsm, reboot_counter, seq) = entry.identity().into_parts();
    Alert {
        kind: AlertKind::ClockSkew,
        time: entry.record.time(),
        hsm: Some(hsm),
        reboot_counter,
        from: None,
        to: None,
        seq,
        user: None,
        opcode: None,
        detail: Some(format!(
            "timed {} s ahead of the clock when it arrived (log event {}); held out of the views until then",
            ahead_micros / 1_000_000,
            entry.log_event_id
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Opcode;
    use crate::testkit::rec;

    fn config() -> Config {
        Config::from_lookup(Some("t".into()), |_| None).expect("config")
    }

    #[test]
    fn a_batch_at_or_after_the_head_folds_in_order_and_one_behind_it_replays() {
        let head = Checkpoint {
            point: Some(Timestamp(1_000)),
            ..Checkpoint::default()
        };
        let now = Timestamp(10_000_000);
        let ahead = [rec("a", 1, 5, 1_000, Opcode::Login).build()];
        let arrivals = Arrivals::sort(&head, &ahead, &BTreeSet::new(), Vec::new(), now, &config());
        assert_eq!(start(&head, &arrivals), Start::InOrder);
        let behind = [rec("b", 1, 5, 999, Opcode::Login).build()];
        let arrivals = Arrivals::sort(&head, &behind, &BTreeSet::new(), Vec::new(), now, &config());
        assert_eq!(start(&head, &arrivals), Start::Replay(Some(Timestamp(999))));
    }

    #[test]
    fn a_step_cut_off_or_a_cut_replay_is_gone_on_with_before_anything_else() {
        let now = Timestamp(10_000_000);
        let ahead = [rec("a", 1, 5, 5_000, Opcode::Login).build()];
        let cut_off = Checkpoint {
            point: Some(Timestamp(1_000)),
            step: StepId(1 << 32),
            intent: Some(Intent {
                step: StepId(2 << 32),
                from: Some(Timestamp(700)),
            }),
            ..Checkpoint::default()
        };
        let arrivals = Arrivals::sort(
            &cut_off,
            &ahead,
            &BTreeSet::new(),
            Vec::new(),
            now,
            &config(),
        );
        assert_eq!(
            start(&cut_off, &arrivals),
            Start::Replay(Some(Timestamp(700)))
        );
        let replaying = Checkpoint {
            point: Some(Timestamp(1_000)),
            replaying: true,
            ..Checkpoint::default()
        };
        assert_eq!(
            start(&replaying, &Arrivals::default()),
            Start::Replay(Some(Timestamp(1_000)))
        );
    }

    #[test]
    fn a_record_ahead_of_the_clock_is_held_and_moves_no_point() {
        let head = Checkpoint {
            point: Some(Timestamp(1_000)),
            ..Checkpoint::default()
        };
        let now = Timestamp(1_000_000_000);
        let future = rec("a", 1, 7, 4_000_000_000_000_000, Opcode::Login).build();
        let present = rec("a", 1, 6, 2_000, Opcode::Login).build();
        let arrivals = Arrivals::sort(
            &head,
            &[future.clone(), present],
            &BTreeSet::new(),
            Vec::new(),
            now,
            &config(),
        );
        assert_eq!(arrivals.future.len(), 1);
        let prepared = prepare_in_order(&head, &arrivals, now, &config());
        assert_eq!(prepared.point, Timestamp(2_001));
        assert_eq!(prepared.skewed.len(), 1);
        assert!(prepared.held.contains_key(&trail_key(&future)));
        assert!(
            prepared.base.carry.integrity.holds("a", 1, 7),
            "counted in its stream"
        );
        let later = Checkpoint {
            held: prepared.held.clone(),
            ..head
        };
        assert!(due_held(&later, now, &config()).is_empty());
        assert_eq!(
            due_held(&later, Timestamp(4_000_000_000_000_000), &config()),
            vec![trail_key(&future)]
        );
    }

    #[test]
    fn logs_since_a_replays_start_say_what_it_may_remove() {
        let entry = |removal| (String::from("d"), removal);
        let at = |point, step, items: Vec<(&str, Removal)>| StepLog {
            point: Timestamp(point),
            step: StepId(step),
            written: items
                .into_iter()
                .map(|(sk, removal)| (sk.to_owned(), entry(removal)))
                .collect(),
        };
        let logs = [
            at(
                10,
                1,
                vec![
                    ("gap", Removal::Provisional),
                    ("event-a", Removal::Rederived),
                ],
            ),
            at(15, 3, vec![("event-b", Removal::Rederived)]),
            at(
                20,
                2,
                vec![("event-b", Removal::Rederived), ("late", Removal::Kept)],
            ),
            at(30, 3, vec![("gone", Removal::Deleted)]),
        ];
        let head = Checkpoint {
            written: Written::from([("event-b".to_owned(), entry(Removal::Rederived))]),
            ..Checkpoint::default()
        };
        let previous = Previous::of_logs(&head, &logs, Some(Timestamp(10)), Some(StepId(3)));
        let removable: Vec<&str> = previous.removable.iter().map(String::as_str).collect();
        assert_eq!(removable, ["event-b", "gap", "gone"]);
        assert!(
            !previous.digests.contains_key("gone") && !previous.digests.contains_key("event-b"),
            "what a step cut off wrote is written again, whatever an earlier log says of it"
        );
        let settled = Previous::of_logs(&head, &logs, Some(Timestamp(10)), None);
        assert!(!settled.removable.contains("gone"));
        assert!(settled.digests.contains_key("event-a"));
    }

    #[test]
    fn objects_as_of_a_start_are_their_first_version_after_it() {
        let carry = |generation| {
            ObjectCarry::Certificate(KeyGeneration::blank(1, None, generation, "certificate"))
        };
        let heads = BTreeMap::from([
            ("CERT#1".to_owned(), carry(3)),
            ("CERT#2".to_owned(), carry(5)),
        ]);
        let versions = vec![
            ("CERT#1".to_owned(), Some(carry(1))),
            ("CERT#1".to_owned(), Some(carry(2))),
            ("CERT#3".to_owned(), None),
        ];
        let as_of = objects_as_of(&heads, &versions);
        assert_eq!(as_of["CERT#1"], Some(carry(1)));
        assert_eq!(as_of["CERT#2"], Some(carry(5)));
        assert_eq!(as_of["CERT#3"], None);
    }
}
