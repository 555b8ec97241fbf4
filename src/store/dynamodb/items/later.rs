//! The later CloudHSM layout's fields as trail item attributes: flat like the seed
//! layout's, a label split into its name and `…_code`, and absent ones left out, so an
//! item of a record in the seed's layout has exactly the attributes it had before.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Labeled, LaterFields, shared_name};

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct LaterTrailFields {
    #[serde(default)]
    version_no: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    target_user_name: Option<String>,
    #[serde(default)]
    target_user_type: Option<Cow<'static, str>>,
    #[serde(default)]
    target_user_type_code: Option<u64>,
    #[serde(default)]
    target_user_id: Option<String>,
    #[serde(default)]
    mfa_enabled: Option<String>,
    #[serde(default)]
    mechanism: Option<String>,
    #[serde(default)]
    local_time: Option<String>,
    #[serde(default)]
    host_time: Option<String>,
    #[serde(default)]
    propagation_delay_us: Option<u64>,
    #[serde(default)]
    share_operation: Option<Cow<'static, str>>,
    #[serde(default)]
    share_operation_code: Option<u64>,
    #[serde(default)]
    share_user_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    share_user_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    extra_fields: BTreeMap<String, String>,
}

impl LaterTrailFields {
    pub(super) fn of(later: &LaterFields) -> Self {
        let label = |label: &Option<Labeled>| {
            label
                .as_ref()
                .map(|label| (label.name.clone(), label.code))
                .unzip()
        };
        let (target_user_type, target_user_type_code) = label(&later.target_user_type);
        let (share_operation, share_operation_code) = label(&later.share_operation);
        Self {
            version_no: later.version_no.clone(),
            user_id: later.user_id.clone(),
            target_user_name: later.target_user_name.clone(),
            target_user_type,
            target_user_type_code: target_user_type_code.flatten(),
            target_user_id: later.target_user_id.clone(),
            mfa_enabled: later.mfa_enabled.clone(),
            mechanism: later.mechanism.clone(),
            local_time: later.local_time.clone(),
            host_time: later.host_time.clone(),
            propagation_delay_us: later.propagation_delay_us,
            share_operation,
            share_operation_code: share_operation_code.flatten(),
            share_user_count: later.share_user_count,
            share_user_ids: later.share_user_ids.clone(),
            extra_fields: later.extra_fields.clone(),
        }
    }

    pub(super) fn into_record(self) -> LaterFields {
        LaterFields {
            version_no: self.version_no,
            user_id: self.user_id,
            target_user_name: self.target_user_name,
            target_user_type: self.target_user_type.map(|name| Labeled {
                name: shared_name(name),
                code: self.target_user_type_code,
            }),
            target_user_id: self.target_user_id,
            mfa_enabled: self.mfa_enabled,
            mechanism: self.mechanism,
            local_time: self.local_time,
            host_time: self.host_time,
            propagation_delay_us: self.propagation_delay_us,
            share_operation: self.share_operation.map(|name| Labeled {
                name: shared_name(name),
                code: self.share_operation_code,
            }),
            share_user_count: self.share_user_count,
            share_user_ids: self.share_user_ids,
            extra_fields: self.extra_fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{trail_entry_from_item, trail_item};
    use crate::model::{AuditRecord, LogSource, Timestamp, TrailEntry};
    use crate::parse::parse_cloudhsm_record;

    fn entry(text: &str) -> TrailEntry {
        TrailEntry {
            source: LogSource::shared("/aws/cloudhsm/cluster-x", "hsm-a"),
            record: AuditRecord::CloudHsm(parse_cloudhsm_record(text).unwrap()),
            log_event_id: "1".into(),
            log_event_time: Timestamp::from_micros(1),
            raw: text.into(),
        }
    }

    const LATER: &str = "Time: 03/14/24 10:00:01.000100, usecs:1710410401000100
Version No : 2
Sequence No : 0x11
Reboot counter : 0x3
Opcode : CN_SHARE_OBJECT (0x12)
Command Type(hex) : CN_MGMT_CMD (0x0)
Session Handle : 0x2004001
Response : 0:HSM Return: SUCCESS
Log type : MGMT_KEY_DETAILS_LOG (1)
User Name : admin
User Type : CN_CRYPTO_OFFICER (2)
User id : 2
Target User Name : bob
Target User Type : CN_CRYPTO_USER (1)
Target User id : 7
Mfa enabled : 0
Mechanism : 4224
Operation : SHARE (1)
Number of Users : 2
UserIDs : 9,10
propagation delay : usec:40
Audit Policy : 0x3
";

    #[test]
    fn later_fields_are_flat_attributes_and_read_back() {
        let entry = entry(LATER);
        let item = trail_item(&entry).unwrap();
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).cloned();
        assert_eq!(text("target_user_name").as_deref(), Some("bob"));
        assert_eq!(text("target_user_type").as_deref(), Some("CN_CRYPTO_USER"));
        assert_eq!(number("target_user_type_code").as_deref(), Some("1"));
        assert_eq!(text("target_user_id").as_deref(), Some("7"));
        assert_eq!(text("user_id").as_deref(), Some("2"));
        assert_eq!(text("version_no").as_deref(), Some("2"));
        assert_eq!(text("mfa_enabled").as_deref(), Some("0"));
        assert_eq!(text("mechanism").as_deref(), Some("4224"));
        assert_eq!(text("share_operation").as_deref(), Some("SHARE"));
        assert_eq!(number("share_user_count").as_deref(), Some("2"));
        assert_eq!(number("propagation_delay_us").as_deref(), Some("40"));
        let ids = item.get("share_user_ids").and_then(|v| v.as_l().ok());
        assert_eq!(ids.map(Vec::len), Some(2));
        let extra = item.get("extra_fields").and_then(|v| v.as_m().ok());
        assert_eq!(
            extra
                .and_then(|m| m.get("Audit Policy"))
                .and_then(|v| v.as_s().ok())
                .map(String::as_str),
            Some("0x3")
        );
        assert_eq!(trail_entry_from_item(item).unwrap(), entry);
    }

    #[test]
    fn a_seed_layout_item_has_no_later_attributes() {
        let entry = entry(crate::testkit::INIT_TOKEN_RECORD);
        let item = trail_item(&entry).unwrap();
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec![
                "cluster",
                "command_type",
                "command_type_code",
                "content_sha256",
                "hsm",
                "item_type",
                "log_event_id",
                "log_event_time",
                "log_group",
                "log_type",
                "log_type_code",
                "opcode",
                "opcode_code",
                "pk",
                "raw",
                "raw_truncated",
                "reboot_counter",
                "response",
                "response_code",
                "sequence_no",
                "session_handle",
                "sk",
                "success",
                "time",
                "usecs",
            ]
        );
        assert_eq!(trail_entry_from_item(item).unwrap(), entry);
    }
}
