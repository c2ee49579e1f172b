//! What the bridge checks on a frame before it crosses, and the sequence attachment.
//!
//! Frames cross the bridge verbatim (`docs/wire-format.md`): a plain Zenoh subscriber gets
//! exactly the bytes of one Ember frame per sample. Two rules come from integrity by
//! medium (a frame that leaves the machine has its payload covered by the checksum):
//!
//! - **outbound** ([`seal_outbound`]): a local record must be exactly one valid frame. A
//!   checked frame is published as it is; an unchecked one (local transports skip the
//!   payload check) is copied into the route's buffer with `UNCHECKED` cleared and both
//!   checksums recomputed: same kind, sequence and payload, now covered.
//! - **inbound** ([`check_inbound`]): a sample must be exactly one valid frame, its payload
//!   covered and its checksum right, and no larger than the local endpoint takes. Anything
//!   else is counted `bad` and never written.
//!
//! Each sample an Ember bridge publishes carries a 16-byte Zenoh attachment
//! ([`Attachment`]): the publishing bridge's epoch (random per process start) and the
//! route's sequence number, both little-endian `u64`. The receiving bridge counts the gaps
//! as `lost`. Plain Zenoh publishers send no attachment; their frames are simply not gap
//! counted.
//!
//! ```text
//!  0          8          16
//!  +----------+----------+
//!  |  epoch   |   seq    |      Zenoh attachment of an Ember bridge's sample
//!  +----------+----------+
//! ```
//!
//! # Panics
//!
//! None: every function takes untrusted bytes and answers an error.
//!
//! # Example
//!
//! ```
//! use ember_bridge::frames::{check_inbound, seal_outbound};
//! use ember_core::frame::{FrameRepr, Integrity};
//!
//! // A local, unchecked frame is sealed (payload covered) before it leaves.
//! let repr = FrameRepr { flags: Integrity::Unchecked.flags(), kind: 1, seq: 9, payload_len: 2 };
//! let mut local = [0u8; 64];
//! let record = repr.emit_with_payload(b"hi", &mut local).unwrap();
//! let mut scratch = [0u8; 64];
//! let wire = seal_outbound(record, &mut scratch).unwrap();
//! check_inbound(wire, 64).unwrap();
//! // The unchecked original is refused inbound.
//! assert!(check_inbound(record, 64).is_err());
//! ```

use ember_core::frame::{Flags, Frame, Integrity};

/// Length of the sequence attachment.
pub const ATTACHMENT_LEN: usize = 16;

/// Why a frame is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bad {
    /// Not a valid frame (the core codec's reason).
    Codec(ember_core::Error),
    /// Valid frame(s), but not exactly one: `len` bytes, the frame is `frame_len`.
    NotOneFrame {
        /// Bytes received.
        len: usize,
        /// The first frame's length.
        frame_len: usize,
    },
    /// Arrived from off the machine without its payload covered by the checksum.
    UncheckedPayload,
    /// Larger than the local endpoint takes.
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The route's limit.
        max: usize,
    },
}

impl core::fmt::Display for Bad {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Bad::Codec(e) => write!(f, "not a valid frame: {e}"),
            Bad::NotOneFrame { len, frame_len } => {
                write!(f, "{len} bytes hold a frame of {frame_len}: not exactly one")
            }
            Bad::UncheckedPayload => f.write_str("payload not covered by the checksum"),
            Bad::TooLarge { len, max } => write!(f, "frame of {len} bytes, the route takes {max}"),
        }
    }
}

impl std::error::Error for Bad {}

/// Checks `bytes` as exactly one valid frame.
fn one_frame(bytes: &[u8]) -> Result<Frame<&[u8]>, Bad> {
    let frame = Frame::new_checked(bytes).map_err(Bad::Codec)?;
    if frame.total_len() != bytes.len() {
        return Err(Bad::NotOneFrame { len: bytes.len(), frame_len: frame.total_len() });
    }
    Ok(frame)
}

/// The bytes to publish for a local `record`: the record itself if its payload is covered,
/// else a sealed copy in `scratch` (which must hold the record: [`Bad::TooLarge`]).
pub fn seal_outbound<'a>(record: &'a [u8], scratch: &'a mut [u8]) -> Result<&'a [u8], Bad> {
    let frame = one_frame(record)?;
    if frame.integrity() == Integrity::Checked {
        return Ok(record);
    }
    let len = record.len();
    let out = scratch.get_mut(..len).ok_or(Bad::TooLarge { len, max: 0 })?;
    out.copy_from_slice(record);
    let mut f = Frame::new_unchecked(&mut *out);
    f.set_flags(Flags::from_bits_retain(frame.flags().bits() & !Flags::UNCHECKED.bits()));
    f.fill_checksums();
    Ok(out)
}

/// Checks an inbound sample: exactly one valid frame, payload covered, at most `max` bytes.
pub fn check_inbound(bytes: &[u8], max: usize) -> Result<(), Bad> {
    if bytes.len() > max {
        return Err(Bad::TooLarge { len: bytes.len(), max });
    }
    let frame = one_frame(bytes)?;
    if frame.integrity() != Integrity::Checked {
        return Err(Bad::UncheckedPayload);
    }
    Ok(())
}

/// The sequence attachment of a bridged sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    /// The publishing bridge's epoch: random per process start.
    pub epoch: u64,
    /// The route's sequence number, from 0.
    pub seq: u64,
}

impl Attachment {
    /// The 16 wire bytes.
    pub fn to_bytes(self) -> [u8; ATTACHMENT_LEN] {
        let mut b = [0u8; ATTACHMENT_LEN];
        b[..8].copy_from_slice(&self.epoch.to_le_bytes());
        b[8..].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Parses 16 bytes; anything else is `None` (not an Ember bridge's attachment).
    pub fn parse(bytes: &[u8]) -> Option<Attachment> {
        let b: &[u8; ATTACHMENT_LEN] = bytes.try_into().ok()?;
        let (e, s) = b.split_at(8);
        Some(Attachment { epoch: u64::from_le_bytes(e.try_into().ok()?), seq: u64::from_le_bytes(s.try_into().ok()?) })
    }
}

/// Gap counting for one inbound route: the last attachment seen.
#[derive(Debug, Default)]
pub struct GapTracker {
    last: Option<Attachment>,
}

impl GapTracker {
    /// A tracker that counts on from `last` (where a predecessor stopped: [`crate::resume`]).
    pub fn starting_at(last: Option<Attachment>) -> GapTracker {
        GapTracker { last }
    }

    /// Records `a` and returns how many frames of the same epoch were skipped since the
    /// previous one. A new epoch (the remote bridge restarted) or a sequence that goes back
    /// restarts the count: 0.
    pub fn observe(&mut self, a: Attachment) -> u64 {
        let gap = match self.last {
            Some(p) if p.epoch == a.epoch && a.seq > p.seq => a.seq - p.seq - 1,
            _ => 0,
        };
        self.last = Some(a);
        gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_core::frame::FrameRepr;

    fn frame(integrity: Integrity, payload: &[u8], buf: &mut [u8]) -> usize {
        let repr = FrameRepr { flags: integrity.flags(), kind: 3, seq: 77, payload_len: payload.len() };
        repr.emit_with_payload(payload, buf).unwrap().len()
    }

    #[test]
    fn checked_frames_go_out_verbatim() {
        let mut buf = [0u8; 64];
        let n = frame(Integrity::Checked, b"abc", &mut buf);
        let mut scratch = [0u8; 64];
        let out = seal_outbound(&buf[..n], &mut scratch).unwrap();
        assert_eq!(out.as_ptr(), buf.as_ptr());
        check_inbound(out, 64).unwrap();
    }

    #[test]
    fn unchecked_frames_are_sealed_with_the_same_fields() {
        let mut buf = [0u8; 64];
        let n = frame(Integrity::Unchecked, b"abc", &mut buf);
        let mut scratch = [0u8; 64];
        let out = seal_outbound(&buf[..n], &mut scratch).unwrap();
        let f = Frame::new_checked(out).unwrap();
        assert_eq!((f.kind(), f.seq(), f.payload(), f.integrity()), (3, 77, &b"abc"[..], Integrity::Checked));
        assert_eq!(check_inbound(&buf[..n], 64), Err(Bad::UncheckedPayload));
        let mut tiny = [0u8; 8];
        assert!(matches!(seal_outbound(&buf[..n], &mut tiny), Err(Bad::TooLarge { .. })));
    }

    #[test]
    fn malformed_input_is_refused() {
        let mut buf = [0u8; 64];
        let n = frame(Integrity::Checked, b"abc", &mut buf);
        // Corrupt payload.
        let mut bad = buf;
        bad[n - 1] ^= 1;
        assert_eq!(check_inbound(&bad[..n], 64), Err(Bad::Codec(ember_core::Error::BadCrc)));
        // Trailing bytes.
        assert!(matches!(check_inbound(&buf[..n + 1], 64), Err(Bad::NotOneFrame { .. })));
        // Truncated, garbage, empty.
        assert!(matches!(check_inbound(&buf[..n - 1], 64), Err(Bad::Codec(_))));
        assert!(matches!(check_inbound(b"hello, zenoh", 64), Err(Bad::Codec(_))));
        assert!(matches!(check_inbound(b"", 64), Err(Bad::Codec(_))));
        // Over the route's limit.
        assert_eq!(check_inbound(&buf[..n], n - 1), Err(Bad::TooLarge { len: n, max: n - 1 }));
        let mut scratch = [0u8; 64];
        assert!(seal_outbound(&bad[..n], &mut scratch).is_err());
    }

    #[test]
    fn attachments_and_gaps() {
        let a = Attachment { epoch: 0x0102_0304_0506_0708, seq: 9 };
        assert_eq!(Attachment::parse(&a.to_bytes()), Some(a));
        assert_eq!(Attachment::parse(&[0u8; 15]), None);
        let mut g = GapTracker::default();
        assert_eq!(g.observe(Attachment { epoch: 1, seq: 5 }), 0);
        assert_eq!(g.observe(Attachment { epoch: 1, seq: 6 }), 0);
        assert_eq!(g.observe(Attachment { epoch: 1, seq: 10 }), 3);
        assert_eq!(g.observe(Attachment { epoch: 2, seq: 0 }), 0);
        assert_eq!(g.observe(Attachment { epoch: 2, seq: 0 }), 0);
    }
}
