//! Items packed into bytes for the in-memory store: the SDK's attribute maps take several
//! times the bytes of the item, and the benchmark holds a history of a million records.
//! The encoding is exact (every attribute type round-trips); it is private to this store.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::store::dynamodb::items::Item;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Packed(Box<[u8]>);

pub(super) fn pack(item: &Item) -> Packed {
    let mut out = Vec::with_capacity(256);
    put_map(&mut out, item);
    Packed(out.into_boxed_slice())
}

pub(super) fn unpack(packed: &Packed) -> Item {
    let mut reader = Reader {
        bytes: &packed.0,
        at: 0,
    };
    reader.map()
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_map(out: &mut Vec<u8>, map: &HashMap<String, AttributeValue>) {
    put_len(out, map.len());
    for (name, value) in map {
        put_bytes(out, name.as_bytes());
        put_value(out, value);
    }
}

fn put_strings(out: &mut Vec<u8>, tag: u8, strings: &[String]) {
    out.push(tag);
    put_len(out, strings.len());
    for text in strings {
        put_bytes(out, text.as_bytes());
    }
}

fn put_value(out: &mut Vec<u8>, value: &AttributeValue) {
    match value {
        AttributeValue::S(text) => {
            out.push(0);
            put_bytes(out, text.as_bytes());
        }
        AttributeValue::N(number) => {
            out.push(1);
            put_bytes(out, number.as_bytes());
        }
        AttributeValue::B(blob) => {
            out.push(2);
            put_bytes(out, blob.as_ref());
        }
        AttributeValue::Bool(flag) => {
            out.push(3);
            out.push(u8::from(*flag));
        }
        AttributeValue::L(list) => {
            out.push(5);
            put_len(out, list.len());
            for value in list {
                put_value(out, value);
            }
        }
        AttributeValue::M(map) => {
            out.push(6);
            put_map(out, map);
        }
        AttributeValue::Ss(strings) => put_strings(out, 7, strings),
        AttributeValue::Ns(numbers) => put_strings(out, 8, numbers),
        AttributeValue::Bs(blobs) => {
            out.push(9);
            put_len(out, blobs.len());
            for blob in blobs {
                put_bytes(out, blob.as_ref());
            }
        }
        // NULL, and whatever a later SDK adds (this store writes none of it).
        _ => out.push(4),
    }
}

/// Reads what `pack` wrote; it reads only bytes this module made.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn len(&mut self) -> usize {
        let mut word = [0u8; 4];
        if let Some(slice) = self.bytes.get(self.at..self.at + 4) {
            word.copy_from_slice(slice);
        }
        self.at += 4;
        u32::from_le_bytes(word) as usize
    }

    fn bytes(&mut self) -> &[u8] {
        let len = self.len();
        let start = self.at.min(self.bytes.len());
        let end = (self.at + len).min(self.bytes.len());
        self.at += len;
        &self.bytes[start..end]
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }

    fn tag(&mut self) -> u8 {
        let tag = self.bytes.get(self.at).copied().unwrap_or(4);
        self.at += 1;
        tag
    }

    fn map(&mut self) -> HashMap<String, AttributeValue> {
        let count = self.len();
        let mut map = HashMap::with_capacity(count);
        for _ in 0..count {
            let name = self.text();
            let value = self.value();
            map.insert(name, value);
        }
        map
    }

    fn texts(&mut self) -> Vec<String> {
        let count = self.len();
        (0..count).map(|_| self.text()).collect()
    }

    fn value(&mut self) -> AttributeValue {
        match self.tag() {
            0 => AttributeValue::S(self.text()),
            1 => AttributeValue::N(self.text()),
            2 => AttributeValue::B(Blob::new(self.bytes().to_vec())),
            3 => AttributeValue::Bool(self.tag() == 1),
            5 => {
                let count = self.len();
                AttributeValue::L((0..count).map(|_| self.value()).collect())
            }
            6 => AttributeValue::M(self.map()),
            7 => AttributeValue::Ss(self.texts()),
            8 => AttributeValue::Ns(self.texts()),
            9 => {
                let count = self.len();
                AttributeValue::Bs(
                    (0..count)
                        .map(|_| Blob::new(self.bytes().to_vec()))
                        .collect(),
                )
            }
            _ => AttributeValue::Null(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attribute_type_round_trips() {
        let nested: HashMap<String, AttributeValue> = [
            ("s".to_owned(), AttributeValue::S("text é".into())),
            ("n".to_owned(), AttributeValue::N("-12.5".into())),
        ]
        .into_iter()
        .collect();
        let item: Item = [
            ("pk", AttributeValue::S("CLUSTER#c".into())),
            ("empty", AttributeValue::S(String::new())),
            ("n", AttributeValue::N("18446744073709551615".into())),
            ("b", AttributeValue::B(Blob::new(vec![0, 1, 255]))),
            ("t", AttributeValue::Bool(true)),
            ("f", AttributeValue::Bool(false)),
            ("null", AttributeValue::Null(true)),
            (
                "l",
                AttributeValue::L(vec![
                    AttributeValue::N("1".into()),
                    AttributeValue::M(nested.clone()),
                ]),
            ),
            ("m", AttributeValue::M(nested)),
            ("ss", AttributeValue::Ss(vec!["a".into(), "b".into()])),
            ("ns", AttributeValue::Ns(vec!["1".into()])),
            ("bs", AttributeValue::Bs(vec![Blob::new(vec![7])])),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        assert_eq!(unpack(&pack(&item)), item);
    }
}
