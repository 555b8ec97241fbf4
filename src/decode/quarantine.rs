//! What could not be processed, kept with its reason so that nothing is lost silently.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Raw content longer than this is cut (on a character boundary) and identified by its
/// digest instead, which keeps a quarantine item far below DynamoDB's 400 KB item limit.
pub const MAX_RAW_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub reason: String,
    pub log_group: Option<String>,
    pub log_stream: Option<String>,
    pub log_event_id: Option<String>,
    /// The content as received, cut to [`MAX_RAW_BYTES`].
    pub raw: String,
    pub raw_truncated: bool,
    pub raw_bytes: usize,
    /// Digest of the whole content, so a truncated item still identifies its original.
    pub raw_sha256: String,
}

impl Quarantined {
    pub fn new(reason: impl Into<String>, raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let mut cut = text.len().min(MAX_RAW_BYTES);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        Self {
            reason: reason.into(),
            log_group: None,
            log_stream: None,
            log_event_id: None,
            raw: text[..cut].to_owned(),
            raw_truncated: cut < text.len(),
            raw_bytes: raw.len(),
            raw_sha256: hex::encode(Sha256::digest(raw)),
        }
    }

    pub fn at(mut self, log_group: &str, log_stream: &str, log_event_id: Option<&str>) -> Self {
        // Bounded: names longer than CloudWatch allows come only from hostile input, and
        // the quarantine item must still fit DynamoDB's item limit.
        let bounded = |name: &str| {
            let mut name = name.to_owned();
            crate::model::bounds::bound_text(&mut name);
            name
        };
        self.log_group = Some(bounded(log_group));
        self.log_stream = Some(bounded(log_stream));
        self.log_event_id = log_event_id.map(bounded);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_content_is_cut_on_a_char_boundary_and_keeps_its_digest() {
        let raw = "é".repeat(MAX_RAW_BYTES);
        let item = Quarantined::new("too big", raw.as_bytes());
        assert!(item.raw_truncated);
        assert!(item.raw.len() <= MAX_RAW_BYTES);
        assert_eq!(item.raw_bytes, raw.len());
        assert_eq!(item.raw_sha256, hex::encode(Sha256::digest(raw.as_bytes())));
    }

    #[test]
    fn small_content_is_kept_whole() {
        let item = Quarantined::new("bad", b"abc").at("g", "s", Some("1"));
        assert!(!item.raw_truncated);
        assert_eq!(item.raw, "abc");
        assert_eq!(item.log_event_id.as_deref(), Some("1"));
    }
}
