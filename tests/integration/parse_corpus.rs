//! The vendor's example audit records, in both layouts they were published in, parsed.

use std::fs;
use std::path::{Path, PathBuf};

use hsm_audit::model::{HsmRecord, Labeled, Opcode, Timestamp};
use hsm_audit::parse::{looks_like_cloudhsm_record, parse_cloudhsm_record};

/// The directory of one fixture seed.
fn seed_dir(seed: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(seed)
}

/// The file names of one seed's records, sorted.
fn record_files(seed: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(seed_dir(seed))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".txt"))
        .collect();
    names.sort();
    names
}

/// One fixture record, parsed.
fn parse_fixture(seed: &str, name: &str) -> HsmRecord {
    let path = seed_dir(seed).join(name);
    let text = fs::read_to_string(&path).unwrap();
    assert!(looks_like_cloudhsm_record(&text), "{}", path.display());
    parse_cloudhsm_record(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The seed-000 fixture whose name starts with `prefix`, parsed.
fn example(prefix: &str) -> HsmRecord {
    let name = record_files("seed-000")
        .into_iter()
        .find(|name| name.starts_with(prefix))
        .unwrap();
    parse_fixture("seed-000", &name)
}

/// A label with a code.
fn label(name: &str, code: u64) -> Labeled {
    Labeled {
        name: name.into(),
        code: Some(code),
    }
}

/// The fields most example records share, to be overridden per example.
fn mgmt_record(micros: i64, sequence_no: u64, reboot_counter: u32) -> HsmRecord {
    HsmRecord {
        time: Timestamp::from_micros(micros),
        sequence_no,
        reboot_counter,
        command_type: label("CN_MGMT_CMD", 0),
        opcode: Opcode::Login,
        opcode_code: Some(0xd),
        session_handle: 0,
        response_code: 0,
        response_text: "HSM Return: SUCCESS".into(),
        log_type: label("MINIMAL_LOG_ENTRY", 0),
        user_name: None,
        user_type: None,
        key_handle: None,
        public_key_handle: None,
    }
}

#[test]
fn both_layouts_of_every_example_give_the_same_record() {
    let multi_line = record_files("seed-000");
    let flattened = record_files("seed-002");
    assert_eq!(multi_line.len(), 32);
    assert_eq!(flattened, multi_line);
    for name in &multi_line {
        assert_eq!(
            parse_fixture("seed-002", name),
            parse_fixture("seed-000", name),
            "{name}"
        );
    }
}

#[test]
fn file_names_agree_with_sequence_number_and_opcode() {
    for name in record_files("seed-000") {
        let record = parse_fixture("seed-000", &name);
        let stem = name.trim_end_matches(".txt");
        let (rest, opcode) = stem.rsplit_once('-').unwrap();
        let (_, sequence) = rest.rsplit_once('-').unwrap();
        assert_eq!(format!("{:#x}", record.sequence_no), sequence, "{name}");
        assert_eq!(
            record.opcode.as_str(),
            format!("CN_{}", opcode.to_uppercase()),
            "{name}"
        );
        assert!(!matches!(record.opcode, Opcode::Other(_)), "{name}");
    }
}

#[test]
fn interpreting_first_hsm_init_token() {
    let expected = HsmRecord {
        opcode: Opcode::InitToken,
        opcode_code: Some(0x1),
        session_handle: 0x1004001,
        ..mgmt_record(1513717276962174, 0x0, 0xe8)
    };
    assert_eq!(example("01-"), expected);
    assert_eq!(expected.time.iso(), "2017-12-19T21:01:16.962174Z");
}

#[test]
fn initialize_appliance_user_is_created() {
    let expected = HsmRecord {
        opcode: Opcode::CreateApplianceUser,
        opcode_code: Some(0xfc),
        session_handle: 0x1004001,
        log_type: label("MGMT_USER_DETAILS_LOG", 2),
        user_name: Some("app_user".into()),
        user_type: Some(label("CN_APPLIANCE_USER", 5)),
        ..mgmt_record(1513717277174902, 0x2, 0xe8)
    };
    assert_eq!(example("03-"), expected);
}

#[test]
fn login_failed_for_user_that_does_not_exist_157() {
    let expected = HsmRecord {
        session_handle: 0xc008002,
        response_code: 157,
        response_text: "HSM Error: user isn't initialized or user with this name doesn't exist"
            .into(),
        log_type: label("MGMT_USER_DETAILS_LOG", 2),
        user_name: Some("ExampleUser".into()),
        user_type: Some(label("CN_CRYPTO_USER", 1)),
        ..mgmt_record(1516815699037255, 0x4, 0x107)
    };
    let record = example("08-");
    assert_eq!(record, expected);
    assert!(!record.succeeded());
}

#[test]
fn login_failed_with_wrong_password_163() {
    let expected = HsmRecord {
        session_handle: 0xc008002,
        response_code: 163,
        response_text: "HSM Error: RET_USER_LOGIN_FAILURE".into(),
        log_type: label("MGMT_USER_DETAILS_LOG", 2),
        user_name: Some("testuser".into()),
        user_type: Some(label("CN_CRYPTO_USER", 1)),
        ..mgmt_record(1516815865013218, 0x5, 0x107)
    };
    assert_eq!(example("09-"), expected);
}

#[test]
fn create_key_pair_with_handles_131079_and_131078() {
    let expected = HsmRecord {
        opcode: Opcode::GenerateKeyPair,
        opcode_code: Some(0x19),
        session_handle: 0x2014004,
        log_type: label("MGMT_KEY_DETAILS_LOG", 1),
        key_handle: Some(131079),
        public_key_handle: Some(131078),
        ..mgmt_record(1513206544761594, 0x29, 0xe8)
    };
    assert_eq!(example("15-"), expected);
}

#[test]
fn delete_key_pair_has_no_public_key_handle() {
    let expected = HsmRecord {
        opcode: Opcode::DestroyObject,
        opcode_code: Some(0x11),
        session_handle: 0x2014004,
        log_type: label("MGMT_KEY_DETAILS_LOG", 1),
        key_handle: Some(131078),
        public_key_handle: None,
        ..mgmt_record(1513206544813977, 0x2a, 0xe8)
    };
    assert_eq!(example("16-"), expected);
}

#[test]
fn share_object_with_unknown_log_type_and_no_user_or_key() {
    let expected = HsmRecord {
        opcode: Opcode::ShareObject,
        opcode_code: Some(0x12),
        session_handle: 0x3014007,
        log_type: label("UNKNOWN_LOG_TYPE", 5),
        ..mgmt_record(1549654539480168, 0x3f, 0x38)
    };
    assert_eq!(example("31-"), expected);
}
