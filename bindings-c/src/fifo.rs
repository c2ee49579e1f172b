//! FIFOs (named pipes): created mode 0600, accepted only if a FIFO owned by this user is
//! already there (never a planted symlink or regular file), and opened without blocking.
//! Their ends are pipe handles (`ember_pipe_reader`, `ember_pipe_writer`): receive, send,
//! nonblocking mode, fd and free are the pipes' functions.

use core::ffi::{c_char, c_int};

use ember_linux::fifo;
use ember_linux::pipe::StreamReader;

use crate::error::*;
use crate::pipe::{EMBER_PIPE_MAX_FRAME, ember_pipe_reader, ember_pipe_writer};

/// Creates the FIFO `path` (`mkfifo`, mode 0600), or accepts an existing FIFO of this
/// user. Returns `EMBER_OK`; `EMBER_EOS` with `EEXIST` if something else is there (a
/// symlink, a regular file: never followed or touched), with `EPERM` for another user's
/// FIFO, or the `errno` of `mkfifo`; `EMBER_EINVAL` for a NULL path or one not UTF-8.
///
/// # Safety
///
/// `path` a NUL-terminated string.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_fifo_create(path: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL.
        let p = unsafe { c_name(path)? };
        fifo::create(p).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// `ember_fifo_create` with `flags` (`EMBER_REPLACE_STALE`, or 0): an existing FIFO of this
/// user that nobody has open for reading is replaced by a fresh one; one that somebody
/// reads is `EMBER_EINUSE` (its reader's pid cannot be known: `ember_last_in_use_pid` is
/// 0). For a daemon that reads the FIFO it creates. Returns `EMBER_OK`; `EMBER_EINUSE`;
/// `EMBER_EINVAL` (a NULL path or one not UTF-8, unknown flags); `EMBER_EOS` as
/// `ember_fifo_create` (`EEXIST`: something else is there; `EPERM`: another user's FIFO;
/// the `errno` of `mkfifo`).
///
/// # Safety
///
/// `path` a NUL-terminated string.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_fifo_create_ex(path: *const c_char, flags: u32) -> c_int {
    guard(|| {
        let options = crate::shm::create_flags(flags)?;
        // SAFETY: the caller's contract, checked for NULL.
        let p = unsafe { c_name(path)? };
        fifo::create_with(p, options).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Removes the FIFO `path`, only if it is a FIFO of this user (`EMBER_EOS` with `EEXIST`
/// for anything else, `EPERM` for another user's, `ENOENT` if there is nothing). Returns
/// `EMBER_OK`, that `EMBER_EOS`, or `EMBER_EINVAL` for a NULL path or one not UTF-8.
///
/// # Safety
///
/// `path` a NUL-terminated string.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_fifo_remove(path: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL.
        let p = unsafe { c_name(path)? };
        fifo::remove(p).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Opens the FIFO `path` for reading (never blocks, even with no writer yet); reads block
/// unless `nonblocking` is non-zero. Before any writer has opened it, and after the last
/// one closed it, a receive returns `EMBER_EPEERGONE`. Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL or misaligned pointer, a path not UTF-8); `EMBER_EOS` (`ENOENT`;
/// `EEXIST`: something other than a FIFO is there; `EACCES`).
///
/// # Safety
///
/// `path` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_fifo_open_reader(
    path: *const c_char,
    nonblocking: c_int,
    out: *mut *mut ember_pipe_reader,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract, checked for NULL.
        let p = unsafe { c_name(path)? };
        let r: StreamReader<EMBER_PIPE_MAX_FRAME> = fifo::open_reader(p, nonblocking != 0).map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_pipe_reader::from_reader(r))));
        Ok(EMBER_OK)
    })
}

/// Opens the FIFO `path` for writing. With no reader it fails at once with
/// `EMBER_EPEERGONE` (it never blocks: retry, or open a reader first). Returns `EMBER_OK`,
/// `EMBER_EPEERGONE`, `EMBER_EINVAL` (a NULL or misaligned pointer, a path not UTF-8), or
/// `EMBER_EOS` (`ENOENT`; `EEXIST`: something other than a FIFO is there; `EACCES`).
///
/// # Safety
///
/// `path` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_fifo_open_writer(
    path: *const c_char,
    nonblocking: c_int,
    out: *mut *mut ember_pipe_writer,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract, checked for NULL.
        let p = unsafe { c_name(path)? };
        let w = fifo::open_writer(p, nonblocking != 0).map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_pipe_writer::from_writer(w))));
        Ok(EMBER_OK)
    })
}
