//! The vendor's example audit records, in both layouts they were published in, parsed;
//! and one record of each kind in the later field layout (`tests/fixtures/later-layout/`),
//! with its flattened, CRLF, tab-separated and reordered twins.

use std::fs;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use hsm_audit::model::{HsmRecord, Labeled, LaterFields, Opcode, shared_name};
use hsm_audit::parse::{looks_like_cloudhsm_record, parse_cloudhsm_record};
use hsm_audit::testkit::hsm_record;

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
        name: shared_name(name),
        code: Some(code),
    }
}

/// The fields most example records share, to be overridden per example.
fn mgmt_record(micros: i64, sequence_no: u64, reboot_counter: u32) -> HsmRecord {
    HsmRecord {
        opcode_code: Some(0xd),
        ..hsm_record(micros, sequence_no, reboot_counter, Opcode::Login)
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

/// Content digests of every seed record, computed before the later field layout was
/// parsed: the stored trail compares them on every redelivery, so a record in the seed's
/// layout must keep its digest or every redelivery would count as a conflicting duplicate.
const SEED_DIGESTS: &[(&str, &str)] = &[
    (
        "00-interpreting-hsm-audit-logs-0x1-gen_pswd_enc_key.txt",
        "bc9a3277ad5329e551ae4216a1b8234aca6fd9e6c8ab9d6766fd32361f3491f2",
    ),
    (
        "01-initialize-the-first-hsm-in-a-cluster-0x0-init_token.txt",
        "681fa3ab9029a58de23ccceedf1a57663d3162597e04185c3c03a30d37387e5b",
    ),
    (
        "02-interpreting-hsm-audit-logs-0x1-gen_pswd_enc_key.txt",
        "bc9a3277ad5329e551ae4216a1b8234aca6fd9e6c8ab9d6766fd32361f3491f2",
    ),
    (
        "03-initialize-the-first-hsm-in-a-cluster-0x2-create_appliance_user.txt",
        "0ec64f0b1ef0f73c5d596bc46ce3b23f0d8faf7833695e44ede7bfd64925b6ec",
    ),
    (
        "04-initialize-the-first-hsm-in-a-cluster-0x3-init_done.txt",
        "c139672b5a4b80097c469502ab0449e02dc018217f31a151c6903910271c270e",
    ),
    (
        "05-initialize-the-first-hsm-in-a-cluster-0x1d-change_pswd.txt",
        "022d8ebc5c5bc5f7578c8afc4e027dcf51e84fef2341d1e59103691345d1c2a8",
    ),
    (
        "06-login-and-logout-events-0x0-login.txt",
        "1e362cdfe673b210bf66a4e275019da4ae77dcb15b31eebbd95e7af456e2aa3d",
    ),
    (
        "07-login-and-logout-events-0x2-logout.txt",
        "1183c053e2bf8f9aff6a6b7f02a855a668915805dd5a5c13267d0c6d73b51665",
    ),
    (
        "08-login-and-logout-events-0x4-login.txt",
        "1db95b80648d9815cabf508ce489bb1fae446e07c057e4b1f91328e987b7040d",
    ),
    (
        "09-login-and-logout-events-0x5-login.txt",
        "05290547ebd5f16bb7568bd404e4b544c4c232b939615dad603e20d25c6376d7",
    ),
    (
        "10-login-and-logout-events-0x0-login.txt",
        "1e362cdfe673b210bf66a4e275019da4ae77dcb15b31eebbd95e7af456e2aa3d",
    ),
    (
        "11-create-and-delete-users-0x1-create_user.txt",
        "85c976fe2ae700fb181230ebe137d945febfd3f0e0c00847bde2190a6b1dcffc",
    ),
    (
        "12-create-and-delete-users-0x2-create_co.txt",
        "4ccf622ff2952639d572d1ec92ebb509f4d6a273d6f9ec79ad531943c134fafe",
    ),
    (
        "13-create-and-delete-users-0xb-delete_user.txt",
        "5ed483f9cccba8789a3520e929d056708ddb7bd550e820cac7311d1f2ce9ff5e",
    ),
    (
        "14-create-and-delete-a-key-pair-0x28-login.txt",
        "30a94f894876fd6087a6e8a0a23ca097377f550b97001e97f5b688ca73e43939",
    ),
    (
        "15-create-and-delete-a-key-pair-0x29-generate_key_pair.txt",
        "8d4bbbe153e5858b0527bf910e00dbe9764f4654d17ebdb863d59c8268935fd7",
    ),
    (
        "16-create-and-delete-a-key-pair-0x2a-destroy_object.txt",
        "de00979226606e65912e06f79344e6aa900a8712b0302a61e1d6fa5124fe2c6f",
    ),
    (
        "17-create-and-delete-a-key-pair-0x2b-destroy_object.txt",
        "d9549e2db176e9f21f24cff97cc90eb5667e56291c5add507fc25d48bed0d9d0",
    ),
    (
        "18-create-and-delete-a-key-pair-0x2c-logout.txt",
        "3d4e08fa1e12f9a6f47ec3ca70f1d113d69e0f67a2c7988bb6514769977ae187",
    ),
    (
        "19-generate-and-synchronize-a-key-0x0-login.txt",
        "e896eb3a1327c36d5af09b24e44fd66d9d54a91b4a824e7b3854564477f08c50",
    ),
    (
        "20-generate-and-synchronize-a-key-0x1-generate_key.txt",
        "195512e49d946b90c530ea108826e0fa02bd8997d21881f9cb57fe5001ae5a0c",
    ),
    (
        "21-generate-and-synchronize-a-key-0x2-extract_masked_object_user.txt",
        "c91179d5b3322afb3ae0b7db3c0c1e78646b413f7234b3c496b990ff48dc1d64",
    ),
    (
        "22-generate-and-synchronize-a-key-0xd-login.txt",
        "9552ce403170aec2ca3fd965d76306a62fe68f14786ed3280484496d6a3bdab3",
    ),
    (
        "23-generate-and-synchronize-a-key-0xe-insert_masked_object_user.txt",
        "2b1aaede31f7654a1c411bf10c1f3e12cc22de80b81274dbed954ff4bb94a7cb",
    ),
    (
        "24-export-a-key-0x26-login.txt",
        "1ee5ed13c4f040934116fa2287a725428aa0c604fb150fec7058a9ab41d08a9a",
    ),
    (
        "25-export-a-key-0x27-wrap_key.txt",
        "4fa09b7bd70191f5ba27696d31b6d462952e864dc877f4a9edbf3ff034e46cbd",
    ),
    (
        "26-export-a-key-0x28-nist_aes_wrap.txt",
        "890767682aa2d937e53679a9d689ab156d0a9a9f7f1c7c211589ba1b02eec5e3",
    ),
    (
        "27-import-a-key-0x29-nist_aes_wrap.txt",
        "238586947f2269293f9b9de3b7cdb2a41b7c9f1ea726a792a2d2d9389796e37a",
    ),
    (
        "28-import-a-key-0x2a-unwrap_key.txt",
        "9ccbdfb2911f26cddabfa80e6c966d7eb01ae1ffad984dd37a507f8e7c709f56",
    ),
    (
        "29-import-a-key-0x2b-extract_masked_object_user.txt",
        "81a67467e11b9579b3d33d88a3b852c2ad83529dfcb83b5c5e686585648895c9",
    ),
    (
        "30-import-a-key-0xb-insert_masked_object_user.txt",
        "294a7502fa5d054faf25c7aa6ce8d6adb58e0d70a1a65ba41c2a3a3bdee6ac07",
    ),
    (
        "31-share-and-unshare-a-key-0x3f-share_object.txt",
        "54bc849376da6a394d0982cfc25e58b9a62a1d9bc8146f97b0c94506303f53d5",
    ),
];

#[test]
fn seed_records_keep_their_content_digest() {
    let names = record_files("seed-000");
    let actual: Vec<(String, String)> = names
        .iter()
        .map(|name| {
            (
                name.clone(),
                parse_fixture("seed-000", name).content_sha256(),
            )
        })
        .collect();
    assert_eq!(actual.len(), SEED_DIGESTS.len());
    for ((name, digest), (pinned_name, pinned)) in actual.iter().zip(SEED_DIGESTS) {
        assert_eq!(name, pinned_name);
        assert_eq!(digest, pinned, "{name}");
    }
}

/// One later-layout fixture, as text.
fn later_text(name: &str) -> String {
    fs::read_to_string(seed_dir("later-layout").join(name)).unwrap()
}

/// The later-layout fixture whose name starts with `prefix`, parsed.
fn later(prefix: &str) -> HsmRecord {
    let name = record_files("later-layout")
        .into_iter()
        .find(|name| name.starts_with(prefix))
        .unwrap();
    parse_fixture("later-layout", &name)
}

/// `text` with its fields after `Time` in reverse order.
fn reordered(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1..].reverse();
    lines.join("\n")
}

#[test]
fn later_layout_records_parse_alike_in_every_layout() {
    let names = record_files("later-layout");
    assert_eq!(names.len(), 19);
    for name in &names {
        let text = later_text(name);
        let record = parse_fixture("later-layout", name);
        let twins = [
            ("flattened", text.trim().replace('\n', " ")),
            ("crlf", text.replace('\n', "\r\n")),
            ("tab", text.replace(" : ", "\t: ")),
            ("no blank", text.replace(" : ", ": ")),
            ("reordered", reordered(&text)),
            ("reordered flattened", reordered(&text).replace('\n', " ")),
        ];
        for (layout, twin) in twins {
            assert_eq!(
                parse_cloudhsm_record(&twin).as_ref(),
                Ok(&record),
                "{name} {layout}"
            );
        }
        assert_eq!(record.later().version_no.as_deref(), Some("2"), "{name}");
        assert_eq!(record.later().propagation_delay_us, Some(40), "{name}");
        assert!(record.later().local_time.is_some() && record.later().host_time.is_some());
    }
}

#[test]
fn later_layout_create_user_names_actor_and_target() {
    let expected = HsmRecord {
        opcode: Opcode::CreateUser,
        opcode_code: Some(0x3),
        session_handle: 0x2004001,
        log_type: label("MGMT_USER_DETAILS_LOG", 2),
        user_name: Some("admin".into()),
        user_type: Some(label("CN_CRYPTO_OFFICER", 2)),
        later: Some(Box::new(LaterFields {
            version_no: Some("2".into()),
            user_id: Some("2".into()),
            target_user_name: Some("bob".into()),
            target_user_type: Some(label("CN_CRYPTO_USER", 1)),
            target_user_id: Some("7".into()),
            mfa_enabled: Some("0".into()),
            local_time: Some("03/14/24 10:00:01, usec:100".into()),
            host_time: Some("03/14/24 10:00:01 usec:60".into()),
            propagation_delay_us: Some(40),
            ..LaterFields::default()
        })),
        ..mgmt_record(1710410401000100, 0x11, 0x3)
    };
    assert_eq!(later("02-"), expected);
}

#[test]
fn later_layout_share_and_unshare_name_operation_and_users() {
    let share = later("12-");
    assert_eq!(share.opcode, Opcode::ShareObject);
    assert_eq!(share.key_handle, Some(262150));
    assert_eq!(share.public_key_handle, None);
    assert_eq!(share.later().share_operation, Some(label("SHARE", 1)));
    assert_eq!(share.later().share_user_count, Some(2));
    assert_eq!(share.later().share_user_ids, vec!["8", "10"]);
    assert_eq!(share.user_name, None);
    let unshare = later("13-");
    assert_eq!(unshare.later().share_operation, Some(label("UNSHARE", 2)));
    assert_eq!(unshare.later().share_user_ids, vec!["10"]);
}

#[test]
fn later_layout_key_handles_after_public_and_mechanism() {
    let derive = later("14-");
    assert_eq!(derive.opcode, Opcode::DeriveKey);
    assert_eq!(derive.opcode_code, None);
    assert_eq!(derive.key_handle, Some(262160));
    assert_eq!(derive.later().mechanism.as_deref(), Some("4353"));
    assert_eq!(later("11-").later().mechanism.as_deref(), Some("4224"));
    assert_eq!(later("15-").opcode, Opcode::TombstoneObject);
}

#[test]
fn later_layout_time_information_keeps_its_command_type() {
    let record = later("17-");
    assert_eq!(record.command_type, label("CN_TIME_INFO", 0xeee2));
    assert_eq!(record.user_name, None);
}

#[test]
fn unknown_fields_are_kept_in_every_layout() {
    let record = later("19-");
    let expected: BTreeMap<String, String> = [
        ("Audit Policy".to_owned(), "0x3".to_owned()),
        ("Session Origin".to_owned(), "10.0.0.5".to_owned()),
    ]
    .into();
    assert_eq!(record.later().extra_fields, expected);
    assert_eq!(record.user_name.as_deref(), Some("bob"));
    assert_eq!(record.later().user_id.as_deref(), Some("7"));
    // Not a field, a note: kept whole, a second value of one key after a line break.
    let text = format!(
        "{}Audit Policy : 0x4\nno colon here\n",
        later_text("19-unknown-fields.txt")
    );
    let twice = parse_cloudhsm_record(&text).unwrap();
    assert_eq!(
        twice
            .later()
            .extra_fields
            .get("Audit Policy")
            .map(String::as_str),
        Some("0x3\n0x4")
    );
}

#[test]
fn seed_records_have_no_later_fields() {
    for seed in ["seed-000", "seed-002"] {
        for name in record_files(seed) {
            assert_eq!(parse_fixture(seed, &name).later, None, "{seed}/{name}");
        }
    }
}
