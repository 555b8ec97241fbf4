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
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_dynamo::aws_sdk_dynamodb_1::from_item;
use sha2::{Digest, Sha256};

use self::later::LaterTrailFields;
use super::attributes::to_item;
use crate::decode::Quarantined;
use crate::domain::{
    Alert, AlertKind, ClusterSession, Conflict, Derived, FailedLogin, KeyEvent, KeyGeneration,
    SessionEvent, StreamSummary, event_order,
};
use crate::model::{
    AuditRecord, CertificateRecord, HsmRecord, Labeled, LogSource, LunaRecord, Opcode,
    RecordIdentity, StreamId, Timestamp, TrailEntry, shared_name,
};
use crate::store::{BoxError, StoreError};

mod later;
mod quorum;
pub mod state;

pub use self::quorum::{QUORUM_PREFIX, quorum_from_items};
pub use self::state::{
    CHECKPOINT_PREFIX, checkpoint_from_items, object_from_item, object_item, object_key,
    step_phases,
};

pub type Item = HashMap<String, AttributeValue>;

/// The original message is kept up to this size (audit records are ~400 bytes); its
/// digest identifies it beyond.
const MAX_TRAIL_RAW_BYTES: usize = 16 * 1024;

pub const QUARANTINE_PK: &str = "QUARANTINE";
pub const LEASE_SK: &str = "LEASE";
/// The chain lease's item, beside the derivation lease's (`store::dynamodb::lease`).
pub const CHAIN_LEASE_SK: &str = "LEASE#CHAIN";
pub const ANCHOR_SK: &str = "ANCHOR";

/// The longest key part. DynamoDB refuses sort keys over 1,024 bytes (partition keys over
/// 2,048); a user name or stream name from hostile input must stay data, not become a
/// request that fails on every retry.
const MAX_KEY_PART: usize = 200;

/// Hex digits of the SHA-256 a long key part ends in: 128 bits, so two long values that
/// share a readable start still never share a key.
const KEY_DIGEST_HEX: usize = 32;

/// Marks a key part cut down to its start and a digest. Escaped in every value, so no
/// input can produce a cut-down form of its own.
const CUT_MARKER: char = '~';

/// `text` as a key part: itself when it holds nothing to escape and is short (the console
/// stays readable: `SESSION#alice#2018-…`); else `%`, `#` and `~` escaped (`%25`, `%23`,
/// `%7E`), so that a part never contains the separator and a prefix query ending in `#`
/// matches whole parts only; and past [`MAX_KEY_PART`] bytes, the escaped start, `~` and
/// a digest of the whole value, never a cut alone. The mapping is injective: escaping is,
/// a short form never contains `~`, and a long form's digest covers the whole value.
pub fn key_part(text: &str) -> Cow<'_, str> {
    let needs_escape = text.bytes().any(|byte| matches!(byte, b'%' | b'#' | b'~'));
    if !needs_escape && text.len() <= MAX_KEY_PART {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        match character {
            '%' => escaped.push_str("%25"),
            '#' => escaped.push_str("%23"),
            CUT_MARKER => escaped.push_str("%7E"),
            other => escaped.push(other),
        }
    }
    if escaped.len() <= MAX_KEY_PART {
        return Cow::Owned(escaped);
    }
    let mut cut = MAX_KEY_PART - KEY_DIGEST_HEX - 1;
    while !escaped.is_char_boundary(cut) {
        cut -= 1;
    }
    // An escape split in two would read as a different character.
    if let Some(percent) = escaped[..cut].rfind('%')
        && percent + 3 > cut
    {
        cut = percent;
    }
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    Cow::Owned(format!(
        "{}{CUT_MARKER}{}",
        &escaped[..cut],
        &digest[..KEY_DIGEST_HEX]
    ))
}

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

pub fn trail_sk(hsm: &str, reboot_counter: u32, sequence_no: u64) -> String {
    format!(
        "HSM#{}#RC#{reboot_counter:08x}#SEQ#{sequence_no:016x}",
        key_part(hsm)
    )
}

/// Sort-key prefix of one stream's records without sequence numbers (certificate
/// storage, Luna), in log event id order.
pub fn log_stream_prefix(stream: &str) -> String {
    format!("{LOG_EVENT_PREFIX}{}#EVENT#", key_part(stream))
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

/// Sort-key prefix of one HSM's trail.
pub fn hsm_trail_prefix(hsm: &str) -> String {
    format!("HSM#{}#", key_part(hsm))
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
const HSM_PREFIX: &str = "HSM#";
/// Records without a sequence number, under their log stream and event id.
const LOG_EVENT_PREFIX: &str = "LOG#";

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

/// The sort key a record is stored under in its cluster's trail partition.
pub fn identity_sk(identity: &RecordIdentity) -> String {
    match identity {
        RecordIdentity::Sequence {
            hsm,
            reboot_counter,
            sequence_no,
        } => trail_sk(hsm, *reboot_counter, *sequence_no),
        RecordIdentity::LogEvent {
            stream,
            log_event_id,
        } => format!(
            "{LOG_EVENT_PREFIX}{}#EVENT#{}",
            key_part(stream),
            key_part(log_event_id)
        ),
    }
}

/// An audit record as it reads in the console: every field flat, times in ISO-8601.
#[derive(Debug, Serialize, Deserialize)]
struct TrailItem {
    pk: String,
    sk: String,
    item_type: String,
    cluster: Arc<str>,
    hsm: Arc<str>,
    reboot_counter: u32,
    sequence_no: u64,
    time: Timestamp,
    usecs: i64,
    command_type: Cow<'static, str>,
    command_type_code: Option<u64>,
    opcode: Opcode,
    opcode_code: Option<u64>,
    session_handle: u64,
    success: bool,
    response_code: u32,
    response: Cow<'static, str>,
    log_type: Cow<'static, str>,
    log_type_code: Option<u64>,
    user_name: Option<String>,
    user_type: Option<Cow<'static, str>>,
    user_type_code: Option<u64>,
    key_handle: Option<u64>,
    public_key_handle: Option<u64>,
    log_group: Arc<str>,
    log_event_id: String,
    log_event_time: Timestamp,
    content_sha256: String,
    raw: String,
    raw_truncated: bool,
    #[serde(flatten)]
    later: LaterTrailFields,
}

fn cut_raw(raw: &str) -> (String, bool) {
    let mut cut = raw.len().min(MAX_TRAIL_RAW_BYTES);
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    (raw[..cut].to_owned(), cut < raw.len())
}

pub fn trail_item(entry: &TrailEntry) -> Result<Item, StoreError> {
    trail_item_with_digest(entry, entry.record.content_sha256())
}

/// [`trail_item`] with the record's content digest already computed (the store has it
/// from telling new records from duplicates, and it costs a JSON rendering and a SHA-256).
pub fn trail_item_with_digest(
    entry: &TrailEntry,
    content_sha256: String,
) -> Result<Item, StoreError> {
    match &entry.record {
        AuditRecord::CloudHsm(record) => cloudhsm_item(entry, record, content_sha256),
        AuditRecord::Certificate(record) => certificate_item(entry, record, content_sha256),
        AuditRecord::Luna(record) => luna_item(entry, record, content_sha256),
    }
}

fn cloudhsm_item(
    entry: &TrailEntry,
    record: &HsmRecord,
    content_sha256: String,
) -> Result<Item, StoreError> {
    let (raw, raw_truncated) = cut_raw(&entry.raw);
    let item = TrailItem {
        pk: trail_pk(&entry.stream().cluster),
        sk: identity_sk(&entry.identity()),
        item_type: "audit_record".to_owned(),
        cluster: entry.stream().cluster.clone(),
        hsm: entry.stream().hsm.clone(),
        reboot_counter: record.reboot_counter,
        sequence_no: record.sequence_no,
        time: record.time,
        usecs: record.time.micros(),
        command_type: record.command_type.name.clone(),
        command_type_code: record.command_type.code,
        opcode: record.opcode.clone(),
        opcode_code: record.opcode_code,
        session_handle: record.session_handle,
        success: record.succeeded(),
        response_code: record.response_code,
        response: record.response_text.clone(),
        log_type: record.log_type.name.clone(),
        log_type_code: record.log_type.code,
        user_name: record.user_name.clone(),
        user_type: record.user_type.as_ref().map(|label| label.name.clone()),
        user_type_code: record.user_type.as_ref().and_then(|label| label.code),
        key_handle: record.key_handle,
        public_key_handle: record.public_key_handle,
        log_group: Arc::clone(&entry.source.log_group),
        log_event_id: entry.log_event_id.clone(),
        log_event_time: entry.log_event_time,
        content_sha256,
        raw,
        raw_truncated,
        later: LaterTrailFields::of(record.later()),
    };
    to_clean_item(&item, &item.sk)
}

/// A certificate-storage record as it reads in the console.
#[derive(Debug, Serialize, Deserialize)]
struct CertificateItem {
    pk: String,
    sk: String,
    item_type: String,
    cluster: Arc<str>,
    log_stream: Arc<str>,
    time: Timestamp,
    usecs: i64,
    object_handle: Option<u64>,
    op_code: String,
    response: String,
    success: bool,
    attributes: Option<Vec<String>>,
    log_group: Arc<str>,
    log_event_id: String,
    log_event_time: Timestamp,
    content_sha256: String,
    raw: String,
    raw_truncated: bool,
}

fn certificate_item(
    entry: &TrailEntry,
    record: &CertificateRecord,
    content_sha256: String,
) -> Result<Item, StoreError> {
    let (raw, raw_truncated) = cut_raw(&entry.raw);
    let item = CertificateItem {
        pk: trail_pk(&entry.stream().cluster),
        sk: identity_sk(&entry.identity()),
        item_type: "certificate_record".to_owned(),
        cluster: entry.stream().cluster.clone(),
        log_stream: entry.stream().hsm.clone(),
        time: record.time,
        usecs: record.time.micros(),
        object_handle: record.object_handle,
        op_code: record.op_code.clone(),
        response: record.response.clone(),
        success: record.succeeded(),
        attributes: record.attributes.clone(),
        log_group: Arc::clone(&entry.source.log_group),
        log_event_id: entry.log_event_id.clone(),
        log_event_time: entry.log_event_time,
        content_sha256,
        raw,
        raw_truncated,
    };
    to_clean_item(&item, &item.sk)
}

/// A Luna record as it reads in the console: every field flat, `meta` unfolded.
#[derive(Debug, Serialize, Deserialize)]
struct LunaItem {
    pk: String,
    sk: String,
    item_type: String,
    cluster: Arc<str>,
    log_stream: Arc<str>,
    time: Timestamp,
    usecs: i64,
    action: String,
    status: String,
    success: bool,
    source: Option<String>,
    resource_id: Option<String>,
    actor_id: Option<String>,
    tenant_id: Option<String>,
    partition_id: Option<String>,
    hsm_id: Option<String>,
    client_ip: Option<String>,
    role: Option<String>,
    // An empty list is kept (not left out): "no objects" reads as such in the console.
    #[serde(default)]
    object_ids: Vec<String>,
    record_id: Option<String>,
    log_group: Arc<str>,
    log_event_id: String,
    log_event_time: Timestamp,
    content_sha256: String,
    raw: String,
    raw_truncated: bool,
}

const LUNA_ITEM_TYPE: &str = "luna_record";

fn luna_item(
    entry: &TrailEntry,
    record: &LunaRecord,
    content_sha256: String,
) -> Result<Item, StoreError> {
    let (raw, raw_truncated) = cut_raw(&entry.raw);
    let record = record.clone();
    let item = LunaItem {
        pk: trail_pk(&entry.stream().cluster),
        sk: identity_sk(&entry.identity()),
        item_type: LUNA_ITEM_TYPE.to_owned(),
        cluster: entry.stream().cluster.clone(),
        log_stream: entry.stream().hsm.clone(),
        time: record.time,
        usecs: record.time.micros(),
        success: record.succeeded(),
        action: record.action,
        status: record.status,
        source: record.source,
        resource_id: record.resource_id,
        actor_id: record.actor_id,
        tenant_id: record.tenant_id,
        partition_id: record.partition_id,
        hsm_id: record.hsm_id,
        client_ip: record.client_ip,
        role: record.role,
        object_ids: record.object_ids,
        record_id: record.record_id,
        log_group: Arc::clone(&entry.source.log_group),
        log_event_id: entry.log_event_id.clone(),
        log_event_time: entry.log_event_time,
        content_sha256,
        raw,
        raw_truncated,
    };
    to_clean_item(&item, &item.sk)
}

fn luna_entry_from_item(item: Item) -> Result<TrailEntry, StoreError> {
    let item: LunaItem = read_item(item)?;
    Ok(TrailEntry {
        source: Arc::new(LogSource {
            stream: StreamId {
                cluster: item.cluster,
                hsm: item.log_stream,
            },
            log_group: item.log_group,
        }),
        record: AuditRecord::Luna(LunaRecord {
            time: item.time,
            action: item.action,
            status: item.status,
            source: item.source,
            resource_id: item.resource_id,
            actor_id: item.actor_id,
            tenant_id: item.tenant_id,
            partition_id: item.partition_id,
            hsm_id: item.hsm_id,
            client_ip: item.client_ip,
            role: item.role,
            object_ids: item.object_ids,
            record_id: item.record_id,
        }),
        log_event_id: item.log_event_id,
        log_event_time: item.log_event_time,
        raw: item.raw,
    })
}

pub fn is_trail_record(item: &Item) -> bool {
    let sk = sort_key(item);
    sk.starts_with(HSM_PREFIX) || sk.starts_with(LOG_EVENT_PREFIX)
}

pub fn is_conflict(item: &Item) -> bool {
    sort_key(item).starts_with(CONFLICT_PREFIX)
}

/// The audit records among `items` (a trail query's), in their order.
pub fn trail_entries(items: impl IntoIterator<Item = Item>) -> Result<Vec<TrailEntry>, StoreError> {
    items
        .into_iter()
        .filter(is_trail_record)
        .map(trail_entry_from_item)
        .collect()
}

pub fn trail_entry_from_item(item: Item) -> Result<TrailEntry, StoreError> {
    if item_type(&item) == "certificate_record" {
        return certificate_entry_from_item(item);
    }
    if item_type(&item) == LUNA_ITEM_TYPE {
        return luna_entry_from_item(item);
    }
    let item: TrailItem = read_item(item)?;
    Ok(TrailEntry {
        source: Arc::new(LogSource {
            stream: StreamId {
                cluster: item.cluster,
                hsm: item.hsm,
            },
            log_group: item.log_group,
        }),
        record: AuditRecord::CloudHsm(HsmRecord {
            time: item.time,
            sequence_no: item.sequence_no,
            reboot_counter: item.reboot_counter,
            command_type: Labeled {
                name: shared_name(item.command_type),
                code: item.command_type_code,
            },
            opcode: item.opcode,
            opcode_code: item.opcode_code,
            session_handle: item.session_handle,
            response_code: item.response_code,
            response_text: shared_name(item.response),
            log_type: Labeled {
                name: shared_name(item.log_type),
                code: item.log_type_code,
            },
            user_name: item.user_name,
            user_type: item.user_type.map(|name| Labeled {
                name: shared_name(name),
                code: item.user_type_code,
            }),
            key_handle: item.key_handle,
            public_key_handle: item.public_key_handle,
            later: item.later.into_record().boxed(),
        }),
        log_event_id: item.log_event_id,
        log_event_time: item.log_event_time,
        raw: item.raw,
    })
}

fn certificate_entry_from_item(item: Item) -> Result<TrailEntry, StoreError> {
    let item: CertificateItem = read_item(item)?;
    Ok(TrailEntry {
        source: Arc::new(LogSource {
            stream: StreamId {
                cluster: item.cluster,
                hsm: item.log_stream,
            },
            log_group: item.log_group,
        }),
        record: AuditRecord::Certificate(CertificateRecord {
            time: item.time,
            object_handle: item.object_handle,
            op_code: item.op_code,
            response: item.response,
            attributes: item.attributes,
        }),
        log_event_id: item.log_event_id,
        log_event_time: item.log_event_time,
        raw: item.raw,
    })
}

/// The stored content digest of a trail item, for telling duplicates from conflicts.
pub fn content_digest(item: &Item) -> Option<String> {
    item.get("content_sha256")
        .and_then(|value| value.as_s().ok())
        .cloned()
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
const EVENT_INFIX: &str = "#EV#";

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

/// What a view item is, for deciding whether a later step may replace or remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewOf {
    SessionHead {
        login_time: Timestamp,
    },
    KeyHead {
        created_time: Option<Timestamp>,
        generation: u32,
        first_event: Option<Timestamp>,
    },
    /// An event of a session or key: the record's time.
    Event {
        time: Timestamp,
    },
    /// A quorum token or M-value setting: the time of the record that starts it.
    Quorum {
        time: Timestamp,
    },
    FailedLogin,
    Alert {
        kind: AlertKind,
        time: Timestamp,
        user: Option<String>,
    },
    Stream,
}

/// A view item and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewItem {
    pub item: Item,
    pub of: ViewOf,
    /// For a key head: its handle or object (what the carry of its object is kept under).
    pub object: Option<String>,
}

fn view(item: Item, of: ViewOf) -> ViewItem {
    ViewItem {
        item,
        of,
        object: None,
    }
}

/// Every item of `derived`: each session and key a head item with its events as items
/// of their own (a long session or a busy key grows by one small item per event and
/// never rewrites what it holds), failed logins, alerts, streams.
pub fn view_items(cluster: &str, derived: &Derived) -> Result<Vec<ViewItem>, StoreError> {
    let mut items = Vec::new();
    for session in &derived.sessions {
        let sk = session_sk(session);
        let head = ClusterSession {
            events: Vec::new(),
            ..session.clone()
        };
        items.push(view(
            derived_item(
                cluster,
                sk.clone(),
                "session",
                SessionHead { session: head },
            )?,
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
        items.push(ViewItem {
            item: derived_item(cluster, sk.clone(), "key", KeyHead { key: head })?,
            of: ViewOf::KeyHead {
                created_time: key.created_time,
                generation: key.generation,
                first_event: key.events.first().map(|event| event.time),
            },
            object: Some(object_of(key)),
        });
        for event in &key.events {
            items.push(view(
                derived_item(cluster, key_event_sk(key, event), "key_event", event)?,
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
            derived_item(cluster, alert_sk(alert), "alert", alert)?,
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

/// Every item of a cluster's derived views.
pub fn derived_items(cluster: &str, derived: &Derived) -> Result<Vec<Item>, StoreError> {
    Ok(view_items(cluster, derived)?
        .into_iter()
        .map(|view| view.item)
        .collect())
}

/// Which carry a key generation's object is kept under: `KEY#<handle>`,
/// `CERT#<handle>` or `LUNA#<object id>`.
pub fn object_of(key: &KeyGeneration) -> String {
    match (&key.object_id, key.kind.as_str()) {
        (Some(object_id), _) => format!("LUNA#{object_id}"),
        (None, "certificate") => format!("CERT#{}", key.handle),
        (None, _) => format!("KEY#{}", key.handle),
    }
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

/// The kind of an alert item (`brute_force`, …); `None` for other items.
pub fn alert_kind(item: &Item) -> Option<String> {
    (item_type(item) == "alert").then(|| text_attribute(item, "kind"))
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
mod size_tests {
    use super::*;

    fn view_item(events: Vec<(&str, &str)>) -> Item {
        let events = events
            .into_iter()
            .map(|(hsm, opcode)| {
                AttributeValue::M(HashMap::from([
                    ("hsm".to_owned(), AttributeValue::S(hsm.to_owned())),
                    ("opcode".to_owned(), AttributeValue::S(opcode.to_owned())),
                ]))
            })
            .collect();
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S("CLUSTER#c".to_owned())),
            ("sk".to_owned(), AttributeValue::S("SESSION#u#1".to_owned())),
            ("events".to_owned(), AttributeValue::L(events)),
        ])
    }

    #[test]
    fn item_digest_ignores_map_order_and_sees_every_nested_change() {
        let item = view_item(vec![("hsm-a", "CN_LOGIN"), ("hsm-b", "CN_LOGOUT")]);
        let mut rebuilt = Item::new();
        let mut names: Vec<_> = item.keys().cloned().collect();
        names.reverse();
        for name in names {
            rebuilt.insert(name.clone(), item[&name].clone());
        }
        assert_eq!(item_digest(&item), item_digest(&rebuilt));
        let changed = view_item(vec![("hsm-a", "CN_LOGIN"), ("hsm-b", "CN_APP_FINALIZE")]);
        assert_ne!(item_digest(&item), item_digest(&changed));
        let reordered = view_item(vec![("hsm-b", "CN_LOGOUT"), ("hsm-a", "CN_LOGIN")]);
        assert_ne!(
            item_digest(&item),
            item_digest(&reordered),
            "lists keep order"
        );
        let mut number = item.clone();
        number.insert("n".to_owned(), AttributeValue::N("1".to_owned()));
        let mut text = item.clone();
        text.insert("n".to_owned(), AttributeValue::S("1".to_owned()));
        assert_ne!(item_digest(&number), item_digest(&text), "types count");
    }

    #[test]
    fn key_attributes_keep_only_the_key() {
        let key = key_attributes(&view_item(vec![("hsm-a", "CN_LOGIN")]));
        assert_eq!(key.len(), 2);
        assert!(key.contains_key("pk") && key.contains_key("sk"));
    }

    #[test]
    fn long_input_becomes_a_bounded_distinct_key_part() {
        assert_eq!(key_part("admin"), "admin");
        assert_eq!(key_part("a#b%c~d"), "a%23b%25c%7Ed");
        let long = "u".repeat(2048);
        let other = format!("{}v", "u".repeat(2047));
        assert!(key_part(&long).len() <= MAX_KEY_PART);
        let cut = key_part(&long).into_owned();
        assert_eq!(cut.matches(CUT_MARKER).count(), 1);
        assert_ne!(
            key_part(&cut),
            cut,
            "a cut-down form given as input is escaped, not taken as itself"
        );
        let escapes = "#".repeat(100);
        let part = key_part(&escapes);
        let (start, _) = part.split_once(CUT_MARKER).expect("cut down");
        assert!(
            start.len() % 3 == 0 && start.chars().all(|c| "%23".contains(c)),
            "no escape is split: {start}"
        );
        assert_ne!(
            key_part(&long),
            key_part(&other),
            "the digest keeps long values apart"
        );
        assert_eq!(key_part(&long), key_part(&long.clone()));
        let wide = "é".repeat(300);
        assert!(
            key_part(&wide).len() <= MAX_KEY_PART,
            "cut on a character boundary"
        );
    }

    #[test]
    fn sizes_follow_the_published_rules() {
        let item: Item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("abc".into())),
            ("n".to_owned(), AttributeValue::N("12300".into())),
            (
                "l".to_owned(),
                AttributeValue::L(vec![
                    AttributeValue::Bool(true),
                    AttributeValue::S("xy".into()),
                ]),
            ),
        ]);
        // pk: 2 + 3; n: 1 + (3 significant digits → 2) + 1; l: 1 + 3 + (1 + 1) + (1 + 2).
        assert_eq!(item_size(&item), 5 + 4 + 9);
        assert_eq!(write_units(&item), 1);
        let big: Item = HashMap::from([("raw".to_owned(), AttributeValue::S("x".repeat(2048)))]);
        assert_eq!(write_units(&big), 3, "2051 bytes start a third KiB");
    }
}

#[cfg(test)]
mod key_properties {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::FailedLogin;

    /// Arbitrary text as hostile input has it: separators, escapes, the cut marker,
    /// unicode, and lengths past the cut (up to 1 KiB and a little more).
    fn hostile_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a#%~é]{0,12}",
            ".{0,40}",
            "[a#%~\\u{1F600}]{150,400}",
            (".{0,8}", "[a-z#~%]{0,4}", 1usize..1100).prop_map(|(start, tail, repeat)| {
                format!(
                    "{}{tail}",
                    start.repeat(repeat.min(1100 / start.len().max(1)))
                )
            }),
        ]
    }

    /// Two distinct values, often sharing a long start (where a cut alone would collide)
    /// or one being the other plus a separator and more.
    fn distinct_pair() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            (hostile_text(), hostile_text()),
            (hostile_text(), "[a#~%]{1,6}").prop_map(|(a, tail)| (a.clone(), format!("{a}{tail}"))),
            (hostile_text(), hostile_text()).prop_map(|(a, b)| (a.clone(), format!("{a}#{b}"))),
        ]
        .prop_filter("distinct", |(a, b)| a != b)
    }

    fn session(user: &str, hsm: &str) -> ClusterSession {
        ClusterSession {
            user: user.to_owned(),
            user_type: None,
            login_time: Timestamp::from_micros(1_516_067_329_824_999),
            end_time: None,
            ended_by: None,
            origin_hsm: hsm.to_owned(),
            origin_seq: 7,
            origin_reboot_counter: 1,
            mirror_hsms: Vec::new(),
            events: Vec::new(),
        }
    }

    fn failed_login(hsm: &str) -> FailedLogin {
        FailedLogin {
            time: Timestamp::from_micros(1_516_067_329_824_999),
            hsm: hsm.to_owned(),
            seq: 7,
            reboot_counter: 1,
            user: "u".to_owned(),
            user_type: None,
            response_code: 163,
            response: "wrong password".to_owned(),
            hsm_response: "HSM Error".to_owned(),
            brute_force: false,
            opcode: None,
            log_event_id: None,
        }
    }

    fn quarantine_sk(group: &str, stream: &str, id: &str) -> String {
        let quarantined = Quarantined::new("bad", b"x").at(group, stream, Some(id));
        quarantine_item(&quarantined)
            .map(|item| sort_key(&item))
            .unwrap_or_default()
    }

    fn assert_apart(a: &str, b: &str, key_a: &str, key_b: &str, prefix_b: &str) {
        assert_ne!(key_a, key_b, "{a:?} and {b:?} share a key");
        assert!(
            !key_a.starts_with(prefix_b),
            "{a:?}'s key {key_a} matches {b:?}'s query {prefix_b}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn distinct_values_never_share_a_key_or_match_each_others_queries(
            (a, b) in distinct_pair()
        ) {
            for (x, y) in [(&a, &b), (&b, &a)] {
                prop_assert_ne!(key_part(x), key_part(y));
                // Users: a session's key and a user's session query.
                assert_apart(x, y, &session_sk(&session(x, "h")), &session_sk(&session(y, "h")),
                    &session_prefix(Some(y)));
                // HSMs: trail records, an HSM's trail query, sessions, failed logins, streams.
                assert_apart(x, y, &trail_sk(x, 1, 7), &trail_sk(y, 1, 7), &hsm_trail_prefix(y));
                prop_assert_ne!(session_sk(&session("u", x)), session_sk(&session("u", y)));
                prop_assert_ne!(failed_login_sk(&failed_login(x)), failed_login_sk(&failed_login(y)));
                prop_assert_ne!(trail_pk(x), trail_pk(y));
                prop_assert_ne!(cluster_pk(x), cluster_pk(y));
                // Log groups, streams and event ids: quarantine entries and trail records
                // without a sequence number.
                prop_assert_ne!(quarantine_sk(x, "s", "1"), quarantine_sk(y, "s", "1"));
                prop_assert_ne!(quarantine_sk("g", x, "1"), quarantine_sk("g", y, "1"));
                prop_assert_ne!(quarantine_sk("g", "s", x), quarantine_sk("g", "s", y));
                // A value's separator cannot move a boundary: `C#s`/`x` is not `C`/`s#x`.
                prop_assert_ne!(quarantine_sk(x, y, "1"), quarantine_sk(y, x, "1"));
                let log_x = identity_sk(&RecordIdentity::LogEvent {
                    stream: x.clone(),
                    log_event_id: "1".to_owned(),
                });
                let log_y = identity_sk(&RecordIdentity::LogEvent {
                    stream: y.clone(),
                    log_event_id: "1".to_owned(),
                });
                prop_assert_ne!(log_x, log_y);
                // Every key stays within DynamoDB's sort-key limit.
                prop_assert!(session_sk(&session(x, x)).len() <= 1024);
                prop_assert!(quarantine_sk(x, x, x).len() <= 1024);
                prop_assert!(!key_part(x).contains('#'));
            }
        }
    }
}
