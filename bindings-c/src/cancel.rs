//! Cancellation: `ember_canceler`, which a signal handler (or another thread) triggers to
//! end every blocking call with `EMBER_ECANCELED`, and the process-wide canceler that
//! every blocking call watches (`ember_set_canceler`).
//!
//! Why one process-wide canceler rather than one per handle: a signal's disposition is
//! process-wide, and so is the usual reason to cancel (`SIGINT`, `SIGTERM`: stop the
//! daemon). One call in `main` reaches every blocking call in every thread (sends,
//! receives, connects, accepts, the poller, shared-memory waits) without a new argument on
//! each; a program that needs finer control cancels with `ember_canceler_cancel` and resets
//! with `ember_canceler_reset`, or bounds each call with its timeout.

use core::ffi::c_int;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use ember_linux::cancel::Canceler;
use rustix::fd::{AsFd, AsRawFd};

use crate::error::*;

/// A cancel handle (opaque): an eventfd and a futex word.
///
/// `Send` and `Sync`: every function on it may be called from any thread (and
/// `ember_canceler_cancel` from a signal handler).
#[derive(Debug)]
pub struct ember_canceler {
    c: Canceler,
}

/// The canceler every blocking call watches (NULL: none).
static CURRENT: AtomicPtr<ember_canceler> = AtomicPtr::new(core::ptr::null_mut());

/// The process-wide canceler, for a blocking call to watch.
pub(crate) fn current() -> Option<&'static Canceler> {
    let p = CURRENT.load(Ordering::Acquire);
    // SAFETY: `ember_set_canceler`'s contract: a canceler stays valid while it is set and
    // while any call that may have read it runs (it is freed only after being unset and
    // after those calls returned).
    unsafe { p.as_ref() }.map(|h| &h.c)
}

/// Bumped each time the installed canceler changes (set, or unset by a free), so a handle
/// that keeps a duplicate of its eventfd (a D-Bus connection) notices, even when a new
/// canceler comes at a freed one's address.
static GENERATION: AtomicUsize = AtomicUsize::new(0);

/// The installed canceler's generation, to notice a change.
pub(crate) fn generation() -> usize {
    GENERATION.load(Ordering::Acquire)
}

/// Whether `fd` is in nonblocking mode (`O_NONBLOCK`; one `fcntl`): then a call on it
/// never waits, and neither a timeout nor the canceler applies.
pub(crate) fn nonblocking(fd: rustix::fd::BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_getfl(fd).is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK))
}

/// A new canceler, not cancelled, into `*out`. Returns `EMBER_OK`; `EMBER_EINVAL` (`out`
/// NULL or misaligned); `EMBER_EOS` (`eventfd` failed: `EMFILE`).
///
/// # Safety
///
/// `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_canceler_new(out: *mut *mut ember_canceler) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        out.set(Box::into_raw(Box::new(ember_canceler { c: Canceler::new().map_err(code)? })));
        Ok(EMBER_OK)
    })
}

/// Cancels: every blocking call watching `c` (see `ember_set_canceler`) returns
/// `EMBER_ECANCELED`, the ones waiting now and every later one, until
/// `ember_canceler_reset`. Nothing is lost: a cancelled receive took nothing, a cancelled
/// send sent nothing. Returns `EMBER_OK`; `EMBER_EINVAL` (`c` NULL or misaligned).
///
/// **Async-signal-safe**: one atomic store, one `FUTEX_WAKE` and one `write(2)`, made as raw
/// system calls; no lock, no allocation, `errno` untouched. Call it from a `SIGINT`
/// handler.
///
/// # Safety
///
/// `c` from `ember_canceler_new`, not freed.
///
/// Thread safety: any thread, and signal handlers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_canceler_cancel(c: *const ember_canceler) -> c_int {
    // No `guard`: nothing here can panic, and a signal handler should run as little as
    // possible.
    if c.is_null() || !c.is_aligned() {
        return EMBER_EINVAL;
    }
    // SAFETY: non-null and aligned (checked); valid by the caller's contract.
    unsafe { &*c }.c.cancel();
    EMBER_OK
}

/// Makes `c` usable again: blocking calls watching it wait normally. Call it when no call
/// is waiting on it. Returns `EMBER_OK`; `EMBER_EINVAL` (`c` NULL or misaligned).
///
/// # Safety
///
/// `c` from `ember_canceler_new`, not freed.
///
/// Thread safety: any thread (not from a signal handler).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_canceler_reset(c: *const ember_canceler) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        unsafe { arg(c)? }.c.reset();
        Ok(EMBER_OK)
    })
}

/// 1 if `c` is cancelled (and not reset since), 0 if not, `EMBER_EINVAL` (`c` NULL or
/// misaligned). Async-signal-safe (one atomic load).
///
/// # Safety
///
/// `c` from `ember_canceler_new`, not freed.
///
/// Thread safety: any thread, and signal handlers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_canceler_is_cancelled(c: *const ember_canceler) -> c_int {
    if c.is_null() || !c.is_aligned() {
        return EMBER_EINVAL;
    }
    // SAFETY: non-null and aligned (checked); valid by the caller's contract.
    c_int::from(unsafe { &*c }.c.is_cancelled())
}

/// The canceler's eventfd, readable while it is cancelled: add it to your own `poll` or
/// `epoll` loop (or `ember_poller_add`) to wake that loop too. Owned by `c`; do not close
/// it or read it. Returns the fd, or `EMBER_EINVAL` (`c` NULL or misaligned).
///
/// # Safety
///
/// `c` from `ember_canceler_new`, not freed.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_canceler_fd(c: *const ember_canceler) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        Ok(unsafe { arg(c)? }.c.as_fd().as_raw_fd())
    })
}

/// Frees a canceler (NULL is accepted). If it is the one `ember_set_canceler` installed, it
/// is unset first; still, free it only once no call that may watch it is running (unset
/// it with `ember_set_canceler(NULL)`, let those calls return, then free).
///
/// # Safety
///
/// `c` NULL or from `ember_canceler_new`, not used after.
///
/// Thread safety: see above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_canceler_free(c: *mut ember_canceler) {
    if c.is_null() {
        return;
    }
    if CURRENT.compare_exchange(c, core::ptr::null_mut(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
        GENERATION.fetch_add(1, Ordering::AcqRel);
    }
    // SAFETY: from `Box::into_raw` in `ember_canceler_new`, not used after (contract).
    drop(unsafe { Box::from_raw(c) });
}

/// Installs `c` as the canceler every blocking call of this library watches, in every
/// thread (NULL: none, the default). Once `c` is cancelled, a call waiting for data, for
/// room, for a connection or for an event returns `EMBER_ECANCELED`: `ember_pipe_reader_recv`
/// and `_recv_timeout`, `ember_pipe_writer_send` and `_send_timeout`, `ember_mq_send`,
/// `ember_mq_recv`, `ember_uds_connect` and `_connect_timeout`, `ember_uds_accept`,
/// `ember_socket_send`, `_send_timeout`, `_send_to`, `_send_fds`, `ember_socket_recv`,
/// `_recv_fds`, `ember_poller_wait`, `ember_spsc_sender_send`, `ember_spsc_receiver_recv`,
/// `ember_broadcast_reader_recv`, `ember_seqlock_reader_wait_change`, `ember_mutex_lock`,
/// `ember_sem_wait`, `ember_event_wait_change`, `ember_signalfd_recv` and `_recv_timeout`,
/// `ember_daemon_wait`, `ember_rpc_call`, `ember_rpc_serve_one`, and the D-Bus waits for
/// the bus (`ember_dbus_call`, `_recv`, `_process`, ...; not the connects). Returns
/// `EMBER_OK`;
/// `EMBER_EINVAL` (`c` misaligned).
///
/// # Safety
///
/// `c` NULL or from `ember_canceler_new`; it must stay valid while installed and while
/// any call that may have read it runs.
///
/// Thread safety: any thread (not from a signal handler: install it before the handler).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_set_canceler(c: *const ember_canceler) -> c_int {
    if !c.is_aligned() {
        return EMBER_EINVAL;
    }
    CURRENT.store(c.cast_mut(), Ordering::Release);
    GENERATION.fetch_add(1, Ordering::AcqRel);
    EMBER_OK
}
