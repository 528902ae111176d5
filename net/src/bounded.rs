//! A serde `Deserializer` adapter that refuses every length prefix claiming more than the bytes
//! left in the datagram, before the format's decoder sees it.
//!
//! Why it exists: a decoder given a length prefix reserves memory for that many elements before
//! reading them. Serde's own collections cap that reservation at 1 MiB, and a format's byte limit
//! may only count what it decodes, so on their own neither stops a 20-byte datagram claiming 2^63
//! elements from costing a 1 MiB allocation. Every element takes at least one byte on the wire,
//! so a length prefix larger than the bytes left after it can only be a lie: [`Bounded`] checks
//! that, for sequences, maps, strings and byte buffers, and fails the decode before anything is
//! reserved. What a collection may then reserve is at most (bytes left) × (its element's size),
//! the same as a datagram of that size that told the truth.
//!
//! It is a proxy over any serde `Deserializer`: every call is forwarded, with the visitors,
//! seeds and accesses handed back wrapped so that nested values are checked too. It knows the
//! wire format only through [`Input`]: where the undecoded bytes start (kept current by the
//! format's reader) and how a length prefix is spelled (a function the codec supplies).
//!
//! It also limits nesting to [`MAX_DEPTH`] levels of compound values (options, sequences, maps,
//! structs, tuples, enums, newtypes), so that a recursive message type cannot be made to recurse
//! until the net thread's stack overflows: every level costs the attacker only a byte or two.
//!
//! Limitation, on purpose: a sequence of zero-sized elements (`Vec<()>`) longer than the bytes
//! left is refused too, although it would fit; no Balsa message has one.

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// Reads a length prefix at the start of the bytes given: `(value, bytes the prefix takes)`, or
/// `None` if they do not start with a well-formed one (the decoder itself then reports it).
pub(crate) type PeekLength = fn(&[u8]) -> Option<(u64, usize)>;

/// The deepest nesting of compound values decoded: far beyond any real message (an
/// AppendEntries is 4 levels deep), far below what a thread's stack holds.
pub const MAX_DEPTH: u32 = 128;

/// The undecoded rest of a body, shared between the format's reader (which advances it) and the
/// [`Bounded`] proxies (which check length prefixes against it), and the current nesting depth.
pub(crate) struct Input<'b> {
    rest: Cell<&'b [u8]>,
    peek_length: PeekLength,
    depth: Cell<u32>,
}

impl<'b> Input<'b> {
    pub(crate) fn new(body: &'b [u8], peek_length: PeekLength) -> Input<'b> {
        Input {
            rest: Cell::new(body),
            peek_length,
            depth: Cell::new(0),
        }
    }

    /// The bytes not decoded yet.
    pub(crate) fn rest(&self) -> &'b [u8] {
        self.rest.get()
    }

    /// Records that decoding has reached `rest`.
    pub(crate) fn advance_to(&self, rest: &'b [u8]) {
        self.rest.set(rest);
    }

    /// Fails if the length prefix at the current position claims more elements (or bytes) than
    /// there are bytes after it.
    fn check_length<E: de::Error>(&self, what: &str) -> Result<(), E> {
        let rest = self.rest.get();
        match (self.peek_length)(rest) {
            Some((length, prefix)) => {
                let left = rest.len() - prefix;
                if length > left as u64 {
                    Err(E::custom(LengthTooLong { what, length, left }))
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// Runs `decode` one nesting level deeper; fails beyond [`MAX_DEPTH`].
    fn nested<T, E: de::Error>(&self, decode: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let depth = self.depth.get();
        if depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "values nested more than {MAX_DEPTH} levels deep"
            )));
        }
        self.depth.set(depth + 1);
        let result = decode();
        self.depth.set(depth);
        result
    }
}

struct LengthTooLong<'a> {
    what: &'a str,
    length: u64,
    left: usize,
}

impl fmt::Display for LengthTooLong<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LengthTooLong { what, length, left } = self;
        write!(f, "{what} of length {length} with only {left} bytes left")
    }
}

/// The proxy: `inner`'s answers, with every length prefix checked against `input` first.
pub(crate) struct Bounded<'i, 'b, D> {
    inner: D,
    input: &'i Input<'b>,
}

impl<'i, 'b, D> Bounded<'i, 'b, D> {
    pub(crate) fn new(inner: D, input: &'i Input<'b>) -> Self {
        Bounded { inner, input }
    }
}

/// Forwards `deserialize_*` methods that take only a visitor, wrapping the visitor.
macro_rules! forward_visitor_only {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(Wrap::new(visitor, self.input))
        }
    )*};
}

/// Forwards `deserialize_*` methods whose input starts with a length prefix, checking it first.
macro_rules! forward_length_checked {
    ($($method:ident $what:literal)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.input.check_length::<D::Error>($what)?;
            self.inner.$method(Wrap::new(visitor, self.input))
        }
    )*};
}

/// Forwards `deserialize_*` methods of compound values, one nesting level deeper.
macro_rules! forward_nested {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let Bounded { inner, input } = self;
            input.nested(|| inner.$method($($arg,)* Wrap::new(visitor, input)))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, '_, D> {
    type Error = D::Error;

    forward_visitor_only! {
        deserialize_any deserialize_bool
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char
        deserialize_unit deserialize_identifier deserialize_ignored_any
    }

    forward_length_checked! {
        deserialize_str "string" deserialize_string "string"
        deserialize_bytes "byte string" deserialize_byte_buf "byte string"
    }

    // A tuple's length comes from its type, not from the wire: of compound values only
    // sequences and maps (below) have a length prefix to check.
    forward_nested! {
        deserialize_option()
        deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str)
        deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_struct(name: &'static str, fields: &'static [&'static str])
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.input.check_length::<D::Error>("sequence")?;
        let Bounded { inner, input } = self;
        input.nested(|| inner.deserialize_seq(Wrap::new(visitor, input)))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.input.check_length::<D::Error>("map")?;
        let Bounded { inner, input } = self;
        input.nested(|| inner.deserialize_map(Wrap::new(visitor, input)))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor, seed or access wrapped so that whatever it hands on is wrapped in turn.
struct Wrap<'i, 'b, T> {
    inner: T,
    input: &'i Input<'b>,
}

impl<'i, 'b, T> Wrap<'i, 'b, T> {
    fn new(inner: T, input: &'i Input<'b>) -> Self {
        Wrap { inner, input }
    }
}

/// Forwards `visit_*` methods that carry a plain value.
macro_rules! forward_value {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
            self.inner.$method(value)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_value! {
        visit_bool(bool)
        visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64) visit_i128(i128)
        visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64) visit_u128(u128)
        visit_f32(f32) visit_f64(f64) visit_char(char)
        visit_str(&str) visit_borrowed_str(&'de str) visit_string(String)
        visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner
            .visit_some(Bounded::new(deserializer, self.input))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .visit_newtype_struct(Bounded::new(deserializer, self.input))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Wrap::new(seq, self.input))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Wrap::new(map, self.input))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Wrap::new(data, self.input))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<'_, '_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner
            .deserialize(Bounded::new(deserializer, self.input))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, '_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Wrap::new(seed, self.input))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, '_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Wrap::new(seed, self.input))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(Wrap::new(seed, self.input))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'i, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<'i, 'b, A> {
    type Error = A::Error;
    type Variant = Wrap<'i, 'b, A::Variant>;

    /// The variant's identifier is passed through unwrapped: its deserializer need not read
    /// from the body (this wire format hands over the variant index as a plain integer), so a
    /// length check there could look at the wrong bytes. What follows it is wrapped.
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((value, Wrap::new(variant, self.input)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<'_, '_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Wrap::new(seed, self.input))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner
            .tuple_variant(len, Wrap::new(visitor, self.input))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .struct_variant(fields, Wrap::new(visitor, self.input))
    }
}
