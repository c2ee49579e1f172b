//! Shared-memory layouts and their lock-free protocols: a seqlock, an SPSC ring and a
//! broadcast ring.
//!
//! Everything here is plain atomics over memory the caller provides: `ember-ipc-linux` maps a
//! segment and hands this module typed references into it; tests hand it heap memory. No
//! syscalls, no heap; `unsafe` only for the bulk copy in inline assembly (`fastcopy`) and
//! for viewing a control block in `inspect`. `docs/shm-layout.md` documents every byte.
//!
//! # The hostile-peer rule
//!
//! The other side of a segment may be buggy or hostile and may write any byte at any time.
//! So every access to shared memory is an atomic access (a racy plain read would be
//! undefined behaviour in Rust), nothing read from the segment is trusted (each counter,
//! offset and length is checked before use, and a bad one is [`ShmError::Corrupt`]), the
//! immutable header is validated once and then only a private copy of it is used, and every
//! loop is bounded. A hostile peer can make this side see errors or wrong payload bytes;
//! it cannot make it panic, hang, or touch memory outside the segment.
//!
//! # Layout in one picture
//!
//! ```text
//!   0   SegmentHeader   magic, version, kind, sizes, fingerprint, creator pid, header CRC
//! 128   control line 0  the writer's hot words (SPSC head; seqlock seq, len; broadcast head)
//! 256   control line 1  the reader's hot words (SPSC tail; broadcast tail, under a lock)
//! 384   control line 2  SPSC: the waiter flags; other kinds: unused
//! 512   data            SPSC: capacity bytes of records
//! ```
//!
//! Seqlocks and broadcast rings, whose readers map the segment read-only, keep their
//! waiter line on a page of its own (at one page) and their data at two pages: the header
//! says where (`wait_offset`, `data_offset`). The futex words are the counters (SPSC
//! `head`/`tail`, seqlock `seq`, broadcast `published`); the waiter lines only say whether
//! anyone sleeps. `docs/shm-layout.md` has every byte.

#[cfg(target_has_atomic = "64")]
pub mod broadcast;
mod copy;
mod fastcopy;
pub mod inspect;
pub mod layout;
pub mod primitive;
pub mod seqlock;
pub mod spsc;
pub mod sync;

pub use layout::{DATA_OFFSET, HeaderRepr, SegmentHeader, SegmentKind, validate};

use core::fmt;

/// The word the data area is made of: the machine word, accessed atomically.
pub type Word = primitive::AtomicUsize;
/// Bytes per [`Word`].
pub const WORD: usize = core::mem::size_of::<usize>();

/// Why a shared-memory operation failed.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ShmError {
    /// The segment does not start with Ember's shm magic.
    BadMagic,
    /// The segment's creator has not finished initialising it (magic still zero).
    NotReady,
    /// A layout version this build does not know.
    UnsupportedVersion(u32),
    /// The header's checksum does not match: it was damaged or scribbled over.
    BadHeaderCrc,
    /// The segment is of another kind than the one asked for.
    WrongKind {
        /// The kind asked for.
        expected: u32,
        /// The kind in the header.
        found: u32,
    },
    /// The type fingerprint differs: the two sides disagree on the message type.
    WrongFingerprint {
        /// The fingerprint asked for.
        expected: u64,
        /// The fingerprint in the header.
        found: u64,
    },
    /// Sizes in the header are inconsistent with each other or with the mapping.
    BadSize,
    /// The ring has no room for the record now (SPSC: the reader is behind).
    Full,
    /// Nothing to read now.
    Empty,
    /// The record or value is larger than the segment can ever hold.
    TooLarge {
        /// Its length.
        len: usize,
        /// The largest length this segment accepts.
        max: usize,
    },
    /// The caller's buffer is too small for the record or value, which is left in place.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// A counter, offset or length read from the segment is impossible: the peer is buggy or
    /// hostile, or the segment is damaged.
    Corrupt,
    /// The seqlock writer kept the value locked (odd sequence) for all the retries: it is
    /// stalled or dead mid-write.
    WriterStalled,
    /// The seqlock value kept changing under the reader for all the retries.
    Contended,
    /// The writer marked the channel closed.
    Closed,
    /// A blocking wait ran out of time (reported by `ember-ipc-linux`).
    Timeout,
    /// The writer process is gone (reported by `ember-ipc-linux` after a pidfd check).
    WriterGone,
    /// An SPSC ring already has its one receiver, in a live process: a second one would
    /// duplicate or steal records. A dead receiver's claim is taken over instead.
    ReaderClaimed {
        /// The pid of the process that holds the receiving side.
        pid: u32,
    },
    /// An SPSC ring held a streaming record that its writer started and never finished
    /// (it died mid-write, and the ring went on with a restarted writer): the record was
    /// skipped, and this reports its loss. The next receive goes on with the next record.
    Abandoned {
        /// The length the record was to have.
        len: usize,
    },
    /// Encoding or decoding a typed value failed.
    Codec(crate::Error),
}

impl fmt::Display for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ShmError::BadMagic => f.write_str("not an Ember shared-memory segment (bad magic)"),
            ShmError::NotReady => f.write_str("segment not initialised yet"),
            ShmError::UnsupportedVersion(v) => write!(f, "unsupported segment layout version {v}"),
            ShmError::BadHeaderCrc => f.write_str("segment header checksum mismatch"),
            ShmError::WrongKind { expected, found } => {
                write!(f, "segment kind {found}, expected {expected}")
            }
            ShmError::WrongFingerprint { expected, found } => {
                write!(f, "type fingerprint {found:#018x}, expected {expected:#018x}")
            }
            ShmError::BadSize => f.write_str("segment sizes are inconsistent"),
            ShmError::Full => f.write_str("ring full"),
            ShmError::Empty => f.write_str("nothing to read"),
            ShmError::TooLarge { len, max } => {
                write!(f, "{len} bytes exceed the segment's limit of {max}")
            }
            ShmError::BufferTooSmall { needed } => {
                write!(f, "buffer too small: {needed} bytes needed")
            }
            ShmError::Corrupt => f.write_str("segment control data is corrupt (buggy or hostile peer)"),
            ShmError::WriterStalled => f.write_str("writer stalled mid-write"),
            ShmError::Contended => f.write_str("value kept changing during the read"),
            ShmError::Closed => f.write_str("channel closed by the writer"),
            ShmError::Timeout => f.write_str("timed out"),
            ShmError::WriterGone => f.write_str("writer process is gone"),
            ShmError::ReaderClaimed { pid } => write!(f, "the ring already has its receiver (pid {pid})"),
            ShmError::Abandoned { len } => {
                write!(f, "a {len}-byte record left unfinished by a writer that died mid-write was skipped")
            }
            ShmError::Codec(e) => write!(f, "codec: {e}"),
        }
    }
}

impl core::error::Error for ShmError {}

impl From<crate::Error> for ShmError {
    fn from(e: crate::Error) -> Self {
        ShmError::Codec(e)
    }
}

/// Rounds `n` up to the record alignment (8 bytes).
pub(crate) const fn align8(n: usize) -> usize {
    (n + 7) & !7
}
