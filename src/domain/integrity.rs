//! Trail integrity: stream summaries, sequence gaps, reboots and refused duplicates.
//!
//! Gaps are holes between observed sequence numbers of one (hsm, boot); where a stream
//! starts is reported in its summary, not as a gap, because the trail may have begun
//! mid-stream. Being derived from the set, a gap that is later filled simply vanishes.
//!
//! Incremental use ([`Carry`]): what a later record can change is its own stream. The
//! carry holds each HSM's latest boot (the stream its records extend), where the HSM's
//! earliest known boot starts (the one boot without a reboot before it) and how many gaps
//! are open in all streams. A stream that a later boot ended leaves the carry as a
//! [`StreamCarry`] of its own (an object carry, read when a record of that boot arrives),
//! so the carry does not grow with the HSM's reboots. A fold gives back only what its
//! records changed: the summaries of the streams they touched, the gap and reboot alerts
//! that appeared, and those that no longer hold ([`Integrity::retracted`]) — a late record
//! that fills a gap written steps ago removes that gap's alert explicitly, so nothing
//! needs rewriting every step.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::records::Rec;
use super::{Alert, AlertKind, Conflict, StreamSummary};
use crate::model::Timestamp;

/// A stream's identity: its HSM and reboot counter.
pub type StreamKey = (String, u32);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carry {
    /// By (hsm, boot): each HSM's latest boot; while a step runs, also the ended streams
    /// its records name.
    streams: Vec<StreamCarry>,
    /// Per HSM, where its earliest known boot starts.
    #[serde(default)]
    firsts: Vec<BootStart>,
    /// Gaps open in every stream of the cluster, ended ones included.
    #[serde(default)]
    open_gaps: u64,
    /// Streams (and earliest boots) changed since the last fold, as they stood before:
    /// records counted in integrity without being folded (held for their clock, older
    /// than the horizon) change them, and the next fold reports it.
    #[serde(skip)]
    before: Before,
}

/// Where an HSM's earliest known boot starts: a stream of a later boot follows a reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BootStart {
    hsm: String,
    reboot_counter: u32,
    first_seq: u64,
    first_time: Timestamp,
}

/// What one (hsm, boot) stream holds: its extent, its count and its open gaps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCarry {
    hsm: String,
    reboot_counter: u32,
    first_seq: u64,
    last_seq: u64,
    records: u64,
    first_time: Timestamp,
    last_time: Timestamp,
    /// Holes between observed numbers, with the time of the record before each.
    gaps: Vec<Gap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Gap {
    from: u64,
    to: u64,
    time: Timestamp,
}

/// The streams and earliest boots a fold changed, as they were before it (`None`: new).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Before {
    streams: BTreeMap<StreamKey, Option<StreamCarry>>,
    firsts: BTreeMap<String, Option<BootStart>>,
}

impl StreamCarry {
    fn new(hsm: &str, boot: u32, seq: u64, time: Timestamp) -> Self {
        StreamCarry {
            hsm: hsm.to_owned(),
            reboot_counter: boot,
            first_seq: seq,
            last_seq: seq,
            records: 1,
            first_time: time,
            last_time: time,
            gaps: Vec::new(),
        }
    }

    /// The object name it is kept under once a later boot ended it.
    pub fn object_name(hsm: &str, boot: u32) -> String {
        format!("STREAM#{hsm}#{boot:08x}")
    }

    pub fn key(&self) -> StreamKey {
        (self.hsm.clone(), self.reboot_counter)
    }

    /// Takes in a record numbered after every record held.
    fn extend(&mut self, seq: u64, time: Timestamp) {
        if seq > self.last_seq + 1 {
            self.gaps.push(Gap {
                from: self.last_seq + 1,
                to: seq - 1,
                time: self.last_time,
            });
        }
        self.last_seq = seq;
        self.last_time = time;
        self.records += 1;
    }

    /// Takes in a record numbered at or before the last held. `false` when it is held
    /// already.
    fn fill(&mut self, seq: u64, time: Timestamp) -> bool {
        if seq < self.first_seq {
            if seq + 1 < self.first_seq {
                self.gaps.insert(
                    0,
                    Gap {
                        from: seq + 1,
                        to: self.first_seq - 1,
                        time,
                    },
                );
            }
            self.first_seq = seq;
            self.first_time = time;
            self.records += 1;
            return true;
        }
        let Some(position) = self
            .gaps
            .iter()
            .position(|gap| gap.from <= seq && seq <= gap.to)
        else {
            return false;
        };
        let gap = self.gaps.remove(position);
        let mut parts = Vec::new();
        if gap.from < seq {
            parts.push(Gap { to: seq - 1, ..gap });
        }
        if seq < gap.to {
            parts.push(Gap {
                from: seq + 1,
                to: gap.to,
                time,
            });
        }
        for (offset, part) in parts.into_iter().enumerate() {
            self.gaps.insert(position + offset, part);
        }
        self.records += 1;
        true
    }

    fn holds(&self, seq: u64) -> bool {
        (self.first_seq..=self.last_seq).contains(&seq)
            && !self.gaps.iter().any(|gap| gap.from <= seq && seq <= gap.to)
    }

    fn summary(&self) -> StreamSummary {
        let span = (self.last_seq - self.first_seq).saturating_add(1);
        StreamSummary {
            hsm: self.hsm.clone(),
            reboot_counter: self.reboot_counter,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            records: self.records,
            missing: span.saturating_sub(self.records),
            first_time: self.first_time,
            last_time: self.last_time,
        }
    }

    fn start(&self) -> BootStart {
        BootStart {
            hsm: self.hsm.clone(),
            reboot_counter: self.reboot_counter,
            first_seq: self.first_seq,
            first_time: self.first_time,
        }
    }

    fn gap_alert(&self, gap: &Gap) -> Alert {
        Alert {
            kind: AlertKind::SequenceGap,
            time: gap.time,
            hsm: Some(self.hsm.clone()),
            reboot_counter: Some(self.reboot_counter),
            from: Some(gap.from),
            to: Some(gap.to),
            seq: None,
            user: None,
            opcode: None,
            detail: Some(format!("{} records missing", gap.to - gap.from + 1)),
        }
    }
}

impl BootStart {
    /// The reboot alert of the stream starting here, when an earlier boot of its HSM is
    /// known (`earliest`).
    fn reboot_alert(&self, earliest: Option<&BootStart>) -> Option<Alert> {
        earliest
            .is_some_and(|earliest| earliest.reboot_counter < self.reboot_counter)
            .then(|| Alert {
                kind: AlertKind::Reboot,
                time: self.first_time,
                hsm: Some(self.hsm.clone()),
                reboot_counter: Some(self.reboot_counter),
                from: None,
                to: None,
                seq: Some(self.first_seq),
                user: None,
                opcode: None,
                detail: Some(format!(
                    "reboot counter {:#x}: the HSM restarted after an earlier boot in the trail",
                    self.reboot_counter
                )),
            })
    }
}

impl Carry {
    fn position(&self, hsm: &str, boot: u32) -> Result<usize, usize> {
        self.streams.binary_search_by(|stream| {
            (stream.hsm.as_str(), stream.reboot_counter).cmp(&(hsm, boot))
        })
    }

    fn first(&self, hsm: &str) -> Option<&BootStart> {
        self.firsts.iter().find(|first| first.hsm == hsm)
    }

    /// The last settled position of an HSM's stream: its latest boot and the last
    /// sequence number held of it.
    pub fn last_position(&self, hsm: &str) -> Option<(u32, u64)> {
        self.streams
            .iter()
            .filter(|stream| stream.hsm == hsm)
            .map(|stream| (stream.reboot_counter, stream.last_seq))
            .max()
    }

    /// Whether a stream of that boot may have ended: only a boot before its HSM's latest
    /// has (a later boot, or an HSM not seen, has no stream to read back).
    pub fn may_have_ended(&self, hsm: &str, boot: u32) -> bool {
        self.last_position(hsm)
            .is_some_and(|(latest, _)| boot < latest)
    }

    /// The streams held that are not their HSM's latest boot: ended ones taken in.
    pub fn ended_keys(&self) -> impl Iterator<Item = StreamKey> + '_ {
        self.streams
            .windows(2)
            .filter(|pair| pair[0].hsm == pair[1].hsm)
            .map(|pair| pair[0].key())
    }

    /// Of the streams named, the ended ones not held, whose object carries are read back.
    pub fn ended_not_held<'a>(
        &self,
        streams: impl IntoIterator<Item = &'a StreamKey>,
    ) -> BTreeSet<StreamKey> {
        streams
            .into_iter()
            .filter(|(hsm, boot)| {
                self.position(hsm, *boot).is_err() && self.may_have_ended(hsm, *boot)
            })
            .cloned()
            .collect()
    }

    /// Whether the record numbered `seq` of the HSM's boot is held.
    pub fn holds(&self, hsm: &str, boot: u32, seq: u64) -> bool {
        self.position(hsm, boot)
            .is_ok_and(|index| self.streams[index].holds(seq))
    }

    /// The HSMs whose streams are held, each once.
    pub fn hsms(&self) -> impl Iterator<Item = &str> {
        let mut last: Option<&str> = None;
        self.streams.iter().filter_map(move |stream| {
            let hsm = stream.hsm.as_str();
            (last.replace(hsm) != Some(hsm)).then_some(hsm)
        })
    }

    /// Gaps open in every stream of the cluster.
    pub fn open_gaps(&self) -> u64 {
        self.open_gaps
    }

    /// Takes in ended streams (their object carries) for a step whose records name them;
    /// a stream the carry holds already stays as it is.
    pub fn take_ended<'a>(&mut self, ended: impl IntoIterator<Item = &'a StreamCarry>) {
        for stream in ended {
            if let Err(index) = self.position(&stream.hsm, stream.reboot_counter) {
                self.streams.insert(index, stream.clone());
            }
        }
    }

    /// Takes in one record wherever it falls. `false` when it was held already.
    pub fn admit(&mut self, hsm: &str, boot: u32, seq: u64, time: Timestamp) -> bool {
        let index = self.position(hsm, boot);
        let seen = self
            .before
            .streams
            .keys()
            .any(|(known, known_boot)| known == hsm && *known_boot == boot);
        let before = (!seen).then(|| index.ok().map(|index| self.streams[index].clone()));
        let admitted = match index {
            Ok(index) => {
                let stream = &mut self.streams[index];
                let gaps = stream.gaps.len();
                let admitted = if seq > stream.last_seq {
                    stream.extend(seq, time);
                    true
                } else {
                    stream.fill(seq, time)
                };
                self.open_gaps =
                    (self.open_gaps + stream.gaps.len() as u64).saturating_sub(gaps as u64);
                admitted
            }
            Err(index) => {
                self.streams
                    .insert(index, StreamCarry::new(hsm, boot, seq, time));
                true
            }
        };
        if !admitted {
            return false;
        }
        if let Some(before) = before {
            self.before.streams.insert((hsm.to_owned(), boot), before);
        }
        self.move_earliest(hsm, boot);
        true
    }

    /// Keeps where the HSM's earliest boot starts, after a record of `boot` was taken in.
    fn move_earliest(&mut self, hsm: &str, boot: u32) {
        let Ok(index) = self.position(hsm, boot) else {
            return;
        };
        let start = self.streams[index].start();
        let slot = self
            .firsts
            .binary_search_by(|first| first.hsm.as_str().cmp(hsm));
        let old = match slot {
            Ok(at) if self.firsts[at].reboot_counter < boot || self.firsts[at] == start => return,
            Ok(at) => Some(std::mem::replace(&mut self.firsts[at], start)),
            Err(at) => {
                self.firsts.insert(at, start);
                None
            }
        };
        self.before.firsts.entry(hsm.to_owned()).or_insert(old);
    }

    fn take_in(&mut self, rec: &Rec<'_>) {
        self.admit(rec.hsm, rec.boot(), rec.seq(), rec.time());
    }

    /// What changed since `before` was cleared: the summaries of the streams changed,
    /// the gap and reboot alerts that appeared, and those that no longer hold.
    fn changes(&self) -> (Vec<StreamSummary>, Vec<Alert>, Vec<Alert>) {
        let (mut streams, mut appeared, mut retracted) = (Vec::new(), Vec::new(), Vec::new());
        let earliest_before = |hsm: &str| match self.before.firsts.get(hsm) {
            Some(old) => old.as_ref(),
            None => self.first(hsm),
        };
        for ((hsm, boot), old) in &self.before.streams {
            let Ok(index) = self.position(hsm, *boot) else {
                continue;
            };
            let now = &self.streams[index];
            streams.push(now.summary());
            let old_gaps: BTreeSet<&Gap> = old.iter().flat_map(|old| &old.gaps).collect();
            let new_gaps: BTreeSet<&Gap> = now.gaps.iter().collect();
            appeared.extend(new_gaps.difference(&old_gaps).map(|gap| now.gap_alert(gap)));
            if let Some(old) = old {
                retracted.extend(old_gaps.difference(&new_gaps).map(|gap| old.gap_alert(gap)));
            }
            let old_reboot = old
                .as_ref()
                .and_then(|old| old.start().reboot_alert(earliest_before(hsm)));
            let new_reboot = now.start().reboot_alert(self.first(hsm));
            if old_reboot != new_reboot {
                appeared.extend(new_reboot);
                retracted.extend(old_reboot);
            }
        }
        // An HSM's earliest boot that an earlier one displaced now follows a reboot.
        for (hsm, old) in &self.before.firsts {
            if let Some(old) = old
                && !self
                    .before
                    .streams
                    .contains_key(&(hsm.clone(), old.reboot_counter))
            {
                appeared.extend(old.reboot_alert(self.first(hsm)));
            }
        }
        (streams, appeared, retracted)
    }

    /// Moves every stream but each HSM's latest boot out of the carry.
    fn end_streams(&mut self) -> Vec<StreamCarry> {
        let mut ended = Vec::new();
        let mut kept: Vec<StreamCarry> = Vec::with_capacity(self.streams.len());
        for stream in std::mem::take(&mut self.streams) {
            if let Some(previous) = kept.last()
                && previous.hsm == stream.hsm
                && let Some(previous) = kept.pop()
            {
                ended.push(previous);
            }
            kept.push(stream);
        }
        self.streams = kept;
        ended
    }
}

/// What a fold of integrity gives back.
#[derive(Debug, Clone, Default)]
pub(crate) struct Integrity {
    /// Summaries of the streams its records changed.
    pub streams: Vec<StreamSummary>,
    /// Gap and reboot alerts that appeared, and the refused duplicates' alerts.
    pub alerts: Vec<Alert>,
    /// Gap and reboot alerts written before that no longer hold.
    pub retracted: Vec<Alert>,
    pub open_gaps: u64,
    /// The carry of the records timed before the settle point: each HSM's latest boot.
    pub carry: Carry,
    /// The streams a later boot ended, of those the step held, as of the settle point.
    pub ended: Vec<StreamCarry>,
}

/// What `recs` change in the integrity of the streams, folded onto `carry` and the ended
/// streams they name; the carry of the records timed before `settle_before`.
pub(crate) fn derive<'a>(
    recs: &[Rec<'_>],
    conflicts: &[Conflict],
    carry: &Carry,
    ended: impl IntoIterator<Item = &'a StreamCarry>,
    settle_before: Timestamp,
) -> Integrity {
    let mut whole = carry.clone();
    whole.take_ended(ended);
    let mut settled = whole.clone();
    settled.before = Before::default();
    for rec in recs {
        if rec.time() < settle_before {
            settled.take_in(rec);
        }
        whole.take_in(rec);
    }
    let (streams, mut alerts, retracted) = whole.changes();
    alerts.extend(conflicts.iter().map(conflict_alert));
    settled.before = Before::default();
    let ended = settled.end_streams();
    Integrity {
        streams,
        alerts,
        retracted,
        open_gaps: whole.open_gaps,
        carry: settled,
        ended,
    }
}

pub(crate) fn conflict_alert(conflict: &Conflict) -> Alert {
    Alert {
        kind: AlertKind::ConflictingDuplicate,
        time: conflict.time,
        hsm: Some(conflict.hsm.clone()),
        reboot_counter: conflict.reboot_counter,
        from: None,
        to: None,
        seq: conflict.sequence_no,
        user: None,
        opcode: None,
        detail: Some(format!(
            "stored sha256 {}, rejected sha256 {} (log event {})",
            conflict.stored_sha256, conflict.rejected_sha256, conflict.rejected_log_event_id
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::records::prepare;
    use crate::model::{Opcode, Timestamp, TrailEntry};
    use crate::testkit::rec;

    fn run(entries: &[TrailEntry], conflicts: &[Conflict]) -> (Vec<StreamSummary>, Vec<Alert>) {
        let folded = derive(
            &prepare(entries),
            conflicts,
            &Carry::default(),
            [],
            Timestamp(i64::MAX),
        );
        (folded.streams, folded.alerts)
    }

    fn at(hsm: &str, boot: u32, seq: u64) -> TrailEntry {
        rec(
            hsm,
            boot,
            seq,
            (boot as i64) * 1_000_000 + seq as i64 * 10,
            Opcode::FipsRand,
        )
        .build()
    }

    #[test]
    fn given_a_hole_when_derived_then_a_gap_alert_naming_the_missing_range() {
        let (streams, alerts) = run(&[at("a", 1, 3), at("a", 1, 4), at("a", 1, 8)], &[]);
        assert_eq!(streams[0].first_seq, 3);
        assert_eq!(streams[0].missing, 3);
        assert_eq!(alerts.len(), 1, "starting at 3 is not a gap");
        assert_eq!((alerts[0].from, alerts[0].to), (Some(5), Some(7)));
        assert_eq!(alerts[0].time, Timestamp(1_000_040));
    }

    #[test]
    fn holds_is_what_admit_took_in_and_no_more() {
        let mut carry = Carry::default();
        for seq in [3, 4, 8] {
            carry.admit("a", 1, seq, Timestamp(seq as i64));
        }
        carry.admit("b", 2, 0, Timestamp(0));
        let held: Vec<u64> = (0..10).filter(|seq| carry.holds("a", 1, *seq)).collect();
        assert_eq!(held, [3, 4, 8]);
        assert!(!carry.holds("a", 2, 3), "another boot");
        assert_eq!(carry.hsms().collect::<Vec<_>>(), ["a", "b"]);
        assert!(!carry.admit("a", 1, 4, Timestamp(4)));
        assert!(carry.admit("a", 1, 6, Timestamp(6)));
        assert!(carry.holds("a", 1, 6));
    }

    #[test]
    fn given_the_hole_filled_when_derived_again_then_no_gap_remains() {
        let entries: Vec<TrailEntry> = (3..=8).map(|seq| at("a", 1, seq)).collect();
        let (streams, alerts) = run(&entries, &[]);
        assert!(alerts.is_empty());
        assert_eq!((streams[0].records, streams[0].missing), (6, 0));
    }

    #[test]
    fn given_a_new_reboot_counter_when_derived_then_a_reboot_alert_at_its_first_record() {
        let (streams, alerts) = run(&[at("a", 1, 0), at("a", 2, 0), at("a", 2, 1)], &[]);
        assert_eq!(streams.len(), 2);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, AlertKind::Reboot);
        assert_eq!(alerts[0].reboot_counter, Some(2));
        assert_eq!(alerts[0].time, Timestamp(2_000_000));
    }

    #[test]
    fn given_a_refused_duplicate_when_derived_then_a_conflict_alert_with_both_hashes() {
        let conflict = Conflict {
            hsm: "a".into(),
            reboot_counter: Some(1),
            sequence_no: Some(3),
            time: Timestamp(5),
            stored_sha256: "aa".into(),
            rejected_sha256: "bb".into(),
            rejected_log_event_id: "ev-1".into(),
        };
        let (_, alerts) = run(&[], &[conflict]);
        assert_eq!(alerts[0].kind, AlertKind::ConflictingDuplicate);
        let detail = alerts[0].detail.clone().unwrap_or_default();
        assert!(detail.contains("aa") && detail.contains("bb") && detail.contains("ev-1"));
    }

    #[test]
    fn given_many_reboots_when_folded_then_the_carry_keeps_one_stream_an_hsm() {
        let entries: Vec<TrailEntry> = (1..=1_000)
            .flat_map(|boot| [at("a", boot, 0), at("a", boot, 1)])
            .chain([at("b", 7, 0)])
            .collect();
        let folded = derive(
            &prepare(&entries),
            &[],
            &Carry::default(),
            [],
            Timestamp(i64::MAX),
        );
        assert_eq!(folded.carry.streams.len(), 2, "one stream an HSM");
        assert_eq!(folded.carry.last_position("a"), Some((1_000, 1)));
        assert_eq!(folded.ended.len(), 999);
        assert_eq!(folded.streams.len(), 1_001, "every stream is new");
        let reboots = folded.alerts.iter().filter(|a| a.kind == AlertKind::Reboot);
        assert_eq!(reboots.count(), 999);
    }

    /// Folds the entries one step at a time, as the pipeline does: the carry in the
    /// checkpoint, ended streams as objects read back when a step names them, and the
    /// alerts stored as each step adds and retracts them.
    fn fold_in_steps(
        steps: &[Vec<TrailEntry>],
    ) -> (BTreeMap<StreamKey, StreamSummary>, BTreeSet<String>, u64) {
        let mut carry = Carry::default();
        let mut objects: BTreeMap<StreamKey, StreamCarry> = BTreeMap::new();
        let mut summaries = BTreeMap::new();
        let mut alerts = BTreeSet::new();
        let mut open_gaps = 0;
        for step in steps {
            let named: Vec<&StreamCarry> = step
                .iter()
                .filter_map(|entry| {
                    let (hsm, boot, _) = entry.identity().into_parts();
                    let boot = boot?;
                    (carry.may_have_ended(&hsm, boot))
                        .then(|| objects.get(&(hsm, boot)))
                        .flatten()
                })
                .collect();
            let folded = derive(&prepare(step), &[], &carry, named, Timestamp(i64::MAX));
            for alert in &folded.retracted {
                assert!(
                    alerts.remove(&format!("{alert:?}")),
                    "retracts only what was stored: {alert:?}"
                );
            }
            alerts.extend(folded.alerts.iter().map(|alert| format!("{alert:?}")));
            for summary in folded.streams {
                summaries.insert((summary.hsm.clone(), summary.reboot_counter), summary);
            }
            for stream in folded.ended {
                objects.insert(stream.key(), stream);
            }
            carry = folded.carry;
            open_gaps = folded.open_gaps;
        }
        (summaries, alerts, open_gaps)
    }

    proptest! {
        #[test]
        fn folding_in_any_order_and_any_steps_ends_where_the_whole_set_does(
            picks in proptest::collection::vec((0..2usize, 1..4u32, 0..12u64), 1..60),
            step_sizes in proptest::collection::vec(1..6usize, 1..40),
        ) {
            let hsms = ["a", "b"];
            let entries: Vec<TrailEntry> = picks
                .iter()
                .map(|(hsm, boot, seq)| at(hsms[*hsm], *boot, *seq))
                .collect();
            let mut steps = Vec::new();
            let mut rest = entries.as_slice();
            for size in step_sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (step, after) = rest.split_at((*size).min(rest.len()));
                steps.push(step.to_vec());
                rest = after;
            }
            let whole = derive(&prepare(&entries), &[], &Carry::default(), [], Timestamp(i64::MAX));
            let (summaries, alerts, open_gaps) = fold_in_steps(&steps);
            let expected: BTreeMap<StreamKey, StreamSummary> = whole
                .streams
                .iter()
                .map(|summary| ((summary.hsm.clone(), summary.reboot_counter), summary.clone()))
                .collect();
            prop_assert_eq!(summaries, expected);
            let expected: BTreeSet<String> =
                whole.alerts.iter().map(|alert| format!("{alert:?}")).collect();
            prop_assert_eq!(alerts, expected);
            prop_assert_eq!(open_gaps, whole.open_gaps);
        }
    }
}
