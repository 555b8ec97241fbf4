//! Property-based fuzzing of decode and parse: arbitrary bytes and mutated vendor records.
//! Nothing panics, nothing is lost: every log event comes out as a record or as a
//! quarantine item with a reason, and every input as a payload or a quarantine item.
//!
//! `cargo test` runs a few cases per property (seconds); `make fuzz` runs many
//! (`HSM_AUDIT_FUZZ_CASES`). The inputs that once mattered are kept in
//! `tests/fixtures/fuzz/` and replayed on every run.

use std::path::PathBuf;
use std::sync::OnceLock;

use hsm_audit::decode::{
    Decoded, RawTextSource, decode_awslogs_data, decode_document, decode_event,
};
use hsm_audit::parse::parse_message;
use hsm_audit::pipeline::{Parsed, parse_decoded};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Small enough for the suite's time budget, big enough for payloads of many records;
/// the bomb itself is tests/memory_bounds.rs's subject.
const CAP: usize = 1 << 20;

fn cases() -> u32 {
    std::env::var("HSM_AUDIT_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.trim().parse().ok())
        .unwrap_or(256)
}

fn config() -> Config {
    Config {
        cases: cases(),
        // Shrinking a failure of a many-record payload can take longer than finding it.
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

/// Every vendor example record, in both published layouts.
fn fixtures() -> &'static [String] {
    static FIXTURES: OnceLock<Vec<String>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let mut records = Vec::new();
        for seed in ["seed-000", "seed-002"] {
            let dir = crate::common::repo_path("tests/fixtures").join(seed);
            let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .collect();
            paths.sort();
            for path in paths {
                records.push(std::fs::read_to_string(path).unwrap());
            }
        }
        records
    })
}

const SOURCE_GROUP: &str = "/aws/cloudhsm/cluster-fuzz";

fn source() -> RawTextSource {
    RawTextSource {
        log_group: Some(SOURCE_GROUP.to_owned()),
        log_stream: Some("hsm-fuzz".to_owned()),
    }
}

/// How one record is damaged. Positions are taken modulo the record's length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipByte { at: usize, mask: u8 },
    Truncate { at: usize },
    DuplicateLine { line: usize },
    RemoveLine { line: usize },
    SwapValues { a: usize, b: usize },
    HugeNumber { line: usize, digits: usize },
    InvalidUtf8 { at: usize },
    Crlf,
    Flatten,
    InsertText { at: usize, text: String },
    Empty,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::FlipByte { at, mask }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        any::<usize>().prop_map(|line| Mutation::RemoveLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapValues { a, b }),
        (any::<usize>(), 20..400usize)
            .prop_map(|(line, digits)| Mutation::HugeNumber { line, digits }),
        any::<usize>().prop_map(|at| Mutation::InvalidUtf8 { at }),
        Just(Mutation::Crlf),
        Just(Mutation::Flatten),
        (any::<usize>(), ".{0,40}").prop_map(|(at, text)| Mutation::InsertText { at, text }),
        Just(Mutation::Empty),
    ]
}

fn nth_line(lines: &[String], index: usize) -> Option<usize> {
    (!lines.is_empty()).then(|| index % lines.len())
}

/// Applies `mutation` to `record`'s bytes; the result need not be UTF-8.
fn mutate(record: &str, mutation: &Mutation) -> Vec<u8> {
    let mut bytes = record.as_bytes().to_vec();
    let mut lines: Vec<String> = record.lines().map(str::to_owned).collect();
    let joined = |lines: &[String]| lines.join("\n").into_bytes();
    match mutation {
        Mutation::FlipByte { at, mask } => {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= mask;
            }
            bytes
        }
        Mutation::Truncate { at } => {
            bytes.truncate(at % (bytes.len() + 1));
            bytes
        }
        Mutation::DuplicateLine { line } => {
            if let Some(line) = nth_line(&lines, *line) {
                let copy = lines[line].clone();
                lines.insert(line, copy);
            }
            joined(&lines)
        }
        Mutation::RemoveLine { line } => {
            if let Some(line) = nth_line(&lines, *line) {
                lines.remove(line);
            }
            joined(&lines)
        }
        Mutation::SwapValues { a, b } => {
            if let (Some(a), Some(b)) = (nth_line(&lines, *a), nth_line(&lines, *b)) {
                let value = |line: &str| line.split_once(':').map(|(_, v)| v.to_owned());
                if let (Some(va), Some(vb)) = (value(&lines[a]), value(&lines[b])) {
                    let key = |line: &str| line.split_once(':').map(|(k, _)| k.to_owned());
                    let (ka, kb) = (key(&lines[a]).unwrap(), key(&lines[b]).unwrap());
                    lines[a] = format!("{ka}:{vb}");
                    lines[b] = format!("{kb}:{va}");
                }
            }
            joined(&lines)
        }
        Mutation::HugeNumber { line, digits } => {
            if let Some(line) = nth_line(&lines, *line) {
                let huge = "9".repeat(*digits);
                lines[line] = match lines[line].split_once(':') {
                    Some((key, _)) if key.contains("Sequence") || key.contains("Reboot") => {
                        format!("{key}: 0x{}", "f".repeat(*digits))
                    }
                    Some((key, _)) => format!("{key}: {huge}"),
                    None => format!("{}{huge}", lines[line]),
                };
            }
            joined(&lines)
        }
        Mutation::InvalidUtf8 { at } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, [0xff, 0xc3, 0x28, 0x00]);
            bytes
        }
        Mutation::Crlf => record.replace('\n', "\r\n").into_bytes(),
        Mutation::Flatten => record
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .into_bytes(),
        Mutation::InsertText { at, text } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, text.bytes());
            bytes
        }
        Mutation::Empty => Vec::new(),
    }
}

/// Log events: fixture records, some mutated. A JSON string cannot carry bytes that are
/// not UTF-8, so CloudWatch (and this) delivers them replaced.
fn log_messages() -> impl Strategy<Value = Vec<String>> {
    let count = fixtures().len();
    prop::collection::vec((0..count, prop::option::weighted(0.5, mutation())), 1..40).prop_map(
        |picks| {
            picks
                .into_iter()
                .map(|(index, mutation)| {
                    let record = &fixtures()[index];
                    match mutation {
                        Some(mutation) => {
                            String::from_utf8_lossy(&mutate(record, &mutation)).into_owned()
                        }
                        None => record.clone(),
                    }
                })
                .collect()
        },
    )
}

fn payload_json(messages: &[String]) -> String {
    let events: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(index, message)| {
            serde_json::json!({"id": format!("{:056}", index), "timestamp": 1_516_067_329_824i64, "message": message})
        })
        .collect();
    serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": SOURCE_GROUP,
        "logStream": "hsm-fuzz",
        "subscriptionFilters": ["hsm-audit"],
        "logEvents": events,
    })
    .to_string()
}

fn event_of(data: String) -> serde_json::Value {
    serde_json::json!({"awslogs": {"data": data}})
}

/// Every quarantine item says why; nothing the parser accepted is lost on the way.
fn assert_accounted(parsed: &Parsed) {
    for item in &parsed.quarantined {
        assert!(!item.reason.trim().is_empty(), "no reason: {item:?}");
        // Quarantine items keep at most 16 KiB of what they stand for (far below
        // DynamoDB's 400 KB item limit), whatever arrived.
        assert!(item.raw.len() <= 16 * 1024, "{} bytes kept", item.raw.len());
    }
    assert_eq!(
        parsed.records().count() + parsed.quarantined.len() - quarantined_whole(parsed),
        parsed.log_events,
        "every log event is a record or quarantined"
    );
}

/// Quarantine items that stand for a whole input rather than one log event.
fn quarantined_whole(parsed: &Parsed) -> usize {
    parsed
        .quarantined
        .iter()
        .filter(|item| item.log_event_id.is_none())
        .count()
}

/// Decoding always says something: a payload or a reasoned quarantine item per input.
fn assert_decoded(decoded: &[Decoded]) {
    assert!(!decoded.is_empty(), "an input vanished without a trace");
    for unit in decoded {
        if let Decoded::Quarantined(item) = unit {
            assert!(!item.reason.trim().is_empty(), "no reason: {item:?}");
        }
    }
}

/// What makes one log event's message not text: invalid UTF-8 bytes, or a lone UTF-16
/// surrogate escape (a leading one without its trail, or a trailing one alone).
fn not_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (
            "[a-zA-Z :]{0,20}",
            prop::sample::select(vec![
                &b"\xff"[..],
                b"\xfe\xff",
                b"\xc3",
                b"\xe2\x82",
                b"\xed\xa0\x80",
                b"\xf8\x88\x80\x80\x80",
                b"\x80",
            ]),
            "[a-zA-Z :]{0,20}",
        )
            .prop_map(|(before, bad, after)| [before.as_bytes(), bad, after.as_bytes()].concat()),
        ("[a-zA-Z :]{0,20}", 0xd800u32..0xe000, "[a-zA-Z :]{0,20}")
            .prop_map(|(before, unit, after)| format!("{before}\\u{unit:04x}{after}").into_bytes()),
    ]
}

/// `payload_json(messages)` with one more event, at `at`, whose message is `bad` (bytes
/// placed into the JSON string as they are).
fn payload_with_bad_event(messages: &[String], at: usize, bad: &[u8]) -> Vec<u8> {
    const MARK: &str = "@@NOT-TEXT@@";
    let mut with_mark = messages.to_vec();
    with_mark.insert(at.min(messages.len()), MARK.to_owned());
    let json = payload_json(&with_mark);
    let (before, after) = json.split_once(MARK).expect("the mark is in the payload");
    [before.as_bytes(), bad, after.as_bytes()].concat()
}

proptest! {
    #![proptest_config(config())]

    /// One event that is not text inside an otherwise valid payload: that event alone is
    /// quarantined (with its reason and id), every other event parses as it would without
    /// it, through the Lambda event and as a file alike.
    #[test]
    fn one_event_that_is_not_text_is_quarantined_alone(
        messages in log_messages(),
        at in 0..64usize,
        bad in not_text(),
    ) {
        let clean = parse_decoded(decode_event(
            &event_of(crate::common::b64(&crate::common::gzip(payload_json(&messages).as_bytes()))),
            CAP,
        ).into_decoded());
        let json = payload_with_bad_event(&messages, at, &bad);
        let bad_id = format!("{:056}", at.min(messages.len()));
        let inputs = [
            decode_event(&event_of(crate::common::b64(&crate::common::gzip(&json))), CAP).into_decoded(),
            decode_document(&json, "payload.json", &source(), CAP).unwrap(),
        ];
        for decoded in inputs {
            prop_assert!(matches!(decoded.as_slice(), [Decoded::Payload(_)]), "{decoded:?}");
            let parsed = parse_decoded(decoded);
            prop_assert_eq!(parsed.log_events, messages.len() + 1);
            assert_accounted(&parsed);
            prop_assert_eq!(parsed.records().count(), clean.records().count());
            prop_assert_eq!(parsed.quarantined.len(), clean.quarantined.len() + 1);
            let set_apart: Vec<_> = parsed
                .quarantined
                .iter()
                .filter(|item| item.reason.starts_with("log event message"))
                .collect();
            prop_assert_eq!(set_apart.len(), 1, "{:?}", parsed.quarantined);
            prop_assert_eq!(set_apart[0].log_event_id.as_deref(), Some(bad_id.as_str()));
            // The event's bytes are kept whole, beside the readable `raw`.
            prop_assert!(set_apart[0].content.is_some());
        }
    }

    /// A valid payload of N events, some damaged: N records and quarantine items.
    #[test]
    fn every_event_of_a_mutated_payload_is_a_record_or_quarantined(messages in log_messages()) {
        let json = payload_json(&messages);
        let event = event_of(crate::common::b64(&crate::common::gzip(json.as_bytes())));
        let decoded = decode_event(&event, CAP).into_decoded();
        prop_assert!(matches!(decoded.as_slice(), [Decoded::Payload(_)]), "{decoded:?}");
        let parsed = parse_decoded(decoded);
        prop_assert_eq!(parsed.log_events, messages.len());
        prop_assert_eq!(parsed.records().count() + parsed.quarantined.len(), messages.len());
        assert_accounted(&parsed);
        for item in &parsed.quarantined {
            prop_assert!(item.log_event_id.is_some(), "{item:?}");
        }
        // The same payload as a file: the same outcome.
        let from_file = decode_document(json.as_bytes(), "payload.json", &source(), CAP).unwrap();
        let again = parse_decoded(from_file);
        prop_assert_eq!(again.records().count(), parsed.records().count());
        prop_assert_eq!(again.quarantined.len(), parsed.quarantined.len());
    }

    /// Damage to the encoded layers (base64, gzip, JSON) quarantines the payload whole,
    /// or leaves a payload whose events are all accounted for.
    #[test]
    fn a_damaged_encoding_is_quarantined_whole_or_decoded(
        messages in log_messages(),
        layer in 0..3u8,
        damage in mutation(),
    ) {
        let json = payload_json(&messages);
        let data = match layer {
            0 => crate::common::b64(&crate::common::gzip(&mutate(&json, &damage))),
            1 => {
                let gz = crate::common::gzip(json.as_bytes());
                crate::common::b64(&mutate_bytes(&gz, &damage))
            }
            _ => {
                let text = crate::common::b64(&crate::common::gzip(json.as_bytes()));
                String::from_utf8_lossy(&mutate(&text, &damage)).into_owned()
            }
        };
        let decoded = decode_event(&event_of(data), CAP).into_decoded();
        assert_decoded(&decoded);
        let parsed = parse_decoded(decoded);
        assert_accounted(&parsed);
    }

    /// Raw audit text given as a file (CLI `ingest` with --log-group/--log-stream):
    /// bytes that need not be UTF-8.
    #[test]
    fn mutated_raw_text_files_are_parsed_or_quarantined(
        picks in prop::collection::vec((0..64usize, prop::option::of(mutation())), 1..12),
        crlf in any::<bool>(),
    ) {
        let mut bytes = Vec::new();
        for (index, mutation) in &picks {
            let record = &fixtures()[index % fixtures().len()];
            let damaged = match mutation {
                Some(mutation) => mutate(record, mutation),
                None => record.clone().into_bytes(),
            };
            bytes.extend(damaged);
            bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        match decode_document(&bytes, "records.txt", &source(), CAP) {
            Ok(decoded) => {
                assert_decoded(&decoded);
                assert_accounted(&parse_decoded(decoded));
            }
            Err(reason) => prop_assert!(!reason.is_empty()),
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_parser(text in any::<String>()) {
        if let Err(reason) = parse_message(&text) {
            prop_assert!(!reason.to_string().trim().is_empty());
        }
    }

    #[test]
    fn arbitrary_bytes_as_a_lambda_event(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        for event in [
            event_of(String::from_utf8_lossy(&bytes).into_owned()),
            event_of(crate::common::b64(&bytes)),
            event_of(crate::common::b64(&crate::common::gzip(&bytes))),
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            serde_json::json!({"awslogs": {"data": bytes}}),
        ] {
            let decoded = decode_event(&event, CAP).into_decoded();
            assert_decoded(&decoded);
            assert_accounted(&parse_decoded(decoded));
        }
        let _ = decode_awslogs_data(&String::from_utf8_lossy(&bytes), CAP);
    }

    #[test]
    fn arbitrary_bytes_as_a_file(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        for document in [bytes.clone(), crate::common::gzip(&bytes)] {
            for source in [source(), RawTextSource::default()] {
                match decode_document(&document, "input", &source, CAP) {
                    Ok(decoded) => {
                        // Valid JSON may be an empty batch (`[]`, `{"Messages": []}`).
                        if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
                            assert_decoded(&decoded);
                        }
                        assert_accounted(&parse_decoded(decoded));
                    }
                    Err(reason) => prop_assert!(!reason.is_empty()),
                }
            }
        }
    }

    /// JSON of the shapes decode_document tells apart, with values of the wrong type.
    #[test]
    fn arbitrary_json_of_known_shapes(value in json_value(), shape in 0..7u8) {
        let document = match shape {
            0 => serde_json::json!({"awslogs": {"data": value}}),
            1 => serde_json::json!({"logEvents": value, "logGroup": "g", "logStream": "s", "messageType": "DATA_MESSAGE"}),
            2 => serde_json::json!({"events": value}),
            3 => serde_json::json!({"Messages": value}),
            4 => serde_json::json!({"Messages": [{"MessageId": "m", "Body": value.to_string()}]}),
            5 => serde_json::json!({"requestContext": {}, "requestPayload": value}),
            _ => serde_json::json!([value]),
        };
        let bytes = document.to_string().into_bytes();
        match decode_document(&bytes, "shaped.json", &source(), CAP) {
            Ok(decoded) => assert_accounted(&parse_decoded(decoded)),
            Err(reason) => prop_assert!(!reason.is_empty()),
        }
        let decoded = decode_event(&document, CAP).into_decoded();
        assert_decoded(&decoded);
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
        (0..fixtures().len()).prop_map(|index| serde_json::Value::from(fixtures()[index].clone())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("timestamp".to_owned()),
                    Just("message".to_owned()),
                    Just("data".to_owned()),
                    Just("Body".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

fn mutate_bytes(bytes: &[u8], mutation: &Mutation) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    match mutation {
        Mutation::FlipByte { at, mask } if !bytes.is_empty() => {
            let at = at % bytes.len();
            bytes[at] ^= mask;
        }
        Mutation::Truncate { at } => bytes.truncate(at % (bytes.len() + 1)),
        Mutation::InsertText { at, text } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, text.bytes());
        }
        Mutation::InvalidUtf8 { at } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, [0xff, 0x00]);
        }
        Mutation::Empty => bytes.clear(),
        _ => {
            // Two members: valid gzip, each half decodable on its own.
            let copy = bytes.clone();
            bytes.extend(copy);
        }
    }
    bytes
}

/// The kept corpus: inputs that found bugs or exercise an edge, replayed every run, as
/// Lambda events (`*.event.json`) or as files (anything else).
#[test]
fn the_kept_corpus_is_decoded_or_quarantined() {
    let dir = crate::common::repo_path("tests/fixtures/fuzz");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().is_some_and(|name| name != "README.md"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 5, "the corpus is missing: {}", dir.display());
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".event.json") {
            let event: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let decoded = decode_event(&event, CAP).into_decoded();
            assert_decoded(&decoded);
            assert_accounted(&parse_decoded(decoded));
        }
        match decode_document(&bytes, &name, &source(), CAP) {
            Ok(decoded) => {
                assert_decoded(&decoded);
                assert_accounted(&parse_decoded(decoded));
            }
            Err(reason) => assert!(!reason.is_empty(), "{name}"),
        }
    }
}
