//! The one place that turns a mapping into references: the shm view.
//!
//! A segment is mapped `MAP_SHARED`; the typed views handed out are `#[repr(C)]` structs of
//! atomics and slices of atomic words, which any bit pattern inhabits and which tolerate
//! concurrent modification by other processes. Nothing else in the crate touches the
//! mapping's memory.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::ptr::NonNull;

use ember_core::shm::Word;
use rustix::fd::AsFd;
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::Result;

/// A `MAP_SHARED` mapping (or a SysV attachment) of a whole segment, unmapped (detached)
/// on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    sysv: bool,
}

// SAFETY: the mapping is plain shared memory, accessed only through atomics; it may be
// used and dropped from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above: every access through `&Mapping` is atomic.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, read-write or read-only.
    pub(crate) fn new(fd: impl AsFd, len: usize, writable: bool) -> Result<Mapping> {
        let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
        // SAFETY: a fresh mapping at an address the kernel chooses (null hint), so it
        // cannot overlap any existing Rust object.
        let ptr = unsafe { rustix::mm::mmap(core::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0)? };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(rustix::io::Errno::NOMEM)?;
        Ok(Mapping { ptr, len, writable, sysv: false })
    }

    /// Attaches SysV segment `id` (of `len` bytes, from `IPC_STAT`) read-write or
    /// read-only.
    pub(crate) fn sysv(id: i32, len: usize, writable: bool) -> Result<Mapping> {
        // SAFETY: the attachment is owned by the returned `Mapping`, detached exactly once
        // in `drop`, and accessed only through atomics.
        let ptr = unsafe { crate::sys::shmat(id, !writable)? };
        let ptr = NonNull::new(ptr).ok_or(rustix::io::Errno::NOMEM)?;
        Ok(Mapping { ptr, len, writable, sysv: true })
    }

    /// Remaps `[offset, offset + len)` of this mapping read-write (the waiter page of a
    /// read-only mapping), in place.
    pub(crate) fn make_writable(&self, fd: impl AsFd, offset: usize, len: usize) -> Result<()> {
        if self.sysv || offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(rustix::io::Errno::INVAL.into());
        }
        // SAFETY: `MAP_FIXED` replaces pages inside our own mapping (checked in range
        // above) with a read-write view of the same file range; the memory is only ever
        // accessed through atomics, so no reference is invalidated.
        unsafe {
            rustix::mm::mmap(
                self.ptr.as_ptr().add(offset).cast::<c_void>(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::FIXED,
                fd,
                offset as u64,
            )?;
        }
        Ok(())
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is writable.
    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// A `T` at byte `offset`.
    ///
    /// Panics if `offset` is misaligned for `T` or `T` does not fit: callers pass offsets
    /// from a validated header.
    pub(crate) fn view<T: AtomicView>(&self, offset: usize) -> &T {
        assert!(offset.checked_add(size_of::<T>()).is_some_and(|end| end <= self.len), "view out of the mapping");
        assert!(offset.is_multiple_of(align_of::<T>()), "misaligned view");
        // SAFETY: in bounds and aligned (checked above; the base is page-aligned); `T` is a
        // `#[repr(C)]` struct of atomics (the `AtomicView` contract), valid for any bytes and
        // for concurrent modification; the reference lives no longer than `&self`.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<T>() }
    }

    /// `len` bytes of data words at byte `offset`.
    pub(crate) fn words(&self, offset: usize, len: usize) -> &[Word] {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len), "words out of the mapping");
        assert!(offset.is_multiple_of(align_of::<Word>()) && len.is_multiple_of(size_of::<Word>()), "misaligned words");
        // SAFETY: in bounds and aligned (checked above); atomic words are valid for any
        // bytes and for concurrent modification; the slice lives no longer than `&self`.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast::<Word>(), len / size_of::<Word>()) }
    }
}

impl Mapping {
    /// [`Mapping::view`] with the lifetime erased, for an endpoint that stores the view next
    /// to the segment that owns this mapping.
    ///
    /// # Safety
    ///
    /// The caller must drop every use of the returned reference before the mapping is
    /// dropped (endpoints declare the view field before the segment field, so it drops
    /// first, and never hand out the `'static` reference).
    pub(crate) unsafe fn view_static<T: AtomicView>(&self, offset: usize) -> &'static T {
        let r: *const T = self.view::<T>(offset);
        // SAFETY: the pointee is the mapping, which stays in place until `munmap` in
        // `drop`; the caller guarantees no use after that.
        unsafe { &*r }
    }

    /// [`Mapping::words`] with the lifetime erased.
    ///
    /// # Safety
    ///
    /// As for [`Mapping::view_static`].
    pub(crate) unsafe fn words_static(&self, offset: usize, len: usize) -> &'static [Word] {
        let r: *const [Word] = self.words(offset, len);
        // SAFETY: as in `view_static`.
        unsafe { &*r }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.sysv {
            // SAFETY: our own attachment; every reference into it borrows `self`.
            let _ = unsafe { crate::sys::shmdt(self.ptr.as_ptr()) };
        } else {
            // SAFETY: we own this mapping; every reference into it borrows `self`, so none
            // outlives this call.
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len) };
        }
    }
}

/// Types that may be viewed in a mapping: `#[repr(C)]`, made only of atomics.
///
/// # Safety
///
/// Implementors must be `#[repr(C)]` structs whose every field is an atomic integer (or an
/// array of them), so that every bit pattern is valid and concurrent writes by another
/// process are not undefined behaviour.
pub(crate) unsafe trait AtomicView {}

// SAFETY: `#[repr(C)]`, 32 `AtomicU32`s.
unsafe impl AtomicView for ember_core::shm::SegmentHeader {}
// SAFETY: `#[repr(C)]`, atomics only.
unsafe impl AtomicView for ember_core::shm::spsc::SpscControl {}
// SAFETY: `#[repr(C)]`, atomics only.
unsafe impl AtomicView for ember_core::shm::seqlock::SeqLockControl {}
// SAFETY: `#[repr(C)]`, atomics only.
unsafe impl AtomicView for ember_core::shm::seqlock::WaitLine {}
// SAFETY: `#[repr(C)]`, atomics only.
unsafe impl AtomicView for ember_core::shm::broadcast::BroadcastControl {}
// SAFETY: `#[repr(C)]`, two `AtomicU32`s.
unsafe impl AtomicView for ember_core::shm::sync::Mutex {}
// SAFETY: `#[repr(C)]`, two `AtomicU32`s.
unsafe impl AtomicView for ember_core::shm::sync::Semaphore {}
// SAFETY: `#[repr(C)]`, two `AtomicU32`s.
unsafe impl AtomicView for ember_core::shm::sync::Event {}
// SAFETY: an atomic integer.
unsafe impl AtomicView for core::sync::atomic::AtomicU32 {}
// SAFETY: an atomic integer.
unsafe impl AtomicView for core::sync::atomic::AtomicU64 {}
