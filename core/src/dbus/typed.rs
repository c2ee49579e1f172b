//! Typed D-Bus values: Rust types that know their D-Bus signature, written with the
//! [`Writer`] and read with the [`Reader`] without a heap.
//!
//! A type's signature is a compile-time constant ([`DbusType::SIGNATURE`], a
//! [`SignatureBuf`]): tuples and derived structs compose their fields' signatures, so
//! `(u32, &str, Dict<&str, Variant>)` is `(usa{sv})` before the program runs. A signature
//! longer than the specification's 255 bytes stops the build.
//!
//! | Rust | D-Bus | read as |
//! |---|---|---|
//! | `u8` `bool` `i16` `u16` `i32` `u32` `i64` `u64` `f64` | `y b n q i u x t d` | the value |
//! | `&str` / `str`, `heapless::String<N>` | `s` | `&'a str` borrowed from the message, or `heapless::String` (owned, up to `N` bytes) |
//! | [`ObjectPath`], [`Signature`] | `o`, `g` | borrowed |
//! | [`Fd`] | `h` | the index of an fd sent with the message (`ember_linux` turns it into an `OwnedFd` with `take_fd`) |
//! | `&[T]`, `[T; N]`, `heapless::Vec<T, N>` | `aT` | [`ArrayView`] (lazy), `&'a [u8]` for `ay`, or `heapless::Vec` (owned, up to `N`) |
//! | [`Dict`] (a slice of pairs) | `a{KV}` | [`DictView`] (lazy) |
//! | tuples of 1 to 8, `#[derive(DbusStruct)]` structs | `(...)` | the same types |
//! | [`Var`]`(x)`, `&dyn` [`ToVariant`] | `v` | [`Variant`] with [`Variant::get`] |
//!
//! A message body is a *sequence* of complete types, not a struct: [`Body`] (with
//! [`EncodeBody`] and [`DecodeBody`]) is implemented for `()` and for tuples of 1 to 8
//! [`DbusType`]s, whose signature is their fields' side by side (`(i32, i32)` as a body is
//! `ii`; the same tuple inside a body is the struct `(ii)`).
//!
//! Reading checks the signature first: [`Message::body_as`](super::Message::body_as) and
//! [`Variant::get`] compare the type's signature with the message's (or the variant's) and
//! return [`DbusError::SignatureMismatch`] when they differ, so a value is never read as a
//! type it is not. The values are then read with every check the [`Reader`] makes.
//!
//! # Checked at compile time
//!
//! A dict's key must be a basic type, a struct must have a field, and D-Bus has no enums:
//!
//! ```compile_fail
//! use ember_core::dbus::{Builder, typed::Dict};
//! let pairs = [((1i32, 2i32), 3u8)];
//! let mut buf = [0u8; 64];
//! // `(ii)` is not a basic type: no `a{(ii)y}`.
//! Builder::signal("/a", "a.B", "C").build_typed(&mut buf, 1, &(Dict(&pairs[..]),));
//! ```
//!
//! ```compile_fail
//! #[derive(ember_core::dbus::DbusStruct)]
//! struct Empty {}
//! ```
//!
//! ```compile_fail
//! #[derive(ember_core::dbus::DbusStruct)]
//! enum Mode { On, Off }
//! ```
//!
//! # Panics
//!
//! None at run time: errors are [`DbusError`]s. A signature that would break the 255-byte
//! limit is a compile-time error (the constant's evaluation fails).
//!
//! # Example
//!
//! ```
//! use ember_core::dbus::typed::{Dict, DictView, ToVariant};
//! use ember_core::dbus::{Builder, DbusStruct, Message, Variant};
//!
//! #[derive(Debug, PartialEq, DbusStruct)]
//! struct Reading<'a> {
//!     sensor: &'a str,
//!     millikelvin: u32,
//! }
//!
//! let mut buf = [0u8; 256];
//! let attrs: [(&str, &dyn ToVariant); 2] = [("unit", &"K"), ("scale", &1000u32)];
//! let body = (Reading { sensor: "cpu", millikelvin: 318_150 }, Dict(&attrs[..]));
//! let bytes = Builder::signal("/s", "org.example.Sensor", "Changed").build_typed(&mut buf, 1, &body)?;
//! let m = Message::parse(bytes, bytes.len())?;
//! assert_eq!(m.signature().as_str(), "(su)a{sv}");
//!
//! let (reading, attrs): (Reading<'_>, DictView<'_, &str, Variant<'_>>) = m.body_as()?;
//! assert_eq!(reading, Reading { sensor: "cpu", millikelvin: 318_150 });
//! for entry in attrs {
//!     let (key, value) = entry?;
//!     match key {
//!         "unit" => assert_eq!(value.get::<&str>()?, "K"),
//!         _ => assert_eq!(value.get::<u32>()?, 1000),
//!     }
//! }
//! // The wrong type is a typed error, not a misread.
//! assert_eq!(m.body_as::<(u32,)>().err(), Some(ember_core::dbus::DbusError::SignatureMismatch));
//! # Ok::<(), ember_core::dbus::DbusError>(())
//! ```

use core::marker::PhantomData;

use super::marshal::Writer;
use super::names::ObjectPath;
use super::signature::Signature;
use super::value::{Reader, Value, Variant};
use super::{DbusError, MAX_SIGNATURE_LEN, Result};

/// A signature built at compile time: up to 255 bytes inline.
///
/// `Send` and `Sync`: plain data.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBuf {
    bytes: [u8; MAX_SIGNATURE_LEN],
    len: u8,
}

impl core::fmt::Debug for SignatureBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SignatureBuf({:?})", self.as_str())
    }
}

impl SignatureBuf {
    /// No types.
    pub const EMPTY: SignatureBuf = SignatureBuf { bytes: [0; MAX_SIGNATURE_LEN], len: 0 };

    /// The one-byte signature of a basic type code (or `v`).
    pub const fn code(c: u8) -> SignatureBuf {
        SignatureBuf::EMPTY.push(c)
    }

    /// Appends a byte. Past 255 bytes the constant being built fails to evaluate (a
    /// compile-time error where it is a constant, as every [`DbusType::SIGNATURE`] is).
    pub const fn push(mut self, c: u8) -> SignatureBuf {
        assert!((self.len as usize) < MAX_SIGNATURE_LEN, "a D-Bus signature is at most 255 bytes");
        self.bytes[self.len as usize] = c;
        self.len += 1;
        self
    }

    /// Appends another signature.
    pub const fn append(mut self, other: &SignatureBuf) -> SignatureBuf {
        let mut i = 0;
        while i < other.len as usize {
            self = self.push(other.bytes[i]);
            i += 1;
        }
        self
    }

    /// `a` and the element's signature.
    pub const fn array(element: &SignatureBuf) -> SignatureBuf {
        SignatureBuf::code(b'a').append(element)
    }

    /// `a{KV}`.
    pub const fn dict(key: &SignatureBuf, value: &SignatureBuf) -> SignatureBuf {
        SignatureBuf::code(b'a').push(b'{').append(key).append(value).push(b'}')
    }

    /// The fields side by side (a message body).
    pub const fn sequence(fields: &[&SignatureBuf]) -> SignatureBuf {
        let mut s = SignatureBuf::EMPTY;
        let mut i = 0;
        while i < fields.len() {
            s = s.append(fields[i]);
            i += 1;
        }
        s
    }

    /// `(` the fields `)`: a struct. A struct has at least one field (checked where the
    /// constant is built).
    pub const fn structure(fields: &[&SignatureBuf]) -> SignatureBuf {
        assert!(!fields.is_empty(), "a D-Bus struct has at least one field");
        SignatureBuf::code(b'(').append(&SignatureBuf::sequence(fields)).push(b')')
    }

    /// The signature's bytes.
    pub const fn as_bytes(&self) -> &[u8] {
        self.bytes.split_at(self.len as usize).0
    }

    /// The signature as text (its bytes are ASCII type codes).
    pub const fn as_str(&self) -> &str {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => s,
            // Only type codes are ever pushed by the impls of this module; a byte pushed by
            // hand that is not UTF-8 reads as no types (and then mismatches every message).
            Err(_) => "",
        }
    }

    /// The first byte (the type code that decides the alignment), 0 if empty.
    pub const fn first(&self) -> u8 {
        self.bytes[0]
    }

    /// Checks the signature against the grammar and the nesting limits (32 arrays, 32
    /// structs: a Rust type can nest deeper than D-Bus allows) and returns it.
    pub fn checked(&self) -> Result<Signature<'_>> {
        Signature::new(self.as_str())
    }
}

/// A Rust type that is one complete D-Bus type.
pub trait DbusType {
    /// Its signature.
    const SIGNATURE: SignatureBuf;
}

/// A [`DbusType`] that can be written.
pub trait Encode: DbusType {
    /// Writes the value at the writer's position (with its alignment).
    fn encode(&self, w: &mut Writer<'_>) -> Result<()>;

    /// Writes the elements of an array of this type (one after the other, without the
    /// array's length). Byte arrays override it to copy in one piece.
    fn encode_slice(items: &[Self], w: &mut Writer<'_>) -> Result<()>
    where
        Self: Sized,
    {
        items.iter().try_for_each(|x| x.encode(w))
    }
}

/// A [`DbusType`] that can be read, borrowing from the message (`'a`) where it borrows.
pub trait Decode<'a>: DbusType + Sized {
    /// Reads one value at the reader's position. The caller has checked that the value has
    /// this type's signature (the reader's checks still apply: padding, UTF-8, lengths...).
    fn decode(r: &mut Reader<'a>) -> Result<Self>;
}

/// A D-Bus type whose values are plain ("basic"): what a dict's key may be.
pub trait BasicType: DbusType {}

/// A message body's types: `()` (no values) and tuples of 1 to 8 [`DbusType`]s.
pub trait Body {
    /// The body's signature (its types side by side).
    const SIGNATURE: SignatureBuf;
}

/// A [`Body`] that can be written.
pub trait EncodeBody: Body {
    /// Writes the values one after the other.
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<()>;
}

/// A [`Body`] that can be read.
pub trait DecodeBody<'a>: Body + Sized {
    /// Reads the values one after the other.
    fn decode_body(r: &mut Reader<'a>) -> Result<Self>;
}

/// The signature of `T`, `'static`.
pub const fn signature_of<T: DbusType + ?Sized>() -> &'static str {
    const { &T::SIGNATURE }.as_str()
}

/// The signature of the body `T`, `'static`.
pub const fn body_signature_of<T: Body + ?Sized>() -> &'static str {
    const { &T::SIGNATURE }.as_str()
}

/// Reads a body of type `T` from `r`, which must hold exactly that body:
/// [`DbusError::SignatureMismatch`] if `sig` (the message's signature) is not `T`'s,
/// [`DbusError::BodyMismatch`] if bytes are left over.
pub(crate) fn read_body<'a, T: DecodeBody<'a>>(sig: &str, r: &mut Reader<'a>) -> Result<T> {
    if sig != body_signature_of::<T>() {
        return Err(DbusError::SignatureMismatch);
    }
    let v = T::decode_body(r)?;
    if !r.is_at_end() {
        return Err(DbusError::BodyMismatch);
    }
    Ok(v)
}

// ---- basic types ------------------------------------------------------------------------

macro_rules! basic {
    ($($t:ty => $code:literal, $write:ident, $read:ident;)*) => {
        $(
            impl DbusType for $t {
                const SIGNATURE: SignatureBuf = SignatureBuf::code($code);
            }
            impl BasicType for $t {}
            impl Encode for $t {
                #[inline]
                fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
                    w.$write(*self)
                }
            }
            impl<'a> Decode<'a> for $t {
                #[inline]
                fn decode(r: &mut Reader<'a>) -> Result<$t> {
                    r.$read()
                }
            }
        )*
    };
}

basic! {
    bool => b'b', bool, bool;
    i16 => b'n', i16, i16;
    u16 => b'q', u16, u16;
    i32 => b'i', i32, i32;
    u32 => b'u', u32, u32;
    i64 => b'x', i64, i64;
    u64 => b't', u64, u64;
    f64 => b'd', f64, f64;
}

impl DbusType for u8 {
    const SIGNATURE: SignatureBuf = SignatureBuf::code(b'y');
}
impl BasicType for u8 {}
impl Encode for u8 {
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.u8(*self)
    }
    fn encode_slice(items: &[u8], w: &mut Writer<'_>) -> Result<()> {
        w.raw(items)
    }
}
impl<'a> Decode<'a> for u8 {
    #[inline]
    fn decode(r: &mut Reader<'a>) -> Result<u8> {
        r.u8()
    }
}

impl DbusType for str {
    const SIGNATURE: SignatureBuf = SignatureBuf::code(b's');
}
impl BasicType for str {}
impl Encode for str {
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.str(self)
    }
}
impl<'a, 'de: 'a> Decode<'de> for &'a str {
    #[inline]
    fn decode(r: &mut Reader<'de>) -> Result<&'a str> {
        r.str()
    }
}

impl<const N: usize> DbusType for heapless::String<N> {
    const SIGNATURE: SignatureBuf = SignatureBuf::code(b's');
}
impl<const N: usize> BasicType for heapless::String<N> {}
impl<const N: usize> Encode for heapless::String<N> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.str(self)
    }
}
/// A string copied out of the message: longer than `N` bytes is
/// [`DbusError::BufferTooSmall`].
impl<'a, const N: usize> Decode<'a> for heapless::String<N> {
    fn decode(r: &mut Reader<'a>) -> Result<heapless::String<N>> {
        heapless::String::try_from(r.str()?).map_err(|_| DbusError::BufferTooSmall)
    }
}

impl DbusType for ObjectPath<'_> {
    const SIGNATURE: SignatureBuf = SignatureBuf::code(b'o');
}
impl BasicType for ObjectPath<'_> {}
impl Encode for ObjectPath<'_> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.object_path(*self)
    }
}
impl<'a, 'de: 'a> Decode<'de> for ObjectPath<'a> {
    fn decode(r: &mut Reader<'de>) -> Result<ObjectPath<'a>> {
        r.object_path()
    }
}

impl DbusType for Signature<'_> {
    const SIGNATURE: SignatureBuf = SignatureBuf::code(b'g');
}
impl BasicType for Signature<'_> {}
impl Encode for Signature<'_> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.signature(*self)
    }
}
impl<'a, 'de: 'a> Decode<'de> for Signature<'a> {
    fn decode(r: &mut Reader<'de>) -> Result<Signature<'a>> {
        r.signature()
    }
}

/// `h`: the index of a file descriptor sent with the message (below its `UNIX_FDS`).
/// Sending, the index is the fd's position in the fds given with the message; receiving,
/// `ember_linux`'s `take_fd(index)` gives the `OwnedFd`.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fd(pub u32);

impl DbusType for Fd {
    const SIGNATURE: SignatureBuf = SignatureBuf::code(b'h');
}
impl BasicType for Fd {}
impl Encode for Fd {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.fd_index(self.0)
    }
}
impl<'a> Decode<'a> for Fd {
    fn decode(r: &mut Reader<'a>) -> Result<Fd> {
        r.fd_index().map(Fd)
    }
}

// ---- references -------------------------------------------------------------------------

impl<T: DbusType + ?Sized> DbusType for &T {
    const SIGNATURE: SignatureBuf = T::SIGNATURE;
}
impl<T: BasicType + ?Sized> BasicType for &T {}
impl<T: Encode + ?Sized> Encode for &T {
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        (**self).encode(w)
    }
}

// ---- arrays -----------------------------------------------------------------------------

impl<T: DbusType> DbusType for [T] {
    const SIGNATURE: SignatureBuf = SignatureBuf::array(&T::SIGNATURE);
}
impl<T: Encode> Encode for [T] {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.array(T::SIGNATURE.first(), |w| T::encode_slice(self, w))
    }
}

impl<T: DbusType, const N: usize> DbusType for [T; N] {
    const SIGNATURE: SignatureBuf = SignatureBuf::array(&T::SIGNATURE);
}
impl<T: Encode, const N: usize> Encode for [T; N] {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        self[..].encode(w)
    }
}

/// `ay` borrowed from the message.
impl<'a, 'de: 'a> Decode<'de> for &'a [u8] {
    fn decode(r: &mut Reader<'de>) -> Result<&'a [u8]> {
        let sig = Signature::new_unchecked("ay");
        match r.value(sig)? {
            Value::Array(a) => a.as_bytes().ok_or(DbusError::WrongType),
            _ => Err(DbusError::WrongType),
        }
    }
}

impl<T: DbusType, const N: usize> DbusType for heapless::Vec<T, N> {
    const SIGNATURE: SignatureBuf = SignatureBuf::array(&T::SIGNATURE);
}
impl<T: Encode, const N: usize> Encode for heapless::Vec<T, N> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        self[..].encode(w)
    }
}
/// An array read into a fixed-capacity vector: more than `N` elements is
/// [`DbusError::BufferTooSmall`].
impl<'a, T: Decode<'a>, const N: usize> Decode<'a> for heapless::Vec<T, N> {
    fn decode(r: &mut Reader<'a>) -> Result<heapless::Vec<T, N>> {
        let mut out = heapless::Vec::new();
        for x in ArrayView::<T>::decode(r)? {
            out.push(x?).map_err(|_| DbusError::BufferTooSmall)?;
        }
        Ok(out)
    }
}

/// The array of `sig` at the reader's position, as a reader over its elements.
fn array_reader<'a>(r: &mut Reader<'a>, sig: &'static SignatureBuf) -> Result<Reader<'a>> {
    match r.value(Signature::new_unchecked(sig.as_str()))? {
        Value::Array(a) => Ok(a.into_reader()),
        _ => Err(DbusError::WrongType),
    }
}

/// An array read lazily: each element is read as `T` when the iterator reaches it. The
/// array's bytes were checked when the view was made (unless the message was checked in
/// full before, as every message a connection receives is).
///
/// `Send` and `Sync`: a view of borrowed bytes.
pub struct ArrayView<'a, T> {
    reader: Reader<'a>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for ArrayView<'_, T> {
    fn clone(&self) -> Self {
        ArrayView { reader: self.reader.clone(), _t: PhantomData }
    }
}

impl<T: DbusType> core::fmt::Debug for ArrayView<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ArrayView")
            .field("signature", &Self::SIGNATURE.as_str())
            .field("byte_len", &self.byte_len())
            .finish()
    }
}

impl<T> ArrayView<'_, T> {
    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.reader.is_at_end()
    }
    /// The bytes of elements left (not counting the padding before the first).
    pub fn byte_len(&self) -> usize {
        self.reader.remaining()
    }
}

impl<T: DbusType> DbusType for ArrayView<'_, T> {
    const SIGNATURE: SignatureBuf = SignatureBuf::array(&T::SIGNATURE);
}
impl<'a, 'de: 'a, T: Decode<'de>> Decode<'de> for ArrayView<'a, T> {
    fn decode(r: &mut Reader<'de>) -> Result<ArrayView<'a, T>> {
        Ok(ArrayView { reader: array_reader(r, const { &Self::SIGNATURE })?, _t: PhantomData })
    }
}
/// Writes the elements again (read one by one: an element that cannot be read is its error).
impl<'a, T: Decode<'a> + Encode> Encode for ArrayView<'a, T> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.array(T::SIGNATURE.first(), |w| self.clone().try_for_each(|x| x?.encode(w)))
    }
}

impl<'a, T: Decode<'a>> Iterator for ArrayView<'a, T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        if self.reader.is_at_end() {
            return None;
        }
        let x = T::decode(&mut self.reader);
        if x.is_err() {
            // An element that cannot be read ends the array (it could not be skipped).
            self.reader.skip_to_end();
        }
        Some(x)
    }
}

// ---- dicts ------------------------------------------------------------------------------

/// A dict to write, `a{KV}`, from a slice of pairs (in that order; keys are not checked
/// for duplicates, as the specification leaves that to the reader).
///
/// `Send` and `Sync` if the pairs are.
#[derive(Debug, Clone, Copy)]
pub struct Dict<'s, K, V>(pub &'s [(K, V)]);

impl<K: BasicType, V: DbusType> DbusType for Dict<'_, K, V> {
    const SIGNATURE: SignatureBuf = SignatureBuf::dict(&K::SIGNATURE, &V::SIGNATURE);
}
impl<K: BasicType + Encode, V: Encode> Encode for Dict<'_, K, V> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.array(b'{', |w| {
            self.0.iter().try_for_each(|(k, v)| {
                w.structure(|w| {
                    k.encode(w)?;
                    v.encode(w)
                })
            })
        })
    }
}

/// A dict read lazily, `a{KV}`: each entry is read as `(K, V)` when the iterator reaches
/// it (in the message's order; a key that appears twice comes twice).
///
/// `Send` and `Sync`: a view of borrowed bytes.
pub struct DictView<'a, K, V> {
    reader: Reader<'a>,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for DictView<'_, K, V> {
    fn clone(&self) -> Self {
        DictView { reader: self.reader.clone(), _t: PhantomData }
    }
}

impl<K: BasicType, V: DbusType> core::fmt::Debug for DictView<'_, K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DictView")
            .field("signature", &Self::SIGNATURE.as_str())
            .field("byte_len", &self.byte_len())
            .finish()
    }
}

impl<K, V> DictView<'_, K, V> {
    /// Whether the dict has no entries.
    pub fn is_empty(&self) -> bool {
        self.reader.is_at_end()
    }
    /// The bytes of entries left.
    pub fn byte_len(&self) -> usize {
        self.reader.remaining()
    }
}

impl<'a, K: Decode<'a> + BasicType + PartialEq, V: Decode<'a>> DictView<'a, K, V> {
    /// The value of the first entry whose key is `key` (`None` if none; an entry that
    /// cannot be read is its error).
    pub fn get(&self, key: &K) -> Option<Result<V>> {
        for e in self.clone() {
            match e {
                Ok((k, v)) if k == *key => return Some(Ok(v)),
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }
}

impl<K: BasicType, V: DbusType> DbusType for DictView<'_, K, V> {
    const SIGNATURE: SignatureBuf = SignatureBuf::dict(&K::SIGNATURE, &V::SIGNATURE);
}
impl<'a, 'de: 'a, K: Decode<'de> + BasicType, V: Decode<'de>> Decode<'de> for DictView<'a, K, V> {
    fn decode(r: &mut Reader<'de>) -> Result<DictView<'a, K, V>> {
        Ok(DictView { reader: array_reader(r, const { &Self::SIGNATURE })?, _t: PhantomData })
    }
}
/// Writes the entries again.
impl<'a, K: Decode<'a> + BasicType + Encode, V: Decode<'a> + Encode> Encode for DictView<'a, K, V> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.array(b'{', |w| {
            self.clone().try_for_each(|e| {
                let (k, v) = e?;
                w.structure(|w| {
                    k.encode(w)?;
                    v.encode(w)
                })
            })
        })
    }
}

impl<'a, K: Decode<'a>, V: Decode<'a>> Iterator for DictView<'a, K, V> {
    type Item = Result<(K, V)>;
    fn next(&mut self) -> Option<Result<(K, V)>> {
        if self.reader.is_at_end() {
            return None;
        }
        let r = &mut self.reader;
        let e = (|| {
            r.align(8)?;
            Ok((K::decode(r)?, V::decode(r)?))
        })();
        if e.is_err() {
            self.reader.skip_to_end();
        }
        Some(e)
    }
}

// ---- variants ---------------------------------------------------------------------------

/// A value to write as a variant (`v`): its signature, then the value.
///
/// `Send` and `Sync` if `T` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var<T>(pub T);

impl<T> DbusType for Var<T> {
    const SIGNATURE: SignatureBuf = SignatureBuf::code(b'v');
}
impl<T: Encode> Encode for Var<T> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        let sig = const { &T::SIGNATURE }.checked()?;
        w.variant(sig, |w| self.0.encode(w))
    }
}

/// Any encodable value, to write as a variant where the values' types differ (the values
/// of an `a{sv}`): `&dyn ToVariant` is a `v`.
///
/// ```
/// use ember_core::dbus::typed::{Dict, ToVariant};
/// let props: [(&str, &dyn ToVariant); 2] = [("Name", &"probe"), ("Level", &7u32)];
/// let dict = Dict(&props[..]);
/// # let _ = dict;
/// ```
pub trait ToVariant {
    /// The value's signature.
    fn variant_signature(&self) -> &'static str;
    /// Writes the value (without its signature).
    fn encode_value(&self, w: &mut Writer<'_>) -> Result<()>;
}

impl<T: Encode> ToVariant for T {
    fn variant_signature(&self) -> &'static str {
        signature_of::<T>()
    }
    fn encode_value(&self, w: &mut Writer<'_>) -> Result<()> {
        self.encode(w)
    }
}

impl DbusType for dyn ToVariant + '_ {
    const SIGNATURE: SignatureBuf = SignatureBuf::code(b'v');
}
impl Encode for dyn ToVariant + '_ {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.variant(Signature::new(self.variant_signature())?, |w| self.encode_value(w))
    }
}

impl DbusType for Variant<'_> {
    const SIGNATURE: SignatureBuf = SignatureBuf::code(b'v');
}
impl<'a, 'de: 'a> Decode<'de> for Variant<'a> {
    fn decode(r: &mut Reader<'de>) -> Result<Variant<'a>> {
        match r.value(Signature::new_unchecked("v"))? {
            Value::Variant(v) => Ok(v),
            _ => Err(DbusError::WrongType),
        }
    }
}
/// Writes the variant received again (its signature and its value, copied value by value).
impl Encode for Variant<'_> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.variant(self.signature(), |w| w.value(self.value()?))
    }
}

impl<'a> Variant<'a> {
    /// The value inside as `T`: [`DbusError::SignatureMismatch`] if the variant holds
    /// another type.
    pub fn get<T: Decode<'a>>(&self) -> Result<T> {
        if self.signature().as_str() != signature_of::<T>() {
            return Err(DbusError::SignatureMismatch);
        }
        T::decode(&mut self.inner_reader())
    }

    /// Whether the value inside is a `T`.
    pub fn is<T: DbusType>(&self) -> bool {
        self.signature().as_str() == signature_of::<T>()
    }
}

// ---- tuples: structs, and bodies --------------------------------------------------------

impl Body for () {
    const SIGNATURE: SignatureBuf = SignatureBuf::EMPTY;
}
impl EncodeBody for () {
    fn encode_body(&self, _: &mut Writer<'_>) -> Result<()> {
        Ok(())
    }
}
impl<'a> DecodeBody<'a> for () {
    fn decode_body(_: &mut Reader<'a>) -> Result<()> {
        Ok(())
    }
}

macro_rules! tuples {
    ($(($($t:ident $i:tt),+))*) => {
        $(
            impl<$($t: DbusType),+> DbusType for ($($t,)+) {
                const SIGNATURE: SignatureBuf = SignatureBuf::structure(&[$(&$t::SIGNATURE),+]);
            }
            impl<$($t: Encode),+> Encode for ($($t,)+) {
                fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
                    w.structure(|w| {
                        $(self.$i.encode(w)?;)+
                        Ok(())
                    })
                }
            }
            impl<'a, $($t: Decode<'a>),+> Decode<'a> for ($($t,)+) {
                fn decode(r: &mut Reader<'a>) -> Result<Self> {
                    r.align(8)?;
                    Ok(($($t::decode(r)?,)+))
                }
            }
            impl<$($t: DbusType),+> Body for ($($t,)+) {
                const SIGNATURE: SignatureBuf = SignatureBuf::sequence(&[$(&$t::SIGNATURE),+]);
            }
            impl<$($t: Encode),+> EncodeBody for ($($t,)+) {
                #[inline]
                fn encode_body(&self, w: &mut Writer<'_>) -> Result<()> {
                    $(self.$i.encode(w)?;)+
                    Ok(())
                }
            }
            impl<'a, $($t: Decode<'a>),+> DecodeBody<'a> for ($($t,)+) {
                #[inline]
                fn decode_body(r: &mut Reader<'a>) -> Result<Self> {
                    Ok(($($t::decode(r)?,)+))
                }
            }
        )*
    };
}

tuples! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbus::{Builder, Endian, Message};

    #[derive(Debug, PartialEq, crate::dbus::DbusStruct)]
    struct Point {
        x: i32,
        y: i32,
    }

    #[derive(Debug, PartialEq, crate::dbus::DbusStruct)]
    struct Named<'a>(&'a str, Point, u8);

    /// A generic struct with a lifetime, and the crate path given.
    #[derive(crate::dbus::DbusStruct)]
    #[ember(crate = "crate")]
    struct Tagged<'a, T> {
        tag: &'a str,
        values: ArrayView<'a, T>,
        last: T,
    }

    #[test]
    fn generic_struct() {
        assert_eq!(signature_of::<Tagged<'_, u16>>(), "(saqq)");
        assert_eq!(signature_of::<Tagged<'_, Point>>(), "(sa(ii)(ii))");
        let mut buf = [0u8; 256];
        let src = [1u16, 2];
        let bytes = Builder::signal("/a", "a.B", "C").build_typed(&mut buf, 1, &(("t", &src[..], 3u16),)).unwrap();
        let m = Message::parse(bytes, 256).unwrap();
        let (t,): (Tagged<'_, u16>,) = m.body_as().unwrap();
        assert_eq!((t.tag, t.last), ("t", 3));
        assert_eq!(t.values.map(Result::unwrap).collect::<std::vec::Vec<_>>(), [1, 2]);
    }

    #[test]
    fn signatures_compose() {
        assert_eq!(signature_of::<(u8, bool, i16, u16, i32, u32, i64, u64)>(), "(ybnqiuxt)");
        assert_eq!(signature_of::<(f64, &str, ObjectPath<'_>, Signature<'_>, Fd)>(), "(dsogh)");
        assert_eq!(signature_of::<[(i32, &str)]>(), "a(is)");
        assert_eq!(signature_of::<Dict<'_, &str, Var<u32>>>(), "a{sv}");
        assert_eq!(signature_of::<DictView<'_, u32, ArrayView<'_, Variant<'_>>>>(), "a{uav}");
        assert_eq!(signature_of::<Named<'_>>(), "(s(ii)y)");
        assert_eq!(body_signature_of::<(i32, i32)>(), "ii");
        assert_eq!(body_signature_of::<((i32, i32),)>(), "(ii)");
        assert_eq!(body_signature_of::<()>(), "");
        assert_eq!(signature_of::<heapless::Vec<Point, 4>>(), "a(ii)");
    }

    /// Typed writing gives the same bytes as the hand-written builder, in both byte orders,
    /// and typed reading gives the values back.
    #[test]
    fn same_bytes_as_by_hand_both_orders() {
        for endian in [Endian::Little, Endian::Big] {
            let (mut a, mut b) = ([0u8; 512], [0u8; 512]);
            let attrs = [("k", Var(7u8)), ("s", Var(1u8))];
            let body = (1u8, Point { x: -1, y: 2 }, &[1u16, 2, 3][..], Dict(&attrs[..]), "text", Fd(0));
            let typed =
                Builder::signal("/a", "a.B", "C").unix_fds(1).endian(endian).build_typed(&mut a, 3, &body).unwrap();
            let sig = Signature::new("y(ii)aqa{sv}sh").unwrap();
            let by_hand = Builder::signal("/a", "a.B", "C")
                .unix_fds(1)
                .endian(endian)
                .build(&mut b, 3, sig, |w| {
                    w.u8(1)?;
                    w.structure(|w| {
                        w.i32(-1)?;
                        w.i32(2)
                    })?;
                    w.array(b'q', |w| [1u16, 2, 3].iter().try_for_each(|&x| w.u16(x)))?;
                    w.array(b'{', |w| {
                        for (k, v) in [("k", 7u8), ("s", 1)] {
                            w.structure(|w| {
                                w.str(k)?;
                                w.variant(Signature::new("y")?, |w| w.u8(v))
                            })?;
                        }
                        Ok(())
                    })?;
                    w.str("text")?;
                    w.fd_index(0)
                })
                .unwrap();
            assert_eq!(typed, by_hand);
            let m = Message::parse(typed, 512).unwrap();
            type Back<'a> = (u8, Point, ArrayView<'a, u16>, DictView<'a, &'a str, Variant<'a>>, &'a str, Fd);
            let (y, p, arr, dict, s, fd): Back<'_> = m.body_as().unwrap();
            assert_eq!((y, p, s, fd), (1, Point { x: -1, y: 2 }, "text", Fd(0)));
            assert_eq!(arr.map(|x| x.unwrap()).collect::<std::vec::Vec<_>>(), [1, 2, 3]);
            assert_eq!(dict.get(&"s").unwrap().unwrap().get::<u8>(), Ok(1));
            assert_eq!(dict.get(&"k").unwrap().unwrap().get::<u8>(), Ok(7));
            assert!(dict.get(&"z").is_none());
            let (_, _, arr, ..): (u8, Point, heapless::Vec<u16, 3>, DictView<'_, &str, Variant<'_>>, &str, Fd) =
                m.body_as().unwrap();
            assert_eq!(&arr[..], [1, 2, 3]);
            // Too many for the capacity: a typed error.
            type Short<'a> = (u8, Point, heapless::Vec<u16, 2>, DictView<'a, &'a str, Variant<'a>>, &'a str, Fd);
            let r: Result<Short<'_>> = m.body_as();
            assert_eq!(r.err(), Some(DbusError::BufferTooSmall));
        }
    }

    #[test]
    fn mismatches_are_typed_errors() {
        let mut buf = [0u8; 256];
        let bytes = Builder::signal("/a", "a.B", "C").build_typed(&mut buf, 1, &(Var(5u32), &b"xy"[..])).unwrap();
        let m = Message::parse(bytes, 256).unwrap();
        assert_eq!(m.signature().as_str(), "vay");
        assert_eq!(m.body_as::<(u32, &[u8])>().err(), Some(DbusError::SignatureMismatch));
        assert_eq!(m.body_as::<(Variant<'_>,)>().err(), Some(DbusError::SignatureMismatch));
        let (v, bytes): (Variant<'_>, &[u8]) = m.body_as().unwrap();
        assert_eq!(bytes, b"xy");
        assert!(v.is::<u32>() && !v.is::<i32>());
        assert_eq!(v.get::<i32>(), Err(DbusError::SignatureMismatch));
        assert_eq!(v.get::<u32>(), Ok(5));
        // A variant of a variant of a struct.
        let bytes = Builder::signal("/a", "a.B", "C").build_typed(&mut buf, 1, &(Var(Var((1u8, "z"))),)).unwrap();
        let m = Message::parse(bytes, 256).unwrap();
        let (v,): (Variant<'_>,) = m.body_as().unwrap();
        assert_eq!(v.get::<Variant<'_>>().unwrap().get::<(u8, &str)>(), Ok((1, "z")));
    }

    /// A Rust type nested deeper than D-Bus allows is refused when written, not sent.
    #[test]
    fn too_deep_is_refused() {
        type D4<T> = [[[[T; 1]; 1]; 1]; 1];
        type Deep = D4<D4<D4<D4<D4<D4<D4<D4<D4<u8>>>>>>>>>;
        assert_eq!(signature_of::<Deep>().len(), 37);
        let mut buf = [0u8; 1024];
        let deep: Deep = Default::default();
        let r = Builder::signal("/a", "a.B", "C").build_typed(&mut buf, 1, &(deep,));
        assert_eq!(r.err(), Some(DbusError::BadSignature));
    }

    /// Typed reading of damaged bytes returns errors, never panics, whether the body is
    /// read with every check (`parse_header`) or as already checked (`parse_again`).
    #[test]
    fn damaged_bytes_never_panic() {
        let mut buf = [0u8; 512];
        let attrs = [("a", Var(Point { x: 1, y: 2 })), ("b", Var(Point { x: 3, y: 4 }))];
        let nested = [[1u16, 2], [3, 4]];
        let body = (Named("n", Point { x: 1, y: 2 }, 3), Dict(&attrs[..]), &nested[..], Var(Var("s")), Fd(0));
        let len = Builder::signal("/a", "a.B", "C").unix_fds(1).build_typed(&mut buf, 1, &body).unwrap().len();
        type Back<'a> =
            (Named<'a>, DictView<'a, &'a str, Variant<'a>>, ArrayView<'a, heapless::Vec<u16, 2>>, Variant<'a>, Fd);
        let read = |m: Message<'_>| {
            if let Ok((_, dict, arrays, v, _)) = m.body_as::<Back<'_>>() {
                for (_, v) in dict.flatten() {
                    let _ = v.get::<Point>();
                }
                arrays.for_each(drop);
                let _ = v.get::<Variant<'_>>().map(|v| v.get::<&str>());
            }
        };
        let mut damaged = [0u8; 512];
        // Under Miri (an interpreter, ~10,000 times slower), every seventh byte and three
        // values: the header's fields and a sample of the body, in seconds, not minutes.
        let (step, values) = if cfg!(miri) { (7, 3) } else { (1, 6) };
        for at in (0..len).step_by(step) {
            for x in [0u8, 0xff, buf[at].wrapping_add(1), 1, 0x7f, 0x80].into_iter().take(values) {
                damaged[..len].copy_from_slice(&buf[..len]);
                damaged[at] = x;
                if let Ok(m) = Message::parse_header(&damaged[..len], 512) {
                    read(m);
                }
                if let Ok(m) = Message::parse_again(&damaged[..len], 512) {
                    read(m);
                }
            }
        }
    }

    #[test]
    fn typed_reading_allocates_nothing() {
        let mut buf = [0u8; 512];
        let attrs = [("a", Var(1u32)), ("b", Var(2u32))];
        let n = ember_test_support::allocations(|| {
            for _ in 0..if cfg!(miri) { 5 } else { 100 } {
                let body = (Named("n", Point { x: 1, y: 2 }, 3), Dict(&attrs[..]), &b"bytes"[..]);
                let bytes = Builder::signal("/a", "a.B", "C").build_typed(&mut buf, 1, &body).unwrap();
                let m = Message::parse(bytes, 512).unwrap();
                let (named, dict, b): (Named<'_>, DictView<'_, &str, Variant<'_>>, &[u8]) = m.body_as().unwrap();
                assert_eq!(named, Named("n", Point { x: 1, y: 2 }, 3));
                assert_eq!(b, b"bytes");
                let mut sum = 0;
                for e in dict {
                    sum += e.unwrap().1.get::<u32>().unwrap();
                }
                assert_eq!(sum, 3);
            }
        });
        assert_eq!(n, 0);
    }
}
