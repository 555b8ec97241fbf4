//! The trail and its alerts as OCSF events, for Amazon Security Lake and other SIEMs:
//! logins as Authentication (3002), user management as Account Change (3001), key
//! lifecycle operations as Entity Management (3004), every other record as API Activity
//! (6003), alerts as Detection Finding (2004). Pure: `hsm-audit export` writes them.
//!
//! Design decision: **OCSF 1.7.0.** `raw_data_hash`, which carries the record's digest,
//! exists from 1.7 on; `metadata.sequence` and `metadata.original_time` carry the HSM's
//! own sequence number and microsecond time, which OCSF's millisecond `time` cannot.
//! Nothing is dropped: a record no class describes better is an API Activity named by
//! its opcode.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::alerts::{Severity, StoredAlert, detail_type, severity};
use crate::model::{AuditRecord, HsmRecord, LunaRecord, Opcode, TrailEntry};

pub const OCSF_VERSION: &str = "1.7.0";

/// The OCSF classes written, each to a folder of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OcsfClass {
    AccountChange,
    Authentication,
    EntityManagement,
    DetectionFinding,
    ApiActivity,
}

impl OcsfClass {
    pub fn uid(self) -> u32 {
        match self {
            OcsfClass::AccountChange => 3001,
            OcsfClass::Authentication => 3002,
            OcsfClass::EntityManagement => 3004,
            OcsfClass::DetectionFinding => 2004,
            OcsfClass::ApiActivity => 6003,
        }
    }

    /// The class's name in the schema: the folder it is written to.
    pub fn name(self) -> &'static str {
        match self {
            OcsfClass::AccountChange => "account_change",
            OcsfClass::Authentication => "authentication",
            OcsfClass::EntityManagement => "entity_management",
            OcsfClass::DetectionFinding => "detection_finding",
            OcsfClass::ApiActivity => "api_activity",
        }
    }

    fn caption(self) -> &'static str {
        match self {
            OcsfClass::AccountChange => "Account Change",
            OcsfClass::Authentication => "Authentication",
            OcsfClass::EntityManagement => "Entity Management",
            OcsfClass::DetectionFinding => "Detection Finding",
            OcsfClass::ApiActivity => "API Activity",
        }
    }

    fn category(self) -> (u32, &'static str) {
        match self {
            OcsfClass::AccountChange | OcsfClass::Authentication | OcsfClass::EntityManagement => {
                (3, "Identity & Access Management")
            }
            OcsfClass::DetectionFinding => (2, "Findings"),
            OcsfClass::ApiActivity => (6, "Application Activity"),
        }
    }
}

/// One OCSF event and its class.
#[derive(Debug, Clone, PartialEq)]
pub struct OcsfEvent {
    pub class: OcsfClass,
    pub event: Value,
}

/// What a record did, as a class and an activity of it.
struct Activity {
    class: OcsfClass,
    id: u32,
    name: String,
}

impl Activity {
    fn of(class: OcsfClass, id: u32, name: &str) -> Self {
        Self {
            class,
            id,
            name: name.to_owned(),
        }
    }
}

/// API Activity has no activity for "ran this HSM command": `Other`, named by it.
const OTHER: u32 = 99;

fn hsm_activity(opcode: &Opcode) -> Activity {
    use OcsfClass::{AccountChange, Authentication, EntityManagement};
    match opcode {
        Opcode::Login => Activity::of(Authentication, 1, "Logon"),
        Opcode::Logout => Activity::of(Authentication, 2, "Logoff"),
        Opcode::CreateUser | Opcode::CreateCo | Opcode::CreateApplianceUser => {
            Activity::of(AccountChange, 1, "Create")
        }
        Opcode::ChangePswd => Activity::of(AccountChange, 3, "Password Change"),
        Opcode::DeleteUser => Activity::of(AccountChange, 6, "Delete"),
        Opcode::GenerateKey
        | Opcode::GenerateKeyPair
        | Opcode::CreateObject
        | Opcode::UnwrapKey
        | Opcode::DeriveKey
        | Opcode::InsertMaskedObjectUser => Activity::of(EntityManagement, 1, "Create"),
        Opcode::WrapKey | Opcode::NistAesWrap | Opcode::ExtractMaskedObjectUser => {
            Activity::of(EntityManagement, 2, "Read")
        }
        Opcode::ModifyObject | Opcode::ShareObject | Opcode::TombstoneObject => {
            Activity::of(EntityManagement, 3, "Update")
        }
        Opcode::DestroyObject => Activity::of(EntityManagement, 4, "Delete"),
        other => Activity::of(OcsfClass::ApiActivity, OTHER, other.as_str()),
    }
}

fn luna_activity(action: &str) -> Activity {
    use OcsfClass::{Authentication, EntityManagement};
    match action {
        "LUNA_LOGIN" => Activity::of(Authentication, 1, "Logon"),
        "LUNA_LOGOUT" => Activity::of(Authentication, 2, "Logoff"),
        "LUNA_GENERATE_KEY"
        | "LUNA_GENERATE_KEY_PAIR"
        | "LUNA_CREATE_OBJECT"
        | "LUNA_COPY_OBJECT"
        | "LUNA_UNWRAP_KEY"
        | "LUNA_DERIVE_KEY" => Activity::of(EntityManagement, 1, "Create"),
        "LUNA_WRAP_KEY" => Activity::of(EntityManagement, 2, "Read"),
        "LUNA_MODIFY_OBJECT" => Activity::of(EntityManagement, 3, "Update"),
        "LUNA_DESTROY_OBJECT" => Activity::of(EntityManagement, 4, "Delete"),
        other => Activity::of(OcsfClass::ApiActivity, OTHER, other),
    }
}

fn certificate_activity(op_code: &str) -> Activity {
    use OcsfClass::EntityManagement;
    match op_code {
        "CreateObject" => Activity::of(EntityManagement, 1, "Create"),
        "SetAttributeValues" => Activity::of(EntityManagement, 3, "Update"),
        "DestroyObject" => Activity::of(EntityManagement, 4, "Delete"),
        other => Activity::of(OcsfClass::ApiActivity, OTHER, other),
    }
}

/// OCSF's user types, from CloudHSM's (`CN_CRYPTO_USER`, `CN_CRYPTO_OFFICER`, …) and
/// Luna's roles (`CU`, `CO`, `PO`).
fn user_type(label: &str) -> (u32, &'static str) {
    match label {
        "CN_CRYPTO_USER" | "CU" => (1, "User"),
        "CN_CRYPTO_OFFICER" | "CN_CRYPTO_PRE_OFFICER" | "CO" | "PO" => (2, "Admin"),
        "CN_APPLIANCE_USER" => (3, "System"),
        "" => (0, "Unknown"),
        _ => (99, "Other"),
    }
}

fn user(name: Option<&str>, kind: Option<&str>, uid: Option<&str>) -> Value {
    let mut user = serde_json::Map::new();
    if let Some(name) = name {
        user.insert("name".into(), json!(name));
    }
    if let Some(uid) = uid {
        user.insert("uid".into(), json!(uid));
    }
    let (type_id, type_name) = user_type(kind.unwrap_or_default());
    user.insert("type_id".into(), json!(type_id));
    user.insert("type".into(), json!(type_name));
    Value::Object(user)
}

fn millis(time: crate::model::Timestamp) -> i64 {
    time.micros().div_euclid(1000)
}

/// The attributes every event has: class, activity, time, severity, status, and the
/// record's origin (`metadata`) and digest (`raw_data_hash`).
fn base(
    entry: &TrailEntry,
    activity: &Activity,
    succeeded: bool,
) -> serde_json::Map<String, Value> {
    let class = activity.class;
    let (category_uid, category_name) = class.category();
    let (seq, uid) = match &entry.record {
        AuditRecord::CloudHsm(record) => (
            Some(record.sequence_no),
            format!(
                "{}/{:#x}/{:#x}",
                entry.stream().hsm,
                record.reboot_counter,
                record.sequence_no
            ),
        ),
        _ => (
            None,
            format!("{}/{}", entry.stream().hsm, entry.log_event_id),
        ),
    };
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {"name": product_name(&entry.record), "vendor_name": vendor_name(&entry.record)},
        "uid": uid,
        "original_time": entry.record.time().iso(),
        "logged_time": millis(entry.log_event_time),
        "log_name": entry.log_group(),
        "log_source": &*entry.stream().hsm,
        "original_event_uid": entry.log_event_id,
    });
    if let Some(seq) = seq {
        metadata["sequence"] = json!(seq);
    }
    let (status_id, status) = if succeeded {
        (1, "Success")
    } else {
        (2, "Failure")
    };
    let mut event = serde_json::Map::new();
    event.insert("class_uid".into(), json!(class.uid()));
    event.insert("class_name".into(), json!(class.caption()));
    event.insert("category_uid".into(), json!(category_uid));
    event.insert("category_name".into(), json!(category_name));
    event.insert("activity_id".into(), json!(activity.id));
    event.insert("activity_name".into(), json!(activity.name));
    event.insert("type_uid".into(), json!(class.uid() * 100 + activity.id));
    event.insert(
        "type_name".into(),
        json!(format!("{}: {}", class.caption(), activity.name)),
    );
    event.insert("time".into(), json!(millis(entry.record.time())));
    // A refused command is worth a look; the trail's routine is informational.
    let (severity_id, severity_name) = if succeeded {
        (1, "Informational")
    } else {
        (2, "Low")
    };
    event.insert("severity_id".into(), json!(severity_id));
    event.insert("severity".into(), json!(severity_name));
    event.insert("status_id".into(), json!(status_id));
    event.insert("status".into(), json!(status));
    event.insert("metadata".into(), metadata);
    event.insert("raw_data".into(), json!(entry.raw));
    event.insert(
        "raw_data_hash".into(),
        json!({
            "algorithm_id": 3,
            "algorithm": "SHA-256",
            "value": hex::encode(Sha256::digest(entry.raw.as_bytes())),
        }),
    );
    event
}

fn product_name(record: &AuditRecord) -> &'static str {
    match record {
        AuditRecord::CloudHsm(_) => "CloudHSM",
        AuditRecord::Certificate(_) => "CloudHSM certificate storage",
        AuditRecord::Luna(_) => "Luna Cloud HSM",
    }
}

fn vendor_name(record: &AuditRecord) -> &'static str {
    match record {
        AuditRecord::Luna(_) => "Thales",
        _ => "AWS",
    }
}

/// A trail record as its OCSF event.
pub fn record_event(entry: &TrailEntry) -> OcsfEvent {
    match &entry.record {
        AuditRecord::CloudHsm(record) => hsm_event(entry, record),
        AuditRecord::Certificate(record) => {
            let activity = certificate_activity(&record.op_code);
            let mut event = base(entry, &activity, record.succeeded());
            event.insert("status_detail".into(), json!(record.response));
            let handle = record.object_handle.map(|handle| handle.to_string());
            fill(
                &mut event,
                &activity,
                &record.op_code,
                None,
                handle.as_deref(),
                "Certificate",
            );
            finish(activity.class, event)
        }
        AuditRecord::Luna(record) => luna_event(entry, record),
    }
}

fn hsm_event(entry: &TrailEntry, record: &HsmRecord) -> OcsfEvent {
    let activity = hsm_activity(&record.opcode);
    let mut event = base(entry, &activity, record.succeeded());
    event.insert(
        "status_code".into(),
        json!(format!("{:#x}", record.response_code)),
    );
    event.insert("status_detail".into(), json!(record.response_text));
    let later = record.later();
    let actor = user(
        record.user_name.as_deref(),
        record.user_type.as_ref().map(|kind| kind.name.as_ref()),
        later.user_id.as_deref(),
    );
    let handle = record.key_handle.filter(|handle| *handle != 0);
    match activity.class {
        OcsfClass::Authentication => {
            event.insert("user".into(), actor);
            event.insert(
                "session".into(),
                json!({"uid": record.session_handle.to_string()}),
            );
        }
        OcsfClass::AccountChange => {
            // The seed's layout does not name whom the command changed; the later one does.
            let target = user(
                later.target_user_name.as_deref(),
                later
                    .target_user_type
                    .as_ref()
                    .map(|kind| kind.name.as_ref()),
                later.target_user_id.as_deref(),
            );
            event.insert("user".into(), target);
            event.insert("actor".into(), json!({"user": actor}));
        }
        _ => {
            let handle = handle.map(|handle| handle.to_string());
            fill(
                &mut event,
                &activity,
                record.opcode.as_str(),
                Some(actor),
                handle.as_deref(),
                "Key",
            );
        }
    }
    finish(activity.class, event)
}

fn luna_event(entry: &TrailEntry, record: &LunaRecord) -> OcsfEvent {
    let activity = luna_activity(&record.action);
    let mut event = base(entry, &activity, record.succeeded());
    event.insert("status_detail".into(), json!(record.status));
    let actor = user(
        record.actor_id.as_deref(),
        record.role.as_deref(),
        record.actor_id.as_deref(),
    );
    if let Some(ip) = &record.client_ip {
        event.insert("src_endpoint".into(), json!({"ip": ip}));
    }
    match activity.class {
        OcsfClass::Authentication => {
            event.insert("user".into(), actor);
        }
        _ => {
            let object = record.object_ids.first().map(String::as_str);
            fill(
                &mut event,
                &activity,
                &record.action,
                Some(actor),
                object,
                "Key",
            );
        }
    }
    finish(activity.class, event)
}

/// The attributes of Entity Management (the object acted on) and API Activity (the
/// command, and where it came from when known).
fn fill(
    event: &mut serde_json::Map<String, Value>,
    activity: &Activity,
    operation: &str,
    actor: Option<Value>,
    object: Option<&str>,
    object_type: &str,
) {
    if let Some(actor) = actor {
        event.insert("actor".into(), json!({"user": actor}));
    }
    match activity.class {
        OcsfClass::EntityManagement => {
            let mut entity = json!({"type": object_type});
            if let Some(object) = object {
                entity["uid"] = json!(object);
                entity["name"] = json!(format!("{object_type} {object}"));
            }
            event.insert("entity".into(), entity);
            event.insert("comment".into(), json!(operation));
        }
        _ => {
            event.insert(
                "api".into(),
                json!({"operation": operation, "service": {"name": "CloudHSM"}}),
            );
            event.entry("src_endpoint").or_insert_with(|| json!({}));
            event
                .entry("actor")
                .or_insert_with(|| json!({"user": user(None, None, None)}));
        }
    }
}

fn finish(class: OcsfClass, event: serde_json::Map<String, Value>) -> OcsfEvent {
    OcsfEvent {
        class,
        event: Value::Object(event),
    }
}

/// An alert as a Detection Finding, created at the alert's time.
pub fn alert_event(stored: &StoredAlert) -> OcsfEvent {
    let alert = &stored.alert;
    let class = OcsfClass::DetectionFinding;
    let (category_uid, category_name) = class.category();
    let (severity_id, severity_name) = match severity(alert) {
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
    };
    let time = millis(alert.time);
    let title = format!("{} on {}", detail_type(alert.kind), stored.cluster);
    let mut event = json!({
        "class_uid": class.uid(),
        "class_name": class.caption(),
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": class.uid() * 100 + 1,
        "type_name": "Detection Finding: Create",
        "time": time,
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": 1,
        "status": "New",
        "is_alert": true,
        "message": alert.detail.clone().unwrap_or_else(|| title.clone()),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "hsm-audit", "vendor_name": "hsm-audit"},
            "uid": stored.id,
            "original_time": alert.time.iso(),
            "log_name": stored.table,
        },
        "finding_info": {
            "uid": stored.id,
            "title": title,
            "desc": stored.cli_command(),
            "types": [alert.kind.as_str()],
            "created_time": time,
            "first_seen_time": time,
            "last_seen_time": time,
        },
        "resources": [{"name": stored.cluster, "uid": stored.cluster, "type": "CloudHSM cluster"}],
        "unmapped": {
            "hsm": alert.hsm,
            "reboot_counter": alert.reboot_counter,
            "from": alert.from,
            "to": alert.to,
            "seq": alert.seq,
            "user": alert.user,
            "opcode": alert.opcode.as_ref().map(Opcode::as_str),
            "console_query": stored.console_query(),
        },
    });
    if let Some(seq) = alert.seq.or(alert.from) {
        event["metadata"]["sequence"] = json!(seq);
    }
    OcsfEvent { class, event }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::tests::{gap, stored};

    #[test]
    fn each_opcode_family_goes_to_its_class_and_activity() {
        let of = |opcode: Opcode| {
            let activity = hsm_activity(&opcode);
            (activity.class, activity.id)
        };
        assert_eq!(of(Opcode::Login), (OcsfClass::Authentication, 1));
        assert_eq!(of(Opcode::Logout), (OcsfClass::Authentication, 2));
        assert_eq!(of(Opcode::CreateUser), (OcsfClass::AccountChange, 1));
        assert_eq!(of(Opcode::ChangePswd), (OcsfClass::AccountChange, 3));
        assert_eq!(of(Opcode::DeleteUser), (OcsfClass::AccountChange, 6));
        assert_eq!(
            of(Opcode::GenerateKeyPair),
            (OcsfClass::EntityManagement, 1)
        );
        assert_eq!(of(Opcode::WrapKey), (OcsfClass::EntityManagement, 2));
        assert_eq!(of(Opcode::DestroyObject), (OcsfClass::EntityManagement, 4));
        assert_eq!(of(Opcode::Zeroize), (OcsfClass::ApiActivity, OTHER));
        assert_eq!(
            luna_activity("LUNA_DESTROY_OBJECT").class,
            OcsfClass::EntityManagement
        );
        assert_eq!(
            certificate_activity("Unknown").class,
            OcsfClass::ApiActivity
        );
    }

    #[test]
    fn an_alert_is_a_detection_finding_with_its_id_and_severity() {
        let event = alert_event(&stored(gap()));
        assert_eq!(event.class, OcsfClass::DetectionFinding);
        let event = event.event;
        assert_eq!(event["type_uid"], 200401);
        assert_eq!(event["severity_id"], 3);
        assert_eq!(
            event["finding_info"]["uid"],
            "ALERT#2018-01-24T00:39:23.172777Z#sequence_gap#x"
        );
        assert_eq!(event["finding_info"]["types"], json!(["sequence_gap"]));
        assert_eq!(event["metadata"]["sequence"], 0x20);
        assert_eq!(event["time"], 1_516_754_363_172_i64);
        assert_eq!(
            event["metadata"]["original_time"],
            "2018-01-24T00:39:23.172777Z"
        );
    }
}
