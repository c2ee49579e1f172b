//! Signals: sets, per-thread masks, a `signalfd` receiver, sending with a value, and a
//! daemon helper for `SIGTERM`/`SIGINT`/`SIGHUP`.
//!
//! **The per-thread mask rule**: a signal is delivered to one thread that does not block
//! it. To receive signals through a [`SignalFd`], block them in *every* thread of the process
//! (block them in the main thread before spawning any: threads inherit the mask), or one
//! unblocked thread will take them with the default action (terminate, for `SIGTERM`).
//! [`block`] changes only the calling thread's mask (`rt_sigprocmask`).
//!
//! rustix has no signal masks, signalfd or sigqueue outside its unstable runtime module, so
//! these are raw syscalls ([`crate::sys`]).

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::sys::{self, KernelSigset, SignalfdSiginfo, sig_bit};

pub use linux_raw_sys::general::{SIGHUP, SIGINT, SIGPIPE, SIGTERM, SIGUSR1, SIGUSR2};

/// The lowest real-time signal no C library keeps for itself: the kernel's real-time
/// signals are 32..=64, glibc reserves 32 and 33 and musl 32 to 34 for threads and timers.
/// Unlike standard signals, which coalesce while pending, real-time signals queue: each
/// `sigqueue` is delivered once, in order, with its value (up to `RLIMIT_SIGPENDING`).
pub const FIRST_FREE_RT_SIGNAL: u32 = 35;
/// The highest real-time signal.
pub const LAST_RT_SIGNAL: u32 = 64;

/// A set of signals (the kernel's 64-bit `sigset_t`).
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SigSet(KernelSigset);

impl SigSet {
    /// No signal.
    pub const fn empty() -> SigSet {
        SigSet(0)
    }

    /// The set of `signals`.
    pub const fn of(signals: &[u32]) -> SigSet {
        let mut s = 0;
        let mut i = 0;
        while i < signals.len() {
            if signals[i] >= 1 && signals[i] <= 64 {
                s |= sig_bit(signals[i]);
            }
            i += 1;
        }
        SigSet(s)
    }

    /// Adds `sig` (1..=64; others are ignored).
    pub fn add(&mut self, sig: u32) {
        if (1..=64).contains(&sig) {
            self.0 |= sig_bit(sig);
        }
    }

    /// Removes `sig`.
    pub fn remove(&mut self, sig: u32) {
        if (1..=64).contains(&sig) {
            self.0 &= !sig_bit(sig);
        }
    }

    /// Whether `sig` is in the set.
    pub fn contains(&self, sig: u32) -> bool {
        (1..=64).contains(&sig) && self.0 & sig_bit(sig) != 0
    }

    /// The raw mask.
    pub const fn bits(&self) -> u64 {
        self.0
    }
}

/// Blocks `set` in the calling thread (`rt_sigprocmask(SIG_BLOCK)`); returns the previous
/// mask.
pub fn block(set: SigSet) -> Result<SigSet> {
    Ok(SigSet(sys::rt_sigprocmask(linux_raw_sys::general::SIG_BLOCK, set.0)?))
}

/// Unblocks `set` in the calling thread; returns the previous mask.
pub fn unblock(set: SigSet) -> Result<SigSet> {
    Ok(SigSet(sys::rt_sigprocmask(linux_raw_sys::general::SIG_UNBLOCK, set.0)?))
}

/// Sets the calling thread's mask to `set`; returns the previous mask.
pub fn set_mask(set: SigSet) -> Result<SigSet> {
    Ok(SigSet(sys::rt_sigprocmask(linux_raw_sys::general::SIG_SETMASK, set.0)?))
}

/// One signal, as a [`SignalFd`] reports it.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalInfo {
    /// The signal number.
    pub signal: u32,
    /// How it was sent: `SI_USER` (0, `kill`), `SI_QUEUE` (-1, `sigqueue`), ...
    pub code: i32,
    /// The sender's pid.
    pub pid: u32,
    /// The sender's real uid.
    pub uid: u32,
    /// The value sent with `sigqueue` (`sival_int`); 0 otherwise.
    pub value: i32,
}

/// A `signalfd`: the signals of a mask as readable records, pollable with the other fds.
/// The signals must be blocked (see the module docs); it does not block them itself.
///
/// `Send` and `Sync`: an owned signalfd; reading takes `&mut self`.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// `signalfd4(-1, set, SFD_CLOEXEC | SFD_NONBLOCK?)`.
    pub fn new(set: SigSet, nonblocking: bool) -> Result<SignalFd> {
        use linux_raw_sys::general::{O_CLOEXEC, O_NONBLOCK};
        let flags = O_CLOEXEC | if nonblocking { O_NONBLOCK } else { 0 };
        Ok(SignalFd { fd: sys::signalfd4(set.0, flags)?.into_owned() })
    }

    /// Reads the next signal (`read(2)` of one `signalfd_siginfo`); [`Error::WouldBlock`]
    /// in nonblocking mode when none is pending.
    pub fn recv(&mut self) -> Result<SignalInfo> {
        let mut buf = [0u8; 128];
        loop {
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(128) => break,
                Ok(_) => return Err(Error::Os(Errno::IO)),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let s = SignalfdSiginfo::from_bytes(&buf);
        Ok(SignalInfo { signal: s.ssi_signo, code: s.ssi_code, pid: s.ssi_pid, uid: s.ssi_uid, value: s.ssi_int })
    }

    /// [`SignalFd::recv`], waiting at most `timeout` (`None`: no limit; zero: only a signal
    /// already pending) for a signal: [`Error::TimedOut`] when it passes.
    pub fn recv_timeout(&mut self, timeout: Option<core::time::Duration>) -> Result<SignalInfo> {
        self.recv_with(timeout, None)
    }

    /// [`SignalFd::recv_timeout`] that also ends with [`Error::Cancelled`] when `cancel` is
    /// cancelled (`poll` on the signalfd and the canceler), nothing read.
    pub fn recv_with(
        &mut self,
        timeout: Option<core::time::Duration>,
        cancel: Option<&crate::cancel::Canceler>,
    ) -> Result<SignalInfo> {
        crate::cancel::check(cancel)?;
        if timeout.is_some() || cancel.is_some() {
            let end = crate::transport::end_of(timeout);
            loop {
                crate::poll::wait_fd_cancellable(&self.fd, rustix::event::PollFlags::IN, end, cancel)?;
                match self.recv() {
                    // Readable, then taken by another reader of the signalfd (or a
                    // nonblocking one): wait again.
                    Err(Error::WouldBlock) => {}
                    r => return r,
                }
            }
        }
        self.recv()
    }
}

impl AsFd for SignalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Sends `signal` to process `pid` with `value` (`rt_sigqueueinfo`, as `sigqueue(3)`).
pub fn send_with_value(pid: u32, signal: u32, value: i32) -> Result<()> {
    Ok(sys::rt_sigqueueinfo(pid as i32, signal, value)?)
}

/// Sends `signal` through a pidfd (`pidfd_send_signal`): never to a process that reused
/// the pid. The real-time signals the C library reserves for itself (32 to
/// [`FIRST_FREE_RT_SIGNAL`]` - 1`) are `EINVAL`.
pub fn send_pidfd(pidfd: impl AsFd, signal: u32) -> Result<()> {
    // The C library's own real-time signals, and numbers that are no signal, are refused.
    if !(1..32).contains(&signal) && !(FIRST_FREE_RT_SIGNAL..=LAST_RT_SIGNAL).contains(&signal) {
        return Err(Error::Os(Errno::INVAL));
    }
    Ok(sys::pidfd_send_signal(pidfd.as_fd(), signal)?)
}

/// Sends `signal` to one thread (`tgkill(getpid(), tid, signal)`); a thread's own tid is
/// `rustix::thread::gettid()`.
pub fn send_to_thread(tid: i32, signal: u32) -> Result<()> {
    Ok(sys::tgkill(rustix::process::getpid().as_raw_nonzero().get(), tid, signal)?)
}

/// What a daemon is asked to do.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonEvent {
    /// `SIGTERM` or `SIGINT`: shut down gracefully.
    Shutdown {
        /// Which of the two.
        signal: u32,
        /// Who sent it.
        pid: u32,
    },
    /// `SIGHUP`: reload the configuration.
    Reload,
}

/// Graceful shutdown on `SIGTERM`/`SIGINT` and reload on `SIGHUP`: blocks the three in the
/// calling thread (call it first in `main`, before spawning threads, which inherit the mask)
/// and reads them from a signalfd, which an event loop can poll.
///
/// `Send` and `Sync`: an owned signalfd (the mask it blocked stays with the thread that made
/// it); reading takes `&mut self`.
#[derive(Debug)]
pub struct Daemon {
    fd: SignalFd,
}

impl Daemon {
    /// Blocks `SIGTERM`, `SIGINT`, `SIGHUP` and opens a nonblocking signalfd for them.
    pub fn new() -> Result<Daemon> {
        let set = SigSet::of(&[SIGTERM, SIGINT, SIGHUP]);
        block(set)?;
        Ok(Daemon { fd: SignalFd::new(set, true)? })
    }

    /// The next pending request, or `None`.
    pub fn poll_event(&mut self) -> Result<Option<DaemonEvent>> {
        match self.fd.recv() {
            Ok(info) if info.signal == SIGHUP => Ok(Some(DaemonEvent::Reload)),
            Ok(info) => Ok(Some(DaemonEvent::Shutdown { signal: info.signal, pid: info.pid })),
            Err(Error::WouldBlock) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`Daemon::wait_event`] that also ends with [`Error::Cancelled`] when `cancel` is
    /// cancelled (`poll` on the signalfd and the canceler); `None` for `timeout`: no limit.
    pub fn wait_event_cancellable(
        &mut self,
        timeout: Option<core::time::Duration>,
        cancel: &crate::cancel::Canceler,
    ) -> Result<Option<DaemonEvent>> {
        cancel.check()?;
        let end = crate::transport::end_of(timeout);
        loop {
            if let Some(e) = self.poll_event()? {
                return Ok(Some(e));
            }
            match crate::poll::wait_fd_cancellable(&self.fd, rustix::event::PollFlags::IN, end, Some(cancel)) {
                Ok(()) => {}
                Err(Error::TimedOut) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for the next request for at most `timeout` (`poll` on the signalfd).
    pub fn wait_event(&mut self, timeout: core::time::Duration) -> Result<Option<DaemonEvent>> {
        if let Some(e) = self.poll_event()? {
            return Ok(Some(e));
        }
        let deadline = crate::poll::now().saturating_add(timeout);
        let mut ts = crate::poll::timespec(timeout);
        loop {
            let mut fds = [rustix::event::PollFd::new(&self.fd, rustix::event::PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) => return self.poll_event(),
                // Another signal (one with a handler) interrupted the wait: a request may
                // have come with it; if not, wait for the time left.
                Err(Errno::INTR) => {
                    if let Some(e) = self.poll_event()? {
                        return Ok(Some(e));
                    }
                    let left = deadline.saturating_sub(crate::poll::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    ts = crate::poll::timespec(left);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for Daemon {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        let mut s = SigSet::of(&[SIGTERM, SIGHUP, 0, 99]);
        assert!(s.contains(SIGTERM) && s.contains(SIGHUP) && !s.contains(SIGINT));
        s.add(SIGINT);
        s.remove(SIGTERM);
        assert_eq!(s.bits(), sig_bit(SIGHUP) | sig_bit(SIGINT));
        assert!(!s.contains(0) && !s.contains(65));
    }
}
