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

/// `ember_mq_create` with `flags` (`EMBER_REPLACE_STALE`, or 0): a queue no live creator
/// holds (its creator died) is removed, with any messages in it, and created again; one a
/// live creator holds is `EMBER_EINUSE` (`ember_last_in_use_pid`, from `/proc/locks`).
/// Every creator holds a shared `flock` on its queue until `ember_mq_free`, which is how
/// a live one is told from a dead one: a queue made without Ember looks stale. Returns
/// `EMBER_OK`; `EMBER_EINUSE`; `EMBER_EINVAL` (a NULL pointer, a bad name or access,
/// unknown flags); `EMBER_EOS` (`EEXIST` without `EMBER_REPLACE_STALE`, `EMFILE`, limits in
/// `/proc/sys/fs/mqueue`).
///
/// # Safety
///
/// As `ember_mq_create`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mq_create_ex(
    name: *const c_char,
    max_msgs: usize,
    msg_size: usize,
    access_mode: c_int,
    flags: u32,
    out: *mut *mut ember_mq,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        let options = crate::shm::create_flags(flags)?;
        // SAFETY: the caller's contract, checked for NULL.
        let n = unsafe { c_name(name)? };
        let q = MessageQueue::create_with(n, max_msgs, msg_size, access(access_mode)?, options).map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_mq { q })));
        Ok(EMBER_OK)
    })
}

/// Opens the existing queue `name` as `access` (`EMBER_MQ_*`). Returns `EMBER_OK`;
/// `EMBER_EINVAL` for a NULL pointer, a bad name or access (checked before any syscall);
/// `EMBER_EOS` (`ENOENT`: no such queue; `EACCES`, `EMFILE`).
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

/// Removes the queue `name` from the system (open handles keep working). Returns
/// `EMBER_OK`; `EMBER_EINVAL` (a NULL name, not UTF-8 or not a valid queue name);
/// `EMBER_EOS` (`ENOENT`: no such queue; `EACCES`).
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
/// `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_ETIMEDOUT`; `EMBER_ETOOBIG` for a frame over the queue's message
/// size; `EMBER_EBADMSG` if `frame` is not exactly one frame; `EMBER_EINVAL` (a NULL or
/// misaligned pointer); `EMBER_EOS` (`EBADF`: the queue is not open for sending).
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
        q.q.send_prio_cancellable(frame, prio, timeout(timeout_ms), crate::cancel::current()).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Receives the highest-priority frame into `buf` (`cap` bytes, at least the queue's
/// message size), its length into `*len` and, if `prio` is not NULL, its priority,
/// waiting up to `timeout_ms`. Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_ETIMEDOUT`; `EMBER_ENOSPC`;
/// `EMBER_EBADMSG` for a malformed message (consumed); `EMBER_EINVAL` (a NULL or
/// misaligned pointer); `EMBER_EOS` (`EBADF`: the queue is not open for receiving).
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
        let (n, p) = q.q.recv_prio_cancellable(buf, timeout(timeout_ms), crate::cancel::current()).map_err(code)?;
        len.set(n);
        if let Some(out) = prio {
            out.set(p);
        }
        Ok(EMBER_OK)
    })
}

/// The queue's fd (for `poll`/`epoll`; still owned by the handle), or `EMBER_EINVAL` (a
/// NULL or misaligned handle).
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

/// Sets the queue handle's integrity: `EMBER_INTEGRITY_CHECKED` makes `ember_mq_send`
/// refuse frames with `EMBER_FLAG_UNCHECKED` (`EMBER_EUNCHECKED`, nothing sent);
/// `EMBER_INTEGRITY_UNCHECKED` (the default) sends either kind. Returns `EMBER_OK`, or
/// `EMBER_EINVAL` for a NULL handle or another value.
///
/// # Safety
///
/// `q` from `ember_mq_create`/`_open`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mq_set_integrity(q: *mut ember_mq, integrity: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let q = unsafe { arg_mut(q)? };
        ember_linux::FrameSender::set_integrity(&mut q.q, crate::frame::integrity(integrity)?);
        Ok(EMBER_OK)
    })
}

/// The queue handle's integrity setting (`EMBER_INTEGRITY_*`), or `EMBER_EINVAL` for NULL.
///
/// # Safety
///
/// `q` from `ember_mq_create`/`_open`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mq_integrity(q: *const ember_mq) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let q = unsafe { arg(q)? };
        Ok(crate::frame::integrity_code(ember_linux::FrameSender::integrity(&q.q)))
    })
}

/// Makes `ember_mq_recv` refuse (`on` != 0) or accept (`on` == 0, the default) frames whose
/// payload is not covered by the checksum: `EMBER_EUNCHECKED`, the message consumed.
/// Returns `EMBER_OK`, or `EMBER_EINVAL` for NULL.
///
/// # Safety
///
/// `q` from `ember_mq_create`/`_open`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mq_require_checked(q: *mut ember_mq, on: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let q = unsafe { arg_mut(q)? };
        ember_linux::FrameReceiver::require_checked(&mut q.q, on != 0);
        Ok(EMBER_OK)
    })
}
