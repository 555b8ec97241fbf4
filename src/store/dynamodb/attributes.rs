//! Serializes values straight into the SDK's `AttributeValue`s.
//!
//! serde_dynamo (still used to read items back) builds a map of its own and then converts
//! every map, key and value into the SDK's: each attribute was hashed and allocated twice,
//! and building the write plan spent most of its time there (`make bench`). This writes
//! the same encoding in one pass: numbers as `N`, strings and unit variants as `S`,
//! sequences as `L`, structs and maps as `M`, `None` and unit as `NULL`, a newtype
//! variant as a one-entry `M` named by the variant — so serde_dynamo reads it back.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::ser::{self, Impossible};

/// An item as the SDK takes it (the items module's `Item`, named here so that the
/// serializer does not depend on the layout built with it).
type Item = HashMap<String, AttributeValue>;

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error(message.to_string())
    }
}

/// `value` as an item: it must serialize as a struct or a map.
pub fn to_item<T: Serialize + ?Sized>(value: &T) -> Result<Item, Error> {
    match value.serialize(ValueSerializer)? {
        AttributeValue::M(item) => Ok(item),
        _ => Err(Error("an item must be a struct or a map".to_owned())),
    }
}

struct ValueSerializer;

/// Serializer methods for number types, each writing the number's text through `$wrap`.
macro_rules! each_number {
    ($wrap:path; $($method:ident($number:ty)),*) => {
        $(fn $method(self, value: $number) -> Result<Self::Ok, Error> {
            Ok($wrap(value.to_string()))
        })*
    };
}

impl ser::Serializer for ValueSerializer {
    type Ok = AttributeValue;
    type Error = Error;
    type SerializeSeq = ListBuilder;
    type SerializeTuple = ListBuilder;
    type SerializeTupleStruct = ListBuilder;
    type SerializeTupleVariant = Variant<ListBuilder>;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = Variant<MapBuilder>;

    fn serialize_bool(self, value: bool) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::Bool(value))
    }
    each_number!(AttributeValue::N; serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32),
        serialize_u64(u64), serialize_f32(f32), serialize_f64(f64));
    fn serialize_char(self, value: char) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::S(value.to_string()))
    }
    fn serialize_str(self, value: &str) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::S(value.to_owned()))
    }
    fn serialize_bytes(self, value: &[u8]) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::B(value.to_vec().into()))
    }
    fn serialize_none(self) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::Null(true))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<AttributeValue, Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::Null(true))
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::Null(true))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::S(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<AttributeValue, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::M(HashMap::from([(
            variant.to_owned(),
            value.serialize(self)?,
        )])))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<ListBuilder, Error> {
        Ok(ListBuilder(Vec::with_capacity(len.unwrap_or_default())))
    }
    fn serialize_tuple(self, len: usize) -> Result<ListBuilder, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<ListBuilder, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<ListBuilder>, Error> {
        Ok(Variant {
            name: variant,
            body: ListBuilder(Vec::with_capacity(len)),
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder, Error> {
        Ok(MapBuilder::with_capacity(len.unwrap_or_default()))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapBuilder, Error> {
        Ok(MapBuilder::with_capacity(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<MapBuilder>, Error> {
        Ok(Variant {
            name: variant,
            body: MapBuilder::with_capacity(len),
        })
    }
}

struct ListBuilder(Vec<AttributeValue>);

impl ListBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.0.push(value.serialize(ValueSerializer)?);
        Ok(())
    }
}

/// Sequences, tuples and tuple structs are all lists: their impls differ only in the name
/// of the method that adds an element.
macro_rules! list_serializer {
    ($($serializer:ident :: $add:ident),*) => {$(
        impl ser::$serializer for ListBuilder {
            type Ok = AttributeValue;
            type Error = Error;
            fn $add<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.push(value)
            }
            fn end(self) -> Result<AttributeValue, Error> {
                Ok(AttributeValue::L(self.0))
            }
        }
    )*};
}

list_serializer!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

struct MapBuilder {
    map: Item,
    next_key: Option<String>,
}

impl MapBuilder {
    fn with_capacity(capacity: usize) -> Self {
        MapBuilder {
            map: HashMap::with_capacity(capacity),
            next_key: None,
        }
    }

    fn insert<T: Serialize + ?Sized>(&mut self, key: String, value: &T) -> Result<(), Error> {
        self.map.insert(key, value.serialize(ValueSerializer)?);
        Ok(())
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = AttributeValue;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.next_key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .next_key
            .take()
            .ok_or_else(|| Error("a map value came without its key".to_owned()))?;
        self.insert(key, value)
    }
    fn end(self) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::M(self.map))
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = AttributeValue;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.insert(key.to_owned(), value)
    }
    fn end(self) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::M(self.map))
    }
}

/// A tuple or struct variant: `{variant: body}`.
struct Variant<B> {
    name: &'static str,
    body: B,
}

impl Variant<ListBuilder> {
    fn end_list(self) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::M(HashMap::from([(
            self.name.to_owned(),
            AttributeValue::L(self.body.0),
        )])))
    }
}

impl ser::SerializeTupleVariant for Variant<ListBuilder> {
    type Ok = AttributeValue;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.body.push(value)
    }
    fn end(self) -> Result<AttributeValue, Error> {
        self.end_list()
    }
}

impl ser::SerializeStructVariant for Variant<MapBuilder> {
    type Ok = AttributeValue;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.body.insert(key.to_owned(), value)
    }
    fn end(self) -> Result<AttributeValue, Error> {
        Ok(AttributeValue::M(HashMap::from([(
            self.name.to_owned(),
            AttributeValue::M(self.body.map),
        )])))
    }
}

/// Map keys: attribute names are strings; integer and unit-variant keys are written as
/// their text, as serde_dynamo writes them.
struct KeySerializer;

fn unsupported_key() -> Error {
    Error("a map key must be a string, an integer or a unit variant".to_owned())
}

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = Impossible<String, Error>;
    type SerializeTuple = Impossible<String, Error>;
    type SerializeTupleStruct = Impossible<String, Error>;
    type SerializeTupleVariant = Impossible<String, Error>;
    type SerializeMap = Impossible<String, Error>;
    type SerializeStruct = Impossible<String, Error>;
    type SerializeStructVariant = Impossible<String, Error>;

    fn serialize_str(self, value: &str) -> Result<String, Error> {
        Ok(value.to_owned())
    }
    fn serialize_char(self, value: char) -> Result<String, Error> {
        Ok(value.to_string())
    }
    each_number!(String::from; serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32),
        serialize_u64(u64));
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, Error> {
        value.serialize(self)
    }
    fn serialize_bool(self, _value: bool) -> Result<String, Error> {
        Err(unsupported_key())
    }
    fn serialize_f32(self, _value: f32) -> Result<String, Error> {
        Err(unsupported_key())
    }
    fn serialize_f64(self, _value: f64) -> Result<String, Error> {
        Err(unsupported_key())
    }
    fn serialize_bytes(self, _value: &[u8]) -> Result<String, Error> {
        Err(unsupported_key())
    }
    fn serialize_none(self) -> Result<String, Error> {
        Err(unsupported_key())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, Error> {
        Err(unsupported_key())
    }
    fn serialize_unit(self) -> Result<String, Error> {
        Err(unsupported_key())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, Error> {
        Err(unsupported_key())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, Error> {
        Err(unsupported_key())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(unsupported_key())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(unsupported_key())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(unsupported_key())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(unsupported_key())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(unsupported_key())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(unsupported_key())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(unsupported_key())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u64),
        Tuple(u8, String),
        Struct { side: i32 },
    }

    #[derive(Serialize)]
    struct Inner {
        name: String,
        list: Vec<Option<u32>>,
    }

    #[derive(Serialize)]
    struct Everything {
        text: String,
        big: u64,
        negative: i64,
        fraction: f64,
        flag: bool,
        letter: char,
        absent: Option<String>,
        present: Option<u64>,
        unit: (),
        shapes: Vec<Shape>,
        pair: (u8, bool),
        bytes: serde_bytes_like::Bytes,
        map: BTreeMap<String, Inner>,
        numbered: BTreeMap<u32, String>,
        #[serde(flatten)]
        flattened: Inner,
    }

    mod serde_bytes_like {
        /// Serialized through `serialize_bytes`, as `serde_bytes` would.
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0)
            }
        }
    }

    fn everything() -> Everything {
        Everything {
            text: "CN_LOGIN".to_owned(),
            big: u64::MAX,
            negative: -7,
            fraction: 0.5,
            flag: true,
            letter: 'é',
            absent: None,
            present: Some(463_180_677_312_929_947),
            unit: (),
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(3),
                Shape::Tuple(1, "two".to_owned()),
                Shape::Struct { side: -4 },
            ],
            pair: (9, false),
            bytes: serde_bytes_like::Bytes(vec![0, 255, 7]),
            map: BTreeMap::from([(
                "k".to_owned(),
                Inner {
                    name: "n".to_owned(),
                    list: vec![Some(1), None],
                },
            )]),
            numbered: BTreeMap::from([(42, "answer".to_owned())]),
            flattened: Inner {
                name: "flat".to_owned(),
                list: Vec::new(),
            },
        }
    }

    #[test]
    fn given_every_serde_shape_when_serialized_then_the_item_equals_serde_dynamos() {
        let ours = to_item(&everything()).expect("serializes");
        let theirs: Item =
            serde_dynamo::aws_sdk_dynamodb_1::to_item(everything()).expect("serde_dynamo");
        assert_eq!(ours, theirs);
        assert_eq!(
            ours.get("big"),
            Some(&AttributeValue::N("18446744073709551615".to_owned()))
        );
    }

    #[test]
    fn given_a_value_that_is_not_a_map_when_made_an_item_then_it_is_refused() {
        assert!(to_item(&7u8).is_err());
        assert!(to_item(&vec!["a"]).is_err());
    }

    #[test]
    fn given_a_map_with_a_compound_key_when_serialized_then_it_is_refused() {
        let map = BTreeMap::from([((1u8, 2u8), "pair key")]);
        assert!(to_item(&map).is_err());
    }
}
