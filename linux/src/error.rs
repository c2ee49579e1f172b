//! The error type of `ember-ipc-linux`.

use core::fmt;

use ember_core::shm::ShmError;
use rustix::io::Errno;

/// Why an `ember-ipc-linux` operation failed.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    Os(Errno),
    /// A shared-memory protocol error (including [`ShmError::Timeout`] and
    /// [`ShmError::WriterGone`]).
    Shm(ShmError),
    /// A frame or payload codec error.
    Codec(ember_core::Error),
    /// An object name is not valid: shm and mq names are `/name`, 1 to 254 bytes after the
    /// slash, with no other slash and no NUL; Unix socket paths and abstract names are 1 to
    /// 107 bytes (no NUL in a path). Also a systemd `FDNAME` (1 to 255 printable ASCII
    /// characters, no `:`) or a notification value with a newline in it.
    InvalidName,
    /// A memfd handed over by a peer is not sealed against shrinking and growing, so the
    /// peer could truncate it and crash this process with `SIGBUS`.
    NotSealed,
    /// A nonblocking call found nothing to receive, or no room to send (`EAGAIN`).
    WouldBlock,
    /// A call with a timeout ran out of time.
    TimedOut,
    /// The [`Canceler`](crate::cancel::Canceler) given to the call was cancelled (before
    /// the call or during its wait); nothing was consumed. Also `ECANCELED` from the kernel.
    Cancelled,
    /// The other end is gone: the reader of a pipe or FIFO closed it (`EPIPE`, with no
    /// `SIGPIPE` delivered), or every writer closed theirs (end of file).
    PeerGone,
    /// A FIFO has no reader, so it cannot be opened for writing without blocking (`ENXIO`).
    NoReader,
    /// The frame is larger than this transport carries in one message.
    TooLarge {
        /// Its length.
        len: usize,
        /// The largest this transport carries.
        max: usize,
    },
    /// The path exists but is not a FIFO (a regular file, a directory, or a symlink, which
    /// is never followed).
    NotAFifo,
    /// The object exists but belongs to another user.
    NotOwner,
    /// The receive buffer is smaller than this receiver's frame limit (nothing was
    /// consumed).
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// Messages were dropped because a D-Bus connection's queue was full (`dropped`:
    /// how many since connecting); reported once per loss, where it happened.
    QueueOverflow {
        /// Messages dropped in all.
        dropped: u64,
    },
    /// Too many D-Bus calls in flight on one connection.
    TooManyCalls {
        /// The most.
        max: usize,
    },
    /// Nobody listens at that address (`ECONNREFUSED`).
    Refused,
    /// The address is taken: a listener still answers at that socket path, or the path is
    /// something other than a socket (never removed), or the port is bound (`EADDRINUSE`).
    AddrInUse,
    /// A peer connected with a uid that the listener's allow-list does not contain; its
    /// connection was closed.
    PeerNotAllowed {
        /// The peer's uid (`SO_PEERCRED`).
        uid: u32,
        /// The peer's pid.
        pid: u32,
    },
    /// A message came with more file descriptors than the receiver takes; the message and
    /// all its descriptors were dropped (closed).
    TooManyFds {
        /// How many the receiver takes.
        max: usize,
    },
    /// A D-Bus message could not be built, or one received was malformed (it was skipped).
    Dbus(ember_core::dbus::DbusError),
    /// The D-Bus server rejected our authentication (or answered outside the protocol).
    AuthRejected,
    /// A shared mutex or semaphore refused: not recoverable, not the owner, or a count
    /// overflow (timeouts are [`Error::TimedOut`], `try_*` failures [`Error::WouldBlock`]).
    Sync(ember_core::shm::sync::SyncError),
    /// systemd passed no file descriptor of that name (or none at all: the process was not
    /// socket-activated, or its descriptors were taken already).
    NotActivated,
    /// A file descriptor is not the kind of endpoint asked for (a socket-activated fd whose
    /// unit file says `ListenDatagram=` where the daemon wants a stream listener, say).
    WrongFdType {
        /// What the caller asked for.
        expected: crate::systemd::FdKind,
        /// What the descriptor is.
        found: crate::systemd::FdKind,
    },
    /// A variable systemd sets (`NOTIFY_SOCKET`, `LISTEN_FDS`, `LISTEN_PID`,
    /// `LISTEN_FDNAMES`, `WATCHDOG_USEC`, `WATCHDOG_PID`) does not parse.
    InvalidEnv,
    /// There is no room for a new shared-memory segment: the file system that holds it
    /// (the tmpfs on `/dev/shm` for named segments, the kernel's internal one for memfds)
    /// could not reserve its pages, or a SysV segment would exceed `kernel.shmall`. Nothing
    /// was left behind: the name was unlinked (the SysV id removed).
    NoSpace {
        /// Bytes the segment needs (its whole size, header included).
        needed: u64,
        /// Bytes free for unprivileged use on that file system when the reservation failed
        /// (`fstatvfs`: `f_bavail * f_frsize`; for SysV, what `kernel.shmall` leaves).
        available: u64,
    },
    /// A create with `replace_stale` found the name taken by a live owner, so the object
    /// was left alone: a segment whose recorded writer is alive, a message queue an Ember
    /// creator holds (its lock), a FIFO a process has open for reading. The caller knows
    /// the name it asked for; this says who has it.
    InUse {
        /// What kind of object it is.
        object: ObjectKind,
        /// The owner's pid; 0 when it cannot be known (a FIFO's reader, a queue's holder
        /// without `/proc/locks`).
        pid: u32,
    },
    /// A kernel limit refused the object: a queue deeper or with larger messages than
    /// unprivileged processes may create, one queue or segment too many, the user's queue
    /// bytes (`RLIMIT_MSGQUEUE`), no descriptor left... (see [`crate::limits`]). Nothing was
    /// created.
    Limit {
        /// Which limit.
        which: crate::limits::Limit,
        /// Its value when the error was mapped, where it can be read.
        value: Option<u64>,
        /// What was asked for, in the limit's unit (0 when one more object was asked for).
        requested: u64,
    },
}

/// The kind of named object an [`Error::InUse`] is about.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A POSIX shared-memory segment (`/dev/shm`).
    Segment,
    /// A POSIX message queue (`/dev/mqueue`).
    MessageQueue,
    /// A FIFO.
    Fifo,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Segment => "shared-memory segment",
            ObjectKind::MessageQueue => "message queue",
            ObjectKind::Fifo => "FIFO",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Os(e) => write!(f, "system call failed: {e}"),
            Error::Shm(e) => write!(f, "{e}"),
            Error::Codec(e) => write!(f, "{e}"),
            Error::InvalidName => f.write_str(
                "invalid name (shm and mq: /name, no other slash, at most 255 bytes; Unix sockets: 1 to 107 bytes)",
            ),
            Error::NotSealed => f.write_str("memfd is not sealed against resizing"),
            Error::WouldBlock => f.write_str("operation would block"),
            Error::TimedOut => f.write_str("timed out"),
            Error::Cancelled => f.write_str("cancelled"),
            Error::PeerGone => f.write_str("the peer is gone"),
            Error::NoReader => f.write_str("the FIFO has no reader"),
            Error::TooLarge { len, max } => write!(f, "{len}-byte frame exceeds this transport's {max} bytes"),
            Error::NotAFifo => f.write_str("path exists and is not a FIFO"),
            Error::NotOwner => f.write_str("object belongs to another user"),
            Error::BufferTooSmall { needed } => write!(f, "receive buffer too small: {needed} bytes needed"),
            Error::QueueOverflow { dropped } => {
                write!(f, "D-Bus: the connection's queue overflowed ({dropped} messages dropped in all)")
            }
            Error::TooManyCalls { max } => write!(f, "D-Bus: more than {max} calls in flight"),
            Error::Refused => f.write_str("connection refused: nobody listens there"),
            Error::AddrInUse => f.write_str("address in use"),
            Error::PeerNotAllowed { uid, pid } => write!(f, "peer uid {uid} (pid {pid}) is not allowed"),
            Error::TooManyFds { max } => write!(f, "message carried more than {max} file descriptors; dropped"),
            Error::Dbus(e) => write!(f, "{e}"),
            Error::Sync(e) => write!(f, "{e}"),
            Error::AuthRejected => f.write_str("D-Bus authentication rejected"),
            Error::NotActivated => f.write_str("systemd passed no file descriptor of that name"),
            Error::WrongFdType { expected, found } => write!(f, "expected {expected}, found {found}"),
            Error::InvalidEnv => f.write_str("a systemd environment variable does not parse"),
            Error::NoSpace { needed, available } => write!(
                f,
                "no space for the shared-memory segment: {needed} bytes needed, {available} available \
                 (is /dev/shm full?)"
            ),
            Error::InUse { object, pid: 0 } => write!(f, "the {object} is in use by a live process"),
            Error::InUse { object, pid } => write!(f, "the {object} is in use by pid {pid}, which is alive"),
            Error::Limit { which, value, requested } => {
                write!(f, "limit reached: {which}")?;
                match value {
                    Some(v) => write!(f, " is {v}")?,
                    None => f.write_str(" (unreadable)")?,
                }
                if *requested > 0 { write!(f, ", {requested} asked for") } else { Ok(()) }
            }
        }
    }
}

impl core::error::Error for Error {}

impl From<Errno> for Error {
    /// `EAGAIN` becomes [`Error::WouldBlock`], `EPIPE` and `ECONNRESET`
    /// [`Error::PeerGone`], `ETIMEDOUT` [`Error::TimedOut`], `ECONNREFUSED`
    /// [`Error::Refused`], `EADDRINUSE` [`Error::AddrInUse`], `ECANCELED`
    /// [`Error::Cancelled`]; the rest stay [`Error::Os`].
    fn from(e: Errno) -> Self {
        match e {
            Errno::AGAIN => Error::WouldBlock,
            Errno::PIPE | Errno::CONNRESET => Error::PeerGone,
            Errno::CONNREFUSED => Error::Refused,
            Errno::ADDRINUSE => Error::AddrInUse,
            Errno::TIMEDOUT => Error::TimedOut,
            Errno::CANCELED => Error::Cancelled,
            e => Error::Os(e),
        }
    }
}

impl From<ShmError> for Error {
    fn from(e: ShmError) -> Self {
        match e {
            ShmError::Codec(c) => Error::Codec(c),
            e => Error::Shm(e),
        }
    }
}

impl From<ember_core::dbus::DbusError> for Error {
    fn from(e: ember_core::dbus::DbusError) -> Self {
        Error::Dbus(e)
    }
}

impl From<ember_core::shm::sync::SyncError> for Error {
    fn from(e: ember_core::shm::sync::SyncError) -> Error {
        use ember_core::shm::sync::SyncError;
        match e {
            SyncError::TimedOut => Error::TimedOut,
            SyncError::WouldBlock => Error::WouldBlock,
            SyncError::Cancelled => Error::Cancelled,
            e => Error::Sync(e),
        }
    }
}

impl From<ember_core::Error> for Error {
    fn from(e: ember_core::Error) -> Self {
        Error::Codec(e)
    }
}

#[cfg(feature = "std")]
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Os(errno) => std::io::Error::from_raw_os_error(errno.raw_os_error()),
            Error::Shm(ShmError::Timeout) => std::io::Error::new(std::io::ErrorKind::TimedOut, e),
            Error::Shm(ShmError::Empty | ShmError::Full) | Error::WouldBlock => {
                std::io::Error::new(std::io::ErrorKind::WouldBlock, e)
            }
            Error::TimedOut => std::io::Error::new(std::io::ErrorKind::TimedOut, e),
            Error::PeerGone => std::io::Error::new(std::io::ErrorKind::BrokenPipe, e),
            Error::Refused => std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e),
            Error::AddrInUse => std::io::Error::new(std::io::ErrorKind::AddrInUse, e),
            other => std::io::Error::other(other),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
