//! Sort keys as plain strings: where a record stands in its cluster's trail, and how a
//! name from the input becomes part of a key. Apart from the item layout
//! (`store::dynamodb::items`) because the derivation orders and resumes streams by these
//! positions without speaking DynamoDB.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::model::RecordIdentity;

/// The longest key part. DynamoDB refuses sort keys over 1,024 bytes (partition keys over
/// 2,048); a user name or stream name from hostile input must stay data, not become a
/// request that fails on every retry.
const MAX_KEY_PART: usize = 200;

/// Hex digits of the SHA-256 a long key part ends in: 128 bits, so two long values that
/// share a readable start still never share a key.
const KEY_DIGEST_HEX: usize = 32;

/// Marks a key part cut down to its start and a digest. Escaped in every value, so no
/// input can produce a cut-down form of its own.
const CUT_MARKER: char = '~';

/// `text` as a key part: itself when it holds nothing to escape and is short (the console
/// stays readable: `SESSION#alice#2018-…`); else `%`, `#` and `~` escaped (`%25`, `%23`,
/// `%7E`), so that a part never contains the separator and a prefix query ending in `#`
/// matches whole parts only; and past [`MAX_KEY_PART`] bytes, the escaped start, `~` and
/// a digest of the whole value, never a cut alone. The mapping is injective: escaping is,
/// a short form never contains `~`, and a long form's digest covers the whole value.
pub fn key_part(text: &str) -> Cow<'_, str> {
    let needs_escape = text.bytes().any(|byte| matches!(byte, b'%' | b'#' | b'~'));
    if !needs_escape && text.len() <= MAX_KEY_PART {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        match character {
            '%' => escaped.push_str("%25"),
            '#' => escaped.push_str("%23"),
            CUT_MARKER => escaped.push_str("%7E"),
            other => escaped.push(other),
        }
    }
    if escaped.len() <= MAX_KEY_PART {
        return Cow::Owned(escaped);
    }
    let mut cut = MAX_KEY_PART - KEY_DIGEST_HEX - 1;
    while !escaped.is_char_boundary(cut) {
        cut -= 1;
    }
    // An escape split in two would read as a different character.
    if let Some(percent) = escaped[..cut].rfind('%')
        && percent + 3 > cut
    {
        cut = percent;
    }
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    Cow::Owned(format!(
        "{}{CUT_MARKER}{}",
        &escaped[..cut],
        &digest[..KEY_DIGEST_HEX]
    ))
}

/// Where a record with a sequence number stands: fixed-width hex, so that string order
/// is sequence order.
pub fn trail_sk(hsm: &str, reboot_counter: u32, sequence_no: u64) -> String {
    format!(
        "{HSM_PREFIX}{}#RC#{reboot_counter:08x}#SEQ#{sequence_no:016x}",
        key_part(hsm)
    )
}

/// Sort-key prefix of one stream's records without sequence numbers (certificate
/// storage, Luna), in log event id order.
pub fn log_stream_prefix(stream: &str) -> String {
    format!("{LOG_EVENT_PREFIX}{}#EVENT#", key_part(stream))
}

/// Sort-key prefix of one HSM's trail.
pub fn hsm_trail_prefix(hsm: &str) -> String {
    format!("{HSM_PREFIX}{}#", key_part(hsm))
}

/// The sort key a record is stored under in its cluster's trail partition.
pub fn identity_sk(identity: &RecordIdentity) -> String {
    match identity {
        RecordIdentity::Sequence {
            hsm,
            reboot_counter,
            sequence_no,
        } => trail_sk(hsm, *reboot_counter, *sequence_no),
        RecordIdentity::LogEvent {
            stream,
            log_event_id,
        } => format!(
            "{LOG_EVENT_PREFIX}{}#EVENT#{}",
            key_part(stream),
            key_part(log_event_id)
        ),
    }
}

/// Records with a sequence number, under their HSM.
pub const HSM_PREFIX: &str = "HSM#";
/// Records without a sequence number, under their log stream and event id.
pub const LOG_EVENT_PREFIX: &str = "LOG#";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_becomes_a_bounded_distinct_key_part() {
        assert_eq!(key_part("admin"), "admin");
        assert_eq!(key_part("a#b%c~d"), "a%23b%25c%7Ed");
        let long = "u".repeat(2048);
        let other = format!("{}v", "u".repeat(2047));
        assert!(key_part(&long).len() <= MAX_KEY_PART);
        let cut = key_part(&long).into_owned();
        assert_eq!(cut.matches(CUT_MARKER).count(), 1);
        assert_ne!(
            key_part(&cut),
            cut,
            "a cut-down form given as input is escaped, not taken as itself"
        );
        let escapes = "#".repeat(100);
        let part = key_part(&escapes);
        let (start, _) = part.split_once(CUT_MARKER).expect("cut down");
        assert!(
            start.len() % 3 == 0 && start.chars().all(|c| "%23".contains(c)),
            "no escape is split: {start}"
        );
        assert_ne!(
            key_part(&long),
            key_part(&other),
            "the digest keeps long values apart"
        );
        assert_eq!(key_part(&long), key_part(&long.clone()));
        let wide = "é".repeat(300);
        assert!(
            key_part(&wide).len() <= MAX_KEY_PART,
            "cut on a character boundary"
        );
    }
}
