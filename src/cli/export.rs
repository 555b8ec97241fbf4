//! `hsm-audit export`: a cluster's trail and alerts as OCSF events ([`crate::ocsf`]),
//! one folder per class — NDJSON (`DIR/<class>/<cluster>.ndjson`), or Parquet in Security
//! Lake's partitions (`DIR/<class>/region=<r>/accountId=<a>/eventDay=<YYYYMMDD>/
//! <cluster>.parquet`). The trail is read a page at a time and each event written as it
//! is made, so memory stays that of a page: Parquet is staged as NDJSON per partition,
//! then converted a batch at a time (its schema inferred from the events in a first read).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use serde::Serialize;

use crate::alerts::StoredAlert;
use crate::ocsf::{OcsfClass, OcsfEvent, alert_event, record_event};
use crate::store::dynamodb::items::{self, ViewRow};
use crate::store::{AuditStore, StoreError};

/// What `export --output json` prints.
#[derive(Debug, Default, Serialize)]
pub struct ExportSummary {
    pub out: PathBuf,
    pub format: &'static str,
    pub events: usize,
    /// Events per OCSF class name.
    pub by_class: BTreeMap<&'static str, usize>,
    pub files: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path} as Parquet: {reason}")]
    Parquet { path: String, reason: String },
}

/// How the events are laid out under the output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `DIR/<class>/<cluster>.ndjson`.
    Ndjson,
    /// Security Lake's custom-source partitions, Parquet.
    SecurityLake { region: String, account: String },
}

pub use crate::store::window::Window;
use crate::store::window::{Pages, ViewOrder};

/// One NDJSON file per class (and day, for Security Lake), opened when its first event
/// comes.
struct ClassFiles {
    dir: PathBuf,
    cluster: String,
    layout: Layout,
    open: BTreeMap<(OcsfClass, String), (PathBuf, BufWriter<File>)>,
    summary: ExportSummary,
}

impl ClassFiles {
    /// The folder and file (staged NDJSON, for Parquet) of an event.
    fn path_of(&self, event: &OcsfEvent) -> PathBuf {
        let folder = self.dir.join(event.class.name());
        match &self.layout {
            Layout::Ndjson => folder.join(format!("{}.ndjson", file_stem(&self.cluster))),
            Layout::SecurityLake { region, account } => folder
                .join(format!("region={}", file_stem(region)))
                .join(format!("accountId={}", file_stem(account)))
                .join(format!("eventDay={}", event_day(event)))
                .join(format!("{}.ndjson.part", file_stem(&self.cluster))),
        }
    }

    fn write(&mut self, event: &OcsfEvent) -> Result<(), ExportError> {
        let day = match self.layout {
            Layout::Ndjson => String::new(),
            Layout::SecurityLake { .. } => event_day(event),
        };
        let key = (event.class, day);
        if !self.open.contains_key(&key) {
            let path = self.path_of(event);
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder).map_err(|source| write_error(folder, source))?;
            }
            let file = File::create(&path).map_err(|source| write_error(&path, source))?;
            self.open.insert(key.clone(), (path, BufWriter::new(file)));
        }
        if let Some((path, file)) = self.open.get_mut(&key) {
            serde_json::to_writer(&mut *file, &event.event)
                .map_err(|error| write_error(path, error.into()))?;
            file.write_all(b"\n")
                .map_err(|source| write_error(path, source))?;
        }
        self.summary.events += 1;
        *self.summary.by_class.entry(event.class.name()).or_default() += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<ExportSummary, ExportError> {
        for (path, mut file) in std::mem::take(&mut self.open).into_values() {
            file.flush().map_err(|source| write_error(&path, source))?;
            drop(file);
            if self.layout == Layout::Ndjson {
                self.summary.files.push(path);
                continue;
            }
            let parquet = path.with_extension("").with_extension("parquet");
            ndjson_to_parquet(&path, &parquet)?;
            std::fs::remove_file(&path).map_err(|source| write_error(&path, source))?;
            self.summary.files.push(parquet);
        }
        Ok(self.summary)
    }
}

/// The UTC day of an event's `time` (epoch milliseconds), as Security Lake partitions.
fn event_day(event: &OcsfEvent) -> String {
    event.event["time"]
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|time| time.format("%Y%m%d").to_string())
        .unwrap_or_else(|| "00000000".to_owned())
}

/// Converts a staged NDJSON file to Parquet (Snappy): the schema inferred in one read,
/// the rows converted in batches in a second, so memory stays that of a batch.
fn ndjson_to_parquet(staged: &Path, parquet: &Path) -> Result<(), ExportError> {
    let failed = |reason: String| ExportError::Parquet {
        path: parquet.display().to_string(),
        reason,
    };
    let open = || {
        File::open(staged)
            .map(BufReader::new)
            .map_err(|source| write_error(staged, source))
    };
    let (inferred, _) = arrow_json::reader::infer_json_schema(open()?, None)
        .map_err(|error| failed(error.to_string()))?;
    let schema = Arc::new(Schema::new(storable(inferred.fields())));
    let reader = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(8_192)
        .build(open()?)
        .map_err(|error| failed(error.to_string()))?;
    let file = File::create(parquet).map_err(|source| write_error(parquet, source))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(properties))
        .map_err(|error| failed(error.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|error| failed(error.to_string()))?;
        writer
            .write(&batch)
            .map_err(|error| failed(error.to_string()))?;
    }
    writer.close().map_err(|error| failed(error.to_string()))?;
    Ok(())
}

/// The fields Parquet can store: an object that is always empty (`{}`) has no columns,
/// and Parquet has no empty group, so it is left out (nothing of it is lost).
fn storable(fields: &Fields) -> Vec<Field> {
    fields
        .iter()
        .filter_map(|field| {
            let data_type = match field.data_type() {
                DataType::Struct(children) => {
                    let kept = storable(children);
                    if kept.is_empty() {
                        return None;
                    }
                    DataType::Struct(kept.into())
                }
                DataType::List(item) => match item.data_type() {
                    DataType::Struct(children) => {
                        let kept = storable(children);
                        if kept.is_empty() {
                            return None;
                        }
                        DataType::List(Arc::new(
                            item.as_ref()
                                .clone()
                                .with_data_type(DataType::Struct(kept.into())),
                        ))
                    }
                    _ => field.data_type().clone(),
                },
                other => other.clone(),
            };
            Some(field.as_ref().clone().with_data_type(data_type))
        })
        .collect()
}

fn write_error(path: &Path, source: std::io::Error) -> ExportError {
    ExportError::Write {
        path: path.display().to_string(),
        source,
    }
}

/// A name as a file name: the characters a file system may treat specially become `_`
/// (cluster ids are `cluster-<id>`, so they stay as they are).
fn file_stem(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    safe.trim_start_matches('.').to_owned()
}

/// Writes the cluster's records and alerts in `window` under `dir`.
pub async fn export_ocsf<S: AuditStore>(
    store: &S,
    table: &str,
    cluster: &str,
    window: Window,
    dir: &Path,
    layout: Layout,
) -> Result<ExportSummary, ExportError> {
    let format = match layout {
        Layout::Ndjson => "ndjson",
        Layout::SecurityLake { .. } => "parquet",
    };
    let mut files = ClassFiles {
        dir: dir.to_owned(),
        cluster: cluster.to_owned(),
        layout,
        open: BTreeMap::new(),
        summary: ExportSummary {
            out: dir.to_owned(),
            format,
            ..ExportSummary::default()
        },
    };
    let mut after: Option<String> = None;
    loop {
        let (page, next) = store.trail_page(cluster, after.as_deref()).await?;
        for item in page {
            if !items::is_trail_record(&item) {
                continue;
            }
            let entry = items::trail_entry_from_item(item)?;
            if window.contains(entry.record.time()) {
                files.write(&record_event(&entry))?;
            }
        }
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut pages = Pages::new(
        store,
        cluster,
        ViewOrder::SortKey,
        window.bounds(items::ALERT_PREFIX),
    );
    while let Some(page) = pages.next().await? {
        for item in page {
            let id = items::sort_key(&item);
            if let ViewRow::Alert(alert) = items::view_row(item)?
                && window.contains(alert.time)
            {
                let stored = StoredAlert {
                    cluster: cluster.to_owned(),
                    table: table.to_owned(),
                    id,
                    alert,
                    log_event_ids: Vec::new(),
                    archived: false,
                };
                files.write(&alert_event(&stored))?;
            }
        }
    }
    files.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_name_becomes_a_file_name_of_its_own() {
        assert_eq!(file_stem("cluster-demo"), "cluster-demo");
        assert_eq!(file_stem("../etc/x y"), "_etc_x_y");
        assert_eq!(file_stem("..hidden"), "hidden");
    }
}
