//! Reads a cluster's views out of the store a page at a time into the report's model,
//! or straight into CSV or JSON rows.

use std::collections::HashMap;

use super::rows::{RowWriter, alert_position};
use super::{AlertRow, Builder, Limits, Options, Report};
use crate::store::dynamodb::items::{self, ViewRow};
use crate::store::{AuditStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
}

/// The pages of the cluster's view items under one prefix.
struct Pages<'a, S> {
    store: &'a S,
    cluster: &'a str,
    prefix: &'a str,
    reverse: bool,
    start: Option<items::Item>,
    done: bool,
}

impl<'a, S: AuditStore> Pages<'a, S> {
    fn new(store: &'a S, cluster: &'a str, prefix: &'a str, reverse: bool) -> Self {
        Self {
            store,
            cluster,
            prefix,
            reverse,
            start: None,
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Option<Vec<items::Item>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let (page, next) = self
            .store
            .view_page(self.cluster, self.prefix, self.reverse, self.start.take())
            .await?;
        self.done = next.is_none() || page.is_empty();
        self.start = next;
        Ok(Some(page))
    }
}

/// Hands each view item under `prefix` to `on_row`, read a page at a time.
async fn each_row<S: AuditStore>(
    store: &S,
    cluster: &str,
    prefix: &str,
    reverse: bool,
    mut on_row: impl FnMut(ViewRow) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let mut pages = Pages::new(store, cluster, prefix, reverse);
    while let Some(page) = pages.next().await? {
        for item in page {
            on_row(items::view_row(item)?)?;
        }
    }
    Ok(())
}

/// The whole report of a cluster, read page by page.
pub async fn build<S: AuditStore>(
    store: &S,
    options: Options,
    limits: Limits,
) -> Result<Report, ReportError> {
    let cluster = options.cluster.clone();
    let mut builder = Builder::new(options, limits);
    each_row(store, &cluster, items::STREAM_PREFIX, false, |row| {
        if let ViewRow::Stream(stream) = row {
            builder.stream(stream);
        }
        Ok(())
    })
    .await?;
    each_row(store, &cluster, items::ALERT_PREFIX, true, |row| {
        if let ViewRow::Alert(alert) = row {
            builder.alert(alert, None);
        }
        Ok(())
    })
    .await?;
    each_row(store, &cluster, &items::key_prefix(None), false, |row| {
        match row {
            ViewRow::KeyHead(key) => {
                builder.key_head(&key);
            }
            ViewRow::KeyEvent(event) => builder.key_event(&event),
            _ => {}
        }
        Ok(())
    })
    .await?;
    each_row(
        store,
        &cluster,
        &items::session_prefix(None),
        false,
        |row| {
            match row {
                ViewRow::SessionHead(session) => builder.session_head(session),
                ViewRow::SessionEvent(event) => builder.session_event(event),
                _ => {}
            }
            Ok(())
        },
    )
    .await?;
    each_row(store, &cluster, items::FAILED_LOGIN_PREFIX, false, |row| {
        if let ViewRow::FailedLogin(login) = row {
            builder.failed_login(login);
        }
        Ok(())
    })
    .await?;
    // Quorum tokens are few (one per approval round); their items are read whole.
    let mut quorum = Vec::new();
    let mut pages = Pages::new(store, &cluster, items::QUORUM_PREFIX, false);
    while let Some(page) = pages.next().await? {
        quorum.extend(page);
    }
    builder.quorum(items::quorum_from_items(quorum)?);
    let mut report = builder.finish();
    with_log_event_ids(store, &cluster, &mut report.alerts.rows).await?;
    Ok(report)
}

/// Fills in the log event id of each alert that names a record of the trail.
async fn with_log_event_ids<S: AuditStore>(
    store: &S,
    cluster: &str,
    rows: &mut [AlertRow],
) -> Result<(), StoreError> {
    let positions: Vec<_> = rows
        .iter()
        .filter_map(|row| alert_position(&row.alert))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if positions.is_empty() {
        return Ok(());
    }
    let ids: HashMap<_, _> = store.log_event_ids(cluster, &positions).await?;
    for row in rows {
        if let Some(position) = alert_position(&row.alert) {
            row.log_event_id = ids.get(&position).cloned();
        }
    }
    Ok(())
}

/// Writes every key of the cluster as a row, as it is read; the number of rows.
pub async fn export_keys<S: AuditStore>(
    store: &S,
    options: Options,
    out: &mut RowWriter<impl std::io::Write>,
) -> Result<usize, ReportError> {
    let cluster = options.cluster.clone();
    let none = Limits {
        key_rows: 0,
        ..Limits::default()
    };
    let mut builder = Builder::new(options, none);
    let mut written = 0;
    each_row(store, &cluster, &items::key_prefix(None), false, |row| {
        match row {
            ViewRow::KeyHead(key) => {
                if let Some(ended) = builder.key_head(&key) {
                    out.inventory(&ended)?;
                    written += 1;
                }
            }
            ViewRow::KeyEvent(event) => builder.key_event(&event),
            _ => {}
        }
        Ok(())
    })
    .await?;
    if let Some(last) = builder.end_key() {
        out.inventory(&last)?;
        written += 1;
    }
    Ok(written)
}

/// Writes the period's alerts, newest first, each with its record's log event id; the
/// number of rows.
pub async fn export_alerts<S: AuditStore>(
    store: &S,
    options: &Options,
    out: &mut RowWriter<impl std::io::Write>,
) -> Result<usize, ReportError> {
    let mut written = 0;
    let mut pages = Pages::new(store, &options.cluster, items::ALERT_PREFIX, true);
    while let Some(page) = pages.next().await? {
        let mut rows = Vec::new();
        for item in page {
            if let ViewRow::Alert(alert) = items::view_row(item)?
                && options.in_period(alert.time)
            {
                rows.push(AlertRow {
                    alert,
                    log_event_id: None,
                });
            }
        }
        with_log_event_ids(store, &options.cluster, &mut rows).await?;
        for row in &rows {
            out.alert(row)?;
        }
        written += rows.len();
    }
    Ok(written)
}
