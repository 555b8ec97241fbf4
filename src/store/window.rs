//! Reading the views a page at a time, in the order the CLI lists them, and time windows
//! read through the `by_time` index (README, "The table"): what the CLI and the report
//! hand on as they read, so that memory is a page, not the result.
//!
//! Design decision: **an index for windows, the table for content.** A window asks the
//! `by_time` index (keys only) which items lie in it, and reads each item (a session with
//! its events, a key's events in the window, an alert) from the table with a strongly
//! consistent read. So a window reads about what it returns: the index entries, then the
//! items. The index may lag the table by a moment; what is read is never stale.
//!
//! Every reader hands [`ViewRow`]s to a callback in listing order: a head, then its events
//! in [`event_order`]. Events are stored by time, then HSM and sequence; `event_order`
//! breaks ties of one time differently (Luna's phases), so events of one time are sorted
//! among themselves before they are handed on, and a page is only cut between two times.

use crate::domain::{ClusterSession, KeyGeneration, event_order};
use crate::model::Timestamp;
use crate::store::dynamodb::items::{self, Item, ViewRow};
use crate::store::{AuditStore, StoreError};

/// Sorts after every character a stored key holds: the end of a range under a prefix.
const KEY_END: char = '\u{10FFFF}';

/// The time window; either end open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

impl Window {
    pub fn contains(self, time: Timestamp) -> bool {
        self.from.is_none_or(|from| time >= from) && self.to.is_none_or(|to| time <= to)
    }

    pub fn is_open(self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// The sort keys `<prefix><ISO time>…` of the window: from the prefix and `from`, to
    /// past every key of `to` (a stored key continues after its time).
    pub fn bounds(self, prefix: &str) -> (String, String) {
        let low = format!(
            "{prefix}{}",
            self.from.map(Timestamp::iso).unwrap_or_default()
        );
        let high = match self.to {
            Some(to) => format!("{prefix}{}{KEY_END}", to.iso()),
            None => format!("{prefix}{KEY_END}"),
        };
        (low, high)
    }
}

/// The range of every key under `prefix`.
pub fn under(prefix: &str) -> (String, String) {
    (prefix.to_owned(), format!("{prefix}{KEY_END}"))
}

/// Which order a read of the views follows: the table's sort key, or the `by_time`
/// index's time key (whose items are keys only: `pk`, `sk`, `time_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewOrder {
    SortKey,
    TimeKey,
}

/// The pages of a cluster's view items in one range.
pub struct Pages<'a, S> {
    store: &'a S,
    cluster: &'a str,
    order: ViewOrder,
    low: String,
    high: String,
    reverse: bool,
    start: Option<Item>,
    limit: Option<usize>,
    done: bool,
}

impl<'a, S: AuditStore> Pages<'a, S> {
    pub fn new(store: &'a S, cluster: &'a str, order: ViewOrder, range: (String, String)) -> Self {
        Self {
            store,
            cluster,
            order,
            low: range.0,
            high: range.1,
            reverse: false,
            start: None,
            limit: None,
            done: false,
        }
    }

    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// At most `limit` items a page (DynamoDB's `Limit`).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    pub async fn next(&mut self) -> Result<Option<Vec<Item>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let (page, next) = self
            .store
            .view_range(
                self.cluster,
                self.order,
                (&self.low, &self.high),
                self.reverse,
                self.start.take(),
                self.limit,
            )
            .await?;
        self.done = next.is_none() || page.is_empty();
        self.start = next;
        Ok(Some(page))
    }
}

/// A range's items one at a time, with a look at the next.
struct ItemStream<'a, S> {
    pages: Pages<'a, S>,
    buffer: std::collections::VecDeque<Item>,
}

impl<'a, S: AuditStore> ItemStream<'a, S> {
    fn new(pages: Pages<'a, S>) -> Self {
        Self {
            pages,
            buffer: std::collections::VecDeque::new(),
        }
    }

    async fn peek(&mut self) -> Result<Option<&Item>, StoreError> {
        while self.buffer.is_empty() {
            match self.pages.next().await? {
                Some(page) => self.buffer.extend(page),
                None => return Ok(None),
            }
        }
        Ok(self.buffer.front())
    }

    async fn pop(&mut self) -> Result<Option<Item>, StoreError> {
        self.peek().await?;
        Ok(self.buffer.pop_front())
    }
}

fn is_event(item: &Item) -> bool {
    items::sort_key(item).contains(items::EVENT_INFIX)
}

/// Where a read of heads and their events comes from: one range, or two ranges of heads
/// in generation order (a handle's certificates and its keys), merged by the listing
/// order: generation, then kind (`certificate` before every key kind).
enum Source<'a, S> {
    One(ItemStream<'a, S>),
    Generations {
        certificates: ItemStream<'a, S>,
        keys: ItemStream<'a, S>,
        reading_keys: bool,
    },
}

fn generation_of(item: &Item) -> Option<u64> {
    item.get("generation")?.as_n().ok()?.parse().ok()
}

impl<S: AuditStore> Source<'_, S> {
    async fn next(&mut self) -> Result<Option<Item>, StoreError> {
        match self {
            Source::One(stream) => stream.pop().await,
            Source::Generations {
                certificates,
                keys,
                reading_keys,
            } => {
                let current = if *reading_keys {
                    &mut *keys
                } else {
                    &mut *certificates
                };
                if current.peek().await?.is_some_and(is_event) {
                    return current.pop().await;
                }
                let certificate = certificates.peek().await?.map(generation_of);
                let key = keys.peek().await?.map(generation_of);
                *reading_keys = match (certificate, key) {
                    (Some(certificate), Some(key)) => key < certificate,
                    (None, _) => true,
                    (Some(_), None) => false,
                };
                if *reading_keys {
                    keys.pop().await
                } else {
                    certificates.pop().await
                }
            }
        }
    }
}

/// Hands on events of one head in [`event_order`], one time at a time (see the module's
/// note).
struct EventRun {
    luna: bool,
    time: Option<Timestamp>,
    held: Vec<ViewRow>,
}

impl EventRun {
    fn new(luna: bool) -> Self {
        Self {
            luna,
            time: None,
            held: Vec::new(),
        }
    }

    fn order(&self, row: &ViewRow) -> (Timestamp, u8) {
        match row {
            ViewRow::SessionEvent(event) => {
                event_order(event.time, &event.opcode, event.log_event_id.is_some())
            }
            ViewRow::KeyEvent(event) => event_order(event.time, &event.opcode, self.luna),
            _ => (Timestamp(i64::MIN), 0),
        }
    }

    /// Holds `row`, an event at `time`, after handing on those of an earlier time.
    fn push<E>(
        &mut self,
        time: Timestamp,
        row: ViewRow,
        out: &mut impl FnMut(ViewRow) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.time != Some(time) {
            self.flush(out)?;
        }
        self.time = Some(time);
        self.held.push(row);
        Ok(())
    }

    fn flush<E>(&mut self, out: &mut impl FnMut(ViewRow) -> Result<(), E>) -> Result<(), E> {
        let mut held = std::mem::take(&mut self.held);
        held.sort_by_key(|row| self.order(row));
        for row in held {
            out(row)?;
        }
        self.time = None;
        Ok(())
    }
}

fn event_time(row: &ViewRow) -> Option<Timestamp> {
    match row {
        ViewRow::SessionEvent(event) => Some(event.time),
        ViewRow::KeyEvent(event) => Some(event.time),
        _ => None,
    }
}

/// What a paged read of one user's sessions or one key's generations stopped at: the
/// sort key to go on after (`--after`), when something remains.
pub type Continuation = Option<String>;

/// How much of a read one call hands on: at most about `limit` events (a time's events
/// are never cut apart), from after the sort key `after`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paging {
    pub limit: Option<usize>,
    pub after: Option<String>,
}

/// Hands on heads (those `keep` takes), each followed by its events, as `source` reads
/// them; stops once `paging.limit` events are handed on, with the continuation. `kept`:
/// whether events before the first head belong to a head already handed on.
async fn stream_heads<S: AuditStore, E: From<StoreError>>(
    source: &mut Source<'_, S>,
    mut kept: bool,
    luna: bool,
    limit: Option<usize>,
    mut keep: impl FnMut(&ViewRow) -> bool,
    out: &mut impl FnMut(ViewRow) -> Result<(), E>,
) -> Result<Continuation, E> {
    let mut run = EventRun::new(luna);
    let mut events = 0usize;
    let mut last_sk: Option<String> = None;
    while let Some(item) = source.next().await? {
        let sk = items::sort_key(&item);
        let row = items::view_row(item)?;
        let time = event_time(&row);
        let boundary = time.is_none() || run.time != time;
        if let (Some(limit), Some(last)) = (limit, &last_sk)
            && events >= limit
            && boundary
        {
            let at = last.clone();
            run.flush(out)?;
            return Ok(Some(at));
        }
        match time {
            Some(time) => {
                if kept {
                    run.push(time, row, out)?;
                    events += 1;
                    last_sk = Some(sk);
                }
            }
            None => {
                run.flush(out)?;
                kept = keep(&row);
                if let ViewRow::KeyHead(key) = &row {
                    run.luna = key.object_id.is_some();
                }
                if kept {
                    out(row)?;
                    last_sk = Some(sk);
                }
            }
        }
    }
    run.flush(out)?;
    Ok(None)
}

/// The head a sort key belongs to: itself, or the head of the event it names.
fn head_of(sk: &str) -> &str {
    sk.find(items::EVENT_INFIX).map_or(sk, |at| &sk[..at])
}

/// The head stored under `after`'s head, read again so that a page that goes on inside a
/// session or key starts with what it belongs to; whether its events are to be read.
async fn resume_head<S: AuditStore, E: From<StoreError>>(
    store: &S,
    cluster: &str,
    after: &str,
    keep: &mut impl FnMut(&ViewRow) -> bool,
    out: &mut impl FnMut(ViewRow) -> Result<(), E>,
) -> Result<(bool, bool), E> {
    let found = store
        .view_items(cluster, &[head_of(after).to_owned()])
        .await?;
    let Some(item) = found.into_iter().next() else {
        return Ok((false, false));
    };
    let row = items::view_row(item)?;
    let luna = matches!(&row, ViewRow::KeyHead(key) if key.object_id.is_some());
    let kept = keep(&row);
    if kept {
        out(row)?;
    }
    Ok((kept, luna))
}

fn starting_after<'a, S: AuditStore>(
    mut pages: Pages<'a, S>,
    cluster: &str,
    paging: &Paging,
) -> Pages<'a, S> {
    if let Some(after) = &paging.after {
        pages.start = Some(items::key_item(&items::cluster_pk(cluster), after));
    }
    if let Some(limit) = paging.limit {
        // Enough to see past the limit's time without reading a whole 1 MB page.
        pages.limit = Some(limit.saturating_add(16));
    }
    pages
}

/// One user's sessions whose login is in `window`, in login order, each with its events.
pub async fn user_sessions<S: AuditStore, E: From<StoreError>>(
    store: &S,
    cluster: &str,
    user: &str,
    window: Window,
    paging: &Paging,
    out: &mut impl FnMut(ViewRow) -> Result<(), E>,
) -> Result<Continuation, E> {
    let mut keep = |row: &ViewRow| matches!(row, ViewRow::SessionHead(session) if window.contains(session.login_time));
    let range = window.bounds(&items::session_prefix(Some(user)));
    let pages = starting_after(
        Pages::new(store, cluster, ViewOrder::SortKey, range),
        cluster,
        paging,
    );
    let (kept, _) = match &paging.after {
        Some(after) => resume_head(store, cluster, after, &mut keep, out).await?,
        None => (false, false),
    };
    stream_heads(
        &mut Source::One(ItemStream::new(pages)),
        kept,
        false,
        paging.limit,
        keep,
        out,
    )
    .await
}

/// Every session whose login is in `window`, in the listing order (login time, origin),
/// each with its events: the `by_time` index names them, each is read from the table.
pub async fn sessions_by_time<S: AuditStore, E: From<StoreError>>(
    store: &S,
    cluster: &str,
    window: Window,
    out: &mut impl FnMut(ViewRow) -> Result<(), E>,
) -> Result<(), E> {
    let mut index = Pages::new(
        store,
        cluster,
        ViewOrder::TimeKey,
        window.bounds(items::SESSION_TIME_PREFIX),
    );
    // Sessions that logged in at the same instant, which the listing orders by origin.
    let mut group: Vec<String> = Vec::new();
    let mut group_time = String::new();
    while let Some(page) = index.next().await? {
        for entry in page {
            let time = text(&entry, items::TIME_KEY);
            if time != group_time {
                sessions_of(store, cluster, std::mem::take(&mut group), out).await?;
                group_time = time;
            }
            group.push(items::sort_key(&entry));
        }
    }
    sessions_of(store, cluster, group, out).await
}

fn text(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(|value| value.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// The range of a head's events (all of them, or those in `window`).
fn events_of(head_sk: &str, window: Window) -> (String, String) {
    window.bounds(&format!("{head_sk}{}", items::EVENT_INFIX))
}

async fn sessions_of<S: AuditStore, E: From<StoreError>>(
    store: &S,
    cluster: &str,
    group: Vec<String>,
    out: &mut impl FnMut(ViewRow) -> Result<(), E>,
) -> Result<(), E> {
    if let [sk] = group.as_slice() {
        // The head and its events are one range: the head's key, then `#EV#…`.
        let range = (sk.clone(), events_of(sk, Window::default()).1);
        let pages = Pages::new(store, cluster, ViewOrder::SortKey, range);
        stream_heads(
            &mut Source::One(ItemStream::new(pages)),
            false,
            false,
            None,
            |row| matches!(row, ViewRow::SessionHead(_)),
            out,
        )
        .await?;
        return Ok(());
    }
    let mut heads: Vec<(ClusterSession, String)> = Vec::new();
    for item in store.view_items(cluster, &group).await? {
        let sk = items::sort_key(&item);
        if let ViewRow::SessionHead(session) = items::view_row(item)? {
            heads.push((session, sk));
        }
    }
    heads.sort_by(|a, b| ClusterSession::listing_order(&a.0, &b.0));
    for (session, sk) in heads {
        out(ViewRow::SessionHead(session))?;
        let pages = Pages::new(
            store,
            cluster,
            ViewOrder::SortKey,
            events_of(&sk, Window::default()),
        );
        stream_heads(
            &mut Source::One(ItemStream::new(pages)),
            true,
            false,
            None,
            |_| false,
            out,
        )
        .await?;
    }
    Ok(())
}

/// Which key's generations: a CloudHSM handle (its keys and its certificates) or a Luna
/// object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOf {
    Handle(u64),
    Object(String),
}

/// Every generation of one key, in the listing order (generation; a certificate before a
/// key of the same generation), each with its events; paged.
pub async fn key_generations<S: AuditStore, E: From<StoreError>>(
    store: &S,
    cluster: &str,
    of: &KeyOf,
    paging: &Paging,
    out: &mut impl FnMut(ViewRow) -> Result<(), E>,
) -> Result<Continuation, E> {
    let mut keep = |row: &ViewRow| matches!(row, ViewRow::KeyHead(_));
    let (kept, luna) = match &paging.after {
        Some(after) => resume_head(store, cluster, after, &mut keep, out).await?,
        None => (false, false),
    };
    let pages = |range: (String, String)| {
        starting_after(
            Pages::new(store, cluster, ViewOrder::SortKey, range),
            cluster,
            &Paging {
                after: None,
                ..paging.clone()
            },
        )
    };
    let mut source = match of {
        KeyOf::Object(object) => {
            let mut one = pages(under(&items::luna_key_prefix(object)));
            one.start = paging
                .after
                .as_ref()
                .map(|after| items::key_item(&items::cluster_pk(cluster), after));
            Source::One(ItemStream::new(one))
        }
        KeyOf::Handle(handle) => {
            let certificates = format!("{}CERT#GEN#", items::key_prefix(Some(*handle)));
            let keys = format!("{}GEN#", items::key_prefix(Some(*handle)));
            let (mut certificate_pages, mut key_pages) =
                (pages(under(&certificates)), pages(under(&keys)));
            if let Some(after) = &paging.after {
                let at = Some(items::key_item(&items::cluster_pk(cluster), after));
                // What the merge handed on before `after`: every earlier generation, and
                // of its own generation the certificate when `after` is the key's.
                let generation = generation_in(after);
                if after.starts_with(&certificates) {
                    certificate_pages.start = at;
                    key_pages.low = format!("{keys}{generation:04}");
                } else {
                    key_pages.start = at;
                    certificate_pages.low =
                        format!("{certificates}{:04}", generation.saturating_add(1));
                }
            }
            Source::Generations {
                certificates: ItemStream::new(certificate_pages),
                keys: ItemStream::new(key_pages),
                reading_keys: !paging
                    .after
                    .as_deref()
                    .is_some_and(|after| after.starts_with(&certificates)),
            }
        }
    };
    stream_heads(&mut source, kept, luna, paging.limit, keep, out).await
}

/// The generation a key's sort key names (`…GEN#0003…`).
fn generation_in(sk: &str) -> u64 {
    sk.split_once("GEN#")
        .map(|(_, rest)| rest.split('#').next().unwrap_or_default())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

/// Every key generation of the cluster with its events, in the table's order (by the
/// handle's decimal digits as text, Luna objects last): the listing orders handles as
/// numbers, which the caller does (see the CLI's `keys`).
pub async fn keys_stored<S: AuditStore, E: From<StoreError>>(
    store: &S,
    cluster: &str,
    out: &mut impl FnMut(ViewRow) -> Result<(), E>,
) -> Result<(), E> {
    let pages = Pages::new(
        store,
        cluster,
        ViewOrder::SortKey,
        under(&items::key_prefix(None)),
    );
    stream_heads(
        &mut Source::One(ItemStream::new(pages)),
        false,
        false,
        None,
        |row| matches!(row, ViewRow::KeyHead(_)),
        out,
    )
    .await?;
    Ok(())
}

/// The key generations with an event in `window`, in the listing order, each with its
/// events in the window: the `by_time` index names the events, the heads and events are
/// read from the table. Holds the heads of the window's keys (not their events).
pub async fn keys_by_time<S: AuditStore, E: From<StoreError>>(
    store: &S,
    cluster: &str,
    window: Window,
    out: &mut impl FnMut(ViewRow) -> Result<(), E>,
) -> Result<(), E> {
    let mut index = Pages::new(
        store,
        cluster,
        ViewOrder::TimeKey,
        window.bounds(items::KEY_EVENT_TIME_PREFIX),
    );
    let mut heads = std::collections::BTreeSet::new();
    while let Some(page) = index.next().await? {
        for entry in page {
            heads.insert(head_of(&items::sort_key(&entry)).to_owned());
        }
    }
    let mut keys: Vec<(KeyGeneration, String)> = Vec::with_capacity(heads.len());
    let heads: Vec<String> = heads.into_iter().collect();
    for chunk in heads.chunks(100) {
        for item in store.view_items(cluster, chunk).await? {
            let sk = items::sort_key(&item);
            if let ViewRow::KeyHead(key) = items::view_row(item)? {
                keys.push((key, sk));
            }
        }
    }
    keys.sort_by(|a, b| KeyGeneration::listing_order(&a.0, &b.0));
    for (key, sk) in keys {
        let luna = key.object_id.is_some();
        out(ViewRow::KeyHead(key))?;
        let pages = Pages::new(store, cluster, ViewOrder::SortKey, events_of(&sk, window));
        stream_heads(
            &mut Source::One(ItemStream::new(pages)),
            true,
            luna,
            None,
            |_| false,
            out,
        )
        .await?;
    }
    Ok(())
}

/// Each item of a range of the table, as it is read.
async fn each_item<S: AuditStore, E: From<StoreError>>(
    mut pages: Pages<'_, S>,
    out: &mut impl FnMut(Item) -> Result<(), E>,
) -> Result<(), E> {
    while let Some(page) = pages.next().await? {
        for item in page {
            out(item)?;
        }
    }
    Ok(())
}

/// Failed logins in `window`, in time order.
pub async fn failed_logins<S: AuditStore, E: From<StoreError>>(
    store: &S,
    cluster: &str,
    window: Window,
    out: &mut impl FnMut(ViewRow) -> Result<(), E>,
) -> Result<(), E> {
    let range = window.bounds(items::FAILED_LOGIN_PREFIX);
    each_item(
        Pages::new(store, cluster, ViewOrder::SortKey, range),
        &mut |item| out(items::view_row(item)?),
    )
    .await
}

/// Alerts in `window` (of one kind: through the `by_time` index), in the table's order
/// (time, then kind), or its reverse (newest first).
pub async fn alerts<S: AuditStore, E: From<StoreError>>(
    store: &S,
    cluster: &str,
    window: Window,
    kind: Option<&str>,
    newest_first: bool,
    out: &mut impl FnMut(ViewRow) -> Result<(), E>,
) -> Result<(), E> {
    let Some(kind) = kind else {
        let pages = Pages::new(
            store,
            cluster,
            ViewOrder::SortKey,
            window.bounds(items::ALERT_PREFIX),
        );
        let pages = if newest_first { pages.reverse() } else { pages };
        return each_item(pages, &mut |item| out(items::view_row(item)?)).await;
    };
    let index = Pages::new(
        store,
        cluster,
        ViewOrder::TimeKey,
        window.bounds(&items::alert_time_prefix(kind)),
    );
    let mut index = if newest_first { index.reverse() } else { index };
    while let Some(page) = index.next().await? {
        let sks: Vec<String> = page.iter().map(items::sort_key).collect();
        for chunk in sks.chunks(100) {
            for item in store.view_items(cluster, chunk).await? {
                out(items::view_row(item)?)?;
            }
        }
    }
    Ok(())
}

/// The quorum items (tokens, then M-value settings) that start in `window`, each kind in
/// time order, a page at a time.
pub async fn quorum_pages<S: AuditStore, E: From<StoreError>>(
    store: &S,
    cluster: &str,
    window: Window,
    out: &mut impl FnMut(Vec<Item>) -> Result<(), E>,
) -> Result<(), E> {
    for prefix in [items::QUORUM_TOKEN_PREFIX, items::QUORUM_M_VALUE_PREFIX] {
        let mut pages = Pages::new(store, cluster, ViewOrder::SortKey, window.bounds(prefix));
        while let Some(page) = pages.next().await? {
            out(page)?;
        }
    }
    Ok(())
}

/// Collects what a reader hands on: the whole answer, for tests and callers that need it
/// whole. Sessions and keys are put back together from their heads and events.
#[derive(Debug, Default)]
pub struct Collected {
    pub sessions: Vec<ClusterSession>,
    pub keys: Vec<KeyGeneration>,
    pub failed_logins: Vec<crate::domain::FailedLogin>,
    pub alerts: Vec<crate::domain::Alert>,
}

impl Collected {
    pub fn add(&mut self, row: ViewRow) -> Result<(), StoreError> {
        match row {
            ViewRow::SessionHead(session) => self.sessions.push(session),
            ViewRow::SessionEvent(event) => {
                if let Some(session) = self.sessions.last_mut() {
                    session.events.push(event);
                }
            }
            ViewRow::KeyHead(key) => self.keys.push(key),
            ViewRow::KeyEvent(event) => {
                if let Some(key) = self.keys.last_mut() {
                    key.events.push(event);
                }
            }
            ViewRow::FailedLogin(login) => self.failed_logins.push(login),
            ViewRow::Alert(alert) => self.alerts.push(alert),
            ViewRow::Stream(_) | ViewRow::Other => {}
        }
        Ok(())
    }
}
