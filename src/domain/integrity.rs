//! Trail integrity: stream summaries, sequence gaps, reboots and refused duplicates.
//!
//! Gaps are holes between observed sequence numbers of one (hsm, boot); where a stream
//! starts is reported in its summary, not as a gap, because the trail may have begun
//! mid-stream. Being derived from the set, a gap that is later filled simply vanishes.
//!
//! Incremental use ([`Carry`]): per stream, its summary and open gaps as of the settle
//! point. A record of a stream arrives either after what the carry holds (it extends
//! the stream) or, late, inside it ([`Carry::fill`]: it closes or splits a gap, or
//! moves the stream's start back); either way the result is the set's.

use serde::{Deserialize, Serialize};

use super::records::Rec;
use super::{Alert, AlertKind, Conflict, StreamSummary};
use crate::model::Timestamp;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carry {
    /// By (hsm, boot).
    streams: Vec<StreamCarry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StreamCarry {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Gap {
    from: u64,
    to: u64,
    time: Timestamp,
}

impl StreamCarry {
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
}

impl Carry {
    fn position(&self, hsm: &str, boot: u32) -> Result<usize, usize> {
        self.streams.binary_search_by(|stream| {
            (stream.hsm.as_str(), stream.reboot_counter).cmp(&(hsm, boot))
        })
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

    /// Whether the record numbered `seq` of the HSM's boot is held.
    pub fn holds(&self, hsm: &str, boot: u32, seq: u64) -> bool {
        self.position(hsm, boot).is_ok_and(|index| {
            let stream = &self.streams[index];
            (stream.first_seq..=stream.last_seq).contains(&seq)
                && !stream
                    .gaps
                    .iter()
                    .any(|gap| gap.from <= seq && seq <= gap.to)
        })
    }

    /// The HSMs whose streams are held, each once.
    pub fn hsms(&self) -> impl Iterator<Item = &str> {
        let mut last: Option<&str> = None;
        self.streams.iter().filter_map(move |stream| {
            let hsm = stream.hsm.as_str();
            (last.replace(hsm) != Some(hsm)).then_some(hsm)
        })
    }

    /// Takes in one record wherever it falls. `false` when it was held already.
    pub fn admit(&mut self, hsm: &str, boot: u32, seq: u64, time: Timestamp) -> bool {
        match self.position(hsm, boot) {
            Ok(index) => {
                let stream = &mut self.streams[index];
                if seq > stream.last_seq {
                    stream.extend(seq, time);
                    true
                } else {
                    stream.fill(seq, time)
                }
            }
            Err(index) => {
                self.streams.insert(
                    index,
                    StreamCarry {
                        hsm: hsm.to_owned(),
                        reboot_counter: boot,
                        first_seq: seq,
                        last_seq: seq,
                        records: 1,
                        first_time: time,
                        last_time: time,
                        gaps: Vec::new(),
                    },
                );
                true
            }
        }
    }

    fn take_in(&mut self, rec: &Rec<'_>) {
        self.admit(rec.hsm, rec.boot(), rec.seq(), rec.time());
    }
}

/// Summaries and integrity alerts of every stream the carry and `recs` hold, and the
/// carry of the records timed before `settle_before`.
pub(crate) fn derive(
    recs: &[Rec<'_>],
    conflicts: &[Conflict],
    carry: &Carry,
    settle_before: Timestamp,
) -> (Vec<StreamSummary>, Vec<Alert>, Carry) {
    let mut settled = carry.clone();
    let mut whole = carry.clone();
    for rec in recs {
        if rec.time() < settle_before {
            settled.take_in(rec);
        }
        whole.take_in(rec);
    }
    let streams: Vec<StreamSummary> = whole.streams.iter().map(StreamCarry::summary).collect();
    let mut alerts = Vec::new();
    for stream in &whole.streams {
        for gap in &stream.gaps {
            alerts.push(Alert {
                kind: AlertKind::SequenceGap,
                time: gap.time,
                hsm: Some(stream.hsm.clone()),
                reboot_counter: Some(stream.reboot_counter),
                from: Some(gap.from),
                to: Some(gap.to),
                seq: None,
                user: None,
                opcode: None,
                detail: Some(format!("{} records missing", gap.to - gap.from + 1)),
            });
        }
    }
    for boots in streams.chunk_by(|a, b| a.hsm == b.hsm) {
        for pair in boots.windows(2) {
            let (old, new) = (&pair[0], &pair[1]);
            alerts.push(Alert {
                kind: AlertKind::Reboot,
                time: new.first_time,
                hsm: Some(new.hsm.clone()),
                reboot_counter: Some(new.reboot_counter),
                from: None,
                to: None,
                seq: Some(new.first_seq),
                user: None,
                opcode: None,
                detail: Some(format!(
                    "reboot counter {:#x} after {:#x}",
                    new.reboot_counter, old.reboot_counter
                )),
            });
        }
    }
    alerts.extend(conflicts.iter().map(conflict_alert));
    (streams, alerts, settled)
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
    use super::*;
    use crate::domain::records::prepare;
    use crate::model::{Opcode, Timestamp, TrailEntry};
    use crate::testkit::rec;

    fn run(entries: &[TrailEntry], conflicts: &[Conflict]) -> (Vec<StreamSummary>, Vec<Alert>) {
        let (streams, alerts, _) = derive(
            &prepare(entries),
            conflicts,
            &Carry::default(),
            Timestamp(i64::MAX),
        );
        (streams, alerts)
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
}
