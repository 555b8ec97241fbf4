//! The trail's items: each record as it reads in the console (every field flat, times in
//! ISO-8601), by its source (CloudHSM, certificate storage, Luna), and back.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::later::LaterTrailFields;
use super::{
    CONFLICT_PREFIX, HSM_PREFIX, Item, LOG_EVENT_PREFIX, identity_sk, item_type, read_item,
    sort_key, to_clean_item, trail_pk,
};
use crate::incremental::{Streams, stream_prefix};
use crate::model::{
    AuditRecord, CertificateRecord, HsmRecord, Labeled, LogSource, LunaRecord, Opcode, StreamId,
    Timestamp, TrailEntry, shared_name,
};
use crate::store::StoreError;

/// The original message is kept up to this size (audit records are ~400 bytes); its
/// digest identifies it beyond.
const MAX_TRAIL_RAW_BYTES: usize = 16 * 1024;

/// An audit record as it reads in the console: every field flat, times in ISO-8601.
#[derive(Debug, Serialize, Deserialize)]
struct TrailItem {
    #[serde(flatten)]
    delivery: Delivery,
    hsm: Arc<str>,
    reboot_counter: u32,
    sequence_no: u64,
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
    #[serde(flatten)]
    later: LaterTrailFields,
}

/// What a trail item holds whatever its source: its key, its time, the delivery it came
/// in, its content digest and the original message.
#[derive(Debug, Serialize, Deserialize)]
struct Delivery {
    pk: String,
    sk: String,
    item_type: String,
    cluster: Arc<str>,
    time: Timestamp,
    usecs: i64,
    log_group: Arc<str>,
    log_event_id: String,
    log_event_time: Timestamp,
    content_sha256: String,
    raw: String,
    raw_truncated: bool,
}

impl Delivery {
    fn of(entry: &TrailEntry, item_type: &str, content_sha256: String) -> Self {
        let mut cut = entry.raw.len().min(MAX_TRAIL_RAW_BYTES);
        while !entry.raw.is_char_boundary(cut) {
            cut -= 1;
        }
        let time = entry.record.time();
        Delivery {
            pk: trail_pk(&entry.stream().cluster),
            sk: identity_sk(&entry.identity()),
            item_type: item_type.to_owned(),
            cluster: entry.stream().cluster.clone(),
            time,
            usecs: time.micros(),
            log_group: Arc::clone(&entry.source.log_group),
            log_event_id: entry.log_event_id.clone(),
            log_event_time: entry.log_event_time,
            content_sha256,
            raw: entry.raw[..cut].to_owned(),
            raw_truncated: cut < entry.raw.len(),
        }
    }

    fn into_entry(self, hsm: Arc<str>, record: AuditRecord) -> TrailEntry {
        TrailEntry {
            source: Arc::new(LogSource {
                stream: StreamId {
                    cluster: self.cluster,
                    hsm,
                },
                log_group: self.log_group,
            }),
            record,
            log_event_id: self.log_event_id,
            log_event_time: self.log_event_time,
            raw: self.raw,
        }
    }
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
    let item = TrailItem {
        delivery: Delivery::of(entry, "audit_record", content_sha256),
        hsm: entry.stream().hsm.clone(),
        reboot_counter: record.reboot_counter,
        sequence_no: record.sequence_no,
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
        later: LaterTrailFields::of(record.later()),
    };
    to_clean_item(&item, &item.delivery.sk)
}

/// A certificate-storage record as it reads in the console.
#[derive(Debug, Serialize, Deserialize)]
struct CertificateItem {
    #[serde(flatten)]
    delivery: Delivery,
    log_stream: Arc<str>,
    object_handle: Option<u64>,
    op_code: String,
    response: String,
    success: bool,
    attributes: Option<Vec<String>>,
}

fn certificate_item(
    entry: &TrailEntry,
    record: &CertificateRecord,
    content_sha256: String,
) -> Result<Item, StoreError> {
    let item = CertificateItem {
        delivery: Delivery::of(entry, "certificate_record", content_sha256),
        log_stream: entry.stream().hsm.clone(),
        object_handle: record.object_handle,
        op_code: record.op_code.clone(),
        response: record.response.clone(),
        success: record.succeeded(),
        attributes: record.attributes.clone(),
    };
    to_clean_item(&item, &item.delivery.sk)
}

/// A Luna record as it reads in the console: every field flat, `meta` unfolded.
#[derive(Debug, Serialize, Deserialize)]
struct LunaItem {
    #[serde(flatten)]
    delivery: Delivery,
    log_stream: Arc<str>,
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
}

const LUNA_ITEM_TYPE: &str = "luna_record";

fn luna_item(
    entry: &TrailEntry,
    record: &LunaRecord,
    content_sha256: String,
) -> Result<Item, StoreError> {
    let record = record.clone();
    let item = LunaItem {
        delivery: Delivery::of(entry, LUNA_ITEM_TYPE, content_sha256),
        log_stream: entry.stream().hsm.clone(),
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
    };
    to_clean_item(&item, &item.delivery.sk)
}

fn luna_entry_from_item(item: Item) -> Result<TrailEntry, StoreError> {
    let item: LunaItem = read_item(item)?;
    let record = AuditRecord::Luna(LunaRecord {
        time: item.delivery.time,
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
    });
    Ok(item.delivery.into_entry(item.log_stream, record))
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

/// Adds the stream of a trail item to `streams`; other items of the trail partition
/// (refused duplicates) name none.
pub fn add_stream(streams: &mut Streams, item: Item) -> Result<(), StoreError> {
    if is_trail_record(&item) {
        let entry = trail_entry_from_item(item)?;
        streams
            .entry(stream_prefix(&entry))
            .or_insert_with(|| entry.cloudhsm().map(|_| entry.stream().hsm.to_string()));
    }
    Ok(())
}

pub fn trail_entry_from_item(item: Item) -> Result<TrailEntry, StoreError> {
    if item_type(&item) == "certificate_record" {
        return certificate_entry_from_item(item);
    }
    if item_type(&item) == LUNA_ITEM_TYPE {
        return luna_entry_from_item(item);
    }
    let item: TrailItem = read_item(item)?;
    let record = AuditRecord::CloudHsm(HsmRecord {
        time: item.delivery.time,
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
    });
    Ok(item.delivery.into_entry(item.hsm, record))
}

fn certificate_entry_from_item(item: Item) -> Result<TrailEntry, StoreError> {
    let item: CertificateItem = read_item(item)?;
    let record = AuditRecord::Certificate(CertificateRecord {
        time: item.delivery.time,
        object_handle: item.object_handle,
        op_code: item.op_code,
        response: item.response,
        attributes: item.attributes,
    });
    Ok(item.delivery.into_entry(item.log_stream, record))
}

/// The stored content digest of a trail item, for telling duplicates from conflicts.
pub fn content_digest(item: &Item) -> Option<String> {
    item.get("content_sha256")
        .and_then(|value| value.as_s().ok())
        .cloned()
}
