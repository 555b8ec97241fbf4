//! The items of a cluster's derivation state (`STATE#<cluster>`), and the order a step
//! writes them in (see `crate::incremental` for why each exists):
//! - `CHECKPOINT#<n>`: the head, gzipped JSON in pieces; `CHECKPOINT#INTENT`: the step
//!   that is writing (read with the head, in the same query).
//! - `SNAP#<point>`: a copy of a head as it was at `point`, kept for the late horizon.
//! - `LOG#<point>#<step>#<n>`: what one step wrote (view keys and digests), gzipped.
//! - `OBJ#<object>`: where an object stands now; `OBJV#<point>#<step>#<object>`: where it
//!   stood before the step that ended at `point` changed it (absent `object_carry`: it
//!   had no carry), kept for the horizon.
//!
//! Points are written as 16 hex digits of the time with its sign bit flipped, so that
//! string order is time order.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Item, cluster_pk, key_item, key_part, sort_key, state_pk};
use crate::incremental::{Checkpoint, Intent, ObjectCarry, StepId, StepLog, StepWrite};
use crate::model::Timestamp;
use crate::store::{BoxError, StoreError};

pub const CHECKPOINT_PREFIX: &str = "CHECKPOINT#";
pub const INTENT_SK: &str = "CHECKPOINT#INTENT";
pub const SNAPSHOT_PREFIX: &str = "SNAP#";
pub const LOG_PREFIX: &str = "LOG#";
pub const OBJECT_PREFIX: &str = "OBJ#";
pub const VERSION_PREFIX: &str = "OBJV#";
/// The attribute DynamoDB's time to live reads (seconds since the epoch).
pub const EXPIRES_AT: &str = "expires_at";

/// A checkpoint or log is stored gzipped in pieces of at most this many bytes, well
/// inside DynamoDB's 400 KB item limit.
const CHUNK_BYTES: usize = 300 * 1024;

/// A point as a key part: sorts as the time does.
pub fn point_key(point: Timestamp) -> String {
    format!("{:016x}", (point.micros() as u64) ^ (1 << 63))
}

fn point_from_key(key: &str) -> Option<Timestamp> {
    u64::from_str_radix(key, 16)
        .ok()
        .map(|bits| Timestamp((bits ^ (1 << 63)) as i64))
}

fn corrupt(key: String) -> impl Fn(BoxError) -> StoreError {
    move |source| StoreError::Corrupt {
        key: key.clone(),
        source,
    }
}

fn pack<T: Serialize>(value: &T, key: &str) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(value).map_err(|error| corrupt(key.to_owned())(error.into()))?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &json)
        .map_err(|error| corrupt(key.to_owned())(error.into()))?;
    encoder
        .finish()
        .map_err(|error| corrupt(key.to_owned())(error.into()))
}

fn unpack<T: DeserializeOwned>(packed: &[u8], key: &str) -> Result<T, StoreError> {
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(packed), &mut json)
        .map_err(|error| corrupt(key.to_owned())(error.into()))?;
    serde_json::from_slice(&json).map_err(|error| corrupt(key.to_owned())(error.into()))
}

/// `packed` cut into pieces under `prefix` + 4 digits, each naming how many there are.
fn pieces(
    pk: &str,
    prefix: &str,
    item_type: &str,
    packed: &[u8],
    expires: Option<i64>,
) -> Vec<Item> {
    let chunks: Vec<&[u8]> = packed.chunks(CHUNK_BYTES).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| {
            let mut item = key_item(pk, &format!("{prefix}{index:04}"));
            item.insert("item_type".into(), AttributeValue::S(item_type.into()));
            item.insert("chunks".into(), AttributeValue::N(chunks.len().to_string()));
            item.insert(
                "state_gz".into(),
                AttributeValue::B(Blob::new(chunk.to_vec())),
            );
            if let Some(expires) = expires {
                item.insert(EXPIRES_AT.into(), AttributeValue::N(expires.to_string()));
            }
            item
        })
        .collect()
}

/// The pieces of one value, in sort-key order, joined; `None` when there are none.
fn joined(items: &[&Item], key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(first) = items.first() else {
        return Ok(None);
    };
    let expected: usize = first
        .get("chunks")
        .and_then(|value| value.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if expected != items.len() {
        return Err(corrupt(key.to_owned())(
            format!("{} of {expected} pieces", items.len()).into(),
        ));
    }
    let mut packed = Vec::new();
    for item in items {
        let chunk = item
            .get("state_gz")
            .and_then(|value| value.as_b().ok())
            .ok_or_else(|| corrupt(key.to_owned())("a piece has no state_gz".into()))?;
        packed.extend_from_slice(chunk.as_ref());
    }
    Ok(Some(packed))
}

/// The head's items: gzipped JSON, cut into pieces when large.
pub fn checkpoint_items(cluster: &str, checkpoint: &Checkpoint) -> Result<Vec<Item>, StoreError> {
    let key = format!("{}/{CHECKPOINT_PREFIX}", state_pk(cluster));
    Ok(pieces(
        &state_pk(cluster),
        CHECKPOINT_PREFIX,
        "checkpoint",
        &pack(checkpoint, &key)?,
        None,
    ))
}

/// Keys of the head's pieces `from..to`: those a shorter head leaves behind.
pub fn checkpoint_piece_keys(cluster: &str, pieces: std::ops::Range<usize>) -> Vec<Item> {
    pieces
        .map(|index| {
            key_item(
                &state_pk(cluster),
                &format!("{CHECKPOINT_PREFIX}{index:04}"),
            )
        })
        .collect()
}

/// The head and the intent from the items of `CHECKPOINT#` (in sort-key order); the
/// default when there are none.
pub fn checkpoint_from_items(cluster: &str, items: &[Item]) -> Result<Checkpoint, StoreError> {
    let key = format!("{}/{CHECKPOINT_PREFIX}", state_pk(cluster));
    let (intent, pieces): (Vec<&Item>, Vec<&Item>) =
        items.iter().partition(|item| sort_key(item) == INTENT_SK);
    // A head of the format before snapshots (`checkpoint_gz`, a settle point) cannot be
    // gone on from: taken as no head, it is rebuilt (see `pipeline::recover_head`).
    let earlier_format = pieces
        .first()
        .is_some_and(|piece| !piece.contains_key("state_gz"));
    let mut checkpoint: Checkpoint = if earlier_format {
        Checkpoint::default()
    } else {
        match joined(&pieces, &key)? {
            Some(packed) => unpack(&packed, &key)?,
            None => Checkpoint::default(),
        }
    };
    checkpoint.stored_pieces = pieces.len();
    checkpoint.intent = intent
        .first()
        .and_then(|item| item.get("intent"))
        .and_then(|value| value.as_s().ok())
        .map(|json| serde_json::from_str::<Intent>(json))
        .transpose()
        .map_err(|error| corrupt(format!("{}/{INTENT_SK}", state_pk(cluster)))(error.into()))?;
    Ok(checkpoint)
}

fn intent_item(cluster: &str, intent: &Intent) -> Result<Item, StoreError> {
    let mut item = key_item(&state_pk(cluster), INTENT_SK);
    let json = serde_json::to_string(intent)
        .map_err(|error| corrupt(INTENT_SK.to_owned())(error.into()))?;
    item.insert("item_type".into(), AttributeValue::S("step_intent".into()));
    item.insert("intent".into(), AttributeValue::S(json));
    Ok(item)
}

pub fn snapshot_sk(point: Timestamp) -> String {
    format!("{SNAPSHOT_PREFIX}{}", point_key(point))
}

/// A snapshot: the head as it was at its point, without what its step wrote. One item:
/// a head too large for one is not kept as a snapshot (a replay then starts further back).
fn snapshot_item(
    cluster: &str,
    checkpoint: &Checkpoint,
    expires: i64,
) -> Result<Option<Item>, StoreError> {
    let Some(point) = checkpoint.point else {
        return Ok(None);
    };
    let sk = snapshot_sk(point);
    let snapshot = Checkpoint {
        written: Default::default(),
        ..checkpoint.clone()
    };
    let packed = pack(&snapshot, &sk)?;
    if packed.len() > CHUNK_BYTES {
        return Ok(None);
    }
    let mut item = key_item(&state_pk(cluster), &sk);
    item.insert("item_type".into(), AttributeValue::S("snapshot".into()));
    item.insert("chunks".into(), AttributeValue::N("1".into()));
    item.insert("state_gz".into(), AttributeValue::B(Blob::new(packed)));
    item.insert(EXPIRES_AT.into(), AttributeValue::N(expires.to_string()));
    Ok(Some(item))
}

/// The snapshot an item holds, unless it expired (time to live deletes late, and a
/// snapshot past the horizon may have lost the versions it needs).
pub fn snapshot_from_item(item: &Item, now_seconds: i64) -> Result<Option<Checkpoint>, StoreError> {
    if expires_at(item).is_some_and(|expires| expires <= now_seconds) {
        return Ok(None);
    }
    let sk = sort_key(item);
    match joined(&[item], &sk)? {
        Some(packed) => unpack(&packed, &sk).map(Some),
        None => Ok(None),
    }
}

fn expires_at(item: &Item) -> Option<i64> {
    item.get(EXPIRES_AT)
        .and_then(|value| value.as_n().ok())
        .and_then(|n| n.parse().ok())
}

pub fn log_prefix(point: Timestamp, step: StepId) -> String {
    format!("{LOG_PREFIX}{}#{:016x}#", point_key(point), step.0)
}

/// The logs among `items` (a `LOG#` range, in sort-key order), each whole.
pub fn logs_from_items(items: &[Item]) -> Result<Vec<StepLog>, StoreError> {
    let mut logs = Vec::new();
    let mut group: Vec<&Item> = Vec::new();
    let flush = |group: &mut Vec<&Item>, logs: &mut Vec<StepLog>| -> Result<(), StoreError> {
        if let Some(first) = group.first() {
            let sk = sort_key(first);
            if let Some(packed) = joined(group, &sk)? {
                logs.push(unpack(&packed, &sk)?);
            }
        }
        group.clear();
        Ok(())
    };
    for item in items {
        let sk = sort_key(item);
        let prefix = sk.rsplit_once('#').map(|(prefix, _)| prefix);
        let same = group
            .first()
            .is_some_and(|first| sort_key(first).rsplit_once('#').map(|(p, _)| p) == prefix);
        if !same {
            flush(&mut group, &mut logs)?;
        }
        group.push(item);
    }
    flush(&mut group, &mut logs)?;
    Ok(logs)
}

/// The key of an object's head (`OBJ#KEY#<handle>`, `OBJ#CERT#<handle>`, `OBJ#LUNA#<id>`).
pub fn object_key(cluster: &str, name: &str) -> Item {
    key_item(
        &state_pk(cluster),
        &format!("{OBJECT_PREFIX}{}", key_part(name)),
    )
}

fn object_body(
    mut item: Item,
    name: &str,
    carry: Option<&ObjectCarry>,
) -> Result<Item, StoreError> {
    item.insert("object_name".into(), AttributeValue::S(name.to_owned()));
    if let Some(carry) = carry {
        let json =
            serde_json::to_string(carry).map_err(|error| corrupt(name.to_owned())(error.into()))?;
        item.insert("object_carry".into(), AttributeValue::S(json));
    }
    Ok(item)
}

pub fn object_item(cluster: &str, name: &str, carry: &ObjectCarry) -> Result<Item, StoreError> {
    let mut item = object_key(cluster, name);
    item.insert("item_type".into(), AttributeValue::S("object_carry".into()));
    object_body(item, name, Some(carry))
}

fn version_item(
    cluster: &str,
    point: Timestamp,
    step: StepId,
    name: &str,
    carry: Option<&ObjectCarry>,
    expires: i64,
) -> Result<Item, StoreError> {
    let sk = format!(
        "{VERSION_PREFIX}{}#{:016x}#{}",
        point_key(point),
        step.0,
        key_part(name)
    );
    let mut item = key_item(&state_pk(cluster), &sk);
    item.insert(
        "item_type".into(),
        AttributeValue::S("object_version".into()),
    );
    item.insert(EXPIRES_AT.into(), AttributeValue::N(expires.to_string()));
    object_body(item, name, carry)
}

/// An object's name and carry from its head or a version (no carry: it had none).
pub fn object_from_item(item: &Item) -> Result<(String, Option<ObjectCarry>), StoreError> {
    let text = |name: &str| item.get(name).and_then(|value| value.as_s().ok());
    let name =
        text("object_name").ok_or_else(|| corrupt(sort_key(item))("no object name".into()))?;
    let carry = text("object_carry")
        .map(|json| serde_json::from_str(json))
        .transpose()
        .map_err(|error| corrupt(sort_key(item))(error.into()))?;
    Ok((name.clone(), carry))
}

/// The heads among object items (an object without a carry has no head).
pub fn heads_from_items(found: &[Item]) -> Result<Vec<(String, ObjectCarry)>, StoreError> {
    let mut heads = Vec::new();
    for item in found {
        if let (name, Some(carry)) = object_from_item(item)? {
            heads.push((name, carry));
        }
    }
    Ok(heads)
}

/// Where a `LOG#` or `OBJV#` key's point is.
pub fn point_of(sk: &str) -> Option<Timestamp> {
    let rest = sk
        .strip_prefix(LOG_PREFIX)
        .or_else(|| sk.strip_prefix(VERSION_PREFIX))
        .or_else(|| sk.strip_prefix(SNAPSHOT_PREFIX))?;
    point_from_key(rest.get(..16)?)
}

/// What a step writes, in the order it must be written: each phase only once the one
/// before it is stored, so that a step cut off anywhere is recognised (its intent) and
/// undone (its log names its views, its versions keep its objects' state before it).
#[derive(Debug, Default)]
pub struct StepPhases {
    /// First, the intent (a step cut off after it is recognised) and the logs.
    pub journal: Vec<Item>,
    /// What the head before named as garbage.
    pub garbage: Vec<Item>,
    pub versions: Vec<Item>,
    pub heads: Vec<Item>,
    pub view_deletes: Vec<Item>,
    pub view_puts: Vec<Item>,
    pub stale: Vec<Item>,
    /// The commit, only while the lease is held.
    pub checkpoint: Vec<Item>,
    pub checkpoint_stale: Vec<Item>,
    pub after_commit: Vec<Item>,
}

pub fn step_phases(cluster: &str, write: &StepWrite<Item>) -> Result<StepPhases, StoreError> {
    let pk = state_pk(cluster);
    let views_pk = cluster_pk(cluster);
    let step = write.intent.step;
    let mut journal = vec![intent_item(cluster, &write.intent)?];
    for log in &write.logs {
        let log_sk = log_prefix(log.point, log.step);
        journal.extend(pieces(
            &pk,
            &log_sk,
            "step_log",
            &pack(log, &log_sk)?,
            Some(write.expires_at),
        ));
    }
    let versions = write
        .versions
        .iter()
        .map(|(point, name, carry)| {
            version_item(
                cluster,
                *point,
                step,
                name,
                carry.as_ref(),
                write.expires_at,
            )
        })
        .collect::<Result<_, _>>()?;
    let heads = write
        .objects
        .iter()
        .map(|(name, carry)| object_item(cluster, name, carry))
        .collect::<Result<_, _>>()?;
    // Stale snapshots go before the commit: a replay after a crash starts at or before
    // this step's start, never at one of them, and finds them again in the old logs.
    // Stale logs and versions go once a later step starts (the head names them): until
    // this step's commit a replay after a crash needs the old chain of versions whole
    // (each object's first version after its start).
    let stale: Vec<Item> = write
        .stale_snapshots
        .iter()
        .map(|point| key_item(&pk, &snapshot_sk(*point)))
        .collect();
    let garbage: Vec<Item> = write.garbage.iter().map(|sk| key_item(&pk, sk)).collect();
    let checkpoint = checkpoint_items(cluster, &write.checkpoint)?;
    let checkpoint_stale =
        checkpoint_piece_keys(cluster, checkpoint.len()..write.checkpoint.stored_pieces);
    let mut after_commit = Vec::new();
    // The head's snapshot keeps its garbage: a head lost and rebuilt from it still
    // knows what not to take for current.
    for snapshot in write.snapshots.iter().chain([&write.checkpoint]) {
        after_commit.extend(snapshot_item(cluster, snapshot, write.expires_at)?);
    }
    Ok(StepPhases {
        journal,
        versions,
        heads,
        view_deletes: write
            .deletes
            .iter()
            .map(|sk| key_item(&views_pk, sk))
            .collect(),
        view_puts: write.puts.clone(),
        stale,
        checkpoint,
        checkpoint_stale,
        after_commit,
        garbage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_keys_sort_as_times_and_read_back() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000_000, i64::MAX];
        let keys: Vec<String> = times.iter().map(|t| point_key(Timestamp(*t))).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for (time, key) in times.iter().zip(&keys) {
            assert_eq!(point_from_key(key), Some(Timestamp(*time)));
            assert_eq!(
                point_of(&format!("{LOG_PREFIX}{key}#00#0000")),
                Some(Timestamp(*time))
            );
        }
    }
}
