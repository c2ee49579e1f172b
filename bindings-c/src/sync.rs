//! Mutexes, semaphores and events shared between processes, in a sync segment
//! (docs/sync.md). The application lays out the segment's data area: each primitive is 8
//! bytes at a 4-byte aligned offset of its choosing, and `ember_sync_segment_data` gives
//! the area for its own shared data.

use core::ffi::{c_char, c_int, c_void};

use ember_linux::shm::{Backing, SyncSegment};

use crate::error::*;

/// A sync segment (opaque).
///
/// `Send` and `Sync`, like the segment it owns.
#[derive(Debug)]
pub struct ember_sync_segment {
    seg: SyncSegment,
}

/// Creates the named segment (`/name`, `O_EXCL`, mode 0600) with a data area of
/// `capacity` bytes (a multiple of 8, at least 64), zeroed: zeroed mutexes are unlocked,
/// events at 0, semaphores at 0. `fingerprint` is the application's layout id; openers
/// must give the same. The creator's `ember_sync_segment_free` unlinks the name. Returns
/// `EMBER_OK`; `EMBER_EINVAL` for a NULL pointer, a bad name or capacity; `EMBER_EOS`
/// (`EEXIST`: the name is taken); `EMBER_ENOSHMSPACE`.
/// Every page is reserved at create (`fallocate`): a `/dev/shm` too small for it is
/// `EMBER_ENOSHMSPACE` here, with nothing left behind, never a `SIGBUS` later.
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sync_segment_create(
    name: *const c_char,
    capacity: usize,
    fingerprint: u64,
    out: *mut *mut ember_sync_segment,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract, checked for NULL.
        let n = unsafe { c_name(name)? };
        let seg = SyncSegment::create(Backing::Named(n), capacity, fingerprint).map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_sync_segment { seg })));
        Ok(EMBER_OK)
    })
}

/// Opens the named segment, checking its header and `fingerprint` (`EMBER_EBADMSG` if they
/// do not match). Returns `EMBER_OK`; `EMBER_EINVAL`
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
/// As `ember_sync_segment_create`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sync_segment_open(
    name: *const c_char,
    fingerprint: u64,
    out: *mut *mut ember_sync_segment,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract, checked for NULL.
        let n = unsafe { c_name(name)? };
        let seg = SyncSegment::open(n, fingerprint).map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_sync_segment { seg })));
        Ok(EMBER_OK)
    })
}

/// The data area: `*data` its first byte (8-aligned), `*len` its size. The primitives live
/// inside it at the offsets the application chose; the rest is the application's shared
/// data (access it with atomics or under a mutex). Returns `EMBER_OK`, or `EMBER_EINVAL`
/// (a NULL or misaligned pointer).
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`; `data` and `len` writable. The pointer
/// is valid until the segment is freed.
///
/// Thread safety: any thread while the handle lives.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sync_segment_data(
    seg: *const ember_sync_segment,
    data: *mut *mut c_void,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let (data, len) = (crate::error::out(data)?, crate::error::out(len)?);
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        let first = seg.seg.u32_at(0).map_err(code)?;
        data.set((first as *const core::sync::atomic::AtomicU32).cast_mut().cast());
        len.set(seg.seg.capacity());
        Ok(EMBER_OK)
    })
}

/// Unmaps the segment (NULL is ignored); the creator's handle also unlinks its name.
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`, not used after; no thread may hold a
/// pointer from `ember_sync_segment_data` after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sync_segment_free(seg: *mut ember_sync_segment) {
    if !seg.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(seg) });
    }
}

/// Locks the mutex at `offset`, waiting up to `timeout_ms` (`EMBER_FOREVER`, or 0: do not
/// wait, `EMBER_EAGAIN` if held by a live owner). Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: not taken); `EMBER_EOWNERDEAD`
/// with the lock held when its last owner died holding it (repair,
/// `ember_mutex_consistent`, unlock); `EMBER_ETIMEDOUT`;
/// `EMBER_ENOTRECOVERABLE`; `EMBER_EDEADLK` if this thread holds it; `EMBER_EINVAL` for a
/// NULL or misaligned handle or a misaligned or out-of-range offset. No syscall when the
/// mutex is free.
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`.
///
/// Thread safety: any thread; the thread that locks must unlock.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mutex_lock(seg: *const ember_sync_segment, offset: usize, timeout_ms: i64) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        let m = seg.seg.mutex(offset).map_err(|_| EMBER_EINVAL)?;
        let t = timeout(timeout_ms);
        // A zero timeout still looks at the owner (a dead one is taken over): a caller that
        // polls with 0 must recover too. A held mutex is then EMBER_EAGAIN.
        let how = match m.lock_unguarded_with(t, crate::cancel::current()) {
            Err(ember_linux::Error::TimedOut) if t == Some(core::time::Duration::ZERO) => return Err(EMBER_EAGAIN),
            r => r,
        };
        match how.map_err(code)? {
            ember_core::shm::sync::Locked::Clean => Ok(EMBER_OK),
            ember_core::shm::sync::Locked::OwnerDied => Ok(EMBER_EOWNERDEAD),
        }
    })
}

/// Locks the mutex at `offset` if it is free: `EMBER_OK`, or `EMBER_EAGAIN` if held (a
/// dead owner is only noticed by `ember_mutex_lock`); `EMBER_ENOTRECOVERABLE`;
/// `EMBER_EINVAL` (a NULL or misaligned handle, an `offset` misaligned or past the data area).
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`.
///
/// Thread safety: any thread; the thread that locks must unlock.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mutex_trylock(seg: *const ember_sync_segment, offset: usize) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        let m = seg.seg.mutex(offset).map_err(|_| EMBER_EINVAL)?;
        m.try_lock_unguarded().map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Unlocks the mutex at `offset`. After `EMBER_EOWNERDEAD` without
/// `ember_mutex_consistent`, the mutex becomes not recoverable. Returns `EMBER_OK`;
/// `EMBER_ENOTOWNER` if this thread does not hold it; `EMBER_EINVAL` (a NULL or misaligned handle, an `offset` misaligned or past the data area).
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`.
///
/// Thread safety: the thread that locked.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mutex_unlock(seg: *const ember_sync_segment, offset: usize) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        seg.seg.mutex(offset).map_err(|_| EMBER_EINVAL)?.unlock().map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Marks the data repaired after `EMBER_EOWNERDEAD` (this thread must hold the lock).
/// Returns `EMBER_OK`; `EMBER_ENOTOWNER` if this thread does not hold it;
/// `EMBER_EINVAL` (a NULL or misaligned handle, an `offset` misaligned or past the data area).
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`.
///
/// Thread safety: the thread that holds the lock.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mutex_consistent(seg: *const ember_sync_segment, offset: usize) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        seg.seg.mutex(offset).map_err(|_| EMBER_EINVAL)?.mark_consistent().map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Sets the semaphore at `offset` to `count` (the creator, before others use it). Returns
/// `EMBER_OK`, or `EMBER_EINVAL` (a NULL or misaligned handle, an `offset` misaligned or
/// past the data area).
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`.
///
/// Thread safety: before the semaphore is shared.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sem_init(seg: *const ember_sync_segment, offset: usize, count: u32) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        seg.seg.semaphore(offset).map_err(|_| EMBER_EINVAL)?.init(count);
        Ok(EMBER_OK)
    })
}

/// Adds one to the semaphore at `offset`, waking a waiter (`EMBER_EOVERFLOW` at the
/// maximum). No syscall when nobody waits. Returns `EMBER_OK`; `EMBER_EOVERFLOW`;
/// `EMBER_EINVAL` (a NULL or misaligned handle, an `offset` misaligned or past the data area).
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sem_post(seg: *const ember_sync_segment, offset: usize) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        seg.seg.semaphore(offset).map_err(|_| EMBER_EINVAL)?.post().map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// Takes one from the semaphore at `offset`, waiting up to `timeout_ms` while it is zero
/// (`EMBER_ETIMEDOUT`; 0: `EMBER_EAGAIN` at once). Returns `EMBER_OK`, `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: not taken); `EMBER_ETIMEDOUT`,
/// `EMBER_EAGAIN`, or `EMBER_EINVAL` (a NULL or misaligned handle, an `offset` misaligned or past the data area).
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sem_wait(seg: *const ember_sync_segment, offset: usize, timeout_ms: i64) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        let s = seg.seg.semaphore(offset).map_err(|_| EMBER_EINVAL)?;
        let t = timeout(timeout_ms);
        if t == Some(core::time::Duration::ZERO) { s.try_wait() } else { s.wait_with(t, crate::cancel::current()) }
            .map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// The semaphore's count now (it may change at once). Returns `EMBER_OK`, or
/// `EMBER_EINVAL` (a NULL or misaligned pointer, an `offset` misaligned or past the data
/// area).
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`; `count` writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_sem_count(seg: *const ember_sync_segment, offset: usize, count: *mut u32) -> c_int {
    guard(|| {
        let count = crate::error::out(count)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        count.set(seg.seg.semaphore(offset).map_err(|_| EMBER_EINVAL)?.count());
        Ok(EMBER_OK)
    })
}

/// The event's counter now, into `*seen` (pass it to `ember_event_wait_change`). Returns
/// `EMBER_OK`, or `EMBER_EINVAL` (a NULL or misaligned pointer, an `offset` misaligned or
/// past the data area).
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`; `seen` writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_event_current(seg: *const ember_sync_segment, offset: usize, seen: *mut u32) -> c_int {
    guard(|| {
        let seen = crate::error::out(seen)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        seen.set(seg.seg.event(offset).map_err(|_| EMBER_EINVAL)?.current());
        Ok(EMBER_OK)
    })
}

/// Waits up to `timeout_ms` until the event's counter differs from `seen`; the new value
/// into `*now` (if not NULL). What the notifier wrote before notifying is visible after.
/// Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: not taken); `EMBER_ETIMEDOUT` (no change within `timeout_ms`); `EMBER_EINVAL`
/// (a NULL or misaligned pointer, an `offset` misaligned or past the data area, checked
/// before waiting).
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`; `now` NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_event_wait_change(
    seg: *const ember_sync_segment,
    offset: usize,
    seen: u32,
    timeout_ms: i64,
    now: *mut u32,
) -> c_int {
    guard(|| {
        // Every argument is checked before the wait: a bad `now` is EMBER_EINVAL at once,
        // not a wait (and a change seen) followed by the error.
        let now = if now.is_null() { None } else { Some(crate::error::out(now)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        let v = seg
            .seg
            .event(offset)
            .map_err(|_| EMBER_EINVAL)?
            .wait_change_with(seen, timeout(timeout_ms), crate::cancel::current())
            .map_err(code)?;
        if let Some(now) = now {
            now.set(v);
        }
        Ok(EMBER_OK)
    })
}

/// Advances the event's counter and wakes one waiter (`all` == 0) or every waiter.
/// Returns `EMBER_OK`, or `EMBER_EINVAL` (a NULL or misaligned handle, an `offset`
/// misaligned or past the data area).
///
/// # Safety
///
/// `seg` from `ember_sync_segment_create`/`_open`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_event_notify(seg: *const ember_sync_segment, offset: usize, all: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let seg = unsafe { arg(seg)? };
        let e = seg.seg.event(offset).map_err(|_| EMBER_EINVAL)?;
        if all != 0 {
            e.notify_all()
        } else {
            e.notify_one()
        }
        Ok(EMBER_OK)
    })
}
