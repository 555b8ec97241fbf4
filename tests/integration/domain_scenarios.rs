//! The vendor's worked examples (AWS CloudHSM "Interpreting HSM audit logs", copied in
//! `tests/fixtures/seed-000`) run through the domain derivation, plus the scenarios the
//! specification calls out. Records are built directly with the seed values, so these
//! tests do not depend on the parser.

use hsm_audit::domain::{
    AlertKind, ClusterSession, Conflict, DeriveConfig, Derived, KeyGeneration, KeyState, derive,
};
use hsm_audit::model::{AuditRecord, Opcode, Timestamp, TrailEntry};
use hsm_audit::testkit::{self, Builder};
use proptest::prelude::*;

const ABCDE: &str = "hsm-abcde123456";
const ZYXWV: &str = "hsm-zyxwv987654";
const MINUTE: i64 = 60_000_000;

/// A record of the vendor's examples: its opcode by name, and its session handle.
fn rec(hsm: &str, boot: u32, seq: u64, usecs: i64, opcode: &str, handle: u64) -> Builder {
    testkit::rec(hsm, boot, seq, usecs, Opcode::from_name(opcode)).handle(handle)
}

/// A session of the vendor's examples: the HSM, reboot counter and session handle its
/// commands carry.
struct Session(&'static str, u32, u64);

/// testuser's sessions of the seeds "generate and synchronize a key" and "export a key".
const TESTUSER_ON_ABCDE: Session = Session(ABCDE, 0x107, 0xc008004);
const TESTUSER_ON_ZYXWV: Session = Session(ZYXWV, 0x107, 0x7004003);

impl Session {
    fn rec(&self, seq: u64, usecs: i64, opcode: &str) -> Builder {
        rec(self.0, self.1, seq, usecs, opcode, self.2)
    }

    /// A command on the key `key` that logs no public key (handle 0).
    fn on_key(&self, seq: u64, usecs: i64, opcode: &str, key: u64) -> TrailEntry {
        self.rec(seq, usecs, opcode).key(key).public(0).build()
    }
}

fn run(entries: &[TrailEntry]) -> Derived {
    derive(entries, &[], &DeriveConfig::default())
}

fn key(derived: &Derived, handle: u64, generation: u32) -> &KeyGeneration {
    derived
        .keys
        .iter()
        .find(|k| k.handle == handle && k.generation == generation)
        .unwrap_or_else(|| {
            panic!(
                "no key {handle} generation {generation}: {:#?}",
                derived.keys
            )
        })
}

fn opcodes(session: &ClusterSession) -> Vec<&str> {
    session.events.iter().map(|e| e.opcode.as_str()).collect()
}

/// Seed "create and delete users": admin creates bob and alice, then logs out. The
/// vendor prints the logout as a separate example with sequence 0x2 too; here it
/// follows as 0x3 at the same instant so that both belong to one stream.
fn users_example() -> Vec<TrailEntry> {
    users_example_on(ABCDE)
}

fn users_example_on(hsm: &str) -> Vec<TrailEntry> {
    vec![
        rec(hsm, 0x107, 0x0, 1516067329824999, "CN_LOGIN", 0x7014006)
            .user("admin", "CN_CRYPTO_OFFICER")
            .build(),
        rec(
            hsm,
            0x107,
            0x1,
            1516067379437708,
            "CN_CREATE_USER",
            0x7014006,
        )
        .user("bob", "CN_CRYPTO_USER")
        .build(),
        rec(hsm, 0x107, 0x2, 1516067395993404, "CN_CREATE_CO", 0x7014007)
            .user("alice", "CN_CRYPTO_OFFICER")
            .build(),
        rec(hsm, 0x107, 0x3, 1516067395993404, "CN_LOGOUT", 0x7014000)
            .user("admin", "CN_CRYPTO_OFFICER")
            .build(),
    ]
}

/// Seed "create and delete a key pair", reboot counter 0xe8.
fn key_pair_example() -> Vec<TrailEntry> {
    let session = Session(ABCDE, 0xe8, 0x2014004);
    vec![
        rec(ABCDE, 0xe8, 0x28, 1513206544648952, "CN_LOGIN", 0x2014005)
            .user("crypto_user", "CN_CRYPTO_USER")
            .build(),
        session
            .rec(0x29, 1513206544761594, "CN_GENERATE_KEY_PAIR")
            .key(131079)
            .public(131078)
            .build(),
        session.on_key(0x2a, 1513206544813977, "CN_DESTROY_OBJECT", 131078),
        session.on_key(0x2b, 1513206544815530, "CN_DESTROY_OBJECT", 131079),
        session
            .rec(0x2c, 1513206544817222, "CN_LOGOUT")
            .user("crypto_user", "CN_CRYPTO_USER")
            .build(),
    ]
}

/// Seed "generate and synchronize a key": generated on abcde, login mirrored on zyxwv
/// 27 ms later, inserted there.
fn sync_example() -> Vec<TrailEntry> {
    vec![
        rec(ABCDE, 0x107, 0x0, 1516754363172777, "CN_LOGIN", 0xc008002)
            .user("testuser", "CN_CRYPTO_USER")
            .build(),
        TESTUSER_ON_ABCDE.on_key(0x1, 1516754370328334, "CN_GENERATE_KEY", 262152),
        TESTUSER_ON_ABCDE.on_key(
            0x2,
            1516754370330956,
            "CN_EXTRACT_MASKED_OBJECT_USER",
            262152,
        ),
        rec(ZYXWV, 0x107, 0xd, 1516754363199740, "CN_LOGIN", 0x7004004)
            .user("testuser", "CN_CRYPTO_USER")
            .build(),
        TESTUSER_ON_ZYXWV.on_key(
            0xe,
            1516754370408950,
            "CN_INSERT_MASKED_OBJECT_USER",
            262152,
        ),
    ]
}

/// Seeds "export a key" and "import a key" on zyxwv (insert of the import on abcde).
fn export_import_example() -> Vec<TrailEntry> {
    vec![
        rec(ZYXWV, 0x107, 0x26, 1516822942695884, "CN_LOGIN", 0x7004004)
            .user("testuser", "CN_CRYPTO_USER")
            .build(),
        TESTUSER_ON_ZYXWV.on_key(0x27, 1516823472860123, "CN_WRAP_KEY", 7),
        TESTUSER_ON_ZYXWV.on_key(0x28, 1516823472905257, "CN_NIST_AES_WRAP", 6),
        TESTUSER_ON_ZYXWV.on_key(0x29, 1516823903170518, "CN_NIST_AES_WRAP", 6),
        TESTUSER_ON_ZYXWV.on_key(0x2a, 1516823903200711, "CN_UNWRAP_KEY", 11),
        TESTUSER_ON_ZYXWV.on_key(0x2b, 1516823903203350, "CN_EXTRACT_MASKED_OBJECT_USER", 11),
        TESTUSER_ON_ABCDE.on_key(0xb, 1516823903286793, "CN_INSERT_MASKED_OBJECT_USER", 11),
    ]
}

fn failed_login(hsm: &str, seq: u64, usecs: i64, user: &str) -> TrailEntry {
    rec(hsm, 0x107, seq, usecs, "CN_LOGIN", 0xc008002)
        .user(user, "CN_CRYPTO_USER")
        .fail(163, "HSM Error: RET_USER_LOGIN_FAILURE")
        .build()
}

#[test]
fn given_admin_creates_users_then_logs_out_when_derived_then_admin_is_actor_and_users_targets() {
    let derived = run(&users_example());
    assert_eq!(derived.sessions.len(), 1);
    let session = &derived.sessions[0];
    assert_eq!(session.user, "admin");
    assert_eq!(session.user_type.as_deref(), Some("CN_CRYPTO_OFFICER"));
    assert_eq!(
        opcodes(session),
        vec!["CN_LOGIN", "CN_CREATE_USER", "CN_CREATE_CO", "CN_LOGOUT"]
    );
    let targets: Vec<Option<&str>> = session
        .events
        .iter()
        .map(|e| e.target_user.as_deref())
        .collect();
    assert_eq!(targets, vec![None, Some("bob"), Some("alice"), None]);
    assert_eq!(session.ended_by.as_deref(), Some("CN_LOGOUT"));
    assert_eq!(session.end_time, Some(Timestamp(1516067395993404)));

    let sensitive: Vec<_> = derived
        .alerts
        .iter()
        .filter(|a| a.kind == AlertKind::SensitiveOperation)
        .collect();
    assert_eq!(sensitive.len(), 1);
    assert_eq!(sensitive[0].opcode, Some(Opcode::CreateCo));
    assert_eq!(sensitive[0].user.as_deref(), Some("admin"));
    assert_eq!(sensitive[0].detail.as_deref(), Some("alice"));
}

#[test]
fn given_a_user_deleted_outside_any_session_when_derived_then_alert_names_target_but_no_actor() {
    let mut entries = users_example();
    entries.push(
        rec(
            ABCDE,
            0x107,
            0xb,
            1516737503451420,
            "CN_DELETE_USER",
            0x7014007,
        )
        .user("alice", "CN_CRYPTO_OFFICER")
        .build(),
    );
    let derived = run(&entries);
    let alert = derived
        .alerts
        .iter()
        .find(|a| a.opcode == Some(Opcode::DeleteUser))
        .expect("delete user alert");
    assert_eq!(alert.user, None);
    assert_eq!(alert.detail.as_deref(), Some("alice"));
    assert!(
        derived
            .alerts
            .iter()
            .any(|a| a.kind == AlertKind::SequenceGap && a.from == Some(4) && a.to == Some(0xa))
    );
}

#[test]
fn given_a_key_pair_generated_and_destroyed_when_derived_then_two_linked_destroyed_lifecycles() {
    let derived = run(&key_pair_example());
    assert_eq!(derived.keys.len(), 2);
    let private = key(&derived, 131079, 1);
    let public = key(&derived, 131078, 1);
    assert_eq!(
        (private.kind.as_str(), public.kind.as_str()),
        ("private", "public")
    );
    assert_eq!(private.pair_handle, Some(131078));
    assert_eq!(public.pair_handle, Some(131079));
    for k in [private, public] {
        assert_eq!(k.state, KeyState::Destroyed);
        assert_eq!(k.created_by.as_deref(), Some("crypto_user"));
        assert_eq!(k.created_opcode, Some(Opcode::GenerateKeyPair));
        assert_eq!(k.hsms, vec![ABCDE.to_owned()]);
        assert_eq!(k.events.len(), 2);
        assert!(
            k.events
                .iter()
                .all(|e| e.user.as_deref() == Some("crypto_user"))
        );
    }
    let session = &derived.sessions[0];
    assert_eq!(session.events.len(), 5);
    assert_eq!(session.events[1].key_handles, vec![131079, 131078]);
    assert_eq!(session.ended_by.as_deref(), Some("CN_LOGOUT"));
}

#[test]
fn given_a_key_generated_and_synchronized_when_derived_then_one_cluster_session_and_two_hsms() {
    let derived = run(&sync_example());
    assert_eq!(derived.sessions.len(), 1);
    let session = &derived.sessions[0];
    assert_eq!(session.origin_hsm, ABCDE);
    assert_eq!(session.origin_seq, 0);
    assert_eq!(session.mirror_hsms, vec![ZYXWV.to_owned()]);
    assert_eq!(
        opcodes(session),
        vec![
            "CN_LOGIN",
            "CN_GENERATE_KEY",
            "CN_EXTRACT_MASKED_OBJECT_USER",
            "CN_INSERT_MASKED_OBJECT_USER"
        ]
    );
    assert_eq!(session.end_time, None);

    let generated = key(&derived, 262152, 1);
    assert_eq!(generated.kind, "secret");
    assert_eq!(generated.hsms, vec![ABCDE.to_owned(), ZYXWV.to_owned()]);
    assert_eq!(generated.created_by.as_deref(), Some("testuser"));
    assert_eq!(generated.state, KeyState::Active);
    assert_eq!(generated.events.len(), 3);
}

#[test]
fn given_key_7_wrapped_when_derived_then_exported_and_a_sensitive_alert() {
    let derived = run(&export_import_example());
    let exported = key(&derived, 7, 0);
    assert!(exported.exported);
    assert_eq!(exported.kind, "unknown");
    assert_eq!(exported.events[0].user.as_deref(), Some("testuser"));
    assert!(
        !key(&derived, 6, 0).exported,
        "the wrapping key is used, not exported"
    );
    let alert = derived
        .alerts
        .iter()
        .find(|a| a.kind == AlertKind::SensitiveOperation)
        .expect("wrap alert");
    assert_eq!(alert.opcode, Some(Opcode::WrapKey));
    assert_eq!(alert.user.as_deref(), Some("testuser"));
    assert_eq!(alert.seq, Some(0x27));
}

#[test]
fn given_key_11_imported_and_replicated_when_derived_then_secret_held_on_both_hsms() {
    let derived = run(&export_import_example());
    let imported = key(&derived, 11, 1);
    assert_eq!(imported.kind, "secret");
    assert_eq!(imported.created_opcode, Some(Opcode::UnwrapKey));
    assert_eq!(imported.hsms, vec![ABCDE.to_owned(), ZYXWV.to_owned()]);
    // The insert on abcde is attributed to nobody: no session is open there.
    assert_eq!(imported.events.last().and_then(|e| e.user.clone()), None);
}

#[test]
fn given_a_share_without_key_fields_when_derived_then_no_key_lifecycle() {
    let derived = run(&[rec(
        "hsm-share",
        0x38,
        0x3f,
        1549654539480168,
        "CN_SHARE_OBJECT",
        0x3014007,
    )
    .build()]);
    assert!(derived.keys.is_empty());
    assert_eq!(derived.streams.len(), 1);
    assert_eq!(derived.streams[0].first_seq, 0x3f);
    assert!(derived.alerts.is_empty());
}

#[test]
fn given_the_first_hsm_initialised_when_derived_then_routine_and_officer_password_change_alerts() {
    let entries = vec![
        rec(
            ABCDE,
            0xe8,
            0x0,
            1513717276962174,
            "CN_INIT_TOKEN",
            0x1004001,
        )
        .build(),
        rec(
            ABCDE,
            0xe8,
            0x1,
            1513717277140812,
            "CN_GEN_PSWD_ENC_KEY",
            0x1004001,
        )
        .build(),
        rec(
            ABCDE,
            0xe8,
            0x2,
            1513717277174902,
            "CN_CREATE_APPLIANCE_USER",
            0x1004001,
        )
        .user("app_user", "CN_APPLIANCE_USER")
        .build(),
        rec(
            ABCDE,
            0xe8,
            0x3,
            1513717277298914,
            "CN_INIT_DONE",
            0x1004001,
        )
        .build(),
        rec(
            ABCDE,
            0xe8,
            0x1d,
            1513206273846554,
            "CN_CHANGE_PSWD",
            0x2010003,
        )
        .user("admin", "CN_CRYPTO_PRE_OFFICER")
        .build(),
    ];
    let derived = run(&entries);
    let sensitive: Vec<_> = derived
        .alerts
        .iter()
        .filter(|a| a.kind == AlertKind::SensitiveOperation)
        .collect();
    assert_eq!(sensitive.len(), 1, "{sensitive:#?}");
    assert_eq!(sensitive[0].opcode, Some(Opcode::ChangePswd));
    assert_eq!(sensitive[0].detail.as_deref(), Some("admin"));
}

#[test]
fn given_unknown_user_and_wrong_password_when_derived_then_two_failed_logins() {
    let entries = vec![
        rec(ABCDE, 0x107, 0x4, 1516815699037255, "CN_LOGIN", 0xc008002)
            .user("ExampleUser", "CN_CRYPTO_USER")
            .fail(
                157,
                "HSM Error: user isn't initialized or user with this name doesn't exist",
            )
            .build(),
        rec(ABCDE, 0x107, 0x5, 1516815865013218, "CN_LOGIN", 0xc008002)
            .user("testuser", "CN_CRYPTO_USER")
            .fail(163, "HSM Error: RET_USER_LOGIN_FAILURE")
            .build(),
    ];
    let derived = run(&entries);
    assert!(derived.sessions.is_empty());
    let summary: Vec<_> = derived
        .failed_logins
        .iter()
        .map(|f| {
            (
                f.user.as_str(),
                f.response_code,
                f.response.as_str(),
                f.brute_force,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("ExampleUser", 157, "unknown user", false),
            ("testuser", 163, "wrong password", false)
        ]
    );
    assert_eq!(derived.failed_logins[0].reboot_counter, 0x107);
}

#[test]
fn given_five_failures_in_four_minutes_across_hsms_when_derived_then_brute_force() {
    let start = 1516815865013218;
    let entries: Vec<TrailEntry> = (0..5)
        .map(|i| {
            let hsm = if i % 2 == 0 { ABCDE } else { ZYXWV };
            failed_login(hsm, i as u64, start + i * MINUTE, "testuser")
        })
        .collect();
    let derived = run(&entries);
    assert!(derived.failed_logins.iter().all(|f| f.brute_force));
    let alerts: Vec<_> = derived
        .alerts
        .iter()
        .filter(|a| a.kind == AlertKind::BruteForce)
        .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].time, Timestamp(start + 4 * MINUTE));
    assert_eq!(alerts[0].hsm.as_deref(), Some(ABCDE));
    assert_eq!(alerts[0].user.as_deref(), Some("testuser"));
}

#[test]
fn given_five_failures_in_six_minutes_when_derived_then_no_brute_force() {
    let start = 1516815865013218;
    let entries: Vec<TrailEntry> = (0..5)
        .map(|i| failed_login(ABCDE, i as u64, start + i * 90_000_000, "testuser"))
        .collect();
    let derived = run(&entries);
    assert!(derived.failed_logins.iter().all(|f| !f.brute_force));
    assert!(
        derived
            .alerts
            .iter()
            .all(|a| a.kind != AlertKind::BruteForce)
    );
}

#[test]
fn given_a_handle_reused_after_destruction_when_derived_then_generation_two() {
    let mut entries = sync_example();
    entries.push(TESTUSER_ON_ABCDE.on_key(0x3, 1516754371000000, "CN_DESTROY_OBJECT", 262152));
    entries.push(TESTUSER_ON_ABCDE.on_key(0x4, 1516754380000000, "CN_CREATE_OBJECT", 262152));
    let derived = run(&entries);
    assert_eq!(key(&derived, 262152, 1).state, KeyState::Destroyed);
    let second = key(&derived, 262152, 2);
    assert_eq!(second.state, KeyState::Active);
    assert_eq!(second.kind, "object");
    assert_eq!(second.hsms, vec![ABCDE.to_owned()]);
}

#[test]
fn given_a_reboot_when_derived_then_sessions_end_and_a_reboot_alert() {
    let entries = vec![
        rec(ABCDE, 0x107, 0x0, 1_000_000, "CN_LOGIN", 0xc008002)
            .user("testuser", "CN_CRYPTO_USER")
            .build(),
        rec(ABCDE, 0x108, 0x0, 9_000_000, "CN_GEN_KEY_ENC_KEY", 0x1).build(),
    ];
    let derived = run(&entries);
    assert_eq!(derived.sessions[0].ended_by.as_deref(), Some("REBOOT"));
    assert_eq!(derived.sessions[0].end_time, Some(Timestamp(9_000_000)));
    let reboot: Vec<_> = derived
        .alerts
        .iter()
        .filter(|a| a.kind == AlertKind::Reboot)
        .collect();
    assert_eq!(reboot.len(), 1);
    assert_eq!(reboot[0].reboot_counter, Some(0x108));
    assert_eq!(reboot[0].time, Timestamp(9_000_000));
    assert_eq!(derived.streams.len(), 2);
}

#[test]
fn given_a_gap_when_it_is_filled_later_then_the_alert_disappears() {
    let mut entries = key_pair_example();
    let missing = entries.remove(2);
    let with_gap = run(&entries);
    let gaps: Vec<_> = with_gap
        .alerts
        .iter()
        .filter(|a| a.kind == AlertKind::SequenceGap)
        .collect();
    assert_eq!(gaps.len(), 1);
    assert_eq!((gaps[0].from, gaps[0].to), (Some(0x2a), Some(0x2a)));
    assert_eq!(gaps[0].time, Timestamp(1513206544761594));
    assert_eq!(with_gap.streams[0].missing, 1);

    entries.push(missing);
    let filled = run(&entries);
    assert!(
        filled
            .alerts
            .iter()
            .all(|a| a.kind != AlertKind::SequenceGap)
    );
    assert_eq!(filled.streams[0].missing, 0);
    assert_eq!(filled, run(&key_pair_example()));
}

#[test]
fn given_a_mirror_that_never_sees_the_logout_when_a_command_follows_there_then_it_is_not_absorbed()
{
    let mut entries = sync_example();
    entries.push(
        rec(ABCDE, 0x107, 0x3, 1516754375000000, "CN_LOGOUT", 0xc008000)
            .user("testuser", "CN_CRYPTO_USER")
            .build(),
    );
    // Shares the mirror login's handle prefix, so only the cut keeps it out of the session.
    entries.push(Session(ZYXWV, 0x107, 0x7004005).on_key(
        0xf,
        1516754400000000,
        "CN_GENERATE_KEY",
        262160,
    ));
    let derived = run(&entries);
    assert_eq!(derived.sessions.len(), 1);
    let session = &derived.sessions[0];
    assert_eq!(session.ended_by.as_deref(), Some("CN_LOGOUT"));
    assert_eq!(session.end_time, Some(Timestamp(1516754375000000)));
    assert!(session.events.iter().all(|e| e.seq != 0xf));
    assert_eq!(key(&derived, 262160, 1).created_by, None);
}

#[test]
fn given_the_logout_listed_before_its_login_when_derived_then_it_still_closes_the_session() {
    let mut entries = key_pair_example();
    entries.reverse();
    let derived = run(&entries);
    assert_eq!(derived.sessions[0].ended_by.as_deref(), Some("CN_LOGOUT"));
    assert_eq!(derived, run(&key_pair_example()));
}

#[test]
fn given_a_refused_duplicate_when_derived_then_a_conflict_alert() {
    let conflict = Conflict {
        hsm: ABCDE.into(),
        reboot_counter: Some(0x107),
        sequence_no: Some(1),
        time: Timestamp(1516067379437708),
        stored_sha256: "11".repeat(32),
        rejected_sha256: "22".repeat(32),
        rejected_log_event_id: "36807432893245830945".into(),
    };
    let derived = derive(
        &users_example(),
        &[conflict.clone(), conflict],
        &DeriveConfig::default(),
    );
    let conflicts: Vec<_> = derived
        .alerts
        .iter()
        .filter(|a| a.kind == AlertKind::ConflictingDuplicate)
        .collect();
    assert_eq!(conflicts.len(), 1, "the same conflict twice is one alert");
    assert!(
        conflicts[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("36807432893245830945")
    );
}

/// Every example above at once, over three HSMs and two boots, plus one identity logged
/// twice with different content (the smaller content digest must win in any order).
fn cluster() -> Vec<TrailEntry> {
    let mut entries = users_example_on("hsm-klmno555555");
    entries.extend(key_pair_example());
    entries.extend(sync_example());
    entries.extend(export_import_example());
    entries.push(
        rec(ZYXWV, 0x107, 0x30, 1516823904000000, "CN_LOGOUT", 0x7004000)
            .user("testuser", "CN_CRYPTO_USER")
            .build(),
    );
    entries.extend(
        (0..6).map(|i| failed_login(ZYXWV, 0x40 + i, 1516900000000000 + i as i64 * MINUTE, "eve")),
    );
    let mut conflicting = entries[0].clone();
    if let AuditRecord::CloudHsm(record) = &mut conflicting.record {
        record.time = Timestamp(record.time.micros() + 1);
    }
    entries.push(conflicting);
    entries.sort_by_key(|entry| entry.identity());
    entries
}

proptest! {
    #[test]
    fn given_the_cluster_shuffled_with_duplicates_when_derived_then_the_same_result(
        shuffled in Just(cluster()).prop_shuffle(),
        duplicates in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let sorted = cluster();
        let mut input = shuffled.clone();
        for index in duplicates {
            input.insert(index.index(input.len()), index.get(&shuffled).clone());
        }
        prop_assert_eq!(run(&input), run(&sorted));
    }
}

#[test]
fn given_the_whole_cluster_when_derived_then_outputs_are_sorted() {
    let derived = run(&cluster());
    assert!(
        derived
            .sessions
            .windows(2)
            .all(|w| w[0].login_time <= w[1].login_time)
    );
    assert!(
        derived
            .keys
            .windows(2)
            .all(|w| (w[0].handle, w[0].generation) < (w[1].handle, w[1].generation))
    );
    assert!(derived.alerts.windows(2).all(|w| w[0].time <= w[1].time));
    assert!(derived.failed_logins.iter().all(|f| f.brute_force));
    assert_eq!(
        derived
            .alerts
            .iter()
            .filter(|a| a.kind == AlertKind::BruteForce)
            .count(),
        1
    );
    assert!(
        derived
            .sessions
            .iter()
            .all(|s| s.events.windows(2).all(|w| w[0].time <= w[1].time))
    );
}
