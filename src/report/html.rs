//! The report as one self-contained HTML file: inline CSS and SVG, one small script that
//! pages long tables (without it every row shows; printing shows every row), and a
//! Content-Security-Policy that lets the page load nothing at all.
//!
//! One file on purpose (about 1,050 lines): the page is one document whose sections
//! (summary, worries, inventory, timeline, failed logins, alerts, quorum) are written in
//! reading order and share its escaping, cell and chart helpers; apart, each section
//! would import the rest back.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use super::{Bar, InventoryRow, MICROS_PER_DAY, Report, Rows, SessionRow, StreamRow, state_name};
use crate::domain::{AlertKind, FailedLogin};
use crate::model::Timestamp;

/// Width of the charts in SVG user units; the label column of the timeline.
const CHART_WIDTH: f64 = 1000.0;
const LABEL_WIDTH: f64 = 150.0;
const LANE_HEIGHT: f64 = 20.0;
const AXIS_HEIGHT: f64 = 22.0;
const HISTOGRAM_BINS: usize = 48;

/// Text for HTML content and attribute values.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

/// `1 key`, `2 keys`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn opt(value: Option<&str>) -> Cow<'_, str> {
    value.map_or(Cow::Borrowed("–"), escape)
}

fn time_cell(time: Option<Timestamp>) -> String {
    time.map_or_else(|| "–".to_owned(), cell_time)
}

/// A time in a table: kept on one line.
fn cell_time(time: Timestamp) -> String {
    format!("<span class=\"t\">{}</span>", readable(time))
}

/// `2018-01-16 01:48:49Z`: seconds are what an auditor compares with the console.
fn readable(time: Timestamp) -> String {
    let iso = time.iso();
    match (iso.get(..10), iso.get(11..19)) {
        (Some(date), Some(clock)) => format!("{date} {clock}Z"),
        _ => iso,
    }
}

const STYLE: &str = r#"
:root { --ink:#1d2330; --muted:#5b6475; --line:#d7dbe3; --ok:#1b7f3b; --bad:#b3261e; --warn:#9a6200; --bar:#3b6fd4; --mirror:#0f8a8a; }
* { box-sizing: border-box; }
body { font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); margin: 0 auto; padding: 16px 24px; max-width: 1280px; }
h1 { font-size: 20px; margin: 0 0 2px; } h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 2px solid var(--ink); padding-bottom: 2px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
p.meta, .note { color: var(--muted); margin: 2px 0 8px; }
nav.toc a { margin-right: 12px; color: var(--bar); }
.verdict { padding: 8px 12px; border-radius: 4px; margin: 8px 0; font-size: 14px; border-left: 6px solid; }
.verdict.ok { background: #e8f5ec; border-color: var(--ok); } .verdict.bad { background: #fbeaea; border-color: var(--bad); }
.verdict.unknown { background: #fdf4e3; border-color: var(--warn); }
ul.worries { margin: 4px 0 8px; padding-left: 20px; } ul.worries li.bad { color: var(--bad); } ul.worries li.ok { color: var(--muted); }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(120px, 1fr)); gap: 8px; margin: 8px 0; }
.figures div { border: 1px solid var(--line); border-radius: 4px; padding: 6px 10px; }
.figures b { display: block; font-size: 20px; } .figures span { color: var(--muted); }
table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f1f3f7; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
.state-active { color: var(--ok); } .state-destroyed, .state-tombstoned { color: var(--muted); }
tr.incomplete td:first-child, .gap, .bad, .flag { color: var(--bad); font-weight: 600; }
.t { white-space: nowrap; } .scroll { overflow-x: auto; }
#inventory .t { white-space: normal; } #inventory td, #alert-list td, #failed-list td { overflow-wrap: anywhere; }
tr.past td.age { color: var(--bad); font-weight: 600; }
.pager { margin: 4px 0; } .pager button { margin: 0 6px; }
svg { width: 100%; height: auto; display: block; }
svg text { font: 10px system-ui, sans-serif; fill: var(--muted); }
svg .lane-label { fill: var(--ink); } svg .grid { stroke: var(--line); }
svg rect.bar { fill: var(--bar); } svg rect.bar.mirrored { fill: var(--mirror); stroke: #064d4d; stroke-width: 1; }
svg rect.bar.open { fill-opacity: .45; stroke: var(--bar); stroke-dasharray: 3 2; }
svg rect.coverage { fill: var(--bar); } svg rect.bin { fill: #8a94a8; } svg rect.bin.burst { fill: var(--bad); }
svg .burst-mark { fill: var(--bad); font-weight: 600; }
.legend span { margin-right: 14px; } .swatch { display: inline-block; width: 12px; height: 10px; margin-right: 4px; vertical-align: middle; }
details summary { cursor: pointer; color: var(--bar); }
table.commands { margin: 4px 0 4px 12px; width: auto; } table.commands td { border: none; padding: 1px 6px; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10px; }
  tr[hidden] { display: table-row !important; }
  .pager, nav.toc { display: none; } .scroll { overflow: visible; } .t { white-space: normal; }
  h2 { break-after: avoid; } tr, .verdict, svg { break-inside: avoid; }
}
"#;

/// Pages tables of more than 100 rows, and opens every `<details>` before printing.
const SCRIPT: &str = r#"
document.querySelectorAll('table.paged').forEach(function (table) {
  var rows = table.tBodies[0].rows, size = 100, pages = Math.ceil(rows.length / size), page = 0;
  if (pages < 2) return;
  var nav = document.createElement('div'), prev = document.createElement('button'),
      next = document.createElement('button'), label = document.createElement('span');
  nav.className = 'pager'; prev.textContent = '\u2039 previous'; next.textContent = 'next \u203a';
  function show() {
    for (var i = 0; i < rows.length; i++) rows[i].hidden = Math.floor(i / size) !== page;
    label.textContent = 'page ' + (page + 1) + ' of ' + pages + ' (' + rows.length + ' rows)';
    prev.disabled = page === 0; next.disabled = page === pages - 1;
  }
  prev.onclick = function () { page--; show(); }; next.onclick = function () { page++; show(); };
  nav.append(prev, label, next); table.before(nav); show();
});
addEventListener('beforeprint', function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
});
"#;

pub fn write(report: &Report, out: &mut impl Write) -> io::Result<()> {
    let options = &report.options;
    let cluster = escape(&options.cluster);
    let (from, to) = report.span();
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\
         <title>HSM audit report: {cluster}, {} to {}</title><style>{STYLE}</style></head><body>",
        readable(from),
        readable(to)
    )?;
    writeln!(
        out,
        "<header><h1>HSM audit report: cluster <code>{cluster}</code></h1>\
         <p class=\"meta\">Period {} to {}{} · all times UTC · written {} by hsm-audit {} · crypto-period {} days</p>\
         <nav class=\"toc\"><a href=\"#summary\">Summary</a><a href=\"#keys\">Key inventory</a>\
         <a href=\"#sessions\">Sessions</a><a href=\"#failed-logins\">Failed logins</a>\
         <a href=\"#alerts\">Alerts</a>{}</nav></header>",
        readable(from),
        readable(to),
        if options.from.is_none() && options.to.is_none() {
            " (the whole trail)"
        } else {
            ""
        },
        readable(options.generated_at),
        env!("CARGO_PKG_VERSION"),
        options.max_key_age_micros / MICROS_PER_DAY,
        if has_quorum(report) {
            "<a href=\"#quorum\">Quorum</a>"
        } else {
            ""
        },
    )?;
    summary(report, out)?;
    inventory(report, out)?;
    sessions(report, out)?;
    failed_logins(report, out)?;
    alerts(report, out)?;
    if has_quorum(report) {
        quorum(report, out)?;
    }
    writeln!(out, "<script>{SCRIPT}</script></body></html>")
}

fn has_quorum(report: &Report) -> bool {
    !report.quorum.tokens.is_empty() || !report.quorum.m_values.is_empty()
}

fn summary(report: &Report, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "<section id=\"summary\"><h2>Summary</h2>")?;
    let gaps: usize = report.streams.iter().map(|s| s.gaps.len()).sum();
    let missing: u64 = report.streams.iter().map(|s| s.missing).sum();
    let conflicts: usize = report.streams.iter().map(|s| s.conflicts).sum();
    let reboots = report.streams.iter().filter(|s| s.after_reboot).count();
    if report.streams.is_empty() {
        writeln!(
            out,
            "<div class=\"verdict bad\" id=\"verdict\"><strong>Is the trail complete? Unknown:</strong> \
             the table holds no sequence-numbered stream of this cluster.</div>"
        )?;
    } else if report.complete() {
        writeln!(
            out,
            "<div class=\"verdict ok\" id=\"verdict\"><strong>Is the trail complete? Yes.</strong> \
             {} without a missing sequence number and without a conflicting duplicate{}.</div>",
            if report.streams.len() == 1 {
                "The one HSM stream runs".to_owned()
            } else {
                format!("Every one of the {} HSM streams runs", report.streams.len())
            },
            if reboots > 0 {
                format!(
                    " ({}, each a new stream)",
                    count(reboots, "reboot", "reboots")
                )
            } else {
                String::new()
            }
        )?;
    } else {
        writeln!(
            out,
            "<div class=\"verdict bad\" id=\"verdict\"><strong>Is the trail complete? No.</strong> \
             {} ({}) and {} in {} of {}; {}.</div>",
            count(gaps, "missing range", "missing ranges"),
            count(missing as usize, "record", "records"),
            count(conflicts, "conflicting duplicate", "conflicting duplicates"),
            report.streams.iter().filter(|s| !s.complete()).count(),
            count(report.streams.len(), "HSM stream", "HSM streams"),
            count(reboots, "reboot", "reboots"),
        )?;
    }
    writeln!(
        out,
        "<div class=\"verdict unknown\" id=\"tamper\"><strong>Is the trail as its digests say? Not \
         verified by this report,</strong> which reads the views, not the trail's digest chain: \
         <code>hsm-audit verify --cluster {} --kms-key-id K</code> checks every record against \
         its signed digests.</div>",
        escape(&report.options.cluster)
    )?;
    worries(report, out)?;
    let figures = [
        ("HSMs", report.hsms.len().to_string()),
        ("records held", report.records().to_string()),
        ("sessions", report.sessions.total.to_string()),
        ("keys", report.keys.total.to_string()),
        ("failed logins", report.failed_logins.total.to_string()),
        ("alerts", report.alerts.total.to_string()),
    ];
    write!(out, "<div class=\"figures\" id=\"figures\">")?;
    for (label, value) in figures {
        write!(
            out,
            "<div data-figure=\"{label}\"><b>{value}</b><span>{label}</span></div>"
        )?;
    }
    writeln!(out, "</div>")?;
    writeln!(
        out,
        "<h3>Completeness of the trail, per HSM stream and reboot counter</h3>\
         <table id=\"completeness\"><thead><tr><th>HSM</th><th>Reboot counter</th>\
         <th>First seq</th><th>Last seq</th><th>Records held</th><th>Missing ranges</th>\
         <th>Reboot</th><th>Conflicting duplicates</th><th>First record</th><th>Last record</th>\
         </tr></thead><tbody>"
    )?;
    for stream in &report.streams {
        stream_row(stream, out)?;
    }
    writeln!(
        out,
        "</tbody></table><p class=\"note\">Sequence numbers are hexadecimal, as the HSM logs \
         them. A stream first seen above 0 starts there; a reboot starts a new stream.</p></section>"
    )
}

/// `: <list>` after a finding's sentence, or nothing when the list is empty.
fn listed(list: &str) -> String {
    if list.is_empty() {
        String::new()
    } else {
        format!(": {list}")
    }
}

/// `: a, b and 3 more`: the first names of `total` things.
fn named(names: &[String], total: usize) -> String {
    if names.is_empty() {
        return String::new();
    }
    let listed = names
        .iter()
        .map(|name| format!("<code>{}</code>", escape(name)))
        .collect::<Vec<_>>()
        .join(", ");
    match total.saturating_sub(names.len()) {
        0 => format!(": {listed}"),
        more => format!(": {listed} and {more} more"),
    }
}

/// The first screen's answer to "what should I worry about?": each finding counted,
/// and named where the summary can name it; the sections below hold the evidence.
fn worries(report: &Report, out: &mut impl Write) -> io::Result<()> {
    let days = report.options.max_key_age_micros / MICROS_PER_DAY;
    let sensitive: usize = report.sensitive_by_opcode.values().sum();
    let opcodes = report
        .sensitive_by_opcode
        .iter()
        .map(|(opcode, n)| format!("<code>{}</code> ×{n}", escape(opcode)))
        .collect::<Vec<_>>()
        .join(", ");
    let quarantined: usize = report.quarantine.values().sum();
    let mut reasons: Vec<(&String, &usize)> = report.quarantine.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1));
    let reasons = reasons
        .iter()
        .take(3)
        .map(|(reason, n)| format!("{} (×{n})", escape(&shorten(reason, 160))))
        .collect::<Vec<_>>()
        .join("; ");
    let late = report
        .alerts_by_kind
        .get(&AlertKind::LateRecord)
        .copied()
        .unwrap_or(0);
    let ahead = report
        .alerts_by_kind
        .get(&AlertKind::ClockSkew)
        .copied()
        .unwrap_or(0);
    let backwards: Vec<String> = report
        .streams
        .iter()
        .filter(|stream| stream.first_time > stream.last_time)
        .map(|stream| format!("{} boot 0x{:x}", stream.hsm, stream.reboot_counter))
        .collect();
    let findings = [
        (
            "sensitive",
            sensitive,
            format!(
                "{} in the period{}",
                count(sensitive, "sensitive operation", "sensitive operations"),
                listed(&opcodes)
            ),
        ),
        (
            "crypto-period",
            report.keys_past_period,
            format!(
                "{} past the crypto-period of {days} days{}",
                count(report.keys_past_period, "active key", "active keys"),
                named(&report.keys_past_names, report.keys_past_period)
            ),
        ),
        (
            "unknown-age",
            report.keys_unknown_age,
            format!(
                "{} of unknown age (created before the trail begins), so not known to be within \
                 the crypto-period{}",
                count(report.keys_unknown_age, "active key", "active keys"),
                named(&report.keys_unknown_age_names, report.keys_unknown_age)
            ),
        ),
        (
            "quarantine",
            quarantined,
            format!(
                "{} quarantined (see <code>hsm-audit quarantine</code>){}",
                count(quarantined, "input", "inputs"),
                listed(&reasons)
            ),
        ),
        (
            "late",
            late + ahead + backwards.len(),
            format!(
                "{} later than the allowed lateness (folded in by a replay; one older than the \
                 late horizon stays out of the views until <code>hsm-audit rederive</code>); {} \
                 ahead of the clock (held until it reaches them); {} whose first record is timed \
                 after its last{}",
                count(late, "record arrived", "records arrived"),
                count(ahead, "record timed", "records timed"),
                count(backwards.len(), "stream", "streams"),
                named(&backwards, backwards.len())
            ),
        ),
    ];
    writeln!(
        out,
        "<h3>What to look at</h3><ul class=\"worries\" id=\"worries\">"
    )?;
    for (worry, found, text) in findings {
        writeln!(
            out,
            "<li data-worry=\"{worry}\" data-count=\"{found}\" class=\"{}\">{text}</li>",
            if found > 0 { "bad" } else { "ok" }
        )?;
    }
    writeln!(out, "</ul>")
}

fn stream_row(stream: &StreamRow, out: &mut impl Write) -> io::Result<()> {
    let ranges = if stream.gaps.is_empty() && stream.missing == 0 {
        "none".to_owned()
    } else if stream.gaps.is_empty() {
        format!("{} records", stream.missing)
    } else {
        stream
            .gaps
            .iter()
            .map(|(from, to)| {
                format!(
                    "<span class=\"gap\" data-from=\"{from}\" data-to=\"{to}\">0x{from:x}–0x{to:x} ({})</span>",
                    to - from + 1
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        out,
        "<tr class=\"{}\" data-hsm=\"{}\" data-reboot=\"{}\"><td>{}</td><td class=\"num mono\">0x{:x}</td>\
         <td class=\"num mono\">0x{:x}</td><td class=\"num mono\">0x{:x}</td><td class=\"num\">{}</td>\
         <td>{ranges}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
        if stream.complete() {
            "complete"
        } else {
            "incomplete"
        },
        escape(&stream.hsm),
        stream.reboot_counter,
        escape(&stream.hsm),
        stream.reboot_counter,
        stream.first_seq,
        stream.last_seq,
        stream.records,
        if stream.after_reboot { "yes" } else { "–" },
        stream.conflicts,
        cell_time(stream.first_time),
        cell_time(stream.last_time),
    )
}

/// "Showing the first N of M" when a table holds fewer rows than were counted.
fn cut_note<T>(list: &Rows<T>, whole: &str) -> String {
    let (shown, total) = (list.rows.len(), list.total);
    if shown < total {
        format!("<p class=\"note cut\">This file lists the first {shown} of {total}; {whole}.</p>")
    } else {
        String::new()
    }
}

fn inventory(report: &Report, out: &mut impl Write) -> io::Result<()> {
    let states = report
        .keys_by_state
        .iter()
        .map(|(state, count)| format!("{count} {state}"))
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(
        out,
        "<section id=\"keys\"><h2>Key inventory</h2><p>{} \
         (each generation of a reused handle apart){}; <span class=\"{}\">{} past the \
         crypto-period of {} days{}</span>; {} exported. The inventory is the state at the end of \
         the trail, whatever the period.</p>{}",
        count(
            report.keys.total,
            "key, certificate or Luna object",
            "keys, certificates and Luna objects"
        ),
        listed(&states),
        if report.keys_past_period > 0 {
            "flag"
        } else {
            ""
        },
        count(report.keys_past_period, "active key", "active keys"),
        report.options.max_key_age_micros / MICROS_PER_DAY,
        named(&report.keys_past_names, report.keys_past_period),
        report.keys_exported,
        cut_note(
            &report.keys,
            "every key is in <code>hsm-audit report --format csv</code>"
        )
    )?;
    writeln!(
        out,
        "<div class=\"scroll\"><table id=\"inventory\" class=\"paged\"><thead><tr><th>Key</th><th>Gen</th><th>Kind</th>\
         <th>State</th><th>Age (days)</th><th>Created</th><th>Created by</th><th>How</th><th>HSMs</th>\
         <th>Exported</th><th>Shared with</th><th>Last use</th><th>Destroyed</th></tr></thead><tbody>"
    )?;
    for row in &report.keys.rows {
        key_row(row, out)?;
    }
    writeln!(out, "</tbody></table></div></section>")
}

fn key_row(row: &InventoryRow, out: &mut impl Write) -> io::Result<()> {
    let state = state_name(row.state);
    let last_use = match (&row.last_use_time, &row.last_use_opcode) {
        (Some(time), Some(opcode)) => format!(
            "{} <code>{}</code> by {}",
            cell_time(*time),
            escape(opcode),
            opt(row.last_use_by.as_deref())
        ),
        _ => "–".to_owned(),
    };
    let destroyed = match row.destroyed_time {
        Some(time) => format!(
            "{} by {}",
            cell_time(time),
            opt(row.destroyed_by.as_deref())
        ),
        None => "–".to_owned(),
    };
    let age = match row.age_days {
        Some(days) if row.past_crypto_period => format!("{days} ⚠ past"),
        Some(days) => days.to_string(),
        None if row.age_unknown() => "<span class=\"flag\">unknown</span>".to_owned(),
        None => "–".to_owned(),
    };
    writeln!(
        out,
        "<tr data-key=\"{}\" data-state=\"{state}\"{}><td class=\"mono\">{}</td><td class=\"num\">{}</td>\
         <td>{}</td><td class=\"state-{state}\">{state}</td><td class=\"num age\">{age}</td><td>{}</td><td>{}</td>\
         <td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{last_use}</td><td>{destroyed}</td></tr>",
        escape(&row.key),
        if row.past_crypto_period {
            " class=\"past\""
        } else {
            ""
        },
        escape(&row.key),
        row.generation,
        escape(&row.kind),
        time_cell(row.created_time),
        opt(row.created_by.as_deref()),
        opt(row.created_opcode.as_deref()),
        escape(&row.hsms.join(", ")),
        if row.exported {
            "<span class=\"flag\">yes</span>"
        } else {
            "no"
        },
        if row.shared_with.is_empty() {
            "–".to_owned()
        } else {
            escape(&row.shared_with.join(", ")).into_owned()
        },
    )
}

/// The x of a time in a chart spanning `span` between `left` and the chart's right edge.
fn x_of(time: Timestamp, span: (Timestamp, Timestamp), left: f64) -> f64 {
    let (low, high) = span;
    let width = (high.0 - low.0).max(1) as f64;
    let offset = (time.0.clamp(low.0, high.0) - low.0) as f64;
    left + offset / width * (CHART_WIDTH - left - 10.0)
}

/// Tick labels along a time axis at `y`.
pub(super) fn axis(
    span: (Timestamp, Timestamp),
    left: f64,
    y: f64,
    out: &mut impl Write,
) -> io::Result<()> {
    let (low, high) = span;
    let step = (high.0 - low.0) / 5;
    // Each label as precise as the step between ticks, so that no two read the same:
    // dates, then minutes, seconds, milliseconds (the ISO form's characters).
    let shown = if step >= MICROS_PER_DAY {
        0..10
    } else if step >= 60 * 1_000_000 {
        5..16
    } else if step >= 1_000_000 {
        11..19
    } else {
        11..26
    };
    for tick in 0..=5 {
        let time = Timestamp(low.0 + step * tick);
        let x = x_of(time, span, left);
        let text = time.iso();
        let label = text.get(shown.clone()).unwrap_or(&text).replace('T', " ");
        let anchor = match tick {
            0 => "start",
            5 => "end",
            _ => "middle",
        };
        write!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y:.1}\" y2=\"{:.1}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{label}</text>",
            y + 4.0,
            y + 14.0
        )?;
    }
    Ok(())
}

fn sessions(report: &Report, out: &mut impl Write) -> io::Result<()> {
    let span = report.span();
    let mirrored = report.bars.iter().filter(|bar| bar.mirrored).count();
    let open = report.bars.iter().filter(|bar| bar.end.is_none()).count();
    writeln!(
        out,
        "<section id=\"sessions\"><h2>Sessions</h2><p>{} of {} whose login falls in the period; \
         {mirrored} mirrored on other HSMs of the cluster, {open} still open at the end of the \
         trail.</p>",
        count(report.sessions.total, "session", "sessions"),
        count(report.lanes.len(), "user", "users")
    )?;
    let height = AXIS_HEIGHT + LANE_HEIGHT * report.lanes.len().max(1) as f64 + 4.0;
    writeln!(
        out,
        "<svg id=\"timeline\" viewBox=\"0 0 {CHART_WIDTH} {height:.0}\" role=\"img\" \
         aria-label=\"Session timeline, one lane per user, overlapping sessions stacked\">"
    )?;
    axis(span, LABEL_WIDTH, AXIS_HEIGHT - 18.0, out)?;
    for (lane, user) in report.lanes.iter().enumerate() {
        let y = AXIS_HEIGHT + LANE_HEIGHT * lane as f64;
        write!(
            out,
            "<line class=\"grid\" x1=\"0\" x2=\"{CHART_WIDTH}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"lane-label\" x=\"4\" y=\"{:.1}\">{}</text>",
            y + 14.0,
            escape(&shorten(user, 24))
        )?;
    }
    if report.bars.len() <= report.limits.timeline_bars {
        for bar in &report.bars {
            session_bar(report, bar, span, out)?;
        }
    } else {
        coverage(report, span, out)?;
    }
    writeln!(out, "</svg>")?;
    writeln!(
        out,
        "<p class=\"legend note\"><span><i class=\"swatch\" style=\"background:var(--bar)\"></i>session, login to end</span>\
         <span><i class=\"swatch\" style=\"background:var(--mirror)\"></i>mirrored on other HSMs</span>\
         <span><i class=\"swatch\" style=\"background:var(--bar);opacity:.45\"></i>still open, drawn to its HSM's last record</span>{}</p>",
        if report.bars.len() > report.limits.timeline_bars {
            format!(
                "<span>{} sessions: each lane shows the time its sessions cover, sessions closer \
                 than a pixel drawn as one</span>",
                report.bars.len()
            )
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "<h3>Sessions and their commands</h3>{}<table id=\"session-list\" class=\"paged\"><thead><tr>\
         <th>#</th><th>User</th><th>Type</th><th>Login</th><th>End</th><th>Ended by</th><th>Origin HSM</th>\
         <th>Mirrored on</th><th>Commands</th></tr></thead><tbody>",
        cut_note(
            &report.sessions,
            "every session is in <code>hsm-audit sessions --cluster … --output json</code>"
        )
    )?;
    for row in &report.sessions.rows {
        session_row(report, row, out)?;
    }
    writeln!(out, "</tbody></table></section>")
}

fn shorten(text: &str, most: usize) -> String {
    if text.chars().count() <= most {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(most - 1).collect();
    cut.push('…');
    cut
}

fn session_bar(
    report: &Report,
    bar: &Bar,
    span: (Timestamp, Timestamp),
    out: &mut impl Write,
) -> io::Result<()> {
    let x = x_of(bar.start, span, LABEL_WIDTH);
    let end = bar.drawn_end;
    let width = (x_of(end, span, LABEL_WIDTH) - x).max(2.0);
    let y = AXIS_HEIGHT + LANE_HEIGHT * bar.lane as f64 + 4.0;
    let user = report.lanes.get(bar.lane).map_or("", String::as_str);
    let mut class = String::from("bar");
    if bar.mirrored {
        class.push_str(" mirrored");
    }
    if bar.end.is_none() {
        class.push_str(" open");
    }
    // A bar links to its session's row where the file holds it.
    let (open_link, close_link) = if bar.index < report.sessions.rows.len() {
        (format!("<a href=\"#session-{}\">", bar.index), "</a>")
    } else {
        (String::new(), "")
    };
    writeln!(
        out,
        "{open_link}<rect class=\"{class}\" data-session=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" \
         width=\"{width:.1}\" height=\"{:.1}\"><title>{}: {} to {}</title></rect>{close_link}",
        bar.index,
        LANE_HEIGHT - 8.0,
        escape(user),
        readable(bar.start),
        bar.end.map_or_else(
            || format!("open; its HSM's last record {}", readable(bar.drawn_end)),
            readable
        ),
    )
}

/// Per lane, the pixel columns its sessions cover, as runs: the timeline of a cluster
/// with more sessions than bars fit.
fn coverage(report: &Report, span: (Timestamp, Timestamp), out: &mut impl Write) -> io::Result<()> {
    let mut lanes: BTreeMap<usize, Vec<(u32, u32)>> = BTreeMap::new();
    for bar in &report.bars {
        let start = x_of(bar.start, span, LABEL_WIDTH).floor() as u32;
        let end = x_of(bar.end.unwrap_or(span.1), span, LABEL_WIDTH).ceil() as u32;
        lanes
            .entry(bar.lane)
            .or_default()
            .push((start, end.max(start + 1)));
    }
    for (lane, mut runs) in lanes {
        runs.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (start, end) in runs {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        let y = AXIS_HEIGHT + LANE_HEIGHT * lane as f64 + 4.0;
        for (start, end) in merged {
            write!(
                out,
                "<rect class=\"coverage\" x=\"{start}\" y=\"{y:.1}\" width=\"{}\" height=\"{:.1}\"/>",
                end - start,
                LANE_HEIGHT - 8.0
            )?;
        }
    }
    Ok(())
}

fn session_row(report: &Report, row: &SessionRow, out: &mut impl Write) -> io::Result<()> {
    let session = &row.session;
    write!(
        out,
        "<tr id=\"session-{}\" data-session=\"{}\"><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
        row.index,
        row.index,
        row.index + 1,
        escape(&session.user),
        opt(session.user_type.as_deref()),
        cell_time(session.login_time),
        session
            .end_time
            .map_or_else(|| "open".to_owned(), cell_time),
        opt(session.ended_by.as_deref()),
        escape(&session.origin_hsm),
        if session.mirror_hsms.is_empty() {
            "–".to_owned()
        } else {
            escape(&session.mirror_hsms.join(", ")).into_owned()
        }
    )?;
    if row.commands > 0 {
        write!(
            out,
            "<details><summary>{} commands</summary><table class=\"commands\">",
            row.commands
        )?;
        for event in &session.events {
            let mut names: Vec<String> = event.key_handles.iter().map(u64::to_string).collect();
            names.extend(event.object_ids.iter().cloned());
            let position = match &event.log_event_id {
                Some(id) => format!("event {}", escape(id)),
                None => format!("0x{:x}", event.seq),
            };
            write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"mono\">{position}</td><td><code>{}</code></td>\
                 <td{}>{}</td><td>{}</td><td>{}</td></tr>",
                cell_time(event.time),
                escape(&event.hsm),
                escape(event.opcode.as_str()),
                if event.success { "" } else { " class=\"bad\"" },
                if event.success { "ok" } else { "failed" },
                event
                    .target_user
                    .as_deref()
                    .map(|user| format!("user {}", escape(user)))
                    .unwrap_or_default(),
                if names.is_empty() {
                    String::new()
                } else {
                    format!("keys {}", escape(&names.join(", ")))
                },
            )?;
        }
        write!(out, "</table>")?;
        if row.commands > session.events.len() {
            write!(
                out,
                "<p class=\"note\">and {} more: <code>hsm-audit sessions --cluster {} --user {}</code></p>",
                row.commands - session.events.len(),
                escape(&report.options.cluster),
                escape(&session.user)
            )?;
        }
        write!(out, "</details>")?;
    } else {
        write!(out, "none")?;
    }
    writeln!(out, "</td></tr>")
}

fn failed_logins(report: &Report, out: &mut impl Write) -> io::Result<()> {
    let span = report.span();
    let bursts = report.failed_marks.iter().filter(|(_, b)| *b).count();
    writeln!(
        out,
        "<section id=\"failed-logins\"><h2>Failed logins</h2><p>{} in the period, \
         <span class=\"{}\">{bursts} of them in brute-force bursts</span>.</p>",
        count(report.failed_logins.total, "failed login", "failed logins"),
        if bursts > 0 { "flag" } else { "" }
    )?;
    let mut bins = [(0usize, false); HISTOGRAM_BINS];
    let width = (span.1.0 - span.0.0).max(1) as f64;
    for (time, burst) in &report.failed_marks {
        let offset = (time.0.clamp(span.0.0, span.1.0) - span.0.0) as f64;
        let bin = ((offset / width * HISTOGRAM_BINS as f64) as usize).min(HISTOGRAM_BINS - 1);
        bins[bin].0 += 1;
        bins[bin].1 |= *burst;
    }
    let most = bins
        .iter()
        .map(|(count, _)| *count)
        .max()
        .unwrap_or(0)
        .max(1);
    let (top, plot) = (16.0, 90.0);
    let left = 30.0;
    let bin_width = (CHART_WIDTH - left - 10.0) / HISTOGRAM_BINS as f64;
    writeln!(
        out,
        "<svg id=\"failed-histogram\" viewBox=\"0 0 {CHART_WIDTH} {:.0}\" role=\"img\" \
         aria-label=\"Failed logins over the period\"><text x=\"0\" y=\"{:.1}\">{most}</text>\
         <text x=\"0\" y=\"{:.1}\">0</text><line class=\"grid\" x1=\"{left}\" x2=\"{CHART_WIDTH}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        top + plot + 24.0,
        top + 8.0,
        top + plot,
        top + plot,
        top + plot
    )?;
    for (index, (count, burst)) in bins.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let height = plot * *count as f64 / most as f64;
        let x = left + bin_width * index as f64;
        write!(
            out,
            "<rect class=\"bin{}\" data-count=\"{count}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\">\
             <title>{count} failed logins{}</title></rect>",
            if *burst { " burst" } else { "" },
            top + plot - height,
            (bin_width - 1.0).max(1.0),
            if *burst { ", brute force" } else { "" }
        )?;
        if *burst {
            write!(
                out,
                "<text class=\"burst-mark\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">▲ brute force</text>",
                x + bin_width / 2.0,
                (top + plot - height - 3.0).max(10.0)
            )?;
        }
    }
    axis(span, left, top + plot, out)?;
    writeln!(out, "</svg>")?;
    writeln!(
        out,
        "{}<table id=\"failed-list\" class=\"paged\"><thead><tr><th>Time</th><th>HSM</th><th>Seq / event</th>\
         <th>User</th><th>User type</th><th>Response</th><th>Brute force</th></tr></thead><tbody>",
        cut_note(
            &report.failed_logins,
            "every one is in <code>hsm-audit failed-logins --output json</code>"
        )
    )?;
    for login in &report.failed_logins.rows {
        failed_row(login, out)?;
    }
    writeln!(out, "</tbody></table></section>")
}

fn failed_row(login: &FailedLogin, out: &mut impl Write) -> io::Result<()> {
    let position = match &login.log_event_id {
        Some(id) => format!("event {}", escape(id)),
        None => format!("0x{:x}", login.seq),
    };
    writeln!(
        out,
        "<tr{}><td>{}</td><td>{}</td><td class=\"mono\">{position}</td><td>{}</td><td>{}</td>\
         <td>{} {}</td><td>{}</td></tr>",
        if login.brute_force {
            " class=\"burst\""
        } else {
            ""
        },
        cell_time(login.time),
        escape(&login.hsm),
        escape(&login.user),
        opt(login.user_type.as_deref()),
        login.response_code,
        escape(&login.response),
        if login.brute_force {
            "<span class=\"flag\">yes</span>"
        } else {
            "–"
        }
    )
}

fn alerts(report: &Report, out: &mut impl Write) -> io::Result<()> {
    let kinds = report
        .alerts_by_kind
        .iter()
        .map(|(kind, count)| format!("{count} {}", kind.as_str().replace('_', " ")))
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(
        out,
        "<section id=\"alerts\"><h2>Alerts and sensitive operations</h2><p>{} in the period{}, \
         newest first. User is who acted; the detail names the user acted on, where there is one. \
         The log event id finds the original record in CloudWatch Logs.</p>{}\
         <table id=\"alert-list\" class=\"paged\"><thead><tr><th>Time</th><th>Kind</th><th>HSM</th>\
         <th>Seq</th><th>User (actor)</th><th>Opcode</th><th>Log event id</th><th>Detail</th></tr></thead><tbody>",
        count(report.alerts.total, "alert", "alerts"),
        listed(&kinds),
        cut_note(
            &report.alerts,
            "every alert is in <code>hsm-audit report --format csv --data alerts</code>"
        )
    )?;
    for row in &report.alerts.rows {
        let alert = &row.alert;
        let position = match (alert.from, alert.to, alert.seq) {
            (Some(from), Some(to), _) => format!("0x{from:x}–0x{to:x}"),
            (_, _, Some(seq)) => format!("0x{seq:x}"),
            _ => "–".to_owned(),
        };
        let serious = matches!(
            alert.kind,
            AlertKind::SequenceGap | AlertKind::ConflictingDuplicate | AlertKind::BruteForce
        );
        writeln!(
            out,
            "<tr data-kind=\"{}\"><td>{}</td><td{}>{}</td><td>{}</td><td class=\"mono\">{position}</td>\
             <td>{}</td><td><code>{}</code></td><td class=\"mono\">{}</td><td>{}</td></tr>",
            alert.kind.as_str(),
            cell_time(alert.time),
            if serious { " class=\"bad\"" } else { "" },
            alert.kind.as_str().replace('_', " "),
            opt(alert.hsm.as_deref()),
            opt(alert.user.as_deref()),
            opt(alert.opcode.as_ref().map(|op| op.as_str())),
            opt(row.log_event_id.as_deref()),
            opt(alert.detail.as_deref()),
        )?;
    }
    writeln!(out, "</tbody></table></section>")
}

fn quorum(report: &Report, out: &mut impl Write) -> io::Result<()> {
    let quorum = &report.quorum;
    writeln!(
        out,
        "<section id=\"quorum\"><h2>Quorum approvals</h2><table id=\"quorum-tokens\"><thead><tr>\
         <th>Requested</th><th>HSM</th><th>Seq</th><th>Requested by</th><th>Approved by</th><th>Ended</th>\
         <th>Ended by</th><th>Requester's commands while it lived</th></tr></thead><tbody>"
    )?;
    for token in &quorum.tokens {
        writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"mono\">0x{:x}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            cell_time(token.time),
            escape(&token.hsm),
            token.seq,
            opt(token.requested_by.as_deref()),
            if token.approved_by.is_empty() {
                "–".to_owned()
            } else {
                escape(&token.approved_by.join(", ")).into_owned()
            },
            time_cell(token.end_time),
            opt(token.ended_by.as_deref()),
            token
                .activity
                .iter()
                .map(|step| escape(step.opcode.as_str()).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    writeln!(out, "</tbody></table>")?;
    if !quorum.m_values.is_empty() {
        writeln!(
            out,
            "<h3>M-value settings</h3><table id=\"quorum-m-values\"><thead><tr><th>Time</th><th>HSM</th>\
             <th>By</th><th>Value</th><th>Previous</th><th>Result</th></tr></thead><tbody>"
        )?;
        for setting in &quorum.m_values {
            let lowered = matches!((setting.value, setting.previous), (Some(v), Some(p)) if v < p);
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td><td>{}</td><td>{}</td></tr>",
                cell_time(setting.step.time),
                escape(&setting.step.hsm),
                opt(setting.step.user.as_deref()),
                if lowered { " class=\"bad\"" } else { "" },
                setting
                    .value
                    .map_or_else(|| "not logged".to_owned(), |v| v.to_string()),
                setting
                    .previous
                    .map_or_else(|| "–".to_owned(), |v| v.to_string()),
                if setting.step.success { "ok" } else { "failed" }
            )?;
        }
        writeln!(out, "</table>")?;
    }
    writeln!(out, "</section>")
}
