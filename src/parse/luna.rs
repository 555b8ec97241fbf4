//! Thales Luna Cloud HSM (DPoD) service audit records: one JSON object each.
//!
//! Leniency contract, because the same record reaches us through several hands (the DPoD
//! Audit Query API's export file, a forwarder into CloudWatch Logs) and the vendor's own
//! documents spell it differently:
//! - field names are matched case-insensitively (`resourceid` in the service page,
//!   `resourceID`/`actorID`/`tenantID` in exported files);
//! - `meta` is a JSON *string* holding an object (as documented), or the object itself,
//!   or absent/null;
//! - `meta.ouids` is null, one id, several ids separated by commas, or a list; ids stay
//!   strings (Luna object ids are not CloudHSM's numeric handles);
//! - `time` (or `timestamp`) is `2022-10-30 14:52:47 UTC` (the export files), RFC 3339,
//!   or Unix seconds/milliseconds, as a number or a string; it is cut to the second, the
//!   resolution the vendor logs at;
//! - unknown actions and statuses are kept verbatim.
//!
//! What is refused, with the reason: text that is not a JSON object, an object whose
//! `action` does not start with `LUNA_` or that has neither `source` nor `meta` (not a
//! Luna record), a missing `status` or time, and a `meta` string that is not JSON.

use chrono::{DateTime, NaiveDateTime};
use serde_json::{Map, Value};

use crate::model::{LunaRecord, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Luna audit record: {0}")]
pub struct LunaParseError(String);

fn refuse(reason: impl Into<String>) -> LunaParseError {
    LunaParseError(reason.into())
}

/// Cheap test used to pick the parser for a message.
pub fn looks_like_luna_record(text: &str) -> bool {
    text.trim_start().starts_with('{') && text.contains("\"LUNA_")
}

pub fn parse_luna_record(text: &str) -> Result<LunaRecord, LunaParseError> {
    let value: Value = serde_json::from_str(text.trim())
        .map_err(|error| refuse(format!("invalid JSON: {error}")))?;
    luna_record_from_value(&value)
}

/// The same, from an already parsed value (an element of an export file's array).
pub fn luna_record_from_value(value: &Value) -> Result<LunaRecord, LunaParseError> {
    let Value::Object(object) = value else {
        return Err(refuse("not a JSON object"));
    };
    let fields = Fields(object);
    let action = fields
        .text("action")
        .ok_or_else(|| refuse("field `action` is missing or not a string"))?;
    if !action.starts_with("LUNA_") {
        return Err(refuse(format!(
            "action `{action}` does not start with LUNA_"
        )));
    }
    let meta = match fields.get("meta") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(meta)) => meta.clone(),
        Some(Value::String(text)) if text.trim().is_empty() => Map::new(),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(meta)) => meta,
            Ok(_) => return Err(refuse("field `meta` is a string but not a JSON object")),
            Err(error) => {
                return Err(refuse(format!(
                    "field `meta` is a string but not JSON: {error}"
                )));
            }
        },
        Some(_) => return Err(refuse("field `meta` is neither an object nor a string")),
    };
    let source = fields.text("source");
    if source.is_none() && fields.get("meta").is_none() {
        return Err(refuse("neither `source` nor `meta` is present"));
    }
    let status = fields
        .text("status")
        .ok_or_else(|| refuse("field `status` is missing or not a string"))?;
    let time = ["time", "timestamp", "eventtime"]
        .iter()
        .find_map(|name| fields.get(name))
        .ok_or_else(|| refuse("no time: neither `time` nor `timestamp` is present"))
        .and_then(|value| {
            parse_time(value)
                .ok_or_else(|| refuse(format!("field `time` does not read as a time: {value}")))
        })?;
    let meta = Fields(&meta);
    let partition_id = meta.text("partid").or_else(|| {
        source
            .as_deref()
            .and_then(|source| source.strip_prefix("thales/cloudhsm/"))
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
    });
    Ok(LunaRecord {
        time,
        action,
        status,
        source,
        resource_id: fields.text("resourceid"),
        actor_id: fields.text("actorid"),
        tenant_id: fields.text("tenantid"),
        partition_id,
        hsm_id: meta.text("hsmid"),
        client_ip: meta.text("clientip"),
        role: meta.text("role"),
        object_ids: object_ids(meta.get("ouids")),
        record_id: fields.text("id"),
    })
}

/// An object's fields by case-insensitive name.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).or_else(|| {
            self.0
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        })
    }

    /// A string, or a number written as one (serial numbers arrive either way); empty
    /// strings count as absent.
    fn text(&self, name: &str) -> Option<String> {
        scalar_text(self.get(name)?)
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn object_ids(value: Option<&Value>) -> Vec<String> {
    let mut ids: Vec<String> = match value {
        Some(Value::String(text)) => text
            .split([',', ';', ' '])
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
        Some(Value::Number(number)) => vec![number.to_string()],
        _ => Vec::new(),
    };
    let mut seen = std::collections::BTreeSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

/// Unix time below this many seconds… is seconds; above, milliseconds (the year 33658
/// in seconds is far away, and 1e12 ms is 2001).
const MILLIS_FROM: i64 = 100_000_000_000;

fn parse_time(value: &Value) -> Option<Timestamp> {
    let seconds = match value {
        Value::Number(number) => epoch_seconds(number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        })?),
        Value::String(text) => text_seconds(text.trim())?,
        _ => return None,
    };
    Some(Timestamp::from_micros(seconds.checked_mul(1_000_000)?))
}

fn epoch_seconds(number: i64) -> i64 {
    if number.abs() >= MILLIS_FROM {
        number.div_euclid(1000)
    } else {
        number
    }
}

fn text_seconds(text: &str) -> Option<i64> {
    if let Ok(number) = text.parse::<i64>() {
        return Some(epoch_seconds(number));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp());
    }
    // The export files' `2022-10-30 14:52:47 UTC`: a zone name that is always UTC.
    let bare = ["UTC", "GMT", "Z"]
        .iter()
        .find_map(|zone| text.strip_suffix(zone))
        .unwrap_or(text)
        .trim();
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(bare, format).ok())
        .map(|time| time.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's example, with the common fields of an export file.
    const SEED: &str = r#"{"time": "2022-10-30 14:52:47 UTC", "source": "thales/cloudhsm/1334049524932", "resourceid": "f59a597b-19b9-41df-b479-1530ed60fca3", "actorid": "d5fa3ace-a79f-40ba-8e21-3ebf0bf0250a", "tenantid": "b863768a-9b90-4a6a-b8ec-01a7b46a6ca3", "action": "LUNA_LOGIN", "status": "LUNA_RET_OK", "meta": "{\"clientip\":\"10.0.0.1\",\"hsmid\":\"567782\",\"ouids\":\"1a2b3c4d5e6f\",\"partid\":\"1334049524932\",\"role\":\"CO\"}"}"#;

    #[test]
    fn meta_as_a_string_reads_every_field() {
        let record = parse_luna_record(SEED).unwrap();
        assert_eq!(record.time.iso(), "2022-10-30T14:52:47.000000Z");
        assert_eq!(record.action, "LUNA_LOGIN");
        assert!(record.succeeded());
        assert_eq!(
            record.resource_id.as_deref(),
            Some("f59a597b-19b9-41df-b479-1530ed60fca3")
        );
        assert_eq!(
            record.actor_id.as_deref(),
            Some("d5fa3ace-a79f-40ba-8e21-3ebf0bf0250a")
        );
        assert_eq!(record.partition_id.as_deref(), Some("1334049524932"));
        assert_eq!(record.hsm_id.as_deref(), Some("567782"));
        assert_eq!(record.client_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(record.role.as_deref(), Some("CO"));
        assert_eq!(record.object_ids, ["1a2b3c4d5e6f"]);
    }

    #[test]
    fn meta_as_an_object_and_camel_case_names_read_the_same() {
        let text = r#"{"time": "2022-10-30T14:52:47Z", "source": "thales/cloudhsm/1334049524932", "resourceID": "f59a597b-19b9-41df-b479-1530ed60fca3", "actorID": "d5fa3ace-a79f-40ba-8e21-3ebf0bf0250a", "tenantID": "b863768a-9b90-4a6a-b8ec-01a7b46a6ca3", "action": "LUNA_LOGIN", "status": "LUNA_RET_OK", "traceID": "x", "meta": {"clientip": "10.0.0.1", "hsmid": 567782, "ouids": "1a2b3c4d5e6f", "partid": "1334049524932", "role": "CO"}}"#;
        assert_eq!(
            parse_luna_record(text).unwrap(),
            parse_luna_record(SEED).unwrap()
        );
    }

    #[test]
    fn null_one_several_and_listed_ouids() {
        let with = |ouids: &str| {
            parse_luna_record(&format!(
                r#"{{"time": 1667141567, "source": "thales/cloudhsm/77", "action": "LUNA_SIGN", "status": "LUNA_RET_OK", "meta": {{"ouids": {ouids}}}}}"#
            ))
            .unwrap()
            .object_ids
        };
        assert!(with("null").is_empty());
        assert_eq!(with(r#""a1""#), ["a1"]);
        assert_eq!(with(r#""a1, b2,a1""#), ["a1", "b2"]);
        assert_eq!(with(r#"["a1", "b2"]"#), ["a1", "b2"]);
        let record = parse_luna_record(
            r#"{"time": 1667141567, "source": "thales/cloudhsm/77", "action": "LUNA_SIGN", "status": "LUNA_RET_OK", "meta": null}"#,
        )
        .unwrap();
        assert!(record.object_ids.is_empty());
        assert_eq!(
            record.partition_id.as_deref(),
            Some("77"),
            "from the source"
        );
    }

    #[test]
    fn unknown_actions_and_statuses_are_kept_verbatim() {
        let record = parse_luna_record(
            r#"{"time": "1667141567000", "source": "thales/cloudhsm/77", "action": "LUNA_CLONE_CONFIGURE_POLICY", "status": "LUNA_RET_SOMETHING_NEW", "meta": "{}"}"#,
        )
        .unwrap();
        assert_eq!(record.action, "LUNA_CLONE_CONFIGURE_POLICY");
        assert_eq!(record.status, "LUNA_RET_SOMETHING_NEW");
        assert!(!record.succeeded());
        assert_eq!(
            record.time.micros(),
            1_667_141_567_000_000,
            "epoch milliseconds as a string"
        );
    }

    #[test]
    fn time_is_cut_to_the_second() {
        let text = SEED.replace("2022-10-30 14:52:47 UTC", "2022-10-30T14:52:47.912+00:00");
        assert_eq!(
            parse_luna_record(&text).unwrap().time.iso(),
            "2022-10-30T14:52:47.000000Z"
        );
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        let reason = |text: &str| parse_luna_record(text).unwrap_err().to_string();
        assert!(reason(r#"{"action": "LUNA_LOGIN", "source""#).contains("invalid JSON"));
        assert!(reason(r#"["LUNA_LOGIN"]"#).contains("not a JSON object"));
        assert!(reason(SEED.replace("LUNA_LOGIN", "Create Key").as_str()).contains("LUNA_"));
        assert!(
            reason(r#"{"time": 1, "action": "LUNA_LOGIN", "status": "LUNA_RET_OK"}"#)
                .contains("neither `source` nor `meta`")
        );
        assert!(reason(&SEED.replace(r#""status": "LUNA_RET_OK", "#, "")).contains("status"));
        assert!(reason(&SEED.replace("2022-10-30 14:52:47 UTC", "yesterday")).contains("time"));
        assert!(
            reason(r#"{"time": 1, "source": "s", "action": "LUNA_LOGIN", "status": "LUNA_RET_OK", "meta": "{oops"}"#)
                .contains("`meta` is a string but not JSON")
        );
        assert!(!looks_like_luna_record("Time: 01/16/18 01:48:49.824999"));
        assert!(looks_like_luna_record(SEED));
    }
}
