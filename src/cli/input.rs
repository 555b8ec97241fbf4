//! `ingest` and `parse`: files decoded and parsed as the function would take them,
//! stored and derived (`ingest`) or only counted (`parse`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::args::{InputArgs, InputFormat, Output};
use super::failure::{Failure, processing};
use super::{files, render};
use crate::config::Config;
use crate::decode::RawTextSource;
use crate::pipeline::{Report, derive_clusters, parse_decoded, stop_at_first, store_parsed};
use crate::store::dynamodb::DynamoStore;

/// Reads one file, once, and decodes it as `--format` says. Undecodable content is
/// quarantined, not an error; only a file that cannot be read, or raw text without its
/// group and stream, is.
fn decode_input(
    file: &std::path::Path,
    input: &InputArgs,
    source: &RawTextSource,
    max_inflated_bytes: usize,
) -> Result<Vec<crate::decode::Decoded>, String> {
    let bytes = std::fs::read(file).map_err(|error| format!("{}: {error}", file.display()))?;
    let name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let luna = match input.format {
        InputFormat::Luna => true,
        InputFormat::Auto => crate::decode::looks_like_luna_file(&bytes, max_inflated_bytes),
    };
    if luna {
        return Ok(crate::decode::decode_luna_file(
            &bytes,
            &name,
            input.log_group.as_deref(),
            max_inflated_bytes,
        ));
    }
    crate::decode::decode_document(&bytes, &name, source, max_inflated_bytes)
}

fn source_of(input: &InputArgs) -> RawTextSource {
    RawTextSource {
        log_group: input.log_group.clone(),
        log_stream: input.log_stream.clone(),
    }
}

/// A progress bar of `len` `unit`s for `task`.
pub(super) fn progress(len: usize, task: &str, unit: &str) -> ProgressBar {
    // indicatif draws on stderr only when it is a terminal: scripts see clean output.
    let bar = ProgressBar::new(len as u64);
    let template = format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(task.to_owned());
    bar
}

pub(super) async fn ingest_files(
    store: &DynamoStore,
    config: &Config,
    input: &InputArgs,
    output: Output,
) -> Result<(), Failure> {
    let files = files::collect(&input.paths).map_err(Failure::Usage)?;
    let source = source_of(input);
    let bar = progress(files.len(), "ingest", "files");
    let mut report = Report::default();
    let mut quarantine = Vec::new();
    for file in &files {
        let parsed = parse_decoded(
            decode_input(file, input, &source, config.max_inflated_bytes)
                .map_err(Failure::Usage)?,
        );
        quarantine.extend(parsed.quarantined.iter().map(|item| QuarantineNote {
            file: file.clone(),
            reason: item.reason.clone(),
            raw_sha256: item.raw_sha256.clone(),
        }));
        // Each file as the function takes one delivery (a subscription payload, a Kinesis
        // or Firehose batch): stored, then derived, so that what the CLI shows is what the
        // function does.
        let mut stored = store_parsed(store, parsed).await.map_err(processing)?;
        derive_clusters(store, config, &mut stored, stop_at_first)
            .await
            .map_err(processing)?;
        report.add(stored);
        bar.set_message(format!("{} records", report.records));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = IngestSummary { report, quarantine };
    render::emit(output, &summary, || render::ingest_text(&summary))
}

/// What `ingest` prints: the pipeline's counts, and each item it quarantined with the
/// file it came from, so that input that was not taken says why.
#[derive(Debug, Serialize)]
pub(crate) struct IngestSummary {
    #[serde(flatten)]
    pub report: Report,
    pub quarantine: Vec<QuarantineNote>,
}

#[derive(Debug, Serialize)]
pub(crate) struct QuarantineNote {
    pub file: PathBuf,
    pub reason: String,
    /// The key of `quarantine --export`.
    pub raw_sha256: String,
}

/// The `parse --output json` contract: counts that the benchmark and scripts rely on.
#[derive(Debug, Serialize)]
struct ParseSummary {
    events: usize,
    quarantined: usize,
    failed_logins: usize,
    control_messages: usize,
    by_opcode: BTreeMap<String, usize>,
    clusters: BTreeSet<String>,
}

pub(super) fn parse_only(input: &InputArgs, output: Output) -> Result<(), Failure> {
    let max_inflated_bytes = crate::config::max_inflated_bytes_from_env()
        .map_err(|error| Failure::Usage(error.to_string()))?;
    let files = files::collect(&input.paths).map_err(Failure::Usage)?;
    let source = source_of(input);
    let bar = progress(files.len(), "parse", "files");
    let mut summary = ParseSummary {
        events: 0,
        quarantined: 0,
        failed_logins: 0,
        control_messages: 0,
        by_opcode: BTreeMap::new(),
        clusters: BTreeSet::new(),
    };
    for file in &files {
        let parsed = parse_decoded(
            decode_input(file, input, &source, max_inflated_bytes).map_err(Failure::Usage)?,
        );
        for entry in parsed.records() {
            summary.events += 1;
            summary.failed_logins += usize::from(entry.record.is_failed_login());
            let opcode = entry.record.opcode_name();
            match summary.by_opcode.get_mut(opcode) {
                Some(count) => *count += 1,
                None => {
                    summary.by_opcode.insert(opcode.to_owned(), 1);
                }
            }
        }
        summary.quarantined += parsed.quarantined.len();
        summary.control_messages += parsed.control_messages;
        summary.clusters.extend(parsed.entries.keys().cloned());
        bar.inc(1);
    }
    bar.finish_and_clear();
    render::emit(output, &summary, || {
        render::parse_text(
            summary.events,
            summary.quarantined,
            summary.failed_logins,
            &summary.by_opcode,
        )
    })
}
