//! The endpoints: a segment plus the core protocol state, with blocking calls.
//!
//! Each endpoint stores its core view (which borrows the mapping) *before* the segment that
//! owns the mapping, so the view is dropped first; the `'static` lifetime of the stored view
//! never leaves the endpoint.
#![allow(unsafe_code)]

use core::time::Duration;

use ember_core::shm::broadcast::{self, BroadcastControl, BroadcastRing, Received};
use ember_core::shm::layout::{CONTROL_OFFSET, SegmentKind};
use ember_core::shm::seqlock::{self, SeqLock, SeqLockControl, Snapshot, WaitLine};
use ember_core::shm::spsc::{Consumer, Grant, Peek, Producer, SpscControl, SpscRing};
use ember_core::shm::{ShmError, Word};
use rustix::fd::OwnedFd;
use serde::{Deserialize, Serialize};

use super::wait::{futex_wait, futex_wake_all};
use super::{Access, Backing, CreateOptions, Deadline, LIVENESS_SLICE, Liveness, Notifier, Segment};
use crate::cancel::Canceler;
use crate::error::{Error, Result};

/// Spins a blocking receive makes before it sleeps: a record that arrives within a few
/// microseconds is taken without a system call.
const SPIN_BEFORE_SLEEP: u32 = 200;
/// Polls a blocking receive spends copying a streaming record as the sender fills it
/// before it sleeps instead (a 1 MiB record takes some tens of microseconds to fill).
const STREAM_SPIN_BUDGET: u32 = 1 << 16;
/// The longest sleep of a receive waiting for a streaming record to be finished
/// ([`ember_core::shm::spsc::Consumer::prepare_wait`]).
const FILLING_SLICE: Duration = Duration::from_millis(1);

/// How long [`SeqLockReader::read`] waits out a live writer caught mid-write (or values
/// changing under its copy), yielding the CPU between tries, before it reports
/// [`ShmError::WriterStalled`] or [`ShmError::Contended`]: a few scheduler time slices.
pub const SEQLOCK_STALL_BUDGET: Duration = Duration::from_millis(50);

/// Spins [`SeqLockReader::read`] makes on an odd sequence before it yields the CPU (tens of
/// microseconds: far longer than any write of a value that fits a cache or two).
pub const SEQLOCK_SPINS_BEFORE_YIELD: u32 = 2_000;

/// The data words and control lines of a segment, with the lifetime erased.
fn parts<C: super::map::AtomicView>(seg: &Segment) -> (&'static C, &'static [Word]) {
    let (data_off, cap) = seg.data_range();
    // SAFETY: the caller stores these next to `seg`, declared before it (dropped first),
    // and hands out only borrows of `self` (see the module docs).
    unsafe { (seg.mapping().view_static::<C>(CONTROL_OFFSET), seg.mapping().words_static(data_off, cap)) }
}

fn wait_line(seg: &Segment) -> &'static WaitLine {
    // SAFETY: as in `parts`.
    unsafe { seg.wait_mapping().view_static::<WaitLine>(seg.header().wait_offset as usize) }
}

/// The sending side of an SPSC ring; it creates the segment.
///
/// `Send` and `Sync`: it owns the mapping (which is both) and views of its atomics; sending
/// takes `&mut self`.
pub struct SpscSender {
    producer: Producer<'static>,
    ctl: &'static SpscControl,
    notifier: Option<Notifier>,
    integrity: ember_core::frame::Integrity,
    seg: Segment,
}

impl core::fmt::Debug for SpscSender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpscSender")
            .field("producer", &self.producer)
            .field("notifier", &self.notifier)
            .field("integrity", &self.integrity)
            .field("seg", &self.seg)
            .finish_non_exhaustive()
    }
}

impl SpscSender {
    /// The integrity of the frames a new sender encodes ([`SpscSender::send_msg`]): the
    /// ring protocol bounds-checks every record, so payloads are not checked.
    pub const DEFAULT_INTEGRITY: ember_core::frame::Integrity = ember_core::frame::Integrity::Unchecked;

    /// Creates a ring with a data area of `capacity` bytes (a power of two, 64 B to 1 GiB).
    pub fn create(backing: Backing<'_>, capacity: usize, fingerprint: u64) -> Result<SpscSender> {
        Self::create_with(backing, capacity, fingerprint, CreateOptions::new())
    }

    /// [`SpscSender::create`] with options ([`CreateOptions::replace_stale`]: take over a
    /// ring a dead sender left under the name).
    pub fn create_with(
        backing: Backing<'_>,
        capacity: usize,
        fingerprint: u64,
        options: CreateOptions,
    ) -> Result<SpscSender> {
        let seg = Segment::create_with(backing, SegmentKind::Spsc, capacity, fingerprint, options)?;
        let (ctl, data) = parts::<SpscControl>(&seg);
        let producer = SpscRing::new(ctl, data)?.producer();
        Ok(SpscSender { producer, ctl, notifier: None, integrity: Self::DEFAULT_INTEGRITY, seg })
    }

    /// The segment (for its fd, to pass a memfd to the receiver, or to persist it).
    pub fn segment(&mut self) -> &mut Segment {
        &mut self.seg
    }

    /// The largest record.
    pub fn max_record(&self) -> usize {
        self.producer.ring().max_record()
    }

    /// Also signals `notifier` whenever the receiver waits (see
    /// [`SpscReceiver::prepare_poll`]).
    pub fn set_notifier(&mut self, notifier: Notifier) {
        self.notifier = Some(notifier);
    }

    fn wake(&self) {
        wake_receiver(&self.producer, self.ctl, self.notifier.as_ref());
    }

    /// Appends a record without waiting: [`ShmError::Full`] if there is no room now.
    pub fn try_send(&mut self, payload: &[u8]) -> Result<()> {
        self.producer.try_push(payload)?;
        self.wake();
        Ok(())
    }

    /// Reserves room for a record of up to `max_len` bytes, to build it in place in the
    /// ring: [`SendGrant::put`] appends bytes straight into shared memory (no intermediate
    /// buffer: a record assembled from pieces, or a serializer's output), and
    /// [`SendGrant::commit`] publishes what was written and wakes the receiver. Nothing is
    /// visible to the receiver before the commit; dropping the grant abandons the record.
    /// [`ShmError::Full`] (nothing reserved) when the ring has no room for `max_len` bytes
    /// now, [`ShmError::TooLarge`] beyond [`SpscSender::max_record`].
    ///
    /// The ring is memory the receiver's process can write too, so the grant hands out no
    /// `&mut [u8]` into it (DESIGN.md §4): its bytes are written through the same copy as
    /// [`SpscSender::try_send`]'s.
    pub fn try_grant(&mut self, max_len: usize) -> Result<SendGrant<'_>> {
        let SpscSender { producer, ctl, notifier, .. } = self;
        let grant = producer.grant(max_len)?;
        Ok(SendGrant { grant, ctl, notifier: notifier.as_ref() })
    }

    /// Appends a record without checking whether the receiver sleeps: the cheapest push,
    /// for bursts. Call [`SpscSender::flush`] after the burst (and before waiting for
    /// anything), or a receiver asleep on the futex is not woken until then.
    ///
    /// Inlined, with the ring's push, into the caller's loop (a call's stores slowed a
    /// stream of 64 B records by about 1.6 times).
    #[inline]
    pub fn try_send_deferred(&mut self, payload: &[u8]) -> Result<()> {
        Ok(self.producer.try_push(payload)?)
    }

    /// Wakes the receiver if it sleeps: ends a burst of [`SpscSender::try_send_deferred`].
    pub fn flush(&self) {
        self.wake();
    }

    /// Appends a record, sleeping on the futex while the ring is full, for at most
    /// `timeout` (`None`: no limit) ([`ShmError::Timeout`]).
    pub fn send(&mut self, payload: &[u8], timeout: Option<Duration>) -> Result<()> {
        self.send_until(payload, &mut Deadline::after(timeout))
    }

    /// [`SpscSender::send`] until `deadline`, shared with the caller's other waits.
    pub fn send_until(&mut self, payload: &[u8], deadline: &mut Deadline) -> Result<()> {
        self.send_until_with(payload, deadline, None)
    }

    /// [`SpscSender::send`] that also ends with [`Error::Cancelled`] (nothing appended) when
    /// `cancel` is cancelled, before or during the wait for room.
    pub fn send_cancellable(&mut self, payload: &[u8], timeout: Option<Duration>, cancel: &Canceler) -> Result<()> {
        self.send_until_with(payload, &mut Deadline::after(timeout), Some(cancel))
    }

    /// [`SpscSender::send_until`] watching an optional canceler.
    pub fn send_until_with(
        &mut self,
        payload: &[u8],
        deadline: &mut Deadline,
        cancel: Option<&Canceler>,
    ) -> Result<()> {
        let cancel = cancel.or(deadline.canceler());
        crate::cancel::check(cancel)?;
        loop {
            match self.producer.try_push(payload) {
                Ok(()) => {
                    self.wake();
                    return Ok(());
                }
                Err(ShmError::Full) => {}
                Err(e) => return Err(e.into()),
            }
            let slice = deadline.slice(LIVENESS_SLICE).ok_or(Error::Shm(ShmError::Timeout))?;
            if let Some(tail) = self.producer.prepare_wait(payload.len()) {
                let r = futex_wait(self.ctl.tail_word(), tail, slice, cancel);
                self.producer.finish_wait();
                r?;
            }
        }
    }

    /// Whether the frames [`SpscSender::send_msg`] encodes have their payload covered by
    /// the checksum ([`SpscSender::DEFAULT_INTEGRITY`] until set).
    pub fn integrity(&self) -> ember_core::frame::Integrity {
        self.integrity
    }

    /// Sets [`SpscSender::integrity`]: `Checked` for a ring shared with code that is not
    /// trusted to write only its own records.
    pub fn set_integrity(&mut self, integrity: ember_core::frame::Integrity) {
        self.integrity = integrity;
    }

    /// Encodes `msg` as an Ember frame (in `scratch`, with [`SpscSender::integrity`]) and
    /// sends it.
    pub fn send_msg<T: Serialize + ?Sized>(
        &mut self,
        kind: u32,
        seq: u32,
        msg: &T,
        scratch: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<()> {
        let frame = ember_core::message::encode_with(self.integrity.flags(), kind, seq, msg, scratch)?;
        self.send(frame, timeout)
    }

    /// Sends `msg` as a frame of its type's kind (`Message::KIND`), so a typed send
    /// cannot carry the wrong kind; otherwise as [`SpscSender::send_msg`].
    pub fn send_message<T: ember_core::Message + ?Sized>(
        &mut self,
        seq: u32,
        msg: &T,
        scratch: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<()> {
        self.send_msg(T::KIND, seq, msg, scratch, timeout)
    }
}

impl Drop for SpscSender {
    fn drop(&mut self) {
        // A forked child dropping an inherited sender leaves the parent's ring open.
        if !self.seg.created_here() {
            return;
        }
        // The close record changes the futex word; wake a sleeper and a poller regardless.
        self.producer.close();
        futex_wake_all(self.ctl.head_word());
        if let Some(n) = &self.notifier {
            let _ = n.notify();
        }
    }
}

/// The receiving side of an SPSC ring.
///
/// `Send` and `Sync`: it owns the mapping (which is both) and views of its atomics; receiving
/// takes `&mut self`.
pub struct SpscReceiver {
    consumer: Consumer<'static>,
    ctl: &'static SpscControl,
    writer: Liveness,
    spin: u32,
    /// The pid this receiver claimed the ring for.
    claimant: u32,
    require_checked: bool,
    seg: Segment,
}

/// Claims the ring's consumer side for this process: free, or held by a dead process
/// (checked against its start time), it is taken; held by a live one (this one included)
/// it is [`ShmError::ReaderClaimed`].
fn claim_reader(ctl: &SpscControl) -> Result<u32> {
    let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let start = super::process_start(me).unwrap_or(0);
    let mut expected = None;
    // Each failed compare-and-swap means another claimant moved first; a few rounds settle
    // it (one of them holds the ring, alive).
    for _ in 0..8 {
        match ctl.claim_reader(me, start, expected) {
            Ok(()) => return Ok(me),
            Err(None) => expected = None,
            Err(Some(holder)) => {
                if holder.pid == me || Liveness::with_start(holder.pid, holder.start).is_alive() {
                    return Err(ShmError::ReaderClaimed { pid: holder.pid }.into());
                }
                debug!("shm: SPSC receiver pid {} is gone: taking over its claim", holder.pid);
                expected = Some(holder);
            }
        }
    }
    let pid = ctl.reader_claim().map_or(0, |c| c.pid);
    Err(ShmError::ReaderClaimed { pid }.into())
}

/// After a record was published: wakes an SPSC receiver that announced it sleeps (the futex
/// on `head`, and the sender's eventfd [`Notifier`] if it has one).
fn wake_receiver(producer: &Producer<'_>, ctl: &SpscControl, notifier: Option<&Notifier>) {
    if producer.consumer_waiting() {
        futex_wake_all(ctl.head_word());
        if let Some(n) = notifier {
            // A failed eventfd write leaves the receiver to its poll timeout.
            let _ = n.notify();
        }
    }
}

/// After a pop (`after_pop`), or after finding the ring empty: wakes an SPSC sender that
/// announced it sleeps waiting for room (the futex on `tail`).
fn wake_sender(consumer: &mut Consumer<'_>, ctl: &SpscControl, after_pop: bool) {
    if consumer.producer_waiting(after_pop) {
        futex_wake_all(ctl.tail_word());
    }
}

/// A record being built in place in an SPSC ring ([`SpscSender::try_grant`]): bytes go in
/// with [`SendGrant::put`], the record goes out with [`SendGrant::commit`]; dropped
/// uncommitted, it is abandoned and the receiver never sees it.
///
/// `Send` and `Sync`, like the sender it borrows.
pub struct SendGrant<'s> {
    grant: Grant<'s, 'static>,
    ctl: &'static SpscControl,
    notifier: Option<&'s Notifier>,
}

impl core::fmt::Debug for SendGrant<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SendGrant").field("grant", &self.grant).finish_non_exhaustive()
    }
}

impl SendGrant<'_> {
    /// Room granted, in bytes.
    pub fn capacity(&self) -> usize {
        self.grant.capacity()
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.grant.len()
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.grant.is_empty()
    }

    /// Appends `bytes` to the record; [`ShmError::TooLarge`] (nothing appended) beyond the
    /// room granted.
    pub fn put(&mut self, bytes: &[u8]) -> Result<()> {
        Ok(self.grant.put(bytes)?)
    }

    /// Publishes the record with the bytes put so far and wakes the receiver if it sleeps
    /// (the futex, and the sender's [`Notifier`] if it has one).
    pub fn commit(self) -> Result<()> {
        let producer = self.grant.commit()?;
        wake_receiver(producer, self.ctl, self.notifier);
        Ok(())
    }
}

/// The next record of an SPSC ring, still in the ring ([`SpscReceiver::try_peek`]): its
/// length, its bytes copied out on demand ([`RecvPeek::read`]), consumed by
/// [`RecvPeek::release`]; dropped unreleased, it stays for the next receive.
///
/// `Send` and `Sync`, like the receiver it borrows.
pub struct RecvPeek<'r> {
    peek: Peek<'r, 'static>,
    ctl: &'static SpscControl,
}

impl core::fmt::Debug for RecvPeek<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecvPeek").field("peek", &self.peek).finish_non_exhaustive()
    }
}

impl RecvPeek<'_> {
    /// The record's length in bytes.
    pub fn len(&self) -> usize {
        self.peek.len()
    }

    /// Whether the record is empty.
    pub fn is_empty(&self) -> bool {
        self.peek.is_empty()
    }

    /// Copies `out.len()` bytes of the record from `offset` into `out`;
    /// [`ShmError::TooLarge`] when that runs past the record's end (nothing copied).
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        Ok(self.peek.read(offset, out)?)
    }

    /// Consumes the record (and wakes a sender waiting for room, as a receive does).
    pub fn release(self) {
        wake_sender(self.peek.release(), self.ctl, true);
    }
}

impl Drop for SpscReceiver {
    fn drop(&mut self) {
        // Only the claimant's own pid is released: a forked child's drop leaves it alone.
        let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
        if me == self.claimant {
            self.ctl.release_reader(me);
        }
    }
}

impl core::fmt::Debug for SpscReceiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpscReceiver")
            .field("consumer", &self.consumer)
            .field("writer", &self.writer)
            .field("spin", &self.spin)
            .field("require_checked", &self.require_checked)
            .field("seg", &self.seg)
            .finish_non_exhaustive()
    }
}

impl SpscReceiver {
    /// The largest record the ring carries (a receive buffer this large takes any).
    pub fn max_record(&self) -> usize {
        self.consumer.ring().max_record()
    }

    /// Opens the named ring.
    pub fn open(name: &str, fingerprint: u64) -> Result<SpscReceiver> {
        Self::attach(Segment::open(name, SegmentKind::Spsc, fingerprint, Access::ReadWrite)?)
    }

    /// Opens a ring from a sealed memfd received from the sender.
    pub fn from_fd(fd: OwnedFd, fingerprint: u64) -> Result<SpscReceiver> {
        Self::attach(Segment::from_fd(fd, SegmentKind::Spsc, fingerprint, Access::ReadWrite)?)
    }

    /// Uses an already opened segment (e.g. [`Segment::open_sysv`]).
    pub fn from_segment(seg: Segment) -> Result<SpscReceiver> {
        Self::attach(seg)
    }

    fn attach(seg: Segment) -> Result<SpscReceiver> {
        let (ctl, data) = parts::<SpscControl>(&seg);
        let ring = SpscRing::new(ctl, data)?;
        let claimant = claim_reader(ctl)?;
        // Resume from the counters only once the ring is ours.
        let consumer = ring.consumer();
        let writer = seg.writer_liveness();
        Ok(SpscReceiver { consumer, ctl, writer, spin: SPIN_BEFORE_SLEEP, claimant, require_checked: false, seg })
    }

    /// The segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// How many times [`SpscReceiver::recv`] polls before it sleeps on the futex (default
    /// 200; 0 sleeps at once, which saves CPU and costs latency).
    pub fn set_spin_before_sleep(&mut self, spins: u32) {
        self.spin = spins;
    }

    fn wake(&mut self, after_pop: bool) {
        wake_sender(&mut self.consumer, self.ctl, after_pop);
    }

    /// Copies the next record into `out` without waiting ([`ShmError::Empty`]).
    pub fn try_recv(&mut self, out: &mut [u8]) -> Result<usize> {
        let r = self.consumer.try_pop(out);
        self.popped(r)
    }

    /// After a single pop: wakes a sender waiting for room when the pop (or the skip of an
    /// abandoned record) freed some, or when the ring was found drained.
    fn popped(&mut self, r: core::result::Result<usize, ShmError>) -> Result<usize> {
        match r {
            Ok(n) => {
                self.wake(true);
                Ok(n)
            }
            Err(e) => {
                if matches!(e, ShmError::Empty | ShmError::Abandoned { .. }) {
                    // Drained, or room freed: a producer waiting for room must hear of it now.
                    self.wake(false);
                }
                Err(e.into())
            }
        }
    }

    /// Receives up to `max` records without waiting: copies each into `out` and hands the
    /// copy to `f`, then hands the batch's room back to the sender at once (one store of
    /// the ring's tail counter for the batch, where a loop of [`SpscReceiver::try_recv`]
    /// makes one a record: the cheapest way to drain a stream). Returns how many records
    /// were taken, at least one; [`ShmError::Empty`] when there is none,
    /// [`ShmError::Closed`] once the sender closed the ring and it is drained,
    /// [`ShmError::BufferTooSmall`] (record left in place) when the first record does not
    /// fit `out`. A later record that cannot be taken ends the batch and is reported by the
    /// next call.
    ///
    /// `f` runs before the batch's room is handed back: a sender waiting for room waits for
    /// the whole batch, so keep `max` to tens of records where that matters. `max == 0`
    /// takes nothing and answers `Ok(0)`.
    pub fn try_recv_many<F: FnMut(&[u8])>(&mut self, out: &mut [u8], max: usize, f: F) -> Result<usize> {
        match self.consumer.try_pop_many(out, max, f) {
            Ok(n) => {
                // A sender waiting for room: checked every `WAKE_CHECK_INTERVAL` records.
                if self.consumer.producer_waiting_after(n) {
                    futex_wake_all(self.ctl.tail_word());
                }
                Ok(n)
            }
            Err(e) => {
                if e == ShmError::Empty {
                    // Drained: a producer waiting for room must hear of it now.
                    self.wake(false);
                }
                Err(e.into())
            }
        }
    }

    /// [`SpscReceiver::try_recv_many`] busy-polling until at least one record is there
    /// (lowest latency, burns a core), for at most `timeout`; [`ShmError::WriterGone`] when
    /// the sender died and left nothing.
    pub fn recv_many_spin<F: FnMut(&[u8])>(
        &mut self,
        out: &mut [u8],
        max: usize,
        timeout: Option<Duration>,
        mut f: F,
    ) -> Result<usize> {
        self.spin(timeout, |rx, _| rx.try_recv_many(out, max, &mut f))
    }

    /// [`SpscReceiver::try_recv_many`] waiting for at least one record as
    /// [`SpscReceiver::recv`] does (spins, then sleeps on the futex), for at most `timeout`;
    /// [`ShmError::WriterGone`] when the sender died and left nothing.
    pub fn recv_many<F: FnMut(&[u8])>(
        &mut self,
        out: &mut [u8],
        max: usize,
        timeout: Option<Duration>,
        mut f: F,
    ) -> Result<usize> {
        let mut deadline = Deadline::after(timeout);
        loop {
            match self.try_recv_many(out, max, &mut f) {
                Err(Error::Shm(ShmError::Empty)) => {}
                r => return r,
            }
            self.wait_record(&mut deadline, None)?;
        }
    }

    /// Busy-polls `attempt` while it finds the ring empty, for at most `timeout`, looking at
    /// the deadline and the writer's liveness every 65,536 polls. A dead writer's last
    /// records (or its close) are still delivered, then [`ShmError::WriterGone`].
    /// `attempt` gets the deadline too, for waits of its own.
    #[inline(always)]
    fn spin<T>(
        &mut self,
        timeout: Option<Duration>,
        mut attempt: impl FnMut(&mut Self, &mut Deadline) -> Result<T>,
    ) -> Result<T> {
        let mut deadline = Deadline::after(timeout);
        let mut polls = 0u32;
        loop {
            match attempt(self, &mut deadline) {
                Err(Error::Shm(ShmError::Empty)) => {}
                r => return r,
            }
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(1 << 16) {
                if deadline.slice(LIVENESS_SLICE).is_none() {
                    return Err(ShmError::Timeout.into());
                }
                if !self.writer.is_alive() {
                    debug!("shm: SPSC writer pid {} is gone", self.writer.pid());
                    return match attempt(self, &mut deadline) {
                        Err(Error::Shm(ShmError::Empty)) => Err(ShmError::WriterGone.into()),
                        other => other,
                    };
                }
            }
            core::hint::spin_loop();
        }
    }

    /// Busy-polls for the next record (lowest latency, burns a core), for at most
    /// `timeout`.
    ///
    /// A large record (at least [`ember_core::shm::spsc::STREAM_MIN`] bytes) is copied out
    /// while the sender still copies it in, so it arrives in about one copy's time.
    pub fn recv_spin(&mut self, out: &mut [u8], timeout: Option<Duration>) -> Result<usize> {
        self.spin(timeout, |rx, deadline| rx.recv_streaming(out, deadline, u32::MAX))
    }

    /// [`SpscReceiver::try_recv`], copying a streaming record while the sender fills it:
    /// between chunks it polls, looking at the deadline and the sender's liveness every
    /// 65,536 polls, and gives up (`Empty`, the record left in place) after `max_polls`.
    fn recv_streaming(&mut self, out: &mut [u8], deadline: &mut Deadline, max_polls: u32) -> Result<usize> {
        let SpscReceiver { consumer, writer, .. } = self;
        let mut polls = 0u32;
        let r = consumer.try_pop_streaming(out, || {
            polls += 1;
            if polls >= max_polls {
                return Err(ShmError::Empty);
            }
            if polls.is_multiple_of(1 << 16) {
                if deadline.slice(LIVENESS_SLICE).is_none() {
                    return Err(ShmError::Timeout);
                }
                if !writer.is_alive() {
                    return Err(ShmError::WriterGone);
                }
            }
            core::hint::spin_loop();
            Ok(())
        });
        self.popped(r)
    }

    /// Waits for the next record: spins briefly, then sleeps on the futex, for at most
    /// `timeout`. [`ShmError::Closed`] once the sender closed the ring and it is drained;
    /// [`ShmError::WriterGone`] when the sender died without closing.
    pub fn recv(&mut self, out: &mut [u8], timeout: Option<Duration>) -> Result<usize> {
        self.recv_until(out, &mut Deadline::after(timeout))
    }

    /// [`SpscReceiver::recv`] until `deadline`, shared with the caller's other waits.
    pub fn recv_until(&mut self, out: &mut [u8], deadline: &mut Deadline) -> Result<usize> {
        self.recv_until_with(out, deadline, None)
    }

    /// [`SpscReceiver::recv`] that also ends with [`Error::Cancelled`] (nothing taken) when
    /// `cancel` is cancelled, before or during the wait (`futex_waitv` on the ring's word
    /// and the canceler's).
    pub fn recv_cancellable(&mut self, out: &mut [u8], timeout: Option<Duration>, cancel: &Canceler) -> Result<usize> {
        self.recv_until_with(out, &mut Deadline::after(timeout), Some(cancel))
    }

    /// [`SpscReceiver::recv_until`] watching an optional canceler.
    pub fn recv_until_with(
        &mut self,
        out: &mut [u8],
        deadline: &mut Deadline,
        cancel: Option<&Canceler>,
    ) -> Result<usize> {
        let cancel = cancel.or(deadline.canceler());
        crate::cancel::check(cancel)?;
        loop {
            // A streaming record is copied as it fills for as long as the spin budget
            // lasts (the sender is copying, microseconds), then waited for asleep.
            match self.recv_streaming(out, deadline, STREAM_SPIN_BUDGET) {
                Err(Error::Shm(ShmError::Empty)) => {}
                r => return r,
            }
            self.wait_record(deadline, cancel)?;
        }
    }

    /// Waits until the next record can be taken: spins [`SpscReceiver::set_spin_before_sleep`]
    /// polls, then sleeps on the futex in liveness slices until `deadline`. `Ok` when a
    /// record (or the close) is there; [`ShmError::WriterGone`] when the writer died and
    /// left nothing; [`ShmError::Timeout`]; [`Error::Cancelled`].
    fn wait_record(&mut self, deadline: &mut Deadline, cancel: Option<&Canceler>) -> Result<()> {
        let mut spins = 0;
        loop {
            match self.consumer.peek() {
                Ok(_) | Err(ShmError::Closed) => return Ok(()),
                Err(ShmError::Empty) => {}
                Err(e) => return Err(e.into()),
            }
            if spins < self.spin {
                spins += 1;
                core::hint::spin_loop();
                continue;
            }
            let slice = deadline.slice(LIVENESS_SLICE).ok_or(Error::Shm(ShmError::Timeout))?;
            if let Some(head) = self.consumer.prepare_wait() {
                // A record being streamed in completes without changing the head word: a
                // wake-up just before the sleep would be missed, so sleep in short slices.
                let slice = if self.consumer.next_is_filling() { slice.min(FILLING_SLICE) } else { slice };
                let r = futex_wait(self.ctl.head_word(), head, slice, cancel);
                self.consumer.finish_wait();
                r?;
                // Nothing new after a whole slice: is the writer still there?
                if self.ctl.head_word().load(core::sync::atomic::Ordering::Acquire) == head && !self.writer.is_alive() {
                    return match self.consumer.peek() {
                        Ok(_) | Err(ShmError::Closed) => Ok(()),
                        Err(ShmError::Empty) => Err(ShmError::WriterGone.into()),
                        Err(e) => Err(e.into()),
                    };
                }
            }
        }
    }

    /// The next record, left in the ring, without waiting ([`ShmError::Empty`]): read what
    /// is needed of it in place with [`RecvPeek::read`] (a frame's header alone, one field
    /// of a large record) and consume it with [`RecvPeek::release`]. Dropping the peek
    /// leaves the record for the next receive. [`ShmError::Closed`] once the sender closed
    /// the ring and it is drained.
    ///
    /// The ring is memory the sender's process can write too, so the peek hands out no
    /// `&[u8]` into it (DESIGN.md §4): [`RecvPeek::read`] copies the bytes asked for out.
    pub fn try_peek(&mut self) -> Result<RecvPeek<'_>> {
        if let Err(e) = self.consumer.peek() {
            if e == ShmError::Empty {
                // Drained: a producer waiting for room must hear of it now.
                self.wake(false);
            }
            return Err(e.into());
        }
        let SpscReceiver { consumer, ctl, .. } = self;
        Ok(RecvPeek { peek: consumer.peek()?, ctl })
    }

    /// [`SpscReceiver::try_peek`] waiting for the next record as [`SpscReceiver::recv`]
    /// does (spins, then sleeps on the futex) for at most `timeout`;
    /// [`ShmError::WriterGone`] when the writer died and left nothing.
    pub fn peek(&mut self, timeout: Option<Duration>) -> Result<RecvPeek<'_>> {
        let mut deadline = Deadline::after(timeout);
        self.wait_record(&mut deadline, None)?;
        self.try_peek()
    }

    /// [`SpscReceiver::try_peek`] busy-polling for the next record (lowest latency, burns a
    /// core), for at most `timeout`.
    pub fn peek_spin(&mut self, timeout: Option<Duration>) -> Result<RecvPeek<'_>> {
        let mut deadline = Deadline::after(timeout);
        let mut polls = 0u32;
        loop {
            match self.consumer.peek() {
                Ok(_) | Err(ShmError::Closed) => break,
                Err(ShmError::Empty) => {}
                Err(e) => return Err(e.into()),
            }
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(1 << 16) {
                if deadline.slice(LIVENESS_SLICE).is_none() {
                    return Err(ShmError::Timeout.into());
                }
                if !self.writer.is_alive() {
                    if matches!(self.consumer.peek(), Err(ShmError::Empty)) {
                        return Err(ShmError::WriterGone.into());
                    }
                    break;
                }
            }
            core::hint::spin_loop();
        }
        self.try_peek()
    }

    /// Whether [`SpscReceiver::recv_msg`] and [`SpscReceiver::recv_message`] refuse frames
    /// whose payload is not covered by the checksum
    /// (`Error::Codec(UncheckedPayload)`, the record consumed); off by default.
    pub fn require_checked(&mut self, on: bool) {
        self.require_checked = on;
    }

    /// Whether [`SpscReceiver::require_checked`] is on.
    pub fn requires_checked(&self) -> bool {
        self.require_checked
    }

    fn admit(&self, repr: &ember_core::FrameRepr) -> Result<()> {
        if self.require_checked && !repr.integrity().is_checked() {
            return Err(Error::Codec(ember_core::Error::UncheckedPayload));
        }
        Ok(())
    }

    /// Receives a frame into `scratch` and decodes its payload.
    pub fn recv_msg<'s, T: Deserialize<'s>>(
        &mut self,
        scratch: &'s mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(ember_core::FrameRepr, T)> {
        let n = self.recv(scratch, timeout)?;
        let (repr, value) = ember_core::message::decode(&scratch[..n])?;
        self.admit(&repr)?;
        Ok((repr, value))
    }

    /// Receives a frame and decodes it as a `T` after checking its kind (`Message::KIND`):
    /// a record of another kind is `Error::Codec(UnexpectedKind { .. })`, and was consumed.
    pub fn recv_message<'s, T: ember_core::Message + Deserialize<'s>>(
        &mut self,
        scratch: &'s mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(ember_core::FrameRepr, T)> {
        let n = self.recv(scratch, timeout)?;
        let (repr, value) = ember_core::message::decode_message(&scratch[..n])?;
        self.admit(&repr)?;
        Ok((repr, value))
    }

    /// Before blocking in `poll`/`epoll` on the sender's [`Notifier`]: announces the
    /// receiver waits, so the sender signals the notifier. Returns `false` (and withdraws)
    /// when a record is already there: receive instead of polling. Call
    /// [`SpscReceiver::finish_poll`] after the poll returns.
    pub fn prepare_poll(&mut self) -> bool {
        self.consumer.prepare_wait().is_some()
    }

    /// Withdraws the announcement of [`SpscReceiver::prepare_poll`].
    pub fn finish_poll(&mut self) {
        self.consumer.finish_wait();
    }

    /// Whether the sender is alive (pidfd).
    pub fn writer_alive(&mut self) -> bool {
        self.writer.is_alive()
    }
}

/// The writer of a seqlock segment; it creates the segment.
///
/// `Send` and `Sync`: it owns the mapping (which is both) and views of its atomics; writing
/// takes `&mut self`.
pub struct SeqLockWriter {
    writer: seqlock::SeqLockWriter<'static>,
    wait: &'static WaitLine,
    ctl: &'static SeqLockControl,
    seg: Segment,
}

impl core::fmt::Debug for SeqLockWriter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SeqLockWriter").field("writer", &self.writer).field("seg", &self.seg).finish_non_exhaustive()
    }
}

impl SeqLockWriter {
    /// Creates a seqlock whose value takes up to `capacity` bytes (a multiple of 8).
    pub fn create(backing: Backing<'_>, capacity: usize, fingerprint: u64) -> Result<SeqLockWriter> {
        Self::create_with(backing, capacity, fingerprint, CreateOptions::new())
    }

    /// [`SeqLockWriter::create`] with options ([`CreateOptions::replace_stale`]: take over a
    /// seqlock a dead writer left under the name).
    pub fn create_with(
        backing: Backing<'_>,
        capacity: usize,
        fingerprint: u64,
        options: CreateOptions,
    ) -> Result<SeqLockWriter> {
        let seg = Segment::create_with(backing, SegmentKind::SeqLock, capacity, fingerprint, options)?;
        let (ctl, data) = parts::<SeqLockControl>(&seg);
        let wait = wait_line(&seg);
        let writer = SeqLock::new(ctl, data).writer();
        Ok(SeqLockWriter { writer, wait, ctl, seg })
    }

    /// The segment.
    pub fn segment(&mut self) -> &mut Segment {
        &mut self.seg
    }

    /// Replaces the value and wakes readers that wait for a change.
    pub fn write(&mut self, value: &[u8]) -> Result<()> {
        self.writer.write(value)?;
        if self.wait.anyone_waiting() {
            futex_wake_all(self.ctl.seq_word());
        }
        Ok(())
    }

    /// Serializes `value` with postcard (in `scratch`) and writes it.
    pub fn publish<T: Serialize + ?Sized>(&mut self, value: &T, scratch: &mut [u8]) -> Result<()> {
        let bytes = postcard::to_slice(value, scratch).map_err(|_| Error::Codec(ember_core::Error::Encode))?;
        self.write(bytes)
    }
}

/// A reader of a seqlock segment, mapped read-only.
///
/// `Send` and `Sync`: it owns the mapping (which is both) and views of its atomics.
pub struct SeqLockReader {
    reader: seqlock::SeqLockReader<'static>,
    wait: &'static WaitLine,
    ctl: &'static SeqLockControl,
    writer: Liveness,
    seg: Segment,
}

impl core::fmt::Debug for SeqLockReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SeqLockReader")
            .field("reader", &self.reader)
            .field("writer", &self.writer)
            .field("seg", &self.seg)
            .finish_non_exhaustive()
    }
}

impl SeqLockReader {
    /// Opens the named seqlock read-only.
    pub fn open(name: &str, fingerprint: u64) -> Result<SeqLockReader> {
        Self::attach(Segment::open(name, SegmentKind::SeqLock, fingerprint, Access::ReadOnly)?)
    }

    /// Opens a seqlock from a sealed memfd.
    pub fn from_fd(fd: OwnedFd, fingerprint: u64) -> Result<SeqLockReader> {
        Self::attach(Segment::from_fd(fd, SegmentKind::SeqLock, fingerprint, Access::ReadOnly)?)
    }

    /// Uses an already opened segment (e.g. [`Segment::open_sysv`]).
    pub fn from_segment(seg: Segment) -> Result<SeqLockReader> {
        Self::attach(seg)
    }

    fn attach(seg: Segment) -> Result<SeqLockReader> {
        let (ctl, data) = parts::<SeqLockControl>(&seg);
        let wait = wait_line(&seg);
        let reader = SeqLock::new(ctl, data).reader();
        let writer = seg.writer_liveness();
        Ok(SeqLockReader { reader, wait, ctl, writer, seg })
    }

    /// The segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Copies the current value into `out`. A writer stalled mid-write that is dead is
    /// reported as [`ShmError::WriterGone`].
    ///
    /// A live writer caught mid-write (or values changing under the copy) is waited out: the
    /// reader spins briefly, then yields the CPU and tries again, for at most
    /// [`SEQLOCK_STALL_BUDGET`] in all, before [`ShmError::WriterStalled`] (the sequence
    /// stayed odd: a writer stopped mid-write) or [`ShmError::Contended`] (the writer kept
    /// writing and no copy came out whole). Yielding is what makes this work on one core: a writer
    /// preempted mid-write there only finishes when the reader lets it run. A writer that
    /// publishes back to back with no pause can still starve a reader on its own core, as
    /// any seqlock does; give it a pause or a core of its own (see docs/shm-layout.md).
    pub fn read(&mut self, out: &mut [u8]) -> Result<Snapshot> {
        // The clock and the sequence are read only once a first try has failed: a read that
        // succeeds at once (the usual case) costs the copy and its two sequence loads.
        let mut stalled: Option<(Deadline, u32)> = None;
        loop {
            match self.reader.read_spinning(out, SEQLOCK_SPINS_BEFORE_YIELD) {
                Err(ShmError::WriterStalled) if !self.writer.is_alive() => return Err(ShmError::WriterGone.into()),
                Err(e @ (ShmError::WriterStalled | ShmError::Contended)) => {
                    let (budget, first) =
                        stalled.get_or_insert_with(|| (Deadline::after(Some(SEQLOCK_STALL_BUDGET)), self.reader.seq()));
                    let first = *first;
                    if budget.expired() {
                        // A writer that moved on since the first try is busy, not stuck.
                        let moved = self.reader.seq() != first;
                        return Err(if moved { ShmError::Contended } else { e }.into());
                    }
                    rustix::thread::sched_yield();
                }
                r => return Ok(r?),
            }
        }
    }

    /// Like [`SeqLockReader::read`], but a writer preempted mid-write (or values changing
    /// under the reader) is waited out, yielding the CPU, for at most `timeout`.
    pub fn read_timeout(&mut self, out: &mut [u8], timeout: Option<Duration>) -> Result<Snapshot> {
        let mut deadline = Deadline::after(timeout);
        loop {
            match self.read(out) {
                Err(Error::Shm(ShmError::WriterStalled | ShmError::Contended)) => {
                    deadline.slice(LIVENESS_SLICE).ok_or(Error::Shm(ShmError::Timeout))?;
                    rustix::thread::sched_yield();
                }
                r => return r,
            }
        }
    }

    /// Reads and decodes the value.
    pub fn read_value<'s, T: Deserialize<'s>>(&mut self, scratch: &'s mut [u8]) -> Result<(Snapshot, T)> {
        let snap = self.read(scratch)?;
        Ok((snap, ember_core::message::decode_payload(&scratch[..snap.len])?))
    }

    /// Sleeps until the value changes from the one read at sequence `seen` (see
    /// [`Snapshot::seq`]; 0 before the first value), for at most `timeout`.
    pub fn wait_change(&mut self, seen: u32, timeout: Option<Duration>) -> Result<()> {
        self.wait_change_with(seen, timeout, None)
    }

    /// [`SeqLockReader::wait_change`] that also ends with [`Error::Cancelled`] when
    /// `cancel` is cancelled, before or during the wait.
    pub fn wait_change_cancellable(&mut self, seen: u32, timeout: Option<Duration>, cancel: &Canceler) -> Result<()> {
        self.wait_change_with(seen, timeout, Some(cancel))
    }

    /// [`SeqLockReader::wait_change`] watching an optional canceler.
    pub fn wait_change_with(&mut self, seen: u32, timeout: Option<Duration>, cancel: Option<&Canceler>) -> Result<()> {
        crate::cancel::check(cancel)?;
        let mut deadline = Deadline::after(timeout);
        loop {
            if self.reader.seq() != seen {
                return Ok(());
            }
            let slice = deadline.slice(LIVENESS_SLICE).ok_or(Error::Shm(ShmError::Timeout))?;
            if let Some(s) = self.reader.prepare_wait(self.wait, seen) {
                let r = futex_wait(self.ctl.seq_word(), s, slice, cancel);
                self.reader.finish_wait(self.wait);
                r?;
                if self.reader.seq() == seen && !self.writer.is_alive() {
                    return Err(ShmError::WriterGone.into());
                }
            }
        }
    }

    /// Whether the writer is alive (pidfd).
    pub fn writer_alive(&mut self) -> bool {
        self.writer.is_alive()
    }
}

/// The writer of a broadcast ring; it creates the segment and never waits for readers.
///
/// `Send` and `Sync`: it owns the mapping (which is both) and views of its atomics; publishing
/// takes `&mut self`.
pub struct BroadcastWriter {
    writer: broadcast::BroadcastWriter<'static>,
    wait: &'static WaitLine,
    ctl: &'static BroadcastControl,
    seg: Segment,
}

impl core::fmt::Debug for BroadcastWriter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BroadcastWriter").field("writer", &self.writer).field("seg", &self.seg).finish_non_exhaustive()
    }
}

impl BroadcastWriter {
    /// Creates a ring with a data area of `capacity` bytes (a power of two).
    pub fn create(backing: Backing<'_>, capacity: usize, fingerprint: u64) -> Result<BroadcastWriter> {
        Self::create_with(backing, capacity, fingerprint, CreateOptions::new())
    }

    /// [`BroadcastWriter::create`] with options ([`CreateOptions::replace_stale`]: take over
    /// a ring a dead writer left under the name).
    pub fn create_with(
        backing: Backing<'_>,
        capacity: usize,
        fingerprint: u64,
        options: CreateOptions,
    ) -> Result<BroadcastWriter> {
        let seg = Segment::create_with(backing, SegmentKind::Broadcast, capacity, fingerprint, options)?;
        let (ctl, data) = parts::<BroadcastControl>(&seg);
        let wait = wait_line(&seg);
        let writer = BroadcastRing::new(ctl, data)?.writer();
        Ok(BroadcastWriter { writer, wait, ctl, seg })
    }

    /// The segment.
    pub fn segment(&mut self) -> &mut Segment {
        &mut self.seg
    }

    /// Publishes a record (evicting the oldest if needed) and wakes sleeping readers.
    pub fn send(&mut self, payload: &[u8]) -> Result<()> {
        self.writer.push(payload)?;
        if self.wait.anyone_waiting() {
            futex_wake_all(self.ctl.published_word());
        }
        Ok(())
    }

    /// Records published so far.
    pub fn records(&self) -> u64 {
        self.writer.records()
    }
}

impl Drop for BroadcastWriter {
    fn drop(&mut self) {
        // A forked child dropping an inherited writer leaves the parent's ring open.
        if !self.seg.created_here() {
            return;
        }
        self.writer.close();
        futex_wake_all(self.ctl.published_word());
    }
}

/// A reader of a broadcast ring, mapped read-only (but for its waiter page).
///
/// `Send` and `Sync`: it owns the mapping (which is both) and views of its atomics; reading
/// takes `&mut self`.
pub struct BroadcastReader {
    reader: broadcast::BroadcastReader<'static>,
    wait: &'static WaitLine,
    ctl: &'static BroadcastControl,
    writer: Liveness,
    seg: Segment,
}

impl core::fmt::Debug for BroadcastReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BroadcastReader")
            .field("reader", &self.reader)
            .field("writer", &self.writer)
            .field("seg", &self.seg)
            .finish_non_exhaustive()
    }
}

impl BroadcastReader {
    /// Opens the named ring; the reader starts with the next record published, or with
    /// the oldest one still in the ring when `from_oldest`.
    pub fn open(name: &str, fingerprint: u64, from_oldest: bool) -> Result<BroadcastReader> {
        Self::attach(Segment::open(name, SegmentKind::Broadcast, fingerprint, Access::ReadOnly)?, from_oldest)
    }

    /// Opens a ring from a sealed memfd.
    pub fn from_fd(fd: OwnedFd, fingerprint: u64, from_oldest: bool) -> Result<BroadcastReader> {
        Self::attach(Segment::from_fd(fd, SegmentKind::Broadcast, fingerprint, Access::ReadOnly)?, from_oldest)
    }

    /// Uses an already opened segment (e.g. [`Segment::open_sysv`]).
    pub fn from_segment(seg: Segment, from_oldest: bool) -> Result<BroadcastReader> {
        Self::attach(seg, from_oldest)
    }

    fn attach(seg: Segment, from_oldest: bool) -> Result<BroadcastReader> {
        let (ctl, data) = parts::<BroadcastControl>(&seg);
        let wait = wait_line(&seg);
        let ring = BroadcastRing::new(ctl, data)?;
        let reader = if from_oldest { ring.reader_at_oldest()? } else { ring.reader_at_end() };
        let writer = seg.writer_liveness();
        Ok(BroadcastReader { reader, wait, ctl, writer, seg })
    }

    /// The segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Copies the next record without waiting ([`ShmError::Empty`]).
    pub fn try_recv(&mut self, out: &mut [u8]) -> Result<Received> {
        Ok(self.reader.try_recv(out)?)
    }

    /// Waits for the next record (futex), for at most `timeout`; [`ShmError::Closed`] when
    /// the writer closed the ring, [`ShmError::WriterGone`] when it died.
    pub fn recv(&mut self, out: &mut [u8], timeout: Option<Duration>) -> Result<Received> {
        self.recv_with(out, timeout, None)
    }

    /// [`BroadcastReader::recv`] that also ends with [`Error::Cancelled`] (the cursor
    /// unmoved) when `cancel` is cancelled, before or during the wait.
    pub fn recv_cancellable(
        &mut self,
        out: &mut [u8],
        timeout: Option<Duration>,
        cancel: &Canceler,
    ) -> Result<Received> {
        self.recv_with(out, timeout, Some(cancel))
    }

    /// [`BroadcastReader::recv`] watching an optional canceler.
    pub fn recv_with(
        &mut self,
        out: &mut [u8],
        timeout: Option<Duration>,
        cancel: Option<&Canceler>,
    ) -> Result<Received> {
        crate::cancel::check(cancel)?;
        let mut deadline = Deadline::after(timeout);
        let mut spins = 0;
        loop {
            match self.reader.try_recv(out) {
                Err(ShmError::Empty) => {}
                // The writer was preempted mid-update (or the reader kept being lapped):
                // transient while the writer lives.
                Err(ShmError::WriterStalled | ShmError::Contended) => {
                    if !self.writer.is_alive() {
                        return Err(ShmError::WriterGone.into());
                    }
                    deadline.slice(LIVENESS_SLICE).ok_or(Error::Shm(ShmError::Timeout))?;
                    rustix::thread::sched_yield();
                    continue;
                }
                r => return Ok(r?),
            }
            if spins < SPIN_BEFORE_SLEEP {
                spins += 1;
                core::hint::spin_loop();
                continue;
            }
            let slice = deadline.slice(LIVENESS_SLICE).ok_or(Error::Shm(ShmError::Timeout))?;
            if let Some(p) = self.reader.prepare_wait(self.wait) {
                let r = futex_wait(self.ctl.published_word(), p, slice, cancel);
                self.reader.finish_wait(self.wait);
                r?;
                let now = self.ctl.published_word().load(core::sync::atomic::Ordering::Acquire);
                if now == p && !self.writer.is_alive() {
                    return match self.reader.try_recv(out) {
                        Err(ShmError::Empty) => Err(ShmError::WriterGone.into()),
                        other => Ok(other?),
                    };
                }
            }
        }
    }

    /// Whether the writer is alive (pidfd).
    pub fn writer_alive(&mut self) -> bool {
        self.writer.is_alive()
    }
}
