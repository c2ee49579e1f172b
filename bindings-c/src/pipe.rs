//! Pipes carrying Ember frames: a stream reader (reassembles frames) and a writer (whole
//! frames, never half of one; `SIGPIPE` never kills the process).

use core::ffi::c_int;
use std::os::fd::AsRawFd;

use ember_linux::pipe::{StreamReader, Writer};
use ember_linux::{FrameReceiver, FrameSender, TimedReceiver, TimedSender};

use crate::error::*;

/// The largest frame a pipe reader reassembles, and the smallest receive buffer.
pub const EMBER_PIPE_MAX_FRAME: usize = 16384;

/// The reading end of a pipe (opaque).
///
/// `Send` and `Sync`, like the reader it owns.
#[derive(Debug)]
pub struct ember_pipe_reader {
    r: StreamReader<EMBER_PIPE_MAX_FRAME>,
}

/// The writing end of a pipe (opaque).
///
/// `Send` and `Sync`, like the writer it owns.
#[derive(Debug)]
pub struct ember_pipe_writer {
    w: Writer,
}

impl ember_pipe_reader {
    /// A handle over a reader (a FIFO's).
    pub(crate) fn from_reader(r: StreamReader<EMBER_PIPE_MAX_FRAME>) -> ember_pipe_reader {
        ember_pipe_reader { r }
    }
}

impl ember_pipe_writer {
    /// A handle over a writer (a FIFO's).
    pub(crate) fn from_writer(w: Writer) -> ember_pipe_writer {
        ember_pipe_writer { w }
    }
}

/// Makes a pipe (`pipe2(O_CLOEXEC)`): its reader into `*reader`, its writer into
/// `*writer`. Returns `EMBER_OK`, `EMBER_EINVAL` for NULL pointers, or `EMBER_EOS`.
///
/// # Safety
///
/// `reader` and `writer` must point to writable pointers.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_new(
    reader: *mut *mut ember_pipe_reader,
    writer: *mut *mut ember_pipe_writer,
) -> c_int {
    guard(|| {
        let (reader, writer) = (crate::error::out(reader)?, crate::error::out(writer)?);
        reader.set(core::ptr::null_mut());
        writer.set(core::ptr::null_mut());
        let (r, w) = ember_linux::pipe::pipe().map_err(code)?;
        let r = StreamReader::from_fd(r.into_fd());
        reader.set(Box::into_raw(Box::new(ember_pipe_reader { r })));
        writer.set(Box::into_raw(Box::new(ember_pipe_writer { w })));
        Ok(EMBER_OK)
    })
}

/// A reader over `fd` (a pipe's or FIFO's read end, or any stream: stdin), which it now
/// owns (closed by `ember_pipe_reader_free`). Returns `EMBER_OK` or `EMBER_EINVAL`.
///
/// # Safety
///
/// `fd` must be an open descriptor the caller owns and does not use or close after;
/// `out` must point to a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_reader_from_fd(fd: c_int, out: *mut *mut ember_pipe_reader) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        out.set(Box::into_raw(Box::new(ember_pipe_reader { r: StreamReader::from_fd(owned(fd)?) })));
        Ok(EMBER_OK)
    })
}

/// A writer over `fd` (a pipe's or FIFO's write end, or stdout), which it now owns.
/// Returns `EMBER_OK`, or `EMBER_EINVAL` (a negative `fd`, `out` NULL or misaligned).
///
/// # Safety
///
/// As `ember_pipe_reader_from_fd`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_writer_from_fd(fd: c_int, out: *mut *mut ember_pipe_writer) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        out.set(Box::into_raw(Box::new(ember_pipe_writer { w: Writer::stream(owned(fd)?) })));
        Ok(EMBER_OK)
    })
}

/// A send that waits for room at most `timeout`, watching the installed canceler; in
/// nonblocking mode a plain send (`EMBER_EAGAIN` when full).
fn send(w: &mut ember_pipe_writer, frame: &[u8], timeout: Option<core::time::Duration>) -> Result<(), c_int> {
    // Without a timeout or a canceler, the plain send (no `fcntl` on the hot path).
    let cancel = crate::cancel::current();
    if (timeout.is_none() && cancel.is_none()) || crate::cancel::nonblocking(rustix::fd::AsFd::as_fd(&w.w)) {
        return w.w.send_frame(frame).map_err(code);
    }
    w.w.send_frame_with(frame, timeout, cancel).map_err(code)
}

/// A receive as `send` waits.
fn recv(r: &mut ember_pipe_reader, buf: &mut [u8], timeout: Option<core::time::Duration>) -> Result<usize, c_int> {
    let cancel = crate::cancel::current();
    if (timeout.is_none() && cancel.is_none()) || crate::cancel::nonblocking(rustix::fd::AsFd::as_fd(&r.r)) {
        return r.r.recv_frame(buf).map_err(code);
    }
    r.r.recv_frame_with(buf, timeout, cancel).map_err(code)
}

/// Sends one whole frame (as written by `ember_frame_encode`). Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent);
/// `EMBER_EPEERGONE` when no reader is left (never `SIGPIPE`); `EMBER_EAGAIN` in
/// nonblocking mode when the pipe is full (nothing was sent); `EMBER_EBADMSG` if `frame`
/// is not exactly one frame; `EMBER_EINVAL` for NULL pointers; `EMBER_EOS` (another
/// `write` failure).
///
/// # Safety
///
/// `w` from `ember_pipe_new` or `ember_pipe_writer_from_fd`; `frame` `len` readable bytes.
///
/// Thread safety: not with other calls on the same handle. Frames up to 4096 bytes
/// written by several writers to one pipe never interleave (`PIPE_BUF`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_writer_send(w: *mut ember_pipe_writer, frame: *const u8, len: usize) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (w, frame) = unsafe { (arg_mut(w)?, bytes(frame, len)?) };
        send(w, frame, None)?;
        Ok(EMBER_OK)
    })
}

/// `ember_pipe_writer_send` waiting at most `timeout_ms` for room (`EMBER_FOREVER`: no
/// limit; 0: only if there is room now), so a reader that stopped reading cannot block the
/// writer for ever: `poll` for room, then writes of at most 4096 bytes (a stream frame
/// that started to go out is finished within 2 s, else cut short, and the reader
/// resynchronises). Returns `EMBER_OK`; `EMBER_ETIMEDOUT` (nothing sent);
/// `EMBER_ECANCELED` (the installed canceler, nothing sent); `EMBER_EPEERGONE`;
/// `EMBER_EAGAIN` (nonblocking mode, full); `EMBER_EBADMSG` if `frame` is not exactly one
/// frame; `EMBER_EUNCHECKED`; `EMBER_EINVAL` for NULL pointers; `EMBER_EOS`.
///
/// # Safety
///
/// `w` from `ember_pipe_new` or `ember_pipe_writer_from_fd`; `frame` `len` readable bytes.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_writer_send_timeout(
    w: *mut ember_pipe_writer,
    frame: *const u8,
    len: usize,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (w, frame) = unsafe { (arg_mut(w)?, bytes(frame, len)?) };
        send(w, frame, timeout(timeout_ms))?;
        Ok(EMBER_OK)
    })
}

/// Receives the next whole, checked frame into `buf` (`cap` bytes, at least
/// `EMBER_PIPE_MAX_FRAME`) and its length into `*len`. Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent);
/// `EMBER_EPEERGONE` at end of stream; `EMBER_EAGAIN` in nonblocking mode with nothing
/// whole yet; `EMBER_EBADMSG` for a rejected frame (the next call goes on after it);
/// `EMBER_ENOSPC` for a small `buf`; `EMBER_EINVAL` for NULL pointers; `EMBER_EOS` (the
/// `read` failed).
///
/// # Safety
///
/// `r` from `ember_pipe_new` or `ember_pipe_reader_from_fd`; `buf` `cap` writable bytes;
/// `len` a writable `size_t`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_reader_recv(
    r: *mut ember_pipe_reader,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let len = crate::error::out(len)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (r, buf) = unsafe { (arg_mut(r)?, bytes_mut(buf, cap)?) };
        len.set(recv(r, buf, None)?);
        Ok(EMBER_OK)
    })
}

/// `ember_pipe_reader_recv` waiting at most `timeout_ms` (`EMBER_FOREVER`: no limit; 0:
/// only what is there). A frame that has started to arrive is kept for the next call.
/// Returns `EMBER_OK`; `EMBER_ETIMEDOUT`; `EMBER_ECANCELED` (the installed canceler,
/// nothing taken); `EMBER_EPEERGONE` at end of stream; `EMBER_EAGAIN` (nonblocking mode);
/// `EMBER_EBADMSG`; `EMBER_EUNCHECKED`; `EMBER_ENOSPC`; `EMBER_EINVAL` for NULL pointers;
/// `EMBER_EOS`.
///
/// # Safety
///
/// As `ember_pipe_reader_recv`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_reader_recv_timeout(
    r: *mut ember_pipe_reader,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        let len = crate::error::out(len)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (r, buf) = unsafe { (arg_mut(r)?, bytes_mut(buf, cap)?) };
        len.set(recv(r, buf, timeout(timeout_ms))?);
        Ok(EMBER_OK)
    })
}

/// Switches the reader's fd to nonblocking (`on` != 0) or blocking mode. Returns
/// `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_EOS` (`ioctl(FIONBIO)`
/// failed).
///
/// # Safety
///
/// `r` from `ember_pipe_new` or `ember_pipe_reader_from_fd`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_reader_set_nonblocking(r: *mut ember_pipe_reader, on: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let r = unsafe { arg_mut(r)? };
        rustix::io::ioctl_fionbio(&r.r, on != 0).map_err(|e| code(e.into()))?;
        Ok(EMBER_OK)
    })
}

/// Switches the writer's fd to nonblocking (`on` != 0) or blocking mode. Returns
/// `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_EOS` (`ioctl(FIONBIO)`
/// failed).
///
/// # Safety
///
/// `w` from `ember_pipe_new` or `ember_pipe_writer_from_fd`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_writer_set_nonblocking(w: *mut ember_pipe_writer, on: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let w = unsafe { arg_mut(w)? };
        rustix::io::ioctl_fionbio(&w.w, on != 0).map_err(|e| code(e.into()))?;
        Ok(EMBER_OK)
    })
}

/// The reader's fd (for `poll`/`epoll`; still owned by the reader), or `EMBER_EINVAL`.
///
/// # Safety
///
/// `r` from `ember_pipe_new` or `ember_pipe_reader_from_fd`.
///
/// Thread safety: not concurrently with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_reader_fd(r: *const ember_pipe_reader) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let r = unsafe { arg(r)? };
        Ok(rustix::fd::AsFd::as_fd(&r.r).as_raw_fd())
    })
}

/// The writer's fd (still owned by the writer), or `EMBER_EINVAL`.
///
/// # Safety
///
/// `w` from `ember_pipe_new` or `ember_pipe_writer_from_fd`.
///
/// Thread safety: not concurrently with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_writer_fd(w: *const ember_pipe_writer) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let w = unsafe { arg(w)? };
        Ok(rustix::fd::AsFd::as_fd(&w.w).as_raw_fd())
    })
}

/// Frees a reader and closes its fd (NULL is ignored).
///
/// # Safety
///
/// `r` from `ember_pipe_new` or `ember_pipe_reader_from_fd`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_reader_free(r: *mut ember_pipe_reader) {
    if !r.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(r) });
    }
}

/// Frees a writer and closes its fd (NULL is ignored); its reader then sees the end.
///
/// # Safety
///
/// `w` from `ember_pipe_new` or `ember_pipe_writer_from_fd`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_writer_free(w: *mut ember_pipe_writer) {
    if !w.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(w) });
    }
}

/// Sets the writer's integrity: `EMBER_INTEGRITY_CHECKED` makes `ember_pipe_writer_send`
/// refuse frames with `EMBER_FLAG_UNCHECKED` (`EMBER_EUNCHECKED`, nothing written);
/// `EMBER_INTEGRITY_UNCHECKED` (the default on a pipe or FIFO) sends either kind. Returns
/// `EMBER_OK`, or `EMBER_EINVAL` for a NULL handle or another value.
///
/// # Safety
///
/// `w` a pipe or FIFO writer handle.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_writer_set_integrity(w: *mut ember_pipe_writer, integrity: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let w = unsafe { arg_mut(w)? };
        w.w.set_integrity(crate::frame::integrity(integrity)?);
        Ok(EMBER_OK)
    })
}

/// The writer's integrity setting (`EMBER_INTEGRITY_*`), or `EMBER_EINVAL` for NULL.
///
/// # Safety
///
/// `w` a pipe or FIFO writer handle.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_writer_integrity(w: *const ember_pipe_writer) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let w = unsafe { arg(w)? };
        Ok(crate::frame::integrity_code(w.w.integrity()))
    })
}

/// Makes the reader refuse (`on` != 0) or accept (`on` == 0, the default) frames whose
/// payload is not covered by the checksum: a refused frame is skipped and
/// `ember_pipe_reader_recv` returns `EMBER_EUNCHECKED` for it (the next call goes on after
/// it). Returns `EMBER_OK`, or `EMBER_EINVAL` for NULL.
///
/// # Safety
///
/// `r` a pipe or FIFO reader handle.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_pipe_reader_require_checked(r: *mut ember_pipe_reader, on: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let r = unsafe { arg_mut(r)? };
        r.r.require_checked(on != 0);
        Ok(EMBER_OK)
    })
}
