//! Who a record names: the actor, the user acted upon, and names for bare user ids.
//!
//! Decisions:
//! - A record carrying any `Target User …` field (the later layout) names the user acted
//!   upon there, and its `User Name`/`User Type` name the actor. Without them (the seed's
//!   layout) a user-management record's `User Name`/`User Type` are the user acted upon,
//!   as the vendor's examples show, and other records name no target.
//! - User ids and names are learned from the trail: `User id` with `User Name` and
//!   `Target User id` with `Target User Name`, on any record. A record's id is named by
//!   every name the trail ties it to at or before the record's time (a user deleted and
//!   another created under its id), sorted and joined with ` or `: the records up to that
//!   time decide, never the order they arrived in — and a view, once settled, never
//!   changes because a later record named an id again (see `crate::incremental`).
//! - Ids compare as numbers where they are numbers (`7`, `0x7`), else as logged.
//! - A target known only by an id the trail never names shows as `id <id>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::records::Rec;
use crate::model::{Opcode, Timestamp};

/// User names by user id, each with the time the trail first ties it to the id. As
/// many as the cluster has users, so a derivation carries it whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNames {
    names: BTreeMap<String, BTreeMap<String, Timestamp>>,
}

impl UserNames {
    #[cfg(test)]
    pub(crate) fn learn(recs: &[Rec<'_>]) -> Self {
        let mut names = Self::default();
        names.take_in(recs);
        names
    }

    /// Learns what `recs` tie together.
    pub(crate) fn take_in<'a>(&mut self, recs: impl IntoIterator<Item = &'a Rec<'a>>) {
        for rec in recs {
            let later = &rec.record.later();
            let pairs = [
                (&later.user_id, &rec.record.user_name),
                (&later.target_user_id, &later.target_user_name),
            ];
            for (id, name) in pairs {
                if let (Some(id), Some(name)) = (id, name) {
                    let first = self
                        .names
                        .entry(id_key(id))
                        .or_default()
                        .entry(name.clone())
                        .or_insert(rec.time());
                    *first = (*first).min(rec.time());
                }
            }
        }
    }

    /// The name(s) the trail ties `id` to at or before `at`.
    pub fn name_of(&self, id: &str, at: Timestamp) -> Option<String> {
        let names: Vec<&str> = self
            .names
            .get(&id_key(id))?
            .iter()
            .filter(|(_, first)| **first <= at)
            .map(|(name, _)| name.as_str())
            .collect();
        (!names.is_empty()).then(|| names.join(" or "))
    }
}

/// An id in the form ids are compared in.
fn id_key(id: &str) -> String {
    let id = id.trim();
    let number = match id.strip_prefix("0x").or_else(|| id.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => id.parse::<u64>().ok(),
    };
    number.map_or_else(|| id.to_owned(), |number| number.to_string())
}

/// The user a record acts on, by the rule in the module documentation.
pub(crate) fn target_user(rec: Rec<'_>, names: &UserNames) -> Option<String> {
    let later = &rec.record.later();
    if later.names_target() {
        return later.target_user_name.clone().or_else(|| {
            let id = later.target_user_id.as_deref()?;
            Some(
                names
                    .name_of(id, rec.time())
                    .unwrap_or_else(|| format!("id {id}")),
            )
        });
    }
    match rec.op() {
        Opcode::CreateUser
        | Opcode::CreateCo
        | Opcode::DeleteUser
        | Opcode::ChangePswd
        | Opcode::CreateApplianceUser => rec.user_name().map(str::to_owned),
        _ => None,
    }
}

/// The type of the user a record acts on: `Target User Type` where the record names a
/// target, else `User Type` (the user acted upon in the seed's layout).
pub(crate) fn target_user_type<'a>(rec: Rec<'a>) -> Option<&'a str> {
    let later = &rec.record.later();
    if later.names_target() {
        return later.target_user_type.as_ref().map(|t| t.name.as_ref());
    }
    rec.user_type_name()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::prepare;
    use crate::testkit::rec;

    #[test]
    fn given_a_target_when_named_then_it_wins_over_user_name_and_else_user_name_stays() {
        let entries = [
            rec("a", 1, 1, 10, Opcode::CreateUser)
                .user("admin", "CN_CRYPTO_OFFICER")
                .target("bob", "CN_CRYPTO_USER", "7")
                .build(),
            rec("a", 1, 2, 20, Opcode::CreateUser)
                .user("carol", "CN_CRYPTO_USER")
                .build(),
        ];
        let recs = prepare(&entries);
        let names = UserNames::learn(&recs);
        assert_eq!(target_user(recs[0], &names).as_deref(), Some("bob"));
        assert_eq!(target_user_type(recs[0]), Some("CN_CRYPTO_USER"));
        assert_eq!(target_user(recs[1], &names).as_deref(), Some("carol"));
        assert_eq!(target_user_type(recs[1]), Some("CN_CRYPTO_USER"));
    }

    #[test]
    fn given_ids_in_the_trail_when_asked_then_names_come_from_any_record_in_any_form() {
        let entries = [
            rec("a", 1, 3, 30, Opcode::DeleteUser)
                .user("admin", "CN_CRYPTO_OFFICER")
                .later(|later| later.target_user_id = Some("0x7".into()))
                .build(),
            rec("a", 1, 1, 10, Opcode::Login)
                .user("bob", "CN_CRYPTO_USER")
                .user_id("7")
                .build(),
            rec("a", 1, 2, 20, Opcode::Login)
                .user("dave", "CN_CRYPTO_USER")
                .user_id("7")
                .build(),
        ];
        let recs = prepare(&entries);
        let names = UserNames::learn(&recs);
        assert_eq!(
            names.name_of("7", Timestamp(30)).as_deref(),
            Some("bob or dave")
        );
        assert_eq!(names.name_of("7", Timestamp(15)).as_deref(), Some("bob"));
        assert_eq!(target_user(recs[2], &names).as_deref(), Some("bob or dave"));
        assert_eq!(names.name_of("8", Timestamp(30)), None);
        assert_eq!(UserNames::default().name_of("7", Timestamp(30)), None);
        assert_eq!(
            target_user(recs[2], &UserNames::default()).as_deref(),
            Some("id 0x7")
        );
    }
}
