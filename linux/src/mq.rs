//! POSIX message queues (`mq_overview(7)`): one frame per message, with priorities.
//!
//! rustix has no message-queue API, so the calls are raw syscalls ([`crate::sys`]):
//! `mq_open`, `mq_timedsend`/`mq_timedreceive` (the `_time64` variants on 32-bit ARM),
//! `mq_getsetattr`, `mq_unlink`. Names are checked before any syscall (`/name`, no other
//! slash, at most 255 bytes) and passed to the kernel as glibc does, one byte past the
//! slash.
//!
//! Queues are created `0600` with `O_EXCL`; the creator unlinks the name on drop unless
//! told to [`MessageQueue::persist`]. The queue descriptor is a file descriptor: it can be
//! made nonblocking ([`crate::Endpoint::set_nonblocking`]) and polled (`POLLIN`: a message
//! is there; `POLLOUT`: there is room).
//!
//! Limits: unprivileged processes may create queues of at most
//! `/proc/sys/fs/mqueue/msg_max` messages (10 by default) of `msgsize_max` bytes (8192);
//! a larger request fails with `EINVAL` ([`Error::Os`]). The number of queues and the bytes
//! they may hold are limited by `queues_max` and `RLIMIT_MSGQUEUE` (`EMFILE`, `ENOMEM`).

use core::time::Duration;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::shm::{MAX_NAME, validate_name};
use crate::sys::{self, KernelTimespec, MqAttr};
use crate::transport::{FrameReceiver, FrameSender, check_outgoing};

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

/// An absolute `CLOCK_REALTIME` deadline `timeout` from now (what `mq_timed*` want).
fn deadline(timeout: Duration) -> KernelTimespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let nanos = now.tv_nsec as i64 + i64::from(timeout.subsec_nanos());
    KernelTimespec {
        tv_sec: (now.tv_sec as i64).saturating_add(timeout.as_secs().min(i64::MAX as u64 / 2) as i64)
            + nanos / 1_000_000_000,
        tv_nsec: nanos % 1_000_000_000,
    }
}

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
    fd: OwnedFd,
    msg_size: usize,
    /// The name, while this side owns it and unlinks it on drop.
    owned: Option<heapless::Vec<u8, { MAX_NAME + 1 }>>,
}

impl core::fmt::Debug for MessageQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = self.owned.as_ref().map(|n| core::str::from_utf8(&n[..n.len() - 1]).unwrap_or("?"));
        f.debug_struct("MessageQueue")
            .field("fd", &self.fd)
            .field("msg_size", &self.msg_size)
            .field("owned", &name)
            .finish()
    }
}

impl MessageQueue {
    /// Creates a queue (`mq_open(O_CREAT | O_EXCL | O_CLOEXEC, 0600)`) holding up to
    /// `max_msgs` messages of up to `msg_size` bytes. The creator unlinks it on drop.
    pub fn create(name: &str, max_msgs: usize, msg_size: usize, access: Access) -> Result<MessageQueue> {
        use linux_raw_sys::general::{O_CLOEXEC, O_CREAT, O_EXCL};
        let c = c_name(name)?;
        let attr = MqAttr::new(max_msgs, msg_size);
        let fd = sys::mq_open(&c, access.oflag() | O_CREAT | O_EXCL | O_CLOEXEC, 0o600, Some(&attr))?.into_owned();
        let mut q = MessageQueue { fd, msg_size, owned: Some(c) };
        q.msg_size = q.attributes()?.msg_size;
        Ok(q)
    }

    /// Opens an existing queue (`mq_open(O_CLOEXEC)`).
    pub fn open(name: &str, access: Access) -> Result<MessageQueue> {
        let c = c_name(name)?;
        let fd = sys::mq_open(&c, access.oflag() | linux_raw_sys::general::O_CLOEXEC, 0, None)?.into_owned();
        let mut q = MessageQueue { fd, msg_size: 0, owned: None };
        q.msg_size = q.attributes()?.msg_size;
        Ok(q)
    }

    /// A queue descriptor someone else opened (systemd's `ListenMessageQueue=`), checked
    /// first (a file on the mqueue file system, then `mq_getsetattr`): anything else is
    /// [`Error::WrongFdType`] (and the descriptor closed). Nobody unlinks it on drop.
    pub fn from_fd(fd: OwnedFd) -> Result<MessageQueue> {
        crate::systemd::expect_kind(&fd, &[crate::systemd::FdKind::MessageQueue])?;
        let mut q = MessageQueue { fd, msg_size: 0, owned: None };
        q.msg_size = q.attributes()?.msg_size;
        Ok(q)
    }

    /// Removes a queue's name (`mq_unlink`); open descriptors keep working.
    pub fn unlink(name: &str) -> Result<()> {
        Ok(sys::mq_unlink(&c_name(name)?)?)
    }

    /// Keeps the queue after this creator drops it.
    pub fn persist(&mut self) {
        self.owned = None;
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
        check_outgoing(frame, self.msg_size)?;
        let abs = timeout.map(deadline);
        loop {
            match sys::mq_timedsend(self.fd.as_fd(), frame, prio, abs.as_ref()) {
                Ok(()) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(e) => return Err(map_send(e, frame.len(), self.msg_size)),
            }
        }
    }

    /// Receives one frame into `buf` (at least the queue's message size): its length and
    /// priority. `timeout` as for [`MessageQueue::send_prio`].
    pub fn recv_prio(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<(usize, u32)> {
        if buf.len() < self.msg_size {
            return Err(Error::BufferTooSmall { needed: self.msg_size });
        }
        let abs = timeout.map(deadline);
        let (n, prio) = loop {
            match sys::mq_timedreceive(self.fd.as_fd(), buf, abs.as_ref()) {
                Ok(r) => break r,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        let frame = ember_core::Frame::new_checked(&buf[..n])?;
        if frame.total_len() != n {
            return Err(Error::Codec(ember_core::Error::TrailingBytes { extra: n - frame.total_len() }));
        }
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
}

impl FrameReceiver for MessageQueue {
    fn max_frame(&self) -> usize {
        self.msg_size
    }

    /// `mq_timedreceive` with no timeout.
    fn recv_frame(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.recv_prio(buf, None).map(|(n, _)| n)
    }
}

impl AsFd for MessageQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        if let Some(name) = &self.owned {
            let _ = sys::mq_unlink(name);
        }
    }
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
    fn deadline_is_in_the_future_and_normalised() {
        let d = deadline(Duration::from_millis(1500));
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        assert!(d.tv_sec > now.tv_sec as i64);
        assert!((0..1_000_000_000).contains(&d.tv_nsec));
    }
}
