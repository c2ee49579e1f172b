//! The kernel limits an IPC object can run into, read where the kernel publishes them, and
//! the mapping of the bare `errno`s that report them (`EINVAL`, `EMFILE`, `ENOSPC`,
//! `ENFILE`) to an [`Error::Limit`] that says which limit was hit and its value.
//!
//! | Limit | Where it is read | Who hits it |
//! |---|---|---|
//! | [`Limit::MqMsgMax`] | `/proc/sys/fs/mqueue/msg_max` | `mq_open(O_CREAT)` with more messages (unprivileged; `EINVAL`) |
//! | [`Limit::MqMsgsizeMax`] | `/proc/sys/fs/mqueue/msgsize_max` | `mq_open(O_CREAT)` with larger messages (unprivileged; `EINVAL`) |
//! | [`Limit::MqQueuesMax`] | `/proc/sys/fs/mqueue/queues_max` | one queue too many in the IPC namespace (`ENOSPC`) |
//! | [`Limit::RlimitMsgqueue`] | `getrlimit(RLIMIT_MSGQUEUE)` | the user's queues would hold more bytes (`EMFILE`, root too) |
//! | [`Limit::RlimitNofile`] | `getrlimit(RLIMIT_NOFILE)` | the process has no descriptor left (`EMFILE`) |
//! | [`Limit::FileMax`] | `/proc/sys/fs/file-max` | the system has no file left (`ENFILE`) |
//! | [`Limit::SysvMsgmni`] | `/proc/sys/kernel/msgmni` | one SysV queue too many (`ENOSPC`) |
//! | [`Limit::SysvMsgmax`] | `/proc/sys/kernel/msgmax` | a SysV message longer than this (`EINVAL`) |
//! | [`Limit::SysvShmmax`] | `/proc/sys/kernel/shmmax` | a SysV segment larger than this (`EINVAL`) |
//! | [`Limit::SysvShmmni`] | `/proc/sys/kernel/shmmni` | one SysV segment too many (`ENOSPC`) |
//!
//! The `/proc/sys` values are per IPC namespace (a container's may differ from the host's);
//! they are read when an error is mapped, never on a send or receive path.

use core::fmt;

use rustix::io::Errno;

use crate::error::Error;

/// A kernel limit on IPC objects (see the [module docs](self) for where each is read).
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// Messages per POSIX queue an unprivileged process may ask for.
    MqMsgMax,
    /// Bytes per POSIX queue message an unprivileged process may ask for.
    MqMsgsizeMax,
    /// POSIX queues in the IPC namespace.
    MqQueuesMax,
    /// Bytes the user's POSIX queues may hold in all (messages plus the kernel's overhead
    /// per message), `RLIMIT_MSGQUEUE`.
    RlimitMsgqueue,
    /// Open descriptors per process, `RLIMIT_NOFILE`.
    RlimitNofile,
    /// Open files in the system.
    FileMax,
    /// SysV message queues in the IPC namespace.
    SysvMsgmni,
    /// Bytes per SysV message.
    SysvMsgmax,
    /// Bytes per SysV shared-memory segment.
    SysvShmmax,
    /// SysV shared-memory segments in the IPC namespace.
    SysvShmmni,
}

impl Limit {
    /// Where the limit is set: the sysctl file, or the resource limit's name.
    pub const fn source(self) -> &'static str {
        match self {
            Limit::MqMsgMax => "/proc/sys/fs/mqueue/msg_max",
            Limit::MqMsgsizeMax => "/proc/sys/fs/mqueue/msgsize_max",
            Limit::MqQueuesMax => "/proc/sys/fs/mqueue/queues_max",
            Limit::RlimitMsgqueue => "RLIMIT_MSGQUEUE",
            Limit::RlimitNofile => "RLIMIT_NOFILE",
            Limit::FileMax => "/proc/sys/fs/file-max",
            Limit::SysvMsgmni => "/proc/sys/kernel/msgmni",
            Limit::SysvMsgmax => "/proc/sys/kernel/msgmax",
            Limit::SysvShmmax => "/proc/sys/kernel/shmmax",
            Limit::SysvShmmni => "/proc/sys/kernel/shmmni",
        }
    }

    /// What the limit counts, for messages.
    const fn unit(self) -> &'static str {
        match self {
            Limit::MqMsgMax => "messages per queue",
            Limit::MqMsgsizeMax | Limit::SysvMsgmax => "bytes per message",
            Limit::MqQueuesMax | Limit::SysvMsgmni => "queues",
            Limit::RlimitMsgqueue => "bytes of queued messages",
            Limit::RlimitNofile => "open descriptors",
            Limit::FileMax => "open files",
            Limit::SysvShmmax => "bytes per segment",
            Limit::SysvShmmni => "segments",
        }
    }

    /// The limit's value now, where it can be read (`None`: unreadable, or no limit).
    pub fn value(self) -> Option<u64> {
        match self {
            Limit::RlimitMsgqueue => rustix::process::getrlimit(rustix::process::Resource::Msgqueue).current,
            Limit::RlimitNofile => rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
            other => read_u64(other.source()),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.source(), self.unit())
    }
}

/// The first number in a small `/proc` file.
fn read_u64(path: &str) -> Option<u64> {
    let fd =
        rustix::fs::open(path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .ok()?;
    let mut buf = [0u8; 32];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    let digits = buf[..n].iter().take_while(|b| b.is_ascii_digit()).count();
    core::str::from_utf8(&buf[..digits]).ok()?.parse().ok()
}

/// Open descriptors of this process (entries of `/proc/self/fd`), if readable.
fn open_descriptors() -> Option<u64> {
    let dir = rustix::fs::open(
        "/proc/self/fd",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let mut space = [core::mem::MaybeUninit::<u8>::uninit(); 2048];
    let mut it = rustix::fs::RawDir::new(&dir, &mut space);
    let mut n = 0u64;
    while let Some(entry) = it.next() {
        let entry = entry.ok()?;
        if entry.file_name().to_bytes().first() != Some(&b'.') {
            n += 1;
        }
    }
    // The directory's own descriptor is listed too.
    Some(n.saturating_sub(1))
}

fn limit(which: Limit, requested: u64) -> Error {
    Error::Limit { which, value: which.value(), requested }
}

/// `mq_open(O_CREAT)` of `max_msgs` messages of `msg_size` bytes failed with `e`.
pub(crate) fn mq_create(e: Errno, max_msgs: usize, msg_size: usize) -> Error {
    let (n, size) = (max_msgs as u64, msg_size as u64);
    match e {
        Errno::INVAL => {
            if Limit::MqMsgMax.value().is_some_and(|m| n > m) {
                limit(Limit::MqMsgMax, n)
            } else if Limit::MqMsgsizeMax.value().is_some_and(|m| size > m) {
                limit(Limit::MqMsgsizeMax, size)
            } else {
                e.into()
            }
        }
        Errno::MFILE => {
            let nofile = Limit::RlimitNofile.value();
            match (open_descriptors(), nofile) {
                (Some(open), Some(max)) if open + 1 >= max => limit(Limit::RlimitNofile, open + 1),
                _ => limit(Limit::RlimitMsgqueue, n.saturating_mul(size)),
            }
        }
        Errno::NOSPC => limit(Limit::MqQueuesMax, 0),
        Errno::NFILE => limit(Limit::FileMax, 0),
        e => e.into(),
    }
}

/// `mq_open` of an existing queue failed with `e` (descriptors only).
pub(crate) fn open_fd(e: Errno) -> Error {
    match e {
        Errno::MFILE => limit(Limit::RlimitNofile, 0),
        Errno::NFILE => limit(Limit::FileMax, 0),
        e => e.into(),
    }
}

/// `msgget(IPC_CREAT)` failed with `e`.
pub(crate) fn msgget_create(e: Errno) -> Error {
    match e {
        Errno::NOSPC => limit(Limit::SysvMsgmni, 0),
        e => e.into(),
    }
}

/// A SysV message of `len` bytes, if it is longer than `msgmax` (`msgsnd` would fail with
/// `EINVAL`, which otherwise means the queue was removed).
pub(crate) fn sysv_message_too_long(len: usize) -> Option<Error> {
    let max = Limit::SysvMsgmax.value()?;
    (len as u64 > max).then_some(Error::Limit { which: Limit::SysvMsgmax, value: Some(max), requested: len as u64 })
}

/// `shmget(IPC_CREAT)` of `size` bytes failed with `e` (not `ENOSPC` from `shmall`, which
/// the caller reports as `NoSpace`).
pub(crate) fn shmget_create(e: Errno, size: usize) -> Error {
    match e {
        Errno::INVAL if Limit::SysvShmmax.value().is_some_and(|m| size as u64 > m) => {
            limit(Limit::SysvShmmax, size as u64)
        }
        Errno::NOSPC => limit(Limit::SysvShmmni, 0),
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_on_linux() {
        // These exist on every Linux with POSIX and SysV IPC (the boards' kernels too).
        for l in [Limit::MqMsgMax, Limit::MqMsgsizeMax, Limit::MqQueuesMax, Limit::SysvMsgmax, Limit::SysvMsgmni] {
            assert!(l.value().is_some_and(|v| v > 0), "{l}");
        }
        assert!(open_descriptors().is_some_and(|n| n >= 3));
    }
}
