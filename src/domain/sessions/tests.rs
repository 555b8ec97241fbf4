//! The session derivation's cases: logins, handles, reboots, horizons, and who did what.

use std::collections::BTreeMap;

use super::*;
use crate::domain::records::prepare;
use crate::model::TrailEntry;
use crate::testkit::{login, rec};

const MS: i64 = 1_000;

/// A key generated in boot 1 under session handle `handle`.
fn generate_key(hsm: &str, seq: u64, micros: i64, handle: u64, key: u64) -> TrailEntry {
    rec(hsm, 1, seq, micros, Opcode::GenerateKey)
        .handle(handle)
        .key(key)
        .build()
}

fn run(entries: &[TrailEntry]) -> (SessionView, Vec<(String, u64)>) {
    let recs = prepare(entries);
    let ids = recs.iter().map(|r| (r.hsm.to_owned(), r.seq())).collect();
    (
        derive(
            &recs,
            &DeriveConfig::default(),
            &UserNames::learn(&recs),
            &Carry::default(),
            Timestamp(i64::MAX),
            Emit::Known,
        ),
        ids,
    )
}

/// Sweeps `pieces` one after the other, each settled after its last record and
/// giving back only the sessions it changed (as an in-order step does), and keeps
/// the newest head of each session any sweep gave: what the stored views hold.
fn heads_swept_in_pieces(pieces: &[Vec<TrailEntry>]) -> BTreeMap<(String, u64), String> {
    let mut carry = Carry::default();
    let mut heads = BTreeMap::new();
    for piece in pieces {
        let recs = prepare(piece);
        let settle = Timestamp(
            recs.iter()
                .map(|rec| rec.time().micros())
                .max()
                .unwrap_or(0)
                + 1,
        );
        let names = UserNames::learn(&recs);
        let view = derive(
            &recs,
            &DeriveConfig::default(),
            &names,
            &carry,
            settle,
            Emit::Changed,
        );
        for session in view.sessions {
            let head = format!(
                "{:?} {:?} {:?}",
                session.end_time, session.ended_by, session.mirror_hsms
            );
            heads.insert((session.origin_hsm, session.origin_seq), head);
        }
        carry = view.carry;
    }
    heads
}

#[test]
fn given_sessions_ended_by_a_reboot_or_mirrored_in_a_later_sweep_when_only_changes_are_given_back_then_their_heads_still_change()
 {
    let first = vec![
        login("a", 0, 1_000, 0x7014006, "admin").build(),
        login("b", 0, 1_500, 0x5014006, "bob").build(),
        login("c", 0, 1_600, 0x6014006, "carol").build(),
    ];
    // Later: bob's login mirrored on a; b reboots (bob's origin member ends there,
    // his session lives on on a); c reboots (carol's session ends with nothing of
    // its own in the sweep).
    let second = vec![
        login("a", 1, 2_000, 0x7024006, "bob").build(),
        rec("b", 2, 0, 3_000, Opcode::FipsRand).build(),
        rec("c", 2, 0, 3_500, Opcode::FipsRand).handle(0x1).build(),
    ];
    let at_once = heads_swept_in_pieces(&[[first.clone(), second.clone()].concat()]);
    let in_pieces = heads_swept_in_pieces(&[first, second]);
    assert_eq!(in_pieces, at_once);
    let bob = &at_once[&("b".to_owned(), 0)];
    assert!(
        bob.starts_with("None None [\"a\"]"),
        "bob mirrored on a: {bob}"
    );
    let carol = &at_once[&("c".to_owned(), 0)];
    assert!(carol.contains("REBOOT"), "carol's session ended: {carol}");
}

#[test]
fn given_a_session_idle_past_the_horizon_when_a_later_record_comes_then_it_is_abandoned_alone_and_leaves_the_carry()
 {
    const HOUR: i64 = 3_600_000_000;
    let config = DeriveConfig {
        session_horizon_micros: 24 * HOUR,
        ..DeriveConfig::default()
    };
    let mut entries = vec![
        login("a", 0, 0, 0x7014006, "idle").build(),
        login("b", 0, 0, 0x5014006, "busy").build(),
    ];
    // busy works every 10 hours for 3 days; idle never again until a command under
    // its handle on day 3, which no session takes.
    entries.extend((1..8).map(|i| {
        rec("b", 1, i, i as i64 * 10 * HOUR, Opcode::FipsRand)
            .handle(0x5014006)
            .build()
    }));
    entries.push(
        rec("a", 1, 1, 70 * HOUR, Opcode::FipsRand)
            .handle(0x7014006)
            .build(),
    );
    let recs = prepare(&entries);
    let names = UserNames::learn(&recs);
    let sweep = |config: &DeriveConfig| {
        let at_once = Timestamp(i64::MAX);
        derive(
            &recs,
            config,
            &names,
            &Carry::default(),
            at_once,
            Emit::Known,
        )
    };
    let view = sweep(&config);
    let idle = view.sessions.iter().find(|s| s.user == "idle").unwrap();
    assert_eq!(
        (idle.end_time, &idle.ended_by),
        (None, &None),
        "no end was logged"
    );
    assert_eq!(idle.events.len(), 1, "only its login: {:?}", idle.events);
    let busy = view.sessions.iter().find(|s| s.user == "busy").unwrap();
    assert_eq!((busy.end_time, busy.events.len()), (None, 8));
    assert_eq!(view.alerts.len(), 1);
    assert_eq!(view.alerts[0].kind, AlertKind::AbandonedSession);
    assert_eq!(view.alerts[0].user.as_deref(), Some("idle"));
    assert_eq!(view.alerts[0].time, Timestamp(24 * HOUR));
    assert_eq!(view.carry.groups.len(), 1, "only busy's session is carried");

    let never = DeriveConfig {
        session_horizon_micros: 0,
        ..config
    };
    let view = sweep(&never);
    let idle = view.sessions.iter().find(|s| s.user == "idle").unwrap();
    assert!(view.alerts.is_empty());
    assert_eq!(
        idle.events.len(),
        2,
        "never abandoned, it takes the command"
    );

    // One record at a time, each sweep settled after it: the same events and alerts.
    let mut carry = Carry::default();
    let mut alerts = Vec::new();
    let mut events = BTreeMap::new();
    for entry in &entries {
        let one = prepare(std::slice::from_ref(entry));
        let settle = Timestamp(entry.record.time().micros() + 1);
        let view = derive(&one, &config, &names, &carry, settle, Emit::Changed);
        for session in view.sessions {
            *events.entry(session.user).or_insert(0) += session.events.len();
        }
        alerts.extend(view.alerts);
        carry = view.carry;
    }
    assert_eq!((events["idle"], events["busy"]), (1, 8));
    assert_eq!(alerts.len(), 1);
}

fn actor_of(view: &(SessionView, Vec<(String, u64)>), hsm: &str, seq: u64) -> Option<String> {
    let position = view.1.iter().position(|(h, s)| h == hsm && *s == seq)?;
    view.0.actors[position].clone()
}

#[test]
fn given_login_command_logout_when_derived_then_one_closed_session_with_all_events() {
    let entries = vec![
        login("a", 0, 1_000, 0x7014006, "admin").build(),
        rec("a", 1, 1, 2_000, Opcode::CreateUser)
            .handle(0x7014006)
            .user("bob", "CN_CRYPTO_USER")
            .build(),
        rec("a", 1, 2, 3_000, Opcode::Logout)
            .handle(0x7014000)
            .user("admin", "CN_CRYPTO_OFFICER")
            .build(),
    ];
    let view = run(&entries);
    let session = &view.0.sessions[0];
    assert_eq!(view.0.sessions.len(), 1);
    assert_eq!(session.user, "admin");
    assert_eq!(session.ended_by.as_deref(), Some("CN_LOGOUT"));
    assert_eq!(session.end_time, Some(Timestamp(3_000)));
    let seqs: Vec<u64> = session.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
    assert_eq!(session.events[1].target_user.as_deref(), Some("bob"));
    assert_eq!(actor_of(&view, "a", 1).as_deref(), Some("admin"));
}

#[test]
fn given_a_new_login_under_an_open_sessions_handle_when_a_command_follows_then_the_new_session_owns_it()
 {
    // The seed's export example: testuser's login mirrored on zyxwv (0x7004004) never
    // sees its logout there, and a later login on zyxwv reuses handle 0x7004004.
    let entries = vec![
        login("zyxwv", 0xd, 1_000, 0x7004004, "testuser").build(),
        login("zyxwv", 0x26, 9_000_000_000, 0x7004004, "testuser").build(),
        rec("zyxwv", 1, 0x27, 9_100_000_000, Opcode::WrapKey)
            .handle(0x7004003)
            .key(7)
            .build(),
    ];
    let view = run(&entries);
    assert_eq!(actor_of(&view, "zyxwv", 0x27).as_deref(), Some("testuser"));
    let owner = view
        .0
        .sessions
        .iter()
        .find(|s| s.events.iter().any(|e| e.seq == 0x27))
        .unwrap();
    assert_eq!(
        owner.origin_seq, 0x26,
        "the later login's session owns the command"
    );
}

#[test]
fn given_two_open_sessions_when_a_command_matches_neither_handle_then_it_stays_unattributed() {
    let entries = vec![
        login("a", 0, 1_000, 0x100, "u1").build(),
        login("a", 1, 2_000, 0x200, "u2").build(),
        generate_key("a", 2, 3_000, 0x300, 9),
        generate_key("a", 3, 4_000, 0x204, 10),
    ];
    let view = run(&entries);
    assert_eq!(actor_of(&view, "a", 2), None);
    assert_eq!(actor_of(&view, "a", 3).as_deref(), Some("u2"));
}

#[test]
fn given_one_open_session_when_a_command_matches_no_handle_then_it_goes_to_that_session() {
    let entries = vec![
        login("a", 0, 1_000, 0x100, "u1").build(),
        generate_key("a", 1, 3_000, 0x300, 9),
    ];
    assert_eq!(actor_of(&run(&entries), "a", 1).as_deref(), Some("u1"));
}

#[test]
fn given_a_reboot_when_derived_then_open_sessions_end_at_the_new_boots_first_record() {
    let entries = vec![
        login("a", 0, 1_000, 0x100, "u1").build(),
        rec("a", 2, 0, 9_000, Opcode::InitToken).build(),
        login("a", 1, 10_000, 0x200, "u1").boot(2).build(),
    ];
    let sessions = run(&entries).0.sessions;
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0].ended_by.as_deref(), Some("REBOOT"));
    assert_eq!(sessions[0].end_time, Some(Timestamp(9_000)));
    assert_eq!(sessions[1].ended_by, None);
}

#[test]
fn given_a_login_mirrored_within_the_window_when_derived_then_one_cluster_session() {
    let entries = vec![
        login("hsm-b", 13, 1_027 * MS, 0x7004004, "testuser").build(),
        login("hsm-a", 0, 1_000 * MS, 0xc008002, "testuser").build(),
        login("hsm-c", 4, 7_000 * MS, 0x5004004, "testuser").build(),
    ];
    let sessions = run(&entries).0.sessions;
    assert_eq!(sessions.len(), 2, "hsm-c logged in outside the window");
    assert_eq!(sessions[0].origin_hsm, "hsm-a");
    assert_eq!(sessions[0].origin_seq, 0);
    assert_eq!(sessions[0].mirror_hsms, vec!["hsm-b".to_owned()]);
    assert_eq!(sessions[1].origin_hsm, "hsm-c");
}

#[test]
fn given_the_origin_logs_out_when_a_mirror_runs_a_command_later_then_the_mirror_does_not_absorb_it()
{
    let entries = vec![
        login("a", 0, 1_000 * MS, 0x100, "u1").build(),
        login("b", 0, 1_010 * MS, 0x500, "u1").build(),
        rec("a", 1, 1, 2_000 * MS, Opcode::Logout)
            .handle(0x101)
            .user("u1", "CN_CRYPTO_USER")
            .build(),
        generate_key("b", 1, 3_000 * MS, 0x501, 5),
    ];
    let view = run(&entries);
    let session = &view.0.sessions[0];
    assert_eq!(session.ended_by.as_deref(), Some("CN_LOGOUT"));
    assert_eq!(session.end_time, Some(Timestamp(2_000 * MS)));
    assert!(session.events.iter().all(|e| e.hsm == "a"));
    assert_eq!(actor_of(&view, "b", 1), None);
}

#[test]
fn given_a_mirrored_logout_after_the_cut_when_another_session_is_open_then_it_does_not_end_that_one()
 {
    let entries = vec![
        login("a", 0, 1_000 * MS, 0x100, "u1").build(),
        login("b", 0, 1_010 * MS, 0x500, "u1").build(),
        login("b", 1, 1_500 * MS, 0x900, "u2").build(),
        rec("a", 1, 1, 2_000 * MS, Opcode::Logout)
            .handle(0x101)
            .build(),
        rec("b", 1, 2, 2_001 * MS, Opcode::Logout)
            .handle(0x501)
            .user("u1", "CN_CRYPTO_USER")
            .build(),
    ];
    let sessions = run(&entries).0.sessions;
    let u1 = &sessions[0];
    assert_eq!(
        u1.events.len(),
        3,
        "login, logout on a, mirrored logout on b"
    );
    let u2 = &sessions[1];
    assert_eq!(u2.user, "u2");
    assert_eq!(u2.ended_by, None);
}

#[test]
fn given_a_second_login_of_the_same_user_when_derived_then_both_sessions_are_open() {
    let entries = vec![
        login("a", 0, 1_000, 0x100, "u1").build(),
        login("a", 1, 2_000, 0x200, "u1").build(),
    ];
    let sessions = run(&entries).0.sessions;
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s.end_time.is_none()));
}

#[test]
fn given_close_partition_sessions_when_derived_then_every_open_session_there_ends() {
    let entries = vec![
        login("a", 0, 1_000, 0x100, "u1").build(),
        login("a", 1, 20_000_000, 0x200, "u2").build(),
        rec("a", 1, 2, 30_000_000, Opcode::ClosePartitionSessions).build(),
    ];
    let sessions = run(&entries).0.sessions;
    assert!(
        sessions
            .iter()
            .all(|s| s.ended_by.as_deref() == Some("CN_CLOSE_PARTITION_SESSIONS"))
    );
}

#[test]
fn given_a_failed_login_when_derived_then_no_session_opens() {
    let entries = vec![login("a", 0, 1_000, 0x100, "u1").fail(163, "x").build()];
    assert!(run(&entries).0.sessions.is_empty());
}

#[test]
fn given_a_logout_without_user_and_two_open_sessions_when_no_handle_matches_then_nothing_ends() {
    let entries = vec![
        login("a", 0, 1_000, 0x100, "u1").build(),
        login("a", 1, 2_000, 0x200, "u2").build(),
        rec("a", 1, 2, 3_000, Opcode::Logout).handle(0x300).build(),
    ];
    assert!(
        run(&entries)
            .0
            .sessions
            .iter()
            .all(|s| s.end_time.is_none())
    );
}

#[test]
fn given_every_member_rebooted_when_derived_then_the_cluster_session_ends_by_reboot_at_the_last() {
    let entries = vec![
        login("a", 0, 1_000 * MS, 0x100, "u1").build(),
        login("b", 0, 1_010 * MS, 0x500, "u1").build(),
        rec("a", 2, 0, 5_000 * MS, Opcode::InitToken).build(),
        rec("b", 2, 0, 6_000 * MS, Opcode::InitToken).build(),
    ];
    let sessions = run(&entries).0.sessions;
    assert_eq!(sessions[0].ended_by.as_deref(), Some("REBOOT"));
    assert_eq!(sessions[0].end_time, Some(Timestamp(6_000 * MS)));
}

#[test]
fn given_time_information_in_an_open_session_when_derived_then_it_is_nobodys_activity() {
    let entries = vec![
        login("a", 0, 1_000, 0x3004000, "bob").build(),
        rec("a", 1, 1, 2_000, Opcode::Other("CN_TIME_INFO".into()))
            .command_type("CN_TIME_INFO", 0xeee2)
            .handle(0x3004001)
            .build(),
        rec("a", 1, 2, 3_000, Opcode::Other("CN_TIME_INFO".into()))
            .command_type("CN_TIME_INFO", 0xeee2)
            .build(),
        rec("a", 1, 3, 4_000, Opcode::FipsRand).build(),
    ];
    let view = run(&entries);
    let opcodes: Vec<&str> = view.0.sessions[0]
        .events
        .iter()
        .map(|event| event.opcode.as_str())
        .collect();
    assert_eq!(opcodes, vec!["CN_LOGIN", "CN_FIPS_RAND"]);
    assert_eq!(actor_of(&view, "a", 1), None);
    assert_eq!(actor_of(&view, "a", 2), None);
    assert_eq!(actor_of(&view, "a", 3).as_deref(), Some("bob"));
}
