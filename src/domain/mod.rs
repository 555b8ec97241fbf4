//! What compliance teams query, derived from the trail: cluster sessions, key
//! lifecycles, failed logins and alerts.
//!
//! Design decision: every view here is a pure function of the *set* of trail records of
//! one cluster ([`derive`]). Delivery order, duplication and batching cannot change the
//! result because the function never sees them; the store recomputes a cluster's views
//! from its whole trail under a per-cluster lease, so concurrent invocations converge too.
//!
//! The logic lives in submodules, each documenting its decisions: `records` (dedupe and
//! order), `sessions` (cluster sessions and command attribution), `keys` (lifecycles),
//! `logins` (failed logins, brute force), `integrity` (streams, gaps, reboots,
//! conflicts), `sensitive` (sensitive operations), `users` (actor and target of a
//! record, names for user ids), `certificates` (certificate
//! lifecycles from certificate-storage records), `quorum` (quorum tokens and M values) and
//! `luna` (Thales Luna records onto the same sessions, lifecycles, failed logins and
//! alerts).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use integrity::{Carry as IntegrityCarry, StreamCarry, StreamKey};
pub use keys::KeyCarry;

use crate::model::{Opcode, RecordIdentity, Timestamp, TrailEntry};

mod certificates;
mod integrity;
mod keys;
mod logins;
pub mod luna;
mod quorum;
mod records;
mod sensitive;
mod sessions;
mod users;

/// Tunables of the derivation, read once from the environment by [`crate::config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeriveConfig {
    /// Logins of one user on different HSMs this close together are one cluster session.
    pub mirror_window_micros: i64,
    /// Failed logins of one user within `brute_force_window_micros` that raise an alert.
    pub brute_force_threshold: usize,
    pub brute_force_window_micros: i64,
    /// Luna has no logout: an actor's session on a partition ends after this long
    /// without activity.
    pub luna_idle_window_micros: i64,
    /// A CloudHSM session with no activity for this long is abandoned (0: never); see
    /// `sessions`, rule 7.
    pub session_horizon_micros: i64,
    /// How far behind the newest record of its cluster a record may arrive and still be
    /// folded in exactly; a record later than that is late (see `crate::incremental`).
    pub allowed_lateness_micros: i64,
}

impl Default for DeriveConfig {
    fn default() -> Self {
        Self {
            mirror_window_micros: 5_000_000,
            brute_force_threshold: 5,
            brute_force_window_micros: 300_000_000,
            luna_idle_window_micros: 900_000_000,
            session_horizon_micros: 86_400_000_000,
            allowed_lateness_micros: 300_000_000,
        }
    }
}

/// A record delivered again under an identity already stored with other content. The
/// first stored content stays in the trail; this is what was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The log stream: the HSM for CloudHSM records.
    pub hsm: String,
    /// Set for CloudHSM records; records without a sequence number are identified by
    /// their log event id, which is then the rejected one.
    pub reboot_counter: Option<u32>,
    pub sequence_no: Option<u64>,
    pub time: Timestamp,
    pub stored_sha256: String,
    pub rejected_sha256: String,
    pub rejected_log_event_id: String,
}

impl Conflict {
    /// `entry`, whose content digests to `rejected_sha256`, refused because its identity
    /// is stored with `stored_sha256`.
    pub fn refused(entry: &TrailEntry, stored_sha256: &str, rejected_sha256: String) -> Self {
        let (hsm, reboot_counter, sequence_no) = entry.identity().into_parts();
        Conflict {
            hsm,
            reboot_counter,
            sequence_no,
            time: entry.record.time(),
            stored_sha256: stored_sha256.to_owned(),
            rejected_sha256,
            rejected_log_event_id: entry.log_event_id.clone(),
        }
    }

    pub fn identity(&self) -> RecordIdentity {
        match (self.reboot_counter, self.sequence_no) {
            (Some(reboot_counter), Some(sequence_no)) => RecordIdentity::Sequence {
                hsm: self.hsm.clone(),
                reboot_counter,
                sequence_no,
            },
            _ => RecordIdentity::LogEvent {
                stream: self.hsm.clone(),
                log_event_id: self.rejected_log_event_id.clone(),
            },
        }
    }
}

/// A delivery's entries sorted against the trail (see [`classify_delivery`]).
#[derive(Debug, Default)]
pub struct Classified<'a> {
    /// Entries new to the trail, each with its identity's key and its content digest.
    pub fresh: Vec<(String, &'a TrailEntry, String)>,
    pub duplicates: usize,
    pub conflicts: Vec<Conflict>,
}

/// The trail's rule for identities: each is stored once. `stored` maps the key of an
/// identity already in the trail (`key_of`) to the digest of its content. An entry whose
/// identity is stored with the same content is a duplicate (a no-op); with other
/// content, a conflict, recorded once (the same refused content again is a duplicate of
/// it) and never replacing what was stored first. Within the delivery, the first entry
/// of an identity counts as stored first.
pub fn classify_delivery<'a>(
    entries: &'a [TrailEntry],
    stored: &std::collections::HashMap<String, String>,
    key_of: impl Fn(&RecordIdentity) -> String,
) -> Classified<'a> {
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut classified = Classified::default();
    for entry in entries {
        let key = key_of(&entry.identity());
        let digest = entry.record.content_sha256();
        match stored.get(&key).or_else(|| seen.get(&key)) {
            Some(first) if *first == digest => classified.duplicates += 1,
            Some(first) => {
                let conflict = Conflict::refused(entry, first, digest);
                if classified.conflicts.contains(&conflict) {
                    classified.duplicates += 1;
                } else {
                    classified.conflicts.push(conflict);
                }
            }
            None => {
                seen.insert(key.clone(), digest.clone());
                classified.fresh.push((key, entry, digest));
            }
        }
    }
    classified
}

/// Everything derived for one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derived {
    pub sessions: Vec<ClusterSession>,
    pub keys: Vec<KeyGeneration>,
    pub failed_logins: Vec<FailedLogin>,
    pub alerts: Vec<Alert>,
    pub streams: Vec<StreamSummary>,
    /// Quorum tokens and M-value settings (see `quorum`).
    #[serde(default)]
    pub quorum: QuorumView,
}

/// The cluster's quorum (M of N) evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumView {
    pub tokens: Vec<QuorumToken>,
    pub m_values: Vec<MValueSetting>,
}

/// One quorum record as a step of the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStep {
    pub time: Timestamp,
    pub hsm: String,
    pub seq: u64,
    pub opcode: Opcode,
    pub success: bool,
    /// The record's `User Name`, else the user of the session it belongs to.
    pub user: Option<String>,
}

/// One quorum token on one HSM: its request, approvals and end, and what its requester
/// did while it lived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumToken {
    pub hsm: String,
    pub reboot_counter: u32,
    /// Sequence number and time of the token's first record (its request, where the
    /// trail holds it).
    pub seq: u64,
    pub time: Timestamp,
    /// Absent when the request is not in the trail.
    pub requested_by: Option<String>,
    /// Users whose approval succeeded, in approval order.
    pub approved_by: Vec<String>,
    pub end_time: Option<Timestamp>,
    /// `CN_DELETE_TOKEN`, `CN_GET_TOKEN` (a new request by the same user), `REBOOT` or
    /// `FAILED` (the request failed); absent while the token lives.
    pub ended_by: Option<String>,
    /// The token's quorum records in order: request, approvals, deletion.
    pub steps: Vec<QuorumStep>,
    /// The requester's commands on the token's HSM while it lived (the first 100).
    pub activity: Vec<QuorumStep>,
    pub activity_count: usize,
}

/// One `CN_SET_M_VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MValueSetting {
    #[serde(flatten)]
    pub step: QuorumStep,
    /// The value, where the record logs one (see `quorum`).
    pub value: Option<u64>,
    /// The value of the cluster's previous successful setting that logged one.
    pub previous: Option<u64>,
}

/// One user's session across the cluster: the per-HSM sessions whose logins mirror each
/// other, merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSession {
    pub user: String,
    pub user_type: Option<String>,
    pub login_time: Timestamp,
    pub end_time: Option<Timestamp>,
    /// The ending opcode's name, or `REBOOT`; `None` while open.
    pub ended_by: Option<String>,
    pub origin_hsm: String,
    /// Sequence number of the origin login, so two sessions never share an identity.
    pub origin_seq: u64,
    /// Reboot counter of the origin login: two boots of one HSM restart the sequence, and
    /// their sessions must not share a key. Absent in views stored before it existed.
    #[serde(default)]
    pub origin_reboot_counter: u32,
    pub mirror_hsms: Vec<String>,
    pub events: Vec<SessionEvent>,
}

impl ClusterSession {
    /// The documented order of session listings: by login time, then origin.
    pub fn listing_order(a: &Self, b: &Self) -> std::cmp::Ordering {
        (a.login_time, &a.origin_hsm, a.origin_seq, &a.user).cmp(&(
            b.login_time,
            &b.origin_hsm,
            b.origin_seq,
            &b.user,
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub time: Timestamp,
    pub hsm: String,
    pub seq: u64,
    /// With `hsm` and `seq`, the record's identity (CloudHSM records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_counter: Option<u32>,
    pub opcode: Opcode,
    pub success: bool,
    /// The user a command acts on: `Target User Name` (or the name the trail gives its
    /// `Target User id`) where the record names a target, else a user-management
    /// record's `User Name` (see `users`).
    pub target_user: Option<String>,
    pub key_handles: Vec<u64>,
    /// Luna object ids (`meta.ouids`) the command named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub object_ids: Vec<String>,
    /// Records without a sequence number (Luna): the log event id locates the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_event_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Tombstoned,
    Destroyed,
}

/// One generation of a key handle: from its creation to its destruction. A handle
/// created again after destruction starts the next generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGeneration {
    /// 0 for Luna objects, which have an `object_id` instead.
    pub handle: u64,
    /// The Luna object id (`ouid`), verbatim; absent for CloudHSM keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    pub generation: u32,
    pub state: KeyState,
    /// `secret`, `private`, `public`, `object` (created as an object or imported
    /// without wrapping), `certificate`, or `unknown` (seen in use, creation not logged).
    pub kind: String,
    pub pair_handle: Option<u64>,
    pub created_time: Option<Timestamp>,
    pub created_by: Option<String>,
    pub created_opcode: Option<Opcode>,
    /// HSMs known to hold the key: where it was created or received as a masked object.
    pub hsms: Vec<String>,
    pub exported: bool,
    pub events: Vec<KeyEvent>,
    /// Who the key was shared with and unshared from, and when (`CN_SHARE_OBJECT` with
    /// `Operation` and `UserIDs`, the later layout), in time order; left out when empty so
    /// lifecycles without such records read as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<KeyShare>,
}

/// One user a `CN_SHARE_OBJECT` record shared a key with or unshared it from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyShare {
    pub time: Timestamp,
    pub hsm: String,
    pub seq: u64,
    /// `SHARE` or `UNSHARE`, as logged.
    pub operation: String,
    /// As logged in `UserIDs`.
    pub user_id: String,
    /// The name the trail gives the id, where it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The user of the session the command belongs to.
    pub by: Option<String>,
}

/// The order of a session's or key's events: time, then, within a second of Luna's
/// one-second clock, what each does (see [`luna::phase`]); stored events are read in key
/// order and sorted by this, stably.
pub fn event_order(time: Timestamp, opcode: &Opcode, luna: bool) -> (Timestamp, u8) {
    (
        time,
        if luna {
            luna::phase(opcode.as_str())
        } else {
            0
        },
    )
}

impl KeyGeneration {
    /// The documented order of key listings: by handle (Luna objects by id), then generation.
    pub fn listing_order(a: &Self, b: &Self) -> std::cmp::Ordering {
        a.listing_key().cmp(&b.listing_key())
    }

    /// What the listing orders keys by.
    pub fn listing_key(&self) -> (u64, Option<&str>, u32, &str) {
        (
            self.handle,
            self.object_id.as_deref(),
            self.generation,
            &self.kind,
        )
    }

    /// A generation with nothing known yet but what identifies it: active, not exported,
    /// held nowhere, no events. Each record family fills in what its records say.
    pub fn blank(handle: u64, object_id: Option<&str>, generation: u32, kind: &str) -> Self {
        Self {
            handle,
            object_id: object_id.map(str::to_owned),
            generation,
            state: KeyState::Active,
            kind: kind.to_owned(),
            pair_handle: None,
            created_time: None,
            created_by: None,
            created_opcode: None,
            hsms: Vec::new(),
            exported: false,
            events: Vec::new(),
            shared_with: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEvent {
    pub time: Timestamp,
    /// The log stream: the HSM for CloudHSM records, the cluster-named stream for
    /// certificate storage.
    pub hsm: String,
    /// CloudHSM records only; certificate-storage records are located by `log_event_id`.
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_counter: Option<u32>,
    pub opcode: Opcode,
    pub success: bool,
    /// CloudHSM's numeric response code.
    pub response_code: Option<u32>,
    /// Certificate storage's response (`OK`, `MaxObjectsReached`, …).
    pub response: Option<String>,
    /// The user of the session the command is attributed to, when one is.
    pub user: Option<String>,
    /// Attribute names a `SetAttributeValues` changed.
    pub attributes: Option<Vec<String>>,
    pub log_event_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedLogin {
    pub time: Timestamp,
    pub hsm: String,
    pub seq: u64,
    pub reboot_counter: u32,
    pub user: String,
    pub user_type: Option<String>,
    pub response_code: u32,
    /// `unknown user` (157), `wrong password` (163), else the HSM's text.
    pub response: String,
    /// The response text exactly as the HSM logged it.
    pub hsm_response: String,
    pub brute_force: bool,
    /// The login command when it is not `CN_LOGIN` (`LUNA_LOGIN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opcode: Option<Opcode>,
    /// Records without a sequence number (Luna): the log event id locates the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_event_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    BruteForce,
    SequenceGap,
    ConflictingDuplicate,
    SensitiveOperation,
    /// The reboot counter of an HSM changed: its open sessions ended.
    Reboot,
    /// A session had no activity for the session horizon while still open: it was
    /// ended `ABANDONED`.
    AbandonedSession,
    /// Certificate storage failed for a reason of its own (`MaxObjectsReached`,
    /// `InternalFailure`), not of the request.
    CertificateStorageError,
    /// A record arrived later than the allowed lateness (folded in all the same), or
    /// older than the late horizon (left out of the views until `rederive`).
    LateRecord,
    /// A record timed ahead of the clock when it arrived: held out of the views until
    /// the clock reaches it.
    ClockSkew,
    /// A `CN_SET_M_VALUE` set a quorum value below the previous one.
    QuorumLowered,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::BruteForce => "brute_force",
            AlertKind::SequenceGap => "sequence_gap",
            AlertKind::ConflictingDuplicate => "conflicting_duplicate",
            AlertKind::SensitiveOperation => "sensitive_operation",
            AlertKind::Reboot => "reboot",
            AlertKind::AbandonedSession => "abandoned_session",
            AlertKind::CertificateStorageError => "certificate_storage_error",
            AlertKind::LateRecord => "late_record",
            AlertKind::ClockSkew => "clock_skew",
            AlertKind::QuorumLowered => "quorum_lowered",
        }
    }
}

/// An alert and its details; which details are set depends on the kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub time: Timestamp,
    pub hsm: Option<String>,
    pub reboot_counter: Option<u32>,
    /// First and last missing sequence numbers of a gap; first and last failed-login
    /// times' sequence numbers are not used.
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub seq: Option<u64>,
    pub user: Option<String>,
    pub opcode: Option<Opcode>,
    pub detail: Option<String>,
}

/// What the trail holds of one HSM's stream in one boot: where it starts (a stream first
/// observed above 0 starts there, which is not a gap) and how far it reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSummary {
    pub hsm: String,
    pub reboot_counter: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    pub missing: u64,
    pub first_time: Timestamp,
    pub last_time: Timestamp,
}

/// Derives every view of one cluster from its trail records and refused duplicates.
/// The result is sorted, so equal inputs in any order give equal output. This is the
/// reference the incremental derivation ([`fold`]) is tested against: the same rules,
/// applied to the whole set at once.
pub fn derive(entries: &[TrailEntry], conflicts: &[Conflict], config: &DeriveConfig) -> Derived {
    fold(
        &Carry::default(),
        &EntityCarries::default(),
        entries,
        conflicts,
        Timestamp(i64::MAX),
        config,
        Emit::Known,
    )
    .derived
}

/// What the derivation keeps of a cluster's past, as of a settle point: everything a
/// record after it can still change or be decided by. Its size depends on what is open
/// (sessions, recent failed logins, streams), never on how long the history is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carry {
    /// User names by id, learned from every settled record.
    pub names: users::UserNames,
    pub quorum: quorum::QuorumCarry,
    pub sessions: sessions::Carry,
    pub logins: logins::Carry,
    pub integrity: integrity::Carry,
    pub earliest: sensitive::Earliest,
    pub luna_sessions: luna::SessionsCarry,
}

/// Where each key, certificate and Luna object stands: there are as many as objects,
/// so each is kept on its own and only those a batch names are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityCarries {
    pub keys: BTreeMap<u64, KeyCarry>,
    pub certificates: BTreeMap<u64, KeyGeneration>,
    pub luna_objects: BTreeMap<String, KeyGeneration>,
    /// Streams a later boot of their HSM ended.
    pub streams: BTreeMap<StreamKey, StreamCarry>,
}

/// The objects whose carries a set of records needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityIds {
    pub keys: BTreeSet<u64>,
    pub certificates: BTreeSet<u64>,
    pub luna_objects: BTreeSet<String>,
    /// The (hsm, boot) streams of the CloudHSM records: an ended one is an object.
    pub streams: BTreeSet<StreamKey>,
}

pub fn entity_ids<'a>(entries: impl IntoIterator<Item = &'a TrailEntry>) -> EntityIds {
    let mut ids = EntityIds::default();
    for entry in entries {
        if let Some(record) = entry.cloudhsm() {
            ids.streams
                .insert((entry.stream().hsm.to_string(), record.reboot_counter));
            for handle in [record.key_handle, record.public_key_handle]
                .into_iter()
                .flatten()
                .filter(|&handle| handle != 0)
            {
                ids.keys.insert(handle);
            }
        } else if let Some(record) = entry.certificate() {
            ids.certificates.extend(record.object_handle);
        } else if let Some(record) = entry.luna() {
            ids.luna_objects.extend(record.object_ids.iter().cloned());
        }
    }
    ids
}

/// One derivation step: the views the given records touch, resumed from what was
/// settled, and what is settled after it.
#[derive(Debug, Clone, Default)]
pub struct Folded {
    /// Sessions the step knows (carried and new) with the events of its records; keys its
    /// records touch with those records' events; their failed logins and the carried
    /// recent ones; alerts of its records, of open bursts, and of the gaps and reboots
    /// its records made; the summaries of the streams they changed.
    pub derived: Derived,
    pub carry: Carry,
    /// The touched objects' carries as of the settle point.
    pub entities: EntityCarries,
    /// Brute-force alerts (user, time) of bursts that may still grow: not final yet.
    pub open_bursts: BTreeSet<(String, Timestamp)>,
    /// Gap and reboot alerts stored before that the step's records make untrue.
    pub retracted: Vec<Alert>,
    /// Sequence gaps open in the cluster's trail after the step.
    pub open_gaps: u64,
}

/// Which of the sessions a carry knows a fold gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Those the records changed: a fold onto the state the last one left, whose views
    /// of the others are stored as they are.
    Changed,
    /// Every one it knows: a replay, whose records may no longer change a session that
    /// a later step's log names, and which must then write it as the carry has it.
    Known,
}

/// Derives what `entries` touch, resumed from `carry` and the carries of the objects they
/// name; the carry returned is the state after every record timed before
/// `settle_before`. Records must not be timed before the carry's own point (those are
/// replayed from an earlier state: see `crate::incremental`).
pub fn fold(
    carry: &Carry,
    entities: &EntityCarries,
    entries: &[TrailEntry],
    conflicts: &[Conflict],
    settle_before: Timestamp,
    config: &DeriveConfig,
    emit: Emit,
) -> Folded {
    let recs = records::prepare(entries);
    let window = config.mirror_window_micros;
    let mut names = carry.names.clone();
    names.take_in(&recs);
    let mut settled_names = carry.names.clone();
    settled_names.take_in(recs.iter().filter(|rec| rec.time() < settle_before));
    let sessions::SessionView {
        mut sessions,
        actors,
        carry: sessions_carry,
        alerts: abandoned,
    } = sessions::derive(&recs, config, &names, &carry.sessions, settle_before, emit);
    let (mut keys, key_carries) = keys::derive(
        &recs,
        &actors,
        &names,
        window,
        &entities.keys,
        settle_before,
    );
    let (certificates, certificate_alerts, certificate_carries) =
        certificates::derive(entries, &entities.certificates, settle_before);
    keys.extend(certificates);
    let luna = luna::derive(
        entries,
        config,
        &carry.luna_sessions,
        &entities.luna_objects,
        settle_before,
    );
    keys.extend(luna.keys);
    keys.sort_by(KeyGeneration::listing_order);
    sessions.extend(luna.sessions);
    sessions.sort_by(ClusterSession::listing_order);
    let mut failed = logins::failures(&recs);
    failed.extend(luna.failed_logins);
    let flagged = logins::flag_brute_force(failed, config, &carry.logins, settle_before);
    let mut alerts = flagged.alerts;
    alerts.extend(abandoned);
    alerts.extend(luna.alerts);
    alerts.extend(certificate_alerts);
    let integrity = integrity::derive(
        &recs,
        conflicts,
        &carry.integrity,
        entities.streams.values(),
        settle_before,
    );
    alerts.extend(integrity.alerts);
    let (sensitive_alerts, earliest) =
        sensitive::derive(&recs, &actors, &names, &carry.earliest, settle_before);
    alerts.extend(sensitive_alerts);
    let (quorum, quorum_alerts, quorum_carry) =
        quorum::derive(&recs, &actors, &carry.quorum, settle_before);
    alerts.extend(quorum_alerts);
    alerts.sort_by(alert_order);
    alerts.dedup();
    Folded {
        derived: Derived {
            sessions,
            keys,
            failed_logins: flagged.logins,
            alerts,
            streams: integrity.streams,
            quorum,
        },
        carry: Carry {
            names: settled_names,
            quorum: quorum_carry,
            sessions: sessions_carry,
            logins: flagged.carry,
            integrity: integrity.carry,
            earliest,
            luna_sessions: luna.carry,
        },
        entities: EntityCarries {
            keys: key_carries,
            certificates: certificate_carries,
            luna_objects: luna.settled_objects,
            streams: integrity
                .ended
                .into_iter()
                .map(|stream| (stream.key(), stream))
                .collect(),
        },
        open_bursts: flagged.open_bursts.into_iter().collect(),
        retracted: integrity.retracted,
        open_gaps: integrity.open_gaps,
    }
}

/// The documented order (time, kind, hsm, seq or gap start), then every other field so
/// that the order is total and equal alert sets always list alike.
fn alert_order(a: &Alert, b: &Alert) -> std::cmp::Ordering {
    (a.time, a.kind, &a.hsm, a.seq.or(a.from))
        .cmp(&(b.time, b.kind, &b.hsm, b.seq.or(b.from)))
        .then_with(|| (a.reboot_counter, a.from, a.to).cmp(&(b.reboot_counter, b.from, b.to)))
        .then_with(|| (&a.user, &a.opcode, &a.detail).cmp(&(&b.user, &b.opcode, &b.detail)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::testkit::rec;

    fn key(identity: &RecordIdentity) -> String {
        format!("{identity:?}")
    }

    #[test]
    fn given_redeliveries_when_classified_then_same_content_is_a_duplicate_and_other_content_one_conflict()
     {
        let first = rec("hsm-1", 1, 7, 1_000, Opcode::Login).build();
        let other = rec("hsm-1", 1, 7, 2_000, Opcode::Login).build();
        let new = rec("hsm-1", 1, 8, 3_000, Opcode::Logout).build();
        let stored = HashMap::from([(key(&first.identity()), first.record.content_sha256())]);
        let delivery = [first.clone(), other.clone(), other.clone(), new.clone()];
        let classified = classify_delivery(&delivery, &stored, key);
        assert_eq!(
            classified.duplicates, 2,
            "the stored content, and the refused one again"
        );
        assert_eq!(classified.conflicts.len(), 1);
        let conflict = &classified.conflicts[0];
        assert_eq!(conflict.stored_sha256, first.record.content_sha256());
        assert_eq!(conflict.rejected_sha256, other.record.content_sha256());
        assert_eq!(conflict.identity(), other.identity());
        assert_eq!(classified.fresh.len(), 1);
        assert_eq!(classified.fresh[0].1, &new);
    }
}
