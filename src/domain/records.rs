//! The deduplicated, deterministically ordered view of a cluster's trail that every
//! derivation reads. Each view indexes records by their position here, so the order
//! (by stream: hsm, reboot counter, sequence number) is part of the contract between
//! the submodules.

use super::{Alert, AlertKind};
use crate::model::{HsmRecord, Opcode, Timestamp, TrailEntry};

/// The command type of time-information records (the vendor's current reference).
const TIME_INFORMATION: u64 = 0xeee2;

/// One audit record together with the HSM that logged it (the id is only in the stream).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rec<'a> {
    pub hsm: &'a str,
    pub record: &'a HsmRecord,
}

/// Cluster-wide "time order": time first, then HSM and position in its stream, so that
/// records logged in the same microsecond still have one order.
pub(crate) type TimeKey<'a> = (Timestamp, &'a str, u32, u64);

impl<'a> Rec<'a> {
    pub fn time(&self) -> Timestamp {
        self.record.time
    }

    pub fn seq(&self) -> u64 {
        self.record.sequence_no
    }

    pub fn boot(&self) -> u32 {
        self.record.reboot_counter
    }

    pub fn op(&self) -> &'a Opcode {
        &self.record.opcode
    }

    pub fn ok(&self) -> bool {
        self.record.succeeded()
    }

    /// An alert raised by this record: placed at it, by `user`.
    pub fn alert(&self, kind: AlertKind, user: Option<String>, detail: Option<String>) -> Alert {
        Alert {
            kind,
            time: self.time(),
            hsm: Some(self.hsm.to_owned()),
            reboot_counter: Some(self.boot()),
            from: None,
            to: None,
            seq: Some(self.seq()),
            user,
            opcode: Some(self.op().clone()),
            detail,
        }
    }

    pub fn user_name(&self) -> Option<&'a str> {
        self.record.user_name.as_deref()
    }

    pub fn user_type_name(&self) -> Option<&'a str> {
        self.record.user_type.as_ref().map(|t| t.name.as_ref())
    }

    /// A record of command type `0xeee2` (time information): the HSM logging its clock.
    /// It stays in the trail, but it is no user's activity, so no session opens, ends or
    /// absorbs it, whatever its session handle.
    pub fn is_time_information(&self) -> bool {
        self.record.command_type.code == Some(TIME_INFORMATION)
    }

    pub fn time_key(&self) -> TimeKey<'a> {
        (self.time(), self.hsm, self.boot(), self.seq())
    }

    /// Handles the record names, zero meaning "no key": private/secret first.
    pub fn key_handles(&self) -> Vec<u64> {
        let mut handles = Vec::with_capacity(2);
        for handle in [self.record.key_handle, self.record.public_key_handle]
            .into_iter()
            .flatten()
        {
            if handle != 0 && !handles.contains(&handle) {
                handles.push(handle);
            }
        }
        handles
    }
}

/// Sorts by stream position and keeps one record per identity. The store guarantees one
/// entry per identity already; should two differ anyway, the smallest content digest
/// wins, which depends on the set only and not on the order it arrived in.
pub(crate) fn prepare(entries: &[TrailEntry]) -> Vec<Rec<'_>> {
    let mut sorted: Vec<(&str, &HsmRecord)> = entries
        .iter()
        .filter_map(|entry| Some((&*entry.stream().hsm, entry.cloudhsm()?)))
        .collect();
    sorted.sort_by(|a, b| stream_key(a).cmp(&stream_key(b)));
    sorted
        .chunk_by(|a, b| stream_key(a) == stream_key(b))
        .filter_map(|same| match same {
            [only] => Some(*only),
            many => many
                .iter()
                .map(|entry| (entry.1.content_sha256(), *entry))
                .min_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, entry)| entry),
        })
        .map(|(hsm, record)| Rec { hsm, record })
        .collect()
}

fn stream_key<'a>((hsm, record): &(&'a str, &HsmRecord)) -> (&'a str, u32, u64) {
    (hsm, record.reboot_counter, record.sequence_no)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::rec;

    #[test]
    fn given_duplicates_in_any_order_when_prepared_then_one_per_identity_in_stream_order() {
        let a = rec("hsm-b", 1, 2, 10, Opcode::Logout).build();
        let b = rec("hsm-a", 1, 5, 20, Opcode::Logout).build();
        let c = rec("hsm-a", 1, 3, 30, Opcode::Logout).build();
        let entries = vec![a.clone(), b.clone(), c.clone(), a.clone(), b];
        let prepared = prepare(&entries);
        let keys: Vec<_> = prepared.iter().map(|r| (r.hsm, r.seq())).collect();
        assert_eq!(keys, vec![("hsm-a", 3), ("hsm-a", 5), ("hsm-b", 2)]);
    }

    #[test]
    fn given_conflicting_contents_when_prepared_then_the_smallest_digest_wins_in_any_order() {
        let one = rec("hsm-a", 1, 3, 30, Opcode::Logout).build();
        let two = rec("hsm-a", 1, 3, 31, Opcode::Login).build();
        let forward = vec![one.clone(), two.clone()];
        let backward = vec![two, one];
        let pick = |entries: &[TrailEntry]| prepare(entries)[0].record.clone();
        assert_eq!(pick(&forward), pick(&backward));
        assert_eq!(prepare(&forward).len(), 1);
    }

    #[test]
    fn given_zero_and_repeated_handles_when_listed_then_only_real_keys_remain() {
        let entry = rec("h", 1, 1, 1, Opcode::GenerateKeyPair)
            .key(7)
            .public(0)
            .build();
        assert_eq!(
            prepare(std::slice::from_ref(&entry))[0].key_handles(),
            vec![7]
        );
        let entry = rec("h", 1, 1, 1, Opcode::GenerateKeyPair)
            .key(7)
            .public(7)
            .build();
        assert_eq!(
            prepare(std::slice::from_ref(&entry))[0].key_handles(),
            vec![7]
        );
    }
}
