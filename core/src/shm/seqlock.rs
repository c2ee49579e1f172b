//! The seqlock: one writer, any number of readers, the latest value wins.
//!
//! The control line holds a 32-bit sequence word (even: stable; odd: a write is in
//! progress) and the value's length; the data area holds the value. A 32-bit sequence
//! keeps the protocol on 32-bit ARM cores without 64-bit atomics.
//!
//! - **Writer**: `seq` odd (relaxed), release fence, the bytes and then the length as
//!   relaxed atomic stores, `seq` even (release). The [`WriteGuard`] does the two `seq` steps, so a
//!   panic mid-write still leaves the sequence even (crossbeam's RAII style).
//! - **Reader**: `seq` (acquire); if odd, spin; copy the length and bytes out with relaxed
//!   atomic loads; acquire fence; `seq` again. Equal: the copy is consistent. Different:
//!   retry. Only the copy is ever decoded. The retries are bounded: a sequence that stays
//!   odd is [`ShmError::WriterStalled`] (a writer stopped or killed mid-write), one that keeps
//!   changing is [`ShmError::Contended`].
//!
//! Readers may map the segment read-only: they never store to it. To sleep until the next
//! write they announce themselves in the waiter line, which lives on a page of its own
//! that they map writable ([`SeqLockReader::prepare_wait`]).

use super::copy;
use super::primitive::{AtomicU32, Ordering, fence, pad, spin, u32_zero};
use super::{ShmError, WORD, Word};
use serde::{Deserialize, Serialize};

/// Spins a reader waits for an odd sequence to turn even before [`ShmError::WriterStalled`].
pub const STALL_SPINS: u32 = if cfg!(loom) { 4 } else { 100_000 };
/// Torn reads tolerated before [`ShmError::Contended`].
pub const MAX_RETRIES: u32 = if cfg!(loom) { 4 } else { 1_000 };

/// The seqlock control lines (bytes 128..512 of the segment).
///
/// `Send` and `Sync`: only atomics, shared by every process that maps the segment.
#[repr(C)]
pub struct SeqLockControl {
    seq: AtomicU32,
    len: AtomicU32,
    _pad0: [AtomicU32; pad(30)],
    _pad1: [AtomicU32; pad(32)],
    _pad2: [AtomicU32; pad(32)],
}

impl core::fmt::Debug for SeqLockControl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SeqLockControl").field("seq", &self.seq).field("len", &self.len).finish_non_exhaustive()
    }
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<SeqLockControl>() == 384);

impl SeqLockControl {
    /// Byte offsets of the words [`super::inspect`] reads from a copy of the control lines.
    pub(crate) const SEQ: usize = core::mem::offset_of!(SeqLockControl, seq);
    pub(crate) const LEN: usize = core::mem::offset_of!(SeqLockControl, len);

    /// Zeroed control lines.
    pub fn zeroed() -> SeqLockControl {
        SeqLockControl {
            seq: u32_zero(),
            len: u32_zero(),
            _pad0: core::array::from_fn(|_| u32_zero()),
            _pad1: core::array::from_fn(|_| u32_zero()),
            _pad2: core::array::from_fn(|_| u32_zero()),
        }
    }

    /// The sequence word: the futex word readers sleep on.
    pub fn seq_word(&self) -> &AtomicU32 {
        &self.seq
    }
}

/// The waiter line of kinds whose readers map read-only: on a page of its own.
///
/// `Send` and `Sync`: only atomics.
#[repr(C)]
pub struct WaitLine {
    /// How many readers sleep (or are about to).
    waiters: AtomicU32,
    _pad: [AtomicU32; pad(31)],
}

impl core::fmt::Debug for WaitLine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WaitLine").field("waiters", &self.waiters).finish_non_exhaustive()
    }
}

impl WaitLine {
    /// Byte offset of the waiter count in the line.
    pub(crate) const WAITERS: usize = core::mem::offset_of!(WaitLine, waiters);

    /// A zeroed line.
    pub fn zeroed() -> WaitLine {
        WaitLine { waiters: u32_zero(), _pad: core::array::from_fn(|_| u32_zero()) }
    }

    /// Whether a sleeper announced itself. The `SeqCst` fence pairs with the one in
    /// `announce`, so either the writer sees the announcement or the sleeper sees the write.
    pub fn anyone_waiting(&self) -> bool {
        fence(Ordering::SeqCst);
        self.waiters.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn announce(&self) {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    pub(crate) fn withdraw(&self) {
        // One RMW, no retry loop (a peer rewriting the word cannot make it spin). If a peer
        // zeroed it, this wraps and writers only make spare wake calls until it is reset.
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A seqlock over control lines and a data area of `capacity` bytes.
///
/// `Send` and `Sync`: shared references to atomics.
#[derive(Clone, Copy)]
pub struct SeqLock<'a> {
    ctl: &'a SeqLockControl,
    data: &'a [Word],
}

impl core::fmt::Debug for SeqLock<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SeqLock").field("ctl", self.ctl).field("capacity", &self.capacity()).finish_non_exhaustive()
    }
}

impl<'a> SeqLock<'a> {
    /// A seqlock whose value may take all of `data`.
    pub fn new(ctl: &'a SeqLockControl, data: &'a [Word]) -> SeqLock<'a> {
        SeqLock { ctl, data }
    }

    /// The largest value, in bytes.
    pub fn capacity(&self) -> usize {
        self.data.len() * WORD
    }

    /// The control lines.
    pub fn control(&self) -> &'a SeqLockControl {
        self.ctl
    }

    /// The writing side; exactly one may exist (across all processes).
    pub fn writer(self) -> SeqLockWriter<'a> {
        let seq = self.ctl.seq.load(Ordering::Relaxed) & !1;
        SeqLockWriter { lock: self, seq }
    }

    /// A reading side; any number may exist.
    pub fn reader(self) -> SeqLockReader<'a> {
        SeqLockReader { lock: self }
    }
}

/// The writer.
///
/// `Send` and `Sync`: references to atomics and its own sequence copy; writing takes
/// `&mut self`.
#[derive(Debug)]
pub struct SeqLockWriter<'a> {
    lock: SeqLock<'a>,
    /// The last even sequence this writer stored (its own copy: never re-read).
    seq: u32,
}

/// An open write: the sequence is odd until the guard drops.
///
/// `Send` and `Sync`, like the `&mut SeqLockWriter` it holds.
#[derive(Debug)]
pub struct WriteGuard<'w, 'a> {
    writer: &'w mut SeqLockWriter<'a>,
}

impl<'a> SeqLockWriter<'a> {
    /// Starts a write: the sequence turns odd; readers retry until the guard drops.
    pub fn begin(&mut self) -> WriteGuard<'_, 'a> {
        self.lock.ctl.seq.store(self.seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        WriteGuard { writer: self }
    }

    /// Replaces the value with `value`.
    pub fn write(&mut self, value: &[u8]) -> Result<(), ShmError> {
        let max = self.lock.capacity();
        if value.len() > max {
            return Err(ShmError::TooLarge { len: value.len(), max });
        }
        let guard = self.begin();
        guard.set(value)
    }

    /// Serializes `value` with postcard into `scratch` and writes it.
    pub fn publish<T: Serialize + ?Sized>(&mut self, value: &T, scratch: &mut [u8]) -> Result<(), ShmError> {
        let bytes = postcard::to_slice(value, scratch).map_err(|_| ShmError::Codec(crate::Error::Encode))?;
        self.write(bytes)
    }

    /// The number of completed writes (the sequence over two).
    pub fn version(&self) -> u32 {
        self.seq / 2
    }
}

impl WriteGuard<'_, '_> {
    /// Stores the value's bytes and length (the guard then completes the write on drop).
    pub fn set(self, value: &[u8]) -> Result<(), ShmError> {
        let lock = &self.writer.lock;
        if value.len() > lock.capacity() {
            return Err(ShmError::TooLarge { len: value.len(), max: lock.capacity() });
        }
        copy::store(lock.data, 0, value)?;
        lock.ctl.len.store(value.len() as u32, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for WriteGuard<'_, '_> {
    fn drop(&mut self) {
        self.writer.seq = self.writer.seq.wrapping_add(2);
        self.writer.lock.ctl.seq.store(self.writer.seq, Ordering::Release);
    }
}

/// What a read found.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Bytes of the value.
    pub len: usize,
    /// The sequence it was read at (even); compare with a later read to see a change.
    pub seq: u32,
}

/// A reader.
///
/// `Send` and `Sync`: a shared view of atomics.
#[derive(Debug)]
pub struct SeqLockReader<'a> {
    lock: SeqLock<'a>,
}

impl<'a> SeqLockReader<'a> {
    /// Copies the current value into `out`.
    ///
    /// [`ShmError::Empty`] before the first write, [`ShmError::BufferTooSmall`] when `out` is
    /// shorter than the value, [`ShmError::Corrupt`] for a length beyond the capacity (once
    /// seen consistently), [`ShmError::WriterStalled`] or [`ShmError::Contended`] when the
    /// bounded retries run out.
    pub fn read(&self, out: &mut [u8]) -> Result<Snapshot, ShmError> {
        self.read_spinning(out, STALL_SPINS)
    }

    /// [`SeqLockReader::read`] with its own bound: [`ShmError::WriterStalled`] after
    /// `stall_spins` spins on an odd sequence. A caller that can yield the CPU (the Linux
    /// crate does) spins briefly, yields, and tries again: a writer preempted mid-write on the
    /// reader's own core only finishes once the reader lets it run.
    pub fn read_spinning(&self, out: &mut [u8], stall_spins: u32) -> Result<Snapshot, ShmError> {
        let ctl = self.lock.ctl;
        let mut spins = 0u32;
        let mut retries = 0u32;
        loop {
            let s1 = ctl.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                spins += 1;
                if spins >= stall_spins {
                    return Err(ShmError::WriterStalled);
                }
                spin();
                continue;
            }
            let len = ctl.len.load(Ordering::Relaxed) as usize;
            let copied = if len > self.lock.capacity() {
                Err(ShmError::Corrupt)
            } else if len > out.len() {
                Err(ShmError::BufferTooSmall { needed: len })
            } else {
                copy::load(self.lock.data, 0, &mut out[..len])
            };
            fence(Ordering::Acquire);
            let s2 = ctl.seq.load(Ordering::Relaxed);
            if s1 == s2 {
                copied?;
                if s1 == 0 {
                    return Err(ShmError::Empty);
                }
                return Ok(Snapshot { len, seq: s1 });
            }
            retries += 1;
            if retries >= MAX_RETRIES {
                return Err(ShmError::Contended);
            }
            spin();
        }
    }

    /// Reads the value into `scratch` and decodes the copy with postcard.
    pub fn read_value<'s, T: Deserialize<'s>>(&self, scratch: &'s mut [u8]) -> Result<(Snapshot, T), ShmError> {
        let snap = self.read(scratch)?;
        let value = crate::message::decode_payload(&scratch[..snap.len])?;
        Ok((snap, value))
    }

    /// The current sequence (even when stable, odd mid-write), without copying.
    pub fn seq(&self) -> u32 {
        self.lock.ctl.seq.load(Ordering::Acquire)
    }

    /// Before sleeping on [`SeqLockControl::seq_word`] for a write after `seen`: announces
    /// the reader in `wait` and re-checks. `Some(s)` means sleep while the word equals
    /// `s`; `None` means the value already changed. Call [`SeqLockReader::finish_wait`] after.
    pub fn prepare_wait(&self, wait: &WaitLine, seen: u32) -> Option<u32> {
        wait.announce();
        let now = self.lock.ctl.seq.load(Ordering::Relaxed);
        if now == seen {
            Some(now)
        } else {
            wait.withdraw();
            None
        }
    }

    /// Withdraws the announcement of [`SeqLockReader::prepare_wait`].
    pub fn finish_wait(&self, wait: &WaitLine) {
        wait.withdraw();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn mem(cap: usize) -> (SeqLockControl, Vec<Word>) {
        (SeqLockControl::zeroed(), (0..cap / WORD).map(|_| Word::new(0)).collect())
    }

    #[test]
    fn write_then_read() {
        let (ctl, data) = mem(64);
        let lock = SeqLock::new(&ctl, &data);
        let (mut w, r) = (lock.writer(), lock.reader());
        let mut out = [0u8; 64];
        assert_eq!(r.read(&mut out), Err(ShmError::Empty));
        w.write(b"first value").unwrap();
        let s1 = r.read(&mut out).unwrap();
        assert_eq!(&out[..s1.len], b"first value");
        w.write(b"2nd").unwrap();
        let s2 = r.read(&mut out).unwrap();
        assert_eq!(&out[..s2.len], b"2nd");
        assert_eq!(s2.seq, s1.seq + 2);
        assert_eq!(w.version(), 2);
    }

    #[test]
    fn typed_publish_and_read_value() {
        let (ctl, data) = mem(64);
        let lock = SeqLock::new(&ctl, &data);
        let (mut w, r) = (lock.writer(), lock.reader());
        let mut scratch = [0u8; 64];
        w.publish(&(21.5f32, "ok"), &mut scratch).unwrap();
        let mut rx = [0u8; 64];
        let (_, (t, s)): (_, (f32, &str)) = r.read_value(&mut rx).unwrap();
        assert_eq!((t, s), (21.5, "ok"));
    }

    #[test]
    fn errors() {
        let (ctl, data) = mem(64);
        let lock = SeqLock::new(&ctl, &data);
        let (mut w, r) = (lock.writer(), lock.reader());
        assert_eq!(w.write(&[0; 65]), Err(ShmError::TooLarge { len: 65, max: 64 }));
        w.write(&[7; 40]).unwrap();
        let mut small = [0u8; 10];
        assert_eq!(r.read(&mut small), Err(ShmError::BufferTooSmall { needed: 40 }));
        // A writer that died mid-write leaves the sequence odd.
        let guard = w.begin();
        core::mem::forget(guard);
        let mut out = [0u8; 64];
        assert_eq!(r.read(&mut out), Err(ShmError::WriterStalled));
        // A hostile length.
        ctl.seq.store(10, Ordering::Relaxed);
        ctl.len.store(1 << 20, Ordering::Relaxed);
        assert_eq!(r.read(&mut out), Err(ShmError::Corrupt));
    }

    #[test]
    fn guard_completes_write_on_drop() {
        let (ctl, data) = mem(64);
        let lock = SeqLock::new(&ctl, &data);
        let mut w = lock.writer();
        {
            let g = w.begin();
            assert_eq!(ctl.seq.load(Ordering::Relaxed) & 1, 1);
            g.set(b"abc").unwrap();
        }
        assert_eq!(ctl.seq.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn wait_announcement() {
        let (ctl, data) = mem(64);
        let lock = SeqLock::new(&ctl, &data);
        let wait = WaitLine::zeroed();
        let (mut w, r) = (lock.writer(), lock.reader());
        assert!(!wait.anyone_waiting());
        assert_eq!(r.prepare_wait(&wait, 0), Some(0));
        assert!(wait.anyone_waiting());
        r.finish_wait(&wait);
        w.write(b"x").unwrap();
        assert_eq!(r.prepare_wait(&wait, 0), None);
        assert!(!wait.anyone_waiting());
    }
}
