//! Reads a cluster's views out of the store a page at a time into the report's model,
//! or straight into CSV or JSON rows.

use std::collections::HashMap;

use super::rows::{RowWriter, alert_position};
use super::{AlertRow, Builder, INTEGRITY_ALERTS, Limits, Options, Report};
use crate::store::dynamodb::items::{self, ViewRow};
use crate::store::window::{self, Pages, ViewOrder, Window, under};
use crate::store::{AuditStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
}

/// Hands each view item under `prefix` to `on_row`, read a page at a time.
async fn each_row<S: AuditStore>(
    store: &S,
    cluster: &str,
    prefix: &str,
    reverse: bool,
    mut on_row: impl FnMut(ViewRow) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let pages = Pages::new(store, cluster, ViewOrder::SortKey, under(prefix));
    let mut pages = if reverse { pages.reverse() } else { pages };
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
    let window = Window {
        from: builder.options().from,
        to: builder.options().to,
    };
    if window.is_open() {
        each_row(store, &cluster, items::ALERT_PREFIX, true, |row| {
            if let ViewRow::Alert(alert) = row {
                builder.alert(alert, None);
            }
            Ok(())
        })
        .await?;
    } else {
        // The trail's completeness whatever the period, through each kind's time index;
        // the period's alerts, newest first, from its window alone.
        for kind in INTEGRITY_ALERTS {
            window::alerts(
                store,
                &cluster,
                Window::default(),
                Some(kind.as_str()),
                true,
                &mut |row| {
                    if let ViewRow::Alert(alert) = row {
                        builder.integrity(&alert);
                    }
                    Ok::<_, ReportError>(())
                },
            )
            .await?;
        }
        window::alerts(store, &cluster, window, None, true, &mut |row| {
            if let ViewRow::Alert(alert) = row {
                builder.listed(alert, None);
            }
            Ok::<_, ReportError>(())
        })
        .await?;
    }
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
    let mut on_session = |row| {
        match row {
            ViewRow::SessionHead(session) => builder.session_head(session),
            ViewRow::SessionEvent(event) => builder.session_event(event),
            _ => {}
        }
        Ok::<_, ReportError>(())
    };
    if window.is_open() {
        each_row(
            store,
            &cluster,
            &items::session_prefix(None),
            false,
            &mut on_session,
        )
        .await?;
    } else {
        // By user, then login, as the timeline's lanes are made: each user's window.
        let mut next_user = items::session_prefix(None);
        loop {
            let (first, _) = store
                .view_range(
                    &cluster,
                    ViewOrder::SortKey,
                    (&next_user, &under(&items::session_prefix(None)).1),
                    false,
                    None,
                    Some(1),
                )
                .await?;
            let Some(sk) = first.first().map(items::sort_key) else {
                break;
            };
            let user = sk[items::session_prefix(None).len()..]
                .split('#')
                .next()
                .unwrap_or_default();
            let prefix = format!("{}{user}#", items::session_prefix(None));
            let mut pages = Pages::new(store, &cluster, ViewOrder::SortKey, window.bounds(&prefix));
            while let Some(page) = pages.next().await? {
                for item in page {
                    on_session(items::view_row(item)?)?;
                }
            }
            next_user = under(&prefix).1;
        }
    }
    let range = window.bounds(items::FAILED_LOGIN_PREFIX);
    let mut pages = Pages::new(store, &cluster, ViewOrder::SortKey, range);
    while let Some(page) = pages.next().await? {
        for item in page {
            if let ViewRow::FailedLogin(login) = items::view_row(item)? {
                builder.failed_login(login);
            }
        }
    }
    // Quorum tokens are few (one per approval round); their items are read whole.
    let mut quorum = Vec::new();
    window::quorum_pages(store, &cluster, window, &mut |page| {
        quorum.extend(page);
        Ok::<_, ReportError>(())
    })
    .await?;
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
    let window = Window {
        from: options.from,
        to: options.to,
    };
    let mut pages = Pages::new(
        store,
        &options.cluster,
        ViewOrder::SortKey,
        window.bounds(items::ALERT_PREFIX),
    )
    .reverse();
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
