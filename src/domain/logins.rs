//! Failed logins and brute-force detection.
//!
//! Brute-force rule: a user's failed logins across the cluster, sorted by
//! (time, hsm, boot, seq), split into bursts wherever two consecutive failures are more
//! than the window apart. A failure is flagged `brute_force` when it lies in some run
//! of `threshold` consecutive failures spanning at most the window (equivalently: some
//! window of that length holds at least `threshold` failures including it). Each burst
//! that has such a run raises one alert, at the failure where the threshold is first
//! reached, naming that failure's HSM, with the burst's total count as detail. Failures
//! with no user name count under the empty name. The rule is vendor-neutral
//! ([`flag_brute_force`]): Luna's failed `LUNA_LOGIN`s go through the same code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::records::Rec;
use super::{Alert, AlertKind, DeriveConfig, FailedLogin};
use crate::model::{Opcode, Timestamp};

/// Human wording for the response codes a failed login usually carries.
fn response_text(code: u32, logged: &str) -> String {
    match code {
        157 => "unknown user".to_owned(),
        163 => "wrong password".to_owned(),
        _ => logged.to_owned(),
    }
}

/// Failed logins of CloudHSM records alone, flagged (what the unit tests exercise).
#[cfg(test)]
pub(crate) fn derive(recs: &[Rec<'_>], config: &DeriveConfig) -> (Vec<FailedLogin>, Vec<Alert>) {
    let flagged = flag_brute_force(
        failures(recs),
        config,
        &Carry::default(),
        Timestamp(i64::MAX),
    );
    (flagged.logins, flagged.alerts)
}

/// Every failed `CN_LOGIN`, not yet flagged.
pub(crate) fn failures(recs: &[Rec<'_>]) -> Vec<FailedLogin> {
    recs.iter()
        .filter(|rec| rec.record.is_failed_login())
        .map(|rec| FailedLogin {
            time: rec.time(),
            hsm: rec.hsm.to_owned(),
            seq: rec.seq(),
            reboot_counter: rec.boot(),
            user: rec.user_name().unwrap_or("").to_owned(),
            user_type: rec.user_type_name().map(str::to_owned),
            response_code: rec.record.response_code,
            response: response_text(rec.record.response_code, &rec.record.response_text),
            hsm_response: rec.record.response_text.to_string(),
            brute_force: false,
            opcode: None,
            log_event_id: None,
        })
        .collect()
}

/// What the brute-force rule needs of the past, per user whose last failure is within
/// the window: the burst still open — how many of its failures are not kept, its alert
/// if the threshold was reached — and its last failures, as many as can still join a
/// run with a later one (`threshold - 1`, since a run is that many consecutive failures).
/// Its size is set by the users failing now, not by the rate or the window's length.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carry {
    recent: Vec<FailedLogin>,
    bursts: BTreeMap<String, BurstCarry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct BurstCarry {
    earlier: usize,
    alert: Option<Alert>,
}

pub(crate) struct Flagged {
    /// The new failed logins, and the carried ones whose flag this run turned on,
    /// flagged.
    pub logins: Vec<FailedLogin>,
    /// One per burst among them that reached the threshold.
    pub alerts: Vec<Alert>,
    /// Alerts (user, time) of bursts that may still grow after `settle_before`.
    pub open_bursts: Vec<(String, Timestamp)>,
    pub carry: Carry,
}

fn login_order(a: &FailedLogin, b: &FailedLogin) -> std::cmp::Ordering {
    (a.time, &a.hsm, a.reboot_counter, a.seq, &a.log_event_id).cmp(&(
        b.time,
        &b.hsm,
        b.reboot_counter,
        b.seq,
        &b.log_event_id,
    ))
}

/// Applies the brute-force rule to failed logins of any vendor, after the carried ones:
/// sorts them by (time, hsm, boot, seq, log event id), sets their `brute_force` flags and
/// returns one alert per burst, and the carry as of `settle_before`.
///
/// A flag only ever turns on as failures are added (a window holding `threshold` of them
/// still does with more), so a carried failure is written again only when it does.
pub(crate) fn flag_brute_force(
    new: Vec<FailedLogin>,
    config: &DeriveConfig,
    carry: &Carry,
    settle_before: Timestamp,
) -> Flagged {
    let mut logins: Vec<(FailedLogin, bool)> = carry
        .recent
        .iter()
        .cloned()
        .map(|login| (login, true))
        .chain(new.into_iter().map(|login| (login, false)))
        .collect();
    logins.sort_by(|(a, _), (b, _)| login_order(a, b));
    // One record, one failed login, whichever run delivered it.
    logins.dedup_by(|(a, _), (b, _)| login_order(a, b).is_eq());
    let mut by_user: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, (login, _)) in logins.iter().enumerate() {
        by_user.entry(login.user.clone()).or_default().push(index);
    }
    let threshold = config.brute_force_threshold.max(1);
    let window = config.brute_force_window_micros;
    let settle = settle_before.micros();
    let mut alerts = Vec::new();
    let mut open_bursts = Vec::new();
    let mut bursts = BTreeMap::new();
    let mut kept = Vec::new();
    // A carried flag stays on: the run that set it may have begun before the window.
    let mut flags: Vec<bool> = logins.iter().map(|(login, _)| login.brute_force).collect();
    for (user, indices) in &by_user {
        let times: Vec<i64> = indices.iter().map(|&i| logins[i].0.time.micros()).collect();
        let span = |from: usize, to: usize| times[to].saturating_sub(times[from]);
        let carried = carry.bursts.get(user);
        let mut burst_start = 0;
        while burst_start < indices.len() {
            let mut burst_end = burst_start;
            while burst_end + 1 < indices.len() && span(burst_end, burst_end + 1) <= window {
                burst_end += 1;
            }
            // The carried failures of a user, first in its list, end its open burst.
            let continued = if burst_start == 0 { carried } else { None };
            let mut reached = None;
            for last in (burst_start + threshold - 1)..=burst_end {
                let first = last + 1 - threshold;
                if span(first, last) <= window {
                    reached.get_or_insert(last);
                    for &flagged in &indices[first..=last] {
                        flags[flagged] = true;
                    }
                }
            }
            let earlier = continued.map_or(0, |burst| burst.earlier);
            let count = earlier + burst_end + 1 - burst_start;
            let alert = match (continued.and_then(|burst| burst.alert.clone()), reached) {
                (Some(alert), _) => Some(alert),
                (None, Some(last)) => Some(burst_alert(&logins[indices[last]].0)),
                (None, None) => None,
            };
            if let Some(mut alert) = alert.clone() {
                alert.detail = Some(count.to_string());
                alerts.push(alert);
            }
            let last_time = times[burst_end];
            let open = last_time.saturating_add(window) >= settle;
            if let (true, Some(alert)) = (open, &alert) {
                open_bursts.push((user.clone(), alert.time));
            }
            // The burst as of the settle point, when a later failure can still join it:
            // the failures a later run can include (within the window, the last
            // `threshold - 1`; at least the last, which a later burst is split after),
            // and how many of it are not kept.
            let settled: Vec<usize> = (burst_start..=burst_end)
                .filter(|&i| times[i] < settle)
                .collect();
            if let Some(&settled_last) = settled.last()
                && times[settled_last].saturating_add(window) >= settle
            {
                let joinable: Vec<usize> = settled
                    .iter()
                    .copied()
                    .filter(|&i| times[i] >= settle.saturating_sub(window))
                    .collect();
                let keep = &joinable[joinable.len().saturating_sub((threshold - 1).max(1))..];
                kept.extend(keep.iter().map(|&i| indices[i]));
                // A threshold reached at a settled failure stays reached: the run
                // that reached it may begin before the next run's window.
                let reached_early = alert.as_ref().filter(|alert| alert.time < settle_before);
                bursts.insert(
                    user.clone(),
                    BurstCarry {
                        earlier: earlier + settled.len() - keep.len(),
                        alert: reached_early.cloned(),
                    },
                );
            }
            burst_start = burst_end + 1;
        }
    }
    kept.sort_unstable();
    let recent = kept
        .iter()
        .map(|&index| {
            let mut login = logins[index].0.clone();
            login.brute_force = flags[index];
            login
        })
        .collect();
    let logins = logins
        .into_iter()
        .zip(flags)
        .filter(|((login, carried), flag)| !carried || *flag != login.brute_force)
        .map(|((mut login, _), flag)| {
            login.brute_force = flag;
            login
        })
        .collect();
    Flagged {
        logins,
        alerts,
        open_bursts,
        carry: Carry { recent, bursts },
    }
}

fn burst_alert(at: &FailedLogin) -> Alert {
    // Records without a sequence number (Luna) have no boot or position.
    let sequenced = at.log_event_id.is_none();
    Alert {
        kind: AlertKind::BruteForce,
        time: at.time,
        hsm: Some(at.hsm.clone()),
        reboot_counter: sequenced.then_some(at.reboot_counter),
        from: None,
        to: None,
        seq: sequenced.then_some(at.seq),
        user: Some(at.user.clone()),
        opcode: Some(at.opcode.clone().unwrap_or(Opcode::Login)),
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::prepare;
    use crate::model::TrailEntry;
    use crate::testkit::login;

    const MINUTE: i64 = 60_000_000;

    fn failures(user: &str, times: &[i64]) -> Vec<TrailEntry> {
        times
            .iter()
            .enumerate()
            .map(|(seq, &t)| {
                login("a", seq as u64, t, 0x100, user)
                    .fail(163, "HSM Error: RET_USER_LOGIN_FAILURE")
                    .build()
            })
            .collect()
    }

    fn run(entries: &[TrailEntry]) -> (Vec<FailedLogin>, Vec<Alert>) {
        derive(&prepare(entries), &DeriveConfig::default())
    }

    /// Folds the failures `pieces` at a time, each piece settled after its last, and
    /// keeps the newest flags and alerts any fold wrote: what the stored views hold.
    fn fold_in_pieces(failed: &[FailedLogin], pieces: usize) -> Stored {
        let config = DeriveConfig::default();
        let mut carry = Carry::default();
        let mut stored = Stored::default();
        for piece in failed.chunks(pieces) {
            let settle = Timestamp(piece.last().map_or(0, |login| login.time.micros()) + 1);
            let flagged = flag_brute_force(piece.to_vec(), &config, &carry, settle);
            for login in flagged.logins {
                let key = format!("{}/{}", login.hsm, login.seq);
                stored.flags.insert(key, login.brute_force);
            }
            for alert in flagged.alerts {
                let key = (alert.user.clone().unwrap_or_default(), alert.time.micros());
                stored.alerts.insert(key, alert.detail.unwrap_or_default());
            }
            carry = flagged.carry;
            stored.most_carried = stored.most_carried.max(carry.recent.len());
        }
        stored
    }

    #[derive(Default)]
    struct Stored {
        flags: BTreeMap<String, bool>,
        /// (user, time) → the burst's count.
        alerts: BTreeMap<(String, i64), String>,
        most_carried: usize,
    }

    #[test]
    fn given_failures_folded_a_few_at_a_time_then_views_equal_one_fold_and_the_carry_holds_threshold_minus_one_per_user()
     {
        let users = ["eve", "mallory", "trent"];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut time = 0;
        let entries: Vec<TrailEntry> = (0..600)
            .map(|seq| {
                // Dense stretches (bursts) and quiet ones (bursts that end).
                time += if rng.u8(..10) == 0 {
                    7 * MINUTE
                } else {
                    rng.i64(1..40) * 1_000_000
                };
                login("a", seq, time, 0x1, users[rng.usize(..users.len())])
                    .fail(163, "HSM Error: RET_USER_LOGIN_FAILURE")
                    .build()
            })
            .collect();
        let failed = super::failures(&prepare(&entries));
        let at_once = fold_in_pieces(&failed, failed.len());
        let flags = || at_once.flags.values();
        assert!(flags().any(|&flag| flag) && flags().any(|&flag| !flag));
        for pieces in [1, 3, 17, 100] {
            let stored = fold_in_pieces(&failed, pieces);
            assert_eq!(
                stored.flags, at_once.flags,
                "flags folding {pieces} at a time"
            );
            assert_eq!(
                stored.alerts, at_once.alerts,
                "alerts folding {pieces} at a time"
            );
            let most_carried = stored.most_carried;
            let threshold = DeriveConfig::default().brute_force_threshold;
            assert!(
                most_carried <= users.len() * (threshold - 1),
                "{most_carried} failures carried folding {pieces} at a time"
            );
        }
    }

    #[test]
    fn given_unknown_user_and_wrong_password_when_derived_then_readable_responses() {
        let entries = vec![
            login("a", 4, 10, 0xc008002, "ExampleUser")
                .fail(157, "HSM Error: user isn't initialized")
                .build(),
            login("a", 5, 20, 0xc008002, "testuser")
                .fail(163, "HSM Error: RET_USER_LOGIN_FAILURE")
                .build(),
            login("a", 6, 30, 0xc008002, "x")
                .fail(9, "HSM Error: other")
                .build(),
        ];
        let (logins, alerts) = run(&entries);
        let responses: Vec<&str> = logins.iter().map(|l| l.response.as_str()).collect();
        assert_eq!(
            responses,
            vec!["unknown user", "wrong password", "HSM Error: other"]
        );
        assert_eq!(logins[0].hsm_response, "HSM Error: user isn't initialized");
        assert_eq!(logins[1].hsm_response, "HSM Error: RET_USER_LOGIN_FAILURE");
        assert_eq!(logins[0].user_type.as_deref(), Some("CN_CRYPTO_USER"));
        assert!(alerts.is_empty());
    }

    #[test]
    fn given_five_failures_in_four_minutes_when_derived_then_all_flagged_and_one_alert() {
        let (logins, alerts) = run(&failures(
            "eve",
            &[0, MINUTE, 2 * MINUTE, 3 * MINUTE, 4 * MINUTE],
        ));
        assert!(logins.iter().all(|l| l.brute_force));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].time.micros(), 4 * MINUTE);
        assert_eq!(alerts[0].detail.as_deref(), Some("5"));
        assert_eq!(alerts[0].user.as_deref(), Some("eve"));
    }

    #[test]
    fn given_five_failures_in_six_minutes_when_derived_then_no_alert() {
        let times: Vec<i64> = (0..5).map(|i| i * 90_000_000).collect();
        let (logins, alerts) = run(&failures("eve", &times));
        assert!(logins.iter().all(|l| !l.brute_force));
        assert!(alerts.is_empty());
    }

    #[test]
    fn given_a_long_burst_when_derived_then_one_alert_counting_the_burst_and_only_dense_failures_flagged()
     {
        // Seven failures a minute apart, then two sparse ones still chained within 5 min.
        let mut times: Vec<i64> = (0..7).map(|i| i * MINUTE).collect();
        times.extend([10 * MINUTE, 14 * MINUTE]);
        let (logins, alerts) = run(&failures("eve", &times));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].detail.as_deref(), Some("9"));
        let flags: Vec<bool> = logins.iter().map(|l| l.brute_force).collect();
        assert_eq!(
            flags,
            vec![true, true, true, true, true, true, true, false, false]
        );
    }

    #[test]
    fn given_two_separate_bursts_and_other_users_when_derived_then_one_alert_each() {
        let mut times: Vec<i64> = (0..5).map(|i| i * MINUTE).collect();
        times.extend((0..5).map(|i| 60 * MINUTE + i * MINUTE));
        let mut entries = failures("eve", &times);
        entries.extend((0..4).map(|i| login("b", i, i as i64, 0x1, "bob").fail(163, "x").build()));
        let (_, alerts) = run(&entries);
        assert_eq!(alerts.len(), 2);
        assert!(alerts.iter().all(|a| a.user.as_deref() == Some("eve")));
    }
}
