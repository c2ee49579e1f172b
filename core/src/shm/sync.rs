//! Synchronisation between processes through words in shared memory: a counting
//! [`Semaphore`], a [`Mutex`] that survives the death of its owner, and an [`Event`] (wait
//! for a counter to change).
//!
//! This module is the layout and the atomic protocol only. Sleeping and waking are the
//! operating system's, behind [`Waiter`]: `ember-ipc-linux` implements it with shared futexes
//! (never `FUTEX_PRIVATE`) and pidfds, the loom models with spinning. Every primitive is
//! `#[repr(C)]` 32-bit words, so a C program or another Ember build sees the same layout,
//! and each works at any 4-byte aligned place in a mapping. No operation takes a syscall when
//! there is no contention: the uncontended lock, unlock, post and wait are one atomic
//! read-modify-write each.
//!
//! # The mutex and a dead owner
//!
//! The lock word holds the owner's thread id (bits 0–29; Linux thread ids are below 2^22),
//! [`INCONSISTENT`] (bit 30) and [`WAITERS`] (bit 31), the layout of the kernel's robust
//! futexes, without the kernel's robust list (the C library owns the one list head each
//! thread has). A second word holds the owner's process id. A waiter that has slept for a
//! whole slice asks [`Waiter::is_alive`] about the owner; if the owner is gone, the waiter
//! takes the lock with [`INCONSISTENT`] set and is told [`Locked::OwnerDied`]. It repairs
//! the data and calls [`Mutex::mark_consistent`]; if it unlocks without doing so, the mutex
//! becomes not recoverable ([`SyncError::NotRecoverable`] for everyone after). If it dies
//! too, the next waiter gets [`Locked::OwnerDied`] again. This is the
//! `EOWNERDEAD`/`pthread_mutex_consistent` model.

use super::primitive::{AtomicU32, Ordering};

/// The owner's thread id in a mutex's lock word.
pub const TID_MASK: u32 = 0x3FFF_FFFF;
/// Set while the mutex is held by a process that took it from a dead owner and has not yet
/// called [`Mutex::mark_consistent`].
pub const INCONSISTENT: u32 = 0x4000_0000;
/// Set when a locker may be sleeping on the word: unlock must wake one.
pub const WAITERS: u32 = 0x8000_0000;
/// The lock word of a mutex whose data was never repaired: it can no longer be locked.
pub const NOT_RECOVERABLE: u32 = TID_MASK;

/// Why an operation did not succeed.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SyncError {
    /// The deadline passed first.
    TimedOut,
    /// The operation would have had to wait (`try_*`).
    WouldBlock,
    /// The mutex's owner died and the one who took it over unlocked it without marking its
    /// data consistent: it cannot be locked any more.
    NotRecoverable,
    /// Unlock or `mark_consistent` by a thread that does not hold the mutex.
    NotOwner,
    /// A semaphore's count is at `u32::MAX`.
    Overflow,
    /// The calling thread already holds the mutex (it would wait for itself for ever).
    Deadlock,
    /// The waiter was cancelled (the system layer's cancel handle, e.g. from a signal
    /// handler) before the operation could complete; nothing was taken.
    Cancelled,
}

impl core::fmt::Display for SyncError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SyncError::TimedOut => "timed out",
            SyncError::WouldBlock => "would block",
            SyncError::NotRecoverable => "mutex not recoverable: its owner died and the data was never repaired",
            SyncError::NotOwner => "the calling thread does not hold the mutex",
            SyncError::Overflow => "semaphore count overflow",
            SyncError::Deadlock => "the calling thread already holds the mutex",
            SyncError::Cancelled => "cancelled",
        })
    }
}

impl core::error::Error for SyncError {}

/// How a wait ended, as [`Waiter::wait`] reports it.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// Woken, or the word had already changed, or interrupted: check again.
    Early,
    /// A whole slice passed without a wake-up: check again, and check that the one to wake
    /// us is still alive.
    Slice,
}

/// What the primitives need from the system.
pub trait Waiter {
    /// Sleeps while `*word == expected`, for at most one slice and never past the deadline
    /// the waiter was made with; `Err(SyncError::TimedOut)` once that deadline has passed,
    /// `Err(SyncError::Cancelled)` when the waiter was cancelled.
    fn wait(&mut self, word: &AtomicU32, expected: u32) -> Result<Woke, SyncError>;
    /// Wakes up to `count` sleepers on `word`.
    fn wake(&mut self, word: &AtomicU32, count: u32);
    /// Whether the thread `tid` of process `pid` still runs (`pid` 0: unknown, judge by the
    /// thread id alone). When in doubt, alive.
    fn is_alive(&mut self, tid: u32, pid: u32) -> bool;
}

/// The caller, as a mutex records its owner.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Thread id (`gettid`), 1 to [`TID_MASK`] − 1.
    pub tid: u32,
    /// Process id (`getpid`).
    pub pid: u32,
}

// ---- semaphore ----------------------------------------------------------------------------

/// A counting semaphore: two words, the count and the number of sleepers.
///
/// `Send` and `Sync`: only atomics, shared by every process that maps the segment.
#[repr(C)]
#[derive(Debug)]
pub struct Semaphore {
    count: AtomicU32,
    waiters: AtomicU32,
}

impl Semaphore {
    /// A semaphore with `count` (for a primitive built in place, see [`Semaphore::init`]).
    pub fn new(count: u32) -> Semaphore {
        Semaphore { count: AtomicU32::new(count), waiters: AtomicU32::new(0) }
    }

    /// Resets it in place to `count` with no sleepers (the creator, before sharing it).
    pub fn init(&self, count: u32) {
        self.waiters.store(0, Ordering::Relaxed);
        self.count.store(count, Ordering::Release);
    }

    /// The count now (for display; it may change at once).
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// Adds one and wakes a sleeper if there is one. [`SyncError::Overflow`] at `u32::MAX`.
    #[inline]
    pub fn post(&self, w: &mut impl Waiter) -> Result<(), SyncError> {
        let mut c = self.count.load(Ordering::Relaxed);
        loop {
            if c == u32::MAX {
                return Err(SyncError::Overflow);
            }
            // SeqCst with the waiter's SeqCst registration: either it sees the new count, or
            // this sees it registered (and the futex re-checks the count in the kernel).
            match self.count.compare_exchange_weak(c, c + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            w.wake(&self.count, 1);
        }
        Ok(())
    }

    /// Takes one if the count is above zero, else [`SyncError::WouldBlock`].
    #[inline]
    pub fn try_wait(&self) -> Result<(), SyncError> {
        let mut c = self.count.load(Ordering::Relaxed);
        while c > 0 {
            match self.count.compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => c = now,
            }
        }
        Err(SyncError::WouldBlock)
    }

    /// Takes one, sleeping while the count is zero, until `w`'s deadline.
    pub fn wait(&self, w: &mut impl Waiter) -> Result<(), SyncError> {
        loop {
            if self.try_wait().is_ok() {
                return Ok(());
            }
            self.waiters.fetch_add(1, Ordering::SeqCst);
            let r = if self.count.load(Ordering::SeqCst) == 0 { w.wait(&self.count, 0) } else { Ok(Woke::Early) };
            // Wrapping: a peer may have reset the word under us; never a panic.
            let others = self.waiters.fetch_sub(1, Ordering::SeqCst).wrapping_sub(1);
            if let Err(e) = r {
                // A post may have woken us as we gave up: pass it on.
                if others > 0 && self.count.load(Ordering::SeqCst) > 0 {
                    w.wake(&self.count, 1);
                }
                return Err(e);
            }
        }
    }
}

// ---- event --------------------------------------------------------------------------------

/// An event: a counter that notifiers advance and waiters wait to see change.
///
/// `Send` and `Sync`: only atomics, shared by every process that maps the segment.
#[repr(C)]
#[derive(Debug)]
pub struct Event {
    seq: AtomicU32,
    waiters: AtomicU32,
}

impl Default for Event {
    fn default() -> Event {
        Event::new()
    }
}

impl Event {
    /// A fresh event at 0.
    pub fn new() -> Event {
        Event { seq: AtomicU32::new(0), waiters: AtomicU32::new(0) }
    }

    /// Resets it in place (the creator, before sharing it).
    pub fn init(&self) {
        self.waiters.store(0, Ordering::Relaxed);
        self.seq.store(0, Ordering::Release);
    }

    /// The counter now: pass it to [`Event::wait_change`] to wait for the next notify.
    #[inline]
    pub fn current(&self) -> u32 {
        self.seq.load(Ordering::Acquire)
    }

    /// Waits until the counter is no longer `seen`; returns its new value. Whatever a
    /// notifier wrote before notifying is visible after.
    pub fn wait_change(&self, seen: u32, w: &mut impl Waiter) -> Result<u32, SyncError> {
        loop {
            let now = self.seq.load(Ordering::Acquire);
            if now != seen {
                return Ok(now);
            }
            self.waiters.fetch_add(1, Ordering::SeqCst);
            let r = if self.seq.load(Ordering::SeqCst) == seen { w.wait(&self.seq, seen) } else { Ok(Woke::Early) };
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            // A notify_one may have woken us as we gave up: the others see the new value
            // at their next slice at the latest (notify_all wakes them all anyway).
            r?;
        }
    }

    /// Advances the counter and wakes one waiter.
    pub fn notify_one(&self, w: &mut impl Waiter) {
        self.notify(w, 1);
    }

    /// Advances the counter and wakes every waiter.
    pub fn notify_all(&self, w: &mut impl Waiter) {
        self.notify(w, u32::MAX);
    }

    #[inline]
    fn notify(&self, w: &mut impl Waiter, count: u32) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            w.wake(&self.seq, count);
        }
    }
}

// ---- mutex --------------------------------------------------------------------------------

/// How a lock was acquired.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Locked {
    /// The data is as the last owner left it when it unlocked.
    Clean,
    /// The last owner died holding the lock (or the one before, who took over from a dead
    /// owner, died before repairing): repair the data, then [`Mutex::mark_consistent`].
    OwnerDied,
}

/// A mutex between processes: the lock word and the owner's pid.
///
/// `Send` and `Sync`: only atomics, shared by every process that maps the segment.
#[repr(C)]
#[derive(Debug)]
pub struct Mutex {
    word: AtomicU32,
    owner_pid: AtomicU32,
}

impl Default for Mutex {
    fn default() -> Mutex {
        Mutex::new()
    }
}

impl Mutex {
    /// An unlocked mutex.
    pub fn new() -> Mutex {
        Mutex { word: AtomicU32::new(0), owner_pid: AtomicU32::new(0) }
    }

    /// Resets it in place to unlocked (the creator, before sharing it).
    pub fn init(&self) {
        self.owner_pid.store(0, Ordering::Relaxed);
        self.word.store(0, Ordering::Release);
    }

    /// The lock word now (owner tid and flags; for display and tests).
    pub fn word(&self) -> u32 {
        self.word.load(Ordering::Relaxed)
    }

    #[inline]
    fn check(me: Owner) -> Result<(), SyncError> {
        if me.tid == 0 || me.tid >= NOT_RECOVERABLE {
            return Err(SyncError::NotOwner);
        }
        Ok(())
    }

    /// Locks if nobody holds it, else [`SyncError::WouldBlock`]. A dead owner is not looked
    /// for (that takes a syscall): [`Mutex::lock`] does.
    #[inline]
    pub fn try_lock(&self, me: Owner) -> Result<Locked, SyncError> {
        Self::check(me)?;
        // The common case first: free, nobody waiting.
        if self.word.compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            self.owner_pid.store(me.pid, Ordering::Relaxed);
            return Ok(Locked::Clean);
        }
        let cur = self.word.load(Ordering::Relaxed);
        if cur == NOT_RECOVERABLE {
            return Err(SyncError::NotRecoverable);
        }
        if cur & TID_MASK != 0 {
            return Err(SyncError::WouldBlock);
        }
        match self.word.compare_exchange(cur, me.tid | (cur & WAITERS), Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => {
                self.owner_pid.store(me.pid, Ordering::Relaxed);
                Ok(Locked::Clean)
            }
            Err(now) if now == NOT_RECOVERABLE => Err(SyncError::NotRecoverable),
            Err(_) => Err(SyncError::WouldBlock),
        }
    }

    /// Locks, sleeping while another holds it, until `w`'s deadline. Takes the lock from an
    /// owner that died ([`Locked::OwnerDied`]); the death is noticed after one slice of
    /// sleep at most.
    pub fn lock(&self, me: Owner, w: &mut impl Waiter) -> Result<Locked, SyncError> {
        Self::check(me)?;
        // After a sleep, other lockers may sleep too: keep WAITERS set on the way in, so
        // that our unlock wakes the next (Drepper's "Futexes are tricky", mutex 3).
        let mut slept = false;
        let mut check_owner = false;
        loop {
            // Acquire: seeing an owner's tid in the word, see the pid word as that owner
            // left it (0 or its own pid, never a previous owner's; see `unlock_held`).
            let cur = self.word.load(Ordering::Acquire);
            if cur == NOT_RECOVERABLE {
                return Err(SyncError::NotRecoverable);
            }
            let tid = cur & TID_MASK;
            if tid == me.tid {
                return Err(SyncError::Deadlock);
            }
            if tid == 0 {
                let new = me.tid | if slept { WAITERS } else { cur & WAITERS };
                if self.word.compare_exchange(cur, new, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    self.owner_pid.store(me.pid, Ordering::Relaxed);
                    return Ok(Locked::Clean);
                }
                continue;
            }
            if check_owner {
                check_owner = false;
                match self.take_over_if_dead(cur, me, w) {
                    Some(true) => return Ok(Locked::OwnerDied),
                    Some(false) => continue,
                    None => {}
                }
            }
            if cur & WAITERS == 0
                && self.word.compare_exchange(cur, cur | WAITERS, Ordering::Relaxed, Ordering::Relaxed).is_err()
            {
                continue;
            }
            slept = true;
            match w.wait(&self.word, cur | WAITERS) {
                Ok(Woke::Slice) => check_owner = true,
                Ok(Woke::Early) => {}
                Err(e) => {
                    // Before giving up, look at the owner once more: a caller that retries
                    // with short timeouts must still get the lock from a dead owner.
                    let cur = self.word.load(Ordering::Acquire);
                    if cur != NOT_RECOVERABLE && cur & TID_MASK != 0 && self.take_over_if_dead(cur, me, w) == Some(true)
                    {
                        return Ok(Locked::OwnerDied);
                    }
                    // We may have been the one an unlock woke: pass the wake-up on, or
                    // another sleeper waits a whole slice for a free lock.
                    w.wake(&self.word, 1);
                    return Err(e);
                }
            }
        }
    }

    /// If the owner named in `cur` is dead, takes the lock over: `Some(true)` taken,
    /// `Some(false)` lost a race (look again), `None` the owner lives.
    fn take_over_if_dead(&self, cur: u32, me: Owner, w: &mut impl Waiter) -> Option<bool> {
        let pid = self.owner_pid.load(Ordering::Relaxed);
        if w.is_alive(cur & TID_MASK, pid) {
            return None;
        }
        // Forget the dead owner's pid before taking the word: between our taking it and
        // storing our pid, another waiter must not judge us by the dead one's pid (found by
        // the loom model of two waiters).
        if self.owner_pid.compare_exchange(pid, 0, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return Some(false);
        }
        let new = me.tid | INCONSISTENT | WAITERS;
        // AcqRel: a waiter that sees our tid sees the pid word cleared.
        if self.word.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            self.owner_pid.store(me.pid, Ordering::Relaxed);
            return Some(true);
        }
        Some(false)
    }

    /// Unlocks; wakes one sleeper if there may be one. Unlocking with the data never marked
    /// consistent after [`Locked::OwnerDied`] makes the mutex not recoverable (and wakes
    /// every sleeper to tell them).
    pub fn unlock(&self, me: Owner, w: &mut impl Waiter) -> Result<(), SyncError> {
        let cur = self.word.load(Ordering::Relaxed);
        if cur == NOT_RECOVERABLE || cur & TID_MASK != me.tid {
            return Err(SyncError::NotOwner);
        }
        if self.unlock_held(me, cur & INCONSISTENT != 0, w) { Ok(()) } else { Err(SyncError::NotOwner) }
    }

    /// [`Mutex::unlock`] for a guard, which knows whether its data is still marked
    /// inconsistent: one compare-and-swap from our own lock word, so a guard that is not
    /// the owner any more (a copy in a forked child, a lock taken over) releases nothing.
    /// Returns whether it unlocked.
    #[inline]
    pub fn unlock_held(&self, me: Owner, inconsistent: bool, w: &mut impl Waiter) -> bool {
        let new = if inconsistent { NOT_RECOVERABLE } else { 0 };
        let ours = me.tid | if inconsistent { INCONSISTENT } else { 0 };
        let mut cur = self.word.load(Ordering::Relaxed);
        if cur & !WAITERS != ours {
            return false;
        }
        self.owner_pid.store(0, Ordering::Relaxed);
        loop {
            match self.word.compare_exchange_weak(cur, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                // Only the WAITERS bit may have changed (a sleeper set it): again with it.
                Err(now) if now & !WAITERS == ours => cur = now,
                Err(_) => return false,
            }
        }
        if new == NOT_RECOVERABLE {
            w.wake(&self.word, u32::MAX);
        } else if cur & WAITERS != 0 {
            w.wake(&self.word, 1);
        }
        true
    }

    /// Marks the data repaired after [`Locked::OwnerDied`]: unlocking is normal again.
    pub fn mark_consistent(&self, me: Owner) -> Result<(), SyncError> {
        let cur = self.word.load(Ordering::Relaxed);
        if cur == NOT_RECOVERABLE || cur & TID_MASK != me.tid {
            return Err(SyncError::NotOwner);
        }
        self.word.fetch_and(!INCONSISTENT, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A waiter for one thread: never sleeps (returns at once, as a spurious wake-up), times
    /// out after `budget` waits, and treats the tids in `dead` as dead.
    struct Spin {
        budget: u32,
        dead: &'static [u32],
        wakes: u32,
    }

    impl Waiter for Spin {
        fn wait(&mut self, _: &AtomicU32, _: u32) -> Result<Woke, SyncError> {
            if self.budget == 0 {
                return Err(SyncError::TimedOut);
            }
            self.budget -= 1;
            Ok(Woke::Slice)
        }
        fn wake(&mut self, _: &AtomicU32, _: u32) {
            self.wakes += 1;
        }
        fn is_alive(&mut self, tid: u32, _: u32) -> bool {
            !self.dead.contains(&tid)
        }
    }

    const A: Owner = Owner { tid: 10, pid: 10 };
    const B: Owner = Owner { tid: 11, pid: 11 };
    const C: Owner = Owner { tid: 12, pid: 12 };

    fn spin(dead: &'static [u32]) -> Spin {
        Spin { budget: 3, dead, wakes: 0 }
    }

    #[test]
    fn semaphore_counts() {
        let s = Semaphore::new(2);
        let mut w = spin(&[]);
        assert_eq!((s.try_wait(), s.try_wait(), s.try_wait()), (Ok(()), Ok(()), Err(SyncError::WouldBlock)));
        assert_eq!(s.wait(&mut w), Err(SyncError::TimedOut));
        s.post(&mut w).unwrap();
        assert_eq!(w.wakes, 0, "no sleeper, no wake");
        assert_eq!(s.wait(&mut w), Ok(()));
        s.init(u32::MAX);
        assert_eq!(s.post(&mut w), Err(SyncError::Overflow));
    }

    #[test]
    fn event_counts() {
        let e = Event::new();
        let mut w = spin(&[]);
        let seen = e.current();
        assert_eq!(e.wait_change(seen, &mut w), Err(SyncError::TimedOut));
        e.notify_all(&mut w);
        assert_eq!(e.wait_change(seen, &mut w), Ok(seen + 1));
    }

    #[test]
    fn mutex_owner_died_and_not_recoverable() {
        let m = Mutex::new();
        let mut w = spin(&[]);
        assert_eq!(m.lock(A, &mut w), Ok(Locked::Clean));
        assert_eq!(m.try_lock(B), Err(SyncError::WouldBlock));
        assert_eq!(m.unlock(B, &mut w), Err(SyncError::NotOwner));
        // A is alive: B times out.
        assert_eq!(m.lock(B, &mut spin(&[])), Err(SyncError::TimedOut));
        // A dies: B takes over and is told.
        assert_eq!(m.lock(B, &mut spin(&[10])), Ok(Locked::OwnerDied));
        assert_eq!(m.word() & (TID_MASK | INCONSISTENT), B.tid | INCONSISTENT);
        // B dies too, before repairing: C is told again.
        assert_eq!(m.lock(C, &mut spin(&[10, 11])), Ok(Locked::OwnerDied));
        // C unlocks without repairing: nobody can lock it any more.
        m.unlock(C, &mut w).unwrap();
        assert_eq!(m.word(), NOT_RECOVERABLE);
        assert_eq!(m.lock(A, &mut spin(&[])), Err(SyncError::NotRecoverable));
        assert_eq!(m.try_lock(A), Err(SyncError::NotRecoverable));
        // Repairing makes the next unlock a normal one.
        m.init();
        assert_eq!(m.lock(A, &mut w), Ok(Locked::Clean));
        assert_eq!(m.lock(B, &mut spin(&[10])), Ok(Locked::OwnerDied));
        m.mark_consistent(B).unwrap();
        m.unlock(B, &mut w).unwrap();
        assert_eq!(m.lock(C, &mut w), Ok(Locked::Clean));
    }

    #[test]
    fn bad_thread_ids_are_refused() {
        let m = Mutex::new();
        let mut w = spin(&[]);
        assert_eq!(m.lock(Owner { tid: 0, pid: 1 }, &mut w), Err(SyncError::NotOwner));
        assert_eq!(m.try_lock(Owner { tid: NOT_RECOVERABLE, pid: 1 }), Err(SyncError::NotOwner));
    }
}
