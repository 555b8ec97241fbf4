//! Records in the later CloudHSM layout (`tests/fixtures/later-layout/`, parsed) through
//! the domain derivation: actor and target, the id ↔ name map, sharing, time information
//! and the quorum view.

use std::fs;
use std::path::Path;

use hsm_audit::domain::{AlertKind, DeriveConfig, Derived, KeyState, derive};
use hsm_audit::model::{AuditRecord, LogSource, Opcode, TrailEntry};
use hsm_audit::parse::parse_cloudhsm_record;

const HSM: &str = "hsm-later";

/// The later-layout fixtures whose names start with any of `prefixes`, as trail entries
/// of one HSM.
fn fixtures(prefixes: &[&str]) -> Vec<TrailEntry> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/later-layout");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| prefixes.iter().any(|prefix| name.starts_with(prefix)))
        .collect();
    names.sort();
    assert_eq!(names.len(), prefixes.len(), "{prefixes:?}");
    names
        .iter()
        .map(|name| {
            let raw = fs::read_to_string(dir.join(name)).unwrap();
            let record = parse_cloudhsm_record(&raw).unwrap();
            TrailEntry {
                source: LogSource::shared("/aws/cloudhsm/cluster-later", HSM),
                log_event_id: name.clone(),
                log_event_time: record.time,
                record: AuditRecord::CloudHsm(record),
                raw,
            }
        })
        .collect()
}

fn run(entries: &[TrailEntry]) -> Derived {
    derive(entries, &[], &DeriveConfig::default())
}

#[test]
fn given_an_officer_managing_users_when_derived_then_targets_are_the_users_acted_upon() {
    let derived = run(&fixtures(&["01-", "02-", "03-", "04-", "09-"]));
    assert_eq!(derived.sessions.len(), 1);
    let session = &derived.sessions[0];
    assert_eq!(session.user, "admin");
    let targets: Vec<(&str, Option<&str>)> = session
        .events
        .iter()
        .map(|event| (event.opcode.as_str(), event.target_user.as_deref()))
        .collect();
    assert_eq!(
        targets,
        vec![
            ("CN_LOGIN", None),
            ("CN_CREATE_USER", Some("bob")),
            ("CN_CHANGE_PSWD", Some("bob")),
            ("CN_CREATE_CO", Some("carol")),
            ("CN_LOGOUT", None),
        ]
    );
    // A CO changing a CU's password is routine; creating a CO is not.
    let sensitive: Vec<(&str, Option<&str>, Option<&str>)> = derived
        .alerts
        .iter()
        .filter(|alert| alert.kind == AlertKind::SensitiveOperation)
        .map(|alert| {
            (
                alert.opcode.as_ref().map_or("", |opcode| opcode.as_str()),
                alert.user.as_deref(),
                alert.detail.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        sensitive,
        vec![("CN_CREATE_CO", Some("admin"), Some("carol"))]
    );
}

#[test]
fn given_a_user_deleted_by_id_only_when_derived_then_the_trail_names_it() {
    let mut entries = fixtures(&["02-", "18-"]);
    if let AuditRecord::CloudHsm(record) = &mut entries[1].record {
        record.later_mut().target_user_name = None;
    }
    let derived = run(&entries);
    let deleted = derived
        .alerts
        .iter()
        .find(|alert| alert.opcode.as_ref().map(|o| o.as_str()) == Some("CN_DELETE_USER"))
        .unwrap();
    assert_eq!(deleted.detail.as_deref(), Some("bob"));
}

#[test]
fn given_time_information_while_a_user_is_logged_in_when_derived_then_it_is_no_activity() {
    let entries = fixtures(&["10-", "11-", "17-", "19-"]);
    let derived = run(&entries);
    assert_eq!(derived.sessions.len(), 1);
    let opcodes: Vec<&str> = derived.sessions[0]
        .events
        .iter()
        .map(|event| event.opcode.as_str())
        .collect();
    assert_eq!(opcodes, vec!["CN_LOGIN", "CN_GENERATE_KEY", "CN_LOGOUT"]);
    assert_eq!(derived.sessions[0].ended_by.as_deref(), Some("CN_LOGOUT"));
    // It stays in the trail and counts in its stream's summary.
    assert_eq!(derived.streams.len(), 1);
    assert_eq!(derived.streams[0].records, 4);
}

#[test]
fn given_keys_derived_generated_tombstoned_and_destroyed_when_derived_then_both_lifecycles_end() {
    let derived = run(&fixtures(&["10-", "11-", "14-", "15-", "16-"]));
    let summary: Vec<_> = derived
        .keys
        .iter()
        .map(|key| {
            let created = (key.created_opcode.clone(), key.created_by.as_deref());
            (key.handle, key.generation, key.state, created)
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                262150,
                1,
                KeyState::Destroyed,
                (Some(Opcode::GenerateKey), Some("bob"))
            ),
            (
                262160,
                1,
                KeyState::Tombstoned,
                (Some(Opcode::DeriveKey), Some("bob"))
            ),
        ]
    );
}

#[test]
fn given_a_key_shared_and_unshared_when_derived_then_the_lifecycle_names_users_and_times() {
    let derived = run(&fixtures(&["04-", "10-", "11-", "12-", "13-"]));
    let key = derived.keys.iter().find(|k| k.handle == 262150).unwrap();
    let shares: Vec<String> = key
        .shared_with
        .iter()
        .map(|share| {
            format!(
                "{} {} {} {:?} by {:?}",
                share.time.iso(),
                share.operation,
                share.user_id,
                share.user_name.as_deref(),
                share.by.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        shares,
        vec![
            r#"2024-03-14T10:00:11.000100Z SHARE 8 Some("carol") by Some("bob")"#,
            r#"2024-03-14T10:00:11.000100Z SHARE 10 None by Some("bob")"#,
            r#"2024-03-14T10:00:12.000100Z UNSHARE 10 None by Some("bob")"#,
        ]
    );
}

#[test]
fn given_an_officer_getting_a_token_approved_by_another_when_derived_then_the_quorum_trail() {
    let derived = run(&fixtures(&[
        "01-", "02-", "03-", "04-", "05-", "06-", "07-", "08-", "09-",
    ]));
    let tokens = &derived.quorum.tokens;
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    let token = &tokens[0];
    assert_eq!(token.hsm, HSM);
    assert_eq!(token.requested_by.as_deref(), Some("admin"));
    assert_eq!(token.approved_by, vec!["carol"]);
    assert_eq!(token.ended_by.as_deref(), Some("CN_DELETE_TOKEN"));
    assert_eq!(
        token.time.iso(),
        "2024-03-14T10:00:04.000100Z",
        "the request's time"
    );
    let steps: Vec<&str> = token.steps.iter().map(|s| s.opcode.as_str()).collect();
    assert_eq!(
        steps,
        vec!["CN_GET_TOKEN", "CN_APPROVE_TOKEN", "CN_DELETE_TOKEN"]
    );
    assert_eq!(derived.quorum.m_values.len(), 1);
    assert_eq!(
        derived.quorum.m_values[0].value, None,
        "the layout logs no M value"
    );
    assert!(
        derived
            .alerts
            .iter()
            .all(|alert| alert.kind != AlertKind::QuorumLowered)
    );
}
