//! Shared-memory channels between processes: segments, futex wake-ups and liveness.
//!
//! `ember_core::shm` holds the layouts and lock-free protocols; this module creates and
//! maps the segments and adds what needs the kernel:
//!
//! - **Segments** ([`Segment`]): named POSIX shared memory (`shm_open` under `/dev/shm`,
//!   created `0600` with `O_EXCL`, unlinked by the owner on drop unless
//!   [`Segment::persist`] was called), or anonymous memfds (`memfd_create` with
//!   `MFD_ALLOW_SEALING`, sealed against shrinking and growing once sized, so a peer cannot
//!   truncate the file under a reader and kill it with `SIGBUS`; share one by passing its
//!   fd over a Unix socket and open it with [`Segment::from_fd`]). Readers of seqlocks and
//!   broadcast rings map the segment read-only, except the one waiter page they announce
//!   themselves in.
//! - **Wake-ups**: blocking receives sleep on a 32-bit futex word inside the mapping
//!   (`FUTEX_WAIT` without `FUTEX_PRIVATE_FLAG`, so it works across processes). A sleeper
//!   announces itself first, and the writer makes the `FUTEX_WAKE` call only when someone
//!   announced: the busy path costs no system call.
//! - **Event loops** ([`Notifier`]): an eventfd the sender also signals when the receiver
//!   announced it waits, so a channel can sit in `poll`/`epoll` with other fds.
//! - **Liveness** ([`Liveness`]): the writer's pid and start time are in the segment
//!   header; peers hold a pidfd on it (`pidfd_open`), or, where pidfds are unavailable
//!   (old kernels, seccomp), ask `kill(pid, 0)` and `/proc/<pid>/stat`; the start time
//!   tells the writer from a later process that reused its pid. A reader waiting on a dead
//!   writer gets [`ShmError::WriterGone`] within one wait slice ([`LIVENESS_SLICE`])
//!   instead of hanging.
//!
//! Endpoints: [`SpscSender`]/[`SpscReceiver`] (lossless ring), [`SeqLockWriter`]/
//! [`SeqLockReader`] (latest value), [`BroadcastWriter`]/[`BroadcastReader`] (lossy
//! one-to-many). None allocates on send or receive.

mod endpoints;
mod map;
mod notify;
pub mod sync;
mod wait;

pub use endpoints::{BroadcastReader, BroadcastWriter, SeqLockReader, SeqLockWriter, SpscReceiver, SpscSender};
pub use notify::Notifier;
pub use sync::{MutexGuard, SharedEvent, SharedMutex, SharedSemaphore, SyncSegment};
pub use wait::{LIVENESS_SLICE, Liveness, process_start};

use core::sync::atomic::{AtomicU32, Ordering};
use ember_core::shm::layout::{DATA_OFFSET, Expect, HeaderRepr, SegmentKind};
use ember_core::shm::{SegmentHeader, ShmError};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, SealFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use map::Mapping;

/// Longest shm name, slash included (`NAME_MAX`).
pub const MAX_NAME: usize = 255;

/// Where a new segment lives.
///
/// `Send` and `Sync`: plain data and a borrowed name.
#[derive(Debug, Clone, Copy)]
pub enum Backing<'a> {
    /// A named POSIX shm object, `/name` (visible in `/dev/shm`).
    Named(&'a str),
    /// An anonymous memfd; the name is only a label for `/proc/<pid>/fd`.
    Memfd(&'a str),
    /// A SysV segment with this key (`shmget`, mode `0600`, `IPC_CREAT | IPC_EXCL`), for C
    /// code that attaches by key; [`crate::sys::IPC_PRIVATE`] makes an unnamed one, shared
    /// by its id ([`Segment::sysv_id`]). Visible in `ipcs -m`.
    SysV(i32),
}

/// How a segment is opened.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-write (writers, SPSC consumers).
    ReadWrite,
    /// Read-only, except for the waiter page (seqlock and broadcast readers).
    ReadOnly,
}

/// Checks a POSIX shm/mq name: `/`, then 1..=254 bytes without `/` or NUL.
pub fn validate_name(name: &str) -> Result<()> {
    let rest = name.strip_prefix('/').ok_or(Error::InvalidName)?;
    if rest.is_empty() || name.len() > MAX_NAME || rest.contains(['/', '\0']) || rest == "." || rest == ".." {
        return Err(Error::InvalidName);
    }
    Ok(())
}

/// A mapped, validated Ember segment.
///
/// `Send` and `Sync`: it owns the fd and the mapping, which is plain shared memory read and
/// written only through atomics.
#[derive(Debug)]
pub struct Segment {
    /// A second, read-write attachment for the waiter line of a read-only SysV reader
    /// (SysV cannot make part of an attachment writable). Declared before `map`.
    wait_map: Option<Mapping>,
    map: Mapping,
    /// The file descriptor (none for SysV segments).
    fd: Option<OwnedFd>,
    header: HeaderRepr,
    /// Set while this side owns a named object it must unlink on drop.
    unlink: Option<heapless::String<MAX_NAME>>,
    /// The SysV id, and whether this side removes it on drop.
    sysv: Option<(i32, bool)>,
}

/// Byte offsets of a kind's waiter line and data area.
fn offsets(kind: SegmentKind) -> (usize, usize) {
    match kind {
        SegmentKind::Spsc | SegmentKind::Sync => (DATA_OFFSET - 128, DATA_OFFSET),
        // Readers map read-only and need the waiter line writable: a page of its own.
        SegmentKind::SeqLock | SegmentKind::Broadcast => {
            let page = rustix::param::page_size();
            (page, 2 * page)
        }
    }
}

impl Segment {
    /// Creates a segment of `kind` with a data area of `capacity` bytes, maps it
    /// read-write and writes its header (the creator is the writer).
    ///
    /// Named segments are created `O_CREAT | O_EXCL`, mode `0600`: an existing object of
    /// the same name is `EEXIST`, never reused. Memfds are sealed against shrinking and
    /// growing.
    pub fn create(backing: Backing<'_>, kind: SegmentKind, capacity: usize, fingerprint: u64) -> Result<Segment> {
        let (wait_offset, data_offset) = offsets(kind);
        let total = data_offset
            .checked_add(capacity)
            .filter(|t| *t <= u32::MAX as usize)
            .ok_or(Error::Shm(ShmError::BadSize))?;
        let header = HeaderRepr {
            kind,
            total_size: total as u32,
            wait_offset: wait_offset as u32,
            data_offset: data_offset as u32,
            capacity: capacity as u32,
            creator_pid: rustix::process::getpid().as_raw_nonzero().get() as u32,
            creator_start: wait::process_start(rustix::process::getpid().as_raw_nonzero().get() as u32).unwrap_or(0),
            fingerprint,
        };
        // Check the sizes before touching the system.
        let bytes = header.to_bytes();
        ember_core::shm::validate(&bytes, &Expect { kind, fingerprint, mapped_len: total })?;

        match backing {
            Backing::SysV(key) => Self::create_sysv(key, header),
            Backing::Named(name) => {
                validate_name(name)?;
                Self::create_named(name, header)
            }
            Backing::Memfd(label) => {
                let fd = rustix::fs::memfd_create(
                    label,
                    rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
                )?;
                Self::create_fd(fd, header, true)
            }
        }
    }

    /// Creates a named segment: built complete under a temporary name, then published under
    /// `name` with one `renameat2(RENAME_NOREPLACE)`, so an opener never finds a segment
    /// whose header is not written yet, and a failure (no space) leaves nothing behind.
    fn create_named(name: &str, header: HeaderRepr) -> Result<Segment> {
        let path = shm_path(name)?;
        // The rename is the real check; this one spares reserving pages for nothing.
        if rustix::fs::lstat(path.as_str()).is_ok() {
            return Err(Error::Os(Errno::EXIST));
        }
        let tmp = temp_name();
        let fd = rustix::shm::open(
            tmp.as_str(),
            rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        )?;
        let r = Self::create_fd(fd, header, false).and_then(|seg| {
            let tmp_path = shm_path(tmp.as_str())?;
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                tmp_path.as_str(),
                rustix::fs::CWD,
                path.as_str(),
                rustix::fs::RenameFlags::NOREPLACE,
            )?;
            Ok(seg)
        });
        match r {
            Ok(mut seg) => {
                let mut owned = heapless::String::new();
                owned.push_str(name).map_err(|_| Error::InvalidName)?;
                seg.unlink = Some(owned);
                Ok(seg)
            }
            Err(e) => {
                let _ = rustix::shm::unlink(tmp.as_str());
                Err(e)
            }
        }
    }

    /// Sizes, reserves, seals (memfds), maps and initialises a new file-backed segment.
    fn create_fd(fd: OwnedFd, header: HeaderRepr, seal: bool) -> Result<Segment> {
        let total = header.total_size as usize;
        rustix::fs::ftruncate(&fd, total as u64)?;
        reserve(fd.as_fd(), total as u64)?;
        if seal {
            rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        }
        let map = Mapping::new(&fd, total, true)?;
        map.view::<SegmentHeader>(0).init(&header);
        trace!("shm: created a segment of {} bytes", total);
        Ok(Segment { wait_map: None, map, fd: Some(fd), header, unlink: None, sysv: None })
    }

    /// Creates, attaches and initialises a SysV segment.
    fn create_sysv(key: i32, header: HeaderRepr) -> Result<Segment> {
        let total = header.total_size as usize;
        let id = crate::sys::shmget_create(key, total, 0o600).map_err(|e| match e {
            // `kernel.shmall` (pages, per IPC namespace) would be exceeded.
            Errno::NOSPC => Error::NoSpace { needed: total as u64, available: sysv_available() },
            e => e.into(),
        })?;
        let map = match Mapping::sysv(id, total, true) {
            Ok(m) => m,
            Err(e) => {
                let _ = crate::sys::shm_remove(id);
                return Err(e);
            }
        };
        map.view::<SegmentHeader>(0).init(&header);
        Ok(Segment { wait_map: None, map, fd: None, header, unlink: None, sysv: Some((id, true)) })
    }

    /// Opens the SysV segment with `key` (see [`Backing::SysV`]) and checks its header.
    /// A read-only opener gets a second, read-write attachment for the waiter line only.
    pub fn open_sysv(key: i32, kind: SegmentKind, fingerprint: u64, access: Access) -> Result<Segment> {
        Self::open_sysv_id(crate::sys::shmget_open(key)?, kind, fingerprint, access)
    }

    /// Opens a SysV segment by id (e.g. an `IPC_PRIVATE` one whose id was handed over).
    pub fn open_sysv_id(id: i32, kind: SegmentKind, fingerprint: u64, access: Access) -> Result<Segment> {
        let size = crate::sys::shm_size(id)?;
        if size < DATA_OFFSET {
            return Err(Error::Shm(ShmError::BadSize));
        }
        let writable = access == Access::ReadWrite;
        let map = Mapping::sysv(id, size, writable)?;
        let header = map.view::<SegmentHeader>(0).open(&Expect { kind, fingerprint, mapped_len: size })?;
        let wait_map = if !writable && kind != SegmentKind::Spsc { Some(Mapping::sysv(id, size, true)?) } else { None };
        Ok(Segment { wait_map, map, fd: None, header, unlink: None, sysv: Some((id, false)) })
    }

    /// The SysV id, for SysV segments.
    pub fn sysv_id(&self) -> Option<i32> {
        self.sysv.map(|(id, _)| id)
    }

    /// Opens a named segment created by another process and checks its header.
    pub fn open(name: &str, kind: SegmentKind, fingerprint: u64, access: Access) -> Result<Segment> {
        validate_name(name)?;
        let flags = match access {
            Access::ReadWrite => rustix::shm::OFlags::RDWR,
            // The waiter page is remapped writable: the fd must allow it.
            Access::ReadOnly if kind != SegmentKind::Spsc => rustix::shm::OFlags::RDWR,
            Access::ReadOnly => rustix::shm::OFlags::RDONLY,
        };
        let fd = rustix::shm::open(name, flags, Mode::empty())?;
        Segment::attach(fd, kind, fingerprint, access, flags.contains(rustix::shm::OFlags::RDWR))
    }

    /// Opens a memfd segment received from a peer (e.g. over a Unix socket). The memfd must
    /// be sealed against shrinking and growing ([`Error::NotSealed`]).
    pub fn from_fd(fd: OwnedFd, kind: SegmentKind, fingerprint: u64, access: Access) -> Result<Segment> {
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
            return Err(Error::NotSealed);
        }
        Segment::attach(fd, kind, fingerprint, access, false)
    }

    /// Maps and checks a segment; `fill` reserves its pages first (a named segment opened
    /// read-write).
    fn attach(fd: OwnedFd, kind: SegmentKind, fingerprint: u64, access: Access, fill: bool) -> Result<Segment> {
        let size = rustix::fs::fstat(&fd)?.st_size;
        let size = usize::try_from(size).map_err(|_| Error::Shm(ShmError::BadSize))?;
        if size < DATA_OFFSET {
            return Err(Error::Shm(ShmError::BadSize));
        }
        if fill {
            // A segment from a creator that did not reserve its pages (an older Ember, or C
            // code of its own): fill the holes now, so a full /dev/shm is an error here
            // rather than a SIGBUS on first touch. Already reserved pages cost nothing.
            reserve(fd.as_fd(), size as u64)?;
        }
        // Map it all and validate the header copy against the file's real size.
        let writable = access == Access::ReadWrite;
        let map = Mapping::new(&fd, size, writable)?;
        let header = map.view::<SegmentHeader>(0).open(&Expect { kind, fingerprint, mapped_len: size })?;
        if !writable && kind != SegmentKind::Spsc {
            map.make_writable(
                &fd,
                header.wait_offset as usize,
                header.data_offset as usize - header.wait_offset as usize,
            )?;
        }
        Ok(Segment { wait_map: None, map, fd: Some(fd), header, unlink: None, sysv: None })
    }

    /// Keeps a named segment in `/dev/shm` after this owner drops it.
    pub fn persist(&mut self) {
        self.unlink = None;
        if let Some((_, remove)) = &mut self.sysv {
            *remove = false;
        }
    }

    /// The validated header (this side's private copy).
    pub fn header(&self) -> &HeaderRepr {
        &self.header
    }

    /// Whether this side mapped the segment writable.
    pub fn writable(&self) -> bool {
        self.map.writable()
    }

    /// Bytes mapped.
    pub fn mapped_len(&self) -> usize {
        self.map.len()
    }

    /// A handle on the writer's liveness: its recorded pid, checked against its recorded
    /// start time (see [`Liveness`]).
    pub fn writer_liveness(&self) -> Liveness {
        Liveness::with_start(self.header.creator_pid, self.header.creator_start)
    }

    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }

    pub(crate) fn data_range(&self) -> (usize, usize) {
        (self.header.data_offset as usize, self.header.capacity as usize)
    }
}

impl Segment {
    /// Whether `name` in `/dev/shm` still is this segment's file: it may have been
    /// unlinked, or replaced by a creator that found this one stale, and then this owner
    /// must not unlink it.
    fn still_named(&self, name: &str) -> bool {
        let (Some(fd), Ok(path)) = (&self.fd, shm_path(name)) else { return false };
        match (rustix::fs::fstat(fd), rustix::fs::lstat(path.as_str())) {
            (Ok(mine), Ok(there)) => mine.st_dev == there.st_dev && mine.st_ino == there.st_ino,
            _ => false,
        }
    }

    /// The file descriptor of a POSIX or memfd segment (`None` for SysV), e.g. to pass a
    /// memfd to a peer.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// The mapping that holds the waiter line writable.
    pub(crate) fn wait_mapping(&self) -> &Mapping {
        self.wait_map.as_ref().unwrap_or(&self.map)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some(name) = &self.unlink
            && self.still_named(name.as_str())
        {
            let _ = rustix::shm::unlink(name.as_str());
        }
        if let Some((id, true)) = self.sysv {
            // The segment disappears once the last process detaches.
            let _ = crate::sys::shm_remove(id);
        }
    }
}

/// `/dev/shm/<name>`: where `shm_open` puts the object `/name` (glibc's and rustix's
/// rule), for the calls `shm_open` has no counterpart of (`renameat2`, `stat`).
pub(crate) fn shm_path(name: &str) -> Result<heapless::String<{ MAX_NAME + 8 }>> {
    let mut p = heapless::String::new();
    p.push_str("/dev/shm").map_err(|_| Error::InvalidName)?;
    p.push_str(name).map_err(|_| Error::InvalidName)?;
    Ok(p)
}

/// A name for a segment under construction, unique to this process and call:
/// `/.ember-new-<pid>-<n>`. A creator killed before publishing leaves it in `/dev/shm`.
fn temp_name() -> heapless::String<48> {
    use core::fmt::Write;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut s = heapless::String::new();
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    // 12 + 10 + 1 + 10 bytes at most: always fits.
    let _ = write!(s, "/.ember-new-{pid}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    s
}

/// Reserves the pages of the first `len` bytes of `fd` (`fallocate(fd, 0, 0, len)`), so
/// that a full file system is an [`Error::NoSpace`] now rather than a `SIGBUS` when a page
/// is first touched. On tmpfs (and memfds) the pages are allocated at once; a file system
/// without `fallocate` is left as it is.
fn reserve(fd: BorrowedFd<'_>, len: u64) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    loop {
        match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => return Ok(()),
            // shmem gives up on a pending signal (and frees what it took): try again.
            Err(Errno::INTR) => {}
            // ENOMEM: a memory cgroup's limit (memfds and tmpfs pages are charged to it).
            Err(Errno::NOSPC | Errno::NOMEM) => {
                let available = rustix::fs::fstatvfs(fd).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize));
                return Err(Error::NoSpace { needed: len, available });
            }
            Err(Errno::OPNOTSUPP) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Bytes of SysV shared memory `kernel.shmall` still allows in this IPC namespace.
fn sysv_available() -> u64 {
    let mut buf = [0u8; 32];
    let shmall = rustix::fs::open("/proc/sys/kernel/shmall", rustix::fs::OFlags::RDONLY, Mode::empty())
        .ok()
        .and_then(|fd| rustix::io::read(&fd, &mut buf).ok())
        .and_then(|n| core::str::from_utf8(&buf[..n]).ok()?.trim().parse::<u64>().ok());
    match (shmall, crate::sys::shm_total_pages()) {
        (Some(all), Ok(used)) => all.saturating_sub(used as u64).saturating_mul(rustix::param::page_size() as u64),
        _ => 0,
    }
}

pub(crate) use crate::poll::Deadline;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("/ember-1").is_ok());
        for bad in ["ember", "/", "/a/b", "//", "/.", "/..", "/a\0b"] {
            assert_eq!(validate_name(bad), Err(Error::InvalidName), "{bad:?}");
        }
        let long = format!("/{}", "x".repeat(255));
        assert_eq!(validate_name(&long), Err(Error::InvalidName));
    }
}
