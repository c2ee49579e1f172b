//! POSIX message queues carrying one Ember frame per message, with priorities and
//! timeouts.

use core::ffi::{c_char, c_int};

use ember_linux::mq::{Access, MessageQueue};

use crate::error::*;

/// Open for sending only.
pub const EMBER_MQ_SEND: c_int = 1;
/// Open for receiving only.
pub const EMBER_MQ_RECEIVE: c_int = 2;
/// Open for both.
pub const EMBER_MQ_BOTH: c_int = 3;
/// Special `timeout_ms` values (an enum in the header, so that the negative value is a
/// plain constant in any C expression).
///
/// `Send` and `Sync`: plain data.
#[repr(C)]
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ember_timeout {
    /// Wait for ever (any negative `timeout_ms` does).
    EMBER_FOREVER = -1,
}

/// A POSIX message queue (opaque).
///
/// `Send` and `Sync`, like the queue it owns.
#[derive(Debug)]
pub struct ember_mq {
    q: MessageQueue,
}

fn access(a: c_int) -> Result<Access, c_int> {
    match a {
        EMBER_MQ_SEND => Ok(Access::Send),
        EMBER_MQ_RECEIVE => Ok(Access::Receive),
        EMBER_MQ_BOTH => Ok(Access::Both),
        _ => Err(EMBER_EINVAL),
    }
}

/// Creates the queue `name` (`/name`, no other slash, at most 255 bytes) with room for
/// `max_msgs` messages of `msg_size` bytes (the largest frame), mode 0600, `O_EXCL`, and
/// opens it as `access` (`EMBER_MQ_*`). Returns `EMBER_OK`; `EMBER_EINVAL` for a bad name
/// or access (checked before any syscall); `EMBER_EOS` (`EEXIST`, `EMFILE`, limits in
/// `/proc/sys/fs/mqueue`).
///
/// # Safety
///
/// `name` must be a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mq_create(
    name: *const c_char,
    max_msgs: usize,
    msg_size: usize,
    access_mode: c_int,
    out: *mut *mut ember_mq,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract, checked for NULL.
        let n = unsafe { c_name(name)? };
        let q = MessageQueue::create(n, max_msgs, msg_size, access(access_mode)?).map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_mq { q })));
        Ok(EMBER_OK)
    })
}

/// Opens the existing queue `name` as `access` (`EMBER_MQ_*`).
///
/// # Safety
///
/// As `ember_mq_create`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mq_open(name: *const c_char, access_mode: c_int, out: *mut *mut ember_mq) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract, checked for NULL.
        let n = unsafe { c_name(name)? };
        let q = MessageQueue::open(n, access(access_mode)?).map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_mq { q })));
        Ok(EMBER_OK)
    })
}

/// Removes the queue `name` from the system (open handles keep working).
///
/// # Safety
///
/// `name` must be a NUL-terminated string.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mq_unlink(name: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL.
        MessageQueue::unlink(unsafe { c_name(name)? }).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Sends one whole frame with priority `prio` (higher first), waiting up to `timeout_ms`
/// while the queue is full (`EMBER_FOREVER`: for ever; 0: not at all). Returns
/// `EMBER_OK`; `EMBER_ETIMEDOUT`; `EMBER_ETOOBIG` for a frame over the queue's message
/// size; `EMBER_EBADMSG` if `frame` is not exactly one frame.
///
/// # Safety
///
/// `q` from `ember_mq_create`/`_open`; `frame` `len` readable bytes.
///
/// Thread safety: not with other calls on the same handle (several handles on one queue,
/// in any threads or processes, are fine).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mq_send(
    q: *mut ember_mq,
    frame: *const u8,
    len: usize,
    prio: u32,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (q, frame) = unsafe { (arg_mut(q)?, bytes(frame, len)?) };
        q.q.send_prio(frame, prio, timeout(timeout_ms)).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Receives the highest-priority frame into `buf` (`cap` bytes, at least the queue's
/// message size), its length into `*len` and, if `prio` is not NULL, its priority,
/// waiting up to `timeout_ms`. Returns `EMBER_OK`; `EMBER_ETIMEDOUT`; `EMBER_ENOSPC`;
/// `EMBER_EBADMSG` for a malformed message (consumed).
///
/// # Safety
///
/// `q` from `ember_mq_create`/`_open`; `buf` `cap` writable bytes; `len` a writable
/// `size_t`; `prio` NULL or a writable `uint32_t`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mq_recv(
    q: *mut ember_mq,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    prio: *mut u32,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        let len = crate::error::out(len)?;
        let prio = if prio.is_null() { None } else { Some(crate::error::out(prio)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (q, buf) = unsafe { (arg_mut(q)?, bytes_mut(buf, cap)?) };
        let (n, p) = q.q.recv_prio(buf, timeout(timeout_ms)).map_err(code)?;
        len.set(n);
        if let Some(out) = prio {
            out.set(p);
        }
        Ok(EMBER_OK)
    })
}

/// The queue's fd (for `poll`/`epoll`; still owned by the handle).
///
/// # Safety
///
/// `q` from `ember_mq_create`/`_open`.
///
/// Thread safety: not concurrently with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mq_fd(q: *const ember_mq) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let q = unsafe { arg(q)? };
        Ok(std::os::fd::AsRawFd::as_raw_fd(&rustix::fd::AsFd::as_fd(&q.q)))
    })
}

/// Closes the queue (NULL is ignored). A queue made by `ember_mq_create` is also
/// unlinked.
///
/// # Safety
///
/// `q` from `ember_mq_create`/`_open`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mq_free(q: *mut ember_mq) {
    if !q.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(q) });
    }
}
