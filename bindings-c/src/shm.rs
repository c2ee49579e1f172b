//! Shared-memory channels between processes (docs/shm-layout.md): the lossless SPSC ring,
//! the seqlock (latest value) and the lossy broadcast ring, in named POSIX segments
//! (`/name`, in `/dev/shm`). The creator (sender or writer) makes the segment with mode
//! 0600 and `O_EXCL`, and its `_free` unlinks the name; receivers and readers open it by
//! name and must give the creator's `fingerprint` (the application's type id), else
//! `EMBER_EBADMSG`. Records and values are bytes: an Ember frame, or anything else.
//!
//! Waits sleep on a futex in the segment; a reader whose writer died gets
//! `EMBER_EPEERGONE` instead of waiting for ever, as does a receiver whose sender closed.
//!
//! After a crash: the `_create_ex` functions with `EMBER_REPLACE_STALE` take over a
//! segment a dead writer left (`EMBER_EINUSE` for a live one), and `ember_shm_unlink`
//! removes a name by hand. After `fork`: only the process that created a segment unlinks
//! (and closes) it in `_free`; a child that frees an inherited handle only unmaps it.

use core::ffi::{c_char, c_int};

use ember_linux::shm::{
    Backing, BroadcastReader, BroadcastWriter, CreateOptions, SeqLockReader, SeqLockWriter, SpscReceiver, SpscSender,
};

use ember_linux::poll::Deadline;

use crate::error::*;

/// Flag of the `_create_ex` functions (`ember_spsc_sender_create_ex`,
/// `ember_seqlock_writer_create_ex`, `ember_broadcast_writer_create_ex`,
/// `ember_mq_create_ex`, `ember_fifo_create_ex`): take over an object a dead owner left
/// under the name, instead of failing with `EEXIST`; an object whose owner lives is
/// `EMBER_EINUSE`. What a daemon that must come back after `kill -9` passes. A segment
/// whose recorded writer (pid and start time in its header) is dead is replaced
/// atomically (built under a temporary name, renamed over the old one; readers still on
/// the old one get `EMBER_EPEERGONE`); a queue is stale when no live creator holds Ember's
/// lock on it (it is removed and created again, its messages dropped); a FIFO when nobody
/// has it open for reading. docs/c-api.md, "After a crash".
pub const EMBER_REPLACE_STALE: u32 = 1;

/// The options a `_create_ex` function's `flags` ask for; `EMBER_EINVAL` for unknown bits.
pub(crate) fn create_flags(flags: u32) -> Result<CreateOptions, c_int> {
    if flags & !EMBER_REPLACE_STALE != 0 {
        return Err(EMBER_EINVAL);
    }
    Ok(CreateOptions::new().replace_stale(flags & EMBER_REPLACE_STALE != 0))
}

/// Removes the name of the shared-memory segment `name` (`/name`) from `/dev/shm`
/// (`shm_unlink`): for a start-up script or an operator cleaning up by hand. Processes
/// that have it mapped keep their mapping, and its writer's `_free` leaves the name alone
/// (it checks the name still is its segment). Returns `EMBER_OK`; `EMBER_EINVAL` for a bad
/// name; `EMBER_EOS` (`ENOENT`: no such segment; `EACCES`/`EPERM`: another user's).
///
/// # Safety
///
/// `name` a NUL-terminated string.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_shm_unlink(name: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL.
        ember_linux::shm::unlink(unsafe { c_name(name)? }).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// The sending end of an SPSC ring (opaque).
///
/// `Send` and `Sync`, like the sender it owns.
#[derive(Debug)]
pub struct ember_spsc_sender {
    s: SpscSender,
}

/// The receiving end of an SPSC ring (opaque).
///
/// `Send` and `Sync`, like the receiver it owns.
#[derive(Debug)]
pub struct ember_spsc_receiver {
    r: SpscReceiver,
}

impl ember_spsc_sender {
    pub(crate) fn sender_mut(&mut self) -> &mut SpscSender {
        &mut self.s
    }
}

impl ember_spsc_receiver {
    pub(crate) fn receiver_mut(&mut self) -> &mut SpscReceiver {
        &mut self.r
    }
}

/// The writer of a seqlock (opaque).
///
/// `Send` and `Sync`, like the writer it owns.
#[derive(Debug)]
pub struct ember_seqlock_writer {
    w: SeqLockWriter,
}

/// A reader of a seqlock (opaque).
///
/// `Send` and `Sync`, like the reader it owns.
#[derive(Debug)]
pub struct ember_seqlock_reader {
    r: SeqLockReader,
}

/// The writer of a broadcast ring (opaque).
///
/// `Send` and `Sync`, like the writer it owns.
#[derive(Debug)]
pub struct ember_broadcast_writer {
    w: BroadcastWriter,
}

/// A reader of a broadcast ring (opaque), with its own cursor.
///
/// `Send` and `Sync`, like the reader it owns.
#[derive(Debug)]
pub struct ember_broadcast_reader {
    r: BroadcastReader,
}

/// Makes a handle with `make` from the name at `name` and stores it in `*out` (NULL on
/// failure).
///
/// # Safety
///
/// `name` NULL or NUL-terminated; `out` NULL or writable.
unsafe fn make<T>(
    name: *const c_char,
    out: *mut *mut T,
    make: impl FnOnce(&str) -> Result<T, ember_linux::Error>,
) -> Result<c_int, c_int> {
    let out = crate::error::out(out)?;
    out.set(core::ptr::null_mut());
    // SAFETY: the caller's contract, checked for NULL.
    let n = unsafe { c_name(name)? };
    out.set(Box::into_raw(Box::new(make(n).map_err(code)?)));
    Ok(EMBER_OK)
}

/// Creates the SPSC ring `name` with `capacity` bytes of records (a power of two, 64 bytes
/// to 1 GiB; a record holds at most `capacity / 2 - 8` bytes) and `fingerprint`. Returns
/// `EMBER_OK`; `EMBER_EINVAL` for a bad name or capacity; `EMBER_EOS` (`EEXIST`: the name
/// is taken); `EMBER_ENOSHMSPACE`.
/// Every page is reserved at create (`fallocate`): a `/dev/shm` too small for it is
/// `EMBER_ENOSHMSPACE` here, with nothing left behind, never a `SIGBUS` later.
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_spsc_sender_create(
    name: *const c_char,
    capacity: usize,
    fingerprint: u64,
    out: *mut *mut ember_spsc_sender,
) -> c_int {
    // SAFETY: the caller's contract.
    guard(|| unsafe {
        make(name, out, |n| Ok(ember_spsc_sender { s: SpscSender::create(Backing::Named(n), capacity, fingerprint)? }))
    })
}

/// `ember_spsc_sender_create` with `flags` (`EMBER_REPLACE_STALE`, or 0): a ring a dead
/// sender left under the name is taken over; one whose sender lives is `EMBER_EINUSE`
/// (`ember_last_in_use_pid`). Returns `EMBER_OK`; `EMBER_EINUSE`; `EMBER_EINVAL` (a NULL
/// pointer, a bad name or capacity, unknown flags); `EMBER_EOS` (`EEXIST`: the name is
/// taken, without `EMBER_REPLACE_STALE`); `EMBER_ENOSHMSPACE`.
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_spsc_sender_create_ex(
    name: *const c_char,
    capacity: usize,
    fingerprint: u64,
    flags: u32,
    out: *mut *mut ember_spsc_sender,
) -> c_int {
    // SAFETY: the caller's contract.
    guard(|| unsafe {
        let options = create_flags(flags)?;
        make(name, out, |n| {
            Ok(ember_spsc_sender { s: SpscSender::create_with(Backing::Named(n), capacity, fingerprint, options)? })
        })
    })
}

/// Sends one record of `len` bytes, waiting up to `timeout_ms` while the ring is full
/// (`EMBER_FOREVER`; 0: not at all). Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_ETIMEDOUT`;
/// `EMBER_ETOOBIG` for a record over the ring's limit; `EMBER_EINVAL` for a NULL or
/// misaligned pointer. The sender does not watch the
/// receiver: a receiver that died leaves the ring full, so give a finite timeout where
/// that matters.
///
/// # Safety
///
/// `s` from `ember_spsc_sender_create`; `data` `len` readable bytes.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_spsc_sender_send(
    s: *mut ember_spsc_sender,
    data: *const u8,
    len: usize,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (s, data) = unsafe { (arg_mut(s)?, bytes(data, len)?) };
        s.s.send_until_with(data, &mut Deadline::after(timeout(timeout_ms)), crate::cancel::current()).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Closes the ring (the receiver gets `EMBER_EPEERGONE` once it has read what is left)
/// and unlinks its name.
///
/// # Safety
///
/// `h` NULL, or a handle from this module, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_spsc_sender_free(h: *mut ember_spsc_sender) {
    if !h.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// Opens the SPSC ring `name` as its one receiver. A ring whose receiver is open in a live
/// process (this one included) is `EMBER_EINUSE` (`ember_last_in_use_pid` names it): two
/// receivers would each take part of the records. A receiver that died leaves its claim
/// to the next one. A segment of another layout version is `EMBER_EVERSION`.
/// Returns `EMBER_OK`; `EMBER_EINVAL`
/// (a NULL or misaligned pointer, a bad name); `EMBER_EOS` (`ENOENT`: no such segment;
/// `EACCES`); `EMBER_EAGAIN` (its creator has not finished making it); `EMBER_EBADMSG`
/// (not this kind of segment, a damaged header, or another `fingerprint`);
/// `EMBER_EVERSION`; `EMBER_ENOSHMSPACE`.
/// `EMBER_ENOSHMSPACE` if `/dev/shm` cannot back its pages. A process that later shrinks
/// the file (`ftruncate` on `/dev/shm/name`, by its owner or root) still makes this
/// process's next touch of the lost pages raise `SIGBUS`: keep `/dev/shm` objects to
/// their creator.
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_spsc_receiver_open(
    name: *const c_char,
    fingerprint: u64,
    out: *mut *mut ember_spsc_receiver,
) -> c_int {
    // SAFETY: the caller's contract.
    guard(|| unsafe { make(name, out, |n| Ok(ember_spsc_receiver { r: SpscReceiver::open(n, fingerprint)? })) })
}

/// Receives the next record into `buf` (`cap` bytes) and its length into `*len`, waiting
/// up to `timeout_ms`. Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_ETIMEDOUT`; `EMBER_ENOSPC` (nothing
/// consumed); `EMBER_EPEERGONE` when the sender closed the ring or died and nothing is
/// left; `EMBER_EINVAL` for a NULL or misaligned pointer.
///
/// # Safety
///
/// `r` from `ember_spsc_receiver_open`; `buf` `cap` writable bytes; `len` a writable
/// `size_t`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_spsc_receiver_recv(
    r: *mut ember_spsc_receiver,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        let len = crate::error::out(len)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (r, buf) = unsafe { (arg_mut(r)?, bytes_mut(buf, cap)?) };
        len.set(
            r.r.recv_until_with(buf, &mut Deadline::after(timeout(timeout_ms)), crate::cancel::current())
                .map_err(code)?,
        );
        Ok(EMBER_OK)
    })
}

/// Closes the receiver.
///
/// # Safety
///
/// `h` NULL, or a handle from this module, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_spsc_receiver_free(h: *mut ember_spsc_receiver) {
    if !h.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// Creates the seqlock `name` holding values of up to `capacity` bytes (a multiple of 8,
/// at least 64). Returns `EMBER_OK`; `EMBER_EINVAL` for a NULL pointer, a bad name or
/// capacity; `EMBER_EOS` (`EEXIST`: the name is taken); `EMBER_ENOSHMSPACE`.
/// Every page is reserved at create (`fallocate`): a `/dev/shm` too small for it is
/// `EMBER_ENOSHMSPACE` here, with nothing left behind, never a `SIGBUS` later.
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_seqlock_writer_create(
    name: *const c_char,
    capacity: usize,
    fingerprint: u64,
    out: *mut *mut ember_seqlock_writer,
) -> c_int {
    // SAFETY: the caller's contract.
    guard(|| unsafe {
        make(name, out, |n| {
            Ok(ember_seqlock_writer { w: SeqLockWriter::create(Backing::Named(n), capacity, fingerprint)? })
        })
    })
}

/// `ember_seqlock_writer_create` with `flags` (`EMBER_REPLACE_STALE`, or 0): a seqlock a
/// dead writer left under the name is taken over; one whose writer lives is `EMBER_EINUSE`
/// (`ember_last_in_use_pid`). Returns `EMBER_OK`; `EMBER_EINUSE`; `EMBER_EINVAL` (a NULL
/// pointer, a bad name or capacity, unknown flags); `EMBER_EOS` (`EEXIST`: the name is
/// taken, without `EMBER_REPLACE_STALE`); `EMBER_ENOSHMSPACE`.
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_seqlock_writer_create_ex(
    name: *const c_char,
    capacity: usize,
    fingerprint: u64,
    flags: u32,
    out: *mut *mut ember_seqlock_writer,
) -> c_int {
    // SAFETY: the caller's contract.
    guard(|| unsafe {
        let options = create_flags(flags)?;
        make(name, out, |n| {
            Ok(ember_seqlock_writer {
                w: SeqLockWriter::create_with(Backing::Named(n), capacity, fingerprint, options)?,
            })
        })
    })
}

/// Publishes a new value of `len` bytes (never blocks; wakes readers waiting for a
/// change). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer);
/// `EMBER_ETOOBIG` if it exceeds the capacity.
///
/// # Safety
///
/// `w` from `ember_seqlock_writer_create`; `value` `len` readable bytes.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_seqlock_writer_write(
    w: *mut ember_seqlock_writer,
    value: *const u8,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (w, value) = unsafe { (arg_mut(w)?, bytes(value, len)?) };
        w.w.write(value).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Unmaps the seqlock and unlinks its name.
///
/// # Safety
///
/// `h` NULL, or a handle from this module, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_seqlock_writer_free(h: *mut ember_seqlock_writer) {
    if !h.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// Opens the seqlock `name` (mapped read-only but for its waiter page). Returns `EMBER_OK`; `EMBER_EINVAL`
/// (a NULL or misaligned pointer, a bad name); `EMBER_EOS` (`ENOENT`: no such segment;
/// `EACCES`); `EMBER_EAGAIN` (its creator has not finished making it); `EMBER_EBADMSG`
/// (not this kind of segment, a damaged header, or another `fingerprint`);
/// `EMBER_EVERSION`; `EMBER_ENOSHMSPACE`.
/// `EMBER_ENOSHMSPACE` if `/dev/shm` cannot back its pages. A process that later shrinks
/// the file (`ftruncate` on `/dev/shm/name`, by its owner or root) still makes this
/// process's next touch of the lost pages raise `SIGBUS`: keep `/dev/shm` objects to
/// their creator.
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_seqlock_reader_open(
    name: *const c_char,
    fingerprint: u64,
    out: *mut *mut ember_seqlock_reader,
) -> c_int {
    // SAFETY: the caller's contract.
    guard(|| unsafe { make(name, out, |n| Ok(ember_seqlock_reader { r: SeqLockReader::open(n, fingerprint)? })) })
}

/// Copies the current value into `buf` (`cap` bytes): its length into `*len` and, if
/// `version` is not NULL, its version (even, growing with each write; pass it to
/// `ember_seqlock_reader_wait_change`). Never blocks. Returns `EMBER_OK`; `EMBER_EAGAIN`
/// if nothing was written yet or the writer keeps it busy (retry); `EMBER_ENOSPC`;
/// `EMBER_EPEERGONE` if the writer died in the middle of a write; `EMBER_EINVAL` for a
/// NULL or misaligned pointer.
///
/// # Safety
///
/// `r` from `ember_seqlock_reader_open`; `buf` `cap` writable bytes; `len` a writable
/// `size_t`; `version` NULL or a writable `uint32_t`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_seqlock_reader_read(
    r: *mut ember_seqlock_reader,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    version: *mut u32,
) -> c_int {
    guard(|| {
        let len = crate::error::out(len)?;
        let version = if version.is_null() { None } else { Some(crate::error::out(version)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (r, buf) = unsafe { (arg_mut(r)?, bytes_mut(buf, cap)?) };
        let snap = r.r.read(buf).map_err(code)?;
        len.set(snap.len);
        if let Some(v) = version {
            v.set(snap.seq);
        }
        Ok(EMBER_OK)
    })
}

/// Sleeps until the value changes from the one read at `version` (0 before any read),
/// for at most `timeout_ms`. Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_ETIMEDOUT`; `EMBER_EPEERGONE` if
/// the writer died; `EMBER_EINVAL` for a NULL or misaligned handle.
///
/// # Safety
///
/// `r` from `ember_seqlock_reader_open`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_seqlock_reader_wait_change(
    r: *mut ember_seqlock_reader,
    version: u32,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let r = unsafe { arg_mut(r)? };
        r.r.wait_change_with(version, timeout(timeout_ms), crate::cancel::current()).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Closes the reader.
///
/// # Safety
///
/// `h` NULL, or a handle from this module, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_seqlock_reader_free(h: *mut ember_seqlock_reader) {
    if !h.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// Creates the broadcast ring `name` with `capacity` bytes of records (a power of two, 64
/// bytes to 1 GiB). Returns `EMBER_OK`; `EMBER_EINVAL` for a NULL pointer, a bad name or
/// capacity; `EMBER_EOS` (`EEXIST`: the name is taken); `EMBER_ENOSHMSPACE`.
/// Every page is reserved at create (`fallocate`): a `/dev/shm` too small for it is
/// `EMBER_ENOSHMSPACE` here, with nothing left behind, never a `SIGBUS` later.
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_broadcast_writer_create(
    name: *const c_char,
    capacity: usize,
    fingerprint: u64,
    out: *mut *mut ember_broadcast_writer,
) -> c_int {
    // SAFETY: the caller's contract.
    guard(|| unsafe {
        make(name, out, |n| {
            Ok(ember_broadcast_writer { w: BroadcastWriter::create(Backing::Named(n), capacity, fingerprint)? })
        })
    })
}

/// `ember_broadcast_writer_create` with `flags` (`EMBER_REPLACE_STALE`, or 0): a ring a dead
/// writer left under the name is taken over; one whose writer lives is `EMBER_EINUSE`
/// (`ember_last_in_use_pid`). Returns `EMBER_OK`; `EMBER_EINUSE`; `EMBER_EINVAL` (a NULL
/// pointer, a bad name or capacity, unknown flags); `EMBER_EOS` (`EEXIST`: the name is
/// taken, without `EMBER_REPLACE_STALE`); `EMBER_ENOSHMSPACE`.
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_broadcast_writer_create_ex(
    name: *const c_char,
    capacity: usize,
    fingerprint: u64,
    flags: u32,
    out: *mut *mut ember_broadcast_writer,
) -> c_int {
    // SAFETY: the caller's contract.
    guard(|| unsafe {
        let options = create_flags(flags)?;
        make(name, out, |n| {
            Ok(ember_broadcast_writer {
                w: BroadcastWriter::create_with(Backing::Named(n), capacity, fingerprint, options)?,
            })
        })
    })
}

/// Sends one record of `len` bytes to every reader; never blocks (the oldest records are
/// overwritten; readers that fall behind learn how many they lost). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL or misaligned pointer); `EMBER_ETOOBIG` over the ring's limit.
///
/// # Safety
///
/// `w` from `ember_broadcast_writer_create`; `data` `len` readable bytes.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_broadcast_writer_send(
    w: *mut ember_broadcast_writer,
    data: *const u8,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (w, data) = unsafe { (arg_mut(w)?, bytes(data, len)?) };
        w.w.send(data).map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Closes the ring (readers get `EMBER_EPEERGONE` after the last record) and unlinks
/// its name.
///
/// # Safety
///
/// `h` NULL, or a handle from this module, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_broadcast_writer_free(h: *mut ember_broadcast_writer) {
    if !h.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// Opens the broadcast ring `name` as a new reader: from the oldest record still in the
/// ring if `from_oldest` is non-zero, else from the next one written. Returns `EMBER_OK`; `EMBER_EINVAL`
/// (a NULL or misaligned pointer, a bad name); `EMBER_EOS` (`ENOENT`: no such segment;
/// `EACCES`); `EMBER_EAGAIN` (its creator has not finished making it); `EMBER_EBADMSG`
/// (not this kind of segment, a damaged header, or another `fingerprint`);
/// `EMBER_EVERSION`; `EMBER_ENOSHMSPACE`.
/// `EMBER_ENOSHMSPACE` if `/dev/shm` cannot back its pages. A process that later shrinks
/// the file (`ftruncate` on `/dev/shm/name`, by its owner or root) still makes this
/// process's next touch of the lost pages raise `SIGBUS`: keep `/dev/shm` objects to
/// their creator.
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_broadcast_reader_open(
    name: *const c_char,
    fingerprint: u64,
    from_oldest: c_int,
    out: *mut *mut ember_broadcast_reader,
) -> c_int {
    // SAFETY: the caller's contract.
    guard(|| unsafe {
        make(name, out, |n| Ok(ember_broadcast_reader { r: BroadcastReader::open(n, fingerprint, from_oldest != 0)? }))
    })
}

/// Receives the next record into `buf` (`cap` bytes), waiting up to `timeout_ms`: its
/// length into `*len`, and if not NULL its number into `*seq` (0 for the first record
/// ever written) and into `*lost` the records this reader lost (overwritten before it got
/// to them) since its previous receive. Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_ETIMEDOUT`;
/// `EMBER_ENOSPC` (the record stays); `EMBER_EPEERGONE` when the writer closed the ring or
/// died; `EMBER_EINVAL` for a NULL or misaligned pointer.
///
/// # Safety
///
/// `r` from `ember_broadcast_reader_open`; `buf` `cap` writable bytes; `len` a writable
/// `size_t`; `seq` and `lost` NULL or writable `uint64_t`s.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_broadcast_reader_recv(
    r: *mut ember_broadcast_reader,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    seq: *mut u64,
    lost: *mut u64,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        let len = crate::error::out(len)?;
        let seq = if seq.is_null() { None } else { Some(crate::error::out(seq)?) };
        let lost = if lost.is_null() { None } else { Some(crate::error::out(lost)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (r, buf) = unsafe { (arg_mut(r)?, bytes_mut(buf, cap)?) };
        let got = r.r.recv_with(buf, timeout(timeout_ms), crate::cancel::current()).map_err(code)?;
        len.set(got.len);
        if let Some(s) = seq {
            s.set(got.seq);
        }
        if let Some(l) = lost {
            l.set(got.lost);
        }
        Ok(EMBER_OK)
    })
}

/// Closes the reader.
///
/// # Safety
///
/// `h` NULL, or a handle from this module, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_broadcast_reader_free(h: *mut ember_broadcast_reader) {
    if !h.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}
