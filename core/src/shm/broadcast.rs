//! The broadcast ring: one writer, any number of readers, lossy.
//!
//! The writer never waits: when a record does not fit, it evicts the oldest records. Each
//! reader keeps its own cursor (byte position and record number) in its own memory, so
//! readers never store to the segment and may map it read-only. A reader that was lapped
//! learns exactly how many records it lost and resumes at the oldest record still valid.
//!
//! Records are laid out as in the SPSC ring (`[len: u32][seq: u32]` header, payload padded
//! to 8, pad records at the end). The control lines hold 64-bit monotonic counters, so
//! this module needs 64-bit atomics (every Linux board target has them; it is absent on,
//! e.g., `thumbv7em`):
//!
//! - `head` (bytes written) and `head_seq` (records written), published with release;
//! - `tail` (first byte still valid) and `tail_seq` (its record number), guarded by a
//!   32-bit `tail_lock` sequence so readers take a consistent pair;
//! - `published`, a 32-bit counter bumped per record: the futex word readers sleep on.
//!
//! **Damage** (a record header no writer could have produced, e.g. a peer that scribbled
//! over the segment) is reported once as [`ShmError::Corrupt`]; the reader then
//! resynchronises: it moves to the writer's current `head`, takes the number of the next
//! record written there from that record's header (its low 32 bits, widened against
//! `head_seq`), and counts every record in between as lost. It never stays stuck behind
//! the damage. Damaged counters (`head` behind the reader, `tail_seq` going back) are
//! reported as `Corrupt` until the writer's next record stores them again from its own copy.
//!
//! **Overwrite detection** is the seqlock argument: before overwriting old records the
//! writer moves `tail` past them, then issues a release fence, then stores the new bytes;
//! a reader copies a record, issues an acquire fence, then reads `tail`. If any byte it
//! copied was new, it sees the moved `tail` and discards the copy as lapped.

use super::copy;
use super::layout::MAX_CAPACITY;
use super::primitive::{AtomicU32, AtomicU64, Ordering, fence, pad, spin, u32_zero};
use super::seqlock::WaitLine;
use super::spsc::RECORD_HEADER;
use super::{ShmError, WORD, Word, align8};

const PAD: u32 = 0x8000_0000;
/// Lapped-and-retry rounds a read tolerates before [`ShmError::Contended`].
pub const MAX_RETRIES: u32 = if cfg!(loom) { 4 } else { 1_000 };

fn u64_zero() -> AtomicU64 {
    AtomicU64::new(0)
}

/// The broadcast control lines (bytes 128..512 of the segment).
///
/// `Send` and `Sync`: only atomics, shared by every process that maps the segment.
#[repr(C)]
pub struct BroadcastControl {
    head: AtomicU64,
    head_seq: AtomicU64,
    published: AtomicU32,
    closed: AtomicU32,
    _pad0: [AtomicU32; pad(26)],
    tail_lock: AtomicU32,
    _reserved: AtomicU32,
    tail: AtomicU64,
    tail_seq: AtomicU64,
    _pad1: [AtomicU32; pad(26)],
    _pad2: [AtomicU32; pad(32)],
}

impl core::fmt::Debug for BroadcastControl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BroadcastControl")
            .field("head", &self.head)
            .field("head_seq", &self.head_seq)
            .field("published", &self.published)
            .field("closed", &self.closed)
            .field("tail", &self.tail)
            .field("tail_seq", &self.tail_seq)
            .finish_non_exhaustive()
    }
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<BroadcastControl>() == 384);

impl BroadcastControl {
    /// Byte offsets of the words [`super::inspect`] reads from a copy of the control lines.
    pub(crate) const HEAD_SEQ: usize = core::mem::offset_of!(BroadcastControl, head_seq);
    pub(crate) const CLOSED: usize = core::mem::offset_of!(BroadcastControl, closed);
    pub(crate) const TAIL_SEQ: usize = core::mem::offset_of!(BroadcastControl, tail_seq);

    /// Zeroed control lines.
    pub fn zeroed() -> BroadcastControl {
        BroadcastControl {
            head: u64_zero(),
            head_seq: u64_zero(),
            published: u32_zero(),
            closed: u32_zero(),
            _pad0: core::array::from_fn(|_| u32_zero()),
            tail_lock: u32_zero(),
            _reserved: u32_zero(),
            tail: u64_zero(),
            tail_seq: u64_zero(),
            _pad1: core::array::from_fn(|_| u32_zero()),
            _pad2: core::array::from_fn(|_| u32_zero()),
        }
    }

    /// The futex word readers sleep on: bumped once per record.
    pub fn published_word(&self) -> &AtomicU32 {
        &self.published
    }

    /// Records written so far.
    pub fn records_written(&self) -> u64 {
        self.head_seq.load(Ordering::Acquire)
    }

    /// Whether the writer closed the ring.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) != 0
    }

    /// `(tail, tail_seq)` as one consistent pair, or [`ShmError::WriterStalled`].
    fn tail_pair(&self) -> Result<(u64, u64), ShmError> {
        for _ in 0..MAX_RETRIES {
            let v1 = self.tail_lock.load(Ordering::Acquire);
            if v1 & 1 == 0 {
                let t = self.tail.load(Ordering::Relaxed);
                let ts = self.tail_seq.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if self.tail_lock.load(Ordering::Relaxed) == v1 {
                    return Ok((t, ts));
                }
            }
            spin();
        }
        Err(ShmError::WriterStalled)
    }
}

/// A broadcast ring over control lines and a power-of-two data area.
///
/// `Send` and `Sync`: shared references to atomics.
#[derive(Clone, Copy)]
pub struct BroadcastRing<'a> {
    ctl: &'a BroadcastControl,
    data: &'a [Word],
    capacity: u64,
}

impl core::fmt::Debug for BroadcastRing<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BroadcastRing").field("ctl", self.ctl).field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl<'a> BroadcastRing<'a> {
    /// A ring over `data`, whose byte length (the capacity) must be a power of two between
    /// 64 bytes and 1 GiB.
    pub fn new(ctl: &'a BroadcastControl, data: &'a [Word]) -> Result<BroadcastRing<'a>, ShmError> {
        let bytes = data.len() * WORD;
        if !bytes.is_power_of_two() || !(64..=MAX_CAPACITY).contains(&bytes) {
            return Err(ShmError::BadSize);
        }
        Ok(BroadcastRing { ctl, data, capacity: bytes as u64 })
    }

    /// The largest payload: `capacity / 2 - 8`.
    pub fn max_record(&self) -> usize {
        self.capacity as usize / 2 - RECORD_HEADER
    }

    /// The control lines.
    pub fn control(&self) -> &'a BroadcastControl {
        self.ctl
    }

    /// The writer, resuming from the counters in the segment (a damaged set of counters is
    /// reset: the old records are dropped).
    pub fn writer(self) -> BroadcastWriter<'a> {
        let ctl = self.ctl;
        let head = ctl.head.load(Ordering::Relaxed);
        let head_seq = ctl.head_seq.load(Ordering::Relaxed);
        let tail = ctl.tail.load(Ordering::Relaxed);
        let tail_seq = ctl.tail_seq.load(Ordering::Relaxed);
        let lock = ctl.tail_lock.load(Ordering::Relaxed) & !1;
        let mut w = BroadcastWriter { ring: self, head, head_seq, tail, tail_seq, lock };
        if !head.is_multiple_of(8) || tail > head || head - tail > self.capacity || tail_seq > head_seq {
            // Never move head backwards (readers would see it behind them): round it up.
            w.head = head.saturating_add(7) & !7;
            w.tail = w.head;
            w.tail_seq = head_seq;
            w.store_tail();
            ctl.head.store(w.head, Ordering::Release);
        }
        w
    }

    /// A reader that starts with the next record written: a reader at the oldest record
    /// that skips over what is there (`head` and `head_seq` cannot be read as one
    /// consistent pair, so the cursor is found by walking the records). Falls back to the
    /// oldest record if the walk keeps being lapped or the ring is damaged.
    pub fn reader_at_end(self) -> BroadcastReader<'a> {
        let mut r = BroadcastReader { ring: self, pos: 0, seq: 0, lost: 0, resync: false };
        if let Ok((tail, tail_seq)) = self.ctl.tail_pair() {
            r.pos = tail;
            r.seq = tail_seq;
            let start = (r.pos, r.seq);
            for _ in 0..MAX_RETRIES {
                match r.next(None) {
                    Ok(_) => {}
                    Err(ShmError::Empty | ShmError::Closed) => {
                        r.lost = 0;
                        return r;
                    }
                    Err(_) => break,
                }
            }
            (r.pos, r.seq) = start;
            r.lost = 0;
        }
        r
    }

    /// A reader that starts with the oldest record still in the ring.
    pub fn reader_at_oldest(self) -> Result<BroadcastReader<'a>, ShmError> {
        let (tail, tail_seq) = self.ctl.tail_pair()?;
        Ok(BroadcastReader { ring: self, pos: tail, seq: tail_seq, lost: 0, resync: false })
    }

    fn pos(&self, counter: u64) -> usize {
        (counter & (self.capacity - 1)) as usize
    }
}

/// The writer; exactly one may exist (across all processes).
///
/// `Send` and `Sync`: references to atomics and plain cursors; writing takes `&mut self`.
#[derive(Debug)]
pub struct BroadcastWriter<'a> {
    ring: BroadcastRing<'a>,
    head: u64,
    head_seq: u64,
    tail: u64,
    tail_seq: u64,
    lock: u32,
}

impl<'a> BroadcastWriter<'a> {
    fn store_tail(&mut self) {
        let ctl = self.ring.ctl;
        ctl.tail_lock.store(self.lock.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        ctl.tail.store(self.tail, Ordering::Relaxed);
        ctl.tail_seq.store(self.tail_seq, Ordering::Relaxed);
        self.lock = self.lock.wrapping_add(2);
        ctl.tail_lock.store(self.lock, Ordering::Release);
    }

    /// Evicts the oldest records until `end - tail <= capacity`. A record header the writer
    /// cannot make sense of (someone scribbled over it) drops everything old.
    fn evict_until(&mut self, end: u64) -> bool {
        let cap = self.ring.capacity;
        let mut moved = false;
        while end - self.tail > cap {
            moved = true;
            let pos = self.ring.pos(self.tail);
            let step = match copy::load_pair(self.ring.data, pos) {
                Ok((len, _)) if len & PAD != 0 && (len & !PAD) as u64 == cap - pos as u64 => {
                    Some((cap - pos as u64, 0))
                }
                Ok((len, _)) if len & PAD == 0 && (len as usize) <= self.ring.max_record() => {
                    let slot = (RECORD_HEADER + align8(len as usize)) as u64;
                    (pos as u64 + slot <= cap).then_some((slot, 1))
                }
                _ => None,
            };
            match step {
                Some((bytes, records)) if self.tail + bytes <= self.head => {
                    self.tail += bytes;
                    self.tail_seq += records;
                }
                _ => {
                    // Damaged: drop every old record.
                    self.tail = self.head;
                    self.tail_seq = self.head_seq;
                    if end - self.tail > cap {
                        // Cannot happen for a record within max_record; stay safe anyway.
                        self.tail = end - cap;
                    }
                }
            }
        }
        moved
    }

    /// Publishes one record, evicting the oldest ones if needed. Never waits.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), ShmError> {
        let max = self.ring.max_record();
        if payload.len() > max {
            return Err(ShmError::TooLarge { len: payload.len(), max });
        }
        let cap = self.ring.capacity;
        let slot = (RECORD_HEADER + align8(payload.len())) as u64;
        let pos = self.ring.pos(self.head);
        let to_end = cap - pos as u64;
        let pad = slot > to_end;
        let end = self.head + if pad { to_end } else { 0 } + slot;
        if self.evict_until(end) {
            // Readers must see the new tail before any byte of the overwrite.
            self.store_tail();
            fence(Ordering::Release);
        }
        let data = self.ring.data;
        let seq_lo = self.head_seq as u32;
        let mut at = pos;
        if pad {
            copy::store_pair(data, pos, PAD | to_end as u32, seq_lo)?;
            at = 0;
        }
        copy::store(data, at + RECORD_HEADER, payload)?;
        copy::store_pair(data, at, payload.len() as u32, seq_lo)?;
        self.head = end;
        self.head_seq += 1;
        let ctl = self.ring.ctl;
        ctl.head_seq.store(self.head_seq, Ordering::Release);
        ctl.head.store(self.head, Ordering::Release);
        ctl.published.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.head_seq
    }

    /// Marks the ring closed; readers get [`ShmError::Closed`] once they have caught up.
    pub fn close(&self) {
        self.ring.ctl.closed.store(1, Ordering::Release);
        self.ring.ctl.published.fetch_add(1, Ordering::Release);
    }
}

/// What [`BroadcastReader::try_recv`] got.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Payload bytes copied.
    pub len: usize,
    /// The record's number (0 for the first record ever written).
    pub seq: u64,
    /// Records lost (overwritten before this reader got to them) since the previous
    /// successful receive.
    pub lost: u64,
}

/// A reader with its own cursor; any number may exist, and none writes to the segment.
///
/// `Send` and `Sync`: references to atomics and plain cursors; reading takes `&mut self`.
#[derive(Debug)]
pub struct BroadcastReader<'a> {
    ring: BroadcastRing<'a>,
    pos: u64,
    seq: u64,
    lost: u64,
    /// After damage: `seq` is not known until the next record at `pos` is read.
    resync: bool,
}

impl BroadcastReader<'_> {
    /// Jumps to the oldest valid record after being lapped, counting what was lost.
    fn catch_up(&mut self, tail: u64, tail_seq: u64) -> Result<(), ShmError> {
        if self.resync {
            self.lost += tail_seq.saturating_sub(self.seq);
            self.resync = false;
        } else if tail_seq < self.seq {
            // Counters no writer produces; the writer rewrites them from its own copy.
            return Err(ShmError::Corrupt);
        } else {
            self.lost += tail_seq - self.seq;
        }
        self.pos = tail;
        self.seq = tail_seq;
        Ok(())
    }

    /// Reports a damaged record once and moves the cursor to `head`, the writer's current
    /// position, to resynchronise on the next record written there.
    fn damaged<T>(&mut self, head: u64) -> Result<T, ShmError> {
        self.pos = head;
        self.resync = true;
        Err(ShmError::Corrupt)
    }

    /// The full number of the record at the cursor whose header says `seq_lo`: the largest
    /// number below `head_seq` (records published) with those low 32 bits.
    fn widen_seq(&self, seq_lo: u32) -> u64 {
        let published = self.ring.ctl.head_seq.load(Ordering::Acquire);
        let candidate = (published & !0xffff_ffff) | u64::from(seq_lo);
        if candidate >= published { candidate.saturating_sub(1 << 32) } else { candidate }
    }

    /// Copies the next record into `out`.
    ///
    /// [`ShmError::Empty`] when caught up, [`ShmError::Closed`] when caught up and the
    /// writer closed the ring, [`ShmError::BufferTooSmall`] when `out` is too short (the
    /// record stays; it is counted as lost if it is overwritten before a retry),
    /// [`ShmError::Corrupt`] when the segment's counters or records are impossible.
    pub fn try_recv(&mut self, out: &mut [u8]) -> Result<Received, ShmError> {
        self.next(Some(out))
    }

    /// The next record, copied into `out`, or only stepped over when `out` is `None`.
    fn next(&mut self, mut out: Option<&mut [u8]>) -> Result<Received, ShmError> {
        let ctl = self.ring.ctl;
        let cap = self.ring.capacity;
        for _ in 0..MAX_RETRIES {
            let head = ctl.head.load(Ordering::Acquire);
            if head == self.pos {
                if !ctl.is_closed() {
                    return Err(ShmError::Empty);
                }
                // `closed` is stored after the last record's `head`, but the `head` above
                // was loaded before `closed` and may predate the last records: load it
                // again now that `closed` was seen (its Acquire makes the final `head`
                // visible), so no record written before the close is missed.
                if ctl.head.load(Ordering::Acquire) == self.pos {
                    return Err(ShmError::Closed);
                }
                continue;
            }
            if head < self.pos {
                // Counters no writer produces; the writer rewrites them from its own copy.
                return Err(ShmError::Corrupt);
            }
            // `tail` may be newer than `head` here (the writer moves on between the two
            // loads), so their difference proves nothing; every index below is masked and
            // every length checked, and the loop is bounded.
            let (tail, tail_seq) = ctl.tail_pair()?;
            if self.pos < tail {
                self.catch_up(tail, tail_seq)?;
                continue;
            }
            let pos = self.ring.pos(self.pos);
            let (len, seq_lo) = copy::load_pair(self.ring.data, pos)?;
            let is_pad = len & PAD != 0;
            let (slot, len) = if is_pad {
                ((len & !PAD) as u64, 0)
            } else {
                ((RECORD_HEADER + align8(len as usize)) as u64, len as usize)
            };
            let plausible = if is_pad {
                slot == cap - pos as u64 && pos != 0
            } else {
                len <= self.ring.max_record() && pos as u64 + slot <= cap
            } && head - self.pos >= slot;
            let copied = match out.as_deref_mut() {
                _ if !plausible || is_pad => Ok(()),
                None => Ok(()),
                Some(out) if len > out.len() => Err(ShmError::BufferTooSmall { needed: len }),
                Some(out) => copy::load(self.ring.data, pos + RECORD_HEADER, &mut out[..len]),
            };
            fence(Ordering::Acquire);
            let (tail, tail_seq) = ctl.tail_pair()?;
            if self.pos < tail {
                // Overwritten while we looked: whatever we read may be torn.
                self.catch_up(tail, tail_seq)?;
                continue;
            }
            // Not overwritten: what we read is what the writer wrote.
            if !plausible || (!self.resync && !is_pad && seq_lo != self.seq as u32) {
                let head = ctl.head.load(Ordering::Acquire);
                return self.damaged(head);
            }
            copied?;
            self.pos += slot;
            if is_pad {
                continue;
            }
            if self.resync {
                let seq = self.widen_seq(seq_lo);
                self.lost += seq.saturating_sub(self.seq);
                self.seq = seq;
                self.resync = false;
            }
            let got = Received { len, seq: self.seq, lost: self.lost };
            self.seq += 1;
            self.lost = 0;
            return Ok(got);
        }
        Err(ShmError::Contended)
    }

    /// The number of the next record this reader will get (if not lapped).
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Before sleeping on [`BroadcastControl::published_word`]: announces the reader in
    /// `wait` (a line it maps writable) and re-checks. `Some(p)` means sleep while the word
    /// equals `p`; `None` means a record is there. Call [`BroadcastReader::finish_wait`].
    pub fn prepare_wait(&self, wait: &WaitLine) -> Option<u32> {
        wait.announce();
        let ctl = self.ring.ctl;
        let p = ctl.published.load(Ordering::Relaxed);
        if ctl.head.load(Ordering::Relaxed) == self.pos && !ctl.is_closed() {
            Some(p)
        } else {
            wait.withdraw();
            None
        }
    }

    /// Withdraws the announcement of [`BroadcastReader::prepare_wait`].
    pub fn finish_wait(&self, wait: &WaitLine) {
        wait.withdraw();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn mem(cap: usize) -> (BroadcastControl, Vec<Word>) {
        (BroadcastControl::zeroed(), (0..cap / WORD).map(|_| Word::new(0)).collect())
    }

    #[test]
    fn readers_get_everything_when_keeping_up() {
        let (ctl, data) = mem(256);
        let ring = BroadcastRing::new(&ctl, &data).unwrap();
        let mut w = ring.writer();
        let mut r1 = ring.reader_at_end();
        let mut r2 = ring.reader_at_end();
        let mut out = [0u8; 128];
        for i in 0..50u8 {
            w.push(&[i; 13]).unwrap();
            for r in [&mut r1, &mut r2] {
                let got = r.try_recv(&mut out).unwrap();
                assert_eq!((got.len, got.seq, got.lost), (13, i as u64, 0));
                assert_eq!(out[..13], [i; 13]);
            }
        }
        assert_eq!(r1.try_recv(&mut out), Err(ShmError::Empty));
    }

    #[test]
    fn lapped_reader_counts_exactly_what_it_lost() {
        let (ctl, data) = mem(256);
        let ring = BroadcastRing::new(&ctl, &data).unwrap();
        let mut w = ring.writer();
        let mut slow = ring.reader_at_end();
        let mut out = [0u8; 128];
        // 24-byte slots: 256 bytes hold 10 (with pads at the wrap).
        for i in 0..100u64 {
            w.push(&i.to_le_bytes()).unwrap();
            w.push(&[0u8; 8]).unwrap();
        }
        let got = slow.try_recv(&mut out).unwrap();
        let (tail, tail_seq) = ctl.tail_pair().unwrap();
        assert!(tail > 0);
        assert_eq!(got.seq, tail_seq, "resumes at the oldest valid record");
        assert_eq!(got.lost, tail_seq, "lost everything before it");
        let mut total = got.lost + 1;
        while let Ok(g) = slow.try_recv(&mut out) {
            total += g.lost + 1;
        }
        assert_eq!(total, 200, "received + lost = written");
    }

    #[test]
    fn reader_at_end_joins_mid_stream() {
        let (ctl, data) = mem(256);
        let ring = BroadcastRing::new(&ctl, &data).unwrap();
        let mut w = ring.writer();
        for i in 0..37u8 {
            w.push(&[i; 12]).unwrap();
        }
        let mut r = ring.reader_at_end();
        assert_eq!(r.next_seq(), 37);
        let mut out = [0u8; 32];
        assert_eq!(r.try_recv(&mut out), Err(ShmError::Empty));
        w.push(&[99; 12]).unwrap();
        let got = r.try_recv(&mut out).unwrap();
        assert_eq!((got.seq, got.lost, out[0]), (37, 0, 99));
    }

    #[test]
    fn reader_at_oldest_and_closed() {
        let (ctl, data) = mem(128);
        let ring = BroadcastRing::new(&ctl, &data).unwrap();
        let mut w = ring.writer();
        w.push(b"a").unwrap();
        w.push(b"b").unwrap();
        w.close();
        let mut r = ring.reader_at_oldest().unwrap();
        let mut out = [0u8; 8];
        assert_eq!(r.try_recv(&mut out).unwrap().seq, 0);
        assert_eq!(r.try_recv(&mut out).unwrap().seq, 1);
        assert_eq!(r.try_recv(&mut out), Err(ShmError::Closed));
    }

    #[test]
    fn errors() {
        let (ctl, data) = mem(128);
        let ring = BroadcastRing::new(&ctl, &data).unwrap();
        let mut w = ring.writer();
        assert_eq!(w.push(&[0; 57]), Err(ShmError::TooLarge { len: 57, max: 56 }));
        let mut r = ring.reader_at_end();
        w.push(&[1; 30]).unwrap();
        let mut small = [0u8; 4];
        assert_eq!(r.try_recv(&mut small), Err(ShmError::BufferTooSmall { needed: 30 }));
        // Hostile: head behind the reader, then a record header with a wrong seq.
        let mut out = [0u8; 64];
        assert_eq!(r.try_recv(&mut out).unwrap().len, 30);
        ctl.head.store(8, Ordering::Relaxed);
        assert_eq!(r.try_recv(&mut out), Err(ShmError::Corrupt));
        assert_eq!(r.try_recv(&mut out), Err(ShmError::Corrupt), "reported until the writer stores head again");
        ctl.head.store(80, Ordering::Relaxed);
        copy::store_pair(&data, 40, 30, 99).unwrap();
        assert_eq!(r.try_recv(&mut out), Err(ShmError::Corrupt));
        // Damage is reported once: the reader moved to the (scribbled) head, 80, and takes
        // its numbering from the next record written there.
        assert_eq!(r.try_recv(&mut out), Err(ShmError::Empty));
        w.push(&[2; 30]).unwrap(); // seq 1, at 40 (the writer's own head)
        w.push(&[3; 30]).unwrap(); // seq 2, at 80
        let got = r.try_recv(&mut out).unwrap();
        assert_eq!((got.len, got.seq, got.lost, out[0]), (30, 2, 1, 3));
        // A stuck tail lock.
        w.push(&[4; 30]).unwrap();
        ctl.tail_lock.store(1, Ordering::Relaxed);
        assert_eq!(r.try_recv(&mut out), Err(ShmError::WriterStalled));
    }

    #[test]
    fn reader_resynchronises_after_a_scribbled_record() {
        let (ctl, data) = mem(1024);
        let ring = BroadcastRing::new(&ctl, &data).unwrap();
        let mut w = ring.writer();
        let mut r = ring.reader_at_end();
        let mut out = [0u8; 64];
        for i in 0..4u8 {
            w.push(&[i; 20]).unwrap(); // slots of 32 bytes
        }
        assert_eq!(r.try_recv(&mut out).unwrap().seq, 0);
        // A peer scribbles over record 1's header (an impossible length).
        copy::store_pair(&data, 32, 0x7fff_fff0, 1).unwrap();
        assert_eq!(r.try_recv(&mut out), Err(ShmError::Corrupt));
        // Once: the reader waits at the writer's position; records 1..=3 are lost.
        assert_eq!(r.try_recv(&mut out), Err(ShmError::Empty));
        for i in 4..10u8 {
            w.push(&[i; 20]).unwrap();
        }
        let got = r.try_recv(&mut out).unwrap();
        assert_eq!((got.seq, got.lost, out[0]), (4, 3, 4));
        for i in 5..10u8 {
            let got = r.try_recv(&mut out).unwrap();
            assert_eq!((got.seq, got.lost, out[0]), (i as u64, 0, i));
        }
        assert_eq!(r.try_recv(&mut out), Err(ShmError::Empty));
        // A second scribble, this time a record whose number is wrong.
        w.push(&[10; 20]).unwrap();
        let at = ring.pos(r.pos);
        copy::store_pair(&data, at, 20, 12345).unwrap();
        assert_eq!(r.try_recv(&mut out), Err(ShmError::Corrupt));
        w.push(&[11; 20]).unwrap();
        let got = r.try_recv(&mut out).unwrap();
        assert_eq!((got.seq, got.lost, out[0]), (11, 1, 11));
    }

    #[test]
    fn widened_record_numbers_cross_the_32_bit_boundary() {
        let (ctl, data) = mem(256);
        let ring = BroadcastRing::new(&ctl, &data).unwrap();
        let r = ring.reader_at_end();
        ctl.head_seq.store((5 << 32) + 3, Ordering::Relaxed);
        assert_eq!(r.widen_seq(2), (5 << 32) + 2);
        assert_eq!(r.widen_seq(0xffff_fffe), (4 << 32) + 0xffff_fffe);
    }

    #[test]
    fn writer_repairs_scribbled_counters() {
        let (ctl, data) = mem(128);
        ctl.head.store(10, Ordering::Relaxed);
        ctl.tail.store(500, Ordering::Relaxed);
        let ring = BroadcastRing::new(&ctl, &data).unwrap();
        let mut w = ring.writer();
        w.push(b"ok").unwrap();
        let mut r = ring.reader_at_oldest().unwrap();
        let mut out = [0u8; 8];
        assert_eq!(r.try_recv(&mut out).unwrap().len, 2);
    }
}
