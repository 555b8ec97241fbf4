//! The CloudHSM audit record parser, for every layout a record reaches us in.
//!
//! Two layouts exist in the wild: one `Key : value` line per field (with ` : `, `: ` or
//! `\t: ` between key and value, LF or CRLF), and the whole record flattened onto one
//! line. A multi-line record is split at line ends, so a value may hold anything but a
//! line break; a flattened record can only be split where a known field name followed by
//! `:` begins, so there a value must not contain ` <known field name>:`. Neither the
//! vendor's response texts nor its user names do. Fields may come in any order: the
//! later layout logs `Opcode` before `Command Type(hex)` and may log `Priv/Secret Key
//! Handle` after `Public Key Handle`.
//!
//! Leniency: a `Key : value` whose key this version does not know is kept in the record's
//! `extra_fields`, never dropped and never a reason to refuse the record. On its own line
//! any key is recognised. In a flattened record nothing marks where an unknown key
//! begins, so one is recognised only as one to four words, the first capitalised and not all
//! capitals (so `HSM` or a code-less label is never one), made of letters, digits and
//! `/()-` (no `_`, so `CN_…` values never qualify), followed by blanks, `:` and a blank,
//! and not running into a known field name. A capitalised word ending
//! the value before it can therefore be read as part of the unknown key; the record's
//! original text is kept in the trail (`raw`) for that case.
//!
//! Parsing borrows from the input until the record is built, so the only allocations are
//! the owned strings the record keeps.

use std::collections::BTreeMap;

use crate::model::{HsmRecord, Labeled, LaterFields, Opcode, Timestamp, shared_name};
use crate::swar::{decimal, find_byte, find_either_byte};

/// Why a text is not a usable CloudHSM audit record. Values quoted in messages are cut
/// short, because the input may be arbitrarily large and ends up in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text has no `Time:` field, which every CloudHSM audit record starts with.
    #[error("not a CloudHSM audit record: no `Time:` field")]
    NotARecord,
    /// A field every record carries is absent.
    #[error("missing field `{field}`")]
    MissingField { field: &'static str },
    /// A field occurs twice, so it is ambiguous which one the HSM meant.
    #[error("field `{field}` appears more than once")]
    DuplicateField { field: &'static str },
    /// A field is present with nothing after its `:`.
    #[error("field `{field}` is empty")]
    EmptyField { field: &'static str },
    /// A field's value breaks the rule its type follows.
    #[error("field `{field}`: `{value}` {rule}")]
    Invalid {
        field: &'static str,
        value: String,
        rule: &'static str,
    },
}

/// Parses one CloudHSM audit record in any of the layouts the module documentation lists.
pub fn parse_cloudhsm_record(text: &str) -> Result<HsmRecord, ParseError> {
    let text = trim(text);
    // Filled in place: `Fields` is a few hundred bytes, which a returned `Result` would
    // copy once more.
    let mut fields = Fields::default();
    // Read as lines, which finds out on the first whether there are any: a record
    // without a line break (flattened, or with CR-only line ends, which the flattened
    // path splits at any whitespace before a field name and so reads too) is handed on
    // untouched, where asking first would search the whole text once more.
    if !collect_lines(text, &mut fields)? {
        collect_flat(text, &mut fields)?;
    }
    build_record(&fields)
}

/// Cheap test of whether `text` is worth handing to [`parse_cloudhsm_record`].
pub fn looks_like_cloudhsm_record(text: &str) -> bool {
    begins_like_cloudhsm_record(text) && find_short(text, "Sequence No").is_some()
}

/// The first half of [`looks_like_cloudhsm_record`]: `text` starts with `Time` and `:`.
/// A record that parses has the other half (a `Sequence No` field) too.
pub(crate) fn begins_like_cloudhsm_record(text: &str) -> bool {
    text.trim_start()
        .strip_prefix("Time")
        .is_some_and(|rest| rest.trim_start_matches([' ', '\t']).starts_with(':'))
}

/// Defines [`Field`], [`ALL_FIELDS`], the key each field is logged under and the field
/// of a key, from one table.
macro_rules! fields {
    ($($variant:ident => $name:literal,)*) => {
        /// The fields this parser reads, one slot each in [`Fields`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Field {
            $($variant,)*
        }

        /// Every [`Field`]: the seed layout's in the order the HSM logs them, then the later
        /// layout's.
        const ALL_FIELDS: [Field; [$(Field::$variant,)*].len()] = [$(Field::$variant,)*];

        impl Field {
            /// The key exactly as the HSM logs it; matching is case-sensitive on purpose.
            const fn name(self) -> &'static str {
                match self {
                    $(Field::$variant => $name,)*
                }
            }

            /// The field a multi-line key names; `None` for keys this parser does not
            /// read. A `match` on the key compares it with each name inline, where
            /// comparing it with names looked up at run time would call `memcmp`.
            fn from_key(key: &str) -> Option<Self> {
                match key {
                    $($name => Some(Field::$variant),)*
                    _ => None,
                }
            }

            /// Whether `line` starts with this field's key, followed by blanks and `:`,
            /// and if so where its value starts. Each name is a constant here, so the
            /// test is a few compares inline.
            fn starts(self, line: &[u8]) -> Option<usize> {
                match self {
                    $(Field::$variant => line
                        .starts_with($name.as_bytes())
                        .then(|| separated(line, $name.len()))
                        .flatten(),)*
                }
            }

            /// The field whose key starts `line`, followed by blanks and `:`, and where
            /// its value starts; `None` for any other line, which is then split at its
            /// first `:`. `expected` is tested first: the field after the previous line's
            /// in [`ALL_FIELDS`], which is the order HSMs log the seed layout's fields
            /// in, so that a line nearly always takes one test. Then every field is,
            /// the seed layout's first.
            fn starting_line(line: &[u8], expected: Self) -> Option<(Self, usize)> {
                if let Some(value_offset) = expected.starts(line) {
                    return Some((expected, value_offset));
                }
                $(
                    if let Some(value_offset) = Field::$variant.starts(line) {
                        return Some((Field::$variant, value_offset));
                    }
                )*
                None
            }
        }
    };
}

fields! {
    Time => "Time",
    SequenceNo => "Sequence No",
    RebootCounter => "Reboot counter",
    CommandType => "Command Type(hex)",
    Opcode => "Opcode",
    SessionHandle => "Session Handle",
    Response => "Response",
    LogType => "Log type",
    UserName => "User Name",
    UserType => "User Type",
    KeyHandle => "Priv/Secret Key Handle",
    PublicKeyHandle => "Public Key Handle",
    VersionNo => "Version No",
    UserId => "User id",
    TargetUserName => "Target User Name",
    TargetUserType => "Target User Type",
    TargetUserId => "Target User id",
    MfaEnabled => "Mfa enabled",
    Mechanism => "Mechanism",
    LocalTime => "local time",
    HostTime => "host time",
    PropagationDelay => "propagation delay",
    Operation => "Operation",
    NumberOfUsers => "Number of Users",
    UserIds => "UserIDs",
}

/// Where the value starts after a field's name, which ends at `name_end` of `line`: past
/// blanks and the `:`, which a multi-line key is split at.
#[inline]
fn separated(line: &[u8], name_end: usize) -> Option<usize> {
    // What HSMs write: ` : `, or `: ` after `Time`.
    match line.get(name_end..name_end + 2) {
        Some(b" :") => return Some(name_end + 2),
        Some([b':', _]) => return Some(name_end + 1),
        _ => {}
    }
    let mut at = name_end;
    while let Some(b' ' | b'\t') = line.get(at) {
        at += 1;
    }
    (line.get(at) == Some(&b':')).then_some(at + 1)
}

impl Field {
    /// The field logged after this one in the seed layout ([`ALL_FIELDS`]' order).
    fn next(self) -> Self {
        ALL_FIELDS
            .get(self as usize + 1)
            .copied()
            .unwrap_or(Field::Time)
    }

    /// The fields whose name starts with `byte`, so that most words need no comparison.
    fn starting_with(byte: u8) -> &'static [Field] {
        match byte {
            b'T' => &[
                Field::Time,
                Field::TargetUserName,
                Field::TargetUserType,
                Field::TargetUserId,
            ],
            b'S' => &[Field::SequenceNo, Field::SessionHandle],
            b'R' => &[Field::RebootCounter, Field::Response],
            b'C' => &[Field::CommandType],
            b'O' => &[Field::Opcode, Field::Operation],
            b'L' => &[Field::LogType],
            b'U' => &[
                Field::UserName,
                Field::UserType,
                Field::UserId,
                Field::UserIds,
            ],
            b'P' => &[Field::KeyHandle, Field::PublicKeyHandle],
            b'V' => &[Field::VersionNo],
            b'M' => &[Field::MfaEnabled, Field::Mechanism],
            b'N' => &[Field::NumberOfUsers],
            b'l' => &[Field::LocalTime],
            b'h' => &[Field::HostTime],
            b'p' => &[Field::PropagationDelay],
            _ => &[],
        }
    }
}

/// The trimmed raw value of each field, borrowed from the input.
#[derive(Debug, Default)]
struct Fields<'a> {
    values: [Option<&'a str>; ALL_FIELDS.len()],
    /// `Key : value` pairs whose key this parser does not know, in input order.
    extra: Vec<(&'a str, &'a str)>,
}

impl<'a> Fields<'a> {
    /// Records a field's value, refusing a second one for the same field. Inlined into
    /// each of its few callers: a call costs a third of what it does for a line.
    #[inline(always)]
    fn set(&mut self, field: Field, value: &'a str) -> Result<(), ParseError> {
        let slot = &mut self.values[field as usize];
        if slot.is_some() {
            return Err(ParseError::DuplicateField {
                field: field.name(),
            });
        }
        *slot = Some(trim(value));
        Ok(())
    }

    /// Keeps a field this parser does not know.
    fn set_extra(&mut self, key: &'a str, value: &'a str) {
        self.extra.push((key, trim(value)));
    }

    /// The unknown fields by key; a key logged twice keeps both values, in input order.
    fn extra_fields(&self) -> BTreeMap<String, String> {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for &(key, value) in &self.extra {
            map.entry(key.to_owned())
                .and_modify(|joined| {
                    joined.push('\n');
                    joined.push_str(value);
                })
                .or_insert_with(|| value.to_owned());
        }
        map
    }

    /// The value of an optional field; an empty value counts as absent.
    fn optional(&self, field: Field) -> Option<&'a str> {
        self.values[field as usize].filter(|value| !value.is_empty())
    }

    /// The value of a field every record carries.
    fn required(&self, field: Field) -> Result<&'a str, ParseError> {
        match self.values[field as usize] {
            None => Err(ParseError::MissingField {
                field: field.name(),
            }),
            Some("") => Err(ParseError::EmptyField {
                field: field.name(),
            }),
            Some(value) => Ok(value),
        }
    }
}

/// Splits a multi-line record at line ends and each line at its first `:`. A line that
/// starts with one of our keys is known by comparing it with the names; any other is
/// searched for its `:`, a search that stops at the line's end too. Says whether the text
/// had a line break; when it has none, nothing is set.
fn collect_lines<'a>(text: &'a str, fields: &mut Fields<'a>) -> Result<bool, ParseError> {
    let bytes = text.as_bytes();
    let line_end = |value_start: usize| {
        bytes
            .get(value_start..)
            .and_then(|rest| find_byte(rest, b'\n'))
            .map_or(bytes.len(), |at| value_start + at)
    };
    let mut line_start = 0;
    let mut expected = Field::Time;
    while let Some(line) = bytes.get(line_start..).filter(|line| !line.is_empty()) {
        // `:` and `\n` are ASCII: every cut is at a character boundary.
        let end = if let Some((field, value_offset)) = Field::starting_line(line, expected) {
            expected = field.next();
            // The general split below reads such a line the same way: the name holds no
            // `:`, and the key it cuts is the name once trimmed.
            let value_start = line_start + value_offset;
            let end = line_end(value_start);
            if line_start == 0 && end == bytes.len() {
                return Ok(false);
            }
            fields.set(field, text.get(value_start..end).unwrap_or_default())?;
            end
        } else {
            let Some(found) = find_either_byte(line, b':', b'\n') else {
                break;
            };
            let colon = line_start + found;
            if bytes[colon] == b'\n' {
                // A line that is not `Key: value` carries nothing to keep (the record's
                // text is kept whole in the trail anyway).
                line_start = colon + 1;
                continue;
            }
            let end = line_end(colon + 1);
            if line_start == 0 && end == bytes.len() {
                return Ok(false);
            }
            let key = trim(text.get(line_start..colon).unwrap_or_default());
            let value = text.get(colon + 1..end).unwrap_or_default();
            // A key that is not ours is newer firmware's.
            match Field::from_key(key) {
                Some(field) => fields.set(field, value)?,
                None if !key.is_empty() => fields.set_extra(key, value),
                None => {}
            }
            end
        };
        line_start = end + 1;
    }
    Ok(line_start > 0)
}

/// `text` split at the first `byte` (ASCII), as `str::split_once` with a `char`.
fn split_once_at_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    debug_assert!(byte.is_ascii());
    let at = find_byte(text.as_bytes(), byte)?;
    Some((text.get(..at)?, text.get(at + 1..)?))
}

/// Where `needle` (ASCII) first occurs in `text`: a byte search for its first byte, then
/// a comparison. In a record the first candidate is nearly always the match, where a
/// substring searcher would first spend longer setting itself up.
fn find_short(text: &str, needle: &str) -> Option<usize> {
    let (text, needle) = (text.as_bytes(), needle.as_bytes());
    let first = *needle.first()?;
    let mut from = 0;
    loop {
        let at = from + find_byte(text.get(from..)?, first)?;
        if text[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
}

/// `str::trim`, on the fast path of a value whose ends are ASCII: Unicode whitespace
/// (and the vertical tab, which `trim_ascii` keeps) is left to `str::trim`.
fn trim(text: &str) -> &str {
    // Nearly every value: the one blank after `:`, then graphic ASCII at both ends.
    let bytes = text.as_bytes();
    let start = usize::from(bytes.first() == Some(&b' '));
    if let (Some(first), Some(last)) = (bytes.get(start), bytes.last())
        && first.is_ascii_graphic()
        && last.is_ascii_graphic()
    {
        return text.get(start..).unwrap_or(text);
    }
    let trimmed = text.trim_ascii();
    let plain = |byte: Option<&u8>| byte.is_none_or(|b| b.is_ascii() && *b != 0x0b);
    if plain(trimmed.as_bytes().first()) && plain(trimmed.as_bytes().last()) {
        trimmed
    } else {
        trimmed.trim()
    }
}

/// Splits a one-line record where a known field name, then optional blanks and `:`, starts
/// a word.
fn collect_flat<'a>(text: &'a str, fields: &mut Fields<'a>) -> Result<(), ParseError> {
    let bytes = text.as_bytes();
    let mut open: Option<(Slot<'_>, usize)> = None;
    // Only the start of the text and bytes right after ASCII whitespace can start a name.
    let mut candidate = Some(0);
    while let Some(at) = candidate {
        let found = field_at(text, at)
            .map(|(field, value_start)| (Slot::Known(field), value_start))
            .or_else(|| unknown_key_at(text, at).map(|(key, start)| (Slot::Unknown(key), start)));
        let resume = match found {
            Some((slot, value_start)) => {
                if let Some((previous, start)) = open.replace((slot, value_start)) {
                    previous.fill(fields, text.get(start..at).unwrap_or_default())?;
                }
                value_start
            }
            None => at,
        };
        candidate = bytes
            .get(resume..)
            .and_then(|rest| rest.iter().position(u8::is_ascii_whitespace))
            .map(|offset| resume + offset + 1);
    }
    if let Some((last, start)) = open {
        last.fill(fields, text.get(start..).unwrap_or_default())?;
    }
    Ok(())
}

/// Where a flattened value goes: a field of ours, or an unknown key's entry.
#[derive(Debug, Clone, Copy)]
enum Slot<'a> {
    Known(Field),
    Unknown(&'a str),
}

impl<'a> Slot<'a> {
    fn fill(self, fields: &mut Fields<'a>, value: &'a str) -> Result<(), ParseError> {
        match self {
            Slot::Known(field) => fields.set(field, value),
            Slot::Unknown(key) => {
                fields.set_extra(key, value);
                Ok(())
            }
        }
    }
}

/// The most words an unknown key of a flattened record is read as.
const MAX_UNKNOWN_KEY_WORDS: usize = 4;

/// An unknown key starting at byte `at` of a flattened record, by the rule in the module
/// documentation, and where its value starts.
fn unknown_key_at(text: &str, at: usize) -> Option<(&str, usize)> {
    let rest = text.get(at..)?;
    // Capitalised but not all capitals: `HSM` or a label without its code is a value.
    let first_word = rest.split(|c: char| c.is_ascii_whitespace()).next()?;
    if !first_word.starts_with(|c: char| c.is_ascii_uppercase())
        || !first_word.contains(|c: char| c.is_ascii_lowercase())
    {
        return None;
    }
    let mut end = 0;
    for word in 0..MAX_UNKNOWN_KEY_WORDS {
        let tail = rest.get(end..)?;
        let length = tail
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(tail.len());
        if !is_key_word(tail.get(..length)?) || (word > 0 && field_at(text, at + end).is_some()) {
            return None;
        }
        end += length;
        let after = rest.get(end..)?;
        let after_blanks = after.trim_start_matches([' ', '\t']);
        if after_blanks.len() < after.len()
            && let Some(value) = after_blanks.strip_prefix(':')
        {
            {
                if value.is_empty() || value.starts_with(|c: char| c.is_ascii_whitespace()) {
                    let value_start = at + (rest.len() - value.len());
                    return Some((rest.get(..end)?, value_start));
                }
            }
        }
        if !after.starts_with(' ') {
            return None;
        }
        end += 1;
    }
    None
}

/// A word an unknown key may be made of: a letter, then letters, digits and `/()-`.
fn is_key_word(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '(' | ')' | '-'))
}

/// The field whose name, optional blanks and `:` start at byte `at`, and where its value
/// starts.
fn field_at(text: &str, at: usize) -> Option<(Field, usize)> {
    // `at` always follows an ASCII byte, so `get` never fails at a char boundary here.
    let rest = text.get(at..)?;
    let first = *rest.as_bytes().first()?;
    Field::starting_with(first).iter().find_map(|&field| {
        let after_name = rest.strip_prefix(field.name())?;
        let after_blanks = after_name.trim_start_matches(|c: char| c.is_ascii_whitespace());
        after_blanks.strip_prefix(':')?;
        Some((field, at + (rest.len() - after_blanks.len()) + 1))
    })
}

/// Types every field, failing on the first one that is missing or malformed.
fn build_record(fields: &Fields<'_>) -> Result<HsmRecord, ParseError> {
    let time = match fields.required(Field::Time) {
        Err(ParseError::MissingField { .. }) => return Err(ParseError::NotARecord),
        other => parse_time(other?)?,
    };
    let (opcode_name, opcode_code) = parse_label(Field::Opcode, fields.required(Field::Opcode)?)?;
    let (response_code, response_text) = parse_response(fields.required(Field::Response)?)?;
    Ok(HsmRecord {
        time,
        sequence_no: parse_hex(Field::SequenceNo, fields.required(Field::SequenceNo)?)?,
        reboot_counter: parse_hex32(Field::RebootCounter, fields.required(Field::RebootCounter)?)?,
        command_type: labeled(Field::CommandType, fields.required(Field::CommandType)?)?,
        opcode: Opcode::from_name(opcode_name),
        opcode_code,
        session_handle: parse_hex(Field::SessionHandle, fields.required(Field::SessionHandle)?)?,
        response_code,
        response_text: shared_name(response_text),
        log_type: labeled(Field::LogType, fields.required(Field::LogType)?)?,
        user_name: fields.optional(Field::UserName).map(str::to_owned),
        user_type: fields
            .optional(Field::UserType)
            .map(|value| labeled(Field::UserType, value))
            .transpose()?,
        key_handle: parse_key_handle(Field::KeyHandle, fields.optional(Field::KeyHandle))?,
        public_key_handle: parse_key_handle(
            Field::PublicKeyHandle,
            fields.optional(Field::PublicKeyHandle),
        )?,
        later: build_later(fields)?,
    })
}

/// Types the later layout's fields; every one is optional. `None` when the record has
/// none, as a record in the seed's layout: most records, which then build nothing.
fn build_later(fields: &Fields<'_>) -> Result<Option<Box<LaterFields>>, ParseError> {
    // The later layout's fields follow the seed's, from `Version No` on ([`ALL_FIELDS`]).
    let later_layout = &fields.values[Field::VersionNo as usize..];
    if fields.extra.is_empty() && later_layout.iter().all(Option::is_none) {
        return Ok(None);
    }
    let text = |field| fields.optional(field).map(str::to_owned);
    let label = |field| {
        fields
            .optional(field)
            .map(|value| labeled(field, value))
            .transpose()
    };
    Ok(LaterFields {
        version_no: text(Field::VersionNo),
        user_id: text(Field::UserId),
        target_user_name: text(Field::TargetUserName),
        target_user_type: label(Field::TargetUserType)?,
        target_user_id: text(Field::TargetUserId),
        mfa_enabled: text(Field::MfaEnabled),
        mechanism: text(Field::Mechanism),
        local_time: text(Field::LocalTime),
        host_time: text(Field::HostTime),
        propagation_delay_us: fields
            .optional(Field::PropagationDelay)
            .map(parse_usec)
            .transpose()?,
        share_operation: label(Field::Operation)?,
        share_user_count: fields
            .optional(Field::NumberOfUsers)
            .map(|value| parse_number(Field::NumberOfUsers, value, value))
            .transpose()?,
        share_user_ids: fields
            .optional(Field::UserIds)
            .map(split_ids)
            .unwrap_or_default(),
        extra_fields: fields.extra_fields(),
    }
    .boxed())
}

/// Reads `usec:N` (or a bare `N`) in microseconds.
fn parse_usec(value: &str) -> Result<u64, ParseError> {
    let digits = match value.strip_prefix("usec") {
        Some(rest) => rest.trim_start().strip_prefix(':').unwrap_or(rest).trim(),
        None => value,
    };
    parse_digits(digits, 10).map_err(|_| {
        invalid(
            Field::PropagationDelay,
            value,
            "is not `usec:` and a decimal number",
        )
    })
}

/// The ids of a `UserIDs` list, each as logged; commas, semicolons, blanks and brackets
/// separate them.
fn split_ids(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c == ';' || c == '[' || c == ']' || c.is_whitespace())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads the instant from `usecs:`, ignoring the human-readable time in front of it:
/// `usecs` is authoritative and carries the same instant at a higher resolution.
fn parse_time(value: &str) -> Result<Timestamp, ParseError> {
    let invalid = |rule| invalid(Field::Time, value, rule);
    let after = find_short(value, "usecs")
        .and_then(|at| value.get(at + "usecs".len()..))
        .ok_or_else(|| invalid("has no `usecs:` value"))?;
    let digits = after
        .trim_start()
        .strip_prefix(':')
        .ok_or_else(|| invalid("has no `usecs:` value"))?;
    let digits = trim(digits);
    match parse_digits(digits, 10) {
        Ok(micros) => i64::try_from(micros)
            .map(Timestamp::from_micros)
            .map_err(|_| invalid("has a `usecs:` value that does not fit in 63 bits")),
        Err(NumberError::Syntax) => {
            Err(invalid("has a `usecs:` value that is not a decimal number"))
        }
        Err(NumberError::Overflow) => {
            Err(invalid("has a `usecs:` value that does not fit in 63 bits"))
        }
    }
}

/// Reads a 64-bit field the HSM logs in `0x`-prefixed hexadecimal.
fn parse_hex(field: Field, value: &str) -> Result<u64, ParseError> {
    hex_value(value).map_err(|error| hex_error(field, value, error, "does not fit in 64 bits"))
}

/// Reads a 32-bit field the HSM logs in `0x`-prefixed hexadecimal.
fn parse_hex32(field: Field, value: &str) -> Result<u32, ParseError> {
    hex_value(value)
        .and_then(|number| u32::try_from(number).map_err(|_| NumberError::Overflow))
        .map_err(|error| hex_error(field, value, error, "does not fit in 32 bits"))
}

/// The number in `0x`-prefixed hexadecimal `value`.
fn hex_value(value: &str) -> Result<u64, NumberError> {
    // A bare number is refused rather than guessed at: `10` could be ten or sixteen, and
    // a wrong sequence number would silently merge two records in the trail.
    let digits = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .ok_or(NumberError::Syntax)?;
    parse_digits(digits, 16)
}

/// The error for a hexadecimal field that [`hex_value`] refused.
fn hex_error(field: Field, value: &str, error: NumberError, overflow: &'static str) -> ParseError {
    match error {
        NumberError::Syntax => invalid(field, value, "is not a hexadecimal number"),
        NumberError::Overflow => invalid(field, value, overflow),
    }
}

/// Reads `NAME (code)` or a bare `NAME` into its name and optional number.
fn parse_label(field: Field, value: &str) -> Result<(&str, Option<u64>), ParseError> {
    let (name, code) = match value.strip_suffix(')').and_then(|inner| {
        let at = inner.bytes().rposition(|b| b == b'(')?;
        Some((inner.get(..at)?, inner.get(at + 1..)?))
    }) {
        // The value is trimmed already: only the blanks before `(` are left to cut, and
        // HSMs write one.
        Some((name, code)) => {
            let name = match name.strip_suffix(' ') {
                Some(cut) if cut.as_bytes().last().is_some_and(u8::is_ascii_graphic) => cut,
                _ => trim(name),
            };
            (name, Some(parse_number(field, value, trim(code))?))
        }
        None => (value, None),
    };
    if name.is_empty() {
        return Err(invalid(field, value, "has a code but no name"));
    }
    Ok((name, code))
}

/// Defines [`common_label`] and, for its test, [`COMMON_LABELS`], from one table.
macro_rules! common_labels {
    ($($name:literal ($code:literal) = $number:literal,)*) => {
        /// The label that `value` spells when it is one HSMs log in nearly every record,
        /// read whole: one comparison, where reading it takes a search, two trims, a
        /// number and a look-up of the name.
        fn common_label(value: &str) -> Option<Labeled> {
            match value {
                $(concat!($name, " (", $code, ")") => Some(Labeled {
                    name: std::borrow::Cow::Borrowed($name),
                    code: Some($number),
                }),)*
                _ => None,
            }
        }

        #[cfg(test)]
        const COMMON_LABELS: &[&str] = &[$(concat!($name, " (", $code, ")"),)*];
    };
}

common_labels! {
    "CN_MGMT_CMD" ("0x0") = 0,
    "MINIMAL_LOG_ENTRY" ("0") = 0,
    "MGMT_KEY_DETAILS_LOG" ("1") = 1,
    "MGMT_USER_DETAILS_LOG" ("2") = 2,
    "CN_CRYPTO_USER" ("1") = 1,
    "CN_CRYPTO_OFFICER" ("2") = 2,
}

/// Reads a label field into the owned [`Labeled`] the record keeps.
fn labeled(field: Field, value: &str) -> Result<Labeled, ParseError> {
    if let Some(label) = common_label(value) {
        return Ok(label);
    }
    let (name, code) = parse_label(field, value)?;
    Ok(Labeled {
        name: shared_name(name),
        code,
    })
}

/// Reads `<decimal code>:<text>`; the text keeps its own colons but not surrounding blanks.
fn parse_response(value: &str) -> Result<(u32, &str), ParseError> {
    let (code, text) = split_once_at_byte(value, b':').unwrap_or((value, ""));
    let code = parse_digits(trim(code), 10).map_err(|error| match error {
        NumberError::Syntax => {
            invalid(Field::Response, value, "does not start with a decimal code")
        }
        NumberError::Overflow => invalid(
            Field::Response,
            value,
            "has a code that does not fit in 32 bits",
        ),
    })?;
    let code = u32::try_from(code).map_err(|_| {
        invalid(
            Field::Response,
            value,
            "has a code that does not fit in 32 bits",
        )
    })?;
    Ok((code, trim(text)))
}

/// Reads a key handle, where 0 is how the HSM says "no key".
fn parse_key_handle(field: Field, value: Option<&str>) -> Result<Option<u64>, ParseError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let handle = parse_number(field, value, value)?;
    Ok((handle != 0).then_some(handle))
}

/// Reads a number that is decimal unless `0x`-prefixed; `whole` is what errors quote.
fn parse_number(field: Field, whole: &str, number: &str) -> Result<u64, ParseError> {
    let parsed = match number
        .strip_prefix("0x")
        .or_else(|| number.strip_prefix("0X"))
    {
        Some(hex) => parse_digits(hex, 16),
        None => parse_digits(number, 10),
    };
    parsed.map_err(|error| match error {
        NumberError::Syntax => invalid(field, whole, "is not a number"),
        NumberError::Overflow => invalid(field, whole, "does not fit in 64 bits"),
    })
}

/// Why digits did not make a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberError {
    Syntax,
    Overflow,
}

/// Reads unsigned digits in `radix`; unlike `str::parse` it refuses signs, and it
/// reports bad digits before overflow so that junk is never called "too large".
fn parse_digits(digits: &str, radix: u32) -> Result<u64, NumberError> {
    if digits.is_empty() {
        return Err(NumberError::Syntax);
    }
    debug_assert!(radix == 10 || radix == 16);
    if radix == 10 {
        return decimal(digits.as_bytes()).ok_or_else(|| {
            if digits.bytes().all(|byte| byte.is_ascii_digit()) {
                NumberError::Overflow
            } else {
                NumberError::Syntax
            }
        });
    }
    // Up to 15 hexadecimal digits cannot overflow: most values, read without a check per
    // digit.
    if digits.len() <= 15 {
        return digits
            .bytes()
            .try_fold(0, |number, byte| Ok(number << 4 | hex_digit(byte)?));
    }
    let mut number: Option<u64> = Some(0);
    for byte in digits.bytes() {
        let digit = hex_digit(byte)?;
        number = number
            .and_then(|number| number.checked_mul(16))
            .and_then(|number| number.checked_add(digit));
    }
    number.ok_or(NumberError::Overflow)
}

/// The value of a hexadecimal digit in either case: a table, where `char::to_digit`
/// tests three ranges for every digit of every handle.
fn hex_digit(byte: u8) -> Result<u64, NumberError> {
    const NOT_A_DIGIT: u8 = u8::MAX;
    const VALUES: [u8; 256] = {
        let mut table = [NOT_A_DIGIT; 256];
        let mut digit = 0;
        while digit < 16 {
            table[b"0123456789abcdef"[digit] as usize] = digit as u8;
            table[b"0123456789ABCDEF"[digit] as usize] = digit as u8;
            digit += 1;
        }
        table
    };
    match VALUES[usize::from(byte)] {
        NOT_A_DIGIT => Err(NumberError::Syntax),
        value => Ok(u64::from(value)),
    }
}

/// The longest value, in characters, that an error message quotes in full.
const QUOTE_LIMIT: usize = 80;

/// An [`ParseError::Invalid`] quoting at most [`QUOTE_LIMIT`] characters of `value`.
fn invalid(field: Field, value: &str, rule: &'static str) -> ParseError {
    let value = match value.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", value.get(..cut).unwrap_or_default()),
        None => value.to_owned(),
    };
    ParseError::Invalid {
        field: field.name(),
        value,
        rule,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
