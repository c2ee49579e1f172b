//! Mutexes, semaphores and events shared between processes, in a [`SyncSegment`].
//!
//! The protocol is `ember_core::shm::sync`; this module adds the sleeping (shared futexes,
//! never `FUTEX_PRIVATE`), the liveness of a dead mutex owner (a pidfd on its process), the
//! caller's thread id without a syscall, and a segment to put them in.
//!
//! A [`SyncSegment`] is a shared-memory segment (`SegmentKind::Sync`) whose data area the
//! application lays out: primitives and plain shared words at offsets it chooses (each
//! primitive is 8 bytes, 4-byte aligned; [`SyncSegment::mutex`] and the others check the
//! offset). The creator's data area starts zeroed: a zeroed mutex is unlocked, a zeroed
//! event is at 0, a zeroed semaphore has count 0 ([`SharedSemaphore::init`] sets another).
//!
//! What happens when a process dies at each point is in docs/sync.md.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, AtomicU64};
use core::time::Duration;

use ember_core::shm::SegmentKind;
use ember_core::shm::sync::{self as proto, Locked, Owner, SyncError, Waiter, Woke};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};
use rustix::thread::futex;

use super::map::AtomicView;
use super::{Access, Backing, LIVENESS_SLICE, Segment};
use crate::error::{Error, Result};

/// The futex waiter: sleeps in slices of at most [`LIVENESS_SLICE`] until a deadline,
/// which it reads the clock for only when it first has to sleep.
struct FutexWaiter<'c> {
    cancel: Option<&'c crate::cancel::Canceler>,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    /// When the current liveness slice began (the first sleep, or the last `Slice`).
    slice_start: Option<Duration>,
}

impl<'c> FutexWaiter<'c> {
    #[inline]
    fn new(timeout: Option<Duration>) -> FutexWaiter<'c> {
        FutexWaiter { cancel: None, timeout, deadline: None, slice_start: None }
    }

    /// A waiter that also ends with `SyncError::Cancelled` when `cancel` is cancelled.
    #[inline]
    fn cancellable(timeout: Option<Duration>, cancel: Option<&'c crate::cancel::Canceler>) -> FutexWaiter<'c> {
        FutexWaiter { cancel, ..FutexWaiter::new(timeout) }
    }
}

impl Waiter for FutexWaiter<'_> {
    /// Sleeps until woken, the deadline, or the end of the current liveness slice. The
    /// slice is counted across sleeps (early wake-ups, signals, spurious returns), so a
    /// waiter reports `Slice`, and its caller looks at the owner, at least once per
    /// [`LIVENESS_SLICE`] of waiting, however often it is woken.
    fn wait(&mut self, word: &AtomicU32, expected: u32) -> core::result::Result<Woke, SyncError> {
        let now = crate::poll::now();
        if let Some(t) = self.timeout
            && self.deadline.is_none()
        {
            self.deadline = Some(now.saturating_add(t));
        }
        let start = *self.slice_start.get_or_insert(now);
        let mut sleep = LIVENESS_SLICE.saturating_sub(now.saturating_sub(start));
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_sub(now);
            if left.is_zero() {
                return Err(SyncError::TimedOut);
            }
            sleep = sleep.min(left);
        }
        if let Some(c) = self.cancel {
            // `futex_waitv` on the word and the canceler's (or 10 ms slices without it).
            if c.is_cancelled()
                || (!sleep.is_zero()
                    && crate::cancel::futex_wait(word, expected, sleep, Some(c)) == Err(crate::Error::Cancelled))
            {
                return Err(SyncError::Cancelled);
            }
        } else if !sleep.is_zero() {
            let ts = futex::Timespec { tv_sec: sleep.as_secs() as _, tv_nsec: sleep.subsec_nanos() as _ };
            // Woken, changed (EAGAIN), interrupted or timed out: the caller checks again.
            let _ = futex::wait(word, futex::Flags::empty(), expected, Some(&ts));
        }
        let after = crate::poll::now();
        if after.saturating_sub(start) >= LIVENESS_SLICE {
            self.slice_start = Some(after);
            return Ok(Woke::Slice);
        }
        Ok(Woke::Early)
    }

    fn wake(&mut self, word: &AtomicU32, count: u32) {
        // Cannot fail for a live mapping; a lost wake delays a sleeper by one slice.
        let _ = futex::wake(word, futex::Flags::empty(), count.min(i32::MAX as u32));
    }

    fn is_alive(&mut self, tid: u32, pid: u32) -> bool {
        // The owner's process, through a pidfd (a zombie counts as dead). With no pid
        // recorded (the owner died between taking the lock word and writing its pid), the
        // thread id stands for the process: equal for a single-threaded one.
        let who = if pid != 0 { pid } else { tid };
        // A pid word a peer scribbled over (negative as an i32): unknown, so alive.
        let Some(p) = i32::try_from(who).ok().and_then(Pid::from_raw) else { return true };
        match rustix::process::pidfd_open(p, PidfdFlags::empty()) {
            Ok(fd) => {
                let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
                let zero = futex::Timespec { tv_sec: 0, tv_nsec: 0 };
                !matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
            }
            Err(Errno::SRCH) => false,
            // EINVAL (a thread id that is not a process's) or ENOSYS (no pidfds: kernels
            // before 5.3, valgrind): ask `kill(who, 0)`, which takes thread ids too. Only
            // ESRCH means gone; anything else (EPERM: another user's) counts as alive.
            Err(_) => rustix::process::test_kill_process(p) != Err(Errno::SRCH),
        }
    }
}

/// The calling thread as a mutex records it, without a syscall after the first call in a
/// thread (the ids are cached per thread, and the cache is dropped in a forked child).
#[inline]
pub fn current_owner() -> Owner {
    ids::current()
}

#[cfg(feature = "std")]
mod ids {
    use core::cell::Cell;
    use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

    use ember_core::shm::sync::Owner;

    std::thread_local! {
        static CACHED: Cell<Owner> = const { Cell::new(Owner { tid: 0, pid: 0 }) };
    }

    /// One page mapped with `MADV_WIPEONFORK`, holding the pid of the process it belongs
    /// to: a forked child sees it zeroed. A thread's cached ids are valid while their pid
    /// equals the page's, so every thread of a child (the forking one included) asks again.
    /// Null until first used; [`UNSUPPORTED`] if the kernel cannot wipe on fork; otherwise
    /// never unmapped.
    static FORK_PAGE: AtomicPtr<AtomicU32> = AtomicPtr::new(core::ptr::null_mut());

    /// `FORK_PAGE` when `MADV_WIPEONFORK` is not available (before Linux 4.14).
    const UNSUPPORTED: *mut AtomicU32 = core::ptr::dangling_mut();

    #[allow(unsafe_code)]
    #[inline]
    fn fork_page() -> Option<&'static AtomicU32> {
        let mut p = FORK_PAGE.load(Ordering::Acquire);
        if p == UNSUPPORTED {
            return None;
        }
        if p.is_null() {
            let mapped = map_page().unwrap_or(UNSUPPORTED);
            p = match FORK_PAGE.compare_exchange(core::ptr::null_mut(), mapped, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => mapped,
                // Another thread mapped one first: use it (ours stays mapped, unused).
                Err(other) => other,
            };
            if p == UNSUPPORTED {
                return None;
            }
        }
        // SAFETY: the page is mapped read-write for the life of the process, page-aligned,
        // and only ever accessed as this atomic.
        Some(unsafe { &*p })
    }

    #[allow(unsafe_code)]
    fn map_page() -> Option<*mut AtomicU32> {
        let len = rustix::param::page_size();
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                core::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }
        .ok()?;
        // SAFETY: `p` is the mapping just made, of `len` bytes.
        if unsafe { rustix::mm::madvise(p, len, rustix::mm::Advice::LinuxWipeOnFork) }.is_err() {
            // Before Linux 4.14: no way to notice a fork cheaply; callers ask every time.
            // SAFETY: our own mapping, never shared.
            let _ = unsafe { rustix::mm::munmap(p, len) };
            return None;
        }
        Some(p.cast())
    }

    fn ask() -> Owner {
        Owner {
            tid: rustix::thread::gettid().as_raw_nonzero().get() as u32,
            pid: rustix::process::getpid().as_raw_nonzero().get() as u32,
        }
    }

    #[inline]
    pub(super) fn current() -> Owner {
        let Some(page) = fork_page() else { return ask() };
        let cached = CACHED.with(Cell::get);
        if cached.tid != 0 && page.load(Ordering::Relaxed) == cached.pid {
            return cached;
        }
        let me = ask();
        page.store(me.pid, Ordering::Relaxed);
        CACHED.with(|c| c.set(me));
        me
    }
}

#[cfg(not(feature = "std"))]
mod ids {
    use ember_core::shm::sync::Owner;

    /// Without std there are no thread-locals: two syscalls per call.
    pub(super) fn current() -> Owner {
        Owner {
            tid: rustix::thread::gettid().as_raw_nonzero().get() as u32,
            pid: rustix::process::getpid().as_raw_nonzero().get() as u32,
        }
    }
}

/// A segment holding synchronisation primitives and shared data (see the module docs).
///
/// `Send` and `Sync`: it owns the mapping; every primitive in it is atomic.
#[derive(Debug)]
pub struct SyncSegment {
    seg: Segment,
}

impl SyncSegment {
    /// Creates one with a data area of `capacity` bytes (a multiple of 8, at least 64),
    /// zeroed. Named segments are `O_EXCL`, mode `0600`.
    pub fn create(backing: Backing<'_>, capacity: usize, fingerprint: u64) -> Result<SyncSegment> {
        Ok(SyncSegment { seg: Segment::create(backing, SegmentKind::Sync, capacity, fingerprint)? })
    }

    /// Opens the named one, checking its header and fingerprint.
    pub fn open(name: &str, fingerprint: u64) -> Result<SyncSegment> {
        Ok(SyncSegment { seg: Segment::open(name, SegmentKind::Sync, fingerprint, Access::ReadWrite)? })
    }

    /// Opens one from an fd (a memfd passed over a Unix socket, or inherited).
    pub fn from_fd(fd: rustix::fd::OwnedFd, fingerprint: u64) -> Result<SyncSegment> {
        Ok(SyncSegment { seg: Segment::from_fd(fd, SegmentKind::Sync, fingerprint, Access::ReadWrite)? })
    }

    /// The segment (its fd, name, header; `persist` to keep a named one after drop).
    pub fn segment(&mut self) -> &mut Segment {
        &mut self.seg
    }

    /// Bytes of the data area.
    pub fn capacity(&self) -> usize {
        self.seg.data_range().1
    }

    fn at<T: AtomicView>(&self, offset: usize) -> Result<&T> {
        let (data, cap) = self.seg.data_range();
        let ok =
            offset.checked_add(size_of::<T>()).is_some_and(|end| end <= cap) && offset.is_multiple_of(align_of::<T>());
        if !ok {
            return Err(Error::Os(Errno::INVAL));
        }
        Ok(self.seg.mapping().view::<T>(data + offset))
    }

    /// The mutex at `offset` in the data area (8 bytes, 4-aligned).
    pub fn mutex(&self, offset: usize) -> Result<SharedMutex<'_>> {
        Ok(SharedMutex { m: self.at(offset)? })
    }

    /// The semaphore at `offset` (8 bytes, 4-aligned).
    pub fn semaphore(&self, offset: usize) -> Result<SharedSemaphore<'_>> {
        Ok(SharedSemaphore { s: self.at(offset)? })
    }

    /// The event at `offset` (8 bytes, 4-aligned).
    pub fn event(&self, offset: usize) -> Result<SharedEvent<'_>> {
        Ok(SharedEvent { e: self.at(offset)? })
    }

    /// A shared 32-bit word at `offset` (4-aligned), for data the primitives guard.
    pub fn u32_at(&self, offset: usize) -> Result<&AtomicU32> {
        self.at(offset)
    }

    /// A shared 64-bit word at `offset` (8-aligned).
    pub fn u64_at(&self, offset: usize) -> Result<&AtomicU64> {
        self.at(offset)
    }
}

/// A mutex in a [`SyncSegment`]. Any thread of any process that maps the segment may lock
/// it; the one that locked it unlocks it (by dropping the guard).
///
/// `Send` and `Sync`: a reference to atomic words.
#[derive(Debug, Clone, Copy)]
pub struct SharedMutex<'a> {
    m: &'a proto::Mutex,
}

impl<'a> SharedMutex<'a> {
    /// Locks, waiting up to `timeout` (`None`: for ever) ([`Error::TimedOut`]). If the last
    /// owner died holding it, the lock is taken over and the guard says
    /// [`MutexGuard::owner_died`]: repair the data, then [`MutexGuard::mark_consistent`].
    /// An owner's death is noticed within one [`LIVENESS_SLICE`] of sleep.
    /// [`Error::Sync`]`(NotRecoverable)` if a previous taker never repaired it. No syscall
    /// when the mutex is free.
    #[inline]
    pub fn lock(&self, timeout: Option<Duration>) -> Result<MutexGuard<'a>> {
        let me = current_owner();
        let how = match self.m.try_lock(me) {
            Ok(how) => how,
            Err(SyncError::WouldBlock) => self.m.lock(me, &mut FutexWaiter::new(timeout))?,
            Err(e) => return Err(e.into()),
        };
        Ok(MutexGuard { m: self.m, me, owner_died: how == Locked::OwnerDied, thread_bound: PhantomData })
    }

    /// [`SharedMutex::lock`] that also ends with [`Error::Cancelled`] (not locked) when
    /// `cancel` is cancelled, before or during the wait.
    pub fn lock_cancellable(
        &self,
        timeout: Option<Duration>,
        cancel: &crate::cancel::Canceler,
    ) -> Result<MutexGuard<'a>> {
        cancel.check()?;
        let me = current_owner();
        let how = match self.m.try_lock(me) {
            Ok(how) => how,
            Err(SyncError::WouldBlock) => self.m.lock(me, &mut FutexWaiter::cancellable(timeout, Some(cancel)))?,
            Err(e) => return Err(e.into()),
        };
        Ok(MutexGuard { m: self.m, me, owner_died: how == Locked::OwnerDied, thread_bound: PhantomData })
    }

    /// Locks if free, else [`Error::WouldBlock`] (a dead owner is only noticed by `lock`).
    #[inline]
    pub fn try_lock(&self) -> Result<MutexGuard<'a>> {
        let me = current_owner();
        self.m.try_lock(me)?;
        Ok(MutexGuard { m: self.m, me, owner_died: false, thread_bound: PhantomData })
    }

    /// Locks without a guard, for callers that cannot hold one (the C ABI): as
    /// [`SharedMutex::lock`], and the caller unlocks with [`SharedMutex::unlock`] from the
    /// same thread. Returns how it was acquired.
    pub fn lock_unguarded(&self, timeout: Option<Duration>) -> Result<Locked> {
        self.lock_unguarded_with(timeout, None)
    }

    /// [`SharedMutex::lock_unguarded`] watching an optional canceler ([`Error::Cancelled`],
    /// not locked).
    pub fn lock_unguarded_with(
        &self,
        timeout: Option<Duration>,
        cancel: Option<&crate::cancel::Canceler>,
    ) -> Result<Locked> {
        crate::cancel::check(cancel)?;
        let me = current_owner();
        match self.m.try_lock(me) {
            Err(SyncError::WouldBlock) => Ok(self.m.lock(me, &mut FutexWaiter::cancellable(timeout, cancel))?),
            r => Ok(r?),
        }
    }

    /// [`SharedMutex::try_lock`] without a guard.
    pub fn try_lock_unguarded(&self) -> Result<Locked> {
        Ok(self.m.try_lock(current_owner())?)
    }

    /// Unlocks a mutex locked with [`SharedMutex::lock_unguarded`] by this thread
    /// ([`Error::Sync`]`(NotOwner)` otherwise). Unlocking after `OwnerDied` without
    /// [`SharedMutex::mark_consistent`] makes it not recoverable.
    pub fn unlock(&self) -> Result<()> {
        Ok(self.m.unlock(current_owner(), &mut FutexWaiter::new(None))?)
    }

    /// Marks the data repaired after `OwnerDied` (this thread must hold the lock).
    pub fn mark_consistent(&self) -> Result<()> {
        Ok(self.m.mark_consistent(current_owner())?)
    }

    /// The lock word (owner thread id and flags), for inspection.
    pub fn word(&self) -> u32 {
        self.m.word()
    }
}

/// A held [`SharedMutex`]; dropping it unlocks. It stays in the thread that locked (the
/// lock word names that thread).
///
/// Neither `Send` nor `Sync`: the lock word records the thread that locked it, and only that
/// thread may unlock.
#[must_use = "the mutex unlocks when the guard is dropped"]
#[derive(Debug)]
pub struct MutexGuard<'a> {
    m: &'a proto::Mutex,
    me: Owner,
    owner_died: bool,
    thread_bound: PhantomData<*const ()>,
}

impl MutexGuard<'_> {
    /// Whether the lock was taken from an owner that died holding it: the data may be
    /// half-updated. Repair it and call [`MutexGuard::mark_consistent`], or the mutex
    /// becomes not recoverable when this guard drops.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Marks the data repaired after [`MutexGuard::owner_died`].
    pub fn mark_consistent(&mut self) -> Result<()> {
        self.m.mark_consistent(self.me)?;
        self.owner_died = false;
        Ok(())
    }
}

impl Drop for MutexGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // The guard is this thread's (it is not `Send`), so the lock is ours: no check.
        if !self.m.unlock_held(self.me, self.owner_died, &mut FutexWaiter::new(None)) {
            warn!("shm: a mutex guard found the lock held by another (taken over, or a fork's copy)");
        }
    }
}

/// A counting semaphore in a [`SyncSegment`].
///
/// `Send` and `Sync`: a reference to atomic words.
#[derive(Debug, Clone, Copy)]
pub struct SharedSemaphore<'a> {
    s: &'a proto::Semaphore,
}

impl SharedSemaphore<'_> {
    /// Sets the count (the creator, before others use it).
    pub fn init(&self, count: u32) {
        self.s.init(count);
    }

    /// Adds one, waking a waiter. No syscall when nobody waits.
    #[inline]
    pub fn post(&self) -> Result<()> {
        Ok(self.s.post(&mut FutexWaiter::new(None))?)
    }

    /// Takes one, waiting up to `timeout` (`None`: for ever) while the count is zero.
    #[inline]
    pub fn wait(&self, timeout: Option<Duration>) -> Result<()> {
        self.wait_with(timeout, None)
    }

    /// [`SharedSemaphore::wait`] watching an optional canceler ([`Error::Cancelled`],
    /// nothing taken).
    #[inline]
    pub fn wait_with(&self, timeout: Option<Duration>, cancel: Option<&crate::cancel::Canceler>) -> Result<()> {
        crate::cancel::check(cancel)?;
        if self.s.try_wait().is_ok() {
            return Ok(());
        }
        Ok(self.s.wait(&mut FutexWaiter::cancellable(timeout, cancel))?)
    }

    /// Takes one if the count is above zero, else [`Error::WouldBlock`].
    #[inline]
    pub fn try_wait(&self) -> Result<()> {
        Ok(self.s.try_wait()?)
    }

    /// The count now.
    pub fn count(&self) -> u32 {
        self.s.count()
    }
}

/// An event in a [`SyncSegment`]: wait for a counter to change, notify one or all.
///
/// `Send` and `Sync`: a reference to atomic words.
#[derive(Debug, Clone, Copy)]
pub struct SharedEvent<'a> {
    e: &'a proto::Event,
}

impl SharedEvent<'_> {
    /// The counter now.
    pub fn current(&self) -> u32 {
        self.e.current()
    }

    /// Waits until the counter differs from `seen`, up to `timeout`; returns it.
    pub fn wait_change(&self, seen: u32, timeout: Option<Duration>) -> Result<u32> {
        self.wait_change_with(seen, timeout, None)
    }

    /// [`SharedEvent::wait_change`] watching an optional canceler ([`Error::Cancelled`]).
    pub fn wait_change_with(
        &self,
        seen: u32,
        timeout: Option<Duration>,
        cancel: Option<&crate::cancel::Canceler>,
    ) -> Result<u32> {
        crate::cancel::check(cancel)?;
        Ok(self.e.wait_change(seen, &mut FutexWaiter::cancellable(timeout, cancel))?)
    }

    /// Advances the counter and wakes one waiter.
    pub fn notify_one(&self) {
        self.e.notify_one(&mut FutexWaiter::new(None));
    }

    /// Advances the counter and wakes every waiter.
    pub fn notify_all(&self) {
        self.e.notify_all(&mut FutexWaiter::new(None));
    }
}
