//! The canonical form of a stored item: what a record's leaf hash covers.
//!
//! The item in DynamoDB's own JSON (`{"S": "…"}`, `{"N": "…"}`, `{"BOOL": true}`,
//! `{"NULL": true}`, `{"L": […]}`, `{"M": {…}}`, `{"SS": […]}`, `{"NS": […]}`,
//! `{"B": "<base64>"}`, `{"BS": […]}`), as `aws dynamodb get-item --output json` prints
//! it, written with no whitespace, object members in the byte order of their names, set
//! members sorted (DynamoDB returns a set in any order), strings escaped as JSON requires
//! and nothing more: `"` and `\` with a backslash, control characters as `\b \t \n \f \r`
//! or `\u00xx` (lower-case hex), every other character as its UTF-8 bytes. Python's
//! `json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes
//! exactly these bytes, so a third party checks a leaf without this code.

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;

use crate::store::dynamodb::items::Item;

/// The canonical bytes of `item`.
pub fn canonical_item(item: &Item) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_map(&mut out, item.iter());
    out
}

fn write_map<'a>(
    out: &mut Vec<u8>,
    members: impl Iterator<Item = (&'a String, &'a AttributeValue)>,
) {
    let mut members: Vec<(&String, &AttributeValue)> = members.collect();
    members.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
    out.push(b'{');
    for (index, (name, value)) in members.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_string(out, name);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, value: &AttributeValue) {
    let base64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    out.push(b'{');
    match value {
        AttributeValue::S(text) => tagged_string(out, "S", text),
        AttributeValue::N(number) => tagged_string(out, "N", number),
        AttributeValue::B(blob) => tagged_string(out, "B", &base64(blob.as_ref())),
        AttributeValue::Bool(flag) => {
            write_string(out, "BOOL");
            out.extend_from_slice(if *flag { b":true" } else { b":false" });
        }
        AttributeValue::Null(_) => {
            write_string(out, "NULL");
            out.extend_from_slice(b":true");
        }
        AttributeValue::L(values) => tagged_array(out, "L", values, write_value),
        AttributeValue::M(members) => {
            write_string(out, "M");
            out.push(b':');
            write_map(out, members.iter());
        }
        AttributeValue::Ss(set) => tagged_set(out, "SS", set.clone()),
        AttributeValue::Ns(set) => tagged_set(out, "NS", set.clone()),
        AttributeValue::Bs(set) => tagged_set(
            out,
            "BS",
            set.iter().map(|blob| base64(blob.as_ref())).collect(),
        ),
        // A type newer than this SDK: named by its Debug form, which differs from anything
        // stored by this code, so such an item never verifies by accident.
        other => tagged_string(out, "UNKNOWN", &format!("{other:?}")),
    }
    out.push(b'}');
}

fn tagged_string(out: &mut Vec<u8>, tag: &str, text: &str) {
    write_string(out, tag);
    out.push(b':');
    write_string(out, text);
}

fn tagged_set(out: &mut Vec<u8>, tag: &str, mut members: Vec<String>) {
    members.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    tagged_array(out, tag, &members, |out, member| write_string(out, member));
}

fn tagged_array<T>(
    out: &mut Vec<u8>,
    tag: &str,
    elements: &[T],
    write_element: impl Fn(&mut Vec<u8>, &T),
) {
    write_string(out, tag);
    out.extend_from_slice(b":[");
    for (index, element) in elements.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_element(out, element);
    }
    out.push(b']');
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn text(item: &Item) -> String {
        String::from_utf8(canonical_item(item)).expect("canonical form is UTF-8")
    }

    #[test]
    fn members_sort_by_name_and_sets_by_member_whatever_the_order_given() {
        let item: Item = HashMap::from([
            ("zeta".to_owned(), AttributeValue::N("7".to_owned())),
            (
                "alpha".to_owned(),
                AttributeValue::Ss(vec!["b".to_owned(), "a".to_owned()]),
            ),
            ("mid".to_owned(), AttributeValue::Bool(false)),
        ]);
        assert_eq!(
            text(&item),
            r#"{"alpha":{"SS":["a","b"]},"mid":{"BOOL":false},"zeta":{"N":"7"}}"#
        );
    }

    #[test]
    fn strings_escape_as_json_requires_and_nothing_more() {
        let item: Item = HashMap::from([(
            "raw".to_owned(),
            AttributeValue::S("a\"b\\c\n\u{1}é/€\u{7f}".to_owned()),
        )]);
        assert_eq!(
            text(&item),
            "{\"raw\":{\"S\":\"a\\\"b\\\\c\\n\\u0001é/€\u{7f}\"}}"
        );
    }

    #[test]
    fn the_form_is_what_serde_json_writes_for_the_same_document() {
        // serde_json and Python's json.dumps agree with this writer on escaping; any
        // divergence would make third-party leaf checks fail.
        let nasty = "tab\there \u{0}\u{1f} \"q\" \\ ünï ✓ \u{2028}";
        let item: Item = HashMap::from([
            ("s".to_owned(), AttributeValue::S(nasty.to_owned())),
            (
                "m".to_owned(),
                AttributeValue::M(HashMap::from([
                    ("y".to_owned(), AttributeValue::Null(true)),
                    (
                        "x".to_owned(),
                        AttributeValue::L(vec![AttributeValue::N("1".to_owned())]),
                    ),
                ])),
            ),
        ]);
        let expected = serde_json::json!({
            "m": {"M": {"x": {"L": [{"N": "1"}]}, "y": {"NULL": true}}},
            "s": {"S": nasty},
        });
        assert_eq!(
            text(&item),
            serde_json::to_string(&expected).expect("serializes")
        );
    }
}
