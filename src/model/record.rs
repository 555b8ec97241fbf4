//! One CloudHSM audit record, and the trail entry that ties it to where it was read.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Opcode, Timestamp};

/// The hex SHA-256 of `value`'s JSON, hashed as it is written rather than from a copy.
/// These records are plain strings and numbers, so writing them cannot fail; if it did,
/// the digest is that of no content, as a failed `to_vec` gave before.
fn json_sha256(value: &impl Serialize) -> String {
    struct HashWriter(Sha256);
    impl std::io::Write for HashWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut writer = HashWriter(Sha256::new());
    if serde_json::to_writer(&mut writer, value).is_err() {
        return hex::encode(Sha256::digest([]));
    }
    hex::encode(writer.0.finalize())
}

/// A name logged together with its number, as in `CN_CRYPTO_USER (1)`. The number is
/// absent where the HSM logs none (`GENERIC_LOG`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Labeled {
    /// Shared when it is one of the names HSMs log ([`super::shared_name`]).
    pub name: Cow<'static, str>,
    pub code: Option<u64>,
}

/// A parsed CloudHSM audit record. Every field the HSM logs is here, typed; fields that
/// only some log types carry are `None` where absent. Key handles of 0 mean "no key".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HsmRecord {
    /// From `usecs:`, which is authoritative; the human-readable time is not kept
    /// separately because it is the same instant at a lower resolution.
    pub time: Timestamp,
    pub sequence_no: u64,
    pub reboot_counter: u32,
    pub command_type: Labeled,
    pub opcode: Opcode,
    pub opcode_code: Option<u64>,
    pub session_handle: u64,
    pub response_code: u32,
    /// Shared when it is one of the common responses ([`super::shared_name`]).
    pub response_text: Cow<'static, str>,
    pub log_type: Labeled,
    pub user_name: Option<String>,
    pub user_type: Option<Labeled>,
    pub key_handle: Option<u64>,
    pub public_key_handle: Option<u64>,
    /// What records of current HSMs carry beyond the seed's layout; `None` when the
    /// record has none of it (read it through [`HsmRecord::later`]). Boxed, and absent
    /// for the seed's layout, so a record costs what it did before these fields existed.
    #[serde(flatten, deserialize_with = "later_unless_empty")]
    pub later: Option<Box<LaterFields>>,
}

/// No later-layout fields, for records that have none.
static NO_LATER_FIELDS: LaterFields = LaterFields {
    version_no: None,
    user_id: None,
    target_user_name: None,
    target_user_type: None,
    target_user_id: None,
    mfa_enabled: None,
    mechanism: None,
    local_time: None,
    host_time: None,
    propagation_delay_us: None,
    share_operation: None,
    share_user_count: None,
    share_user_ids: Vec::new(),
    extra_fields: BTreeMap::new(),
};

/// Reads the flattened later-layout fields, `None` when there are none, so a record read
/// back equals the record parsed.
fn later_unless_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Box<LaterFields>>, D::Error> {
    LaterFields::deserialize(deserializer).map(LaterFields::boxed)
}

/// The fields of the later CloudHSM record layout, all optional, and every `Key : value`
/// the parser does not know.
///
/// Decision: each is left out of the record's JSON when absent or empty, so a record in
/// the seed's layout serializes, and so digests ([`HsmRecord::content_sha256`]), exactly
/// as before these fields existed; stored trails keep recognising redeliveries.
/// Identifiers and free-form values are kept as logged (`User id`, `Mechanism`, the local
/// and host times): nothing decides on them but equality, and a value this version
/// cannot type must not cost the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaterFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_no: Option<String>,
    /// The id of `User Name`, the actor when the record names a target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user a user-management command acts on; `User Name` is then the actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_user_type: Option<Labeled>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_enabled: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// `local time`, as logged (`MM/DD/YY HH:MM:SS, usec:N`); `Time`'s `usecs` stays the
    /// record's instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_time: Option<String>,
    /// `host time`, as logged (`MM/DD/YY HH:MM:SS usec:N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_time: Option<String>,
    /// `propagation delay : usec:N`, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation_delay_us: Option<u64>,
    /// `Operation` of `CN_SHARE_OBJECT`: `SHARE` or `UNSHARE`, with its number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_operation: Option<Labeled>,
    /// `Number of Users` a share names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_user_count: Option<u64>,
    /// `UserIDs` a share names, each as logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub share_user_ids: Vec<String>,
    /// Every `Key : value` this version does not know, by key, so nothing a newer HSM
    /// logs is lost; a key logged twice keeps both values, joined by a line break.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_fields: BTreeMap<String, String>,
}

impl LaterFields {
    /// These fields as a record holds them: `None` when there are none.
    pub fn boxed(self) -> Option<Box<Self>> {
        (self != NO_LATER_FIELDS).then(|| Box::new(self))
    }

    /// Whether the record names a user acted upon apart from `User Name`.
    pub fn names_target(&self) -> bool {
        self.target_user_name.is_some()
            || self.target_user_type.is_some()
            || self.target_user_id.is_some()
    }
}

impl HsmRecord {
    pub fn succeeded(&self) -> bool {
        self.response_code == 0
    }

    /// A `CN_LOGIN` the HSM refused: what the brute-force rule counts.
    pub fn is_failed_login(&self) -> bool {
        self.opcode == Opcode::Login && !self.succeeded()
    }

    /// The later layout's fields, all absent for a record in the seed's layout.
    pub fn later(&self) -> &LaterFields {
        self.later.as_deref().unwrap_or(&NO_LATER_FIELDS)
    }

    /// The later layout's fields, to set some.
    pub fn later_mut(&mut self) -> &mut LaterFields {
        self.later.get_or_insert_with(Box::default)
    }

    /// A digest of the parsed content, so that the same record in another layout (CRLF,
    /// flattened) is recognised as the same, and different content under the same
    /// identity as a conflict.
    pub fn content_sha256(&self) -> String {
        json_sha256(self)
    }
}

/// The log stream a record was read from: CloudHSM writes one stream per HSM into a log
/// group per cluster, and the HSM id is not inside the records. Shared: every record of
/// a payload has the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId {
    pub cluster: Arc<str>,
    pub hsm: Arc<str>,
}

impl StreamId {
    /// `/aws/cloudhsm/cluster-abc` names cluster `cluster-abc`; any other group is used whole.
    pub fn from_log(log_group: &str, log_stream: &str) -> Self {
        let cluster = log_group
            .strip_prefix("/aws/cloudhsm/")
            .filter(|rest| !rest.is_empty())
            .unwrap_or(log_group);
        Self {
            cluster: cluster.into(),
            hsm: log_stream.into(),
        }
    }
}

/// A certificate-storage audit record (PKCS #11 certificate storage, Client SDK 5): one
/// JSON object a message in the stream named for the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// From `timestamp` (Unix milliseconds).
    pub time: Timestamp,
    /// 64-bit and often above 2^53, so never read through a float; null on failures.
    pub object_handle: Option<u64>,
    /// `CreateObject`, `DestroyObject`, `SetAttributeValues`, or another name verbatim.
    pub op_code: String,
    /// `OK`, or the error (`MaxObjectsReached`, `ObjectNotFound`, …).
    pub response: String,
    pub attributes: Option<Vec<String>>,
}

impl CertificateRecord {
    pub fn succeeded(&self) -> bool {
        self.response == "OK"
    }
}

/// A Thales Luna Cloud HSM (DPoD) service audit record. Names and codes are kept
/// verbatim (`LUNA_*` actions, `LUNA_RET_*` statuses), including ones this version does
/// not know, because the vendor's list grows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LunaRecord {
    /// One-second resolution: the vendor logs per second.
    pub time: Timestamp,
    pub action: String,
    /// `LUNA_RET_OK` on success, else the return code's name.
    pub status: String,
    /// `thales/cloudhsm/<partitionID>`.
    pub source: Option<String>,
    /// The DPoD service id.
    pub resource_id: Option<String>,
    /// The client id of the Luna client that acted.
    pub actor_id: Option<String>,
    pub tenant_id: Option<String>,
    /// `meta.partid`, else the partition id of `source`.
    pub partition_id: Option<String>,
    /// `meta.hsmid`: the serial number of the HSM that ran the action.
    pub hsm_id: Option<String>,
    pub client_ip: Option<String>,
    /// `PO`, `CO`, `CU`, or `public` when the action needed no login.
    pub role: Option<String>,
    /// `meta.ouids`: Luna object ids, verbatim (they are not CloudHSM handles).
    pub object_ids: Vec<String>,
    /// The record's own `id`, where DPoD gives one.
    pub record_id: Option<String>,
}

/// The Luna action of a login, the one the brute-force rule and sessions look for.
pub const LUNA_LOGIN: &str = "LUNA_LOGIN";

impl LunaRecord {
    pub fn succeeded(&self) -> bool {
        self.status == "LUNA_RET_OK"
    }

    /// A `LUNA_LOGIN` the HSM refused.
    pub fn is_failed_login(&self) -> bool {
        self.action == LUNA_LOGIN && !self.succeeded()
    }
}

/// Any audit record the trail holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum AuditRecord {
    CloudHsm(HsmRecord),
    Certificate(CertificateRecord),
    Luna(LunaRecord),
}

impl AuditRecord {
    pub fn time(&self) -> Timestamp {
        match self {
            AuditRecord::CloudHsm(record) => record.time,
            AuditRecord::Certificate(record) => record.time,
            AuditRecord::Luna(record) => record.time,
        }
    }

    /// A login the HSM refused, of either vendor (certificate storage has no logins).
    pub fn is_failed_login(&self) -> bool {
        match self {
            AuditRecord::CloudHsm(record) => record.is_failed_login(),
            AuditRecord::Certificate(_) => false,
            AuditRecord::Luna(record) => record.is_failed_login(),
        }
    }

    /// The name of what the record did: the CloudHSM opcode, the certificate-storage
    /// operation or the Luna action, verbatim where it is not known.
    pub fn opcode_name(&self) -> &str {
        match self {
            AuditRecord::CloudHsm(record) => record.opcode.as_str(),
            AuditRecord::Certificate(record) => &record.op_code,
            AuditRecord::Luna(record) => &record.action,
        }
    }

    /// A digest of the parsed content: the same record in another layout is the same
    /// record, and different content under one identity is a conflict.
    pub fn content_sha256(&self) -> String {
        match self {
            AuditRecord::CloudHsm(record) => record.content_sha256(),
            AuditRecord::Certificate(record) => json_sha256(record),
            AuditRecord::Luna(record) => json_sha256(record),
        }
    }
}

/// What makes an audit record unique: re-delivery of the same identity is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordIdentity {
    /// CloudHSM records: the HSM's own numbering, unique per HSM and boot.
    Sequence {
        hsm: String,
        reboot_counter: u32,
        sequence_no: u64,
    },
    /// Records without a sequence number: the CloudWatch log event id, which CloudWatch
    /// keeps unique and stable across deliveries (subscription and `FilterLogEvents`).
    LogEvent {
        stream: String,
        log_event_id: String,
    },
}

impl RecordIdentity {
    /// The stream (the HSM of a CloudHSM record), and the reboot counter and sequence
    /// number where the record has them: how alerts and conflicts name a record.
    pub fn into_parts(self) -> (String, Option<u32>, Option<u64>) {
        match self {
            RecordIdentity::Sequence {
                hsm,
                reboot_counter,
                sequence_no,
            } => (hsm, Some(reboot_counter), Some(sequence_no)),
            RecordIdentity::LogEvent { stream, .. } => (stream, None, None),
        }
    }
}

/// Where in CloudWatch records were logged: the same for every record of a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSource {
    pub stream: StreamId,
    pub log_group: Arc<str>,
}

impl LogSource {
    /// The source of a log group's stream, for the records of one payload to share.
    pub fn shared(log_group: &str, log_stream: &str) -> Arc<Self> {
        Arc::new(Self {
            stream: StreamId::from_log(log_group, log_stream),
            log_group: log_group.into(),
        })
    }
}

/// A record as stored in the trail: the parsed record, where it came from in CloudWatch
/// (so an auditor can find the original), and the original text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailEntry {
    /// Shared by every record of a payload: one reference count to raise per record,
    /// where a stream's and a group's names each had one (each an atomic operation).
    #[serde(flatten)]
    pub source: Arc<LogSource>,
    pub record: AuditRecord,
    pub log_event_id: String,
    pub log_event_time: Timestamp,
    pub raw: String,
}

impl TrailEntry {
    pub fn stream(&self) -> &StreamId {
        &self.source.stream
    }

    pub fn log_group(&self) -> &str {
        &self.source.log_group
    }

    pub fn identity(&self) -> RecordIdentity {
        match &self.record {
            AuditRecord::CloudHsm(record) => RecordIdentity::Sequence {
                hsm: self.source.stream.hsm.to_string(),
                reboot_counter: record.reboot_counter,
                sequence_no: record.sequence_no,
            },
            // Luna records have no sequence number either; whoever builds the entry
            // chooses the event id (see `decode::luna_files`).
            AuditRecord::Certificate(_) | AuditRecord::Luna(_) => RecordIdentity::LogEvent {
                stream: self.source.stream.hsm.to_string(),
                log_event_id: self.log_event_id.clone(),
            },
        }
    }

    pub fn cloudhsm(&self) -> Option<&HsmRecord> {
        match &self.record {
            AuditRecord::CloudHsm(record) => Some(record),
            _ => None,
        }
    }

    pub fn certificate(&self) -> Option<&CertificateRecord> {
        match &self.record {
            AuditRecord::Certificate(record) => Some(record),
            _ => None,
        }
    }

    pub fn luna(&self) -> Option<&LunaRecord> {
        match &self.record {
            AuditRecord::Luna(record) => Some(record),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_comes_from_the_cloudhsm_log_group() {
        let stream = StreamId::from_log("/aws/cloudhsm/cluster-abc", "hsm-1");
        assert_eq!(&*stream.cluster, "cluster-abc");
        assert_eq!(&*stream.hsm, "hsm-1");
        assert_eq!(&*StreamId::from_log("my-group", "h").cluster, "my-group");
        assert_eq!(
            &*StreamId::from_log("/aws/cloudhsm/", "h").cluster,
            "/aws/cloudhsm/"
        );
    }
}
