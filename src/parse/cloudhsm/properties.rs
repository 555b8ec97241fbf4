//! Properties of the parser over generated records: any layout the HSMs may write parses to the record it renders.

use chrono::DateTime;
use proptest::prelude::*;

use super::*;

/// How a generated record is laid out as text.
#[derive(Debug, Clone)]
struct Layout {
    separator: &'static str,
    line_end: Option<&'static str>,
    shuffle_seed: Vec<usize>,
    extra_line: bool,
    padding: &'static str,
    zero_handles: bool,
    hex_codes: bool,
}

/// A label as the HSM could log it, with or without its code.
fn label() -> impl Strategy<Value = Labeled> {
    ("[A-Z][A-Z0-9_]{0,20}", proptest::option::of(any::<u64>())).prop_map(|(name, code)| Labeled {
        name: shared_name(name),
        code,
    })
}

/// A known opcode name or an unknown one.
fn opcode() -> impl Strategy<Value = Opcode> {
    prop_oneof![
        prop::sample::select(vec![
            "CN_LOGIN",
            "CN_LOGOUT",
            "CN_GENERATE_KEY_PAIR",
            "CN_SHARE_OBJECT",
            "CN_INIT_TOKEN",
        ])
        .prop_map(Opcode::from_name),
        "CN_[A-Z0-9_]{1,20}".prop_map(|name| Opcode::from_name(&name)),
    ]
}

/// A record whose strings cannot contain a field name or a line break.
fn record() -> impl Strategy<Value = HsmRecord> {
    (
        (
            0i64..4_102_444_800_000_000,
            any::<u64>(),
            any::<u32>(),
            label(),
            opcode(),
            proptest::option::of(any::<u64>()),
            any::<u64>(),
        ),
        (
            any::<u32>(),
            "HSM (Return|Error): [a-z_']{1,10}( [a-z_':]{1,10}){0,3}",
            label(),
            proptest::option::of("[a-z0-9_.@-]{1,8}( [a-z0-9_.@-]{1,8})?"),
            proptest::option::of(label()),
            proptest::option::of(1u64..),
            proptest::option::of(1u64..),
        ),
        later(),
    )
        .prop_map(
            |(
                (time, sequence_no, reboot_counter, command_type, opcode, opcode_code, session),
                (response_code, response_text, log_type, user_name, user_type, key, public),
                later,
            )| HsmRecord {
                time: Timestamp::from_micros(time),
                sequence_no,
                reboot_counter,
                command_type,
                opcode,
                opcode_code,
                session_handle: session,
                response_code,
                response_text: shared_name(response_text),
                log_type,
                user_name,
                user_type,
                key_handle: key,
                public_key_handle: public,
                later: later.boxed(),
            },
        )
}

/// The later layout's fields, each present or not, and unknown fields whose keys
/// follow the flattened layout's rule for them.
fn later() -> impl Strategy<Value = LaterFields> {
    use proptest::option::of;
    (
        (
            of("[0-9]{1,3}"),
            of("[0-9]{1,5}"),
            of("[a-z0-9_.@-]{1,8}"),
            of(label()),
            of("[0-9]{1,5}"),
            of("(0|1)"),
            of("(0x)?[0-9a-f]{1,6}"),
        ),
        (
            of("[0-9]{2}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}, usec:[0-9]{1,6}"),
            of("[0-9]{2}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} usec:[0-9]{1,6}"),
            of(any::<u32>()),
            of(label()),
            of(0u64..100),
            prop::collection::vec("[0-9]{1,5}", 0..4),
            prop::collection::btree_map("Z[a-z]{1,6}( [a-z]{1,6}){0,2}", "[a-z0-9.]{1,8}", 0..3),
        ),
    )
        .prop_map(
            |(
                (version, user_id, target, target_type, target_id, mfa, mechanism),
                (local, host, delay, operation, count, ids, extra),
            )| LaterFields {
                version_no: version,
                user_id,
                target_user_name: target,
                target_user_type: target_type,
                target_user_id: target_id,
                mfa_enabled: mfa,
                mechanism,
                local_time: local,
                host_time: host,
                propagation_delay_us: delay.map(u64::from),
                share_operation: operation,
                share_user_count: count,
                share_user_ids: ids,
                extra_fields: extra,
            },
        )
}

prop_compose! {
    /// One of the layouts the parser promises to read.
    fn layout()(
        separator in prop::sample::select(vec![" : ", ": ", "\t: ", ":"]),
        line_end in proptest::option::of(prop::sample::select(vec!["\n", "\r\n"])),
        shuffle_seed in prop::collection::vec(any::<usize>(), 30),
        extra_line in any::<bool>(),
        padding in prop::sample::select(vec!["", " ", "\n\n", "\r\n \t"]),
        zero_handles in any::<bool>(),
        hex_codes in any::<bool>(),
    ) -> Layout {
        Layout { separator, line_end, shuffle_seed, extra_line, padding, zero_handles, hex_codes }
    }
}

/// A label as text, its code in hex or decimal.
fn render_label(label: &Labeled, hex: bool) -> String {
    match (label.code, hex) {
        (None, _) => label.name.to_string(),
        (Some(code), true) => format!("{} ({code:#x})", label.name),
        (Some(code), false) => format!("{} ({code})", label.name),
    }
}

/// `record` as text in `layout`.
fn render(record: &HsmRecord, layout: &Layout) -> String {
    let human = DateTime::from_timestamp_micros(record.time.micros())
        .map(|time| time.format("%m/%d/%y %H:%M:%S%.6f").to_string())
        .unwrap_or_default();
    let opcode = Labeled {
        name: shared_name(record.opcode.as_str()),
        code: record.opcode_code,
    };
    let handle = |handle: Option<u64>| match (handle, layout.zero_handles) {
        (Some(handle), _) => Some(handle.to_string()),
        (None, true) => Some("0".to_owned()),
        (None, false) => None,
    };
    let mut fields: Vec<(&str, String)> = vec![
        ("Sequence No", format!("{:#x}", record.sequence_no)),
        (
            "Reboot counter",
            format!("{:#X}", record.reboot_counter).replace("0X", "0x"),
        ),
        (
            "Command Type(hex)",
            render_label(&record.command_type, true),
        ),
        ("Opcode", render_label(&opcode, true)),
        ("Session Handle", format!("{:#x}", record.session_handle)),
        (
            "Response",
            format!("{}:{}", record.response_code, record.response_text),
        ),
        ("Log type", render_label(&record.log_type, layout.hex_codes)),
    ];
    fields.extend(record.user_name.clone().map(|name| ("User Name", name)));
    fields.extend(
        record
            .user_type
            .as_ref()
            .map(|user_type| ("User Type", render_label(user_type, layout.hex_codes))),
    );
    fields.extend(handle(record.key_handle).map(|h| ("Priv/Secret Key Handle", h)));
    fields.extend(handle(record.public_key_handle).map(|h| ("Public Key Handle", h)));
    let later = record.later();
    let texts = [
        ("Version No", &later.version_no),
        ("User id", &later.user_id),
        ("Target User Name", &later.target_user_name),
        ("Target User id", &later.target_user_id),
        ("Mfa enabled", &later.mfa_enabled),
        ("Mechanism", &later.mechanism),
        ("local time", &later.local_time),
        ("host time", &later.host_time),
    ];
    for (key, value) in texts {
        fields.extend(value.clone().map(|value| (key, value)));
    }
    fields.extend(later.target_user_type.as_ref().map(|target_type| {
        (
            "Target User Type",
            render_label(target_type, layout.hex_codes),
        )
    }));
    fields.extend(
        later
            .propagation_delay_us
            .map(|delay| ("propagation delay", format!("usec:{delay}"))),
    );
    fields.extend(
        later
            .share_operation
            .as_ref()
            .map(|operation| ("Operation", render_label(operation, layout.hex_codes))),
    );
    fields.extend(
        later
            .share_user_count
            .map(|count| ("Number of Users", count.to_string())),
    );
    if !later.share_user_ids.is_empty() {
        fields.push(("UserIDs", later.share_user_ids.join(",")));
    }
    // Unknown keys are written with ` : `: the flattened layout recognises no other.
    let extra: Vec<String> = later
        .extra_fields
        .iter()
        .map(|(key, value)| format!("{key} : {value}"))
        .collect();
    fields.extend(extra.iter().map(|line| ("", line.clone())));
    for (index, seed) in layout.shuffle_seed.iter().enumerate().take(fields.len()) {
        let other = seed % fields.len();
        fields.swap(index, other);
    }
    let mut lines = vec![format!("Time: {human}, usecs:{}", record.time.micros())];
    lines.extend(fields.iter().map(|(key, value)| match *key {
        "" => value.clone(),
        key => format!("{key}{}{value}", layout.separator),
    }));
    let body = match layout.line_end {
        Some(line_end) => {
            if layout.extra_line {
                lines.insert(2, format!("Vendor Extra{}whatever: 1", layout.separator));
            }
            lines.join(line_end)
        }
        None => lines.join(" "),
    };
    format!("{}{body}{}", layout.padding, layout.padding)
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse_cloudhsm_record(&text);
        let _ = looks_like_cloudhsm_record(&text);
    }

    #[test]
    fn reads_hexadecimal_as_from_str_radix_does(text in "[0-9a-fA-F]{0,18}|[0-9a-gA-G+ ]{0,4}") {
        let expected = if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            Err(NumberError::Syntax)
        } else {
            u64::from_str_radix(&text, 16).map_err(|_| NumberError::Overflow)
        };
        prop_assert_eq!(parse_digits(&text, 16), expected);
    }

    #[test]
    fn a_line_known_by_its_name_is_split_as_at_its_first_colon(
        field in proptest::sample::select(ALL_FIELDS.to_vec()),
        expected in proptest::sample::select(ALL_FIELDS.to_vec()),
        before in "[ \t]{0,1}",
        after in "[ \t\r\u{b}\u{a0}X:]{0,3}",
        value in "[ :a\t]{0,3}",
    ) {
        let line = format!("{before}{}{after}:{value}", field.name());
        if let Some((known, value_start)) = Field::starting_line(line.as_bytes(), expected) {
            let colon = line.find(':').unwrap();
            prop_assert_eq!(Field::from_key(trim(&line[..colon])), Some(known));
            prop_assert_eq!(value_start, colon + 1);
        }
    }

    #[test]
    fn trims_as_str_trim_does(text in "[ \t\u{b}\u{a0}\u{3000}xé:]{0,6}") {
        prop_assert_eq!(trim(&text), text.trim());
    }

    #[test]
    fn record_like_text_never_panics(
        text in "(Time|usecs|Sequence No|Opcode|Response|Log type|User Name|Public Key Handle|[ \t\r\n:()x0-9a-fé€😀]){0,60}"
    ) {
        let _ = parse_cloudhsm_record(&text);
    }

    #[test]
    fn rendered_records_parse_back(record in record(), layout in layout()) {
        let text = render(&record, &layout);
        let mut expected = record;
        if layout.line_end.is_some() && layout.extra_line {
            expected
                .later_mut()
                .extra_fields
                .insert("Vendor Extra".into(), "whatever: 1".into());
        }
        prop_assert!(looks_like_cloudhsm_record(&text));
        prop_assert_eq!(parse_cloudhsm_record(&text), Ok(expected), "{:?}", text);
    }
}
