//! The key inventory and the alerts as CSV (for spreadsheets) or JSON (for ticketing),
//! written a row at a time.

use std::io::Write;

use super::{AlertRow, InventoryRow};
use crate::domain::Alert;
use crate::store::RecordPosition;

/// The inventory's CSV columns, in order (`docs/reports.md` lists them).
pub const INVENTORY_COLUMNS: [&str; 20] = [
    "key",
    "generation",
    "kind",
    "state",
    "created_time",
    "created_by",
    "created_opcode",
    "hsms",
    "exported",
    "shared_with",
    "last_use_time",
    "last_use_opcode",
    "last_use_by",
    "destroyed_time",
    "destroyed_by",
    "age_days",
    "past_crypto_period",
    "pair_handle",
    "events",
    "cluster",
];

/// The alerts' CSV columns, in order.
pub const ALERT_COLUMNS: [&str; 12] = [
    "time",
    "kind",
    "hsm",
    "reboot_counter",
    "seq",
    "gap_from",
    "gap_to",
    "user",
    "opcode",
    "log_event_id",
    "detail",
    "cluster",
];

/// Where an alert's record sits in the trail, when it names one.
pub fn alert_position(alert: &Alert) -> Option<RecordPosition> {
    Some((alert.hsm.clone()?, alert.reboot_counter?, alert.seq?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    Csv,
    /// A JSON array of objects, one per row, with the CSV's columns as typed values.
    Json,
}

/// Writes rows of one kind: a header (CSV) or `[` (JSON) before the first.
pub struct RowWriter<W: Write> {
    out: W,
    format: RowFormat,
    cluster: String,
    rows: usize,
}

impl<W: Write> RowWriter<W> {
    pub fn new(out: W, format: RowFormat, cluster: &str) -> Self {
        Self {
            out,
            format,
            cluster: cluster.to_owned(),
            rows: 0,
        }
    }

    pub fn inventory(&mut self, row: &InventoryRow) -> std::io::Result<()> {
        let cells = [
            row.key.clone(),
            row.generation.to_string(),
            row.kind.clone(),
            super::state_name(row.state).to_owned(),
            time(row.created_time),
            text(&row.created_by),
            text(&row.created_opcode),
            row.hsms.join(" "),
            row.exported.to_string(),
            row.shared_with.join(" "),
            time(row.last_use_time),
            text(&row.last_use_opcode),
            text(&row.last_use_by),
            time(row.destroyed_time),
            text(&row.destroyed_by),
            row.age_days.map(|d| d.to_string()).unwrap_or_default(),
            row.past_crypto_period.to_string(),
            row.pair_handle.map(|h| h.to_string()).unwrap_or_default(),
            row.events.to_string(),
            self.cluster.clone(),
        ];
        self.row(&INVENTORY_COLUMNS, &cells, row)
    }

    pub fn alert(&mut self, row: &AlertRow) -> std::io::Result<()> {
        let alert = &row.alert;
        let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
        let cells = [
            alert.time.iso(),
            alert.kind.as_str().to_owned(),
            text(&alert.hsm),
            alert
                .reboot_counter
                .map(|n| n.to_string())
                .unwrap_or_default(),
            number(alert.seq),
            number(alert.from),
            number(alert.to),
            text(&alert.user),
            alert
                .opcode
                .as_ref()
                .map(|op| op.as_str().to_owned())
                .unwrap_or_default(),
            text(&row.log_event_id),
            text(&alert.detail),
            self.cluster.clone(),
        ];
        self.row(&ALERT_COLUMNS, &cells, row)
    }

    fn row(
        &mut self,
        columns: &[&str],
        cells: &[String],
        typed: &impl serde::Serialize,
    ) -> std::io::Result<()> {
        let first = self.rows == 0;
        self.rows += 1;
        match self.format {
            RowFormat::Csv => {
                if first {
                    writeln!(self.out, "{}", columns.join(","))?;
                }
                let line: Vec<String> = cells.iter().map(|cell| csv_cell(cell)).collect();
                writeln!(self.out, "{}", line.join(","))
            }
            RowFormat::Json => {
                let mut value = serde_json::to_value(typed)?;
                if let Some(object) = value.as_object_mut() {
                    object.insert("cluster".into(), self.cluster.clone().into());
                }
                self.out.write_all(if first { b"[\n" } else { b",\n" })?;
                serde_json::to_writer(&mut self.out, &value)?;
                Ok(())
            }
        }
    }

    /// Ends the document (a header alone, or `[]`, when there were no rows).
    pub fn finish(mut self, columns: &[&str]) -> std::io::Result<W> {
        match (self.format, self.rows) {
            (RowFormat::Csv, 0) => writeln!(self.out, "{}", columns.join(","))?,
            (RowFormat::Csv, _) => {}
            (RowFormat::Json, 0) => self.out.write_all(b"[]\n")?,
            (RowFormat::Json, _) => self.out.write_all(b"\n]\n")?,
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

fn time(value: Option<crate::model::Timestamp>) -> String {
    value.map(|time| time.iso()).unwrap_or_default()
}

/// One CSV cell (RFC 4180): quoted when it holds a comma, quote or line break. A cell
/// from the log that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or
/// carriage return first) is prefixed with `'`: user names come from the HSM's log.
pub fn csv_cell(cell: &str) -> String {
    let guarded = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}
