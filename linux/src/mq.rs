//! POSIX message queues (`mq_overview(7)`): one frame per message, with priorities.
//!
//! rustix has no message-queue API, so the calls are raw syscalls ([`crate::sys`]):
//! `mq_open`, `mq_timedsend`/`mq_timedreceive` (the `_time64` variants on 32-bit ARM),
//! `mq_getsetattr`, `mq_unlink`. Names are checked before any syscall (`/name`, no other
//! slash, at most 255 bytes) and passed to the kernel as glibc does, one byte past the
//! slash.
//!
//! Queues are created `0600` with `O_EXCL`; the creator unlinks the name on drop unless
//! told to [`MessageQueue::persist`] (only the creating process: a child forked after the
//! create that drops an inherited creator leaves the name alone). The creator holds a
//! shared `flock` on its descriptor for as long as it lives, which is how a later creator
//! with [`CreateOptions::replace_stale`] tells a queue a live process owns from one a dead
//! daemon left (see [`MessageQueue::create_with`]). The queue descriptor is a file descriptor: it can be
//! made nonblocking ([`crate::Endpoint::set_nonblocking`]) and polled (`POLLIN`: a message
//! is there; `POLLOUT`: there is room).
//!
//! **Timeouts are on the monotonic clock.** `mq_timedsend`/`mq_timedreceive` take an
//! absolute `CLOCK_REALTIME` deadline, so a clock step (NTP or `date -s` on a board without
//! an RTC) would stretch or cut their waits. A timed send or receive here tries the queue
//! with a deadline that has passed (no wait), and waits for room or a message with `poll`
//! on the queue descriptor, whose timeout is monotonic; it then tries again, until the
//! caller's monotonic deadline. A wait without a timeout blocks in the kernel as before.
//!
//! Limits: unprivileged processes may create queues of at most
//! `/proc/sys/fs/mqueue/msg_max` messages (10 by default) of `msgsize_max` bytes (8192).
//! The number of queues and the bytes they may hold are limited by `queues_max` and
//! `RLIMIT_MSGQUEUE`. Each is reported as [`Error::Limit`] naming the limit and its value
//! (the kernel's bare `EINVAL`, `ENOSPC` and `EMFILE` are mapped, see [`crate::limits`]).

use core::time::Duration;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;

use crate::error::ObjectKind;
use crate::error::{Error, Result};
use crate::shm::{CreateOptions, MAX_NAME, validate_name};
use crate::sys::{self, KernelTimespec, MqAttr};
use crate::transport::{
    FrameReceiver, FrameSender, Integrity, TimedReceiver, check_outgoing, check_receiver_integrity,
    check_sender_integrity,
};

/// Which directions a descriptor is opened for.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `O_WRONLY`.
    Send,
    /// `O_RDONLY`.
    Receive,
    /// `O_RDWR`.
    Both,
}

impl Access {
    fn oflag(self) -> u32 {
        use linux_raw_sys::general::{O_RDONLY, O_RDWR, O_WRONLY};
        match self {
            Access::Send => O_WRONLY,
            Access::Receive => O_RDONLY,
            Access::Both => O_RDWR,
        }
    }
}

/// A queue's attributes (`mq_getattr`).
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// Most messages the queue holds.
    pub max_msgs: usize,
    /// Largest message, in bytes (the largest frame).
    pub msg_size: usize,
    /// Messages in the queue now.
    pub cur_msgs: usize,
    /// Whether this descriptor is nonblocking.
    pub nonblocking: bool,
}

/// `/name` plus a NUL, as the raw calls want it.
fn c_name(name: &str) -> Result<heapless::Vec<u8, { MAX_NAME + 1 }>> {
    validate_name(name)?;
    let mut v = heapless::Vec::new();
    v.extend_from_slice(name.as_bytes()).map_err(|_| Error::InvalidName)?;
    v.push(0).map_err(|_| Error::InvalidName)?;
    Ok(v)
}

/// An absolute deadline that has always passed: `mq_timed*` with it never waits (an empty
/// or full queue is `ETIMEDOUT` at once), so every wait is `poll`'s, on the monotonic clock.
const PASSED: KernelTimespec = KernelTimespec { tv_sec: 0, tv_nsec: 0 };

fn map_send(e: Errno, len: usize, max: usize) -> Error {
    match e {
        Errno::MSGSIZE => Error::TooLarge { len, max },
        e => e.into(),
    }
}

/// A POSIX message queue descriptor.
///
/// `Send` and `Sync`: it owns the descriptor; a message queue is safe to use from several
/// threads at once.
pub struct MessageQueue {
    /// The name, while this side owns it and unlinks it on drop. Declared before `fd`, so
    /// dropped first: the name goes while this creator's lock still holds.
    owned: Option<Owner>,
    fd: OwnedFd,
    msg_size: usize,
    integrity: Integrity,
    require_checked: bool,
}

/// A creator's claim on its queue's name: removed on drop, by the creating process only
/// (not a forked child), and only while the name still is this queue (same inode).
struct Owner {
    name: heapless::Vec<u8, { MAX_NAME + 1 }>,
    creator: u32,
    dev: u64,
    ino: u64,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
        if me == self.creator && names(&self.name, self.dev, self.ino) {
            let _ = sys::mq_unlink(&self.name);
        }
    }
}

impl core::fmt::Debug for MessageQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = self.owned.as_ref().map(|o| core::str::from_utf8(&o.name[..o.name.len() - 1]).unwrap_or("?"));
        f.debug_struct("MessageQueue")
            .field("fd", &self.fd)
            .field("msg_size", &self.msg_size)
            .field("owned", &name)
            .field("integrity", &self.integrity)
            .field("require_checked", &self.require_checked)
            .finish()
    }
}

impl MessageQueue {
    /// The [`FrameSender::integrity`] a queue has when opened: the kernel copies messages
    /// intact, so payloads are not checked.
    pub const DEFAULT_INTEGRITY: Integrity = Integrity::Unchecked;

    /// Creates a queue (`mq_open(O_CREAT | O_EXCL | O_CLOEXEC, 0600)`) holding up to
    /// `max_msgs` messages of up to `msg_size` bytes. The creator unlinks it on drop.
    pub fn create(name: &str, max_msgs: usize, msg_size: usize, access: Access) -> Result<MessageQueue> {
        Self::create_with(name, max_msgs, msg_size, access, CreateOptions::new())
    }

    /// [`MessageQueue::create`] with options. With [`CreateOptions::replace_stale`], a queue
    /// a dead creator left under the name is removed and created afresh, and one a live
    /// process owns is [`Error::InUse`].
    ///
    /// A POSIX queue records no owner, and who has it open cannot be asked of the kernel.
    /// So the rule is Ember's own lock: every creator holds a shared `flock` on its queue
    /// descriptor until it drops the queue (or dies, when the kernel drops the lock). A
    /// replacer opens the old queue and tries an exclusive `flock` without waiting: refused,
    /// a live creator holds it (`InUse`, with its pid from `/proc/locks` when readable);
    /// granted, nobody does, and the replacer `mq_unlink`s it and creates the queue again.
    /// Messages left in the old queue are dropped with it. A creator checks, once it holds
    /// its lock, that the name still is its queue (a second `mq_open`, same inode), and
    /// starts again if a replacer took the name in between, so of two creators racing after
    /// a crash exactly one ends up with the name. A queue made by something that does not
    /// take the lock (an older Ember, `mq_open` in C of its own) looks stale: give such
    /// queues other names.
    pub fn create_with(
        name: &str,
        max_msgs: usize,
        msg_size: usize,
        access: Access,
        options: CreateOptions,
    ) -> Result<MessageQueue> {
        use linux_raw_sys::general::{O_CLOEXEC, O_CREAT, O_EXCL, O_RDONLY};
        let c = c_name(name)?;
        let attr = MqAttr::new(max_msgs, msg_size);
        for _ in 0..32 {
            match sys::mq_open(&c, access.oflag() | O_CREAT | O_EXCL | O_CLOEXEC, 0o600, Some(&attr)) {
                Ok(fd) => {
                    let fd = fd.into_owned();
                    lock(&fd, rustix::fs::FlockOperation::LockShared)?;
                    if !still_named(&c, fd.as_fd()) {
                        // A replacer took it before the lock: this queue is nameless now.
                        continue;
                    }
                    let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
                    let st = rustix::fs::fstat(&fd)?;
                    let owner = Owner { name: c, creator: me, dev: st.st_dev, ino: st.st_ino };
                    let mut q = MessageQueue {
                        fd,
                        msg_size,
                        owned: Some(owner),
                        integrity: Self::DEFAULT_INTEGRITY,
                        require_checked: false,
                    };
                    q.msg_size = q.attributes()?.msg_size;
                    return Ok(q);
                }
                Err(Errno::EXIST) if options.replace_stale => {}
                Err(e) => return Err(crate::limits::mq_create(e, max_msgs, msg_size)),
            }
            let old = match sys::mq_open(&c, O_RDONLY | O_CLOEXEC, 0, None) {
                Ok(fd) => fd.into_owned(),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            match rustix::fs::flock(&old, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(Errno::WOULDBLOCK) => {
                    // A creator's shared lock: in use. Another replacer's exclusive one
                    // (it is about to remove the queue, or just did): look again.
                    let st = rustix::fs::fstat(&old)?;
                    match shared_flock_holder(st.st_dev, st.st_ino) {
                        // Only a queue still under the name is in use: a racing creator's
                        // queue that a replacer unlinked meanwhile is nameless, and its
                        // holder is about to try again (look again too).
                        Some(Some(pid)) if still_named(&c, old.as_fd()) => {
                            return Err(Error::InUse { object: ObjectKind::MessageQueue, pid });
                        }
                        Some(Some(_)) => {
                            rustix::thread::sched_yield();
                            continue;
                        }
                        Some(None) => {
                            rustix::thread::sched_yield();
                            continue;
                        }
                        // No /proc/locks: who holds it cannot be told; a live creator may.
                        None => return Err(Error::InUse { object: ObjectKind::MessageQueue, pid: 0 }),
                    }
                }
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if still_named(&c, old.as_fd()) {
                debug!("mq: a queue nobody holds is left under the name: replacing it");
                match sys::mq_unlink(&c) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(Error::Os(Errno::EXIST))
    }

    /// Opens an existing queue (`mq_open(O_CLOEXEC)`).
    pub fn open(name: &str, access: Access) -> Result<MessageQueue> {
        let c = c_name(name)?;
        let fd = sys::mq_open(&c, access.oflag() | linux_raw_sys::general::O_CLOEXEC, 0, None)
            .map_err(crate::limits::open_fd)?
            .into_owned();
        let mut q =
            MessageQueue { fd, msg_size: 0, owned: None, integrity: Self::DEFAULT_INTEGRITY, require_checked: false };
        q.msg_size = q.attributes()?.msg_size;
        Ok(q)
    }

    /// A queue descriptor someone else opened (systemd's `ListenMessageQueue=`), checked
    /// first (a file on the mqueue file system, then `mq_getsetattr`): anything else is
    /// [`Error::WrongFdType`] (and the descriptor closed). Nobody unlinks it on drop.
    pub fn from_fd(fd: OwnedFd) -> Result<MessageQueue> {
        crate::systemd::expect_kind(&fd, &[crate::systemd::FdKind::MessageQueue])?;
        let mut q =
            MessageQueue { fd, msg_size: 0, owned: None, integrity: Self::DEFAULT_INTEGRITY, require_checked: false };
        q.msg_size = q.attributes()?.msg_size;
        Ok(q)
    }

    /// Removes a queue's name (`mq_unlink`); open descriptors keep working.
    pub fn unlink(name: &str) -> Result<()> {
        Ok(sys::mq_unlink(&c_name(name)?)?)
    }

    /// Keeps the queue after this creator drops it.
    pub fn persist(&mut self) {
        if let Some(o) = self.owned.take() {
            // Only its drop removes the name; it owns nothing else.
            core::mem::forget(o);
        }
    }

    /// Gives the descriptor back. The queue keeps its name (as after
    /// [`MessageQueue::persist`]); a creator's lock stays with the descriptor, so the queue
    /// still counts as in use for [`CreateOptions::replace_stale`] while it is open.
    pub fn into_fd(mut self) -> OwnedFd {
        self.persist();
        self.fd
    }

    /// The queue's attributes (`mq_getsetattr`).
    pub fn attributes(&self) -> Result<Attributes> {
        let a = sys::mq_getattr(self.fd.as_fd())?;
        Ok(Attributes {
            max_msgs: a.mq_maxmsg as usize,
            msg_size: a.mq_msgsize as usize,
            cur_msgs: a.mq_curmsgs as usize,
            nonblocking: a.mq_flags as u32 & linux_raw_sys::general::O_NONBLOCK != 0,
        })
    }

    /// Sends one frame with priority `prio` (higher first; 0 ..= 32767): `mq_timedsend`.
    /// `timeout` bounds the wait for room ([`Error::TimedOut`]); `None` waits (or, in
    /// nonblocking mode, fails at once with [`Error::WouldBlock`]).
    pub fn send_prio(&mut self, frame: &[u8], prio: u32, timeout: Option<Duration>) -> Result<()> {
        self.send_prio_cancellable(frame, prio, timeout, None)
    }

    /// [`MessageQueue::send_prio`] that also ends with [`Error::Cancelled`] (nothing sent)
    /// when `cancel` is cancelled: the wait for room is then a `poll` on the queue and the
    /// canceler, even without a timeout.
    pub fn send_prio_cancellable(
        &mut self,
        frame: &[u8],
        prio: u32,
        timeout: Option<Duration>,
        cancel: Option<&crate::cancel::Canceler>,
    ) -> Result<()> {
        check_outgoing(frame, self.msg_size)?;
        check_sender_integrity(frame, self.integrity)?;
        crate::cancel::check(cancel)?;
        let end = timeout.map(|t| crate::poll::now().saturating_add(t));
        let polled = end.is_some() || cancel.is_some();
        let abs = polled.then_some(PASSED);
        loop {
            match sys::mq_timedsend(self.fd.as_fd(), frame, prio, abs.as_ref()) {
                Ok(()) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(Errno::TIMEDOUT) if polled => {
                    crate::poll::wait_fd_cancellable(&self.fd, rustix::event::PollFlags::OUT, end, cancel)?;
                }
                Err(e) => return Err(map_send(e, frame.len(), self.msg_size)),
            }
        }
    }

    /// Receives one frame into `buf` (at least the queue's message size): its length and
    /// priority. `timeout` as for [`MessageQueue::send_prio`].
    pub fn recv_prio(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<(usize, u32)> {
        self.recv_prio_cancellable(buf, timeout, None)
    }

    /// [`MessageQueue::recv_prio`] that also ends with [`Error::Cancelled`] (nothing taken)
    /// when `cancel` is cancelled: the wait is then a `poll` on the queue and the canceler,
    /// even without a timeout.
    pub fn recv_prio_cancellable(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        cancel: Option<&crate::cancel::Canceler>,
    ) -> Result<(usize, u32)> {
        if buf.len() < self.msg_size {
            return Err(Error::BufferTooSmall { needed: self.msg_size });
        }
        crate::cancel::check(cancel)?;
        let end = timeout.map(|t| crate::poll::now().saturating_add(t));
        let polled = end.is_some() || cancel.is_some();
        let abs = polled.then_some(PASSED);
        let (n, prio) = loop {
            match sys::mq_timedreceive(self.fd.as_fd(), buf, abs.as_ref()) {
                Ok(r) => break r,
                Err(Errno::INTR) => {}
                Err(Errno::TIMEDOUT) if polled => {
                    crate::poll::wait_fd_cancellable(&self.fd, rustix::event::PollFlags::IN, end, cancel)?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let frame = ember_core::Frame::new_checked(&buf[..n])?;
        if frame.total_len() != n {
            return Err(Error::Codec(ember_core::Error::TrailingBytes { extra: n - frame.total_len() }));
        }
        check_receiver_integrity(&buf[..n], self.require_checked)?;
        Ok((n, prio))
    }
}

impl FrameSender for MessageQueue {
    fn max_frame(&self) -> usize {
        self.msg_size
    }

    /// `mq_timedsend` with priority 0 and no timeout.
    fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        self.send_prio(frame, 0, None)
    }

    fn integrity(&self) -> Integrity {
        self.integrity
    }

    fn set_integrity(&mut self, integrity: Integrity) {
        self.integrity = integrity;
    }
}

impl TimedReceiver for MessageQueue {
    /// [`MessageQueue::recv_prio_cancellable`], the priority left out.
    fn recv_frame_with(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        cancel: Option<&crate::cancel::Canceler>,
    ) -> Result<usize> {
        self.recv_prio_cancellable(buf, timeout, cancel).map(|(n, _)| n)
    }
}

impl crate::transport::TimedSender for MessageQueue {
    /// [`MessageQueue::send_prio_cancellable`] with priority 0.
    fn send_frame_with(
        &mut self,
        frame: &[u8],
        timeout: Option<Duration>,
        cancel: Option<&crate::cancel::Canceler>,
    ) -> Result<()> {
        self.send_prio_cancellable(frame, 0, timeout, cancel)
    }
}

impl FrameReceiver for MessageQueue {
    fn max_frame(&self) -> usize {
        self.msg_size
    }

    fn require_checked(&mut self, on: bool) {
        self.require_checked = on;
    }

    fn requires_checked(&self) -> bool {
        self.require_checked
    }

    /// `mq_timedreceive` with no timeout.
    fn recv_frame(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.recv_prio(buf, None).map(|(n, _)| n)
    }
}

/// [`MessageQueue::from_fd`]: a queue descriptor, else [`Error::WrongFdType`].
impl TryFrom<OwnedFd> for MessageQueue {
    type Error = Error;
    fn try_from(fd: OwnedFd) -> Result<MessageQueue> {
        MessageQueue::from_fd(fd)
    }
}

/// [`MessageQueue::into_fd`].
impl From<MessageQueue> for OwnedFd {
    fn from(q: MessageQueue) -> OwnedFd {
        q.into_fd()
    }
}

impl AsFd for MessageQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `flock`, again after a signal.
fn lock(fd: &OwnedFd, op: rustix::fs::FlockOperation) -> Result<()> {
    loop {
        match rustix::fs::flock(fd, op) {
            Ok(()) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the queue `name` (with its NUL) is the one open on `fd`: a second `mq_open`
/// of the name, compared by device and inode (works without `/dev/mqueue` mounted).
fn still_named(name: &[u8], fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|a| names(name, a.st_dev, a.st_ino))
}

/// Whether `name` is the queue `dev`/`ino` now.
fn names(name: &[u8], dev: u64, ino: u64) -> bool {
    use linux_raw_sys::general::{O_CLOEXEC, O_RDONLY};
    let Ok(other) = sys::mq_open(name, O_RDONLY | O_CLOEXEC, 0, None) else { return false };
    let other = other.into_owned();
    rustix::fs::fstat(&other).is_ok_and(|b| b.st_dev == dev && b.st_ino == ino)
}

/// The pid of a process holding a shared `flock` (a creator's) on the file `dev`/`ino`,
/// from `/proc/locks` (lines like `1: FLOCK  ADVISORY  READ  1234 00:13:222048 0 EOF`;
/// device numbers in hex), read in pieces into a stack buffer: `Some(Some(pid))`;
/// `Some(None)` when none is listed (an exclusive holder, or none any more); `None` when
/// `/proc/locks` cannot be read.
pub(crate) fn shared_flock_holder(dev: u64, ino: u64) -> Option<Option<u32>> {
    use core::fmt::Write;
    let mut key = heapless::String::<48>::new();
    write!(key, "{:02x}:{:02x}:{ino}", rustix::fs::major(dev), rustix::fs::minor(dev)).ok()?;
    let fd = rustix::fs::open(
        "/proc/locks",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 2048];
    let mut len = 0;
    loop {
        let n = match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(_) => return None,
        };
        len += n;
        let mut start = 0;
        while let Some(end) = buf[start..len].iter().position(|&b| b == b'\n') {
            if let Some(pid) = locks_line(&buf[start..start + end], key.as_bytes()) {
                return Some(Some(pid));
            }
            start += end + 1;
        }
        if n == 0 {
            return Some(locks_line(&buf[start..len], key.as_bytes()));
        }
        // Keep the unfinished line; a line longer than the buffer is dropped.
        buf.copy_within(start..len, 0);
        len -= start;
        if len == buf.len() {
            len = 0;
        }
    }
}

/// The pid of a `/proc/locks` line about a shared `FLOCK` on `key` (`maj:min:ino`);
/// exclusive locks and waiters (`->` lines) are not creators.
fn locks_line(line: &[u8], key: &[u8]) -> Option<u32> {
    let mut f = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let _id = f.next()?;
    if f.next()? != b"FLOCK" {
        return None;
    }
    let (_advisory, mode, pid, file) = (f.next()?, f.next()?, f.next()?, f.next()?);
    if mode != b"READ" || file != key {
        return None;
    }
    core::str::from_utf8(pid).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_checked_before_any_syscall() {
        for bad in ["noslash", "/a/b", "/", ""] {
            assert_eq!(MessageQueue::open(bad, Access::Both).err(), Some(Error::InvalidName), "{bad:?}");
        }
        assert_eq!(c_name("/q").unwrap().as_slice(), b"/q\0");
    }

    #[test]
    fn locks_lines() {
        let key = b"00:13:222048";
        assert_eq!(locks_line(b"1: FLOCK  ADVISORY  READ  1234 00:13:222048 0 EOF", key), Some(1234));
        assert_eq!(locks_line(b"1: -> FLOCK  ADVISORY  READ  99 00:13:222048 0 EOF", key), None);
        assert_eq!(locks_line(b"2: POSIX  ADVISORY  READ  77 00:13:222048 0 EOF", key), None);
        assert_eq!(locks_line(b"2: FLOCK  ADVISORY  WRITE 78 00:13:222048 0 EOF", key), None);
        assert_eq!(locks_line(b"3: FLOCK  ADVISORY  READ  55 00:13:2220481 0 EOF", key), None);
        assert_eq!(locks_line(b"", key), None);
    }
}
