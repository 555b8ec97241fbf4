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

use super::records::Rec;
use super::{Alert, AlertKind, DeriveConfig, FailedLogin};
use crate::model::Opcode;

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
    let mut logins = failures(recs);
    let alerts = flag_brute_force(&mut logins, config);
    (logins, alerts)
}

/// Every failed `CN_LOGIN`, not yet flagged.
pub(crate) fn failures(recs: &[Rec<'_>]) -> Vec<FailedLogin> {
    recs.iter()
        .filter(|rec| *rec.op() == Opcode::Login && !rec.ok())
        .map(|rec| FailedLogin {
            time: rec.time(),
            hsm: rec.hsm.to_owned(),
            seq: rec.seq(),
            reboot_counter: rec.boot(),
            user: rec.user_name().unwrap_or("").to_owned(),
            user_type: rec.user_type_name().map(str::to_owned),
            response_code: rec.record.response_code,
            response: response_text(rec.record.response_code, &rec.record.response_text),
            hsm_response: rec.record.response_text.clone(),
            brute_force: false,
            opcode: None,
            log_event_id: None,
        })
        .collect()
}

/// Applies the brute-force rule to failed logins of any vendor: sorts them by
/// (time, hsm, boot, seq, log event id), sets their `brute_force` flags and returns one
/// alert per burst.
pub(crate) fn flag_brute_force(logins: &mut [FailedLogin], config: &DeriveConfig) -> Vec<Alert> {
    logins.sort_by(|a, b| {
        (a.time, &a.hsm, a.reboot_counter, a.seq, &a.log_event_id).cmp(&(
            b.time,
            &b.hsm,
            b.reboot_counter,
            b.seq,
            &b.log_event_id,
        ))
    });
    let mut by_user: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, login) in logins.iter().enumerate() {
        by_user.entry(login.user.clone()).or_default().push(index);
    }
    let threshold = config.brute_force_threshold.max(1);
    let window = config.brute_force_window_micros;
    let mut alerts = Vec::new();
    for indices in by_user.values() {
        let times: Vec<i64> = indices.iter().map(|&i| logins[i].time.micros()).collect();
        let span = |from: usize, to: usize| times[to].saturating_sub(times[from]);
        let mut burst_start = 0;
        while burst_start < indices.len() {
            let mut burst_end = burst_start;
            while burst_end + 1 < indices.len() && span(burst_end, burst_end + 1) <= window {
                burst_end += 1;
            }
            let mut reached = None;
            for last in (burst_start + threshold - 1)..=burst_end {
                let first = last + 1 - threshold;
                if span(first, last) <= window {
                    reached.get_or_insert(last);
                    for &flagged in &indices[first..=last] {
                        logins[flagged].brute_force = true;
                    }
                }
            }
            if let Some(last) = reached {
                let at = &logins[indices[last]];
                // Records without a sequence number (Luna) have no boot or position.
                let sequenced = at.log_event_id.is_none();
                alerts.push(Alert {
                    kind: AlertKind::BruteForce,
                    time: at.time,
                    hsm: Some(at.hsm.clone()),
                    reboot_counter: sequenced.then_some(at.reboot_counter),
                    from: None,
                    to: None,
                    seq: sequenced.then_some(at.seq),
                    user: Some(at.user.clone()),
                    opcode: Some(at.opcode.clone().unwrap_or(Opcode::Login)),
                    detail: Some((burst_end + 1 - burst_start).to_string()),
                });
            }
            burst_start = burst_end + 1;
        }
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::prepare;
    use crate::domain::testkit::login;
    use crate::model::TrailEntry;

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
