//! systemd integration without libsystemd (`ember_linux::systemd`, `docs/systemd.md`):
//! readiness and status notification, the service watchdog, socket activation.
//!
//! These follow libsystemd's return convention, which C daemon authors know from
//! `sd_notify(3)`: a positive value for "done", 0 for "not under systemd / nothing to do",
//! a negative `EMBER_E*` code for an error.

use core::ffi::{c_char, c_int};
use std::os::fd::IntoRawFd;

use ember_linux::systemd::{self, NotifyOutcome, State};

use crate::error::*;

/// The longest name of a socket-activated descriptor (`FileDescriptorName=`), without the
/// terminating NUL.
pub const EMBER_SD_FDNAME_MAX: usize = 255;
const _: () = assert!(EMBER_SD_FDNAME_MAX == systemd::FDNAME_MAX);

/// The most socket-activated descriptors `ember_sd_listen_fds` takes.
pub const EMBER_SD_LISTEN_FDS_MAX: usize = 64;

/// The name of a socket-activated descriptor, NUL-terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ember_sd_fdname {
    /// The name (`"unknown"` when the unit does not name it), NUL-terminated.
    // A literal, which cbindgen copies into the header: EMBER_SD_FDNAME_MAX + 1.
    pub name: [c_char; 256],
}
const _: () = assert!(core::mem::size_of::<ember_sd_fdname>() == EMBER_SD_FDNAME_MAX + 1);

fn outcome(r: ember_linux::Result<NotifyOutcome>) -> Result<c_int, c_int> {
    match r.map_err(code)? {
        NotifyOutcome::Sent => Ok(1),
        NotifyOutcome::NotUnderSystemd => Ok(0),
    }
}

/// Sends `state`, newline-separated assignments in `sd_notify(3)`'s text form (`"READY=1"`,
/// `"STATUS=serving\nWATCHDOG=1"`), as one datagram to the socket in `$NOTIFY_SOCKET`.
/// Returns 1 when sent, 0 when `NOTIFY_SOCKET` is unset (not under systemd: nothing is
/// done), `EMBER_EINVAL` for a NULL or empty `state`, not UTF-8, or an unusable
/// `NOTIFY_SOCKET`, `EMBER_EOS` (`ECONNREFUSED` when nobody listens there) if the send
/// fails. The text is sent as it is.
///
/// # Safety
///
/// `state` a NUL-terminated string.
///
/// Thread safety: any thread (it reads the environment: not while another thread changes
/// it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sd_notify(state: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL.
        let text = unsafe { c_name(state)? };
        outcome(systemd::notify_raw(text))
    })
}

/// `READY=1`: start-up (or a reload) is finished. Returns 1 when sent, 0 when
/// `NOTIFY_SOCKET` is unset (not under systemd: nothing is done), `EMBER_EINVAL` for an
/// unusable `NOTIFY_SOCKET`, `EMBER_EOS` (`ECONNREFUSED` when nobody listens there) if the
/// send fails.
///
/// # Safety
///
/// Always safe to call.
///
/// Thread safety: as `ember_sd_notify`.
#[unsafe(no_mangle)]
pub extern "C" fn ember_sd_ready() -> c_int {
    guard(|| outcome(systemd::notify(&[State::Ready])))
}

/// `WATCHDOG=1`: the watchdog keep-alive; send it at half the interval of
/// `ember_sd_watchdog_usec` or more often. Returns 1 when sent, 0 when `NOTIFY_SOCKET` is
/// unset (not under systemd: nothing is done), `EMBER_EINVAL` for an unusable
/// `NOTIFY_SOCKET`, `EMBER_EOS` (`ECONNREFUSED` when nobody listens there) if the send
/// fails.
///
/// # Safety
///
/// Always safe to call.
///
/// Thread safety: as `ember_sd_notify`.
#[unsafe(no_mangle)]
pub extern "C" fn ember_sd_watchdog() -> c_int {
    guard(|| outcome(systemd::notify(&[State::Watchdog])))
}

/// Whether systemd watches this process (`sd_watchdog_enabled(0, ...)`): returns 1 and the
/// interval in microseconds in `*usec` when `WATCHDOG_USEC` is set (and `WATCHDOG_PID` is
/// unset or this process); 0 and `*usec` = 0 when not; `EMBER_EINVAL` when a variable does
/// not parse (or `usec` is NULL).
///
/// # Safety
///
/// `usec` a writable pointer.
///
/// Thread safety: as `ember_sd_notify`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sd_watchdog_usec(usec: *mut u64) -> c_int {
    guard(|| {
        let out = crate::error::out(usec)?;
        out.set(0);
        match systemd::watchdog_interval_checked().map_err(code)? {
            Some(d) => {
                out.set(d.as_micros().min(u128::from(u64::MAX)) as u64);
                Ok(1)
            }
            None => Ok(0),
        }
    })
}

/// Takes the descriptors systemd passed (`sd_listen_fds_with_names`): their numbers go to
/// `fds[0..n]` (they are 3, 4, ...; the caller owns them, now `FD_CLOEXEC`), their names to
/// `names[0..n]` when `names` is not NULL, and `n` to `*count`. `n` is 0 when the process
/// was not socket-activated (no `LISTEN_FDS`, or `LISTEN_PID` is another process), and on
/// every call after one that took them. With `unset_environment` non-zero, `LISTEN_PID`,
/// `LISTEN_FDS` and `LISTEN_FDNAMES` are removed afterwards, whatever the result.
///
/// Returns `EMBER_OK`; `EMBER_ENOSPC` with the number needed in `*count` when `cap` is too
/// small (nothing is taken: call again with larger arrays); `EMBER_ETOOBIG` for more than
/// `EMBER_SD_LISTEN_FDS_MAX`; `EMBER_EINVAL` for NULL pointers (`fds` may be NULL only
/// with `cap` 0) or variables that do not parse; `EMBER_EOS` (`EBADF`) if a descriptor
/// systemd announced is not open.
///
/// # Safety
///
/// `fds` `cap` writable ints; `names` NULL or `cap` writable `ember_sd_fdname`s; `count`
/// a writable pointer. With `unset_environment`, no other thread may use the environment
/// during the call (as with `unsetenv`).
///
/// Thread safety: as `ember_sd_notify`; see `unset_environment`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sd_listen_fds(
    unset_environment: c_int,
    fds: *mut c_int,
    names: *mut ember_sd_fdname,
    cap: usize,
    count: *mut usize,
) -> c_int {
    let r = guard(|| {
        let count = crate::error::out(count)?;
        count.set(0);
        if (cap > 0 && (fds.is_null() || !fds.is_aligned())) || (!names.is_null() && !names.is_aligned()) {
            return Err(EMBER_EINVAL);
        }
        let pid = std::env::var("LISTEN_PID").ok();
        let n = std::env::var("LISTEN_FDS").ok();
        let fdnames = std::env::var("LISTEN_FDNAMES").ok();
        let (needed, _) =
            systemd::parse_listen_env(pid.as_deref(), n.as_deref(), fdnames.as_deref(), std::process::id())
                .map_err(code)?;
        if needed > EMBER_SD_LISTEN_FDS_MAX {
            return Err(EMBER_ETOOBIG);
        }
        if needed > cap {
            count.set(needed);
            return Err(EMBER_ENOSPC);
        }
        let taken = systemd::listen_fds::<EMBER_SD_LISTEN_FDS_MAX>().map_err(code)?;
        let mut i = 0;
        for fd in taken {
            let mut slot = ember_sd_fdname { name: [0; 256] };
            for (d, s) in slot.name.iter_mut().zip(fd.name().bytes()) {
                *d = s as c_char;
            }
            if !names.is_null() {
                // SAFETY: `i < cap` (at most `needed` descriptors were taken), and `names`
                // has `cap` writable slots by the caller's contract (checked aligned).
                unsafe { names.add(i).write(slot) };
            }
            // SAFETY: as above, for `fds` (non-NULL when `cap > 0`, checked).
            unsafe { fds.add(i).write(fd.into_fd().into_raw_fd()) };
            i += 1;
        }
        count.set(i);
        Ok(EMBER_OK)
    });
    if unset_environment != 0 {
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            // SAFETY: the caller's contract: no other thread uses the environment now.
            unsafe { std::env::remove_var(var) };
        }
    }
    r
}
