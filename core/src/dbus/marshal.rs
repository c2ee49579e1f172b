//! Writing D-Bus values: the [`Writer`] puts each value at its alignment, counted from the
//! start of the message (the buffer's start), writing padding as zeros.
//!
//! The writer does not know the signature; [`Builder`](super::Builder) checks the body it
//! wrote against the signature it was given, so a mismatch is caught before sending.

use super::names::ObjectPath;
use super::signature::{self, Signature};
use super::value::Value;
use super::{DbusError, Endian, MAX_ARRAY_LEN, Result, align_up};

/// `fmt::Write` into a writer's buffer, for [`Writer::str_with`].
struct FmtOut<'w, 'b> {
    w: &'w mut Writer<'b>,
    nul: bool,
    full: bool,
}

impl core::fmt::Write for FmtOut<'_, '_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if s.as_bytes().contains(&0) {
            self.nul = true;
            return Err(core::fmt::Error);
        }
        self.w.raw(s.as_bytes()).map_err(|_| {
            self.full = true;
            core::fmt::Error
        })
    }
}

/// Writes D-Bus values into a caller's buffer.
///
/// `Send` and `Sync`: a `&mut [u8]` and a position.
pub struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
    endian: Endian,
}

impl core::fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Writer")
            .field("pos", &self.pos)
            .field("capacity", &self.buf.len())
            .field("endian", &self.endian)
            .finish_non_exhaustive()
    }
}

impl<'b> Writer<'b> {
    /// A writer at the start of `buf` (the message start), in this machine's byte order.
    pub fn new(buf: &'b mut [u8]) -> Writer<'b> {
        Writer { buf, pos: 0, endian: Endian::NATIVE }
    }

    /// A writer in the given byte order (big-endian output is for tests and tools; Ember
    /// sends in native order).
    pub fn with_endian(buf: &'b mut [u8], endian: Endian) -> Writer<'b> {
        Writer { buf, pos: 0, endian }
    }

    /// Bytes written so far (the next value's offset from the message start).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The byte order written.
    pub fn endian(&self) -> Endian {
        self.endian
    }

    pub(crate) fn into_parts(self) -> (&'b mut [u8], usize) {
        (self.buf, self.pos)
    }

    /// Writes zero bytes up to a multiple of `align`.
    pub fn pad(&mut self, align: usize) -> Result<()> {
        let end = align_up(self.pos, align);
        self.buf.get_mut(self.pos..end).ok_or(DbusError::BufferTooSmall)?.fill(0);
        self.pos = end;
        Ok(())
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.pos + bytes.len();
        self.buf.get_mut(self.pos..end).ok_or(DbusError::BufferTooSmall)?.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    fn fixed<const N: usize>(&mut self, le: [u8; N], be: [u8; N]) -> Result<()> {
        self.pad(N)?;
        self.raw(if self.endian == Endian::Little { &le } else { &be })
    }

    /// `y`.
    pub fn u8(&mut self, v: u8) -> Result<()> {
        self.raw(&[v])
    }
    /// `b` (a 32-bit 0 or 1).
    pub fn bool(&mut self, v: bool) -> Result<()> {
        self.u32(v as u32)
    }
    /// `n`.
    pub fn i16(&mut self, v: i16) -> Result<()> {
        self.fixed(v.to_le_bytes(), v.to_be_bytes())
    }
    /// `q`.
    pub fn u16(&mut self, v: u16) -> Result<()> {
        self.fixed(v.to_le_bytes(), v.to_be_bytes())
    }
    /// `i`.
    pub fn i32(&mut self, v: i32) -> Result<()> {
        self.fixed(v.to_le_bytes(), v.to_be_bytes())
    }
    /// `u`.
    pub fn u32(&mut self, v: u32) -> Result<()> {
        self.fixed(v.to_le_bytes(), v.to_be_bytes())
    }
    /// `x`.
    pub fn i64(&mut self, v: i64) -> Result<()> {
        self.fixed(v.to_le_bytes(), v.to_be_bytes())
    }
    /// `t`.
    pub fn u64(&mut self, v: u64) -> Result<()> {
        self.fixed(v.to_le_bytes(), v.to_be_bytes())
    }
    /// `d`.
    pub fn f64(&mut self, v: f64) -> Result<()> {
        self.u64(v.to_bits())
    }
    /// `h`: an index into the message's file descriptors.
    pub fn fd_index(&mut self, index: u32) -> Result<()> {
        self.u32(index)
    }

    /// `s`: length, bytes, NUL. A NUL inside the string is refused.
    pub fn str(&mut self, s: &str) -> Result<()> {
        if s.as_bytes().contains(&0) {
            return Err(DbusError::BadNul);
        }
        self.u32(u32::try_from(s.len()).map_err(|_| DbusError::BufferTooSmall)?)?;
        self.raw(s.as_bytes())?;
        self.raw(&[0])
    }

    /// `s`, its text produced by `text` (e.g. generated XML), written straight into the
    /// buffer. A NUL in the text is refused; a buffer too small is
    /// [`DbusError::BufferTooSmall`].
    pub fn str_with(&mut self, text: impl FnOnce(&mut dyn core::fmt::Write) -> core::fmt::Result) -> Result<()> {
        self.pad(4)?;
        let len_at = self.pos;
        self.raw(&[0; 4])?;
        let start = self.pos;
        let mut out = FmtOut { w: self, nul: false, full: false };
        let r = text(&mut out);
        let (nul, full) = (out.nul, out.full);
        if full {
            return Err(DbusError::BufferTooSmall);
        }
        if nul || r.is_err() {
            return Err(DbusError::BadNul);
        }
        let len = self.pos - start;
        let len = u32::try_from(len).map_err(|_| DbusError::BufferTooSmall)?;
        let bytes = if self.endian == Endian::Little { len.to_le_bytes() } else { len.to_be_bytes() };
        self.buf[len_at..len_at + 4].copy_from_slice(&bytes);
        self.raw(&[0])
    }

    /// Appends values marshalled elsewhere, in this writer's byte order, from a position
    /// that was a multiple of 8 (so their padding holds here): e.g. a body built by the C
    /// ABI's argument builder. The writer must be at a multiple of 8 too
    /// ([`DbusError::NonZeroPadding`] otherwise: the padding would be wrong). The bytes are
    /// copied as they are: check them against their signature first.
    pub fn marshalled(&mut self, bytes: &[u8]) -> Result<()> {
        if !self.pos.is_multiple_of(8) {
            return Err(DbusError::NonZeroPadding);
        }
        self.raw(bytes)
    }

    /// `ay`: a byte array, copied in one piece.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.array(b'y', |w| w.raw(bytes))
    }

    /// `o`.
    pub fn object_path(&mut self, p: ObjectPath<'_>) -> Result<()> {
        self.str(p.as_str())
    }

    /// `g`: a one-byte length, bytes, NUL.
    pub fn signature(&mut self, s: Signature<'_>) -> Result<()> {
        self.raw(&[s.as_str().len() as u8])?;
        self.raw(s.as_str().as_bytes())?;
        self.raw(&[0])
    }

    /// `a...`: writes the length, pads to the element alignment (even for an empty array),
    /// lets `elements` write the elements, then fills in the length (which excludes that
    /// first padding). `element` is the element's type code (`{` for a dict entry).
    pub fn array(&mut self, element: u8, elements: impl FnOnce(&mut Writer<'b>) -> Result<()>) -> Result<()> {
        self.pad(4)?;
        let len_at = self.pos;
        self.raw(&[0; 4])?;
        self.pad(signature::alignment(element))?;
        let start = self.pos;
        elements(self)?;
        let len = self.pos - start;
        if len > MAX_ARRAY_LEN {
            return Err(DbusError::BadArrayLength);
        }
        let bytes = if self.endian == Endian::Little { (len as u32).to_le_bytes() } else { (len as u32).to_be_bytes() };
        self.buf[len_at..len_at + 4].copy_from_slice(&bytes);
        Ok(())
    }

    /// `(...)` or `{..}`: pads to 8, then lets `fields` write the fields.
    pub fn structure(&mut self, fields: impl FnOnce(&mut Writer<'b>) -> Result<()>) -> Result<()> {
        self.pad(8)?;
        fields(self)
    }

    /// Writes a value read from a message again (containers element by element): e.g. to
    /// forward an argument of a type only known at run time.
    pub fn value(&mut self, v: Value<'_>) -> Result<()> {
        match v {
            Value::Byte(x) => self.u8(x),
            Value::Bool(x) => self.bool(x),
            Value::I16(x) => self.i16(x),
            Value::U16(x) => self.u16(x),
            Value::I32(x) => self.i32(x),
            Value::U32(x) => self.u32(x),
            Value::I64(x) => self.i64(x),
            Value::U64(x) => self.u64(x),
            Value::F64(x) => self.f64(x),
            Value::Str(x) => self.str(x),
            Value::Path(x) => self.object_path(x),
            Value::Sig(x) => self.signature(x),
            Value::Fd(x) => self.fd_index(x),
            Value::Array(a) => match a.as_bytes() {
                Some(b) => self.bytes(b),
                None => {
                    let code = a.element().as_str().as_bytes().first().copied().unwrap_or(b'y');
                    self.array(code, |w| a.into_iter().try_for_each(|e| w.value(e?)))
                }
            },
            Value::Struct(f) | Value::DictEntry(f) => self.structure(|w| f.into_iter().try_for_each(|e| w.value(e?))),
            Value::Variant(v) => self.variant(v.signature(), |w| w.value(v.value()?)),
        }
    }

    /// `v`: the value's signature (one complete type), then the value written by `value`.
    pub fn variant(&mut self, sig: Signature<'_>, value: impl FnOnce(&mut Writer<'b>) -> Result<()>) -> Result<()> {
        if !sig.is_single() {
            return Err(DbusError::BadSignature);
        }
        self.signature(sig)?;
        value(self)
    }
}
