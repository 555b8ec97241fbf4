//! Sensitive operations: commands an auditor wants to see individually.
//!
//! Decisions:
//! - Failed attempts are alerted too (an attempt to zeroize or export is itself worth a
//!   look); their detail ends with `failed: <code>: <response>`.
//! - `CN_CHANGE_PSWD` counts only when the user whose password changed is a crypto
//!   officer (`CN_CRYPTO_OFFICER`, `CN_CRYPTO_PRE_OFFICER`): the target's type where the
//!   record names a target (a CO changing a CU's password is routine), else the record's
//!   user type, which is the target's in the seed's layout (see `users`).
//! - The detail names the user acted upon (`users::target_user`), never the actor, who is
//!   the alert's `user`.
//! - `CN_INIT_TOKEN` counts when it initialises an HSM that is not new: it is not
//!   sequence 0 of its stream, or the cluster holds a record with an earlier time on
//!   another HSM, or the same HSM logged an earlier boot. Initialising the first HSM of
//!   a new cluster is routine.

use std::collections::BTreeMap;

use super::records::Rec;
use super::users::{UserNames, target_user, target_user_type};
use super::{Alert, AlertKind};
use crate::model::{Opcode, Timestamp};

fn is_sensitive(rec: Rec<'_>) -> bool {
    match rec.op() {
        Opcode::Zeroize
        | Opcode::DeleteUser
        | Opcode::CreateCo
        | Opcode::SetMValue
        | Opcode::WrapKey
        | Opcode::CloneSourceStage1
        | Opcode::CloneTargetInit
        | Opcode::CloneTargetStage1
        | Opcode::BackupBegin
        | Opcode::BackupEnd
        | Opcode::RestoreBegin
        | Opcode::RestoreEnd => true,
        Opcode::ChangePswd => matches!(
            target_user_type(rec),
            Some("CN_CRYPTO_OFFICER" | "CN_CRYPTO_PRE_OFFICER")
        ),
        _ => false,
    }
}

/// Earliest time and lowest boot per HSM, to tell a re-initialisation from a new HSM:
/// all that the rule needs of the records before the ones it is given.
pub type Earliest = BTreeMap<String, (Timestamp, u32)>;

fn take_in(earliest: &mut Earliest, rec: &Rec<'_>) {
    let entry = earliest
        .entry(rec.hsm.to_owned())
        .or_insert((rec.time(), rec.boot()));
    entry.0 = entry.0.min(rec.time());
    entry.1 = entry.1.min(rec.boot());
}

/// Sensitive-operation alerts of `recs`, and the earliest records as of `settle_before`.
pub(crate) fn derive(
    recs: &[Rec<'_>],
    actors: &[Option<String>],
    names: &UserNames,
    carried: &Earliest,
    settle_before: Timestamp,
) -> (Vec<Alert>, Earliest) {
    let mut earliest = carried.clone();
    let mut settled = carried.clone();
    for rec in recs {
        take_in(&mut earliest, rec);
        if rec.time() < settle_before {
            take_in(&mut settled, rec);
        }
    }
    let reinitialises = |rec: Rec<'_>| {
        rec.seq() != 0
            || earliest.iter().any(|(hsm, &(time, boot))| {
                if hsm == rec.hsm {
                    boot < rec.boot()
                } else {
                    time < rec.time()
                }
            })
    };

    let alerts = recs
        .iter()
        .enumerate()
        .filter(|&(_, &rec)| {
            is_sensitive(rec) || (*rec.op() == Opcode::InitToken && reinitialises(rec))
        })
        .map(|(index, &rec)| {
            let mut detail: Vec<String> = target_user(rec, names).into_iter().collect();
            if !rec.ok() {
                detail.push(format!(
                    "failed: {}: {}",
                    rec.record.response_code, rec.record.response_text
                ));
            }
            rec.alert(
                AlertKind::SensitiveOperation,
                actors.get(index).cloned().flatten(),
                (!detail.is_empty()).then(|| detail.join("; ")),
            )
        })
        .collect();
    (alerts, settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::prepare;
    use crate::model::TrailEntry;
    use crate::testkit::{Builder, rec};

    /// `opcode` run on hsm a, boot 1, by `user` of `user_type`.
    fn by(user: &str, user_type: &str, seq: u64, micros: i64, opcode: Opcode) -> Builder {
        rec("a", 1, seq, micros, opcode).user(user, user_type)
    }

    fn run(entries: &[TrailEntry]) -> Vec<Alert> {
        let recs = prepare(entries);
        let actors = vec![Some("admin".to_owned()); recs.len()];
        derive(
            &recs,
            &actors,
            &UserNames::learn(&recs),
            &Earliest::new(),
            Timestamp(i64::MAX),
        )
        .0
    }

    #[test]
    fn given_password_changes_when_derived_then_only_officers_alert() {
        let alerts = run(&[
            by("admin", "CN_CRYPTO_PRE_OFFICER", 1, 10, Opcode::ChangePswd).build(),
            by("bob", "CN_CRYPTO_USER", 2, 20, Opcode::ChangePswd).build(),
        ]);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].detail.as_deref(), Some("admin"));
        assert_eq!(alerts[0].user.as_deref(), Some("admin"));
    }

    #[test]
    fn given_init_token_on_a_new_hsm_when_derived_then_no_alert() {
        let alerts = run(&[
            rec("a", 1, 0, 10, Opcode::InitToken).build(),
            rec("b", 1, 0, 20, Opcode::InitToken).build(),
        ]);
        assert_eq!(
            alerts.len(),
            1,
            "hsm b is initialised after hsm a already logged"
        );
        assert_eq!(alerts[0].hsm.as_deref(), Some("b"));
    }

    #[test]
    fn given_init_token_later_in_a_stream_or_boot_when_derived_then_it_alerts() {
        let alerts = run(&[
            rec("a", 1, 0, 10, Opcode::FipsRand).build(),
            rec("a", 1, 1, 20, Opcode::InitToken).build(),
            rec("a", 2, 0, 5, Opcode::InitToken).build(),
        ]);
        assert_eq!(alerts.len(), 2);
    }

    #[test]
    fn given_a_failed_wrap_when_derived_then_the_alert_notes_the_failure() {
        let alerts = run(&[rec("a", 1, 1, 10, Opcode::WrapKey)
            .key(7)
            .fail(1, "denied")
            .build()]);
        assert_eq!(alerts[0].detail.as_deref(), Some("failed: 1: denied"));
        assert_eq!(alerts[0].opcode, Some(Opcode::WrapKey));
    }

    #[test]
    fn given_routine_commands_when_derived_then_no_alert() {
        assert!(run(&[rec("a", 1, 0, 10, Opcode::GenerateKey).key(3).build()]).is_empty());
    }

    #[test]
    fn given_an_officer_changing_a_users_password_when_derived_then_the_targets_type_decides() {
        let alerts = run(&[
            by("admin", "CN_CRYPTO_OFFICER", 1, 10, Opcode::ChangePswd)
                .target("bob", "CN_CRYPTO_USER", "7")
                .build(),
            by("bob", "CN_CRYPTO_USER", 2, 20, Opcode::ChangePswd)
                .target("admin", "CN_CRYPTO_OFFICER", "2")
                .build(),
        ]);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].seq, Some(2));
        assert_eq!(alerts[0].detail.as_deref(), Some("admin"));
    }

    #[test]
    fn given_user_management_in_the_later_layout_when_derived_then_details_name_the_target() {
        let alerts = run(&[
            by("admin", "CN_CRYPTO_OFFICER", 1, 10, Opcode::CreateCo)
                .target("carol", "CN_CRYPTO_OFFICER", "8")
                .build(),
            by("admin", "CN_CRYPTO_OFFICER", 2, 20, Opcode::DeleteUser)
                .later(|later| later.target_user_id = Some("8".into()))
                .build(),
            by("admin", "CN_CRYPTO_OFFICER", 3, 30, Opcode::SetMValue).build(),
        ]);
        let details: Vec<_> = alerts.iter().map(|a| a.detail.as_deref()).collect();
        assert_eq!(details, vec![Some("carol"), Some("carol"), None]);
    }
}
