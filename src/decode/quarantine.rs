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
    /// The whole content, byte for byte, when `raw` is cut (up to [`MAX_KEPT_BYTES`]): the
    /// store keeps it in parts beside the item, so a quarantined payload stays recoverable
    /// (`hsm-audit quarantine --export <raw_sha256>`).
    #[serde(skip)]
    pub content: Option<Vec<u8>>,
}

/// The largest content kept whole. A Lambda event is at most 6 MB; only a file given to
/// the CLI can be larger, and the CLI still has the file.
pub const MAX_KEPT_BYTES: usize = 16 * 1024 * 1024;

impl Quarantined {
    pub fn new(reason: impl Into<String>, raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let mut cut = text.len().min(MAX_RAW_BYTES);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        // `raw` is not the content itself when cut or when the content is not UTF-8 (made
        // readable with replacement characters): then the content is kept whole.
        let lossy = matches!(text, std::borrow::Cow::Owned(_));
        let content =
            ((cut < text.len() || lossy) && raw.len() <= MAX_KEPT_BYTES).then(|| raw.to_vec());
        Self {
            reason: reason.into(),
            log_group: None,
            log_stream: None,
            log_event_id: None,
            raw: text[..cut].to_owned(),
            raw_truncated: cut < text.len(),
            raw_bytes: raw.len(),
            raw_sha256: hex::encode(Sha256::digest(raw)),
            content,
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
    fn content_that_raw_does_not_hold_is_kept_whole() {
        let long = "x".repeat(MAX_RAW_BYTES + 1);
        let item = Quarantined::new("too big", long.as_bytes());
        assert_eq!(item.content.as_deref(), Some(long.as_bytes()));
        let binary = Quarantined::new("not text", b"a\xffb");
        assert_eq!(binary.content.as_deref(), Some(&b"a\xffb"[..]));
        assert_eq!(Quarantined::new("bad", b"abc").content, None);
    }

    #[test]
    fn small_content_is_kept_whole() {
        let item = Quarantined::new("bad", b"abc").at("g", "s", Some("1"));
        assert!(!item.raw_truncated);
        assert_eq!(item.raw, "abc");
        assert_eq!(item.log_event_id.as_deref(), Some("1"));
    }
}
