//! Cancellation of blocking calls: a [`Canceler`] that a signal handler or another thread
//! triggers, ending every wait it is given with [`Error::Cancelled`].
//!
//! A blocking call waits in one of three ways, and each one is watched:
//!
//! ```text
//!  kernel object (pipe, FIFO, socket, mq)   poll([endpoint fd, canceler eventfd], deadline)
//!  shared-memory futex word                  futex_waitv([shm word, canceler word], slice)
//!                                            (Linux 5.16+; older kernels: 10 ms slices)
//!  SysV queue (no fd, no futex)              the back-off sleep is a poll on the eventfd
//! ```
//!
//! [`Canceler::cancel`] stores 1 in the canceler's word, wakes its futex and writes the
//! eventfd: three system calls that take no lock and allocate nothing, so it is
//! async-signal-safe (a `SIGINT` handler may call it). From then on every call given this
//! canceler returns [`Error::Cancelled`], at its start or as soon as its wait notices,
//! until [`Canceler::reset`]: cancellation is a state, not an event, so a loop that checks
//! nothing else still ends, and a cancel that arrives between two calls is not lost.
//!
//! A cancelled call consumed nothing: a frame is received whole or not at all (a stream
//! frame that has started to arrive stays in the receiver's buffer for the next call), and
//! a send that had not started sent nothing. A stream send cancelled after its first byte
//! went out finishes its frame first (bounded by
//! [`FINISH_TIMEOUT`](crate::transport::FINISH_TIMEOUT)), as a nonblocking one does: a
//! half-written frame would corrupt the stream.
//!
//! The blocking calls that take a canceler:
//! [`TimedReceiver::recv_frame_cancellable`](crate::TimedReceiver::recv_frame_cancellable)
//! (every frame receiver), [`TimedSender::send_frame_cancellable`](crate::TimedSender::send_frame_cancellable)
//! (every frame sender), the shared-memory endpoints' `*_cancellable` methods,
//! [`crate::poll::wait_fd_cancellable`], [`crate::poll::Poller::wait_cancellable`], the
//! connects and accepts of [`crate::uds`] and [`crate::net`] (`*_timeout`,
//! `*_cancellable`), the shared mutex, semaphore and event waits (`*_with`), the signal
//! waits, the RPC `_until` methods (through [`crate::poll::Deadline::with_canceler`]) and
//! a D-Bus connection ([`crate::dbus::ConnectionWith::set_canceler`]). A [`crate::poll::Poller`]
//! can also watch a canceler like any fd ([`AsFd`]).
//!
//! # Panics
//!
//! Nothing here panics.
//!
//! # Example
//!
//! A thread cancels a receive that would otherwise wait for ever; the frame sent afterwards
//! is received intact once the canceler is reset.
//!
//! ```
//! # fn main() -> ember_linux::Result<()> {
//! use ember_linux::cancel::Canceler;
//! use ember_linux::{Error, FrameSender, TimedReceiver};
//!
//! let (mut rx, mut tx) = ember_linux::pipe::pipe()?;
//! let cancel = Canceler::new()?;
//! let mut buf = [0u8; 64];
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         std::thread::sleep(std::time::Duration::from_millis(20));
//!         cancel.cancel();
//!     });
//!     assert_eq!(rx.recv_frame_cancellable(&mut buf, None, &cancel), Err(Error::Cancelled));
//! });
//! cancel.reset();
//! tx.send_msg(1, 1, &7u32, &mut [0u8; 64])?;
//! let n = rx.recv_frame_cancellable(&mut buf, None, &cancel)?;
//! assert_eq!(ember_core::message::decode::<u32>(&buf[..n])?.1, 7);
//! # Ok(())
//! # }
//! ```

use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use core::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::thread::futex;

use crate::error::{Error, Result};

/// How often a futex wait looks at the canceler on a kernel without `futex_waitv` (before
/// Linux 5.16, or under an emulator or valgrind that lacks it).
pub const FALLBACK_SLICE: Duration = Duration::from_millis(10);

/// A cancel handle: an eventfd and a futex word. See the [module docs](self).
///
/// Share it by reference (`&Canceler` is enough for [`Canceler::cancel`]), through an
/// `Arc`, or from a `static` (`std::sync::OnceLock<Canceler>`) for a signal handler.
///
/// `Send` and `Sync`: an owned eventfd and an atomic word; every method takes `&self`.
#[derive(Debug)]
pub struct Canceler {
    fd: OwnedFd,
    word: AtomicU32,
}

impl Canceler {
    /// A canceler that is not cancelled (`eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`).
    pub fn new() -> Result<Canceler> {
        Ok(Canceler { fd: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?, word: AtomicU32::new(0) })
    }

    /// Cancels: every wait given this canceler ends with [`Error::Cancelled`], now and until
    /// [`Canceler::reset`]. One atomic store, one `FUTEX_WAKE` and one `write(2)` of the
    /// eventfd: async-signal-safe (no lock, no allocation, `errno` untouched). Calling it
    /// again is harmless.
    pub fn cancel(&self) {
        self.word.store(1, Ordering::SeqCst);
        let _ = futex::wake(&self.word, futex::Flags::empty(), i32::MAX as u32);
        // EAGAIN (the counter at its maximum) still leaves the eventfd readable.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Makes the canceler usable again: clears the word and drains the eventfd. Call it
    /// when no call is waiting on it (a call running meanwhile may see either state).
    pub fn reset(&self) {
        self.word.store(0, Ordering::SeqCst);
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }

    /// Whether [`Canceler::cancel`] was called since the last [`Canceler::reset`] (one
    /// atomic load).
    pub fn is_cancelled(&self) -> bool {
        self.word.load(Ordering::SeqCst) != 0
    }

    /// [`Error::Cancelled`] when cancelled, else `Ok`.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }
}

/// The eventfd: readable while cancelled, for a `poll`/`epoll` loop.
impl AsFd for Canceler {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// [`Canceler::check`] of an optional canceler.
pub(crate) fn check(cancel: Option<&Canceler>) -> Result<()> {
    cancel.map_or(Ok(()), Canceler::check)
}

/// Whether `futex_waitv` works here: 0 unknown, 1 yes, 2 no.
static WAITV: AtomicU8 = AtomicU8::new(0);

/// `FUTEX_WAIT` (shared) while `*word == expected`, for at most `slice`, also ending when
/// `cancel` is cancelled ([`Error::Cancelled`]). Returns normally on a wake-up, a value
/// mismatch, a signal or the slice's end; the caller re-checks its condition.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, slice: Duration, cancel: Option<&Canceler>) -> Result<()> {
    let Some(c) = cancel else { return plain_wait(word, expected, slice) };
    c.check()?;
    if WAITV.load(Ordering::Relaxed) != 2 {
        let mut waiters = [futex::Wait::new(), futex::Wait::new()];
        waiters[0].val = u64::from(expected);
        waiters[0].uaddr = futex::WaitPtr::new(word.as_ptr().cast());
        waiters[0].flags = futex::WaitFlags::SIZE_U32;
        waiters[1].val = 0;
        waiters[1].uaddr = futex::WaitPtr::new(c.word.as_ptr().cast());
        waiters[1].flags = futex::WaitFlags::SIZE_U32;
        // futex_waitv takes an absolute time on the given clock.
        let end = crate::poll::timespec(crate::poll::now().saturating_add(slice));
        match futex::waitv(&waiters, futex::WaitvFlags::empty(), Some(&end), rustix::time::ClockId::Monotonic) {
            Ok(_) | Err(Errno::AGAIN | Errno::TIMEDOUT | Errno::INTR) => {
                WAITV.store(1, Ordering::Relaxed);
                return c.check();
            }
            Err(Errno::NOSYS | Errno::INVAL | Errno::PERM) if WAITV.load(Ordering::Relaxed) == 0 => {
                WAITV.store(2, Ordering::Relaxed);
            }
            Err(e) => return Err(e.into()),
        }
    }
    plain_wait(word, expected, slice.min(FALLBACK_SLICE))?;
    c.check()
}

fn plain_wait(word: &AtomicU32, expected: u32, slice: Duration) -> Result<()> {
    let ts = futex::Timespec { tv_sec: slice.as_secs() as _, tv_nsec: slice.subsec_nanos() as _ };
    match futex::wait(word, futex::Flags::empty(), expected, Some(&ts)) {
        Ok(()) | Err(Errno::AGAIN | Errno::TIMEDOUT | Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sleeps for `d` (a signal does not shorten it), ending early with [`Error::Cancelled`]
/// when `cancel` is cancelled: a `poll` on its eventfd, or `clock_nanosleep` without one.
pub(crate) fn sleep(d: Duration, cancel: Option<&Canceler>) -> Result<()> {
    let end = crate::poll::now().saturating_add(d);
    loop {
        check(cancel)?;
        let left = end.saturating_sub(crate::poll::now());
        if left.is_zero() {
            return Ok(());
        }
        let ts = crate::poll::timespec(left);
        match cancel {
            Some(c) => {
                let mut fds = [PollFd::new(&c.fd, PollFlags::IN)];
                match rustix::event::poll(&mut fds, Some(&ts)) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                let _ = rustix::thread::nanosleep(&ts);
            }
        }
    }
}

/// Sleeps of 1 ms doubling to 16 ms until a deadline.
pub(crate) struct Backoff {
    end: Option<Duration>,
    nap: Duration,
}

impl Backoff {
    pub(crate) fn new(timeout: Option<Duration>) -> Backoff {
        Backoff { end: crate::transport::end_of(timeout), nap: Duration::from_millis(1) }
    }

    /// The next sleep: [`Error::TimedOut`] once the deadline passed, [`Error::Cancelled`]
    /// when cancelled.
    pub(crate) fn sleep(&mut self, cancel: Option<&Canceler>) -> Result<()> {
        let mut nap = self.nap;
        if let Some(end) = self.end {
            let left = end.saturating_sub(crate::poll::now());
            if left.is_zero() {
                return Err(Error::TimedOut);
            }
            nap = nap.min(left);
        }
        crate::cancel::sleep(nap, cancel)?;
        self.nap = (self.nap * 2).min(Duration::from_millis(16));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The futex wait on a kernel without `futex_waitv` (forced here): it looks at the
    /// canceler every [`FALLBACK_SLICE`], so a cancel still ends it, and a wake-up on the
    /// word still returns at once.
    #[test]
    fn fallback_without_futex_waitv() {
        WAITV.store(2, Ordering::Relaxed);
        let word = AtomicU32::new(0);
        let c = Canceler::new().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(30));
                c.cancel();
            });
            // Returns after each slice (the caller re-checks); ends with Cancelled.
            let mut slices = 0u32;
            loop {
                match futex_wait(&word, 0, Duration::from_secs(60), Some(&c)) {
                    Ok(()) => slices += 1,
                    Err(e) => {
                        assert_eq!(e, Error::Cancelled);
                        break;
                    }
                }
                assert!(slices < 100_000);
            }
        });
        c.reset();
        // A value that already differs: no sleep at all.
        word.store(1, Ordering::SeqCst);
        assert_eq!(futex_wait(&word, 0, Duration::from_secs(60), Some(&c)), Ok(()));
        WAITV.store(0, Ordering::Relaxed);
    }

    #[test]
    fn state_and_sleep() {
        let c = Canceler::new().unwrap();
        assert!(!c.is_cancelled());
        assert_eq!(sleep(Duration::from_millis(1), Some(&c)), Ok(()));
        c.cancel();
        c.cancel();
        assert!(c.is_cancelled());
        assert_eq!(c.check(), Err(Error::Cancelled));
        assert_eq!(sleep(Duration::from_secs(60), Some(&c)), Err(Error::Cancelled));
        c.reset();
        assert_eq!(check(Some(&c)), Ok(()));
        // The eventfd is drained: a poll on it sees nothing.
        assert_eq!(crate::poll::wait_fd(&c, PollFlags::IN, Some(crate::poll::now())), Err(Error::TimedOut));
    }
}
