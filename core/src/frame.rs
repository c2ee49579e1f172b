//! The Ember frame: the one wire format every transport carries.
//!
//! `docs/wire-format.md` is the normative description; this module implements it. A frame
//! is a 24-byte little-endian header followed by `len` payload bytes (postcard, for typed
//! messages):
//!
//! ```text
//!  0      2    3     4          8          12         16         20         24
//!  +------+----+-----+----------+----------+----------+----------+----------+---------
//!  | "EM" | ver|flags|   kind   |   seq    |   len    |   crc    |   hcrc   | payload
//!  +------+----+-----+----------+----------+----------+----------+----------+---------
//! ```
//!
//! - `crc` is CRC-32C over header bytes `0..16` followed by the payload, or over the header
//!   bytes alone when the frame sets [`Flags::UNCHECKED`] (its payload is not covered:
//!   [`Integrity::Unchecked`], for media that cannot damage bytes);
//! - `hcrc` is CRC-32C over header bytes `0..20` (it covers `crc`), so a receiver can trust
//!   a header, and the length in it, before the payload has arrived. Every frame has it.
//!
//! The module follows smoltcp's `wire` style: [`Frame`] is a view over a byte buffer
//! (`Frame<&[u8]>` to read, `Frame<&mut [u8]>` to write) and [`FrameRepr`] the parsed,
//! high-level header with [`FrameRepr::parse`], [`FrameRepr::buffer_len`] and
//! [`FrameRepr::emit`].
//!
//! # Panics
//!
//! Field getters and setters of [`Frame`] index the buffer directly: they panic if the
//! buffer is shorter than [`HEADER_LEN`] (or than the frame, for the payload accessors).
//! [`Frame::new_checked`] guarantees that cannot happen, and so does every function that
//! takes untrusted bytes ([`Frame::new_checked`], [`FrameRepr::parse`], [`split`],
//! [`crate::message::decode`], the accumulator): those return an [`Error`] instead.
//! [`Frame::new_unchecked`] is for buffers the caller already sized.
//!
//! # Example
//!
//! ```
//! use ember_core::frame::{Flags, Frame, FrameRepr, HEADER_LEN};
//!
//! let payload = b"hi";
//! let repr = FrameRepr { flags: Flags::empty(), kind: 7, seq: 1, payload_len: payload.len() };
//! let mut buf = [0u8; 64];
//! let bytes = repr.emit_with_payload(payload, &mut buf).unwrap();
//! assert_eq!(bytes.len(), HEADER_LEN + 2);
//!
//! let frame = Frame::new_checked(&*bytes).unwrap();
//! assert_eq!(frame.kind(), 7);
//! assert_eq!(frame.payload(), b"hi");
//! assert_eq!(FrameRepr::parse(&frame).unwrap(), repr);
//! ```

use crate::crc32c::{crc32c, crc32c_append};
use crate::error::{Error, Result};

/// The magic bytes every frame starts with: ASCII `"EM"`.
pub const MAGIC: [u8; 2] = *b"EM";
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 24;
/// Format limit on the payload length: 16 MiB. Receivers may set lower limits.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;
/// Format limit on a whole frame: header plus [`MAX_PAYLOAD_LEN`].
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN;

/// Byte ranges of the header fields.
mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..2;
    pub const VERSION: usize = 2;
    pub const FLAGS: usize = 3;
    pub const KIND: Range<usize> = 4..8;
    pub const SEQ: Range<usize> = 8..12;
    pub const LEN: Range<usize> = 12..16;
    /// The frame CRC covers the header up to here, then the payload.
    pub const CRC_COVERED: Range<usize> = 0..16;
    /// The header CRC covers bytes 0..20: `CRC_COVERED`, then `CRC`.
    pub const CRC: Range<usize> = 16..20;
    pub const HCRC: Range<usize> = 20..24;
}

/// Frame flags (header byte 3).
///
/// Bits 0–3 are *critical*: a receiver that does not know a set critical bit rejects the
/// frame ([`Error::UnknownFlags`]). Bits 4–7 are *ignorable*: receivers ignore those they do
/// not know, so later minor revisions can add hints there without a version bump. Version 1
/// defines [`Flags::RESPONSE`], [`Flags::ERROR`] and [`Flags::UNCHECKED`].
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Flags(u8);

impl Flags {
    /// The frame answers the request with the same sequence number.
    pub const RESPONSE: Flags = Flags(0x01);
    /// The payload is an error response (set together with [`Flags::RESPONSE`]).
    pub const ERROR: Flags = Flags(0x02);
    /// The payload is not covered by the frame checksum: `crc` covers header bytes `0..16`
    /// only ([`Integrity::Unchecked`]). Critical, so a receiver that predates it refuses
    /// such a frame rather than reporting its payload corrupt.
    pub const UNCHECKED: Flags = Flags(0x04);
    /// Critical bits this version knows.
    const KNOWN_CRITICAL: u8 = 0x07;
    /// The critical half of the byte.
    const CRITICAL_MASK: u8 = 0x0F;

    /// No flags set.
    pub const fn empty() -> Flags {
        Flags(0)
    }
    /// The raw byte.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Flags from a raw byte, keeping every bit (known or not).
    pub const fn from_bits_retain(bits: u8) -> Flags {
        Flags(bits)
    }
    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// `self` with the bits of `other` added.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    /// The critical bits set in `self` that this version does not know (0 if none).
    pub const fn unknown_critical(self) -> u8 {
        self.0 & Self::CRITICAL_MASK & !Self::KNOWN_CRITICAL
    }
}

/// Whether a frame's payload is covered by its checksum. The header is always checked.
///
/// [`Integrity::Checked`] (no flag: every frame before this flag existed) is valid
/// everywhere; [`Integrity::Unchecked`] sets [`Flags::UNCHECKED`] and saves the CRC pass over
/// the payload on both ends, for media that deliver bytes intact (pipes, message queues,
/// Unix sockets, shared-memory rings). `docs/wire-format.md` section 4 has the rule.
///
/// ```
/// use ember_core::frame::{Flags, Frame, FrameRepr, Integrity};
///
/// let repr = FrameRepr { flags: Integrity::Unchecked.flags(), kind: 7, seq: 1, payload_len: 0 };
/// let mut buf = [0u8; 64];
/// let bytes = repr.emit_with_payload(b"not covered", &mut buf).unwrap();
/// let frame = Frame::new_checked(&*bytes).unwrap();
/// assert_eq!(frame.integrity(), Integrity::Unchecked);
/// assert!(frame.flags().contains(Flags::UNCHECKED));
/// ```
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Integrity {
    /// The frame checksum covers header and payload: a damaged payload is detected.
    #[default]
    Checked,
    /// The frame checksum covers the header only ([`Flags::UNCHECKED`]).
    Unchecked,
}

impl Integrity {
    /// The flag bits that say so: [`Flags::UNCHECKED`] or none.
    pub const fn flags(self) -> Flags {
        match self {
            Integrity::Checked => Flags::empty(),
            Integrity::Unchecked => Flags::UNCHECKED,
        }
    }
    /// What a frame with `flags` carries.
    pub const fn of(flags: Flags) -> Integrity {
        if flags.contains(Flags::UNCHECKED) { Integrity::Unchecked } else { Integrity::Checked }
    }
    /// `true` for [`Integrity::Checked`].
    pub const fn is_checked(self) -> bool {
        matches!(self, Integrity::Checked)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

/// A read/write view of a frame in a byte buffer.
///
/// The buffer may be longer than the frame (bytes after it are ignored);
/// [`Frame::total_len`] says where the frame ends.
///
/// `Send` and `Sync` when the buffer `T` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn read_u32(b: &[u8], r: core::ops::Range<usize>) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[r]);
    u32::from_le_bytes(w)
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it. Accessors panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps untrusted bytes, checking everything: length, magic, header checksum,
    /// version, critical flags, the format's payload limit, and the frame checksum (over
    /// the payload too unless the frame is [`Integrity::Unchecked`]).
    ///
    /// After this succeeds no accessor can panic, as long as the header is not modified
    /// through a setter (a larger `set_payload_len` makes the payload accessors panic).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        // The common case, a good frame, in a few word operations; anything else goes the
        // long way, which names the first check that failed.
        if let Some(h) = buffer.as_ref().first_chunk::<HEADER_LEN>()
            && header_and_crc_ok(h, buffer.as_ref())
        {
            return Ok(Frame::new_unchecked(buffer));
        }
        Self::new_checked_slow(buffer)
    }

    /// [`Frame::new_checked`] one check at a time, for the error.
    #[cold]
    fn new_checked_slow(buffer: T) -> Result<Frame<T>> {
        let frame = Frame::new_unchecked(buffer);
        // The checks of `check_header`, `check_len` and `check_crc`, with one pass over
        // the header's first 16 bytes for both checksums.
        let prefix = check_header_prefix(frame.buffer.as_ref())?;
        frame.check_len()?;
        let crc =
            if frame.flags().contains(Flags::UNCHECKED) { prefix } else { crc32c_append(prefix, frame.payload()) };
        if crc != frame.crc() {
            return Err(Error::BadCrc);
        }
        Ok(frame)
    }

    /// Checks the header alone: at least [`HEADER_LEN`] bytes, the magic, the header
    /// checksum, the version, the critical flags and the format's payload limit. The
    /// payload need not be present yet.
    pub fn check_header(&self) -> Result<()> {
        check_header_bytes(self.buffer.as_ref()).map(|_| ())
    }

    /// Checks that the buffer holds the whole frame (header and declared payload).
    /// Call after [`Frame::check_header`].
    pub fn check_len(&self) -> Result<()> {
        let available = self.buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(Error::Truncated { needed: HEADER_LEN, available });
        }
        let needed = self.total_len();
        if available < needed {
            return Err(Error::Truncated { needed, available });
        }
        Ok(())
    }

    /// Checks the frame checksum over the header and, unless the frame is
    /// [`Integrity::Unchecked`], the payload. Call after [`Frame::check_len`].
    pub fn check_crc(&self) -> Result<()> {
        if self.compute_crc() == self.crc() { Ok(()) } else { Err(Error::BadCrc) }
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The magic bytes (`"EM"` in a valid frame).
    pub fn magic(&self) -> [u8; 2] {
        let b = self.buffer.as_ref();
        [b[field::MAGIC.start], b[field::MAGIC.start + 1]]
    }
    /// The format version.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }
    /// The flags, unknown bits included.
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }
    /// Whether the payload is covered by the frame checksum ([`Flags::UNCHECKED`] clear).
    pub fn integrity(&self) -> Integrity {
        Integrity::of(self.flags())
    }
    /// The message kind (the application's type id).
    pub fn kind(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::KIND)
    }
    /// The sequence number.
    pub fn seq(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ)
    }
    /// The declared payload length.
    pub fn payload_len(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::LEN)
    }
    /// The frame checksum field.
    pub fn crc(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::CRC)
    }
    /// The header checksum field.
    pub fn header_crc(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::HCRC)
    }
    /// Header plus declared payload length, saturating (never wraps on 32-bit targets).
    pub fn total_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len() as usize)
    }
    /// The payload: exactly the declared number of bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }
    /// The whole frame: header and payload, without any bytes after it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }
    /// The frame checksum the header and payload actually have (the header alone for an
    /// [`Integrity::Unchecked`] frame).
    pub fn compute_crc(&self) -> u32 {
        let b = self.buffer.as_ref();
        let prefix = crc32c(&b[field::CRC_COVERED]);
        match self.integrity() {
            Integrity::Checked => crc32c_append(prefix, self.payload()),
            Integrity::Unchecked => prefix,
        }
    }
}

impl<'a> Frame<&'a [u8]> {
    /// The payload, borrowed for the buffer's whole lifetime (not just the view's).
    pub fn payload_ref(&self) -> &'a [u8] {
        let total = self.total_len();
        &self.buffer[HEADER_LEN..total]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Writes the magic bytes.
    pub fn set_magic(&mut self) {
        self.buffer.as_mut()[field::MAGIC].copy_from_slice(&MAGIC);
    }
    /// Sets the format version.
    pub fn set_version(&mut self, version: u8) {
        self.buffer.as_mut()[field::VERSION] = version;
    }
    /// Sets the flags.
    pub fn set_flags(&mut self, flags: Flags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }
    /// Sets the message kind.
    pub fn set_kind(&mut self, kind: u32) {
        self.buffer.as_mut()[field::KIND].copy_from_slice(&kind.to_le_bytes());
    }
    /// Sets the sequence number.
    pub fn set_seq(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_le_bytes());
    }
    /// Sets the declared payload length.
    pub fn set_payload_len(&mut self, len: u32) {
        self.buffer.as_mut()[field::LEN].copy_from_slice(&len.to_le_bytes());
    }
    /// The payload, writable (its length is the declared one).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let total = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..total]
    }
    /// Computes and writes both checksums. Call last, after the header fields and the
    /// payload are in place. The flags say what `crc` covers: an [`Integrity::Unchecked`]
    /// frame's payload is not read.
    pub fn fill_checksums(&mut self) {
        // Both checksums start with the header's first 16 bytes: one pass over them.
        let b = self.buffer.as_ref();
        let h16: &[u8; 16] = b[field::CRC_COVERED].try_into().expect("a 16-byte range");
        let covered = match self.integrity() {
            Integrity::Checked => self.payload(),
            Integrity::Unchecked => &[],
        };
        let (crc, hcrc) = crate::crc32c::frame_sums(h16, covered);
        let b = self.buffer.as_mut();
        b[field::CRC].copy_from_slice(&crc.to_le_bytes());
        b[field::HCRC].copy_from_slice(&hcrc.to_le_bytes());
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Header bytes `0..4` of a valid version-1 frame, as a little-endian word: the magic, the
/// version and, in the flags byte, no critical bit this version does not know.
const WORD0: u32 = u32::from_le_bytes([MAGIC[0], MAGIC[1], VERSION, 0]);
/// The bits of header bytes `0..4` that [`WORD0`] fixes.
const WORD0_MASK: u32 = u32::from_le_bytes([0xFF, 0xFF, 0xFF, Flags::CRITICAL_MASK & !Flags::KNOWN_CRITICAL]);

#[inline(always)]
fn le32(h: &[u8; HEADER_LEN], at: usize) -> u32 {
    u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

/// Every check of [`Frame::new_checked`] on header `h` of frame bytes `b`, at once: `true`
/// when all pass (which one failed is the slow path's business).
#[inline]
fn header_and_crc_ok(h: &[u8; HEADER_LEN], b: &[u8]) -> bool {
    let h20: &[u8; 20] = h.first_chunk().expect("20 of 24 bytes");
    let (prefix, hcrc) = crate::crc32c::header_sums(h20);
    let len = le32(h, 12) as usize;
    if le32(h, 0) & WORD0_MASK != WORD0 || hcrc != le32(h, 20) || len > MAX_PAYLOAD_LEN {
        return false;
    }
    let Some(payload) = b.get(HEADER_LEN..HEADER_LEN + len) else { return false };
    let crc = if h[field::FLAGS] & Flags::UNCHECKED.0 != 0 { prefix } else { crc32c_append(prefix, payload) };
    crc == le32(h, 16)
}

/// Writes the header of a frame (`flags`, `kind`, `seq`, `payload.len()`, and both
/// checksums over it and, unless `flags` has [`Flags::UNCHECKED`], `payload`) into `h`.
/// The payload length must be at most [`MAX_PAYLOAD_LEN`].
#[inline]
pub(crate) fn write_header(h: &mut [u8; HEADER_LEN], flags: Flags, kind: u32, seq: u32, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD_LEN);
    let mut h16 = [0u8; 16];
    h16[..4].copy_from_slice(&(WORD0 | (u32::from(flags.0) << 24)).to_le_bytes());
    h16[4..8].copy_from_slice(&kind.to_le_bytes());
    h16[8..12].copy_from_slice(&seq.to_le_bytes());
    h16[12..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let (crc, hcrc) = if flags.contains(Flags::UNCHECKED) {
        crate::crc32c::unchecked_sums(&h16)
    } else {
        crate::crc32c::frame_sums(&h16, payload)
    };
    h[..16].copy_from_slice(&h16);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h[20..].copy_from_slice(&hcrc.to_le_bytes());
}

/// Validates a header at the start of `b` and returns the frame's total length. The
/// payload need not be present. Shared by [`Frame::check_header`] and the accumulator.
pub(crate) fn check_header_bytes(b: &[u8]) -> Result<usize> {
    check_header_prefix(b)?;
    Ok(HEADER_LEN + read_u32(b, field::LEN) as usize)
}

/// [`check_header_bytes`], returning the CRC-32C of the header's first 16 bytes (where the
/// frame checksum starts too).
fn check_header_prefix(b: &[u8]) -> Result<u32> {
    if b.len() < HEADER_LEN {
        return Err(Error::Truncated { needed: HEADER_LEN, available: b.len() });
    }
    if b[field::MAGIC] != MAGIC {
        return Err(Error::BadMagic);
    }
    let h20: &[u8; 20] = b[..20].try_into().expect("checked: at least HEADER_LEN bytes");
    let (prefix, hcrc) = crate::crc32c::header_sums(h20);
    if hcrc != read_u32(b, field::HCRC) {
        return Err(Error::BadHeaderCrc);
    }
    if b[field::VERSION] != VERSION {
        return Err(Error::UnsupportedVersion(b[field::VERSION]));
    }
    let unknown = Flags(b[field::FLAGS]).unknown_critical();
    if unknown != 0 {
        return Err(Error::UnknownFlags(unknown));
    }
    let len = read_u32(b, field::LEN) as usize;
    if len > MAX_PAYLOAD_LEN {
        return Err(Error::TooLarge {
            len: (len as u32).saturating_add(HEADER_LEN as u32),
            limit: MAX_FRAME_LEN as u32,
        });
    }
    Ok(prefix)
}

/// The parsed header of a frame: everything but the magic, version and checksums, which
/// [`FrameRepr::emit`] and [`Frame::fill_checksums`] derive.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameRepr {
    /// The flags.
    pub flags: Flags,
    /// The message kind: an application-chosen type id. Kinds `0xFFFF_0000` and above are
    /// reserved for Ember's own protocols.
    pub kind: u32,
    /// The sequence number (the application's; request/response matching uses it).
    pub seq: u32,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl FrameRepr {
    /// Parses a checked frame's header.
    ///
    /// Runs every check of [`Frame::new_checked`] again, so it is safe on an unchecked view
    /// of untrusted bytes too.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<FrameRepr> {
        frame.check_header()?;
        frame.check_len()?;
        frame.check_crc()?;
        Ok(FrameRepr::from_checked(frame))
    }

    /// Reads the header of a frame already checked with [`Frame::new_checked`].
    #[inline]
    pub(crate) fn from_checked<T: AsRef<[u8]>>(frame: &Frame<T>) -> FrameRepr {
        FrameRepr {
            flags: frame.flags(),
            kind: frame.kind(),
            seq: frame.seq(),
            payload_len: frame.payload_len() as usize,
        }
    }

    /// Whether the frame's payload is covered by its checksum (from [`FrameRepr::flags`]).
    pub const fn integrity(&self) -> Integrity {
        Integrity::of(self.flags)
    }

    /// `self` with [`Flags::UNCHECKED`] set or cleared for `integrity`; other flags stay.
    pub const fn with_integrity(self, integrity: Integrity) -> FrameRepr {
        let flags = Flags(self.flags.0 & !Flags::UNCHECKED.0 | integrity.flags().0);
        FrameRepr { flags, ..self }
    }

    /// Bytes the whole frame takes: header plus payload (saturating, so an absurd
    /// `payload_len` cannot overflow).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len)
    }

    /// Writes the header fields (magic, version, flags, kind, seq, len) into `frame`.
    ///
    /// The caller then writes the payload into [`Frame::payload_mut`] and calls
    /// [`Frame::fill_checksums`]. Fails with [`Error::TooLarge`] if the payload is above
    /// the format limit and [`Error::BufferTooSmall`] if the buffer cannot hold the frame;
    /// it never panics.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) -> Result<()> {
        if self.payload_len > MAX_PAYLOAD_LEN {
            return Err(Error::TooLarge {
                len: u32::try_from(self.buffer_len()).unwrap_or(u32::MAX),
                limit: MAX_FRAME_LEN as u32,
            });
        }
        if frame.buffer.as_ref().len() < self.buffer_len() {
            return Err(Error::BufferTooSmall { needed: self.buffer_len() });
        }
        frame.set_magic();
        frame.set_version(VERSION);
        frame.set_flags(self.flags);
        frame.set_kind(self.kind);
        frame.set_seq(self.seq);
        frame.set_payload_len(self.payload_len as u32);
        Ok(())
    }

    /// Writes a complete frame (header, `payload`, checksums) at the start of `buf` and
    /// returns its bytes. `self.payload_len` is taken from `payload`.
    pub fn emit_with_payload<'b>(&self, payload: &[u8], buf: &'b mut [u8]) -> Result<&'b mut [u8]> {
        let repr = FrameRepr { payload_len: payload.len(), ..*self };
        if repr.payload_len > MAX_PAYLOAD_LEN {
            return Err(Error::TooLarge {
                len: u32::try_from(repr.buffer_len()).unwrap_or(u32::MAX),
                limit: MAX_FRAME_LEN as u32,
            });
        }
        let total = repr.buffer_len();
        let Some((head, rest)) = buf.get_mut(..total).and_then(|b| b.split_first_chunk_mut::<HEADER_LEN>()) else {
            return Err(Error::BufferTooSmall { needed: total });
        };
        rest.copy_from_slice(payload);
        write_header(head, self.flags, self.kind, self.seq, rest);
        Ok(&mut buf[..total])
    }
}

/// Splits one checked frame off the front of `bytes`, returning it and the bytes after it.
///
/// For buffers that hold several frames back to back (a file, a batch read). Stream
/// transports use [`crate::accumulator::FrameAccumulator`], which also survives garbage.
pub fn split(bytes: &[u8]) -> Result<(Frame<&[u8]>, &[u8])> {
    let frame = Frame::new_checked(bytes)?;
    let total = frame.total_len();
    Ok((Frame::new_unchecked(&bytes[..total]), &bytes[total..]))
}

/// Frame length for a payload of at most `max_payload` bytes: a `const` helper to size
/// buffers, e.g. `[0u8; frame_len(64)]`.
pub const fn frame_len(max_payload: usize) -> usize {
    HEADER_LEN + max_payload
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of docs/wire-format.md: kind 0x0102, seq 7, payload "hi!".
    const EXAMPLE: [u8; 27] = [
        0x45, 0x4D, // magic "EM"
        0x01, // version 1
        0x00, // flags
        0x02, 0x01, 0x00, 0x00, // kind 0x0000_0102
        0x07, 0x00, 0x00, 0x00, // seq 7
        0x03, 0x00, 0x00, 0x00, // payload length 3
        0x8D, 0xFD, 0x2D, 0xEA, // crc  0xEA2D_FD8D
        0x8A, 0x9C, 0x1A, 0xD9, // hcrc 0xD91A_9C8A
        b'h', b'i', b'!', // payload
    ];

    /// The unchecked worked example of docs/wire-format.md: the same frame with flag
    /// `UNCHECKED`; `crc` covers header bytes `0..16` only.
    const EXAMPLE_UNCHECKED: [u8; 27] = [
        0x45, 0x4D, // magic "EM"
        0x01, // version 1
        0x04, // flags: UNCHECKED
        0x02, 0x01, 0x00, 0x00, // kind 0x0000_0102
        0x07, 0x00, 0x00, 0x00, // seq 7
        0x03, 0x00, 0x00, 0x00, // payload length 3
        0x8B, 0x1C, 0xAB, 0x8D, // crc  0x8DAB_1C8B = crc32c(bytes 0..16)
        0xC7, 0x4B, 0x67, 0x48, // hcrc 0x4867_4BC7
        b'h', b'i', b'!', // payload, not covered
    ];

    #[test]
    fn unchecked_byte_literal() {
        let repr = FrameRepr { flags: Flags::UNCHECKED, kind: 0x0102, seq: 7, payload_len: 3 };
        let mut buf = [0u8; 27];
        assert_eq!(repr.emit_with_payload(b"hi!", &mut buf).unwrap(), &EXAMPLE_UNCHECKED[..]);
        let frame = Frame::new_checked(&EXAMPLE_UNCHECKED[..]).unwrap();
        assert_eq!(frame.integrity(), Integrity::Unchecked);
        assert_eq!(frame.crc(), crc32c(&EXAMPLE_UNCHECKED[..16]));
        assert_eq!(FrameRepr::parse(&frame).unwrap(), repr);
        assert_eq!(repr.integrity(), Integrity::Unchecked);
        // The checked example is still valid and checked.
        assert_eq!(Frame::new_checked(&EXAMPLE[..]).unwrap().integrity(), Integrity::Checked);
    }

    #[test]
    fn unchecked_payload_is_not_read_but_the_header_is() {
        // A changed payload is not detected: that is the point.
        let mut b = EXAMPLE_UNCHECKED;
        b[25] = b'o';
        assert_eq!(Frame::new_checked(&b[..]).unwrap().payload(), b"ho!");
        // Every header check still applies.
        let mut b = EXAMPLE_UNCHECKED;
        b[8] ^= 1;
        assert_eq!(Frame::new_checked(&b[..]).unwrap_err(), Error::BadHeaderCrc);
        // A `crc` that is not the header's (a sender that covered the payload but set the
        // flag), resealed by `hcrc`, is refused.
        let mut b = EXAMPLE_UNCHECKED;
        b[16..20].copy_from_slice(&EXAMPLE[16..20]);
        let hcrc = crc32c(&b[..20]);
        b[20..24].copy_from_slice(&hcrc.to_le_bytes());
        assert_eq!(Frame::new_checked(&b[..]).unwrap_err(), Error::BadCrc);
        assert_eq!(FrameRepr::parse(&Frame::new_unchecked(&b[..])).unwrap_err(), Error::BadCrc);
        // Clearing the flag (and resealing the header only) makes the payload count again.
        let b = {
            let mut b = EXAMPLE_UNCHECKED;
            b[3] = 0;
            let hcrc = crc32c(&b[..20]);
            b[20..24].copy_from_slice(&hcrc.to_le_bytes());
            b
        };
        assert_eq!(Frame::new_checked(&b[..]).unwrap_err(), Error::BadCrc);
    }

    #[test]
    fn integrity_and_flags() {
        assert_eq!(Integrity::default(), Integrity::Checked);
        assert_eq!(Integrity::of(Flags::RESPONSE | Flags::UNCHECKED), Integrity::Unchecked);
        assert_eq!(Integrity::of(Flags::from_bits_retain(0xF3)), Integrity::Checked);
        let r = FrameRepr { flags: Flags::RESPONSE, kind: 1, seq: 2, payload_len: 0 };
        let u = r.with_integrity(Integrity::Unchecked);
        assert_eq!(u.flags, Flags::RESPONSE | Flags::UNCHECKED);
        assert_eq!(u.with_integrity(Integrity::Checked), r);
        // In-place emission honours the flag too.
        let mut buf = [0u8; 27];
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        FrameRepr { flags: Flags::UNCHECKED, kind: 0x0102, seq: 7, payload_len: 3 }.emit(&mut frame).unwrap();
        frame.payload_mut().copy_from_slice(b"hi!");
        frame.fill_checksums();
        assert_eq!(frame.compute_crc(), frame.crc());
        assert_eq!(buf, EXAMPLE_UNCHECKED);
    }

    #[test]
    fn parse_byte_literal() {
        let frame = Frame::new_checked(&EXAMPLE[..]).unwrap();
        assert_eq!(frame.magic(), *b"EM");
        assert_eq!(frame.version(), 1);
        assert_eq!(frame.flags(), Flags::empty());
        assert_eq!(frame.kind(), 0x0102);
        assert_eq!(frame.seq(), 7);
        assert_eq!(frame.payload_len(), 3);
        assert_eq!(frame.crc(), 0xEA2D_FD8D);
        assert_eq!(frame.header_crc(), 0xD91A_9C8A);
        assert_eq!(frame.payload(), b"hi!");
        assert_eq!(frame.total_len(), 27);
        let repr = FrameRepr::parse(&frame).unwrap();
        assert_eq!(repr, FrameRepr { flags: Flags::empty(), kind: 0x0102, seq: 7, payload_len: 3 });
    }

    #[test]
    fn emit_byte_literal() {
        let repr = FrameRepr { flags: Flags::empty(), kind: 0x0102, seq: 7, payload_len: 3 };
        let mut buf = [0xAAu8; 40];
        let out = repr.emit_with_payload(b"hi!", &mut buf).unwrap();
        assert_eq!(out, &EXAMPLE[..]);
        assert_eq!(buf[27], 0xAA, "bytes after the frame are untouched");
    }

    #[test]
    fn emit_in_place_then_checksums() {
        let repr = FrameRepr { flags: Flags::empty(), kind: 0x0102, seq: 7, payload_len: 3 };
        let mut buf = [0u8; 27];
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        repr.emit(&mut frame).unwrap();
        frame.payload_mut().copy_from_slice(b"hi!");
        frame.fill_checksums();
        assert_eq!(buf, EXAMPLE);
    }

    #[test]
    fn trailing_bytes_after_frame_are_not_part_of_it() {
        let mut buf = [0u8; 30];
        buf[..27].copy_from_slice(&EXAMPLE);
        let (frame, rest) = split(&buf).unwrap();
        assert_eq!(frame.as_bytes(), &EXAMPLE[..]);
        assert_eq!(rest, &[0, 0, 0]);
    }

    #[test]
    fn flags_round_trip_and_known_bits() {
        let f = Flags::RESPONSE | Flags::ERROR;
        assert!(f.contains(Flags::RESPONSE));
        assert_eq!(f.unknown_critical(), 0);
        assert_eq!(Flags::from_bits_retain(0x88).unknown_critical(), 0x08);
        assert_eq!(Flags::from_bits_retain(0xF7).unknown_critical(), 0, "high nibble is ignorable");
        assert_eq!(Flags::UNCHECKED.unknown_critical(), 0);
    }

    fn with_header(mut bytes: [u8; 27], edit: impl FnOnce(&mut [u8; 27])) -> [u8; 27] {
        edit(&mut bytes);
        // Re-seal both checksums so only the edited field is wrong.
        Frame::new_unchecked(&mut bytes[..]).fill_checksums();
        bytes
    }

    #[test]
    fn error_truncated() {
        assert_eq!(
            Frame::new_checked(&EXAMPLE[..10]).unwrap_err(),
            Error::Truncated { needed: HEADER_LEN, available: 10 }
        );
        assert_eq!(Frame::new_checked(&EXAMPLE[..26]).unwrap_err(), Error::Truncated { needed: 27, available: 26 });
    }

    #[test]
    fn error_bad_magic() {
        let mut b = EXAMPLE;
        b[0] = b'X';
        assert_eq!(Frame::new_checked(&b[..]).unwrap_err(), Error::BadMagic);
    }

    #[test]
    fn error_bad_header_crc() {
        let mut b = EXAMPLE;
        b[8] ^= 1; // seq changed, checksums not updated
        assert_eq!(Frame::new_checked(&b[..]).unwrap_err(), Error::BadHeaderCrc);
        let mut b = EXAMPLE;
        b[21] ^= 0x10; // the header checksum itself
        assert_eq!(Frame::new_checked(&b[..]).unwrap_err(), Error::BadHeaderCrc);
    }

    #[test]
    fn error_unsupported_version() {
        let b = with_header(EXAMPLE, |b| b[2] = 2);
        assert_eq!(Frame::new_checked(&b[..]).unwrap_err(), Error::UnsupportedVersion(2));
    }

    #[test]
    fn error_unknown_flags() {
        let b = with_header(EXAMPLE, |b| b[3] = 0x08);
        assert_eq!(Frame::new_checked(&b[..]).unwrap_err(), Error::UnknownFlags(0x08));
        let b = with_header(EXAMPLE, |b| b[3] = 0x0C);
        assert_eq!(Frame::new_checked(&b[..]).unwrap_err(), Error::UnknownFlags(0x08));
        let ok = with_header(EXAMPLE, |b| b[3] = 0x40);
        assert_eq!(Frame::new_checked(&ok[..]).unwrap().flags().bits(), 0x40);
    }

    #[test]
    fn error_too_large() {
        // The declared length is far beyond the buffer, so only the header checksum can be
        // resealed.
        let mut b = EXAMPLE;
        b[12..16].copy_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_le_bytes());
        let hcrc = crc32c(&b[..20]);
        b[20..24].copy_from_slice(&hcrc.to_le_bytes());
        assert_eq!(
            Frame::new_checked(&b[..]).unwrap_err(),
            Error::TooLarge { len: MAX_FRAME_LEN as u32 + 1, limit: MAX_FRAME_LEN as u32 }
        );
        let repr = FrameRepr { flags: Flags::empty(), kind: 0, seq: 0, payload_len: MAX_PAYLOAD_LEN + 1 };
        let mut buf = [0u8; 64];
        assert!(matches!(repr.emit(&mut Frame::new_unchecked(&mut buf[..])), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn emit_of_absurd_length_is_an_error_not_a_panic() {
        let repr = FrameRepr { flags: Flags::empty(), kind: 0, seq: 0, payload_len: usize::MAX };
        let mut buf = [0u8; 64];
        assert_eq!(repr.buffer_len(), usize::MAX);
        assert!(matches!(
            repr.emit(&mut Frame::new_unchecked(&mut buf[..])),
            Err(Error::TooLarge { len: u32::MAX, .. })
        ));
    }

    #[test]
    fn error_bad_crc() {
        let mut b = EXAMPLE;
        b[25] = b'o'; // payload changed
        assert_eq!(Frame::new_checked(&b[..]).unwrap_err(), Error::BadCrc);
    }

    #[test]
    fn error_buffer_too_small() {
        let repr = FrameRepr { flags: Flags::empty(), kind: 1, seq: 1, payload_len: 0 };
        let mut buf = [0u8; 30];
        assert_eq!(repr.emit_with_payload(&[1; 7], &mut buf).unwrap_err(), Error::BufferTooSmall { needed: 31 });
    }

    #[test]
    fn parse_on_unchecked_view_is_safe() {
        assert_eq!(
            FrameRepr::parse(&Frame::new_unchecked(&EXAMPLE[..5])).unwrap_err(),
            Error::Truncated { needed: HEADER_LEN, available: 5 }
        );
    }
}
