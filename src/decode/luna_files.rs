//! Thales DPoD audit files (`hsm-audit ingest --format luna`) to payloads of Luna records.
//!
//! Format: the DPoD Audit Query API (`POST /v1/audit-log-exports`, then
//! `GET /v1/audit-log-exports/{jobId}` for a signed URL) delivers "a .ZIP that contains a
//! JSON list of audit logs" (Thales, "About the Audit Query API"). Collectors written
//! against the service before that read the download as gzipped JSON lines, and records
//! forwarded into a log pipeline come one JSON object a line; so every entry of a ZIP,
//! and any other file, may be a JSON array, one object, or JSON lines, gzipped or not.
//! Inflation (ZIP entries and gzip alike) stops at the `MAX_INFLATED_BYTES` cap.
//!
//! Placement: the cluster is the record's service id (`resourceid`; `--log-group` for
//! records without one) and the log stream its partition id, which is where the
//! pipeline's CloudWatch path would put them had they come through a log group named for
//! the service.
//!
//! Identity: DPoD documents no record id for Luna records (the common values are the
//! time, `source`, `resourceID`, `actorID`, `tenantID`, `action`, `status`, `traceID`
//! and `meta`; `traceID` names a request, not a record), and a file has no CloudWatch
//! event id. A record's event id is therefore `dpod-<id>` if a record ever carries an
//! `id`, else `sha256-<digest of its parsed content>-<n>`, `n` counting identical records
//! of the file in file order: the same record in the same file always gets the same id,
//! so ingesting a file again (or an export that overlaps it) is a no-op, and identical
//! records — several signatures of one actor with one key in one second — stay several.
//! The digest is of the parsed record, so `meta` as a string or as an object, key order
//! and spacing do not change it.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};

use serde_json::Value;

use super::{Decoded, LogEvent, LogsPayload, MessageType, Quarantined, inflate_capped};
use crate::model::AuditRecord;
use crate::parse::luna_record_from_value;

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// Whether a file given with `--format auto` is a Luna audit file: a ZIP, or (gzipped or
/// not) a JSON array or JSON lines of records with `LUNA_` actions and no CloudWatch
/// envelope.
pub fn looks_like_luna_file(bytes: &[u8], max_inflated_bytes: usize) -> bool {
    if bytes.starts_with(ZIP_MAGIC) {
        return true;
    }
    let inflated;
    let bytes = if bytes.starts_with(GZIP_MAGIC) {
        match inflate_capped(bytes, max_inflated_bytes) {
            Ok(data) => {
                inflated = data;
                &inflated[..]
            }
            Err(_) => return false,
        }
    } else {
        bytes
    };
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    let head = text.lines().next().unwrap_or_default();
    let envelope = ["\"logEvents\"", "\"awslogs\"", "\"events\"", "\"Records\""]
        .iter()
        .any(|key| head.contains(key));
    (text.starts_with('[') || text.starts_with('{')) && head.contains("\"LUNA_") && !envelope
}

/// Decodes one DPoD audit file. Never fails: what cannot be read is quarantined with
/// the reason, beside the records that can.
pub fn decode_luna_file(
    bytes: &[u8],
    name: &str,
    fallback_cluster: Option<&str>,
    max_inflated_bytes: usize,
) -> Vec<Decoded> {
    let mut out = Vec::new();
    let documents = if bytes.starts_with(ZIP_MAGIC) {
        match zip_entries(bytes, max_inflated_bytes) {
            Ok(entries) => entries,
            Err(reason) => {
                return vec![Decoded::Quarantined(Quarantined::new(
                    format!("{name}: {reason}"),
                    bytes,
                ))];
            }
        }
    } else {
        vec![(name.to_owned(), bytes.to_vec())]
    };
    let mut values = Vec::new();
    let mut budget = max_inflated_bytes;
    for (document, data) in documents {
        let data = if data.starts_with(GZIP_MAGIC) {
            match inflate_capped(&data, budget) {
                Ok(inflated) => inflated,
                Err(error) => {
                    out.push(Decoded::Quarantined(Quarantined::new(
                        format!("{document}: {error}"),
                        &data,
                    )));
                    continue;
                }
            }
        } else {
            data
        };
        budget = budget.saturating_sub(data.len());
        json_values(&document, &data, &mut values, &mut out);
    }
    out.extend(payloads(name, values, fallback_cluster));
    out
}

/// The files of a ZIP archive, inflated, within the cap on their total size.
fn zip_entries(bytes: &[u8], cap: usize) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|error| format!("not a readable ZIP archive: {error}"))?;
    let mut entries = Vec::new();
    let mut total = 0usize;
    for index in 0..archive.len() {
        let mut file = archive
            .by_index(index)
            .map_err(|error| format!("ZIP entry {index} is not readable: {error}"))?;
        if file.is_dir() {
            continue;
        }
        let entry_name = file
            .name()
            .map(|name| name.into_owned())
            .unwrap_or_else(|_| format!("entry {index}"));
        let remaining = cap.saturating_sub(total);
        let mut data = Vec::new();
        // The sizes a ZIP announces are the attacker's to choose: read at most one
        // byte past the cap, whatever they say.
        (&mut file)
            .take(
                u64::try_from(remaining)
                    .unwrap_or(u64::MAX)
                    .saturating_add(1),
            )
            .read_to_end(&mut data)
            .map_err(|error| format!("ZIP entry {entry_name} is corrupt: {error}"))?;
        if data.len() > remaining {
            return Err(format!(
                "ZIP content exceeds the cap of {cap} bytes (MAX_INFLATED_BYTES); refused"
            ));
        }
        total += data.len();
        entries.push((entry_name, data));
    }
    Ok(entries)
}

/// The records of one document: a JSON array, one object, or JSON lines.
fn json_values(document: &str, data: &[u8], values: &mut Vec<Value>, out: &mut Vec<Decoded>) {
    let text = String::from_utf8_lossy(data);
    let text = text.trim_start_matches('\u{feff}');
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => values.extend(items),
        Ok(object @ Value::Object(_)) => values.push(object),
        Ok(_) => out.push(Decoded::Quarantined(Quarantined::new(
            format!("{document}: neither a JSON array of audit records nor JSON lines"),
            data,
        ))),
        Err(_) if text.trim().is_empty() => {}
        Err(_) => {
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(line) {
                    Ok(value) => values.push(value),
                    Err(error) => out.push(Decoded::Quarantined(Quarantined::new(
                        format!("{document}: line {}: invalid JSON: {error}", number + 1),
                        line.as_bytes(),
                    ))),
                }
            }
        }
    }
}

/// Payloads by (service, partition), with event ids as the module documents.
fn payloads(name: &str, values: Vec<Value>, fallback_cluster: Option<&str>) -> Vec<Decoded> {
    let mut grouped: BTreeMap<(String, String), Vec<LogEvent>> = BTreeMap::new();
    let mut occurrences: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        let message = value.to_string();
        let record = match luna_record_from_value(&value) {
            Ok(record) => record,
            Err(error) => {
                out.push(Decoded::Quarantined(Quarantined::new(
                    format!("{name}: record {index}: {error}"),
                    message.as_bytes(),
                )));
                continue;
            }
        };
        let Some(cluster) = record
            .resource_id
            .clone()
            .or_else(|| fallback_cluster.map(str::to_owned))
        else {
            out.push(Decoded::Quarantined(Quarantined::new(
                format!("{name}: record {index}: names no service (resourceid): pass --log-group"),
                message.as_bytes(),
            )));
            continue;
        };
        let stream = record
            .partition_id
            .clone()
            .unwrap_or_else(|| "luna".to_owned());
        let id = match &record.record_id {
            Some(id) => format!("dpod-{id}"),
            None => {
                let digest = AuditRecord::Luna(record.clone()).content_sha256();
                let seen = occurrences.entry(digest.clone()).or_default();
                let id = format!("sha256-{digest}-{seen}");
                *seen += 1;
                id
            }
        };
        grouped
            .entry((cluster, stream))
            .or_default()
            .push(LogEvent {
                id,
                timestamp: record.time.micros() / 1000,
                message,
            });
    }
    out.extend(grouped.into_iter().map(|((cluster, stream), log_events)| {
        Decoded::Payload(LogsPayload {
            message_type: MessageType::DataMessage,
            owner: String::new(),
            log_group: cluster,
            log_stream: stream,
            subscription_filters: Vec::new(),
            log_events,
            undecodable: Vec::new(),
        })
    }));
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const RECORD: &str = r#"{"time": "2022-10-30 14:52:47 UTC", "source": "thales/cloudhsm/1334049524932", "resourceID": "svc-1", "actorID": "client-1", "tenantID": "t", "action": "LUNA_SIGN", "status": "LUNA_RET_OK", "traceID": "x", "meta": "{\"clientip\":\"10.0.0.1\",\"hsmid\":\"567782\",\"ouids\":\"1a2b\",\"partid\":\"1334049524932\",\"role\":\"CU\"}"}"#;

    fn events(decoded: &[Decoded]) -> Vec<&LogEvent> {
        decoded
            .iter()
            .filter_map(|d| match d {
                Decoded::Payload(payload) => Some(&payload.log_events),
                Decoded::Quarantined(_) => None,
            })
            .flatten()
            .collect()
    }

    fn zip_of(name: &str, content: &[u8]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        writer
            .start_file(
                name,
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated),
            )
            .unwrap();
        writer.write_all(content).unwrap();
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn array_lines_zip_and_gzip_give_the_same_events() {
        let array = format!("[{RECORD},\n{RECORD}]");
        let lines = format!("{RECORD}\n\n{RECORD}\n");
        let gz = crate::testkit::gzip(lines.as_bytes());
        let zipped = zip_of("audit.json", array.as_bytes());
        let ids = |bytes: &[u8]| {
            let decoded = decode_luna_file(bytes, "f", None, 1 << 20);
            assert!(
                decoded.iter().all(|d| matches!(d, Decoded::Payload(_))),
                "{decoded:?}"
            );
            events(&decoded)
                .iter()
                .map(|e| e.id.clone())
                .collect::<Vec<_>>()
        };
        let expected = ids(array.as_bytes());
        assert_eq!(expected.len(), 2, "two identical records stay two");
        assert_ne!(expected[0], expected[1]);
        assert!(expected[0].ends_with("-0") && expected[1].ends_with("-1"));
        assert_eq!(ids(lines.as_bytes()), expected);
        assert_eq!(ids(&gz), expected);
        assert_eq!(ids(&zipped), expected);
        assert!(looks_like_luna_file(&zipped, 1 << 20));
        assert!(looks_like_luna_file(array.as_bytes(), 1 << 20));
        assert!(looks_like_luna_file(&gz, 1 << 20));
        assert!(!looks_like_luna_file(
            br#"{"messageType":"DATA_MESSAGE","logEvents":[{"message":"LUNA_"}]}"#,
            1 << 20
        ));
    }

    #[test]
    fn records_are_placed_by_service_and_partition() {
        let decoded = decode_luna_file(RECORD.as_bytes(), "f", None, 1 << 20);
        let [Decoded::Payload(payload)] = decoded.as_slice() else {
            panic!("{decoded:?}")
        };
        assert_eq!(
            (payload.log_group.as_str(), payload.log_stream.as_str()),
            ("svc-1", "1334049524932")
        );
        assert_eq!(payload.log_events[0].timestamp, 1_667_141_567_000);
    }

    #[test]
    fn bad_records_and_lines_are_quarantined_beside_good_ones() {
        let text = format!("{RECORD}\n{{oops\n{}\n", RECORD.replace("resourceID", "x"));
        let decoded = decode_luna_file(text.as_bytes(), "f", None, 1 << 20);
        let reasons: Vec<&str> = decoded
            .iter()
            .filter_map(|d| match d {
                Decoded::Quarantined(q) => Some(q.reason.as_str()),
                Decoded::Payload(_) => None,
            })
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("line 2: invalid JSON"));
        assert!(reasons[1].contains("--log-group"));
        assert_eq!(events(&decoded).len(), 1);
        let placed = decode_luna_file(text.as_bytes(), "f", Some("svc-x"), 1 << 20);
        assert_eq!(events(&placed).len(), 2);
    }

    #[test]
    fn a_zip_past_the_cap_is_refused() {
        let big = format!("[{}]", vec![RECORD; 200].join(","));
        let zipped = zip_of("audit.json", big.as_bytes());
        let decoded = decode_luna_file(&zipped, "f.zip", None, 1024);
        let [Decoded::Quarantined(item)] = decoded.as_slice() else {
            panic!("{decoded:?}")
        };
        assert!(item.reason.contains("cap"), "{}", item.reason);
        let decoded = decode_luna_file(b"PK\x03\x04garbage", "f.zip", None, 1024);
        assert!(
            matches!(decoded.as_slice(), [Decoded::Quarantined(q)] if q.reason.contains("ZIP"))
        );
    }
}
