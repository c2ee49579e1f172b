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

// The glob brings postcard's `MaxSize` trait (and its derive, which names `::postcard`);
// the explicit import below shadows that derive with Ember's, which names only
// `ember_core` paths, so a user's crate needs no postcard dependency.
/// Derives [`MaxSize`](trait@MaxSize) through `ember_core`'s paths (`#[ember(crate = "...")]`
/// to name another, e.g. `ember_linux::core`). See the `ember-ipc-derive` crate.
pub use ember_derive::MaxSize;
/// Derives [`Message`](trait@Message) from `#[ember(kind = N)]`. See the `ember-ipc-derive`
/// crate.
pub use ember_derive::Message;
#[doc(inline)]
pub use postcard::experimental::max_size::*;

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
/// bytes (a prefix of `buf`). With [`Flags::UNCHECKED`] in `flags`
/// (`Integrity::Unchecked.flags()`) the frame checksum leaves the payload out.
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
    let (head, rest) = buf.split_first_chunk_mut::<HEADER_LEN>().expect("checked: at least HEADER_LEN bytes");
    crate::frame::write_header(head, flags, kind, seq, &rest[..payload_len]);
    Ok(&mut buf[..HEADER_LEN + payload_len])
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

    // Ember's derives against postcard's own, type by type: the same sizes.
    mod derive_parity {
        use super::super::{MaxSize, Message};
        use postcard::experimental::max_size::MaxSize as PostcardMaxSize;

        macro_rules! twins {
            ($($item:item)*) => {
                mod ours { use super::*; $( #[derive(MaxSize)] #[allow(dead_code)] $item )* }
                mod theirs { use super::*; $( #[derive(PostcardMaxSize)] #[allow(dead_code)] $item )* }
            };
        }
        twins! {
            pub struct Named { a: u8, b: u32, c: [u16; 3], d: Option<i64> }
            pub struct Tuple(pub u64, pub bool, pub char);
            pub struct Unit;
            pub enum Mixed { A, B(u32), C { x: u64, y: i8 }, D(Option<u16>, u8) }
            pub enum Empty {}
            pub struct Generic<T> { inner: T, tag: u8 }
        }
        #[allow(dead_code)]
        #[derive(MaxSize)]
        enum Wide {
            V00,
            V01,
            V02,
            V03,
            V04,
            V05,
            V06,
            V07,
            V08,
            V09,
            V10,
            V11,
            V12,
            V13,
            V14,
            V15,
            V16,
            V17,
            V18,
            V19,
            V20,
            V21,
            V22,
            V23,
            V24,
            V25,
            V26,
            V27,
            V28,
            V29,
            V30,
            V31,
            V32,
            V33,
            V34,
            V35,
            V36,
            V37,
            V38,
            V39,
            V40,
            V41,
            V42,
            V43,
            V44,
            V45,
            V46,
            V47,
            V48,
            V49,
            V50,
            V51,
            V52,
            V53,
            V54,
            V55,
            V56,
            V57,
            V58,
            V59,
            V60,
            V61,
            V62,
            V63,
            V64,
            V65,
            V66,
            V67,
            V68,
            V69,
            V70,
            V71,
            V72,
            V73,
            V74,
            V75,
            V76,
            V77,
            V78,
            V79,
            V80,
            V81,
            V82,
            V83,
            V84,
            V85,
            V86,
            V87,
            V88,
            V89,
            V90,
            V91,
            V92,
            V93,
            V94,
            V95,
            V96,
            V97,
            V98,
            V99,
            W00,
            W01,
            W02,
            W03,
            W04,
            W05,
            W06,
            W07,
            W08,
            W09,
            W10,
            W11,
            W12,
            W13,
            W14,
            W15,
            W16,
            W17,
            W18,
            W19,
            W20,
            W21,
            W22,
            W23,
            W24,
            W25,
            W26,
            W27,
            Last(u8),
        }

        #[derive(serde::Serialize, MaxSize, Message)]
        #[ember(kind = 0x0203)]
        struct Kinded {
            x: u16,
        }

        #[test]
        fn sizes_match_postcard() {
            assert_eq!(ours::Named::POSTCARD_MAX_SIZE, theirs::Named::POSTCARD_MAX_SIZE);
            assert_eq!(ours::Named::POSTCARD_MAX_SIZE, 1 + 5 + 9 + 11);
            assert_eq!(ours::Tuple::POSTCARD_MAX_SIZE, theirs::Tuple::POSTCARD_MAX_SIZE);
            assert_eq!(ours::Unit::POSTCARD_MAX_SIZE, 0);
            assert_eq!(ours::Mixed::POSTCARD_MAX_SIZE, theirs::Mixed::POSTCARD_MAX_SIZE);
            assert_eq!(ours::Mixed::POSTCARD_MAX_SIZE, 1 + 10 + 1);
            assert_eq!(ours::Empty::POSTCARD_MAX_SIZE, 0);
            assert_eq!(ours::Generic::<u32>::POSTCARD_MAX_SIZE, theirs::Generic::<u32>::POSTCARD_MAX_SIZE);
            // 129 variants: the largest index, 128, takes two varint bytes.
            assert_eq!(Wide::POSTCARD_MAX_SIZE, 2 + 1);
        }

        #[test]
        fn wide_enum_bound_holds() {
            let mut buf = [0u8; 8];
            let n = postcard::to_slice(&128u32, &mut buf).unwrap().len();
            assert_eq!(n, 2);
        }

        #[test]
        fn message_kind() {
            assert_eq!(Kinded::KIND, 0x0203);
            let mut buf = [0u8; super::super::max_frame_len::<Kinded>()];
            let frame = super::super::encode_message(&Kinded { x: 9 }, 1, &mut buf).unwrap();
            assert_eq!(crate::frame::Frame::new_checked(&frame[..]).unwrap().kind(), 0x0203);
        }
    }
}
