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

pub use crate::error::ObjectKind;
pub use endpoints::{
    BroadcastReader, BroadcastWriter, RecvPeek, SendGrant, SeqLockReader, SeqLockWriter, SpscReceiver, SpscSender,
};
pub use endpoints::{SEQLOCK_SPINS_BEFORE_YIELD, SEQLOCK_STALL_BUDGET};
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

/// How a writer creates its segment (or a creator its queue or FIFO): the defaults, or
/// with [`CreateOptions::replace_stale`].
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateOptions {
    /// Take over an object a dead owner left under the name, atomically, instead of failing
    /// with `EEXIST`; an object whose owner lives is [`Error::InUse`].
    pub replace_stale: bool,
}

impl CreateOptions {
    /// The defaults: an existing name is `EEXIST`.
    pub const fn new() -> CreateOptions {
        CreateOptions { replace_stale: false }
    }

    /// With `replace_stale` set: what a daemon that must come back after `kill -9` wants.
    ///
    /// - A named segment whose recorded writer (pid and start time in its header, any
    ///   layout version from 2) is dead is replaced: the new segment is built under a
    ///   temporary name and `rename`d over the old one, under an exclusive `flock` on the
    ///   old one that serialises two restarting creators (the second finds the first's new,
    ///   live segment: [`Error::InUse`]). Readers still mapped on the old one see its writer
    ///   dead: [`ember_core::shm::ShmError::WriterGone`]. Something under the name that is
    ///   not an Ember segment is left alone (`EEXIST`). Memfds have no name; SysV segments
    ///   are not taken over (`EEXIST` as before).
    /// - Message queues and FIFOs: see [`crate::mq::MessageQueue::create_with`] and
    ///   [`crate::fifo::create_with`].
    pub const fn replace_stale(mut self, yes: bool) -> CreateOptions {
        self.replace_stale = yes;
        self
    }
}

/// Removes the name of the POSIX segment `/name` from `/dev/shm` (`shm_unlink`): for an
/// operator or a start-up script cleaning up after a crash. Processes that have it mapped
/// keep their mapping; a writer's later drop leaves the name alone (it checks that the
/// name is still its own).
pub fn unlink(name: &str) -> Result<()> {
    validate_name(name)?;
    Ok(rustix::shm::unlink(name)?)
}

fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
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
    /// The process that created the segment (0: opened, not created): only it unlinks the
    /// name (removes the SysV id) on drop, never a child it forked.
    creator: u32,
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
        Self::create_with(backing, kind, capacity, fingerprint, CreateOptions::new())
    }

    /// [`Segment::create`] with options: [`CreateOptions::replace_stale`] takes over a named
    /// segment a dead writer left.
    pub fn create_with(
        backing: Backing<'_>,
        kind: SegmentKind,
        capacity: usize,
        fingerprint: u64,
        options: CreateOptions,
    ) -> Result<Segment> {
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
            creator_pid: getpid(),
            creator_start: wait::process_start(getpid()).unwrap_or(0),
            fingerprint,
        };
        // Check the sizes before touching the system.
        let bytes = header.to_bytes();
        ember_core::shm::validate(&bytes, &Expect { kind, fingerprint, mapped_len: total })?;

        match backing {
            Backing::SysV(key) => Self::create_sysv(key, header),
            Backing::Named(name) => {
                validate_name(name)?;
                Self::create_named(name, header, options.replace_stale)
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
    /// With `replace_stale`, a name taken by a dead writer's segment is taken over
    /// ([`Segment::take_over`]).
    fn create_named(name: &str, header: HeaderRepr, replace_stale: bool) -> Result<Segment> {
        let path = shm_path(name)?;
        if replace_stale {
            sweep_temporaries();
        }
        // Each round ends in success, an error, or a name that changed under this call (a
        // segment published or replaced by another creator meanwhile): look again. Rounds
        // are bounded; contention that outlasts them is `EEXIST`.
        for _ in 0..8 {
            // The rename is the real check; this one spares reserving pages for nothing.
            if rustix::fs::lstat(path.as_str()).is_ok() {
                if !replace_stale {
                    return Err(Error::Os(Errno::EXIST));
                }
                match Self::take_over(name, &path, header)? {
                    Some(seg) => return Ok(seg),
                    None => continue,
                }
            }
            match Self::publish(name, &path, header, rustix::fs::RenameFlags::NOREPLACE) {
                Err(Error::Os(Errno::EXIST)) if replace_stale => continue,
                r => return r,
            }
        }
        Err(Error::Os(Errno::EXIST))
    }

    /// Builds a segment under a temporary name and renames it to `name` (`flags`:
    /// `NOREPLACE` for a fresh name, empty to replace a stale segment atomically).
    fn publish(name: &str, path: &str, header: HeaderRepr, flags: rustix::fs::RenameFlags) -> Result<Segment> {
        let tmp = temp_name();
        let fd = rustix::shm::open(
            tmp.as_str(),
            rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        )?;
        let r = Self::create_fd(fd, header, false).and_then(|seg| {
            let tmp_path = shm_path(tmp.as_str())?;
            rustix::fs::renameat_with(rustix::fs::CWD, tmp_path.as_str(), rustix::fs::CWD, path, flags)?;
            Ok(seg)
        });
        match r {
            Ok(mut seg) => {
                let mut owned = heapless::String::new();
                owned.push_str(name).map_err(|_| Error::InvalidName)?;
                seg.unlink = Some(owned);
                seg.creator = getpid();
                Ok(seg)
            }
            Err(e) => {
                let _ = rustix::shm::unlink(tmp.as_str());
                Err(e)
            }
        }
    }

    /// Takes over the segment under `name` if its recorded writer is dead: opens it, takes
    /// an exclusive `flock` on it (two restarting creators take turns here), checks that the
    /// name still is that file, reads the writer from its header and asks whether it lives,
    /// then publishes the new segment over it with a plain (atomic) `rename`. `Ok(None)`:
    /// the name changed meanwhile (gone, or replaced by another creator), look again.
    /// A live writer is [`Error::InUse`]; a file that is not an Ember segment of a known
    /// version is `EEXIST`, left alone.
    fn take_over(name: &str, path: &str, header: HeaderRepr) -> Result<Option<Segment>> {
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC;
        let old = match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Another takeover holds the lock for the few milliseconds a create takes; a process
        // that holds it for longer (nothing in Ember does) is waited out for about two
        // seconds, then reported, never waited for without end.
        let mut tries = 0;
        loop {
            match rustix::fs::flock(&old, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(Errno::WOULDBLOCK | Errno::INTR) if tries < TAKEOVER_LOCK_TRIES => {
                    tries += 1;
                    let ms = rustix::thread::Timespec { tv_sec: 0, tv_nsec: 1_000_000 };
                    let _ = rustix::thread::nanosleep(&ms);
                }
                Err(Errno::WOULDBLOCK) => {
                    return Err(Error::InUse { object: crate::error::ObjectKind::Segment, pid: 0 });
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !same_file(old.as_fd(), path) {
            return Ok(None);
        }
        let size = rustix::fs::fstat(&old)?.st_size;
        if size < ember_core::shm::layout::HEADER_SIZE as i64 {
            return Err(Error::Os(Errno::EXIST));
        }
        let map = Mapping::new(&old, ember_core::shm::layout::HEADER_SIZE, false)?;
        let Some((pid, start)) = ember_core::shm::layout::creator(&map.view::<SegmentHeader>(0).snapshot()) else {
            return Err(Error::Os(Errno::EXIST));
        };
        drop(map);
        if Liveness::with_start(pid, start).is_alive() {
            return Err(Error::InUse { object: crate::error::ObjectKind::Segment, pid });
        }
        debug!("shm: taking over a segment left by pid {}, which is gone", pid);
        // The lock on the old file is held until `old` closes, after the rename.
        Self::publish(name, path, header, rustix::fs::RenameFlags::empty()).map(Some)
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
        Ok(Segment { wait_map: None, map, fd: Some(fd), header, unlink: None, sysv: None, creator: getpid() })
    }

    /// Creates, attaches and initialises a SysV segment.
    fn create_sysv(key: i32, header: HeaderRepr) -> Result<Segment> {
        let total = header.total_size as usize;
        let id = crate::sys::shmget_create(key, total, 0o600).map_err(|e| match e {
            // `kernel.shmall` (pages, per IPC namespace) would be exceeded.
            Errno::NOSPC if sysv_available() < total as u64 => {
                Error::NoSpace { needed: total as u64, available: sysv_available() }
            }
            e => crate::limits::shmget_create(e, total),
        })?;
        let map = match Mapping::sysv(id, total, true) {
            Ok(m) => m,
            Err(e) => {
                let _ = crate::sys::shm_remove(id);
                return Err(e);
            }
        };
        map.view::<SegmentHeader>(0).init(&header);
        Ok(Segment { wait_map: None, map, fd: None, header, unlink: None, sysv: Some((id, true)), creator: getpid() })
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
        Ok(Segment { wait_map, map, fd: None, header, unlink: None, sysv: Some((id, false)), creator: 0 })
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
        Ok(Segment { wait_map: None, map, fd: Some(fd), header, unlink: None, sysv: None, creator: 0 })
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
        same_file(fd.as_fd(), path.as_str())
    }

    /// Whether this process created the segment (a child forked after the create did not:
    /// its drop of an inherited handle neither unlinks, nor removes, nor closes anything).
    pub fn created_here(&self) -> bool {
        self.creator != 0 && self.creator == getpid()
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
        // A forked child that drops (or `_free`s) an inherited handle: the objects are the
        // parent's, which still uses them.
        if !self.created_here() {
            return;
        }
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

/// Whether `fd` is the file at `path` now (same device and inode; `lstat`, no symlink
/// followed).
pub(crate) fn same_file(fd: BorrowedFd<'_>, path: &str) -> bool {
    match (rustix::fs::fstat(fd), rustix::fs::lstat(path)) {
        (Ok(mine), Ok(there)) => mine.st_dev == there.st_dev && mine.st_ino == there.st_ino,
        _ => false,
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

/// Tries, a millisecond apart, for the lock on a segment being taken over.
const TAKEOVER_LOCK_TRIES: u32 = 2000;

/// How long ago a temporary `/.ember-new-*` object must have been last modified before a creator with
/// `replace_stale` removes it for a dead creator: far longer than a create takes, so that a
/// creator in another PID namespace sharing `/dev/shm` (whose pid means nothing here) is
/// never robbed of a segment it is still building.
const TEMPORARY_GRACE_S: i64 = 60;

/// Removes the temporaries `/dev/shm/.ember-new-<pid>-<n>` of creators killed between
/// making one and publishing it: `<pid>` gone, and the object unmodified for
/// [`TEMPORARY_GRACE_S`] (its `mtime`; a creator sizes its temporary right after making it). Reads `/dev/shm` into a stack buffer (`getdents64`); anything that
/// fails is left as it is (the sweep is a courtesy, the create does not depend on it).
fn sweep_temporaries() {
    use core::mem::MaybeUninit;
    let Ok(dir) = rustix::fs::open(
        "/dev/shm",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime).tv_sec;
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    let mut entries = rustix::fs::RawDir::new(&dir, &mut buf);
    while let Some(Ok(entry)) = entries.next() {
        let Some(pid) = temporary_pid(entry.file_name().to_bytes()) else { continue };
        let old = rustix::fs::statat(&dir, entry.file_name(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| now.saturating_sub(st.st_mtime) > TEMPORARY_GRACE_S);
        if old && !Liveness::new(pid).is_alive() {
            debug!("shm: removing a temporary left by pid {}, which is gone", pid);
            let _ = rustix::fs::unlinkat(&dir, entry.file_name(), rustix::fs::AtFlags::empty());
        }
    }
}

/// The creator's pid in a temporary's name, `.ember-new-<pid>-<n>`.
fn temporary_pid(name: &[u8]) -> Option<u32> {
    let rest = name.strip_prefix(b".ember-new-")?;
    let dash = rest.iter().position(|&b| b == b'-')?;
    let (pid, n) = (&rest[..dash], &rest[dash + 1..]);
    if n.is_empty() || !n.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(pid).ok()?.parse().ok().filter(|&p| p != 0)
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
    fn temporary_names() {
        assert_eq!(temporary_pid(b".ember-new-1234-0"), Some(1234));
        assert_eq!(temporary_pid(b".ember-new-1234-17"), Some(1234));
        for other in
            [&b"ember-new-1-0"[..], b".ember-new-x-0", b".ember-new-12-", b".ember-new-0-1", b".ember-new-12-a"]
        {
            assert_eq!(temporary_pid(other), None, "{other:?}");
        }
    }

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
