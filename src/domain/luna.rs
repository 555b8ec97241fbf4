//! Thales Luna Cloud HSM (DPoD) records onto the common model: sessions, key lifecycles,
//! failed logins and sensitive-operation alerts.
//!
//! Mapping decisions:
//! - **HSM ↔ partition.** A Luna partition holds the users, logins and objects, as a
//!   CloudHSM HSM does, and every record names it (`meta.partid`, else the id in
//!   `source`); the `hsm` of sessions, key events, failed logins and alerts is the
//!   partition id. The HSM's serial (`meta.hsmid`) stays in the trail item. Records
//!   naming no partition fall back to their log stream.
//! - **Cluster ↔ DPoD service.** Decided where the record arrives: the service id
//!   (`resourceid`) for export files, the log group for CloudWatch Logs, as for CloudHSM.
//! - **Order.** Luna logs at one-second resolution and may list a second's records out
//!   of order, so within one second records are ordered by what they do — creates, then
//!   derived creates (copy, unwrap, derive), then `_INIT`s, other commands and `_END`s of
//!   multi-part operations, then destroys — and
//!   then by their content digest, which no delivery path or position can change; the
//!   record identity breaks the last tie (only between identical records).
//! - **Sessions.** Luna logs no logout. An actor's session on a partition is a maximal
//!   run of its records in which no two consecutive records are more than
//!   `luna_idle_window_micros` apart; it starts at its first record (its successful
//!   `LUNA_LOGIN` when that is logged). That depends on the set of times only, never on
//!   order. A failed `LUNA_LOGIN` neither opens nor extends a session (it is a failed
//!   login). A session is closed (`ended_by: INACTIVITY`, `end_time` = its last record)
//!   once the partition's newest record is more than the window after its last record;
//!   until then it is open (`ended_by` and `end_time` null). `user_type` is the role of
//!   the session's first successful login, else of its first record.
//! - **Key lifecycles** per object id (`ouid`) across the cluster: `hsms` are the
//!   partitions holding the object (created there, or replicated or cloned there). Every
//!   record naming an ouid is an event of it. Every ouid of a record is treated alike:
//!   the record does not say which of several is the new one, so a create names a new
//!   generation for an ouid with no live generation and is a use of one that has (a
//!   derive's base key, an unwrap's unwrapping key). `LUNA_WRAP_KEY` exports every ouid it
//!   names, `LUNA_DERIVE_KEY_AND_WRAP` the ones it creates. `LUNA_GENERATE_KEY_PAIR`
//!   makes `kind: key_pair` (which ouid is private is not logged). `handle` is 0: an
//!   ouid is not a handle (Luna's handles are per session and not logged), and parsing
//!   one would make numbers that look like CloudHSM handles and are not. Failed records
//!   are events and change nothing.
//! - **Sensitive operations:** `LUNA_PARTITION_ZEROIZE` and `LUNA_PARTITION_INIT`, and,
//!   as for CloudHSM, key export (`LUNA_WRAP_KEY`, `LUNA_DERIVE_KEY_AND_WRAP`), cloning
//!   (`LUNA_CLONE_*`), `LUNA_INIT_PIN`, and `LUNA_SET_PIN` by an officer (`PO`, `CO`).
//!   Failed attempts alert too, with the status in `detail`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::certificates::last_generations;
use super::{
    Alert, AlertKind, ClusterSession, DeriveConfig, FailedLogin, KeyEvent, KeyGeneration, KeyState,
    SessionEvent,
};
use crate::model::{LUNA_LOGIN, LunaRecord, Opcode, Timestamp, TrailEntry};

/// `ended_by` of a session closed by the inactivity window.
pub const INACTIVITY: &str = "INACTIVITY";

/// Everything Luna records contribute to a cluster's views.
#[derive(Debug, Default)]
pub(crate) struct LunaView {
    pub sessions: Vec<ClusterSession>,
    pub keys: Vec<KeyGeneration>,
    pub failed_logins: Vec<FailedLogin>,
    pub alerts: Vec<Alert>,
    /// The sessions' state as of the settle point.
    pub carry: SessionsCarry,
    /// Each touched object's last generation as of the settle point.
    pub settled_objects: BTreeMap<String, KeyGeneration>,
}

/// What later records can still change of Luna sessions: the runs not yet known to be
/// closed, and each partition's newest record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsCarry {
    runs: Vec<RunCarry>,
    newest: BTreeMap<String, Timestamp>,
}

impl SessionsCarry {
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RunCarry {
    partition: String,
    actor: String,
    first: Timestamp,
    last: Timestamp,
    role: Option<String>,
    /// Whether `role` is a login's (it then stays); else the first record's.
    role_from_login: bool,
}

#[derive(Debug, Clone)]
struct LunaRec<'a> {
    record: &'a LunaRecord,
    partition: &'a str,
    stream: &'a str,
    log_event_id: &'a str,
    digest: String,
}

impl LunaRec<'_> {
    fn time(&self) -> Timestamp {
        self.record.time
    }

    fn action(&self) -> &str {
        &self.record.action
    }

    fn ok(&self) -> bool {
        self.record.succeeded()
    }

    fn opcode(&self) -> Opcode {
        Opcode::from_name(&self.record.action)
    }

    /// The order of records of one second, independent of the order they were logged in.
    fn order_key(&self) -> (Timestamp, u8, &str, &str, &str) {
        (
            self.time(),
            phase(self.action()),
            &self.digest,
            self.stream,
            self.log_event_id,
        )
    }
}

/// Within one second: creates, derived creates, then a multi-part operation's `_INIT`,
/// its steps and its `_END` (the vendor warns that exactly these appear out of order),
/// then destroys.
pub fn phase(action: &str) -> u8 {
    match action {
        "LUNA_GENERATE_KEY" | "LUNA_GENERATE_KEY_PAIR" | "LUNA_CREATE_OBJECT" => 0,
        "LUNA_COPY_OBJECT" | "LUNA_UNWRAP_KEY" | "LUNA_DERIVE_KEY" | "LUNA_DERIVE_KEY_AND_WRAP" => {
            1
        }
        "LUNA_DESTROY_OBJECT" => 5,
        action if action.ends_with("_INIT") => 2,
        action if action.ends_with("_END") => 4,
        _ => 3,
    }
}

/// The Luna records of a cluster's trail, one per identity, in [`LunaRec::order_key`]
/// order. Should one identity hold two contents, the smallest digest wins, whatever the
/// order they came in.
fn prepare(entries: &[TrailEntry]) -> Vec<LunaRec<'_>> {
    let mut by_identity: BTreeMap<(&str, &str), LunaRec<'_>> = BTreeMap::new();
    for entry in entries {
        let Some(record) = entry.luna() else {
            continue;
        };
        let rec = LunaRec {
            record,
            partition: record
                .partition_id
                .as_deref()
                .unwrap_or(&*entry.stream().hsm),
            stream: &entry.stream().hsm,
            log_event_id: &entry.log_event_id,
            digest: entry.record.content_sha256(),
        };
        by_identity
            .entry((rec.stream, rec.log_event_id))
            .and_modify(|kept| {
                if rec.digest < kept.digest {
                    *kept = rec.clone();
                }
            })
            .or_insert(rec);
    }
    let mut recs: Vec<LunaRec<'_>> = by_identity.into_values().collect();
    recs.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    recs
}

/// Luna's contribution from `entries`, resumed from the carried sessions and objects.
pub(crate) fn derive(
    entries: &[TrailEntry],
    config: &DeriveConfig,
    carry: &SessionsCarry,
    objects: &BTreeMap<String, KeyGeneration>,
    settle_before: Timestamp,
) -> LunaView {
    let recs = prepare(entries);
    if recs.is_empty() && carry.is_empty() {
        return LunaView {
            carry: carry.clone(),
            ..LunaView::default()
        };
    }
    let (sessions, carry) = sessions(&recs, config.luna_idle_window_micros, carry, settle_before);
    let (keys, settled_objects) = keys(&recs, objects, settle_before);
    LunaView {
        sessions,
        keys,
        failed_logins: failed_logins(&recs),
        alerts: sensitive(&recs),
        carry,
        settled_objects,
    }
}

fn failed_logins(recs: &[LunaRec<'_>]) -> Vec<FailedLogin> {
    recs.iter()
        .filter(|rec| rec.record.is_failed_login())
        .map(|rec| FailedLogin {
            time: rec.time(),
            hsm: rec.partition.to_owned(),
            seq: 0,
            reboot_counter: 0,
            user: rec.record.actor_id.clone().unwrap_or_default(),
            user_type: rec.record.role.clone(),
            // Luna statuses are names, not numbers: the name is the response.
            response_code: 0,
            response: rec.record.status.clone(),
            hsm_response: rec.record.status.clone(),
            brute_force: false,
            opcode: Some(rec.opcode()),
            log_event_id: Some(rec.log_event_id.to_owned()),
        })
        .collect()
}

/// Runs of an actor's activity on a partition, each continuing the carried run when its
/// first record is close enough; and the runs and newest records as of `settle_before`.
fn sessions(
    recs: &[LunaRec<'_>],
    window: i64,
    carry: &SessionsCarry,
    settle_before: Timestamp,
) -> (Vec<ClusterSession>, SessionsCarry) {
    let mut newest = carry.newest.clone();
    let mut settled_newest = carry.newest.clone();
    for rec in recs {
        for (map, take) in [
            (&mut newest, true),
            (&mut settled_newest, rec.time() < settle_before),
        ] {
            if take {
                let time = map.entry(rec.partition.to_owned()).or_insert(rec.time());
                *time = (*time).max(rec.time());
            }
        }
    }
    let mut carried: BTreeMap<(String, String), RunCarry> = carry
        .runs
        .iter()
        .map(|run| ((run.partition.clone(), run.actor.clone()), run.clone()))
        .collect();
    let mut by_actor: BTreeMap<(String, String), Vec<&LunaRec<'_>>> = BTreeMap::new();
    for rec in recs.iter().filter(|rec| !rec.record.is_failed_login()) {
        if let Some(actor) = rec.record.actor_id.as_deref() {
            by_actor
                .entry((rec.partition.to_owned(), actor.to_owned()))
                .or_default()
                .push(rec);
        }
    }
    for key in carried.keys() {
        by_actor.entry(key.clone()).or_default();
    }
    let mut sessions = Vec::new();
    let mut runs_out = Vec::new();
    for ((partition, actor), activity) in by_actor {
        let mut runs: Vec<(RunCarry, Vec<&LunaRec<'_>>)> = Vec::new();
        let mut settled_run: Option<RunCarry> = carried.remove(&(partition.clone(), actor.clone()));
        let mut current: Option<(RunCarry, Vec<&LunaRec<'_>>)> =
            settled_run.clone().map(|run| (run, Vec::new()));
        for rec in activity {
            let continues = current
                .as_ref()
                .is_some_and(|(run, _)| rec.time().micros() - run.last.micros() <= window);
            if !continues {
                runs.extend(current.take());
                current = Some((
                    RunCarry {
                        partition: partition.clone(),
                        actor: actor.clone(),
                        first: rec.time(),
                        last: rec.time(),
                        role: rec.record.role.clone(),
                        role_from_login: false,
                    },
                    Vec::new(),
                ));
            }
            if let Some((run, events)) = current.as_mut() {
                run.last = rec.time();
                if rec.action() == LUNA_LOGIN && !run.role_from_login {
                    run.role = rec.record.role.clone();
                    run.role_from_login = true;
                }
                events.push(rec);
                if rec.time() < settle_before {
                    settled_run = Some(run.clone());
                }
            }
        }
        runs.extend(current);
        let newest = newest.get(&partition).copied().unwrap_or_default();
        for (run, events) in runs {
            let closed = newest.micros() - run.last.micros() > window;
            sessions.push(ClusterSession {
                user: actor.clone(),
                user_type: run.role.clone(),
                login_time: run.first,
                end_time: closed.then_some(run.last),
                ended_by: closed.then(|| INACTIVITY.to_owned()),
                origin_hsm: partition.clone(),
                origin_seq: 0,
                origin_reboot_counter: 0,
                mirror_hsms: Vec::new(),
                events: events.iter().map(|rec| session_event(rec)).collect(),
            });
        }
        // The run as of the settle point stays carried until settled records show it
        // closed: a later record may still extend it, or close it.
        if let Some(run) = settled_run {
            let settled_newest = settled_newest.get(&partition).copied().unwrap_or_default();
            if settled_newest.micros() - run.last.micros() <= window {
                runs_out.push(run);
            }
        }
    }
    (
        sessions,
        SessionsCarry {
            runs: runs_out,
            newest: settled_newest,
        },
    )
}

fn session_event(rec: &LunaRec<'_>) -> SessionEvent {
    SessionEvent {
        time: rec.time(),
        hsm: rec.partition.to_owned(),
        seq: 0,
        opcode: rec.opcode(),
        reboot_counter: None,
        success: rec.ok(),
        target_user: None,
        key_handles: Vec::new(),
        object_ids: rec.record.object_ids.clone(),
        log_event_id: Some(rec.log_event_id.to_owned()),
    }
}

/// What a successful record does to an object it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Create { kind: &'static str, exports: bool },
    Export,
    Replicate,
    Destroy,
    Use,
}

fn effect(action: &str) -> Effect {
    match action {
        "LUNA_GENERATE_KEY" | "LUNA_UNWRAP_KEY" | "LUNA_DERIVE_KEY" => Effect::Create {
            kind: "secret",
            exports: false,
        },
        "LUNA_DERIVE_KEY_AND_WRAP" => Effect::Create {
            kind: "secret",
            exports: true,
        },
        "LUNA_GENERATE_KEY_PAIR" => Effect::Create {
            kind: "key_pair",
            exports: false,
        },
        "LUNA_CREATE_OBJECT" | "LUNA_COPY_OBJECT" => Effect::Create {
            kind: "object",
            exports: false,
        },
        "LUNA_WRAP_KEY" => Effect::Export,
        "LUNA_DESTROY_OBJECT" => Effect::Destroy,
        action if action.starts_with("LUNA_REPLICATE_") || action.starts_with("LUNA_CLONE_AS_") => {
            Effect::Replicate
        }
        _ => Effect::Use,
    }
}

fn generation(object_id: &str, number: u32) -> KeyGeneration {
    KeyGeneration::blank(0, Some(object_id), number, "unknown")
}

fn add_hsm(key: &mut KeyGeneration, partition: &str) {
    if !key.hsms.iter().any(|hsm| hsm == partition) {
        key.hsms.push(partition.to_owned());
        key.hsms.sort();
    }
}

fn keys(
    recs: &[LunaRec<'_>],
    carried: &BTreeMap<String, KeyGeneration>,
    settle_before: Timestamp,
) -> (Vec<KeyGeneration>, BTreeMap<String, KeyGeneration>) {
    let mut by_object: BTreeMap<String, Vec<KeyGeneration>> = BTreeMap::new();
    let mut settled = None;
    for rec in recs {
        if settled.is_none() && rec.time() >= settle_before {
            settled = Some(last_generations(&by_object));
        }
        for object_id in &rec.record.object_ids {
            let generations = by_object
                .entry(object_id.clone())
                .or_insert_with(|| carried.get(object_id).cloned().into_iter().collect());
            let effect = if rec.ok() {
                effect(rec.action())
            } else {
                Effect::Use
            };
            let live = generations
                .last()
                .is_some_and(|current| current.state == KeyState::Active && current.generation > 0);
            let effect = match effect {
                Effect::Create { .. } if live => Effect::Use,
                other => other,
            };
            if let Effect::Create { kind, .. } = effect {
                let number = generations
                    .last()
                    .map_or(1, |current| current.generation + 1);
                let mut created = generation(object_id, number);
                created.kind = kind.to_owned();
                created.created_time = Some(rec.time());
                created.created_by = rec.record.actor_id.clone();
                created.created_opcode = Some(rec.opcode());
                generations.push(created);
            } else if generations.is_empty() {
                generations.push(generation(object_id, 0));
            }
            let Some(current) = generations.last_mut() else {
                continue;
            };
            current.events.push(key_event(rec));
            match effect {
                Effect::Create { exports, .. } => {
                    add_hsm(current, rec.partition);
                    current.exported |= exports;
                }
                Effect::Export => current.exported = true,
                Effect::Replicate => add_hsm(current, rec.partition),
                Effect::Destroy if current.state == KeyState::Active => {
                    current.state = KeyState::Destroyed;
                }
                Effect::Destroy | Effect::Use => {}
            }
        }
    }
    let settled = settled.unwrap_or_else(|| last_generations(&by_object));
    (by_object.into_values().flatten().collect(), settled)
}

fn key_event(rec: &LunaRec<'_>) -> KeyEvent {
    KeyEvent {
        time: rec.time(),
        hsm: rec.partition.to_owned(),
        seq: None,
        reboot_counter: None,
        opcode: rec.opcode(),
        success: rec.ok(),
        response_code: None,
        response: Some(rec.record.status.clone()),
        user: rec.record.actor_id.clone(),
        attributes: None,
        log_event_id: Some(rec.log_event_id.to_owned()),
    }
}

fn is_sensitive(record: &LunaRecord) -> bool {
    match record.action.as_str() {
        "LUNA_PARTITION_ZEROIZE"
        | "LUNA_PARTITION_INIT"
        | "LUNA_WRAP_KEY"
        | "LUNA_DERIVE_KEY_AND_WRAP"
        | "LUNA_INIT_PIN" => true,
        "LUNA_SET_PIN" => matches!(record.role.as_deref(), Some("PO" | "CO")),
        action => action.starts_with("LUNA_CLONE_"),
    }
}

fn sensitive(recs: &[LunaRec<'_>]) -> Vec<Alert> {
    recs.iter()
        .filter(|rec| is_sensitive(rec.record))
        .map(|rec| {
            let record = rec.record;
            let mut detail = Vec::new();
            if let Some(role) = &record.role {
                detail.push(format!("role {role}"));
            }
            if !record.object_ids.is_empty() {
                detail.push(format!("objects {}", record.object_ids.join(",")));
            }
            if let Some(hsm) = &record.hsm_id {
                detail.push(format!("hsm {hsm}"));
            }
            // Keeps two identical operations in one second apart, and locates the record.
            detail.push(format!("log event {}", rec.log_event_id));
            if !rec.ok() {
                detail.push(format!("failed: {}", record.status));
            }
            Alert {
                kind: AlertKind::SensitiveOperation,
                time: rec.time(),
                hsm: Some(rec.partition.to_owned()),
                reboot_counter: None,
                from: None,
                to: None,
                seq: None,
                user: record.actor_id.clone(),
                opcode: Some(rec.opcode()),
                detail: Some(detail.join("; ")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuditRecord, LogSource};

    const PARTITION: &str = "1334049524932";
    const ACTOR: &str = "d5fa3ace-a79f-40ba-8e21-3ebf0bf0250a";
    const MINUTE: i64 = 60;

    fn luna(id: &str, seconds: i64, action: &str, status: &str, ouids: &[&str]) -> TrailEntry {
        TrailEntry {
            source: LogSource::shared("svc", PARTITION),
            record: AuditRecord::Luna(LunaRecord {
                time: Timestamp::from_micros(seconds * 1_000_000),
                action: action.into(),
                status: status.into(),
                source: Some(format!("thales/cloudhsm/{PARTITION}")),
                resource_id: Some("svc".into()),
                actor_id: Some(ACTOR.into()),
                tenant_id: None,
                partition_id: Some(PARTITION.into()),
                hsm_id: Some("567782".into()),
                client_ip: Some("10.0.0.1".into()),
                role: Some("CO".into()),
                object_ids: ouids.iter().map(|id| id.to_string()).collect(),
                record_id: None,
            }),
            log_event_id: id.into(),
            log_event_time: Timestamp::from_micros(seconds * 1_000_000),
            raw: String::new(),
        }
    }

    fn ok(id: &str, seconds: i64, action: &str, ouids: &[&str]) -> TrailEntry {
        luna(id, seconds, action, "LUNA_RET_OK", ouids)
    }

    fn run(entries: &[TrailEntry]) -> LunaView {
        derive(
            entries,
            &DeriveConfig::default(),
            &SessionsCarry::default(),
            &BTreeMap::new(),
            Timestamp(i64::MAX),
        )
    }

    #[test]
    fn given_generate_use_wrap_destroy_when_derived_then_one_exported_destroyed_generation() {
        let view = run(&[
            ok("4", 40, "LUNA_DESTROY_OBJECT", &["k1"]),
            ok("1", 10, "LUNA_GENERATE_KEY", &["k1"]),
            ok("2", 20, "LUNA_SIGN", &["k1"]),
            ok("3", 30, "LUNA_WRAP_KEY", &["k1"]),
        ]);
        let [key] = view.keys.as_slice() else {
            panic!("{:#?}", view.keys)
        };
        assert_eq!(key.object_id.as_deref(), Some("k1"));
        assert_eq!(
            (key.handle, key.generation, key.state, key.kind.as_str()),
            (0, 1, KeyState::Destroyed, "secret")
        );
        assert!(key.exported);
        assert_eq!(key.created_by.as_deref(), Some(ACTOR));
        assert_eq!(key.hsms, [PARTITION]);
        assert_eq!(key.events.len(), 4);
    }

    #[test]
    fn given_one_second_out_of_order_when_derived_then_creates_before_uses_before_destroys() {
        let forward = run(&[
            ok("1", 10, "LUNA_GENERATE_KEY", &["k1"]),
            ok("2", 10, "LUNA_ENCRYPT", &["k1"]),
            ok("3", 10, "LUNA_DESTROY_OBJECT", &["k1"]),
        ]);
        let backward = run(&[
            ok("1", 10, "LUNA_DESTROY_OBJECT", &["k1"]),
            ok("2", 10, "LUNA_ENCRYPT", &["k1"]),
            ok("3", 10, "LUNA_GENERATE_KEY", &["k1"]),
        ]);
        for view in [&forward, &backward] {
            let ops: Vec<&str> = view.keys[0]
                .events
                .iter()
                .map(|e| e.opcode.as_str())
                .collect();
            assert_eq!(
                ops,
                ["LUNA_GENERATE_KEY", "LUNA_ENCRYPT", "LUNA_DESTROY_OBJECT"]
            );
            assert_eq!(view.keys[0].state, KeyState::Destroyed);
            assert_eq!(view.keys[0].generation, 1);
        }
    }

    #[test]
    fn given_a_derive_from_a_live_key_when_derived_then_the_base_is_used_and_the_new_key_created() {
        let view = run(&[
            ok("1", 10, "LUNA_GENERATE_KEY", &["base"]),
            ok("2", 20, "LUNA_DERIVE_KEY", &["base", "child"]),
            luna(
                "3",
                30,
                "LUNA_DESTROY_OBJECT",
                "LUNA_RET_OBJECT_HANDLE_INVALID",
                &["child"],
            ),
        ]);
        let base = &view.keys[0];
        let child = &view.keys[1];
        assert_eq!(base.object_id.as_deref(), Some("base"));
        assert_eq!(
            base.created_opcode.as_ref().map(Opcode::as_str),
            Some("LUNA_GENERATE_KEY")
        );
        assert_eq!(base.events.len(), 2);
        assert_eq!(
            child.created_opcode.as_ref().map(Opcode::as_str),
            Some("LUNA_DERIVE_KEY")
        );
        assert_eq!(
            child.state,
            KeyState::Active,
            "a failed destroy changes nothing"
        );
        assert!(!child.events[1].success);
    }

    #[test]
    fn given_events_of_an_unseen_object_and_replication_when_derived_then_generation_zero_held_where_replicated()
     {
        let mut target = ok("2", 20, "LUNA_REPLICATE_AS_TARGET", &["k9"]);
        if let AuditRecord::Luna(record) = &mut target.record {
            record.partition_id = Some("other".into());
        }
        let view = run(&[ok("1", 10, "LUNA_SIGN", &["k9"]), target]);
        assert_eq!(
            (view.keys[0].generation, view.keys[0].kind.as_str()),
            (0, "unknown")
        );
        assert_eq!(view.keys[0].hsms, ["other"]);
    }

    #[test]
    fn given_activity_with_a_long_pause_when_derived_then_two_sessions_the_last_open() {
        let view = run(&[
            ok("1", 0, "LUNA_LOGIN", &[]),
            ok("2", 5 * MINUTE, "LUNA_SIGN", &["k1"]),
            ok("3", 60 * MINUTE, "LUNA_SIGN", &["k1"]),
            ok("4", 61 * MINUTE, "LUNA_VERIFY", &["k1"]),
        ]);
        let [first, second] = view.sessions.as_slice() else {
            panic!("{:#?}", view.sessions)
        };
        assert_eq!(first.ended_by.as_deref(), Some(INACTIVITY));
        assert_eq!(
            first.end_time.map(Timestamp::micros),
            Some(5 * MINUTE * 1_000_000)
        );
        assert_eq!(first.user_type.as_deref(), Some("CO"));
        assert_eq!(first.events.len(), 2);
        assert_eq!(first.events[1].object_ids, ["k1"]);
        assert_eq!(
            second.ended_by, None,
            "within the window of the newest record"
        );
        assert_eq!(second.end_time, None);
        assert_eq!(second.origin_hsm, PARTITION);
    }

    #[test]
    fn given_failed_logins_when_derived_then_flagged_candidates_and_no_session() {
        let view = run(&[
            luna("1", 10, "LUNA_LOGIN", "LUNA_RET_PIN_INCORRECT", &[]),
            luna("2", 10, "LUNA_LOGIN", "LUNA_RET_PIN_INCORRECT", &[]),
        ]);
        assert!(view.sessions.is_empty());
        assert_eq!(view.failed_logins.len(), 2);
        let login = &view.failed_logins[0];
        assert_eq!(
            (login.user.as_str(), login.hsm.as_str()),
            (ACTOR, PARTITION)
        );
        assert_eq!(login.user_type.as_deref(), Some("CO"));
        assert_eq!(login.response, "LUNA_RET_PIN_INCORRECT");
        assert_eq!(
            login.opcode.as_ref().map(Opcode::as_str),
            Some("LUNA_LOGIN")
        );
    }

    #[test]
    fn given_zeroize_and_init_when_derived_then_sensitive_alerts_with_failures_noted() {
        let view = run(&[
            ok("1", 10, "LUNA_PARTITION_ZEROIZE", &[]),
            luna(
                "2",
                20,
                "LUNA_PARTITION_INIT",
                "LUNA_RET_SO_LOGIN_FAILURE_THRESHOLD",
                &[],
            ),
            ok("3", 30, "LUNA_SIGN", &["k1"]),
        ]);
        let ops: Vec<&str> = view
            .alerts
            .iter()
            .filter_map(|a| a.opcode.as_ref().map(Opcode::as_str))
            .collect();
        assert_eq!(ops, ["LUNA_PARTITION_ZEROIZE", "LUNA_PARTITION_INIT"]);
        assert!(
            view.alerts[1]
                .detail
                .as_deref()
                .unwrap_or("")
                .ends_with("failed: LUNA_RET_SO_LOGIN_FAILURE_THRESHOLD")
        );
        assert_eq!(view.alerts[0].user.as_deref(), Some(ACTOR));
    }
}
