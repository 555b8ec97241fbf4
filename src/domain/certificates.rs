//! Certificate lifecycles from certificate-storage records (`kind: certificate`).
//!
//! Decisions: records have no sequence number, so their order is (time, log event id):
//! CloudWatch's event ids grow within a stream, which orders records of the same
//! millisecond. A successful `CreateObject` starts a generation of its object handle;
//! `SetAttributeValues` changes it; `DestroyObject` ends it. Failed operations are
//! recorded and change nothing; those that signal trouble with the storage itself
//! (`MaxObjectsReached`, `InternalFailure`) raise a `certificate_storage_error` alert,
//! with or without a handle (a failed create has none).

use std::collections::BTreeMap;

use super::{Alert, AlertKind, KeyEvent, KeyGeneration, KeyState};
use crate::model::{CertificateRecord, Opcode, Timestamp, TrailEntry};

/// Responses that mean the storage, not the request, is in trouble.
const TROUBLE: [&str; 2] = ["MaxObjectsReached", "InternalFailure"];

struct CertEntry<'a> {
    time: Timestamp,
    stream: &'a str,
    log_event_id: &'a str,
    record: &'a CertificateRecord,
}

fn certificate_entries(entries: &[TrailEntry]) -> Vec<CertEntry<'_>> {
    let mut found: Vec<CertEntry<'_>> = entries
        .iter()
        .filter_map(|entry| {
            Some(CertEntry {
                time: entry.record.time(),
                stream: &entry.stream().hsm,
                log_event_id: &entry.log_event_id,
                record: entry.certificate()?,
            })
        })
        .collect();
    found.sort_by(|a, b| {
        (a.time, a.log_event_id, a.stream).cmp(&(b.time, b.log_event_id, b.stream))
    });
    found.dedup_by(|a, b| a.stream == b.stream && a.log_event_id == b.log_event_id);
    found
}

fn event_of(entry: &CertEntry<'_>) -> KeyEvent {
    KeyEvent {
        time: entry.time,
        hsm: entry.stream.to_owned(),
        seq: None,
        reboot_counter: None,
        opcode: Opcode::from_name(&entry.record.op_code),
        success: entry.record.succeeded(),
        response_code: None,
        response: Some(entry.record.response.clone()),
        user: None,
        attributes: entry.record.attributes.clone(),
        log_event_id: Some(entry.log_event_id.to_owned()),
    }
}

fn generation(handle: u64, number: u32, created: Option<&CertEntry<'_>>) -> KeyGeneration {
    let mut generation = KeyGeneration::blank(handle, None, number, "certificate");
    generation.created_time = created.map(|entry| entry.time);
    generation.created_opcode = created.map(|entry| Opcode::from_name(&entry.record.op_code));
    generation
}

/// Certificate lifecycles and storage alerts of one cluster, each handle's lifecycle
/// resumed from its last generation in `carried` (events left out); and each touched
/// handle's last generation as of `settle_before`.
pub(crate) fn derive(
    entries: &[TrailEntry],
    carried: &BTreeMap<u64, KeyGeneration>,
    settle_before: Timestamp,
) -> (Vec<KeyGeneration>, Vec<Alert>, BTreeMap<u64, KeyGeneration>) {
    let records = certificate_entries(entries);
    let mut by_handle: BTreeMap<u64, Vec<KeyGeneration>> = BTreeMap::new();
    let mut settled: BTreeMap<u64, KeyGeneration> = BTreeMap::new();
    let mut alerts = Vec::new();
    let mut snapshot_taken = false;
    for entry in &records {
        if !snapshot_taken && entry.time >= settle_before {
            snapshot_taken = true;
            settled = last_generations(&by_handle);
        }
        let record = entry.record;
        if !record.succeeded() && TROUBLE.contains(&record.response.as_str()) {
            alerts.push(storage_alert(entry));
        }
        let Some(handle) = record.object_handle else {
            continue;
        };
        let generations = by_handle
            .entry(handle)
            .or_insert_with(|| carried.get(&handle).cloned().into_iter().collect());
        let creates = record.succeeded() && record.op_code == "CreateObject";
        let ended = generations
            .last()
            .is_some_and(|current| current.state != KeyState::Active);
        if creates
            && (generations.is_empty()
                || ended
                || generations.last().is_some_and(|g| g.generation == 0))
        {
            let number = generations
                .last()
                .map_or(1, |current| current.generation + 1);
            generations.push(generation(handle, number, Some(entry)));
        } else if generations.is_empty() {
            generations.push(generation(handle, 0, None));
        }
        let Some(current) = generations.last_mut() else {
            continue;
        };
        current.events.push(event_of(entry));
        if record.succeeded()
            && record.op_code == "DestroyObject"
            && current.state == KeyState::Active
        {
            current.state = KeyState::Destroyed;
        }
    }
    if !snapshot_taken {
        settled = last_generations(&by_handle);
    }
    (by_handle.into_values().flatten().collect(), alerts, settled)
}

/// Each handle's last generation, without its events: what a resumed lifecycle needs.
pub(crate) fn last_generations<K: Ord + Clone>(
    by_key: &BTreeMap<K, Vec<KeyGeneration>>,
) -> BTreeMap<K, KeyGeneration> {
    by_key
        .iter()
        .filter_map(|(key, generations)| {
            let last = generations.last()?;
            Some((
                key.clone(),
                KeyGeneration {
                    events: Vec::new(),
                    ..last.clone()
                },
            ))
        })
        .collect()
}

fn storage_alert(entry: &CertEntry<'_>) -> Alert {
    let record = entry.record;
    let handle = record
        .object_handle
        .map(|handle| format!(" (object {handle})"))
        .unwrap_or_default();
    Alert {
        kind: AlertKind::CertificateStorageError,
        time: entry.time,
        hsm: Some(entry.stream.to_owned()),
        reboot_counter: None,
        from: None,
        to: None,
        seq: None,
        user: None,
        opcode: Some(Opcode::from_name(&record.op_code)),
        detail: Some(format!(
            "{} failed: {}{handle}; log event {}",
            record.op_code, record.response, entry.log_event_id
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuditRecord, LogSource};

    fn cert(id: &str, millis: i64, handle: Option<u64>, op: &str, response: &str) -> TrailEntry {
        TrailEntry {
            source: LogSource::shared("/aws/cloudhsm/c", "cluster-c"),
            record: AuditRecord::Certificate(CertificateRecord {
                time: Timestamp::from_millis(millis),
                object_handle: handle,
                op_code: op.into(),
                response: response.into(),
                attributes: (op == "SetAttributeValues").then(|| vec!["Label".to_owned()]),
            }),
            log_event_id: id.into(),
            log_event_time: Timestamp::from_millis(millis),
            raw: String::new(),
        }
    }

    const HANDLE: u64 = 463180677312929947;

    #[test]
    fn given_create_set_destroy_when_derived_then_one_destroyed_generation_with_three_events() {
        let entries = vec![
            cert("3", 30, Some(HANDLE), "DestroyObject", "OK"),
            cert("1", 10, Some(HANDLE), "CreateObject", "OK"),
            cert("2", 20, Some(HANDLE), "SetAttributeValues", "OK"),
        ];
        let (keys, alerts, _) = derive(&entries, &BTreeMap::new(), Timestamp(i64::MAX));
        assert!(alerts.is_empty());
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].handle, HANDLE);
        assert_eq!(
            (keys[0].generation, keys[0].state, keys[0].kind.as_str()),
            (1, KeyState::Destroyed, "certificate")
        );
        let ops: Vec<&str> = keys[0].events.iter().map(|e| e.opcode.as_str()).collect();
        assert_eq!(ops, ["CreateObject", "SetAttributeValues", "DestroyObject"]);
        assert_eq!(keys[0].events[1].attributes, Some(vec!["Label".to_owned()]));
    }

    #[test]
    fn given_a_failed_destroy_when_derived_then_it_is_recorded_and_changes_nothing() {
        let entries = vec![
            cert("1", 10, Some(HANDLE), "CreateObject", "OK"),
            cert("2", 20, Some(HANDLE), "DestroyObject", "ObjectNotFound"),
        ];
        let (keys, alerts, _) = derive(&entries, &BTreeMap::new(), Timestamp(i64::MAX));
        assert_eq!(keys[0].state, KeyState::Active);
        assert!(!keys[0].events[1].success);
        assert_eq!(
            keys[0].events[1].response.as_deref(),
            Some("ObjectNotFound")
        );
        assert!(
            alerts.is_empty(),
            "ObjectNotFound is the request's problem, not the storage's"
        );
    }

    #[test]
    fn given_storage_trouble_when_derived_then_an_alert_even_without_a_handle() {
        let entries = vec![
            cert("1", 10, None, "CreateObject", "MaxObjectsReached"),
            cert("2", 10, Some(7), "SetAttributeValues", "InternalFailure"),
        ];
        let (keys, alerts, _) = derive(&entries, &BTreeMap::new(), Timestamp(i64::MAX));
        assert_eq!(alerts.len(), 2);
        assert!(
            alerts
                .iter()
                .all(|a| a.kind == AlertKind::CertificateStorageError)
        );
        assert!(
            alerts[0]
                .detail
                .as_deref()
                .unwrap_or("")
                .contains("MaxObjectsReached")
        );
        assert_eq!(
            keys.len(),
            1,
            "only the record with a handle belongs to a lifecycle"
        );
        assert_eq!(keys[0].generation, 0);
    }

    #[test]
    fn given_a_handle_created_again_after_destruction_when_derived_then_generation_two() {
        let entries = vec![
            cert("1", 10, Some(u64::MAX), "CreateObject", "OK"),
            cert("2", 20, Some(u64::MAX), "DestroyObject", "OK"),
            cert("3", 30, Some(u64::MAX), "CreateObject", "OK"),
            cert("3", 30, Some(u64::MAX), "CreateObject", "OK"),
        ];
        let (keys, _, _) = derive(&entries, &BTreeMap::new(), Timestamp(i64::MAX));
        let generations: Vec<(u32, KeyState)> =
            keys.iter().map(|k| (k.generation, k.state)).collect();
        assert_eq!(
            generations,
            [(1, KeyState::Destroyed), (2, KeyState::Active)]
        );
        assert_eq!(keys[1].events.len(), 1, "a re-delivered record counts once");
    }
}
