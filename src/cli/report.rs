//! `report`: the auditor's report written to a file, whole or not at all.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::args::{ReportData, ReportFormat};
use super::failure::{Failure, processing};
use crate::store::dynamodb::DynamoStore;

/// What `report --output json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct ReportSummary {
    pub out: PathBuf,
    pub format: &'static str,
    /// Rows written (CSV, JSON); absent for HTML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    /// What the HTML report counted; absent for CSV and JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<ReportCounts>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReportCounts {
    pub streams: usize,
    pub complete: bool,
    pub missing_ranges: usize,
    pub keys: usize,
    pub keys_past_crypto_period: usize,
    pub sessions: usize,
    pub failed_logins: usize,
    pub alerts: usize,
}

/// Writes the report next to `out` and moves it there once whole, so that a failed run
/// never leaves half a file where a finished one is expected.
pub(super) async fn write_report(
    store: &DynamoStore,
    options: crate::report::Options,
    out: &std::path::Path,
    format: ReportFormat,
    data: Option<ReportData>,
) -> Result<ReportSummary, Failure> {
    use crate::report::{read, rows};
    use std::io::BufWriter;
    if format == ReportFormat::Html && data.is_some() {
        return Err(Failure::Usage(
            "--data chooses the rows of --format csv or json; the HTML report holds them all"
                .into(),
        ));
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .map_err(|error| Failure::Usage(format!("{}: {error}", partial.display())))?;
    let mut writer = BufWriter::new(file);
    let failed = |error: read::ReportError| {
        let _ = std::fs::remove_file(&partial);
        match error {
            read::ReportError::Store(error) => processing(error),
            other => processing(other),
        }
    };
    let mut summary = ReportSummary {
        out: out.to_owned(),
        format: match format {
            ReportFormat::Html => "html",
            ReportFormat::Csv => "csv",
            ReportFormat::Json => "json",
        },
        rows: None,
        counts: None,
    };
    if format == ReportFormat::Html {
        let quarantine = quarantine_reasons(store, &options.cluster)
            .await
            .map_err(|error| failed(error.into()))?;
        let mut report = read::build(store, options, crate::report::Limits::default())
            .await
            .map_err(failed)?;
        report.quarantine = quarantine;
        crate::report::html::write(&report, &mut writer)
            .and_then(|()| std::io::Write::flush(&mut writer))
            .map_err(|error| failed(error.into()))?;
        summary.counts = Some(ReportCounts {
            streams: report.streams.len(),
            complete: report.complete(),
            missing_ranges: report.streams.iter().map(|s| s.gaps.len()).sum(),
            keys: report.keys.total,
            keys_past_crypto_period: report.keys_past_period,
            sessions: report.sessions.total,
            failed_logins: report.failed_logins.total,
            alerts: report.alerts.total,
        });
    } else {
        let row_format = if format == ReportFormat::Csv {
            rows::RowFormat::Csv
        } else {
            rows::RowFormat::Json
        };
        let mut rows_out = rows::RowWriter::new(writer, row_format, &options.cluster);
        let (written, columns) = match data.unwrap_or(ReportData::Keys) {
            ReportData::Keys => (
                read::export_keys(store, options, &mut rows_out).await,
                &rows::INVENTORY_COLUMNS[..],
            ),
            ReportData::Alerts => (
                read::export_alerts(store, &options, &mut rows_out).await,
                &rows::ALERT_COLUMNS[..],
            ),
        };
        summary.rows = Some(written.map_err(failed)?);
        rows_out
            .finish(columns)
            .map_err(|error| failed(error.into()))?;
    }
    std::fs::rename(&partial, out)
        .map_err(|error| processing(format!("{}: {error}", out.display())))?;
    Ok(summary)
}

/// The quarantined input of `cluster`, and of no cluster (without a log group to tell),
/// by reason.
async fn quarantine_reasons(
    store: &DynamoStore,
    cluster: &str,
) -> Result<BTreeMap<String, usize>, crate::store::StoreError> {
    let mut reasons = BTreeMap::new();
    for item in store.quarantined().await? {
        let of = item.log_group.as_deref().map(|group| {
            crate::model::StreamId::from_log(group, item.log_stream.as_deref().unwrap_or_default())
                .cluster
        });
        if of.is_none_or(|of| &*of == cluster) {
            *reasons.entry(item.reason).or_default() += 1;
        }
    }
    Ok(reasons)
}
