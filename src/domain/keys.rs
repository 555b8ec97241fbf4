//! Key lifecycles: per handle, the generations from creation to destruction.
//!
//! Decisions:
//! - A handle's records across the cluster are taken in time order (ties by hsm, boot,
//!   seq); every record naming a non-zero handle is an event of that handle.
//! - Every successful creation starts a new generation, numbered 1, 2, … . Events seen
//!   before any creation form generation 0, kind `unknown`. Events after a generation
//!   ended (destroyed or tombstoned) and before the next creation stay in the ended
//!   generation and change nothing.
//! - Replication may be logged before the creation it copies: a successful insert
//!   while the handle has no live generation is held for the next successful creation
//!   of that handle if one follows within the mirror window, and becomes part of it.
//! - Failed records are events with `success = false` and change no state.
//! - A successful `CN_SHARE_OBJECT` that logs its `Operation` (`SHARE`/`UNSHARE`) and
//!   `UserIDs` adds one `shared_with` entry per user id to the live generation, named from
//!   the trail's id ↔ name map (`users`) where it can be. Each HSM's record of a share is
//!   its own entry, as each HSM's record of any command is its own event. A share record
//!   without those fields (the seed's layout) is an event only.
//!
//! Incremental use ([`KeyCarry`]): a handle's lifecycle resumes from its last generation
//! (without its events) and the inserts held for a creation not yet seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::records::Rec;
use super::users::UserNames;
use super::{KeyEvent, KeyGeneration, KeyShare, KeyState};
use crate::model::{Opcode, Timestamp};

/// Where a handle's lifecycle stands: its last generation (events left out) and the
/// replications held for the creation they copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCarry {
    pub last: Option<KeyGeneration>,
    pub held: Vec<KeyEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Create {
        kind: &'static str,
        pair: Option<u64>,
    },
    Destroy,
    Tombstone,
    Export,
    Extract,
    Insert,
    Share,
    Use,
}

/// What a record does to each handle it names.
fn roles(rec: Rec<'_>) -> Vec<(u64, Role)> {
    let handles = rec.key_handles();
    let private = rec.record.key_handle.filter(|&h| h != 0);
    let public = rec.record.public_key_handle.filter(|&h| h != 0);
    handles
        .into_iter()
        .map(|handle| {
            let is_private = Some(handle) == private;
            let role = match rec.op() {
                Opcode::GenerateKeyPair if is_private => Role::Create {
                    kind: "private",
                    pair: public,
                },
                Opcode::GenerateKeyPair => Role::Create {
                    kind: "public",
                    pair: private,
                },
                Opcode::GenerateKey | Opcode::UnwrapKey | Opcode::DeriveKey if is_private => {
                    Role::Create {
                        kind: "secret",
                        pair: None,
                    }
                }
                Opcode::CreateObject if is_private => Role::Create {
                    kind: "object",
                    pair: None,
                },
                Opcode::DestroyObject => Role::Destroy,
                Opcode::TombstoneObject => Role::Tombstone,
                Opcode::WrapKey if is_private => Role::Export,
                Opcode::ExtractMaskedObjectUser => Role::Extract,
                Opcode::InsertMaskedObjectUser => Role::Insert,
                Opcode::ShareObject if rec.record.later().share_operation.is_some() => Role::Share,
                _ => Role::Use,
            };
            (handle, role)
        })
        .collect()
}

/// Lifecycles of the handles `recs` name, each resumed from its carry, and each
/// handle's carry as of `settle_before`.
pub(crate) fn derive(
    recs: &[Rec<'_>],
    actors: &[Option<String>],
    names: &UserNames,
    mirror_window_micros: i64,
    carries: &BTreeMap<u64, KeyCarry>,
    settle_before: Timestamp,
) -> (Vec<KeyGeneration>, BTreeMap<u64, KeyCarry>) {
    let mut touches: BTreeMap<u64, Vec<(usize, Role)>> = BTreeMap::new();
    for (index, rec) in recs.iter().enumerate() {
        for (handle, role) in roles(*rec) {
            touches.entry(handle).or_default().push((index, role));
        }
    }
    let mut keys = Vec::new();
    let mut settled = BTreeMap::new();
    for (handle, mut list) in touches {
        list.sort_by_key(|&(index, _)| recs[index].time_key());
        let carry = carries.get(&handle).cloned().unwrap_or_default();
        let context = Context {
            recs,
            actors,
            names,
            window: mirror_window_micros,
        };
        let (generations, carry) = lifecycle(handle, &list, &context, carry, settle_before);
        keys.extend(generations);
        settled.insert(handle, carry);
    }
    (keys, settled)
}

/// What every lifecycle reads besides its own touches.
struct Context<'r, 'a> {
    recs: &'r [Rec<'a>],
    actors: &'r [Option<String>],
    names: &'r UserNames,
    window: i64,
}

fn lifecycle(
    handle: u64,
    touches: &[(usize, Role)],
    context: &Context<'_, '_>,
    carry: KeyCarry,
    settle_before: Timestamp,
) -> (Vec<KeyGeneration>, KeyCarry) {
    let Context {
        recs,
        actors,
        names,
        window,
    } = *context;
    let mut generations: Vec<KeyGeneration> = carry.last.into_iter().collect();
    let mut held: Vec<KeyEvent> = carry.held;
    let mut settled = None;
    let event = |index: usize| {
        let rec = recs[index];
        KeyEvent {
            time: rec.time(),
            hsm: rec.hsm.to_owned(),
            seq: Some(rec.seq()),
            reboot_counter: Some(rec.boot()),
            opcode: rec.op().clone(),
            success: rec.ok(),
            response_code: Some(rec.record.response_code),
            response: None,
            user: actors.get(index).cloned().flatten(),
            attributes: None,
            log_event_id: None,
        }
    };
    let snapshot = |generations: &[KeyGeneration], held: &[KeyEvent]| KeyCarry {
        last: generations.last().map(|last| KeyGeneration {
            events: Vec::new(),
            ..last.clone()
        }),
        held: held.to_vec(),
    };
    for (position, &(index, role)) in touches.iter().enumerate() {
        let rec = recs[index];
        if settled.is_none() && rec.time() >= settle_before {
            settled = Some(snapshot(&generations, &held));
        }
        let live = generations
            .last()
            .is_some_and(|g| g.state == KeyState::Active);
        match role {
            Role::Create { kind, pair } if rec.ok() => {
                let number = generations.last().map_or(1, |g| g.generation + 1);
                let mut hsms = vec![rec.hsm.to_owned()];
                let mut events: Vec<KeyEvent> = Vec::new();
                for held_event in held.drain(..) {
                    hsms.push(held_event.hsm.clone());
                    events.push(held_event);
                }
                events.push(event(index));
                generations.push(KeyGeneration {
                    handle,
                    object_id: None,
                    generation: number,
                    state: KeyState::Active,
                    kind: kind.to_owned(),
                    pair_handle: pair,
                    created_time: Some(rec.time()),
                    created_by: actors.get(index).cloned().flatten(),
                    created_opcode: Some(rec.op().clone()),
                    hsms,
                    exported: false,
                    events,
                    shared_with: Vec::new(),
                });
            }
            Role::Insert
                if rec.ok()
                    && !live
                    && creation_follows(&touches[position + 1..], recs, rec, window) =>
            {
                held.push(event(index));
            }
            _ => {
                if generations.is_empty() {
                    generations.push(unknown_generation(handle));
                }
                let Some(current) = generations.last_mut() else {
                    continue;
                };
                current.events.push(event(index));
                if !rec.ok() || current.state != KeyState::Active {
                    continue;
                }
                match role {
                    Role::Destroy => current.state = KeyState::Destroyed,
                    Role::Tombstone => current.state = KeyState::Tombstoned,
                    Role::Export => current.exported = true,
                    Role::Extract | Role::Insert => current.hsms.push(rec.hsm.to_owned()),
                    Role::Share => current.shared_with.extend(shares(
                        rec,
                        actors.get(index).cloned().flatten(),
                        names,
                    )),
                    Role::Create { .. } | Role::Use => {}
                }
            }
        }
        if let Some(current) = generations.last_mut() {
            current.hsms.sort();
            current.hsms.dedup();
        }
    }
    let settled = settled.unwrap_or_else(|| snapshot(&generations, &held));
    (generations, settled)
}

fn creation_follows(
    later: &[(usize, Role)],
    recs: &[Rec<'_>],
    insert: Rec<'_>,
    window: i64,
) -> bool {
    later
        .iter()
        .take_while(|&&(index, _)| {
            recs[index]
                .time()
                .micros()
                .saturating_sub(insert.time().micros())
                <= window
        })
        .any(|&(index, role)| matches!(role, Role::Create { .. }) && recs[index].ok())
}

/// The `shared_with` entries of a share record: one per user id it names.
fn shares(rec: Rec<'_>, by: Option<String>, names: &UserNames) -> Vec<KeyShare> {
    let later = &rec.record.later();
    let operation = later
        .share_operation
        .as_ref()
        .map_or_else(String::new, |label| label.name.to_string());
    later
        .share_user_ids
        .iter()
        .map(|id| KeyShare {
            time: rec.time(),
            hsm: rec.hsm.to_owned(),
            seq: rec.seq(),
            operation: operation.clone(),
            user_id: id.clone(),
            user_name: names.name_of(id, rec.time()),
            by: by.clone(),
        })
        .collect()
}

fn unknown_generation(handle: u64) -> KeyGeneration {
    KeyGeneration::blank(handle, None, 0, "unknown")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::prepare;
    use crate::model::{TrailEntry, shared_name};
    use crate::testkit::rec;

    const WINDOW: i64 = 5_000_000;

    fn run(entries: &[TrailEntry]) -> Vec<KeyGeneration> {
        let recs = prepare(entries);
        let actors = vec![Some("crypto_user".to_owned()); recs.len()];
        derive(
            &recs,
            &actors,
            &UserNames::learn(&recs),
            WINDOW,
            &BTreeMap::new(),
            Timestamp(i64::MAX),
        )
        .0
    }

    #[test]
    fn given_a_pair_generated_and_both_destroyed_when_derived_then_two_linked_destroyed_keys() {
        let keys = run(&[
            rec("a", 1, 1, 10, Opcode::GenerateKeyPair)
                .key(131079)
                .public(131078)
                .build(),
            rec("a", 1, 2, 20, Opcode::DestroyObject)
                .key(131078)
                .build(),
            rec("a", 1, 3, 30, Opcode::DestroyObject)
                .key(131079)
                .build(),
        ]);
        assert_eq!(keys.len(), 2);
        let (public, private) = (&keys[0], &keys[1]);
        assert_eq!((public.handle, public.kind.as_str()), (131078, "public"));
        assert_eq!((private.handle, private.kind.as_str()), (131079, "private"));
        assert_eq!(public.pair_handle, Some(131079));
        assert_eq!(private.pair_handle, Some(131078));
        assert!(
            keys.iter()
                .all(|k| k.state == KeyState::Destroyed && k.generation == 1)
        );
        assert_eq!(private.created_by.as_deref(), Some("crypto_user"));
    }

    #[test]
    fn given_a_handle_created_again_after_destruction_when_derived_then_generation_two() {
        let keys = run(&[
            rec("a", 1, 1, 10, Opcode::GenerateKey).key(7).build(),
            rec("a", 1, 2, 20, Opcode::DestroyObject).key(7).build(),
            rec("a", 1, 3, 30, Opcode::CreateObject).key(7).build(),
        ]);
        let summary: Vec<_> = keys
            .iter()
            .map(|k| (k.generation, k.state, k.kind.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, KeyState::Destroyed, "secret"),
                (2, KeyState::Active, "object")
            ]
        );
    }

    #[test]
    fn given_use_before_any_creation_when_derived_then_generation_zero_of_unknown_kind() {
        let keys = run(&[
            rec("a", 1, 1, 10, Opcode::NistAesWrap).key(6).build(),
            rec("a", 1, 2, 20, Opcode::UnwrapKey).key(6).build(),
        ]);
        assert_eq!(keys.len(), 2);
        assert_eq!((keys[0].generation, keys[0].kind.as_str()), (0, "unknown"));
        assert_eq!(keys[0].state, KeyState::Active);
        assert_eq!(keys[0].created_time, None);
        assert_eq!((keys[1].generation, keys[1].kind.as_str()), (1, "secret"));
    }

    #[test]
    fn given_an_insert_just_before_the_creation_when_derived_then_it_belongs_to_the_new_generation()
    {
        let keys = run(&[
            rec("b", 1, 1, 1_000, Opcode::InsertMaskedObjectUser)
                .key(11)
                .build(),
            rec("a", 1, 1, 1_500, Opcode::UnwrapKey).key(11).build(),
        ]);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].generation, 1);
        assert_eq!(keys[0].hsms, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(keys[0].events.len(), 2);
    }

    #[test]
    fn given_an_insert_long_before_the_creation_when_derived_then_it_stays_in_generation_zero() {
        let keys = run(&[
            rec("b", 1, 1, 1_000, Opcode::InsertMaskedObjectUser)
                .key(11)
                .build(),
            rec("a", 1, 1, 1_000 + WINDOW + 1, Opcode::UnwrapKey)
                .key(11)
                .build(),
        ]);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].hsms, vec!["b".to_owned()]);
        assert_eq!(keys[1].hsms, vec!["a".to_owned()]);
    }

    #[test]
    fn given_failed_commands_when_derived_then_they_are_events_that_change_nothing() {
        let keys = run(&[
            rec("a", 1, 1, 10, Opcode::GenerateKey).key(7).build(),
            rec("a", 1, 2, 20, Opcode::WrapKey)
                .key(7)
                .fail(1, "denied")
                .build(),
            rec("a", 1, 3, 30, Opcode::DestroyObject)
                .key(7)
                .fail(1, "denied")
                .build(),
        ]);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].state, KeyState::Active);
        assert!(!keys[0].exported);
        assert_eq!(keys[0].events.iter().filter(|e| !e.success).count(), 2);
    }

    #[test]
    fn given_a_wrap_and_replication_when_derived_then_exported_and_held_on_both_hsms() {
        let keys = run(&[
            rec("a", 1, 1, 10, Opcode::GenerateKey).key(7).build(),
            rec("a", 1, 2, 20, Opcode::ExtractMaskedObjectUser)
                .key(7)
                .build(),
            rec("b", 1, 1, 30, Opcode::InsertMaskedObjectUser)
                .key(7)
                .build(),
            rec("a", 1, 3, 40, Opcode::WrapKey).key(7).build(),
            rec("a", 1, 4, 50, Opcode::TombstoneObject).key(7).build(),
        ]);
        assert!(keys[0].exported);
        assert_eq!(keys[0].state, KeyState::Tombstoned);
        assert_eq!(keys[0].hsms, vec!["a".to_owned(), "b".to_owned()]);
    }

    #[test]
    fn given_a_share_without_handles_when_derived_then_no_key_is_touched() {
        assert!(run(&[rec("a", 1, 1, 10, Opcode::ShareObject).build()]).is_empty());
    }

    #[test]
    fn given_a_key_shared_and_unshared_when_derived_then_its_lifecycle_names_who_and_when() {
        let share = |seq: u64, micros: i64, operation: &str, ids: &[&str]| {
            rec("a", 1, seq, micros, Opcode::ShareObject)
                .key(5)
                .later(|later| {
                    later.share_operation = Some(crate::model::Labeled {
                        name: shared_name(operation),
                        code: None,
                    });
                    later.share_user_ids = ids.iter().map(|id| (*id).to_owned()).collect();
                })
        };
        let keys = run(&[
            rec("a", 1, 1, 10, Opcode::Login)
                .user("carol", "CN_CRYPTO_USER")
                .user_id("9")
                .build(),
            rec("a", 1, 2, 20, Opcode::GenerateKey).key(5).build(),
            share(3, 30, "SHARE", &["9", "10"]).build(),
            share(4, 40, "UNSHARE", &["10"]).build(),
            share(5, 50, "SHARE", &["11"]).build(),
            rec("a", 1, 6, 60, Opcode::ShareObject).key(5).build(),
        ]);
        let with_failed = run(&[
            rec("a", 1, 2, 20, Opcode::GenerateKey).key(5).build(),
            share(7, 70, "SHARE", &["12"]).fail(1, "denied").build(),
        ]);
        assert!(with_failed[0].shared_with.is_empty());
        let shares: Vec<(i64, &str, &str, Option<&str>)> = keys[0]
            .shared_with
            .iter()
            .map(|s| {
                (
                    s.time.micros(),
                    s.operation.as_str(),
                    s.user_id.as_str(),
                    s.user_name.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            shares,
            vec![
                (30, "SHARE", "9", Some("carol")),
                (30, "SHARE", "10", None),
                (40, "UNSHARE", "10", None),
                (50, "SHARE", "11", None),
            ]
        );
        assert_eq!(
            keys[0].events.len(),
            5,
            "a share without Operation is an event"
        );
        assert_eq!(keys[0].shared_with[0].by.as_deref(), Some("crypto_user"));
    }

    #[test]
    fn given_a_derived_key_tombstoned_and_its_handle_reused_when_derived_then_two_generations() {
        let keys = run(&[
            rec("a", 1, 1, 10, Opcode::DeriveKey).key(9).build(),
            rec("a", 1, 2, 20, Opcode::TombstoneObject).key(9).build(),
            rec("a", 1, 3, 30, Opcode::GenerateKey).key(9).build(),
            rec("a", 1, 4, 40, Opcode::DestroyObject).key(9).build(),
        ]);
        let summary: Vec<_> = keys
            .iter()
            .map(|k| {
                (
                    k.generation,
                    k.state,
                    k.kind.as_str(),
                    k.created_opcode.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, KeyState::Tombstoned, "secret", Some(Opcode::DeriveKey)),
                (2, KeyState::Destroyed, "secret", Some(Opcode::GenerateKey)),
            ]
        );
    }
}
