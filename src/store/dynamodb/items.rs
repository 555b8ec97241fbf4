//! The DynamoDB item layout, in one place: keys, attribute names, and the conversions
//! between items and the domain's values.
//!
//! One table, three kinds of partition, so that every access pattern is a `Query` on the
//! base table (consistent reads, no index to lag behind):
//! - `TRAIL#<cluster>`: the immutable trail, sort key `HSM#<hsm>#RC#<reboot>#SEQ#<seq>`
//!   (fixed-width hex, so string order is sequence order), and refused conflicting
//!   duplicates under `CONFLICT#…`.
//! - `CLUSTER#<cluster>`: the derived views, rewritten as a whole by the lease holder:
//!   `SESSION#<user>#<login time>#…`, `KEY#<handle>#GEN#<n>` (Luna objects under
//!   `KEY#LUNA#<ouid>#GEN#<n>`, apart from CloudHSM handles), `FAILED_LOGIN#<time>#…`,
//!   `ALERT#<time>#<kind>#…`, `STREAM#<hsm>#RC#<reboot>`, `QUORUM#…` (see `quorum`), and
//!   the `LEASE`.
//! - `STATE#<cluster>`: where the incremental derivation stands (`CHECKPOINT#…`), its
//!   snapshots, step logs and each object's carry and versions (`state`); see
//!   `crate::incremental`.
//! - `QUARANTINE`: what could not be processed, and the whole content of what its `raw`
//!   cuts under `…#PART#<n>`.
//!
//! Names from the input go into keys through [`key_part`]: escaped, so that no part holds
//! the separator `#`, and bounded with a digest of the whole value.

use std::borrow::Cow;
use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_dynamo::aws_sdk_dynamodb_1::from_item;
use sha2::{Digest, Sha256};

use super::attributes::to_item;
use crate::decode::Quarantined;
use crate::domain::{
    Alert, ClusterSession, Conflict, Derived, FailedLogin, KeyEvent, KeyGeneration, SessionEvent,
    StreamSummary, event_order,
};
use crate::incremental::{LaidOut, ViewOf};
use crate::keys::{HSM_PREFIX, LOG_EVENT_PREFIX};
use crate::model::Timestamp;
use crate::store::{BoxError, StoreError};

mod later;
mod quorum;
pub mod state;
mod trail;

pub use self::quorum::{
    QUORUM_M_VALUE_PREFIX, QUORUM_PREFIX, QUORUM_TOKEN_PREFIX, quorum_from_items,
};
pub use self::state::{
    CHECKPOINT_PREFIX, checkpoint_from_items, heads_from_items, object_from_item, object_item,
    object_key, step_phases,
};
pub use self::trail::{
    add_stream, content_digest, is_conflict, is_trail_record, trail_entries, trail_entry_from_item,
    trail_item, trail_item_with_digest,
};

pub use crate::keys::{hsm_trail_prefix, identity_sk, key_part, log_stream_prefix, trail_sk};
pub use crate::store::Item;

pub const QUARANTINE_PK: &str = "QUARANTINE";
pub const LEASE_SK: &str = "LEASE";
/// The chain lease's item, beside the derivation lease's (`store::dynamodb::lease`).
pub const CHAIN_LEASE_SK: &str = "LEASE#CHAIN";
pub const ANCHOR_SK: &str = "ANCHOR";

pub fn trail_pk(cluster: &str) -> String {
    format!("TRAIL#{}", key_part(cluster))
}

pub fn cluster_pk(cluster: &str) -> String {
    format!("CLUSTER#{}", key_part(cluster))
}

/// Where a cluster's derivation state lives: its checkpoint and each object's carry,
/// apart from the views so that the console's view of `CLUSTER#` shows only views.
pub fn state_pk(cluster: &str) -> String {
    format!("STATE#{}", key_part(cluster))
}

/// The key of an item by its parts.
pub fn key_item(pk: &str, sk: &str) -> Item {
    Item::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

/// When the cluster's chain head was last anchored outside the table
/// (`digest::anchor`): the slot a writer takes, with a condition, to publish the next.
pub fn anchor_item(cluster: &str, head: &crate::digest::ChainHead, at: Timestamp) -> Item {
    let mut item = key_item(&state_pk(cluster), ANCHOR_SK);
    item.insert(
        "item_type".to_owned(),
        AttributeValue::S("anchor".to_owned()),
    );
    item.insert(
        "anchored_at_ms".to_owned(),
        AttributeValue::N((at.micros() / 1_000).to_string()),
    );
    item.insert("anchored_at".to_owned(), AttributeValue::S(at.to_string()));
    item.insert("seq".to_owned(), AttributeValue::N(head.seq.to_string()));
    item.insert("sha256".to_owned(), AttributeValue::S(head.hash.clone()));
    item
}

pub fn session_prefix(user: Option<&str>) -> String {
    match user {
        Some(user) => format!("SESSION#{}#", key_part(user)),
        None => "SESSION#".to_owned(),
    }
}

pub fn key_prefix(handle: Option<u64>) -> String {
    match handle {
        Some(handle) => format!("KEY#{handle}#"),
        None => "KEY#".to_owned(),
    }
}

/// Sort-key prefix of every generation of one Luna object.
pub fn luna_key_prefix(object_id: &str) -> String {
    format!("KEY#LUNA#{}#", key_part(object_id))
}

pub const FAILED_LOGIN_PREFIX: &str = "FAILED_LOGIN#";
pub const ALERT_PREFIX: &str = "ALERT#";
pub const STREAM_PREFIX: &str = "STREAM#";
pub const CONFLICT_PREFIX: &str = "CONFLICT#";

fn to_clean_item(value: &impl Serialize, key: &str) -> Result<Item, StoreError> {
    let mut item: Item = to_item(value).map_err(|error| StoreError::Corrupt {
        key: key.to_owned(),
        source: error.into(),
    })?;
    // Absent values are left out rather than stored as NULL: the console shows only what
    // the record has, and empty strings (forbidden in key attributes) never appear.
    item.retain(|_, value| !matches!(value, AttributeValue::Null(_)));
    Ok(item)
}

fn read_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    let key = item_key(&item);
    from_item(item).map_err(|error| StoreError::Corrupt {
        key,
        source: error.into(),
    })
}

fn text_attribute(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(|value| value.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// `pk|sk` of an item, for messages and maps.
pub fn item_key(item: &Item) -> String {
    format!(
        "{}|{}",
        text_attribute(item, "pk"),
        text_attribute(item, "sk")
    )
}

pub fn sort_key(item: &Item) -> String {
    text_attribute(item, "sk")
}

#[derive(Debug, Serialize, Deserialize)]
struct ConflictItem {
    pk: String,
    sk: String,
    item_type: String,
    cluster: String,
    #[serde(flatten)]
    conflict: Conflict,
}

pub fn conflict_item(cluster: &str, conflict: &Conflict) -> Result<Item, StoreError> {
    let sk = format!(
        "{CONFLICT_PREFIX}{}#{}",
        identity_sk(&conflict.identity()),
        conflict.rejected_sha256
    );
    let item = ConflictItem {
        pk: trail_pk(cluster),
        sk,
        item_type: "conflicting_duplicate".to_owned(),
        cluster: cluster.to_owned(),
        conflict: conflict.clone(),
    };
    to_clean_item(&item, &item.sk)
}

pub fn conflict_from_item(item: Item) -> Result<Conflict, StoreError> {
    read_item::<ConflictItem>(item).map(|item| item.conflict)
}

#[derive(Debug, Serialize, Deserialize)]
struct QuarantineItem {
    pk: String,
    sk: String,
    item_type: String,
    /// How many `…#PART#<n>` items hold the whole content, when `raw` is cut.
    raw_parts: Option<usize>,
    #[serde(flatten)]
    quarantined: Quarantined,
}

const QUARANTINE_TYPE: &str = "quarantined";
const QUARANTINE_PART_TYPE: &str = "quarantined_part";

/// Bytes of content per part item: a binary attribute well inside the 400 KB item limit.
pub const QUARANTINE_PART_BYTES: usize = 256 * 1024;

/// The item of a quarantined input and, when its `raw` is cut, the parts that hold its
/// whole content (`<sk>#PART#0000`, …, binary `data`), so that nothing quarantined is lost.
pub fn quarantine_items(quarantined: &Quarantined) -> Result<Vec<Item>, StoreError> {
    let head = quarantine_item(quarantined)?;
    let Some(content) = &quarantined.content else {
        return Ok(vec![head]);
    };
    let sk = sort_key(&head);
    let mut items = vec![head];
    for (index, part) in content.chunks(QUARANTINE_PART_BYTES).enumerate() {
        items.push(HashMap::from([
            ("pk".to_owned(), AttributeValue::S(QUARANTINE_PK.to_owned())),
            (
                "sk".to_owned(),
                AttributeValue::S(format!("{sk}#PART#{index:04}")),
            ),
            (
                "item_type".to_owned(),
                AttributeValue::S(QUARANTINE_PART_TYPE.to_owned()),
            ),
            (
                "raw_sha256".to_owned(),
                AttributeValue::S(quarantined.raw_sha256.clone()),
            ),
            (
                "data".to_owned(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(part.to_vec())),
            ),
        ]));
    }
    Ok(items)
}

/// Whether an item of the quarantine partition is a quarantined input (not a part).
pub fn is_quarantined(item: &Item) -> bool {
    item_type(item) == QUARANTINE_TYPE
}

/// Sort-key prefix of the parts of the quarantined input stored under `sk`.
pub fn quarantine_parts_prefix(sk: &str) -> String {
    format!("{sk}#PART#")
}

/// Joins the parts of a quarantined input (in sort-key order) and checks them against the
/// item's digest and part count: what comes back is the content, or an error.
pub fn quarantined_content(head: &Item, parts: &[Item]) -> Result<Vec<u8>, StoreError> {
    let corrupt = |source: BoxError| StoreError::Corrupt {
        key: item_key(head),
        source,
    };
    let expected = head
        .get("raw_parts")
        .and_then(|value| value.as_n().ok())
        .and_then(|count| count.parse::<usize>().ok());
    if expected != Some(parts.len()) {
        return Err(corrupt(
            format!(
                "{} content parts stored, {expected:?} expected",
                parts.len()
            )
            .into(),
        ));
    }
    let mut content = Vec::new();
    for part in parts {
        let data = part
            .get("data")
            .and_then(|value| value.as_b().ok())
            .ok_or_else(|| corrupt(format!("part {} has no data", sort_key(part)).into()))?;
        content.extend_from_slice(data.as_ref());
    }
    let digest = hex::encode(Sha256::digest(&content));
    if digest != text_attribute(head, "raw_sha256") {
        return Err(corrupt(
            format!("the joined parts' SHA-256 {digest} is not the item's").into(),
        ));
    }
    Ok(content)
}

/// Keyed by where it came from when known, else by its digest, so that quarantining the
/// same bad input twice keeps one item.
pub fn quarantine_item(quarantined: &Quarantined) -> Result<Item, StoreError> {
    let sk = match (
        &quarantined.log_group,
        &quarantined.log_stream,
        &quarantined.log_event_id,
    ) {
        (Some(group), Some(stream), Some(id)) => format!(
            "EVENT#{}#{}#{}",
            key_part(group),
            key_part(stream),
            key_part(id)
        ),
        _ => format!("SHA256#{}", quarantined.raw_sha256),
    };
    let item = QuarantineItem {
        pk: QUARANTINE_PK.to_owned(),
        sk,
        item_type: QUARANTINE_TYPE.to_owned(),
        raw_parts: quarantined
            .content
            .as_ref()
            .map(|content| content.len().div_ceil(QUARANTINE_PART_BYTES)),
        quarantined: quarantined.clone(),
    };
    to_clean_item(&item, &item.sk)
}

pub fn quarantined_from_item(item: Item) -> Result<Quarantined, StoreError> {
    read_item::<QuarantineItem>(item).map(|item| item.quarantined)
}

/// The header fields every derived item has.
#[derive(Debug, Serialize, Deserialize)]
struct DerivedHeader<T> {
    pk: String,
    sk: String,
    item_type: String,
    cluster: String,
    #[serde(flatten)]
    body: T,
}

fn derived_item<T: Serialize>(
    cluster: &str,
    sk: String,
    item_type: &str,
    body: T,
) -> Result<Item, StoreError> {
    let item = DerivedHeader {
        pk: cluster_pk(cluster),
        sk,
        item_type: item_type.to_owned(),
        cluster: cluster.to_owned(),
        body,
    };
    to_clean_item(&item, &item.sk)
}

/// The key of one event of a session or key: after its head's, so that a query of the
/// head's prefix reads the head and then its events in time order; the record's
/// identity makes it unique (two boots, two Luna records in one second).
fn event_sk(
    head_sk: &str,
    time: Timestamp,
    hsm: &str,
    reboot_counter: Option<u32>,
    seq: Option<u64>,
    log_event_id: Option<&str>,
) -> String {
    format!(
        "{head_sk}{EVENT_INFIX}{}#{}#{}#{}#{}",
        time.iso(),
        key_part(hsm),
        reboot_counter.map_or_else(|| "-".to_owned(), |boot| format!("{boot:08x}")),
        seq.map_or_else(|| "-".to_owned(), |seq| format!("{seq:016x}")),
        log_event_id.map_or(Cow::Borrowed("-"), key_part),
    )
}

/// The key of one event of a session.
pub fn session_event_sk(session: &ClusterSession, event: &SessionEvent) -> String {
    event_sk(
        &session_sk(session),
        event.time,
        &event.hsm,
        event.reboot_counter,
        Some(event.seq),
        event.log_event_id.as_deref(),
    )
}

/// The key of one event of a key generation.
pub fn key_event_sk(key: &KeyGeneration, event: &KeyEvent) -> String {
    event_sk(
        &key_sk(key),
        event.time,
        &event.hsm,
        event.reboot_counter,
        event.seq,
        event.log_event_id.as_deref(),
    )
}

/// Between a session's or key's key and its events' keys.
pub const EVENT_INFIX: &str = "#EV#";

pub fn session_sk(session: &ClusterSession) -> String {
    format!(
        "SESSION#{}#{}#{}#RC#{:08x}#{:016x}",
        key_part(&session.user),
        session.login_time.iso(),
        key_part(&session.origin_hsm),
        session.origin_reboot_counter,
        session.origin_seq
    )
}

/// Luna objects live under their object id (`KEY#LUNA#<ouid>#GEN#…`), never under a
/// handle. Certificates live in their own handle space: `KEY#<handle>#CERT#GEN#…` keeps one
/// apart from a key that happens to have the same handle.
pub fn key_sk(key: &KeyGeneration) -> String {
    if let Some(object_id) = &key.object_id {
        return format!("{}GEN#{:04}", luna_key_prefix(object_id), key.generation);
    }
    let family = if key.kind == "certificate" {
        "CERT#"
    } else {
        ""
    };
    format!("KEY#{}#{family}GEN#{:04}", key.handle, key.generation)
}

/// Failed logins without a sequence number (Luna) end in their log event id: two in one
/// second on one partition stay two.
fn failed_login_sk(login: &FailedLogin) -> String {
    let sk = format!(
        "{FAILED_LOGIN_PREFIX}{}#{}#RC#{:08x}#{:016x}",
        login.time.iso(),
        key_part(&login.hsm),
        login.reboot_counter,
        login.seq
    );
    match &login.log_event_id {
        Some(id) => format!("{sk}#{}", key_part(id)),
        None => sk,
    }
}

/// Readable up to the user; the digest of the alert's content last keeps two alerts of
/// one kind in the same microsecond apart (certificate-storage records have no sequence).
fn alert_sk(alert: &Alert) -> String {
    let number = alert
        .seq
        .or(alert.from)
        .map(|n| format!("{n:016x}"))
        .unwrap_or_else(|| "-".into());
    let digest = hex::encode(Sha256::digest(
        serde_json::to_vec(alert).unwrap_or_default(),
    ));
    format!(
        "{ALERT_PREFIX}{}#{}#{}#{}#{}#{}",
        alert.time.iso(),
        alert.kind.as_str(),
        key_part(alert.hsm.as_deref().unwrap_or("-")),
        number,
        key_part(alert.user.as_deref().unwrap_or("-")),
        &digest[..12]
    )
}

fn stream_sk(stream: &StreamSummary) -> String {
    format!(
        "{STREAM_PREFIX}{}#RC#{:08x}",
        key_part(&stream.hsm),
        stream.reboot_counter
    )
}

/// A view item and what it is.
struct ViewItem {
    item: Item,
    of: ViewOf,
}

/// The attribute the `by_time` index sorts a cluster's views by: a kind, then a time, so
/// that a window of one kind is one key condition (`BETWEEN 'SESSION#<from>' AND
/// 'SESSION#<to>~'`).
pub const TIME_KEY: &str = "time_key";
pub const BY_TIME_INDEX: &str = "by_time";
/// The trail's records by `usecs` (an attribute every trail item has had from the start,
/// so that records stored before the index existed are in it too).
pub const TRAIL_BY_TIME_INDEX: &str = "trail_by_time";

pub const SESSION_TIME_PREFIX: &str = "SESSION#";
pub const KEY_EVENT_TIME_PREFIX: &str = "KEY_EVENT#";

/// Where alerts of one kind start in the `by_time` index: `ALERT#<kind>#`, then the
/// alert's sort key after `ALERT#` (its time first), so that one kind's alerts are in the
/// order the table holds them.
pub fn alert_time_prefix(kind: &str) -> String {
    format!("{ALERT_PREFIX}{kind}#")
}

/// An alert's key in the `by_time` index: its kind, then its sort key after `ALERT#`.
pub fn alert_time_key(alert: &Alert) -> String {
    let sk = alert_sk(alert);
    format!(
        "{}{}",
        alert_time_prefix(alert.kind.as_str()),
        &sk[ALERT_PREFIX.len()..]
    )
}

fn with_time_key(mut item: Item, time_key: String) -> Item {
    item.insert(TIME_KEY.to_owned(), AttributeValue::S(time_key));
    item
}

fn view(item: Item, of: ViewOf) -> ViewItem {
    ViewItem { item, of }
}

/// Every item of `derived`: each session and key a head item with its events as items
/// of their own (a long session or a busy key grows by one small item per event and
/// never rewrites what it holds), failed logins, alerts, streams.
fn view_items(cluster: &str, derived: &Derived) -> Result<Vec<ViewItem>, StoreError> {
    let mut items = Vec::new();
    for session in &derived.sessions {
        let sk = session_sk(session);
        let head = ClusterSession {
            events: Vec::new(),
            ..session.clone()
        };
        items.push(view(
            with_time_key(
                derived_item(
                    cluster,
                    sk.clone(),
                    "session",
                    SessionHead { session: head },
                )?,
                format!("{SESSION_TIME_PREFIX}{}", session.login_time.iso()),
            ),
            ViewOf::SessionHead {
                login_time: session.login_time,
            },
        ));
        for event in &session.events {
            items.push(view(
                derived_item(
                    cluster,
                    session_event_sk(session, event),
                    "session_event",
                    event,
                )?,
                ViewOf::Event { time: event.time },
            ));
        }
    }
    for key in &derived.keys {
        let sk = key_sk(key);
        let head = KeyGeneration {
            events: Vec::new(),
            ..key.clone()
        };
        items.push(view(
            derived_item(cluster, sk.clone(), "key", KeyHead { key: head })?,
            ViewOf::KeyHead {
                created_time: key.created_time,
                generation: key.generation,
                first_event: key.events.first().map(|event| event.time),
            },
        ));
        for event in &key.events {
            items.push(view(
                with_time_key(
                    derived_item(cluster, key_event_sk(key, event), "key_event", event)?,
                    format!("{KEY_EVENT_TIME_PREFIX}{}", event.time.iso()),
                ),
                ViewOf::Event { time: event.time },
            ));
        }
    }
    for login in &derived.failed_logins {
        items.push(view(
            derived_item(cluster, failed_login_sk(login), "failed_login", login)?,
            ViewOf::FailedLogin,
        ));
    }
    for alert in &derived.alerts {
        items.push(view(
            with_time_key(
                derived_item(cluster, alert_sk(alert), "alert", alert)?,
                alert_time_key(alert),
            ),
            ViewOf::Alert {
                kind: alert.kind,
                time: alert.time,
                user: alert.user.clone(),
            },
        ));
    }
    for stream in &derived.streams {
        items.push(view(
            derived_item(cluster, stream_sk(stream), "stream", stream)?,
            ViewOf::Stream,
        ));
    }
    for (item, time) in quorum::quorum_items(cluster, &derived.quorum)? {
        items.push(view(item, ViewOf::Quorum { time }));
    }
    Ok(items)
}

/// The views of `derived` as the derivation weighs them ([`crate::incremental::plan_write`]):
/// each item with its sort key and the digest that tells it from what a step wrote before.
pub fn laid_out_views(cluster: &str, derived: &Derived) -> Result<Vec<LaidOut<Item>>, StoreError> {
    Ok(view_items(cluster, derived)?
        .into_iter()
        .map(|view| LaidOut {
            sk: sort_key(&view.item),
            digest: hex::encode(&item_digest(&view.item)[..8]),
            of: view.of,
            stored: view.item,
        })
        .collect())
}

/// Every item of a cluster's derived views.
pub fn derived_items(cluster: &str, derived: &Derived) -> Result<Vec<Item>, StoreError> {
    Ok(view_items(cluster, derived)?
        .into_iter()
        .map(|view| view.item)
        .collect())
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionHead {
    #[serde(flatten)]
    session: ClusterSession,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyHead {
    #[serde(flatten)]
    key: KeyGeneration,
}

fn item_type(item: &Item) -> &str {
    item.get("item_type")
        .and_then(|value| value.as_s().ok())
        .map_or("", String::as_str)
}

/// Reads the items of a `SESSION#` or `KEY#` query back: each head, then its events.
fn with_events<T, E: DeserializeOwned>(
    items: Vec<Item>,
    head_type: &str,
    read_head: impl Fn(Item) -> Result<T, StoreError>,
    events_of: impl Fn(&mut T) -> &mut Vec<E>,
) -> Result<Vec<T>, StoreError> {
    let mut out: Vec<T> = Vec::new();
    let event_type = format!("{head_type}_event");
    for item in items {
        let kind = item_type(&item).to_owned();
        if kind == head_type {
            out.push(read_head(item)?);
        } else if kind == event_type {
            let event: DerivedHeader<E> = read_item(item)?;
            if let Some(last) = out.last_mut() {
                events_of(last).push(event.body);
            }
        }
    }
    Ok(out)
}

pub fn sessions_from_items(items: Vec<Item>) -> Result<Vec<ClusterSession>, StoreError> {
    let mut sessions = with_events::<_, SessionEvent>(
        items,
        "session",
        |item| read_item::<DerivedHeader<SessionHead>>(item).map(|item| item.body.session),
        |session| &mut session.events,
    )?;
    for session in &mut sessions {
        session.events.sort_by_key(|event| {
            event_order(event.time, &event.opcode, event.log_event_id.is_some())
        });
    }
    Ok(sessions)
}

pub fn keys_from_items(items: Vec<Item>) -> Result<Vec<KeyGeneration>, StoreError> {
    let mut keys = with_events::<_, KeyEvent>(
        items,
        "key",
        |item| read_item::<DerivedHeader<KeyHead>>(item).map(|item| item.body.key),
        |key| &mut key.events,
    )?;
    for key in &mut keys {
        let luna = key.object_id.is_some();
        key.events
            .sort_by_key(|event| event_order(event.time, &event.opcode, luna));
    }
    Ok(keys)
}

/// One item of a cluster's views, read on its own: what a reader that streams a
/// partition page by page (the report) sees, a head before its events.
#[derive(Debug, Clone, PartialEq)]
pub enum ViewRow {
    SessionHead(ClusterSession),
    SessionEvent(SessionEvent),
    KeyHead(KeyGeneration),
    KeyEvent(KeyEvent),
    FailedLogin(FailedLogin),
    Alert(Alert),
    Stream(StreamSummary),
    /// Quorum items and anything a later version adds: read by their own queries.
    Other,
}

pub fn view_row(item: Item) -> Result<ViewRow, StoreError> {
    fn body<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
        read_item::<DerivedHeader<T>>(item).map(|item| item.body)
    }
    Ok(match item_type(&item) {
        "session" => ViewRow::SessionHead(body::<SessionHead>(item)?.session),
        "session_event" => ViewRow::SessionEvent(body(item)?),
        "key" => ViewRow::KeyHead(body::<KeyHead>(item)?.key),
        "key_event" => ViewRow::KeyEvent(body(item)?),
        "failed_login" => ViewRow::FailedLogin(body(item)?),
        "alert" => ViewRow::Alert(body(item)?),
        "stream" => ViewRow::Stream(body(item)?),
        _ => ViewRow::Other,
    })
}

/// A trail record's log event id, with the sort key it was read under.
pub fn trail_log_event_id(item: &Item) -> Option<(String, String)> {
    let id = item.get("log_event_id")?.as_s().ok()?;
    Some((sort_key(item), id.clone()))
}

pub fn bodies_from_items<T: DeserializeOwned>(items: Vec<Item>) -> Result<Vec<T>, StoreError> {
    items
        .into_iter()
        .map(|item| read_item::<DerivedHeader<T>>(item).map(|item| item.body))
        .collect()
}

/// An item's size by DynamoDB's published rules: attribute names plus values, numbers
/// at one byte per two significant digits plus one, lists and maps three bytes plus one
/// per element. Capacity is billed on it, and a local server does not report it faithfully.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number_size(number),
        AttributeValue::B(bytes) => bytes.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(list) => {
            3 + list
                .iter()
                .map(|element| 1 + value_size(element))
                .sum::<usize>()
        }
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(name, element)| 1 + name.len() + value_size(element))
                .sum::<usize>()
        }
        AttributeValue::Ss(texts) => texts.iter().map(String::len).sum(),
        AttributeValue::Ns(numbers) => numbers.iter().map(|number| number_size(number)).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(|blob| blob.as_ref().len()).sum(),
        _ => 0,
    }
}

fn number_size(number: &str) -> usize {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let significant = digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1);
    significant.div_ceil(2) + 1
}

/// Write capacity units one write of `item` costs: one per started KiB.
pub fn write_units(item: &Item) -> u64 {
    (item_size(item).div_ceil(1024)).max(1) as u64
}

/// The `item_type` of an item, for accounting by type.
pub fn type_of(item: &Item) -> String {
    item_type(item).to_owned()
}

/// The item's key attributes alone (`pk`, `sk`): what a delete names.
pub fn key_attributes(item: &Item) -> Item {
    item.iter()
        .filter(|(name, _)| *name == "pk" || *name == "sk")
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// A digest of the item's content that does not depend on the order its maps were built
/// in: what the write plan keeps of a stored view instead of the item's maps.
pub fn item_digest(item: &Item) -> [u8; 32] {
    let mut hasher = Sha256::new();
    digest_map(&mut hasher, item);
    hasher.finalize().into()
}

fn digest_text(hasher: &mut Sha256, bytes: &[u8]) {
    // Length-prefixed, so that no two different sequences of texts hash alike.
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn digest_map(hasher: &mut Sha256, map: &Item) {
    let mut names: Vec<&String> = map.keys().collect();
    names.sort_unstable();
    hasher.update((names.len() as u64).to_le_bytes());
    for name in names {
        digest_text(hasher, name.as_bytes());
        digest_value(hasher, &map[name]);
    }
}

fn digest_set<'a>(hasher: &mut Sha256, tag: &[u8], members: impl Iterator<Item = &'a [u8]>) {
    let mut members: Vec<&[u8]> = members.collect();
    members.sort_unstable();
    hasher.update(tag);
    hasher.update((members.len() as u64).to_le_bytes());
    for member in members {
        digest_text(hasher, member);
    }
}

fn digest_value(hasher: &mut Sha256, value: &AttributeValue) {
    match value {
        AttributeValue::S(text) => {
            hasher.update(b"S");
            digest_text(hasher, text.as_bytes());
        }
        AttributeValue::N(number) => {
            hasher.update(b"N");
            digest_text(hasher, number.as_bytes());
        }
        AttributeValue::B(bytes) => {
            hasher.update(b"B");
            digest_text(hasher, bytes.as_ref());
        }
        AttributeValue::Bool(flag) => hasher.update(if *flag { b"T" } else { b"F" }),
        AttributeValue::Null(_) => hasher.update(b"0"),
        AttributeValue::L(list) => {
            hasher.update(b"L");
            hasher.update((list.len() as u64).to_le_bytes());
            for member in list {
                digest_value(hasher, member);
            }
        }
        AttributeValue::M(map) => {
            hasher.update(b"M");
            digest_map(hasher, map);
        }
        AttributeValue::Ss(set) => digest_set(hasher, b"SS", set.iter().map(|s| s.as_bytes())),
        AttributeValue::Ns(set) => digest_set(hasher, b"NS", set.iter().map(|n| n.as_bytes())),
        AttributeValue::Bs(set) => digest_set(hasher, b"BS", set.iter().map(|b| b.as_ref())),
        // A kind this SDK version does not know: its debug text still tells values apart.
        other => {
            hasher.update(b"?");
            digest_text(hasher, format!("{other:?}").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
