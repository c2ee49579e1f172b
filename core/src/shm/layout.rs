//! The segment header: the first 128 bytes of every Ember shared-memory segment.
//!
//! Thirty-two native-endian `u32` words (every supported target is little-endian; a segment
//! never leaves its machine), of which 15 are used:
//!
//! | word | byte | field | meaning |
//! |---:|---:|---|---|
//! | 0 | 0 | `magic` | `0x4853_4D45` (the bytes `"EMSH"`), stored last by the creator |
//! | 1 | 4 | `version` | layout version, [`LAYOUT_VERSION`] |
//! | 2 | 8 | `kind` | [`SegmentKind`] |
//! | 3 | 12 | `flags` | reserved, 0 |
//! | 4 | 16 | `total_size` | bytes of the whole segment |
//! | 5 | 20 | `control_offset` | byte offset of the kind's control lines, 128 |
//! | 6 | 24 | `wait_offset` | byte offset of the waiter line (a page of its own for kinds whose readers map read-only) |
//! | 7 | 28 | `data_offset` | byte offset of the data area |
//! | 8 | 32 | `capacity` | bytes of the data area |
//! | 9 | 36 | `creator_pid` | pid of the process that created the segment (the writer) |
//! | 10 | 40 | `fingerprint_lo` | low half of the application's 64-bit type fingerprint |
//! | 11 | 44 | `fingerprint_hi` | high half |
//! | 12 | 48 | `header_crc` | CRC-32C of bytes 0..48, then bytes 52..60 |
//! | 13 | 52 | `creator_start_lo` | low half of the creator's start time (`/proc/<pid>/stat` field 22, clock ticks after boot; 0: unknown) |
//! | 14 | 56 | `creator_start_hi` | high half |
//! | 15–31 | 60 | reserved | 0 |
//!
//! Version 2 added `creator_start`, so that a peer without pidfds (or one opening a pidfd
//! after the creator died) can tell the creator from a process that reused its pid.
//! Version 3 added the receiver's claim to the SPSC control lines (`reader_pid` and its
//! start time, [`super::spsc::SpscControl::claim_reader`]): the header is unchanged, but a
//! version-2 peer would not see the claim, so the versions do not mix.
//!
//! The creator writes every field with `magic` zero, then stores `magic` with release
//! ordering; an opener loads `magic` with acquire ordering ([`ShmError::NotReady`] while it
//! is zero), copies the header out and checks the copy with [`validate`]. After that only the
//! copy is used: a peer rewriting the header later cannot change sizes under this side.

use super::primitive::{AtomicU32, Ordering};
use super::{ShmError, WORD};
use crate::crc32c::{crc32c, crc32c_append};

/// `"EMSH"` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"EMSH");
/// The layout version this build writes and reads; a segment of any other version is
/// [`ShmError::UnsupportedVersion`].
pub const LAYOUT_VERSION: u32 = 3;
/// Bytes of the header.
pub const HEADER_SIZE: usize = 128;
/// Byte offset of the control lines of every kind.
pub const CONTROL_OFFSET: usize = 128;
/// Data offset of kinds with no separate wait page (the SPSC ring): header, then three
/// 128-byte control lines.
pub const DATA_OFFSET: usize = 512;
/// Largest ring capacity (1 GiB): offsets stay far from `u32` wrap-around.
pub const MAX_CAPACITY: usize = 1 << 30;

/// Which protocol a segment carries.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u32)]
pub enum SegmentKind {
    /// One value, latest wins ([`super::seqlock`]).
    SeqLock = 1,
    /// Lossless single-producer single-consumer ring ([`super::spsc`]).
    Spsc = 2,
    /// Lossy one-writer many-reader ring ([`super::broadcast`]).
    Broadcast = 3,
    /// Synchronisation primitives and shared data laid out by the application
    /// ([`super::sync`]); every opener maps it read-write.
    Sync = 4,
}

impl SegmentKind {
    /// The kind with this number.
    pub fn from_u32(v: u32) -> Option<SegmentKind> {
        match v {
            1 => Some(SegmentKind::SeqLock),
            2 => Some(SegmentKind::Spsc),
            3 => Some(SegmentKind::Broadcast),
            4 => Some(SegmentKind::Sync),
            _ => None,
        }
    }
}

/// The header's fields, as plain values.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HeaderRepr {
    /// The protocol.
    pub kind: SegmentKind,
    /// Bytes of the whole segment.
    pub total_size: u32,
    /// Byte offset of the waiter line.
    pub wait_offset: u32,
    /// Byte offset of the data area.
    pub data_offset: u32,
    /// Bytes of the data area.
    pub capacity: u32,
    /// The creator's pid.
    pub creator_pid: u32,
    /// The creator's start time (`/proc/<pid>/stat` field 22, clock ticks after boot), which
    /// tells it from a later process with the same pid; 0 if unknown.
    pub creator_start: u64,
    /// The application's type fingerprint.
    pub fingerprint: u64,
}

/// What an opener expects of a segment.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// The kind the opener speaks.
    pub kind: SegmentKind,
    /// The type fingerprint the opener uses.
    pub fingerprint: u64,
    /// Bytes actually mapped (or the file's size): the header may not claim more.
    pub mapped_len: usize,
}

mod word {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 1;
    pub const KIND: usize = 2;
    pub const FLAGS: usize = 3;
    pub const TOTAL: usize = 4;
    pub const CONTROL: usize = 5;
    pub const WAIT: usize = 6;
    pub const DATA: usize = 7;
    pub const CAPACITY: usize = 8;
    pub const PID: usize = 9;
    pub const FP_LO: usize = 10;
    pub const FP_HI: usize = 11;
    pub const CRC: usize = 12;
    pub const START_LO: usize = 13;
    pub const START_HI: usize = 14;
    /// Words covered by the CRC: those before it, then those after it up to here.
    pub const CRC_COVERED: usize = 12;
    pub const CRC_COVERED_AFTER: usize = 15;
}

impl HeaderRepr {
    /// The header as bytes (native byte order), checksum included, magic set.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut w = [0u32; HEADER_SIZE / 4];
        w[word::MAGIC] = MAGIC;
        w[word::VERSION] = LAYOUT_VERSION;
        w[word::KIND] = self.kind as u32;
        w[word::FLAGS] = 0;
        w[word::TOTAL] = self.total_size;
        w[word::CONTROL] = CONTROL_OFFSET as u32;
        w[word::WAIT] = self.wait_offset;
        w[word::DATA] = self.data_offset;
        w[word::CAPACITY] = self.capacity;
        w[word::PID] = self.creator_pid;
        w[word::FP_LO] = self.fingerprint as u32;
        w[word::FP_HI] = (self.fingerprint >> 32) as u32;
        w[word::START_LO] = self.creator_start as u32;
        w[word::START_HI] = (self.creator_start >> 32) as u32;
        let mut bytes = words_to_bytes(&w);
        w[word::CRC] = header_crc(&bytes);
        bytes = words_to_bytes(&w);
        bytes
    }
}

/// CRC-32C of the header's bytes 0..48, then 52..60 (every field but the CRC itself).
fn header_crc(b: &[u8]) -> u32 {
    let head = crc32c(&b[..word::CRC_COVERED * 4]);
    crc32c_append(head, &b[(word::CRC + 1) * 4..word::CRC_COVERED_AFTER * 4])
}

fn words_to_bytes(w: &[u32; HEADER_SIZE / 4]) -> [u8; HEADER_SIZE] {
    let mut b = [0u8; HEADER_SIZE];
    for (chunk, v) in b.chunks_exact_mut(4).zip(w) {
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    b
}

fn word_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]])
}

/// Checks a copy of a segment header against what the opener expects.
///
/// Errors, in the order checked: [`ShmError::BadSize`] (fewer than 128 bytes),
/// [`ShmError::NotReady`] (magic zero), [`ShmError::BadMagic`],
/// [`ShmError::UnsupportedVersion`], [`ShmError::BadHeaderCrc`], [`ShmError::WrongKind`],
/// [`ShmError::BadSize`] (offsets, capacity or total size impossible for the kind, or
/// more than is mapped), [`ShmError::WrongFingerprint`].
pub fn validate(bytes: &[u8], expect: &Expect) -> Result<HeaderRepr, ShmError> {
    let repr = decode(bytes, Some(expect.kind), expect.mapped_len)?;
    if repr.fingerprint != expect.fingerprint {
        return Err(ShmError::WrongFingerprint { expected: expect.fingerprint, found: repr.fingerprint });
    }
    Ok(repr)
}

/// Checks a copy of a segment header of any kind and fingerprint: what a tool that
/// inspects segments it did not create needs (`emberctl ls`). `file_len` is the segment's
/// size; the header may not claim more.
///
/// Errors as [`validate`]'s, but [`ShmError::WrongKind`] only for a kind number no
/// protocol has (its `expected` is 0), and never [`ShmError::WrongFingerprint`].
pub fn peek(bytes: &[u8], file_len: usize) -> Result<HeaderRepr, ShmError> {
    decode(bytes, None, file_len)
}

/// The creator recorded in a segment header of this or an earlier layout version (2 and
/// up: pid and start time, checked by the CRC): what a creator deciding whether a segment
/// left under its name is stale needs, whatever kind, sizes or fingerprint the old segment
/// had. `None` when `bytes` is not a published Ember header of a known version (too short,
/// magic zero or wrong, a version before 2 or after this one, a bad CRC).
pub fn creator(bytes: &[u8]) -> Option<(u32, u64)> {
    if bytes.len() < HEADER_SIZE {
        return None;
    }
    let w = |i| word_at(bytes, i);
    let known = w(word::MAGIC) == MAGIC
        && (2..=LAYOUT_VERSION).contains(&w(word::VERSION))
        && header_crc(bytes) == w(word::CRC);
    known.then(|| (w(word::PID), u64::from(w(word::START_LO)) | (u64::from(w(word::START_HI)) << 32)))
}

fn decode(bytes: &[u8], want: Option<SegmentKind>, mapped_len: usize) -> Result<HeaderRepr, ShmError> {
    if bytes.len() < HEADER_SIZE {
        return Err(ShmError::BadSize);
    }
    let w = |i| word_at(bytes, i);
    match w(word::MAGIC) {
        0 => return Err(ShmError::NotReady),
        MAGIC => {}
        _ => return Err(ShmError::BadMagic),
    }
    if w(word::VERSION) != LAYOUT_VERSION {
        return Err(ShmError::UnsupportedVersion(w(word::VERSION)));
    }
    if header_crc(bytes) != w(word::CRC) {
        return Err(ShmError::BadHeaderCrc);
    }
    let kind = SegmentKind::from_u32(w(word::KIND))
        .filter(|k| want.is_none_or(|want| *k == want))
        .ok_or(ShmError::WrongKind { expected: want.map_or(0, |k| k as u32), found: w(word::KIND) })?;
    let repr = HeaderRepr {
        kind,
        total_size: w(word::TOTAL),
        wait_offset: w(word::WAIT),
        data_offset: w(word::DATA),
        capacity: w(word::CAPACITY),
        creator_pid: w(word::PID),
        creator_start: u64::from(w(word::START_LO)) | (u64::from(w(word::START_HI)) << 32),
        fingerprint: u64::from(w(word::FP_LO)) | (u64::from(w(word::FP_HI)) << 32),
    };
    check_sizes(&repr, w(word::CONTROL), w(word::FLAGS), mapped_len)?;
    Ok(repr)
}

fn check_sizes(r: &HeaderRepr, control: u32, flags: u32, mapped: usize) -> Result<(), ShmError> {
    let (cap, data, wait, total) =
        (r.capacity as usize, r.data_offset as usize, r.wait_offset as usize, r.total_size as usize);
    let ring = matches!(r.kind, SegmentKind::Spsc | SegmentKind::Broadcast);
    let ok = control as usize == CONTROL_OFFSET
        && flags == 0
        && wait >= DATA_OFFSET - 128
        && wait % 128 == 0
        // No overflow on 32-bit targets, whatever the header says.
        && wait.checked_add(128).is_some_and(|w| data >= w)
        && data % 128 == 0
        && (64..=MAX_CAPACITY).contains(&cap)
        && cap % 8 == 0
        && cap % WORD == 0
        && (!ring || cap.is_power_of_two())
        && data.checked_add(cap) == Some(total)
        && total <= mapped;
    if ok { Ok(()) } else { Err(ShmError::BadSize) }
}

/// The live header in a mapping: 32 atomic words.
///
/// `Send` and `Sync`: only atomics, shared by every process that maps the segment.
#[repr(C)]
pub struct SegmentHeader {
    words: [AtomicU32; HEADER_SIZE / 4],
}

impl core::fmt::Debug for SegmentHeader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("SegmentHeader").field(&peek(&self.snapshot(), usize::MAX)).finish()
    }
}

impl SegmentHeader {
    /// A zeroed header, for tests and loom models (a mapping comes zeroed from the kernel).
    pub fn zeroed() -> SegmentHeader {
        SegmentHeader { words: core::array::from_fn(|_| AtomicU32::new(0)) }
    }

    /// Writes the header: every field, then the magic with release ordering, so an opener
    /// that sees the magic sees the rest.
    pub fn init(&self, repr: &HeaderRepr) {
        let bytes = repr.to_bytes();
        for (i, w) in self.words.iter().enumerate().skip(1) {
            w.store(word_at(&bytes, i), Ordering::Relaxed);
        }
        self.words[word::MAGIC].store(MAGIC, Ordering::Release);
    }

    /// Copies the header out (acquire on the magic, then relaxed loads).
    pub fn snapshot(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        let magic = self.words[word::MAGIC].load(Ordering::Acquire);
        b[..4].copy_from_slice(&magic.to_ne_bytes());
        for (i, w) in self.words.iter().enumerate().skip(1) {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        b
    }

    /// Snapshots and validates the header.
    pub fn open(&self, expect: &Expect) -> Result<HeaderRepr, ShmError> {
        validate(&self.snapshot(), expect)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn repr() -> HeaderRepr {
        HeaderRepr {
            kind: SegmentKind::Spsc,
            total_size: 512 + 4096,
            wait_offset: 384,
            data_offset: 512,
            capacity: 4096,
            creator_pid: 0x1234,
            creator_start: 0x0000_0009_8765_4321,
            fingerprint: 0x0102_0304_0506_0708,
        }
    }

    fn expect() -> Expect {
        Expect { kind: SegmentKind::Spsc, fingerprint: 0x0102_0304_0506_0708, mapped_len: 4608 }
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn byte_literal_header() {
        let b = repr().to_bytes();
        #[rustfmt::skip]
        let want: [u8; 60] = [
            b'E', b'M', b'S', b'H',   // magic
            3, 0, 0, 0,               // version
            2, 0, 0, 0,               // kind: SPSC
            0, 0, 0, 0,               // flags
            0x00, 0x12, 0, 0,         // total_size 4608
            128, 0, 0, 0,             // control_offset
            0x80, 0x01, 0, 0,         // wait_offset 384
            0x00, 0x02, 0, 0,         // data_offset 512
            0x00, 0x10, 0, 0,         // capacity 4096
            0x34, 0x12, 0, 0,         // creator pid
            0x08, 0x07, 0x06, 0x05,   // fingerprint low
            0x04, 0x03, 0x02, 0x01,   // fingerprint high
            0, 0, 0, 0,               // crc (checked below)
            0x21, 0x43, 0x65, 0x87,   // creator start low
            0x09, 0, 0, 0,            // creator start high
        ];
        assert_eq!(b[..48], want[..48]);
        assert_eq!(b[52..60], want[52..60]);
        assert_eq!(word_at(&b, 12), crc32c_append(crc32c(&b[..48]), &b[52..60]));
        // The test vector of docs/shm-layout.md section 2.
        assert_eq!(word_at(&b, 12), 0xBFD3_A356);
        assert!(b[60..].iter().all(|&x| x == 0));
        assert_eq!(validate(&b, &expect()).unwrap(), repr());
    }

    #[test]
    fn creator_of_this_and_older_versions() {
        let good = repr().to_bytes();
        assert_eq!(creator(&good), Some((0x1234, 0x0000_0009_8765_4321)));
        // A version-2 segment left by an older build: still readable for a takeover.
        assert_eq!(creator(&reseal(good, 1, 2)), Some((0x1234, 0x0000_0009_8765_4321)));
        assert_eq!(creator(&reseal(good, 1, 1)), None);
        assert_eq!(creator(&reseal(good, 1, LAYOUT_VERSION + 1)), None);
        assert_eq!(creator(&reseal(good, 0, 0)), None);
        let mut scribbled = good;
        scribbled[36] ^= 1;
        assert_eq!(creator(&scribbled), None);
        assert_eq!(creator(&good[..64]), None);
    }

    #[test]
    fn live_header_round_trip() {
        let h = SegmentHeader::zeroed();
        assert_eq!(h.open(&expect()), Err(ShmError::NotReady));
        h.init(&repr());
        assert_eq!(h.open(&expect()).unwrap(), repr());
        assert_eq!(h.snapshot(), repr().to_bytes());
    }

    fn reseal(mut b: [u8; HEADER_SIZE], word_index: usize, v: u32) -> [u8; HEADER_SIZE] {
        b[word_index * 4..word_index * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        let crc = header_crc(&b);
        b[48..52].copy_from_slice(&crc.to_ne_bytes());
        b
    }

    #[test]
    fn every_error() {
        let good = repr().to_bytes();
        assert_eq!(validate(&good[..100], &expect()), Err(ShmError::BadSize));
        assert_eq!(validate(&reseal(good, 0, 0), &expect()), Err(ShmError::NotReady));
        assert_eq!(validate(&reseal(good, 0, 0xDEAD), &expect()), Err(ShmError::BadMagic));
        assert_eq!(validate(&reseal(good, 1, 1), &expect()), Err(ShmError::UnsupportedVersion(1)));
        assert_eq!(validate(&reseal(good, 1, 2), &expect()), Err(ShmError::UnsupportedVersion(2)));
        assert_eq!(validate(&reseal(good, 1, 4), &expect()), Err(ShmError::UnsupportedVersion(4)));
        let mut scribbled = good;
        scribbled[33] ^= 1;
        assert_eq!(validate(&scribbled, &expect()), Err(ShmError::BadHeaderCrc));
        // The start time is covered too (it decides liveness).
        let mut scribbled = good;
        scribbled[53] ^= 1;
        assert_eq!(validate(&scribbled, &expect()), Err(ShmError::BadHeaderCrc));
        assert_eq!(validate(&reseal(good, 2, 3), &expect()), Err(ShmError::WrongKind { expected: 2, found: 3 }));
        assert_eq!(validate(&reseal(good, 2, 77), &expect()), Err(ShmError::WrongKind { expected: 2, found: 77 }));
        // Capacity not a power of two, total inconsistent, more than mapped.
        assert_eq!(validate(&reseal(good, 8, 3000), &expect()), Err(ShmError::BadSize));
        assert_eq!(validate(&reseal(good, 4, 9999), &expect()), Err(ShmError::BadSize));
        let small = Expect { mapped_len: 4000, ..expect() };
        assert_eq!(validate(&good, &small), Err(ShmError::BadSize));
        let other = Expect { fingerprint: 9, ..expect() };
        assert_eq!(
            validate(&good, &other),
            Err(ShmError::WrongFingerprint { expected: 9, found: 0x0102_0304_0506_0708 })
        );
    }
}
