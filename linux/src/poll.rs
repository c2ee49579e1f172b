//! The poller: one `epoll` over any mix of Ember endpoints and raw file descriptors, with a
//! fixed-capacity event array (no heap), timeouts, and `timerfd` timers for daemon ticks.
//!
//! ```no_run
//! # fn main() -> ember_linux::Result<()> {
//! use core::time::Duration;
//! use ember_linux::poll::{Interest, Poller, Timer};
//!
//! let (rx, _tx) = ember_linux::pipe::pipe()?;
//! let tick = Timer::periodic(Duration::from_millis(100))?;
//! let mut poller: Poller<8> = Poller::new()?;
//! poller.add(&rx, 1, Interest::READ)?;
//! poller.add(&tick, 2, Interest::READ)?;
//! for ready in poller.wait(Some(Duration::from_secs(1)))? {
//!     match ready.token {
//!         1 => { /* rx.recv_frame(...) */ }
//!         2 => { tick.expirations()?; }
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Registration is level-triggered by default: an endpoint that still has data is reported
//! again on the next wait; [`Interest::EDGE`] reports only new readiness. Every fd stays
//! owned by the caller; drop it only after [`Poller::remove`] (or the poller itself): a
//! closed fd leaves epoll on its own only when no duplicate of it remains open.

use core::time::Duration;

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::time::{ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};

use crate::error::{Error, Result};

/// What to wait for on an fd.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest(EventFlags);

impl Interest {
    /// Readable (or end of stream, or an error).
    pub const READ: Interest = Interest(EventFlags::IN);
    /// Writable.
    pub const WRITE: Interest = Interest(EventFlags::OUT);
    /// Readable or writable.
    pub const BOTH: Interest = Interest(EventFlags::IN.union(EventFlags::OUT));
    /// Edge-triggered: combine with `|`.
    pub const EDGE: Interest = Interest(EventFlags::ET);

    /// Both sets of interests.
    pub const fn or(self, other: Interest) -> Interest {
        Interest(self.0.union(other.0))
    }
}

impl core::ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, other: Interest) -> Interest {
        self.or(other)
    }
}

/// One ready fd, as [`Poller::wait`] reports it.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The token given to [`Poller::add`].
    pub token: u64,
    /// Readable (`EPOLLIN`).
    pub readable: bool,
    /// Writable (`EPOLLOUT`).
    pub writable: bool,
    /// The peer hung up (`EPOLLHUP`/`EPOLLRDHUP`): reads drain what is left, then end.
    pub hangup: bool,
    /// An error is pending on the fd (`EPOLLERR`).
    pub error: bool,
}

impl Ready {
    fn from_event(e: &Event) -> Ready {
        let f = e.flags;
        Ready {
            token: e.data.u64(),
            readable: f.contains(EventFlags::IN),
            writable: f.contains(EventFlags::OUT),
            hangup: f.intersects(EventFlags::HUP | EventFlags::RDHUP),
            error: f.contains(EventFlags::ERR),
        }
    }
}

/// An `epoll` instance with room for `N` events per wait.
///
/// `Send` and `Sync`: it owns the epoll fd; registration (`epoll_ctl`) is safe from any thread,
/// and the event array is only touched by [`Poller::wait`] through `&mut self`.
pub struct Poller<const N: usize = 32> {
    fd: OwnedFd,
    events: [Event; N],
}

impl<const N: usize> core::fmt::Debug for Poller<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Poller").field("fd", &self.fd).field("capacity", &N).finish_non_exhaustive()
    }
}

// SAFETY: the only non-`Send`/`Sync` part is rustix's `EventData`, a union that can hold a
// `*mut c_void`. The poller registers every fd with a `u64` token (`EventData::new_u64`) and
// reads events back only as `u64`s (`Ready::from_event`): no pointer is ever stored there
// or dereferenced, so the array is plain data that may move to another thread.
#[allow(unsafe_code)]
unsafe impl<const N: usize> Send for Poller<N> {}
// SAFETY: as above; besides, `&Poller` only reaches the fd (`epoll_ctl`, which the kernel
// serialises): the event array is read and written only by `wait`, through `&mut self`.
#[allow(unsafe_code)]
unsafe impl<const N: usize> Sync for Poller<N> {}

impl<const N: usize> Poller<N> {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub fn new() -> Result<Poller<N>> {
        const { assert!(N > 0, "a Poller needs room for at least one event") };
        let empty = Event { flags: EventFlags::empty(), data: EventData::new_u64(0) };
        Ok(Poller { fd: epoll::create(CreateFlags::CLOEXEC)?, events: [empty; N] })
    }

    /// Watches `fd` for `interest`, reporting it with `token` (`epoll_ctl(ADD)`). Peer
    /// hang-up and errors are always reported.
    pub fn add(&self, fd: impl AsFd, token: u64, interest: Interest) -> Result<()> {
        Ok(epoll::add(&self.fd, fd, EventData::new_u64(token), interest.0 | EventFlags::RDHUP)?)
    }

    /// Changes what `fd` is watched for (`epoll_ctl(MOD)`).
    pub fn modify(&self, fd: impl AsFd, token: u64, interest: Interest) -> Result<()> {
        Ok(epoll::modify(&self.fd, fd, EventData::new_u64(token), interest.0 | EventFlags::RDHUP)?)
    }

    /// Stops watching `fd` (`epoll_ctl(DEL)`).
    pub fn remove(&self, fd: impl AsFd) -> Result<()> {
        Ok(epoll::delete(&self.fd, fd)?)
    }

    /// Waits until at least one fd is ready or `timeout` passes (`None`: forever), and
    /// returns the ready ones (at most `N`; more stay ready for the next wait). A timeout
    /// gives an empty list. A signal that interrupts the wait (`EINTR`) does not end it
    /// early: it goes on with the time left.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Events<'_>> {
        self.wait_max(N, timeout)
    }

    /// As [`Poller::wait`], returning at most `max` ready fds (at least one, at most `N`):
    /// for a caller whose own buffer holds fewer than `N`, so none is taken off the ready
    /// list and then dropped (which would lose an edge-triggered event).
    pub fn wait_max(&mut self, max: usize, timeout: Option<Duration>) -> Result<Events<'_>> {
        let max = max.clamp(1, N);
        // A timeout too far out to add to the clock is no timeout.
        let deadline = timeout.and_then(|t| now().checked_add(t));
        loop {
            // Waits of up to `i32::MAX` ms go to `epoll_wait` on every kernel; a longer one
            // would need `epoll_pwait2` (Linux 5.11), so it is waited in slices.
            let ts = deadline.map(|d| timespec(d.saturating_sub(now()).min(MAX_SLICE)));
            match epoll::wait(&self.fd, &mut self.events[..max], ts.as_ref()) {
                Ok(0) if deadline.is_some_and(|d| now() < d) => {}
                Ok(n) => return Ok(Events(self.events[..n].iter())),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl<const N: usize> Poller<N> {
    /// [`Poller::wait_max`] that also ends, with [`Error::Cancelled`], when `cancel` is
    /// cancelled (before or during the wait): `poll` on the epoll fd and the canceler's
    /// eventfd, then `epoll_wait` with a zero timeout. (A loop that wants the canceler as
    /// one more event can instead [`Poller::add`] it: it is an fd.)
    pub fn wait_cancellable(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
        cancel: &crate::cancel::Canceler,
    ) -> Result<Events<'_>> {
        let max = max.clamp(1, N);
        let deadline = timeout.and_then(|t| now().checked_add(t));
        loop {
            match wait_fd_cancellable(&self.fd, rustix::event::PollFlags::IN, deadline, Some(cancel)) {
                Ok(()) => {}
                Err(Error::TimedOut) => return Ok(Events(self.events[..0].iter())),
                Err(e) => return Err(e),
            }
            let zero = timespec(Duration::ZERO);
            match epoll::wait(&self.fd, &mut self.events[..max], Some(&zero)) {
                // Readable, then taken by another waiter on the same epoll: wait again.
                Ok(0) => {}
                Ok(n) => return Ok(Events(self.events[..n].iter())),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The longest single `epoll_wait` (its timeout is an `int` of milliseconds).
const MAX_SLICE: Duration = Duration::from_millis(i32::MAX as u64);

/// The ready fds of one [`Poller::wait`].
///
/// Neither `Send` nor `Sync`: it borrows rustix's epoll events, whose data field can hold a
/// raw pointer (Ember only stores tokens there); collect the [`Ready`]s to move them.
pub struct Events<'a>(core::slice::Iter<'a, Event>);

impl core::fmt::Debug for Events<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Events").field("remaining", &self.0.len()).finish_non_exhaustive()
    }
}

impl Iterator for Events<'_> {
    type Item = Ready;
    fn next(&mut self) -> Option<Ready> {
        self.0.next().map(Ready::from_event)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Events<'_> {}

impl<const N: usize> AsFd for Poller<N> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until `fd` is ready for `flags` (`POLLIN`, `POLLOUT`, ...) or the monotonic
/// `deadline` (from [`now`]; `None`: no limit) passes ([`Error::TimedOut`]), with `poll`. A
/// signal does not end the wait early; a deadline already passed still looks once (what is
/// ready now is reported).
pub fn wait_fd(fd: impl AsFd, flags: rustix::event::PollFlags, deadline: Option<Duration>) -> Result<()> {
    wait_fd_cancellable(fd, flags, deadline, None)
}

/// [`wait_fd`] that also ends, with [`Error::Cancelled`], when `cancel` is cancelled
/// (before the wait, or during it: `poll` watches the canceler's eventfd too). A
/// cancelled canceler wins over a ready fd.
pub fn wait_fd_cancellable(
    fd: impl AsFd,
    flags: rustix::event::PollFlags,
    deadline: Option<Duration>,
    cancel: Option<&crate::cancel::Canceler>,
) -> Result<()> {
    crate::cancel::check(cancel)?;
    wait_fd_or_cancel_fd(fd, flags, deadline, cancel.map(AsFd::as_fd))?;
    crate::cancel::check(cancel)
}

/// [`wait_fd`] that also ends with [`Error::Cancelled`] once `cancel_fd` (a canceler's
/// eventfd, or a duplicate of it) is readable: for an owner that cannot borrow the
/// [`Canceler`](crate::cancel::Canceler) itself.
pub(crate) fn wait_fd_or_cancel_fd(
    fd: impl AsFd,
    flags: rustix::event::PollFlags,
    deadline: Option<Duration>,
    cancel_fd: Option<BorrowedFd<'_>>,
) -> Result<()> {
    use rustix::event::{PollFd, PollFlags};
    loop {
        let ts = deadline.map(|d| timespec(d.saturating_sub(now())));
        let r = match cancel_fd {
            Some(c) => {
                let mut fds = [PollFd::new(&fd, flags), PollFd::new(&c, PollFlags::IN)];
                let r = rustix::event::poll(&mut fds, ts.as_ref());
                if r.is_ok() && !fds[1].revents().is_empty() {
                    return Err(Error::Cancelled);
                }
                r
            }
            None => {
                let mut fds = [PollFd::new(&fd, flags)];
                rustix::event::poll(&mut fds, ts.as_ref())
            }
        };
        match r {
            Ok(0) => return Err(Error::TimedOut),
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A timeout that starts counting the first time it is needed: when a wait is about to
/// block, or when a caller asks how much is left. Work that never waits reads no clock
/// (a `clock_gettime` is tens of nanoseconds, a large part of a shared-memory round trip).
///
/// One `Deadline` passed through every wait of an operation bounds the whole operation:
/// the time spent before its first wait, which did not block, plus `timeout`.
///
/// It may also carry a [`Canceler`](crate::cancel::Canceler)
/// ([`Deadline::with_canceler`]): every wait it bounds then also ends with
/// [`Error::Cancelled`] when that is cancelled (the RPC client and server, the
/// shared-memory `_until` methods).
///
/// `Send` and `Sync`: plain data and a shared reference to a `Sync` canceler.
#[derive(Debug, Clone, Copy)]
pub struct Deadline<'c> {
    timeout: Option<Duration>,
    end: Option<Duration>,
    cancel: Option<&'c crate::cancel::Canceler>,
}

/// Equal when the timeouts, the ends and the cancelers (by address) are.
impl PartialEq for Deadline<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.timeout == other.timeout
            && self.end == other.end
            && match (self.cancel, other.cancel) {
                (None, None) => true,
                (Some(a), Some(b)) => core::ptr::eq(a, b),
                _ => false,
            }
    }
}

impl Eq for Deadline<'_> {}

impl Deadline<'static> {
    /// No limit.
    pub const NEVER: Deadline<'static> = Deadline { timeout: None, end: None, cancel: None };

    /// `timeout` from the first wait (`None`: no limit; zero: only what is there now).
    pub const fn after(timeout: Option<Duration>) -> Deadline<'static> {
        Deadline { timeout, end: None, cancel: None }
    }
}

impl<'c> Deadline<'c> {
    /// The same deadline, whose waits also end with [`Error::Cancelled`] when `cancel` is
    /// cancelled (`None`: none).
    pub const fn with_canceler<'d>(self, cancel: Option<&'d crate::cancel::Canceler>) -> Deadline<'d> {
        Deadline { timeout: self.timeout, end: self.end, cancel }
    }

    /// The canceler its waits watch, if any.
    pub const fn canceler(&self) -> Option<&'c crate::cancel::Canceler> {
        self.cancel
    }

    /// The timeout it was made with.
    pub const fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether it is a zero timeout: look at what is there, never wait.
    pub fn is_zero(&self) -> bool {
        self.timeout == Some(Duration::ZERO)
    }

    /// The end on the monotonic clock ([`now`]), starting the count if it has not started;
    /// `None` without a limit.
    pub fn end(&mut self) -> Option<Duration> {
        let timeout = self.timeout?;
        Some(*self.end.get_or_insert_with(|| now().saturating_add(timeout)))
    }

    /// The time left (zero once passed), starting the count if it has not started; `None`
    /// without a limit.
    pub fn remaining(&mut self) -> Option<Duration> {
        let end = self.end()?;
        Some(end.saturating_sub(now()))
    }

    /// Whether it has passed (starting the count if it has not started: `false` then).
    pub fn expired(&mut self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }

    /// The time left capped at `cap` (one slice of a long wait); `None` once passed.
    pub(crate) fn slice(&mut self, cap: Duration) -> Option<Duration> {
        match self.remaining() {
            None => Some(cap),
            Some(left) if left.is_zero() => None,
            Some(left) => Some(left.min(cap)),
        }
    }
}

/// The monotonic clock, as a duration since boot (`clock_gettime(CLOCK_MONOTONIC)`).
pub fn now() -> Duration {
    let t = rustix::time::clock_gettime(ClockId::Monotonic);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

pub(crate) fn timespec(d: Duration) -> Timespec {
    Timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as _, tv_nsec: d.subsec_nanos() as _ }
}

/// A `timerfd` on the monotonic clock: readable when it has expired, pollable with the
/// other fds. Nonblocking: [`Timer::expirations`] never waits.
///
/// `Send` and `Sync`: an owned timerfd; the kernel serialises its operations.
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// A disarmed timer (`timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)`).
    pub fn new() -> Result<Timer> {
        let fd =
            rustix::time::timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK)?;
        Ok(Timer { fd })
    }

    /// A timer that fires every `interval`, first after one `interval` (a daemon's tick). A
    /// zero interval is `EINVAL`.
    pub fn periodic(interval: Duration) -> Result<Timer> {
        if interval.is_zero() {
            return Err(Error::Os(Errno::INVAL));
        }
        let t = Timer::new()?;
        t.set(interval, interval)?;
        Ok(t)
    }

    /// A timer that fires once, after `after` (at once for zero).
    pub fn once(after: Duration) -> Result<Timer> {
        let t = Timer::new()?;
        t.set(after, Duration::ZERO)?;
        Ok(t)
    }

    /// Arms the timer: first expiry after `first` (zero: at once), then every `interval`
    /// (zero: only once). `timerfd_settime`; only [`Timer::disarm`] disarms.
    pub fn set(&self, first: Duration, interval: Duration) -> Result<()> {
        // A zero `it_value` would disarm the timer; the smallest nonzero one fires at once.
        self.settime(first.max(Duration::from_nanos(1)), interval)
    }

    /// Disarms the timer.
    pub fn disarm(&self) -> Result<()> {
        self.settime(Duration::ZERO, Duration::ZERO)
    }

    fn settime(&self, first: Duration, interval: Duration) -> Result<()> {
        let spec = Itimerspec { it_interval: timespec(interval), it_value: timespec(first) };
        rustix::time::timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec)?;
        Ok(())
    }

    /// How many times the timer expired since the last call (`read(2)` of the counter,
    /// which resets it); [`Error::WouldBlock`] if none. More than one means ticks were
    /// missed (the process was late).
    pub fn expirations(&self) -> Result<u64> {
        let mut buf = [0u8; 8];
        loop {
            return match rustix::io::read(&self.fd, &mut buf) {
                Ok(8) => Ok(u64::from_ne_bytes(buf)),
                Ok(_) => Err(Error::Os(Errno::IO)),
                Err(Errno::INTR) => continue,
                Err(e) => Err(e.into()),
            };
        }
    }
}

impl AsFd for Timer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
