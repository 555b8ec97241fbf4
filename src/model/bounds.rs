//! Bounds on what one record puts into the table. DynamoDB refuses an item over 400 KB,
//! and a refused write fails the whole payload on every retry; a hostile or broken
//! record must become bounded data or a quarantined record, never such a write.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use super::{AuditRecord, Opcode};

/// The longest field kept as it is. CloudHSM user names, opcode names and Luna ids are
/// tens of bytes, CloudWatch names (log group, stream) at most 512; a hostile name of a
/// few KiB is still kept whole (its key part is cut to a digest).
pub const MAX_FIELD_BYTES: usize = 4096;

/// Past this many bytes of fields (after each was bounded), a record is quarantined: only
/// lists (Luna object ids, certificate attributes) can still grow, and a record is ~400
/// bytes. Leaves room under the 400 KB item limit for the raw message (16 KiB) and keys.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// `text` itself when it has at most [`MAX_FIELD_BYTES`], else its start, the original
/// length and the SHA-256 of the whole: `mmmm…[1048576 bytes, sha256 ab12…]`. A cut
/// form is always longer than [`MAX_FIELD_BYTES`], so no value kept as it is can equal
/// one, and two long values that share the start still differ.
pub fn bound_text(text: &mut String) {
    if text.len() <= MAX_FIELD_BYTES {
        return;
    }
    let mut cut = MAX_FIELD_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    let bytes = text.len();
    text.truncate(cut);
    text.push_str(&format!("…[{bytes} bytes, sha256 {digest}]"));
}

/// [`bound_text`] of a name that may be shared: a short one is left as it is.
fn bound_name(name: &mut Cow<'static, str>) {
    if name.len() > MAX_FIELD_BYTES {
        bound_text(name.to_mut());
    }
}

fn bound_option(text: &mut Option<String>) {
    if let Some(text) = text {
        bound_text(text);
    }
}

/// Why a record cannot be stored as it came: the reason it is quarantined for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unstorable {
    #[error(
        "{what} ({micros} µs since the epoch) lies outside the years 0000 to 9999 the trail can store"
    )]
    Time { what: &'static str, micros: i64 },
    #[error("record too large to store: {bytes} bytes of fields (at most {MAX_RECORD_BYTES})")]
    TooLarge { bytes: usize },
    #[error("{what} of {bytes} bytes is longer than the {MAX_FIELD_BYTES} a name may have")]
    NameTooLong { what: &'static str, bytes: usize },
}

/// Bounds every text field of `record` ([`bound_text`]); `Err` when the record is still
/// too large to store.
pub fn bound_record(record: &mut AuditRecord) -> Result<(), Unstorable> {
    match record {
        AuditRecord::CloudHsm(record) => {
            bound_name(&mut record.command_type.name);
            if let Opcode::Other(name) = &mut record.opcode {
                bound_text(name);
            }
            bound_name(&mut record.response_text);
            bound_name(&mut record.log_type.name);
            bound_option(&mut record.user_name);
            if let Some(user_type) = &mut record.user_type {
                bound_name(&mut user_type.name);
            }
            // The later layout's fields, and any field of a layout not yet known.
            if let Some(later) = record.later.as_deref_mut() {
                for field in [
                    &mut later.version_no,
                    &mut later.user_id,
                    &mut later.target_user_name,
                    &mut later.target_user_id,
                    &mut later.mfa_enabled,
                    &mut later.mechanism,
                    &mut later.local_time,
                    &mut later.host_time,
                ] {
                    bound_option(field);
                }
                for label in [&mut later.target_user_type, &mut later.share_operation]
                    .into_iter()
                    .flatten()
                {
                    bound_name(&mut label.name);
                }
                later.share_user_ids.iter_mut().for_each(bound_text);
                later.extra_fields.values_mut().for_each(bound_text);
            }
        }
        AuditRecord::Certificate(record) => {
            bound_text(&mut record.op_code);
            bound_text(&mut record.response);
            record.attributes.iter_mut().flatten().for_each(bound_text);
        }
        AuditRecord::Luna(record) => {
            bound_text(&mut record.action);
            bound_text(&mut record.status);
            for field in [
                &mut record.source,
                &mut record.resource_id,
                &mut record.actor_id,
                &mut record.tenant_id,
                &mut record.partition_id,
                &mut record.hsm_id,
                &mut record.client_ip,
                &mut record.role,
                &mut record.record_id,
            ] {
                bound_option(field);
            }
            record.object_ids.iter_mut().for_each(bound_text);
        }
    }
    let size = serde_json::to_vec(record).map_or(usize::MAX, |json| json.len());
    if size > MAX_RECORD_BYTES {
        return Err(Unstorable::TooLarge { bytes: size });
    }
    Ok(())
}

/// `Err` with the reason when a name from the envelope (log group, stream, event id) is
/// longer than CloudWatch allows: it would go into every item of the record verbatim.
pub fn check_name(what: &'static str, name: &str) -> Result<(), Unstorable> {
    if name.len() > MAX_FIELD_BYTES {
        return Err(Unstorable::NameTooLong {
            what,
            bytes: name.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_its_length_and_digest_and_never_equals_a_kept_value() {
        let mut short = "admin".to_owned();
        bound_text(&mut short);
        assert_eq!(short, "admin");
        let long = "é".repeat(2100);
        let mut cut = long.clone();
        bound_text(&mut cut);
        assert!(cut.len() > MAX_FIELD_BYTES && cut.len() < MAX_FIELD_BYTES + 100);
        assert!(cut.contains("…[4200 bytes, sha256 "), "{cut}");
        let mut other = format!("{long}x");
        bound_text(&mut other);
        assert_ne!(cut, other);
        let mut again = cut.clone();
        bound_text(&mut again);
        assert_ne!(
            again, cut,
            "a cut form given as input is cut again, not kept"
        );
    }
}
