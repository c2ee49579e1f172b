//! The event loop's parts: an `epoll` poller with caller-chosen tokens, a `timerfd` timer,
//! and the eventfd notifier that lets a shared-memory ring sit in the same loop as sockets
//! and signals (`ember_spsc_sender_set_notifier`, `ember_spsc_receiver_prepare_poll`).

use core::ffi::c_int;
use core::time::Duration;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use ember_linux::poll::{Interest, Poller, Timer};
use ember_linux::shm::Notifier;

use crate::error::*;
use crate::shm::{ember_spsc_receiver, ember_spsc_sender};

/// Most ready fds one `ember_poller_wait` returns.
pub const EMBER_POLLER_MAX_EVENTS: usize = 64;

/// Watch for readability (`EPOLLIN`).
pub const EMBER_POLL_READ: u32 = 1;
/// Watch for writability (`EPOLLOUT`).
pub const EMBER_POLL_WRITE: u32 = 2;
/// Edge-triggered (`EPOLLET`): reported once per change; drain the fd each time.
pub const EMBER_POLL_EDGE: u32 = 4;

/// An `epoll` instance (opaque).
///
/// `Send` and `Sync`, like the poller it owns.
#[derive(Debug)]
pub struct ember_poller {
    p: Poller<EMBER_POLLER_MAX_EVENTS>,
}

/// One ready fd.
///
/// `Send` and `Sync`: plain data.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ember_ready {
    /// The token given to `ember_poller_add`.
    pub token: u64,
    /// Readable.
    pub readable: u8,
    /// Writable.
    pub writable: u8,
    /// The peer hung up: reads drain what is left, then end.
    pub hangup: u8,
    /// An error is pending on the fd.
    pub error: u8,
}

/// A `timerfd` on the monotonic clock (opaque).
///
/// `Send` and `Sync`, like the timer it owns.
#[derive(Debug)]
pub struct ember_timer {
    t: Timer,
}

/// An eventfd notifier (opaque).
///
/// `Send` and `Sync`, like the notifier it owns.
#[derive(Debug)]
pub struct ember_notifier {
    n: Notifier,
}

fn interest(flags: u32) -> Result<Interest, c_int> {
    if flags & !(EMBER_POLL_READ | EMBER_POLL_WRITE | EMBER_POLL_EDGE) != 0
        || flags & (EMBER_POLL_READ | EMBER_POLL_WRITE) == 0
    {
        return Err(EMBER_EINVAL);
    }
    let mut i = match flags & (EMBER_POLL_READ | EMBER_POLL_WRITE) {
        EMBER_POLL_READ => Interest::READ,
        EMBER_POLL_WRITE => Interest::WRITE,
        _ => Interest::BOTH,
    };
    if flags & EMBER_POLL_EDGE != 0 {
        i = i | Interest::EDGE;
    }
    Ok(i)
}

fn borrowed<'a>(fd: c_int) -> Result<BorrowedFd<'a>, c_int> {
    if fd < 0 {
        return Err(EMBER_EINVAL);
    }
    // SAFETY: an open fd by each function's contract, borrowed for that call only.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A new poller (`epoll_create1(EPOLL_CLOEXEC)`). Returns `EMBER_OK`; `EMBER_EINVAL`
/// (`out` NULL or misaligned); `EMBER_EOS` (`EMFILE`, `ENOMEM`).
///
/// # Safety
///
/// `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_poller_new(out: *mut *mut ember_poller) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        let p = Poller::new().map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_poller { p })));
        Ok(EMBER_OK)
    })
}

/// Watches `fd` for `flags` (`EMBER_POLL_READ`, `EMBER_POLL_WRITE`, either with
/// `EMBER_POLL_EDGE`), reported with `token` (`epoll_ctl(ADD)`); hang-ups and errors are
/// always reported. Returns `EMBER_OK`, `EMBER_EINVAL` (bad fd or flags), or `EMBER_EOS`
/// (`EEXIST`: already watched; `EPERM`: a regular file).
///
/// # Safety
///
/// `p` from `ember_poller_new`; `fd` an open descriptor (not owned by the poller; remove it
/// before closing it).
///
/// Thread safety: not with other calls on the same handle (to change the set from another
/// thread while one waits, `epoll_ctl` the fd of `ember_poller_fd` directly).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_poller_add(p: *const ember_poller, fd: c_int, token: u64, flags: u32) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let p = unsafe { arg(p)? };
        p.p.add(borrowed(fd)?, token, interest(flags)?).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Changes what `fd` is watched for, and its token (`epoll_ctl(MOD)`). Returns `EMBER_OK`,
/// `EMBER_EINVAL` (a NULL or misaligned handle, a bad fd or flags), or `EMBER_EOS`
/// (`ENOENT`: it is not watched).
///
/// # Safety
///
/// As `ember_poller_add`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_poller_modify(p: *const ember_poller, fd: c_int, token: u64, flags: u32) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let p = unsafe { arg(p)? };
        p.p.modify(borrowed(fd)?, token, interest(flags)?).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Stops watching `fd` (`epoll_ctl(DEL)`). Returns `EMBER_OK`, `EMBER_EINVAL`, or
/// `EMBER_EOS` (`ENOENT`: not watched).
///
/// # Safety
///
/// As `ember_poller_add`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_poller_remove(p: *const ember_poller, fd: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let p = unsafe { arg(p)? };
        p.p.remove(borrowed(fd)?).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Waits up to `timeout_ms` (`EMBER_FOREVER`: no limit; 0: only look) until a watched fd is
/// ready, and writes up to `cap` ready fds (at most `EMBER_POLLER_MAX_EVENTS`) to `events`
/// and their number to `*n` (0 when the time ran out). Fds beyond `cap` stay ready for the
/// next wait, edge-triggered ones too. A signal does not end the wait early. Returns
/// `EMBER_OK`, `EMBER_EINVAL` (`cap` 0, NULL pointers), `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled), or `EMBER_EOS`.
///
/// # Safety
///
/// `p` from `ember_poller_new`; `events` `cap` writable `ember_ready`; `n` writable.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_poller_wait(
    p: *mut ember_poller,
    events: *mut ember_ready,
    cap: usize,
    n: *mut usize,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        let n = crate::error::out(n)?;
        if cap == 0 || events.is_null() || !events.is_aligned() {
            return Err(EMBER_EINVAL);
        }
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let p = unsafe { arg_mut(p)? };
        let mut count = 0;
        let events_ready = match crate::cancel::current() {
            Some(c) => p.p.wait_cancellable(cap, timeout(timeout_ms), c),
            None => p.p.wait_max(cap, timeout(timeout_ms)),
        };
        for r in events_ready.map_err(code)? {
            let e = ember_ready {
                token: r.token,
                readable: r.readable as u8,
                writable: r.writable as u8,
                hangup: r.hangup as u8,
                error: r.error as u8,
            };
            // SAFETY: `count < cap` (wait_max returns at most `cap`); `events` has `cap`
            // writable elements by the caller's contract.
            unsafe { events.add(count).write(e) };
            count += 1;
        }
        n.set(count);
        Ok(EMBER_OK)
    })
}

/// The poller's own descriptor (an epoll fd can itself be polled), or `EMBER_EINVAL`.
///
/// # Safety
///
/// `p` NULL or from `ember_poller_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_poller_fd(p: *const ember_poller) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| Ok(unsafe { arg(p)? }.p.as_fd().as_raw_fd()))
}

/// Closes the poller (the watched fds stay open).
///
/// # Safety
///
/// `p` NULL or from `ember_poller_new`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_poller_free(p: *mut ember_poller) {
    if !p.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// A timer (`timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)`): it first fires
/// after `first_ms` (0: at once), then every `interval_ms` (0: only once). Poll its fd
/// for readability, then `ember_timer_expirations`. Returns `EMBER_OK`; `EMBER_EINVAL`
/// (`out` NULL or misaligned); `EMBER_EOS` (`timerfd_create` or `timerfd_settime` failed:
/// `EMFILE`, `ENOMEM`).
///
/// # Safety
///
/// `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_timer_new(first_ms: u64, interval_ms: u64, out: *mut *mut ember_timer) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        let t = Timer::new().map_err(code)?;
        t.set(ms(first_ms), ms(interval_ms)).map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_timer { t })));
        Ok(EMBER_OK)
    })
}

/// Re-arms the timer (as `ember_timer_new`), or disarms it when `disarm` is nonzero.
/// Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_EOS`
/// (`timerfd_settime` failed).
///
/// # Safety
///
/// `t` from `ember_timer_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_timer_set(
    t: *const ember_timer,
    first_ms: u64,
    interval_ms: u64,
    disarm: c_int,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let t = unsafe { arg(t)? };
        if disarm != 0 { t.t.disarm() } else { t.t.set(ms(first_ms), ms(interval_ms)) }.map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// How many times the timer fired since the last call (more than one: ticks were missed)
/// into `*count`. Returns `EMBER_OK`, `EMBER_EAGAIN` if it has not fired (never waits),
/// `EMBER_EINVAL` for a NULL or misaligned pointer, or `EMBER_EOS` (the `read` failed).
///
/// # Safety
///
/// `t` from `ember_timer_new`; `count` writable.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_timer_expirations(t: *const ember_timer, count: *mut u64) -> c_int {
    guard(|| {
        let count = crate::error::out(count)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let t = unsafe { arg(t)? };
        count.set(t.t.expirations().map_err(code)?);
        Ok(EMBER_OK)
    })
}

/// The timer's descriptor, or `EMBER_EINVAL`.
///
/// # Safety
///
/// `t` NULL or from `ember_timer_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_timer_fd(t: *const ember_timer) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| Ok(unsafe { arg(t)? }.t.as_fd().as_raw_fd()))
}

/// Closes the timer.
///
/// # Safety
///
/// `t` NULL or from `ember_timer_new`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_timer_free(t: *mut ember_timer) {
    if !t.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(t) });
    }
}

/// A new eventfd notifier (`eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`). Both processes of a
/// ring need the same eventfd: pass `ember_notifier_fd` over a Unix socket
/// (`ember_socket_send_fds`) or let a child inherit it, and wrap it there with
/// `ember_notifier_from_fd`. Returns `EMBER_OK`; `EMBER_EINVAL` (`out` NULL or
/// misaligned); `EMBER_EOS` (`EMFILE`, `ENOMEM`).
///
/// # Safety
///
/// `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_notifier_new(out: *mut *mut ember_notifier) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        let n = Notifier::new().map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_notifier { n })));
        Ok(EMBER_OK)
    })
}

/// A notifier over the eventfd `fd`, which it now owns. Returns `EMBER_OK`, or
/// `EMBER_EINVAL` (a negative `fd`, `out` NULL or misaligned).
///
/// # Safety
///
/// `fd` an open eventfd the caller owns and does not use or close after; `out` writable.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_notifier_from_fd(fd: c_int, out: *mut *mut ember_notifier) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        out.set(Box::into_raw(Box::new(ember_notifier { n: Notifier::from_fd(owned(fd)?) })));
        Ok(EMBER_OK)
    })
}

/// Makes the notifier readable (adds one to its counter). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_EOS` (the `write` failed).
///
/// # Safety
///
/// `n` from this module.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_notifier_notify(n: *const ember_notifier) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        unsafe { arg(n)? }.n.notify().map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Resets the counter; its value before (0: not notified) goes to `*count` (may be NULL).
/// Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer); `EMBER_EOS` (the
/// `read` failed).
///
/// # Safety
///
/// `n` from this module; `count` NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_notifier_drain(n: *const ember_notifier, count: *mut u64) -> c_int {
    guard(|| {
        let count = if count.is_null() { None } else { Some(crate::error::out(count)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let v = unsafe { arg(n)? }.n.drain().map_err(code)?;
        if let Some(c) = count {
            c.set(v);
        }
        Ok(EMBER_OK)
    })
}

/// The eventfd (to poll, or to pass to the other process), or `EMBER_EINVAL`.
///
/// # Safety
///
/// `n` NULL or from this module.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_notifier_fd(n: *const ember_notifier) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| Ok(unsafe { arg(n)? }.n.as_fd().as_raw_fd()))
}

/// Closes the notifier.
///
/// # Safety
///
/// `n` NULL or from this module, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_notifier_free(n: *mut ember_notifier) {
    if !n.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(n) });
    }
}

/// Makes the ring's sender also signal the eventfd `eventfd` (duplicated: the caller keeps
/// its own) whenever the receiver announced a poll (`ember_spsc_receiver_prepare_poll`).
/// Returns `EMBER_OK`, `EMBER_EINVAL`, or `EMBER_EOS`.
///
/// # Safety
///
/// `s` from `ember_spsc_sender_create`; `eventfd` an open eventfd.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_spsc_sender_set_notifier(s: *mut ember_spsc_sender, eventfd: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let s = unsafe { arg_mut(s)? };
        let fd = rustix::io::fcntl_dupfd_cloexec(borrowed(eventfd)?, 0).map_err(|e| code(e.into()))?;
        s.sender_mut().set_notifier(Notifier::from_fd(fd));
        Ok(EMBER_OK)
    })
}

/// Before the receiver blocks in `poll`/`epoll` on the sender's notifier: announces it
/// waits, so the sender signals the notifier. `*ready` becomes 1 (and nothing is
/// announced) when a record is already there: receive instead of polling; else 0: poll,
/// then `ember_spsc_receiver_finish_poll`, drain the notifier and receive. Returns
/// `EMBER_OK`, or `EMBER_EINVAL` (a NULL or misaligned pointer).
///
/// # Safety
///
/// `r` from `ember_spsc_receiver_open`; `ready` writable.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_spsc_receiver_prepare_poll(r: *mut ember_spsc_receiver, ready: *mut c_int) -> c_int {
    guard(|| {
        let ready = crate::error::out(ready)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let r = unsafe { arg_mut(r)? };
        ready.set(!r.receiver_mut().prepare_poll() as c_int);
        Ok(EMBER_OK)
    })
}

/// Withdraws the announcement of `ember_spsc_receiver_prepare_poll` (after the poll).
/// Returns `EMBER_OK`, or `EMBER_EINVAL` (a NULL or misaligned handle).
///
/// # Safety
///
/// `r` from `ember_spsc_receiver_open`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_spsc_receiver_finish_poll(r: *mut ember_spsc_receiver) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        unsafe { arg_mut(r)? }.receiver_mut().finish_poll();
        Ok(EMBER_OK)
    })
}
