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
//! conflicts), `sensitive` (sensitive operations), `certificates` (certificate
//! lifecycles from certificate-storage records) and `luna` (Thales Luna records onto the
//! same sessions, lifecycles, failed logins and alerts).

use serde::{Deserialize, Serialize};

use crate::model::{Opcode, RecordIdentity, Timestamp, TrailEntry};

mod certificates;
mod integrity;
mod keys;
mod logins;
mod luna;
mod records;
mod sensitive;
mod sessions;
#[cfg(test)]
mod testkit;

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
}

impl Default for DeriveConfig {
    fn default() -> Self {
        Self {
            mirror_window_micros: 5_000_000,
            brute_force_threshold: 5,
            brute_force_window_micros: 300_000_000,
            luna_idle_window_micros: 900_000_000,
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

/// Everything derived for one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derived {
    pub sessions: Vec<ClusterSession>,
    pub keys: Vec<KeyGeneration>,
    pub failed_logins: Vec<FailedLogin>,
    pub alerts: Vec<Alert>,
    pub streams: Vec<StreamSummary>,
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
    pub opcode: Opcode,
    pub success: bool,
    /// The user a user-management command acts on (`User Name` of that record).
    pub target_user: Option<String>,
    pub key_handles: Vec<u64>,
    /// Luna object ids (`meta.ouids`) the command named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub object_ids: Vec<String>,
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
}

impl KeyGeneration {
    /// The documented order of key listings: by handle (Luna objects by id), then generation.
    pub fn listing_order(a: &Self, b: &Self) -> std::cmp::Ordering {
        (a.handle, &a.object_id, a.generation, &a.kind).cmp(&(
            b.handle,
            &b.object_id,
            b.generation,
            &b.kind,
        ))
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
    /// Certificate storage failed for a reason of its own (`MaxObjectsReached`,
    /// `InternalFailure`), not of the request.
    CertificateStorageError,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::BruteForce => "brute_force",
            AlertKind::SequenceGap => "sequence_gap",
            AlertKind::ConflictingDuplicate => "conflicting_duplicate",
            AlertKind::SensitiveOperation => "sensitive_operation",
            AlertKind::Reboot => "reboot",
            AlertKind::CertificateStorageError => "certificate_storage_error",
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
/// The result is sorted, so equal inputs in any order give equal output.
pub fn derive(entries: &[TrailEntry], conflicts: &[Conflict], config: &DeriveConfig) -> Derived {
    let recs = records::prepare(entries);
    let sessions::SessionView { sessions, actors } =
        sessions::derive(&recs, config.mirror_window_micros);
    let mut keys = keys::derive(&recs, &actors, config.mirror_window_micros);
    let (certificates, certificate_alerts) = certificates::derive(entries);
    keys.extend(certificates);
    let luna = luna::derive(entries, config);
    keys.extend(luna.keys);
    keys.sort_by(KeyGeneration::listing_order);
    let mut sessions = sessions;
    if !luna.sessions.is_empty() {
        sessions.extend(luna.sessions);
        sessions.sort_by(ClusterSession::listing_order);
    }
    let mut failed_logins = logins::failures(&recs);
    failed_logins.extend(luna.failed_logins);
    let mut alerts = logins::flag_brute_force(&mut failed_logins, config);
    alerts.extend(luna.alerts);
    alerts.extend(certificate_alerts);
    let (streams, integrity_alerts) = integrity::derive(&recs, conflicts);
    alerts.extend(integrity_alerts);
    alerts.extend(sensitive::derive(&recs, &actors));
    alerts.sort_by(alert_order);
    alerts.dedup();
    Derived {
        sessions,
        keys,
        failed_logins,
        alerts,
        streams,
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
