//! The parser's cases: byte helpers, fields, numbers, and records as the HSMs write them.

use super::*;

#[test]
fn the_byte_helpers_cut_and_trim_as_the_char_patterns_do() {
    for text in [
        "",
        "\n",
        "a\nb\n",
        " Key : v:w \r",
        "\u{a0}é : x\u{b}",
        "\u{b} x \u{85}",
        "\t\u{3000}",
        "no colon",
        " ",
        "  x",
        " x ",
        " \u{a0}x",
        " x\u{3000}",
        "x",
    ] {
        assert_eq!(trim(text), text.trim(), "{text:?}");
        assert_eq!(
            split_once_at_byte(text, b':'),
            text.split_once(':'),
            "{text:?}"
        );
    }
    for (text, needle) in [
        ("usecs:1, usecs:2", "usecs"),
        ("u usec usecs", "usecs"),
        ("use", "usecs"),
        ("é Sequence No", "Sequence No"),
        ("", "x"),
    ] {
        assert_eq!(find_short(text, needle), text.find(needle), "{text:?}");
    }
}

use crate::testkit::INIT_TOKEN_RECORD as INIT_TOKEN;

const FAILED_LOGIN: &str = "Time: 01/24/18 17:41:39.037255, usecs:1516815699037255
Sequence No : 0x4
Reboot counter : 0x107
Command Type(hex) : CN_MGMT_CMD (0x0)
Opcode : CN_LOGIN (0xd)
Session Handle : 0xc008002
Response : 157:HSM Error: user isn't initialized or user with this name doesn't exist
Log type : MGMT_USER_DETAILS_LOG (2)
User Name : ExampleUser
User Type : CN_CRYPTO_USER (1)
";

/// The record in [`INIT_TOKEN`], typed.
fn init_token() -> HsmRecord {
    HsmRecord {
        opcode_code: Some(1),
        session_handle: 0x1004001,
        ..crate::testkit::hsm_record(1513717276962174, 0, 0xe8, Opcode::InitToken)
    }
}

/// [`INIT_TOKEN`] with one line replaced, for probing one field at a time.
fn with_line(prefix: &str, line: &str) -> String {
    INIT_TOKEN
        .lines()
        .map(|original| {
            if original.starts_with(prefix) {
                line
            } else {
                original
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The error message for [`INIT_TOKEN`] with one line replaced.
fn error_with_line(prefix: &str, line: &str) -> String {
    parse_cloudhsm_record(&with_line(prefix, line))
        .unwrap_err()
        .to_string()
}

#[test]
fn multi_line_record_is_typed() {
    assert_eq!(parse_cloudhsm_record(INIT_TOKEN).unwrap(), init_token());
}

#[test]
fn every_separator_and_line_end_gives_the_same_record() {
    let expected = init_token();
    for separator in [" : ", ": ", "\t: ", " :", ":", "  :  "] {
        for line_end in ["\n", "\r\n"] {
            let text = INIT_TOKEN.replace(" : ", separator).replace('\n', line_end);
            assert_eq!(
                parse_cloudhsm_record(&text).unwrap(),
                expected,
                "{separator:?} {line_end:?}"
            );
        }
    }
}

#[test]
fn flattened_record_is_split_on_field_names() {
    let flat = INIT_TOKEN.trim().replace('\n', " ");
    assert_eq!(parse_cloudhsm_record(&flat).unwrap(), init_token());
    let tight = INIT_TOKEN.trim().replace(" : ", ":").replace('\n', " ");
    assert_eq!(parse_cloudhsm_record(&tight).unwrap(), init_token());
}

#[test]
fn surrounding_blank_lines_and_whitespace_are_ignored() {
    let padded = format!("\r\n \n\t{INIT_TOKEN}\n\r\n  \t");
    assert_eq!(parse_cloudhsm_record(&padded).unwrap(), init_token());
    let flat = format!("  {}  \n", INIT_TOKEN.trim().replace('\n', " "));
    assert_eq!(parse_cloudhsm_record(&flat).unwrap(), init_token());
}

#[test]
fn response_text_keeps_its_colons_and_loses_surrounding_blanks() {
    let record = parse_cloudhsm_record(FAILED_LOGIN).unwrap();
    assert_eq!(record.response_code, 157);
    assert_eq!(
        record.response_text,
        "HSM Error: user isn't initialized or user with this name doesn't exist"
    );
    let spaced = with_line("Response", "Response : 0: HSM Return: SUCCESS ");
    assert_eq!(parse_cloudhsm_record(&spaced).unwrap(), init_token());
    let bare = with_line("Response", "Response : 163");
    let record = parse_cloudhsm_record(&bare).unwrap();
    assert_eq!(
        (record.response_code, record.response_text.as_ref()),
        (163, "")
    );
}

#[test]
fn flattened_response_ends_where_the_next_field_begins() {
    let flat = FAILED_LOGIN.trim().replace('\n', " ");
    assert_eq!(
        parse_cloudhsm_record(&flat).unwrap(),
        parse_cloudhsm_record(FAILED_LOGIN).unwrap()
    );
}

#[test]
fn user_fields_are_read() {
    let record = parse_cloudhsm_record(FAILED_LOGIN).unwrap();
    assert_eq!(record.user_name.as_deref(), Some("ExampleUser"));
    assert_eq!(
        record.user_type,
        Some(Labeled {
            name: "CN_CRYPTO_USER".into(),
            code: Some(1)
        })
    );
}

#[test]
fn hex_digits_may_be_either_case() {
    let text = with_line("Session Handle", "Session Handle : 0XAbCdEf").replace("0xe8", "0xE8");
    let record = parse_cloudhsm_record(&text).unwrap();
    assert_eq!(record.session_handle, 0xabcdef);
    assert_eq!(record.reboot_counter, 0xe8);
}

#[test]
fn labels_may_lack_a_code_and_codes_may_be_decimal_or_hex() {
    let text = with_line("Log type", "Log type : GENERIC_LOG");
    let record = parse_cloudhsm_record(&text).unwrap();
    assert_eq!(
        record.log_type,
        Labeled {
            name: "GENERIC_LOG".into(),
            code: None
        }
    );
    let text = with_line("Opcode", "Opcode : CN_INIT_TOKEN");
    let record = parse_cloudhsm_record(&text).unwrap();
    assert_eq!(
        (record.opcode, record.opcode_code),
        (Opcode::InitToken, None)
    );
    let text = with_line("Log type", "Log type : MINIMAL_LOG_ENTRY(0x10)");
    assert_eq!(
        parse_cloudhsm_record(&text).unwrap().log_type.code,
        Some(16)
    );
}

#[test]
fn unknown_names_survive_verbatim() {
    let text = with_line("Opcode", "Opcode : CN_FUTURE_THING (0x1ff)")
        .replace("CN_MGMT_CMD (0x0)", "CN_NEW_CMD (0x7)")
        .replace("MINIMAL_LOG_ENTRY (0)", "Shiny Log (9)");
    let record = parse_cloudhsm_record(&text).unwrap();
    assert_eq!(record.opcode, Opcode::Other("CN_FUTURE_THING".into()));
    assert_eq!(record.opcode_code, Some(0x1ff));
    assert_eq!(record.command_type.name, "CN_NEW_CMD");
    assert_eq!(record.log_type.name, "Shiny Log");
    let text = FAILED_LOGIN.replace("CN_CRYPTO_USER (1)", "CN_ROBOT (77)");
    let user_type = parse_cloudhsm_record(&text).unwrap().user_type.unwrap();
    assert_eq!(
        (user_type.name.as_ref(), user_type.code),
        ("CN_ROBOT", Some(77))
    );
}

#[test]
fn key_handles_of_zero_mean_no_key() {
    let text = format!("{INIT_TOKEN}Priv/Secret Key Handle : 131079\nPublic Key Handle : 0\n");
    let record = parse_cloudhsm_record(&text).unwrap();
    assert_eq!(
        (record.key_handle, record.public_key_handle),
        (Some(131079), None)
    );
    let text = format!("{INIT_TOKEN}Priv/Secret Key Handle : 0\nPublic Key Handle : 6\n");
    let record = parse_cloudhsm_record(&text).unwrap();
    assert_eq!(
        (record.key_handle, record.public_key_handle),
        (None, Some(6))
    );
}

#[test]
fn unknown_fields_are_kept_and_empty_optional_fields_ignored() {
    let text = format!("{INIT_TOKEN}Firmware Build : 3.4.1: extra\nno colon here\nUser Name :\n");
    let mut expected = init_token();
    expected
        .later_mut()
        .extra_fields
        .insert("Firmware Build".into(), "3.4.1: extra".into());
    assert_eq!(parse_cloudhsm_record(&text).unwrap(), expected);
    let flat = format!(
        "{} Firmware Build : 3.4.1 Backup Mode : FIPS (2) User Name :",
        INIT_TOKEN.trim().replace('\n', " ")
    );
    expected
        .later_mut()
        .extra_fields
        .insert("Firmware Build".into(), "3.4.1".into());
    expected
        .later_mut()
        .extra_fields
        .insert("Backup Mode".into(), "FIPS (2)".into());
    assert_eq!(parse_cloudhsm_record(&flat).unwrap(), expected);
}

#[test]
fn flattened_unknown_keys_never_swallow_values_or_known_fields() {
    // All capitals, an underscore or a parenthesised code is a value, not a key.
    for value in ["HSM Return: SUCCESS", "CN_CRYPTO_USER (1)", "AB CD"] {
        assert_eq!(unknown_key_at(&format!("{value} : x"), 0), None, "{value}");
    }
    let text = "Mfa level User Name : bob";
    assert_eq!(unknown_key_at(text, 0), None);
    assert_eq!(
        unknown_key_at("Some New Key : 1", 0),
        Some(("Some New Key", 14))
    );
    assert_eq!(
        unknown_key_at("Key: 1", 0),
        None,
        "a blank before `:` is needed"
    );
    assert_eq!(unknown_key_at("One two three four five : 1", 0), None);
}

#[test]
fn field_order_does_not_matter() {
    let mut lines: Vec<&str> = INIT_TOKEN.lines().collect();
    lines.reverse();
    assert_eq!(
        parse_cloudhsm_record(&lines.join("\n")).unwrap(),
        init_token()
    );
    assert_eq!(
        parse_cloudhsm_record(&lines.join(" ")).unwrap(),
        init_token()
    );
}

#[test]
fn field_names_are_case_sensitive() {
    assert_eq!(
        error_with_line("Opcode", "opcode : CN_INIT_TOKEN (0x1)"),
        "missing field `Opcode`"
    );
}

#[test]
fn bad_hex_names_field_and_rule() {
    assert_eq!(
        error_with_line("Sequence No", "Sequence No : 0xZZ"),
        "field `Sequence No`: `0xZZ` is not a hexadecimal number"
    );
    assert_eq!(
        error_with_line("Sequence No", "Sequence No : 12"),
        "field `Sequence No`: `12` is not a hexadecimal number"
    );
    assert_eq!(
        error_with_line("Session Handle", "Session Handle : 0x"),
        "field `Session Handle`: `0x` is not a hexadecimal number"
    );
    assert_eq!(
        error_with_line("Sequence No", "Sequence No : -0x1"),
        "field `Sequence No`: `-0x1` is not a hexadecimal number"
    );
}

#[test]
fn overflow_names_field_and_width() {
    assert_eq!(
        error_with_line("Reboot counter", "Reboot counter : 0x100000000"),
        "field `Reboot counter`: `0x100000000` does not fit in 32 bits"
    );
    assert_eq!(
        error_with_line("Reboot counter", "Reboot counter : 0x1000000000000000000"),
        "field `Reboot counter`: `0x1000000000000000000` does not fit in 32 bits"
    );
    assert_eq!(
        error_with_line("Sequence No", "Sequence No : 0x10000000000000000"),
        "field `Sequence No`: `0x10000000000000000` does not fit in 64 bits"
    );
    let record = parse_cloudhsm_record(&with_line(
        "Sequence No",
        "Sequence No : 0x0000000000000000ffffffffffffffff",
    ))
    .unwrap();
    assert_eq!(record.sequence_no, u64::MAX);
    assert_eq!(
        error_with_line("Response", "Response : 4294967296:HSM Error: big"),
        "field `Response`: `4294967296:HSM Error: big` has a code that does not fit in 32 bits"
    );
}

#[test]
fn missing_and_empty_fields_are_named() {
    for field in ALL_FIELDS.into_iter().skip(1).take(7) {
        let text: String = INIT_TOKEN
            .lines()
            .filter(|line| !line.starts_with(field.name()))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            parse_cloudhsm_record(&text).unwrap_err(),
            ParseError::MissingField {
                field: field.name()
            }
        );
    }
    assert_eq!(
        error_with_line("Opcode", "Opcode : "),
        "field `Opcode` is empty"
    );
}

#[test]
fn no_time_is_not_a_record() {
    let text: String = INIT_TOKEN.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        parse_cloudhsm_record(&text).unwrap_err().to_string(),
        "not a CloudHSM audit record: no `Time:` field"
    );
    assert_eq!(
        parse_cloudhsm_record("").unwrap_err(),
        ParseError::NotARecord
    );
    assert_eq!(
        parse_cloudhsm_record("hello world").unwrap_err(),
        ParseError::NotARecord
    );
}

#[test]
fn bad_time_names_the_rule() {
    assert_eq!(
        error_with_line("Time", "Time: 12/19/17 21:01:16.962174"),
        "field `Time`: `12/19/17 21:01:16.962174` has no `usecs:` value"
    );
    assert_eq!(
        error_with_line("Time", "Time: 12/19/17, usecs:15137x"),
        "field `Time`: `12/19/17, usecs:15137x` has a `usecs:` value that is not a decimal number"
    );
    assert_eq!(
        error_with_line("Time", "Time: usecs:-5"),
        "field `Time`: `usecs:-5` has a `usecs:` value that is not a decimal number"
    );
    assert_eq!(
        error_with_line("Time", "Time: usecs:9223372036854775808"),
        "field `Time`: `usecs:9223372036854775808` has a `usecs:` value that does not fit in 63 bits"
    );
}

#[test]
fn bad_labels_and_responses_name_the_rule() {
    assert_eq!(
        error_with_line("Opcode", "Opcode : CN_LOGIN (0xZZ)"),
        "field `Opcode`: `CN_LOGIN (0xZZ)` is not a number"
    );
    assert_eq!(
        error_with_line("Log type", "Log type : (2)"),
        "field `Log type`: `(2)` has a code but no name"
    );
    assert_eq!(
        error_with_line("Response", "Response : OK:fine"),
        "field `Response`: `OK:fine` does not start with a decimal code"
    );
    let text = format!("{INIT_TOKEN}Public Key Handle : 12ab\n");
    assert_eq!(
        parse_cloudhsm_record(&text).unwrap_err().to_string(),
        "field `Public Key Handle`: `12ab` is not a number"
    );
}

#[test]
fn repeated_fields_are_refused() {
    let text = format!("{INIT_TOKEN}Opcode : CN_LOGIN (0xd)\n");
    assert_eq!(
        parse_cloudhsm_record(&text).unwrap_err().to_string(),
        "field `Opcode` appears more than once"
    );
    let flat = format!(
        "{} Opcode : CN_LOGIN (0xd)",
        INIT_TOKEN.trim().replace('\n', " ")
    );
    assert_eq!(
        parse_cloudhsm_record(&flat).unwrap_err(),
        ParseError::DuplicateField { field: "Opcode" }
    );
}

#[test]
fn long_values_are_quoted_short() {
    let long = format!("Sequence No : 0x{}", "é".repeat(500));
    let ParseError::Invalid { value, .. } =
        parse_cloudhsm_record(&with_line("Sequence No", &long)).unwrap_err()
    else {
        panic!("expected an invalid value");
    };
    assert_eq!(value.chars().count(), QUOTE_LIMIT + 1);
    assert!(value.ends_with('…'));
}

#[test]
fn looks_like_needs_time_first_and_a_sequence_number() {
    assert!(looks_like_cloudhsm_record(INIT_TOKEN));
    assert!(looks_like_cloudhsm_record(&format!("\r\n  {INIT_TOKEN}")));
    assert!(looks_like_cloudhsm_record("Time\t: x Sequence No"));
    assert!(!looks_like_cloudhsm_record("Timestamp: x Sequence No"));
    assert!(!looks_like_cloudhsm_record("Time: x"));
    assert!(!looks_like_cloudhsm_record(
        "{\"Time\": 1, \"Sequence No\": 2}"
    ));
    assert!(!looks_like_cloudhsm_record(""));
}

#[test]
fn common_labels_are_read_as_any_other_label() {
    for &value in COMMON_LABELS {
        let (name, code) = parse_label(Field::LogType, value).unwrap();
        let read = Labeled {
            name: shared_name(name),
            code,
        };
        assert_eq!(common_label(value), Some(read), "{value}");
        assert!(matches!(
            common_label(value).unwrap().name,
            std::borrow::Cow::Borrowed(_)
        ));
    }
    assert_eq!(common_label("CN_MGMT_CMD  (0x0)"), None);
}

#[test]
fn every_field_indexes_its_own_slot() {
    for (index, field) in ALL_FIELDS.into_iter().enumerate() {
        assert_eq!(field as usize, index, "{field:?}");
        assert_eq!(Field::from_key(field.name()), Some(field));
    }
}

#[test]
fn cr_only_line_ends_are_read_too() {
    let text = INIT_TOKEN.replace('\n', "\r");
    assert_eq!(parse_cloudhsm_record(&text).unwrap(), init_token());
}

#[test]
fn empty_value_before_the_next_name_is_empty() {
    let flat = format!(
        "{} User Name : User Type : CN_X",
        INIT_TOKEN.trim().replace('\n', " ")
    );
    let record = parse_cloudhsm_record(&flat).unwrap();
    assert_eq!(record.user_name, None);
    assert_eq!(
        record.user_type.map(|user_type| user_type.name),
        Some("CN_X".into())
    );
}

#[test]
fn digits_refuse_signs_and_report_syntax_before_overflow() {
    assert_eq!(parse_digits("+1", 10), Err(NumberError::Syntax));
    assert_eq!(
        parse_digits("99999999999999999999x", 10),
        Err(NumberError::Syntax)
    );
    assert_eq!(
        parse_digits("18446744073709551616", 10),
        Err(NumberError::Overflow)
    );
    assert_eq!(parse_digits("18446744073709551615", 10), Ok(u64::MAX));
    assert_eq!(parse_digits("fF", 16), Ok(255));
}
