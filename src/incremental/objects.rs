//! The carries of keys, certificates, Luna objects and ended streams, each kept under an
//! item of its own (`OBJ#<object>`) and read only when a batch names the object.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain::{EntityCarries, EntityIds, KeyGeneration, StreamCarry};

/// The carry of one object, as stored under `OBJ#<object>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ObjectCarry {
    Key(crate::domain::KeyCarry),
    Certificate(KeyGeneration),
    Luna(KeyGeneration),
    /// An (hsm, boot) stream a later boot ended: read again only for a late record of it.
    Stream(StreamCarry),
}

impl ObjectCarry {
    /// The object names of every carry the records need.
    pub fn names(ids: &EntityIds) -> Vec<String> {
        ids.keys
            .iter()
            .map(|handle| format!("KEY#{handle}"))
            .chain(
                ids.certificates
                    .iter()
                    .map(|handle| format!("CERT#{handle}")),
            )
            .chain(ids.luna_objects.iter().map(|id| format!("LUNA#{id}")))
            .chain(
                ids.streams
                    .iter()
                    .map(|(hsm, boot)| StreamCarry::object_name(hsm, *boot)),
            )
            .collect()
    }

    /// Assembles the loaded carries (object name → carry) into the domain's form.
    pub fn assemble(loaded: impl IntoIterator<Item = (String, ObjectCarry)>) -> EntityCarries {
        let mut carries = EntityCarries::default();
        for (name, carry) in loaded {
            match carry {
                ObjectCarry::Key(carry) => {
                    if let Some(handle) = name.strip_prefix("KEY#").and_then(|h| h.parse().ok()) {
                        carries.keys.insert(handle, carry);
                    }
                }
                ObjectCarry::Certificate(generation) => {
                    carries.certificates.insert(generation.handle, generation);
                }
                ObjectCarry::Luna(generation) => {
                    if let Some(id) = generation.object_id.clone() {
                        carries.luna_objects.insert(id, generation);
                    }
                }
                ObjectCarry::Stream(stream) => {
                    carries.streams.insert(stream.key(), stream);
                }
            }
        }
        carries
    }

    pub(super) fn split(carries: EntityCarries) -> BTreeMap<String, ObjectCarry> {
        let mut out = BTreeMap::new();
        for (handle, carry) in carries.keys {
            out.insert(format!("KEY#{handle}"), ObjectCarry::Key(carry));
        }
        for (handle, generation) in carries.certificates {
            out.insert(
                format!("CERT#{handle}"),
                ObjectCarry::Certificate(generation),
            );
        }
        for (id, generation) in carries.luna_objects {
            out.insert(format!("LUNA#{id}"), ObjectCarry::Luna(generation));
        }
        for ((hsm, boot), stream) in carries.streams {
            out.insert(
                StreamCarry::object_name(&hsm, boot),
                ObjectCarry::Stream(stream),
            );
        }
        out
    }
}

/// Objects as of a replay's start: their heads, replaced by the first version stored
/// after the start (the state before the first step after it changed them).
pub fn objects_as_of(
    heads: &BTreeMap<String, ObjectCarry>,
    versions_after: &[(String, Option<ObjectCarry>)],
) -> BTreeMap<String, Option<ObjectCarry>> {
    let mut as_of: BTreeMap<String, Option<ObjectCarry>> = heads
        .iter()
        .map(|(name, carry)| (name.clone(), Some(carry.clone())))
        .collect();
    let mut seen = BTreeSet::new();
    for (name, carry) in versions_after {
        if seen.insert(name.clone()) {
            as_of.insert(name.clone(), carry.clone());
        }
    }
    as_of
}

/// What is stored of a step's objects: their heads now, and their state at its start.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub heads: BTreeMap<String, ObjectCarry>,
    pub at_start: BTreeMap<String, Option<ObjectCarry>>,
}

impl Objects {
    pub fn carries(&self) -> EntityCarries {
        ObjectCarry::assemble(
            self.at_start
                .iter()
                .filter_map(|(name, carry)| carry.clone().map(|carry| (name.clone(), carry))),
        )
    }
}
