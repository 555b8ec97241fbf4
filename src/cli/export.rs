//! `hsm-audit export`: a cluster's trail and alerts as OCSF events ([`crate::ocsf`]),
//! one folder per class, NDJSON: `DIR/<class>/<cluster>.ndjson`. The trail is read a
//! page at a time and each event written as it is made, so memory stays that of a page.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::alerts::StoredAlert;
use crate::model::Timestamp;
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
}

/// The time window; either end open.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

impl Window {
    fn contains(self, time: Timestamp) -> bool {
        self.from.is_none_or(|from| time >= from) && self.to.is_none_or(|to| time <= to)
    }
}

/// One NDJSON file per class, opened when its first event comes.
struct ClassFiles {
    dir: PathBuf,
    file_name: String,
    open: BTreeMap<OcsfClass, (PathBuf, BufWriter<File>)>,
    summary: ExportSummary,
}

impl ClassFiles {
    fn write(&mut self, event: &OcsfEvent) -> Result<(), ExportError> {
        if !self.open.contains_key(&event.class) {
            let folder = self.dir.join(event.class.name());
            std::fs::create_dir_all(&folder).map_err(|source| write_error(&folder, source))?;
            let path = folder.join(&self.file_name);
            let file = File::create(&path).map_err(|source| write_error(&path, source))?;
            self.open.insert(event.class, (path, BufWriter::new(file)));
        }
        if let Some((path, file)) = self.open.get_mut(&event.class) {
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
            self.summary.files.push(path);
        }
        Ok(self.summary)
    }
}

fn write_error(path: &Path, source: std::io::Error) -> ExportError {
    ExportError::Write {
        path: path.display().to_string(),
        source,
    }
}

/// A cluster name as a file name: the characters a file system may treat specially
/// become `_` (cluster ids are `cluster-<id>`, so they stay as they are).
fn file_name(cluster: &str) -> String {
    let safe: String = cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.ndjson", safe.trim_start_matches('.'))
}

/// Writes the cluster's records and alerts in `window` under `dir`.
pub async fn export_ocsf<S: AuditStore>(
    store: &S,
    table: &str,
    cluster: &str,
    window: Window,
    dir: &Path,
) -> Result<ExportSummary, ExportError> {
    let mut files = ClassFiles {
        dir: dir.to_owned(),
        file_name: file_name(cluster),
        open: BTreeMap::new(),
        summary: ExportSummary {
            out: dir.to_owned(),
            format: "ndjson",
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
    let mut start = None;
    loop {
        let (page, next) = store
            .view_page(cluster, items::ALERT_PREFIX, false, start)
            .await?;
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
        match next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    files.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_name_becomes_a_file_name_of_its_own() {
        assert_eq!(file_name("cluster-demo"), "cluster-demo.ndjson");
        assert_eq!(file_name("../etc/x y"), "_etc_x_y.ndjson");
        assert_eq!(file_name("..hidden"), "hidden.ndjson");
    }
}
