//! Quorum (M of N, dual control) evidence: token requests, their approvals and deletion,
//! what the requester did while a token lived, and M-value settings.
//!
//! What the records show: `CN_GET_TOKEN`, `CN_APPROVE_TOKEN`, `CN_DELETE_TOKEN` and
//! `CN_SET_M_VALUE` records carry their time, HSM, session handle and response, and (in
//! user-detail log types) a `User Name`/`User Type`. No layout we know of logs a token id,
//! the service a token or an M value is for, or the M value itself.
//!
//! What is inferred (decisions):
//! - A token lives on one HSM, as the vendor's tools request and approve tokens per HSM. A
//!   successful `CN_GET_TOKEN` starts one; it lives until that HSM's next successful
//!   `CN_DELETE_TOKEN` (which deletes every token alive there), the same requester's next
//!   `CN_GET_TOKEN` there, or a reboot. A failed request is listed, ended by `FAILED`.
//! - Records of one HSM are taken in stream order (reboot counter, sequence number).
//! - An approval or deletion belongs to the token requested last among those alive on its
//!   HSM. With none alive, it starts a token whose request is not in the trail
//!   (`requested_by` absent), as a key used before its creation forms generation 0.
//! - A step's user is the record's `User Name`, else the user of the session the record
//!   belongs to; the requester is that of the request.
//! - Activity: commands on the token's HSM attributed to the requester's session while the
//!   token lived (quorum records and time information excepted), the first
//!   [`ACTIVITY_LIMIT`] kept and all counted.
//! - M values: every `CN_SET_M_VALUE` is listed. Its value is read only where a record logs
//!   it, under a key `M value` (any case) that this version keeps in `extra_fields`; a
//!   successful setting below the value of the cluster's previous successful setting that
//!   logged one (in time order) raises a `quorum_lowered` alert. Since no record names the
//!   service, settings for different services compare with each other too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::records::Rec;
use super::{Alert, AlertKind, MValueSetting, QuorumStep, QuorumToken, QuorumView};
use crate::model::{Opcode, Timestamp};

/// Activity entries a token keeps; the rest are only counted, so a token that is never
/// deleted cannot grow its item past DynamoDB's limit.
pub const ACTIVITY_LIMIT: usize = 100;

const REBOOT: &str = "REBOOT";
const FAILED: &str = "FAILED";

fn is_quorum(opcode: &Opcode) -> bool {
    matches!(
        opcode,
        Opcode::GetToken | Opcode::ApproveToken | Opcode::DeleteToken | Opcode::SetMValue
    )
}

/// What later records can still change: each HSM's live tokens and boot, and the last
/// logged M value, as of the settle point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumCarry {
    hsms: BTreeMap<String, HsmTokens>,
    previous_m_value: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct HsmTokens {
    boot: u32,
    live: Vec<QuorumToken>,
}

/// The quorum view of `recs` (prepared: by stream), resumed from `carry`: the carried
/// live tokens (updated) and the new ones, the M-value settings of `recs`; and the carry
/// as of `settle_before`.
pub(crate) fn derive(
    recs: &[Rec<'_>],
    actors: &[Option<String>],
    carry: &QuorumCarry,
    settle_before: Timestamp,
) -> (QuorumView, Vec<Alert>, QuorumCarry) {
    let step = |index: usize| {
        let rec = recs[index];
        QuorumStep {
            time: rec.time(),
            hsm: rec.hsm.to_owned(),
            seq: rec.seq(),
            opcode: rec.op().clone(),
            success: rec.ok(),
            user: rec
                .user_name()
                .map(str::to_owned)
                .or_else(|| actors.get(index).cloned().flatten()),
        }
    };
    let mut tokens: Vec<QuorumToken> = Vec::new();
    let mut settled = QuorumCarry::default();
    let mut carried = carry.hsms.clone();
    // Records of one HSM are contiguous, in its stream order.
    let mut start = 0;
    while start < recs.len() {
        let hsm = recs[start].hsm;
        let end = recs[start..]
            .iter()
            .position(|rec| rec.hsm != hsm)
            .map_or(recs.len(), |offset| start + offset);
        let held = carried.remove(hsm).unwrap_or_default();
        let mut boot = Some(held.boot).filter(|_| !held.live.is_empty());
        let mut live: Vec<usize> = Vec::new();
        for token in held.live {
            live.push(tokens.len());
            tokens.push(token);
        }
        let mut snapshot = None;
        for (index, rec) in recs.iter().enumerate().take(end).skip(start) {
            if snapshot.is_none() && rec.time() >= settle_before {
                snapshot = Some(hsm_tokens(&tokens, &live, boot));
            }
            if boot.is_some_and(|boot| boot != rec.boot()) {
                for token in live.drain(..) {
                    end_token(&mut tokens[token], rec.time(), REBOOT);
                }
            }
            boot = Some(rec.boot());
            apply(&mut tokens, &mut live, index, rec, &step, actors);
        }
        let snapshot = snapshot.unwrap_or_else(|| hsm_tokens(&tokens, &live, boot));
        if !snapshot.live.is_empty() {
            settled.hsms.insert(hsm.to_owned(), snapshot);
        }
        start = end;
    }
    // HSMs without records here keep their live tokens, which are still listed.
    for (hsm, held) in carried {
        tokens.extend(held.live.iter().cloned());
        settled.hsms.insert(hsm, held);
    }
    tokens.sort_by(|a, b| (a.time, &a.hsm, a.seq).cmp(&(b.time, &b.hsm, b.seq)));
    let (m_values, alerts, previous) = m_values(recs, &step, carry.previous_m_value, settle_before);
    settled.previous_m_value = previous;
    (QuorumView { tokens, m_values }, alerts, settled)
}

fn hsm_tokens(tokens: &[QuorumToken], live: &[usize], boot: Option<u32>) -> HsmTokens {
    HsmTokens {
        boot: boot.unwrap_or_default(),
        live: live.iter().map(|&token| tokens[token].clone()).collect(),
    }
}

/// Applies record `index` to the tokens alive on its HSM.
fn apply(
    tokens: &mut Vec<QuorumToken>,
    live: &mut Vec<usize>,
    index: usize,
    rec: &Rec<'_>,
    step: &impl Fn(usize) -> QuorumStep,
    actors: &[Option<String>],
) {
    match rec.op() {
        Opcode::GetToken => {
            let request = step(index);
            if rec.ok() {
                let requester = request.user.clone();
                live.retain(|&token| {
                    let superseded = tokens[token].requested_by == requester;
                    if superseded {
                        end_token(&mut tokens[token], rec.time(), Opcode::GetToken.as_str());
                    }
                    !superseded
                });
                live.push(tokens.len());
                tokens.push(token(rec, requester, request));
            } else {
                let mut failed = token(rec, request.user.clone(), request);
                end_token(&mut failed, rec.time(), FAILED);
                tokens.push(failed);
            }
        }
        Opcode::ApproveToken | Opcode::DeleteToken => {
            let current = match live.last() {
                Some(&current) => current,
                None => {
                    live.push(tokens.len());
                    tokens.push(token(rec, None, step(index)));
                    tokens.len() - 1
                }
            };
            let this = step(index);
            let token = &mut tokens[current];
            if token.steps.last() != Some(&this) {
                token.steps.push(this.clone());
            }
            if *rec.op() == Opcode::ApproveToken {
                if let (true, Some(user)) = (rec.ok(), this.user)
                    && !token.approved_by.contains(&user)
                {
                    token.approved_by.push(user);
                }
            } else if rec.ok() {
                for token in live.drain(..) {
                    end_token(&mut tokens[token], rec.time(), Opcode::DeleteToken.as_str());
                }
            }
        }
        opcode if !is_quorum(opcode) && !rec.is_time_information() => {
            let actor = actors.get(index).cloned().flatten();
            for &token in live.iter() {
                let token = &mut tokens[token];
                if actor.is_some() && token.requested_by == actor {
                    token.activity_count += 1;
                    if token.activity.len() < ACTIVITY_LIMIT {
                        token.activity.push(step(index));
                    }
                }
            }
        }
        _ => {}
    }
}

fn token(rec: &Rec<'_>, requested_by: Option<String>, first: QuorumStep) -> QuorumToken {
    let requested = first.opcode == Opcode::GetToken;
    QuorumToken {
        hsm: rec.hsm.to_owned(),
        reboot_counter: rec.boot(),
        seq: rec.seq(),
        time: rec.time(),
        requested_by: if requested { requested_by } else { None },
        approved_by: Vec::new(),
        end_time: None,
        ended_by: None,
        steps: vec![first],
        activity: Vec::new(),
        activity_count: 0,
    }
}

fn end_token(token: &mut QuorumToken, time: Timestamp, by: &str) {
    if token.ended_by.is_none() {
        token.end_time = Some(time);
        token.ended_by = Some(by.to_owned());
    }
}

/// The M value a record logs, by the rule in the module documentation.
fn logged_m_value(rec: Rec<'_>) -> Option<u64> {
    rec.record
        .later()
        .extra_fields
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("m value"))
        .and_then(|(_, value)| value.trim().parse().ok())
}

fn m_values(
    recs: &[Rec<'_>],
    step: &impl Fn(usize) -> QuorumStep,
    carried: Option<u64>,
    settle_before: Timestamp,
) -> (Vec<MValueSetting>, Vec<Alert>, Option<u64>) {
    let mut order: Vec<usize> = (0..recs.len())
        .filter(|&i| *recs[i].op() == Opcode::SetMValue)
        .collect();
    order.sort_by_key(|&i| recs[i].time_key());
    let mut previous: Option<u64> = carried;
    let mut settled = carried;
    let mut settings = Vec::new();
    let mut alerts = Vec::new();
    for index in order {
        let rec = recs[index];
        let value = logged_m_value(rec);
        let setting = MValueSetting {
            step: step(index),
            value,
            previous,
        };
        if let (true, Some(value), Some(before)) = (rec.ok(), value, previous)
            && value < before
        {
            alerts.push(rec.alert(
                AlertKind::QuorumLowered,
                setting.step.user.clone(),
                Some(format!("M value {before} -> {value}")),
            ));
        }
        if rec.ok() && value.is_some() {
            previous = value;
            if rec.time() < settle_before {
                settled = value;
            }
        }
        settings.push(setting);
    }
    (settings, alerts, settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::prepare;
    use crate::domain::users::UserNames;
    use crate::model::TrailEntry;
    use crate::testkit::{login, rec};

    /// Derives with the real session attribution, so actors are as in production.
    fn run(entries: &[TrailEntry]) -> (QuorumView, Vec<Alert>) {
        let recs = prepare(entries);
        let sessions = crate::domain::sessions::derive(
            &recs,
            &crate::domain::DeriveConfig::default(),
            &UserNames::learn(&recs),
            &crate::domain::sessions::Carry::default(),
            Timestamp(i64::MAX),
            crate::domain::Emit::Changed,
        );
        let (view, alerts, _) = derive(
            &recs,
            &sessions.actors,
            &QuorumCarry::default(),
            Timestamp(i64::MAX),
        );
        (view, alerts)
    }

    fn officer_session() -> Vec<TrailEntry> {
        // Every command in admin's session (handle 0x101).
        let command = |seq, micros, opcode| rec("a", 1, seq, micros, opcode).handle(0x101);
        let approval = |seq, micros, officer| {
            command(seq, micros, Opcode::ApproveToken).user(officer, "CN_CRYPTO_OFFICER")
        };
        vec![
            login("a", 0, 10, 0x100, "admin").build(),
            command(1, 20, Opcode::GetToken).build(),
            approval(2, 30, "carol").build(),
            approval(3, 40, "dave").fail(1, "denied").build(),
            approval(4, 50, "erin").build(),
            command(5, 60, Opcode::CreateUser)
                .user("frank", "CN_CRYPTO_USER")
                .build(),
            command(6, 70, Opcode::DeleteToken).build(),
            command(7, 80, Opcode::FipsRand).build(),
        ]
    }

    #[test]
    fn given_a_token_requested_approved_and_deleted_when_derived_then_one_token_with_its_story() {
        let (view, alerts) = run(&officer_session());
        assert!(alerts.is_empty());
        assert_eq!(view.tokens.len(), 1);
        let token = &view.tokens[0];
        assert_eq!(token.requested_by.as_deref(), Some("admin"));
        assert_eq!(token.approved_by, vec!["carol", "erin"]);
        assert_eq!(token.ended_by.as_deref(), Some("CN_DELETE_TOKEN"));
        assert_eq!(token.end_time.map(|t| t.micros()), Some(70));
        let steps: Vec<(u64, bool)> = token.steps.iter().map(|s| (s.seq, s.success)).collect();
        assert_eq!(
            steps,
            vec![(1, true), (2, true), (3, false), (4, true), (6, true)]
        );
        // The user created while the token lived; the command after its deletion is not.
        let activity: Vec<u64> = token.activity.iter().map(|s| s.seq).collect();
        assert_eq!(activity, vec![5]);
        assert_eq!(token.activity_count, 1);
    }

    #[test]
    fn given_the_same_records_in_any_order_when_derived_then_the_same_view() {
        let mut entries = officer_session();
        let forward = run(&entries);
        entries.reverse();
        assert_eq!(run(&entries), forward);
    }

    #[test]
    fn given_a_new_request_a_reboot_and_a_failed_request_when_derived_then_each_ends_its_way() {
        let (view, _) = run(&[
            login("a", 0, 10, 0x100, "admin").build(),
            rec("a", 1, 1, 20, Opcode::GetToken).handle(0x101).build(),
            rec("a", 1, 2, 30, Opcode::GetToken).handle(0x101).build(),
            rec("a", 1, 3, 35, Opcode::GetToken)
                .handle(0x101)
                .fail(1, "denied")
                .build(),
            rec("a", 2, 0, 40, Opcode::FipsRand).build(),
        ]);
        let ends: Vec<(u64, Option<&str>)> = view
            .tokens
            .iter()
            .map(|t| (t.seq, t.ended_by.as_deref()))
            .collect();
        assert_eq!(
            ends,
            vec![
                (1, Some("CN_GET_TOKEN")),
                (2, Some("REBOOT")),
                (3, Some("FAILED"))
            ]
        );
    }

    #[test]
    fn given_an_approval_without_a_request_when_derived_then_a_token_of_unknown_request() {
        let (view, _) = run(&[rec("a", 1, 5, 20, Opcode::ApproveToken)
            .user("carol", "CN_CRYPTO_OFFICER")
            .build()]);
        assert_eq!(view.tokens.len(), 1);
        assert_eq!(view.tokens[0].requested_by, None);
        assert_eq!(view.tokens[0].approved_by, vec!["carol"]);
        assert_eq!(view.tokens[0].ended_by, None);
    }

    #[test]
    fn given_m_values_when_derived_then_only_a_logged_decrease_alerts() {
        let set = |seq: u64, micros: i64, value: Option<&str>| {
            rec("a", 1, seq, micros, Opcode::SetMValue)
                .user("admin", "CN_CRYPTO_OFFICER")
                .later(|later| {
                    if let Some(value) = value {
                        later.extra_fields.insert("M Value".into(), value.into());
                    }
                })
        };
        let (view, alerts) = run(&[
            set(1, 10, Some("3")).build(),
            set(2, 20, None).build(),
            set(3, 30, Some("1")).fail(1, "denied").build(),
            set(4, 40, Some("2")).build(),
            set(5, 50, Some("4")).build(),
        ]);
        let values: Vec<(Option<u64>, Option<u64>)> = view
            .m_values
            .iter()
            .map(|m| (m.value, m.previous))
            .collect();
        assert_eq!(
            values,
            vec![
                (Some(3), None),
                (None, Some(3)),
                (Some(1), Some(3)),
                (Some(2), Some(3)),
                (Some(4), Some(2)),
            ]
        );
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].kind, AlertKind::QuorumLowered);
        assert_eq!(alerts[0].seq, Some(4));
        assert_eq!(alerts[0].detail.as_deref(), Some("M value 3 -> 2"));
        assert_eq!(alerts[0].user.as_deref(), Some("admin"));
    }
}
