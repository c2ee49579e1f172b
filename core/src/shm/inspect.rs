//! Reading a segment's state from a plain copy of its first bytes, for tools that look at
//! segments they neither created nor speak the type of (`emberctl ls`).
//!
//! A tool reads the segment file from offset 0 up to its `data_offset` (header, control
//! lines and waiter line: 8 KiB at most) with ordinary `read` calls, then calls
//! [`layout::peek`](super::layout::peek) on the header and [`counters`] on the whole copy.
//! Each counter is one aligned word, so a copy taken while the writer runs gives values
//! that were each true at some instant (not one consistent snapshot of all of them).
//!
//! Nothing here is trusted: a copy of a segment a hostile peer scribbled on gives
//! [`ShmError::BadSize`] or odd numbers, never a panic.

use super::ShmError;
use super::layout::{CONTROL_OFFSET, HeaderRepr, SegmentKind};
use super::seqlock::{SeqLockControl, WaitLine};
use super::spsc::SpscControl;

/// The fingerprint of a *status seqlock*: a seqlock segment whose value is a JSON document
/// a running program publishes about itself (UTF-8, one object). `ember-bridge` publishes
/// its routes and counters in one named `/ember-bridge.{board}`
/// (`{"board":..,"pid":..,"routes":[{"channel","direction","key","local","counters":{"in","out","dropped","bad","lost"}}]}`);
/// `emberctl ls` shows what such a segment holds. The bytes spell `STATUSJ1`.
pub const STATUS_JSON_FINGERPRINT: u64 = u64::from_be_bytes(*b"STATUSJ1");

/// What the control lines of a segment say.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Counters {
    /// A seqlock.
    SeqLock {
        /// The sequence: twice the number of values published (odd while a write runs).
        seq: u32,
        /// Bytes of the current value.
        len: u32,
        /// Readers asleep waiting for a change (or about to be).
        waiters: u32,
    },
    /// An SPSC ring.
    Spsc {
        /// Bytes the producer has written since creation (wrapping at 2^32).
        written: u32,
        /// Bytes the consumer has consumed (wrapping at 2^32).
        consumed: u32,
        /// The producer closed the ring (it dropped its sender).
        closed: bool,
        /// The consumer sleeps on the futex.
        consumer_waiting: bool,
        /// The producer sleeps on the futex (the ring was full).
        producer_waiting: bool,
        /// The pid of the process whose receiver holds the ring (0: none).
        reader_pid: u32,
    },
    /// A broadcast ring.
    Broadcast {
        /// Records written since creation.
        published: u64,
        /// Number of the oldest record still in the ring: a reader whose next record is
        /// older was lapped and loses the difference.
        oldest: u64,
        /// The writer closed the ring.
        closed: bool,
        /// Readers asleep waiting for a record.
        waiters: u32,
    },
    /// Synchronisation primitives: the application lays out the data.
    Sync,
}

impl Counters {
    /// Bytes waiting in an SPSC ring (`written - consumed`), `None` for other kinds.
    pub fn pending_bytes(&self) -> Option<u32> {
        match self {
            Counters::Spsc { written, consumed, .. } => Some(written.wrapping_sub(*consumed)),
            _ => None,
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, ShmError> {
    let b = bytes.get(at..at + 4).ok_or(ShmError::BadSize)?;
    Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(target_has_atomic = "64")]
fn u64_at(bytes: &[u8], at: usize) -> Result<u64, ShmError> {
    let b = bytes.get(at..at + 8).ok_or(ShmError::BadSize)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Ok(u64::from_ne_bytes(w))
}

/// The counters in `bytes`, a copy of the segment from offset 0 to at least the end of
/// its waiter line (`header.wait_offset + 128`; `header.data_offset` is enough), whose
/// header `header` is ([`super::layout::peek`] of the same copy).
///
/// [`ShmError::BadSize`] if the copy is too short; [`ShmError::WrongKind`] for a broadcast
/// ring on a target without 64-bit atomics.
pub fn counters(header: &HeaderRepr, bytes: &[u8]) -> Result<Counters, ShmError> {
    let ctl = CONTROL_OFFSET;
    let waiters = || u32_at(bytes, header.wait_offset as usize + WaitLine::WAITERS);
    match header.kind {
        SegmentKind::SeqLock => Ok(Counters::SeqLock {
            seq: u32_at(bytes, ctl + SeqLockControl::SEQ)?,
            len: u32_at(bytes, ctl + SeqLockControl::LEN)?,
            waiters: waiters()?,
        }),
        SegmentKind::Spsc => Ok(Counters::Spsc {
            written: u32_at(bytes, ctl + SpscControl::HEAD)?,
            consumed: u32_at(bytes, ctl + SpscControl::TAIL)?,
            closed: u32_at(bytes, ctl + SpscControl::CLOSED)? != 0,
            consumer_waiting: u32_at(bytes, ctl + SpscControl::CONSUMER_WAITING)? != 0,
            producer_waiting: u32_at(bytes, ctl + SpscControl::PRODUCER_WAITING)? != 0,
            reader_pid: u32_at(bytes, ctl + SpscControl::READER_PID)?,
        }),
        #[cfg(target_has_atomic = "64")]
        SegmentKind::Broadcast => {
            use super::broadcast::BroadcastControl;
            Ok(Counters::Broadcast {
                published: u64_at(bytes, ctl + BroadcastControl::HEAD_SEQ)?,
                oldest: u64_at(bytes, ctl + BroadcastControl::TAIL_SEQ)?,
                closed: u32_at(bytes, ctl + BroadcastControl::CLOSED)? != 0,
                waiters: waiters()?,
            })
        }
        #[cfg(not(target_has_atomic = "64"))]
        SegmentKind::Broadcast => Err(ShmError::WrongKind { expected: 0, found: SegmentKind::Broadcast as u32 }),
        SegmentKind::Sync => Ok(Counters::Sync),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::shm::Word;
    use crate::shm::layout::{self, DATA_OFFSET};
    use crate::shm::spsc::SpscRing;

    /// A segment image in words: header, control lines, data.
    fn image(kind: SegmentKind, wait: usize, data: usize, cap: usize) -> (HeaderRepr, std::vec::Vec<Word>) {
        let h = HeaderRepr {
            kind,
            total_size: (data + cap) as u32,
            wait_offset: wait as u32,
            data_offset: data as u32,
            capacity: cap as u32,
            creator_pid: 42,
            creator_start: 0,
            fingerprint: 7,
        };
        let words = (data + cap) / core::mem::size_of::<Word>();
        let mut v = std::vec::Vec::with_capacity(words);
        v.resize_with(words, || Word::new(0));
        (h, v)
    }

    fn bytes_of(words: &[Word]) -> std::vec::Vec<u8> {
        words.iter().flat_map(|w| w.load(core::sync::atomic::Ordering::Relaxed).to_ne_bytes()).collect()
    }

    #[test]
    fn spsc_counters_follow_the_ring() {
        let (h, mem) = image(SegmentKind::Spsc, DATA_OFFSET - 128, DATA_OFFSET, 1024);
        let w = core::mem::size_of::<Word>();
        // SAFETY: the control lines are 384 bytes of atomics at a 128-aligned offset of a
        // word-aligned, zeroed buffer that outlives the reference.
        let ctl = unsafe { &*(mem[CONTROL_OFFSET / w..].as_ptr().cast::<SpscControl>()) };
        let ring = SpscRing::new(ctl, &mem[DATA_OFFSET / w..]).unwrap();
        let mut p = ring.producer();
        p.try_push(b"hello").unwrap();
        p.try_push(b"world!!!").unwrap();
        let mut out = [0u8; 64];
        ring.consumer().try_pop(&mut out).unwrap();
        let mut copy = bytes_of(&mem);
        copy[..layout::HEADER_SIZE].copy_from_slice(&h.to_bytes());
        let peeked = layout::peek(&copy, copy.len()).unwrap();
        assert_eq!(peeked, h);
        let c = counters(&peeked, &copy).unwrap();
        // Two records of 8-byte header + payload padded to 8: 16 and 16 bytes.
        assert_eq!(
            c,
            Counters::Spsc {
                written: 32,
                consumed: 16,
                closed: false,
                consumer_waiting: false,
                producer_waiting: false,
                reader_pid: 0
            }
        );
        assert_eq!(c.pending_bytes(), Some(16));
        // Too short a copy is an error, not a panic.
        assert_eq!(counters(&peeked, &copy[..200]), Err(ShmError::BadSize));
    }

    #[test]
    fn peek_takes_any_kind_and_fingerprint_but_checks_the_rest() {
        let (h, mem) = image(SegmentKind::SeqLock, 4096, 8192, 64);
        let mut copy = bytes_of(&mem);
        copy[..layout::HEADER_SIZE].copy_from_slice(&h.to_bytes());
        assert_eq!(layout::peek(&copy, copy.len()), Ok(h));
        assert_eq!(counters(&h, &copy), Ok(Counters::SeqLock { seq: 0, len: 0, waiters: 0 }));
        // The file is shorter than the header claims.
        assert_eq!(layout::peek(&copy, copy.len() - 8), Err(ShmError::BadSize));
        // An unknown kind number.
        let mut bad = copy.clone();
        bad[8..12].copy_from_slice(&9u32.to_ne_bytes());
        let crc = crate::crc32c::crc32c_append(crate::crc32c::crc32c(&bad[..48]), &bad[52..60]);
        bad[48..52].copy_from_slice(&crc.to_ne_bytes());
        assert_eq!(layout::peek(&bad, bad.len()), Err(ShmError::WrongKind { expected: 0, found: 9 }));
        // A scribbled CRC.
        let mut bad = copy.clone();
        bad[48] ^= 1;
        assert_eq!(layout::peek(&bad, bad.len()), Err(ShmError::BadHeaderCrc));
    }
}
