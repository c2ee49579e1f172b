//! The SPSC ring: lossless, one producer, one consumer, variable-length records.
//!
//! The data area is `capacity` bytes (a power of two). `head` and `tail` are monotonic byte
//! counters (wrapping `u32`; the distance between them never exceeds `capacity`, which is at
//! most 1 GiB); a counter's position in the ring is `counter & (capacity - 1)`.
//!
//! Each record is an 8-byte header, native-endian `[len: u32][seq: u32]`, then `len`
//! payload bytes padded to 8. A record never wraps: when it does not fit before the end of
//! the ring, the producer writes a *pad* record (`len` with bit 31 set) that fills the rest,
//! and the record goes at offset 0. So a record's payload is at most `capacity / 2 - 8`
//! bytes, the largest size that always fits eventually.
//!
//! The producer owns `head` (and caches the consumer's `tail`), the consumer owns `tail`
//! (and caches `head`): each publishes its counter with a release store after its data
//! accesses, and reads the other's with an acquire load, the rtrb design.
//!
//! # Blocking
//!
//! The consumer sleeps on the `head` word, the producer on `tail` (32-bit futex words in
//! `ember-ipc-linux`). A sleeper first announces itself in the waiter line, issues a `SeqCst`
//! fence and re-checks; the other side publishes its counter (release store), issues a
//! `SeqCst` fence and reads the announcement (Dekker), so a wake-up is never lost and the
//! busy path makes no syscall: [`Consumer::prepare_wait`], [`Producer::consumer_waiting`]
//! and their mirrors. (`SeqCst` fences rather than `SeqCst` swaps and loads, because loom
//! models the former but not the latter's total order, tokio-rs/loom#180.)
//!
//! Closing: [`Producer::close`] sets the `closed` word and appends a close record
//! (`len == CLOSE`), so the futex word changes and a sleeping consumer wakes.
//!
//! # Streaming records
//!
//! A record of at least [`STREAM_MIN`] bytes is *streamed*, so that the consumer's copy out
//! overlaps the producer's copy in (two copies of a large payload take twice as long one
//! after the other): its `len` carries the `STREAM` bit (bit 29) and its second header
//! word, `seq` in other records, is the number of payload bytes filled so far. The producer
//! reserves the whole slot, writes the header with 0 filled and publishes `head` at once,
//! then copies the payload in [`STREAM_CHUNK`]-byte steps, each followed by a release store
//! of the header with the new count, the last one with `len`. The consumer copies only
//! below the count it loaded with acquire, and consumes the record (moves `tail`) only once
//! the count is `len`: [`Consumer::try_pop_streaming`] copies as it fills and waits through
//! a closure; [`Consumer::try_pop`], [`Consumer::try_pop_many`] and [`Consumer::peek`]
//! answer [`ShmError::Empty`] until it is whole. A count above `len`, or a `len` that
//! changes, is [`ShmError::Corrupt`].
//!
//! A producer fills a record before it publishes the next one, so a streaming record
//! still unfinished when `head` has moved past it was left by a producer that died
//! mid-write (and a restarted one went on): the consumer skips it and reports
//! [`ShmError::Abandoned`]. A consumer waiting on an unfinished record sleeps on `head`
//! like one waiting on an empty ring ([`Consumer::prepare_wait`]); the producer's wake-up
//! check after the push wakes it.

use super::copy;
use super::layout::MAX_CAPACITY;
use super::primitive::{AtomicU32, Ordering, fence, pad, u32_zero};
use super::{ShmError, WORD, Word, align8};
use crate::message;
use serde::Serialize;

/// Bytes of a record header.
pub const RECORD_HEADER: usize = 8;
/// `len` bit marking a pad record.
const PAD: u32 = 0x8000_0000;
/// `len` of the close record the producer appends when it closes the ring.
const CLOSE: u32 = 0x4000_0000;
/// `len` bit marking a streaming record: published before its payload is written, with the
/// header's second word counting the payload bytes filled so far (module docs).
const STREAM: u32 = 0x2000_0000;

/// Records of at least this many bytes are streamed: the producer publishes the record
/// first and fills it in [`STREAM_CHUNK`]-byte steps, so that a receiver copies it out
/// while it is being written and the two copies of the payload overlap.
/// (Under loom and Miri, 32 bytes, so that a model or an interpreted test streams a
/// record of a few words.)
pub const STREAM_MIN: usize = if cfg!(any(loom, miri)) { 32 } else { 32 * 1024 };
/// The bytes a streaming producer writes between two progress stores (under loom and
/// Miri, 16).
pub const STREAM_CHUNK: usize = if cfg!(any(loom, miri)) { 16 } else { 16 * 1024 };
const _: () = assert!(STREAM_CHUNK.is_multiple_of(8) && STREAM_CHUNK <= STREAM_MIN);

/// The SPSC control lines (bytes 128..512 of the segment).
///
/// `Send` and `Sync`: only atomics, shared by every process that maps the segment.
#[repr(C)]
pub struct SpscControl {
    /// Line 0, the producer's: bytes written.
    head: AtomicU32,
    /// Non-zero once the producer has closed the ring.
    closed: AtomicU32,
    _pad0: [AtomicU32; pad(30)],
    /// Line 1, the consumer's: bytes consumed.
    tail: AtomicU32,
    /// The pid of the process whose consumer holds the ring (0: none), claimed with a
    /// compare-and-swap ([`SpscControl::claim_reader`]). Layout version 3.
    reader_pid: AtomicU32,
    /// The pid `reader_start_lo`/`_hi` belong to: the start time is the claimant's only while
    /// this equals `reader_pid` (it is stored after them).
    reader_start_pid: AtomicU32,
    /// The claimant's start time (`/proc/<pid>/stat` field 22), low half.
    reader_start_lo: AtomicU32,
    /// High half.
    reader_start_hi: AtomicU32,
    _pad1: [AtomicU32; pad(27)],
    /// Line 2: the consumer announces it sleeps on `head`.
    consumer_waiting: AtomicU32,
    /// The producer announces it sleeps on `tail`.
    producer_waiting: AtomicU32,
    _pad2: [AtomicU32; pad(30)],
}

impl core::fmt::Debug for SpscControl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpscControl")
            .field("head", &self.head)
            .field("closed", &self.closed)
            .field("tail", &self.tail)
            .field("reader_pid", &self.reader_pid)
            .field("consumer_waiting", &self.consumer_waiting)
            .field("producer_waiting", &self.producer_waiting)
            .finish_non_exhaustive()
    }
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<SpscControl>() == 384);

impl SpscControl {
    /// Byte offsets of the words [`super::inspect`] reads from a copy of the control lines.
    pub(crate) const HEAD: usize = core::mem::offset_of!(SpscControl, head);
    pub(crate) const CLOSED: usize = core::mem::offset_of!(SpscControl, closed);
    pub(crate) const TAIL: usize = core::mem::offset_of!(SpscControl, tail);
    pub(crate) const READER_PID: usize = core::mem::offset_of!(SpscControl, reader_pid);
    pub(crate) const CONSUMER_WAITING: usize = core::mem::offset_of!(SpscControl, consumer_waiting);
    pub(crate) const PRODUCER_WAITING: usize = core::mem::offset_of!(SpscControl, producer_waiting);

    /// Zeroed control lines (a fresh mapping is zeroed by the kernel).
    pub fn zeroed() -> SpscControl {
        SpscControl {
            head: u32_zero(),
            closed: u32_zero(),
            _pad0: core::array::from_fn(|_| u32_zero()),
            tail: u32_zero(),
            reader_pid: u32_zero(),
            reader_start_pid: u32_zero(),
            reader_start_lo: u32_zero(),
            reader_start_hi: u32_zero(),
            _pad1: core::array::from_fn(|_| u32_zero()),
            consumer_waiting: u32_zero(),
            producer_waiting: u32_zero(),
            _pad2: core::array::from_fn(|_| u32_zero()),
        }
    }

    /// The futex word the consumer sleeps on (the producer's counter).
    pub fn head_word(&self) -> &AtomicU32 {
        &self.head
    }

    /// The futex word the producer sleeps on (the consumer's counter).
    pub fn tail_word(&self) -> &AtomicU32 {
        &self.tail
    }

    /// Whether the producer closed the ring.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) != 0
    }

    /// Who holds the consumer side now: `None` when nobody does.
    ///
    /// The start time is `0` (unknown) when the claimant has not stored it yet, or when it
    /// kept changing under this load (a claim being taken over): then only the pid can be
    /// checked, which errs on the side of "alive".
    pub fn reader_claim(&self) -> Option<ReaderClaim> {
        for _ in 0..4 {
            let pid = self.reader_pid.load(Ordering::Acquire);
            if pid == 0 {
                return None;
            }
            if self.reader_start_pid.load(Ordering::Acquire) != pid {
                return Some(ReaderClaim { pid, start: 0 });
            }
            let start = u64::from(self.reader_start_lo.load(Ordering::Relaxed))
                | (u64::from(self.reader_start_hi.load(Ordering::Relaxed)) << 32);
            // A half stored by a later claimant is followed, through its release fence, by
            // its invalidation of `reader_start_pid`, which the load after this fence then
            // sees: the pair is retried, never returned mixed (found by the loom model).
            fence(Ordering::Acquire);
            if self.reader_start_pid.load(Ordering::Relaxed) == pid && self.reader_pid.load(Ordering::Relaxed) == pid {
                return Some(ReaderClaim { pid, start });
            }
        }
        let pid = self.reader_pid.load(Ordering::Acquire);
        (pid != 0).then_some(ReaderClaim { pid, start: 0 })
    }

    /// Claims the consumer side for process `pid` (started at `start`, 0 if unknown), if
    /// nobody holds it (`expected == None`) or if `expected` still does (taking over the
    /// claim of a reader the caller found dead). On failure returns the holder now
    /// (`None`: it was released meanwhile; try again).
    ///
    /// `pid` must not be 0. The claim is a compare-and-swap on one word, so of two
    /// claimants exactly one wins.
    pub fn claim_reader(&self, pid: u32, start: u64, expected: Option<ReaderClaim>) -> Result<(), Option<ReaderClaim>> {
        let old = expected.map_or(0, |c| c.pid);
        match self.reader_pid.compare_exchange(old, pid, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                // A seqlock over the start time, with `reader_start_pid` as its sequence:
                // invalidated first (the fence orders it before the halves), published last.
                self.reader_start_pid.store(0, Ordering::Relaxed);
                fence(Ordering::Release);
                self.reader_start_lo.store(start as u32, Ordering::Relaxed);
                self.reader_start_hi.store((start >> 32) as u32, Ordering::Relaxed);
                self.reader_start_pid.store(pid, Ordering::Release);
                Ok(())
            }
            Err(_) => Err(self.reader_claim()),
        }
    }

    /// Gives up the consumer side claimed by `pid` (nothing happens if another process holds
    /// it: a forked child dropping its parent's receiver leaves the parent's claim alone).
    pub fn release_reader(&self, pid: u32) {
        let _ = self.reader_pid.compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// The process holding an SPSC ring's consumer side ([`SpscControl::reader_claim`]).
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReaderClaim {
    /// Its pid.
    pub pid: u32,
    /// Its start time (`/proc/<pid>/stat` field 22; 0: unknown).
    pub start: u64,
}

/// The ring: control lines and data words, with the capacity taken from the validated
/// header (never re-read from shared memory).
///
/// `Send` and `Sync`: shared references to atomics.
#[derive(Clone, Copy)]
pub struct SpscRing<'a> {
    ctl: &'a SpscControl,
    data: &'a [Word],
    capacity: u32,
}

impl core::fmt::Debug for SpscRing<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpscRing").field("ctl", self.ctl).field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl<'a> SpscRing<'a> {
    /// A ring over `data`; its length in bytes is the capacity, a power of two between 64
    /// bytes and 1 GiB.
    pub fn new(ctl: &'a SpscControl, data: &'a [Word]) -> Result<SpscRing<'a>, ShmError> {
        let bytes = data.len() * WORD;
        if !bytes.is_power_of_two() || !(64..=MAX_CAPACITY).contains(&bytes) {
            return Err(ShmError::BadSize);
        }
        Ok(SpscRing { ctl, data, capacity: bytes as u32 })
    }

    /// Bytes of the data area.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The largest payload a record can carry: `capacity / 2 - 8`.
    pub fn max_record(&self) -> usize {
        self.capacity as usize / 2 - RECORD_HEADER
    }

    /// The control lines (for the futex words).
    pub fn control(&self) -> &'a SpscControl {
        self.ctl
    }

    /// The producer side, resuming from the counters in the segment.
    pub fn producer(self) -> Producer<'a> {
        let head = self.ctl.head.load(Ordering::Relaxed);
        let mut tail = self.ctl.tail.load(Ordering::Acquire);
        if head.wrapping_sub(tail) > self.capacity {
            // Impossible counters: assume full, so the first push re-reads and checks them.
            tail = head.wrapping_sub(self.capacity);
        }
        Producer { ring: self, head, cached_tail: tail, seq: 0 }
    }

    /// The consumer side, resuming from the counters in the segment.
    pub fn consumer(self) -> Consumer<'a> {
        let tail = self.ctl.tail.load(Ordering::Relaxed);
        // The head is (re)read and checked on the first pop.
        Consumer { ring: self, tail, cached_head: tail, unchecked_pops: 0 }
    }

    fn mask(&self) -> u32 {
        self.capacity - 1
    }
}

/// The writing side. Exactly one may exist per ring (across all processes).
///
/// `Send` and `Sync`: references to atomics and plain cursors; writing takes `&mut self`.
#[derive(Debug)]
pub struct Producer<'a> {
    ring: SpscRing<'a>,
    head: u32,
    cached_tail: u32,
    seq: u32,
}

/// Where a record will go: the pad to write first at the head (`pad` bytes, 0: none) and
/// the record's offset. Plain words: with an `Option` here the compiler spilled its tag and
/// value as two 4-byte stores and reloaded them as one 8-byte load, a store-to-load forward
/// that fails and so waits for every store ahead of it, the ring stores missing in cache
/// included (`perf`: most of the 64 B stream's push time).
struct Reservation {
    pad: u32,
    pos: u32,
    slot: u32,
    len: u32,
}

impl<'a> Producer<'a> {
    /// Bytes free now, from the cached tail (may be stale low, never high).
    fn free(&self) -> u32 {
        self.ring.capacity.saturating_sub(self.head.wrapping_sub(self.cached_tail))
    }

    #[inline(always)]
    fn reserve(&mut self, len: usize) -> Result<Reservation, ShmError> {
        let max = self.ring.max_record();
        if len > max {
            return Err(ShmError::TooLarge { len, max });
        }
        let slot = (RECORD_HEADER + align8(len)) as u32;
        let pos = self.head & self.ring.mask();
        let to_end = self.ring.capacity - pos;
        let (pad, at, need) = if slot > to_end { (to_end, 0, to_end + slot) } else { (0, pos, slot) };
        if self.free() < need {
            let tail = self.ring.ctl.tail.load(Ordering::Acquire);
            if self.head.wrapping_sub(tail) > self.ring.capacity {
                return Err(ShmError::Corrupt);
            }
            self.cached_tail = tail;
            if self.free() < need {
                return Err(ShmError::Full);
            }
        }
        Ok(Reservation { pad, pos: at, slot, len: len as u32 })
    }

    /// Writes the pad (if any) and the record's header; nothing is visible to the consumer
    /// before [`Producer::advance`].
    #[inline(always)]
    fn write_headers(&mut self, r: &Reservation) -> Result<(), ShmError> {
        let data = self.ring.data;
        if r.pad != 0 {
            let p = self.head & self.ring.mask();
            copy::store_pair(data, p as usize, PAD | r.pad, self.seq)?;
        }
        copy::store_pair(data, r.pos as usize, r.len, self.seq)
    }

    /// Publishes a record whose headers and payload are written: `pad + slot` bytes.
    #[inline(always)]
    fn advance(&mut self, bytes: u32) {
        self.head = self.head.wrapping_add(bytes);
        self.seq = self.seq.wrapping_add(1);
        // Release: the record's bytes before the counter. The Dekker pairing with
        // `Consumer::prepare_wait` is the fence in `consumer_waiting()`.
        self.ring.ctl.head.store(self.head, super::primitive::PUBLISH);
    }

    #[inline(always)]
    fn publish(&mut self, r: &Reservation) -> Result<(), ShmError> {
        self.write_headers(r)?;
        self.advance(r.pad + r.slot);
        Ok(())
    }

    /// Appends one record, or fails with [`ShmError::Full`] (nothing written) or
    /// [`ShmError::TooLarge`].
    ///
    /// Inlined into the caller's loop: a call's register saves and its result written to
    /// memory are stores too, and a streaming producer is bound by its stores, which queue
    /// behind the ring's lines that the consumer's core holds.
    #[inline]
    pub fn try_push(&mut self, payload: &[u8]) -> Result<(), ShmError> {
        if payload.len() >= STREAM_MIN {
            return self.push_streaming(payload);
        }
        let r = self.reserve(payload.len())?;
        // The headers first, so that only the count to publish is live across the copy.
        self.write_headers(&r)?;
        let bytes = r.pad + r.slot;
        copy::store(self.ring.data, r.pos as usize + RECORD_HEADER, payload)?;
        self.advance(bytes);
        Ok(())
    }

    /// [`Producer::try_push`] of a record of at least [`STREAM_MIN`] bytes: published at
    /// once, then filled chunk by chunk (module docs, "Streaming records").
    #[inline(never)]
    fn push_streaming(&mut self, payload: &[u8]) -> Result<(), ShmError> {
        let r = self.reserve(payload.len())?;
        let data = self.ring.data;
        if r.pad != 0 {
            let p = self.head & self.ring.mask();
            copy::store_pair(data, p as usize, PAD | r.pad, self.seq)?;
        }
        copy::store_pair(data, r.pos as usize, r.len | STREAM, 0)?;
        // From here the consumer sees the record (and copies what the counts allow).
        self.advance(r.pad + r.slot);
        let base = r.pos as usize + RECORD_HEADER;
        let mut done = 0;
        for chunk in payload.chunks(STREAM_CHUNK) {
            copy::store(data, base + done, chunk)?;
            done += chunk.len();
            // Release: the chunk's bytes before the count that lets the consumer read them.
            copy::store_pair_release(data, r.pos as usize, r.len | STREAM, done as u32)?;
        }
        Ok(())
    }

    /// Reserves room for a record of up to `max_len` bytes and returns a writer into it,
    /// for building a record in place (no intermediate buffer). Nothing is visible to the
    /// consumer until [`Grant::commit`]; dropping the grant abandons it.
    pub fn grant(&mut self, max_len: usize) -> Result<Grant<'_, 'a>, ShmError> {
        let r = self.reserve(max_len)?;
        Ok(Grant { producer: self, r, written: 0, partial: [0; WORD], partial_len: 0 })
    }

    /// Encodes `msg` as an Ember frame in `scratch` and pushes it as one record.
    pub fn push_msg<T: Serialize + ?Sized>(
        &mut self,
        kind: u32,
        seq: u32,
        msg: &T,
        scratch: &mut [u8],
    ) -> Result<(), ShmError> {
        let frame = message::encode(kind, seq, msg, scratch)?;
        self.try_push(frame)
    }

    /// After a push: whether the consumer announced it sleeps, so the caller must wake it
    /// (futex wake on [`SpscControl::head_word`]). A `SeqCst` fence and a load, no syscall.
    pub fn consumer_waiting(&self) -> bool {
        fence(Ordering::SeqCst);
        self.ring.ctl.consumer_waiting.load(Ordering::Relaxed) != 0
    }

    /// Before sleeping on [`SpscControl::tail_word`]: announces the producer waits for
    /// room for `len` bytes and re-checks. `Some(tail)` means sleep while the tail word
    /// still equals it; `None` means room appeared, do not sleep. Call
    /// [`Producer::finish_wait`] after waking.
    pub fn prepare_wait(&mut self, len: usize) -> Option<u32> {
        self.ring.ctl.producer_waiting.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let tail = self.ring.ctl.tail.load(Ordering::Relaxed);
        match self.reserve(len) {
            Err(ShmError::Full) => Some(tail),
            _ => {
                self.finish_wait();
                None
            }
        }
    }

    /// Withdraws the announcement of [`Producer::prepare_wait`].
    pub fn finish_wait(&self) {
        self.ring.ctl.producer_waiting.store(0, Ordering::Relaxed);
    }

    /// Marks the ring closed: the consumer gets [`ShmError::Closed`] once it has drained it.
    /// Also appends a close record when there is room, so the head (the consumer's futex
    /// word) changes and a consumer asleep on it wakes; the caller then wakes it.
    pub fn close(&mut self) {
        self.ring.ctl.closed.store(1, Ordering::Release);
        let slot = RECORD_HEADER as u32;
        let pos = self.head & self.ring.mask();
        if self.ring.capacity - pos < slot {
            return;
        }
        if self.free() < slot {
            self.cached_tail = self.ring.ctl.tail.load(Ordering::Acquire);
            if self.head.wrapping_sub(self.cached_tail) > self.ring.capacity || self.free() < slot {
                // Full: the consumer is not asleep, it will drain and see `closed`.
                return;
            }
        }
        if copy::store_pair(self.ring.data, pos as usize, CLOSE, self.seq).is_ok() {
            self.head = self.head.wrapping_add(slot);
            self.ring.ctl.head.store(self.head, Ordering::Release);
        }
    }

    /// The ring.
    pub fn ring(&self) -> &SpscRing<'a> {
        &self.ring
    }
}

/// A record being written in place: bytes are appended with [`Grant::put`] (a cursor, so a
/// serializer can write straight into shared memory) and published with [`Grant::commit`].
///
/// `Send` and `Sync`, like the `&mut Producer` it holds.
pub struct Grant<'p, 'a> {
    producer: &'p mut Producer<'a>,
    r: Reservation,
    written: usize,
    partial: [u8; WORD],
    partial_len: usize,
}

impl core::fmt::Debug for Grant<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Grant")
            .field("producer", &self.producer)
            .field("capacity", &self.capacity())
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl<'p, 'a> Grant<'p, 'a> {
    /// Room granted, in bytes.
    pub fn capacity(&self) -> usize {
        self.r.len as usize
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.written
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Appends bytes; fails with [`ShmError::TooLarge`] beyond the granted size.
    pub fn put(&mut self, mut bytes: &[u8]) -> Result<(), ShmError> {
        let cap = self.capacity();
        if self.written + bytes.len() > cap {
            return Err(ShmError::TooLarge { len: self.written + bytes.len(), max: cap });
        }
        let base = self.r.pos as usize + RECORD_HEADER;
        // Fill the partial word first.
        if self.partial_len > 0 {
            let n = (WORD - self.partial_len).min(bytes.len());
            self.partial[self.partial_len..self.partial_len + n].copy_from_slice(&bytes[..n]);
            self.partial_len += n;
            self.written += n;
            bytes = &bytes[n..];
            if self.partial_len < WORD {
                return Ok(());
            }
            let word_off = base + self.written - WORD;
            copy::store(self.producer.ring.data, word_off, &self.partial)?;
            self.partial_len = 0;
        }
        let whole = bytes.len() / WORD * WORD;
        copy::store(self.producer.ring.data, base + self.written, &bytes[..whole])?;
        self.written += whole;
        let rest = &bytes[whole..];
        self.partial[..rest.len()].copy_from_slice(rest);
        self.partial_len = rest.len();
        self.written += rest.len();
        Ok(())
    }

    /// Publishes the record with the bytes written so far, and gives the producer back
    /// (for its wake-up check, [`Producer::consumer_waiting`]).
    pub fn commit(mut self) -> Result<&'p mut Producer<'a>, ShmError> {
        if self.partial_len > 0 {
            let off = self.r.pos as usize + RECORD_HEADER + self.written - self.partial_len;
            copy::store(self.producer.ring.data, off, &self.partial[..self.partial_len])?;
        }
        self.r.len = self.written as u32;
        self.r.slot = (RECORD_HEADER + align8(self.written)) as u32;
        self.producer.publish(&self.r)?;
        Ok(self.producer)
    }
}

/// The reading side. Exactly one may exist per ring (across all processes).
///
/// `Send` and `Sync`: references to atomics and plain cursors; reading takes `&mut self`.
#[derive(Debug)]
pub struct Consumer<'a> {
    ring: SpscRing<'a>,
    tail: u32,
    cached_head: u32,
    /// Pops since the last fenced check for a waiting producer.
    unchecked_pops: u32,
}

/// A consumer checks for a waiting producer (a `SeqCst` fence) at least every this many
/// pops, and whenever it finds the ring empty; see [`Consumer::producer_waiting`].
pub const WAKE_CHECK_INTERVAL: u32 = 32;

/// A record found by [`Consumer::locate`]: where its payload is and how long.
#[derive(Debug)]
struct Located {
    payload_at: usize,
    len: usize,
    slot: u32,
    /// A streaming record, which may still be being filled ([`Consumer::fill_state`]).
    stream: bool,
}

/// How far a streaming record is filled.
#[derive(Debug, PartialEq, Eq)]
enum Fill {
    /// All `len` bytes are there.
    Whole,
    /// The producer is still filling it: this many bytes are there.
    Filling(usize),
    /// The producer published records after it without finishing it: it died mid-write.
    Abandoned,
}

impl<'a> Consumer<'a> {
    /// Finds the next record, skipping a pad; validates everything read from the segment.
    fn locate(&mut self) -> Result<Located, ShmError> {
        let cap = self.ring.capacity;
        for _ in 0..2 {
            if self.tail == self.cached_head {
                let head = self.ring.ctl.head.load(Ordering::Acquire);
                if head.wrapping_sub(self.tail) > cap {
                    return Err(ShmError::Corrupt);
                }
                self.cached_head = head;
                if head == self.tail {
                    if !self.ring.ctl.is_closed() {
                        return Err(ShmError::Empty);
                    }
                    // `head` was loaded before `closed`, and may predate the last records
                    // pushed before the close: load it again now that `closed` was seen.
                    let head = self.ring.ctl.head.load(Ordering::Acquire);
                    if head == self.tail {
                        return Err(ShmError::Closed);
                    }
                    if head.wrapping_sub(self.tail) > cap {
                        return Err(ShmError::Corrupt);
                    }
                    self.cached_head = head;
                }
            }
            let avail = self.cached_head.wrapping_sub(self.tail);
            let pos = self.tail & self.ring.mask();
            let (len, _seq) = copy::load_pair(self.ring.data, pos as usize)?;
            if len == CLOSE {
                if avail < RECORD_HEADER as u32 {
                    return Err(ShmError::Corrupt);
                }
                self.tail = self.tail.wrapping_add(RECORD_HEADER as u32);
                self.ring.ctl.tail.store(self.tail, Ordering::Release);
                return Err(ShmError::Closed);
            }
            if len & PAD != 0 {
                let to_end = cap - pos;
                if pos == 0 || len & !PAD != to_end || avail < to_end {
                    return Err(ShmError::Corrupt);
                }
                self.tail = self.tail.wrapping_add(to_end);
                self.ring.ctl.tail.store(self.tail, Ordering::Release);
                continue;
            }
            let stream = len & STREAM != 0;
            let len = (len & !STREAM) as usize;
            if len > self.ring.max_record() {
                return Err(ShmError::Corrupt);
            }
            let slot = (RECORD_HEADER + align8(len)) as u32;
            if pos + slot > cap || avail < slot {
                return Err(ShmError::Corrupt);
            }
            return Ok(Located { payload_at: pos as usize + RECORD_HEADER, len, slot, stream });
        }
        // Two pads in a row: impossible from a correct producer.
        Err(ShmError::Corrupt)
    }

    /// The payload bytes of streaming record `r` filled so far, loaded with acquire (so
    /// they can be read); [`ShmError::Corrupt`] if its header changed or counts more.
    fn filled(&self, r: &Located) -> Result<usize, ShmError> {
        let (len, filled) = copy::load_pair_acquire(self.ring.data, r.payload_at - RECORD_HEADER)?;
        if len != r.len as u32 | STREAM || filled as usize > r.len {
            return Err(ShmError::Corrupt);
        }
        Ok(filled as usize)
    }

    /// Whether record `r` (at the tail) can be read whole: always for other records; for
    /// a streaming one when it is filled, or [`Fill::Abandoned`] when it never will be.
    fn fill_state(&mut self, r: &Located) -> Result<Fill, ShmError> {
        if !r.stream {
            return Ok(Fill::Whole);
        }
        let filled = self.filled(r)?;
        if filled == r.len {
            return Ok(Fill::Whole);
        }
        // Has the producer published anything after this record? It fills a record before
        // the next, so only a producer that died mid-write (and a successor) leaves one
        // unfinished behind the head. Head first, then the count again: a head past the
        // record was stored after the last count, which this acquire load then sees.
        let head = self.ring.ctl.head.load(Ordering::Acquire);
        if head.wrapping_sub(self.tail) > self.ring.capacity {
            return Err(ShmError::Corrupt);
        }
        self.cached_head = head;
        if head.wrapping_sub(self.tail) <= r.slot {
            return Ok(Fill::Filling(filled));
        }
        Ok(if self.filled(r)? == r.len { Fill::Whole } else { Fill::Abandoned })
    }

    /// Finds the next record and checks it is whole: [`ShmError::Empty`] while a streaming
    /// record is being filled; an abandoned one is skipped and reported.
    fn locate_whole(&mut self) -> Result<Located, ShmError> {
        let r = self.locate()?;
        match self.fill_state(&r)? {
            Fill::Whole => Ok(r),
            Fill::Filling(_) => Err(ShmError::Empty),
            Fill::Abandoned => {
                self.advance(r.slot);
                Err(ShmError::Abandoned { len: r.len })
            }
        }
    }

    fn advance(&mut self, slot: u32) {
        self.tail = self.tail.wrapping_add(slot);
        // Release: the slot is free once the counter moves. The Dekker pairing with
        // `Producer::prepare_wait` is the fence in `producer_waiting()`.
        self.ring.ctl.tail.store(self.tail, Ordering::Release);
    }

    /// Copies the next record into `out` and returns its length; [`ShmError::Empty`] when
    /// there is none, [`ShmError::Closed`] when there is none and the producer closed the
    /// ring, [`ShmError::BufferTooSmall`] (record left in place) when `out` is too short.
    ///
    /// A streaming record still being filled is [`ShmError::Empty`] here (nothing copied);
    /// one its producer abandoned is skipped and reported as [`ShmError::Abandoned`].
    pub fn try_pop(&mut self, out: &mut [u8]) -> Result<usize, ShmError> {
        let r = self.locate_whole()?;
        let dst = out.get_mut(..r.len).ok_or(ShmError::BufferTooSmall { needed: r.len })?;
        copy::load(self.ring.data, r.payload_at, dst)?;
        self.advance(r.slot);
        Ok(r.len)
    }

    /// [`Consumer::try_pop`], except that a streaming record still being filled is copied
    /// as it fills: whenever the copy has caught up with the producer, `wait` runs (a spin
    /// hint, a yield, a deadline or liveness check) and the copy goes on when it returns
    /// `Ok`. An error from `wait` ends the pop with that error; the record stays in the
    /// ring (whatever was copied into `out` is to be ignored), and the next pop starts it
    /// again. This is how a large record costs about one copy's time, not two: the
    /// producer's copy in and this copy out overlap.
    pub fn try_pop_streaming<W: FnMut() -> Result<(), ShmError>>(
        &mut self,
        out: &mut [u8],
        mut wait: W,
    ) -> Result<usize, ShmError> {
        let r = self.locate()?;
        let dst = out.get_mut(..r.len).ok_or(ShmError::BufferTooSmall { needed: r.len })?;
        if !r.stream {
            copy::load(self.ring.data, r.payload_at, dst)?;
            self.advance(r.slot);
            return Ok(r.len);
        }
        let mut copied = 0;
        loop {
            let filled = match self.fill_state(&r)? {
                Fill::Whole => r.len,
                Fill::Filling(n) => n - n % WORD,
                Fill::Abandoned => {
                    self.advance(r.slot);
                    return Err(ShmError::Abandoned { len: r.len });
                }
            };
            if filled > copied {
                copy::load(self.ring.data, r.payload_at + copied, &mut dst[copied..filled])?;
                copied = filled;
            }
            if copied == r.len {
                break;
            }
            wait()?;
        }
        self.advance(r.slot);
        Ok(r.len)
    }

    /// Whether the next record is a streaming record its producer is still filling (a
    /// receive waiting for it sleeps in short slices: the producer's wake-up comes after
    /// the last chunk, not with a change of the `head` word).
    pub fn next_is_filling(&mut self) -> bool {
        match self.locate() {
            Ok(r) => matches!(self.fill_state(&r), Ok(Fill::Filling(_))),
            Err(_) => false,
        }
    }

    /// Pops up to `max` records in one go: copies each into `out` and hands the copy to `f`,
    /// then publishes the consumed bytes to the producer once, with one store of the tail
    /// counter for the whole batch (a loop of [`Consumer::try_pop`] makes one a record).
    /// Returns how many records were popped, at least one; fails only when the first
    /// record cannot be taken: [`ShmError::Empty`], [`ShmError::Closed`],
    /// [`ShmError::BufferTooSmall`] (record left in place), [`ShmError::Corrupt`]. A later
    /// record that cannot be taken ends the batch and is reported by the next call.
    ///
    /// `f` runs before the batch's room is handed back, so a producer waiting for room
    /// waits for the whole batch: keep `max` small (tens of records) where that matters.
    /// `max == 0` pops nothing and answers `Ok(0)`.
    pub fn try_pop_many<F: FnMut(&[u8])>(&mut self, out: &mut [u8], max: usize, mut f: F) -> Result<usize, ShmError> {
        let start = self.tail;
        let mut popped = 0;
        while popped < max {
            // A streaming record still being filled (or abandoned) ends the batch like any
            // record that cannot be taken; the abandoned one is skipped and reported by the
            // call it comes first in.
            let r = match self.locate().and_then(|r| Ok((self.fill_state(&r)?, r))) {
                Ok((Fill::Whole, r)) => r,
                Ok((Fill::Abandoned, r)) if popped == 0 => {
                    self.advance(r.slot);
                    return Err(ShmError::Abandoned { len: r.len });
                }
                Ok((Fill::Filling(_), _)) if popped == 0 => return Err(ShmError::Empty),
                Ok(_) => break,
                Err(e) if popped == 0 => return Err(e),
                Err(_) => break,
            };
            let Some(dst) = out.get_mut(..r.len) else {
                if popped == 0 {
                    return Err(ShmError::BufferTooSmall { needed: r.len });
                }
                break;
            };
            if let Err(e) = copy::load(self.ring.data, r.payload_at, dst) {
                if popped == 0 {
                    return Err(e);
                }
                break;
            }
            // Consumed locally; published below, after the batch's last copy.
            self.tail = self.tail.wrapping_add(r.slot);
            popped += 1;
            f(dst);
        }
        if self.tail != start {
            // Release: every copy of the batch before the counter (as in `advance`).
            self.ring.ctl.tail.store(self.tail, Ordering::Release);
        }
        Ok(popped)
    }

    /// Looks at the next record without consuming it; [`Peek::release`] consumes it.
    /// A streaming record is there to peek once it is whole ([`ShmError::Empty`] before).
    pub fn peek(&mut self) -> Result<Peek<'_, 'a>, ShmError> {
        let r = self.locate_whole()?;
        Ok(Peek { consumer: self, r })
    }

    /// Pops the next record into `scratch` and decodes it as an Ember frame carrying a `T`.
    pub fn pop_msg<'s, T: serde::Deserialize<'s>>(
        &mut self,
        scratch: &'s mut [u8],
    ) -> Result<(crate::FrameRepr, T), ShmError> {
        let n = self.try_pop(scratch)?;
        Ok(message::decode(&scratch[..n])?)
    }

    /// After a pop, or after finding the ring empty (`after_pop == false`): whether the
    /// producer announced it sleeps waiting for room, so the caller must wake it (futex wake
    /// on [`SpscControl::tail_word`]).
    ///
    /// The check costs a `SeqCst` fence, so after pops it is made only every
    /// [`WAKE_CHECK_INTERVAL`] pops; it is always made when the ring is found empty. A
    /// waiting producer is therefore woken within that many pops, or when the consumer has
    /// drained the ring; a consumer that stops reading midway leaves it to its own timeout
    /// slice (`ember-ipc-linux`: 100 ms) to find the room.
    pub fn producer_waiting(&mut self, after_pop: bool) -> bool {
        if after_pop { self.producer_waiting_after(1) } else { self.check_producer_waiting() }
    }

    /// [`Consumer::producer_waiting`] after `pops` pops at once ([`Consumer::try_pop_many`]):
    /// counts them all towards the next check (`pops == 0` checks, as after finding the ring
    /// empty).
    pub fn producer_waiting_after(&mut self, pops: usize) -> bool {
        if pops == 0 {
            return self.check_producer_waiting();
        }
        self.unchecked_pops = self.unchecked_pops.saturating_add(u32::try_from(pops).unwrap_or(u32::MAX));
        if self.unchecked_pops < WAKE_CHECK_INTERVAL {
            return false;
        }
        self.check_producer_waiting()
    }

    fn check_producer_waiting(&mut self) -> bool {
        self.unchecked_pops = 0;
        fence(Ordering::SeqCst);
        self.ring.ctl.producer_waiting.load(Ordering::Relaxed) != 0
    }

    /// Before sleeping on [`SpscControl::head_word`]: announces the consumer waits and
    /// re-checks. `Some(head)` means sleep while the head word still equals it; `None`
    /// means a record (or the close) arrived, do not sleep. Call [`Consumer::finish_wait`]
    /// after waking.
    ///
    /// A streaming record still being filled counts as nothing arrived (`Some`): the
    /// producer's wake-up check after its last chunk wakes the sleeper. The head word does
    /// not change then, so a wake-up that comes between this check and the sleep is
    /// missed: sleep in short slices while [`Consumer::next_is_filling`].
    pub fn prepare_wait(&mut self) -> Option<u32> {
        self.ring.ctl.consumer_waiting.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let head = self.ring.ctl.head.load(Ordering::Relaxed);
        if (head == self.tail && !self.ring.ctl.is_closed()) || (head != self.tail && self.next_is_filling()) {
            Some(head)
        } else {
            self.finish_wait();
            None
        }
    }

    /// Withdraws the announcement of [`Consumer::prepare_wait`].
    pub fn finish_wait(&self) {
        self.ring.ctl.consumer_waiting.store(0, Ordering::Relaxed);
    }

    /// Bytes waiting to be read, as far as the segment says (at most the capacity).
    pub fn pending_bytes(&self) -> usize {
        let head = self.ring.ctl.head.load(Ordering::Acquire);
        (head.wrapping_sub(self.tail)).min(self.ring.capacity) as usize
    }

    /// The ring.
    pub fn ring(&self) -> &SpscRing<'a> {
        &self.ring
    }
}

/// The next record, still in the ring.
///
/// `Send` and `Sync`, like the `&mut Consumer` it holds.
#[derive(Debug)]
pub struct Peek<'c, 'a> {
    consumer: &'c mut Consumer<'a>,
    r: Located,
}

impl<'c, 'a> Peek<'c, 'a> {
    /// Payload length.
    pub fn len(&self) -> usize {
        self.r.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.r.len == 0
    }

    /// Copies `out.len()` payload bytes from `offset` (e.g. a frame header alone).
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), ShmError> {
        let end = offset.checked_add(out.len()).ok_or(ShmError::Corrupt)?;
        if end > self.r.len {
            return Err(ShmError::TooLarge { len: end, max: self.r.len });
        }
        copy::load_unaligned(self.consumer.ring.data, self.r.payload_at + offset, out)
    }

    /// Consumes the record, and gives the consumer back (for its wake-up check,
    /// [`Consumer::producer_waiting`]).
    pub fn release(self) -> &'c mut Consumer<'a> {
        self.consumer.advance(self.r.slot);
        self.consumer
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn ring_mem(cap: usize) -> (SpscControl, Vec<Word>) {
        (SpscControl::zeroed(), (0..cap / WORD).map(|_| Word::new(0)).collect())
    }

    #[test]
    fn push_pop_in_order_with_wrap() {
        let (ctl, data) = ring_mem(256);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        let mut out = [0u8; 200];
        for round in 0..100u32 {
            let len = (round as usize * 7) % 100;
            let payload: Vec<u8> = (0..len).map(|i| (i as u32 + round) as u8).collect();
            p.try_push(&payload).unwrap();
            let n = c.try_pop(&mut out).unwrap();
            assert_eq!(&out[..n], &payload[..], "round {round}");
        }
        assert_eq!(c.try_pop(&mut out), Err(ShmError::Empty));
    }

    #[test]
    fn full_then_drains() {
        let (ctl, data) = ring_mem(128);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        assert_eq!(ring.max_record(), 56);
        let mut pushed = 0;
        while p.try_push(&[pushed as u8; 20]).is_ok() {
            pushed += 1;
        }
        assert_eq!(pushed, 4, "128 bytes hold four 32-byte slots");
        assert_eq!(p.try_push(&[0; 20]), Err(ShmError::Full));
        let mut out = [0u8; 64];
        assert_eq!(c.try_pop(&mut out), Ok(20));
        assert_eq!(out[0], 0);
        p.try_push(&[9; 20]).unwrap();
        assert_eq!(p.try_push(&[0; 57]), Err(ShmError::TooLarge { len: 57, max: 56 }));
    }

    #[test]
    fn pop_many_takes_a_batch_and_publishes_the_tail_once() {
        let (ctl, data) = ring_mem(256);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        let mut out = [0u8; 64];
        let mut got: Vec<Vec<u8>> = Vec::new();
        assert_eq!(c.try_pop_many(&mut out, 8, |r| got.push(r.to_vec())), Err(ShmError::Empty));
        assert_eq!(c.try_pop_many(&mut out, 0, |_| unreachable!()), Ok(0));
        let mut next = 0u8;
        for round in 0..50 {
            // Records of 0 to 40 bytes, a pad at every wrap of the 256-byte ring.
            let mut pushed = 0;
            while pushed < 5 && p.try_push(&[next.wrapping_add(pushed); 40][..(round + pushed as usize) % 41]).is_ok() {
                pushed += 1;
            }
            let tail = ctl.tail.load(Ordering::Relaxed);
            got.clear();
            let n = c.try_pop_many(&mut out, 3, |r| got.push(r.to_vec())).unwrap();
            assert_eq!(n, got.len());
            assert_eq!(n, usize::from(pushed).min(3), "round {round}");
            for (i, r) in got.iter().enumerate() {
                assert_eq!(r.len(), (round + i) % 41);
                assert!(r.iter().all(|&b| b == next.wrapping_add(i as u8)), "round {round} record {i}");
            }
            assert_eq!(ctl.tail.load(Ordering::Relaxed), c.tail, "published");
            assert_ne!(ctl.tail.load(Ordering::Relaxed), tail);
            // The rest, one at a time.
            for i in n..usize::from(pushed) {
                assert_eq!(c.try_pop(&mut out), Ok((round + i) % 41));
            }
            next = next.wrapping_add(pushed);
        }
        // A record too large for `out` ends a batch, and fails one that starts with it.
        p.try_push(&[1; 8]).unwrap();
        p.try_push(&[2; 40]).unwrap();
        let mut small = [0u8; 16];
        assert_eq!(c.try_pop_many(&mut small, 8, |r| assert_eq!(r, [1; 8])), Ok(1));
        assert_eq!(c.try_pop_many(&mut small, 8, |_| unreachable!()), Err(ShmError::BufferTooSmall { needed: 40 }));
        assert_eq!(c.try_pop_many(&mut out, 8, |r| assert_eq!(r, [2; 40])), Ok(1));
        // The close ends a batch; the next call reports it.
        p.try_push(b"last").unwrap();
        p.close();
        assert_eq!(c.try_pop_many(&mut out, 8, |r| assert_eq!(r, b"last")), Ok(1));
        assert_eq!(c.try_pop_many(&mut out, 8, |_| unreachable!()), Err(ShmError::Closed));
        // Pops of a batch count towards the wake-up check.
        assert!(!c.producer_waiting_after(WAKE_CHECK_INTERVAL as usize - 1));
        ctl.producer_waiting.store(1, Ordering::Relaxed);
        assert!(c.producer_waiting_after(1));
        assert!(c.producer_waiting_after(0), "zero pops: checked, as on an empty ring");
    }

    #[test]
    fn buffer_too_small_leaves_record() {
        let (ctl, data) = ring_mem(128);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        p.try_push(&[1, 2, 3, 4, 5]).unwrap();
        let mut small = [0u8; 3];
        assert_eq!(c.try_pop(&mut small), Err(ShmError::BufferTooSmall { needed: 5 }));
        let mut out = [0u8; 8];
        assert_eq!(c.try_pop(&mut out), Ok(5));
    }

    #[test]
    fn grant_commit_and_peek_release() {
        let (ctl, data) = ring_mem(256);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        let mut g = p.grant(50).unwrap();
        g.put(b"abc").unwrap();
        g.put(b"defghijklmno").unwrap();
        g.put(b"p").unwrap();
        assert_eq!(g.len(), 16);
        assert!(matches!(g.put(&[0; 40]), Err(ShmError::TooLarge { .. })));
        g.commit().unwrap();
        // An abandoned grant publishes nothing.
        let abandoned = p.grant(10).unwrap();
        let _ = abandoned;
        let peek = c.peek().unwrap();
        assert_eq!(peek.len(), 16);
        let mut mid = [0u8; 5];
        peek.read(3, &mut mid).unwrap();
        assert_eq!(&mid, b"defgh");
        peek.release();
        assert!(matches!(c.peek(), Err(ShmError::Empty)));
    }

    #[test]
    fn typed_messages() {
        let (ctl, data) = ring_mem(512);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        let mut scratch = [0u8; 128];
        p.push_msg(7, 1, &("valve", 3u8), &mut scratch).unwrap();
        let mut rx = [0u8; 128];
        let (repr, (name, n)): (_, (&str, u8)) = c.pop_msg(&mut rx).unwrap();
        assert_eq!((repr.kind, repr.seq, name, n), (7, 1, "valve", 3));
    }

    #[test]
    fn closed_after_drain() {
        let (ctl, data) = ring_mem(128);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        p.try_push(b"last").unwrap();
        let head_before = ctl.head.load(Ordering::Relaxed);
        p.close();
        assert_ne!(ctl.head.load(Ordering::Relaxed), head_before, "close moves the futex word");
        let mut out = [0u8; 8];
        assert_eq!(c.try_pop(&mut out), Ok(4));
        assert_eq!(c.try_pop(&mut out), Err(ShmError::Closed));
        assert_eq!(c.try_pop(&mut out), Err(ShmError::Closed));
        assert_eq!(c.prepare_wait(), None, "a closed ring is never slept on");
    }

    #[test]
    fn wait_announcements() {
        let (ctl, data) = ring_mem(128);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        assert!(!p.consumer_waiting());
        assert_eq!(c.prepare_wait(), Some(0));
        assert!(p.consumer_waiting());
        p.try_push(b"x").unwrap();
        c.finish_wait();
        assert!(!p.consumer_waiting());
        assert_eq!(c.prepare_wait(), None, "data is there: do not sleep");
        while p.try_push(&[0; 20]).is_ok() {}
        assert!(p.prepare_wait(20).is_some());
        assert!(!c.producer_waiting(true), "checked only every WAKE_CHECK_INTERVAL pops");
        assert!(c.producer_waiting(false), "always checked when the ring is empty");
    }

    /// A producer mid-stream, simulated: record `r` at `pos` published with `filled` of its
    /// `len` bytes counted.
    fn set_filled(data: &[Word], pos: usize, len: usize, filled: usize) {
        copy::store_pair_release(data, pos, len as u32 | STREAM, filled as u32).unwrap();
    }

    /// Where the consumer's next record's header is (past a pad, which it skips).
    fn record_at(c: &mut Consumer<'_>) -> usize {
        c.locate().unwrap().payload_at - RECORD_HEADER
    }

    /// The streaming tests' ring, sized to `STREAM_MIN` (which is 32 bytes under Miri).
    const STREAM_RING: usize = STREAM_MIN * 8;

    fn pattern(len: usize, salt: usize) -> Vec<u8> {
        (0..len).map(|i| (i.wrapping_mul(7) ^ (i >> 9) ^ salt) as u8).collect()
    }

    #[test]
    fn streaming_records_whole_filling_and_waited_for() {
        let (ctl, data) = ring_mem(STREAM_RING);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        // Six chunks and a bit: the last one partial.
        let big = pattern(STREAM_MIN * 3 + 5, 1);
        let mut out = vec![0u8; big.len()];
        // Whole: the header counts every byte, and every pop reads it like any record.
        p.try_push(&big).unwrap();
        assert_eq!(copy::load_pair(&data, 0), Ok((big.len() as u32 | STREAM, big.len() as u32)));
        assert_eq!(c.try_pop(&mut out), Ok(big.len()));
        assert_eq!(out, big);
        p.try_push(&big).unwrap();
        assert_eq!(c.try_pop_many(&mut out, 4, |r| assert_eq!(r, &big[..])), Ok(1));
        // A record one byte short of streaming is an ordinary one.
        p.try_push(&big[..STREAM_MIN - 1]).unwrap();
        let pos = record_at(&mut c);
        assert_eq!(copy::load_pair(&data, pos).unwrap().0, STREAM_MIN as u32 - 1);
        assert_eq!(c.try_pop(&mut out), Ok(STREAM_MIN - 1));

        // Still being filled: nothing to take whole, and a sleeper is told to sleep.
        p.try_push(&big).unwrap();
        let pos = record_at(&mut c);
        set_filled(&data, pos, big.len(), STREAM_CHUNK);
        assert_eq!(c.try_pop(&mut out), Err(ShmError::Empty));
        assert_eq!(c.try_pop_many(&mut out, 4, |_| unreachable!()), Err(ShmError::Empty));
        assert!(matches!(c.peek(), Err(ShmError::Empty)));
        assert!(c.next_is_filling());
        assert_eq!(c.prepare_wait(), Some(ctl.head.load(Ordering::Relaxed)));
        c.finish_wait();
        // Copied as it fills: the wait closure plays the producer, one chunk per call.
        out.fill(0);
        let mut chunks = 1;
        let n = c
            .try_pop_streaming(&mut out, || {
                chunks += 1;
                set_filled(&data, pos, big.len(), (chunks * STREAM_CHUNK).min(big.len()));
                Ok(())
            })
            .unwrap();
        assert_eq!((n, &out), (big.len(), &big));
        assert_eq!(chunks, big.len().div_ceil(STREAM_CHUNK));
        assert!(!c.next_is_filling());

        // A wait that fails ends the pop and leaves the record for the next one.
        p.try_push(&big).unwrap();
        let pos = record_at(&mut c);
        set_filled(&data, pos, big.len(), STREAM_CHUNK + 3);
        assert_eq!(c.try_pop_streaming(&mut out, || Err(ShmError::Timeout)), Err(ShmError::Timeout));
        set_filled(&data, pos, big.len(), big.len());
        out.fill(0);
        assert_eq!(c.try_pop_streaming(&mut out, || unreachable!()), Ok(big.len()));
        assert_eq!(out, big);
        // Ordinary records through the streaming pop, and the close after them.
        p.try_push(b"small").unwrap();
        p.close();
        assert_eq!(c.try_pop_streaming(&mut out, || unreachable!()), Ok(5));
        assert_eq!(&out[..5], b"small");
        assert_eq!(c.try_pop_streaming(&mut out, || unreachable!()), Err(ShmError::Closed));
    }

    #[test]
    fn streaming_record_abandoned_or_hostile() {
        let (ctl, data) = ring_mem(STREAM_RING);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        let big = pattern(STREAM_MIN + STREAM_CHUNK / 2 + 3, 2);
        let mut out = vec![0u8; big.len()];
        // A producer that dies mid-record, and a successor that goes on: each pop skips
        // the unfinished record once, reports it, and the next pop has the next record.
        type Pop = fn(&mut Consumer<'_>, &mut [u8]) -> Result<usize, ShmError>;
        let pops: [Pop; 4] = [
            |c, out| c.try_pop(out),
            |c, out| c.try_pop_streaming(out, || Ok(())),
            |c, out| c.try_pop_many(out, 4, |_| {}),
            |c, _| c.peek().map(|p| p.len()),
        ];
        for pop in pops {
            p.try_push(&big).unwrap();
            let pos = record_at(&mut c);
            set_filled(&data, pos, big.len(), STREAM_CHUNK);
            p = ring.producer();
            p.try_push(b"after").unwrap();
            assert!(!c.next_is_filling());
            assert_eq!(pop(&mut c, &mut out), Err(ShmError::Abandoned { len: big.len() }));
            assert_eq!(c.try_pop(&mut out), Ok(5));
            assert_eq!(&out[..5], b"after");
        }
        // A count beyond the record, or a length that changed under the reader: corrupt.
        p.try_push(&big).unwrap();
        let pos = record_at(&mut c);
        set_filled(&data, pos, big.len(), big.len() + 8);
        assert_eq!(c.try_pop(&mut out), Err(ShmError::Corrupt));
        assert_eq!(c.try_pop_streaming(&mut out, || Ok(())), Err(ShmError::Corrupt));
        set_filled(&data, pos, big.len(), STREAM_CHUNK);
        let mut calls = 0;
        let r = c.try_pop_streaming(&mut out, || {
            calls += 1;
            set_filled(&data, pos, big.len() - 8, STREAM_CHUNK);
            Ok(())
        });
        assert_eq!((r, calls), (Err(ShmError::Corrupt), 1));
        // A streaming flag on an impossible length: corrupt, as without it.
        copy::store_pair(&data, pos, STREAM | 0x0100_0000, 0).unwrap();
        assert_eq!(c.try_pop(&mut out), Err(ShmError::Corrupt));
    }

    #[test]
    fn streaming_records_across_threads_arrive_whole_and_in_order() {
        // Sizes in units of `STREAM_MIN` (32 bytes under Miri, which interprets every copy).
        let (ctl, data) = ring_mem(STREAM_MIN * 32);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let max = ring.max_record();
        let m = STREAM_MIN;
        let sizes: Vec<usize> = (0..if cfg!(miri) { 24 } else { 120 })
            .map(|i| [m, 5, 3 * m + 3, 2 * m + 1, 6 * m, 12 * m][i % 6].min(max))
            .collect();
        std::thread::scope(|s| {
            let sizes = &sizes;
            s.spawn(move || {
                let mut p = ring.producer();
                for (i, &len) in sizes.iter().enumerate() {
                    let rec = pattern(len, i);
                    while let Err(e) = p.try_push(&rec) {
                        assert_eq!(e, ShmError::Full);
                        std::thread::yield_now();
                    }
                }
            });
            let mut c = ring.consumer();
            let mut out = vec![0u8; max];
            for (i, &len) in sizes.iter().enumerate() {
                let n = loop {
                    // Alternately copied as it fills and taken whole.
                    let r = if i % 2 == 0 {
                        c.try_pop_streaming(&mut out, || {
                            std::thread::yield_now();
                            Ok(())
                        })
                    } else {
                        c.try_pop(&mut out)
                    };
                    match r {
                        Ok(n) => break n,
                        Err(ShmError::Empty) => std::thread::yield_now(),
                        Err(e) => panic!("record {i}: {e}"),
                    }
                };
                assert_eq!(n, len, "record {i}");
                assert!(out[..n] == pattern(len, i)[..], "record {i} of {len} bytes differs");
            }
        });
    }

    #[test]
    fn hostile_counters_are_corrupt_not_panics() {
        let (ctl, data) = ring_mem(128);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let mut c = ring.consumer();
        let mut out = [0u8; 128];
        // Head claims more than the capacity is pending.
        ctl.head.store(1000, Ordering::Relaxed);
        assert_eq!(c.try_pop(&mut out), Err(ShmError::Corrupt));
        // A record length beyond the ring.
        ctl.head.store(64, Ordering::Relaxed);
        copy::store_pair(&data, 0, 4000, 0).unwrap();
        let mut c = ring.consumer();
        assert_eq!(c.try_pop(&mut out), Err(ShmError::Corrupt));
        // A pad at offset 0.
        copy::store_pair(&data, 0, PAD | 128, 0).unwrap();
        assert_eq!(c.try_pop(&mut out), Err(ShmError::Corrupt));
        // The consumer's tail moved beyond the head: the producer sees it.
        let (ctl, data) = ring_mem(128);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let mut p = ring.producer();
        for _ in 0..4 {
            p.try_push(&[0; 20]).unwrap();
        }
        ctl.tail.store(5000, Ordering::Relaxed);
        assert_eq!(p.try_push(&[0; 20]), Err(ShmError::Corrupt));
    }

    #[test]
    fn one_reader_claim_at_a_time() {
        let (ctl, _data) = ring_mem(128);
        assert_eq!(ctl.reader_claim(), None);
        assert_eq!(ctl.claim_reader(10, 500, None), Ok(()));
        let first = ReaderClaim { pid: 10, start: 500 };
        assert_eq!(ctl.reader_claim(), Some(first));
        // A second claimant is told who holds it.
        assert_eq!(ctl.claim_reader(11, 600, None), Err(Some(first)));
        // Taking over names the holder it found dead; a stale expectation fails.
        assert_eq!(ctl.claim_reader(12, 700, Some(ReaderClaim { pid: 9, start: 1 })), Err(Some(first)));
        assert_eq!(ctl.claim_reader(12, 700, Some(first)), Ok(()));
        assert_eq!(ctl.reader_claim(), Some(ReaderClaim { pid: 12, start: 700 }));
        // Only the holder releases.
        ctl.release_reader(10);
        assert_eq!(ctl.reader_claim().map(|c| c.pid), Some(12));
        ctl.release_reader(12);
        assert_eq!(ctl.reader_claim(), None);
        // A claim whose start time was not stored yet reads as unknown (0).
        ctl.reader_pid.store(13, Ordering::Relaxed);
        assert_eq!(ctl.reader_claim(), Some(ReaderClaim { pid: 13, start: 0 }));
    }

    #[test]
    fn bad_sizes() {
        let (ctl, data) = ring_mem(96);
        assert_eq!(SpscRing::new(&ctl, &data).err(), Some(ShmError::BadSize));
        let (ctl, data) = ring_mem(32);
        assert_eq!(SpscRing::new(&ctl, &data).err(), Some(ShmError::BadSize));
    }
}
