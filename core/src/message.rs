//! Typed messages: postcard payloads inside Ember frames.
//!
//! [`encode`] serializes a `T: Serialize` straight into the payload area of a caller's
//! buffer (no intermediate copy) and seals the frame; [`decode`] checks a frame and
//! deserializes its payload, borrowing from the buffer where `T` borrows (`&str`,
//! `&[u8]`). Neither allocates.
//!
//! Types that implement [`Message`] carry their kind, so [`encode_message`] and
//! [`decode_message`] need only the sequence number, and decoding a frame of another kind is
//! a typed error rather than garbage. With postcard's `MaxSize` derive, [`max_frame_len`]
//! sizes a buffer at compile time.
//!
//! ```
//! use ember_core::message::{self, Message, MaxSize, max_frame_len};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, MaxSize, Debug, PartialEq)]
//! struct Reading { sensor: u16, millikelvin: u32 }
//! impl Message for Reading { const KIND: u32 = 0x0001; }
//!
//! let mut buf = [0u8; max_frame_len::<Reading>()];
//! let frame = message::encode_message(&Reading { sensor: 3, millikelvin: 295_150 }, 42, &mut buf).unwrap();
//! let (header, reading) = message::decode_message::<Reading>(frame).unwrap();
//! assert_eq!(header.seq, 42);
//! assert_eq!(reading, Reading { sensor: 3, millikelvin: 295_150 });
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::frame::{Flags, Frame, FrameRepr, HEADER_LEN, MAX_PAYLOAD_LEN};

pub use postcard::experimental::max_size::MaxSize;

/// A message type with a fixed kind (type id) on the wire.
pub trait Message: Serialize {
    /// The frame kind this type travels under. Kinds `0xFFFF_0000` and above are reserved
    /// for Ember's own protocols.
    const KIND: u32;
}

/// Bytes a frame of `T` can take at most: header plus `T::POSTCARD_MAX_SIZE`.
///
/// A `const fn`, so it sizes arrays: `[0u8; max_frame_len::<T>()]`.
pub const fn max_frame_len<T: MaxSize>() -> usize {
    HEADER_LEN + T::POSTCARD_MAX_SIZE
}

fn map_ser(e: postcard::Error) -> Error {
    match e {
        postcard::Error::SerializeBufferFull => Error::BufferTooSmall { needed: 0 },
        _ => Error::Encode,
    }
}

/// Serializes `msg` as the payload of a frame with the given header and returns the frame's
/// bytes (a prefix of `buf`).
///
/// Fails with [`Error::BufferTooSmall`] when `buf` cannot hold header and payload, and
/// [`Error::TooLarge`] when the payload is above the format limit.
#[inline]
pub fn encode_with<'b, T: Serialize + ?Sized>(
    flags: Flags,
    kind: u32,
    seq: u32,
    msg: &T,
    buf: &'b mut [u8],
) -> Result<&'b mut [u8]> {
    if buf.len() < HEADER_LEN {
        // The payload's size is not known before it is serialized.
        return Err(Error::BufferTooSmall { needed: 0 });
    }
    // Bound the payload area by the format limit, so an oversized payload is caught here.
    let room = (buf.len() - HEADER_LEN).min(MAX_PAYLOAD_LEN);
    let payload_len = match postcard::to_slice(msg, &mut buf[HEADER_LEN..HEADER_LEN + room]) {
        Ok(p) => p.len(),
        Err(postcard::Error::SerializeBufferFull) if room == MAX_PAYLOAD_LEN => {
            return Err(Error::TooLarge { len: u32::MAX, limit: (HEADER_LEN + MAX_PAYLOAD_LEN) as u32 });
        }
        Err(e) => return Err(map_ser(e)),
    };
    let repr = FrameRepr { flags, kind, seq, payload_len };
    let mut frame = Frame::new_unchecked(&mut *buf);
    repr.emit(&mut frame)?;
    frame.fill_checksums();
    Ok(&mut buf[..repr.buffer_len()])
}

/// Serializes `msg` into a frame of kind `kind` and sequence `seq`, no flags.
#[inline]
pub fn encode<'b, T: Serialize + ?Sized>(kind: u32, seq: u32, msg: &T, buf: &'b mut [u8]) -> Result<&'b mut [u8]> {
    encode_with(Flags::empty(), kind, seq, msg, buf)
}

/// Serializes a [`Message`] under its own kind.
#[inline]
pub fn encode_message<'b, T: Message + ?Sized>(msg: &T, seq: u32, buf: &'b mut [u8]) -> Result<&'b mut [u8]> {
    encode_with(Flags::empty(), T::KIND, seq, msg, buf)
}

/// Deserializes a payload, requiring that it is consumed exactly.
#[inline]
pub fn decode_payload<'de, T: Deserialize<'de>>(payload: &'de [u8]) -> Result<T> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Error::TrailingBytes { extra: rest.len() }),
        Err(_) => Err(Error::Decode),
    }
}

/// Checks the frame at the start of `bytes` and deserializes its payload.
///
/// Bytes after the frame are ignored (use [`crate::frame::split`] to walk several frames).
#[inline]
pub fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<(FrameRepr, T)> {
    let frame = Frame::new_checked(bytes)?;
    Ok((FrameRepr::from_checked(&frame), decode_payload(frame.payload_ref())?))
}

/// Deserializes an already checked frame's payload (what the accumulator yields).
#[inline]
pub fn decode_frame<'de, T: Deserialize<'de>>(frame: &Frame<&'de [u8]>) -> Result<T> {
    decode_payload(frame.payload_ref())
}

/// Like [`decode`], but fails with [`Error::UnexpectedKind`] unless the frame's kind is
/// `T::KIND`.
#[inline]
pub fn decode_message<'de, T: Message + Deserialize<'de>>(bytes: &'de [u8]) -> Result<(FrameRepr, T)> {
    let frame = Frame::new_checked(bytes)?;
    if frame.kind() != T::KIND {
        return Err(Error::UnexpectedKind { expected: T::KIND, found: frame.kind() });
    }
    Ok((FrameRepr::from_checked(&frame), decode_payload(frame.payload_ref())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, MaxSize, Debug, PartialEq)]
    struct Ping {
        id: u32,
        note: u8,
    }
    impl Message for Ping {
        const KIND: u32 = 0x10;
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Borrowed<'a> {
        name: &'a str,
        blob: &'a [u8],
    }

    #[test]
    fn round_trip_borrowing() {
        let mut buf = [0u8; 128];
        let msg = Borrowed { name: "pump-1", blob: &[1, 2, 3] };
        let n = encode(5, 9, &msg, &mut buf).unwrap().len();
        let (repr, back): (_, Borrowed<'_>) = decode(&buf[..n]).unwrap();
        assert_eq!(back, msg);
        assert_eq!((repr.kind, repr.seq), (5, 9));
        // The decoded &str points into the frame buffer: no copy was made.
        let range = buf.as_ptr_range();
        assert!(range.contains(&back.name.as_ptr()));
    }

    #[test]
    fn max_frame_len_is_enough() {
        const LEN: usize = max_frame_len::<Ping>();
        assert_eq!(LEN, HEADER_LEN + 5 + 1);
        let mut buf = [0u8; LEN];
        let frame = encode_message(&Ping { id: u32::MAX, note: 255 }, 1, &mut buf).unwrap();
        assert_eq!(frame.len(), LEN);
    }

    #[test]
    fn error_buffer_too_small() {
        let mut tiny = [0u8; 10];
        assert_eq!(encode(1, 1, &7u32, &mut tiny).unwrap_err(), Error::BufferTooSmall { needed: 0 });
        let mut short = [0u8; HEADER_LEN + 2];
        assert_eq!(encode(1, 1, &[7u8; 8], &mut short).unwrap_err(), Error::BufferTooSmall { needed: 0 });
    }

    #[test]
    fn error_decode_and_trailing() {
        let mut buf = [0u8; 64];
        // A u8 250 is not a valid bool.
        let n = encode(1, 1, &250u8, &mut buf).unwrap().len();
        assert_eq!(decode::<bool>(&buf[..n]).unwrap_err(), Error::Decode);
        // Two u8s decoded as one leaves one byte over.
        let n = encode(1, 1, &(1u8, 2u8), &mut buf).unwrap().len();
        assert_eq!(decode::<u8>(&buf[..n]).unwrap_err(), Error::TrailingBytes { extra: 1 });
    }

    #[test]
    fn error_unexpected_kind() {
        let mut buf = [0u8; 64];
        let n = encode(0x11, 1, &Ping { id: 1, note: 2 }, &mut buf).unwrap().len();
        assert_eq!(
            decode_message::<Ping>(&buf[..n]).unwrap_err(),
            Error::UnexpectedKind { expected: 0x10, found: 0x11 }
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "serializes 16 MiB, which takes minutes under Miri; runs natively in cargo test")]
    fn error_too_large_payload() {
        let big = std::vec![7u8; MAX_PAYLOAD_LEN + 1];
        let mut buf = std::vec![0u8; HEADER_LEN + MAX_PAYLOAD_LEN + 64];
        assert!(matches!(encode(1, 1, &big[..], &mut buf), Err(Error::TooLarge { len: u32::MAX, .. })));
        // Just under the limit fits.
        let ok = &big[..MAX_PAYLOAD_LEN - 8];
        assert!(encode(1, 1, ok, &mut buf).is_ok());
    }

    #[test]
    fn error_encode() {
        // postcard cannot serialize a sequence of unknown length; a custom impl provokes it.
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                s.serialize_seq(None)?.end()
            }
        }
        let mut buf = [0u8; 64];
        assert_eq!(encode(1, 1, &Unsized, &mut buf).unwrap_err(), Error::Encode);
    }
}
