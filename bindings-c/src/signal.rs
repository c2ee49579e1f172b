//! Signals: sets as `uint64_t` masks, blocking them in the calling thread, a `signalfd`
//! receiver that reports the sender and the `sigqueue` value, sending with a value or
//! through a pidfd, and the daemon helper (`SIGTERM`/`SIGINT` shut down, `SIGHUP` reloads).
//!
//! The signal mask is per thread: block the signals a signalfd reads in `main` before
//! starting threads (they inherit the mask), else another thread may take them.

use core::ffi::c_int;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use ember_linux::signal::{self, DaemonEvent, SigSet, SignalFd};

use crate::error::*;

/// A signal as a signalfd reports it.
///
/// `Send` and `Sync`: plain data.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ember_signal_info {
    /// The signal number.
    pub signal: c_int,
    /// How it was sent: `SI_USER` (0, `kill`), `SI_QUEUE` (-1, `sigqueue`), ...
    pub code: c_int,
    /// The sender's pid.
    pub pid: u32,
    /// The sender's real uid.
    pub uid: u32,
    /// The value sent with `sigqueue` or `ember_signal_send_value` (0 otherwise).
    pub value: c_int,
}

/// A signalfd (opaque).
///
/// `Send` and `Sync`, like the signalfd it owns.
#[derive(Debug)]
pub struct ember_signalfd {
    fd: SignalFd,
}

/// The daemon helper (opaque): a signalfd for `SIGTERM`, `SIGINT` and `SIGHUP`.
///
/// `Send` and `Sync`, like the signalfd it owns.
#[derive(Debug)]
pub struct ember_daemon {
    d: signal::Daemon,
}

/// No request is pending.
pub const EMBER_DAEMON_NONE: c_int = 0;
/// `SIGTERM` or `SIGINT`: shut down gracefully.
pub const EMBER_DAEMON_SHUTDOWN: c_int = 1;
/// `SIGHUP`: reload the configuration.
pub const EMBER_DAEMON_RELOAD: c_int = 2;

fn signo(sig: c_int) -> Result<u32, c_int> {
    if (1..=64).contains(&sig) { Ok(sig as u32) } else { Err(EMBER_EINVAL) }
}

fn set_of(mask: u64) -> SigSet {
    let mut s = SigSet::empty();
    for sig in 1..=64u32 {
        if mask & (1 << (sig - 1)) != 0 {
            s.add(sig);
        }
    }
    s
}

/// Adds `sig` (1 to 64) to the set `*set` (bit `sig - 1`). Returns `EMBER_OK`, or
/// `EMBER_EINVAL` for a NULL pointer or a number out of range.
///
/// # Safety
///
/// `set` must point to a writable `uint64_t`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sigset_add(set: *mut u64, sig: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let set = unsafe { arg_mut(set)? };
        *set |= 1 << (signo(sig)? - 1);
        Ok(EMBER_OK)
    })
}

/// Removes `sig` from `*set`. Returns `EMBER_OK`, or `EMBER_EINVAL` for a NULL or
/// misaligned pointer or a number out of range (1 to 64).
///
/// # Safety
///
/// `set` must point to a writable `uint64_t`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sigset_remove(set: *mut u64, sig: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let set = unsafe { arg_mut(set)? };
        *set &= !(1 << (signo(sig)? - 1));
        Ok(EMBER_OK)
    })
}

/// Changes the calling thread's signal mask (`rt_sigprocmask`): `how` is 0 to block `set`,
/// 1 to unblock it, 2 to make it the mask. The mask before goes to `*old` (may be NULL).
/// `SIGKILL` and `SIGSTOP` are never blocked (the kernel ignores them in the set). Returns
/// `EMBER_OK`, `EMBER_EINVAL` (bad `how`), or `EMBER_EOS`.
///
/// # Safety
///
/// `old` NULL or a writable `uint64_t`.
///
/// Thread safety: changes only the calling thread's mask.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_signal_mask(how: c_int, set: u64, old: *mut u64) -> c_int {
    guard(|| {
        let old = if old.is_null() { None } else { Some(crate::error::out(old)?) };
        let set = set_of(set);
        let before = match how {
            0 => signal::block(set),
            1 => signal::unblock(set),
            2 => signal::set_mask(set),
            _ => return Err(EMBER_EINVAL),
        }
        .map_err(code)?;
        if let Some(o) = old {
            o.set(before.bits());
        }
        Ok(EMBER_OK)
    })
}

/// Opens a signalfd for the signals of `set` (`signalfd4`, close-on-exec; nonblocking if
/// `nonblocking` is nonzero). Block them first (`ember_signal_mask(0, set, NULL)`), else
/// they are delivered the usual way and never reach the fd. Returns `EMBER_OK`;
/// `EMBER_EINVAL` (`out` NULL or misaligned); `EMBER_EOS` (`EMFILE`, `ENOMEM`).
///
/// # Safety
///
/// `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_signalfd_new(set: u64, nonblocking: c_int, out: *mut *mut ember_signalfd) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        let fd = SignalFd::new(set_of(set), nonblocking != 0).map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_signalfd { fd })));
        Ok(EMBER_OK)
    })
}

/// Reads the next signal into `*info`. Returns `EMBER_OK`, `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing read), `EMBER_EAGAIN`
/// (nonblocking and none pending), `EMBER_EINVAL` (a NULL or misaligned pointer), or `EMBER_EOS`. A blocking read interrupted by an unblocked signal
/// resumes.
///
/// # Safety
///
/// `s` from `ember_signalfd_new`; `info` writable.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_signalfd_recv(s: *mut ember_signalfd, info: *mut ember_signal_info) -> c_int {
    guard(|| {
        let info = crate::error::out(info)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let s = unsafe { arg_mut(s)? };
        let i = recv(s, None)?;
        info.set(ember_signal_info { signal: i.signal as c_int, code: i.code, pid: i.pid, uid: i.uid, value: i.value });
        Ok(EMBER_OK)
    })
}

/// A blocking read waits until `timeout` in `poll`, watching the installed canceler; a
/// nonblocking one does not wait.
fn recv(s: &mut ember_signalfd, timeout: Option<core::time::Duration>) -> Result<signal::SignalInfo, c_int> {
    let cancel = crate::cancel::current();
    if (timeout.is_none() && cancel.is_none()) || crate::cancel::nonblocking(rustix::fd::AsFd::as_fd(&s.fd)) {
        return s.fd.recv().map_err(code);
    }
    s.fd.recv_with(timeout, cancel).map_err(code)
}

/// `ember_signalfd_recv` waiting at most `timeout_ms` (`EMBER_FOREVER`: no limit; 0: only
/// a signal already pending) for a signal. Returns `EMBER_OK`; `EMBER_ETIMEDOUT`;
/// `EMBER_ECANCELED` (the canceler installed with `ember_set_canceler` was cancelled:
/// nothing read); `EMBER_EAGAIN` (nonblocking and none pending); `EMBER_EINVAL` (a NULL or
/// misaligned pointer); `EMBER_EOS`.
///
/// # Safety
///
/// `s` from `ember_signalfd_new`; `info` writable.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_signalfd_recv_timeout(
    s: *mut ember_signalfd,
    timeout_ms: i64,
    info: *mut ember_signal_info,
) -> c_int {
    guard(|| {
        let info = crate::error::out(info)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let s = unsafe { arg_mut(s)? };
        let i = recv(s, timeout(timeout_ms))?;
        info.set(ember_signal_info { signal: i.signal as c_int, code: i.code, pid: i.pid, uid: i.uid, value: i.value });
        Ok(EMBER_OK)
    })
}

/// The signalfd's descriptor (for `poll`/`epoll`; still owned by the handle), or
/// `EMBER_EINVAL`.
///
/// # Safety
///
/// `s` NULL or from `ember_signalfd_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_signalfd_fd(s: *const ember_signalfd) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| Ok(unsafe { arg(s)? }.fd.as_fd().as_raw_fd()))
}

/// Closes the signalfd (the signals stay blocked).
///
/// # Safety
///
/// `s` NULL or from `ember_signalfd_new`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_signalfd_free(s: *mut ember_signalfd) {
    if !s.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(s) });
    }
}

/// Sends `sig` to process `pid` with `value` (`rt_sigqueueinfo`, as `sigqueue(3)`); a
/// signalfd receiver sees it in `ember_signal_info.value`. Returns `EMBER_OK`,
/// `EMBER_EINVAL` (bad signal number), or `EMBER_EOS` (`ESRCH`, `EPERM`, `EAGAIN`: the
/// receiver's queue of real-time signals is full).
///
/// # Safety
///
/// Always safe to call.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn ember_signal_send_value(pid: u32, sig: c_int, value: c_int) -> c_int {
    guard(|| {
        signal::send_with_value(pid, signo(sig)?, value).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Sends `sig` through the pidfd `pidfd` (`pidfd_send_signal`): never to a process that
/// reused the pid. Returns `EMBER_OK`, `EMBER_EINVAL` (also for 32 to 34, the real-time
/// signals the C library keeps for itself), or `EMBER_EOS` (`ESRCH`: it exited).
///
/// # Safety
///
/// `pidfd` an open pidfd (borrowed, not closed).
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_signal_send_pidfd(pidfd: c_int, sig: c_int) -> c_int {
    guard(|| {
        if pidfd < 0 {
            return Err(EMBER_EINVAL);
        }
        // SAFETY: an open fd by the caller's contract, borrowed for this call only.
        let fd = unsafe { BorrowedFd::borrow_raw(pidfd) };
        let sig = signo(sig)?;
        if (32..signal::FIRST_FREE_RT_SIGNAL).contains(&sig) {
            return Err(EMBER_EINVAL);
        }
        signal::send_pidfd(fd, sig).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Blocks `SIGTERM`, `SIGINT` and `SIGHUP` in the calling thread and opens a nonblocking
/// signalfd for them. Call it first in `main`, before starting threads. Returns
/// `EMBER_OK`; `EMBER_EINVAL` (`out` NULL or misaligned); `EMBER_EOS` (`EMFILE`,
/// `ENOMEM`).
///
/// # Safety
///
/// `out` a writable pointer.
///
/// Thread safety: changes the calling thread's mask.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_daemon_new(out: *mut *mut ember_daemon) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        let d = signal::Daemon::new().map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_daemon { d })));
        Ok(EMBER_OK)
    })
}

/// Waits up to `timeout_ms` (0: only look; `EMBER_FOREVER`: no limit) for a request:
/// `*event` becomes `EMBER_DAEMON_SHUTDOWN` (with the signal and the sender's pid in
/// `*signal` and `*pid`, both may be NULL), `EMBER_DAEMON_RELOAD`, or `EMBER_DAEMON_NONE`
/// when the time ran out (no `EMBER_ETIMEDOUT`). Returns `EMBER_OK`, `EMBER_ECANCELED` (the
/// canceler installed with `ember_set_canceler` was cancelled), `EMBER_EINVAL` (a NULL or
/// misaligned handle or `event`), or `EMBER_EOS`.
///
/// # Safety
///
/// `d` from `ember_daemon_new`; `event` writable; `signal`, `pid` NULL or writable.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_daemon_wait(
    d: *mut ember_daemon,
    timeout_ms: i64,
    event: *mut c_int,
    signal: *mut c_int,
    pid: *mut u32,
) -> c_int {
    guard(|| {
        let event = crate::error::out(event)?;
        let signal = if signal.is_null() { None } else { Some(crate::error::out(signal)?) };
        let pid = if pid.is_null() { None } else { Some(crate::error::out(pid)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let d = unsafe { arg_mut(d)? };
        let got = match (timeout(timeout_ms), crate::cancel::current()) {
            (Some(t), _) if t.is_zero() => d.d.poll_event(),
            (t, Some(c)) => d.d.wait_event_cancellable(t, c),
            (Some(t), None) => d.d.wait_event(t),
            (None, None) => loop {
                match d.d.wait_event(core::time::Duration::from_secs(3600)) {
                    Ok(None) => {}
                    other => break other,
                }
            },
        }
        .map_err(code)?;
        let (e, s, p) = match got {
            None => (EMBER_DAEMON_NONE, 0, 0),
            Some(DaemonEvent::Reload) => (EMBER_DAEMON_RELOAD, signal::SIGHUP as c_int, 0),
            Some(DaemonEvent::Shutdown { signal, pid }) => (EMBER_DAEMON_SHUTDOWN, signal as c_int, pid),
        };
        event.set(e);
        if let Some(o) = signal {
            o.set(s);
        }
        if let Some(o) = pid {
            o.set(p);
        }
        Ok(EMBER_OK)
    })
}

/// The daemon helper's signalfd (for `poll`/`epoll`: readable when a request is pending;
/// then call `ember_daemon_wait` with timeout 0), or `EMBER_EINVAL`.
///
/// # Safety
///
/// `d` NULL or from `ember_daemon_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_daemon_fd(d: *const ember_daemon) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| Ok(unsafe { arg(d)? }.d.as_fd().as_raw_fd()))
}

/// Closes the daemon helper's signalfd (the three signals stay blocked).
///
/// # Safety
///
/// `d` NULL or from `ember_daemon_new`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_daemon_free(d: *mut ember_daemon) {
    if !d.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(d) });
    }
}
