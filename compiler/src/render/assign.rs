//! Serializing into a JSON value in place: what `serde_json::to_value` makes, but
//! written over the value already there, so that its objects keep their keys, its
//! strings and arrays their buffers.
//!
//! Handlebars reads a template's variables from one JSON value. Every node of a role
//! has variables of the same shape (`node`, `nics`, `disks`), so a worker rendering
//! thousands of nodes overwrites the previous node's values instead of building and
//! freeing a new tree of maps and strings per node: rendering a node then allocates
//! little beyond its output.
//!
//! Anything this does not reuse (maps, byte strings, enum variants with data, 128-bit
//! numbers, an object whose keys changed) falls back to `serde_json::to_value` for
//! the whole value, so the result is always the same as that of `to_value`.

use serde::ser::{self, Impossible, Serialize};
use serde_json::{Error, Map, Number, Value};

/// Sets `slot` to the JSON form of `value`, reusing what `slot` holds.
pub(super) fn assign<T: Serialize + ?Sized>(slot: &mut Value, value: &T) {
    if value.serialize(Into(slot)).is_err() {
        // Plain structs with string keys always convert.
        *slot = serde_json::to_value(value).unwrap_or_default();
    }
}

/// The error that sends a value to the fallback.
fn unsupported() -> Error {
    ser::Error::custom("not assigned in place")
}

fn set_str(slot: &mut Value, v: &str) {
    match slot {
        Value::String(s) => {
            s.clear();
            s.push_str(v);
        }
        _ => *slot = Value::String(v.to_owned()),
    }
}

fn array(slot: &mut Value, len: Option<usize>) -> &mut Vec<Value> {
    if !slot.is_array() {
        *slot = Value::Array(Vec::with_capacity(len.unwrap_or(0)));
    }
    match slot {
        Value::Array(a) => a,
        _ => unreachable!("just made an array"),
    }
}

fn object(slot: &mut Value) -> &mut Map<String, Value> {
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// The serializer that writes over one value.
struct Into<'a>(&'a mut Value);

impl<'a> ser::Serializer for Into<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Struct<'a>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        *self.0 = Value::Bool(v);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        *self.0 = Value::Number(v.into());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        *self.0 = Value::Number(v.into());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        *self.0 = Number::from_f64(v.into()).map_or(Value::Null, Value::Number);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        *self.0 = Number::from_f64(v).map_or(Value::Null, Value::Number);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        set_str(self.0, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        set_str(self.0, v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        Err(unsupported())
    }
    fn serialize_none(self) -> Result<(), Error> {
        *self.0 = Value::Null;
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        *self.0 = Value::Null;
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<(), Error> {
        set_str(self.0, v);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(unsupported())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'a>, Error> {
        Ok(Seq {
            items: array(self.0, len),
            at: 0,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(unsupported())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(unsupported())
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Struct<'a>, Error> {
        Ok(Struct {
            fields: object(self.0),
            len,
            written: 0,
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(unsupported())
    }
}

/// An array being written over, element by element.
struct Seq<'a> {
    items: &'a mut Vec<Value>,
    at: usize,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if self.at == self.items.len() {
            self.items.push(Value::Null);
        }
        value.serialize(Into(&mut self.items[self.at]))?;
        self.at += 1;
        Ok(())
    }

    fn finish(self) -> Result<(), Error> {
        self.items.truncate(self.at);
        Ok(())
    }
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTuple for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// An object being written over, field by field. Fields the struct skips are
/// removed; any other key left from an earlier value sends the whole value to the
/// fallback.
struct Struct<'a> {
    fields: &'a mut Map<String, Value>,
    /// The fields the struct serializes.
    len: usize,
    written: usize,
}

impl ser::SerializeStruct for Struct<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        match self.fields.get_mut(key) {
            Some(slot) => value.serialize(Into(slot))?,
            None => {
                self.fields
                    .insert(key.to_owned(), serde_json::to_value(value)?);
            }
        }
        self.written += 1;
        Ok(())
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), Error> {
        self.fields.remove(key);
        Ok(())
    }
    fn end(self) -> Result<(), Error> {
        if self.fields.len() == self.written && self.written == self.len {
            Ok(())
        } else {
            Err(unsupported())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Inner {
        name: String,
        tags: Vec<&'static str>,
        ratio: f64,
    }

    #[derive(Serialize)]
    enum Kind {
        Plain,
        Tagged(u8),
    }

    #[derive(Serialize)]
    struct Outer {
        id: u32,
        neg: i64,
        on: bool,
        note: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        extra: Option<&'static str>,
        inner: Vec<Inner>,
        kind: Kind,
        letter: char,
        pair: (u8, &'static str),
    }

    fn sample(i: u32) -> Outer {
        Outer {
            id: i,
            neg: -(i as i64),
            on: i % 2 == 1,
            note: (i % 3 == 1).then(|| format!("note {i}")),
            extra: (i % 2 == 1).then_some("x"),
            inner: (0..i % 4)
                .map(|k| Inner {
                    name: "n".repeat(k as usize + i as usize),
                    tags: vec!["a"; k as usize],
                    ratio: if k == 2 { f64::NAN } else { k as f64 / 2.0 },
                })
                .collect(),
            kind: if matches!(i, 0 | 5 | 10) {
                Kind::Tagged(i as u8)
            } else {
                Kind::Plain
            },
            letter: 'é',
            pair: (i as u8, "p"),
        }
    }

    #[test]
    fn assigning_in_place_gives_what_to_value_gives() {
        let mut slot = Value::Null;
        for i in [0, 1, 2, 3, 7, 2, 10, 0, 5, 6] {
            let value = sample(i);
            assign(&mut slot, &value);
            assert_eq!(slot, serde_json::to_value(&value).unwrap(), "{i}");
        }
        // A value of another shape, and back.
        let map: BTreeMap<&str, u8> = [("a", 1)].into();
        assign(&mut slot, &map);
        assert_eq!(slot, serde_json::to_value(&map).unwrap());
        assign(&mut slot, &sample(3));
        assert_eq!(slot, serde_json::to_value(sample(3)).unwrap());
        assign(&mut slot, "text");
        assert_eq!(slot, Value::from("text"));
    }
}
