//! Reading D-Bus values from a message, in either byte order, as borrowed [`Value`]s.
//!
//! A [`Reader`] reads at positions counted from the message start, so alignment is the
//! message's. Every read checks what the specification requires: zero padding, booleans 0
//! or 1, strings UTF-8 with one terminating NUL and none inside, valid object paths and
//! signatures, array lengths within 64 MiB and matching their elements, fd indices below
//! the message's fd count, and container nesting within the limits. Containers come back
//! as views ([`Array`], [`Fields`], [`Variant`]) iterated lazily; nothing is copied.

use super::names::ObjectPath;
use super::signature::{self, Signature};
use super::{DbusError, Endian, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_STRUCT_DEPTH, MAX_TOTAL_DEPTH, Result, align_up};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Depth {
    arrays: u8,
    structs: u8,
    total: u8,
}

impl Depth {
    /// Inside a variant: the array and struct limits apply per signature, so they start
    /// again; the total (64) runs across variants.
    fn enter_variant(self) -> Result<Depth> {
        let d = Depth { arrays: 0, structs: 0, total: self.total + 1 };
        if d.total as usize > MAX_TOTAL_DEPTH {
            return Err(DbusError::TooDeep);
        }
        Ok(d)
    }

    fn enter(self, array: bool, structure: bool) -> Result<Depth> {
        let d =
            Depth { arrays: self.arrays + array as u8, structs: self.structs + structure as u8, total: self.total + 1 };
        if d.arrays as usize > MAX_ARRAY_DEPTH
            || d.structs as usize > MAX_STRUCT_DEPTH
            || d.total as usize > MAX_TOTAL_DEPTH
        {
            return Err(DbusError::TooDeep);
        }
        Ok(d)
    }
}

/// Reads values from `data` (a whole message, or a buffer that starts where a message
/// starts) between a start and an end position.
///
/// `Send` and `Sync`: a view of borrowed bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    endian: Endian,
    fds: u32,
    depth: Depth,
    /// Reading bytes [`Message::parse`](super::Message::parse) already checked in full: the
    /// checks it made (array contents walked ahead, zero padding, NULs inside strings) are
    /// not repeated, and values are skipped without being decoded. Still bounds-checked: on
    /// other bytes it returns errors or unchecked values, never panics.
    trusted: bool,
}

impl<'a> Reader<'a> {
    /// A reader over all of `data`, in `endian` order, for a message without fds.
    pub fn new(data: &'a [u8], endian: Endian) -> Reader<'a> {
        Reader { data, pos: 0, end: data.len(), endian, fds: 0, depth: Depth::default(), trusted: false }
    }

    /// The same reader, accepting `h` values (fd indices) below `fds`: for reading the body
    /// of a message whose header says `UNIX_FDS = fds` (e.g. from a capture file).
    pub fn with_fds(mut self, fds: u32) -> Reader<'a> {
        self.fds = fds;
        self
    }

    /// A reader over `data[start..end]` (positions still counted from `data`'s start),
    /// accepting fd indices below `fds`.
    pub(crate) fn range(data: &'a [u8], start: usize, end: usize, endian: Endian, fds: u32) -> Reader<'a> {
        Reader { data, pos: start, end, endian, fds, depth: Depth::default(), trusted: false }
    }

    /// The same, over bytes already checked in full by `Message::parse` (see `trusted`).
    pub(crate) fn trusted(mut self, trusted: bool) -> Reader<'a> {
        self.trusted = trusted;
        self
    }

    /// Goes back to `pos` (to read again what was peeked at).
    pub(crate) fn rewind(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// Stops reading at `end` (for a container whose length was read).
    pub(crate) fn set_end(&mut self, end: usize) {
        self.end = end;
    }

    /// The current position, from the message start.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether everything up to the end was read.
    #[inline]
    pub fn is_at_end(&self) -> bool {
        self.pos == self.end
    }

    /// Bytes left up to the end.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// Gives up on what is left (a container whose element could not be read).
    pub(crate) fn skip_to_end(&mut self) {
        self.pos = self.end;
    }

    /// Skips padding up to a multiple of `align`, checking that it is zero.
    #[inline]
    pub fn align(&mut self, align: usize) -> Result<()> {
        let p = align_up(self.pos, align);
        if p > self.end {
            return Err(DbusError::Truncated);
        }
        if !self.trusted && self.data.get(self.pos..p).ok_or(DbusError::Truncated)?.iter().any(|&b| b != 0) {
            return Err(DbusError::NonZeroPadding);
        }
        self.pos = p;
        Ok(())
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(DbusError::Truncated)?;
        if end > self.end {
            return Err(DbusError::Truncated);
        }
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.align(N)?;
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N)?);
        if self.endian == Endian::Big {
            b.reverse();
        }
        // Now little-endian.
        Ok(b)
    }

    /// `y`.
    #[inline]
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    /// `n`.
    pub fn i16(&mut self) -> Result<i16> {
        self.fixed().map(i16::from_le_bytes)
    }
    /// `q`.
    pub fn u16(&mut self) -> Result<u16> {
        self.fixed().map(u16::from_le_bytes)
    }
    /// `i`.
    pub fn i32(&mut self) -> Result<i32> {
        self.fixed().map(i32::from_le_bytes)
    }
    /// `u`.
    #[inline]
    pub fn u32(&mut self) -> Result<u32> {
        self.fixed().map(u32::from_le_bytes)
    }
    /// `x`.
    pub fn i64(&mut self) -> Result<i64> {
        self.fixed().map(i64::from_le_bytes)
    }
    /// `t`.
    pub fn u64(&mut self) -> Result<u64> {
        self.fixed().map(u64::from_le_bytes)
    }
    /// `d`.
    pub fn f64(&mut self) -> Result<f64> {
        self.u64().map(f64::from_bits)
    }
    /// `b`: exactly 0 or 1.
    pub fn bool(&mut self) -> Result<bool> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DbusError::BadBoolean),
        }
    }
    /// `h`: an fd index, below the message's fd count.
    pub fn fd_index(&mut self) -> Result<u32> {
        let i = self.u32()?;
        if i >= self.fds { Err(DbusError::BadFdIndex) } else { Ok(i) }
    }

    #[inline]
    fn text(&mut self, len: usize) -> Result<&'a str> {
        let bytes = self.take(len)?;
        if self.take(1)? != [0] {
            return Err(DbusError::BadNul);
        }
        // Most D-Bus text is ASCII: one pass checks it has no NUL and is valid UTF-8.
        if bytes.iter().all(|&b| b.wrapping_sub(1) < 0x7f) {
            // SAFETY: every byte is in 1..=127, ASCII, which is valid UTF-8.
            return Ok(unsafe { core::str::from_utf8_unchecked(bytes) });
        }
        if !self.trusted && bytes.contains(&0) {
            return Err(DbusError::BadNul);
        }
        core::str::from_utf8(bytes).map_err(|_| DbusError::BadUtf8)
    }

    /// `s`.
    #[inline]
    pub fn str(&mut self) -> Result<&'a str> {
        let len = self.u32()? as usize;
        self.text(len)
    }
    /// `o`.
    pub fn object_path(&mut self) -> Result<ObjectPath<'a>> {
        ObjectPath::new(self.str()?)
    }
    /// `g`.
    pub fn signature(&mut self) -> Result<Signature<'a>> {
        let len = self.u8()? as usize;
        // One basic type or a variant, the common case, without the general checks.
        if len == 1
            && let Some(&[c, 0]) = self.data.get(self.pos..self.pos + 2).filter(|_| self.pos + 2 <= self.end)
            && let Some(sig) = Signature::single_code(c)
        {
            self.pos += 2;
            return Ok(sig);
        }
        Signature::new(self.text(len)?)
    }

    /// A variant's signature: exactly one complete type.
    fn single_signature(&mut self) -> Result<Signature<'a>> {
        let sig = self.signature()?;
        if sig.is_single() { Ok(sig) } else { Err(DbusError::BadSignature) }
    }

    /// Reads one value of the complete type `sig` (from a checked signature).
    pub fn value(&mut self, sig: Signature<'a>) -> Result<Value<'a>> {
        let s = sig.as_str().as_bytes();
        Ok(match s.first().copied().ok_or(DbusError::BadSignature)? {
            b'y' => Value::Byte(self.u8()?),
            b'b' => Value::Bool(self.bool()?),
            b'n' => Value::I16(self.i16()?),
            b'q' => Value::U16(self.u16()?),
            b'i' => Value::I32(self.i32()?),
            b'u' => Value::U32(self.u32()?),
            b'x' => Value::I64(self.i64()?),
            b't' => Value::U64(self.u64()?),
            b'd' => Value::F64(self.f64()?),
            b'h' => Value::Fd(self.fd_index()?),
            b's' => Value::Str(self.str()?),
            b'o' => Value::Path(self.object_path()?),
            b'g' => Value::Sig(self.signature()?),
            b'v' => {
                let depth = self.depth.enter_variant()?;
                let inner = self.single_signature()?;
                let mut child = Reader { depth, ..self.clone() };
                let start = child.pos;
                child.step(inner)?;
                self.pos = child.pos;
                Value::Variant(Variant { sig: inner, reader: Reader { pos: start, ..child } })
            }
            b'a' => {
                let elem = Signature::new_unchecked(&sig.as_str()[1..]);
                let depth = self.depth.enter(true, false)?;
                let len = self.u32()? as usize;
                if len > MAX_ARRAY_LEN {
                    return Err(DbusError::BadArrayLength);
                }
                let code = elem.as_str().as_bytes()[0];
                self.align(signature::alignment(code))?;
                let start = self.pos;
                let end = start.checked_add(len).filter(|&e| e <= self.end).ok_or(DbusError::Truncated)?;
                let reader = Reader { pos: start, end, depth, ..self.clone() };
                let array = Array { elem, reader };
                if !self.trusted {
                    array.check()?;
                }
                self.pos = end;
                Value::Array(array)
            }
            b'(' | b'{' => {
                let depth = self.depth.enter(false, s[0] == b'(')?;
                self.align(8)?;
                let inner = Signature::new_unchecked(&sig.as_str()[1..s.len() - 1]);
                let mut child = Reader { depth, ..self.clone() };
                let start = child.pos;
                for t in inner.types() {
                    child.step(t)?;
                }
                self.pos = child.pos;
                let fields = Fields { types: inner.types(), reader: Reader { pos: start, ..child } };
                if s[0] == b'(' { Value::Struct(fields) } else { Value::DictEntry(fields) }
            }
            _ => return Err(DbusError::BadSignature),
        })
    }

    /// Moves past one value of `sig`: reads it (checking it) or, when trusted, skips it.
    #[inline]
    fn step(&mut self, sig: Signature<'a>) -> Result<()> {
        if self.trusted { self.skip(sig) } else { self.check(sig) }
    }

    /// Moves past one value of `sig`, checking it as [`value`](Reader::value) does, without
    /// building the [`Value`]s.
    fn check(&mut self, sig: Signature<'a>) -> Result<()> {
        let s = sig.as_str().as_bytes();
        match *s.first().ok_or(DbusError::BadSignature)? {
            b'y' => self.take(1).map(drop),
            b'b' => self.bool().map(drop),
            b'n' | b'q' => self.fixed::<2>().map(drop),
            b'i' | b'u' => self.fixed::<4>().map(drop),
            b'h' => self.fd_index().map(drop),
            b'x' | b't' | b'd' => self.fixed::<8>().map(drop),
            b's' => self.str().map(drop),
            b'o' => self.object_path().map(drop),
            b'g' => self.signature().map(drop),
            b'v' => {
                let depth = self.depth.enter_variant()?;
                let inner = self.single_signature()?;
                let outer = core::mem::replace(&mut self.depth, depth);
                let r = self.check(inner);
                self.depth = outer;
                r
            }
            // An array: its length read and its elements checked once, by `value`.
            b'a' => self.value(sig).map(|_| ()),
            b'(' | b'{' if s.len() >= 2 => {
                let depth = self.depth.enter(false, s[0] == b'(')?;
                self.align(8)?;
                let outer = core::mem::replace(&mut self.depth, depth);
                let r = Signature::new_unchecked(&sig.as_str()[1..s.len() - 1]).types().try_for_each(|t| self.check(t));
                self.depth = outer;
                r
            }
            _ => Err(DbusError::BadSignature),
        }
    }

    /// Moves past one value of `sig` without decoding it, for bytes already checked: only
    /// lengths and bounds are read. Nesting is still bounded (signatures are checked, and
    /// variants count towards the total depth), so it cannot recurse without limit.
    fn skip(&mut self, sig: Signature<'a>) -> Result<()> {
        let s = sig.as_str().as_bytes();
        let code = *s.first().ok_or(DbusError::BadSignature)?;
        match code {
            b'y' => self.take(1).map(drop),
            b'n' | b'q' => self.fixed::<2>().map(drop),
            b'b' | b'i' | b'u' | b'h' => self.fixed::<4>().map(drop),
            b'x' | b't' | b'd' => self.fixed::<8>().map(drop),
            b's' | b'o' => {
                let len = self.u32()? as usize;
                self.take(len.checked_add(1).ok_or(DbusError::Truncated)?).map(drop)
            }
            b'g' => {
                let len = self.u8()? as usize;
                self.take(len + 1).map(drop)
            }
            b'v' => {
                let depth = self.depth.enter_variant()?;
                let inner = self.single_signature()?;
                let outer = self.depth;
                self.depth = depth;
                let r = self.skip(inner);
                self.depth = outer;
                r
            }
            b'a' => {
                let elem = s.get(1).copied().ok_or(DbusError::BadSignature)?;
                let len = self.u32()? as usize;
                self.align(signature::alignment(elem))?;
                self.take(len).map(drop)
            }
            b'(' | b'{' if s.len() >= 2 => {
                self.align(8)?;
                for t in Signature::new_unchecked(&sig.as_str()[1..s.len() - 1]).types() {
                    self.skip(t)?;
                }
                Ok(())
            }
            _ => Err(DbusError::BadSignature),
        }
    }

    /// The values of the types of `sig`, one after the other (a message body).
    pub fn values(self, sig: Signature<'a>) -> Values<'a> {
        Values { types: sig.types(), reader: self }
    }
}

/// One value, borrowed from the message.
///
/// `Send` and `Sync`: a view of borrowed bytes.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    /// `y`
    Byte(u8),
    /// `b`
    Bool(bool),
    /// `n`
    I16(i16),
    /// `q`
    U16(u16),
    /// `i`
    I32(i32),
    /// `u`
    U32(u32),
    /// `x`
    I64(i64),
    /// `t`
    U64(u64),
    /// `d`
    F64(f64),
    /// `s`
    Str(&'a str),
    /// `o`
    Path(ObjectPath<'a>),
    /// `g`
    Sig(Signature<'a>),
    /// `h`: the index of a file descriptor sent with the message.
    Fd(u32),
    /// `a...`
    Array(Array<'a>),
    /// `(...)`
    Struct(Fields<'a>),
    /// `{..}`, an element of a dict (`a{..}`)
    DictEntry(Fields<'a>),
    /// `v`
    Variant(Variant<'a>),
}

macro_rules! value_into {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(
            impl<'a> TryFrom<Value<'a>> for $t {
                type Error = DbusError;
                fn try_from(v: Value<'a>) -> Result<$t> {
                    match v {
                        Value::$variant(x) => Ok(x),
                        _ => Err(DbusError::WrongType),
                    }
                }
            }
        )*
    };
}

value_into!(
    u8 => Byte, bool => Bool, i16 => I16, u16 => U16, i32 => I32, u32 => U32, i64 => I64, u64 => U64,
    f64 => F64, &'a str => Str, ObjectPath<'a> => Path, Signature<'a> => Sig, Array<'a> => Array,
    Variant<'a> => Variant,
);

/// The values of a body or a struct, in order; each is checked as it is read.
///
/// `Send` and `Sync`: a view of borrowed bytes.
#[derive(Debug, Clone)]
pub struct Values<'a> {
    types: signature::Types<'a>,
    reader: Reader<'a>,
}

impl<'a> Values<'a> {
    /// The next value, converted to `T` ([`DbusError::WrongType`] if it is another type,
    /// [`DbusError::BodyMismatch`] if there is none).
    pub fn next_as<T: TryFrom<Value<'a>, Error = DbusError>>(&mut self) -> Result<T> {
        self.next().ok_or(DbusError::BodyMismatch)??.try_into()
    }

    /// Whether every value was read and nothing is left over.
    #[inline]
    pub fn is_at_end(&self) -> bool {
        self.reader.is_at_end()
    }

    /// The signature of the values not read yet.
    pub fn rest_signature(&self) -> Signature<'a> {
        self.types.rest()
    }

    /// The values not read yet, read as the body `T` (e.g. a service's arguments):
    /// [`DbusError::SignatureMismatch`] if their signature is not `T`'s,
    /// [`DbusError::BodyMismatch`] if bytes are left over.
    pub fn decode<T: super::typed::DecodeBody<'a>>(mut self) -> Result<T> {
        super::typed::read_body(self.types.rest().as_str(), &mut self.reader)
    }
}

impl<'a> Iterator for Values<'a> {
    type Item = Result<Value<'a>>;
    #[inline]
    fn next(&mut self) -> Option<Result<Value<'a>>> {
        let t = self.types.next()?;
        Some(self.reader.value(t))
    }
}

/// The fields of a struct or dict entry.
///
/// `Send` and `Sync`: a view of borrowed bytes.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    types: signature::Types<'a>,
    reader: Reader<'a>,
}

impl<'a> Fields<'a> {
    /// The next field, converted to `T`.
    pub fn next_as<T: TryFrom<Value<'a>, Error = DbusError>>(&mut self) -> Result<T> {
        self.next().ok_or(DbusError::BodyMismatch)??.try_into()
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Value<'a>>;
    #[inline]
    fn next(&mut self) -> Option<Result<Value<'a>>> {
        let t = self.types.next()?;
        Some(self.reader.value(t))
    }
}

/// An array: its elements, read lazily.
///
/// `Send` and `Sync`: a view of borrowed bytes.
#[derive(Debug, Clone)]
pub struct Array<'a> {
    elem: Signature<'a>,
    reader: Reader<'a>,
}

impl<'a> Array<'a> {
    /// The element type.
    pub fn element(&self) -> Signature<'a> {
        self.elem
    }

    /// The array's length in bytes (not counting the padding before the first element).
    pub fn byte_len(&self) -> usize {
        self.reader.end - self.reader.pos
    }

    /// The reader over the elements (for typed views).
    pub(crate) fn into_reader(self) -> Reader<'a> {
        self.reader
    }

    /// An `ay` as a byte slice (`None` for other element types).
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        (self.elem.as_str() == "y").then(|| &self.reader.data[self.reader.pos..self.reader.end])
    }

    /// Checks every element once (fixed-size elements by length alone).
    fn check(&self) -> Result<()> {
        let code = self.elem.as_str().as_bytes()[0];
        let size = match code {
            b'y' => 1,
            b'n' | b'q' => 2,
            b'i' | b'u' => 4,
            b'x' | b't' | b'd' => 8,
            _ => 0,
        };
        if size > 0 {
            return if self.byte_len().is_multiple_of(size) { Ok(()) } else { Err(DbusError::BadArrayLength) };
        }
        let mut r = self.reader.clone();
        while !r.is_at_end() {
            r.check(self.elem).map_err(|e| if e == DbusError::Truncated { DbusError::BadArrayLength } else { e })?;
        }
        Ok(())
    }
}

impl<'a> Iterator for Array<'a> {
    type Item = Result<Value<'a>>;
    #[inline]
    fn next(&mut self) -> Option<Result<Value<'a>>> {
        if self.reader.is_at_end() {
            return None;
        }
        let v = self.reader.value(self.elem);
        if v.is_err() {
            // An element that cannot be read ends the array (it could not be skipped).
            self.reader.pos = self.reader.end;
        }
        Some(v)
    }
}

/// A variant: its signature and its value.
///
/// `Send` and `Sync`: a view of borrowed bytes.
#[derive(Debug, Clone)]
pub struct Variant<'a> {
    sig: Signature<'a>,
    reader: Reader<'a>,
}

impl<'a> Variant<'a> {
    /// The signature of the value inside.
    pub fn signature(&self) -> Signature<'a> {
        self.sig
    }

    /// The value inside.
    #[inline]
    pub fn value(&self) -> Result<Value<'a>> {
        self.reader.clone().value(self.sig)
    }

    /// A reader at the value inside (for typed reads).
    pub(crate) fn inner_reader(&self) -> Reader<'a> {
        self.reader.clone()
    }
}
