//! Trail integrity: stream summaries, sequence gaps, reboots and refused duplicates.
//!
//! Gaps are holes between observed sequence numbers of one (hsm, boot); where a stream
//! starts is reported in its summary, not as a gap, because the trail may have begun
//! mid-stream. Being derived from the set, a gap that is later filled simply vanishes.

use super::records::Rec;
use super::{Alert, AlertKind, Conflict, StreamSummary};

pub(crate) fn derive(recs: &[Rec<'_>], conflicts: &[Conflict]) -> (Vec<StreamSummary>, Vec<Alert>) {
    let mut streams = Vec::new();
    let mut alerts = Vec::new();
    // `recs` is in stream order, so each (hsm, boot) is one contiguous run.
    for stream in recs.chunk_by(|a, b| a.hsm == b.hsm && a.boot() == b.boot()) {
        let (Some(first), Some(last)) = (stream.first(), stream.last()) else {
            continue;
        };
        let span = (last.seq() - first.seq()).saturating_add(1);
        let records = stream.len() as u64;
        streams.push(StreamSummary {
            hsm: first.hsm.to_owned(),
            reboot_counter: first.boot(),
            first_seq: first.seq(),
            last_seq: last.seq(),
            records,
            missing: span.saturating_sub(records),
            first_time: first.time(),
            last_time: last.time(),
        });
        for pair in stream.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            if after.seq() - before.seq() > 1 {
                let (from, to) = (before.seq() + 1, after.seq() - 1);
                alerts.push(Alert {
                    kind: AlertKind::SequenceGap,
                    time: before.time(),
                    hsm: Some(before.hsm.to_owned()),
                    reboot_counter: Some(before.boot()),
                    from: Some(from),
                    to: Some(to),
                    seq: None,
                    user: None,
                    opcode: None,
                    detail: Some(format!("{} records missing", to - from + 1)),
                });
            }
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
    for conflict in conflicts {
        alerts.push(Alert {
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
        });
    }
    (streams, alerts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::prepare;
    use crate::domain::testkit::rec;
    use crate::model::{Opcode, Timestamp, TrailEntry};

    fn run(entries: &[TrailEntry], conflicts: &[Conflict]) -> (Vec<StreamSummary>, Vec<Alert>) {
        derive(&prepare(entries), conflicts)
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
