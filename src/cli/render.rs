//! Output: stable JSON for scripts, readable tables for people.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write};

use serde::Serialize;

use super::{Failure, Output};
use crate::decode::Quarantined;
use crate::domain::{
    Alert, ClusterSession, FailedLogin, KeyEvent, KeyGeneration, QuorumStep, QuorumView,
    SessionEvent,
};
use crate::model::{AuditRecord, HsmRecord, TrailEntry};

pub(super) fn emit<T: Serialize + ?Sized>(
    output: Output,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<(), Failure> {
    let text = match output {
        Output::Json => serde_json::to_string_pretty(value)
            .map(|json| json + "\n")
            .map_err(super::processing)?,
        Output::Ndjson => serde_json::to_string(value)
            .map(|json| json + "\n")
            .map_err(super::processing)?,
        Output::Table => table(),
    };
    print!("{text}");
    Ok(())
}

/// Text from the logs as a terminal may show it. A control character (an escape
/// sequence, a bell, a carriage return that overwrites the line, a newline that forges
/// a row) or a bidirectional override would let a record steer the auditor's terminal
/// or disguise what it says, so each is written as its escape (`\x1b`, `\u{202e}`), and
/// a backslash is doubled so that an escape always means the character. JSON output
/// needs none of this: a JSON string escapes its control characters itself.
pub(super) fn shown(text: &str) -> Cow<'_, str> {
    fn escaped(c: char) -> bool {
        c == '\\'
            || c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if escaped(c) && c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if escaped(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Appends one line of a free-form listing. The listings' own words hold no backslash
/// and no control character, so escaping the whole line escapes what came from the logs.
fn line(out: &mut String, text: fmt::Arguments<'_>) {
    out.push_str(&shown(&text.to_string()));
    out.push('\n');
}

/// Left-aligned columns sized to their widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<Cow<'_, str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| shown(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let row_line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    row_line(&mut headers.iter().copied(), &mut out);
    for row in &rows {
        row_line(&mut row.iter().map(|cell| cell.as_ref()), &mut out);
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A trail record in the JSON contract: handles, sequence numbers and counters as numbers.
pub(super) fn entry_json(entry: &TrailEntry) -> serde_json::Value {
    let origin = serde_json::json!({
        "cluster": entry.stream().cluster,
        "log_stream": entry.stream().hsm,
        "log_event_id": entry.log_event_id,
        "log_event_time": entry.log_event_time,
    });
    let record = match &entry.record {
        AuditRecord::CloudHsm(record) => serde_json::json!({
            "kind": "cloudhsm",
            "hsm": entry.stream().hsm,
            "reboot_counter": record.reboot_counter,
            "seq": record.sequence_no,
            "time": record.time,
            "opcode": record.opcode,
            "opcode_code": record.opcode_code,
            "command_type": record.command_type.name,
            "session_handle": record.session_handle,
            "success": record.succeeded(),
            "response_code": record.response_code,
            "response": record.response_text,
            "log_type": record.log_type.name,
            "user_name": record.user_name,
            "user_type": record.user_type.as_ref().map(|t| &t.name),
            "key_handle": record.key_handle,
            "public_key_handle": record.public_key_handle,
        }),
        AuditRecord::Certificate(record) => serde_json::json!({
            "kind": "certificate",
            "time": record.time,
            "opcode": record.op_code,
            "object_handle": record.object_handle,
            "success": record.succeeded(),
            "response": record.response,
            "attributes": record.attributes,
        }),
        AuditRecord::Luna(record) => serde_json::json!({
            "kind": "luna",
            "time": record.time,
            "opcode": record.action,
            "success": record.succeeded(),
            "response": record.status,
            "source": record.source,
            "resource_id": record.resource_id,
            "actor_id": record.actor_id,
            "tenant_id": record.tenant_id,
            "partition_id": record.partition_id,
            "hsm_id": record.hsm_id,
            "client_ip": record.client_ip,
            "role": record.role,
            "object_ids": record.object_ids,
            "record_id": record.record_id,
        }),
    };
    let mut merged = origin;
    if let (Some(target), serde_json::Value::Object(fields)) = (merged.as_object_mut(), record) {
        target.extend(fields);
    }
    // The later layout's fields, named as in the trail item (a label as its name and
    // `…_code`); absent ones stay out, so a record in the seed's layout reads as before.
    if let (Some(target), Some(record)) = (merged.as_object_mut(), entry.cloudhsm())
        && let Ok(serde_json::Value::Object(later)) = serde_json::to_value(record.later())
    {
        {
            for (key, value) in later {
                match value {
                    serde_json::Value::Object(label)
                        if key == "target_user_type" || key == "share_operation" =>
                    {
                        let code = label.get("code").cloned();
                        target.insert(key.clone(), label["name"].clone());
                        target.insert(format!("{key}_code"), code.unwrap_or_default());
                    }
                    value => {
                        target.insert(key, value);
                    }
                }
            }
        }
    }
    merged
}

/// The USER column of a CloudHSM record: `actor -> target` where the record names the
/// user it acts on apart from `User Name` (the later layout), else `User Name`.
fn user_column(record: &HsmRecord) -> String {
    let later = record.later();
    if !later.names_target() {
        return or_dash(record.user_name.as_deref());
    }
    let target = later
        .target_user_name
        .clone()
        .or_else(|| later.target_user_id.as_ref().map(|id| format!("id {id}")));
    format!(
        "{} -> {}",
        or_dash(record.user_name.as_deref()),
        or_dash(target)
    )
}

pub(super) fn trail_table(trail: &[TrailEntry]) -> String {
    let rows: Vec<Vec<String>> = trail
        .iter()
        .map(|entry| match &entry.record {
            AuditRecord::CloudHsm(r) => vec![
                entry.stream().hsm.to_string(),
                format!("0x{:x}", r.reboot_counter),
                format!("0x{:x}", r.sequence_no),
                r.time.iso(),
                r.opcode.to_string(),
                format!("{}:{}", r.response_code, r.response_text),
                user_column(r),
                or_dash(r.key_handle),
            ],
            AuditRecord::Certificate(r) => vec![
                entry.stream().hsm.to_string(),
                "-".to_owned(),
                format!("event {}", entry.log_event_id),
                r.time.iso(),
                r.op_code.clone(),
                r.response.clone(),
                "-".to_owned(),
                or_dash(r.object_handle),
            ],
            AuditRecord::Luna(r) => vec![
                format!(
                    "{} (hsm {})",
                    entry.stream().hsm,
                    or_dash(r.hsm_id.as_deref())
                ),
                "-".to_owned(),
                format!("event {}", entry.log_event_id),
                r.time.iso(),
                r.action.clone(),
                r.status.clone(),
                format!(
                    "{} ({})",
                    or_dash(r.actor_id.as_deref()),
                    or_dash(r.role.as_deref())
                ),
                if r.object_ids.is_empty() {
                    "-".to_owned()
                } else {
                    r.object_ids.join(",")
                },
            ],
        })
        .collect();
    table(
        &[
            "STREAM", "REBOOT", "SEQ", "TIME", "OPCODE", "RESPONSE", "USER", "KEY",
        ],
        &rows,
    )
}

/// A session's line, without its events.
pub(super) fn session_line(session: &ClusterSession) -> String {
    let mut out = String::new();
    line(
        &mut out,
        format_args!(
            "{} ({}) {} -> {}  ended by {}  origin {}  mirrors [{}]",
            session.user,
            or_dash(session.user_type.as_deref()),
            session.login_time,
            or_dash(session.end_time),
            session.ended_by.as_deref().unwrap_or("- (open)"),
            session.origin_hsm,
            session.mirror_hsms.join(", ")
        ),
    );
    out
}

pub(super) fn session_event_line(event: &SessionEvent) -> String {
    let mut handles: Vec<String> = event.key_handles.iter().map(u64::to_string).collect();
    handles.extend(event.object_ids.iter().cloned());
    let mut out = String::new();
    line(
        &mut out,
        format_args!(
            "    {}  {}  0x{:<4x} {:<32} {:<6} {}{}",
            event.time,
            event.hsm,
            event.seq,
            event.opcode.as_str(),
            if event.success { "ok" } else { "FAILED" },
            event
                .target_user
                .as_deref()
                .map(|u| format!("user {u} "))
                .unwrap_or_default(),
            if handles.is_empty() {
                String::new()
            } else {
                format!("keys {}", handles.join(","))
            }
        ),
    );
    out
}

/// A key generation's line, without its events and shares.
pub(super) fn key_line(key: &KeyGeneration) -> String {
    let mut out = String::new();
    line(
        &mut out,
        format_args!(
            "key {} gen {}: {:?} {}  created {} by {} ({})  pair {}  hsms [{}]{}",
            key.object_id
                .as_ref()
                .map_or_else(|| key.handle.to_string(), |id| format!("luna:{id}")),
            key.generation,
            key.state,
            key.kind,
            or_dash(key.created_time),
            or_dash(key.created_by.as_deref()),
            or_dash(key.created_opcode.as_ref()),
            or_dash(key.pair_handle),
            key.hsms.join(", "),
            if key.exported { "  EXPORTED" } else { "" }
        ),
    );
    out
}

pub(super) fn key_event_line(event: &KeyEvent) -> String {
    let position = match (event.seq, &event.log_event_id) {
        (Some(seq), _) => format!("0x{seq:x}"),
        (None, Some(id)) => format!("event {id}"),
        (None, None) => "-".to_owned(),
    };
    let outcome = match (&event.response, event.success) {
        (Some(response), false) => response.clone(),
        (_, true) => "ok".to_owned(),
        (None, false) => "FAILED".to_owned(),
    };
    let attributes = event
        .attributes
        .as_ref()
        .map(|names| format!(" [{}]", names.join(", ")))
        .unwrap_or_default();
    let mut out = String::new();
    line(
        &mut out,
        format_args!(
            "    {}  {}  {:<6} {:<32} {:<6} {}{}",
            event.time,
            event.hsm,
            position,
            event.opcode.as_str(),
            outcome,
            or_dash(event.user.as_deref()),
            attributes
        ),
    );
    out
}

/// The lines of a key's shares, after its events.
pub(super) fn key_share_lines(key: &KeyGeneration) -> String {
    let mut out = String::new();
    for share in &key.shared_with {
        let user = match &share.user_name {
            Some(name) => format!("{name} (id {})", share.user_id),
            None => format!("id {}", share.user_id),
        };
        let direction = if share.operation == "UNSHARE" {
            "unshared from"
        } else {
            "shared with"
        };
        line(
            &mut out,
            format_args!(
                "    {}  {}  0x{:<4x} {} {user} by {}",
                share.time,
                share.hsm,
                share.seq,
                direction,
                or_dash(share.by.as_deref())
            ),
        );
    }
    out
}

/// One quorum step as a line of the quorum table.
fn quorum_step_line(out: &mut String, step: &QuorumStep) {
    line(
        out,
        format_args!(
            "    {}  {}  0x{:<4x} {:<32} {:<6} {}",
            step.time,
            step.hsm,
            step.seq,
            step.opcode.as_str(),
            if step.success { "ok" } else { "FAILED" },
            or_dash(step.user.as_deref())
        ),
    );
}

pub(super) fn quorum_table(quorum: &QuorumView) -> String {
    let mut out = String::new();
    for token in &quorum.tokens {
        line(
            &mut out,
            format_args!(
                "token on {} at {}: requested by {}  approved by [{}]  ended {} by {}",
                token.hsm,
                token.time,
                token
                    .requested_by
                    .as_deref()
                    .unwrap_or("- (request not in the trail)"),
                token.approved_by.join(", "),
                or_dash(token.end_time),
                token.ended_by.as_deref().unwrap_or("- (alive)")
            ),
        );
        for step in &token.steps {
            quorum_step_line(&mut out, step);
        }
        if token.activity_count > 0 {
            line(
                &mut out,
                format_args!(
                    "  requester's activity while it lived ({}):",
                    token.activity_count
                ),
            );
            for step in &token.activity {
                quorum_step_line(&mut out, step);
            }
        }
    }
    for setting in &quorum.m_values {
        line(
            &mut out,
            format_args!(
                "M value set at {} on {} by {}: {} (previous {}){}",
                setting.step.time,
                setting.step.hsm,
                or_dash(setting.step.user.as_deref()),
                setting
                    .value
                    .map_or_else(|| "value not logged".to_owned(), |v| v.to_string()),
                or_dash(setting.previous),
                if setting.step.success { "" } else { "  FAILED" }
            ),
        );
    }
    if quorum.tokens.is_empty() && quorum.m_values.is_empty() {
        out.push_str("(no quorum records)\n");
    }
    out
}

pub(super) fn failed_logins_table(logins: &[FailedLogin]) -> String {
    let rows: Vec<Vec<String>> = logins
        .iter()
        .map(|login| {
            vec![
                login.time.iso(),
                login.hsm.clone(),
                match &login.log_event_id {
                    Some(id) => format!("event {id}"),
                    None => format!("0x{:x}", login.seq),
                },
                login.user.clone(),
                or_dash(login.user_type.as_deref()),
                match login.log_event_id {
                    Some(_) => login.response.clone(),
                    None => format!("{}:{}", login.response_code, login.response),
                },
                if login.brute_force {
                    "BRUTE FORCE".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    table(
        &["TIME", "HSM", "SEQ", "USER", "USER TYPE", "RESPONSE", ""],
        &rows,
    )
}

pub(super) fn alerts_table(alerts: &[Alert]) -> String {
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|alert| {
            let range = match (alert.from, alert.to) {
                (Some(from), Some(to)) => format!("0x{from:x}..0x{to:x}"),
                _ => alert
                    .seq
                    .map(|seq| format!("0x{seq:x}"))
                    .unwrap_or_else(|| "-".into()),
            };
            vec![
                alert.time.iso(),
                alert.kind.as_str().to_owned(),
                or_dash(alert.hsm.as_deref()),
                range,
                or_dash(alert.user.as_deref()),
                or_dash(alert.opcode.as_ref()),
                or_dash(alert.detail.as_deref()),
            ]
        })
        .collect();
    table(
        &["TIME", "KIND", "HSM", "SEQ", "USER", "OPCODE", "DETAIL"],
        &rows,
    )
}

pub(super) fn quarantine_table(items: &[Quarantined]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            let mut raw: String = item
                .raw
                .chars()
                .take(40)
                .collect::<String>()
                .replace(['\n', '\r'], " ");
            if item.raw.chars().count() > 40 || item.raw_truncated {
                raw.push('…');
            }
            vec![
                item.reason.clone(),
                or_dash(item.log_group.as_deref()),
                or_dash(item.log_stream.as_deref()),
                or_dash(item.log_event_id.as_deref()),
                raw,
            ]
        })
        .collect();
    table(
        &["REASON", "LOG GROUP", "LOG STREAM", "EVENT ID", "RAW"],
        &rows,
    )
}

pub(super) fn ingest_text(summary: &super::input::IngestSummary) -> String {
    let mut out = report_text(&summary.report);
    for item in &summary.quarantine {
        line(
            &mut out,
            format_args!(
                "quarantined from {}: {} (quarantine --export {})",
                item.file.display(),
                item.reason,
                item.raw_sha256
            ),
        );
    }
    out
}

pub(super) fn report_text(report: &crate::pipeline::Report) -> String {
    let mut out = String::new();
    line(
        &mut out,
        format_args!(
            "{} log events: {} records ({} new, {} duplicates, {} conflicting), {} quarantined, {} control messages; clusters: {}",
            report.log_events,
            report.records,
            report.stored,
            report.duplicates,
            report.conflicts,
            report.quarantined,
            report.control_messages,
            report
                .clusters
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    out
}

pub(super) fn parse_text(
    events: usize,
    quarantined: usize,
    failed_logins: usize,
    by_opcode: &BTreeMap<String, usize>,
) -> String {
    let mut out =
        format!("{events} records, {quarantined} quarantined, {failed_logins} failed logins\n");
    for (opcode, count) in by_opcode {
        line(&mut out, format_args!("  {opcode:<32} {count}"));
    }
    out
}

pub(super) fn report_summary_text(summary: &super::report::ReportSummary) -> String {
    let mut out = format!("wrote {} ({})", summary.out.display(), summary.format);
    if let Some(rows) = summary.rows {
        let _ = write!(out, ": {rows} rows");
    }
    if let Some(counts) = &summary.counts {
        let _ = write!(
            out,
            ": {} keys ({} past the crypto-period), {} sessions, {} failed logins, {} alerts; \
             trail complete: {}",
            counts.keys,
            counts.keys_past_crypto_period,
            counts.sessions,
            counts.failed_logins,
            counts.alerts,
            if counts.complete {
                "yes".to_owned()
            } else {
                format!(
                    "no ({} missing ranges in {} streams)",
                    counts.missing_ranges, counts.streams
                )
            }
        );
    }
    out.push('\n');
    out
}

/// `verify`'s answer: the verdict first, then each finding.
pub(super) fn verify_text(report: &crate::verify::VerifyReport) -> String {
    let signatures = if report.signatures_checked {
        "signatures checked"
    } else {
        "signatures not checked (no public key given)"
    };
    let mut text = String::new();
    line(
        &mut text,
        format_args!(
            "{}: {} digests, {} records, {signatures}{}: {}",
            report.cluster,
            report.digests,
            report.records,
            if report.anchors_checked > 0 {
                format!(", {} anchors checked", report.anchors_checked)
            } else {
                String::new()
            },
            if report.clean {
                "the trail is as its digests say"
            } else {
                "NOT as its digests say"
            }
        ),
    );
    for finding in &report.findings {
        line(&mut text, format_args!("  {}", finding.describe()));
    }
    if report.findings_omitted > 0 {
        text.push_str(&format!(
            "  … and {} more findings\n",
            report.findings_omitted
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_content_reaches_the_terminal_as_escapes() {
        assert!(matches!(shown("alice (CN_CRYPTO_USER)"), Cow::Borrowed(_)));
        assert_eq!(
            shown("mallory\x1b[2J\x1b]0;owned\x07"),
            r"mallory\x1b[2J\x1b]0;owned\x07"
        );
        assert_eq!(shown("a\nforged row\r\t"), r"a\nforged row\r\t");
        assert_eq!(shown("csi\u{9b}31m del\x7f"), r"csi\u{9b}31m del\x7f");
        assert_eq!(shown("user\u{202e}nimda"), r"user\u{202e}nimda");
        // A literal backslash stays told apart from an escape.
        assert_eq!(shown(r"DOMAIN\x1b"), r"DOMAIN\\x1b");
        assert_eq!(shown("Zoë 鍵"), "Zoë 鍵");
    }

    #[test]
    fn free_form_listings_escape_what_they_quote() {
        let mut out = String::new();
        line(&mut out, format_args!("M value set by {}", "eve\x1b[8m"));
        assert_eq!(out, "M value set by eve\\x1b[8m\n");
    }
}
