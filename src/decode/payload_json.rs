//! The subscription payload's JSON read in one pass, for the shape CloudWatch Logs
//! writes: each message found by one search for its closing quote, unescaped straight
//! into a string of the right size, and validated once.
//!
//! Decision: this reader declines (`None`) whatever it was not written for — a `\u`
//! escape, a key it does not know or sees twice, a number with a fraction, a message
//! that is not UTF-8, anything that is not JSON — and serde_json then reads the payload
//! as before, with its leniency for bad messages and its error messages. So what this
//! reader returns is what serde_json would have returned (a property test holds it to
//! that on arbitrary and mutated payloads); it only gets there sooner. serde_json alone
//! spends as long on the JSON as base64 and gunzip together, half of it copying each
//! message twice (into a scratch buffer, then into its string) around every `\n`.

use super::payload::{LogEvent, LogsPayload, MessageType};
use crate::swar::{
    decimal, escapes_or_controls, find_byte, first_mark, leading_digits, marks_below, marks_of_byte,
};

/// The payload in `json`, or `None` for serde_json to read it.
pub(super) fn read_payload(json: &[u8]) -> Option<LogsPayload> {
    let mut reader = Reader { json, at: 0 };
    let payload = reader.payload()?;
    reader.skip_blanks();
    (reader.at == json.len()).then_some(payload)
}

struct Reader<'a> {
    json: &'a [u8],
    at: usize,
}

/// Where the next `"` is: an inline look at the first 16 bytes, which holds the end of a
/// short value (the message type, a stream's name), then a vector search (a call) for a
/// longer one's (a message).
fn find_quote(json: &[u8]) -> Option<usize> {
    let near = json.len().min(16);
    find_byte(&json[..near], b'"').or_else(|| Some(near + memchr::memchr(b'"', &json[near..])?))
}

/// The byte a backslash and `escape` stand for; `None` for a `\u` escape, which is
/// serde_json's (surrogates, lone ones included), and for what is not an escape.
#[inline]
fn unescaped(escape: u8) -> Option<u8> {
    // A table, where a `match` becomes a jump through a table of addresses: a load and an
    // indirect jump for every line of every message.
    const UNESCAPED: [u8; 256] = {
        let mut table = [0; 256];
        table[b'"' as usize] = b'"';
        table[b'\\' as usize] = b'\\';
        table[b'/' as usize] = b'/';
        table[b'n' as usize] = b'\n';
        table[b'r' as usize] = b'\r';
        table[b't' as usize] = b'\t';
        table[b'b' as usize] = 0x08;
        table[b'f' as usize] = 0x0c;
        table
    };
    Some(UNESCAPED[usize::from(escape)]).filter(|&byte| byte != 0)
}

/// Stores a member's value, declining a member seen twice (serde refuses it).
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

impl<'a> Reader<'a> {
    fn skip_blanks(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.json.get(self.at) {
            self.at += 1;
        }
    }

    /// Consumes `byte` after blanks, if it is next.
    fn take(&mut self, byte: u8) -> bool {
        self.skip_blanks();
        let next = self.json.get(self.at) == Some(&byte);
        if next {
            self.at += 1;
        }
        next
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.take(byte).then_some(())
    }

    /// Reads `{ "key": value, … }`, handing each key to `member`, which reads the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.take(b'}') {
            return Some(());
        }
        loop {
            let key = self.key()?;
            self.expect(b':')?;
            member(self, key)?;
            if !self.take(b',') {
                return self.expect(b'}');
            }
        }
    }

    /// Reads `[ item, … ]`.
    fn array<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        if self.take(b']') {
            return Some(items);
        }
        loop {
            items.push(item(self)?);
            if !self.take(b',') {
                self.expect(b']')?;
                return Some(items);
            }
        }
    }

    fn payload(&mut self) -> Option<LogsPayload> {
        let mut message_type = None;
        let mut owner = None;
        let mut log_group = None;
        let mut log_stream = None;
        let mut subscription_filters = None;
        let mut log_events = None;
        self.object(|reader, key| match key {
            b"messageType" => set_once(&mut message_type, reader.message_type()?),
            b"owner" => set_once(&mut owner, reader.string()?),
            b"logGroup" => set_once(&mut log_group, reader.string()?),
            b"logStream" => set_once(&mut log_stream, reader.string()?),
            b"subscriptionFilters" => {
                set_once(&mut subscription_filters, reader.array(Self::string)?)
            }
            b"logEvents" => set_once(&mut log_events, reader.array(Self::event)?),
            _ => None,
        })?;
        Some(LogsPayload {
            message_type: message_type?,
            owner: owner.unwrap_or_default(),
            log_group: log_group?,
            log_stream: log_stream?,
            subscription_filters: subscription_filters.unwrap_or_default(),
            log_events: log_events?,
            undecodable: Vec::new(),
        })
    }

    fn message_type(&mut self) -> Option<MessageType> {
        Some(match self.string()?.as_str() {
            "DATA_MESSAGE" => MessageType::DataMessage,
            "CONTROL_MESSAGE" => MessageType::ControlMessage,
            _ => MessageType::Unknown,
        })
    }

    fn event(&mut self) -> Option<LogEvent> {
        let start = self.at;
        if let Some(event) = self.compact_event() {
            return Some(event);
        }
        self.at = start;
        let mut id = None;
        let mut timestamp = None;
        let mut message = None;
        self.object(|reader, key| match key {
            b"id" => set_once(&mut id, reader.string()?),
            b"timestamp" => set_once(&mut timestamp, reader.integer()?),
            b"message" => set_once(&mut message, reader.string()?),
            _ => None,
        })?;
        Some(LogEvent {
            id: id?,
            timestamp: timestamp?,
            message: message?,
        })
    }

    /// A log event as CloudWatch writes it — `{"id":"<digits>","timestamp":<integer>,
    /// "message":"…"}` without blanks, the last two in either order — read by comparing
    /// its fixed parts, where [`Self::object`] looks for blanks around every token and
    /// dispatches on each key. `None` for any other event, which the caller then reads
    /// from its start: so this reads only what that reads, to the same event.
    fn compact_event(&mut self) -> Option<LogEvent> {
        const ID: &[u8] = b"{\"id\":\"";
        let id_start = self.at + ID.len();
        let id_end = id_start + leading_digits(self.json.get(self.at..)?.strip_prefix(ID)?);
        self.at = id_end;
        let (timestamp, message) = if self.literal(b"\",\"timestamp\":") {
            let timestamp = self.integer()?;
            self.literal(b",\"message\":").then_some(())?;
            (timestamp, self.string()?)
        } else if self.literal(b"\",\"message\":") {
            let message = self.string()?;
            self.literal(b",\"timestamp\":").then_some(())?;
            (self.integer()?, message)
        } else {
            return None;
        };
        self.expect(b'}')?;
        // Digits only: no escape to undo.
        let id = std::str::from_utf8(&self.json[id_start..id_end]).ok()?;
        Some(LogEvent {
            id: id.to_owned(),
            timestamp,
            message,
        })
    }

    /// Consumes `text` if it is next, blanks not skipped.
    fn literal(&mut self, text: &[u8]) -> bool {
        let next = self
            .json
            .get(self.at..)
            .is_some_and(|rest| rest.starts_with(text));
        if next {
            self.at += text.len();
        }
        next
    }

    /// A key, which in these payloads never has an escape (one with any is declined).
    fn key(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let json: &'a [u8] = self.json;
        let rest = json.get(self.at..)?;
        // A log event's keys, compared whole: no search, so no branch on where it ends.
        for known in [&b"id"[..], b"timestamp", b"message"] {
            if rest.get(known.len()) == Some(&b'"') && rest.starts_with(known) {
                self.at += known.len() + 1;
                return Some(&rest[..known.len()]);
            }
        }
        // Other keys are a few bytes: looked at one by one, where a message's end is
        // searched for. The first byte that is not plain must be the closing quote.
        let length = rest
            .iter()
            .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)?;
        (rest[length] == b'"').then(|| {
            self.at += length + 1;
            &rest[..length]
        })
    }

    /// Where the string starting after blanks has its content, quotes excluded; moves
    /// past its closing quote.
    fn string_bounds(&mut self) -> Option<(usize, usize)> {
        self.expect(b'"')?;
        let start = self.at;
        let mut search = start;
        let end = loop {
            let quote = search + find_quote(self.json.get(search..)?)?;
            // A quote is escaped when an odd number of backslashes precedes it.
            let backslashes = self.json[start..quote]
                .iter()
                .rev()
                .take_while(|&&byte| byte == b'\\')
                .count();
            if backslashes % 2 == 0 {
                break quote;
            }
            search = quote + 1;
        };
        self.at = end + 1;
        Some((start, end))
    }

    /// A string, unescaped into a buffer of its escaped length (never less than needed).
    fn string(&mut self) -> Option<String> {
        let (start, end) = self.string_bounds()?;
        let mut rest = &self.json[start..end];
        // The text never runs ahead of the input, so its escaped length is room enough,
        // even for the whole words copied below.
        let mut text = Vec::with_capacity(rest.len());
        loop {
            // Sixteen bytes at a time while they hold no backslash or control character,
            // then the last word: a message has a `\n` every few dozen bytes, too often
            // for a search call per stretch to pay. A chunk is copied whole before it is
            // looked at (a copy of a fixed size is one move, one of a run's length a call
            // to `memcpy`), and what follows its first special byte is cut off again.
            while let Some(chunk) = rest.first_chunk::<16>() {
                text.extend_from_slice(chunk);
                let special = escapes_or_controls(chunk);
                if special == 0 {
                    rest = &rest[16..];
                } else {
                    let plain = special.trailing_zeros() as usize;
                    text.truncate(text.len() - 16 + plain);
                    rest = &rest[plain..];
                    break;
                }
            }
            if let Some(chunk) = rest.first_chunk::<8>().filter(|_| rest.len() < 16) {
                text.extend_from_slice(chunk);
                let word = u64::from_le_bytes(*chunk);
                let special = marks_of_byte(word, b'\\') | marks_below(word, 0x20);
                // Advancing by a constant, not by where the mark is, keeps the next
                // word's load off this one's arithmetic.
                if special == 0 {
                    rest = &rest[8..];
                } else {
                    let plain = first_mark(special);
                    text.truncate(text.len() - 8 + plain);
                    rest = &rest[plain..];
                }
            }
            let Some((&byte, after)) = rest.split_first() else {
                break;
            };
            rest = after;
            text.push(match byte {
                b'\\' => {
                    let (&escape, after) = rest.split_first()?;
                    rest = after;
                    unescaped(escape)?
                }
                // JSON forbids control characters raw in a string.
                0x00..0x20 => return None,
                _ => byte,
            });
        }
        String::from_utf8(text).ok()
    }

    /// An integer that fits `i64`, in JSON's grammar: no leading zero, no `+`, no
    /// fraction or exponent (those serde_json reads or refuses itself).
    fn integer(&mut self) -> Option<i64> {
        self.skip_blanks();
        let negative = self.json.get(self.at) == Some(&b'-');
        let digits_start = self.at + usize::from(negative);
        let digits = leading_digits(self.json.get(digits_start..)?);
        let first = *self.json.get(digits_start)?;
        let next = self.json.get(digits_start + digits);
        if digits == 0 || (first == b'0' && digits > 1) || matches!(next, Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        let magnitude =
            i64::try_from(decimal(&self.json[digits_start..digits_start + digits])?).ok()?;
        self.at = digits_start + digits;
        // `i64::MIN` is declined with the other values past `i64::MAX`: serde reads it.
        Some(if negative { -magnitude } else { magnitude })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::awslogs::parse_payload;
    use proptest::prelude::*;

    const PAYLOAD: &str = r#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/cloudhsm/cluster-1","logStream":"hsm-1","subscriptionFilters":["audit"],"logEvents":[{"id":"3754","timestamp":1700000000000,"message":"Time: 11/14/23 22:13:20.000000, usecs:1700000000000000\nSequence No : 0x1\n\"quoted\" \\ back\tslash\/"},{"id":"3755","timestamp":-5,"message":""}]}"#;

    fn serde_reading(json: &[u8]) -> Option<LogsPayload> {
        serde_json::from_slice(json).ok()
    }

    #[test]
    fn reads_what_serde_json_reads() {
        let fast = read_payload(PAYLOAD.as_bytes()).expect("the fast reader takes it");
        assert_eq!(Some(&fast), serde_reading(PAYLOAD.as_bytes()).as_ref());
        assert_eq!(
            fast.log_events[0].message,
            "Time: 11/14/23 22:13:20.000000, usecs:1700000000000000\nSequence No : 0x1\n\"quoted\" \\ back\tslash/"
        );
        let spaced = " {\n \"logEvents\" : [ ] ,\"logStream\":\"s\", \"logGroup\":\"g\",\t\"messageType\":\"SOMETHING\"}\r\n";
        let fast = read_payload(spaced.as_bytes()).expect("blanks, other order, defaults");
        assert_eq!(fast.message_type, MessageType::Unknown);
        assert_eq!(Some(fast), serde_reading(spaced.as_bytes()));
    }

    #[test]
    fn events_in_any_other_form_than_cloudwatchs_are_read_the_same() {
        for events in [
            r#"{"id":"x1","timestamp":1,"message":"m"}"#,
            r#"{"timestamp":1,"id":"2","message":"m"}"#,
            r#"{"id":"3","timestamp":1,"message":"m" }"#,
            r#"{"id":"4","timestamp":01,"message":"m"}"#,
            r#"{"id":"8","message":"m","timestamp":3}"#,
            r#"{"id":"9","message":"m","timestamp":3,"id":"9"}"#,
            r#"{"id":"5","timestamp":1,"message":"m","extra":1}"#,
            r#"{"id":"6","timestamp":1,"message":"m"},{"id":"7","timestamp":2.5,"message":"m"}"#,
        ] {
            let json = format!(
                r#"{{"messageType":"DATA_MESSAGE","logGroup":"g","logStream":"s","logEvents":[{events}]}}"#
            );
            let fast = read_payload(json.as_bytes());
            if let Some(fast) = &fast {
                assert_eq!(
                    Some(fast),
                    serde_reading(json.as_bytes()).as_ref(),
                    "{events}"
                );
            }
            // What the fast reader declines, serde_json reads or refuses itself.
            assert_eq!(
                fast.is_some(),
                !events.contains("01")
                    && !events.contains("2.5")
                    && !events.contains("extra")
                    && !events.contains(r#""id":"9""#),
                "{events}"
            );
        }
    }

    #[test]
    fn unescapes_every_short_escape_as_serde_json_does() {
        let json = PAYLOAD.replace("slash", r#"\b\f\r\n\t\/\\\"."#);
        let fast = read_payload(json.as_bytes()).expect("the fast reader takes it");
        assert!(
            fast.log_events[0]
                .message
                .ends_with("back\t\u{8}\u{c}\r\n\t/\\\"./")
        );
        assert_eq!(Some(fast), serde_reading(json.as_bytes()));
    }

    #[test]
    fn declines_what_it_was_not_written_for() {
        for json in [
            PAYLOAD.replace("slash", "\\u00e9"),
            PAYLOAD.replace("\"owner\"", "\"other\""),
            PAYLOAD.replace("\"owner\":\"123456789012\"", "\"logStream\":\"x\""),
            PAYLOAD.replace("1700000000000,", "1.7e12,"),
            PAYLOAD.replace("1700000000000,", "01,"),
            PAYLOAD.replace("1700000000000,", "99999999999999999999,"),
            PAYLOAD.replace("hsm-1", "hsm\u{1}1"),
            PAYLOAD.replace("\"hsm-1\"", "\"hsm-1\"x"),
            format!("{PAYLOAD} x"),
            PAYLOAD.replace("\"logGroup\":\"/aws/cloudhsm/cluster-1\",", ""),
        ] {
            assert_eq!(read_payload(json.as_bytes()), None, "{json}");
        }
        let mut not_text = PAYLOAD.as_bytes().to_vec();
        let at = PAYLOAD.find("back").expect("in the payload");
        not_text[at] = 0xff;
        assert_eq!(read_payload(&not_text), None);
        // What it declines is still read, by serde_json: a `\u` escape for one.
        let escaped = PAYLOAD.replace("slash", "\\u00e9");
        let payload = parse_payload(escaped.as_bytes()).expect("serde_json reads it");
        assert!(payload.log_events[0].message.ends_with("back\té/"));
    }

    #[test]
    fn takes_every_payload_of_the_benchmark_workload() {
        use crate::testkit::unpack;
        use crate::testkit::workload::{WorkloadSpec, generate};
        let spec = WorkloadSpec {
            records: 3000,
            records_per_payload: 500,
            ..WorkloadSpec::default()
        };
        for payload in generate(&spec) {
            let json = unpack(payload.event["awslogs"]["data"].as_str().expect("data"));
            let fast = read_payload(&json).expect("the reader takes it");
            assert_eq!(fast.log_events.len(), payload.records);
            assert_eq!(Some(fast), serde_reading(&json));
        }
    }

    /// Messages with every kind of character JSON escapes, and some it does not.
    fn message() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("\n".to_owned()),
                Just("\"".to_owned()),
                Just("\\".to_owned()),
                Just("\r\t/".to_owned()),
                Just("\u{1}\u{1f}é😀".to_owned()),
                "[ -~]{0,12}",
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        /// Whatever serde_json writes, the reader reads as serde_json does.
        #[test]
        fn agrees_with_serde_json_on_what_it_writes(
            messages in proptest::collection::vec((message(), any::<i64>()), 0..6),
            group in "[ -~]{0,20}",
        ) {
            let events: Vec<_> = messages
                .iter()
                .enumerate()
                .map(|(id, (message, timestamp))| {
                    serde_json::json!({"id": id.to_string(), "timestamp": timestamp, "message": message})
                })
                .collect();
            let json = serde_json::json!({
                "messageType": "DATA_MESSAGE", "logGroup": group, "logStream": "s",
                "logEvents": events,
            })
            .to_string();
            let expected = serde_reading(json.as_bytes());
            prop_assert!(expected.is_some());
            match read_payload(json.as_bytes()) {
                Some(fast) => prop_assert_eq!(Some(fast), expected),
                // Only what it was not written for: an escaped control character, i64::MIN.
                None => prop_assert!(
                    json.contains("\\u") || messages.iter().any(|(_, t)| *t == i64::MIN)
                ),
            }
        }

        /// On any bytes it takes, it returns what serde_json returns.
        #[test]
        fn never_takes_what_serde_json_reads_otherwise(
            cut in 0..PAYLOAD.len(),
            byte in any::<u8>(),
            insert in any::<bool>(),
        ) {
            let mut json = PAYLOAD.as_bytes().to_vec();
            if insert {
                json.insert(cut, byte);
            } else {
                json[cut] = byte;
            }
            if let Some(fast) = read_payload(&json) {
                prop_assert_eq!(Some(fast), serde_reading(&json));
            }
        }
    }
}
