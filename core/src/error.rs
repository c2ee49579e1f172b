//! The error type of the frame codec, the typed message helpers and the stream accumulator.

use core::fmt;

/// Why a frame could not be encoded, parsed or decoded.
///
/// Small and `Copy`: it carries numbers, never text, so it can cross any boundary (a C
/// error code, a log line on a microcontroller) without allocating.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the frame needs: `needed` bytes, `available` present.
    Truncated {
        /// Bytes the header (or the header plus the declared payload) needs.
        needed: usize,
        /// Bytes that were there.
        available: usize,
    },
    /// The first two bytes are not the magic `"EM"`.
    BadMagic,
    /// The header checksum does not match: these bytes are not a frame header.
    BadHeaderCrc,
    /// A well-formed header of a format version this build does not read.
    UnsupportedVersion(u8),
    /// The header sets flag bits this version defines as critical but does not know.
    UnknownFlags(u8),
    /// The declared payload length is above the format limit or the receiver's limit.
    TooLarge {
        /// The frame's total length (header plus declared payload), saturated to `u32`;
        /// `u32::MAX` when an encoder stopped at the limit before knowing the full length.
        len: u32,
        /// The limit it broke.
        limit: u32,
    },
    /// The frame checksum (header and payload) does not match: the payload is corrupt.
    BadCrc,
    /// The frame's payload is not covered by its checksum (`Flags::UNCHECKED`) where it must
    /// be: a receiver that requires covered payloads skipped it (it was well-formed), or a
    /// sender set to check payloads refused it (nothing sent).
    UncheckedPayload,
    /// The caller's output buffer is too small; `needed` bytes would do (0 if unknown,
    /// as when a serializer ran out of room).
    BufferTooSmall {
        /// Bytes needed, when known; 0 when the encoder could not tell.
        needed: usize,
    },
    /// The payload could not be serialized with postcard.
    Encode,
    /// The payload is not a valid postcard encoding of the requested type.
    Decode,
    /// The payload decoded but left bytes unread: it was written for another type.
    TrailingBytes {
        /// Bytes left over.
        extra: usize,
    },
    /// The frame carries another message kind than the one asked for.
    UnexpectedKind {
        /// The kind the caller expected.
        expected: u32,
        /// The kind the frame carries.
        found: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { needed, available } => {
                write!(f, "truncated frame: {needed} bytes needed, {available} available")
            }
            Error::BadMagic => f.write_str("not an Ember frame: bad magic"),
            Error::BadHeaderCrc => f.write_str("frame header checksum mismatch"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported frame format version {v}"),
            Error::UnknownFlags(bits) => write!(f, "unknown critical frame flags {bits:#04x}"),
            Error::TooLarge { len, limit } => {
                write!(f, "frame of {len} bytes exceeds the limit of {limit} bytes")
            }
            Error::BadCrc => f.write_str("frame checksum mismatch: payload corrupt"),
            Error::UncheckedPayload => {
                f.write_str("frame payload not covered by its checksum, which this link requires")
            }
            Error::BufferTooSmall { needed: 0 } => f.write_str("output buffer too small"),
            Error::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
            Error::Encode => f.write_str("payload could not be serialized"),
            Error::Decode => f.write_str("payload is not a valid encoding of the expected type"),
            Error::TrailingBytes { extra } => {
                write!(f, "payload has {extra} bytes after the decoded value")
            }
            Error::UnexpectedKind { expected, found } => {
                write!(f, "expected message kind {expected:#x}, found {found:#x}")
            }
        }
    }
}

impl core::error::Error for Error {}

/// `Result` with the codec's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
